//! One mapping from the core error taxonomy to gRPC: the status code of API.md's table, the
//! smai code string as the message's prefix, `google.rpc.ErrorInfo {reason: code, domain:
//! "smai"}` (with the request id) and `RetryInfo` where a retry can help.

use smai_core::{Error, ErrorCode};
use std::collections::HashMap;
use std::time::Duration;
use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

pub const ERROR_DOMAIN: &str = "smai";

/// The gRPC code of each error code.
pub fn code_of(code: ErrorCode) -> Code {
    match code {
        ErrorCode::InvalidRequest | ErrorCode::PayloadTooLarge | ErrorCode::UnsupportedMediaType => {
            Code::InvalidArgument
        }
        ErrorCode::Unauthorized => Code::Unauthenticated,
        ErrorCode::Forbidden | ErrorCode::VoiceNotAllowed => Code::PermissionDenied,
        ErrorCode::NotFound => Code::NotFound,
        ErrorCode::RateLimitExceeded | ErrorCode::ConcurrencyLimitExceeded => Code::ResourceExhausted,
        ErrorCode::Overloaded => Code::Unavailable,
        ErrorCode::Internal => Code::Internal,
    }
}

/// The status a client sees for `error`. Internal errors say little; their detail goes to the
/// log with the request id.
pub fn status_of(error: &Error, request_id: &str) -> Status {
    if error.code == ErrorCode::Internal {
        tracing::error!(request_id, detail = error.detail.as_deref().unwrap_or(&error.message), "internal error");
    }
    let code = code_of(error.code);
    let message = format!("{}: {}", error.code.as_str(), error.message);
    let metadata = HashMap::from([("request_id".to_owned(), request_id.to_owned())]);
    let mut details = ErrorDetails::with_error_info(error.code.as_str(), ERROR_DOMAIN, metadata);
    if matches!(code, Code::ResourceExhausted | Code::Unavailable) {
        // Whole seconds, as REST's Retry-After; at least one.
        let seconds = error.retry_after.map_or(1, |d| d.as_secs_f64().ceil().max(1.0) as u64);
        details.set_retry_info(Some(Duration::from_secs(seconds)));
    }
    Status::with_error_details(code, message, details)
}

/// The contract's HTTP status for a gRPC code (usage rows of every protocol record outcomes
/// in HTTP terms), for refusals tonic makes itself.
pub fn http_status_of(code: Code) -> u16 {
    match code {
        Code::Ok => 200,
        Code::InvalidArgument | Code::OutOfRange | Code::FailedPrecondition => 400,
        Code::Unauthenticated => 401,
        Code::PermissionDenied => 403,
        Code::NotFound | Code::Unimplemented => 404,
        Code::ResourceExhausted => 429,
        Code::Unavailable => 503,
        Code::Cancelled => crate::service::CLIENT_CLOSED,
        _ => 500,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_follow_the_contract_table_with_details() {
        let limited =
            Error::new(ErrorCode::RateLimitExceeded, "slow down").with_retry_after(Duration::from_millis(1500));
        let status = status_of(&limited, "req-1");
        assert_eq!(status.code(), Code::ResourceExhausted);
        assert_eq!(status.message(), "rate_limit_exceeded: slow down");
        let details = status.get_error_details();
        let info = details.error_info().expect("ErrorInfo");
        assert_eq!((info.reason.as_str(), info.domain.as_str()), ("rate_limit_exceeded", "smai"));
        assert_eq!(info.metadata["request_id"], "req-1");
        assert_eq!(details.retry_info().and_then(|r| r.retry_delay), Some(Duration::from_secs(2)));

        let denied = status_of(&Error::new(ErrorCode::VoiceNotAllowed, "no"), "r");
        assert_eq!(denied.code(), Code::PermissionDenied);
        assert!(denied.get_error_details().retry_info().is_none());
        assert_eq!(code_of(ErrorCode::PayloadTooLarge), Code::InvalidArgument);
        assert_eq!(code_of(ErrorCode::Overloaded), Code::Unavailable);
        assert_eq!(code_of(ErrorCode::Unauthorized), Code::Unauthenticated);
    }
}

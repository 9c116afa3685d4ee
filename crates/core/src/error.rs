//! The one error taxonomy of smai. Each protocol maps `ErrorCode` once, in its own adapter
//! (HTTP status and OpenAI error type in http/, gRPC status in grpc/, close codes in ws/).

use std::time::Duration;

/// Machine-readable error codes, exactly those of the API contract.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    InvalidRequest,
    Unauthorized,
    Forbidden,
    VoiceNotAllowed,
    NotFound,
    PayloadTooLarge,
    UnsupportedMediaType,
    RateLimitExceeded,
    ConcurrencyLimitExceeded,
    Overloaded,
    Internal,
}

impl ErrorCode {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::InvalidRequest => "invalid_request",
            Self::Unauthorized => "unauthorized",
            Self::Forbidden => "forbidden",
            Self::VoiceNotAllowed => "voice_not_allowed",
            Self::NotFound => "not_found",
            Self::PayloadTooLarge => "payload_too_large",
            Self::UnsupportedMediaType => "unsupported_media_type",
            Self::RateLimitExceeded => "rate_limit_exceeded",
            Self::ConcurrencyLimitExceeded => "concurrency_limit_exceeded",
            Self::Overloaded => "overloaded",
            Self::Internal => "internal_error",
        }
    }
}

/// An error with a code, a message safe to show the client, and an optional retry hint.
/// Internal errors keep their detail for the log only.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{code:?}: {message}")]
pub struct Error {
    pub code: ErrorCode,
    pub message: String,
    pub retry_after: Option<Duration>,
    /// Detail for the log; never sent to a client.
    pub detail: Option<String>,
}

impl Error {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self { code, message: message.into(), retry_after: None, detail: None }
    }
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::InvalidRequest, message)
    }
    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Unauthorized, message)
    }
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Forbidden, message)
    }
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::NotFound, message)
    }
    pub fn unsupported_media(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::UnsupportedMediaType, message)
    }
    pub fn overloaded(retry_after: Duration) -> Self {
        Self::new(ErrorCode::Overloaded, "the server is at capacity; retry later").with_retry_after(retry_after)
    }
    /// A 500 whose detail stays in the log.
    pub fn internal(detail: impl std::fmt::Display) -> Self {
        Self { detail: Some(detail.to_string()), ..Self::new(ErrorCode::Internal, "internal server error") }
    }
    pub fn with_retry_after(mut self, after: Duration) -> Self {
        self.retry_after = Some(after);
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn internal_errors_hide_detail_from_message() {
        let e = Error::internal("sqlite: disk I/O error at /secret/path");
        assert_eq!(e.message, "internal server error");
        assert!(e.detail.unwrap().contains("disk I/O"));
        assert_eq!(e.code, ErrorCode::Internal);
    }

    #[test]
    fn codes_are_the_contract_strings() {
        assert_eq!(ErrorCode::VoiceNotAllowed.as_str(), "voice_not_allowed");
        assert_eq!(ErrorCode::ConcurrencyLimitExceeded.as_str(), "concurrency_limit_exceeded");
        assert_eq!(ErrorCode::Internal.as_str(), "internal_error");
    }
}

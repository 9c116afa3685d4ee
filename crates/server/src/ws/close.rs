//! The one mapping from the error taxonomy to WebSocket close codes (API.md's table).

use smai_core::ErrorCode;

/// Normal end of a session.
pub const NORMAL: u16 = 1000;

/// The close code of a fatal error.
pub fn close_code(code: ErrorCode) -> u16 {
    match code {
        ErrorCode::InvalidRequest | ErrorCode::NotFound => 4400,
        ErrorCode::Unauthorized => 4401,
        ErrorCode::Forbidden | ErrorCode::VoiceNotAllowed => 4403,
        ErrorCode::PayloadTooLarge => 1009,
        ErrorCode::UnsupportedMediaType => 4415,
        ErrorCode::RateLimitExceeded | ErrorCode::ConcurrencyLimitExceeded => 4429,
        ErrorCode::Overloaded => 1013,
        ErrorCode::Internal => 1011,
    }
}

/// Whether a session may go on after this error (the client sent something wrong or asked for
/// something missing) or must close (auth, permission, limits, overload, our own failure).
pub fn is_recoverable(code: ErrorCode) -> bool {
    matches!(code, ErrorCode::InvalidRequest | ErrorCode::NotFound | ErrorCode::UnsupportedMediaType)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_follow_the_contract_table() {
        assert_eq!(close_code(ErrorCode::Unauthorized), 4401);
        assert_eq!(close_code(ErrorCode::VoiceNotAllowed), 4403);
        assert_eq!(close_code(ErrorCode::ConcurrencyLimitExceeded), 4429);
        assert_eq!(close_code(ErrorCode::PayloadTooLarge), 1009);
        assert_eq!(close_code(ErrorCode::Overloaded), 1013);
        assert_eq!(close_code(ErrorCode::Internal), 1011);
        assert!(is_recoverable(ErrorCode::InvalidRequest));
        assert!(!is_recoverable(ErrorCode::RateLimitExceeded));
    }
}

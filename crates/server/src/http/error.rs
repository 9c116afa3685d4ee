//! One mapping from the core error taxonomy to HTTP. Handlers return `ApiError`; the request
//! context middleware renders the body, because only it knows the request id.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use smai_core::{Error, ErrorCode};
use utoipa::ToSchema;

/// The body of every error response, on every route.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorDetail {
    /// Machine-readable: `invalid_request`, `unauthorized`, `rate_limit_exceeded`, ...
    #[schema(example = "invalid_request")]
    pub code: String,
    /// For people; never carries internal detail.
    pub message: String,
    /// The family of the code: `invalid_request_error`, `authentication_error`, ...
    #[serde(rename = "type")]
    pub kind: String,
    /// Also in the `x-request-id` response header and in the server log.
    pub request_id: String,
}

#[derive(Debug)]
pub struct ApiError(pub Error);

impl From<Error> for ApiError {
    fn from(e: Error) -> Self {
        Self(e)
    }
}

/// Marker left in the response extensions for the context middleware to render.
#[derive(Clone, Debug)]
pub(crate) struct PendingError(pub Error);

/// The HTTP status of each error code: API.md's table. Usage rows of every protocol record
/// outcomes in these terms too.
pub fn status_of(code: ErrorCode) -> StatusCode {
    match code {
        ErrorCode::InvalidRequest => StatusCode::BAD_REQUEST,
        ErrorCode::Unauthorized => StatusCode::UNAUTHORIZED,
        ErrorCode::Forbidden | ErrorCode::VoiceNotAllowed => StatusCode::FORBIDDEN,
        ErrorCode::NotFound => StatusCode::NOT_FOUND,
        ErrorCode::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
        ErrorCode::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
        ErrorCode::RateLimitExceeded | ErrorCode::ConcurrencyLimitExceeded => StatusCode::TOO_MANY_REQUESTS,
        ErrorCode::Overloaded => StatusCode::SERVICE_UNAVAILABLE,
        ErrorCode::Internal => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// The `type` field of the error body, as OpenAI's API names its error families.
pub fn error_type(code: ErrorCode) -> &'static str {
    match code {
        ErrorCode::InvalidRequest
        | ErrorCode::NotFound
        | ErrorCode::PayloadTooLarge
        | ErrorCode::UnsupportedMediaType => "invalid_request_error",
        ErrorCode::Unauthorized => "authentication_error",
        ErrorCode::Forbidden | ErrorCode::VoiceNotAllowed => "permission_error",
        ErrorCode::RateLimitExceeded | ErrorCode::ConcurrencyLimitExceeded => "rate_limit_error",
        ErrorCode::Overloaded => "overloaded_error",
        ErrorCode::Internal => "server_error",
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = status_of(self.0.code);
        let mut response = status.into_response();
        response.extensions_mut().insert(PendingError(self.0));
        response
    }
}

pub type ApiResult<T> = Result<T, ApiError>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_map_to_the_contract_statuses() {
        assert_eq!(status_of(ErrorCode::VoiceNotAllowed), StatusCode::FORBIDDEN);
        assert_eq!(status_of(ErrorCode::ConcurrencyLimitExceeded), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(status_of(ErrorCode::Overloaded), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(status_of(ErrorCode::Internal), StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(error_type(ErrorCode::Unauthorized), "authentication_error");
    }
}

//! One mapping from the core error taxonomy to HTTP. Handlers return `ApiError`; the request
//! context middleware renders the body, because only it knows the request id.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use smai_core::Error;
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

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.0.code.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut response = status.into_response();
        response.extensions_mut().insert(PendingError(self.0));
        response
    }
}

pub type ApiResult<T> = Result<T, ApiError>;

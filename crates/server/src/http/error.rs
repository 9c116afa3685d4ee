//! One mapping from the core error taxonomy to HTTP. Handlers return `ApiError`; the request
//! context middleware renders the body, because only it knows the request id.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use smai_core::Error;

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

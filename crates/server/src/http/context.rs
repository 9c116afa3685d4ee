//! Outermost middleware: request id, security headers on every response, and the one place
//! error bodies are rendered, so 401s, 404s and extractor rejections all look the same.

use super::error::{ErrorBody, ErrorDetail, PendingError};
use axum::body::Body;
use axum::extract::Request;
use axum::http::{header, HeaderName, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::Response;
use smai_core::{Error, ErrorCode};
use tracing::Instrument;

/// The request id, available to handlers and middleware as an extension.
#[derive(Clone, Debug)]
pub struct RequestId(pub String);

/// The subject of the verified client certificate of a mutual-TLS connection.
#[derive(Clone, Debug)]
pub struct ClientCertificate(pub std::sync::Arc<str>);

pub const SECURITY_HEADERS: [(&str, &str); 6] = [
    ("x-content-type-options", "nosniff"),
    ("x-frame-options", "DENY"),
    ("x-xss-protection", "1; mode=block"),
    ("strict-transport-security", "max-age=31536000; includeSubDomains"),
    ("referrer-policy", "strict-origin-when-cross-origin"),
    ("permissions-policy", "microphone=(), camera=()"),
];

/// A page of smai's own that needs more than the API's `Permissions-Policy` (the playground's
/// microphone) leaves its value here; every other response gets the product document's.
#[derive(Clone, Copy, Debug)]
pub struct PermissionsPolicy(pub &'static str);

pub async fn request_context(mut request: Request, next: Next) -> Response {
    let id = request
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| is_acceptable_request_id(v))
        .map(str::to_owned)
        .unwrap_or_else(new_request_id);
    request.extensions_mut().insert(RequestId(id.clone()));
    let client = request.extensions().get::<ClientCertificate>().cloned();
    let span = tracing::info_span!(
        "request",
        request_id = %id,
        method = %request.method(),
        path = %request.uri().path(),
        client = tracing::field::Empty,
    );
    if let Some(ClientCertificate(subject)) = &client {
        span.record("client", &**subject);
    }
    let mut response = next.run(request).instrument(span.clone()).await;
    if client.is_some() {
        // Who made each request on a mutual-TLS connection, for the audit trail.
        tracing::info!(parent: &span, status = response.status().as_u16(), "request");
    }

    let pending = response.extensions_mut().remove::<PendingError>().map(|p| p.0);
    let error = pending.or_else(|| bare_error(&response));
    if let Some(error) = error {
        let _guard = span.enter();
        render_error(&mut response, error, &id);
    }
    let permissions = response.extensions_mut().remove::<PermissionsPolicy>();
    let headers = response.headers_mut();
    for (name, value) in SECURITY_HEADERS {
        headers.insert(HeaderName::from_static(name), HeaderValue::from_static(value));
    }
    if let Some(PermissionsPolicy(value)) = permissions {
        headers.insert(HeaderName::from_static("permissions-policy"), HeaderValue::from_static(value));
    }
    headers.remove(header::SERVER);
    if let Ok(value) = HeaderValue::from_str(&id) {
        headers.insert(HeaderName::from_static("x-request-id"), value);
    }
    response
}

/// A fresh request id; also for responses made before a request could be parsed.
pub(crate) fn new_request_id() -> String {
    format!("req_{}", uuid::Uuid::new_v4().simple())
}

/// The contract's error body, as sent.
pub(crate) fn error_body(code: ErrorCode, message: &str, request_id: &str) -> String {
    let body = ErrorBody {
        error: ErrorDetail {
            code: code.as_str().to_owned(),
            message: message.to_owned(),
            kind: super::error::error_type(code).to_owned(),
            request_id: request_id.to_owned(),
        },
    };
    serde_json::to_string(&body).unwrap_or_default()
}

/// Client-supplied ids are echoed only when short and plain, so they cannot inject anything.
fn is_acceptable_request_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= 64 && id.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b))
}

/// Errors produced by the framework (body limit, method not allowed) rather than by our code.
fn bare_error(response: &Response) -> Option<Error> {
    let status = response.status();
    if !(status.is_client_error() || status.is_server_error()) {
        return None;
    }
    let code = match status {
        StatusCode::UNAUTHORIZED => ErrorCode::Unauthorized,
        StatusCode::FORBIDDEN => ErrorCode::Forbidden,
        StatusCode::NOT_FOUND => ErrorCode::NotFound,
        StatusCode::PAYLOAD_TOO_LARGE => ErrorCode::PayloadTooLarge,
        StatusCode::UNSUPPORTED_MEDIA_TYPE => ErrorCode::UnsupportedMediaType,
        StatusCode::TOO_MANY_REQUESTS => ErrorCode::RateLimitExceeded,
        StatusCode::SERVICE_UNAVAILABLE => ErrorCode::Overloaded,
        s if s.is_server_error() => ErrorCode::Internal,
        _ => ErrorCode::InvalidRequest,
    };
    let message = match code {
        ErrorCode::PayloadTooLarge => "request body is larger than the server accepts".to_owned(),
        ErrorCode::Internal => "internal server error".to_owned(),
        _ => status.canonical_reason().unwrap_or("request failed").to_lowercase(),
    };
    Some(Error::new(code, message))
}

/// Replaces the body with the contract's error JSON, keeping headers set further in (rate
/// limits among them).
fn render_error(response: &mut Response, error: Error, request_id: &str) {
    if error.code == ErrorCode::Internal {
        tracing::error!(detail = error.detail.as_deref().unwrap_or(""), "internal error");
    } else {
        tracing::debug!(code = error.code.as_str(), message = %error.message, "request refused");
    }
    // Framework rejections of bad input (422 and the like) become our 400.
    if matches!(response.status(), StatusCode::UNPROCESSABLE_ENTITY | StatusCode::LENGTH_REQUIRED) {
        *response.status_mut() = StatusCode::BAD_REQUEST;
    }
    *response.body_mut() = Body::from(error_body(error.code, &error.message, request_id));
    let headers = response.headers_mut();
    headers.remove(header::CONTENT_LENGTH);
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    if error.code == ErrorCode::Unauthorized {
        headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    }
    if let Some(after) = error.retry_after {
        let seconds = after.as_millis().div_ceil(1000).max(1);
        headers.insert(header::RETRY_AFTER, HeaderValue::from(seconds as u64));
    }
}

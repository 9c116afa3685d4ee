//! The REST surface: `router(state)` is testable without sockets.

pub mod call;
pub(crate) mod context;
pub mod cors;
mod error;
mod held_body;
mod meta;
pub mod metrics;
pub mod openapi;
pub mod playground;
mod speech;
mod speech_stream;
mod transcript_output;
mod transcriptions;

pub use error::{error_type, status_of, ApiError};

use crate::state::AppState;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use axum::{middleware, Router};
use tower_http::catch_panic::CatchPanicLayer;

pub fn router(state: AppState) -> Router {
    let open = Router::new()
        .route("/healthz", get(meta::healthz))
        .route("/readyz", get(meta::readyz))
        .route("/openapi.json", get(openapi::serve));
    let open = match state.metrics_mode {
        metrics::MetricsMode::On => open.route("/metrics", get(metrics::render)),
        metrics::MetricsMode::Off => open,
    };
    let v1 = Router::new()
        .route("/v1/models", get(meta::models))
        .route("/v1/voices", get(meta::voices))
        .route("/v1/audio/speech", post(speech::create))
        .route("/v1/audio/transcriptions", post(transcriptions::transcribe))
        .route("/v1/audio/translations", post(transcriptions::translate))
        // A panic in a handler or an engine call answers 500 (the call records it), inside the
        // call middleware so that the call's usage row sees that status.
        .route_layer(CatchPanicLayer::custom(panic_response))
        .route_layer(middleware::from_fn(call::track));
    // Sockets authenticate after the upgrade (a browser sends its key as the first message).
    let app = open
        .merge(v1)
        .merge(crate::ws::routes())
        .merge(playground::routes(state.playground))
        .fallback(meta::not_found)
        .method_not_allowed_fallback(meta::method_not_allowed)
        .layer(DefaultBodyLimit::max(state.max_body_bytes))
        // Inside the request context, so it still sees the error codes it renders.
        .layer(middleware::from_fn_with_state(state.clone(), metrics::record))
        .layer(CatchPanicLayer::custom(panic_response));
    // Preflights are answered here, before any key is asked for; off unless origins are set.
    let app = match cors::layer(&state.cors_origins) {
        Some(cors) => app.layer(cors),
        None => app,
    };
    app.layer(middleware::from_fn(context::request_context)).with_state(state)
}

/// A 500 whose detail (the panic message) goes to the log only.
fn panic_response(panic: Box<dyn std::any::Any + Send + 'static>) -> axum::response::Response {
    let detail = panic
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| panic.downcast_ref::<&str>().copied())
        .unwrap_or("a panic without a message");
    axum::response::IntoResponse::into_response(ApiError(smai_core::Error::internal(format!(
        "handler panicked: {detail}"
    ))))
}

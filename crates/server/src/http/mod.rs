//! The REST surface: `router(state)` is testable without sockets.

mod auth;
mod context;
mod error;
pub mod limits;
mod meta;
pub mod metrics;
pub mod openapi;
mod speech;
mod speech_stream;
mod transcript_output;
mod transcriptions;

pub use error::ApiError;

use crate::state::AppState;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use axum::{middleware, Router};

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
        .route_layer(middleware::from_fn_with_state(state.clone(), auth::authenticate));
    open.merge(v1)
        .fallback(meta::not_found)
        .method_not_allowed_fallback(meta::method_not_allowed)
        .layer(DefaultBodyLimit::max(state.max_body_bytes))
        // Inside the request context, so it still sees the error codes it renders.
        .layer(middleware::from_fn_with_state(state.clone(), metrics::record))
        .layer(middleware::from_fn(context::request_context))
        .with_state(state)
}

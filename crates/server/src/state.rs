//! Shared state handed to every handler: a cheap clone with `Arc`s inside.

use crate::http::metrics::MetricsMode;
use crate::http::playground::PlaygroundMode;
use crate::service::Service;
use axum::http::HeaderValue;
use std::ops::Deref;

#[derive(Clone)]
pub struct AppState {
    /// The protocol-neutral core: engines, authenticator, limiter, usage log, metrics.
    pub service: Service,
    pub max_body_bytes: usize,
    pub metrics_mode: MetricsMode,
    /// Origins allowed to call from a browser (CORS); empty: none.
    pub cors_origins: Vec<HeaderValue>,
    /// Live sockets silent for this long are closed.
    pub ws_idle_timeout: std::time::Duration,
    /// Whether the playground page is served at `/` and `/playground`.
    pub playground: PlaygroundMode,
}

/// The service's parts read through the state (`state.limiter`, `state.authenticator`).
impl Deref for AppState {
    type Target = Service;
    fn deref(&self) -> &Service {
        &self.service
    }
}

//! `GET /metrics` and the middleware that counts every response. The route label is the
//! matched route template (`unmatched` for anything else), so probing random paths cannot
//! grow the label space; latency runs to the end of the response body, so streamed audio and
//! server-sent events are timed whole.

use super::error::PendingError;
use super::held_body::HeldBody;
use crate::metrics::{AuthRejectionLabels, LimitLabels, Metrics};
use crate::state::AppState;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{header, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use clap::ValueEnum;
use smai_auth::limits::LimitKind;
use std::sync::Arc;
use std::time::Instant;

/// Whether `GET /metrics` is served. It is open like `/healthz` (Prometheus scrapers rarely
/// hold API keys) and carries no keys, key ids or organisations; turn it off, or keep the
/// port private, where request counts per route should not be public.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum MetricsMode {
    On,
    Off,
}

/// The limit behind a 429, left in the response extensions by the rate context.
#[derive(Clone, Copy, Debug)]
pub struct RateLimited(pub LimitKind);

#[utoipa::path(get, path = "/metrics", tag = "operations",
    responses((status = 200, description = "Prometheus text exposition format 0.0.4", body = String,
        content_type = "text/plain")),
    security(()))]
pub async fn render(State(state): State<AppState>) -> Response {
    let content_type = "text/plain; version=0.0.4; charset=utf-8";
    ([(header::CONTENT_TYPE, content_type)], state.metrics.render()).into_response()
}

pub async fn record(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let started = Instant::now();
    let route = request.extensions().get::<MatchedPath>().map_or("unmatched", |p| p.as_str()).to_owned();
    let method = method_label(request.method());
    let response = next.run(request).await;
    let metrics = &state.metrics;
    let status = response.status();
    metrics.observe_request(&route, method, status.as_u16());
    if matches!(status, StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN) {
        let fallback = if status == StatusCode::UNAUTHORIZED { "unauthorized" } else { "forbidden" };
        let code = response.extensions().get::<PendingError>().map_or(fallback, |e| e.0.code.as_str());
        metrics
            .auth_rejections
            .get_or_create(&AuthRejectionLabels { status: status.as_u16(), code: code.to_owned() })
            .inc();
    }
    if let Some(RateLimited(kind)) = response.extensions().get::<RateLimited>() {
        metrics.rate_limit_rejections.get_or_create(&LimitLabels { limit: kind.as_str().to_owned() }).inc();
    }
    let (parts, body) = response.into_parts();
    let record = RecordDuration { started, route, metrics: state.metrics.clone() };
    Response::from_parts(parts, HeldBody::wrap(body, record))
}

/// Only the standard methods become label values.
fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        Method::PATCH => "PATCH",
        _ => "other",
    }
}

/// Records the request's duration when its response body ends or is dropped (client gone).
struct RecordDuration {
    started: Instant,
    route: String,
    metrics: Arc<Metrics>,
}

impl Drop for RecordDuration {
    fn drop(&mut self) {
        self.metrics.observe_duration(&self.route, self.started.elapsed());
    }
}

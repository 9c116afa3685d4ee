//! Shared state handed to every handler: a cheap clone with `Arc`s inside.

use crate::config::AuthMode;
use crate::http::metrics::MetricsMode;
use crate::metrics::Metrics;
use smai_auth::{Authenticator, Limiter, UsageLog};
use smai_core::{SharedClock, Synthesizer, Tier, Transcriber};
use std::sync::Arc;

#[derive(Clone)]
pub struct AppState {
    pub auth_mode: AuthMode,
    pub authenticator: Authenticator,
    pub usage: UsageLog,
    pub limiter: Limiter,
    pub clock: SharedClock,
    pub transcriber: Option<Arc<dyn Transcriber>>,
    pub synthesizer: Option<Arc<dyn Synthesizer>>,
    /// Limits applied to the anonymous principal of no-auth mode.
    pub anonymous_tier: Tier,
    pub max_body_bytes: usize,
    pub metrics: Arc<Metrics>,
    pub metrics_mode: MetricsMode,
}

//! The protocol-neutral service core. Every protocol adapter (REST now; WebSocket, gRPC and
//! Wyoming on the same path) turns what its client presents into [`Credentials`], starts a
//! [`Call`] with [`Service::authenticate`], authorises it for one [`Operation`], and lets the
//! call admit, charge and record usage. Adapters only translate their protocol.

mod call;
mod credentials;
pub mod live;
mod operation;
pub mod recognition;
mod reservation;
mod shared;
pub mod speech;

pub use call::{Call, CallContext, CLIENT_CLOSED};
pub use credentials::Credentials;
pub use operation::{Charging, Operation};
pub use reservation::Reservation;
pub use shared::SharedCall;

use crate::config::AuthMode;
use crate::metrics::Metrics;
use smai_auth::{Authenticator, Limiter, RefusalLog, UsageLog};
use smai_core::{EngineHealth, Error, ModelInfo, Principal, SharedClock, Synthesizer, Tier, Transcriber, VoiceInfo};
use std::ops::Deref;
use std::sync::Arc;
use std::time::Instant;

/// Everything a call needs. Cheap to clone: clones share the same state.
#[derive(Clone)]
pub struct Service {
    inner: Arc<ServiceParts>,
}

/// The parts of a [`Service`]; readable through it (`service.limiter`, ...).
#[derive(Clone)]
pub struct ServiceParts {
    pub auth_mode: AuthMode,
    pub authenticator: Authenticator,
    pub limiter: Limiter,
    pub usage: UsageLog,
    /// Refused unauthenticated attempts, counted per source rather than logged one by one.
    pub refusals: RefusalLog,
    pub clock: SharedClock,
    pub metrics: Arc<Metrics>,
    /// Limits of the anonymous principal of no-auth mode.
    pub anonymous_tier: Tier,
    pub transcriber: Option<Arc<dyn Transcriber>>,
    pub synthesizer: Option<Arc<dyn Synthesizer>>,
}

impl Deref for Service {
    type Target = ServiceParts;
    fn deref(&self) -> &ServiceParts {
        &self.inner
    }
}

/// The readiness of each engine the server runs: `None` for one it was started without.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Readiness {
    pub asr: Option<EngineHealth>,
    pub tts: Option<EngineHealth>,
}

impl Service {
    pub fn new(parts: ServiceParts) -> Self {
        Self { inner: Arc::new(parts) }
    }

    /// The same service with another authentication mode (benches compare the two).
    pub fn with_auth_mode(&self, auth_mode: AuthMode, anonymous_tier: Tier) -> Self {
        Self::new(ServiceParts { auth_mode, anonymous_tier, ..ServiceParts::clone(&self.inner) })
    }

    pub fn transcriber(&self) -> Option<Arc<dyn Transcriber>> {
        self.inner.transcriber.clone()
    }

    pub fn synthesizer(&self) -> Option<Arc<dyn Synthesizer>> {
        self.inner.synthesizer.clone()
    }

    /// Starts a call: verifies the credentials (or takes the anonymous principal when
    /// authentication is disabled). A refusal is counted against the caller's source address.
    pub async fn authenticate(&self, credentials: &Credentials, context: CallContext) -> Result<Call, Error> {
        let started = Instant::now();
        match self.principal(credentials).await {
            Ok(principal) => Ok(Call::new(self.clone(), principal, context, started)),
            Err(error) => {
                let source = context.source.map_or_else(|| "unknown".to_owned(), |ip| ip.to_string());
                self.refusals.note(&source);
                Err(error)
            }
        }
    }

    /// Starts a call as a key the operator configured rather than one the caller presented:
    /// for listeners whose protocol has no authentication (Wyoming). No-auth mode runs it as
    /// the anonymous principal.
    pub async fn authenticate_as(&self, key_id: Option<&str>, context: CallContext) -> Result<Call, Error> {
        let started = Instant::now();
        let principal = self.configured_principal(key_id).await?;
        Ok(Call::new(self.clone(), principal, context, started))
    }

    /// The principal of a configured key: it must exist and be active.
    pub async fn configured_principal(&self, key_id: Option<&str>) -> Result<Principal, Error> {
        match (self.auth_mode, key_id) {
            (AuthMode::Disabled, _) => Ok(Principal::anonymous(self.anonymous_tier)),
            (AuthMode::Enabled, Some(id)) => self.authenticator.principal_of(id).await,
            (AuthMode::Enabled, None) => {
                Err(Error::unauthorized("keys are required: name the key this listener runs as (its key id)"))
            }
        }
    }

    async fn principal(&self, credentials: &Credentials) -> Result<Principal, Error> {
        match self.auth_mode {
            AuthMode::Disabled => Ok(Principal::anonymous(self.anonymous_tier)),
            AuthMode::Enabled => self.authenticator.verify(credentials.key()?).await,
        }
    }

    /// The voices `principal` may use.
    pub fn usable_voices(&self, principal: &Principal) -> Vec<VoiceInfo> {
        let voices = self.synthesizer().filter(|_| principal.can_use(smai_core::Service::Tts)).map(|s| s.voices());
        voices.unwrap_or_default().into_iter().filter(|v| principal.voices.allows(&v.id)).collect()
    }

    /// The recognition models `principal` may use.
    pub fn usable_models(&self, principal: &Principal) -> Vec<ModelInfo> {
        let models = self.transcriber().filter(|_| principal.can_use(smai_core::Service::Asr)).map(|t| t.models());
        models.unwrap_or_default()
    }

    /// Whether every engine is loaded and serving.
    pub fn readiness(&self) -> Readiness {
        let asr = self.transcriber().map(|t| match t.health() {
            EngineHealth::Serving if t.models().is_empty() => EngineHealth::Unhealthy("no model loaded".into()),
            health => health,
        });
        let tts = self.synthesizer().map(|s| match s.health() {
            EngineHealth::Serving if s.voices().is_empty() => EngineHealth::Unhealthy("no voice loaded".into()),
            health => health,
        });
        Readiness { asr, tts }
    }
}

impl Readiness {
    pub fn is_ready(&self) -> bool {
        [&self.asr, &self.tts].into_iter().flatten().all(|h| *h == EngineHealth::Serving)
    }
}

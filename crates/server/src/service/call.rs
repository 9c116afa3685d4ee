//! One call through the service core: authenticated, then authorised for one operation,
//! admitted against the key's limits, charged (at once or chunk by chunk), and recorded as
//! exactly one usage row when it ends, however it ends (finished, failed, dropped because the
//! client went away, or unwound by a panic).

use super::operation::{Charging, Operation};
use super::reservation::Reservation;
use super::Service;
use smai_auth::limits::{ConcurrencyPermit, LimitKind};
use smai_auth::{RateSnapshot, Rejection, UsageRecord};
use smai_core::{Error, ErrorCode, Principal, Synthesizer, Transcriber};
use std::sync::Arc;
use std::time::Instant;

/// Where a call came from, for its usage row and log lines.
#[derive(Debug, Clone)]
pub struct CallContext {
    pub request_id: String,
    /// The protocol's name for what was called: a REST route template, a gRPC method, ...
    pub route: String,
    /// The client's address, where the transport knows it.
    pub source: Option<std::net::IpAddr>,
}

/// Status recorded for a call dropped before it was told how it ended: the client went away.
pub const CLIENT_CLOSED: u16 = 499;

/// What the key's limits looked like for this call, for the protocol's rate headers.
enum RateView {
    Untouched,
    Admitted(RateSnapshot),
    Refused(Box<Rejection>),
}

pub struct Call {
    service: Service,
    principal: Principal,
    context: CallContext,
    started: Instant,
    operation: Option<Operation>,
    voice_checked: bool,
    permit: Option<ConcurrencyPermit>,
    /// Tokens charged so far (admission plus stream charges, less refunds).
    charged: u64,
    rate: RateView,
    status: Option<u16>,
    /// What a streamed answer was admitted for and has not delivered yet.
    reservation: Option<Reservation>,
}

impl std::fmt::Debug for Call {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Call")
            .field("request_id", &self.context.request_id)
            .field("operation", &self.operation)
            .field("charged", &self.charged)
            .finish_non_exhaustive()
    }
}

impl Call {
    pub(super) fn new(service: Service, principal: Principal, context: CallContext, started: Instant) -> Self {
        Self {
            service,
            principal,
            context,
            started,
            operation: None,
            voice_checked: false,
            permit: None,
            charged: 0,
            rate: RateView::Untouched,
            status: None,
            reservation: None,
        }
    }

    pub fn principal(&self) -> &Principal {
        &self.principal
    }

    pub fn operation(&self) -> Option<Operation> {
        self.operation
    }

    pub fn request_id(&self) -> &str {
        &self.context.request_id
    }

    /// Grants `operation` or refuses it: 403 when the key lacks its service (nothing is
    /// charged for that), 429 when the key's limits refuse it. Operations without a token
    /// cost are admitted here; the others are only checked, and admitted by [`Call::admit`]
    /// once their cost is known, so that a key already over its limits is refused before its
    /// upload is read.
    pub fn authorize(&mut self, operation: Operation) -> Result<(), Error> {
        if self.operation.is_some() {
            return Err(Error::internal("a call is authorised for one operation only"));
        }
        if let Some(service) = operation.service() {
            if !self.principal.can_use(service) {
                return Err(Error::forbidden(format!("this API key does not grant the {} service", service.as_str())));
            }
        }
        self.operation = Some(operation);
        match operation.charging() {
            Charging::RequestOnly | Charging::Stream => self.admit_with(0),
            Charging::Tokens => {
                let (key, tier) = (self.principal.limit_key(), self.principal.tier);
                self.service.limiter.precheck(key, &tier, 1).map_err(|r| self.refused(r))
            }
        }
    }

    /// Refuses a voice the key may not use (403 `voice_not_allowed`, not charged). Must pass
    /// before a call whose operation names a voice can be admitted.
    pub fn authorize_voice(&mut self, voice: &str) -> Result<(), Error> {
        if !self.principal.voices.allows(voice) {
            return Err(Error::new(ErrorCode::VoiceNotAllowed, format!("this API key may not use voice {voice:?}")));
        }
        self.voice_checked = true;
        Ok(())
    }

    /// Admits a call whose cost is now known: one request and `tokens` tokens, all limits
    /// together, holding a concurrency slot until the call ends. Once per call.
    pub fn admit(&mut self, tokens: u64) -> Result<(), Error> {
        match self.operation.map(Operation::charging) {
            Some(Charging::Tokens) => self.admit_with(tokens),
            Some(_) => Err(Error::internal("this operation was admitted when it was authorised")),
            None => Err(Error::internal("a call must be authorised before it is admitted")),
        }
    }

    fn admit_with(&mut self, tokens: u64) -> Result<(), Error> {
        let operation = self.operation.ok_or_else(|| Error::internal("admitting an unauthorised call"))?;
        if self.permit.is_some() {
            return Err(Error::internal("a call is admitted once"));
        }
        if operation.uses_voice() && operation.charging() == Charging::Tokens && !self.voice_checked {
            return Err(Error::internal("the voice must be authorised before admission"));
        }
        let (key, tier) = (self.principal.limit_key(), self.principal.tier);
        match self.service.limiter.admit(key, &tier, tokens) {
            Ok(admission) => {
                self.permit = Some(admission.permit);
                self.rate = RateView::Admitted(admission.snapshot);
                self.charged = tokens;
                Ok(())
            }
            Err(rejection) => Err(self.refused(rejection)),
        }
    }

    /// Admits a streamed answer for its whole cost, as [`Call::admit`] does; the stream marks
    /// what it delivers on the returned reservation, and what it has not delivered when the
    /// call ends (the client went away, the engine failed) is refunded.
    pub fn admit_reserved(&mut self, tokens: u64) -> Result<Reservation, Error> {
        self.admit(tokens)?;
        let reservation = Reservation::new(tokens);
        self.reservation = Some(reservation.clone());
        Ok(reservation)
    }

    /// Charges `tokens` more to an admitted stream (TPM and TPD). A refusal charges nothing;
    /// the stream should then end with the error.
    pub fn charge(&mut self, tokens: u64) -> Result<(), Error> {
        if self.permit.is_none() {
            return Err(Error::internal("charging a call that was not admitted"));
        }
        let (key, tier) = (self.principal.limit_key(), self.principal.tier);
        match self.service.limiter.charge_more(key, &tier, tokens) {
            Ok(snapshot) => {
                self.rate = RateView::Admitted(snapshot);
                self.charged += tokens;
                Ok(())
            }
            Err(rejection) => Err(self.refused(rejection)),
        }
    }

    /// Gives back tokens charged for work that was not done (at most what was charged).
    pub fn refund(&mut self, tokens: u64) {
        let tokens = tokens.min(self.charged);
        if tokens > 0 {
            self.service.limiter.refund(self.principal.limit_key(), tokens);
            self.charged -= tokens;
        }
    }

    /// Tokens the key could still be charged now (the smaller of what its TPM and TPD have
    /// left): how much audio is worth measuring before a refusal is certain.
    pub fn tokens_left(&self) -> u64 {
        let snapshot = self.service.limiter.snapshot(self.principal.limit_key(), &self.principal.tier);
        snapshot.tokens.remaining.min(snapshot.tokens_per_day.remaining)
    }

    pub fn charged(&self) -> u64 {
        self.charged
    }

    fn refused(&mut self, rejection: Rejection) -> Error {
        let error = rejection.clone().into_error();
        self.rate = RateView::Refused(Box::new(rejection));
        error
    }

    /// The limit that refused this call, if one did.
    pub fn refused_by(&self) -> Option<LimitKind> {
        match &self.rate {
            RateView::Refused(rejection) => Some(rejection.limit),
            _ => None,
        }
    }

    /// The key's limits as this call leaves them, as (lower-case name, value) pairs of the
    /// contract's rate headers (`retry-after` included after a refusal).
    pub fn rate_headers(&self) -> Vec<(&'static str, String)> {
        match &self.rate {
            RateView::Admitted(snapshot) => snapshot.headers(),
            RateView::Refused(rejection) => rejection.headers(),
            RateView::Untouched => {
                self.service.limiter.snapshot(self.principal.limit_key(), &self.principal.tier).headers()
            }
        }
    }

    /// How the call ended, in the contract's HTTP terms (every protocol's usage rows use them).
    pub fn set_status(&mut self, status: u16) {
        self.status = Some(status);
    }

    /// The speech engine, for a call authorised to use it.
    pub fn synthesizer(&self) -> Result<Arc<dyn Synthesizer>, Error> {
        self.require_service(smai_core::Service::Tts)?;
        self.service.synthesizer().ok_or_else(|| Error::not_found("no voices are loaded"))
    }

    /// The recognition engine, for a call authorised to use it.
    pub fn transcriber(&self) -> Result<Arc<dyn Transcriber>, Error> {
        self.require_service(smai_core::Service::Asr)?;
        self.service.transcriber().ok_or_else(|| Error::not_found("no speech recognition model is loaded"))
    }

    fn require_service(&self, service: smai_core::Service) -> Result<(), Error> {
        match self.operation.and_then(Operation::service) {
            Some(granted) if granted == service => Ok(()),
            _ => Err(Error::internal(format!("the call is not authorised for the {} service", service.as_str()))),
        }
    }
}

impl Drop for Call {
    fn drop(&mut self) {
        let status = self.status.unwrap_or(if std::thread::panicking() { 500 } else { CLIENT_CLOSED });
        if let Some(reservation) = self.reservation.take() {
            self.refund(reservation.undelivered());
        }
        // Work that failed on our side costs the caller nothing.
        if status >= 500 {
            self.refund(self.charged);
        }
        if status < 400 {
            if let Some(key_id) = &self.principal.key_id {
                self.service.authenticator.record_use(key_id);
            }
        }
        let service = self.operation.and_then(Operation::service);
        let charged = self.charged > 0 || matches!(self.rate, RateView::Admitted(_));
        self.service.usage.record(UsageRecord {
            at_ms: self.service.clock.now_ms(),
            key_id: self.principal.key_id.clone(),
            org: Some(self.principal.org.clone()),
            service: service.filter(|_| charged).map(|s| s.as_str().to_owned()),
            route: std::mem::take(&mut self.context.route),
            tokens: self.charged,
            status,
            latency_ms: self.started.elapsed().as_millis() as u64,
            request_id: std::mem::take(&mut self.context.request_id),
        });
    }
}

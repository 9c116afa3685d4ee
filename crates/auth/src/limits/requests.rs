//! Requests per minute, decided by governor's GCRA.
//!
//! `Quota::per_minute(rpm)` lets a full bucket of `rpm` requests through at once and then
//! one every `60 s / rpm`. The documented burst: in any interval of length `w`, at most
//! `rpm + ⌊w / (60 s / rpm)⌋` requests are admitted, so a 60-second window can see up to
//! `2 · rpm − 1` requests when a client drains a full bucket and then keeps pace.
//!
//! governor reads time from [`AdmissionClock`], which returns the instant of the admission
//! being decided, so every limit of one admission is judged at the same millisecond of the
//! injected `smai_core::Clock`. The GCRA state lives in [`TatCell`], our own state store,
//! so remaining requests and reset can be read without consuming a request.

use governor::clock::Clock as GovernorClock;
use governor::middleware::NoOpMiddleware;
use governor::nanos::Nanos;
use governor::state::{NotKeyed, StateStore};
use governor::{Quota, RateLimiter};
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

const NANOS_PER_MS: u64 = 1_000_000;

/// What governor's clock and state store share with us: the pinned instant and the GCRA's
/// theoretical arrival time (ns since the limiter was built, 0 for none).
#[derive(Debug, Default)]
struct Shared {
    now_ns: AtomicU64,
    tat_ns: AtomicU64,
}

/// Adapter from our millisecond clock to governor's clock trait: it returns the instant that
/// the caller pinned for the decision at hand.
#[derive(Debug, Clone)]
pub(crate) struct AdmissionClock(Arc<Shared>);

impl AdmissionClock {
    fn pin(&self, now_ms: i64) {
        self.0.now_ns.store(now_ms.max(0) as u64 * NANOS_PER_MS, Ordering::Relaxed);
    }
}

impl GovernorClock for AdmissionClock {
    type Instant = Nanos;
    fn now(&self) -> Nanos {
        Nanos::from(self.0.now_ns.load(Ordering::Relaxed))
    }
}

/// governor's state store, readable by us so usage can be reported without consuming.
#[derive(Debug)]
pub(crate) struct TatCell(Arc<Shared>);

impl StateStore for TatCell {
    type Key = NotKeyed;

    fn measure_and_replace<T, F, E>(&self, _key: &NotKeyed, f: F) -> Result<T, E>
    where
        F: Fn(Option<Nanos>) -> Result<(T, Nanos), E>,
    {
        // Callers hold the key's lock, so a plain load and store cannot race.
        let prev = self.0.tat_ns.load(Ordering::Acquire);
        let (result, next) = f((prev != 0).then(|| Nanos::from(prev)))?;
        self.0.tat_ns.store(next.as_u64(), Ordering::Release);
        Ok(result)
    }
}

/// One key's request limiter.
pub(crate) struct RequestLimiter {
    rpm: u32,
    start_ms: i64,
    clock: AdmissionClock,
    governor: RateLimiter<NotKeyed, TatCell, AdmissionClock, NoOpMiddleware<Nanos>>,
    /// Emission interval and tolerance of the GCRA, in ns.
    t: u64,
    tau: u64,
}

impl std::fmt::Debug for RequestLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RequestLimiter").field("rpm", &self.rpm).field("tat", &self.tat()).finish()
    }
}

impl RequestLimiter {
    pub(crate) fn new(rpm: NonZeroU32, now_ms: i64) -> Self {
        let quota = Quota::per_minute(rpm);
        let shared = Arc::new(Shared::default());
        let clock = AdmissionClock(shared.clone());
        clock.pin(now_ms);
        let governor = RateLimiter::new(quota, TatCell(shared), clock.clone());
        let t = (quota.replenish_interval().as_nanos() as u64).max(1);
        let tau = t * u64::from(rpm.get() - 1);
        Self { rpm: rpm.get(), start_ms: now_ms.max(0), clock, governor, t, tau }
    }

    pub(crate) fn rpm(&self) -> u32 {
        self.rpm
    }

    fn tat(&self) -> Option<u64> {
        let tat = self.clock.0.tat_ns.load(Ordering::Acquire);
        (tat != 0).then_some(tat)
    }

    fn elapsed_ns(&self, now_ms: i64) -> u64 {
        (now_ms.max(0) - self.start_ms).max(0) as u64 * NANOS_PER_MS
    }

    /// Takes one request if the GCRA allows it; otherwise how long until it would.
    pub(crate) fn try_take(&self, now_ms: i64) -> Result<(), Duration> {
        self.clock.pin(now_ms);
        let now = self.clock.now();
        self.governor.check().map_err(|not_until| not_until.wait_time_from(now))
    }

    /// How long until a request would be admitted, without taking one.
    pub(crate) fn wait(&self, now_ms: i64) -> Duration {
        let now = self.elapsed_ns(now_ms);
        let earliest = self.tat().map_or(0, |tat| tat.saturating_sub(self.tau));
        Duration::from_nanos(earliest.saturating_sub(now))
    }

    /// Requests that could be admitted right now.
    pub(crate) fn remaining(&self, now_ms: i64) -> u64 {
        let Some(tat) = self.tat() else { return u64::from(self.rpm) };
        let now = self.elapsed_ns(now_ms);
        ((now + self.tau + self.t).saturating_sub(tat) / self.t).min(u64::from(self.rpm))
    }

    /// Time until the bucket is full again.
    pub(crate) fn reset_after(&self, now_ms: i64) -> Duration {
        let now = self.elapsed_ns(now_ms);
        Duration::from_nanos(self.tat().map_or(0, |tat| tat.saturating_sub(now)))
    }
}

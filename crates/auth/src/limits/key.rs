//! The limit state of one key, always read and changed under the key's lock.

use super::requests::RequestLimiter;
use super::snapshot::{LimitStatus, RateSnapshot};
use super::window::SlidingWindow;
use smai_core::Tier;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

/// Tokens per minute: a 60 s window in 1 s slots (a charge is forgotten 60–61 s later).
pub const TPM_WINDOW: Duration = Duration::from_secs(60);
pub(crate) const TPM_SLOT_MS: i64 = 1_000;
/// Tokens per day: a rolling 24 h window in 15 min slots (forgotten 24 h to 24 h 15 min later).
pub const TPD_WINDOW: Duration = Duration::from_secs(86_400);
pub(crate) const TPD_SLOT_MS: i64 = 900_000;

/// Start of the oldest TPD slot still counted at `now_ms`; older records are stale.
pub(crate) fn tpd_oldest_counted_start(now_ms: i64) -> i64 {
    let slots = TPD_WINDOW.as_millis() as i64 / TPD_SLOT_MS;
    (now_ms.div_euclid(TPD_SLOT_MS) - slots) * TPD_SLOT_MS
}

#[derive(Debug)]
pub(crate) struct KeyEntry {
    /// Open requests and streams; incremented under the lock, decremented by permits.
    pub(crate) open: AtomicU32,
    state: Mutex<KeyState>,
}

#[derive(Debug)]
pub(crate) struct KeyState {
    /// Built on the first request, rebuilt (full) when the tier's RPM changes.
    requests: Option<RequestLimiter>,
    pub(crate) tpm: SlidingWindow,
    pub(crate) tpd: SlidingWindow,
    /// TPD changed since it was last written to the store.
    pub(crate) dirty: bool,
}

impl KeyEntry {
    pub(crate) fn new(now_ms: i64) -> Self {
        Self {
            open: AtomicU32::new(0),
            state: Mutex::new(KeyState {
                requests: None,
                tpm: SlidingWindow::new(TPM_WINDOW.as_millis() as i64, TPM_SLOT_MS, now_ms),
                tpd: SlidingWindow::new(TPD_WINDOW.as_millis() as i64, TPD_SLOT_MS, now_ms),
                dirty: false,
            }),
        }
    }

    /// The key's state, moved forward to `now_ms`. Nothing panics while holding the lock,
    /// but a poisoned lock still holds consistent counters, so it is used as is.
    pub(crate) fn lock(&self, now_ms: i64) -> MutexGuard<'_, KeyState> {
        let mut state = self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        state.tpm.advance(now_ms);
        state.tpd.advance(now_ms);
        state
    }

    pub(crate) fn open(&self) -> u32 {
        self.open.load(Ordering::Acquire)
    }
}

impl KeyState {
    /// The request limiter for `rpm`, built or rebuilt as needed.
    pub(crate) fn requests(&mut self, rpm: NonZeroU32, now_ms: i64) -> &RequestLimiter {
        if self.requests.as_ref().is_none_or(|r| r.rpm() != rpm.get()) {
            self.requests = Some(RequestLimiter::new(rpm, now_ms));
        }
        self.requests.as_ref().expect("just built")
    }

    /// How long until one more request fits, without taking it.
    pub(crate) fn request_wait(&self, tier: &Tier, now_ms: i64) -> Duration {
        match &self.requests {
            Some(r) if r.rpm() == tier.rpm => r.wait(now_ms),
            _ => Duration::ZERO,
        }
    }

    /// What a key that was never charged looks like.
    pub(crate) fn fresh_snapshot(tier: &Tier) -> RateSnapshot {
        RateSnapshot {
            requests: LimitStatus::full(u64::from(tier.rpm)),
            tokens: LimitStatus::full(u64::from(tier.tpm)),
            tokens_per_day: LimitStatus::full(u64::from(tier.tpd)),
            concurrency_limit: tier.concurrency,
            concurrency_open: 0,
        }
    }

    pub(crate) fn snapshot(&self, tier: &Tier, open: u32, now_ms: i64) -> RateSnapshot {
        let requests = match &self.requests {
            Some(r) if r.rpm() == tier.rpm => {
                LimitStatus { limit: u64::from(tier.rpm), remaining: r.remaining(now_ms), reset: r.reset_after(now_ms) }
            }
            _ => LimitStatus::full(u64::from(tier.rpm)),
        };
        let tokens = |window: &SlidingWindow, limit: u32| LimitStatus {
            limit: u64::from(limit),
            remaining: u64::from(limit).saturating_sub(window.used()),
            reset: window.reset_after(now_ms),
        };
        RateSnapshot {
            requests,
            tokens: tokens(&self.tpm, tier.tpm),
            tokens_per_day: tokens(&self.tpd, tier.tpd),
            concurrency_limit: tier.concurrency,
            concurrency_open: open,
        }
    }

    /// Nothing left to remember: the entry can be dropped and rebuilt later unchanged.
    /// With a store, usage not yet written must be written first.
    pub(crate) fn is_idle(&self, now_ms: i64, persisted: bool) -> bool {
        !(persisted && self.dirty)
            && self.tpm.is_empty()
            && self.tpd.is_empty()
            && self.requests.as_ref().is_none_or(|r| r.reset_after(now_ms).is_zero())
    }
}

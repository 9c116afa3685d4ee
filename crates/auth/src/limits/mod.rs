//! Per-key limits: requests per minute (RPM), tokens per minute (TPM), tokens per rolling
//! day (TPD) and open requests (concurrency). Not tied to a protocol: REST, WebSocket and
//! gRPC all call [`Limiter::admit`] once a key is authenticated (401 and 403 never get here,
//! so they are never charged).
//!
//! * RPM: governor's GCRA, a bucket of `rpm` requests refilled one every `60 s / rpm`
//!   (see `requests.rs` for the burst this allows). Reset: time until the bucket is full.
//! * TPM and TPD: rolling windows of 60 s and 24 h kept in slots of 1 s and 15 min (see
//!   `window.rs`). The quota is strict in every window; a charge is forgotten between one
//!   window and one window plus one slot after it was made. Reset: time until every token
//!   now counted has left the window.
//! * Concurrency: a count of open requests and streams; each admission holds a
//!   [`ConcurrencyPermit`] that gives its slot back when dropped.
//!
//! An admission checks every limit under the key's lock and then commits all of them, so a
//! rejection by one limit consumes nothing of the others. Budgets are per key id: keys of
//! one organisation share nothing unless the caller passes them the same id.
//!
//! Memory: a key's entry is dropped by [`Limiter::sweep`] once it holds nothing (no open
//! request, full request bucket, empty token windows, TPD written to the store), so entries
//! are bounded by the keys used in the last day.
//!
//! Persistence: TPD usage is written to SQLite (table `token_usage`) every
//! [`MAINTENANCE_INTERVAL`] by [`Limiter::spawn_maintenance`] and by [`Limiter::flush`] at
//! shutdown, and read back by [`Limiter::with_store`]. A crash loses at most the TPD charged
//! in the last 5 seconds (plus the time one write takes). RPM and TPM restart full.

mod cost;
mod key;
mod outcome;
mod persist;
mod requests;
mod snapshot;
mod window;

pub use cost::{asr_tokens, tts_tokens};
pub use key::{TPD_WINDOW, TPM_WINDOW};
pub use outcome::{Admission, ConcurrencyPermit, LimitKind, Rejection};
pub use persist::LimitStoreError;
pub use snapshot::{format_reset, whole_seconds, LimitStatus, RateSnapshot};

use dashmap::mapref::one::Ref;
use dashmap::DashMap;
use key::{KeyEntry, KeyState};
use smai_core::{SharedClock, Tier};
use sqlx::SqlitePool;
use std::num::NonZeroU32;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::time::Duration;

/// How often the maintenance task writes TPD usage and evicts idle keys.
pub const MAINTENANCE_INTERVAL: Duration = Duration::from_secs(5);

/// A concurrency rejection cannot know when a slot frees up; this is the hint it gives.
pub const CONCURRENCY_RETRY: Duration = Duration::from_secs(1);

const RPM_WINDOW: Duration = Duration::from_secs(60);

/// Cheap to clone: clones share the same state.
#[derive(Clone)]
pub struct Limiter {
    inner: Arc<Inner>,
}

struct Inner {
    clock: SharedClock,
    keys: DashMap<String, Arc<KeyEntry>>,
    store: Option<SqlitePool>,
    /// One write at a time, so an older snapshot never lands after a newer one.
    flushing: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for Limiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Limiter").field("keys", &self.inner.keys.len()).finish()
    }
}

impl Limiter {
    /// A limiter that keeps everything in memory (TPD does not survive a restart).
    pub fn new(clock: SharedClock) -> Self {
        Self::build(clock, None)
    }

    /// A limiter whose TPD usage lives in `pool` (migrations applied), loaded now.
    pub async fn with_store(clock: SharedClock, pool: SqlitePool) -> Result<Self, LimitStoreError> {
        let limiter = Self::build(clock, Some(pool.clone()));
        let now = limiter.now();
        let since = key::tpd_oldest_counted_start(now);
        for (key_id, start_ms, tokens) in persist::load(&pool, since).await? {
            let entry = limiter.entry(&key_id, now);
            entry.lock(now).tpd.restore(start_ms, tokens);
        }
        Ok(limiter)
    }

    fn build(clock: SharedClock, store: Option<SqlitePool>) -> Self {
        let inner = Inner { clock, keys: DashMap::new(), store, flushing: tokio::sync::Mutex::new(()) };
        Self { inner: Arc::new(inner) }
    }

    fn now(&self) -> i64 {
        self.inner.clock.now_ms()
    }

    /// The key's entry, created if missing. While the returned guard lives the entry
    /// cannot be evicted.
    fn entry(&self, key_id: &str, now_ms: i64) -> Ref<'_, String, Arc<KeyEntry>> {
        if let Some(entry) = self.inner.keys.get(key_id) {
            return entry;
        }
        self.inner.keys.entry(key_id.to_owned()).or_insert_with(|| Arc::new(KeyEntry::new(now_ms))).downgrade()
    }

    /// Checks every limit of `key_id` for one request costing `tokens`, and charges all of
    /// them or none.
    // A rejection carries its snapshot for the 429's headers; it is returned rarely.
    #[allow(clippy::result_large_err)]
    pub fn admit(&self, key_id: &str, tier: &Tier, tokens: u64) -> Result<Admission, Rejection> {
        let now = self.now();
        let entry_ref = self.entry(key_id, now);
        let entry = entry_ref.value();
        let mut state = entry.lock(now);
        let open = entry.open();
        if let Some(rejection) = refusal(&state, tier, tokens, open, now) {
            return Err(rejection);
        }
        let rpm = NonZeroU32::new(tier.rpm).expect("zero RPM is rejected as impossible");
        if let Err(wait) = state.requests(rpm, now).try_take(now) {
            let message = exceeded_message(LimitKind::RequestsPerMinute, tier, tokens, wait);
            let snapshot = state.snapshot(tier, open, now);
            return Err(rejection(snapshot, LimitKind::RequestsPerMinute, wait, false, message));
        }

        state.tpm.charge(tokens);
        state.tpd.charge(tokens);
        state.dirty |= tokens > 0;
        entry.open.fetch_add(1, Ordering::AcqRel);
        let snapshot = state.snapshot(tier, open + 1, now);
        drop(state);
        Ok(Admission { permit: ConcurrencyPermit { entry: Arc::clone(entry) }, snapshot })
    }

    /// Whether [`Limiter::admit`] of one request costing at least `tokens` would be refused
    /// now, charging nothing: lets a caller refuse before reading an upload whose exact cost
    /// it does not know yet.
    #[allow(clippy::result_large_err)]
    pub fn precheck(&self, key_id: &str, tier: &Tier, tokens: u64) -> Result<(), Rejection> {
        let now = self.now();
        match self.inner.keys.get(key_id) {
            Some(entry) => refusal(&entry.lock(now), tier, tokens, entry.open(), now).map_or(Ok(()), Err),
            // A key with no entry has nothing charged: only an impossible cost can refuse.
            None => refusal(&KeyEntry::new(now).lock(now), tier, tokens, 0, now).map_or(Ok(()), Err),
        }
    }

    /// Charges `tokens` more to an open stream of `key_id` (TPM and TPD only, both or
    /// neither). On rejection the stream should end; nothing was charged.
    #[allow(clippy::result_large_err)]
    pub fn charge_more(&self, key_id: &str, tier: &Tier, tokens: u64) -> Result<RateSnapshot, Rejection> {
        let now = self.now();
        let entry_ref = self.entry(key_id, now);
        let entry = entry_ref.value();
        let mut state = entry.lock(now);
        let open = entry.open();
        let reject = |state: &KeyState, limit, retry_after, cannot_succeed, message| {
            rejection(state.snapshot(tier, open, now), limit, retry_after, cannot_succeed, message)
        };
        if let Some((limit, window, message)) = impossible(tier, tokens, false) {
            return Err(reject(&state, limit, window, true, message));
        }
        if let Some((limit, wait)) = token_waits(&state, tier, tokens, now).into_iter().max_by_key(|(_, w)| *w) {
            let message = exceeded_message(limit, tier, tokens, wait);
            return Err(reject(&state, limit, wait, false, message));
        }
        state.tpm.charge(tokens);
        state.tpd.charge(tokens);
        state.dirty |= tokens > 0;
        Ok(state.snapshot(tier, open, now))
    }

    /// Gives back tokens charged for work that was not done (TPM and TPD, newest first).
    pub fn refund(&self, key_id: &str, tokens: u64) {
        let now = self.now();
        if let Some(entry) = self.inner.keys.get(key_id) {
            let mut state = entry.lock(now);
            state.tpm.refund(tokens);
            state.tpd.refund(tokens);
            state.dirty |= tokens > 0;
        }
    }

    /// The key's limits now, charging nothing (for headers of responses not admitted here).
    pub fn snapshot(&self, key_id: &str, tier: &Tier) -> RateSnapshot {
        let now = self.now();
        match self.inner.keys.get(key_id) {
            Some(entry) => entry.lock(now).snapshot(tier, entry.open(), now),
            None => KeyState::fresh_snapshot(tier),
        }
    }

    /// Keys currently held in memory.
    pub fn tracked_keys(&self) -> usize {
        self.inner.keys.len()
    }

    /// Drops entries that hold nothing any more; returns how many were dropped.
    pub fn sweep(&self) -> usize {
        let now = self.now();
        let persisted = self.inner.store.is_some();
        let before = self.inner.keys.len();
        self.inner.keys.retain(|_, entry| entry.open() > 0 || !entry.lock(now).is_idle(now, persisted));
        before.saturating_sub(self.inner.keys.len())
    }

    /// Writes TPD usage changed since the last write. Call at shutdown; without a store it
    /// does nothing.
    pub async fn flush(&self) -> Result<(), LimitStoreError> {
        let Some(pool) = &self.inner.store else { return Ok(()) };
        let _one_at_a_time = self.inner.flushing.lock().await;
        let now = self.now();
        let mut batch = Vec::new();
        for entry in self.inner.keys.iter() {
            let mut state = entry.lock(now);
            if state.dirty {
                state.dirty = false;
                batch.push((entry.key().clone(), state.tpd.slots()));
            }
        }
        if batch.is_empty() {
            return Ok(());
        }
        if let Err(error) = persist::write(pool, &batch, key::tpd_oldest_counted_start(now)).await {
            for (key_id, _) in &batch {
                if let Some(entry) = self.inner.keys.get(key_id) {
                    entry.lock(now).dirty = true;
                }
            }
            return Err(error);
        }
        Ok(())
    }

    /// Every [`MAINTENANCE_INTERVAL`]: writes TPD usage and evicts idle keys. Stops by itself
    /// once every handle of the limiter is dropped; call [`Limiter::flush`] at shutdown.
    pub fn spawn_maintenance(&self) -> tokio::task::JoinHandle<()> {
        self.spawn_maintenance_every(MAINTENANCE_INTERVAL)
    }

    /// [`Limiter::spawn_maintenance`] with another interval (a crash loses up to `every`).
    pub fn spawn_maintenance_every(&self, every: Duration) -> tokio::task::JoinHandle<()> {
        let weak: Weak<Inner> = Arc::downgrade(&self.inner);
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval(every);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            ticks.tick().await;
            loop {
                ticks.tick().await;
                let Some(inner) = weak.upgrade() else { break };
                let limiter = Limiter { inner };
                if let Err(error) = limiter.flush().await {
                    tracing::warn!(%error, "writing token usage failed; will retry");
                }
                limiter.sweep();
            }
        })
    }
}

/// The rejection of one request costing `tokens` by the key's limits as they stand, if any.
fn refusal(state: &KeyState, tier: &Tier, tokens: u64, open: u32, now: i64) -> Option<Rejection> {
    let reject = |limit, retry_after, cannot_succeed, message| {
        Some(rejection(state.snapshot(tier, open, now), limit, retry_after, cannot_succeed, message))
    };
    if let Some((limit, window, message)) = impossible(tier, tokens, true) {
        return reject(limit, window, true, message);
    }
    let mut waits = token_waits(state, tier, tokens, now);
    let request_wait = state.request_wait(tier, now);
    if !request_wait.is_zero() {
        waits.push((LimitKind::RequestsPerMinute, request_wait));
    }
    let longest = waits.iter().copied().max_by_key(|(_, wait)| *wait);
    if open >= tier.concurrency {
        let retry = longest.map_or(CONCURRENCY_RETRY, |(_, wait)| wait.max(CONCURRENCY_RETRY));
        let message =
            format!("concurrency limit of {} open requests reached; retry when one of them finishes", tier.concurrency);
        return reject(LimitKind::Concurrency, retry, false, message);
    }
    let (limit, wait) = longest?;
    reject(limit, wait, false, exceeded_message(limit, tier, tokens, wait))
}

/// A cost or limit that no amount of waiting satisfies: `(limit, window, message)`.
fn impossible(tier: &Tier, tokens: u64, new_request: bool) -> Option<(LimitKind, Duration, String)> {
    let retry_cannot_help = "retrying cannot help";
    if new_request && tier.rpm == 0 {
        let message = format!("this key may make no requests (limit 0 per minute); {retry_cannot_help}");
        return Some((LimitKind::RequestsPerMinute, RPM_WINDOW, message));
    }
    if new_request && tier.concurrency == 0 {
        let message = format!("this key may hold no open requests (limit 0); {retry_cannot_help}");
        return Some((LimitKind::Concurrency, RPM_WINDOW, message));
    }
    for (limit, quota, window, per) in [
        (LimitKind::TokensPerMinute, tier.tpm, TPM_WINDOW, "minute"),
        (LimitKind::TokensPerDay, tier.tpd, TPD_WINDOW, "day"),
    ] {
        if tokens > u64::from(quota) {
            let message = format!(
                "this request costs {tokens} tokens, more than the limit of {quota} tokens per {per}; \
                 {retry_cannot_help}: send a smaller request"
            );
            return Some((limit, window, message));
        }
    }
    None
}

/// Token limits that `tokens` more would exceed now, each with its wait.
fn token_waits(state: &KeyState, tier: &Tier, tokens: u64, now_ms: i64) -> Vec<(LimitKind, Duration)> {
    [(LimitKind::TokensPerMinute, &state.tpm, tier.tpm), (LimitKind::TokensPerDay, &state.tpd, tier.tpd)]
        .into_iter()
        .filter_map(|(limit, window, quota)| match window.wait_for(tokens, u64::from(quota), now_ms) {
            Some(wait) if !wait.is_zero() => Some((limit, wait)),
            _ => None,
        })
        .collect()
}

fn exceeded_message(limit: LimitKind, tier: &Tier, tokens: u64, wait: Duration) -> String {
    let retry = whole_seconds(wait);
    match limit {
        LimitKind::RequestsPerMinute => {
            format!("rate limit of {} requests per minute exceeded; retry after {retry}s", tier.rpm)
        }
        LimitKind::TokensPerMinute => format!(
            "rate limit of {} tokens per minute exceeded by this request's {tokens} tokens; retry after {retry}s",
            tier.tpm
        ),
        LimitKind::TokensPerDay => format!(
            "rate limit of {} tokens per day exceeded by this request's {tokens} tokens; retry after {retry}s",
            tier.tpd
        ),
        LimitKind::Concurrency => format!("concurrency limit of {} reached", tier.concurrency),
    }
}

/// A refusal with the key's limits as they stood, for the 429's headers.
fn rejection(
    snapshot: RateSnapshot,
    limit: LimitKind,
    retry_after: Duration,
    cannot_succeed: bool,
    message: String,
) -> Rejection {
    Rejection { limit, retry_after, cannot_succeed, snapshot, message }
}

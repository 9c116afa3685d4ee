//! Turns a presented key into a Principal. Verified keys are cached by digest for a short TTL
//! so the hot path does not touch SQLite; revocation takes effect within that TTL.

use crate::key::{ApiKey, KeyDigest};
use crate::store::{KeyRecord, KeyStore};
use smai_core::{Error, Principal, SharedClock};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

#[derive(Debug, Clone, Copy)]
pub struct AuthenticatorConfig {
    /// How long a lookup (hit or miss) is trusted; also the bound on revocation delay.
    pub cache_ttl: Duration,
    /// `last_used_at` is written at most this often per key.
    pub touch_interval: Duration,
    /// Past this many cached digests, stale entries are swept before inserting.
    pub max_cache_entries: usize,
}

impl Default for AuthenticatorConfig {
    fn default() -> Self {
        Self { cache_ttl: Duration::from_secs(5), touch_interval: Duration::from_secs(60), max_cache_entries: 100_000 }
    }
}

#[derive(Clone)]
struct CacheEntry {
    record: Option<Arc<KeyRecord>>,
    fetched_at_ms: i64,
}

#[derive(Clone)]
pub struct Authenticator {
    store: KeyStore,
    clock: SharedClock,
    config: AuthenticatorConfig,
    cache: Arc<RwLock<HashMap<KeyDigest, CacheEntry>>>,
    last_touch_ms: Arc<Mutex<HashMap<String, i64>>>,
}

impl Authenticator {
    pub fn new(store: KeyStore, clock: SharedClock, config: AuthenticatorConfig) -> Self {
        Self { store, clock, config, cache: Default::default(), last_touch_ms: Default::default() }
    }

    pub fn store(&self) -> &KeyStore {
        &self.store
    }

    /// Verifies a presented key. Malformed keys are refused before any cache or database work.
    pub async fn verify(&self, presented: &str) -> Result<Principal, Error> {
        let key = ApiKey::parse(presented).map_err(|e| Error::unauthorized(format!("invalid API key: {e}")))?;
        let digest = key.digest();
        drop(key);
        let now = self.clock.now_ms();
        let record = match self.cached(&digest, now) {
            Some(record) => record,
            None => {
                let record = self.store.find_by_digest(&digest).await.map_err(Error::internal)?.map(Arc::new);
                self.remember(digest, record.clone(), now);
                record
            }
        };
        let record = record.ok_or_else(|| Error::unauthorized("invalid API key"))?;
        if !record.is_active(now) {
            return Err(Error::unauthorized("API key is revoked or expired"));
        }
        Ok(record.principal())
    }

    /// The principal of the key with this id, for a listener configured to run as it (the
    /// key's secret is not needed). Looked up each time, so revocation takes effect at once.
    pub async fn principal_of(&self, key_id: &str) -> Result<Principal, Error> {
        let record = self.store.get(key_id).await.map_err(Error::internal)?;
        let record = record.ok_or_else(|| Error::unauthorized(format!("no API key has the id {key_id:?}")))?;
        if !record.is_active(self.clock.now_ms()) {
            return Err(Error::unauthorized(format!("API key {key_id:?} is revoked or expired")));
        }
        Ok(record.principal())
    }

    fn cached(&self, digest: &KeyDigest, now: i64) -> Option<Option<Arc<KeyRecord>>> {
        let cache = self.cache.read().unwrap_or_else(|p| p.into_inner());
        let entry = cache.get(digest)?;
        let ttl = self.config.cache_ttl.as_millis() as i64;
        (now - entry.fetched_at_ms < ttl && now >= entry.fetched_at_ms).then(|| entry.record.clone())
    }

    fn remember(&self, digest: KeyDigest, record: Option<Arc<KeyRecord>>, now: i64) {
        let mut cache = self.cache.write().unwrap_or_else(|p| p.into_inner());
        if cache.len() >= self.config.max_cache_entries {
            let ttl = self.config.cache_ttl.as_millis() as i64;
            cache.retain(|_, e| now - e.fetched_at_ms < ttl);
            if cache.len() >= self.config.max_cache_entries {
                cache.clear();
            }
        }
        cache.insert(digest, CacheEntry { record, fetched_at_ms: now });
    }

    /// Records that the key was used for a call that succeeded (`last_used_at`), at most
    /// once per `touch_interval` per key, off the request path.
    pub fn record_use(&self, key_id: &str) {
        let now = self.clock.now_ms();
        let interval = self.config.touch_interval.as_millis() as i64;
        {
            let mut touched = self.last_touch_ms.lock().unwrap_or_else(|p| p.into_inner());
            // Look up before inserting so the hot path does not allocate the id.
            match touched.get_mut(key_id) {
                Some(last) if now - *last < interval => return,
                Some(last) => *last = now,
                None => {
                    touched.insert(key_id.to_owned(), now);
                }
            }
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else { return };
        let store = self.store.clone();
        let id = key_id.to_owned();
        runtime.spawn(async move {
            if let Err(e) = store.touch(&id, now).await {
                tracing::warn!(key_id = %id, error = %e, "could not record key use");
            }
        });
    }
}

//! Refused unauthenticated attempts (bad, missing or revoked keys), counted per source address
//! in memory and written as one row per source per period. A per-request row would let a
//! client without a key write thousands of rows a second; counts keep the log's size bounded
//! by sources and time, and metrics count every attempt as it happens.

use smai_core::SharedClock;
use sqlx::SqlitePool;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How often the counts are written.
pub const REFUSALS_EVERY: Duration = Duration::from_secs(60);
/// Distinct sources counted per period; beyond it attempts are counted under [`OTHER_SOURCES`].
const MAX_SOURCES: usize = 10_000;
pub const OTHER_SOURCES: &str = "other";

#[derive(Clone)]
pub struct RefusalLog {
    counts: Arc<Mutex<HashMap<String, u64>>>,
    pool: SqlitePool,
    clock: SharedClock,
}

impl RefusalLog {
    /// A log writing every [`REFUSALS_EVERY`] until every handle is dropped.
    pub fn start(pool: SqlitePool, clock: SharedClock) -> Self {
        let log = Self { counts: Default::default(), pool, clock };
        let weak = Arc::downgrade(&log.counts);
        let writer = log.clone_detached();
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval(REFUSALS_EVERY);
            ticks.tick().await;
            loop {
                ticks.tick().await;
                if weak.upgrade().is_none() {
                    break;
                }
                writer.flush().await;
            }
        });
        log
    }

    /// A handle for the writer task that does not keep the counts alive by itself.
    fn clone_detached(&self) -> DetachedWriter {
        DetachedWriter { counts: Arc::downgrade(&self.counts), pool: self.pool.clone(), clock: self.clock.clone() }
    }

    /// Counts one refused attempt from `source`.
    pub fn note(&self, source: &str) {
        let mut counts = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(count) = counts.get_mut(source) {
            *count += 1;
        } else if counts.len() < MAX_SOURCES {
            counts.insert(source.to_owned(), 1);
        } else {
            *counts.entry(OTHER_SOURCES.to_owned()).or_default() += 1;
        }
    }

    /// Writes the counts so far (call at shutdown).
    pub async fn flush(&self) {
        self.clone_detached().flush().await;
    }
}

struct DetachedWriter {
    counts: std::sync::Weak<Mutex<HashMap<String, u64>>>,
    pool: SqlitePool,
    clock: SharedClock,
}

impl DetachedWriter {
    async fn flush(&self) {
        let Some(counts) = self.counts.upgrade() else { return };
        let taken = std::mem::take(&mut *counts.lock().unwrap_or_else(|p| p.into_inner()));
        if taken.is_empty() {
            return;
        }
        if let Err(e) = write(&self.pool, self.clock.now_ms(), &taken).await {
            tracing::warn!(error = %e, sources = taken.len(), "writing refused attempts failed; kept for the next write");
            let mut counts = counts.lock().unwrap_or_else(|p| p.into_inner());
            for (source, attempts) in taken {
                *counts.entry(source).or_default() += attempts;
            }
        }
    }
}

async fn write(pool: &SqlitePool, at_ms: i64, counts: &HashMap<String, u64>) -> Result<(), sqlx::Error> {
    let mut tx = pool.begin().await?;
    for (source, attempts) in counts {
        sqlx::query("INSERT INTO auth_refusals (at, source, attempts) VALUES (?, ?, ?)")
            .bind(at_ms)
            .bind(source)
            .bind(*attempts as i64)
            .execute(&mut *tx)
            .await?;
    }
    tx.commit().await
}

//! Usage log: one row per request, written in batches by a background task so the request
//! path never waits on SQLite. `shutdown` drains everything queued before returning. Rows
//! older than the retention period are deleted as the log goes, so the table stays bounded.

use smai_core::SharedClock;
use sqlx::SqlitePool;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

#[derive(Debug, Clone, PartialEq)]
pub struct UsageRecord {
    pub at_ms: i64,
    pub key_id: Option<String>,
    pub org: Option<String>,
    pub service: Option<String>,
    pub route: String,
    pub tokens: u64,
    pub status: u16,
    pub latency_ms: u64,
    pub request_id: String,
}

/// Rows per INSERT statement (9 bound values each, within SQLite's limit of 32,766).
const BATCH: usize = 256;
/// Rows per transaction at most; more wait for the next one.
const MAX_ROWS_PER_WRITE: usize = 32 * BATCH;
/// How long the writer waits after a row for others to join its transaction.
const LINGER: Duration = Duration::from_millis(50);
/// How often an idle writer wakes (to prune on time).
const FLUSH_EVERY: Duration = Duration::from_millis(500);
/// How often rows past the retention period are deleted.
const PRUNE_EVERY: Duration = Duration::from_secs(3600);

/// How long rows are kept, measured on `clock`.
#[derive(Clone)]
pub struct Retention {
    pub keep: Duration,
    pub clock: SharedClock,
}

enum Message {
    Row(UsageRecord),
    /// Write everything queued so far, acknowledge, and stop.
    Shutdown(oneshot::Sender<()>),
}

#[derive(Clone)]
pub struct UsageLog {
    sender: mpsc::UnboundedSender<Message>,
}

impl UsageLog {
    /// Keeps every row.
    pub fn start(pool: SqlitePool) -> Self {
        Self::start_with(pool, None)
    }

    /// Deletes rows older than `retention` at start and then every hour.
    pub fn start_with(pool: SqlitePool, retention: Option<Retention>) -> Self {
        let (sender, receiver) = mpsc::unbounded_channel();
        tokio::spawn(write_batches(pool, receiver, retention));
        Self { sender }
    }

    /// Queues a row; never blocks. Rows are lost only if the process is killed before a flush.
    pub fn record(&self, record: UsageRecord) {
        if self.sender.send(Message::Row(record)).is_err() {
            tracing::warn!("usage log is shut down; a row was dropped");
        }
    }

    /// Waits until every row queued before this call is written. Call at shutdown, after the
    /// server stopped serving.
    pub async fn shutdown(&self) {
        let (ack, done) = oneshot::channel();
        if self.sender.send(Message::Shutdown(ack)).is_ok() {
            let _ = done.await;
        }
    }
}

async fn write_batches(pool: SqlitePool, mut receiver: mpsc::UnboundedReceiver<Message>, retention: Option<Retention>) {
    let mut batch = Vec::with_capacity(BATCH);
    let mut next_prune = tokio::time::Instant::now();
    loop {
        if let Some(retention) = retention.as_ref().filter(|_| tokio::time::Instant::now() >= next_prune) {
            prune(&pool, retention).await;
            next_prune = tokio::time::Instant::now() + PRUNE_EVERY;
        }
        let mut shutdown = None;
        match tokio::time::timeout(FLUSH_EVERY, receiver.recv()).await {
            Ok(Some(Message::Row(row))) => batch.push(row),
            Ok(Some(Message::Shutdown(ack))) => shutdown = Some(ack),
            Ok(None) => return,
            Err(_elapsed) => continue,
        }
        // Rows that follow within the linger share the transaction: under a flood of refused
        // requests, a transaction per few rows costs more than the requests themselves.
        if shutdown.is_none() {
            tokio::time::sleep(LINGER).await;
        }
        while shutdown.is_none() && batch.len() < MAX_ROWS_PER_WRITE {
            match receiver.try_recv() {
                Ok(Message::Row(row)) => batch.push(row),
                Ok(Message::Shutdown(ack)) => shutdown = Some(ack),
                Err(_) => break,
            }
        }
        if !batch.is_empty() {
            write(&pool, &mut batch).await;
        }
        if let Some(ack) = shutdown {
            receiver.close();
            while let Ok(Message::Row(row)) = receiver.try_recv() {
                batch.push(row);
            }
            if !batch.is_empty() {
                write(&pool, &mut batch).await;
            }
            let _ = ack.send(());
            return;
        }
    }
}

/// Deletes the rows that have outlived the retention period.
pub async fn prune(pool: &SqlitePool, retention: &Retention) {
    let cutoff = retention.clock.now_ms().saturating_sub(retention.keep.as_millis().min(i64::MAX as u128) as i64);
    match sqlx::query("DELETE FROM usage_log WHERE at < ?").bind(cutoff).execute(pool).await {
        Ok(done) if done.rows_affected() > 0 => {
            tracing::info!(rows = done.rows_affected(), "usage rows past retention deleted")
        }
        Ok(_) => {}
        Err(e) => tracing::warn!(error = %e, "pruning the usage log failed; will retry"),
    }
}

/// Writes a batch as multi-row INSERTs in one transaction: a statement per row costs more CPU
/// than the rest of a refused request, and a client over its limits can make thousands of
/// those a second.
async fn write(pool: &SqlitePool, batch: &mut Vec<UsageRecord>) {
    let result: Result<(), sqlx::Error> = async {
        let mut tx = pool.begin().await?;
        // Rows kept after a failed write make a batch longer; chunks keep each statement
        // under SQLite's limit on bound values.
        for chunk in batch.chunks(BATCH) {
            let mut insert = sqlx::QueryBuilder::<sqlx::Sqlite>::new(
                "INSERT INTO usage_log (at, key_id, org, service, route, tokens, status, latency_ms, request_id) ",
            );
            insert.push_values(chunk, |mut row, r| {
                row.push_bind(r.at_ms)
                    .push_bind(&r.key_id)
                    .push_bind(&r.org)
                    .push_bind(&r.service)
                    .push_bind(&r.route)
                    .push_bind(r.tokens as i64)
                    .push_bind(r.status as i64)
                    .push_bind(r.latency_ms as i64)
                    .push_bind(&r.request_id);
            });
            insert.build().execute(&mut *tx).await?;
        }
        tx.commit().await
    }
    .await;
    match result {
        Ok(()) => batch.clear(),
        // Keep the rows and retry with the next batch rather than lose them.
        Err(e) => tracing::error!(error = %e, rows = batch.len(), "usage log write failed; will retry"),
    }
}

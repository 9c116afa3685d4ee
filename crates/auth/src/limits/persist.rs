//! TPD usage in SQLite: one row per key and 15-minute slot (`migrations/0002_token_usage.sql`).
//! Runtime queries only, so building needs no database.

use sqlx::SqlitePool;

#[derive(Debug, thiserror::Error)]
pub enum LimitStoreError {
    #[error("token usage store: {0}")]
    Sqlite(#[from] sqlx::Error),
}

impl From<LimitStoreError> for smai_core::Error {
    fn from(error: LimitStoreError) -> Self {
        smai_core::Error::internal(error)
    }
}

/// Rows whose slot starts at or after `since_ms`: `(key id, slot start ms, tokens)`.
pub(crate) async fn load(pool: &SqlitePool, since_ms: i64) -> Result<Vec<(String, i64, u32)>, LimitStoreError> {
    let rows: Vec<(String, i64, i64)> =
        sqlx::query_as("SELECT key_id, slot_start_ms, tokens FROM token_usage WHERE slot_start_ms >= ?")
            .bind(since_ms)
            .fetch_all(pool)
            .await?;
    Ok(rows
        .into_iter()
        .map(|(key_id, start, tokens)| (key_id, start, tokens.clamp(0, i64::from(u32::MAX)) as u32))
        .collect())
}

/// Replaces the usage of each key in `batch` with its current slots and drops rows of
/// slots that started before `stale_before_ms`, in one transaction.
pub(crate) async fn write(
    pool: &SqlitePool,
    batch: &[(String, Vec<(i64, u32)>)],
    stale_before_ms: i64,
) -> Result<(), LimitStoreError> {
    let mut tx = pool.begin().await?;
    for (key_id, slots) in batch {
        sqlx::query("DELETE FROM token_usage WHERE key_id = ?").bind(key_id).execute(&mut *tx).await?;
        for (start_ms, tokens) in slots {
            sqlx::query("INSERT INTO token_usage (key_id, slot_start_ms, tokens) VALUES (?, ?, ?)")
                .bind(key_id)
                .bind(start_ms)
                .bind(i64::from(*tokens))
                .execute(&mut *tx)
                .await?;
        }
    }
    sqlx::query("DELETE FROM token_usage WHERE slot_start_ms < ?").bind(stale_before_ms).execute(&mut *tx).await?;
    tx.commit().await?;
    Ok(())
}

//! The usage log keeps rows for the retention period only: older rows go at start and then
//! every hour, newer ones stay.

use smai_auth::{open_database, Retention, UsageLog, UsageRecord};
use smai_core::ManualClock;
use std::sync::Arc;
use std::time::Duration;

fn row(at_ms: i64, request_id: &str) -> UsageRecord {
    UsageRecord {
        at_ms,
        key_id: None,
        org: None,
        service: None,
        route: "/v1/models".into(),
        tokens: 0,
        status: 200,
        latency_ms: 1,
        request_id: request_id.into(),
    }
}

#[tokio::test]
async fn rows_past_the_retention_period_are_deleted() {
    let dir = tempfile::tempdir().unwrap();
    let pool = open_database(&dir.path().join("usage.db")).await.unwrap();
    let day_ms = 86_400_000;
    let clock = ManualClock::new(100 * day_ms);
    let log = UsageLog::start(pool.clone());
    log.record(row(5 * day_ms, "ancient"));
    log.record(row(99 * day_ms, "yesterday"));
    log.shutdown().await;

    let retention = Retention { keep: Duration::from_secs(90 * 86_400), clock: Arc::new(clock) };
    let log = UsageLog::start_with(pool.clone(), Some(retention));
    log.record(row(100 * day_ms, "today"));
    log.shutdown().await;
    let ids: Vec<(String,)> =
        sqlx::query_as("SELECT request_id FROM usage_log ORDER BY at").fetch_all(&pool).await.unwrap();
    let ids: Vec<&str> = ids.iter().map(|r| r.0.as_str()).collect();
    assert_eq!(ids, ["yesterday", "today"]);
    pool.close().await;
}

//! TPD survives a restart through a real SQLite file.

use smai_auth::limits::{LimitKind, Limiter};
use smai_core::{ManualClock, SharedClock, Tier};
use sqlx::sqlite::{SqliteConnectOptions, SqlitePoolOptions};
use sqlx::SqlitePool;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

const START_MS: i64 = 1_700_000_000_000;
const TIER: Tier = Tier { rpm: 60, tpm: 50_000, tpd: 1_000, concurrency: 5 };

async fn open_pool(path: &Path) -> SqlitePool {
    let options = SqliteConnectOptions::new().filename(path).create_if_missing(true);
    let pool = SqlitePoolOptions::new().max_connections(2).connect_with(options).await.unwrap();
    sqlx::migrate!("../../migrations").run(&pool).await.unwrap();
    pool
}

async fn stored_rows(pool: &SqlitePool) -> i64 {
    sqlx::query_scalar("SELECT COUNT(*) FROM token_usage").fetch_one(pool).await.unwrap()
}

#[tokio::test]
async fn daily_usage_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("smai.db");
    let clock = ManualClock::new(START_MS);
    let shared: SharedClock = Arc::new(clock.clone());

    let pool = open_pool(&path).await;
    let limiter = Limiter::with_store(shared.clone(), pool.clone()).await.unwrap();
    drop(limiter.admit("key-a", &TIER, 300).unwrap());
    clock.advance_ms(20 * 60_000);
    drop(limiter.admit("key-a", &TIER, 400).unwrap());
    drop(limiter.admit("key-b", &TIER, 50).unwrap());
    limiter.flush().await.unwrap();
    drop(limiter);
    pool.close().await;

    clock.advance_ms(60_000);
    let pool = open_pool(&path).await;
    let limiter = Limiter::with_store(shared.clone(), pool.clone()).await.unwrap();
    let a = limiter.snapshot("key-a", &TIER);
    assert_eq!(a.tokens_per_day.remaining, 300, "700 of 1,000 used before the restart");
    assert_eq!(a.tokens.remaining, 50_000, "per-minute state restarts full");
    assert_eq!(limiter.snapshot("key-b", &TIER).tokens_per_day.remaining, 950);
    let rejection = limiter.admit("key-a", &TIER, 301).unwrap_err();
    assert_eq!(rejection.limit, LimitKind::TokensPerDay);
    drop(limiter.admit("key-a", &TIER, 300).unwrap());

    // A day and a slot later everything has rolled out, in memory and in the file.
    clock.advance_ms(86_400_000 + 900_000);
    drop(limiter.admit("key-c", &TIER, 1).unwrap());
    limiter.flush().await.unwrap();
    assert_eq!(stored_rows(&pool).await, 1, "only key-c's fresh slot is left");
    assert_eq!(limiter.snapshot("key-a", &TIER).tokens_per_day.remaining, 1_000);
}

#[tokio::test]
async fn refunds_are_written_too() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("smai.db");
    let shared: SharedClock = Arc::new(ManualClock::new(START_MS));
    let pool = open_pool(&path).await;
    let limiter = Limiter::with_store(shared.clone(), pool.clone()).await.unwrap();
    drop(limiter.admit("key", &TIER, 600).unwrap());
    limiter.flush().await.unwrap();
    limiter.refund("key", 600);
    limiter.flush().await.unwrap();
    assert_eq!(stored_rows(&pool).await, 0);
    let restarted = Limiter::with_store(shared, pool).await.unwrap();
    assert_eq!(restarted.snapshot("key", &TIER).tokens_per_day.remaining, 1_000);
}

#[tokio::test]
async fn the_maintenance_task_writes_without_a_flush_so_a_crash_loses_one_interval_at_most() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("smai.db");
    let shared: SharedClock = Arc::new(ManualClock::new(START_MS));
    let pool = open_pool(&path).await;
    let limiter = Limiter::with_store(shared.clone(), pool.clone()).await.unwrap();
    let task = limiter.spawn_maintenance_every(Duration::from_millis(20));
    drop(limiter.admit("key", &TIER, 250).unwrap());
    let mut waited = Duration::ZERO;
    while stored_rows(&pool).await == 0 {
        assert!(waited < Duration::from_secs(10), "usage was never written");
        tokio::time::sleep(Duration::from_millis(10)).await;
        waited += Duration::from_millis(10);
    }
    // A crash: no flush, the process just stops.
    task.abort();
    drop(limiter);
    let restarted = Limiter::with_store(shared, pool).await.unwrap();
    assert_eq!(restarted.snapshot("key", &TIER).tokens_per_day.remaining, 750);
}

#[tokio::test]
async fn the_maintenance_task_ends_with_the_last_limiter_handle() {
    let shared: SharedClock = Arc::new(ManualClock::new(START_MS));
    let limiter = Limiter::new(shared);
    let task = limiter.spawn_maintenance_every(Duration::from_millis(5));
    drop(limiter);
    tokio::time::timeout(Duration::from_secs(10), task).await.expect("task ended").unwrap();
}

#[tokio::test]
async fn usage_not_yet_written_keeps_its_entry() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(START_MS);
    let shared: SharedClock = Arc::new(clock.clone());
    let pool = open_pool(&dir.path().join("smai.db")).await;
    let limiter = Limiter::with_store(shared, pool.clone()).await.unwrap();
    drop(limiter.admit("key", &TIER, 100).unwrap());
    limiter.refund("key", 100);
    clock.advance_ms(61_000);
    assert_eq!(limiter.sweep(), 0, "the refund must reach the store before the entry goes");
    limiter.flush().await.unwrap();
    assert_eq!(limiter.sweep(), 1);
    assert_eq!(stored_rows(&pool).await, 0);
}

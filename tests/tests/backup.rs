//! `smai db backup` while the server serves a burst of requests: the copy restores into a
//! fresh server where every key still verifies, and it holds every usage row committed before
//! the backup began.

use smai_core::{Service, VoiceAccess};
use smai_e2e::TestServer;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

async fn usage_rows(pool: &sqlx::SqlitePool) -> i64 {
    sqlx::query_scalar("SELECT COUNT(*) FROM usage_log").fetch_one(pool).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_taken_during_a_burst_restores_every_key_and_every_committed_usage_row() {
    let t = TestServer::start().await;
    let mut keys = Vec::new();
    for _ in 0..20 {
        keys.push(t.create_key(&[Service::Asr], VoiceAccess::All, None).await.1);
    }
    let client = reqwest::Client::new();
    // The burst goes on until the backup is done (at most 500 rounds), so the copy is always
    // taken while usage rows are being written, however fast either side is.
    let backup_done = Arc::new(AtomicBool::new(false));
    let burst = {
        let (client, keys, url, done) = (client.clone(), keys.clone(), t.url("/v1/models"), backup_done.clone());
        tokio::spawn(async move {
            for round in 0..500 {
                let requests = keys.iter().map(|key| client.get(&url).bearer_auth(key).send());
                for response in futures_util::future::join_all(requests).await {
                    assert_eq!(response.unwrap().status(), 200, "round {round}");
                }
                if done.load(Ordering::Relaxed) {
                    return round;
                }
            }
            500
        })
    };
    let pool = t.server.pool().clone();
    while usage_rows(&pool).await < 40 {
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    let committed = usage_rows(&pool).await;
    let backup = t.dir.path().join("backup.db");
    let summary = smai_auth::backup_database(&t.db, &backup).await.expect("backup while serving");
    backup_done.store(true, Ordering::Relaxed);
    let rounds = burst.await.unwrap();
    assert!(rounds < 500, "the burst ended before the backup finished");
    assert_eq!(summary.keys, 20);
    assert!(
        summary.usage_rows >= committed,
        "{} rows in the backup, {committed} committed before it",
        summary.usage_rows
    );
    let again = smai_auth::backup_database(&t.db, &backup).await.expect_err("an existing file is refused");
    assert!(again.to_string().contains("exists"), "{again}");

    let restored_dir = tempfile::tempdir().unwrap();
    let restored_db = restored_dir.path().join("smai.db");
    std::fs::copy(&backup, &restored_db).unwrap();
    let restored = TestServer::start_with(|config| config.db = restored_db.clone()).await;
    for key in &keys {
        let response = client.get(restored.url("/v1/models")).bearer_auth(key).send().await.unwrap();
        assert_eq!(response.status(), 200, "a key did not survive the backup");
    }
    assert!(usage_rows(restored.server.pool()).await >= committed);
}

//! A database that opens but cannot be written fails the start with a message naming it.

use smai_auth::open_database;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

/// Makes `paths` unwritable: permission bits for an ordinary user; for root, whom they do not
/// stop, the immutable attribute. Returns false where neither is possible.
fn make_unwritable(paths: &[&Path]) -> bool {
    if !is_root() {
        for path in paths {
            let mode = if path.is_dir() { 0o555 } else { 0o444 };
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
        }
        return true;
    }
    paths.iter().all(|p| Command::new("chattr").arg("+i").arg(p).status().is_ok_and(|s| s.success()))
}

fn make_writable(paths: &[&Path]) {
    for path in paths {
        if is_root() {
            let _ = Command::new("chattr").arg("-i").arg(path).status();
        } else {
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
    }
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("Uid:")).map(|l| l.split_whitespace().nth(1) == Some("0")))
        .unwrap_or(false)
}

async fn refused_when_locked(lock_folder: bool) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("keys.db");
    open_database(&path).await.unwrap().close().await;
    // The pool's close can return before its connections' threads have closed them (the WAL
    // files go with the last). A descriptor still open from them, opened writable before the
    // lock, could serve the next open; so the test waits for them to go.
    let wal = dir.path().join("keys.db-wal");
    let deadline = Instant::now() + Duration::from_secs(10);
    while wal.exists() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let mut locked = vec![path.as_path()];
    if lock_folder {
        locked.push(dir.path());
    }
    if !make_unwritable(&locked) {
        eprintln!("skipped: neither permission bits nor chattr can make a file read-only here");
        return;
    }
    let result = open_database(&path).await;
    make_writable(&locked);
    let message = result.expect_err("a read-only database must not open").to_string();
    assert!(message.contains("keys.db") && message.contains("cannot be"), "{message}");
}

#[tokio::test]
async fn a_read_only_database_file_is_refused_with_its_path() {
    refused_when_locked(false).await;
}

#[tokio::test]
async fn a_database_in_a_read_only_folder_is_refused_with_its_path() {
    refused_when_locked(true).await;
}

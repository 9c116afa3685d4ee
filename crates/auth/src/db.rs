//! Opening the SQLite database (WAL mode, foreign keys, migrations applied at start-up) and
//! backing it up while it is in use.

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous};
use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

/// Opens (creating if missing) and migrates the database; any failure, a read-only file or
/// folder included, is an error that names the file.
pub async fn open_database(path: &Path) -> Result<SqlitePool, sqlx::Error> {
    open_writable(path).await.map_err(|e| match e {
        sqlx::Error::Configuration(_) => e,
        other => sqlx::Error::Configuration(format!("the database {} cannot be used: {other}", path.display()).into()),
    })
}

async fn open_writable(path: &Path) -> Result<SqlitePool, sqlx::Error> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(sqlx::Error::Io)?;
    }
    let options = SqliteConnectOptions::from_str(&format!("sqlite://{}", path.display()))?
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        // NORMAL is durable across application crashes in WAL mode; only an OS crash can lose
        // the last transactions.
        .synchronous(SqliteSynchronous::Normal)
        .foreign_keys(true)
        .busy_timeout(Duration::from_secs(5));
    let pool = SqlitePoolOptions::new().max_connections(8).connect_with(options).await?;
    sqlx::migrate!("../../migrations").run(&pool).await?;
    ensure_writable(&pool, path).await?;
    Ok(pool)
}

/// Refuses a database that opens but cannot be written (a read-only file or folder): serving
/// on it would buffer usage rows without bound and lose them.
async fn ensure_writable(pool: &SqlitePool, path: &Path) -> Result<(), sqlx::Error> {
    let mut conn = pool.acquire().await?;
    let probe = async {
        sqlx::query("CREATE TABLE IF NOT EXISTS write_probe (x INTEGER)").execute(&mut *conn).await?;
        sqlx::query("DROP TABLE write_probe").execute(&mut *conn).await
    };
    probe.await.map(|_| ()).map_err(|e| {
        sqlx::Error::Configuration(format!("the database {} cannot be written: {e}", path.display()).into())
    })
}

/// What a backup holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BackupSummary {
    pub keys: i64,
    pub usage_rows: i64,
    pub bytes: u64,
}

/// Writes a consistent copy of the database at `source` to `target` while a server may be
/// using it: `VACUUM INTO` reads one snapshot in a transaction, so the copy holds every row
/// committed before it began and nothing half-written. The copy is written beside `target`
/// and renamed into place once its integrity check passes; an existing `target` is refused.
pub async fn backup_database(source: &Path, target: &Path) -> Result<BackupSummary, sqlx::Error> {
    let configuration = |message: String| sqlx::Error::Configuration(message.into());
    if target.exists() {
        return Err(configuration(format!("{} exists; choose a new file for the backup", target.display())));
    }
    if !source.is_file() {
        return Err(configuration(format!("the database {} does not exist", source.display())));
    }
    let partial = target.with_extension("partial");
    let _ = std::fs::remove_file(&partial);
    // No migrations: a backup copies the database as it is, whatever binary wrote it.
    let options = SqliteConnectOptions::new().filename(source).busy_timeout(Duration::from_secs(30));
    let live = SqlitePoolOptions::new().max_connections(1).connect_with(options).await?;
    let path = partial.to_str().ok_or_else(|| configuration(format!("{} is not UTF-8", partial.display())))?;
    sqlx::query("VACUUM INTO ?").bind(path).execute(&live).await?;
    live.close().await;

    let copy = SqlitePoolOptions::new()
        .max_connections(1)
        .connect_with(SqliteConnectOptions::new().filename(&partial).read_only(true))
        .await?;
    let check: String = sqlx::query_scalar("PRAGMA integrity_check").fetch_one(&copy).await?;
    let keys: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM api_keys").fetch_one(&copy).await?;
    let usage_rows: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM usage_log").fetch_one(&copy).await?;
    copy.close().await;
    if check != "ok" {
        let _ = std::fs::remove_file(&partial);
        return Err(configuration(format!("the backup failed its integrity check: {check}")));
    }
    std::fs::rename(&partial, target).map_err(sqlx::Error::Io)?;
    let bytes = std::fs::metadata(target).map_err(sqlx::Error::Io)?.len();
    Ok(BackupSummary { keys, usage_rows, bytes })
}

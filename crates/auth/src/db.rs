//! Opening the SQLite database: WAL mode, foreign keys, migrations applied at start-up.

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

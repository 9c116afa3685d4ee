//! `smai db backup PATH`: a consistent copy of the key database, taken while the server runs.

use clap::{Args, Subcommand};
use std::path::PathBuf;

#[derive(Debug, Args)]
pub struct DbArgs {
    /// SQLite database holding keys, usage and limit state.
    #[arg(long, env = "SMAI_DB", default_value = "./data/smai.db", global = true)]
    pub db: PathBuf,
    #[command(subcommand)]
    pub command: DbCommand,
}

#[derive(Debug, Subcommand)]
pub enum DbCommand {
    /// Write a consistent copy to PATH (a new file) while the server keeps serving. To restore:
    /// stop the server, remove the database and its -wal and -shm files, put the copy in its
    /// place, start the server.
    Backup { path: PathBuf },
}

pub async fn run(args: DbArgs) -> anyhow::Result<()> {
    match args.command {
        DbCommand::Backup { path } => {
            let summary = smai_auth::backup_database(&args.db, &path).await.map_err(|error| match error {
                sqlx::Error::Configuration(message) => anyhow::anyhow!("{message}"),
                other => anyhow::anyhow!("backup of {} failed: {other}", args.db.display()),
            })?;
            println!(
                "Backed up {} keys and {} usage rows from {} to {} ({} bytes).",
                summary.keys,
                summary.usage_rows,
                args.db.display(),
                path.display(),
                summary.bytes
            );
            Ok(())
        }
    }
}

//! The `smai` command line.

use crate::config::ServeConfig;
use crate::keys_cmd::KeysArgs;
use crate::serve::{start, Engines};
use clap::{Parser, Subcommand};
use smai_core::SystemClock;
use std::sync::Arc;

#[derive(Debug, Parser)]
#[command(name = "smai", version, about = "Self-hosted speech inference: text-to-speech and speech recognition behind API keys")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the server.
    Serve(ServeConfig),
    /// Create, list, show, revoke and rotate API keys.
    Keys(KeysArgs),
}

pub fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    crate::telemetry::init();
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(async move {
        match cli.command {
            Command::Serve(config) => serve(config).await,
            Command::Keys(args) => crate::keys_cmd::run(args).await,
        }
    })
}

async fn serve(config: ServeConfig) -> anyhow::Result<()> {
    let server = start(&config, Arc::new(SystemClock), Engines::default()).await?;
    shutdown_signal().await;
    tracing::info!("shutting down");
    server.shutdown().await
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = terminate => {},
    }
}

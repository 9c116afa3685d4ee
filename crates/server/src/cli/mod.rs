//! The `smai` command line: `serve`, `keys`, `db`, and the local commands (`models`, `transcribe`,
//! `synthesize`, `voices`, `tls`) that run without a server.

mod db;
mod healthcheck;
mod keys;
mod models;
mod serve;
mod synthesize;
mod tls;
mod transcribe;
mod voices;

pub use db::{DbArgs, DbCommand};
pub use healthcheck::{run as run_healthcheck, HealthcheckArgs};
pub use keys::{KeysArgs, KeysCommand};
pub use models::{run as run_models, ModelsArgs, ModelsCommand};
pub use serve::serve;
pub use synthesize::SynthesizeArgs;
pub use tls::{run as run_tls, TlsArgs, TlsCommand};
pub use transcribe::TranscribeArgs;
pub use voices::VoicesArgs;

use crate::config::ServeConfig;
pub use crate::telemetry::LogFormat;
use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "smai",
    version,
    about = "Self-hosted speech inference: text-to-speech and speech recognition behind API keys"
)]
pub struct Cli {
    /// Log lines as text for people or as JSON objects, one per line, for log collectors.
    #[arg(long, global = true, env = "SMAI_LOG_FORMAT", value_enum, default_value = "text")]
    pub log_format: LogFormat,

    #[command(subcommand)]
    pub command: Command,
}

// Parsed once at start, so the size of the serve variant costs nothing worth boxing for.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the server.
    Serve(ServeConfig),
    /// Create, list, show, revoke and rotate API keys.
    Keys(KeysArgs),
    /// Back up the key database while the server runs.
    Db(DbArgs),
    /// Fetch the default models (`pull`) or list what is installed (`list`).
    Models(ModelsArgs),
    /// Transcribe audio files locally, without a server.
    Transcribe(TranscribeArgs),
    /// Synthesise speech locally, without a server.
    Synthesize(SynthesizeArgs),
    /// List the configured voices.
    Voices(VoicesArgs),
    /// Exit 0 when the local server is ready (its `/readyz` answers 200); for container health checks.
    Healthcheck(HealthcheckArgs),
    /// Make a private CA and certificates for HTTPS (`init`) and mutual TLS (`client`).
    Tls(TlsArgs),
}

pub fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    crate::telemetry::init(cli.log_format);
    // Local model commands run without an async runtime of their own.
    let command = match cli.command {
        Command::Models(args) => return models::run(args),
        Command::Transcribe(args) => return Ok(transcribe::run(args)?),
        Command::Synthesize(args) => return Ok(synthesize::run(args)?),
        Command::Voices(args) => return Ok(voices::run(args)?),
        Command::Tls(args) => return tls::run(args),
        command => command,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(async move {
        match command {
            Command::Serve(config) => serve(config).await,
            Command::Keys(args) => keys::run(args).await,
            Command::Db(args) => db::run(args).await,
            Command::Healthcheck(args) => healthcheck::run(args).await,
            _ => unreachable!("local commands returned above"),
        }
    })
}

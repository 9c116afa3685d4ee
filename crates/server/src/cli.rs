//! The `smai` command line.

use crate::config::ServeConfig;
use crate::keys_cmd::KeysArgs;
use crate::serve::start;
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
    /// Fetch the default models (`pull`) or list what is installed (`list`).
    Models(smai_inference::ModelsArgs),
    /// Transcribe audio files locally, without a server.
    Transcribe(smai_inference::TranscribeArgs),
    /// Synthesise speech locally, without a server.
    Synthesize(smai_inference::tts::cli::SynthesizeArgs),
    /// List the configured voices.
    Voices(smai_inference::tts::cli::VoicesArgs),
    /// Score speech recognition on a manifest of recordings (corpus WER).
    AsrEval(smai_inference::AsrEvalArgs),
}

pub fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    crate::telemetry::init();
    // Local model commands run without an async runtime of their own.
    let cli = match cli.command {
        Command::Models(args) => return Ok(smai_inference::run_models(args)?),
        Command::Transcribe(args) => return Ok(smai_inference::run_transcribe(args)?),
        Command::Synthesize(args) => return Ok(smai_inference::tts::cli::run_synthesize(args)?),
        Command::Voices(args) => return Ok(smai_inference::tts::cli::run_voices(args)?),
        Command::AsrEval(args) => return Ok(smai_inference::run_asr_eval(args)?),
        command => Cli { command },
    };
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(async move {
        match cli.command {
            Command::Serve(config) => serve(config).await,
            Command::Keys(args) => crate::keys_cmd::run(args).await,
            _ => unreachable!("local commands returned above"),
        }
    })
}

async fn serve(config: ServeConfig) -> anyhow::Result<()> {
    crate::listener::raise_fd_limit();
    let engines = crate::engines::load(&config).await?;
    let server = start(&config, Arc::new(SystemClock), engines).await?;
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

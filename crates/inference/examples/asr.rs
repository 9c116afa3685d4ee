//! Stand-alone runner of the ASR commands (`models`, `transcribe`, `asr-eval`), the same
//! entry points the `smai` binary exposes.

use clap::{Parser, Subcommand};
use smai_inference::{run_asr_eval, run_models, run_transcribe, AsrEvalArgs, ModelsArgs, TranscribeArgs};

#[derive(Parser)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    Models(ModelsArgs),
    Transcribe(TranscribeArgs),
    AsrEval(AsrEvalArgs),
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Models(a) => run_models(a)?,
        Command::Transcribe(a) => run_transcribe(a)?,
        Command::AsrEval(a) => run_asr_eval(a)?,
    }
    Ok(())
}

//! `smai-tools`: evaluation and benchmarks of smai's models.
//!
//!     cargo run --release -p smai-tools -- asr-eval --model tiny.en
//!     cargo run --release -p smai-tools -- asr-bench --models tiny.en,base --files 10

use clap::{Parser, Subcommand};
use smai_tools::bench::{run_asr_bench, AsrBenchArgs};
use smai_tools::eval::{run_asr_eval, AsrEvalArgs};

#[derive(Parser)]
#[command(name = "smai-tools", about = "Evaluation and benchmarks of smai's models")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Score speech recognition on the dev set (corpus WER) beside faster-whisper's transcripts.
    AsrEval(AsrEvalArgs),
    /// Our Whisper engine beside faster-whisper: same files, weights and decoding settings.
    AsrBench(AsrBenchArgs),
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::AsrEval(args) => run_asr_eval(args)?,
        Command::AsrBench(args) => run_asr_bench(args)?,
    }
    Ok(())
}

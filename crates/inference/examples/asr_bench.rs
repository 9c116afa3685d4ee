//! Speed of our Whisper engine beside faster-whisper on the same files and weights:
//!
//!     cargo run --release -p smai-inference --example asr_bench -- --models tiny.en,base --files 10
//!
//! Needs `pip install faster-whisper==1.2.1`; see `smai_inference::cli::bench`.

use clap::Parser;
use smai_inference::{run_asr_bench, AsrBenchArgs};

#[derive(Parser)]
struct Cli {
    #[command(flatten)]
    bench: AsrBenchArgs,
}

fn main() -> anyhow::Result<()> {
    run_asr_bench(Cli::parse().bench)?;
    Ok(())
}

//! `smai voices`: the configured voices, loaded as the server would load them.

use clap::Args;
use smai_core::{Error, Synthesizer};
use smai_inference::device_from_name;
use smai_inference::tts::voices::default_models_dir;
use smai_inference::tts::{PiperSynthesizer, VoicesConfig};
use smai_inference::whisper::ComputeTypes;
use std::path::PathBuf;

/// Requests a local command has waiting at most (it makes one at a time).
const LOCAL_QUEUE_DEPTH: usize = 1;

#[derive(Debug, Clone, Args)]
pub struct VoicesArgs {
    /// Folder of installed models.
    #[arg(long, env = "SMAI_MODELS_DIR")]
    pub models_dir: Option<PathBuf>,
    /// Voices configuration (JSON); the built-in `joe` and `joe-slow` when absent.
    #[arg(long, env = "SMAI_VOICES")]
    pub voices_config: Option<PathBuf>,
    /// cpu, cuda or metal (the last two need the build feature).
    #[arg(long, env = "SMAI_DEVICE", default_value = "cpu")]
    pub device: String,
    /// Number type of the vocoder: float32, or bfloat16 (on CPUs with AVX-512 BF16, float32
    /// elsewhere; auto the same where that AVX-512 is double-pumped, as on AMD Zen 4, else
    /// float32); one for all models or per model
    /// (`en_US-joe-medium=bfloat16`).
    #[arg(long, env = "SMAI_COMPUTE_TYPE", default_value = "float32", value_parser = ComputeTypes::parse)]
    pub compute_type: ComputeTypes,
}

impl VoicesArgs {
    pub fn load(&self) -> Result<PiperSynthesizer, Error> {
        let config = VoicesConfig::load(self.voices_config.as_deref()).map_err(|e| Error::invalid(e.to_string()))?;
        let dir = self.models_dir.clone().unwrap_or_else(default_models_dir);
        let device = device_from_name(&self.device)?;
        PiperSynthesizer::load_as(&config, &dir, &device, LOCAL_QUEUE_DEPTH, &self.compute_type)
    }
}

/// Prints the configured voices: id, language, sample rate, quality.
pub fn run(args: VoicesArgs) -> Result<(), Error> {
    let engine = args.load()?;
    println!("{:<16} {:<8} {:>11} QUALITY", "VOICE", "LANGUAGE", "SAMPLE_RATE");
    for v in engine.voices() {
        println!("{:<16} {:<8} {:>11} {}", v.id, v.language, v.sample_rate, v.quality);
    }
    Ok(())
}

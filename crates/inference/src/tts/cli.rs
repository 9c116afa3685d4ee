//! `smai synthesize` and `smai voices`: arguments and entry points (the binary wires them in).

use std::io::{Read, Write};
use std::path::PathBuf;

use candle_core::Device;
use smai_core::{Error, SpeechOptions, Synthesizer};

use super::encode::{encode, AudioFormat};
use super::engine::PiperSynthesizer;
use super::voices::{default_models_dir, VoicesConfig};

#[derive(Debug, Clone, clap::Args)]
pub struct SynthesizeArgs {
    /// Text to speak; `-` reads it from standard input.
    pub text: String,
    /// Voice id (see `smai voices`).
    #[arg(long, default_value = "joe")]
    pub voice: String,
    /// Output file; standard output when absent.
    #[arg(short, long)]
    pub output: Option<PathBuf>,
    /// Audio format; by default taken from the output file's extension, else wav.
    #[arg(long, value_enum)]
    pub format: Option<AudioFormat>,
    /// Speaking rate: 1.0 is the voice's natural pace, 2.0 twice as fast.
    #[arg(long, default_value_t = 1.0)]
    pub speed: f32,
    /// Resample the output to this rate (Hz); the voice's own rate by default.
    #[arg(long)]
    pub sample_rate: Option<u32>,
    #[command(flatten)]
    pub voices: VoicesArgs,
}

#[derive(Debug, Clone, clap::Args)]
pub struct VoicesArgs {
    /// Folder of installed models.
    #[arg(long, env = "SMAI_MODELS_DIR")]
    pub models_dir: Option<PathBuf>,
    /// Voices configuration (JSON); the built-in `joe` and `joe-slow` when absent.
    #[arg(long, env = "SMAI_VOICES")]
    pub voices_config: Option<PathBuf>,
}

impl VoicesArgs {
    pub fn load(&self) -> Result<PiperSynthesizer, Error> {
        let config = match &self.voices_config {
            Some(path) => VoicesConfig::from_file(path).map_err(|e| Error::invalid(e.to_string()))?,
            None => VoicesConfig::default(),
        };
        let dir = self.models_dir.clone().unwrap_or_else(default_models_dir);
        PiperSynthesizer::load(&config, &dir, &default_device(), super::engine::DEFAULT_QUEUE)
    }
}

/// CUDA or Metal when built with those features and present, else the CPU.
pub fn default_device() -> Device {
    #[cfg(feature = "cuda")]
    if let Ok(d) = Device::new_cuda(0) {
        return d;
    }
    #[cfg(feature = "metal")]
    if let Ok(d) = Device::new_metal(0) {
        return d;
    }
    Device::Cpu
}

/// Synthesizes `args.text` and writes the encoded audio to the output file or stdout.
pub fn run_synthesize(args: SynthesizeArgs) -> Result<(), Error> {
    let text = if args.text == "-" {
        let mut text = String::new();
        std::io::stdin().read_to_string(&mut text).map_err(|e| Error::invalid(format!("reading stdin: {e}")))?;
        text
    } else {
        args.text.clone()
    };
    let format = match args.format {
        Some(f) => f,
        None => args
            .output
            .as_ref()
            .and_then(|p| p.extension())
            .and_then(|e| e.to_str())
            .and_then(|e| e.parse().ok())
            .unwrap_or(AudioFormat::Wav),
    };
    let engine = args.voices.load()?;
    let mut stream = engine.synthesize(text, SpeechOptions { voice: args.voice.clone(), speed: args.speed })?;
    let mut samples = Vec::new();
    let mut rate = 0;
    while let Some(chunk) = stream.blocking_recv() {
        let chunk = chunk?;
        rate = chunk.sample_rate;
        samples.extend_from_slice(&chunk.samples);
    }
    if rate == 0 {
        return Err(Error::invalid("the text produced no speech"));
    }
    let bytes = encode(&samples, rate, args.sample_rate, format).map_err(|e| Error::invalid(e.to_string()))?;
    let written = match &args.output {
        Some(path) => std::fs::write(path, &bytes),
        None => std::io::stdout().lock().write_all(&bytes),
    };
    written.map_err(|e| Error::internal(format!("writing audio: {e}")))
}

/// Prints the configured voices: id, language, sample rate, quality.
pub fn run_voices(args: VoicesArgs) -> Result<(), Error> {
    let engine = args.load()?;
    println!("{:<16} {:<8} {:>11} QUALITY", "VOICE", "LANGUAGE", "SAMPLE_RATE");
    for v in engine.voices() {
        println!("{:<16} {:<8} {:>11} {}", v.id, v.language, v.sample_rate, v.quality);
    }
    Ok(())
}

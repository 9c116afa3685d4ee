//! `smai transcribe`: files to text (or json, srt, vtt, verbose_json) on the local machine.

use clap::Args;
use smai_core::transcript::{render, OutputFormat, Transcript};
use smai_core::{Error, Task, TranscribeOptions, Transcriber, TranscriptEvent, TranscriptStream};
use smai_inference::asr::SileroVad;
use smai_inference::whisper::{ComputeType, ComputeTypes};
use smai_inference::{device_from_name, WhisperEngine};
use std::path::PathBuf;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum TaskArg {
    Transcribe,
    Translate,
}

#[derive(Debug, Clone, Args)]
pub struct TranscribeArgs {
    /// Audio files (wav, flac, mp3, ogg/vorbis, ogg/opus, webm/opus, m4a/aac).
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
    /// Model id from the models manifest.
    #[arg(long, default_value = "tiny.en")]
    pub model: String,
    #[arg(long)]
    pub language: Option<String>,
    #[arg(long, value_enum, default_value = "transcribe")]
    pub task: TaskArg,
    /// json, text, srt, vtt or verbose_json.
    #[arg(long, default_value = "text")]
    pub format: OutputFormat,
    #[arg(long)]
    pub word_timestamps: bool,
    #[arg(long)]
    pub beam_size: Option<usize>,
    /// Transcribe only the speech the Silero VAD finds (needs `smai models pull --only silero-vad`).
    #[arg(long)]
    pub vad_filter: bool,
    /// A single temperature instead of the fallback schedule.
    #[arg(long)]
    pub temperature: Option<f32>,
    /// cpu, cuda or metal (the last two need the build feature).
    #[arg(long, env = "SMAI_DEVICE", default_value = "cpu")]
    pub device: String,
    /// Number type of the products: float32, int8 or bfloat16 (CPU), or auto (int8 on x86 CPUs with AVX2).
    #[arg(long, env = "SMAI_COMPUTE_TYPE", default_value = "float32", value_parser = ComputeType::parse_arg)]
    pub compute_type: ComputeType,
    #[arg(long, env = "SMAI_MODELS_DIR", default_value = "models/cache")]
    pub models_dir: PathBuf,
}

/// Collects a stream into a finished transcript (blocking; not for async contexts).
pub fn collect(mut stream: TranscriptStream, task: Task) -> Result<Transcript, Error> {
    let mut t = Transcript { language: String::new(), duration: 0.0, task, segments: Vec::new() };
    while let Some(event) = stream.blocking_recv() {
        match event? {
            TranscriptEvent::Started { language, duration } => {
                t.language = language;
                t.duration = duration;
            }
            TranscriptEvent::Segment(s) => t.segments.push(s),
        }
    }
    Ok(t)
}

/// Transcribes each file and prints it in the chosen format (text: one line per file).
pub fn run(args: TranscribeArgs) -> Result<(), Error> {
    let device = device_from_name(&args.device)?;
    let compute = ComputeTypes::all(args.compute_type);
    let mut engine = WhisperEngine::load_as(&args.models_dir, std::slice::from_ref(&args.model), &device, 1, &compute)?;
    if args.vad_filter {
        let vad =
            SileroVad::installed(&args.models_dir).map_err(|e| Error::internal(e.to_string()))?.ok_or_else(|| {
                Error::not_found("--vad-filter needs the Silero VAD: run `smai models pull --only silero-vad`")
            })?;
        engine = engine.with_vad(std::sync::Arc::new(vad));
    }
    let task = match args.task {
        TaskArg::Transcribe => Task::Transcribe,
        TaskArg::Translate => Task::Translate,
    };
    for file in &args.files {
        let audio = std::fs::read(file).map_err(|e| Error::invalid(format!("{}: {e}", file.display())))?;
        let options = TranscribeOptions {
            model: Some(args.model.clone()),
            language: args.language.clone(),
            task,
            prompt: None,
            temperature: args.temperature,
            word_timestamps: args.word_timestamps,
            beam_size: args.beam_size,
            vad_filter: args.vad_filter,
            live_vad: None,
            finals_only: false,
        };
        let transcript = collect(engine.transcribe(audio, options)?, task)?;
        println!("{}", render(&transcript, args.format));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: TranscribeArgs,
    }

    #[test]
    fn formats_parse_by_their_api_names() {
        let cli = Cli::try_parse_from(["t", "a.wav", "--format", "verbose_json", "--task", "translate"]).unwrap();
        assert_eq!(cli.args.format, OutputFormat::VerboseJson);
        assert_eq!(cli.args.task, TaskArg::Translate);
        assert!(Cli::try_parse_from(["t", "a.wav", "--format", "doc"]).is_err());
    }
}

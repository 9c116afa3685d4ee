//! `smai synthesize`: text to an audio file (or standard output) on the local machine.

use super::VoicesArgs;
use clap::Args;
use smai_core::{Error, SpeechOptions, Synthesizer};
use smai_inference::audio::{encode, AudioFormat};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Args)]
pub struct SynthesizeArgs {
    /// Text to speak; `-` reads it from standard input.
    pub text: String,
    /// Voice id (see `smai voices`).
    #[arg(long, default_value = "joe")]
    pub voice: String,
    /// Output file; standard output when absent.
    #[arg(short, long)]
    pub output: Option<PathBuf>,
    /// Audio format (wav, pcm, flac, mp3, opus); by default taken from the output file's
    /// extension, else wav.
    #[arg(long)]
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

/// The format asked for, else the output file's extension, else wav.
fn output_format(format: Option<AudioFormat>, output: Option<&Path>) -> AudioFormat {
    format
        .or_else(|| output.and_then(|p| p.extension()).and_then(|e| e.to_str()).and_then(|e| e.parse().ok()))
        .unwrap_or(AudioFormat::Wav)
}

fn read_text(text: &str) -> Result<String, Error> {
    if text != "-" {
        return Ok(text.to_string());
    }
    let mut text = String::new();
    std::io::stdin().read_to_string(&mut text).map_err(|e| Error::invalid(format!("reading stdin: {e}")))?;
    Ok(text)
}

/// Synthesizes `args.text` and writes the encoded audio to the output file or stdout.
pub fn run(args: SynthesizeArgs) -> Result<(), Error> {
    let text = read_text(&args.text)?;
    let format = output_format(args.format, args.output.as_deref());
    let engine = args.voices.load()?;
    let mut stream =
        engine.synthesize(text, SpeechOptions { voice: args.voice.clone(), speed: args.speed, normalize: true })?;
    let (mut samples, mut rate) = (Vec::new(), 0);
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

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: SynthesizeArgs,
    }

    #[test]
    fn format_comes_from_the_flag_then_the_extension() {
        assert_eq!(output_format(Some(AudioFormat::Mp3), Some(Path::new("a.wav"))), AudioFormat::Mp3);
        assert_eq!(output_format(None, Some(Path::new("a.FLAC"))), AudioFormat::Flac);
        assert_eq!(output_format(None, Some(Path::new("a.txt"))), AudioFormat::Wav);
        assert_eq!(output_format(None, None), AudioFormat::Wav);
        let cli = Cli::try_parse_from(["s", "Hi.", "--format", "opus", "--device", "cpu"]).unwrap();
        assert_eq!(cli.args.format, Some(AudioFormat::Opus));
        assert_eq!(cli.args.voices.device, "cpu");
        assert!(Cli::try_parse_from(["s", "Hi.", "--format", "aiff"]).is_err());
    }
}

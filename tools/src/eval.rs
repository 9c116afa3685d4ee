//! `smai-tools asr-eval`: transcribes the dev set with the settings the reference was recorded with
//! (greedy, temperature 0, no conditioning on previous text, English), then reports corpus
//! WER beside faster-whisper's on the same files, how many token sequences differ, and speed.

use crate::wer::corpus_wer;
use clap::Args;
use serde::{Deserialize, Serialize};
use smai_core::{Error, TranscriptEvent};
use smai_inference::audio::decode_to_mono_16k;
use smai_inference::whisper::{transcribe, WhisperModel, WhisperOptions};
use std::path::{Path, PathBuf};
use std::time::Instant;

#[derive(Debug, Clone, Args)]
pub struct AsrEvalArgs {
    /// Folder with manifest.tsv and the audio it lists ($SMAI_EVAL_DIR, else
    /// ../shared/eval/dev beside the repository).
    #[arg(long, default_value_os_t = crate::default_eval_dir())]
    pub eval_dir: PathBuf,
    /// faster-whisper's transcripts of the same files (from record_references.py).
    #[arg(long, default_value_os_t = crate::repo_root().join("crates/inference/tests/fixtures/tiny_en_dev_reference.json"))]
    pub reference: PathBuf,
    #[arg(long, default_value = "tiny.en")]
    pub model: String,
    /// Folder of installed models ($SMAI_MODELS_DIR, else models/cache in the repository).
    #[arg(long, default_value_os_t = crate::default_models_dir())]
    pub models_dir: PathBuf,
    #[arg(long, default_value = "cpu")]
    pub device: String,
    /// Only the first N files.
    #[arg(long)]
    pub limit: Option<usize>,
    /// Write our transcripts here (same shape as the reference file).
    #[arg(long)]
    pub out: Option<PathBuf>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RefSegment {
    pub tokens: Vec<u32>,
    #[serde(default)]
    pub text: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RefResult {
    pub path: String,
    pub text: String,
    pub segments: Vec<RefSegment>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RefFile {
    pub reference: String,
    pub results: Vec<RefResult>,
}

pub struct ManifestRow {
    pub path: String,
    pub duration: f64,
    pub transcript: String,
}

pub fn read_manifest(dir: &Path) -> Result<Vec<ManifestRow>, Error> {
    let text = std::fs::read_to_string(dir.join("manifest.tsv"))
        .map_err(|e| Error::invalid(format!("{}: {e}", dir.join("manifest.tsv").display())))?;
    Ok(text
        .lines()
        .skip(1)
        .filter_map(|line| {
            let cols: Vec<&str> = line.split('\t').collect();
            (cols.len() >= 4).then(|| ManifestRow {
                path: cols[0].to_string(),
                duration: cols[1].parse().unwrap_or(0.0),
                transcript: cols[3].to_string(),
            })
        })
        .collect())
}

/// The decoding settings of the recorded reference.
pub fn reference_options() -> WhisperOptions {
    WhisperOptions {
        language: Some("en".into()),
        temperatures: vec![0.0],
        beam_size: 1,
        condition_on_previous_text: false,
        ..Default::default()
    }
}

/// Transcribes one file; returns the text and the tokens of all segments.
pub fn transcribe_file(model: &mut WhisperModel, path: &Path, opts: &WhisperOptions) -> Result<RefResult, Error> {
    let bytes = std::fs::read(path).map_err(|e| Error::invalid(format!("{}: {e}", path.display())))?;
    let audio = decode_to_mono_16k(&bytes)?;
    let mut segments = Vec::new();
    transcribe(model, &audio, opts, |event| {
        if let TranscriptEvent::Segment(s) = event {
            segments.push(RefSegment { tokens: s.tokens, text: s.text });
        }
        true
    })?;
    let text = segments.iter().map(|s| s.text.as_str()).collect::<String>().trim().to_string();
    Ok(RefResult { path: String::new(), text, segments })
}

fn all_tokens(r: &RefResult) -> Vec<u32> {
    r.segments.iter().flat_map(|s| s.tokens.iter().copied()).collect()
}

pub fn run_asr_eval(args: AsrEvalArgs) -> Result<(), Error> {
    let device = smai_inference::device_from_name(&args.device)?;
    let mut model =
        WhisperModel::load(&args.model, &args.models_dir.join(&args.model), &device).map_err(Error::internal)?;
    let reference: Option<RefFile> = std::fs::read(&args.reference)
        .ok()
        .map(|b| serde_json::from_slice(&b).map_err(|e| Error::invalid(format!("reference file: {e}"))))
        .transpose()?;
    let mut rows = read_manifest(&args.eval_dir)?;
    rows.truncate(args.limit.unwrap_or(rows.len()));
    let opts = reference_options();
    let (mut ours, mut audio_seconds) = (Vec::new(), 0.0);
    let started = Instant::now();
    for row in &rows {
        let mut r = transcribe_file(&mut model, &args.eval_dir.join(&row.path), &opts)?;
        r.path = row.path.clone();
        eprintln!("{}\t{}", r.path, r.text);
        audio_seconds += row.duration;
        ours.push(r);
    }
    let elapsed = started.elapsed().as_secs_f64();
    let ours_wer = corpus_wer(rows.iter().zip(&ours).map(|(row, r)| (row.transcript.as_str(), r.text.as_str())));
    println!("files: {}  audio: {:.1} s", rows.len(), audio_seconds);
    println!(
        "smai {}: WER {:.2}%  wall {:.1} s  ({:.1}x real time)",
        args.model,
        100.0 * ours_wer,
        elapsed,
        audio_seconds / elapsed
    );
    if let Some(reference) = &reference {
        let theirs: Vec<&RefResult> =
            rows.iter().filter_map(|row| reference.results.iter().find(|r| r.path == row.path)).collect();
        if theirs.len() == rows.len() {
            let fw_wer =
                corpus_wer(rows.iter().zip(&theirs).map(|(row, r)| (row.transcript.as_str(), r.text.as_str())));
            let differing = ours.iter().zip(&theirs).filter(|(a, b)| all_tokens(a) != all_tokens(b)).count();
            println!("faster-whisper (recorded): WER {:.2}%", 100.0 * fw_wer);
            println!("token sequences differing from faster-whisper: {differing} of {}", rows.len());
        } else {
            println!("reference lacks some files; no side-by-side");
        }
    }
    if let Some(out) = &args.out {
        let file = RefFile { reference: format!("smai {}", args.model), results: ours };
        let json = serde_json::to_string_pretty(&file).map_err(Error::internal)?;
        std::fs::write(out, json).map_err(|e| Error::invalid(format!("{}: {e}", out.display())))?;
    }
    Ok(())
}

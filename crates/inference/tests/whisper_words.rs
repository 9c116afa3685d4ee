//! Word timestamps of Whisper tiny.en against faster-whisper 1.2.1's (word_timestamps=True,
//! greedy, float32) on dev clips: fixtures/tiny_en_words_reference.json, recorded by
//! `record_references.py words`. Words must match textually; start and end within 0.1 s.

mod common;

use serde::Deserialize;
use smai_core::{Segment, TranscribeOptions, Transcriber, TranscriptEvent};
use smai_inference::audio::decode_to_mono_16k;
use smai_inference::whisper::{transcribe, WhisperModel, WhisperOptions};
use smai_inference::WhisperEngine;
use smai_tools::eval::reference_options;
use std::path::PathBuf;

/// Seconds a word boundary may differ from the reference's.
const TOLERANCE_S: f64 = 0.1;

fn models_dir() -> PathBuf {
    let dir = common::models_root();
    assert!(
        dir.join("tiny.en/model.bin").is_file(),
        "Whisper weights missing in {}: run `smai models pull`",
        dir.display()
    );
    dir
}

fn eval_dir() -> PathBuf {
    let dir = common::eval_root();
    assert!(dir.join("manifest.tsv").is_file(), "dev set missing at {} (set SMAI_EVAL_DIR)", dir.display());
    dir
}

#[derive(Deserialize)]
struct RefWord {
    word: String,
    start: f64,
    end: f64,
    probability: f32,
}

#[derive(Deserialize)]
struct RefSegment {
    start: f64,
    end: f64,
    words: Vec<RefWord>,
}

#[derive(Deserialize)]
struct RefResult {
    path: String,
    segments: Vec<RefSegment>,
}

#[derive(Deserialize)]
struct RefFile {
    results: Vec<RefResult>,
}

fn reference() -> RefFile {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/tiny_en_words_reference.json");
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

/// Largest start/end difference of words and segment bounds; panics on differing words.
fn compare(clip: &str, ours: &[Segment], theirs: &[RefSegment]) -> (f64, f64) {
    let our_words: Vec<_> = ours.iter().flat_map(|s| &s.words).collect();
    let their_words: Vec<_> = theirs.iter().flat_map(|s| &s.words).collect();
    let texts = |w: &[&smai_core::Word]| w.iter().map(|w| w.word.clone()).collect::<Vec<_>>();
    assert_eq!(texts(&our_words), their_words.iter().map(|w| w.word.clone()).collect::<Vec<_>>(), "{clip}");
    let mut worst_time = 0.0f64;
    let mut worst_prob = 0.0f64;
    for (a, b) in our_words.iter().zip(&their_words) {
        worst_time = worst_time.max((a.start - b.start).abs()).max((a.end - b.end).abs());
        worst_prob = worst_prob.max((a.probability - b.probability).abs() as f64);
    }
    assert_eq!(ours.len(), theirs.len(), "{clip}: segment count");
    for (a, b) in ours.iter().zip(theirs) {
        worst_time = worst_time.max((a.start - b.start).abs()).max((a.end - b.end).abs());
    }
    (worst_time, worst_prob)
}

#[test]
fn word_timestamps_match_faster_whisper() {
    let mut model = WhisperModel::load("tiny.en", &models_dir().join("tiny.en"), &candle_core::Device::Cpu).unwrap();
    let opts = WhisperOptions { word_timestamps: true, ..reference_options() };
    let (mut worst_time, mut worst_prob) = (0.0f64, 0.0f64);
    for r in reference().results {
        let audio = decode_to_mono_16k(&std::fs::read(eval_dir().join(&r.path)).unwrap()).unwrap();
        let mut segments = Vec::new();
        transcribe(&mut model, &audio, &opts, |e| {
            if let TranscriptEvent::Segment(s) = e {
                segments.push(s);
            }
            true
        })
        .unwrap();
        let (t, p) = compare(&r.path, &segments, &r.segments);
        eprintln!("{}: max time difference {t:.3} s, max probability difference {p:.4}", r.path);
        worst_time = worst_time.max(t);
        worst_prob = worst_prob.max(p);
    }
    eprintln!("all clips: max time difference {worst_time:.3} s, max probability difference {worst_prob:.4}");
    assert!(worst_time <= TOLERANCE_S + 1e-9, "word times differ by up to {worst_time} s");
    assert!(worst_prob <= 0.02, "word probabilities differ by up to {worst_prob}");
}

#[test]
fn engine_streams_segments_with_words() {
    let engine = WhisperEngine::load(&models_dir(), &["tiny.en".to_string()], &candle_core::Device::Cpu, 1).unwrap();
    let reference = reference();
    let jfk = reference.results.iter().find(|r| r.path.ends_with("jfk.flac")).unwrap();
    let audio = std::fs::read(eval_dir().join(&jfk.path)).unwrap();
    let options =
        TranscribeOptions { word_timestamps: true, beam_size: Some(1), temperature: Some(0.0), ..Default::default() };
    let mut stream = engine.transcribe(audio, options).unwrap();
    let mut segments = Vec::new();
    while let Some(event) = stream.blocking_recv() {
        if let TranscriptEvent::Segment(s) = event.unwrap() {
            assert!(!s.words.is_empty(), "segment without words: {}", s.text);
            segments.push(s);
        }
    }
    let (t, _) = compare(&jfk.path, &segments, &jfk.segments);
    assert!(t <= TOLERANCE_S + 1e-9, "jfk word times differ by up to {t} s");
}

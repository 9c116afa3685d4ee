//! Multilingual Whisper base with real weights: language detection and the translate task
//! against faster-whisper 1.2.1 (fixtures/base_reference.json, from record_references.py).

mod common;

use smai_core::{Task, TranscriptEvent};
use smai_inference::audio::decode_to_mono_16k;
use smai_inference::whisper::{transcribe, WhisperModel, WhisperOptions};
use smai_tools::wer::corpus_wer;
use std::path::PathBuf;

#[derive(serde::Deserialize)]
struct Segment {
    tokens: Vec<u32>,
}

#[derive(serde::Deserialize)]
struct Record {
    path: String,
    task: String,
    language: String,
    text: String,
    segments: Vec<Segment>,
}

#[derive(serde::Deserialize)]
struct Reference {
    results: Vec<Record>,
}

fn workspace() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."))
}

#[test]
fn base_detects_language_and_translates_like_faster_whisper() {
    let models =
        std::env::var_os("SMAI_MODELS_DIR").map(PathBuf::from).unwrap_or_else(|| workspace().join("models/cache"));
    assert!(
        models.join("base/model.bin").is_file(),
        "Whisper base weights missing in {}: run `smai models pull --only base` (or set SMAI_MODELS_DIR)",
        models.display()
    );
    let eval =
        std::env::var_os("SMAI_EVAL_DIR").map(PathBuf::from).unwrap_or_else(|| workspace().join("../shared/eval/dev"));
    let reference: Reference = serde_json::from_slice(
        &std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/base_reference.json")).unwrap(),
    )
    .unwrap();
    let mut model = WhisperModel::load("base", &models.join("base"), &common::test_device()).unwrap();
    assert!(model.tokenizer.multilingual);
    let (mut identical, mut pairs) = (0, Vec::new());
    for r in &reference.results {
        let audio = decode_to_mono_16k(&std::fs::read(eval.join(&r.path)).unwrap()).unwrap();
        let task = if r.task == "translate" { Task::Translate } else { Task::Transcribe };
        let opts = WhisperOptions {
            task,
            temperatures: vec![0.0],
            beam_size: 1,
            condition_on_previous_text: false,
            ..Default::default()
        };
        let (mut language, mut text, mut tokens) = (String::new(), String::new(), Vec::new());
        transcribe(&mut model, &audio, &opts, |e| {
            match e {
                TranscriptEvent::Started { language: l, .. } => language = l,
                TranscriptEvent::Segment(s) => {
                    text.push_str(&s.text);
                    tokens.extend(s.tokens);
                }
            }
            true
        })
        .unwrap();
        assert_eq!(language, r.language, "{}", r.path);
        let theirs: Vec<u32> = r.segments.iter().flat_map(|s| s.tokens.clone()).collect();
        if tokens == theirs {
            identical += 1;
        } else {
            eprintln!("{} {}\n  ours:   {}\n  theirs: {}", r.path, r.task, text.trim(), r.text);
        }
        pairs.push((r.text.clone(), text.trim().to_string()));
    }
    assert!(identical + 1 >= reference.results.len(), "{identical} of {} identical", reference.results.len());
    let wer = corpus_wer(pairs.iter().map(|(a, b)| (a.as_str(), b.as_str())));
    assert!(wer <= 0.05, "WER against faster-whisper {wer}");
}

//! Decoding work matches the audio it is charged for, with tiny.en and real weights: a short
//! tone costs a handful of decoder steps (no loop to the text context's limit, no fallback
//! spiral), and a caller that goes away stops the decoding before its next step, freeing
//! the worker for the next job. Work is counted in decoder steps, never timed.

mod common;

use smai_core::{TranscribeOptions, Transcriber, TranscriptEvent};
use smai_inference::audio::decode_to_mono_16k;
use smai_inference::whisper::{transcribe, transcribe_until, window_token_cap, Features, WhisperModel, WhisperOptions};
use smai_inference::WhisperEngine;
use std::cell::Cell;
use std::sync::mpsc;
use std::time::Duration;

const CLIP: &str = "librispeech_devclean_misc/forte_test_audio_0__1272-141231-0000.flac";
/// Only a guard against a hang: the assertions are on events and their order.
const HANG_GUARD: Duration = Duration::from_secs(600);

fn model() -> WhisperModel {
    WhisperModel::load("tiny.en", &common::models_root().join("tiny.en"), &common::test_device()).unwrap()
}

fn tone(seconds: f32) -> Vec<f32> {
    let n = (16_000.0 * seconds) as usize;
    (0..n).map(|i| (2.0 * std::f32::consts::PI * 440.0 * i as f32 / 16_000.0).sin() * 0.5).collect()
}

fn wav(samples: &[f32]) -> Vec<u8> {
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: 16_000,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut cursor = std::io::Cursor::new(Vec::new());
    let mut writer = hound::WavWriter::new(&mut cursor, spec).unwrap();
    samples.iter().for_each(|&s| writer.write_sample((s * 32767.0) as i16).unwrap());
    writer.finalize().unwrap();
    cursor.into_inner()
}

/// A few minutes of speech: one dev clip said over and over.
fn long_speech() -> Vec<f32> {
    let clip = decode_to_mono_16k(&std::fs::read(common::eval_root().join(CLIP)).unwrap()).unwrap();
    clip.iter().copied().cycle().take(16_000 * 240).collect()
}

#[test]
fn a_tenth_of_a_second_tone_costs_few_decoder_steps() {
    let mut model = model();
    // faster-whisper's defaults: beam 5, best of 5, six temperatures: the worst case.
    let opts = WhisperOptions::default();
    let cap = window_token_cap(0.1) as u64;
    let before = model.decoder_steps();
    let mut tokens = 0;
    transcribe(&mut model, &tone(0.1), &opts, |event| {
        if let TranscriptEvent::Segment(s) = event {
            tokens += s.tokens.len() as u64;
        }
        true
    })
    .unwrap();
    let steps = model.decoder_steps() - before;
    // Beam search: the prompt, then one call per token for all beams; sampling: one call per token
    // of each of best_of runs at each higher temperature.
    let fallback = (opts.temperatures.len() - 1) * opts.best_of;
    let bound = 1 + cap * opts.beam_size as u64 + fallback as u64 * cap;
    assert!(tokens <= cap, "{tokens} tokens for 0.1 s (cap {cap})");
    assert!(steps <= bound, "{steps} decoder steps for 0.1 s (bound {bound})");
    eprintln!("0.1 s tone: {tokens} tokens, {steps} decoder steps (bound {bound})");

    let engine =
        WhisperEngine::load(&common::models_root(), &["tiny.en".to_string()], &common::test_device(), 1).unwrap();
    let mut stream = engine.transcribe(wav(&tone(0.1)), TranscribeOptions::default()).unwrap();
    let mut engine_tokens = 0;
    while let Some(event) = stream.blocking_recv() {
        if let TranscriptEvent::Segment(s) = event.unwrap() {
            engine_tokens += s.tokens.len() as u64;
        }
    }
    assert!(engine_tokens <= cap, "the engine gave {engine_tokens} tokens for 0.1 s (cap {cap})");
}

#[test]
fn cancelling_stops_before_the_next_decoder_step() {
    let mut model = model();
    let features = Features::compute(&model.mel, &long_speech()[..16_000 * 30]);
    let opts = WhisperOptions { beam_size: 1, temperatures: vec![0.0], ..Default::default() };
    // The caller goes away at the 10th check; every decoder step is preceded by one.
    let checks = Cell::new(0u64);
    let cancelled = || {
        checks.set(checks.get() + 1);
        checks.get() >= 10
    };
    let before = model.decoder_steps();
    let mut segments = 0;
    transcribe_until(&mut model, &features, &opts, &cancelled, |event| {
        segments += matches!(event, TranscriptEvent::Segment(_)) as usize;
        true
    })
    .unwrap();
    let cancelled_steps = model.decoder_steps() - before;
    assert!(cancelled_steps < 10, "{cancelled_steps} decoder steps after cancelling at the 10th check");
    assert_eq!(segments, 0, "the window was stopped inside its token loop");
    let before = model.decoder_steps();
    transcribe_until(&mut model, &features, &opts, &|| false, |_| true).unwrap();
    let whole = model.decoder_steps() - before;
    assert!(whole > 5 * cancelled_steps.max(1), "the whole window took {whole} steps");
}

#[test]
fn dropping_the_stream_frees_the_worker_for_the_next_job() {
    let engine =
        WhisperEngine::load(&common::models_root(), &["tiny.en".to_string()], &common::test_device(), 1).unwrap();
    let greedy = TranscribeOptions { beam_size: Some(1), temperature: Some(0.0), ..Default::default() };
    let mut long = engine.transcribe(wav(&long_speech()), greedy.clone()).unwrap();
    match long.blocking_recv().unwrap().unwrap() {
        TranscriptEvent::Started { duration, .. } => assert!(duration >= 239.0, "{duration}"),
        other => panic!("expected Started, got {other:?}"),
    }
    // The long job is on the model now; its caller goes away.
    drop(long);
    let short = std::fs::read(common::eval_root().join(CLIP)).unwrap();
    let mut next = engine.transcribe(short, greedy).unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        while let Some(event) = next.blocking_recv() {
            if tx.send(event).is_err() {
                return;
            }
        }
    });
    let first = rx.recv_timeout(HANG_GUARD).expect("the next job started").unwrap();
    assert!(matches!(first, TranscriptEvent::Started { .. }), "{first:?}");
    let mut text = String::new();
    while let Ok(event) = rx.recv_timeout(HANG_GUARD) {
        if let TranscriptEvent::Segment(s) = event.unwrap() {
            text.push_str(&s.text);
        }
    }
    assert!(!text.trim().is_empty(), "the next job was transcribed");
}

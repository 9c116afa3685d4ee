//! Opus input: Ogg/Opus and WebM/Opus fixtures (fixtures/opus, made by make_opus_fixtures.sh
//! from a dev clip) decode in step with the source clip, transcribe to the same text, and
//! damaged Opus files give client errors, never panics.

mod common;

use proptest::prelude::*;
use smai_core::ErrorCode;
use smai_inference::audio::decode_to_mono_16k;
use smai_inference::whisper::{transcribe, WhisperModel};
use smai_tools::eval::reference_options;
use smai_tools::wer::corpus_wer;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Once;

const SOURCE: &str = "librispeech_devclean_misc/forte_test_audio_0__1272-141231-0000.flac";

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(format!("{}/tests/fixtures/opus/{name}", env!("CARGO_MANIFEST_DIR"))).unwrap()
}

fn source_clip() -> Vec<f32> {
    let dir = common::eval_root();
    decode_to_mono_16k(&std::fs::read(dir.join(SOURCE)).expect("dev clip (set SMAI_EVAL_DIR)")).unwrap()
}

/// Normalised correlation of `a` shifted by `lag` samples against `b`.
fn correlation(a: &[f32], b: &[f32], lag: isize) -> f64 {
    let (mut ab, mut aa, mut bb) = (0.0f64, 0.0f64, 0.0f64);
    for (i, &y) in b.iter().enumerate() {
        let j = i as isize + lag;
        if j < 0 || j as usize >= a.len() {
            continue;
        }
        let x = a[j as usize] as f64;
        ab += x * y as f64;
        aa += x * x;
        bb += y as f64 * y as f64;
    }
    ab / (aa * bb).sqrt().max(1e-12)
}

#[test]
fn opus_decodes_in_step_with_the_source() {
    let source = source_clip();
    for name in ["forte_0.opus", "forte_0.webm"] {
        let decoded = decode_to_mono_16k(&fixture(name)).unwrap();
        // Encoder padding may add up to a frame at the end; pre-skip must not remain at the start.
        let extra = decoded.len() as isize - source.len() as isize;
        assert!((-160..=960).contains(&extra), "{name}: {} samples vs {}", decoded.len(), source.len());
        let (best_lag, best) = (-200..=200isize)
            .map(|lag| (lag, correlation(&decoded, &source, lag)))
            .max_by(|a, b| a.1.total_cmp(&b.1))
            .unwrap();
        eprintln!("{name}: {} samples, best lag {best_lag}, correlation {best:.3}", decoded.len());
        // Pre-skip left in would delay the audio by 312 / 3 = 104 samples at 16 kHz.
        assert!(best_lag.abs() <= 2, "{name}: audio is shifted by {best_lag} samples");
        assert!(best > 0.5, "{name}: correlation with the source {best}");
    }
}

#[test]
fn opus_transcribes_like_the_source() {
    let dir = common::models_root();
    let mut model = WhisperModel::load("tiny.en", &dir.join("tiny.en"), &candle_core::Device::Cpu).unwrap();
    let opts = reference_options();
    let mut text_of = |audio: &[f32]| {
        let mut text = String::new();
        transcribe(&mut model, audio, &opts, |e| {
            if let smai_core::TranscriptEvent::Segment(s) = e {
                text.push_str(&s.text);
            }
            true
        })
        .unwrap();
        text
    };
    let source = text_of(&source_clip());
    for name in ["forte_0.opus", "forte_0.webm"] {
        let ours = text_of(&decode_to_mono_16k(&fixture(name)).unwrap());
        let wer = corpus_wer([(source.as_str(), ours.as_str())]);
        eprintln!("{name}: {ours:?} vs source {source:?}: WER {wer:.3}");
        assert!(wer <= 0.15, "{name}: WER {wer} against the source's transcript");
    }
}

#[test]
fn every_truncation_of_opus_files_is_handled() {
    count_opus_decoder_panics();
    for name in ["forte_0.opus", "forte_0.webm"] {
        let bytes = fixture(name);
        for cut in (0..300).chain((300..bytes.len()).step_by(211)) {
            if let Err(e) = decode_to_mono_16k(&bytes[..cut]) {
                assert!(
                    matches!(e.code, ErrorCode::UnsupportedMediaType | ErrorCode::InvalidRequest),
                    "{name} cut {cut}"
                );
            }
        }
    }
    assert_eq!(OPUS_PANICS.load(Ordering::SeqCst), 0);
}

/// Panics raised in our Opus decoder. The decoding entry point contains any panic as a client
/// error, so this hook is what tells ours apart from a demuxer's.
static OPUS_PANICS: AtomicUsize = AtomicUsize::new(0);

fn count_opus_decoder_panics() {
    static HOOK: Once = Once::new();
    HOOK.call_once(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if info.location().is_some_and(|l| l.file().ends_with("audio/opus.rs")) {
                OPUS_PANICS.fetch_add(1, Ordering::SeqCst);
            }
            default(info);
        }));
    });
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn corrupted_opus_never_panics(
        flips in proptest::collection::vec((0usize..9000, any::<u8>()), 1..24),
        webm in any::<bool>(),
    ) {
        count_opus_decoder_panics();
        let mut bytes = fixture(if webm { "forte_0.webm" } else { "forte_0.opus" });
        for (pos, byte) in flips {
            let n = bytes.len();
            bytes[pos % n] = byte;
        }
        if let Err(e) = decode_to_mono_16k(&bytes) {
            // A damaged header may state a duration past the cap: refused as too large, equally clean.
            let refused =
                matches!(e.code, ErrorCode::UnsupportedMediaType | ErrorCode::InvalidRequest | ErrorCode::PayloadTooLarge);
            prop_assert!(refused, "{:?}: {}", e.code, e.message);
        }
        prop_assert_eq!(OPUS_PANICS.load(Ordering::SeqCst), 0);
    }
}

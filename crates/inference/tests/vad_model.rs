//! Silero VAD on candle against the reference recorded with the `silero-vad` 6.2.3 wheel's
//! ONNX model under onnxruntime (fixtures/vad/onnx_reference.json, made by
//! fixtures/vad/record_vad_reference.py from the three 4 s clips beside it).

mod common;

use serde_json::Value;
use smai_inference::asr::{speech_regions, SileroVad, VadParams, VadStream};
use std::path::PathBuf;

/// Per-frame tolerance: the issue asks for 1e-3; the port is exact to f32 rounding.
const TOLERANCE: f32 = 1e-4;

fn fixtures() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/vad"))
}

fn reference(name: &str) -> Value {
    serde_json::from_slice(&std::fs::read(fixtures().join(name)).unwrap()).unwrap()
}

fn clip(name: &str) -> Vec<f32> {
    let reader = hound::WavReader::open(fixtures().join(name)).unwrap();
    assert_eq!(reader.spec().sample_rate, 16_000);
    reader.into_samples::<i16>().map(|s| f32::from(s.unwrap()) / 32_768.0).collect()
}

fn model(file: &str) -> SileroVad {
    let path = common::models_root().join("silero-vad").join(file);
    SileroVad::load(&path).unwrap_or_else(|e| panic!("{e}: run `smai models pull --only silero-vad` first"))
}

fn expected(reference: &Value, clip: &str) -> Vec<f32> {
    reference["clips"][clip].as_array().unwrap().iter().map(|p| p.as_f64().unwrap() as f32).collect()
}

fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}

#[test]
fn probabilities_match_the_onnx_reference_per_frame() {
    let vad = model("silero_vad_16k_op15.onnx");
    let reference = reference("onnx_reference.json");
    for name in ["jfk.wav", "LJ001-0001.wav", "cmu_arctic_us_aew_a0002.wav"] {
        let probs = vad.probabilities(&clip(name)).unwrap();
        let diff = max_diff(&probs, &expected(&reference, name));
        assert!(diff <= TOLERANCE, "{name}: max |p - reference| = {diff}");
        // The clips hold speech and silence both: a model that always says one thing fails.
        assert!(probs.iter().any(|&p| p > 0.9) && probs.iter().any(|&p| p < 0.1), "{name}: {probs:?}");
    }
}

#[test]
fn chunk_sizes_do_not_change_the_probabilities() {
    let vad = model("silero_vad_16k_op15.onnx");
    let samples = clip("jfk.wav");
    let whole = vad.probabilities(&samples).unwrap();
    for chunk in [160, 511, 512, 1600, 7777] {
        let mut stream = VadStream::new();
        let mut probs = Vec::new();
        for piece in samples.chunks(chunk) {
            probs.extend(stream.push(&vad, piece).unwrap());
        }
        probs.extend(stream.finish(&vad).unwrap());
        // Batched and single-frame products round differently; nothing else may differ.
        let diff = max_diff(&probs, &whole);
        assert!(diff <= 1e-5, "chunks of {chunk}: max difference {diff}");
    }
    // A partial last frame is scored zero-padded, as the reference scores a file.
    assert_eq!(vad.probabilities(&samples[..1000]).unwrap().len(), 2);
}

#[test]
fn speech_regions_match_the_reference_timestamps() {
    let vad = model("silero_vad_16k_op15.onnx");
    let reference = reference("onnx_reference.json");
    let cases = [
        ("default", VadParams::default()),
        ("max_speech_1.5s", VadParams { max_speech_s: 1.5, ..Default::default() }),
        (
            "thr0.3_minsil50_pad0",
            VadParams { threshold: 0.3, min_silence_ms: 50, speech_pad_ms: 0, ..Default::default() },
        ),
    ];
    for name in ["jfk.wav", "LJ001-0001.wav", "cmu_arctic_us_aew_a0002.wav"] {
        let samples = clip(name);
        let probs = vad.probabilities(&samples).unwrap();
        for (case, params) in &cases {
            let ours = speech_regions(&probs, samples.len(), params);
            let theirs: Vec<_> = reference["speech_timestamps"]["results"][name][case]
                .as_array()
                .unwrap()
                .iter()
                .map(|r| r["start"].as_u64().unwrap() as usize..r["end"].as_u64().unwrap() as usize)
                .collect();
            assert_eq!(ours, theirs, "{name} {case}");
        }
    }
}

/// The wheel's safetensors file holds another checkpoint than its ONNX and TorchScript models
/// (same architecture, other weights), so it is checked against probabilities recorded from it
/// by a numpy implementation of the same graph, and for agreement with the ONNX model's
/// speech/silence decisions.
#[test]
fn the_wheels_safetensors_checkpoint_loads_under_the_same_names() {
    let vad = model("silero_vad_16k.safetensors");
    let own = reference("safetensors_reference.json");
    let onnx = reference("onnx_reference.json");
    for name in ["jfk.wav", "LJ001-0001.wav", "cmu_arctic_us_aew_a0002.wav"] {
        let probs = vad.probabilities(&clip(name)).unwrap();
        let diff = max_diff(&probs, &expected(&own, name));
        assert!(diff <= TOLERANCE, "{name}: max |p - numpy reference| = {diff}");
        let onnx_probs = expected(&onnx, name);
        let agree = probs.iter().zip(&onnx_probs).filter(|(a, b)| (**a >= 0.5) == (**b >= 0.5)).count();
        assert!(agree as f64 >= 0.95 * probs.len() as f64, "{name}: {agree}/{} decisions agree", probs.len());
    }
}

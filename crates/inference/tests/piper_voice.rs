//! The Piper voice against piper-tts's own outputs (recorded by tests/fixtures/piper/record.py).
//! Needs the en_US-joe-medium voice in $SMAI_MODELS_DIR (default: models/cache at the
//! workspace root).

mod common;

use std::path::PathBuf;
use std::sync::OnceLock;

use candle_core::Device;
use serde::Deserialize;
use smai_inference::phonemize::{phonemes_to_ids, phonemize};
use smai_inference::vits::{InferenceScales, Voice};
use smai_inference::whisper::ComputeType;

const VOICE: &str = "en_US-joe-medium";

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/piper")
}

fn voice() -> &'static Voice {
    static VOICE_CELL: OnceLock<Voice> = OnceLock::new();
    VOICE_CELL.get_or_init(|| load(ComputeType::Float32))
}

fn load(compute: ComputeType) -> Voice {
    let dir = std::env::var("SMAI_MODELS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../models/cache"));
    let onnx = dir.join(VOICE).join(format!("{VOICE}.onnx"));
    assert!(
        onnx.exists(),
        "voice {VOICE} is not installed: expected {} (run `smai models pull {VOICE}` or set SMAI_MODELS_DIR)",
        onnx.display()
    );
    Voice::load_as(&onnx, None, &common::test_device(), compute).expect("voice loads")
}

#[derive(Deserialize)]
struct SentenceFixture {
    phonemes: String,
    ids: Vec<i64>,
}

#[test]
fn phoneme_ids_match_piper() {
    let text = std::fs::read_to_string(fixtures().join("phonemes.json")).unwrap();
    let cases: std::collections::BTreeMap<String, Vec<SentenceFixture>> = serde_json::from_str(&text).unwrap();
    let map = &voice().config.phoneme_id_map;
    let mut failures = Vec::new();
    for (text, expected) in &cases {
        let ours = phonemize("en-us", text).unwrap();
        let ours_text: Vec<String> = ours.iter().map(|s| s.concat()).collect();
        let theirs_text: Vec<&str> = expected.iter().map(|s| s.phonemes.as_str()).collect();
        let ours_ids: Vec<Vec<i64>> = ours.iter().map(|s| phonemes_to_ids(s, map).unwrap()).collect();
        let theirs_ids: Vec<&Vec<i64>> = expected.iter().map(|s| &s.ids).collect();
        if ours_text != theirs_text || ours_ids.iter().collect::<Vec<_>>() != theirs_ids {
            failures.push(format!("{text:?}\n  ours:  {ours_text:?}\n  piper: {theirs_text:?}"));
        }
    }
    assert!(failures.is_empty(), "phonemes differ from piper-tts:\n{}", failures.join("\n"));
}

#[derive(Deserialize)]
struct AudioFixture {
    name: String,
    ids: Vec<i64>,
    samples: usize,
    noise_scale: f32,
    length_scale: f32,
    noise_w: f32,
}

/// Signal-to-noise ratio of `ours` against `reference`, in dB.
fn snr_db(reference: &[f32], ours: &[f32]) -> f64 {
    let signal: f64 = reference.iter().map(|&r| (r as f64).powi(2)).sum();
    let noise: f64 = reference.iter().zip(ours).map(|(&r, &o)| (r as f64 - o as f64).powi(2)).sum();
    10.0 * (signal / noise.max(1e-20)).log10()
}

#[test]
fn waveform_matches_piper_onnxruntime() {
    waveform_matches(voice(), 40.0);
}

/// The bf16 vocoder (`--compute-type bfloat16`) stays within 30 dB SNR of piper-tts's float
/// waveform (41-44 dB measured; in bf16 the flows as well would give 24 dB, which is why they
/// stay f32).
#[test]
fn bf16_vocoder_waveform_stays_near_piper_onnxruntime() {
    let voice = load(ComputeType::Bfloat16);
    if voice.compute_type != ComputeType::Bfloat16 {
        eprintln!("skipped: no bf16 vocoder on this device (needs a CPU with AVX-512 BF16)");
        return;
    }
    waveform_matches(&voice, 30.0);
}

fn waveform_matches(voice: &Voice, min_snr_db: f64) {
    let text = std::fs::read_to_string(fixtures().join("audio.json")).unwrap();
    let cases: Vec<AudioFixture> = serde_json::from_str(&text).unwrap();
    assert!(!cases.is_empty());
    for case in cases {
        let bytes = std::fs::read(fixtures().join(format!("{}.i16", case.name))).unwrap();
        let reference: Vec<f32> =
            bytes.chunks_exact(2).map(|b| i16::from_le_bytes([b[0], b[1]]) as f32 / 32767.0).collect();
        assert_eq!(reference.len(), case.samples);
        let scales =
            InferenceScales { noise_scale: case.noise_scale, length_scale: case.length_scale, noise_w: case.noise_w };
        let ours = voice.model.synthesize(&case.ids, scales, 0).unwrap();
        assert_eq!(ours.len(), reference.len(), "{}: sample count (durations) differ", case.name);
        let snr = snr_db(&reference, &ours);
        let max_diff = reference.iter().zip(&ours).map(|(r, o)| (r - o).abs()).fold(0f32, f32::max);
        eprintln!("{}: SNR {snr:.1} dB, max abs diff {max_diff:.5}", case.name);
        assert!(snr >= min_snr_db, "{}: SNR {snr:.1} dB < {min_snr_db} dB (max abs diff {max_diff})", case.name);
    }
}

#[test]
fn corrupt_voice_file_is_a_clear_error() {
    let dir = std::env::temp_dir().join(format!("smai-voice-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let onnx = dir.join("broken.onnx");
    std::fs::write(&onnx, b"\x08\x08garbage").unwrap();
    let json = r#"{"audio":{"sample_rate":22050},"espeak":{"voice":"en-us"},"phoneme_id_map":{"_":[0]}}"#;
    std::fs::write(dir.join("broken.onnx.json"), json).unwrap();
    let err = Voice::load(&onnx, None, &Device::Cpu).err().expect("garbage is refused");
    let msg = err.to_string();
    assert!(msg.contains("ONNX") || msg.contains("initializers"), "{msg}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_missing_weight_is_named() {
    use smai_inference::vits::{onnx::OnnxWeights, Vits};
    let dir = std::env::var("SMAI_MODELS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../models/cache"));
    let bytes = std::fs::read(dir.join(VOICE).join(format!("{VOICE}.onnx"))).expect("voice installed");
    let weights = OnnxWeights::parse(&bytes).unwrap();
    // Recovered names: renamed WaveNet convs, the embedding, the folded affine log-scale.
    for name in ["flow.flows.6.enc.in_layers.0.weight", "enc_p.emb.weight", "dp.flows.0.logs"] {
        assert!(weights.tensors.contains_key(name), "{name} recovered");
    }
    for name in ["flow.flows.2.enc.res_skip_layers.3.weight", "dec.conv_pre.weight"] {
        let mut broken = OnnxWeights::parse(&bytes).unwrap();
        broken.tensors.remove(name);
        let err = Vits::from_onnx(&broken, &Device::Cpu).err().expect("refused");
        assert!(err.to_string().contains(name), "{err}");
    }
}

//! Log-mel features against faster-whisper's FeatureExtractor on the same samples
//! (fixtures recorded by fixtures/record_references.py `mel`).

use smai_inference::audio::{decode_to_mono_16k, mel::LogMel};

#[derive(serde::Deserialize)]
struct Slice {
    columns: Vec<usize>,
    values: Vec<Vec<f32>>,
}

#[derive(serde::Deserialize)]
struct Reference {
    frames: usize,
    mel80: Slice,
    mel128: Slice,
}

/// The fixture is rounded to 1e-6 and both sides use float32 FFTs; measured differences are
/// about 1e-5 on a feature range of about 2.
const TOLERANCE: f32 = 1e-4;

#[test]
fn matches_faster_whisper_feature_extractor() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures");
    let wav = std::fs::read(format!("{dir}/mel_input.wav")).unwrap();
    let reference: Reference =
        serde_json::from_slice(&std::fs::read(format!("{dir}/mel_reference.json")).unwrap()).unwrap();
    // A 16 kHz file: decoded samples reach the features unresampled.
    let audio = decode_to_mono_16k(&wav).unwrap();
    for (n_mels, slice) in [(80, &reference.mel80), (128, &reference.mel128)] {
        let (frames, mel) = LogMel::new(n_mels).compute(&audio);
        assert_eq!(frames, reference.frames);
        let mut worst = 0.0f32;
        for (m, row) in slice.values.iter().enumerate() {
            for (k, &col) in slice.columns.iter().enumerate() {
                worst = worst.max((mel[m * frames + col] - row[k]).abs());
            }
        }
        eprintln!("{n_mels} mels: max abs difference {worst}");
        assert!(worst < TOLERANCE, "{n_mels} mels: max abs difference {worst}");
    }
}

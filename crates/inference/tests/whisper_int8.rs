//! Whisper tiny.en with int8 products (`--compute-type int8`) over the whole dev set, against
//! faster-whisper 1.2.1's greedy transcripts in float32 and in int8 (fixtures
//! tiny_en_dev_reference.json and tiny_en_dev_reference_int8.json, recorded by
//! record_references.py). Our float32 is token-identical to faster-whisper's float32 on these
//! clips (whisper_model.rs), so the float32 reference's WER is the float32 WER.

mod common;

use smai_inference::whisper::{ComputeType, WhisperModel};
use smai_tools::eval::{read_manifest, reference_options, transcribe_file, RefFile, RefResult};
use smai_tools::wer::corpus_wer;

fn reference(name: &str) -> RefFile {
    let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

fn tokens(r: &RefResult) -> Vec<u32> {
    r.segments.iter().flat_map(|s| s.tokens.iter().copied()).collect()
}

#[test]
fn int8_keeps_the_dev_set_wer_and_mostly_faster_whispers_int8_tokens() {
    let dir = common::models_root().join("tiny.en");
    assert!(dir.join("model.bin").is_file(), "tiny.en missing in {}: run `smai models pull`", dir.display());
    let mut model = WhisperModel::load_as("tiny.en", &dir, &candle_core::Device::Cpu, ComputeType::Int8).unwrap();
    assert_eq!(model.compute_type, ComputeType::Int8);
    let (float, int8) = (reference("tiny_en_dev_reference.json"), reference("tiny_en_dev_reference_int8.json"));
    let rows = read_manifest(&common::eval_root()).unwrap();
    let opts = reference_options();
    let (mut ours, mut theirs_f32, mut theirs_int8) = (Vec::new(), Vec::new(), Vec::new());
    let mut identical = 0;
    for row in &rows {
        let mut got = transcribe_file(&mut model, &common::eval_root().join(&row.path), &opts).unwrap();
        got.path = row.path.clone();
        let f = float.results.iter().find(|r| r.path == row.path).expect("file in the float32 reference");
        let q = int8.results.iter().find(|r| r.path == row.path).expect("file in the int8 reference");
        if tokens(&got) == tokens(q) {
            identical += 1;
        }
        ours.push(got.text);
        theirs_f32.push(f.text.clone());
        theirs_int8.push(q.text.clone());
    }
    let wer = |texts: &[String]| corpus_wer(rows.iter().zip(texts).map(|(r, t)| (r.transcript.as_str(), t.as_str())));
    let (ours_wer, f32_wer, fw_int8_wer) = (wer(&ours), wer(&theirs_f32), wer(&theirs_int8));
    eprintln!(
        "{} files: WER int8 {:.2}%, float32 {:.2}%, faster-whisper int8 {:.2}%; token sequences identical to \
         faster-whisper int8: {identical}",
        rows.len(),
        100.0 * ours_wer,
        100.0 * f32_wer,
        100.0 * fw_int8_wer
    );
    assert!(ours_wer <= f32_wer + 0.005, "int8 WER {ours_wer} is more than 0.5 points above float32's {f32_wer}");
    assert!(
        2 * identical >= rows.len(),
        "only {identical} of {} token sequences match faster-whisper int8",
        rows.len()
    );
}

//! The Hugging Face layout (config.json, generation_config.json, model.safetensors): the
//! installed tiny.en CTranslate2 weights are written under Hugging Face names into a temporary
//! folder, loaded back through that path, and must transcribe (with word timestamps) exactly
//! as the CTranslate2 load does.

mod common;

use serde_json::json;
use smai_core::{Segment, TranscriptEvent};
use smai_inference::audio::decode_to_mono_16k;
use smai_inference::whisper::ct2::Ct2Model;
use smai_inference::whisper::load::ct2_to_candle;
use smai_inference::whisper::{transcribe, WhisperModel, WhisperOptions};
use smai_tools::eval::reference_options;
use std::path::Path;

/// Writes `ct2_dir`'s model in the Hugging Face layout into `out`.
fn write_hf_layout(ct2_dir: &Path, out: &Path) {
    let ct2 = Ct2Model::parse(&std::fs::read(ct2_dir.join("model.bin")).unwrap()).unwrap();
    let (tensors, config) = ct2_to_candle(&ct2, &candle_core::Device::Cpu).unwrap();
    candle_core::safetensors::save(&tensors, out.join("model.safetensors")).unwrap();
    let ct2_config: serde_json::Value =
        serde_json::from_slice(&std::fs::read(ct2_dir.join("config.json")).unwrap()).unwrap();
    let hf_config = json!({
        "num_mel_bins": config.num_mel_bins,
        "max_source_positions": config.max_source_positions,
        "d_model": config.d_model,
        "encoder_attention_heads": config.encoder_attention_heads,
        "encoder_layers": config.encoder_layers,
        "vocab_size": config.vocab_size,
        "max_target_positions": config.max_target_positions,
        "decoder_attention_heads": config.decoder_attention_heads,
        "decoder_layers": config.decoder_layers,
        "suppress_tokens": ct2_config["suppress_ids"],
    });
    std::fs::write(out.join("config.json"), hf_config.to_string()).unwrap();
    let generation = json!({
        "begin_suppress_tokens": ct2_config["suppress_ids_begin"],
        "alignment_heads": ct2_config["alignment_heads"],
    });
    std::fs::write(out.join("generation_config.json"), generation.to_string()).unwrap();
    for file in ["vocabulary.txt", "tokenizer.json"] {
        std::fs::copy(ct2_dir.join(file), out.join(file)).unwrap();
    }
}

fn segments(model: &mut WhisperModel, audio: &[f32], opts: &WhisperOptions) -> Vec<Segment> {
    let mut out = Vec::new();
    transcribe(model, audio, opts, |e| {
        if let TranscriptEvent::Segment(s) = e {
            out.push(s);
        }
        true
    })
    .unwrap();
    out
}

#[test]
fn hugging_face_layout_transcribes_like_ctranslate2() {
    let models = common::models_root();
    let eval = common::eval_root();
    let ct2_dir = models.join("tiny.en");
    let hf_dir = tempfile::tempdir().unwrap();
    write_hf_layout(&ct2_dir, hf_dir.path());
    assert!(!hf_dir.path().join("model.bin").exists());

    let cpu = candle_core::Device::Cpu;
    let mut from_ct2 = WhisperModel::load("tiny.en", &ct2_dir, &cpu).unwrap();
    let mut from_hf = WhisperModel::load("tiny.en", hf_dir.path(), &cpu).unwrap();
    // The Hugging Face config carries the suppressed tokens; CTranslate2 keeps them in generation.
    let hf_config = candle_transformers::models::whisper::Config { suppress_tokens: vec![], ..from_hf.config.clone() };
    assert_eq!(hf_config, from_ct2.config);
    assert_eq!(from_hf.generation.alignment_heads, from_ct2.generation.alignment_heads);
    assert_eq!(from_hf.generation.suppress_ids, from_ct2.generation.suppress_ids);

    let clip = eval.join("jfk_openai_whisper/jfk.flac");
    let audio = decode_to_mono_16k(&std::fs::read(clip).unwrap()).unwrap();
    let opts = WhisperOptions { word_timestamps: true, ..reference_options() };
    let a = segments(&mut from_ct2, &audio, &opts);
    let b = segments(&mut from_hf, &audio, &opts);
    assert!(!a.is_empty());
    assert_eq!(a.iter().map(|s| &s.tokens).collect::<Vec<_>>(), b.iter().map(|s| &s.tokens).collect::<Vec<_>>());
    assert_eq!(a.iter().map(|s| &s.words).collect::<Vec<_>>(), b.iter().map(|s| &s.words).collect::<Vec<_>>());
}

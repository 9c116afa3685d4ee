//! Whisper tiny.en with real weights against faster-whisper 1.2.1's greedy transcripts of the
//! same dev clips (fixtures/tiny_en_dev_reference.json, recorded by record_references.py).
//! Weights come from $SMAI_MODELS_DIR (default models/cache), installed by `smai models pull`.

mod common;

use smai_core::{ErrorCode, TranscribeOptions, Transcriber, TranscriptEvent};
use smai_inference::whisper::{WhisperModel, WhisperOptions};
use smai_inference::WhisperEngine;
use smai_tools::eval::{reference_options, transcribe_file, RefFile};
use smai_tools::wer::corpus_wer;
use std::path::PathBuf;

fn models_dir() -> PathBuf {
    let dir = common::models_root();
    assert!(
        dir.join("tiny.en/model.bin").is_file(),
        "Whisper weights missing in {}: run `smai models pull --only tiny.en` (or set SMAI_MODELS_DIR)",
        dir.display()
    );
    dir
}

fn eval_dir() -> PathBuf {
    let dir = common::eval_root();
    assert!(dir.join("manifest.tsv").is_file(), "dev set missing at {} (set SMAI_EVAL_DIR)", dir.display());
    dir
}

fn reference() -> RefFile {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/tiny_en_dev_reference.json");
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

/// 16 kHz clips (no resampling, so both sides see the same samples) plus the 44.1 kHz JFK clip.
const CLIPS: &[&str] = &[
    "librispeech_devclean_misc/forte_test_audio_0__1272-141231-0000.flac",
    "librispeech_devclean_misc/forte_test_audio_1__1272-128104-0001.flac",
    "librispeech_devclean_misc/picovoice_leopard_test__1272-128104-0000.wav",
    "jfk_openai_whisper/jfk.flac",
];

#[test]
fn tiny_en_matches_faster_whisper_on_dev_clips() {
    let dir = models_dir();
    let mut model = WhisperModel::load("tiny.en", &dir.join("tiny.en"), &common::test_device()).unwrap();
    let reference = reference();
    let opts = reference_options();
    let mut identical = 0;
    let mut pairs = Vec::new();
    for clip in CLIPS {
        let ours = transcribe_file(&mut model, &eval_dir().join(clip), &opts).unwrap();
        let theirs = reference.results.iter().find(|r| r.path == *clip).expect("clip in reference");
        let ours_tokens: Vec<u32> = ours.segments.iter().flat_map(|s| s.tokens.clone()).collect();
        let their_tokens: Vec<u32> = theirs.segments.iter().flat_map(|s| s.tokens.clone()).collect();
        if ours_tokens == their_tokens {
            identical += 1;
        } else {
            eprintln!("{clip}\n  ours:   {}\n  theirs: {}", ours.text, theirs.text);
        }
        pairs.push((theirs.text.clone(), ours.text));
    }
    // 16 kHz clips decode to the same features, so greedy tokens should agree exactly there.
    assert!(identical >= 3, "only {identical} of {} token sequences match faster-whisper", CLIPS.len());
    let wer = corpus_wer(pairs.iter().map(|(a, b)| (a.as_str(), b.as_str())));
    assert!(wer <= 0.02, "WER against faster-whisper's transcripts {wer}");
    let jfk = &pairs[3].1;
    assert!(jfk.contains("ask not what your country can do for you"), "{jfk}");
}

#[test]
fn beam_search_matches_faster_whisper_beam_5() {
    let dir = models_dir();
    let mut model = WhisperModel::load("tiny.en", &dir.join("tiny.en"), &common::test_device()).unwrap();
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/tiny_en_beam5_reference.json");
    let reference: RefFile = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    let opts = WhisperOptions { beam_size: 5, ..reference_options() };
    let mut pairs = Vec::new();
    let mut identical = 0;
    for r in &reference.results {
        let ours = transcribe_file(&mut model, &eval_dir().join(&r.path), &opts).unwrap();
        if ours.text == r.text {
            identical += 1;
        } else {
            eprintln!("{}\n  ours:   {}\n  theirs: {}", r.path, ours.text, r.text);
        }
        pairs.push((r.text.clone(), ours.text));
    }
    assert!(identical + 1 >= reference.results.len(), "{identical} of {} identical", reference.results.len());
    let wer = corpus_wer(pairs.iter().map(|(a, b)| (a.as_str(), b.as_str())));
    assert!(wer <= 0.05, "WER against faster-whisper beam 5: {wer}");
}

#[test]
fn prompt_encoding_matches_the_reference_tokenizer() {
    let dir = models_dir();
    let model = WhisperModel::load("tiny.en", &dir.join("tiny.en"), &common::test_device()).unwrap();
    #[derive(serde::Deserialize)]
    struct Case {
        text: String,
        ids: Vec<u32>,
    }
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/bpe_reference.json");
    let cases: Vec<Case> = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    let bpe = model.bpe.as_ref().expect("tiny.en ships tokenizer.json");
    for c in cases {
        assert_eq!(bpe.encode(&c.text), c.ids, "{:?}", c.text);
        assert_eq!(model.tokenizer.decode(&c.ids), c.text);
    }
}

#[test]
fn engine_streams_segments_and_refuses_when_full() {
    let engine = WhisperEngine::load(&models_dir(), &["tiny.en".to_string()], &common::test_device(), 1).unwrap();
    let info = engine.models();
    assert_eq!(info[0].id, "tiny.en");
    assert!(!info[0].multilingual);
    let audio = std::fs::read(eval_dir().join(CLIPS[0])).unwrap();
    let greedy = TranscribeOptions { beam_size: Some(1), temperature: Some(0.0), ..Default::default() };

    let mut stream = engine.transcribe(audio.clone(), greedy).unwrap();
    let mut refused = false;
    let mut extra = Vec::new();
    for _ in 0..3 {
        match engine.transcribe(audio.clone(), TranscribeOptions::default()) {
            Ok(s) => extra.push(s),
            Err(e) => {
                assert_eq!(e.code, ErrorCode::Overloaded);
                refused = true;
            }
        }
    }
    assert!(refused, "a queue of depth 1 must refuse the fourth concurrent job");
    drop(extra); // callers that go away: their jobs are skipped or stopped

    match stream.blocking_recv().unwrap().unwrap() {
        TranscriptEvent::Started { language, duration } => {
            assert_eq!(language, "en");
            assert!((duration - 4.65).abs() < 0.01, "{duration}");
        }
        other => panic!("expected Started, got {other:?}"),
    }
    let mut text = String::new();
    while let Some(event) = stream.blocking_recv() {
        if let TranscriptEvent::Segment(s) = event.unwrap() {
            assert!(s.end > s.start);
            text.push_str(&s.text);
        }
    }

    let reference = reference();
    let expected = &reference.results.iter().find(|r| r.path == CLIPS[0]).unwrap().text;
    assert_eq!(text.trim(), expected);

    // The dropped jobs may still hold the queue for a moment.
    let submit = || {
        for _ in 0..100 {
            match engine.transcribe(b"not audio".to_vec(), TranscribeOptions::default()) {
                Err(e) if e.code == ErrorCode::Overloaded => std::thread::sleep(std::time::Duration::from_millis(50)),
                other => return other.unwrap(),
            }
        }
        panic!("queue never drained");
    };
    let bad = submit().blocking_recv();
    assert!(matches!(bad, Some(Err(ref e)) if e.code != ErrorCode::Internal));
    let unknown = TranscribeOptions { model: Some("large".into()), ..Default::default() };
    assert_eq!(engine.transcribe(vec![], unknown).unwrap_err().code, ErrorCode::NotFound);
}

/// Beams decoded together (one row each of one decoder pass, the cache rows selected after a
/// step) give each beam the logits it gets decoded alone, up to the order of sums in the
/// attention products (measured: about 1e-5 on logits of magnitude 10).
#[test]
fn beams_decoded_together_get_the_logits_they_get_alone() {
    use smai_inference::audio::{decode_to_mono_16k, mel::N_FRAMES};
    let dir = models_dir();
    let model = WhisperModel::load("tiny.en", &dir.join("tiny.en"), &common::test_device()).unwrap();
    let audio = decode_to_mono_16k(&std::fs::read(eval_dir().join(CLIPS[3])).unwrap()).unwrap();
    let (n_frames, feats) = model.mel.compute(&audio);
    let n_mels = model.mel.n_mels();
    let mut window = vec![0.0f32; n_mels * N_FRAMES];
    let size = N_FRAMES.min(n_frames);
    for m in 0..n_mels {
        window[m * N_FRAMES..m * N_FRAMES + size].copy_from_slice(&feats[m * n_frames..m * n_frames + size]);
    }
    let encoded = model.encode(&window).unwrap();
    let t = &model.tokenizer;
    let prompt = t.sot_sequence(None, false);
    let mut shared = model.start(&encoded).unwrap();
    model.feed(&mut shared, &prompt, &[prompt.len() - 1]).unwrap();
    // Three beams from the prompt, then two steps with the rows reordered and one repeated.
    let steps: [(&[u32], &[u32]); 2] = [(&[0, 0, 0], &[400, 401, 402]), (&[2, 0, 2], &[500, 501, 502])];
    let mut batch = shared.clone();
    let mut alone = vec![shared.clone(), shared.clone(), shared];
    for (parents, tokens) in steps {
        batch.select(parents).unwrap();
        let together = model.feed_rows(&mut batch, tokens).unwrap();
        let mut next = Vec::new();
        for (row, (&parent, &token)) in parents.iter().zip(tokens).enumerate() {
            let mut state = alone[parent as usize].clone();
            let logits = model.feed(&mut state, &[token], &[0]).unwrap().remove(0);
            let diff = logits.iter().zip(&together[row]).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
            assert!(diff <= 1e-4, "row {row} differs from its beam decoded alone by {diff}");
            next.push(state);
        }
        alone = next;
    }
}

/// The engine's float32 (`load_as`) holds the f16 weights of model.bin at half width: the
/// encoder output, a prompt's logits and a step of five rows must be the float32 copy's
/// (`load`) bit for bit.
#[test]
fn float32_at_half_width_is_the_float32_model_bit_for_bit() {
    use smai_inference::whisper::ComputeType;
    let dir = models_dir().join("tiny.en");
    let device = candle_core::Device::Cpu;
    let full = WhisperModel::load("tiny.en", &dir, &device).unwrap();
    let half = WhisperModel::load_as("tiny.en", &dir, &device, ComputeType::Float32).unwrap();
    let audio = std::fs::read(eval_dir().join(CLIPS[0])).unwrap();
    let audio = smai_inference::audio::decode_to_mono_16k(&audio).unwrap();
    let (n_frames, mel) = full.mel.compute(&audio);
    let n_mels = full.mel.n_mels();
    let frames = smai_inference::audio::mel::N_FRAMES;
    let mut window = vec![0.0f32; n_mels * frames];
    for (m, row) in window.chunks_exact_mut(frames).enumerate() {
        let take = n_frames.min(frames);
        row[..take].copy_from_slice(&mel[m * n_frames..][..take]);
    }
    let bits = |t: &candle_core::Tensor| -> Vec<u32> {
        t.flatten_all().unwrap().to_vec1::<f32>().unwrap().iter().map(|v| v.to_bits()).collect()
    };
    let (encoded_full, encoded_half) = (full.encode(&window).unwrap(), half.encode(&window).unwrap());
    assert!(bits(&encoded_full) == bits(&encoded_half), "encoder outputs differ");
    let prompt = [50257u32, 50362, 383, 2068, 7586, 21831, 13];
    let positions: Vec<usize> = (0..prompt.len()).collect();
    let (mut state_full, mut state_half) = (full.start(&encoded_full).unwrap(), half.start(&encoded_half).unwrap());
    let logits_full = full.feed(&mut state_full, &prompt, &positions).unwrap();
    let logits_half = half.feed(&mut state_half, &prompt, &positions).unwrap();
    let same = |a: &[Vec<f32>], b: &[Vec<f32>]| {
        a.len() == b.len() && a.iter().flatten().zip(b.iter().flatten()).all(|(x, y)| x.to_bits() == y.to_bits())
    };
    assert!(same(&logits_full, &logits_half), "prompt logits differ");
    let rows = [0u32; 5];
    state_full.select(&rows).unwrap();
    state_half.select(&rows).unwrap();
    let step = [262u32, 290, 314, 318, 340];
    let rows_full = full.feed_rows(&mut state_full, &step).unwrap();
    let rows_half = half.feed_rows(&mut state_half, &step).unwrap();
    assert!(same(&rows_full, &rows_half), "beam step logits differ");
}

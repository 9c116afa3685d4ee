//! Live transcription with tiny.en: a 29 s dev clip (8 kHz, so the session resamples) fed in
//! 0.5 s chunks gives partial results before the end, and its final segments read like the
//! whole-file transcript of the same engine.

mod common;

use smai_core::{TranscribeOptions, Transcriber, TranscriptEvent};
use smai_inference::audio::decode_audio;
use smai_inference::cli::wer::corpus_wer;
use smai_inference::{StreamEvent, StreamOptions, WhisperEngine};

const CLIP: &str = "librispeech_devclean_misc/ortx_1272-128104-0004-8k.wav";
/// Word error rate allowed between the live transcript and the whole-file one.
const MAX_WER: f64 = 0.15;

#[test]
fn live_session_matches_the_whole_file() {
    let models = common::models_root();
    let eval = common::eval_root();
    let engine = WhisperEngine::load(&models, &["tiny.en".to_string()], &candle_core::Device::Cpu, 2).unwrap();
    let bytes = std::fs::read(eval.join(CLIP)).unwrap();
    let options = TranscribeOptions { beam_size: Some(1), temperature: Some(0.0), ..Default::default() };

    let mut whole = String::new();
    let mut stream = engine.transcribe(bytes.clone(), options.clone()).unwrap();
    while let Some(event) = stream.blocking_recv() {
        if let TranscriptEvent::Segment(s) = event.unwrap() {
            whole.push_str(&s.text);
        }
    }

    let audio = decode_audio(&bytes).unwrap();
    assert_eq!(audio.sample_rate, 8000);
    let stream_options =
        StreamOptions { sample_rate: audio.sample_rate, step_seconds: 2.0, transcribe: options, ..Default::default() };
    let mut session = engine.open_stream(stream_options).unwrap();
    let chunk = audio.sample_rate as usize / 2;
    let (mut finals, mut partials_before_close, mut last_end) = (Vec::new(), 0, 0.0f64);
    for (i, piece) in audio.samples.chunks(chunk).enumerate() {
        let pcm: Vec<i16> = piece.iter().map(|&s| (s * 32767.0).round() as i16).collect();
        let events = if i % 2 == 0 { session.feed_f32(piece) } else { session.feed_s16(&pcm) }.unwrap();
        for e in events {
            match e {
                StreamEvent::Partial { .. } => partials_before_close += 1,
                StreamEvent::Final(s) => finals.push(s),
            }
        }
    }
    let finals_before_close = finals.len();
    for e in session.close().unwrap() {
        match e {
            StreamEvent::Final(s) => finals.push(s),
            StreamEvent::Partial { .. } => panic!("closing leaves nothing partial"),
        }
    }
    for (k, s) in finals.iter().enumerate() {
        assert_eq!(s.id, k + 1);
        assert!(
            s.start >= last_end - 1e-6 && s.end >= s.start,
            "segment {k} at {}..{} after {last_end}",
            s.start,
            s.end
        );
        last_end = s.end;
    }
    assert!(last_end <= audio.samples.len() as f64 / 8000.0 + 0.05);
    let live: String = finals.iter().map(|s| s.text.as_str()).collect();
    let wer = corpus_wer([(whole.as_str(), live.as_str())]);
    eprintln!("whole: {whole}\nlive:  {live}\nWER {wer:.3}; {partials_before_close} partials, {finals_before_close} finals before close");
    assert!(partials_before_close >= 3, "partial results should arrive while audio accumulates");
    assert!(finals_before_close >= 1, "some segments should settle before the end");
    assert!(wer <= MAX_WER, "live transcript WER {wer} against the whole file");
}

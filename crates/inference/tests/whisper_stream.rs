//! Live transcription with tiny.en: a 29 s dev clip (8 kHz, so the session resamples) fed in
//! 0.5 s chunks gives partial results before the end, and its final segments read like the
//! whole-file transcript of the same engine.

mod common;

use smai_core::{TranscribeOptions, Transcriber, TranscriptEvent};
use smai_inference::{StreamEvent, StreamOptions, WhisperEngine};
use smai_tools::wer::corpus_wer;

const CLIP: &str = "librispeech_devclean_misc/ortx_1272-128104-0004-8k.wav";
/// Word error rate allowed between the live transcript and the whole-file one.
const MAX_WER: f64 = 0.15;

/// A clip at its own rate, as a live client sends it.
struct Clip {
    samples: Vec<f32>,
    sample_rate: u32,
}

/// Reads a 16-bit mono WAV (the dev clip) without resampling it.
fn decode_audio(bytes: &[u8]) -> Result<Clip, hound::Error> {
    let reader = hound::WavReader::new(bytes)?;
    let sample_rate = reader.spec().sample_rate;
    let samples = reader.into_samples::<i16>().map(|s| s.map(|v| v as f32 / 32768.0)).collect::<Result<_, _>>()?;
    Ok(Clip { samples, sample_rate })
}

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
        assert_eq!(s.id, k);
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

/// The same clip through `Transcriber::open_live` (16 kHz chunks): partials while audio comes,
/// finals of utterance 0 up to a commit halfway and of utterance 1 after it, the events closing
/// when the input ends; and a listener that goes away ends the session.
#[test]
fn live_session_behind_the_engine_trait() {
    use smai_core::{LiveEvent, LiveInput};
    let engine =
        WhisperEngine::load(&common::models_root(), &["tiny.en".to_string()], &candle_core::Device::Cpu, 2).unwrap();
    let audio = decode_audio(&std::fs::read(common::eval_root().join(CLIP)).unwrap()).unwrap();
    let pcm = smai_inference::audio::resample(&audio.samples, audio.sample_rate, 16_000).unwrap();
    let options = TranscribeOptions { beam_size: Some(1), temperature: Some(0.0), ..Default::default() };
    let session = engine.open_live(options.clone()).unwrap();
    let mut events = session.events;
    let reader = std::thread::spawn(move || {
        let mut all = Vec::new();
        while let Some(event) = events.blocking_recv() {
            all.push(event.unwrap());
        }
        all
    });
    let chunks: Vec<&[f32]> = pcm.chunks(8000).collect();
    for (i, chunk) in chunks.iter().enumerate() {
        if i == chunks.len() / 2 {
            session.input.blocking_send(LiveInput::Commit).unwrap();
        }
        session.input.blocking_send(LiveInput::Audio(chunk.to_vec())).unwrap();
    }
    drop(session.input);
    let events = reader.join().unwrap();
    let finals: Vec<(u32, &smai_core::Segment)> = events
        .iter()
        .filter_map(|e| {
            if let LiveEvent::Final { utterance, segment, .. } = e {
                Some((*utterance, segment))
            } else {
                None
            }
        })
        .collect();
    let partials =
        events.iter().filter(|e| matches!(e, LiveEvent::Partial { stable_text, .. } if stable_text.is_empty()));
    assert!(partials.count() >= 3, "partials while the audio accumulates");
    let utterances: Vec<u32> = finals.iter().map(|(u, _)| *u).collect();
    assert!(utterances.contains(&0) && utterances.contains(&1), "{utterances:?}");
    assert!(utterances.windows(2).all(|w| w[0] <= w[1]));
    let half = chunks.len() / 2 * 8000;
    let committed = finals.iter().filter(|(u, _)| *u == 0).map(|(_, s)| s.end).fold(0.0, f64::max);
    assert!(committed <= half as f64 / 16_000.0 + 0.05, "utterance 0 ends at the commit ({committed} s)");
    assert!(events.iter().all(|e| !matches!(e, LiveEvent::Final { language, .. } if language != "en")));
    let ends: Vec<u32> = events
        .iter()
        .filter_map(|e| if let LiveEvent::UtteranceEnd { utterance } = e { Some(*utterance) } else { None })
        .collect();
    assert_eq!(ends, [0, 1], "each utterance says when its finals are through");
    assert_eq!(events.last(), Some(&LiveEvent::UtteranceEnd { utterance: 1 }));
    let live: String = finals.iter().map(|(_, s)| s.text.as_str()).collect();
    assert!(live.split_whitespace().count() > 40, "{live}");

    let cancelled = engine.open_live(options).unwrap();
    drop(cancelled.events);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while cancelled.input.blocking_send(LiveInput::Audio(vec![0.0; 8000])).is_ok() {
        assert!(std::time::Instant::now() < deadline, "the session should stop once nobody listens");
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

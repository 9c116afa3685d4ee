//! The synthesis engine on the real en_US-joe-medium voice (from $SMAI_MODELS_DIR, default
//! models/cache at the workspace root): sentence streaming, voices, speed and back-pressure.

mod common;

use std::path::PathBuf;

use smai_core::{AudioChunk, ErrorCode, SpeechOptions, Synthesizer};
use smai_inference::tts::{PiperSynthesizer, VoicesConfig};

fn models_dir() -> PathBuf {
    let dir = std::env::var("SMAI_MODELS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../models/cache"));
    let onnx = dir.join("en_US-joe-medium/en_US-joe-medium.onnx");
    assert!(onnx.exists(), "voice en_US-joe-medium is not installed: expected {}", onnx.display());
    dir
}

fn engine(queue: usize) -> PiperSynthesizer {
    PiperSynthesizer::load(&VoicesConfig::default(), &models_dir(), &common::test_device(), queue)
        .expect("engine loads")
}

fn collect(engine: &PiperSynthesizer, text: &str, voice: &str, speed: f32) -> Vec<AudioChunk> {
    collect_as(engine, text, SpeechOptions { voice: voice.into(), speed, normalize: true })
}

fn collect_as(engine: &PiperSynthesizer, text: &str, options: SpeechOptions) -> Vec<AudioChunk> {
    let mut stream = engine.synthesize_with_noise(text.into(), &options, Some((0.0, 0.0))).unwrap();
    let mut chunks = Vec::new();
    while let Some(chunk) = stream.blocking_recv() {
        chunks.push(chunk.unwrap());
    }
    chunks
}

#[test]
fn streams_one_chunk_per_sentence_and_lists_voices() {
    let engine = engine(4);
    let voices = engine.voices();
    let ids: Vec<&str> = voices.iter().map(|v| v.id.as_str()).collect();
    assert_eq!(ids, ["joe", "joe-slow"]);
    assert!(voices.iter().all(|v| v.sample_rate == 22050 && v.language == "en_US" && v.quality == "medium"));

    let paragraph = "The first sentence is short. The second one is a little longer than that. Third!";
    let chunks = collect(&engine, paragraph, "joe", 1.0);
    assert_eq!(chunks.len(), 3, "one chunk per sentence");
    let alone = collect(&engine, "The first sentence is short.", "joe", 1.0);
    assert_eq!(chunks[0], alone[0], "the first chunk is the first sentence alone");
    for chunk in &chunks {
        assert_eq!(chunk.sample_rate, 22050);
        let peak = chunk.samples.iter().fold(0f32, |m, s| m.max(s.abs()));
        assert!((peak - 1.0).abs() < 1e-6, "normalised to full scale like piper-tts: {peak}");
    }
}

#[test]
fn unnormalised_sentences_stream_in_pieces_that_join_into_the_whole_sentence() {
    let engine = engine(4);
    let text = "The quick brown fox jumps over the lazy sleeping dog.";
    let whole = collect(&engine, text, "joe", 1.0);
    let pieces = collect_as(&engine, text, SpeechOptions { voice: "joe".into(), speed: 1.0, normalize: false });
    assert_eq!(whole.len(), 1);
    assert!(pieces.len() >= 3, "a 3 s sentence comes in several pieces, got {}", pieces.len());
    // The first piece is 16 latent frames of 256 samples: about 0.19 s.
    assert_eq!(pieces[0].samples.len(), 16 * 256);
    let joined: Vec<f32> = pieces.iter().flat_map(|c| c.samples.iter().copied()).collect();
    assert_eq!(joined.len(), whole[0].samples.len());
    // The voice's own level, below full scale here; scaled to its peak it is the normalised
    // sentence, to rounding (the vocoder sees each piece with its whole receptive field).
    let peak = joined.iter().fold(0f32, |m, s| m.max(s.abs()));
    assert!(peak > 0.2 && peak < 0.95, "raw peak {peak}");
    let worst = joined.iter().zip(&whole[0].samples).fold(0f32, |m, (a, b)| m.max((a / peak - b).abs()));
    assert!(worst < 1e-4, "pieces differ from the whole sentence by {worst}");
}

#[test]
fn slow_voice_and_speed_change_duration() {
    let engine = engine(4);
    let text = "Speech synthesis turns text into sound.";
    let len = |voice: &str, speed: f32| collect(&engine, text, voice, speed)[0].samples.len() as f64;
    let normal = len("joe", 1.0);
    let slow = len("joe-slow", 1.0);
    let fast = len("joe", 2.0);
    eprintln!("samples: joe {normal}, joe-slow {slow}, joe at speed 2 {fast}");
    // Durations are rounded up per phoneme, so audio length is not proportional to the scale.
    assert!(slow / normal > 1.1 && slow / normal < 1.4, "joe-slow / joe = {}", slow / normal);
    assert!(fast / normal > 0.5 && fast / normal < 0.75, "speed 2 / speed 1 = {}", fast / normal);
    // joe-slow is joe at length_scale 1.3, which is what speed 1/1.3 asks of joe.
    assert_eq!(len("joe", 1.0 / 1.3), slow);
}

#[test]
fn bad_requests_and_a_full_queue_are_refused() {
    let engine = engine(1);
    let opts = |voice: &str, speed: f32| SpeechOptions { voice: voice.into(), speed, normalize: true };
    let err = engine.synthesize("Hi.".into(), opts("nobody", 1.0)).unwrap_err();
    assert_eq!(err.code, ErrorCode::InvalidRequest);
    let err = engine.synthesize("Hi.".into(), opts("joe", 0.0)).unwrap_err();
    assert_eq!(err.code, ErrorCode::InvalidRequest);
    let err = engine.synthesize("   ".into(), opts("joe", 1.0)).unwrap_err();
    assert_eq!(err.code, ErrorCode::InvalidRequest);

    let long = "This is a sentence that takes the model a while to speak. ".repeat(3);
    let mut streams = Vec::new();
    let mut overloaded = 0;
    for _ in 0..5 {
        match engine.synthesize(long.clone(), opts("joe", 1.0)) {
            Ok(s) => streams.push(s),
            Err(e) => {
                assert_eq!(e.code, ErrorCode::Overloaded);
                assert!(e.retry_after.is_some());
                overloaded += 1;
            }
        }
    }
    assert!(overloaded >= 1, "a queue of one refuses a burst of five");
    // Dropping the streams lets the worker skip the rest of their sentences.
    drop(streams);
}

#[test]
fn engine_output_encodes_to_the_requested_format() {
    use smai_inference::audio::{encode, AudioFormat};
    let engine = engine(4);
    let chunks = collect(&engine, "Hello there.", "joe", 1.0);
    let samples: Vec<f32> = chunks.iter().flat_map(|c| c.samples.iter().copied()).collect();
    let wav = encode(&samples, chunks[0].sample_rate, Some(16000), AudioFormat::Wav).unwrap();
    let reader = hound::WavReader::new(std::io::Cursor::new(wav)).unwrap();
    assert_eq!(reader.spec().sample_rate, 16000);
    assert!(reader.duration() > 8000, "at least half a second of speech");
    let mp3 = encode(&samples, chunks[0].sample_rate, None, AudioFormat::Mp3).unwrap();
    assert!(mp3.len() > 1000 && mp3[0] == 0xff);
}

/// `--device cpu` and `--queue-depth` as the server passes them: the engine runs where it was
/// told, and with the worker busy on one request, `depth` more wait and the next is refused.
#[test]
fn device_and_queue_depth_are_honoured() {
    let depth = 2;
    let engine = PiperSynthesizer::load(&VoicesConfig::default(), &models_dir(), &candle_core::Device::Cpu, depth)
        .expect("engine loads");
    assert_eq!(engine.device_name(), "cpu");
    let opts = SpeechOptions { voice: "joe".into(), speed: 1.0, normalize: true };
    // More sentences than the stream buffers: unread, it keeps the worker on this request.
    let busy = "One. Two. Three. Four. Five. Six. Seven. Eight.";
    let mut running = engine.synthesize(busy.into(), opts.clone()).unwrap();
    running.blocking_recv().unwrap().unwrap(); // the worker has taken it
    let waiting: Vec<_> = (0..depth).map(|_| engine.synthesize("Hi.".into(), opts.clone()).unwrap()).collect();
    let err = engine.synthesize("Hi.".into(), opts.clone()).unwrap_err();
    assert_eq!(err.code, ErrorCode::Overloaded, "request {} of a queue of {depth}", depth + 2);
    assert_eq!(engine.health(), smai_core::EngineHealth::Serving);
    drop((running, waiting));
}

//! The Wyoming listener on the real models (tiny.en, the Silero VAD, voice joe), driven by the
//! PyPI `wyoming` package's client: transcripts equal to REST's, streamed in the protocol's
//! order; an utterance ended by our VAD before the client stops; speech at 22.05 kHz, one
//! audio stream per sentence when streamed; and the info shown while the models load equal to
//! the loaded engines' lists. Fails, rather than skips, without the models.

use serde_json::json;
use smai_core::{Synthesizer, Transcriber};
use smai_e2e::real::{dev_clips, models_dir, real_engines, rest_transcript, wav_samples};
use smai_e2e::wyoming::{kinds, of_kind, server};
use smai_server::wyoming::wire::{encode, read_event, Event};
use std::time::{Duration, Instant};
use tokio::io::{AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

/// Lower case, letters, digits and spaces: what two transcripts are compared on.
fn normal(text: &str) -> String {
    let kept: String =
        text.to_lowercase().chars().map(|c| if c.is_alphanumeric() || c == '\'' { c } else { ' ' }).collect();
    kept.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[tokio::test]
async fn transcripts_equal_rest_and_stream_in_the_protocols_order() {
    let w = server(real_engines().await, None, |_| {}).await;
    for (clip, _) in dev_clips("ljspeech_prernasocity/wavs/LJ001-000", 3) {
        let rest = rest_transcript(&w.t, "no-auth", &clip).await;
        for pace in [None, Some("--realtime")] {
            let mut args = vec![clip.to_str().unwrap(), "--language", "en"];
            args.extend(pace);
            let result = w.client("transcribe", &args).await;
            let order = kinds(&result);
            assert_eq!(order.first().map(String::as_str), Some("transcript-start"), "{order:?}");
            assert!(order.iter().any(|k| k == "transcript-chunk"), "{order:?}");
            assert_eq!(&order[order.len() - 2..], ["transcript", "transcript-stop"], "{order:?}");
            let transcript = of_kind(&result, "transcript")[0]["data"].clone();
            let text = transcript["text"].as_str().unwrap();
            assert_eq!(text, rest, "{} {pace:?}", clip.display());
            assert_eq!(transcript["language"], "en");
            let chunks: String =
                of_kind(&result, "transcript-chunk").iter().map(|c| c["data"]["text"].as_str().unwrap()).collect();
            assert_eq!(chunks, text, "the chunks add up to the transcript");
        }
    }
}

#[tokio::test]
async fn an_utterance_our_vad_ends_is_answered_before_the_client_stops() {
    let w = server(real_engines().await, None, |_| {}).await;
    let (clip, _) = dev_clips("ljspeech_prernasocity/wavs/LJ001-0002", 1).remove(0);
    let rest = rest_transcript(&w.t, "no-auth", &clip).await;
    let (samples, rate) = wav_samples(&clip);
    let mut audio: Vec<u8> = samples.iter().flat_map(|s| s.to_le_bytes()).collect();
    audio.extend(vec![0u8; rate as usize * 2 * 3]); // then three seconds of silence
    let stream = TcpStream::connect(w.addr).await.unwrap();
    let (read, mut write) = stream.into_split();
    let format = json!({"rate": rate, "width": 2, "channels": 1});
    write.write_all(&encode(&Event::with_data("transcribe", json!({"language": "en"})))).await.unwrap();
    write.write_all(&encode(&Event::with_data("audio-start", format.clone()))).await.unwrap();
    let chunk_bytes = rate as usize / 10 * 2;
    let sender = tokio::spawn(async move {
        for piece in audio.chunks(chunk_bytes) {
            let chunk = Event::with_data("audio-chunk", format.clone()).with_payload(piece.to_vec());
            if write.write_all(&encode(&chunk)).await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        // No audio-stop: the VAD must end the utterance itself.
        tokio::time::sleep(Duration::from_secs(60)).await;
    });
    let started = Instant::now();
    let mut reader = BufReader::new(read);
    let transcript = loop {
        let event = tokio::time::timeout(Duration::from_secs(30), read_event(&mut reader)).await;
        let event = event.expect("an answer before audio-stop").expect("readable").expect("open");
        if event.kind == "transcript" {
            break event;
        }
    };
    let speech = samples.len() as f64 / f64::from(rate);
    assert!(started.elapsed().as_secs_f64() < speech + 3.0, "answered after {:?}", started.elapsed());
    assert_eq!(normal(transcript.str("text").unwrap()), normal(&rest));
    sender.abort();
}

#[tokio::test]
async fn speech_streams_at_the_voices_rate_one_audio_stream_per_sentence() {
    let w = server(real_engines().await, None, |_| {}).await;
    let dir = tempfile::tempdir().unwrap();
    let wav = dir.path().join("whole.wav");
    let sentence = "The kitchen light is now on.";
    let whole = w.client("synthesize", &[sentence, "--voice", "joe", "--wav", wav.to_str().unwrap()]).await;
    assert_eq!(whole["sample_rate"], 22_050);
    assert_eq!(of_kind(&whole, "audio-start").len(), 1);
    assert_eq!(of_kind(&whole, "audio-start")[0]["data"], json!({"rate": 22050, "width": 2, "channels": 1}));
    assert_eq!(normal(&rest_transcript(&w.t, "no-auth", &wav).await), normal(sentence));

    let text = "The kitchen light is now on. The front door is locked. Good night.";
    let streamed_wav = dir.path().join("streamed.wav");
    let streamed = w
        .client("synthesize", &[text, "--stream", "--chunk-chars", "5", "--wav", streamed_wav.to_str().unwrap()])
        .await;
    let order = kinds(&streamed);
    assert_eq!(of_kind(&streamed, "audio-start").len(), 3, "one per sentence: {order:?}");
    assert_eq!(of_kind(&streamed, "audio-stop").len(), 3);
    assert_eq!(order.last().map(String::as_str), Some("synthesize-stopped"));
    assert_eq!(normal(&rest_transcript(&w.t, "no-auth", &streamed_wav).await), normal(text));
}

#[tokio::test]
async fn the_lists_shown_while_loading_are_the_loaded_engines_lists() {
    let engines = real_engines().await;
    let models = models_dir();
    let loaded = engines.transcriber.unwrap().models();
    let previewed = smai_inference::asr::preview_model(&models, "tiny.en").unwrap();
    assert_eq!(vec![previewed], loaded);
    // A multilingual model lists its languages from its vocabulary alone.
    let base = smai_inference::asr::preview_model(&models, "base").unwrap();
    let device = smai_inference::Device::Cpu;
    let base_loaded = smai_inference::WhisperEngine::load(&models, &["base".into()], &device, 1).unwrap().models();
    assert_eq!(vec![base.clone()], base_loaded);
    assert!(base.languages.len() >= 99 && base.languages.contains(&"de".to_owned()), "{:?}", base.languages);
    let voices = smai_inference::tts::VoicesConfig::default();
    let previewed = smai_inference::tts::PiperSynthesizer::preview(&voices, &models).unwrap();
    let synthesizer = smai_inference::tts::PiperSynthesizer::load(&voices, &models, &device, 1).unwrap();
    assert_eq!(previewed, synthesizer.voices());
}

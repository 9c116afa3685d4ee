//! The Wyoming listener with small fake engines (tests about the server, not the models): info
//! within a second while the models load, the key's services and voices, any audio format
//! converted, hostile event streams, and a client that vanishes mid-utterance. The client is
//! the PyPI `wyoming` package where a well-behaved client is meant; raw TCP for hostile ones.

use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use serde_json::json;
use smai_auth::NewKey;
use smai_core::{Service, Synthesizer, Tier, VoiceAccess};
use smai_e2e::wyoming::{kinds, of_kind, server, Wyoming};
use smai_e2e::{ByteCountTranscriber, ToneSynthesizer};
use smai_server::engines::{LoadingSynthesizer, LoadingTranscriber};
use smai_server::serve::Engines;
use smai_server::wyoming::wire::{encode, Event};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn fakes() -> Engines {
    Engines { transcriber: Some(Arc::new(ByteCountTranscriber)), synthesizer: Some(Arc::new(ToneSynthesizer)) }
}

fn key(services: &[Service], voices: VoiceAccess, tier: Tier) -> NewKey {
    NewKey {
        org: "home".into(),
        name: Some("home-assistant".into()),
        services: services.iter().copied().collect(),
        voices,
        tier,
        expires_in_ms: None,
    }
}

/// A 16-bit mono WAV of `seconds` of a tone, in a temp file.
fn tone_wav(dir: &std::path::Path, rate: u32, seconds: f64) -> String {
    let path = dir.join(format!("tone-{rate}-{seconds}.wav"));
    let spec =
        hound::WavSpec { channels: 1, sample_rate: rate, bits_per_sample: 16, sample_format: hound::SampleFormat::Int };
    let mut writer = hound::WavWriter::create(&path, spec).unwrap();
    for i in 0..(f64::from(rate) * seconds) as usize {
        writer.write_sample(((i as f64 * 0.05).sin() * 9_000.0) as i16).unwrap();
    }
    writer.finalize().unwrap();
    path.to_string_lossy().into_owned()
}

#[tokio::test]
async fn describe_is_answered_within_a_second_while_the_models_load() {
    let transcriber = Arc::new(LoadingTranscriber::new(smai_core::Transcriber::models(&ByteCountTranscriber), true));
    let synthesizer = Arc::new(LoadingSynthesizer::new(ToneSynthesizer.voices()));
    let engines = Engines { transcriber: Some(transcriber.clone()), synthesizer: Some(synthesizer.clone()) };
    let w = server(engines, None, |_| {}).await;
    let ready = reqwest::get(w.t.url("/readyz")).await.unwrap();
    assert_eq!(ready.status(), 503, "still loading");

    let described = w.client("describe", &[]).await;
    assert!(described["seconds"].as_f64().unwrap() < 1.0, "{described}");
    let asr = &described["info"]["asr"][0];
    assert_eq!(asr["models"][0]["name"], "tiny.en");
    assert_eq!(asr["models"][0]["languages"], json!(["en"]));
    assert_eq!(asr["supports_transcript_streaming"], true);
    assert_eq!(asr["requires_external_vad"], false, "our VAD ends utterances");
    let voices: Vec<&str> =
        described["info"]["tts"][0]["voices"].as_array().unwrap().iter().map(|v| v["name"].as_str().unwrap()).collect();
    assert_eq!(voices, ["joe", "joe-slow"]);
    assert_eq!(described["info"]["tts"][0]["supports_synthesize_streaming"], true);

    // A request before the weights are in is refused with a reason, not dropped.
    let dir = tempfile::tempdir().unwrap();
    let wav = tone_wav(dir.path(), 16_000, 0.5);
    let early = w.client("transcribe", &[&wav]).await;
    assert_eq!(kinds(&early), ["error"], "{early}");
    assert_eq!(early["events"][0]["data"]["code"], "overloaded");

    transcriber.loaded(Arc::new(ByteCountTranscriber));
    synthesizer.loaded(Arc::new(ToneSynthesizer));
    assert_eq!(reqwest::get(w.t.url("/readyz")).await.unwrap().status(), 200);
    let after = w.client("transcribe", &[&wav]).await;
    assert_eq!(of_kind(&after, "transcript")[0]["data"]["text"], "heard 8000 samples", "{after}");
}

#[tokio::test]
async fn every_rate_width_and_channel_count_is_converted() {
    let w = server(fakes(), None, |_| {}).await;
    let dir = tempfile::tempdir().unwrap();
    // One second each; the engine hears 16 kHz mono whatever was sent.
    for (rate, channels, width) in [(16_000, 1, 2), (8_000, 2, 1), (44_100, 2, 2), (48_000, 1, 4), (22_050, 3, 3)] {
        let path = dir.path().join(format!("tone-{rate}-{channels}-{width}.raw"));
        let frames = rate as usize;
        let sample = |i: usize| ((i as f64 * 0.05).sin() * 0.3 * ((1i64 << (8 * width - 1)) - 1) as f64) as i64;
        let bytes: Vec<u8> = (0..frames)
            .flat_map(|i| std::iter::repeat_n(sample(i), channels))
            .flat_map(|s| s.to_le_bytes()[..width].to_vec())
            .collect();
        std::fs::write(&path, bytes).unwrap();
        let format = format!("{rate},{width},{channels}");
        let result = w.client("transcribe", &[path.to_str().unwrap(), "--raw", &format]).await;
        let text = of_kind(&result, "transcript")[0]["data"]["text"].as_str().unwrap().to_owned();
        let heard: f64 = text.split_whitespace().nth(1).unwrap().parse().unwrap();
        assert!((heard - 16_000.0).abs() <= 64.0, "{rate} Hz, {channels} channels, {width} bytes: {text}");
        // The streamed chunks add up to the transcript, in the protocol's order.
        let order = kinds(&result);
        assert_eq!(order.first().map(String::as_str), Some("transcript-start"), "{order:?}");
        assert_eq!(&order[order.len() - 2..], ["transcript", "transcript-stop"]);
        let chunks: String =
            of_kind(&result, "transcript-chunk").iter().map(|c| c["data"]["text"].as_str().unwrap()).collect();
        assert_eq!(chunks, text);
    }
}

#[tokio::test]
async fn the_keys_services_and_voices_apply() {
    let only_joe = VoiceAccess::Only(["joe".to_owned()].into());
    let w = server(fakes(), Some(key(&[Service::Tts], only_joe, Tier::default())), |_| {}).await;
    let described = w.client("describe", &[]).await;
    assert_eq!(described["info"]["asr"], json!([]), "a key without ASR is offered none");
    let voices = &described["info"]["tts"][0]["voices"];
    assert_eq!(voices.as_array().unwrap().len(), 1, "only the key's voices: {voices}");

    let dir = tempfile::tempdir().unwrap();
    let wav = tone_wav(dir.path(), 16_000, 0.3);
    let refused = w.client("transcribe", &[&wav]).await;
    assert_eq!(kinds(&refused), ["error"]);
    assert_eq!(refused["events"][0]["data"]["code"], "forbidden");

    let other_voice = w.client("synthesize", &["Hello there.", "--voice", "joe-slow"]).await;
    assert_eq!(kinds(&other_voice), ["error"]);
    assert_eq!(other_voice["events"][0]["data"]["code"], "voice_not_allowed");
    let streamed_other = w.client("synthesize", &["Hello there.", "--voice", "joe-slow", "--stream"]).await;
    assert_eq!(kinds(&streamed_other), ["error"], "{streamed_other}");

    let spoken = w.client("synthesize", &["Hello there. How are you?", "--voice", "joe"]).await;
    let order = kinds(&spoken);
    assert_eq!(order.first().map(String::as_str), Some("audio-start"));
    assert_eq!(order.last().map(String::as_str), Some("audio-stop"));
    assert_eq!(of_kind(&spoken, "audio-start").len(), 1, "one stream for a whole synthesize");
    let streamed = w.client("synthesize", &["Hello there. How are you? Fine.", "--stream"]).await;
    assert_eq!(of_kind(&streamed, "audio-start").len(), 3, "one audio stream per sentence: {streamed}");
    assert_eq!(kinds(&streamed).last().map(String::as_str), Some("synthesize-stopped"));
    let rows = w.t.usage_rows().await;
    let routes: Vec<(&str, i64)> = rows.iter().map(|(r, s, _)| (r.as_str(), *s)).collect();
    assert!(routes.contains(&("wyoming/transcribe", 403)), "{routes:?}");
    assert!(routes.contains(&("wyoming/synthesize", 200)), "{routes:?}");
    assert!(routes.contains(&("wyoming/synthesize-stream", 200)), "{routes:?}");
}

/// Writes `bytes`, closes the sending side, and reads what comes back until the server
/// closes; `None` if it is still open after 5 s.
async fn exchange(addr: std::net::SocketAddr, bytes: &[u8]) -> Option<Vec<u8>> {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let _ = stream.write_all(bytes).await;
    let _ = stream.shutdown().await;
    let mut answer = Vec::new();
    match tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut answer)).await {
        Ok(_) => Some(answer),
        Err(_) => None,
    }
}

/// Valid streams cut anywhere, with a byte changed, or with noise: streams of every kind.
fn hostile_stream() -> impl Strategy<Value = Vec<u8>> {
    let valid = {
        let mut bytes = encode(&Event::with_data("transcribe", json!({"language": "en"})));
        bytes.extend(encode(&Event::with_data("audio-start", json!({"rate": 16000, "width": 2, "channels": 1}))));
        let chunk = Event::with_data("audio-chunk", json!({"rate": 16000, "width": 2, "channels": 1}));
        bytes.extend(encode(&chunk.with_payload(vec![1; 640])));
        bytes.extend(encode(&Event::new("audio-stop")));
        bytes
    };
    let len = valid.len();
    let cut = (0..len).prop_map({
        let valid = valid.clone();
        move |at| valid[..at].to_vec()
    });
    let flipped = (0..len, any::<u8>()).prop_map(move |(at, byte)| {
        let mut bytes = valid.clone();
        bytes[at] = byte;
        bytes
    });
    let noise = proptest::collection::vec(any::<u8>(), 0..2048);
    let lengths = (any::<i64>(), any::<i64>()).prop_map(|(d, p)| {
        format!("{{\"type\":\"audio-chunk\",\"data_length\":{d},\"payload_length\":{p}}}\n").into_bytes()
    });
    prop_oneof![cut, flipped, noise, lengths]
}

#[test]
fn two_hundred_malformed_or_truncated_streams_never_bring_the_listener_down() {
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let w: Wyoming = runtime.block_on(server(fakes(), None, |_| {}));
    let mut runner = TestRunner::new(Config { cases: 200, ..Config::default() });
    runner
        .run(&hostile_stream(), |bytes| {
            let answer = runtime.block_on(exchange(w.addr, &bytes));
            prop_assert!(answer.is_some(), "the connection was left hanging on {bytes:?}");
            Ok(())
        })
        .unwrap();
    // A broken header is answered with an error event before the connection closes.
    let answer = runtime.block_on(exchange(w.addr, b"{not json\n")).unwrap();
    let text = String::from_utf8_lossy(&answer);
    assert!(text.starts_with("{") && text.contains("\"type\":\"error\""), "{text}");
    let described = runtime.block_on(w.client("describe", &[]));
    assert!(described["info"]["asr"][0]["models"].is_array(), "the listener still answers: {described}");
}

#[tokio::test]
async fn a_client_that_vanishes_mid_utterance_frees_its_slot_and_leaves_a_usage_row() {
    let one_at_a_time = Tier { concurrency: 1, ..Tier::default() };
    let w = server(fakes(), Some(key(&[Service::Asr], VoiceAccess::All, one_at_a_time)), |_| {}).await;
    let mut stream = TcpStream::connect(w.addr).await.unwrap();
    let format = json!({"rate": 16000, "width": 2, "channels": 1});
    let mut opening = encode(&Event::with_data("audio-start", format.clone()));
    opening.extend(encode(&Event::with_data("audio-chunk", format).with_payload(vec![0; 3200])));
    stream.write_all(&opening).await.unwrap();
    // The slot is held while the utterance is open: a second transcription is refused.
    let dir = tempfile::tempdir().unwrap();
    let wav = tone_wav(dir.path(), 16_000, 0.2);
    let mut second = w.client("transcribe", &[&wav]).await;
    for _ in 0..50 {
        if kinds(&second) == ["error"] {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        second = w.client("transcribe", &[&wav]).await;
    }
    assert_eq!(second["events"][0]["data"]["code"], "concurrency_limit_exceeded", "{second}");
    drop(stream);
    // The slot comes back once the server has seen the connection close.
    let mut third = w.client("transcribe", &[&wav]).await;
    for _ in 0..50 {
        if !of_kind(&third, "transcript").is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        third = w.client("transcribe", &[&wav]).await;
    }
    assert_eq!(of_kind(&third, "transcript").len(), 1, "the slot is free again: {third}");
    let rows = w.t.usage_rows().await;
    assert!(rows.iter().any(|(route, status, _)| route == "wyoming/transcribe" && *status == 499), "{rows:?}");
}

#[tokio::test]
async fn zeroconf_announces_the_listener_for_home_assistant() {
    use mdns_sd::{ServiceDaemon, ServiceEvent};
    let name = format!("smai-test-{}", std::process::id());
    let w = server(fakes(), None, |c| c.wyoming_zeroconf = Some(name.clone())).await;
    let browser = ServiceDaemon::new().expect("an mDNS browser");
    let found = browser.browse(smai_server::wyoming::zeroconf::SERVICE_TYPE).expect("browsing");
    let resolved = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match found.recv_async().await.expect("browsing goes on") {
                ServiceEvent::ServiceResolved(info) if info.get_fullname().starts_with(&name) => return info,
                _ => {}
            }
        }
    })
    .await
    .expect("the listener is announced within 10 s");
    assert_eq!(resolved.get_port(), w.addr.port());
    assert!(resolved.get_addresses().iter().any(|a| a.to_string() == "127.0.0.1"), "{:?}", resolved.get_addresses());
    let _ = browser.shutdown();
}

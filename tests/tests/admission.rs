//! Admission beyond the per-key limits: a full engine queue answers 503 `overloaded` with
//! Retry-After and charges nothing; bodies over the size limit answer 413.

use clap::Parser;
use reqwest::multipart::{Form, Part};
use reqwest::{Client, StatusCode};
use serde_json::Value;
use smai_core::{AudioStream, Error, Service, SpeechOptions, Synthesizer, VoiceAccess, VoiceInfo};
use smai_e2e::{wait_until, QueuedTranscriber, TestServer, ToneSynthesizer};
use smai_server::serve::Engines;
use smai_server::ServeConfig;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

fn upload(client: &Client, t: &TestServer, key: &str, bytes: usize) -> reqwest::RequestBuilder {
    let form = Form::new().part("file", Part::bytes(vec![7u8; bytes]).file_name("a.wav"));
    client.post(t.url("/v1/audio/transcriptions")).bearer_auth(key).multipart(form)
}

#[tokio::test]
async fn a_full_engine_queue_answers_503_with_retry_after_and_charges_nothing() {
    let (release, gate) = tokio::sync::watch::channel(false);
    let queued = Arc::new(AtomicUsize::new(0));
    let engine = QueuedTranscriber { capacity: 2, queued: queued.clone(), release: gate };
    let engines = Engines { transcriber: Some(Arc::new(engine)), synthesizer: None };
    let t = TestServer::start_full(|_| {}, engines).await;
    let client = Client::new();
    let (_, waiting_key) = t.create_key(&[Service::Asr], VoiceAccess::All, None).await;
    let (_, key) = t.create_key(&[Service::Asr], VoiceAccess::All, None).await;

    let held: Vec<_> = (0..2).map(|_| tokio::spawn(upload(&client, &t, &waiting_key, 100).send())).collect();
    wait_until(|| queued.load(Ordering::SeqCst) == 2).await;
    let refused = upload(&client, &t, &key, 100).send().await.unwrap();
    assert_eq!(refused.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(refused.headers()["retry-after"], "2");
    let body: Value = refused.json().await.unwrap();
    assert_eq!(body["error"]["code"], "overloaded");

    release.send(true).unwrap();
    for task in held {
        assert_eq!(task.await.unwrap().unwrap().status(), StatusCode::OK);
    }
    let accepted = upload(&client, &t, &key, 100).send().await.unwrap();
    assert_eq!(accepted.status(), StatusCode::OK, "room again once the queue drains");
    assert_eq!(accepted.headers()["x-ratelimit-remaining-requests"], "59", "the 503 was not charged");
    assert_eq!(accepted.headers()["x-ratelimit-remaining-tokens"], (50_000 - 13).to_string());
    t.server.shutdown().await.unwrap();
}

/// Refuses every request as the synthesis engine does when its queue is full.
struct FullSynthesizer;

impl Synthesizer for FullSynthesizer {
    fn voices(&self) -> Vec<VoiceInfo> {
        ToneSynthesizer.voices()
    }
    fn synthesize(&self, _text: String, _options: SpeechOptions) -> Result<AudioStream, Error> {
        Err(Error::overloaded(std::time::Duration::from_millis(1500)))
    }
}

#[tokio::test]
async fn speech_on_a_full_engine_is_503_and_not_charged() {
    let engines = Engines { transcriber: None, synthesizer: Some(Arc::new(FullSynthesizer)) };
    let t = TestServer::start_full(|_| {}, engines).await;
    let (key_id, key) = t.create_key(&[Service::Tts], VoiceAccess::All, None).await;
    let response = Client::new()
        .post(t.url("/v1/audio/speech"))
        .bearer_auth(&key)
        .json(&serde_json::json!({"input": "Hello.", "voice": "joe"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(response.headers()["retry-after"], "2", "whole seconds, rounded up");
    let snapshot = t.server.state.limiter.snapshot(&key_id, &smai_core::Tier::default());
    assert_eq!(snapshot.headers().iter().find(|(n, _)| *n == "x-ratelimit-remaining-tokens").unwrap().1, "50000");
    t.server.shutdown().await.unwrap();
}

#[tokio::test]
async fn bodies_over_the_limit_are_413_on_every_upload_route() {
    let t = TestServer::start_with(|c| c.max_body_bytes = 64 * 1024).await;
    let client = Client::new();
    let (_, key) = t.create_key(&[Service::Asr, Service::Tts], VoiceAccess::All, None).await;
    assert_eq!(upload(&client, &t, &key, 60 * 1024).send().await.unwrap().status(), StatusCode::OK);
    for route in ["/v1/audio/transcriptions", "/v1/audio/translations"] {
        let form = Form::new().part("file", Part::bytes(vec![7u8; 65 * 1024]).file_name("a.wav"));
        let response = client.post(t.url(route)).bearer_auth(&key).multipart(form).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE, "{route}");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["error"]["code"], "payload_too_large");
    }
    let speech = serde_json::json!({"input": "x".repeat(70 * 1024), "voice": "joe"});
    let response = client.post(t.url("/v1/audio/speech")).bearer_auth(&key).json(&speech).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
    t.server.shutdown().await.unwrap();
}

#[derive(Parser)]
struct Cli {
    #[command(flatten)]
    serve: ServeConfig,
}

#[tokio::test]
async fn the_default_limit_is_25_mib() {
    let defaults = Cli::try_parse_from(["smai"]).unwrap().serve;
    assert_eq!(defaults.max_body_bytes, 25 * 1024 * 1024);
    let t = TestServer::start_with(|c| c.max_body_bytes = defaults.max_body_bytes).await;
    let client = Client::new();
    let (_, key) = t.create_key(&[Service::Asr], VoiceAccess::All, None).await;
    assert_eq!(upload(&client, &t, &key, 25 * 1024 * 1024 - 4096).send().await.unwrap().status(), StatusCode::OK);
    assert_eq!(
        upload(&client, &t, &key, 25 * 1024 * 1024).send().await.unwrap().status(),
        StatusCode::PAYLOAD_TOO_LARGE
    );
    t.server.shutdown().await.unwrap();
}

//! The service core seen through REST: a panicking engine call is a 500 and the engine keeps
//! serving, a lost engine shows in /readyz, a charging operation is admitted once, and every
//! call leaves exactly one usage row however it ends.

use reqwest::multipart::{Form, Part};
use reqwest::{Client, StatusCode};
use serde_json::{json, Value};
use smai_core::{
    AudioStream, EngineHealth, Error, LiveSession, ModelInfo, Service, SpeechOptions, Synthesizer, Tier,
    TranscribeOptions, Transcriber, TranscriptStream, VoiceAccess, VoiceInfo,
};
use smai_e2e::{ByteCountTranscriber, GatedSynthesizer, TestServer, ToneSynthesizer};
use smai_server::serve::Engines;
use std::sync::Arc;

/// Panics on any input containing "PANIC", like a model hitting a bug on one input.
struct PanickingSynthesizer;

impl Synthesizer for PanickingSynthesizer {
    fn voices(&self) -> Vec<VoiceInfo> {
        ToneSynthesizer.voices()
    }
    fn synthesize(&self, text: String, options: SpeechOptions) -> Result<AudioStream, Error> {
        assert!(!text.contains("PANIC"), "the engine met its marked input");
        ToneSynthesizer.synthesize(text, options)
    }
}

/// A transcriber whose worker is gone for good.
struct LostTranscriber;

impl Transcriber for LostTranscriber {
    fn models(&self) -> Vec<ModelInfo> {
        ByteCountTranscriber.models()
    }
    fn transcribe(&self, _audio: Vec<u8>, _options: TranscribeOptions) -> Result<TranscriptStream, Error> {
        Err(Error::internal("the worker of tiny.en exited"))
    }
    fn open_live(&self, _options: TranscribeOptions) -> Result<LiveSession, Error> {
        Err(Error::internal("the worker of tiny.en exited"))
    }
    fn health(&self) -> EngineHealth {
        EngineHealth::Unhealthy("the worker of tiny.en exited".into())
    }
}

const BOTH: [Service; 2] = [Service::Tts, Service::Asr];

async fn speak(client: &Client, t: &TestServer, key: &str, input: &str) -> reqwest::Response {
    let body = json!({"input": input, "voice": "joe"});
    client.post(t.url("/v1/audio/speech")).bearer_auth(key).json(&body).send().await.unwrap()
}

/// Usage rows (request id, status, tokens) after the server has shut down and flushed.
async fn usage_rows(t: TestServer) -> Vec<(String, i64, i64)> {
    let TestServer { server, db, dir: _dir, .. } = t;
    server.shutdown().await.unwrap();
    let pool = smai_auth::open_database(&db).await.unwrap();
    let rows =
        sqlx::query_as("SELECT request_id, status, tokens FROM usage_log ORDER BY id").fetch_all(&pool).await.unwrap();
    pool.close().await;
    rows
}

fn request_id(response: &reqwest::Response) -> String {
    response.headers()["x-request-id"].to_str().unwrap().to_owned()
}

#[tokio::test]
async fn a_panicking_engine_call_is_a_500_and_the_next_request_succeeds() {
    let engines = Engines { transcriber: None, synthesizer: Some(Arc::new(PanickingSynthesizer)) };
    let t = TestServer::start_full(|_| {}, engines).await;
    let client = Client::new();
    let (key_id, key) = t.create_key(&BOTH, VoiceAccess::All, None).await;

    let failed = speak(&client, &t, &key, "Say PANIC now.").await;
    assert_eq!(failed.status(), StatusCode::INTERNAL_SERVER_ERROR);
    let id = request_id(&failed);
    let body: Value = failed.json().await.unwrap();
    assert_eq!(body["error"]["code"], "internal_error");
    assert_eq!(body["error"]["request_id"], id.as_str());
    assert!(!body.to_string().contains("marked input"), "the panic message stays in the log");

    let next = speak(&client, &t, &key, "Hello.").await;
    assert_eq!(next.status(), StatusCode::OK, "the engine keeps serving");
    assert_eq!(t.server.state.limiter.snapshot(&key_id, &Tier::default()).concurrency_open, 0, "no slot kept");
    let rows = usage_rows(t).await;
    assert_eq!(rows.len(), 2);
    assert_eq!((rows[0].0.as_str(), rows[0].1), (id.as_str(), 500), "the panic left one row");
}

#[tokio::test]
async fn a_lost_engine_makes_readyz_503_naming_it() {
    let engines =
        Engines { transcriber: Some(Arc::new(LostTranscriber)), synthesizer: Some(Arc::new(ToneSynthesizer)) };
    let t = TestServer::start_full(|_| {}, engines).await;
    let response = Client::new().get(t.url("/readyz")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "overloaded");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.contains("asr: ") && message.contains("tiny.en exited"), "{body}");
    assert!(!message.contains("tts"), "the serving engine is not named: {message}");

    let healthy = TestServer::start().await;
    let response = Client::new().get(healthy.url("/readyz")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    t.server.shutdown().await.unwrap();
    healthy.server.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_charging_operation_is_admitted_once_and_frees_its_slot() {
    let t = TestServer::start().await;
    let client = Client::new();
    let (key_id, key) = t.create_key(&BOTH, VoiceAccess::All, None).await;
    let form = Form::new().part("file", Part::bytes(vec![1u8; 10]).file_name("a.wav"));
    let response =
        client.post(t.url("/v1/audio/transcriptions")).bearer_auth(&key).multipart(form).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    // One request and 13 tokens (1.25 s of audio), charged once.
    assert_eq!(response.headers()["x-ratelimit-remaining-requests"], "59");
    assert_eq!(response.headers()["x-ratelimit-remaining-tokens"], (50_000 - 13).to_string());
    response.bytes().await.unwrap();
    let snapshot = t.server.state.limiter.snapshot(&key_id, &Tier::default());
    assert_eq!((snapshot.requests.remaining, snapshot.tokens.remaining), (59, 50_000 - 13));
    assert_eq!(snapshot.concurrency_open, 0, "the slot was returned");
    t.server.shutdown().await.unwrap();
}

#[tokio::test]
async fn every_call_leaves_exactly_one_usage_row() {
    let (release, gate) = tokio::sync::watch::channel(false);
    let engines = Engines {
        transcriber: Some(Arc::new(ByteCountTranscriber)),
        synthesizer: Some(Arc::new(GatedSynthesizer { release: gate })),
    };
    let t = TestServer::start_full(|_| {}, engines).await;
    let client = Client::new();
    let (key_id, key) = t.create_key(&BOTH, VoiceAccess::Only(["joe".to_owned()].into()), None).await;

    let ok = speak(&client, &t, &key, "One.").await;
    let ok_id = request_id(&ok);
    ok.bytes().await.unwrap();
    let bad = client
        .post(t.url("/v1/audio/speech"))
        .bearer_auth(&key)
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), StatusCode::BAD_REQUEST);
    let bad_id = request_id(&bad);
    let refused = client.get(t.url("/v1/voices")).bearer_auth("smai_wrong").send().await.unwrap();
    let refused_id = request_id(&refused);

    // A stream the client leaves after its first sentence (the engine holds the rest back)
    // pays for that sentence only.
    let body = json!({"input": "One. Two. Three.", "voice": "joe", "response_format": "pcm", "stream_format": "audio"});
    let mut left = client.post(t.url("/v1/audio/speech")).bearer_auth(&key).json(&body).send().await.unwrap();
    assert_eq!(left.status(), StatusCode::OK);
    let left_id = request_id(&left);
    assert!(left.chunk().await.unwrap().is_some(), "first sentence arrives");
    drop(left);
    smai_e2e::wait_until(|| t.server.state.limiter.snapshot(&key_id, &Tier::default()).concurrency_open == 0).await;
    release.send(true).unwrap();

    let rows = usage_rows(t).await;
    assert_eq!(rows.len(), 3, "{rows:?}");
    assert!(rows.iter().all(|r| r.0 != refused_id), "a 401 is counted per source, not logged per request");
    for (id, status, tokens) in [(&ok_id, 200, 4), (&bad_id, 400, 0), (&left_id, 200, 4)] {
        let matching: Vec<_> = rows.iter().filter(|r| &r.0 == id).collect();
        assert_eq!(matching.len(), 1, "one row for {id}");
        assert_eq!((matching[0].1, matching[0].2), (status, tokens), "{id}");
    }
}

#[tokio::test]
async fn a_403_is_not_charged() {
    let t = TestServer::start().await;
    let client = Client::new();
    let (key_id, key) = t.create_key(&[Service::Asr], VoiceAccess::All, None).await;
    for _ in 0..3 {
        let response = client.get(t.url("/v1/voices")).bearer_auth(&key).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::FORBIDDEN);
    }
    let snapshot = t.server.state.limiter.snapshot(&key_id, &Tier::default());
    assert_eq!(snapshot.requests.remaining, 60, "403s consume no request");
    t.server.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_call_is_admitted_once_whatever_its_adapter_does() {
    use smai_server::service::{CallContext, Credentials, Operation};
    let t = TestServer::start().await;
    let (key_id, key) = t.create_key(&BOTH, VoiceAccess::All, None).await;
    let context = CallContext { request_id: "req_test".into(), route: "test".into(), source: None };
    let mut call = t.server.state.service.authenticate(&Credentials::api_key(key.as_str()), context).await.unwrap();
    call.authorize(Operation::Transcription).unwrap();
    assert!(call.authorize(Operation::Speech).is_err(), "one operation per call");
    call.admit(5).unwrap();
    let second = call.admit(5).expect_err("a second admission is refused");
    assert_eq!(second.code, smai_core::ErrorCode::Internal);
    let open = |t: &TestServer| t.server.state.limiter.snapshot(&key_id, &Tier::default());
    assert_eq!((open(&t).concurrency_open, open(&t).requests.remaining, open(&t).tokens.remaining), (1, 59, 49_995));
    call.charge(7).unwrap();
    call.refund(3);
    assert_eq!(call.charged(), 9);
    call.set_status(200);
    drop(call);
    assert_eq!(open(&t).concurrency_open, 0, "the slot comes back with the call");
    assert_eq!(open(&t).tokens.remaining, 50_000 - 9);

    // A voice operation cannot be admitted before its voice is authorised.
    let context = CallContext { request_id: "req_voice".into(), route: "test".into(), source: None };
    let mut speech = t.server.state.service.authenticate(&Credentials::api_key(key.as_str()), context).await.unwrap();
    speech.authorize(Operation::Speech).unwrap();
    assert_eq!(speech.admit(3).unwrap_err().code, smai_core::ErrorCode::Internal);
    speech.authorize_voice("joe").unwrap();
    speech.admit(3).unwrap();
    drop(speech);
    t.server.shutdown().await.unwrap();
}

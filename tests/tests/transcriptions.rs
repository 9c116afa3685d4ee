//! `POST /v1/audio/transcriptions` and `/v1/audio/translations` through the real server on
//! a fake engine that spells out the options it got: every response format, SSE, the fields
//! passed through, translation's model choice, and the validation 400s.

use reqwest::multipart::{Form, Part};
use reqwest::{Client, Response, StatusCode};
use serde_json::Value;
use smai_core::{Service, VoiceAccess};
use smai_e2e::{sse_events, ByteCountTranscriber, EchoTranscriber, TestServer};
use smai_server::serve::Engines;
use std::sync::Arc;

async fn echo_server() -> (TestServer, String) {
    let engines = Engines { transcriber: Some(Arc::new(EchoTranscriber)), synthesizer: None };
    let t = TestServer::start_full(|_| {}, engines).await;
    let (_, key) = t.create_key(&[Service::Asr], VoiceAccess::All, None).await;
    (t, key)
}

fn form(fields: &[(&str, &str)]) -> Form {
    let mut form = Form::new().part("file", Part::bytes(vec![1u8; 100]).file_name("clip.wav"));
    for (name, value) in fields {
        form = form.text(name.to_string(), value.to_string());
    }
    form
}

async fn post(t: &TestServer, key: &str, route: &str, form: Form) -> Response {
    Client::new().post(t.url(route)).bearer_auth(key).multipart(form).send().await.unwrap()
}

const TEXT: &str = "task=Transcribe model=- language=-. prompt=- temperature=-. bytes=100 words=false.";

#[tokio::test]
async fn every_response_format_renders_the_segments() {
    let (t, key) = echo_server().await;
    let route = "/v1/audio/transcriptions";
    let json = post(&t, &key, route, form(&[("model", "whisper-1")])).await;
    assert_eq!(json.headers()["content-type"], "application/json");
    assert_eq!(json.json::<Value>().await.unwrap(), serde_json::json!({"text": TEXT}));

    let text = post(&t, &key, route, form(&[("response_format", "text")])).await;
    assert!(text.headers()["content-type"].to_str().unwrap().starts_with("text/plain"));
    assert_eq!(text.text().await.unwrap(), TEXT);

    let srt = post(&t, &key, route, form(&[("response_format", "srt")])).await.text().await.unwrap();
    assert!(srt.starts_with("1\n00:00:00,000 --> 00:00:01,000\ntask=Transcribe model=- language=-.\n\n2\n00:00:01,000 --> 00:00:02,000\n"), "{srt}");
    let vtt = post(&t, &key, route, form(&[("response_format", "vtt")])).await;
    assert!(vtt.headers()["content-type"].to_str().unwrap().starts_with("text/vtt"));
    let vtt = vtt.text().await.unwrap();
    assert!(vtt.starts_with("WEBVTT\n\n00:00:00.000 --> 00:00:01.000\ntask=Transcribe"), "{vtt}");

    let verbose: Value =
        post(&t, &key, route, form(&[("response_format", "verbose_json")])).await.json().await.unwrap();
    assert_eq!(
        (verbose["task"].as_str(), verbose["language"].as_str(), verbose["duration"].as_f64()),
        (Some("transcribe"), Some("en"), Some(3.0))
    );
    assert_eq!(verbose["text"], TEXT);
    assert_eq!(verbose["segments"].as_array().unwrap().len(), 3);
    assert_eq!(verbose["segments"][2]["start"], 2.0);
    assert!(verbose.get("words").is_none(), "words only when asked");
    t.server.shutdown().await.unwrap();
}

#[tokio::test]
async fn fields_reach_the_engine_and_words_come_back_when_asked() {
    let (t, key) = echo_server().await;
    let fields = [
        ("model", "base"),
        ("language", "fr"),
        ("prompt", "Glossary: smai."),
        ("temperature", "0.2"),
        ("response_format", "verbose_json"),
        ("timestamp_granularities[]", "word"),
        ("timestamp_granularities[]", "segment"),
    ];
    let verbose: Value = post(&t, &key, "/v1/audio/transcriptions", form(&fields)).await.json().await.unwrap();
    assert_eq!(
        verbose["text"],
        "task=Transcribe model=base language=fr. prompt=Glossary: smai. temperature=0.2. bytes=100 words=true."
    );
    let words = verbose["words"].as_array().expect("top-level words");
    assert_eq!(
        words[0],
        serde_json::json!({"word": " task=Transcribe", "start": 0.0, "end": 0.25, "probability": 0.9})
    );
    assert_eq!(words.len(), verbose["text"].as_str().unwrap().split_whitespace().count());
    assert!(verbose["segments"][0]["words"].is_array());

    let refused = post(&t, &key, "/v1/audio/transcriptions", form(&[("timestamp_granularities[]", "word")])).await;
    assert_eq!(refused.status(), StatusCode::BAD_REQUEST, "words need verbose_json");
    t.server.shutdown().await.unwrap();
}

#[tokio::test]
async fn stream_true_answers_with_segment_deltas_then_done() {
    let (t, key) = echo_server().await;
    let response = post(&t, &key, "/v1/audio/transcriptions", form(&[("stream", "true")])).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    assert!(response.headers().contains_key("x-ratelimit-remaining-tokens"));
    let events = sse_events(&response.text().await.unwrap());
    assert_eq!(events.len(), 4);
    let deltas: String = events[..3]
        .iter()
        .map(|e| {
            assert_eq!(e["type"], "transcript.text.delta");
            e["delta"].as_str().unwrap()
        })
        .collect();
    assert_eq!(deltas.trim(), TEXT);
    assert_eq!(events[1]["start"], 1.0);
    assert_eq!(events[3], serde_json::json!({"type": "transcript.text.done", "text": TEXT}));
    t.server.shutdown().await.unwrap();
}

#[tokio::test]
async fn translations_run_the_translate_task_on_a_multilingual_model() {
    let (t, key) = echo_server().await;
    let route = "/v1/audio/translations";
    for fields in [&[][..], &[("model", "whisper-1")][..], &[("model", "base")][..]] {
        let body: Value = post(&t, &key, route, form(fields)).await.json().await.unwrap();
        assert!(body["text"].as_str().unwrap().starts_with("task=Translate model=base language=-."), "{body}");
    }
    let verbose: Value =
        post(&t, &key, route, form(&[("response_format", "verbose_json")])).await.json().await.unwrap();
    assert_eq!(verbose["task"], "translate");

    let english_only = post(&t, &key, route, form(&[("model", "tiny.en")])).await;
    assert_eq!(english_only.status(), StatusCode::BAD_REQUEST);
    let body: Value = english_only.json().await.unwrap();
    assert!(body["error"]["message"].as_str().unwrap().contains("English-only"), "{body}");
    assert_eq!(post(&t, &key, route, form(&[("model", "large-v9")])).await.status(), StatusCode::NOT_FOUND);
    t.server.shutdown().await.unwrap();

    // A server with English-only models says why it cannot translate.
    let engines = Engines { transcriber: Some(Arc::new(ByteCountTranscriber)), synthesizer: None };
    let t = TestServer::start_full(|_| {}, engines).await;
    let (_, key) = t.create_key(&[Service::Asr], VoiceAccess::All, None).await;
    let refused = post(&t, &key, route, form(&[])).await;
    assert_eq!(refused.status(), StatusCode::NOT_FOUND);
    let body: Value = refused.json().await.unwrap();
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.contains("multilingual") && message.contains("tiny.en"), "{message}");
    t.server.shutdown().await.unwrap();
}

#[tokio::test]
async fn vad_filter_and_openais_chunking_strategy_turn_the_vad_on() {
    let (t, key) = echo_server().await;
    let route = "/v1/audio/transcriptions";
    let cases: [(&[(&str, &str)], bool); 6] = [
        (&[], false),
        (&[("vad_filter", "true")], true),
        (&[("vad_filter", "false")], false),
        (&[("chunking_strategy", "auto")], true),
        (&[("chunking_strategy", r#"{"type": "server_vad", "threshold": 0.5}"#)], true),
        (&[("chunking_strategy", "")], false),
    ];
    for (fields, on) in cases {
        let body: Value = post(&t, &key, route, form(fields)).await.json().await.unwrap();
        assert_eq!(body["text"].as_str().unwrap().ends_with(" vad=true"), on, "{fields:?}: {body}");
    }
    let translated = post(&t, &key, "/v1/audio/translations", form(&[("vad_filter", "1")])).await;
    assert!(translated.text().await.unwrap().contains("vad=true"));
    t.server.shutdown().await.unwrap();
}

#[tokio::test]
async fn invalid_uploads_get_clear_400s_and_cost_nothing() {
    let (t, key) = echo_server().await;
    let route = "/v1/audio/transcriptions";
    let no_file = Form::new().text("model", "whisper-1");
    let empty_file = Form::new().part("file", Part::bytes(Vec::new()).file_name("a.wav"));
    let cases = [
        (no_file, "missing file"),
        (empty_file, "empty"),
        (form(&[("response_format", "docx")]), "response_format"),
        (form(&[("temperature", "warm")]), "temperature"),
        (form(&[("temperature", "1.5")]), "temperature"),
        (form(&[("timestamp_granularities[]", "char")]), "granularity"),
        (form(&[("stream", "maybe")]), "stream"),
        (form(&[("vad_filter", "sometimes")]), "vad_filter"),
        (form(&[("chunking_strategy", "manual")]), "chunking_strategy"),
    ];
    for (form, message) in cases {
        let response = post(&t, &key, route, form).await;
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{message}");
        let body: Value = response.json().await.unwrap();
        assert!(body["error"]["message"].as_str().unwrap().contains(message), "{message}: {body}");
    }
    let not_multipart =
        Client::new().post(t.url(route)).bearer_auth(&key).json(&serde_json::json!({})).send().await.unwrap();
    assert_eq!(not_multipart.status(), StatusCode::BAD_REQUEST);

    let ok = post(&t, &key, route, form(&[])).await;
    assert_eq!(ok.headers()["x-ratelimit-remaining-requests"], "59", "the refusals above were not charged");
    assert_eq!(ok.headers()["x-ratelimit-remaining-tokens"], (50_000 - 30).to_string(), "3 s of audio");
    t.server.shutdown().await.unwrap();
}

//! `POST /v1/audio/speech` through the real server on fake engines: every output format,
//! chunked and SSE streaming sentence by sentence, the concurrency slot held by a stream, and
//! the validation 400s.

use base64::Engine as _;
use futures_util::StreamExt;
use reqwest::{Client, Response, StatusCode};
use serde_json::{json, Value};
use smai_core::{Service, Tier, VoiceAccess};
use smai_e2e::{sse_events, wait_until, GatedSynthesizer, TestServer, GATED_RATE};
use smai_server::serve::Engines;
use std::sync::Arc;

async fn speak(client: &Client, t: &TestServer, key: &str, body: Value) -> Response {
    client.post(t.url("/v1/audio/speech")).bearer_auth(key).json(&body).send().await.unwrap()
}

fn content_type(response: &Response) -> String {
    response.headers()["content-type"].to_str().unwrap().to_owned()
}

#[tokio::test]
async fn every_response_format_has_its_content_type_and_encoding() {
    let t = TestServer::start().await;
    let client = Client::new();
    let (_, key) = t.create_key(&[Service::Tts], VoiceAccess::All, None).await;
    // ToneSynthesizer: 1600 samples at 16 kHz.
    for (format, mime) in [
        ("wav", "audio/wav"),
        ("pcm", "audio/pcm"),
        ("flac", "audio/flac"),
        ("mp3", "audio/mpeg"),
        ("opus", "audio/ogg"),
    ] {
        let response = speak(
            &client,
            &t,
            &key,
            json!({"model": "tts-1", "input": "Hi.", "voice": "joe", "response_format": format}),
        )
        .await;
        assert_eq!(response.status(), StatusCode::OK, "{format}");
        assert_eq!(content_type(&response), mime, "{format}");
        let bytes = response.bytes().await.unwrap();
        match format {
            "wav" => {
                let reader = hound::WavReader::new(std::io::Cursor::new(bytes.to_vec())).unwrap();
                assert_eq!((reader.spec().sample_rate, reader.spec().channels, reader.len()), (16_000, 1, 1600));
            }
            "pcm" => assert_eq!(bytes.len(), 3200, "s16le mono, no header"),
            "flac" => assert_eq!(&bytes[..4], b"fLaC"),
            "mp3" => assert!(bytes[0] == 0xff && bytes[1] & 0xe0 == 0xe0, "mp3 frame sync"),
            _ => assert!(bytes.starts_with(b"OggS") && bytes.windows(8).any(|w| w == b"OpusHead")),
        }
    }
    let default = speak(&client, &t, &key, json!({"input": "Hi.", "voice": "joe"})).await;
    assert_eq!(content_type(&default), "audio/wav", "wav by default");
    t.server.shutdown().await.unwrap();
}

/// A server on the gated synthesiser, its key id and key, and the gate.
async fn gated() -> (TestServer, String, String, tokio::sync::watch::Sender<bool>) {
    let (release, gate) = tokio::sync::watch::channel(false);
    let engines = Engines { transcriber: None, synthesizer: Some(Arc::new(GatedSynthesizer { release: gate })) };
    let t = TestServer::start_full(|_| {}, engines).await;
    let (key_id, key) = t.create_key(&[Service::Tts], VoiceAccess::All, None).await;
    (t, key_id, key, release)
}

fn open(t: &TestServer, key_id: &str) -> u32 {
    t.server.state.limiter.snapshot(key_id, &Tier::default()).concurrency_open
}

const SENTENCE_BYTES: usize = 2205 * 2;

#[tokio::test]
async fn audio_streams_sentence_by_sentence_and_holds_the_slot_until_the_end() {
    let (t, key_id, key, release) = gated().await;
    let client = Client::new();
    let body = json!({"input": "One. Two. Three.", "voice": "joe", "response_format": "wav", "stream_format": "audio"});
    let response = speak(&client, &t, &key, body).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(content_type(&response), "audio/wav");
    assert_eq!(response.headers()["transfer-encoding"], "chunked");
    assert!(response.headers().get("content-length").is_none());

    // The first sentence arrives while the others are still held back by the engine.
    let mut chunks = response.bytes_stream();
    let mut received = Vec::new();
    while received.len() < 44 + SENTENCE_BYTES {
        received.extend_from_slice(&chunks.next().await.expect("first sentence").unwrap());
    }
    assert_eq!(received.len(), 44 + SENTENCE_BYTES, "header and exactly one sentence so far");
    assert_eq!(&received[..4], b"RIFF");
    assert_eq!(u32::from_le_bytes(received[24..28].try_into().unwrap()), GATED_RATE);
    assert_eq!(&received[40..44], &u32::MAX.to_le_bytes(), "data length unknown while streaming");
    assert_eq!(open(&t, &key_id), 1, "the stream holds its concurrency slot");

    release.send(true).unwrap();
    while let Some(chunk) = chunks.next().await {
        received.extend_from_slice(&chunk.unwrap());
    }
    assert_eq!(received.len(), 44 + 3 * SENTENCE_BYTES);
    wait_until(|| open(&t, &key_id) == 0).await;
    t.server.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_client_that_leaves_mid_stream_gives_its_slot_back() {
    let (t, key_id, key, _release) = gated().await;
    let client = Client::new();
    let body = json!({"input": "One. Two.", "voice": "joe", "response_format": "pcm", "stream_format": "audio"});
    let response = speak(&client, &t, &key, body).await;
    assert_eq!(content_type(&response), "audio/pcm");
    let mut chunks = response.bytes_stream();
    let first = chunks.next().await.unwrap().unwrap();
    assert_eq!(first.len(), SENTENCE_BYTES, "raw pcm, no header");
    assert_eq!(open(&t, &key_id), 1);
    drop(chunks);
    wait_until(|| open(&t, &key_id) == 0).await;
    t.server.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_client_that_leaves_mid_stream_pays_only_for_the_sentences_it_was_sent() {
    let (t, key_id, key, release) = gated().await;
    let client = Client::new();
    let tokens_left = |t: &TestServer| t.server.state.limiter.snapshot(&key_id, &Tier::default()).tokens.remaining;
    let input = "One. Two. Three.";
    let body = json!({"input": input, "voice": "joe", "response_format": "pcm", "stream_format": "audio"});
    let response = speak(&client, &t, &key, body.clone()).await;
    assert_eq!(response.headers()["x-ratelimit-remaining-tokens"], (50_000 - 16).to_string(), "admitted whole");
    let mut chunks = response.bytes_stream();
    assert_eq!(chunks.next().await.unwrap().unwrap().len(), SENTENCE_BYTES);
    drop(chunks);
    wait_until(|| open(&t, &key_id) == 0).await;
    assert_eq!(tokens_left(&t), 50_000 - 4, "\"One.\" was sent; the rest is refunded");

    // A stream heard to its end costs the whole input.
    release.send(true).unwrap();
    let whole = speak(&client, &t, &key, body).await.bytes().await.unwrap();
    assert_eq!(whole.len(), 3 * SENTENCE_BYTES);
    wait_until(|| open(&t, &key_id) == 0).await;
    assert_eq!(tokens_left(&t), 50_000 - 4 - 16);

    let TestServer { server, db, dir: _dir, .. } = t;
    server.shutdown().await.unwrap();
    let pool = smai_auth::open_database(&db).await.unwrap();
    let rows: Vec<(i64, i64)> =
        sqlx::query_as("SELECT status, tokens FROM usage_log ORDER BY id").fetch_all(&pool).await.unwrap();
    assert_eq!(rows, [(200, 4), (200, 16)], "the status line had gone out before the client left");
}

#[tokio::test]
async fn sse_sends_base64_deltas_then_done() {
    let (t, _, key, release) = gated().await;
    release.send(true).unwrap();
    let client = Client::new();
    for (format, first_len) in [("pcm", SENTENCE_BYTES), ("wav", 44 + SENTENCE_BYTES)] {
        let body =
            json!({"input": "One. Two. Three.", "voice": "joe", "response_format": format, "stream_format": "sse"});
        let response = speak(&client, &t, &key, body).await;
        assert_eq!(content_type(&response), "text/event-stream");
        let events = sse_events(&response.text().await.unwrap());
        assert_eq!(events.len(), 4, "three sentences and done");
        let audio: Vec<Vec<u8>> = events[..3]
            .iter()
            .map(|e| {
                assert_eq!(e["type"], "speech.audio.delta");
                base64::engine::general_purpose::STANDARD.decode(e["audio"].as_str().unwrap()).unwrap()
            })
            .collect();
        assert_eq!(audio.iter().map(Vec::len).collect::<Vec<_>>(), [first_len, SENTENCE_BYTES, SENTENCE_BYTES]);
        assert_eq!(events[3]["type"], "speech.audio.done");
    }
    t.server.shutdown().await.unwrap();
}

#[tokio::test]
async fn streamed_mp3_is_a_sequence_of_mp3_frames() {
    let (t, _, key, release) = gated().await;
    release.send(true).unwrap();
    let body = json!({"input": "One. Two.", "voice": "joe", "response_format": "mp3", "stream_format": "audio"});
    let response = speak(&Client::new(), &t, &key, body).await;
    assert_eq!(content_type(&response), "audio/mpeg");
    let bytes = response.bytes().await.unwrap();
    assert!(bytes.len() > 500 && bytes[0] == 0xff && bytes[1] & 0xe0 == 0xe0);
    t.server.shutdown().await.unwrap();
}

#[tokio::test]
async fn invalid_requests_get_clear_400s_and_404s_and_cost_nothing() {
    let t = TestServer::start().await;
    let client = Client::new();
    let (_, key) = t.create_key(&[Service::Tts], VoiceAccess::All, None).await;
    let cases = [
        (json!({"input": "", "voice": "joe"}), 400, "empty"),
        (json!({"input": "  \n ", "voice": "joe"}), 400, "empty"),
        (json!({"input": "é".repeat(4097), "voice": "joe"}), 400, "4097 characters"),
        (json!({"input": "hi", "voice": "joe", "speed": 0.2}), 400, "speed"),
        (json!({"input": "hi", "voice": "joe", "speed": 4.5}), 400, "speed"),
        (json!({"input": "hi", "voice": "joe", "response_format": "aac"}), 400, "aac"),
        (json!({"input": "hi", "voice": "joe", "stream_format": "video"}), 400, "stream_format"),
        (
            json!({"input": "hi", "voice": "joe", "response_format": "flac", "stream_format": "audio"}),
            400,
            "cannot be streamed",
        ),
        (json!({"voice": "joe"}), 400, "input"),
        (json!({"input": "hi", "voice": "nobody"}), 404, "unknown voice \"nobody\"; voices: joe, joe-slow"),
        (json!({"input": "hi", "voice": "joe", "model": "tts-9"}), 404, "model \"tts-9\" does not exist"),
    ];
    for (body, status, message) in cases {
        let response = speak(&client, &t, &key, body.clone()).await;
        assert_eq!(response.status().as_u16(), status, "{body}");
        let error: Value = response.json().await.unwrap();
        assert!(error["error"]["message"].as_str().unwrap().contains(message), "{body}: {error}");
    }
    let post = |content_type: &'static str| {
        client.post(t.url("/v1/audio/speech")).bearer_auth(&key).header("content-type", content_type)
    };
    let response = post("application/json").body("not json").send().await.unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    // JSON sent as anything but JSON is refused, so a web page cannot post it without a preflight.
    let body = json!({"input": "hi", "voice": "joe"}).to_string();
    for content_type in ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x"] {
        let response = post(content_type).body(body.clone()).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE, "{content_type}");
    }
    let response = client.post(t.url("/v1/audio/speech")).bearer_auth(&key).body(body.clone()).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE, "no content type");
    for nothing in ["...", "-", "\u{200b}\u{200d}", " ?! "] {
        let response = speak(&client, &t, &key, json!({"input": nothing, "voice": "joe"})).await;
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{nothing:?}");
        let error: Value = response.json().await.unwrap();
        assert!(error["error"]["message"].as_str().unwrap().contains("nothing to speak"), "{error}");
    }

    let ok = speak(&client, &t, &key, json!({"input": "é".repeat(4096), "voice": "joe", "speed": 4.0})).await;
    assert_eq!(ok.status(), StatusCode::OK, "4096 characters and speed 4 are accepted");
    assert_eq!(ok.headers()["x-ratelimit-remaining-requests"], "59", "the refusals above were not charged");
    t.server.shutdown().await.unwrap();
}

/// Gives one sentence of audio, then fails as an engine does when a sentence cannot be synthesised.
struct FailsAfterFirstSentence;

impl smai_core::Synthesizer for FailsAfterFirstSentence {
    fn voices(&self) -> Vec<smai_core::VoiceInfo> {
        smai_e2e::ToneSynthesizer.voices()
    }
    fn synthesize(
        &self,
        _text: String,
        _options: smai_core::SpeechOptions,
    ) -> Result<smai_core::AudioStream, smai_core::Error> {
        let (tx, rx) = tokio::sync::mpsc::channel(2);
        tx.try_send(Ok(smai_core::AudioChunk { samples: vec![0.25; 160], sample_rate: 16_000 })).unwrap();
        tx.try_send(Err(smai_core::Error::internal("vocoder failed"))).unwrap();
        Ok(rx)
    }
}

#[tokio::test]
async fn a_failure_mid_stream_ends_the_stream_visibly() {
    let engines = Engines { transcriber: None, synthesizer: Some(Arc::new(FailsAfterFirstSentence)) };
    let t = TestServer::start_full(|_| {}, engines).await;
    let (_, key) = t.create_key(&[Service::Tts], VoiceAccess::All, None).await;
    let client = Client::new();

    let sse = speak(
        &client,
        &t,
        &key,
        json!({"input": "One. Two.", "voice": "joe", "stream_format": "sse", "response_format": "pcm"}),
    )
    .await;
    let events = sse_events(&sse.text().await.unwrap());
    assert_eq!(events.len(), 2, "{events:?}");
    assert_eq!(events[0]["type"], "speech.audio.delta");
    assert_eq!(events[1]["type"], "error", "an error event, and no done event");
    assert_eq!(events[1]["error"]["code"], "internal_error");
    assert!(!events[1].to_string().contains("vocoder"), "internal detail stays in the log");

    // Chunked audio cannot carry an error: the body is cut short (before or after the status
    // line, as the connection's buffering goes), which the client sees as a failed transfer.
    let body = json!({"input": "One. Two.", "voice": "joe", "stream_format": "audio", "response_format": "pcm"});
    let audio = client.post(t.url("/v1/audio/speech")).bearer_auth(&key).json(&body).send().await;
    let failed = match audio {
        Err(_) => true,
        Ok(response) => response.bytes().await.is_err(),
    };
    assert!(failed, "a truncated chunked body is an error for the client");

    let whole = speak(&client, &t, &key, json!({"input": "One. Two.", "voice": "joe"})).await;
    assert_eq!(whole.status(), StatusCode::INTERNAL_SERVER_ERROR);
    t.server.shutdown().await.unwrap();
}

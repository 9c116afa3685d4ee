//! The live sockets through the real server with a real WebSocket client (tokio-tungstenite),
//! on the small fake engines (a counting live session, a tone synthesizer): auth by header and
//! by first message, the auth deadline, refusals and their close codes, the concurrency slot
//! held from auth to close and freed by a vanished client, chunk-by-chunk charging, recoverable
//! errors, frame limits, idle timeout, and one usage row per session.

use futures_util::SinkExt;
use serde_json::json;
use smai_core::{Service, Tier, VoiceAccess};
use smai_e2e::ws::{closed, connect, json, receive, send, Received};
use smai_e2e::TestServer;
use std::collections::BTreeSet;
use std::time::Duration;
use tokio_tungstenite::tungstenite::Message;

fn pcm(seconds: f64) -> Vec<u8> {
    let n = (seconds * 16_000.0) as usize;
    (0..n).flat_map(|i| (((i as f32 * 0.05).sin() * 8_000.0) as i16).to_le_bytes()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_recognition_runs_start_audio_commit_stop_and_charges_every_chunk() {
    let t = TestServer::start().await;
    let (_, key) = t.create_key(&[Service::Asr], VoiceAccess::All, None).await;
    let mut ws = connect(&t, "/v1/realtime/asr", Some(&key)).await;
    send(&mut ws, json!({"type": "start", "sample_rate": 16000, "encoding": "pcm_s16le"})).await;
    let started = json(&mut ws).await;
    assert_eq!(started["type"], "started", "{started}");
    // The fake engine has no VAD: an unset mode falls back to manual, and says so.
    assert_eq!((started["model"].as_str(), started["vad"]["mode"].as_str()), (Some("tiny.en"), Some("manual")));
    for _ in 0..5 {
        ws.send(Message::Binary(pcm(0.1).into())).await.unwrap();
    }
    send(&mut ws, json!({"type": "commit"})).await;
    let mut kinds = Vec::new();
    let final_text = loop {
        let event = json(&mut ws).await;
        kinds.push(event["type"].as_str().unwrap().to_owned());
        if event["type"] == "final" {
            break event["text"].as_str().unwrap().to_owned();
        }
    };
    assert_eq!(kinds[0], "speech_started");
    assert!(kinds.iter().any(|k| k == "partial"), "{kinds:?}");
    assert_eq!(final_text, " heard 8000 samples");
    send(&mut ws, json!({"type": "stop"})).await;
    let mut last = json(&mut ws).await;
    if last["type"] == "speech_stopped" {
        last = json(&mut ws).await;
    }
    assert_eq!(last, json!({"type": "done", "audio_seconds": 0.5, "utterances": 1}));
    assert_eq!(closed(&mut ws).await.0, 1000);
    let rows = t.usage_rows().await;
    assert_eq!(rows.last().unwrap(), &("/v1/realtime/asr".to_owned(), 200, 5), "0.5 s of audio is 5 tokens");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_browser_authenticates_with_its_first_message_and_misses_the_deadline_with_4401() {
    let t = TestServer::start().await;
    let (_, key) = t.create_key(&[Service::Asr], VoiceAccess::All, None).await;
    let mut ws = connect(&t, "/v1/realtime/asr", None).await;
    send(&mut ws, json!({"type": "auth", "api_key": key})).await;
    send(&mut ws, json!({"type": "start"})).await;
    assert_eq!(json(&mut ws).await["type"], "started");
    send(&mut ws, json!({"type": "stop"})).await;
    assert_eq!(json(&mut ws).await["type"], "done");

    let mut silent = connect(&t, "/v1/realtime/asr", None).await;
    let waited = std::time::Instant::now();
    let (code, error) = closed(&mut silent).await;
    assert_eq!((code, error["error"]["code"].as_str()), (4401, Some("unauthorized")), "{error}");
    assert!(waited.elapsed() >= Duration::from_secs(4), "closed after {:?}", waited.elapsed());
    t.server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_sockets_close_with_the_tables_codes_and_hold_no_slot() {
    let t = TestServer::start().await;
    let one = Tier { concurrency: 1, ..Tier::default() };
    let key = t.create_key_with(&[Service::Asr], VoiceAccess::All, one).await;
    // Audio before auth, a bad key, a non-auth first message: 4401, nothing processed.
    let mut audio_first = connect(&t, "/v1/realtime/asr", None).await;
    audio_first.send(Message::Binary(pcm(0.1).into())).await.unwrap();
    assert_eq!(closed(&mut audio_first).await.0, 4401);
    let mut bad = connect(&t, "/v1/realtime/asr", None).await;
    send(&mut bad, json!({"type": "auth", "api_key": "smai_wrong"})).await;
    assert_eq!(closed(&mut bad).await.0, 4401);
    let mut bad_header = connect(&t, "/v1/realtime/asr", Some("smai_wrong")).await;
    assert_eq!(closed(&mut bad_header).await.0, 4401);
    let mut start_first = connect(&t, "/v1/realtime/asr", None).await;
    send(&mut start_first, json!({"type": "start"})).await;
    assert_eq!(closed(&mut start_first).await.0, 4401);
    // The key's one slot is free: a session opens, and a second one is refused while it lives.
    let mut open = connect(&t, "/v1/realtime/asr", Some(&key)).await;
    send(&mut open, json!({"type": "start"})).await;
    assert_eq!(json(&mut open).await["type"], "started");
    let mut second = connect(&t, "/v1/realtime/asr", Some(&key)).await;
    let (code, error) = closed(&mut second).await;
    assert_eq!((code, error["error"]["code"].as_str()), (4429, Some("concurrency_limit_exceeded")), "{error}");

    let tts_only = t.create_key_with(&[Service::Tts], VoiceAccess::All, Tier::default()).await;
    let mut wrong_service = connect(&t, "/v1/realtime/asr", Some(&tts_only)).await;
    assert_eq!(closed(&mut wrong_service).await.0, 4403);
    let slow_only = t
        .create_key_with(&[Service::Tts], VoiceAccess::Only(BTreeSet::from(["joe-slow".to_owned()])), Tier::default())
        .await;
    let mut tts = connect(&t, "/v1/realtime/tts", Some(&slow_only)).await;
    send(&mut tts, json!({"type": "start", "voice": "joe"})).await;
    let (code, error) = closed(&mut tts).await;
    assert_eq!((code, error["error"]["code"].as_str()), (4403, Some("voice_not_allowed")), "{error}");
    t.server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_sessions_fit_a_five_concurrency_key_and_the_sixth_gets_4429() {
    let t = TestServer::start().await;
    let (_, key) = t.create_key(&[Service::Asr], VoiceAccess::All, None).await;
    let mut sessions = Vec::new();
    for _ in 0..5 {
        let mut ws = connect(&t, "/v1/realtime/asr", Some(&key)).await;
        send(&mut ws, json!({"type": "start"})).await;
        assert_eq!(json(&mut ws).await["type"], "started");
        sessions.push(ws);
    }
    let mut sixth = connect(&t, "/v1/realtime/asr", Some(&key)).await;
    assert_eq!(closed(&mut sixth).await.0, 4429);
    t.server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_vanished_client_frees_its_slot_and_leaves_one_usage_row() {
    let t = TestServer::start().await;
    let one = Tier { concurrency: 1, ..Tier::default() };
    let key = t.create_key_with(&[Service::Asr], VoiceAccess::All, one).await;
    let mut ws = connect(&t, "/v1/realtime/asr", Some(&key)).await;
    send(&mut ws, json!({"type": "start"})).await;
    assert_eq!(json(&mut ws).await["type"], "started");
    ws.send(Message::Binary(pcm(0.3).into())).await.unwrap();
    drop(ws); // no close frame: the TCP connection just goes
    let reopened = async {
        loop {
            let mut again = connect(&t, "/v1/realtime/asr", Some(&key)).await;
            send(&mut again, json!({"type": "start"})).await;
            if let Received::Json(v) = receive(&mut again).await {
                if v["type"] == "started" {
                    return again;
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    let mut again = tokio::time::timeout(Duration::from_secs(5), reopened).await.expect("the slot comes back");
    send(&mut again, json!({"type": "stop"})).await;
    assert_eq!(json(&mut again).await["type"], "done");
    let rows = t.usage_rows().await;
    let vanished: Vec<_> = rows.iter().filter(|r| r.1 == 499).collect();
    assert_eq!(vanished, vec![&("/v1/realtime/asr".to_owned(), 499, 3)], "{rows:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn running_out_of_tokens_mid_session_sends_the_error_then_4429() {
    let t = TestServer::start().await;
    let small = Tier { tpm: 20, ..Tier::default() };
    let key = t.create_key_with(&[Service::Asr], VoiceAccess::All, small).await;
    let mut ws = connect(&t, "/v1/realtime/asr", Some(&key)).await;
    send(&mut ws, json!({"type": "start"})).await;
    assert_eq!(json(&mut ws).await["type"], "started");
    for _ in 0..30 {
        if ws.send(Message::Binary(pcm(0.1).into())).await.is_err() {
            break;
        }
    }
    let (code, error) = closed(&mut ws).await;
    assert_eq!((code, error["error"]["code"].as_str()), (4429, Some("rate_limit_exceeded")), "{error}");
    let rows = t.usage_rows().await;
    assert_eq!(rows.last().unwrap().2, 20, "charged exactly the 2 s that fit: {rows:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_messages_are_reported_and_the_session_goes_on_but_oversized_frames_close_it() {
    let t = TestServer::start_with(|c| c.ws_idle_timeout = Duration::from_secs(1)).await;
    let (_, key) = t.create_key(&[Service::Asr, Service::Tts], VoiceAccess::All, None).await;
    let mut ws = connect(&t, "/v1/realtime/asr", Some(&key)).await;
    ws.send(Message::Binary(pcm(0.1).into())).await.unwrap();
    assert_eq!(json(&mut ws).await["error"]["code"], "invalid_request", "audio before start");
    ws.send(Message::Text("{not json".into())).await.unwrap();
    assert_eq!(json(&mut ws).await["type"], "error");
    send(&mut ws, json!({"type": "start", "sample_rate": 4000})).await;
    let refused = json(&mut ws).await;
    assert!(refused["error"]["message"].as_str().unwrap().contains("sample rate"), "{refused}");
    send(&mut ws, json!({"type": "start", "encoding": "mulaw", "sample_rate": 8000})).await;
    assert_eq!(json(&mut ws).await["type"], "started");
    send(&mut ws, json!({"type": "dance"})).await;
    assert_eq!(json(&mut ws).await["type"], "error");
    ws.send(Message::Text("x".repeat(70_000).into())).await.unwrap();
    let (code, error) = closed(&mut ws).await;
    assert_eq!((code, error["error"]["code"].as_str()), (1009, Some("payload_too_large")), "{error}");

    // Silence past the idle timeout closes the session with an error that says so.
    let mut idle = connect(&t, "/v1/realtime/tts", Some(&key)).await;
    send(&mut idle, json!({"type": "start", "voice": "joe"})).await;
    let (_, error) = closed(&mut idle).await;
    assert!(error["error"]["message"].as_str().unwrap().contains("no audio or text"), "{error}");
    t.server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_synthesis_sends_each_sentence_with_its_audio_cancels_and_ends_with_done() {
    let t = TestServer::start().await;
    let (_, key) = t.create_key(&[Service::Tts], VoiceAccess::All, None).await;
    let mut ws = connect(&t, "/v1/realtime/tts", Some(&key)).await;
    send(&mut ws, json!({"type": "speak", "voice": "joe", "text": "Hello there. How"})).await;
    send(&mut ws, json!({"type": "speak", "text": " are you?"})).await;
    send(&mut ws, json!({"type": "stop"})).await;
    let mut events = Vec::new();
    loop {
        match receive(&mut ws).await {
            Received::Json(v) if v["type"] == "done" => {
                assert_eq!(v["characters"], 25, "{v}");
                break;
            }
            Received::Json(v) => {
                events.push(format!("{}:{}", v["type"].as_str().unwrap(), v["text"].as_str().unwrap_or("")))
            }
            Received::Audio(bytes) => events.push(format!("audio:{bytes}")),
            Received::Closed(code) => panic!("closed {code} early: {events:?}"),
        }
    }
    assert_eq!(
        events,
        [
            "segment_start:Hello there.",
            "audio:3200",
            "segment_end:",
            "segment_start:How are you?",
            "audio:3200",
            "segment_end:"
        ],
        "one tone of 1600 samples per sentence"
    );
    assert_eq!(closed(&mut ws).await.0, 1000);

    // Barge-in: cancel answers `cancelled` and the session goes on.
    let mut ws = connect(&t, "/v1/realtime/tts", Some(&key)).await;
    send(&mut ws, json!({"type": "start", "voice": "joe", "speed": 1.0})).await;
    send(&mut ws, json!({"type": "speak", "text": "Never finished"})).await;
    send(&mut ws, json!({"type": "cancel"})).await;
    assert_eq!(json(&mut ws).await["type"], "cancelled");
    send(&mut ws, json!({"type": "speak", "text": "Fine."})).await;
    send(&mut ws, json!({"type": "flush"})).await;
    assert_eq!(json(&mut ws).await["text"], "Fine.");
    t.server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openai_realtime_takes_the_key_from_the_subprotocol_and_refuses_conversations() {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let t = TestServer::start().await;
    let (_, key) = t.create_key(&[Service::Asr], VoiceAccess::All, None).await;
    let url = t.url("/v1/realtime?intent=transcription").replacen("http://", "ws://", 1);
    let mut request = url.as_str().into_client_request().unwrap();
    let protocols = format!("realtime, openai-insecure-api-key.{key}");
    request.headers_mut().insert("sec-websocket-protocol", protocols.parse().unwrap());
    let (mut ws, response) = tokio_tungstenite::connect_async(request).await.unwrap();
    assert_eq!(response.headers()["sec-websocket-protocol"], "realtime");
    let created = json(&mut ws).await;
    assert_eq!((created["type"].as_str(), created["event_id"].is_string()), (Some("session.created"), true));
    send(&mut ws, json!({"type": "transcription_session.update", "session": {"input_audio_format": "g711_ulaw"}}))
        .await;
    let updated = json(&mut ws).await;
    assert_eq!(updated["type"], "transcription_session.updated", "{updated}");
    assert_eq!(updated["session"]["audio"]["input"]["format"]["type"], "audio/pcmu");
    send(&mut ws, json!({"type": "input_audio_buffer.commit", "event_id": "mine"})).await;
    let empty = json(&mut ws).await;
    assert_eq!(
        (empty["error"]["code"].as_str(), empty["error"]["event_id"].as_str()),
        (Some("input_audio_buffer_commit_empty"), Some("mine"))
    );
    send(&mut ws, json!({"type": "response.create"})).await;
    let refused = json(&mut ws).await;
    assert_eq!(refused["error"]["code"], "invalid_request", "{refused}");
    send(&mut ws, json!({"type": "input_audio_buffer.clear"})).await;
    assert_eq!(json(&mut ws).await["type"], "input_audio_buffer.cleared");
    drop(ws);

    // A conversation intent is refused; no key at all is a 4401.
    let url = t.url("/v1/realtime?intent=conversation").replacen("http://", "ws://", 1);
    let mut request = url.as_str().into_client_request().unwrap();
    request.headers_mut().insert("authorization", format!("Bearer {key}").parse().unwrap());
    let (mut ws, _) = tokio_tungstenite::connect_async(request).await.unwrap();
    let (code, error) = closed(&mut ws).await;
    assert_eq!((code, error["type"].as_str()), (4400, Some("error")), "{error}");
    let mut anonymous = connect(&t, "/v1/realtime?intent=transcription", None).await;
    assert_eq!(closed(&mut anonymous).await.0, 4401);
    t.server.shutdown().await.unwrap();
}

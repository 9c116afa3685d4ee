//! Uploads are charged from their measured length before they are decoded, on the real
//! Whisper engine: a key without the tokens for a long file is refused in milliseconds (its
//! audio is never decoded), a file over `--max-audio-seconds` answers 413 naming the cap, and
//! a file that is served is charged what its decoded audio costs. Needs the installed models.

#[path = "../../crates/inference/tests/common/flac.rs"]
#[allow(dead_code)]
mod flac;

use reqwest::multipart::{Form, Part};
use reqwest::{Client, StatusCode};
use serde_json::Value;
use smai_auth::NewKey;
use smai_core::{Service, Tier, VoiceAccess};
use smai_e2e::TestServer;
use smai_server::ServeConfig;
use std::path::{Path, PathBuf};

fn models_dir() -> PathBuf {
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("workspace root").to_path_buf();
    std::env::var_os("SMAI_MODELS_DIR").map(PathBuf::from).unwrap_or_else(|| workspace.join("models/cache"))
}

/// The server on tiny.en with at most `max_audio_seconds` per upload.
async fn server(max_audio_seconds: u64) -> TestServer {
    let mut config = ServeConfig::for_tests(PathBuf::from("unused.db"));
    config.models_dir = models_dir();
    config.asr_models = vec!["tiny.en".into()];
    // The cap belongs to the engine, which is loaded here.
    config.max_audio_seconds = max_audio_seconds;
    assert!(config.models_dir.join("tiny.en/model.bin").is_file(), "tiny.en missing (run `smai models pull`)");
    let engines = smai_server::engines::load(&config).await.expect("engines load");
    assert!(engines.transcriber.is_some());
    TestServer::start_full(|c| c.models_dir = models_dir(), engines).await
}

async fn key_with_tpm(t: &TestServer, tpm: u32) -> String {
    let new = NewKey {
        org: "acme".into(),
        name: None,
        services: [Service::Asr].into(),
        voices: VoiceAccess::All,
        tier: Tier { tpm, ..Tier::default() },
        expires_in_ms: None,
    };
    t.server.state.authenticator.store().create(&new).await.expect("key created").1.as_str().to_owned()
}

async fn transcribe(t: &TestServer, key: &str, file: Vec<u8>, name: &str) -> reqwest::Response {
    let form = Form::new().part("file", Part::bytes(file).file_name(name.to_owned()));
    Client::new().post(t.url("/v1/audio/transcriptions")).bearer_auth(key).multipart(form).send().await.unwrap()
}

fn wav(seconds: u32, rate: u32) -> Vec<u8> {
    let spec =
        hound::WavSpec { channels: 1, sample_rate: rate, bits_per_sample: 16, sample_format: hound::SampleFormat::Int };
    let mut cursor = std::io::Cursor::new(Vec::new());
    let mut writer = hound::WavWriter::new(&mut cursor, spec).unwrap();
    (0..seconds * rate).for_each(|i| writer.write_sample(((i % 100) as i16 - 50) * 10).unwrap());
    writer.finalize().unwrap();
    cursor.into_inner()
}

/// (status, tokens, latency in ms) of every usage row, after shutdown has flushed them.
async fn usage_rows(t: TestServer) -> Vec<(i64, i64, i64)> {
    let TestServer { server, db, dir: _dir, .. } = t;
    server.shutdown().await.unwrap();
    let pool = smai_auth::open_database(&db).await.unwrap();
    let rows =
        sqlx::query_as("SELECT status, tokens, latency_ms FROM usage_log ORDER BY id").fetch_all(&pool).await.unwrap();
    pool.close().await;
    rows
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_without_the_tokens_for_a_long_upload_is_refused_before_decoding() {
    let t = server(3 * 3600).await;
    // 100 tokens a minute pays for 10 s of audio.
    let key = key_with_tpm(&t, 100).await;
    // Ten minutes of 16 kHz WAV (19 MB, stated in its header) and an hour of 48 kHz FLAC
    // whose header leaves the length out, so that it is counted only up to the budget.
    let uploads = [(wav(600, 16_000), "long.wav"), (flac::silence(48_000, 3600 * 48_000, false), "long.flac")];
    for (file, name) in uploads {
        let response = transcribe(&t, &key, file, name).await;
        assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS, "{name}");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["error"]["code"], "rate_limit_exceeded", "{body}");
    }

    let rows = usage_rows(t).await;
    assert_eq!(rows.len(), 2, "{rows:?}");
    for (status, tokens, latency_ms) in rows {
        assert_eq!((status, tokens), (429, 0), "refused and charged nothing");
        // Server time, from authentication to the answer (the upload's transfer included).
        // Decoding the hour takes seconds; the bound leaves room for a loaded test machine.
        eprintln!("refused after {latency_ms} ms of server time");
        assert!(latency_ms < 1_000, "refused after {latency_ms} ms");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_over_the_audio_cap_answers_413_naming_it() {
    let t = server(600).await;
    let key = key_with_tpm(&t, 1_000_000).await;
    for state_total in [true, false] {
        let response = transcribe(&t, &key, flac::silence(48_000, 3600 * 48_000, state_total), "hour.flac").await;
        assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE, "length stated: {state_total}");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["error"]["code"], "payload_too_large");
        assert!(body["error"]["message"].as_str().unwrap().contains("600 s"), "{body}");
    }
    let rows = usage_rows(t).await;
    assert!(rows.iter().all(|&(status, tokens, _)| (status, tokens) == (413, 0)), "{rows:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_served_upload_is_charged_its_decoded_length() {
    let t = server(3 * 3600).await;
    let key = key_with_tpm(&t, 1_000).await;
    // 2 s at 44.1 kHz, stated in the header: 20 tokens, measured and decoded alike.
    let response = transcribe(&t, &key, wav(2, 44_100), "tone.wav").await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["x-ratelimit-remaining-tokens"], (1_000 - 20).to_string());
    // 2.5 s whose length only decoding tells: 25 tokens.
    let half = flac::silence(22_050, 22_050 * 5 / 2, false);
    let response = transcribe(&t, &key, half, "silence.flac").await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["x-ratelimit-remaining-tokens"], (1_000 - 20 - 25).to_string());
    let rows = usage_rows(t).await;
    assert_eq!(rows.iter().map(|&(s, tokens, _)| (s, tokens)).collect::<Vec<_>>(), [(200, 20), (200, 25)]);
}

//! Authentication end to end: real server on port 0, real SQLite file, real HTTP client.

use reqwest::{Client, StatusCode};
use serde_json::Value;
use smai_core::{Service, VoiceAccess};
use smai_e2e::TestServer;

const SECURITY_HEADERS: [(&str, &str); 6] = [
    ("x-content-type-options", "nosniff"),
    ("x-frame-options", "DENY"),
    ("x-xss-protection", "1; mode=block"),
    ("strict-transport-security", "max-age=31536000; includeSubDomains"),
    ("referrer-policy", "strict-origin-when-cross-origin"),
    ("permissions-policy", "microphone=(), camera=()"),
];

const BOTH: [Service; 2] = [Service::Tts, Service::Asr];

fn assert_security_headers(response: &reqwest::Response) {
    for (name, value) in SECURITY_HEADERS {
        assert_eq!(response.headers().get(name).and_then(|v| v.to_str().ok()), Some(value), "header {name}");
    }
    assert!(response.headers().get("server").is_none(), "no Server header");
    assert!(response.headers().get("x-request-id").is_some());
}

async fn error_code(response: reqwest::Response) -> (StatusCode, String, Value) {
    let status = response.status();
    let request_id = response.headers()["x-request-id"].to_str().unwrap().to_owned();
    let body: Value = response.json().await.expect("JSON error body");
    assert_eq!(body["error"]["request_id"], request_id.as_str(), "body carries the request id");
    assert!(body["error"]["message"].as_str().is_some_and(|m| !m.is_empty()));
    assert!(body["error"]["type"].as_str().is_some());
    (status, body["error"]["code"].as_str().unwrap().to_owned(), body)
}

#[tokio::test]
async fn missing_and_bad_keys_get_401_with_the_contract_body() {
    let t = TestServer::start().await;
    let client = Client::new();

    let response = client.get(t.url("/v1/models")).send().await.unwrap();
    assert_security_headers(&response);
    assert_eq!(response.headers()["www-authenticate"], "Bearer");
    let (status, code, _) = error_code(response).await;
    assert_eq!((status, code.as_str()), (StatusCode::UNAUTHORIZED, "unauthorized"));

    let (_, real_key) = t.create_key(&BOTH, VoiceAccess::All, None).await;
    // Malformed, right-shaped but unknown, and a one-character typo of a real key.
    let mut typo: Vec<char> = real_key.chars().collect();
    typo[10] = if typo[10] == 'x' { 'y' } else { 'x' };
    let unknown = smai_auth::ApiKey::generate();
    for bad in ["nope".to_owned(), typo.into_iter().collect(), unknown.as_str().to_owned()] {
        let response = client.get(t.url("/v1/models")).header("x-api-key", &bad).send().await.unwrap();
        let (status, code, body) = error_code(response).await;
        assert_eq!((status, code.as_str()), (StatusCode::UNAUTHORIZED, "unauthorized"));
        assert!(!body.to_string().contains(&bad), "error bodies never echo keys");
    }

    // Two different keys in one request.
    let response = client
        .get(t.url("/v1/models"))
        .header("x-api-key", &real_key)
        .bearer_auth(unknown.as_str())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    t.server.shutdown().await.unwrap();
}

#[tokio::test]
async fn valid_keys_work_through_either_header() {
    let t = TestServer::start().await;
    let client = Client::new();
    let (_, key) = t.create_key(&BOTH, VoiceAccess::All, None).await;

    let by_header = client.get(t.url("/v1/models")).header("x-api-key", &key).send().await.unwrap();
    assert_eq!(by_header.status(), StatusCode::OK);
    assert_security_headers(&by_header);
    let body: Value = by_header.json().await.unwrap();
    assert_eq!(body["data"][0]["id"], "tiny.en");

    let by_bearer = client.get(t.url("/v1/voices")).bearer_auth(&key).send().await.unwrap();
    assert_eq!(by_bearer.status(), StatusCode::OK);
    let lower = client.get(t.url("/v1/voices")).header("authorization", format!("bearer {key}")).send().await.unwrap();
    assert_eq!(lower.status(), StatusCode::OK);
    // The same key in both headers is one key.
    let both = client.get(t.url("/v1/voices")).header("x-api-key", &key).bearer_auth(&key).send().await.unwrap();
    assert_eq!(both.status(), StatusCode::OK);
    t.server.shutdown().await.unwrap();
}

#[tokio::test]
async fn open_routes_and_404s_carry_security_headers() {
    let t = TestServer::start().await;
    let client = Client::new();
    for path in ["/healthz", "/readyz"] {
        let response = client.get(t.url(path)).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{path}");
        assert_security_headers(&response);
    }
    let response = client.get(t.url("/no/such/route")).send().await.unwrap();
    assert_security_headers(&response);
    let (status, code, _) = error_code(response).await;
    assert_eq!((status, code.as_str()), (StatusCode::NOT_FOUND, "not_found"));
    t.server.shutdown().await.unwrap();
}

#[tokio::test]
async fn revoked_and_expired_keys_are_refused_once_the_cache_ttl_passes() {
    let t = TestServer::start().await;
    let client = Client::new();
    let (revoked_id, revoked) = t.create_key(&BOTH, VoiceAccess::All, None).await;
    let (_, expiring) = t.create_key(&BOTH, VoiceAccess::All, Some(60_000)).await;
    for key in [&revoked, &expiring] {
        let response = client.get(t.url("/v1/models")).header("x-api-key", key).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
    }
    t.server.state.authenticator.store().revoke(&revoked_id).await.unwrap();
    // The cache bound (5 s by default) is the most a revocation can lag.
    t.clock.advance_ms(5_001);
    let response = client.get(t.url("/v1/models")).header("x-api-key", &revoked).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    let response = client.get(t.url("/v1/models")).header("x-api-key", &expiring).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK, "not yet expired");
    t.clock.advance_ms(60_000);
    let response = client.get(t.url("/v1/models")).header("x-api-key", &expiring).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    t.server.shutdown().await.unwrap();
}

#[tokio::test]
async fn rotation_keeps_the_old_key_for_the_grace_period_only() {
    let t = TestServer::start().await;
    let client = Client::new();
    let (old_id, old_key) = t.create_key(&[Service::Tts], VoiceAccess::Only(["joe".into()].into()), None).await;
    let (new_record, new_key) = t.server.state.authenticator.store().rotate(&old_id, 24 * 3_600_000).await.unwrap();
    assert_eq!(new_record.services, [Service::Tts].into());
    assert_eq!(new_record.voices, VoiceAccess::Only(["joe".into()].into()), "same grants");

    let status = |key: String| {
        let client = client.clone();
        let url = t.url("/v1/voices");
        async move { client.get(url).header("x-api-key", key).send().await.unwrap().status() }
    };
    t.clock.advance_ms(23 * 3_600_000);
    assert_eq!(status(old_key.clone()).await, StatusCode::OK, "old key inside the grace period");
    assert_eq!(status(new_key.as_str().to_owned()).await, StatusCode::OK);
    t.clock.advance_ms(2 * 3_600_000);
    assert_eq!(status(old_key).await, StatusCode::UNAUTHORIZED, "old key after the grace period");
    assert_eq!(status(new_key.as_str().to_owned()).await, StatusCode::OK);
    t.server.shutdown().await.unwrap();
}

#[tokio::test]
async fn scopes_and_voice_allow_lists_give_403() {
    let t = TestServer::start().await;
    let client = Client::new();
    let (_, tts_only) = t.create_key(&[Service::Tts], VoiceAccess::Only(["joe".into()].into()), None).await;

    let form =
        reqwest::multipart::Form::new().part("file", reqwest::multipart::Part::bytes(vec![1u8; 64]).file_name("a.wav"));
    let response =
        client.post(t.url("/v1/audio/transcriptions")).bearer_auth(&tts_only).multipart(form).send().await.unwrap();
    assert_security_headers(&response);
    let (status, code, _) = error_code(response).await;
    assert_eq!((status, code.as_str()), (StatusCode::FORBIDDEN, "forbidden"));

    let speech = |voice: &str| serde_json::json!({"model": "tts-1", "input": "Hello there.", "voice": voice});
    let response =
        client.post(t.url("/v1/audio/speech")).bearer_auth(&tts_only).json(&speech("joe")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["content-type"], "audio/wav");
    assert!(response.bytes().await.unwrap().starts_with(b"RIFF"));

    let response =
        client.post(t.url("/v1/audio/speech")).bearer_auth(&tts_only).json(&speech("joe-slow")).send().await.unwrap();
    let (status, code, _) = error_code(response).await;
    assert_eq!((status, code.as_str()), (StatusCode::FORBIDDEN, "voice_not_allowed"));

    let voices: Value =
        client.get(t.url("/v1/voices")).bearer_auth(&tts_only).send().await.unwrap().json().await.unwrap();
    let ids: Vec<&str> = voices["data"].as_array().unwrap().iter().map(|v| v["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["joe"], "only voices the key may use are listed");
    t.server.shutdown().await.unwrap();
}

#[tokio::test]
async fn no_auth_mode_runs_requests_as_the_anonymous_principal() {
    let t = TestServer::start_with(|c| c.auth = smai_server::AuthMode::Disabled).await;
    let client = Client::new();
    let response = client.get(t.url("/v1/voices")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_security_headers(&response);
    // The anonymous tier's limits apply: the default tier, this being its first request.
    assert_eq!(response.headers()["x-ratelimit-limit-requests"], "60");
    assert_eq!(response.headers()["x-ratelimit-remaining-requests"], "59");
    let voices: Value = response.json().await.unwrap();
    let ids: Vec<&str> = voices["data"].as_array().unwrap().iter().map(|v| v["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["joe", "joe-slow"], "every voice is granted");

    let models: Value = client.get(t.url("/v1/models")).send().await.unwrap().json().await.unwrap();
    let services: Vec<&str> =
        models["data"].as_array().unwrap().iter().map(|m| m["service"].as_str().unwrap()).collect();
    assert!(services.contains(&"asr") && services.contains(&"tts"), "both services are granted: {services:?}");
    let speech = client
        .post(t.url("/v1/audio/speech"))
        .json(&serde_json::json!({"input": "Hello.", "voice": "joe-slow"}))
        .send()
        .await
        .unwrap();
    assert_eq!(speech.status(), StatusCode::OK);
    assert_eq!(speech.headers()["x-ratelimit-remaining-tokens"], (50_000 - 6).to_string(), "tokens charged");
    let form =
        reqwest::multipart::Form::new().part("file", reqwest::multipart::Part::bytes(vec![1u8; 10]).file_name("a.wav"));
    let transcription = client.post(t.url("/v1/audio/transcriptions")).multipart(form).send().await.unwrap();
    assert_eq!(transcription.status(), StatusCode::OK);
    assert_eq!(transcription.headers()["x-ratelimit-remaining-requests"], "56");

    let TestServer { server, db, dir: _dir, .. } = t;
    server.shutdown().await.unwrap();
    let pool = smai_auth::open_database(&db).await.unwrap();
    let rows: Vec<(Option<String>, Option<String>, i64)> =
        sqlx::query_as("SELECT key_id, org, status FROM usage_log ORDER BY id").fetch_all(&pool).await.unwrap();
    assert_eq!(rows.len(), 4);
    for (key_id, org, status) in rows {
        assert_eq!((key_id, org.as_deref(), status), (None, Some("anonymous"), 200), "usage rows carry no key id");
    }
    pool.close().await;
}

#[tokio::test]
async fn usage_rows_are_written_and_the_database_holds_no_plaintext_key() {
    let t = TestServer::start().await;
    let client = Client::new();
    let (key_id, key) = t.create_key(&BOTH, VoiceAccess::All, None).await;
    for _ in 0..3 {
        let response = client.get(t.url("/v1/models")).header("x-api-key", &key).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
    }
    let response = client
        .post(t.url("/v1/audio/speech"))
        .header("x-api-key", &key)
        .json(&serde_json::json!({"input": "Four words of text", "voice": "joe"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let request_id = response.headers()["x-request-id"].to_str().unwrap().to_owned();
    let _ = client.get(t.url("/v1/models")).send().await.unwrap(); // a 401 is logged without a key

    let TestServer { server, db, dir: _dir, .. } = t;
    let pool = server.pool().clone();
    server.shutdown().await.unwrap();

    let pool_reopened = smai_auth::open_database(&db).await.unwrap();
    let rows: Vec<(Option<String>, String, i64, i64, String)> =
        sqlx::query_as("SELECT key_id, route, tokens, status, request_id FROM usage_log ORDER BY id")
            .fetch_all(&pool_reopened)
            .await
            .unwrap();
    assert_eq!(rows.len(), 4, "one row per authenticated request, flushed at shutdown");
    assert_eq!(rows.iter().filter(|r| r.0.as_deref() == Some(key_id.as_str())).count(), 4);
    let speech = rows.iter().find(|r| r.4 == request_id).expect("speech row");
    assert_eq!((speech.1.as_str(), speech.2, speech.3), ("/v1/audio/speech", 18, 200));
    // The 401 is counted against its source address, not logged as a row of its own.
    let refusals: Vec<(String, i64)> =
        sqlx::query_as("SELECT source, attempts FROM auth_refusals").fetch_all(&pool_reopened).await.unwrap();
    assert_eq!(refusals, [("127.0.0.1".to_owned(), 1)]);
    drop(pool);
    pool_reopened.close().await;

    let body = &key["smai_".len()..];
    for entry in std::fs::read_dir(db.parent().unwrap()).unwrap() {
        // SQLite removes the -wal and -shm files as the last connection closes, so a file listed
        // a moment ago may be gone: that one holds nothing any more.
        let bytes = match std::fs::read(entry.unwrap().path()) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => panic!("reading the database folder: {e}"),
        };
        assert!(!contains(&bytes, key.as_bytes()) && !contains(&bytes, body.as_bytes()), "plaintext key on disk");
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

//! `/metrics` through the real server: each kind of request moves the counters it should, the
//! exposition parses, and nothing secret or client-chosen ends up in it.

use reqwest::{Client, StatusCode};
use smai_auth::NewKey;
use smai_core::{Service, Tier, VoiceAccess};
use smai_e2e::prometheus::Exposition;
use smai_e2e::{HeldTranscriber, TestServer, ToneSynthesizer};
use smai_server::config::MetricsMode;
use smai_server::serve::Engines;
use std::sync::Arc;

async fn scrape(client: &Client, t: &TestServer) -> Exposition {
    let response = client.get(t.url("/metrics")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let content_type = response.headers()["content-type"].to_str().unwrap().to_owned();
    assert!(content_type.starts_with("text/plain; version=0.0.4"), "{content_type}");
    Exposition::parse(&response.text().await.unwrap()).unwrap_or_else(|e| panic!("{e}"))
}

/// Durations are recorded when a response body is dropped, just after the client has it, so
/// they are read back until they arrive (bounded).
async fn scrape_until(client: &Client, t: &TestServer, done: impl Fn(&Exposition) -> bool) -> Exposition {
    for _ in 0..200 {
        let exposition = scrape(client, t).await;
        if done(&exposition) {
            return exposition;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    panic!("metrics never reached the expected values")
}

async fn key_with_tier(t: &TestServer, services: &[Service], voices: VoiceAccess, tier: Tier) -> String {
    let new = NewKey {
        org: "acme-metrics".into(),
        name: None,
        services: services.iter().copied().collect(),
        voices,
        tier,
        expires_in_ms: None,
    };
    let (_, key) = t.server.state.authenticator.store().create(&new).await.unwrap();
    key.as_str().to_owned()
}

fn wav_form() -> reqwest::multipart::Form {
    reqwest::multipart::Form::new().part("file", reqwest::multipart::Part::bytes(vec![1u8; 100]).file_name("a.wav"))
}

#[tokio::test]
async fn requests_audio_and_rejections_are_counted() {
    let t = TestServer::start().await;
    let client = Client::new();
    let key =
        key_with_tier(&t, &[Service::Tts, Service::Asr], VoiceAccess::Only(["joe".into()].into()), Tier::default())
            .await;
    let before = scrape(&client, &t).await;
    assert_eq!(before.value("smai_http_requests_total", &[("route", "/v1/models")]), 0.0);

    for _ in 0..3 {
        let r = client.get(t.url("/v1/models")).header("x-api-key", &key).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::OK);
    }
    let r = client.get(t.url("/v1/models")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let r = client.get(t.url("/v1/models")).bearer_auth("smai_not-a-key").send().await.unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let speak = |voice: &str| {
        client
            .post(t.url("/v1/audio/speech"))
            .header("x-api-key", &key)
            .json(&serde_json::json!({"input": "Hello there.", "voice": voice}))
    };
    assert_eq!(speak("joe").send().await.unwrap().status(), StatusCode::OK);
    assert_eq!(speak("joe").send().await.unwrap().status(), StatusCode::OK);
    assert_eq!(speak("joe-slow").send().await.unwrap().status(), StatusCode::FORBIDDEN);
    let r = client
        .post(t.url("/v1/audio/transcriptions"))
        .header("x-api-key", &key)
        .multipart(wav_form())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(client.get(t.url("/no/such/route-42")).send().await.unwrap().status(), StatusCode::NOT_FOUND);

    let m = scrape_until(&client, &t, |m| {
        m.value("smai_http_request_duration_seconds_count", &[("route", "/v1/audio/transcriptions")]) == 1.0
    })
    .await;
    let requests =
        |route: &str, status: &str| m.value("smai_http_requests_total", &[("route", route), ("status", status)]);
    assert_eq!(requests("/v1/models", "200"), 3.0);
    assert_eq!(requests("/v1/models", "401"), 2.0);
    assert_eq!(requests("/v1/audio/speech", "200"), 2.0);
    assert_eq!(requests("/v1/audio/speech", "403"), 1.0);
    assert_eq!(requests("/v1/audio/transcriptions", "200"), 1.0);
    assert_eq!(requests("unmatched", "404"), 1.0, "unknown paths share one label");
    assert_eq!(m.value("smai_http_request_duration_seconds_count", &[("route", "/v1/models")]), 5.0);
    assert_eq!(m.value("smai_auth_rejections_total", &[("status", "401"), ("code", "unauthorized")]), 2.0);
    assert_eq!(m.value("smai_auth_rejections_total", &[("status", "403"), ("code", "voice_not_allowed")]), 1.0);

    // The fakes: 0.1 s of audio per speech request, 1.25 s per upload.
    let tts_seconds = m.value("smai_tts_audio_seconds_total", &[("voice", "joe")]);
    assert!((tts_seconds - 0.2).abs() < 1e-9, "{tts_seconds}");
    assert_eq!(m.value("smai_asr_audio_seconds_total", &[("model", "tiny.en")]), 1.25);
    assert_eq!(m.value("smai_tts_time_to_first_audio_seconds_count", &[("voice", "joe")]), 2.0);
    assert_eq!(m.value("smai_real_time_factor_count", &[("service", "tts")]), 2.0);
    assert_eq!(m.value("smai_real_time_factor_count", &[("service", "asr")]), 1.0);
    assert_eq!(m.value("smai_engine_jobs_in_flight", &[("service", "tts")]), 0.0);

    let text = client.get(t.url("/metrics")).send().await.unwrap().text().await.unwrap();
    assert!(!text.contains(&key) && !text.contains(&key[..12]), "no key or key prefix");
    assert!(!text.contains("acme") && !text.contains("route-42"), "no organisation, no client-chosen path");
    t.server.shutdown().await.unwrap();
}

#[tokio::test]
async fn rejections_are_counted_by_the_limit_that_refused() {
    let t = TestServer::start().await;
    let client = Client::new();
    let tight = Tier { rpm: 2, tpm: 10, ..Tier::default() };
    let key = key_with_tier(&t, &[Service::Tts], VoiceAccess::All, tight).await;
    let long = serde_json::json!({"input": "more than ten characters", "voice": "joe"});
    let r = client.post(t.url("/v1/audio/speech")).header("x-api-key", &key).json(&long).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS, "tokens alone exceed the tpm limit");
    for expected in [StatusCode::OK, StatusCode::OK, StatusCode::TOO_MANY_REQUESTS] {
        let r = client.get(t.url("/v1/voices")).header("x-api-key", &key).send().await.unwrap();
        assert_eq!(r.status(), expected);
    }
    let m = scrape(&client, &t).await;
    assert_eq!(m.value("smai_rate_limit_rejections_total", &[("limit", "tpm")]), 1.0);
    assert_eq!(m.value("smai_rate_limit_rejections_total", &[("limit", "rpm")]), 1.0);
    assert_eq!(m.value("smai_rate_limit_rejections_total", &[("limit", "concurrency")]), 0.0);
    assert_eq!(m.value("smai_http_requests_total", &[("status", "429")]), 2.0);
    assert_eq!(m.value("smai_auth_rejections_total", &[]), 0.0, "a 429 is not an auth rejection");
    t.server.shutdown().await.unwrap();
}

#[tokio::test]
async fn engine_jobs_in_flight_and_concurrency_rejections() {
    let (release, held) = tokio::sync::watch::channel(false);
    let engines = Engines {
        transcriber: Some(Arc::new(HeldTranscriber { release: held })),
        synthesizer: Some(Arc::new(ToneSynthesizer)),
    };
    let t = TestServer::start_full(|_| {}, engines).await;
    let client = Client::new();
    let key = key_with_tier(&t, &[Service::Asr], VoiceAccess::All, Tier { concurrency: 1, ..Tier::default() }).await;
    let upload =
        || client.post(t.url("/v1/audio/transcriptions")).header("x-api-key", &key).multipart(wav_form()).send();
    let first = tokio::spawn(upload());
    let m = scrape_until(&client, &t, |m| m.value("smai_engine_jobs_in_flight", &[("service", "asr")]) == 1.0).await;
    assert_eq!(m.value("smai_asr_audio_seconds_total", &[]), 0.0, "counted once finished");
    assert_eq!(upload().await.unwrap().status(), StatusCode::TOO_MANY_REQUESTS);
    release.send(true).unwrap();
    assert_eq!(first.await.unwrap().unwrap().status(), StatusCode::OK);
    let m = scrape(&client, &t).await;
    assert_eq!(m.value("smai_engine_jobs_in_flight", &[("service", "asr")]), 0.0);
    assert_eq!(m.value("smai_rate_limit_rejections_total", &[("limit", "concurrency")]), 1.0);
    assert_eq!(m.value("smai_asr_audio_seconds_total", &[]), 1.25);
    t.server.shutdown().await.unwrap();
}

#[tokio::test]
async fn metrics_are_open_and_can_be_turned_off() {
    let t = TestServer::start().await;
    let client = Client::new();
    let r = client.get(t.url("/metrics")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK, "no key needed");
    assert_eq!(r.headers()["x-content-type-options"], "nosniff");
    t.server.shutdown().await.unwrap();

    let t = TestServer::start_with(|c| c.metrics = MetricsMode::Off).await;
    let r = client.get(t.url("/metrics")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    t.server.shutdown().await.unwrap();
}

#[test]
fn the_reader_refuses_malformed_expositions() {
    let good = "# TYPE a counter\na_total{x=\"q\\\"uote\",y=\"2\"} 3\n# TYPE h histogram\nh_bucket{le=\"1\"} 1\nh_bucket{le=\"+Inf\"} 2\nh_sum 3\nh_count 2\n";
    let parsed = Exposition::parse(good).unwrap();
    assert_eq!(parsed.value("a_total", &[("x", "q\"uote")]), 3.0);
    assert!(Exposition::parse("b_total 1\n").is_err(), "undeclared family");
    assert!(Exposition::parse("# TYPE a counter\na_total{x=q} 1\n").is_err(), "unquoted label");
    assert!(
        Exposition::parse("# TYPE h histogram\nh_bucket{le=\"1\"} 2\nh_bucket{le=\"+Inf\"} 1\nh_count 1\n").is_err()
    );
    assert!(Exposition::parse("# TYPE h histogram\nh_bucket{le=\"+Inf\"} 2\nh_count 3\n").is_err());
}

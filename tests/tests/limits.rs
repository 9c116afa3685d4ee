//! Rate limits through the real server: headers, 429s with Retry-After, tokens, concurrency
//! and TPD across a restart. Time moves by the injected clock, never by sleeping.

use reqwest::{Client, Response, StatusCode};
use sfv::{BareItem, ListEntry, Parser};
use smai_core::{Service, VoiceAccess};
use smai_e2e::{HeldTranscriber, TestServer};
use smai_server::serve::Engines;
use std::sync::Arc;

fn header(response: &Response, name: &str) -> String {
    response.headers().get(name).unwrap_or_else(|| panic!("missing {name}")).to_str().unwrap().to_owned()
}

/// The `r` (remaining) parameter of one policy in the `RateLimit` structured field.
fn structured_remaining(response: &Response, policy: &str) -> i64 {
    let list = Parser::parse_list(header(response, "ratelimit").as_bytes()).expect("RFC 8941 list");
    Parser::parse_list(header(response, "ratelimit-policy").as_bytes()).expect("RFC 8941 list");
    for entry in list {
        let ListEntry::Item(item) = entry else { panic!("inner list") };
        if item.bare_item == BareItem::String(policy.into()) {
            let Some(BareItem::Integer(r)) = item.params.get("r") else { panic!("no r") };
            return *r;
        }
    }
    panic!("no policy {policy}")
}

async fn models(client: &Client, t: &TestServer, key: &str) -> Response {
    client.get(t.url("/v1/models")).header("x-api-key", key).send().await.unwrap()
}

#[tokio::test]
async fn request_61_of_60_waits_exactly_retry_after() {
    let t = TestServer::start().await;
    let client = Client::new();
    let (_, key) = t.create_key(&[Service::Asr], VoiceAccess::All, None).await;
    for expected in (0..60).rev() {
        let response = models(&client, &t, &key).await;
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(
            header(&response, "x-ratelimit-remaining-requests"),
            expected.to_string(),
            "one request per request"
        );
        assert_eq!(header(&response, "x-ratelimit-limit-requests"), "60");
        assert_eq!(structured_remaining(&response, "rpm"), expected);
    }
    let refused = models(&client, &t, &key).await;
    assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
    let retry_after: i64 = header(&refused, "retry-after").parse().unwrap();
    assert!(retry_after >= 1);
    assert_eq!(header(&refused, "x-ratelimit-remaining-requests"), "0");
    let body: serde_json::Value = refused.json().await.unwrap();
    assert_eq!(body["error"]["code"], "rate_limit_exceeded");

    t.clock.advance_ms(retry_after * 1000 - 1);
    assert_eq!(models(&client, &t, &key).await.status(), StatusCode::TOO_MANY_REQUESTS, "not before Retry-After");
    t.clock.advance_ms(1);
    assert_eq!(models(&client, &t, &key).await.status(), StatusCode::OK, "exactly at Retry-After");
    t.server.shutdown().await.unwrap();
}

#[tokio::test]
async fn tokens_are_charged_per_the_contract_and_refusals_are_free() {
    let t = TestServer::start().await;
    let client = Client::new();
    let (_, key) = t.create_key(&[Service::Tts], VoiceAccess::Only(["joe".into()].into()), None).await;
    let speak = |voice: &str| {
        client
            .post(t.url("/v1/audio/speech"))
            .header("x-api-key", &key)
            .json(&serde_json::json!({"input": "Grüße, world", "voice": voice}))
    };
    let response = speak("joe").send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(header(&response, "x-ratelimit-remaining-tokens"), (50_000 - 12).to_string(), "Unicode scalar values");
    assert_eq!(header(&response, "x-ratelimit-remaining-requests"), "59");

    // 403s (voice, service) and 401s are not charged.
    let refused = speak("joe-slow").send().await.unwrap();
    assert_eq!(refused.status(), StatusCode::FORBIDDEN);
    let form = reqwest::multipart::Form::new().part("file", reqwest::multipart::Part::bytes(vec![0u8; 10]));
    let refused =
        client.post(t.url("/v1/audio/transcriptions")).header("x-api-key", &key).multipart(form).send().await.unwrap();
    assert_eq!(refused.status(), StatusCode::FORBIDDEN);
    let _ = client.get(t.url("/v1/models")).header("x-api-key", "smai_bad").send().await.unwrap();
    let after = speak("joe").send().await.unwrap();
    assert_eq!(header(&after, "x-ratelimit-remaining-requests"), "58");
    assert_eq!(header(&after, "x-ratelimit-remaining-tokens"), (50_000 - 24).to_string());

    // A cost above the limit by itself cannot succeed, and says so.
    let (_, small) = {
        let store = t.server.state.authenticator.store();
        let new = smai_auth::NewKey {
            org: "tiny".into(),
            name: None,
            services: [Service::Tts].into(),
            voices: VoiceAccess::All,
            tier: smai_core::Tier { tpm: 5, ..Default::default() },
            expires_in_ms: None,
        };
        store.create(&new).await.unwrap()
    };
    let response = client
        .post(t.url("/v1/audio/speech"))
        .header("x-api-key", small.as_str())
        .json(&serde_json::json!({"input": "more than five", "voice": "joe"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(!response.headers().contains_key("retry-after"), "a retry cannot help, so none is invited");
    let body: serde_json::Value = response.json().await.unwrap();
    assert!(body["error"]["message"].as_str().unwrap().contains("retrying cannot help"), "{body}");
    t.server.shutdown().await.unwrap();
}

#[tokio::test]
async fn the_sixth_concurrent_request_is_refused_and_slots_come_back() {
    let (release, gate) = tokio::sync::watch::channel(false);
    let engines = Engines { transcriber: Some(Arc::new(HeldTranscriber { release: gate })), synthesizer: None };
    let t = TestServer::start_full(|_| {}, engines).await;
    let client = Client::new();
    let (key_id, key) = t.create_key(&[Service::Asr], VoiceAccess::All, None).await;
    let upload = || {
        let form = reqwest::multipart::Form::new().part("file", reqwest::multipart::Part::bytes(vec![7u8; 100]));
        client.post(t.url("/v1/audio/transcriptions")).header("x-api-key", &key).multipart(form).send()
    };
    let open = |t: &TestServer| t.server.state.limiter.snapshot(&key_id, &smai_core::Tier::default()).concurrency_open;

    let held: Vec<_> = (0..5).map(|_| tokio::spawn(upload())).collect();
    wait_until(|| open(&t) == 5).await;
    let sixth = upload().await.unwrap();
    assert_eq!(sixth.status(), StatusCode::TOO_MANY_REQUESTS);
    let body: serde_json::Value = sixth.json().await.unwrap();
    assert_eq!(body["error"]["code"], "concurrency_limit_exceeded");

    // A client that goes away gives its slot back.
    held[0].abort();
    wait_until(|| open(&t) == 4).await;

    release.send(true).unwrap();
    for task in held.into_iter().skip(1) {
        let response = task.await.unwrap().unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(response.text().await.unwrap(), r#"{"text":"received 100 bytes"}"#);
    }
    wait_until(|| open(&t) == 0).await;
    assert_eq!(upload().await.unwrap().status(), StatusCode::OK);
    t.server.shutdown().await.unwrap();
}

#[tokio::test]
async fn tokens_per_day_survive_a_restart() {
    let t = TestServer::start().await;
    let client = Client::new();
    let (_, key) = t.create_key(&[Service::Tts], VoiceAccess::All, None).await;
    let speak = || {
        client
            .post(t.url("/v1/audio/speech"))
            .header("x-api-key", &key)
            .json(&serde_json::json!({"input": "x".repeat(1000), "voice": "joe"}))
            .send()
    };
    let response = speak().await.unwrap();
    assert_eq!(structured_remaining(&response, "tpd"), 1_000_000 - 1000);
    let TestServer { server, db, dir, clock, .. } = t;
    server.shutdown().await.unwrap();

    let again = TestServer::start_with(|c| c.db = db.clone()).await;
    again.clock.set_ms(clock.now_ms());
    let response = client.get(again.url("/v1/models")).header("x-api-key", &key).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(structured_remaining(&response, "tpd"), 1_000_000 - 1000, "TPD reloaded from SQLite");
    assert_eq!(header(&response, "x-ratelimit-remaining-tokens"), "50000", "TPM starts afresh");
    again.server.shutdown().await.unwrap();
    drop(dir);
}

use smai_core::Clock;

/// Polls a condition that another task makes true; fails after 10 s.
async fn wait_until(mut condition: impl FnMut() -> bool) {
    for _ in 0..1000 {
        if condition() {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    panic!("condition not reached in 10 s");
}

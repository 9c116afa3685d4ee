//! Cross-origin calls: refused by browsers by default (no CORS headers at all), allowed for
//! the configured origins only, preflights answered without a key.

use reqwest::{Client, Method, StatusCode};
use smai_e2e::TestServer;

async fn preflight(client: &Client, t: &TestServer, origin: &str) -> reqwest::Response {
    client
        .request(Method::OPTIONS, t.url("/v1/audio/speech"))
        .header("origin", origin)
        .header("access-control-request-method", "POST")
        .header("access-control-request-headers", "x-api-key, content-type")
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn no_origin_is_allowed_by_default() {
    let t = TestServer::start().await;
    let response = preflight(&Client::new(), &t, "https://app.example").await;
    assert!(response.headers().get("access-control-allow-origin").is_none());
    t.server.shutdown().await.unwrap();
}

#[tokio::test]
async fn configured_origins_are_allowed_and_others_are_not() {
    let t = TestServer::start_with(|c| c.cors_origins = vec!["https://app.example".into()]).await;
    let client = Client::new();
    let allowed = preflight(&client, &t, "https://app.example").await;
    assert_eq!(allowed.status(), StatusCode::OK);
    assert_eq!(allowed.headers()["access-control-allow-origin"], "https://app.example");
    let headers = allowed.headers()["access-control-allow-headers"].to_str().unwrap().to_ascii_lowercase();
    assert!(headers.contains("x-api-key") && headers.contains("content-type"), "{headers}");
    assert!(allowed.headers().get("x-content-type-options").is_some(), "security headers on preflights too");

    let other = preflight(&client, &t, "https://evil.example").await;
    assert!(other.headers().get("access-control-allow-origin").is_none());
    let simple = client.get(t.url("/healthz")).header("origin", "https://app.example").send().await.unwrap();
    assert_eq!(simple.headers()["access-control-allow-origin"], "https://app.example");
    let exposed = simple.headers()["access-control-expose-headers"].to_str().unwrap().to_owned();
    assert!(exposed.contains("x-ratelimit-remaining-requests"), "{exposed}");
    t.server.shutdown().await.unwrap();
}

#[tokio::test]
async fn an_invalid_origin_fails_the_start() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = smai_server::ServeConfig::for_tests(dir.path().join("smai.db"));
    config.cors_origins = vec!["app.example/path".into()];
    let clock = std::sync::Arc::new(smai_core::SystemClock);
    let error = smai_server::start(&config, clock, Default::default()).await.err().expect("refused");
    assert!(error.to_string().contains("invalid CORS origin"), "{error}");
}

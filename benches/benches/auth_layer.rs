//! Cost of the auth layer: one request through the router with a key (auth enabled), the
//! same router in no-auth mode, and a bare axum route serving the same JSON, in one run.
//! The added p50 is the median of "with key" minus the median of "bare route". Refusals
//! likewise: a 401 (no key) and a 429 (a key whose one request a minute is spent) through the
//! router, next to a bare route answering the same status and error body.

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use criterion::{criterion_group, criterion_main, Criterion};
use smai_auth::NewKey;
use smai_e2e::TestServer;
use tower::ServiceExt;

fn auth_layer(c: &mut Criterion) {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let t = runtime.block_on(TestServer::start());
    // Limits high enough that the bench measures admission, not refusals.
    let unlimited = smai_e2e::UNLIMITED;
    let key = runtime.block_on(t.create_unlimited_key(&[smai_core::Service::Asr]));
    let with_auth = smai_server::http::router(t.server.state.clone());
    let mut open_state = t.server.state.clone();
    open_state.service = open_state.service.with_auth_mode(smai_server::AuthMode::Disabled, unlimited);
    let no_auth = smai_server::http::router(open_state);
    let bare = Router::new().route(
        "/v1/models",
        get(|| async { Json(serde_json::json!({"object": "list", "data": [{"id": "tiny.en", "object": "model"}]})) }),
    );

    let spent_key = NewKey {
        org: "bench".into(),
        name: None,
        services: [smai_core::Service::Asr].into(),
        voices: smai_core::VoiceAccess::All,
        tier: smai_core::Tier { rpm: 1, ..smai_core::Tier::default() },
        expires_in_ms: None,
    };
    let (_, spent) = runtime.block_on(t.server.state.authenticator.store().create(&spent_key)).unwrap();
    let spent = spent.as_str().to_owned();
    let error = |status: StatusCode| {
        let body = r#"{"error":{"message":"m","type":"t","param":null,"code":"c","request_id":"req_x"}}"#;
        (status, [(header::CONTENT_TYPE, "application/json")], body).into_response()
    };
    let bare_refusals = Router::new()
        .route("/401", get(move || async move { error(StatusCode::UNAUTHORIZED) }))
        .route("/429", get(move || async move { error(StatusCode::TOO_MANY_REQUESTS) }));

    let mut group = c.benchmark_group("auth_layer");
    let send = |router: Router, path: &'static str, key: Option<String>, expected: StatusCode| async move {
        let mut request = Request::get(path);
        if let Some(key) = key {
            request = request.header("x-api-key", key);
        }
        let response = router.oneshot(request.body(Body::empty()).unwrap()).await.unwrap();
        assert_eq!(response.status(), expected);
    };
    let models = "/v1/models";
    let ok = StatusCode::OK;
    group.bench_function("bare_route", |b| b.to_async(&runtime).iter(|| send(bare.clone(), models, None, ok)));
    group.bench_function("router_no_auth", |b| b.to_async(&runtime).iter(|| send(no_auth.clone(), models, None, ok)));
    group.bench_function("router_with_key", |b| {
        b.to_async(&runtime).iter(|| send(with_auth.clone(), models, Some(key.clone()), ok))
    });
    let (unauthorized, too_many) = (StatusCode::UNAUTHORIZED, StatusCode::TOO_MANY_REQUESTS);
    runtime.block_on(send(with_auth.clone(), models, Some(spent.clone()), ok));
    group.bench_function("bare_401", |b| {
        b.to_async(&runtime).iter(|| send(bare_refusals.clone(), "/401", None, unauthorized))
    });
    group.bench_function("router_401", |b| {
        b.to_async(&runtime).iter(|| send(with_auth.clone(), models, None, unauthorized))
    });
    group.bench_function("bare_429", |b| {
        b.to_async(&runtime).iter(|| send(bare_refusals.clone(), "/429", None, too_many))
    });
    group.bench_function("router_429", |b| {
        b.to_async(&runtime).iter(|| send(with_auth.clone(), models, Some(spent.clone()), too_many))
    });
    group.finish();
    runtime.block_on(t.server.shutdown()).unwrap();
}

criterion_group! {
    name = benches;
    config = Criterion::default().measurement_time(std::time::Duration::from_secs(4)).warm_up_time(std::time::Duration::from_secs(1));
    targets = auth_layer
}
criterion_main!(benches);

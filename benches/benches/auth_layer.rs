//! Cost of the auth layer: one request through the router with a key (auth enabled), the
//! same router in no-auth mode, and a bare axum route serving the same JSON, in one run.
//! The added p50 is the median of "with key" minus the median of "bare route".

use axum::body::Body;
use axum::http::Request;
use axum::routing::get;
use axum::{Json, Router};
use criterion::{criterion_group, criterion_main, Criterion};
use smai_e2e::TestServer;
use tower::ServiceExt;

fn auth_layer(c: &mut Criterion) {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let t = runtime.block_on(TestServer::start());
    let (_, key) = runtime.block_on(t.create_key(&[smai_core::Service::Asr], smai_core::VoiceAccess::All, None));
    let with_auth = smai_server::http::router(t.server.state.clone());
    let mut open_state = t.server.state.clone();
    open_state.auth_mode = smai_server::AuthMode::Disabled;
    let no_auth = smai_server::http::router(open_state);
    let bare = Router::new().route(
        "/v1/models",
        get(|| async { Json(serde_json::json!({"object": "list", "data": [{"id": "tiny.en", "object": "model"}]})) }),
    );

    let mut group = c.benchmark_group("auth_layer");
    let send = |router: Router, key: Option<String>| async move {
        let mut request = Request::get("/v1/models");
        if let Some(key) = key {
            request = request.header("x-api-key", key);
        }
        let response = router.oneshot(request.body(Body::empty()).unwrap()).await.unwrap();
        assert!(response.status().is_success());
    };
    group.bench_function("bare_route", |b| b.to_async(&runtime).iter(|| send(bare.clone(), None)));
    group.bench_function("router_no_auth", |b| b.to_async(&runtime).iter(|| send(no_auth.clone(), None)));
    group.bench_function("router_with_key", |b| b.to_async(&runtime).iter(|| send(with_auth.clone(), Some(key.clone()))));
    group.finish();
    runtime.block_on(t.server.shutdown()).unwrap();
}

criterion_group! {
    name = benches;
    config = Criterion::default().measurement_time(std::time::Duration::from_secs(4)).warm_up_time(std::time::Duration::from_secs(1));
    targets = auth_layer
}
criterion_main!(benches);

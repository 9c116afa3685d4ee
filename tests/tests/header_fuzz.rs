//! Arbitrary auth header values through the real router: always a 401 or a 200, never a 500.

use axum::body::Body;
use axum::http::{HeaderValue, Request, StatusCode};
use proptest::prelude::*;
use smai_e2e::TestServer;
use tower::ServiceExt;

fn header_bytes() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..120),
        "[ -~]{0,80}".prop_map(String::into_bytes),
        "smai_[0-9A-Za-z]{40,52}".prop_map(String::into_bytes),
        "(?i:bearer) {0,3}[ -~]{0,60}".prop_map(String::into_bytes),
        Just(Vec::new()),
        Just(vec![b' '; 8]),
        Just("smai_ключ".as_bytes().to_vec()),
    ]
}

#[test]
fn arbitrary_auth_headers_never_crash_the_server() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let t = runtime.block_on(TestServer::start());
    let (_, valid) = runtime.block_on(t.create_key(&[smai_core::Service::Tts], smai_core::VoiceAccess::All, None));
    let app = smai_server::http::router(t.server.state.clone());
    let config = ProptestConfig { cases: 400, ..ProptestConfig::default() };
    proptest!(config, |(api_key in proptest::option::of(header_bytes()),
                        authorization in proptest::option::of(header_bytes()),
                        duplicate in proptest::option::of(header_bytes()),
                        with_valid in any::<bool>())| {
        let mut request = Request::get("/v1/models").body(Body::empty()).unwrap();
        let headers = request.headers_mut();
        for (name, value) in [("x-api-key", api_key), ("authorization", authorization), ("x-api-key", duplicate)] {
            if let Some(v) = value.and_then(|v| HeaderValue::from_bytes(&v).ok()) {
                headers.append(name, v);
            }
        }
        if with_valid {
            headers.append("x-api-key", HeaderValue::from_str(&valid).unwrap());
        }
        let response = runtime.block_on(app.clone().oneshot(request)).unwrap();
        prop_assert!(
            response.status() == StatusCode::UNAUTHORIZED || response.status() == StatusCode::OK,
            "status {}", response.status()
        );
        prop_assert!(response.headers().contains_key("x-content-type-options"));
    });
    runtime.block_on(t.server.shutdown()).unwrap();
}

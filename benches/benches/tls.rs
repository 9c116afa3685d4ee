//! TLS against plain HTTP in one run, on the same server build and fake engines: a new
//! connection with its first request (TCP connect, TLS 1.3 handshake with an ECDSA P-256
//! certificate, GET /v1/models with a key), and a request on a kept-alive connection. The
//! ratios TLS / plain of the medians are what to report.

use criterion::{criterion_group, criterion_main, Criterion};
use smai_core::Service;
use smai_e2e::tls::{self, Ca, ClientOptions, TlsFiles};
use smai_e2e::TestServer;
use tokio::net::TcpStream;

fn tls_cost(c: &mut Criterion) {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("bench CA");
    let files = TlsFiles::write(dir.path(), &ca.server("bench"));
    let plain = runtime.block_on(TestServer::start());
    let secure = runtime.block_on(TestServer::start_with(|config| {
        config.tls_cert = Some(files.cert.clone());
        config.tls_key = Some(files.key.clone());
    }));
    let key_for = |t: &TestServer| format!("Bearer {}", runtime.block_on(t.create_unlimited_key(&[Service::Asr])));
    let (plain_key, secure_key) = (key_for(&plain), key_for(&secure));
    let plain_auth = [("authorization", plain_key.as_str())];
    let secure_auth = [("authorization", secure_key.as_str())];
    let client = tls::client_config(&ca.pem, &ClientOptions { alpn: &[b"http/1.1"], ..Default::default() });
    let (plain_addr, secure_addr) = (plain.server.addr, secure.server.addr);

    let mut group = c.benchmark_group("tls");
    group.bench_function("first_request/plain", |b| {
        b.to_async(&runtime).iter(|| async {
            let mut stream = TcpStream::connect(plain_addr).await.unwrap();
            stream.set_nodelay(true).unwrap();
            let (status, _) = tls::request(&mut stream, "GET", "/v1/models", &plain_auth).await.unwrap();
            assert_eq!(status, 200);
        })
    });
    group.bench_function("first_request/tls", |b| {
        b.to_async(&runtime).iter(|| async {
            let mut stream = tls::connect(secure_addr, client.clone()).await.unwrap();
            let (status, _) = tls::request(&mut stream, "GET", "/v1/models", &secure_auth).await.unwrap();
            assert_eq!(status, 200);
        })
    });

    let mut kept_plain = runtime.block_on(TcpStream::connect(plain_addr)).unwrap();
    kept_plain.set_nodelay(true).unwrap();
    group.bench_function("steady/plain", |b| {
        b.iter(|| {
            let request = tls::request(&mut kept_plain, "GET", "/v1/models", &plain_auth);
            assert_eq!(runtime.block_on(request).unwrap().0, 200);
        })
    });
    let mut kept_secure = runtime.block_on(tls::connect(secure_addr, client.clone())).unwrap();
    group.bench_function("steady/tls", |b| {
        b.iter(|| {
            let request = tls::request(&mut kept_secure, "GET", "/v1/models", &secure_auth);
            assert_eq!(runtime.block_on(request).unwrap().0, 200);
        })
    });
    group.finish();
}

criterion_group!(benches, tls_cost);
criterion_main!(benches);

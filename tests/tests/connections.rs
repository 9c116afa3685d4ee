//! Connections cannot be hoarded and shutdown finishes: idle sockets and a slowloris client
//! beside real requests, a slow body, malformed heads, and shutdown with a request half-sent.

use smai_core::{Service, VoiceAccess};
use smai_e2e::TestServer;
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The head of an upload that announces more body than it will send.
fn upload_head(key: &str) -> String {
    format!(
        "POST /v1/audio/transcriptions HTTP/1.1\r\nHost: localhost\r\nx-api-key: {key}\r\n\
         Content-Type: multipart/form-data; boundary=XYZ\r\nContent-Length: 100000\r\n\r\n\
         --XYZ\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.wav\"\r\n\r\nRIFF"
    )
}

/// Everything the server sends until it closes, which it must do within `limit`.
async fn read_until_closed(stream: &mut TcpStream, limit: Duration) -> String {
    let mut bytes = Vec::new();
    let read = tokio::time::timeout(limit, stream.read_to_end(&mut bytes)).await;
    assert!(read.is_ok(), "the server neither answered nor closed within {limit:?}");
    String::from_utf8_lossy(&bytes).into_owned()
}

/// A response with `status`, the security headers and the contract's error body.
fn assert_contract_error(response: &str, status: u16) {
    let (head, body) = response.split_once("\r\n\r\n").unwrap_or_else(|| panic!("not a response: {response:?}"));
    let mut lines = head.lines();
    let status_line = lines.next().unwrap_or_default();
    assert!(status_line.starts_with(&format!("HTTP/1.1 {status} ")), "{response}");
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(name, value)| (name.trim().to_ascii_lowercase(), value.trim().to_owned()))
        .collect();
    let header = |name: &str| headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str());
    for name in [
        "x-content-type-options",
        "x-frame-options",
        "x-xss-protection",
        "strict-transport-security",
        "referrer-policy",
        "permissions-policy",
    ] {
        assert!(header(name).is_some(), "{name} missing: {response}");
    }
    assert_eq!(header("content-type"), Some("application/json"), "{response}");
    let json: serde_json::Value = serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body:?}"));
    for field in ["code", "message", "type", "request_id"] {
        assert!(json["error"][field].as_str().is_some_and(|v| !v.is_empty()), "{field} missing: {body}");
    }
    assert_eq!(header("x-request-id"), json["error"]["request_id"].as_str());
}

/// Sets this process's soft open-file limit, if the hard limit allows.
fn set_fd_limit(soft: libc::rlim_t) -> bool {
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit and setrlimit only access the struct they are given.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 || limit.rlim_max < soft {
            return false;
        }
        limit.rlim_cur = soft;
        libc::setrlimit(libc::RLIMIT_NOFILE, &limit) == 0
    }
}

/// Sends a request head a byte a second; returns how long the server kept the connection.
async fn slowloris(addr: SocketAddr) -> Duration {
    let mut stream = TcpStream::connect(addr).await.expect("slowloris connects");
    let started = Instant::now();
    let head = b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nX-Slow: ";
    for byte in head.iter().chain(std::iter::repeat(&b'a')).take(30) {
        if stream.write_all(&[*byte]).await.is_err() {
            return started.elapsed();
        }
        let mut buf = [0u8; 1024];
        match tokio::time::timeout(Duration::from_secs(1), stream.read(&mut buf)).await {
            Err(_) => continue,
            // Answered (408) or closed.
            Ok(_) => return started.elapsed(),
        }
    }
    panic!("the slowloris connection was still open after 30 s");
}

async fn answers_within(request: reqwest::RequestBuilder, limit: Duration) {
    let started = Instant::now();
    let response = tokio::time::timeout(limit, request.send()).await.expect("answered in time").expect("answered");
    assert_eq!(response.status(), 200);
    assert!(started.elapsed() < limit, "took {:?}", started.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn idle_sockets_and_slowloris_do_not_keep_out_real_requests() {
    // A descriptor budget that 2,000 idle sockets and the server's ends of them exhaust when
    // nothing caps connections, as about 20,000 exhaust the usual limit of 20,000.
    if !set_fd_limit(3_000) {
        eprintln!("skipped: the hard open-file limit is below 3,000");
        return;
    }
    let t = TestServer::start_with(|config| config.header_read_timeout = Duration::from_secs(2)).await;
    let (_, key) = t.create_key(&[Service::Asr, Service::Tts], VoiceAccess::All, None).await;
    let mut idle = Vec::with_capacity(2_000);
    for _ in 0..2_000 {
        match tokio::time::timeout(Duration::from_secs(3), TcpStream::connect(t.server.addr)).await {
            Ok(Ok(stream)) => idle.push(stream),
            _ => break,
        }
    }
    assert_eq!(idle.len(), 2_000, "idle sockets opened before connecting failed");
    let slow = tokio::spawn(slowloris(t.server.addr));
    // No pooling: every request needs a new connection past the caps.
    let client = reqwest::Client::builder().pool_max_idle_per_host(0).build().unwrap();
    for _ in 0..3 {
        answers_within(client.get(t.url("/healthz")), Duration::from_secs(1)).await;
        answers_within(client.get(t.url("/v1/models")).header("x-api-key", &key), Duration::from_secs(1)).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let held = slow.await.unwrap();
    assert!(held < Duration::from_secs(4), "the slowloris connection was held {held:?}");
    drop(idle);
}

#[tokio::test]
async fn a_half_sent_body_is_answered_408_after_the_body_timeout() {
    let timeout = Duration::from_millis(500);
    let t = TestServer::start_with(|config| config.body_read_timeout = timeout).await;
    let (_, key) = t.create_key(&[Service::Asr], VoiceAccess::All, None).await;
    let mut stream = TcpStream::connect(t.server.addr).await.unwrap();
    stream.write_all(upload_head(&key).as_bytes()).await.unwrap();
    let started = Instant::now();
    let response = read_until_closed(&mut stream, Duration::from_secs(5)).await;
    let took = started.elapsed();
    assert_contract_error(&response, 408);
    assert!(took >= timeout - Duration::from_millis(50) && took < timeout * 4, "answered after {took:?}");
}

#[tokio::test]
async fn malformed_and_oversized_heads_get_the_contract_error() {
    let t = TestServer::start().await;
    let oversized = format!("GET /healthz HTTP/1.1\r\nHost: localhost\r\nX-Big: {}\r\n\r\n", "a".repeat(100_000));
    let cases = [
        ("this is not http\r\n\r\n".to_owned(), 400),
        ("GET /healthz HTTP/1.1\r\nHost: localhost\r\na header without a colon\r\n\r\n".to_owned(), 400),
        (oversized, 431),
    ];
    for (request, status) in cases {
        let mut stream = TcpStream::connect(t.server.addr).await.unwrap();
        stream.write_all(request.as_bytes()).await.unwrap();
        let response = read_until_closed(&mut stream, Duration::from_secs(5)).await;
        assert_contract_error(&response, status);
    }
}

#[tokio::test]
async fn shutdown_with_half_sent_requests_ends_within_the_grace_period_and_flushes_usage() {
    let grace = Duration::from_secs(1);
    let t = TestServer::start_with(|config| config.shutdown_grace = grace).await;
    let (key_id, key) = t.create_key(&[Service::Asr], VoiceAccess::All, None).await;
    let models = reqwest::Client::new().get(t.url("/v1/models")).header("x-api-key", &key).send().await.unwrap();
    assert_eq!(models.status(), 200);
    // One request with its head sent and its body not (in flight), one with half a head.
    let mut half_body = TcpStream::connect(t.server.addr).await.unwrap();
    half_body.write_all(upload_head(&key).as_bytes()).await.unwrap();
    let mut half_head = TcpStream::connect(t.server.addr).await.unwrap();
    half_head.write_all(b"POST /v1/audio/transcriptions HTTP/1.1\r\nHost: loc").await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;

    let TestServer { server, db, dir: _dir, .. } = t;
    let started = Instant::now();
    let stopped = tokio::time::timeout(grace + Duration::from_secs(4), server.shutdown()).await;
    let took = started.elapsed();
    stopped.expect("shutdown finished").expect("shutdown succeeded");
    assert!(took < grace + Duration::from_millis(1_500), "shutdown took {took:?}");
    for stream in [&mut half_body, &mut half_head] {
        read_until_closed(stream, Duration::from_secs(1)).await;
    }

    let pool = smai_auth::open_database(&db).await.unwrap();
    let rows: Vec<(Option<String>, String, i64)> =
        sqlx::query_as("SELECT key_id, route, status FROM usage_log").fetch_all(&pool).await.unwrap();
    assert!(
        rows.iter().any(|r| r.0.as_deref() == Some(key_id.as_str()) && r.1 == "/v1/models" && r.2 == 200),
        "usage of the finished request flushed: {rows:?}"
    );
    pool.close().await;
}

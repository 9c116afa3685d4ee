//! `smai healthcheck`, the container image's health probe: passes against a ready server over
//! HTTP and over HTTPS (trusting exactly the served certificate), fails on anything else.

use smai_e2e::tls::{Ca, TlsFiles};
use smai_e2e::TestServer;
use smai_server::cli::{run_healthcheck, HealthcheckArgs};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn args(listen: SocketAddr, tls_cert: Option<PathBuf>) -> HealthcheckArgs {
    HealthcheckArgs { listen, tls_cert, timeout: Duration::from_secs(5) }
}

#[tokio::test]
async fn passes_against_a_ready_server_on_http_and_on_its_own_https_certificate() {
    let plain = TestServer::start().await;
    // An unspecified address is asked on loopback, as SMAI_LISTEN=0.0.0.0:PORT in the image.
    let unspecified = SocketAddr::from(([0, 0, 0, 0], plain.server.addr.port()));
    run_healthcheck(args(unspecified, None)).await.expect("ready over HTTP");

    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("healthcheck CA");
    let files = TlsFiles::write(dir.path(), &ca.server("smai healthcheck"));
    let secure = TestServer::start_with(|config| {
        config.tls_cert = Some(files.cert.clone());
        config.tls_key = Some(files.key.clone());
    })
    .await;
    run_healthcheck(args(secure.server.addr, Some(files.cert.clone()))).await.expect("ready over HTTPS");

    // Another certificate than the one served, even from the same CA, is refused.
    std::fs::create_dir(dir.path().join("other")).unwrap();
    let other = TlsFiles::write(&dir.path().join("other"), &ca.server("someone else"));
    let refused = run_healthcheck(args(secure.server.addr, Some(other.cert))).await.unwrap_err();
    assert!(format!("{refused:#}").contains("not the one in --tls-cert"), "{refused:#}");
    // Plain HTTP against the HTTPS port is not ready: the port answers 400.
    let mismatched = run_healthcheck(args(secure.server.addr, None)).await.unwrap_err();
    assert!(format!("{mismatched:#}").contains("400"), "{mismatched:#}");
    plain.server.shutdown().await.unwrap();
    secure.server.shutdown().await.unwrap();
}

#[tokio::test]
async fn fails_on_a_not_ready_answer_and_on_a_closed_port() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let (mut stream, _) = listener.accept().await.unwrap();
        let mut head = [0u8; 1024];
        let _ = stream.read(&mut head).await;
        let _ = stream.write_all(b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n").await;
    });
    let not_ready = run_healthcheck(args(addr, None)).await.unwrap_err();
    assert!(format!("{not_ready:#}").contains("503"), "{not_ready:#}");

    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    assert!(run_healthcheck(args(closed, None)).await.is_err(), "nothing listens on {closed}");
}

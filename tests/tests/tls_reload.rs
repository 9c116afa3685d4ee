//! Certificate reload without restart: by file change and by SIGHUP; open connections keep
//! working on the certificate they started with; invalid replacements keep the old one.

use smai_e2e::prometheus::Exposition;
use smai_e2e::tls::{self, Ca, ClientOptions, Issued, TlsFiles};
use smai_e2e::TestServer;
use std::net::SocketAddr;
use std::time::Duration;

async fn new_connection_leaf(addr: SocketAddr, ca: &Ca) -> Vec<u8> {
    let mut stream =
        tls::connect(addr, tls::client_config(&ca.pem, &ClientOptions::default())).await.expect("handshake");
    assert_eq!(tls::request(&mut stream, "GET", "/healthz", &[]).await.expect("request").0, 200);
    tls::server_leaf(&stream)
}

async fn wait_for_leaf(addr: SocketAddr, ca: &Ca, expected: &Issued) {
    for _ in 0..200 {
        if new_connection_leaf(addr, ca).await == expected.der {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("new connections never got the replacement certificate");
}

async fn reloads(addr: SocketAddr, ca: &Ca, outcome: &str) -> f64 {
    let mut stream =
        tls::connect(addr, tls::client_config(&ca.pem, &ClientOptions::default())).await.expect("handshake");
    let (status, text) = tls::request(&mut stream, "GET", "/metrics", &[]).await.expect("metrics");
    assert_eq!(status, 200);
    Exposition::parse(&text).expect("exposition").value("smai_tls_reloads_total", &[("outcome", outcome)])
}

async fn reloading_server(files: &TlsFiles, interval: Duration) -> TestServer {
    TestServer::start_with(|config| {
        config.tls_cert = Some(files.cert.clone());
        config.tls_key = Some(files.key.clone());
        config.tls_reload_interval = interval;
    })
    .await
}

async fn tls12_refused(addr: SocketAddr, ca: &Ca) -> bool {
    let only_12 = ClientOptions { versions: &[&rustls::version::TLS12], ..Default::default() };
    tls::connect(addr, tls::client_config(&ca.pem, &only_12)).await.is_err()
}

#[tokio::test]
async fn changed_files_serve_new_connections_while_open_ones_continue_and_bad_files_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("test CA");
    let (first, second) = (ca.server("first"), ca.server("second"));
    let files = TlsFiles::write(dir.path(), &first);
    let t = reloading_server(&files, Duration::from_millis(100)).await;
    let addr = t.server.addr;
    let mut kept = tls::connect(addr, tls::client_config(&ca.pem, &ClientOptions::default())).await.unwrap();
    assert_eq!(tls::request(&mut kept, "GET", "/healthz", &[]).await.unwrap().0, 200);
    assert!(tls12_refused(addr, &ca).await);

    files.replace(&second.chain_pem, &second.key_pem);
    wait_for_leaf(addr, &ca, &second).await;
    assert_eq!(tls::request(&mut kept, "GET", "/healthz", &[]).await.expect("the open connection works").0, 200);
    assert_eq!(tls::server_leaf(&kept), first.der, "the open connection keeps its certificate");
    assert!(tls12_refused(addr, &ca).await, "TLS 1.2 is refused after a reload too");
    assert!(reloads(addr, &ca, "applied").await >= 1.0);

    let (third, fourth) = (ca.server("third"), ca.server("fourth"));
    let expired = ca.server_with("expired", rcgen::KeyPair::generate().unwrap(), (-30, -1));
    let bad = [
        ("garbage", "garbage".to_owned(), "garbage".to_owned()),
        ("a key of another certificate", third.chain_pem.clone(), fourth.key_pem.clone()),
        ("expired", expired.chain_pem.clone(), expired.key_pem.clone()),
    ];
    for (name, chain_pem, key_pem) in bad {
        let rejected = reloads(addr, &ca, "rejected").await;
        files.replace(&chain_pem, &key_pem);
        for _ in 0..200 {
            if reloads(addr, &ca, "rejected").await > rejected {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(reloads(addr, &ca, "rejected").await > rejected, "{name}: no reload was attempted");
        assert_eq!(new_connection_leaf(addr, &ca).await, second.der, "{name} replaced the certificate in service");
    }
    assert_eq!(tls::request(&mut kept, "GET", "/healthz", &[]).await.unwrap().0, 200);
}

#[cfg(unix)]
#[tokio::test]
async fn sighup_reloads_the_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("test CA");
    let (first, second) = (ca.server("first"), ca.server("second"));
    let files = TlsFiles::write(dir.path(), &first);
    let t = reloading_server(&files, Duration::ZERO).await;
    files.replace(&second.chain_pem, &second.key_pem);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(new_connection_leaf(t.server.addr, &ca).await, first.der, "reloaded without a signal");
    // SAFETY: kill only sends a signal; the server installed its SIGHUP handler at start.
    assert_eq!(unsafe { libc::kill(libc::getpid(), libc::SIGHUP) }, 0);
    wait_for_leaf(t.server.addr, &ca, &second).await;
}

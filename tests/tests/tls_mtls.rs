//! Mutual TLS: client certificates from the configured CA, required or optional. Under TLS 1.3
//! a refused client sees the failure on its first read after the handshake, so every check
//! sends a request and reads.

use smai_core::{Service, VoiceAccess};
use smai_e2e::tls::{self, Ca, ClientOptions, Issued, TlsFiles};
use smai_e2e::TestServer;
use smai_server::config::ClientAuth;
use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock};

/// Everything the server logs in this test binary, at info and above.
fn logs() -> Arc<Mutex<Vec<u8>>> {
    static LOGS: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    LOGS.get_or_init(|| {
        let buffer = Arc::new(Mutex::new(Vec::new()));
        let sink = buffer.clone();
        tracing_subscriber::fmt()
            .with_env_filter("info")
            .with_ansi(false)
            .with_writer(move || SharedWriter(sink.clone()))
            .init();
        buffer
    })
    .clone()
}

struct SharedWriter(Arc<Mutex<Vec<u8>>>);

impl Write for SharedWriter {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

async fn mtls_server(dir: &std::path::Path, server_ca: &Ca, client_ca: &Ca, mode: ClientAuth) -> TestServer {
    let files = TlsFiles::write(dir, &server_ca.server("smai test"));
    let client_ca_file = dir.join("client-ca.pem");
    std::fs::write(&client_ca_file, &client_ca.pem).unwrap();
    TestServer::start_with(|config| {
        config.tls_cert = Some(files.cert.clone());
        config.tls_key = Some(files.key.clone());
        config.tls_client_ca = Some(client_ca_file.clone());
        config.tls_client_auth = mode;
    })
    .await
}

/// A server whose clients need certificates of `client_ca` (`mode`), an API key, and one
/// client certificate from that CA and one from `other_ca`.
async fn mtls_setup(
    mode: ClientAuth,
    names: (&str, &str),
) -> (tempfile::TempDir, Ca, TestServer, String, Issued, Issued) {
    let dir = tempfile::tempdir().unwrap();
    let (server_ca, client_ca, other_ca) = (Ca::new("server CA"), Ca::new("client CA"), Ca::new("other CA"));
    let t = mtls_server(dir.path(), &server_ca, &client_ca, mode).await;
    let (_, key) = t.create_key(&[Service::Tts], VoiceAccess::All, None).await;
    let (trusted, stranger) = (client_ca.client(names.0), other_ca.client(names.1));
    (dir, server_ca, t, key, trusted, stranger)
}

/// The status of one authorised request, or `None` when the server refused the connection.
async fn status_with(t: &TestServer, server_ca: &Ca, identity: Option<&Issued>, key: &str) -> Option<u16> {
    let options = ClientOptions { identity, ..Default::default() };
    let mut stream = tls::connect(t.server.addr, tls::client_config(&server_ca.pem, &options)).await.ok()?;
    let auth = format!("Bearer {key}");
    tls::request(&mut stream, "GET", "/v1/models", &[("authorization", &auth)]).await.ok().map(|(status, _)| status)
}

#[tokio::test]
async fn required_client_certificates_refuse_strangers_and_log_the_subject_of_each_request() {
    let logs = logs();
    let (_dir, server_ca, t, key, alice, mallory) =
        mtls_setup(ClientAuth::Required, ("alice-required", "mallory")).await;

    assert_eq!(status_with(&t, &server_ca, None, &key).await, None, "no client certificate was accepted");
    assert_eq!(status_with(&t, &server_ca, Some(&mallory), &key).await, None, "another CA's certificate was accepted");
    assert_eq!(status_with(&t, &server_ca, Some(&alice), &key).await, Some(200));

    let text = String::from_utf8_lossy(&logs.lock().unwrap()).into_owned();
    let line =
        text.lines().find(|l| l.contains("CN=alice-required")).unwrap_or_else(|| panic!("no subject in:\n{text}"));
    assert!(line.contains("/v1/models") && line.contains("status=200"), "{line}");
    assert!(!text.contains(&key), "the API key was logged");
    assert!(!text.contains("mallory"), "a refused certificate was logged as a client");
}

#[tokio::test]
async fn optional_client_certificates_admit_clients_without_one_but_not_a_strangers() {
    let logs = logs();
    let (_dir, server_ca, t, key, bob, eve) = mtls_setup(ClientAuth::Optional, ("bob-optional", "eve")).await;

    assert_eq!(status_with(&t, &server_ca, None, &key).await, Some(200));
    assert_eq!(status_with(&t, &server_ca, Some(&eve), &key).await, None, "another CA's certificate was accepted");
    assert_eq!(status_with(&t, &server_ca, Some(&bob), &key).await, Some(200));
    let text = String::from_utf8_lossy(&logs.lock().unwrap()).into_owned();
    assert!(text.contains("CN=bob-optional"), "no subject in:\n{text}");
}

#[tokio::test]
async fn client_certificate_settings_that_do_not_fit_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("CA");
    let files = TlsFiles::write(dir.path(), &ca.server("smai"));
    let mut config = smai_server::ServeConfig::for_tests(dir.path().join("smai.db"));
    config.tls_client_auth = ClientAuth::Required;
    assert!(config.tls_files().unwrap_err().contains("--tls-cert"));
    config.tls_cert = Some(files.cert.clone());
    config.tls_key = Some(files.key.clone());
    assert!(config.tls_files().unwrap_err().contains("--tls-client-ca"));
    config.tls_client_ca = Some(dir.path().join("ca.pem"));
    config.tls_client_auth = ClientAuth::None;
    assert!(config.tls_files().unwrap_err().contains("--tls-client-auth"));
}

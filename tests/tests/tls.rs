//! HTTPS on the REST listener with a private CA: TLS 1.3 only, ALPN, every key type, chains,
//! plain HTTP on the TLS port, `smai tls init`, and real clients (reqwest, openssl, openai).

use rcgen::{PKCS_ECDSA_P384_SHA384, PKCS_ED25519};
use smai_core::{Service, VoiceAccess};
use smai_e2e::tls::{self, Ca, ClientOptions, Issued, TlsFiles};
use smai_e2e::TestServer;
use std::path::Path;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

async fn tls_server(dir: &Path, issued: &Issued) -> TestServer {
    let files = TlsFiles::write(dir, issued);
    TestServer::start_with(|config| {
        config.tls_cert = Some(files.cert.clone());
        config.tls_key = Some(files.key.clone());
    })
    .await
}

fn https_client(ca: &Ca, http1_only: bool) -> reqwest::Client {
    let builder = reqwest::Client::builder()
        .use_rustls_tls()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(ca.pem.as_bytes()).expect("CA"));
    let builder = if http1_only { builder.http1_only() } else { builder };
    builder.build().expect("client")
}

#[tokio::test]
async fn rest_is_served_over_https_with_a_private_ca_on_http2_and_http1() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("test CA");
    let t = tls_server(dir.path(), &ca.server("smai test")).await;
    assert!(t.base.starts_with("https://"), "{}", t.base);
    let (_, key) = t.create_key(&[Service::Tts, Service::Asr], VoiceAccess::All, None).await;
    for (http1_only, version) in [(false, reqwest::Version::HTTP_2), (true, reqwest::Version::HTTP_11)] {
        let client = https_client(&ca, http1_only);
        let models = client.get(t.url("/v1/models")).bearer_auth(&key).send().await.expect("HTTPS request");
        assert_eq!(models.status(), 200);
        assert_eq!(models.version(), version);
        assert_eq!(models.headers()["strict-transport-security"], "max-age=31536000; includeSubDomains");
        let speech = client
            .post(t.url("/v1/audio/speech"))
            .bearer_auth(&key)
            .json(&serde_json::json!({"model": "tts-1", "voice": "joe", "input": "Hello there."}))
            .send()
            .await
            .expect("speech");
        assert_eq!(speech.status(), 200);
        assert_eq!(&speech.bytes().await.unwrap()[..4], b"RIFF");
        let unauthorized = client.get(t.url("/v1/models")).send().await.expect("request");
        assert_eq!(unauthorized.status(), 401);
    }
    // The certificate's expiry is a metric.
    let metrics = https_client(&ca, false).get(t.url("/metrics")).send().await.unwrap().text().await.unwrap();
    let exposition = smai_e2e::prometheus::Exposition::parse(&metrics).expect("valid exposition");
    let expiry = exposition.value("smai_tls_certificate_expiry_timestamp_seconds", &[]) as i64;
    let in_thirty_days = time::OffsetDateTime::now_utc().unix_timestamp() + 30 * 86_400;
    assert!((expiry - in_thirty_days).abs() < 120, "expiry {expiry}, expected about {in_thirty_days}");
}

#[tokio::test]
async fn a_tls12_client_is_refused_at_the_handshake() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("test CA");
    let t = tls_server(dir.path(), &ca.server("smai test")).await;
    let only_12 = ClientOptions { versions: &[&rustls::version::TLS12], ..Default::default() };
    let refused = tls::connect(t.server.addr, tls::client_config(&ca.pem, &only_12)).await;
    let Err(error) = refused.map(|_| ()) else { panic!("a TLS 1.2 handshake succeeded") };
    let error = error.to_string();
    assert!(error.contains("ProtocolVersion") || error.contains("protocol version"), "{error}");
    // The same client allowed TLS 1.3 gets through: the refusal was about the version.
    let both = tls::client_config(&ca.pem, &ClientOptions::default());
    let mut stream = tls::connect(t.server.addr, both).await.expect("TLS 1.3 handshake");
    assert_eq!(stream.get_ref().1.protocol_version(), Some(rustls::ProtocolVersion::TLSv1_3));
    assert_eq!(tls::request(&mut stream, "GET", "/healthz", &[]).await.unwrap().0, 200);

    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, &ca.pem).unwrap();
    let (ok12, out12) = s_client(t.server.addr, &ca_file, "-tls1_2").await;
    let refused = !ok12 && out12.contains("alert protocol version") && out12.contains("Cipher is (NONE)");
    assert!(refused, "openssl -tls1_2 was not refused:\n{out12}");
    let (ok13, out13) = s_client(t.server.addr, &ca_file, "-tls1_3").await;
    assert!(ok13 && out13.contains("TLSv1.3") && out13.contains("Verify return code: 0"), "{out13}");
}

/// `openssl s_client` limited to one version: (exit status success, stdout and stderr).
pub async fn s_client(addr: std::net::SocketAddr, ca_file: &Path, version: &str) -> (bool, String) {
    let out = tokio::process::Command::new("openssl")
        .args(["s_client", "-connect", &addr.to_string(), "-servername", "localhost", version, "-CAfile"])
        .arg(ca_file)
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .expect("openssl is installed (.ci/run installs it)");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.success(), text)
}

#[tokio::test]
async fn alpn_selects_h2_when_offered_and_http1_otherwise() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("test CA");
    let t = tls_server(dir.path(), &ca.server("smai test")).await;
    type Offer<'a> = (&'a [&'a [u8]], Option<&'a [u8]>);
    let offers: [Offer; 3] = [(&[b"h2", b"http/1.1"], Some(b"h2")), (&[b"http/1.1"], Some(b"http/1.1")), (&[], None)];
    for (alpn, selected) in offers {
        let config = tls::client_config(&ca.pem, &ClientOptions { alpn, ..Default::default() });
        let mut stream = tls::connect(t.server.addr, config).await.expect("handshake");
        assert_eq!(stream.get_ref().1.alpn_protocol(), selected, "offered {alpn:?}");
        if selected != Some(b"h2") {
            assert_eq!(tls::request(&mut stream, "GET", "/healthz", &[]).await.unwrap().0, 200);
        }
    }
}

/// Each key type and PEM encoding a user may have, and a chain with an intermediate CA.
#[tokio::test]
async fn rsa_ecdsa_and_ed25519_keys_and_chains_are_served() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("test CA");
    let (rsa_pkcs8, rsa) = tls::rsa_key(dir.path(), false);
    let (rsa_pkcs1, rsa_again) = tls::rsa_key(dir.path(), true);
    let mut cases = vec![
        ("RSA PKCS#8", ca.server_with("rsa", rsa, (-1, 30)), Some(rsa_pkcs8)),
        ("RSA PKCS#1", ca.server_with("rsa1", rsa_again, (-1, 30)), Some(rsa_pkcs1)),
        ("ECDSA P-256", ca.server("p256"), None),
        ("ECDSA P-384", ca.server_with("p384", tls::key_of(&PKCS_ECDSA_P384_SHA384), (-1, 30)), None),
        ("Ed25519", ca.server_with("ed25519", tls::key_of(&PKCS_ED25519), (-1, 30)), None),
    ];
    let sec1 = ca.server("sec1");
    let sec1_pem = to_traditional(dir.path(), &sec1.key_pem);
    assert!(sec1_pem.contains("BEGIN EC PRIVATE KEY"), "{sec1_pem}");
    cases.push(("ECDSA SEC1", sec1, Some(sec1_pem)));
    let intermediate = ca.intermediate("intermediate CA");
    let mut chained = intermediate.server("chained");
    chained.chain_pem.push_str(&intermediate.pem);
    cases.push(("chain", chained, None));
    for (name, mut issued, key_pem) in cases {
        if let Some(pem) = key_pem {
            issued.key_pem = pem;
        }
        let case_dir = tempfile::tempdir().unwrap();
        let t = tls_server(case_dir.path(), &issued).await;
        let config = tls::client_config(&ca.pem, &ClientOptions::default());
        let mut stream = tls::connect(t.server.addr, config).await.unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(tls::server_leaf(&stream), issued.der, "{name}");
        assert_eq!(tls::request(&mut stream, "GET", "/healthz", &[]).await.unwrap().0, 200, "{name}");
    }
    // Without the intermediate in the file the client cannot build the chain.
    let unchained = intermediate.server("unchained");
    let t = tls_server(dir.path(), &unchained).await;
    let config = tls::client_config(&ca.pem, &ClientOptions::default());
    assert!(tls::connect(t.server.addr, config).await.is_err(), "a leaf without its intermediate verified");
}

fn to_traditional(dir: &Path, pkcs8_pem: &str) -> String {
    let path = dir.join("pkcs8.pem");
    std::fs::write(&path, pkcs8_pem).unwrap();
    let out = std::process::Command::new("openssl").args(["pkey", "-traditional", "-in"]).arg(&path).output().unwrap();
    assert!(out.status.success());
    String::from_utf8(out.stdout).unwrap()
}

#[tokio::test]
async fn plain_http_on_the_tls_port_gets_a_readable_400_and_the_connection_closes() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("test CA");
    let t = tls_server(dir.path(), &ca.server("smai test")).await;
    let mut tcp = tokio::net::TcpStream::connect(t.server.addr).await.unwrap();
    tcp.write_all(b"GET /healthz HTTP/1.1\r\nhost: localhost\r\n\r\n").await.unwrap();
    let answer = tokio::time::timeout(Duration::from_secs(5), tls::read_response(&mut tcp)).await;
    let (status, body) = answer.expect("answered without hanging").expect("an HTTP response");
    assert_eq!(status, 400);
    assert!(body.contains("https://"), "{body}");
    let mut rest = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(5), tcp.read_to_end(&mut rest)).await;
    assert!(closed.is_ok(), "the connection was left open");
}

#[tokio::test]
async fn a_server_does_not_start_on_a_bad_certificate_and_says_why() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("test CA");
    let (good, other) = (ca.server("good"), ca.server("other"));
    let expired = ca.server_with("expired", rcgen::KeyPair::generate().unwrap(), (-30, -1));
    let cases = [
        ("mismatched key", good.chain_pem.clone(), other.key_pem.clone(), "does not belong"),
        ("expired", expired.chain_pem.clone(), expired.key_pem.clone(), "expired"),
        ("garbage certificate", "not a certificate".into(), good.key_pem.clone(), "no certificate"),
        ("garbage key", good.chain_pem.clone(), "-----BEGIN NOTHING-----".into(), "no private key"),
    ];
    for (name, chain_pem, key_pem, expected) in cases {
        let files = TlsFiles::write(dir.path(), &Issued { chain_pem, key_pem, der: vec![] });
        let mut config = smai_server::ServeConfig::for_tests(dir.path().join(format!("{}.db", name.replace(' ', "-"))));
        config.tls_cert = Some(files.cert.clone());
        config.tls_key = Some(files.key.clone());
        let clock = std::sync::Arc::new(smai_core::SystemClock);
        let error = smai_server::start(&config, clock, Default::default()).await.err().expect(name).to_string();
        assert!(error.contains(expected), "{name}: {error}");
    }
}

#[tokio::test]
async fn tls_init_writes_a_ca_and_certificates_clients_can_trust() {
    use smai_server::cli::{run_tls, TlsArgs, TlsCommand};
    let dir = tempfile::tempdir().unwrap();
    let tls_dir = dir.path().join("tls");
    let init = |force| TlsCommand::Init {
        dir: tls_dir.clone(),
        hosts: vec!["localhost".into(), "127.0.0.1".into()],
        days: 825,
        force,
    };
    run_tls(TlsArgs { command: init(false) }).expect("tls init");
    let again = run_tls(TlsArgs { command: init(false) }).expect_err("a second init is refused").to_string();
    assert!(again.contains("--force"), "{again}");
    #[cfg(unix)]
    for key in ["ca-key.pem", "server-key.pem"] {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(tls_dir.join(key)).unwrap().permissions().mode();
        assert_eq!(mode & 0o077, 0, "{key} is readable by others: {mode:o}");
    }
    let t = TestServer::start_with(|config| {
        config.tls_cert = Some(tls_dir.join("server.pem"));
        config.tls_key = Some(tls_dir.join("server-key.pem"));
    })
    .await;
    let ca_pem = std::fs::read_to_string(tls_dir.join("ca.pem")).unwrap();
    let client = reqwest::Client::builder()
        .use_rustls_tls()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(ca_pem.as_bytes()).unwrap())
        .build()
        .unwrap();
    let by_name = format!("https://localhost:{}/healthz", t.server.addr.port());
    for url in [by_name, t.url("/healthz")] {
        let response = client.get(&url).send().await.unwrap_or_else(|e| panic!("{url}: {e}"));
        assert_eq!(response.status(), 200, "{url}");
    }

    // The official Python client trusts the CA through httpx.
    let (_, key) = t.create_key(&[Service::Tts], VoiceAccess::All, None).await;
    let script = "import httpx, openai, sys\n\
        client = openai.OpenAI(base_url=sys.argv[1], api_key=sys.argv[2], http_client=httpx.Client(verify=sys.argv[3]))\n\
        print(' '.join(sorted(m.id for m in client.models.list())))\n";
    let python = std::env::var("SMAI_TEST_PYTHON").unwrap_or_else(|_| "python3".into());
    let out = tokio::process::Command::new(python)
        .args(["-c", script, &t.url("/v1"), &key])
        .arg(tls_dir.join("ca.pem"))
        .output()
        .await
        .expect("python runs (scripts/test sets SMAI_TEST_PYTHON)");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("tts-1"), "{stdout}");
}

/// A live socket over TLS 1.3 (`wss://`): ALPN http/1.1 carries the upgrade, first-message
/// auth and a whole synthesis session work as in the clear.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_live_socket_runs_over_wss() {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("test CA");
    let t = tls_server(dir.path(), &ca.server("localhost")).await;
    let (_, key) = t.create_key(&[Service::Tts], VoiceAccess::All, None).await;
    let options = ClientOptions { alpn: &[b"http/1.1"], ..Default::default() };
    let stream = tls::connect(t.server.addr, tls::client_config(&ca.pem, &options)).await.expect("TLS 1.3");
    let url = format!("wss://localhost:{}/v1/realtime/tts", t.server.addr.port());
    let (mut ws, response) = tokio_tungstenite::client_async(url, stream).await.expect("upgrade over TLS");
    assert_eq!(response.status(), 101);
    for message in [
        serde_json::json!({"type": "auth", "api_key": key}),
        serde_json::json!({"type": "speak", "voice": "joe", "text": "Secure words."}),
        serde_json::json!({"type": "stop"}),
    ] {
        ws.send(Message::Text(message.to_string().into())).await.unwrap();
    }
    let (mut audio, mut done) = (0, false);
    while let Some(Ok(message)) = ws.next().await {
        match message {
            Message::Binary(bytes) => audio += bytes.len(),
            Message::Text(text) if text.contains("\"done\"") => done = true,
            Message::Close(frame) => {
                assert_eq!(frame.map(|f| u16::from(f.code)), Some(1000));
                break;
            }
            _ => {}
        }
    }
    assert!(done && audio > 0, "done {done}, {audio} bytes of audio");
    t.server.shutdown().await.unwrap();
}

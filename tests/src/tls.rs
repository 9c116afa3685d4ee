//! Certificates made in the test (a private CA, leaves of every key type, chains) and real TLS
//! clients: rustls with chosen protocol versions, ALPN and client certificates, speaking
//! HTTP/1.1 by hand so a test knows which connection each request used.

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose,
    SanType, SignatureAlgorithm,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{ClientConfig, RootCertStore, SupportedProtocolVersion};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use time::{Duration, OffsetDateTime};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

/// A private certificate authority.
pub struct Ca {
    pub pem: String,
    issuer: Issuer<'static, KeyPair>,
}

/// A certificate with its key, as PEM, and the leaf's DER to compare with what a server sent.
pub struct Issued {
    pub chain_pem: String,
    pub key_pem: String,
    pub der: Vec<u8>,
}

impl Ca {
    pub fn new(name: &str) -> Self {
        let mut params = CertificateParams::default();
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::DigitalSignature];
        valid_for(&mut params, -1, 30);
        let key = KeyPair::generate().expect("key");
        let pem = params.self_signed(&key).expect("CA").pem();
        Self { pem, issuer: Issuer::new(params, key) }
    }

    /// An intermediate CA signed by this one; its leaves need it in their chain.
    pub fn intermediate(&self, name: &str) -> Self {
        let mut params = CertificateParams::default();
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::DigitalSignature];
        valid_for(&mut params, -1, 30);
        let key = KeyPair::generate().expect("key");
        let pem = params.signed_by(&key, &self.issuer).expect("intermediate").pem();
        Self { pem, issuer: Issuer::new(params, key) }
    }

    /// A server certificate for localhost and 127.0.0.1 with an ECDSA P-256 key.
    pub fn server(&self, common_name: &str) -> Issued {
        self.server_with(common_name, KeyPair::generate().expect("key"), (-1, 30))
    }

    /// A server certificate with `key`, valid from `days.0` to `days.1` days from now.
    pub fn server_with(&self, common_name: &str, key: KeyPair, days: (i64, i64)) -> Issued {
        let mut params = leaf(common_name, ExtendedKeyUsagePurpose::ServerAuth, days);
        params.subject_alt_names =
            vec![SanType::DnsName("localhost".try_into().expect("name")), SanType::IpAddress([127, 0, 0, 1].into())];
        self.issue(params, key)
    }

    /// A client certificate for mutual TLS.
    pub fn client(&self, common_name: &str) -> Issued {
        let params = leaf(common_name, ExtendedKeyUsagePurpose::ClientAuth, (-1, 30));
        self.issue(params, KeyPair::generate().expect("key"))
    }

    fn issue(&self, params: CertificateParams, key: KeyPair) -> Issued {
        let cert = params.signed_by(&key, &self.issuer).expect("signed");
        Issued { chain_pem: cert.pem(), key_pem: key.serialize_pem(), der: cert.der().to_vec() }
    }
}

/// A key pair of the given algorithm (ECDSA and Ed25519 are generated; RSA comes from openssl,
/// since ring does not generate RSA keys).
pub fn key_of(algorithm: &'static SignatureAlgorithm) -> KeyPair {
    KeyPair::generate_for(algorithm).expect("key generated")
}

/// A 2048-bit RSA key made by `openssl genpkey`, in the given PEM `format` (`pkcs8` or the
/// traditional PKCS#1 `BEGIN RSA PRIVATE KEY`), and the same key as rcgen signs with.
pub fn rsa_key(dir: &Path, traditional: bool) -> (String, KeyPair) {
    let path = dir.join("rsa.pem");
    let status = std::process::Command::new("openssl")
        .args(["genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out"])
        .arg(&path)
        .stderr(std::process::Stdio::null())
        .status()
        .expect("openssl runs");
    assert!(status.success(), "openssl genpkey failed");
    let pkcs8 = std::fs::read_to_string(&path).expect("key file");
    let key = KeyPair::from_pem_and_sign_algo(&pkcs8, &rcgen::PKCS_RSA_SHA256).expect("RSA key");
    if !traditional {
        return (pkcs8, key);
    }
    let out = std::process::Command::new("openssl")
        .args(["rsa", "-traditional", "-in"])
        .arg(&path)
        .output()
        .expect("openssl runs");
    assert!(out.status.success(), "openssl rsa -traditional failed");
    let pem = String::from_utf8(out.stdout).expect("PEM");
    assert!(pem.contains("BEGIN RSA PRIVATE KEY"), "a PKCS#1 key: {pem}");
    (pem, key)
}

fn leaf(common_name: &str, usage: ExtendedKeyUsagePurpose, days: (i64, i64)) -> CertificateParams {
    let mut params = CertificateParams::default();
    params.distinguished_name.push(DnType::CommonName, common_name);
    params.use_authority_key_identifier_extension = true;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![usage];
    valid_for(&mut params, days.0, days.1);
    params
}

fn valid_for(params: &mut CertificateParams, from_days: i64, to_days: i64) {
    let now = OffsetDateTime::now_utc();
    params.not_before = now + Duration::days(from_days);
    params.not_after = now + Duration::days(to_days);
}

/// The server's TLS files in a folder; written again to change them under a running server.
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl TlsFiles {
    pub fn write(dir: &Path, issued: &Issued) -> Self {
        let files = Self { cert: dir.join("server.pem"), key: dir.join("server-key.pem") };
        files.replace(&issued.chain_pem, &issued.key_pem);
        files
    }

    pub fn replace(&self, chain_pem: &str, key_pem: &str) {
        std::fs::write(&self.cert, chain_pem).expect("cert written");
        std::fs::write(&self.key, key_pem).expect("key written");
    }
}

pub fn roots(ca_pem: &str) -> RootCertStore {
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(cert.expect("CA PEM")).expect("CA added");
    }
    roots
}

/// What a test client offers.
pub struct ClientOptions<'a> {
    pub versions: &'a [&'static SupportedProtocolVersion],
    pub alpn: &'a [&'a [u8]],
    pub identity: Option<&'a Issued>,
}

/// TLS 1.3 and 1.2, as a usual client offers.
static BOTH_VERSIONS: [&SupportedProtocolVersion; 2] = [&rustls::version::TLS13, &rustls::version::TLS12];

impl Default for ClientOptions<'_> {
    fn default() -> Self {
        Self { versions: &BOTH_VERSIONS, alpn: &[], identity: None }
    }
}

pub fn client_config(ca_pem: &str, options: &ClientOptions<'_>) -> Arc<ClientConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(options.versions)
        .expect("versions")
        .with_root_certificates(roots(ca_pem));
    let mut config = match options.identity {
        Some(issued) => {
            let chain = CertificateDer::pem_slice_iter(issued.chain_pem.as_bytes()).map(|c| c.expect("PEM")).collect();
            let key = PrivateKeyDer::from_pem_slice(issued.key_pem.as_bytes()).expect("key PEM");
            builder.with_client_auth_cert(chain, key).expect("client certificate")
        }
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = options.alpn.iter().map(|p| p.to_vec()).collect();
    Arc::new(config)
}

/// A TLS connection to the server at `addr`, verifying its certificate for `localhost`.
pub async fn connect(addr: SocketAddr, config: Arc<ClientConfig>) -> std::io::Result<TlsStream<TcpStream>> {
    let tcp = TcpStream::connect(addr).await?;
    tcp.set_nodelay(true)?;
    let name = ServerName::try_from("localhost").expect("name");
    tokio_rustls::TlsConnector::from(config).connect(name, tcp).await
}

/// The leaf certificate the server presented on `stream`.
pub fn server_leaf(stream: &TlsStream<TcpStream>) -> Vec<u8> {
    stream.get_ref().1.peer_certificates().expect("server certificates")[0].to_vec()
}

/// Sends one HTTP/1.1 request on an open connection and reads its response: (status, body).
pub async fn request<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> std::io::Result<(u16, String)> {
    let mut head = format!("{method} {path} HTTP/1.1\r\nhost: localhost\r\ncontent-length: 0\r\n");
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).await?;
    read_response(stream).await
}

/// Reads one response with a content-length body.
pub async fn read_response<S: AsyncRead + Unpin>(stream: &mut S) -> std::io::Result<(u16, String)> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(at) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break at + 4;
        }
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_lowercase();
    let status = head.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    let length: usize = head
        .lines()
        .find_map(|line| line.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    while buf.len() < head_end + length {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    Ok((status, String::from_utf8_lossy(&buf[head_end..head_end + length]).into_owned()))
}

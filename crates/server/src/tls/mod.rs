//! TLS for every listener that speaks HTTP: rustls with ring as the one crypto provider, TLS 1.3
//! only (a TLS 1.2 client fails its handshake), ALPN `h2` then `http/1.1`, and client
//! certificates from a private CA when asked. The configuration sits behind an `ArcSwap`, so a
//! reload (see `reload`) changes what new connections get while open ones keep theirs.
//!
//! tonic's own TLS settings are not used: they cannot be limited to TLS 1.3 or reloaded. A gRPC
//! listener takes this module's `TlsAcceptor` like the HTTP one does.

pub mod pinned;
pub mod reload;

use arc_swap::ArcSwap;
use clap::ValueEnum;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ServerConnection, WebPkiClientVerifier};
use rustls::sign::{CertifiedKey, SingleCertAndKey};
use rustls::{RootCertStore, ServerConfig};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};
use tokio::io::{AsyncRead, AsyncWrite};

/// ALPN identifiers in the server's order of preference: gRPC needs `h2`; WebSocket upgrades
/// and HTTP/1.1 clients take `http/1.1`.
pub const ALPN_H2: &[u8] = b"h2";
pub const ALPN_HTTP1: &[u8] = b"http/1.1";

/// Whether clients must present a certificate signed by `--tls-client-ca`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ClientAuth {
    /// No client certificates are asked for.
    None,
    /// A client may present one; if it does, it must verify.
    Optional,
    /// Every connection needs a verified client certificate.
    Required,
}

/// The files a TLS configuration is built from; read again on every reload.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub client_ca: Option<PathBuf>,
    pub client_auth: ClientAuth,
}

impl TlsFiles {
    pub fn paths(&self) -> impl Iterator<Item = &Path> {
        [Some(self.cert.as_path()), Some(self.key.as_path()), self.client_ca.as_deref()].into_iter().flatten()
    }
}

/// Why a configuration could not be built; the message names the file and the fault.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct TlsError(String);

fn file_error(path: &Path, what: impl std::fmt::Display) -> TlsError {
    TlsError(format!("{}: {what}", path.display()))
}

/// A configuration ready to serve, with what the logs and metrics say about it.
pub struct Loaded {
    pub config: Arc<ServerConfig>,
    /// The leaf certificate's subject and expiry (seconds since the Unix epoch).
    pub subject: String,
    pub not_after: i64,
}

/// The one crypto provider: ring (its TLS 1.3 suites and key types RSA, ECDSA and Ed25519).
fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Reads and checks the files: a chain with the leaf first, a private key that belongs to it
/// (PKCS#8, PKCS#1 or SEC1 PEM), a leaf valid at `now`, and the client CA when asked for.
pub fn load(files: &TlsFiles, now: SystemTime) -> Result<Loaded, TlsError> {
    let provider = provider();
    let chain = read_chain(&files.cert)?;
    let key_bytes = std::fs::read(&files.key).map_err(|e| file_error(&files.key, e))?;
    let key = PrivateKeyDer::from_pem_slice(&key_bytes)
        .map_err(|_| file_error(&files.key, "no private key in PEM (PKCS#8, PKCS#1 RSA or SEC1 EC)"))?;
    let signing_key = provider
        .key_provider
        .load_private_key(key)
        .map_err(|e| file_error(&files.key, format!("unsupported private key: {e}")))?;
    let certified = CertifiedKey::new(chain, signing_key);
    match certified.keys_match() {
        Ok(()) | Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::Unknown)) => {}
        Err(_) => return Err(file_error(&files.key, format!("this key does not belong to {}", files.cert.display()))),
    }
    let (subject, not_before, not_after) = leaf_validity(&certified.cert[0]).map_err(|e| file_error(&files.cert, e))?;
    let now = unix_seconds(now);
    if now > not_after {
        return Err(file_error(&files.cert, format!("the certificate expired at {}", rfc3339(not_after))));
    }
    if now < not_before {
        return Err(file_error(&files.cert, format!("the certificate is not valid before {}", rfc3339(not_before))));
    }
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| TlsError(format!("TLS 1.3 with ring: {e}")))?;
    let builder = match client_verifier(files, provider)? {
        Some(verifier) => builder.with_client_cert_verifier(verifier),
        None => builder.with_no_client_auth(),
    };
    let mut config = builder.with_cert_resolver(Arc::new(SingleCertAndKey::from(Arc::new(certified))));
    config.alpn_protocols = vec![ALPN_H2.to_vec(), ALPN_HTTP1.to_vec()];
    Ok(Loaded { config: Arc::new(config), subject, not_after })
}

fn read_chain(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let bytes = std::fs::read(path).map_err(|e| file_error(path, e))?;
    let chain = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| file_error(path, format!("not a PEM certificate file: {e}")))?;
    if chain.is_empty() {
        return Err(file_error(path, "no certificate in PEM"));
    }
    Ok(chain)
}

fn client_verifier(
    files: &TlsFiles,
    provider: Arc<CryptoProvider>,
) -> Result<Option<Arc<dyn rustls::server::danger::ClientCertVerifier>>, TlsError> {
    if files.client_auth == ClientAuth::None {
        return Ok(None);
    }
    let path = files.client_ca.as_deref().ok_or_else(|| TlsError("client certificates need --tls-client-ca".into()))?;
    let mut roots = RootCertStore::empty();
    for cert in read_chain(path)? {
        roots.add(cert).map_err(|e| file_error(path, format!("not a usable CA certificate: {e}")))?;
    }
    let builder = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider);
    let builder = if files.client_auth == ClientAuth::Optional { builder.allow_unauthenticated() } else { builder };
    builder.build().map(Some).map_err(|e| file_error(path, e))
}

/// Subject, notBefore and notAfter of a DER certificate.
fn leaf_validity(der: &CertificateDer<'_>) -> Result<(String, i64, i64), String> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).map_err(|e| format!("unreadable certificate: {e}"))?;
    let validity = cert.validity();
    Ok((cert.subject().to_string(), validity.not_before.timestamp(), validity.not_after.timestamp()))
}

/// The subject of the client certificate a connection presented, for the request log.
pub fn client_subject(connection: &ServerConnection) -> Option<String> {
    let der = connection.peer_certificates()?.first()?;
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    Some(cert.subject().to_string())
}

fn unix_seconds(time: SystemTime) -> i64 {
    time.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64)
}

pub(crate) fn rfc3339(unix: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(unix)
        .ok()
        .and_then(|t| t.format(&time::format_description::well_known::Rfc3339).ok())
        .unwrap_or_else(|| unix.to_string())
}

/// What new connections are handshaken with: the configuration in service now.
#[derive(Clone)]
pub struct TlsAcceptor {
    current: Arc<ArcSwap<ServerConfig>>,
}

impl TlsAcceptor {
    pub fn new(config: Arc<ServerConfig>) -> Self {
        Self { current: Arc::new(ArcSwap::new(config)) }
    }

    /// Serves `config` to connections from now on; open ones keep the one they started with.
    pub fn replace(&self, config: Arc<ServerConfig>) {
        self.current.store(config);
    }

    pub fn accept<S: AsyncRead + AsyncWrite + Unpin>(&self, stream: S) -> tokio_rustls::Accept<S> {
        tokio_rustls::TlsAcceptor::from(self.current.load_full()).accept(stream)
    }
}

//! The TLS handshake of one connection, bounded like a request head (it counts against the
//! header-read timeout and the connection stays displaceable until a request is in), and a
//! plain-HTTP client on the TLS port answered in words it can read instead of left hanging.

use super::connection::answer_and_close;
use super::tracker::Connection;
use crate::http::context::ClientCertificate;
use crate::tls::{self, TlsAcceptor, ALPN_H2};
use axum::http::StatusCode;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, BufReader};
use tokio::sync::watch;
use tokio_rustls::server::TlsStream;

/// The first byte of every TLS connection: a handshake record.
const TLS_HANDSHAKE_RECORD: u8 = 0x16;

/// What is read to look at the first byte; larger reads pass straight through to the socket.
const PEEK_BYTES: usize = 16;

const PLAIN_HTTP_MESSAGE: &str = "this port speaks HTTPS only (TLS 1.3): use an https:// URL";

/// A connection after its handshake.
pub(super) struct Secured<S> {
    pub stream: TlsStream<BufReader<S>>,
    /// Whether ALPN chose HTTP/2.
    pub h2: bool,
    pub client: Option<ClientCertificate>,
}

/// Runs the handshake within `timeout`; `None` when it failed, took too long, or the
/// connection was displaced or the server began shutting down meanwhile.
pub(super) async fn handshake<S>(
    stream: S,
    acceptor: &TlsAcceptor,
    connection: &Connection,
    timeout: Duration,
    draining: &mut watch::Receiver<bool>,
    peer: SocketAddr,
) -> Option<Secured<S>>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let shake = async {
        let mut stream = BufReader::with_capacity(PEEK_BYTES, stream);
        let first = stream.fill_buf().await.ok()?.first().copied()?;
        if first != TLS_HANDSHAKE_RECORD {
            tracing::debug!(%peer, "plain HTTP on the TLS port");
            answer_and_close(stream, StatusCode::BAD_REQUEST, PLAIN_HTTP_MESSAGE).await;
            return None;
        }
        match acceptor.accept(stream).await {
            Ok(stream) => Some(stream),
            Err(error) => {
                tracing::debug!(%peer, %error, "TLS handshake failed");
                None
            }
        }
    };
    let stream = tokio::select! {
        done = tokio::time::timeout(timeout, shake) => done.ok().flatten()?,
        () = until_evicted(connection) => return None,
        _ = draining.changed() => return None,
    };
    let (_, session) = stream.get_ref();
    let h2 = session.alpn_protocol() == Some(ALPN_H2);
    let client = tls::client_subject(session).map(|subject| ClientCertificate(subject.into()));
    Some(Secured { stream, h2, client })
}

async fn until_evicted(connection: &Connection) {
    while !connection.is_evicted() {
        connection.changed().await;
    }
}

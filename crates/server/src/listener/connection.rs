//! One connection: its TLS handshake when the listener has TLS, hyper's HTTP/1 or (by ALPN)
//! HTTP/2 state machine, and beside it the watchdog that closes the connection when it is
//! displaced, idle too long, too slow with a head, or shutting down.

use super::body::RequestService;
use super::io::{error_response, WatchedIo};
use super::secure;
use super::tracker::{Connection, Expiry, Registration, Timeouts};
use super::Settings;
use crate::tls::TlsAcceptor;
use axum::http::StatusCode;
use axum::Router;
use hyper::server::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::watch;

/// Request heads larger than this are refused with 431 (hyper's default is about 400 kB).
const MAX_HEAD_BYTES: usize = 64 * 1024;

/// How long a closing connection may take to deliver our last response and read what the
/// client still sends, so the response is not lost to a reset.
const LINGER: Duration = Duration::from_secs(1);
const LINGER_BYTES: usize = 256 * 1024;

/// Requests one HTTP/2 connection may have open at once.
const MAX_H2_STREAMS: u32 = 64;

/// What every connection of a listener shares.
pub(super) struct Shared {
    pub router: Router,
    pub settings: Arc<Settings>,
    pub tls: Option<TlsAcceptor>,
}

pub(super) async fn serve<S>(
    stream: S,
    peer: SocketAddr,
    registration: Registration,
    shared: Arc<Shared>,
    mut draining: watch::Receiver<bool>,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let connection = registration.connection.clone();
    let settings = shared.settings.clone();
    let service = |client| RequestService {
        router: shared.router.clone(),
        connection: connection.clone(),
        peer,
        body_timeout: settings.body_read_timeout,
        client,
    };
    let timeouts = Timeouts { header_read: settings.header_read_timeout, keep_alive: settings.keep_alive_timeout };
    let Some(acceptor) = &shared.tls else {
        return serve_http1(stream, service(None), timeouts, draining).await;
    };
    let timeout = settings.header_read_timeout;
    let Some(secured) = secure::handshake(stream, acceptor, &connection, timeout, &mut draining, peer).await else {
        return;
    };
    let service = service(secured.client);
    if secured.h2 {
        serve_http2(secured.stream, service, timeouts, draining).await
    } else {
        serve_http1(secured.stream, service, timeouts, draining).await
    }
}

/// Completes at the watchdog's deadline; never when there is none.
async fn expiry(deadline: Option<(tokio::time::Instant, Expiry)>) {
    match deadline {
        Some((at, _)) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

async fn serve_http1<S>(stream: S, service: RequestService, timeouts: Timeouts, mut draining: watch::Receiver<bool>)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (peer, connection) = (service.peer, service.connection.clone());
    let mut conn = start(stream, connection.clone(), service);
    let mut shutting_down = false;
    loop {
        let expiry = expiry(connection.deadline(timeouts));
        tokio::select! {
            ended = &mut conn => {
                if let Err(error) = ended {
                    tracing::debug!(%peer, %error, "connection ended with an error");
                }
                return after_end(conn).await;
            }
            () = connection.changed() => {
                if connection.is_evicted() {
                    tracing::debug!(%peer, "idle connection closed to make room under the connection caps");
                    return;
                }
            }
            () = expiry => match connection.expired(timeouts) {
                Some(Expiry::Head { started: true }) => return head_timed_out(conn).await,
                Some(Expiry::Head { started: false } | Expiry::Idle) => return,
                None => {}
            },
            _ = draining.changed(), if !shutting_down => {
                shutting_down = true;
                // Finishes the response in flight, if any, then closes.
                std::pin::Pin::new(&mut conn).graceful_shutdown();
            }
        }
        if shutting_down && connection.is_idle() {
            break;
        }
    }
    // Shutting down with nothing in flight. A half-sent head is not worth waiting for; after a
    // response, hyper closes once its last bytes are flushed.
    if connection.has_served() {
        let _ = tokio::time::timeout(LINGER, &mut conn).await;
    }
}

/// HTTP/2: many requests at once on one connection. The watchdog closes it when displaced, and
/// winds it down (GOAWAY, open streams finish) when it was idle too long or the server drains.
async fn serve_http2<S>(stream: S, service: RequestService, timeouts: Timeouts, mut draining: watch::Receiver<bool>)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (peer, connection) = (service.peer, service.connection.clone());
    let conn = http2::Builder::new(TokioExecutor::new())
        .timer(TokioTimer::new())
        .max_concurrent_streams(MAX_H2_STREAMS)
        .max_header_list_size(MAX_HEAD_BYTES as u32)
        .serve_connection(TokioIo::new(stream), service);
    let mut conn = std::pin::pin!(conn);
    let mut winding_down = false;
    loop {
        let expiry = expiry(connection.deadline(timeouts).filter(|_| !winding_down));
        tokio::select! {
            ended = conn.as_mut() => {
                if let Err(error) = ended {
                    tracing::debug!(%peer, %error, "HTTP/2 connection ended with an error");
                }
                return;
            }
            () = connection.changed() => {
                if connection.is_evicted() {
                    tracing::debug!(%peer, "idle connection closed to make room under the connection caps");
                    return;
                }
            }
            () = expiry => if connection.expired(timeouts).is_some() {
                winding_down = true;
                conn.as_mut().graceful_shutdown();
            },
            _ = draining.changed(), if !winding_down => {
                winding_down = true;
                conn.as_mut().graceful_shutdown();
            }
        }
    }
}

type Conn<S> = http1::UpgradeableConnection<TokioIo<WatchedIo<S>>, RequestService>;

fn start<S>(stream: S, connection: Arc<Connection>, service: RequestService) -> Conn<S>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let io = TokioIo::new(WatchedIo::new(stream, connection));
    // The watchdog keeps time; hyper's own head timer would close kept-alive connections
    // without a word.
    http1::Builder::new()
        .max_header_size(MAX_HEAD_BYTES)
        .header_read_timeout(None)
        .serve_connection(io, service)
        .with_upgrades()
}

/// After hyper is done: if its last word was an error response, let the client read it.
async fn after_end<S: AsyncRead + AsyncWrite + Unpin + Send + 'static>(conn: Conn<S>) {
    if let Some(parts) = conn.into_parts() {
        let io = parts.io.into_inner();
        if io.answered_error {
            linger(io.into_inner()).await;
        }
    }
}

async fn head_timed_out<S: AsyncRead + AsyncWrite + Unpin + Send + 'static>(conn: Conn<S>) {
    if let Some(parts) = conn.into_parts() {
        let message = "the request head was not received in time";
        answer_and_close(parts.io.into_inner().into_inner(), StatusCode::REQUEST_TIMEOUT, message).await;
    }
}

/// Writes one of our error responses and closes, lingering so the client can read it.
pub(super) async fn answer_and_close<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    status: StatusCode,
    message: &str,
) {
    let response = error_response(status, message);
    if tokio::time::timeout(LINGER, stream.write_all(&response)).await.is_ok() {
        linger(stream).await;
    }
}

/// Closes our side, then reads (and drops) what the client still sends for a moment: closing
/// with unread data would reset the connection and could destroy the response in transit.
async fn linger<S: AsyncRead + AsyncWrite + Unpin>(mut stream: S) {
    let drain = async {
        let _ = stream.shutdown().await;
        let mut buf = [0u8; 8192];
        let mut total = 0;
        while let Ok(n @ 1..) = stream.read(&mut buf).await {
            total += n;
            if total >= LINGER_BYTES {
                break;
            }
        }
    };
    let _ = tokio::time::timeout(LINGER, drain).await;
}

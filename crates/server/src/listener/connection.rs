//! One connection: hyper's HTTP/1 state machine, and beside it the watchdog that closes the
//! connection when it is displaced, idle too long, too slow with a head, or shutting down.

use super::body::RequestService;
use super::io::{error_response, WatchedIo};
use super::tracker::{Connection, Expiry, Registration, Timeouts};
use super::Settings;
use axum::http::StatusCode;
use axum::Router;
use hyper::server::conn::http1;
use hyper_util::rt::TokioIo;
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

pub(super) async fn serve<S>(
    stream: S,
    peer: SocketAddr,
    registration: Registration,
    router: Router,
    settings: Arc<Settings>,
    mut draining: watch::Receiver<bool>,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let connection = registration.connection.clone();
    let timeouts = Timeouts { header_read: settings.header_read_timeout, keep_alive: settings.keep_alive_timeout };
    let service =
        RequestService { router, connection: connection.clone(), peer, body_timeout: settings.body_read_timeout };
    let mut conn = start(stream, connection.clone(), service);
    let mut shutting_down = false;
    loop {
        let deadline = connection.deadline(timeouts);
        let expiry = async {
            match deadline {
                Some((at, _)) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
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
async fn answer_and_close<S: AsyncRead + AsyncWrite + Unpin>(mut stream: S, status: StatusCode, message: &str) {
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

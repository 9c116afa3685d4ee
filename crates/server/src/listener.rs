//! The accept loop and per-connection HTTP/1 serving (in place of `axum::serve`), built so that
//! connections cannot be hoarded and shutdown finishes.
//!
//! **Timeouts.** Each connection has a watchdog (see `connection`): a request head must be
//! complete within `header_read_timeout` of the connection's start, or on a kept-alive
//! connection of its first byte; a kept-alive connection with no request is closed after
//! `keep_alive_timeout`; a request body must arrive within `body_read_timeout` of its head.
//! The watchdog, not hyper's own header timer, does the first two: hyper's timer also runs while
//! a kept-alive connection waits, and it closes without a response, where we answer 408.
//!
//! **Caps, and why `/healthz` keeps answering.** Every connection is registered in a
//! [`tracker::Tracker`] with its client address (IPv6 grouped by /64) and whether it has a
//! request in flight. A new connection that would pass the per-address cap closes that
//! address's longest-idle connection to make room; one that would pass the global cap closes
//! the longest-idle connection of all. Idle means no request in flight: kept-alive connections
//! between requests and connections still sending a head (slowloris included). Only when every
//! connection in the way has a request in flight is the new one closed at once, never queued,
//! so the accept backlog keeps draining. So idle sockets, however many, cannot keep out a client
//! that sends a request: its connection displaces one of theirs, and once its head is in, its
//! request is in flight and cannot be displaced. What can hold a slot is a request in flight,
//! and the per-address cap bounds how many of those one client holds (each half-sent body for
//! at most the body timeout), so one client cannot take the global budget. The descriptor
//! table never runs out first: `raise_fd_limit` lifts the soft limit at start, and `serve`
//! warns when the cap does not fit under it.
//!
//! **Errors hyper makes itself** (400 for a malformed head, 431 for an oversized one) are
//! rewritten on their way out into the contract's JSON error with the security headers (see
//! `io`); the 408s are ours and have the same shape.
//!
//! **Shutdown.** When the shutdown future completes the listener closes, idle connections and
//! those with a half-sent head close at once, requests in flight get `shutdown_grace` to
//! finish (their connections then close), and whatever is left is dropped. `serve` returns
//! then, so the caller can flush usage and limits without waiting on any client.

mod body;
mod connection;
mod io;
mod secure;
mod tracker;

use crate::config::ServeConfig;
use crate::tls::TlsAcceptor;
use axum::Router;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::pin;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tracker::Tracker;

/// What `serve` needs from the configuration.
#[derive(Debug, Clone)]
pub struct Settings {
    pub header_read_timeout: Duration,
    pub keep_alive_timeout: Duration,
    pub body_read_timeout: Duration,
    pub max_connections: usize,
    pub max_connections_per_ip: usize,
    pub shutdown_grace: Duration,
}

impl From<&ServeConfig> for Settings {
    fn from(config: &ServeConfig) -> Self {
        Self {
            header_read_timeout: config.header_read_timeout,
            keep_alive_timeout: config.keep_alive_timeout,
            body_read_timeout: config.body_read_timeout,
            max_connections: config.max_connections,
            max_connections_per_ip: config.max_connections_per_ip,
            shutdown_grace: config.shutdown_grace,
        }
    }
}

/// A source of connections. `accept` must be cancel-safe and quick: a TLS handshake runs in the
/// connection's own task (see `secure`), never here.
pub trait Accept: Send + 'static {
    type Stream: AsyncRead + AsyncWrite + Unpin + Send + 'static;
    fn accept(&mut self) -> impl Future<Output = std::io::Result<(Self::Stream, SocketAddr)>> + Send;
}

impl Accept for TcpListener {
    type Stream = TcpStream;

    async fn accept(&mut self) -> std::io::Result<(TcpStream, SocketAddr)> {
        let (stream, peer) = TcpListener::accept(self).await?;
        // Responses are written whole or streamed by the chunk; waiting to coalesce only adds latency.
        let _ = stream.set_nodelay(true);
        Ok((stream, peer))
    }
}

/// Pending connections the kernel holds for `accept`: enough to ride out a burst while the
/// accept loop closes what the caps refuse (the usual 128 drops handshakes, which clients
/// retry only after a second). The kernel caps it at `net.core.somaxconn`.
const BACKLOG: u32 = 4096;

/// Binds a TCP listener with a backlog that absorbs connection bursts.
pub fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() { tokio::net::TcpSocket::new_v4()? } else { tokio::net::TcpSocket::new_v6()? };
    // Lets a restarted server bind while the old one's connections linger in TIME_WAIT.
    #[cfg(unix)]
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(BACKLOG)
}

/// Serves `router` on `listener` until `shutdown` completes, then drains as described above.
/// With `tls`, every connection is TLS 1.3 (HTTP/2 or HTTP/1.1 by ALPN).
pub async fn serve<L: Accept>(
    mut listener: L,
    router: Router,
    settings: Settings,
    tls: Option<TlsAcceptor>,
    shutdown: impl Future<Output = ()> + Send,
) -> std::io::Result<()> {
    warn_if_cap_exceeds_fd_limit(settings.max_connections);
    let tracker = Arc::new(Tracker::new(settings.max_connections, settings.max_connections_per_ip));
    let grace = settings.shutdown_grace;
    let shared = Arc::new(connection::Shared { router, settings: Arc::new(settings), tls });
    let (drain, draining) = watch::channel(false);
    let mut tasks = JoinSet::new();
    let mut shutdown = pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            Some(ended) = tasks.join_next(), if !tasks.is_empty() => {
                if let Err(error) = ended {
                    tracing::error!(%error, "connection task failed");
                }
            }
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    // Over the caps with nothing idle to displace: closed here, not queued.
                    let Some(registration) = tracker.admit(peer.ip()) else {
                        tracing::debug!(%peer, "connection refused: connection caps reached");
                        continue;
                    };
                    let task = connection::serve(stream, peer, registration, shared.clone(), draining.clone());
                    tasks.spawn(task);
                }
                Err(error) => accept_failed(error).await,
            },
        }
    }
    drop(listener);
    finish(tasks, drain, grace).await;
    Ok(())
}

/// Tells every connection to wind down, waits up to `grace`, then drops what is left.
async fn finish(mut tasks: JoinSet<()>, drain: watch::Sender<bool>, grace: Duration) {
    let _ = drain.send(true);
    let all_ended = async { while tasks.join_next().await.is_some() {} };
    if tokio::time::timeout(grace, all_ended).await.is_err() {
        tracing::warn!(connections = tasks.len(), ?grace, "shutdown grace period over; closing the connections left");
        tasks.abort_all();
        while tasks.join_next().await.is_some() {}
    }
}

async fn accept_failed(error: std::io::Error) {
    use std::io::ErrorKind;
    // A client that gave up during the handshake is not our problem; anything else (out of
    // descriptors, out of memory) clears only as connections close, so wait rather than spin.
    if matches!(error.kind(), ErrorKind::ConnectionAborted | ErrorKind::ConnectionReset | ErrorKind::Interrupted) {
        return;
    }
    tracing::warn!(%error, "accept failed");
    tokio::time::sleep(Duration::from_millis(50)).await;
}

/// Descriptors kept for the database, model files and logs beyond the connections.
const FD_RESERVE: u64 = 256;

fn warn_if_cap_exceeds_fd_limit(max_connections: usize) {
    if let Some((soft, _)) = fd_limits() {
        if max_connections as u64 + FD_RESERVE > soft {
            tracing::warn!(
                max_connections,
                fd_limit = soft,
                "the connection cap does not fit under the open-file limit; lower --max-connections or raise the limit"
            );
        }
    }
}

/// Raises the soft limit on open files to the hard limit, so that the connection caps, not the
/// descriptor table, decide when connections are turned away. Logs the outcome.
pub fn raise_fd_limit() {
    let Some((soft, hard)) = fd_limits() else {
        return;
    };
    if soft >= hard {
        tracing::info!(fd_limit = soft, "open-file limit");
        return;
    }
    match set_fd_soft_limit(hard) {
        Ok(()) => tracing::info!(from = soft, to = hard, "open-file limit raised"),
        Err(error) => {
            tracing::warn!(%error, fd_limit = soft, hard_limit = hard, "could not raise the open-file limit")
        }
    }
}

#[cfg(unix)]
#[allow(clippy::unnecessary_cast)] // rlim_t is not u64 on every platform
fn fd_limits() -> Option<(u64, u64)> {
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit only writes the struct it is given.
    let status = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) };
    (status == 0).then_some((limit.rlim_cur as u64, limit.rlim_max as u64))
}

#[cfg(unix)]
fn set_fd_soft_limit(soft: u64) -> std::io::Result<()> {
    let (_, hard) = fd_limits().ok_or_else(std::io::Error::last_os_error)?;
    let limit = libc::rlimit { rlim_cur: soft as libc::rlim_t, rlim_max: hard as libc::rlim_t };
    // SAFETY: setrlimit only reads the struct it is given.
    match unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) } {
        0 => Ok(()),
        _ => Err(std::io::Error::last_os_error()),
    }
}

#[cfg(not(unix))]
fn fd_limits() -> Option<(u64, u64)> {
    None
}

#[cfg(not(unix))]
fn set_fd_soft_limit(_soft: u64) -> std::io::Result<()> {
    Ok(())
}

//! The connection's byte stream as hyper sees it: reads tell the watchdog when a request head
//! begins, and the bare error responses hyper writes on its own are replaced with ours.

use super::tracker::Connection;
use crate::http::context::{error_body, new_request_id, SECURITY_HEADERS};
use axum::http::StatusCode;
use smai_core::ErrorCode;
use std::io::IoSlice;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

pub(super) struct WatchedIo<S> {
    inner: S,
    connection: Arc<Connection>,
    replacing: Option<Replacement>,
    /// Whether an error response of ours went out, after which the connection closes.
    pub(super) answered_error: bool,
}

/// Our response being written in place of `stands_for` bytes of hyper's.
struct Replacement {
    bytes: Vec<u8>,
    written: usize,
    stands_for: usize,
}

impl<S> WatchedIo<S> {
    pub(super) fn new(inner: S, connection: Arc<Connection>) -> Self {
        Self { inner, connection, replacing: None, answered_error: false }
    }

    pub(super) fn into_inner(self) -> S {
        self.inner
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for WatchedIo<S> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        ready!(Pin::new(&mut this.inner).poll_read(cx, buf))?;
        if buf.filled().len() > before {
            this.connection.bytes_read();
        }
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncWrite + Unpin> WatchedIo<S> {
    /// Starts a replacement when `buf` is one of hyper's own error responses.
    fn inspect(&mut self, buf: &[u8]) {
        if self.replacing.is_some() || !self.connection.is_idle() {
            return;
        }
        if let Some(status) = library_error_status(buf) {
            let bytes = error_response(status, library_error_message(status));
            self.replacing = Some(Replacement { bytes, written: 0, stands_for: buf.len() });
            self.answered_error = true;
        }
    }

    fn poll_replacement(&mut self, cx: &mut Context<'_>) -> Poll<std::io::Result<usize>> {
        let replacement = self.replacing.as_mut().expect("a replacement is under way");
        while replacement.written < replacement.bytes.len() {
            let n = ready!(Pin::new(&mut self.inner).poll_write(cx, &replacement.bytes[replacement.written..]))?;
            if n == 0 {
                return Poll::Ready(Err(std::io::ErrorKind::WriteZero.into()));
            }
            replacement.written += n;
        }
        let stands_for = replacement.stands_for;
        self.replacing = None;
        Poll::Ready(Ok(stands_for))
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for WatchedIo<S> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        this.inspect(buf);
        if this.replacing.is_some() {
            return this.poll_replacement(cx);
        }
        Pin::new(&mut this.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        // hyper's own responses are a head alone, so one non-empty slice.
        let mut filled = bufs.iter().filter(|b| !b.is_empty());
        if let (Some(only), None) = (filled.next(), filled.next()) {
            this.inspect(only);
        }
        if this.replacing.is_some() {
            return this.poll_replacement(cx);
        }
        Pin::new(&mut this.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

/// The status of `buf` if it is an error response hyper made itself: a head alone, with no
/// body and none of the headers every response of ours carries. Checked only between
/// requests, when no response of ours can be on the wire.
fn library_error_status(buf: &[u8]) -> Option<StatusCode> {
    let rest = buf.strip_prefix(b"HTTP/1.1 ").or_else(|| buf.strip_prefix(b"HTTP/1.0 "))?;
    let status = StatusCode::from_bytes(rest.get(..3)?).ok()?;
    let head_alone = buf.windows(4).position(|w| w == b"\r\n\r\n") == Some(buf.len() - 4);
    let ours = contains(buf, SECURITY_HEADERS[0].0.as_bytes());
    (head_alone && !ours && (status.is_client_error() || status.is_server_error())).then_some(status)
}

fn library_error_message(status: StatusCode) -> &'static str {
    match status {
        StatusCode::BAD_REQUEST => "the request is not valid HTTP",
        StatusCode::URI_TOO_LONG => "the request target is too long",
        StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE => "the request headers are too large",
        s if s.is_server_error() => "internal server error",
        _ => "the request could not be read",
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w.eq_ignore_ascii_case(needle))
}

/// A complete error response (head and JSON body) for the connection to write itself, after
/// which it closes.
pub(super) fn error_response(status: StatusCode, message: &str) -> Vec<u8> {
    let code = if status.is_server_error() { ErrorCode::Internal } else { ErrorCode::InvalidRequest };
    let request_id = new_request_id();
    let body = error_body(code, message, &request_id);
    let mut head = format!("HTTP/1.1 {} {}\r\n", status.as_str(), status.canonical_reason().unwrap_or(""));
    for (name, value) in SECURITY_HEADERS {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str(&format!(
        "x-request-id: {request_id}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\ndate: {}\r\n\r\n",
        body.len(),
        httpdate::fmt_http_date(std::time::SystemTime::now()),
    ));
    let mut bytes = head.into_bytes();
    bytes.extend_from_slice(body.as_bytes());
    bytes
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recognises_hypers_bare_error_heads_only() {
        let bare = b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-length: 0\r\ndate: Tue, 01 Dec 2026 23:00:00 GMT\r\n\r\n";
        assert_eq!(library_error_status(bare), Some(StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE));
        let ours = b"HTTP/1.1 400 Bad Request\r\nx-content-type-options: nosniff\r\ncontent-length: 0\r\n\r\n";
        assert_eq!(library_error_status(ours), None);
        let with_body = b"HTTP/1.1 400 Bad Request\r\ncontent-length: 2\r\n\r\n{}";
        assert_eq!(library_error_status(with_body), None);
        assert_eq!(library_error_status(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n"), None);
        assert_eq!(library_error_status(b"3\r\nabc\r\n"), None);
    }

    #[test]
    fn our_error_response_has_the_contract_shape() {
        let bytes = error_response(StatusCode::REQUEST_TIMEOUT, "too slow");
        let text = String::from_utf8(bytes).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert!(head.starts_with("HTTP/1.1 408 Request Timeout\r\n"));
        assert!(head.contains("x-frame-options: DENY") && head.contains("connection: close"));
        assert!(head.contains(&format!("content-length: {}", body.len())));
        let json: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(json["error"]["code"], "invalid_request");
        assert_eq!(json["error"]["message"], "too slow");
        assert!(json["error"]["request_id"].as_str().unwrap().starts_with("req_"));
    }
}

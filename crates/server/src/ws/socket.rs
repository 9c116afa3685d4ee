//! What every smai socket shares: authentication from the upgrade headers or a first `auth`
//! message (nothing else is read, and no slot is held, before it succeeds), the error JSON and
//! the close codes of API.md, frame-size and idle limits, and the one usage row per session.

use super::close::close_code;
use crate::http::context::error_body;
use crate::service::{CallContext, Credentials, Operation, Service, SharedCall};
use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket};
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use serde::Deserialize;
use smai_core::{Error, ErrorCode};
use std::time::Duration;

/// How long a socket without header credentials may take to send its `auth` message.
pub const AUTH_DEADLINE: Duration = Duration::from_secs(5);
/// Largest binary message (audio); larger ones close the socket with 1009.
pub const MAX_BINARY_BYTES: usize = 1 << 20;
/// Largest text message (JSON); larger ones close the socket with 1009.
pub const MAX_TEXT_BYTES: usize = 64 << 10;
/// How long a socket the server has closed waits for the client's close frame before dropping
/// the connection.
const CLOSE_GRACE: Duration = Duration::from_secs(2);

/// Where a socket came from and how it may idle.
#[derive(Clone)]
pub struct Upgrade {
    pub service: Service,
    /// The key from the upgrade request's headers, if it carried one.
    pub credentials: Option<Credentials>,
    pub context: CallContext,
    pub idle_timeout: Duration,
}

/// A message from the client, as the session loops see it.
pub enum Incoming {
    Text(String),
    Binary(Vec<u8>),
    /// The client closed, went away, or broke the protocol.
    Gone,
}

/// A socket before authentication; split into its halves once the call is open.
pub struct Socket {
    ws: WebSocket,
    request_id: String,
    idle_timeout: Duration,
}

/// The receiving half of an open session.
pub struct Reader {
    rx: SplitStream<WebSocket>,
    idle_timeout: Duration,
}

/// The sending half of an open session.
pub struct Writer {
    tx: SplitSink<WebSocket, Message>,
    request_id: String,
    /// A send failed: the client has gone.
    gone: bool,
}

#[derive(Deserialize)]
struct AuthMessage {
    #[serde(rename = "type")]
    kind: String,
    api_key: Option<String>,
}

impl Socket {
    /// Authenticates the socket and authorises `operation` (which takes the key's concurrency
    /// slot). On refusal the client gets the error JSON and the close code, and `None` is
    /// returned; nothing of the key's limits is held then.
    pub async fn open(ws: WebSocket, upgrade: Upgrade, operation: Operation) -> Option<(Reader, Writer, SharedCall)> {
        let request_id = upgrade.context.request_id.clone();
        let mut socket = Self { ws, request_id, idle_timeout: upgrade.idle_timeout };
        let credentials = match upgrade.credentials {
            Some(credentials) => credentials,
            None if upgrade.service.auth_mode == crate::config::AuthMode::Disabled => Credentials::missing(),
            None => match socket.auth_message().await {
                Ok(credentials) => credentials,
                Err(error) => return socket.refuse(&error).await,
            },
        };
        let mut call = match upgrade.service.authenticate(&credentials, upgrade.context).await {
            Ok(call) => call,
            Err(error) => return socket.refuse(&error).await,
        };
        if let Err(error) = call.authorize(operation) {
            call.set_status(crate::http::status_of(error.code).as_u16());
            return socket.refuse(&error).await;
        }
        let (tx, rx) = socket.ws.split();
        let reader = Reader { rx, idle_timeout: socket.idle_timeout };
        Some((reader, Writer { tx, request_id: socket.request_id, gone: false }, SharedCall::new(call)))
    }

    async fn refuse<T>(self, error: &Error) -> Option<T> {
        let (tx, mut rx) = self.ws.split();
        Writer { tx, request_id: self.request_id, gone: false }.close_with(error).await;
        await_client_close(&mut rx).await;
        None
    }

    /// The key of the first message, which must be `{"type":"auth","api_key":...}` and come
    /// within [`AUTH_DEADLINE`].
    async fn auth_message(&mut self) -> Result<Credentials, Error> {
        let first = tokio::time::timeout(AUTH_DEADLINE, self.ws.recv()).await.map_err(|_| {
            Error::unauthorized("no auth message within 5 s: send {\"type\":\"auth\",\"api_key\":\"...\"} first")
        })?;
        let expected = || Error::unauthorized("the first message must be {\"type\":\"auth\",\"api_key\":\"...\"}");
        let text = match first {
            Some(Ok(Message::Text(text))) => text,
            _ => return Err(expected()),
        };
        match serde_json::from_str::<AuthMessage>(&text) {
            Ok(AuthMessage { kind, api_key: Some(key) }) if kind == "auth" => Ok(Credentials::api_key(key)),
            _ => Err(expected()),
        }
    }
}

impl Reader {
    /// After the server's close frame: waits for the client's (see [`await_client_close`]).
    pub async fn await_close(&mut self) {
        await_client_close(&mut self.rx).await;
    }

    /// The next data message; pings are answered by the protocol layer. A client silent for
    /// the idle timeout ends the session with an error.
    pub async fn next(&mut self) -> Result<Incoming, Error> {
        loop {
            let received = tokio::time::timeout(self.idle_timeout, self.rx.next()).await.map_err(|_| {
                Error::invalid(format!("no audio or text for {} s: the session is closed", self.idle_timeout.as_secs()))
            })?;
            match received {
                Some(Ok(Message::Text(text))) if text.len() > MAX_TEXT_BYTES => {
                    return Err(Error::new(ErrorCode::PayloadTooLarge, "text messages are limited to 64 KiB"))
                }
                Some(Ok(Message::Text(text))) => return Ok(Incoming::Text(text.to_string())),
                Some(Ok(Message::Binary(bytes))) => return Ok(Incoming::Binary(bytes.to_vec())),
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
                Some(Ok(Message::Close(_))) | None => return Ok(Incoming::Gone),
                Some(Err(e)) if is_too_large(&e) => {
                    return Err(Error::new(ErrorCode::PayloadTooLarge, "binary messages are limited to 1 MiB"))
                }
                Some(Err(_)) => return Ok(Incoming::Gone),
            }
        }
    }
}

impl Writer {
    pub async fn send_json(&mut self, value: serde_json::Value) -> Result<(), Error> {
        self.send(Message::Text(Utf8Bytes::from(value.to_string()))).await
    }

    pub async fn send_binary(&mut self, bytes: Vec<u8>) -> Result<(), Error> {
        self.send(Message::Binary(bytes.into())).await
    }

    async fn send(&mut self, message: Message) -> Result<(), Error> {
        let sent = self.tx.send(message).await;
        self.gone |= sent.is_err();
        sent.map_err(|_| Error::internal("the client went away"))
    }

    /// Whether the client has gone (a send failed): nothing more can reach it.
    pub fn gone(&self) -> bool {
        self.gone
    }

    /// A recoverable error: the error JSON, and the socket stays open.
    pub async fn report(&mut self, error: &Error) -> Result<(), Error> {
        let text = self.error_event(error);
        self.send(Message::Text(text.into())).await
    }

    fn error_event(&self, error: &Error) -> String {
        if error.code == ErrorCode::Internal {
            tracing::error!(detail = error.detail.as_deref().unwrap_or(""), "internal error on a socket");
        }
        let body = error_body(error.code, &error.message, &self.request_id);
        // {"error":{...}} becomes {"type":"error","error":{...}}
        format!("{{\"type\":\"error\",{}", body.strip_prefix('{').unwrap_or("\"error\":{}}"))
    }

    /// A fatal error: the error JSON, then the close with its code.
    pub async fn close_with(&mut self, error: &Error) {
        let text = self.error_event(error);
        let _ = self.tx.send(Message::Text(text.into())).await;
        self.close(close_code(error.code), error.code.as_str()).await;
    }

    /// Closes with `code` (1000 for a normal end).
    pub async fn close(&mut self, code: u16, reason: &str) {
        let frame = CloseFrame { code, reason: Utf8Bytes::from(reason.to_owned()) };
        let _ = self.tx.send(Message::Close(Some(frame))).await;
        let _ = self.tx.close().await;
    }
}

/// Reads (and drops) what the client sent until its close frame, for at most
/// [`CLOSE_GRACE`]. A browser sends its `start` and text right behind its `auth` message;
/// closing the connection with those unread makes the kernel reset it, and a reset can discard
/// the error JSON and close frame before the client has read them.
async fn await_client_close(rx: &mut SplitStream<WebSocket>) {
    let drained = async {
        while let Some(Ok(message)) = rx.next().await {
            if matches!(message, Message::Close(_)) {
                break;
            }
        }
    };
    let _ = tokio::time::timeout(CLOSE_GRACE, drained).await;
}

fn is_too_large(error: &axum::Error) -> bool {
    let text = error.to_string();
    text.contains("too long") || text.contains("too big") || text.contains("Space limit")
}

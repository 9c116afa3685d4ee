//! A real WebSocket client for the live sockets (tokio-tungstenite): connect with or without a
//! header key, send JSON, and read what the server sends, up to its close.

use crate::TestServer;
use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use std::time::Duration;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

pub type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

pub async fn connect(t: &TestServer, path: &str, key: Option<&str>) -> Ws {
    let url = t.url(path).replacen("http://", "ws://", 1);
    let mut request = url.into_client_request().unwrap();
    if let Some(key) = key {
        request.headers_mut().insert("x-api-key", key.parse().unwrap());
    }
    let (ws, response) = tokio_tungstenite::connect_async(request).await.expect("upgrade");
    assert_eq!(response.status(), 101);
    ws
}

pub async fn send(ws: &mut Ws, value: Value) {
    ws.send(Message::Text(value.to_string().into())).await.unwrap();
}

pub async fn send_audio(ws: &mut Ws, bytes: Vec<u8>) {
    ws.send(Message::Binary(bytes.into())).await.unwrap();
}

/// What the server sent next: JSON, audio (its length), or the close code.
#[derive(Debug)]
pub enum Received {
    Json(Value),
    Audio(usize),
    Closed(u16),
}

/// The next message, waiting at most `seconds`.
pub async fn receive_within(ws: &mut Ws, seconds: u64) -> Received {
    loop {
        let message = tokio::time::timeout(Duration::from_secs(seconds), ws.next()).await.expect("the server answers");
        match message {
            Some(Ok(Message::Text(text))) => return Received::Json(serde_json::from_str(&text).unwrap()),
            Some(Ok(Message::Binary(bytes))) => return Received::Audio(bytes.len()),
            Some(Ok(Message::Close(frame))) => return Received::Closed(frame.map_or(1005, |f| u16::from(f.code))),
            Some(Ok(_)) => continue,
            Some(Err(_)) | None => return Received::Closed(1006),
        }
    }
}

pub async fn receive(ws: &mut Ws) -> Received {
    receive_within(ws, 10).await
}

pub async fn json(ws: &mut Ws) -> Value {
    match receive(ws).await {
        Received::Json(v) => v,
        other => panic!("expected JSON, got {other:?}"),
    }
}

/// Reads to the close: its code and the last JSON sent before it.
pub async fn closed(ws: &mut Ws) -> (u16, Value) {
    let mut last = Value::Null;
    loop {
        match receive(ws).await {
            Received::Json(v) => last = v,
            Received::Audio(_) => {}
            Received::Closed(code) => return (code, last),
        }
    }
}

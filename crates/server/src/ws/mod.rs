//! The WebSocket adapter onto the service core: live recognition (`/v1/realtime/asr`) and
//! live synthesis (`/v1/realtime/tts`). A socket authenticates from its upgrade headers or,
//! for browsers that cannot set headers, from a first `auth` message; only then does its call
//! take one concurrency slot of the key, held until the socket closes, with one usage row.

mod asr;
pub mod close;
mod realtime;
mod realtime_config;
mod socket;
mod tts;

pub use socket::{AUTH_DEADLINE, MAX_BINARY_BYTES, MAX_TEXT_BYTES};

use crate::http::context::RequestId;
use crate::service::{CallContext, Credentials, SharedCall};
use crate::state::AppState;
use axum::extract::ws::WebSocketUpgrade;
use axum::extract::{ConnectInfo, OriginalUri, Query, State};
use axum::http::HeaderMap;
use axum::response::Response;
use axum::routing::get;
use axum::{Extension, Router};
use smai_core::Error;
use socket::{Reader, Upgrade, Writer};
use std::net::SocketAddr;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/realtime/asr", get(live_socket))
        .route("/v1/realtime/tts", get(live_socket))
        .route("/v1/realtime", get(realtime_socket))
}

#[derive(serde::Deserialize)]
struct RealtimeQuery {
    intent: Option<String>,
}

/// OpenAI Realtime: the key from `Authorization: Bearer` or, for browsers, the subprotocol
/// `openai-insecure-api-key.<key>`; the `realtime` subprotocol is selected when offered.
async fn realtime_socket(
    State(state): State<AppState>,
    Extension(request_id): Extension<RequestId>,
    connect: Option<Extension<ConnectInfo<SocketAddr>>>,
    Query(query): Query<RealtimeQuery>,
    headers: HeaderMap,
    ws: WebSocketUpgrade,
) -> Response {
    let mut upgrade = upgrade_of(&state, request_id, connect, &headers, "/v1/realtime");
    if upgrade.credentials.is_none() {
        let offered = headers.get_all("sec-websocket-protocol").iter().filter_map(|v| v.to_str().ok());
        let key = offered.flat_map(|v| v.split(',')).find_map(|p| p.trim().strip_prefix("openai-insecure-api-key."));
        upgrade.credentials = Some(key.map_or_else(Credentials::missing, Credentials::api_key));
    }
    let refusal = match query.intent.as_deref() {
        Some("transcription") | None => None,
        Some(other) => Some(Error::invalid(format!(
            "intent {other:?} is not served: only transcription sessions (intent=transcription); \
             conversation sessions are refused"
        ))),
    };
    limits(ws).protocols(["realtime"]).on_upgrade(move |socket| realtime::run(socket, upgrade, refusal))
}

/// The smai sockets: the route says which session runs.
async fn live_socket(
    State(state): State<AppState>,
    Extension(request_id): Extension<RequestId>,
    connect: Option<Extension<ConnectInfo<SocketAddr>>>,
    uri: OriginalUri,
    headers: HeaderMap,
    ws: WebSocketUpgrade,
) -> Response {
    let route = uri.path().to_owned();
    let upgrade = upgrade_of(&state, request_id, connect, &headers, &route);
    limits(ws).on_upgrade(move |socket| async move {
        if route.ends_with("/tts") {
            tts::run(socket, upgrade).await;
        } else {
            asr::run(socket, upgrade).await;
        }
    })
}

fn limits(ws: WebSocketUpgrade) -> WebSocketUpgrade {
    ws.max_message_size(MAX_BINARY_BYTES).max_frame_size(MAX_BINARY_BYTES)
}

/// The key of the upgrade request, if its headers carry one (else the first message must).
fn upgrade_of(
    state: &AppState,
    request_id: RequestId,
    connect: Option<Extension<ConnectInfo<SocketAddr>>>,
    headers: &HeaderMap,
    route: &str,
) -> Upgrade {
    let carries_key = headers.contains_key("x-api-key") || headers.contains_key("authorization");
    let credentials = carries_key
        .then(|| Credentials::from_fields(headers.iter().map(|(name, value)| (name.as_str(), value.as_bytes()))));
    let source = connect.map(|Extension(ConnectInfo(addr))| addr.ip());
    Upgrade {
        service: state.service.clone(),
        credentials,
        context: CallContext { request_id: request_id.0, route: route.to_owned(), source },
        idle_timeout: state.ws_idle_timeout,
    }
}

/// How a session ended, for its call's usage row.
pub(crate) enum Ending {
    /// `stop` was answered with `done`.
    Done,
    /// The client closed or vanished: nothing more to say, the row records 499.
    ClientGone,
}

/// Closes the session: 1000 after `done`, the error's code after its JSON, nothing to a
/// client that has gone. The call (slot and usage row) ends here, before the wait for the
/// client's own close frame.
pub(crate) async fn end_session(
    mut reader: Reader,
    mut writer: Writer,
    call: SharedCall,
    result: Result<Ending, Error>,
) {
    match result {
        Ok(Ending::Done) => {
            call.finish(200);
            writer.close(close::NORMAL, "done").await;
        }
        Ok(Ending::ClientGone) => {}
        // The client vanished while we were answering: its call ends as closed by the client.
        Err(_) if writer.gone() => {}
        Err(error) => {
            let error = call.fail(error);
            writer.close_with(&error).await;
        }
    }
    drop(call);
    reader.await_close().await;
}

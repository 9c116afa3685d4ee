//! Streamed speech: each synthesised sentence is encoded on its own and sent at once, either
//! as raw body bytes (chunked transfer) or as OpenAI's `speech.audio.delta` server-sent events.

use crate::service::speech::{ChunkEncoder, DeliveredSentences};
use axum::body::{Body, Bytes};
use base64::Engine as _;
use futures_util::stream::{self, Stream, StreamExt};
use serde_json::json;
use smai_core::{AudioChunk, AudioStream, Error};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// Encoded sentences, the first already received; ends at the first error (logged), since
/// the status line has gone out and the client sees a short stream.
fn encoded(
    first: AudioChunk,
    rest: AudioStream,
    encoder: ChunkEncoder,
    delivered: DeliveredSentences,
) -> impl Stream<Item = Result<Bytes, Error>> {
    let state = (Some(Ok(first)), rest, encoder, delivered, false);
    stream::unfold(state, |(pending, mut rest, mut encoder, mut delivered, failed)| async move {
        if failed {
            return None;
        }
        let next = match pending {
            Some(chunk) => chunk,
            None => match rest.recv().await {
                Some(next) => next,
                None => {
                    delivered.sent_all();
                    return None;
                }
            },
        };
        let bytes = next.and_then(|chunk| encoder.encode(&chunk)).map(Bytes::from);
        let failed = bytes.is_err();
        if !failed {
            delivered.sent_one();
        }
        Some((bytes, (None, rest, encoder, delivered, failed)))
    })
}

pub fn audio_body(first: AudioChunk, rest: AudioStream, encoder: ChunkEncoder, delivered: DeliveredSentences) -> Body {
    Body::from_stream(encoded(first, rest, encoder, delivered).map(|item| {
        item.map_err(|e| {
            tracing::warn!(detail = e.detail.as_deref().unwrap_or(&e.message), "speech stream ended early");
            std::io::Error::other(e.message)
        })
    }))
}

/// `speech.audio.delta` events with base64 audio, then `speech.audio.done`; an error mid-way
/// becomes a last `error` event instead.
pub fn sse_body(first: AudioChunk, rest: AudioStream, encoder: ChunkEncoder, delivered: DeliveredSentences) -> Body {
    let failed = Arc::new(AtomicBool::new(false));
    let seen_failure = failed.clone();
    let deltas = encoded(first, rest, encoder, delivered).map(move |item| match item {
        Ok(bytes) => {
            json!({"type": "speech.audio.delta", "audio": base64::engine::general_purpose::STANDARD.encode(&bytes)})
        }
        Err(e) => {
            tracing::warn!(detail = e.detail.as_deref().unwrap_or(&e.message), "speech stream ended early");
            seen_failure.store(true, Ordering::Relaxed);
            json!({"type": "error", "error": {"code": e.code.as_str(), "message": e.message}})
        }
    });
    let done =
        stream::once(async move { (!failed.load(Ordering::Relaxed)).then(|| json!({"type": "speech.audio.done"})) })
            .filter_map(futures_util::future::ready);
    Body::from_stream(deltas.chain(done).map(|event| Ok::<_, std::convert::Infallible>(sse_event(&event))))
}

/// One server-sent event carrying JSON on a single `data:` line.
pub fn sse_event(data: &serde_json::Value) -> Bytes {
    Bytes::from(format!("data: {data}\n\n"))
}

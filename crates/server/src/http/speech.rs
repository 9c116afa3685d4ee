//! `POST /v1/audio/speech`: OpenAI-compatible speech synthesis, whole files or streamed as
//! sentences are synthesised (`stream_format: "audio"` chunked bytes, `"sse"` events).

use super::call::{ops, Authorized};
use super::error::ApiResult;
use super::openapi::{AudioBytes, ServerSentEvent};
use super::speech_stream::{audio_body, sse_body};
use crate::service::speech::{self, ChunkEncoder, DeliveredSentences, SpeechInput};
use axum::body::{Body, Bytes};
use axum::http::{header, HeaderMap};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use smai_core::{AudioStream, Error};
use smai_inference::audio::encode::AudioFormat;

/// Model names a client may send; every voice is served by its own model, so they all mean
/// "the voice's model".
pub const SPEECH_MODELS: [&str; 3] = ["tts-1", "tts-1-hd", "gpt-4o-mini-tts"];

/// The body of `POST /v1/audio/speech`. Formats are read as text so that a wrong one is
/// refused with a message naming the field; the document shows their closed sets.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct SpeechRequest {
    /// `tts-1`, `tts-1-hd` or `gpt-4o-mini-tts`: all mean the voice's own model.
    #[serde(default)]
    #[schema(example = "tts-1")]
    pub model: Option<String>,
    /// 1 to 4096 characters.
    #[schema(example = "Hello! This sentence was spoken by a machine.")]
    pub input: String,
    /// A voice id from `GET /v1/voices`.
    #[schema(example = "joe")]
    pub voice: String,
    /// Absent: wav.
    #[serde(default)]
    #[schema(value_type = Option<SpeechFormat>)]
    pub response_format: Option<String>,
    /// 0.25 to 4; 1 is the voice's natural pace.
    #[serde(default)]
    #[schema(minimum = 0.25, maximum = 4.0)]
    pub speed: Option<f32>,
    /// `audio` (chunked bytes) or `sse` (server-sent events); absent: one whole file.
    #[serde(default)]
    #[schema(value_type = Option<StreamFormat>)]
    pub stream_format: Option<String>,
}

/// Audio encodings of the speech route.
#[derive(utoipa::ToSchema)]
#[schema(rename_all = "lowercase")]
#[allow(dead_code)]
pub enum SpeechFormat {
    Wav,
    Pcm,
    Flac,
    Mp3,
    Opus,
}

/// How a speech response is delivered while it is synthesised.
#[derive(utoipa::ToSchema)]
#[schema(rename_all = "lowercase")]
#[allow(dead_code)]
pub enum StreamFormat {
    Audio,
    Sse,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Delivery {
    File,
    Audio,
    Sse,
}

#[utoipa::path(post, path = "/v1/audio/speech", tag = "audio",
    request_body(content = SpeechRequest, content_type = "application/json"),
    responses((status = 200, description = "The synthesised speech in the requested format", content(
        (AudioBytes = "audio/wav"), (AudioBytes = "audio/pcm"), (AudioBytes = "audio/flac"),
        (AudioBytes = "audio/mpeg"), (AudioBytes = "audio/ogg"), (ServerSentEvent = "text/event-stream")))),
    security(("api_key" = []), ("bearer" = [])))]
pub async fn create(call: Authorized<ops::Speech>, headers: HeaderMap, body: Bytes) -> ApiResult<Response> {
    require_json(&headers)?;
    let request: SpeechRequest =
        serde_json::from_slice(&body).map_err(|e| Error::invalid(format!("invalid JSON body: {e}")))?;
    let delivery = validate(&request)?;
    let input = SpeechInput {
        text: &request.input,
        voice: &request.voice,
        speed: request.speed,
        format: request.response_format.as_deref(),
        default_format: AudioFormat::Wav,
        streamed: delivery != Delivery::File,
    };
    let prepared = speech::prepare(call.shared(), input)?;
    match delivery {
        Delivery::File => {
            let (mut stream, format) = prepared.start_whole(call.shared())?;
            let file = speech::collect_file(&mut stream, format).await?;
            Ok(([(header::CONTENT_TYPE, format.content_type())], file.bytes).into_response())
        }
        Delivery::Audio | Delivery::Sse => {
            let format = prepared.format;
            let (stream, delivered) = prepared.start_streamed(call.shared())?;
            Ok(streamed(stream, format, delivery, delivered).await?)
        }
    }
}

/// JSON bodies must say so: a web page can send a form without a CORS preflight, but not
/// `application/json`, so this keeps other origins from driving the route.
fn require_json(headers: &HeaderMap) -> Result<(), Error> {
    let content_type = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    let essence = content_type.split(';').next().unwrap_or("").trim();
    if essence.eq_ignore_ascii_case("application/json") {
        Ok(())
    } else {
        Err(Error::unsupported_media(format!(
            "the body must be JSON sent with Content-Type: application/json (got {:?})",
            content_type.chars().take(64).collect::<String>()
        )))
    }
}

/// Checks the REST-only fields (the service checks the rest); returns the delivery.
fn validate(request: &SpeechRequest) -> Result<Delivery, Error> {
    if let Some(model) = request.model.as_deref().filter(|m| !SPEECH_MODELS.contains(m)) {
        return Err(Error::not_found(format!(
            "model {model:?} does not exist; speech models: {} (the voice selects the synthesis model)",
            SPEECH_MODELS.join(", ")
        )));
    }
    match request.stream_format.as_deref() {
        None => Ok(Delivery::File),
        Some("audio") => Ok(Delivery::Audio),
        Some("sse") => Ok(Delivery::Sse),
        Some(other) => Err(Error::invalid(format!("stream_format {other:?} is not supported; use audio or sse"))),
    }
}

/// Answers as soon as the first sentence is ready, so that errors before any audio are still
/// plain HTTP errors; later sentences follow on the body.
async fn streamed(
    mut stream: AudioStream,
    format: AudioFormat,
    delivery: Delivery,
    delivered: DeliveredSentences,
) -> Result<Response, Error> {
    let first = stream.recv().await.ok_or_else(|| Error::internal("synthesis produced no audio"))??;
    let encoder = ChunkEncoder::new(format).ok_or_else(|| Error::internal("format cannot be streamed"))?;
    let (content_type, body): (&str, Body) = match delivery {
        Delivery::Sse => ("text/event-stream", sse_body(first, stream, encoder, delivered)),
        _ => (format.content_type(), audio_body(first, stream, encoder, delivered)),
    };
    let mut response = Response::new(body);
    response.headers_mut().insert(header::CONTENT_TYPE, header::HeaderValue::from_static(content_type));
    response.headers_mut().insert(header::CACHE_CONTROL, header::HeaderValue::from_static("no-cache"));
    Ok(response)
}

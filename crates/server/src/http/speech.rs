//! `POST /v1/audio/speech`: OpenAI-compatible speech synthesis, whole files or streamed as
//! sentences are synthesised (`stream_format: "audio"` chunked bytes, `"sse"` events).

use super::call::{ops, Authorized};
use super::error::ApiResult;
use super::openapi::{AudioBytes, ServerSentEvent};
use super::speech_stream::{audio_body, sse_body, ChunkEncoder, DeliveredSentences, SentenceCosts};
use axum::body::{Body, Bytes};
use axum::http::{header, HeaderMap};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use smai_auth::limits::tts_tokens;
use smai_core::{AudioStream, Error, SpeechOptions};
use smai_inference::audio::encode::{encode, AudioFormat};

pub const MAX_INPUT_CHARS: usize = 4096;
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
    let (format, delivery, speed) = validate(&request)?;
    let text = request.input.trim().to_owned();
    let chars = tts_tokens(&request.input);
    let synthesizer = call.synthesizer()?;
    if !synthesizer.voices().iter().any(|v| v.id == request.voice) {
        let principal = call.principal()?;
        let usable: Vec<String> =
            synthesizer.voices().into_iter().map(|v| v.id).filter(|id| principal.voices.allows(id)).collect();
        return Err(
            Error::not_found(format!("unknown voice {:?}; voices: {}", request.voice, usable.join(", "))).into()
        );
    }
    call.authorize_voice(&request.voice)?;

    // Queued before charging: a full engine queue answers 503 without costing tokens. A
    // refused admission drops the stream, and the engine stops work on it.
    let costs = SentenceCosts::of(&text);
    let mut stream = synthesizer.synthesize(text, SpeechOptions { voice: request.voice, speed })?;
    match delivery {
        Delivery::File => {
            call.admit(chars)?;
            Ok(whole_file(&mut stream, format).await?)
        }
        Delivery::Audio | Delivery::Sse => {
            let delivered = costs.charged_on(call.admit_reserved(chars)?);
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

/// Checks the request fields; returns the format, the delivery and the speed.
fn validate(request: &SpeechRequest) -> Result<(AudioFormat, Delivery, f32), Error> {
    if let Some(model) = request.model.as_deref().filter(|m| !SPEECH_MODELS.contains(m)) {
        return Err(Error::not_found(format!(
            "model {model:?} does not exist; speech models: {} (the voice selects the synthesis model)",
            SPEECH_MODELS.join(", ")
        )));
    }
    if request.input.trim().is_empty() {
        return Err(Error::invalid("input must not be empty"));
    }
    // Punctuation, symbols and invisible characters alone give the voice nothing to say.
    if !request.input.chars().any(char::is_alphanumeric) {
        return Err(Error::invalid("input has nothing to speak: it needs at least one letter or digit"));
    }
    let chars = tts_tokens(&request.input);
    if chars > MAX_INPUT_CHARS as u64 {
        return Err(Error::invalid(format!("input has {chars} characters; at most {MAX_INPUT_CHARS} are accepted")));
    }
    let speed = request.speed.unwrap_or(1.0);
    if !speed.is_finite() || !(0.25..=4.0).contains(&speed) {
        return Err(Error::invalid("speed must be between 0.25 and 4.0"));
    }
    let name = request.response_format.as_deref().unwrap_or("wav");
    let format: AudioFormat = name.parse().map_err(|_| {
        Error::invalid(format!("response_format {name:?} is not supported; use wav, pcm, flac, mp3 or opus"))
    })?;
    let delivery = match request.stream_format.as_deref() {
        None => Delivery::File,
        Some("audio") => Delivery::Audio,
        Some("sse") => Delivery::Sse,
        Some(other) => {
            return Err(Error::invalid(format!("stream_format {other:?} is not supported; use audio or sse")))
        }
    };
    if delivery != Delivery::File && ChunkEncoder::new(format).is_none() {
        return Err(Error::invalid(format!(
            "response_format {name:?} cannot be streamed; stream wav, pcm or mp3, or leave stream_format out"
        )));
    }
    Ok((format, delivery, speed))
}

/// Waits for every sentence and answers one encoded file.
async fn whole_file(stream: &mut AudioStream, format: AudioFormat) -> Result<Response, Error> {
    let mut samples = Vec::new();
    let mut sample_rate = 0;
    while let Some(chunk) = stream.recv().await {
        let chunk = chunk?;
        sample_rate = chunk.sample_rate;
        samples.extend(chunk.samples);
    }
    if sample_rate == 0 {
        return Err(Error::internal("synthesis produced no audio"));
    }
    let bytes = tokio::task::spawn_blocking(move || encode(&samples, sample_rate, None, format))
        .await
        .map_err(Error::internal)?
        .map_err(Error::internal)?;
    Ok(([(header::CONTENT_TYPE, format.content_type())], bytes).into_response())
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

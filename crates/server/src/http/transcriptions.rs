//! `POST /v1/audio/transcriptions` and `/v1/audio/translations`: OpenAI-compatible speech
//! recognition of an uploaded file, answered whole in one of five formats or as server-sent
//! events segment by segment.

use super::call::{ops, Authorized, RestOperation};
use super::error::ApiResult;
use super::openapi::ServerSentEvent;
use super::transcript_output::{render_response, sse_response};
use crate::service::recognition::{self, Recognition};
use axum::extract::multipart::{Multipart, MultipartError, MultipartRejection};
use axum::http::StatusCode;
use axum::response::Response;
use smai_core::{Error, ErrorCode, OutputFormat, Task, TranscribeOptions};
use utoipa::ToSchema;

/// The multipart form of both routes, as `read_upload` reads it (the OpenAPI document's
/// description of the request body).
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct TranscriptionForm {
    /// The recording: wav, flac, mp3, ogg/vorbis, ogg/opus, webm/opus or m4a/aac.
    #[schema(value_type = String, format = Binary)]
    file: Vec<u8>,
    /// `whisper-1` picks the default model; otherwise an id from `/v1/models`.
    model: Option<String>,
    /// ISO-639-1 code; detected when absent (transcriptions only).
    language: Option<String>,
    /// Text that steers spelling and style.
    prompt: Option<String>,
    /// Absent: json.
    response_format: Option<TranscriptFormat>,
    /// Sampling temperature, 0 to 1; 0 with fallback when absent.
    #[schema(minimum = 0.0, maximum = 1.0)]
    temperature: Option<f32>,
    /// `word` adds word timings (with `verbose_json` or `stream`).
    #[schema(rename = "timestamp_granularities[]")]
    timestamp_granularities: Option<Vec<TimestampGranularity>>,
    /// `true`: server-sent events, one `transcript.text.delta` per segment.
    stream: Option<bool>,
}

/// Renderings of a transcript.
#[derive(ToSchema)]
#[schema(rename_all = "snake_case")]
#[allow(dead_code)]
pub enum TranscriptFormat {
    Json,
    Text,
    Srt,
    Vtt,
    VerboseJson,
}

#[derive(ToSchema)]
#[schema(rename_all = "lowercase")]
#[allow(dead_code)]
pub enum TimestampGranularity {
    Word,
    Segment,
}

/// The JSON rendering (`verbose_json` adds language, duration, segments and words).
#[derive(serde::Serialize, ToSchema)]
pub struct TranscriptionResponse {
    pub text: String,
}

/// What one upload asks for.
struct Upload {
    file: Vec<u8>,
    options: TranscribeOptions,
    format: OutputFormat,
    stream: bool,
}

#[utoipa::path(post, path = "/v1/audio/transcriptions", tag = "audio",
    request_body(content = TranscriptionForm, content_type = "multipart/form-data"),
    responses((status = 200, description = "The transcript", content(
        (TranscriptionResponse = "application/json"), (String = "text/plain"), (String = "text/vtt"),
        (ServerSentEvent = "text/event-stream")))),
    security(("api_key" = []), ("bearer" = [])))]
pub async fn transcribe(
    call: Authorized<ops::Transcription>,
    multipart: Result<Multipart, MultipartRejection>,
) -> ApiResult<Response> {
    recognise(call, multipart, Task::Transcribe).await
}

#[utoipa::path(post, path = "/v1/audio/translations", tag = "audio",
    request_body(content = TranscriptionForm, content_type = "multipart/form-data"),
    responses((status = 200, description = "The English translation of the speech (multilingual models)", content(
        (TranscriptionResponse = "application/json"), (String = "text/plain"), (String = "text/vtt"),
        (ServerSentEvent = "text/event-stream")))),
    security(("api_key" = []), ("bearer" = [])))]
pub async fn translate(
    call: Authorized<ops::Translation>,
    multipart: Result<Multipart, MultipartRejection>,
) -> ApiResult<Response> {
    recognise(call, multipart, Task::Translate).await
}

async fn recognise<O: RestOperation>(
    call: Authorized<O>,
    multipart: Result<Multipart, MultipartRejection>,
    task: Task,
) -> ApiResult<Response> {
    let upload = read_upload(multipart, task).await?;
    let recognition = recognition::start(call.shared(), upload.file, upload.options).await?;
    let Recognition { events, language, duration } = recognition;
    if upload.stream {
        Ok(sse_response(events))
    } else {
        Ok(render_response(events, upload.format, task, language, duration).await?)
    }
}

async fn read_upload(multipart: Result<Multipart, MultipartRejection>, task: Task) -> Result<Upload, Error> {
    let mut multipart = multipart.map_err(|e| Error::invalid(format!("expected a multipart/form-data body: {e}")))?;
    let mut file = None;
    let mut options = TranscribeOptions { task, ..Default::default() };
    let mut format = OutputFormat::Json;
    let mut stream = false;
    while let Some(field) = multipart.next_field().await.map_err(|e| multipart_error(e, "malformed multipart body"))? {
        let name = field.name().unwrap_or_default().to_owned();
        let bytes = field.bytes().await.map_err(|e| multipart_error(e, &format!("could not read field {name:?}")))?;
        let text = || String::from_utf8_lossy(&bytes).trim().to_owned();
        match name.as_str() {
            "file" => file = Some(bytes.to_vec()),
            "model" => options.model = Some(text()).filter(|m| !m.is_empty() && m != "whisper-1"),
            "language" if task == Task::Transcribe => options.language = Some(text()).filter(|l| !l.is_empty()),
            "prompt" => options.prompt = Some(text()).filter(|p| !p.is_empty()),
            "response_format" if text().is_empty() => format = OutputFormat::Json,
            "response_format" => format = text().parse()?,
            "temperature" => {
                let t: f32 = text().parse().map_err(|_| Error::invalid("temperature must be a number"))?;
                if !(0.0..=1.0).contains(&t) {
                    return Err(Error::invalid("temperature must be between 0 and 1"));
                }
                options.temperature = Some(t);
            }
            "timestamp_granularities[]" | "timestamp_granularities" => match text().as_str() {
                "word" => options.word_timestamps = true,
                "segment" => {}
                other => {
                    return Err(Error::invalid(format!(
                        "timestamp granularity {other:?} is not supported; use word or segment"
                    )))
                }
            },
            "stream" => stream = parse_bool("stream", &text())?,
            "vad_filter" => options.vad_filter = parse_bool("vad_filter", &text())?,
            "chunking_strategy" => options.vad_filter = chunking_uses_vad(&text())?,
            _ => {}
        }
    }
    let file = file.ok_or_else(|| Error::invalid("missing file field"))?;
    if file.is_empty() {
        return Err(Error::invalid("the uploaded file is empty"));
    }
    if options.word_timestamps && format != OutputFormat::VerboseJson && !stream {
        return Err(Error::invalid("timestamp_granularities needs response_format verbose_json"));
    }
    Ok(Upload { file, options, format, stream })
}

/// A body over the size limit is a 413, other multipart faults a 400.
fn multipart_error(e: MultipartError, context: &str) -> Error {
    if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
        Error::new(ErrorCode::PayloadTooLarge, "request body is larger than the server accepts")
    } else {
        Error::invalid(format!("{context}: {e}"))
    }
}

fn parse_bool(field: &str, text: &str) -> Result<bool, Error> {
    match text.to_ascii_lowercase().as_str() {
        "true" | "1" => Ok(true),
        "false" | "0" | "" => Ok(false),
        other => Err(Error::invalid(format!("{field} must be true or false, not {other:?}"))),
    }
}

/// OpenAI's `chunking_strategy`: `auto`, or a `server_vad` object, cuts the audio at silences
/// (our VAD filter); an empty value leaves it off.
fn chunking_uses_vad(text: &str) -> Result<bool, Error> {
    if text.is_empty() {
        return Ok(false);
    }
    if text == "auto" {
        return Ok(true);
    }
    match serde_json::from_str::<serde_json::Value>(text) {
        Ok(v) if v.get("type").and_then(|t| t.as_str()) == Some("server_vad") => Ok(true),
        _ => Err(Error::invalid(format!(
            "chunking_strategy must be \"auto\" or an object with \"type\": \"server_vad\", not {text:?}"
        ))),
    }
}

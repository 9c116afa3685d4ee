//! Answers of the recognition routes: a whole transcript in json, text, srt, vtt or
//! verbose_json (rendered by the same code as `smai transcribe`), or OpenAI's
//! `transcript.text.delta` / `transcript.text.done` server-sent events.

use super::speech_stream::sse_event;
use axum::body::Body;
use axum::http::{header, HeaderValue};
use axum::response::Response;
use futures_util::stream::{self, StreamExt};
use serde_json::{json, Value};
use smai_core::transcript::{render, OutputFormat, Transcript};
use smai_core::{Error, Task, TranscriptEvent, TranscriptStream};

/// The media type of each rendering.
pub fn content_type(format: OutputFormat) -> &'static str {
    match format {
        OutputFormat::Json | OutputFormat::VerboseJson => "application/json",
        OutputFormat::Text | OutputFormat::Srt => "text/plain; charset=utf-8",
        OutputFormat::Vtt => "text/vtt; charset=utf-8",
    }
}

/// Waits for every segment and renders the transcript.
pub async fn render_response(
    mut stream: TranscriptStream,
    format: OutputFormat,
    task: Task,
    language: String,
    duration: f64,
) -> Result<Response, Error> {
    let mut transcript = Transcript { language, duration, task, segments: Vec::new() };
    while let Some(event) = stream.recv().await {
        if let TranscriptEvent::Segment(segment) = event? {
            transcript.segments.push(segment);
        }
    }
    let mut body = render(&transcript, format);
    if format == OutputFormat::VerboseJson {
        body = with_top_level_words(&body, &transcript)?;
    }
    let mut response = Response::new(Body::from(body));
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type(format)));
    Ok(response)
}

/// OpenAI's verbose_json lists word timings at the top level beside the segments.
fn with_top_level_words(rendered: &str, transcript: &Transcript) -> Result<String, Error> {
    let words: Vec<&smai_core::Word> = transcript.segments.iter().flat_map(|s| &s.words).collect();
    if words.is_empty() {
        return Ok(rendered.to_owned());
    }
    let mut value: Value = serde_json::from_str(rendered).map_err(Error::internal)?;
    // Through text, so that f32 probabilities keep their short form (0.9, not 0.899999976).
    let words = serde_json::to_string(&words).map_err(Error::internal)?;
    value["words"] = serde_json::from_str(&words).map_err(Error::internal)?;
    Ok(value.to_string())
}

/// One `transcript.text.delta` per segment as it is decoded (with its times, beyond
/// OpenAI's fields), then `transcript.text.done` with the whole text; an error mid-way
/// becomes an `error` event.
pub fn sse_response(stream: TranscriptStream) -> Response {
    let events = stream::unfold((stream, String::new(), false), |(mut stream, mut text, finished)| async move {
        if finished {
            return None;
        }
        loop {
            match stream.recv().await {
                Some(Ok(TranscriptEvent::Segment(segment))) => {
                    text.push_str(&segment.text);
                    let event = json!({"type": "transcript.text.delta", "delta": segment.text,
                        "start": segment.start, "end": segment.end});
                    return Some((event, (stream, text, false)));
                }
                Some(Ok(TranscriptEvent::Started { .. })) => continue,
                Some(Err(e)) => {
                    tracing::warn!(detail = e.detail.as_deref().unwrap_or(&e.message), "transcript stream ended early");
                    let event = json!({"type": "error", "error": {"code": e.code.as_str(), "message": e.message}});
                    return Some((event, (stream, text, true)));
                }
                None => {
                    let event = json!({"type": "transcript.text.done", "text": text.trim()});
                    return Some((event, (stream, text, true)));
                }
            }
        }
    });
    let body = Body::from_stream(events.map(|event| Ok::<_, std::convert::Infallible>(sse_event(&event))));
    let mut response = Response::new(body);
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
    response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}

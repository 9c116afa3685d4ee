//! `POST /v1/audio/transcriptions`: OpenAI-compatible speech recognition (multipart upload).

use super::auth::{require_service, Charged};
use super::error::ApiResult;
use super::limits::RateContext;
use crate::state::AppState;
use axum::extract::multipart::{Multipart, MultipartRejection};
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use smai_auth::limits::asr_tokens;
use smai_core::{Error, Principal, Service, TranscribeOptions, TranscriptEvent};

pub async fn create(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Extension(rate): Extension<RateContext>,
    multipart: Result<Multipart, MultipartRejection>,
) -> ApiResult<Response> {
    require_service(&principal, Service::Asr)?;
    let mut multipart = multipart.map_err(|e| Error::invalid(format!("expected a multipart/form-data body: {e}")))?;
    let mut file = None;
    let mut options = TranscribeOptions::default();
    let mut format = "json".to_owned();
    while let Some(field) = multipart.next_field().await.map_err(|e| Error::invalid(format!("malformed multipart body: {e}")))? {
        let name = field.name().unwrap_or_default().to_owned();
        let bytes = field.bytes().await.map_err(|e| Error::invalid(format!("could not read field {name:?}: {e}")))?;
        let text = || String::from_utf8_lossy(&bytes).trim().to_owned();
        match name.as_str() {
            "file" => file = Some(bytes.to_vec()),
            "model" => options.model = Some(text()).filter(|m| !m.is_empty() && m != "whisper-1"),
            "language" => options.language = Some(text()).filter(|l| !l.is_empty()),
            "prompt" => options.prompt = Some(text()).filter(|p| !p.is_empty()),
            "response_format" => format = text(),
            "temperature" => {
                options.temperature = Some(text().parse().map_err(|_| Error::invalid("temperature must be a number"))?)
            }
            _ => {}
        }
    }
    let file = file.filter(|f| !f.is_empty()).ok_or_else(|| Error::invalid("missing file field"))?;
    if !matches!(format.as_str(), "json" | "text") {
        return Err(Error::invalid(format!("response_format {format:?} is not supported; use json or text")).into());
    }
    let transcriber = state.transcriber.as_ref().ok_or_else(|| Error::not_found("no speech recognition model is loaded"))?;
    let mut stream = transcriber.transcribe(file, options)?;
    let mut text = String::new();
    let mut tokens = 0;
    while let Some(event) = stream.recv().await {
        match event? {
            TranscriptEvent::Started { duration, .. } => {
                // Charged once the duration is known and before any decoding; a refusal drops
                // the stream, which stops the engine's work on it. The engine measures audio
                // at 16 kHz, so the duration is a whole number of those samples.
                tokens = asr_tokens((duration * 16_000.0).round() as u64, 16_000);
                rate.admit(tokens)?;
            }
            TranscriptEvent::Segment(segment) => text.push_str(&segment.text),
        }
    }
    let text = text.trim().to_owned();
    let mut response = match format.as_str() {
        "text" => text.into_response(),
        _ => Json(serde_json::json!({ "text": text })).into_response(),
    };
    response.extensions_mut().insert(Charged { service: Service::Asr, tokens });
    Ok(response)
}


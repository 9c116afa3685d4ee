//! Health, readiness, and the model and voice listings.

use super::error::{ApiError, ApiResult};
use crate::state::AppState;
use axum::extract::State;
use axum::http::StatusCode;
use axum::{Extension, Json};
use serde_json::{json, Value};
use smai_core::{Error, Principal, Service};

pub async fn healthz() -> Json<Value> {
    Json(json!({"status": "ok"}))
}

/// Ready once every configured engine has loaded its models.
pub async fn readyz(State(state): State<AppState>) -> (StatusCode, Json<Value>) {
    let asr = state.transcriber.as_ref().map(|t| !t.models().is_empty());
    let tts = state.synthesizer.as_ref().map(|s| !s.voices().is_empty());
    let ready = asr.unwrap_or(true) && tts.unwrap_or(true);
    let status = if ready { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    (status, Json(json!({"status": if ready { "ready" } else { "loading" }, "asr": asr, "tts": tts})))
}

/// OpenAI-style model list, limited to the services the key may use.
pub async fn models(State(state): State<AppState>, Extension(principal): Extension<Principal>) -> Json<Value> {
    let mut data = Vec::new();
    if let Some(transcriber) = state.transcriber.as_ref().filter(|_| principal.can_use(Service::Asr)) {
        for model in transcriber.models() {
            data.push(json!({"id": model.id, "object": "model", "owned_by": "smai", "service": "asr",
                "multilingual": model.multilingual}));
        }
    }
    if let Some(synthesizer) = state.synthesizer.as_ref().filter(|_| principal.can_use(Service::Tts)) {
        if !synthesizer.voices().is_empty() {
            data.push(json!({"id": "tts-1", "object": "model", "owned_by": "smai", "service": "tts"}));
        }
    }
    Json(json!({"object": "list", "data": data}))
}

/// Voices the key may use.
pub async fn voices(State(state): State<AppState>, Extension(principal): Extension<Principal>) -> ApiResult<Json<Value>> {
    if !principal.can_use(Service::Tts) {
        return Err(Error::forbidden("this API key does not grant the tts service").into());
    }
    let voices: Vec<Value> = state
        .synthesizer
        .iter()
        .flat_map(|s| s.voices())
        .filter(|v| principal.voices.allows(&v.id))
        .map(|v| json!({"id": v.id, "language": v.language, "sample_rate": v.sample_rate, "quality": v.quality}))
        .collect();
    Ok(Json(json!({"object": "list", "data": voices})))
}

pub async fn not_found() -> ApiError {
    Error::not_found("no such route").into()
}

pub async fn method_not_allowed() -> (StatusCode, ApiError) {
    (StatusCode::METHOD_NOT_ALLOWED, Error::invalid("method not allowed on this route").into())
}

//! Health, readiness, and the model and voice listings.

use super::call::{ops, Authorized};
use super::error::{ApiError, ApiResult};
use crate::state::AppState;
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde::Serialize;
use smai_core::{EngineHealth, Error, Service};
use utoipa::ToSchema;

#[derive(Debug, Serialize, ToSchema)]
pub struct Health {
    #[schema(example = "ok")]
    pub status: String,
}

/// `asr` and `tts` are null for a service the server was started without.
#[derive(Debug, Serialize, ToSchema)]
pub struct Readiness {
    /// `ready`, or `unavailable` while an engine is loading or has failed.
    pub status: String,
    pub asr: Option<bool>,
    pub tts: Option<bool>,
    /// Why each engine that is not serving is not, by engine (`asr`, `tts`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub problems: Vec<String>,
}

/// OpenAI's list envelope around the models.
#[derive(Debug, Serialize, ToSchema)]
pub struct ModelList {
    #[schema(example = "list")]
    pub object: String,
    pub data: Vec<ModelEntry>,
}

/// OpenAI's list envelope around the voices.
#[derive(Debug, Serialize, ToSchema)]
pub struct VoiceList {
    #[schema(example = "list")]
    pub object: String,
    pub data: Vec<VoiceEntry>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ModelEntry {
    #[schema(example = "tiny.en")]
    pub id: String,
    #[schema(example = "model")]
    pub object: String,
    pub owned_by: String,
    /// `asr` or `tts`.
    pub service: String,
    /// Speech recognition models only: whether it transcribes and translates other languages.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub multilingual: Option<bool>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct VoiceEntry {
    #[schema(example = "joe")]
    pub id: String,
    #[schema(example = "en_US")]
    pub language: String,
    pub sample_rate: u32,
    pub quality: String,
}

pub async fn healthz() -> Json<Health> {
    Json(Health { status: "ok".into() })
}

/// Ready once every configured engine has loaded and none has lost its worker; a 503 names
/// the engine that is not serving and why.
pub async fn readyz(State(state): State<AppState>) -> (StatusCode, Json<Readiness>) {
    let readiness = state.readiness();
    let ready = readiness.is_ready();
    let serving = |h: &Option<EngineHealth>| h.as_ref().map(|h| *h == EngineHealth::Serving);
    let mut problems = Vec::new();
    for (name, health) in [("asr", &readiness.asr), ("tts", &readiness.tts)] {
        if let Some(EngineHealth::Unhealthy(why)) = health {
            problems.push(format!("{name}: {why}"));
        }
    }
    let status = if ready { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    let body = Readiness {
        status: if ready { "ready" } else { "unavailable" }.into(),
        asr: serving(&readiness.asr),
        tts: serving(&readiness.tts),
        problems,
    };
    (status, Json(body))
}

/// OpenAI-style model list, limited to the services the key may use.
pub async fn models(State(state): State<AppState>, call: Authorized<ops::ListModels>) -> ApiResult<Json<ModelList>> {
    let principal = call.principal()?;
    let entry = |id: String, service: &str, multilingual| ModelEntry {
        id,
        object: "model".into(),
        owned_by: "smai".into(),
        service: service.into(),
        multilingual,
    };
    let mut data = Vec::new();
    if let Some(transcriber) = state.transcriber().filter(|_| principal.can_use(Service::Asr)) {
        for model in transcriber.models() {
            data.push(entry(model.id, "asr", Some(model.multilingual)));
        }
    }
    if let Some(synthesizer) = state.synthesizer().filter(|_| principal.can_use(Service::Tts)) {
        if !synthesizer.voices().is_empty() {
            data.push(entry("tts-1".into(), "tts", None));
        }
    }
    Ok(Json(ModelList { object: "list".into(), data }))
}

/// Voices the key may use (403 for a key without the tts service).
pub async fn voices(State(state): State<AppState>, call: Authorized<ops::ListVoices>) -> ApiResult<Json<VoiceList>> {
    let principal = call.principal()?;
    let data = state
        .synthesizer()
        .iter()
        .flat_map(|s| s.voices())
        .filter(|v| principal.voices.allows(&v.id))
        .map(|v| VoiceEntry { id: v.id, language: v.language, sample_rate: v.sample_rate, quality: v.quality })
        .collect();
    Ok(Json(VoiceList { object: "list".into(), data }))
}

pub async fn not_found() -> ApiError {
    Error::not_found("no such route").into()
}

pub async fn method_not_allowed() -> (StatusCode, ApiError) {
    (StatusCode::METHOD_NOT_ALLOWED, Error::invalid("method not allowed on this route").into())
}

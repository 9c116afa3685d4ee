//! Health, readiness, and the model and voice listings.

use super::error::{ApiError, ApiResult};
use crate::state::AppState;
use axum::extract::State;
use axum::http::StatusCode;
use axum::{Extension, Json};
use serde::Serialize;
use smai_core::{Error, Principal, Service};
use utoipa::ToSchema;

#[derive(Debug, Serialize, ToSchema)]
pub struct Health {
    #[schema(example = "ok")]
    pub status: String,
}

/// `asr` and `tts` are null for a service the server was started without.
#[derive(Debug, Serialize, ToSchema)]
pub struct Readiness {
    /// `ready` or `loading`.
    pub status: String,
    pub asr: Option<bool>,
    pub tts: Option<bool>,
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

/// Ready once every configured engine has loaded its models.
pub async fn readyz(State(state): State<AppState>) -> (StatusCode, Json<Readiness>) {
    let asr = state.transcriber.as_ref().map(|t| !t.models().is_empty());
    let tts = state.synthesizer.as_ref().map(|s| !s.voices().is_empty());
    let ready = asr.unwrap_or(true) && tts.unwrap_or(true);
    let status = if ready { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    (status, Json(Readiness { status: if ready { "ready" } else { "loading" }.into(), asr, tts }))
}

/// OpenAI-style model list, limited to the services the key may use.
pub async fn models(State(state): State<AppState>, Extension(principal): Extension<Principal>) -> Json<ModelList> {
    let entry = |id: String, service: &str, multilingual| ModelEntry {
        id,
        object: "model".into(),
        owned_by: "smai".into(),
        service: service.into(),
        multilingual,
    };
    let mut data = Vec::new();
    if let Some(transcriber) = state.transcriber.as_ref().filter(|_| principal.can_use(Service::Asr)) {
        for model in transcriber.models() {
            data.push(entry(model.id, "asr", Some(model.multilingual)));
        }
    }
    if let Some(synthesizer) = state.synthesizer.as_ref().filter(|_| principal.can_use(Service::Tts)) {
        if !synthesizer.voices().is_empty() {
            data.push(entry("tts-1".into(), "tts", None));
        }
    }
    Json(ModelList { object: "list".into(), data })
}

/// Voices the key may use.
pub async fn voices(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
) -> ApiResult<Json<VoiceList>> {
    if !principal.can_use(Service::Tts) {
        return Err(Error::forbidden("this API key does not grant the tts service").into());
    }
    let data = state
        .synthesizer
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

//! Health, readiness, and the model and voice listings.

use super::call::{ops, Authorized};
use super::error::{ApiError, ApiResult};
use crate::state::AppState;
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde::Serialize;
use smai_core::{EngineHealth, Error, ErrorCode, Service};
use utoipa::ToSchema;

#[derive(Debug, Serialize, ToSchema)]
pub struct Health {
    #[schema(example = "ok")]
    pub status: String,
}

/// `asr` and `tts` are null for a service the server was started without.
#[derive(Debug, Serialize, ToSchema)]
pub struct Readiness {
    #[schema(example = "ready")]
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

#[utoipa::path(get, path = "/healthz", tag = "operations",
    responses((status = 200, description = "The process is up", body = Health)), security(()))]
pub async fn healthz() -> Json<Health> {
    Json(Health { status: "ok".into() })
}

/// Ready once every configured engine has loaded and none has lost its worker. Otherwise a
/// 503 with the error body, whose message names each engine that is not serving and why.
#[utoipa::path(get, path = "/readyz", tag = "operations",
    responses((status = 200, description = "Every configured engine has its models loaded and is serving", body = Readiness)),
    security(()))]
pub async fn readyz(State(state): State<AppState>) -> ApiResult<Json<Readiness>> {
    let readiness = state.readiness();
    if !readiness.is_ready() {
        let problems: Vec<String> = [("asr", &readiness.asr), ("tts", &readiness.tts)]
            .into_iter()
            .filter_map(|(name, health)| match health {
                Some(EngineHealth::Unhealthy(why)) => Some(format!("{name}: {why}")),
                _ => None,
            })
            .collect();
        let error = Error::new(ErrorCode::Overloaded, format!("not ready: {}", problems.join("; ")));
        return Err(error.with_retry_after(std::time::Duration::from_secs(5)).into());
    }
    let serving = |h: &Option<EngineHealth>| h.as_ref().map(|h| *h == EngineHealth::Serving);
    let body = Readiness { status: "ready".into(), asr: serving(&readiness.asr), tts: serving(&readiness.tts) };
    Ok(Json(body))
}

#[utoipa::path(get, path = "/v1/models", tag = "catalogue",
    responses((status = 200, description = "Models the key may use", body = ModelList)),
    security(("api_key" = []), ("bearer" = [])))]
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
    for model in state.usable_models(&principal) {
        data.push(entry(model.id, "asr", Some(model.multilingual)));
    }
    if let Some(synthesizer) = state.synthesizer().filter(|_| principal.can_use(Service::Tts)) {
        if !synthesizer.voices().is_empty() {
            data.push(entry("tts-1".into(), "tts", None));
        }
    }
    Ok(Json(ModelList { object: "list".into(), data }))
}

/// Voices the key may use (403 for a key without the tts service).
#[utoipa::path(get, path = "/v1/voices", tag = "catalogue",
    responses((status = 200, description = "Voices the key may use", body = VoiceList)),
    security(("api_key" = []), ("bearer" = [])))]
pub async fn voices(State(state): State<AppState>, call: Authorized<ops::ListVoices>) -> ApiResult<Json<VoiceList>> {
    let principal = call.principal()?;
    let data = state
        .usable_voices(&principal)
        .into_iter()
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

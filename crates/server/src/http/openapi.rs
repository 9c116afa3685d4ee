//! `GET /openapi.json`: the REST contract as OpenAPI 3.1, built from the request and response
//! types themselves. The functions below carry only the route descriptions; the handlers live
//! in their own modules. Every operation also answers the error body for 4XX and 5XX, added in
//! one place by `ErrorResponses`.

use super::error::ErrorBody;
use super::meta::{Health, ModelEntry, ModelList, Readiness, VoiceEntry, VoiceList};
use super::speech::SpeechRequest;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use std::sync::OnceLock;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{ContentBuilder, Ref, ResponseBuilder};
use utoipa::{Modify, OpenApi, ToSchema};

/// Encoded audio; the media type says which encoding.
#[derive(ToSchema)]
#[schema(value_type = String, format = Binary)]
#[allow(dead_code)]
pub struct AudioBytes(Vec<u8>);

/// The multipart form of `/v1/audio/transcriptions` and `/v1/audio/translations`.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct TranscriptionForm {
    /// The recording: wav, flac, mp3, ogg/vorbis, ogg/opus, webm/opus or m4a/aac.
    #[schema(value_type = String, format = Binary)]
    file: Vec<u8>,
    /// `whisper-1` picks the default model; otherwise an id from `/v1/models`.
    model: Option<String>,
    /// ISO-639-1 code; detected when absent.
    language: Option<String>,
    /// Text that steers spelling and style.
    prompt: Option<String>,
    /// `json` (default), `text`, `srt`, `vtt` or `verbose_json`.
    response_format: Option<String>,
    /// Sampling temperature; 0 with fallback when absent.
    temperature: Option<f32>,
}

#[derive(Serialize, ToSchema)]
pub struct TranscriptionResponse {
    pub text: String,
}

#[utoipa::path(post, path = "/v1/audio/speech", tag = "audio",
    request_body(content = SpeechRequest, content_type = "application/json"),
    responses((status = 200, description = "The synthesised speech in the requested format", content(
        (AudioBytes = "audio/wav"), (AudioBytes = "audio/pcm"), (AudioBytes = "audio/flac"),
        (AudioBytes = "audio/mpeg"), (AudioBytes = "audio/ogg")))),
    security(("api_key" = []), ("bearer" = [])))]
#[allow(dead_code)]
fn speech() {}

#[utoipa::path(post, path = "/v1/audio/transcriptions", tag = "audio",
    request_body(content = TranscriptionForm, content_type = "multipart/form-data"),
    responses((status = 200, description = "The transcript", content(
        (TranscriptionResponse = "application/json"), (String = "text/plain"), (String = "text/vtt"),
        (String = "text/event-stream")))),
    security(("api_key" = []), ("bearer" = [])))]
#[allow(dead_code)]
fn transcriptions() {}

#[utoipa::path(post, path = "/v1/audio/translations", tag = "audio",
    request_body(content = TranscriptionForm, content_type = "multipart/form-data"),
    responses((status = 200, description = "The English translation of the speech (multilingual models)", content(
        (TranscriptionResponse = "application/json"), (String = "text/plain"), (String = "text/vtt")))),
    security(("api_key" = []), ("bearer" = [])))]
#[allow(dead_code)]
fn translations() {}

#[utoipa::path(get, path = "/v1/models", tag = "catalogue",
    responses((status = 200, description = "Models the key may use", body = ModelList)),
    security(("api_key" = []), ("bearer" = [])))]
#[allow(dead_code)]
fn models() {}

#[utoipa::path(get, path = "/v1/voices", tag = "catalogue",
    responses((status = 200, description = "Voices the key may use", body = VoiceList)),
    security(("api_key" = []), ("bearer" = [])))]
#[allow(dead_code)]
fn voices() {}

#[utoipa::path(get, path = "/healthz", tag = "operations",
    responses((status = 200, description = "The process is up", body = Health)), security(()))]
#[allow(dead_code)]
fn healthz() {}

#[utoipa::path(get, path = "/readyz", tag = "operations",
    responses((status = 200, description = "Every configured engine has its models loaded", body = Readiness)),
    security(()))]
#[allow(dead_code)]
fn readyz() {}

#[utoipa::path(get, path = "/metrics", tag = "operations",
    responses((status = 200, description = "Prometheus text exposition format 0.0.4", body = String,
        content_type = "text/plain")),
    security(()))]
#[allow(dead_code)]
fn metrics() {}

#[utoipa::path(get, path = "/openapi.json", tag = "operations",
    responses((status = 200, description = "This document", body = Object, content_type = "application/json")),
    security(()))]
#[allow(dead_code)]
fn openapi() {}

#[derive(OpenApi)]
#[openapi(
    info(title = "smai", description = "Self-hosted speech inference: text-to-speech and speech recognition behind API keys. \
        Errors on every route share one body; 401 carries `WWW-Authenticate: Bearer`, 429 carries `Retry-After`."),
    paths(speech, transcriptions, translations, models, voices, healthz, readyz, metrics, openapi),
    components(schemas(ErrorBody, ModelEntry, VoiceEntry)),
    modifiers(&SecuritySchemes, &ErrorResponses),
)]
struct ApiDoc;

struct SecuritySchemes;

impl Modify for SecuritySchemes {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme("api_key", SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::new("X-API-Key"))));
        components.add_security_scheme("bearer", SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()));
    }
}

/// Any operation may answer 4XX or 5XX with the error body.
struct ErrorResponses;

impl Modify for ErrorResponses {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let error = |description: &str| {
            let content = ContentBuilder::new().schema(Some(Ref::from_schema_name("ErrorBody"))).build();
            ResponseBuilder::new().description(description).content("application/json", content).build()
        };
        for item in openapi.paths.paths.values_mut() {
            let operations = [&mut item.get, &mut item.post, &mut item.put, &mut item.delete, &mut item.patch];
            for operation in operations.into_iter().flatten() {
                let responses = &mut operation.responses.responses;
                responses.insert("4XX".into(), error("Refused: see `error.code`").into());
                responses.insert("5XX".into(), error("`overloaded` (503) or `internal_error` (500)").into());
            }
        }
    }
}

/// The document, built once.
pub fn document() -> &'static str {
    static JSON: OnceLock<String> = OnceLock::new();
    JSON.get_or_init(|| ApiDoc::openapi().to_json().unwrap_or_default())
}

pub async fn serve() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], document()).into_response()
}

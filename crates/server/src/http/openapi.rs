//! `GET /openapi.json`: the REST contract as OpenAPI 3.1, built from the handlers (each carries
//! its route's description) and the request and response types themselves. Every operation
//! also answers the error body for 4XX and 5XX, added in one place by `ErrorResponses`.

use super::error::ErrorBody;
use super::meta::{ModelEntry, VoiceEntry};
use super::{meta, metrics, speech, transcriptions};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use std::sync::OnceLock;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{ContentBuilder, Ref, ResponseBuilder};
use utoipa::{Modify, OpenApi, ToSchema};

/// Encoded audio; the media type says which encoding.
#[derive(ToSchema)]
#[schema(value_type = String, format = Binary)]
#[allow(dead_code)]
pub struct AudioBytes(Vec<u8>);

/// One server-sent event of a streamed response: `data` is one JSON event
/// (`speech.audio.delta`, `transcript.text.delta`, ..., or `error`).
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct ServerSentEvent {
    data: String,
    event: Option<String>,
}

#[utoipa::path(get, path = "/openapi.json", tag = "operations",
    responses((status = 200, description = "This document", body = Object, content_type = "application/json")),
    security(()))]
pub async fn serve() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], document()).into_response()
}

#[derive(OpenApi)]
#[openapi(
    info(title = "smai", description = "Self-hosted speech inference: text-to-speech and speech recognition behind API keys. \
        Errors on every route share one body; 401 carries `WWW-Authenticate: Bearer`, 429 carries `Retry-After`."),
    paths(speech::create, transcriptions::transcribe, transcriptions::translate, meta::models, meta::voices,
        meta::healthz, meta::readyz, metrics::render, serve),
    components(schemas(ErrorBody, ModelEntry, VoiceEntry)),
    modifiers(&SecuritySchemes, &ErrorResponses),
)]
struct ApiDoc;

struct SecuritySchemes;

impl Modify for SecuritySchemes {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components
            .add_security_scheme("api_key", SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::new("X-API-Key"))));
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
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

#[cfg(test)]
mod tests {
    use serde_json::{json, Value};

    #[test]
    fn forms_and_closed_sets_come_from_the_real_types() {
        let doc: Value = serde_json::from_str(super::document()).unwrap();
        let schemas = &doc["components"]["schemas"];
        let form = &schemas["TranscriptionForm"]["properties"];
        let fields =
            ["file", "model", "language", "prompt", "response_format", "temperature", "timestamp_granularities[]"];
        for field in fields.into_iter().chain(["stream"]) {
            assert!(form.get(field).is_some(), "form field {field} is documented: {form}");
        }
        assert_eq!(schemas["TranscriptFormat"]["enum"], json!(["json", "text", "srt", "vtt", "verbose_json"]));
        assert_eq!(schemas["TimestampGranularity"]["enum"], json!(["word", "segment"]));
        assert_eq!(schemas["SpeechFormat"]["enum"], json!(["wav", "pcm", "flac", "mp3", "opus"]));
        assert_eq!(schemas["StreamFormat"]["enum"], json!(["audio", "sse"]));
    }
}

//! `POST /v1/audio/speech`: OpenAI-compatible speech synthesis.

use super::auth::{require_service, Charged};
use super::error::{ApiError, ApiResult};
use super::limits::RateContext;
use crate::state::AppState;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::Extension;
use serde::Deserialize;
use smai_auth::limits::tts_tokens;
use smai_core::{Error, ErrorCode, Principal, Service, SpeechOptions};

pub const MAX_INPUT_CHARS: usize = 4096;

#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct SpeechRequest {
    /// Accepted for OpenAI compatibility; the voice picks the model.
    #[serde(default)]
    #[allow(dead_code)]
    pub model: Option<String>,
    pub input: String,
    pub voice: String,
    #[serde(default)]
    pub response_format: Option<String>,
    #[serde(default)]
    pub speed: Option<f32>,
}

pub async fn create(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Extension(rate): Extension<RateContext>,
    body: Bytes,
) -> ApiResult<Response> {
    require_service(&principal, Service::Tts)?;
    let request: SpeechRequest =
        serde_json::from_slice(&body).map_err(|e| Error::invalid(format!("invalid JSON body: {e}")))?;
    let text = request.input.trim();
    if text.is_empty() {
        return Err(Error::invalid("input must not be empty").into());
    }
    let chars = tts_tokens(&request.input);
    if chars > MAX_INPUT_CHARS as u64 {
        return Err(Error::invalid(format!("input has {chars} characters; at most {MAX_INPUT_CHARS} are accepted")).into());
    }
    let speed = request.speed.unwrap_or(1.0);
    if !(0.25..=4.0).contains(&speed) {
        return Err(Error::invalid("speed must be between 0.25 and 4.0").into());
    }
    let format = request.response_format.as_deref().unwrap_or("wav");
    if !matches!(format, "wav" | "pcm") {
        return Err(Error::invalid(format!("response_format {format:?} is not supported; use wav or pcm")).into());
    }
    let synthesizer = state.synthesizer.as_ref().ok_or_else(|| Error::not_found("no voices are loaded"))?;
    if !synthesizer.voices().iter().any(|v| v.id == request.voice) {
        return Err(Error::not_found(format!("unknown voice {:?}", request.voice)).into());
    }
    if !principal.voices.allows(&request.voice) {
        return Err(Error::new(ErrorCode::VoiceNotAllowed, format!("this API key may not use voice {:?}", request.voice)).into());
    }

    rate.admit(chars)?;
    let mut stream = synthesizer.synthesize(text.to_owned(), SpeechOptions { voice: request.voice, speed })?;
    let mut samples = Vec::new();
    let mut sample_rate = 0;
    while let Some(chunk) = stream.recv().await {
        let chunk = chunk?;
        sample_rate = chunk.sample_rate;
        samples.extend(chunk.samples);
    }
    let pcm: Vec<i16> = samples.iter().map(|s| (s.clamp(-1.0, 1.0) * i16::MAX as f32) as i16).collect();
    let (content_type, bytes) = match format {
        "pcm" => ("audio/pcm", pcm.iter().flat_map(|s| s.to_le_bytes()).collect()),
        _ => ("audio/wav", wav_bytes(&pcm, sample_rate)?),
    };
    let mut response = ([(header::CONTENT_TYPE, content_type)], bytes).into_response();
    response.extensions_mut().insert(Charged { service: Service::Tts, tokens: chars });
    Ok(response)
}

fn wav_bytes(pcm: &[i16], sample_rate: u32) -> Result<Vec<u8>, ApiError> {
    let spec = hound::WavSpec { channels: 1, sample_rate, bits_per_sample: 16, sample_format: hound::SampleFormat::Int };
    let mut cursor = std::io::Cursor::new(Vec::new());
    let mut writer = hound::WavWriter::new(&mut cursor, spec).map_err(Error::internal)?;
    for s in pcm {
        writer.write_sample(*s).map_err(Error::internal)?;
    }
    writer.finalize().map_err(Error::internal)?;
    Ok(cursor.into_inner())
}

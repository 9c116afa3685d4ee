//! The client side of OpenAI's Realtime API that transcription clients use: the session
//! configuration of GA `session.update` (`session.type: "transcription"`, `audio.input.*`) and
//! of beta `transcription_session.update` (`input_audio_format`, `input_audio_transcription`),
//! read into one shape, and the client events.

use crate::service::live::PcmEncoding;
use serde::Deserialize;
use serde_json::Value;
use smai_core::{Error, LiveVad};

/// A client event: its type, its id (echoed in errors), and the rest.
pub struct ClientEvent {
    pub kind: String,
    pub event_id: Option<String>,
    pub body: Value,
}

pub fn parse_event(text: &str) -> Result<ClientEvent, Error> {
    let body: Value = serde_json::from_str(text).map_err(|e| Error::invalid(format!("malformed event: {e}")))?;
    let kind = body["type"].as_str().ok_or_else(|| Error::invalid("an event needs a string \"type\""))?.to_owned();
    let event_id = body["event_id"].as_str().map(str::to_owned);
    Ok(ClientEvent { kind, event_id, body })
}

/// What a transcription session is set to.
#[derive(Debug, Clone, PartialEq)]
pub struct SessionConfig {
    pub encoding: PcmEncoding,
    pub sample_rate: u32,
    /// Our model id; `None` for the server's default (OpenAI's model names map to it).
    pub model: Option<String>,
    pub language: Option<String>,
    pub prompt: Option<String>,
    /// `server_vad`: the VAD ends turns; `None`: the client commits.
    pub turn_detection: Option<LiveVad>,
}

impl Default for SessionConfig {
    fn default() -> Self {
        Self {
            encoding: PcmEncoding::S16le,
            sample_rate: 24_000,
            model: None,
            language: None,
            prompt: None,
            turn_detection: Some(server_vad(&Value::Null)),
        }
    }
}

#[derive(Deserialize, Default)]
struct Transcription {
    model: Option<String>,
    language: Option<String>,
    prompt: Option<String>,
}

impl SessionConfig {
    /// Applies a GA `session.update` (`session.type` must be `transcription`).
    pub fn apply_ga(&mut self, session: &Value) -> Result<(), Error> {
        match session["type"].as_str() {
            Some("transcription") | None => {}
            Some(other) => {
                return Err(Error::invalid(format!(
                    "only transcription sessions are served here, not {other:?} (conversation sessions are refused)"
                )))
            }
        }
        let input = &session["audio"]["input"];
        if let Some(format) = input.get("format").filter(|f| !f.is_null()) {
            self.set_ga_format(format)?;
        }
        self.set_transcription(&input["transcription"])?;
        if let Some(turn) = input.get("turn_detection") {
            self.turn_detection = turn_detection(turn)?;
        }
        Ok(())
    }

    /// Applies a beta `transcription_session.update`.
    pub fn apply_beta(&mut self, session: &Value) -> Result<(), Error> {
        if let Some(format) = session["input_audio_format"].as_str() {
            (self.encoding, self.sample_rate) = match format {
                "pcm16" => (PcmEncoding::S16le, 24_000),
                "g711_ulaw" => (PcmEncoding::Mulaw, 8_000),
                "g711_alaw" => (PcmEncoding::Alaw, 8_000),
                other => return Err(Error::invalid(format!("unsupported input_audio_format {other:?}"))),
            };
        }
        self.set_transcription(&session["input_audio_transcription"])?;
        if let Some(turn) = session.get("turn_detection") {
            self.turn_detection = turn_detection(turn)?;
        }
        Ok(())
    }

    fn set_ga_format(&mut self, format: &Value) -> Result<(), Error> {
        (self.encoding, self.sample_rate) = match format["type"].as_str() {
            Some("audio/pcm") => match format["rate"].as_u64().unwrap_or(24_000) {
                rate @ (16_000 | 24_000) => (PcmEncoding::S16le, rate as u32),
                other => return Err(Error::invalid(format!("audio/pcm at {other} Hz: use 24000 (or 16000)"))),
            },
            Some("audio/pcmu") => (PcmEncoding::Mulaw, 8_000),
            Some("audio/pcma") => (PcmEncoding::Alaw, 8_000),
            other => return Err(Error::invalid(format!("unsupported audio format {other:?}"))),
        };
        Ok(())
    }

    fn set_transcription(&mut self, transcription: &Value) -> Result<(), Error> {
        if transcription.is_null() {
            return Ok(());
        }
        let t: Transcription = serde_json::from_value(transcription.clone())
            .map_err(|e| Error::invalid(format!("transcription settings: {e}")))?;
        // OpenAI's model names stand for the server's default model.
        self.model = t.model.filter(|m| !m.is_empty() && !is_openai_model(m));
        self.language = t.language.filter(|l| !l.is_empty());
        self.prompt = t.prompt.filter(|p| !p.is_empty());
        Ok(())
    }

    /// The session as `session.created` / `session.updated` describe it (GA shape).
    pub fn describe(&self, id: &str) -> Value {
        let format = match self.encoding {
            PcmEncoding::Mulaw => serde_json::json!({"type": "audio/pcmu"}),
            PcmEncoding::Alaw => serde_json::json!({"type": "audio/pcma"}),
            _ => serde_json::json!({"type": "audio/pcm", "rate": self.sample_rate}),
        };
        let turn = self.turn_detection.map(|v| {
            serde_json::json!({"type": "server_vad", "threshold": v.threshold,
                "prefix_padding_ms": v.speech_pad_ms, "silence_duration_ms": v.min_silence_ms})
        });
        serde_json::json!({"id": id, "object": "realtime.transcription_session", "type": "transcription",
            "audio": {"input": {"format": format, "turn_detection": turn,
                "transcription": {"model": self.model.as_deref().unwrap_or("whisper-1"),
                    "language": self.language, "prompt": self.prompt}}}})
    }
}

fn is_openai_model(model: &str) -> bool {
    model.starts_with("whisper-") || model.starts_with("gpt-")
}

/// OpenAI's defaults: threshold 0.5, 300 ms of prefix padding, 500 ms of silence.
fn server_vad(turn: &Value) -> LiveVad {
    LiveVad {
        threshold: turn["threshold"].as_f64().unwrap_or(0.5) as f32,
        speech_pad_ms: turn["prefix_padding_ms"].as_u64().unwrap_or(300).min(2_000) as u32,
        min_silence_ms: turn["silence_duration_ms"].as_u64().unwrap_or(500).clamp(100, 10_000) as u32,
        max_utterance_s: 30.0,
    }
}

fn turn_detection(turn: &Value) -> Result<Option<LiveVad>, Error> {
    match turn["type"].as_str() {
        _ if turn.is_null() => Ok(None),
        Some("server_vad") => {
            let vad = server_vad(turn);
            if !(0.1..=0.95).contains(&vad.threshold) {
                return Err(Error::invalid("turn_detection.threshold must be between 0.1 and 0.95"));
            }
            Ok(Some(vad))
        }
        // Meaning-based turn ends need a language model; the VAD is the nearest we have.
        Some("semantic_vad") => Ok(Some(server_vad(&Value::Null))),
        other => Err(Error::invalid(format!("unsupported turn_detection type {other:?}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn ga_and_beta_updates_read_into_one_shape() {
        let mut ga = SessionConfig::default();
        let session = json!({"type": "transcription", "audio": {"input": {
            "format": {"type": "audio/pcmu"}, "transcription": {"model": "gpt-4o-transcribe", "language": "en"},
            "turn_detection": null}}});
        ga.apply_ga(&session).unwrap();
        assert_eq!((ga.encoding, ga.sample_rate, ga.model.as_deref()), (PcmEncoding::Mulaw, 8_000, None));
        assert_eq!((ga.language.as_deref(), ga.turn_detection), (Some("en"), None));

        let mut beta = SessionConfig::default();
        let session = json!({"input_audio_format": "pcm16", "input_audio_transcription": {"model": "tiny.en"},
            "turn_detection": {"type": "server_vad", "silence_duration_ms": 800, "prefix_padding_ms": 200}});
        beta.apply_beta(&session).unwrap();
        assert_eq!((beta.sample_rate, beta.model.as_deref()), (24_000, Some("tiny.en")));
        let vad = beta.turn_detection.unwrap();
        assert_eq!((vad.min_silence_ms, vad.speech_pad_ms), (800, 200));

        let conversation = SessionConfig::default().apply_ga(&json!({"type": "realtime"}));
        assert!(conversation.unwrap_err().message.contains("conversation"));
        let odd_rate = json!({"audio": {"input": {"format": {"type": "audio/pcm", "rate": 44100}}}});
        assert!(SessionConfig::default().apply_ga(&odd_rate).is_err());
    }
}

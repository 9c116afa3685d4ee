//! `describe` -> `info`: what the listener's principal may use, as Home Assistant reads it. It
//! is built from the engines' model and voice lists, which are known while the weights are
//! still loading, so it is answered at once (Home Assistant waits about a second).

use super::wire::Event;
use crate::service::Service;
use serde_json::{json, Value};
use smai_core::Principal;

const VERSION: &str = env!("CARGO_PKG_VERSION");

fn attribution(name: &str, url: &str) -> Value {
    json!({"name": name, "url": url})
}

/// The info event for `principal`; a program the principal may not use is left out.
pub fn info(service: &Service, principal: &Principal) -> Event {
    let mut asr = Vec::new();
    let models = service.usable_models(principal);
    if !models.is_empty() {
        let live_vad = service.transcriber().is_some_and(|t| t.supports_live_vad());
        let models: Vec<Value> = models
            .iter()
            .map(|m| {
                json!({"name": m.id, "description": format!("Whisper {}", m.id), "version": null,
                    "attribution": attribution("OpenAI", "https://github.com/openai/whisper"),
                    "installed": true, "languages": m.languages})
            })
            .collect();
        asr.push(json!({
            "name": "smai-asr", "description": "smai speech recognition (Whisper)", "version": VERSION,
            "attribution": attribution("smai", ""), "installed": true, "models": models,
            "supports_transcript_streaming": true,
            // Our VAD ends an utterance itself when it is installed.
            "requires_external_vad": !live_vad,
        }));
    }
    let mut tts = Vec::new();
    let voices = service.usable_voices(principal);
    if !voices.is_empty() {
        let voices: Vec<Value> = voices
            .iter()
            .map(|v| {
                json!({"name": v.id, "description": format!("{} ({}, {} quality)", v.id, v.language, v.quality),
                    "version": null, "attribution": attribution("Piper", "https://github.com/rhasspy/piper"),
                    "installed": true, "languages": [v.language], "speakers": null})
            })
            .collect();
        tts.push(json!({
            "name": "smai-tts", "description": "smai text to speech (Piper voices)", "version": VERSION,
            "attribution": attribution("smai", ""), "installed": true, "voices": voices,
            "supports_synthesize_streaming": true,
        }));
    }
    let empty: [Value; 0] = [];
    Event::with_data(
        "info",
        json!({"asr": asr, "tts": tts, "handle": empty, "intent": empty, "wake": empty, "mic": empty, "snd": empty}),
    )
}

//! Wyoming text to speech on the service core: `synthesize` runs as a whole-text speech call
//! (one `audio-start`, each sentence's audio as it is ready, one `audio-stop`); the streaming
//! `synthesize-start` / `-chunk` / `-stop` runs the live text-stream session, with an
//! `audio-start` ... `audio-stop` per sentence and `synthesize-stopped` at the end.

use super::wire::Event;
use super::Step;
use crate::service::live::{LiveSpeech, SpeechEvents};
use crate::service::speech::{self, DeliveredSentences, SpeechInput};
use crate::service::{Operation, Service, SharedCall};
use serde_json::{json, Value};
use smai_core::{AudioStream, Error, SpeechEvent, SpeechOptions};
use smai_inference::audio::encode::{pcm_s16le, AudioFormat};

/// Samples per `audio-chunk` (about 93 ms at 22.05 kHz).
const SAMPLES_PER_CHUNK: usize = 2048;

/// The voice a `synthesize` or `synthesize-start` names: by `name`, else the first the key
/// may use in `language`, else the first the key may use.
fn voice_of(service: &Service, call: &SharedCall, event: &Event) -> Result<String, Error> {
    let requested = event.data.get("voice").and_then(Value::as_object);
    let field = |name: &str| requested.and_then(|v| v.get(name)).and_then(Value::as_str).filter(|s| !s.is_empty());
    if let Some(name) = field("name") {
        return Ok(name.to_owned());
    }
    let principal = call.with(|c| Ok(c.principal().clone()))?;
    let usable = service.usable_voices(&principal);
    let normal = |tag: &str| tag.to_ascii_lowercase().replace('-', "_");
    let chosen = match field("language") {
        Some(language) => {
            let wanted = normal(language);
            usable
                .iter()
                .find(|v| normal(&v.language) == wanted || normal(&v.language).starts_with(&format!("{wanted}_")))
        }
        None => usable.first(),
    };
    chosen.map(|v| v.id.clone()).ok_or_else(|| match field("language") {
        Some(language) => Error::not_found(format!("no voice this key may use speaks {language:?}")),
        None => Error::not_found("no voice this key may use is loaded"),
    })
}

/// Synthesis under way, whole or streamed.
pub enum TtsRequest {
    Whole { call: SharedCall, stream: AudioStream, delivered: DeliveredSentences, started: bool },
    Streamed { call: SharedCall, live: Option<LiveSpeech>, events: SpeechEvents, rate: u32 },
}

impl TtsRequest {
    /// A `synthesize` outside a stream: the whole text, audio out sentence by sentence.
    pub fn whole(service: &Service, call: SharedCall, event: &Event) -> Result<Self, Error> {
        call.with(|c| c.authorize(Operation::Speech))?;
        let text = event.str("text").unwrap_or_default();
        let voice = voice_of(service, &call, event)?;
        let input = SpeechInput {
            text,
            voice: &voice,
            speed: None,
            format: None,
            default_format: AudioFormat::Pcm,
            streamed: true,
        };
        let (stream, delivered) = speech::prepare(&call, input)?.start_streamed(&call)?;
        Ok(Self::Whole { call, stream, delivered, started: false })
    }

    /// `synthesize-start`: a text stream whose sentences are spoken as they complete.
    pub fn streamed(service: &Service, call: SharedCall, event: &Event) -> Result<Self, Error> {
        call.with(|c| c.authorize(Operation::SpeechStream))?;
        let voice = voice_of(service, &call, event)?;
        let rate =
            call.with(|c| Ok(c.synthesizer()?.voices()))?.iter().find(|v| v.id == voice).map_or(0, |v| v.sample_rate);
        let (live, events) = LiveSpeech::open(&call, SpeechOptions { voice, speed: 1.0, normalize: true })?;
        Ok(Self::Streamed { call, live: Some(live), events, rate })
    }

    /// `synthesize-chunk`: more text for the stream (ignored by a whole synthesis).
    pub async fn speak(&mut self, text: String) -> Result<(), Error> {
        match self {
            Self::Streamed { live: Some(live), .. } => live.speak(text).await,
            _ => Ok(()),
        }
    }

    /// `synthesize-stop`: no more text; what is pending is spoken, then the stream ends.
    pub fn stop_text(&mut self) {
        if let Self::Streamed { live, .. } = self {
            *live = None;
        }
    }

    /// Whether a stream's `synthesize-stop` has come.
    pub fn text_stopped(&self) -> bool {
        matches!(self, Self::Streamed { live: None, .. })
    }

    pub fn is_streamed(&self) -> bool {
        matches!(self, Self::Streamed { .. })
    }

    /// Waits for the engine's next output and turns it into events.
    pub async fn next(&mut self) -> Result<Step, Error> {
        match self {
            Self::Whole { call, stream, delivered, started } => match stream.recv().await {
                Some(chunk) => {
                    let chunk = chunk?;
                    delivered.sent_one();
                    let mut out = Vec::new();
                    if !*started {
                        *started = true;
                        out.push(audio_start(chunk.sample_rate));
                    }
                    out.extend(audio_chunks(&chunk.samples, chunk.sample_rate));
                    Ok(Step::Send(out))
                }
                None => {
                    delivered.sent_all();
                    call.finish(200);
                    Ok(Step::Answer(vec![Event::new("audio-stop")]))
                }
            },
            Self::Streamed { call, events, rate, .. } => match events.recv().await {
                Some(event) => Ok(Step::Send(match event? {
                    SpeechEvent::SegmentStart { .. } => vec![audio_start(*rate)],
                    SpeechEvent::Audio(chunk) => audio_chunks(&chunk.samples, chunk.sample_rate),
                    SpeechEvent::SegmentEnd { .. } => vec![Event::new("audio-stop")],
                    SpeechEvent::Cancelled => Vec::new(),
                })),
                None => {
                    call.finish(200);
                    Ok(Step::Answer(vec![Event::new("synthesize-stopped")]))
                }
            },
        }
    }

    /// Ends the request with `error` as its outcome.
    pub fn fail(&self, error: Error) -> Error {
        match self {
            Self::Whole { call, .. } | Self::Streamed { call, .. } => call.fail(error),
        }
    }
}

fn format(rate: u32) -> Value {
    json!({"rate": rate, "width": 2, "channels": 1})
}

fn audio_start(rate: u32) -> Event {
    Event::with_data("audio-start", format(rate))
}

fn audio_chunks(samples: &[f32], rate: u32) -> Vec<Event> {
    samples
        .chunks(SAMPLES_PER_CHUNK)
        .map(|piece| Event::with_data("audio-chunk", format(rate)).with_payload(pcm_s16le(piece)))
        .collect()
}

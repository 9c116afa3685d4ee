//! Wyoming speech to text on the service core's live session (the one the WebSocket and gRPC
//! streams run): `transcribe` sets the language, model and prompt; `audio-start` opens a live
//! recognition charged chunk by chunk; the transcript streams out as `transcript-chunk`s of
//! text that will not change (each utterance's final with the VAD, which then decodes no
//! partials; settled text as it comes without), and `transcript` carries the whole of it. With the VAD installed
//! an utterance that ends before `audio-stop` is answered at once; audio the client bounded
//! itself with `audio-stop` is transcribed in full.

use super::audio::{Format, ToMono};
use super::wire::Event;
use super::Step;
use crate::service::live::{LiveAudio, LiveEvents, LiveRecognition, PcmEncoding};
use crate::service::{Operation, SharedCall};
use serde_json::{json, Value};
use smai_core::{Error, LiveEvent, LiveVad, TranscribeOptions};

/// What a `transcribe` event asks for.
#[derive(Debug, Clone, Default)]
pub struct Transcribe {
    model: Option<String>,
    language: Option<String>,
    prompt: Option<String>,
    /// Silence that ends an utterance, from `vad_sensitivity`.
    min_silence_ms: Option<u32>,
}

impl Transcribe {
    pub fn of(event: &Event) -> Self {
        let text = |name: &str| event.str(name).map(str::trim).filter(|s| !s.is_empty()).map(str::to_owned);
        // Names and terms the assistant expects bias Whisper through its prompt, names first.
        let words: Vec<&str> = ["transcript_names", "transcript_terms"]
            .iter()
            .filter_map(|field| event.data.get(*field).and_then(Value::as_array))
            .flatten()
            .filter_map(Value::as_str)
            .map(str::trim)
            .filter(|w| !w.is_empty())
            .collect();
        // Home Assistant's own VAD waits 0.7 s of silence by default, 1.25 s relaxed, 0.25 s aggressive.
        let min_silence_ms = match event.str("vad_sensitivity") {
            Some("relaxed") => Some(1_250),
            Some("aggressive") => Some(250),
            Some("default") => Some(700),
            _ => None,
        };
        Self {
            model: text("name"),
            language: text("language"),
            prompt: (!words.is_empty()).then(|| words.join(", ")),
            min_silence_ms,
        }
    }
}

/// One transcription under way.
pub struct AsrRequest {
    call: SharedCall,
    live: Option<LiveRecognition>,
    pub events: LiveEvents,
    format: Format,
    mono: ToMono,
    /// The VAD ends utterances: one that ends before `audio-stop` answers the request.
    endpointing: bool,
    /// `audio-stop` came: the client sends nothing more for this request.
    audio_stopped: bool,
    text: StreamedText,
}

impl AsrRequest {
    /// Opens the request's call and live session at `audio-start`.
    pub fn open(call: SharedCall, transcribe: Transcribe, start: &Event) -> Result<Self, Error> {
        call.with(|c| c.authorize(Operation::LiveTranscription))?;
        let format = Format::of(start)?;
        let transcriber = call.with(|c| c.transcriber())?;
        let live_vad = transcriber
            .supports_live_vad()
            .then(|| LiveVad { min_silence_ms: transcribe.min_silence_ms.unwrap_or(700), ..LiveVad::default() });
        let options = TranscribeOptions {
            model: transcribe.model,
            language: transcribe.language,
            prompt: transcribe.prompt,
            live_vad,
            // Home Assistant waits for the transcript alone: no partial decoding competes with
            // the final (the chunks come from each utterance's final).
            finals_only: true,
            ..Default::default()
        };
        let audio = LiveAudio { encoding: PcmEncoding::F32le, sample_rate: format.rate };
        let (live, events) = LiveRecognition::open(&call, options, audio)?;
        let endpointing = live_vad.is_some();
        Ok(Self {
            call,
            live: Some(live),
            events,
            format,
            mono: ToMono::default(),
            endpointing,
            audio_stopped: false,
            text: StreamedText::default(),
        })
    }

    /// Feeds an `audio-chunk` (its own width and channels; the rate must stay the start's).
    pub async fn feed(&mut self, chunk: &Event) -> Result<(), Error> {
        let Some(live) = self.live.as_mut() else { return Ok(()) };
        let format = Format::of(chunk).unwrap_or(self.format);
        if format.rate != self.format.rate {
            return Err(Error::invalid(format!(
                "audio-chunk at {} Hz after audio-start at {} Hz: the rate cannot change within a stream",
                format.rate, self.format.rate
            )));
        }
        if format != self.format {
            self.mono = ToMono::default();
            self.format = format;
        }
        let samples = self.mono.convert(format, &chunk.payload);
        live.feed(&samples).await
    }

    /// `audio-stop`: the audio is complete, and all of it is transcribed.
    pub async fn stop(&mut self) -> Result<(), Error> {
        self.endpointing = false;
        self.audio_stopped = true;
        match self.live.take() {
            Some(live) => live.finish().await,
            None => Ok(()),
        }
    }

    /// Turns one engine event into the events to send. `Answer` when the request is answered
    /// (the session ended, or the VAD ended an utterance with text before `audio-stop`).
    pub fn on_event(&mut self, event: Option<Result<LiveEvent, Error>>) -> Result<Step, Error> {
        let event = match event {
            None => return Ok(Step::Answer(self.answer())),
            Some(event) => event?,
        };
        let mut out = Vec::new();
        match event {
            LiveEvent::Partial { stable_text, .. } => {
                self.text.stable = stable_text;
                out.extend(self.text.chunk());
            }
            LiveEvent::Final { segment, language, .. } => {
                self.text.finals.push_str(&segment.text);
                self.text.stable.clear();
                self.text.language = Some(language);
                out.extend(self.text.chunk());
            }
            LiveEvent::UtteranceEnd { .. } if self.endpointing && !self.text.finals.trim().is_empty() => {
                self.live = None;
                let mut answer = out;
                answer.extend(self.answer());
                return Ok(Step::Answer(answer));
            }
            _ => {}
        }
        Ok(Step::Send(out))
    }

    /// The rest of the transcript: its last chunk, `transcript` and `transcript-stop`.
    fn answer(&mut self) -> Vec<Event> {
        self.call.finish(200);
        let mut out = self.text.chunk();
        let text = self.text.finals.trim().to_owned();
        let mut transcript = json!({"text": text});
        if let Some(language) = &self.text.language {
            transcript["language"] = json!(language);
        }
        if !self.text.started {
            out.push(self.text.start());
        }
        out.push(Event::with_data("transcript", transcript));
        out.push(Event::new("transcript-stop"));
        out
    }

    pub fn stopped(&self) -> bool {
        self.audio_stopped
    }

    /// Ends the request with `error` as its outcome.
    pub fn fail(&self, error: Error) -> Error {
        self.call.fail(error)
    }
}

/// The transcript as streamed: finals so far plus the current utterance's stable prefix, of
/// which `sent` has gone out as chunks. Chunks only ever append.
#[derive(Debug, Default)]
struct StreamedText {
    finals: String,
    stable: String,
    sent: String,
    started: bool,
    language: Option<String>,
}

impl StreamedText {
    fn start(&mut self) -> Event {
        self.started = true;
        match &self.language {
            Some(language) => Event::with_data("transcript-start", json!({"language": language})),
            None => Event::new("transcript-start"),
        }
    }

    /// A chunk of what is settled and has not gone out yet (and the start before the first).
    fn chunk(&mut self) -> Vec<Event> {
        let settled = format!("{}{}", self.finals, self.stable);
        let settled = settled.trim_start();
        // A settled text that does not extend what went out adds nothing until it does.
        let Some(new) = settled.strip_prefix(self.sent.as_str()).filter(|n| !n.is_empty()) else {
            return Vec::new();
        };
        let chunk = Event::with_data("transcript-chunk", json!({"text": new}));
        self.sent = settled.to_owned();
        let mut out = Vec::new();
        if !self.started {
            out.push(self.start());
        }
        out.push(chunk);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts(events: &[Event]) -> Vec<String> {
        events.iter().map(|e| format!("{}:{}", e.kind, e.str("text").unwrap_or(""))).collect()
    }

    #[test]
    fn chunks_append_only_and_add_up_to_the_text() {
        let mut text = StreamedText { stable: " Hello".into(), ..StreamedText::default() };
        assert_eq!(texts(&text.chunk()), ["transcript-start:", "transcript-chunk:Hello"]);
        text.stable = " Hello there".into();
        assert_eq!(texts(&text.chunk()), ["transcript-chunk: there"]);
        // A final shorter than the stable prefix so far sends nothing until it catches up.
        text.finals = " Hello".into();
        text.stable.clear();
        assert!(text.chunk().is_empty());
        text.finals.push_str(" there, friend.");
        assert_eq!(texts(&text.chunk()), ["transcript-chunk:, friend."]);
        assert_eq!(text.sent, text.finals.trim());
    }

    #[test]
    fn transcribe_events_map_names_terms_and_sensitivity() {
        let event = Event::with_data(
            "transcribe",
            json!({"language": "en", "name": " ", "transcript_names": ["Kitchen Light", ""],
                "transcript_terms": ["thermostat"], "vad_sensitivity": "relaxed"}),
        );
        let transcribe = Transcribe::of(&event);
        assert_eq!(transcribe.language.as_deref(), Some("en"));
        assert_eq!(transcribe.model, None);
        assert_eq!(transcribe.prompt.as_deref(), Some("Kitchen Light, thermostat"));
        assert_eq!(transcribe.min_silence_ms, Some(1_250));
    }
}

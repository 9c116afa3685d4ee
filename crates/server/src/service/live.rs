//! Live sessions for every streaming protocol (gRPC now, WebSocket on the same pieces): raw
//! audio in any of the contract's encodings and rates, charged chunk by chunk as it arrives
//! (⌈seconds × 10⌉ over the whole session, so chunking never changes the bill), brought to
//! 16 kHz for the engine; the engine's events turned into speech start/stop, partials and
//! finals; and text streamed in for synthesis, charged per piece.

use super::SharedCall;
use smai_auth::limits::{asr_tokens, tts_tokens};
use smai_core::{
    Error, LiveEvent, LiveInput, LiveVad, Segment, SpeechOptions, TextInput, TranscribeOptions, Transcriber,
};
use smai_inference::audio::StreamResampler;
use tokio::sync::mpsc;

/// The rate the engines listen at.
const ENGINE_RATE: u32 = 16_000;
pub const MIN_SAMPLE_RATE: u32 = 8_000;
pub const MAX_SAMPLE_RATE: u32 = 48_000;

/// Encodings of raw live audio (mono), named as the WebSocket `start` message names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
pub enum PcmEncoding {
    #[default]
    #[serde(rename = "pcm_s16le")]
    S16le,
    #[serde(rename = "pcm_f32le")]
    F32le,
    /// G.711 µ-law.
    #[serde(rename = "mulaw")]
    Mulaw,
    /// G.711 A-law.
    #[serde(rename = "alaw")]
    Alaw,
}

impl PcmEncoding {
    fn bytes_per_sample(self) -> usize {
        match self {
            Self::S16le => 2,
            Self::F32le => 4,
            Self::Mulaw | Self::Alaw => 1,
        }
    }

    /// Samples in [-1, 1] of whole frames; `bytes.len()` must be a multiple of the frame size.
    fn decode(self, bytes: &[u8]) -> Vec<f32> {
        match self {
            Self::S16le => {
                bytes.chunks_exact(2).map(|b| f32::from(i16::from_le_bytes([b[0], b[1]])) / 32_768.0).collect()
            }
            Self::F32le => bytes
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .map(|x| if x.is_finite() { x.clamp(-1.0, 1.0) } else { 0.0 })
                .collect(),
            Self::Mulaw => bytes.iter().map(|&b| f32::from(mulaw_to_linear(b)) / 32_768.0).collect(),
            Self::Alaw => bytes.iter().map(|&b| f32::from(alaw_to_linear(b)) / 32_768.0).collect(),
        }
    }
}

/// G.711 µ-law expansion (ITU-T G.711 §2): the complemented byte holds sign, a 3-bit
/// segment and a 4-bit step; the bias of 0x84 is removed after shifting.
fn mulaw_to_linear(byte: u8) -> i16 {
    let u = !byte;
    let exponent = (u >> 4) & 0x07;
    let mantissa = i16::from(u & 0x0f);
    let magnitude = ((mantissa << 3) + 0x84) << exponent;
    let sample = magnitude - 0x84;
    if u & 0x80 != 0 {
        -sample
    } else {
        sample
    }
}

/// G.711 A-law expansion: even bits inverted (0x55), a set sign bit means positive.
fn alaw_to_linear(byte: u8) -> i16 {
    let a = byte ^ 0x55;
    let exponent = (a >> 4) & 0x07;
    let mantissa = i16::from(a & 0x0f);
    let magnitude = if exponent == 0 { (mantissa << 4) + 8 } else { ((mantissa << 4) + 0x108) << (exponent - 1) };
    if a & 0x80 != 0 {
        magnitude
    } else {
        -magnitude
    }
}

/// A client's voice activity settings, from any protocol: the mode and any of the numbers.
#[derive(Debug, Clone, Default, PartialEq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VadRequest {
    /// `server` or `manual`; unset: `server` when the engine has a VAD, else `manual`.
    pub mode: Option<String>,
    pub threshold: Option<f32>,
    pub min_silence_ms: Option<u32>,
    pub speech_pad_ms: Option<u32>,
    pub max_utterance_s: Option<f64>,
}

impl VadRequest {
    /// The endpointing the session gets (`None`: manual), checked against the contract's ranges.
    pub fn resolve(&self, transcriber: &dyn Transcriber) -> Result<Option<LiveVad>, Error> {
        let server = match self.mode.as_deref() {
            None | Some("") => transcriber.supports_live_vad(),
            Some("server") => true,
            Some("manual") => false,
            Some(other) => {
                return Err(Error::invalid(format!("vad mode must be \"server\" or \"manual\", not {other:?}")))
            }
        };
        let defaults = LiveVad::default();
        let vad = LiveVad {
            threshold: self.threshold.unwrap_or(defaults.threshold),
            min_silence_ms: self.min_silence_ms.unwrap_or(defaults.min_silence_ms),
            speech_pad_ms: self.speech_pad_ms.unwrap_or(defaults.speech_pad_ms),
            max_utterance_s: self.max_utterance_s.unwrap_or(defaults.max_utterance_s),
        };
        if !(0.1..=0.95).contains(&vad.threshold) {
            return Err(Error::invalid("vad threshold must be between 0.1 and 0.95"));
        }
        if !(100..=10_000).contains(&vad.min_silence_ms) || vad.speech_pad_ms > 2_000 {
            return Err(Error::invalid("vad min_silence_ms must be 100 to 10000 and speech_pad_ms at most 2000"));
        }
        if !(1.0..=30.0).contains(&vad.max_utterance_s) {
            return Err(Error::invalid("vad max_utterance_s must be between 1 and 30"));
        }
        Ok(server.then_some(vad))
    }
}

/// How a session's utterances end, as its `started` message or response says it.
pub fn describe_vad(vad: Option<LiveVad>) -> serde_json::Value {
    match vad {
        Some(v) => serde_json::json!({"mode": "server", "threshold": v.threshold, "min_silence_ms": v.min_silence_ms,
            "speech_pad_ms": v.speech_pad_ms, "max_utterance_s": v.max_utterance_s}),
        None => serde_json::json!({"mode": "manual"}),
    }
}

/// The audio a client will send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LiveAudio {
    pub encoding: PcmEncoding,
    pub sample_rate: u32,
}

/// The sending half of a live recognition: audio in, charged as it comes.
pub struct LiveRecognition {
    call: SharedCall,
    input: mpsc::Sender<LiveInput>,
    audio: LiveAudio,
    /// Bytes of a frame split across chunks.
    carry: Vec<u8>,
    resampler: Option<StreamResampler>,
    /// Samples received, at the client's rate.
    samples: u64,
}

/// The receiving half: the engine's events.
pub type LiveEvents = mpsc::Receiver<Result<LiveEvent, Error>>;

impl LiveRecognition {
    /// Opens a session on the call's recognition engine (the call is admitted already: live
    /// operations hold their slot from authorisation on).
    pub fn open(call: &SharedCall, options: TranscribeOptions, audio: LiveAudio) -> Result<(Self, LiveEvents), Error> {
        if !(MIN_SAMPLE_RATE..=MAX_SAMPLE_RATE).contains(&audio.sample_rate) {
            return Err(Error::invalid(format!(
                "sample rate {} Hz is not supported; send {MIN_SAMPLE_RATE} to {MAX_SAMPLE_RATE} Hz",
                audio.sample_rate
            )));
        }
        let transcriber = call.with(|c| c.transcriber())?;
        if let Some(model) = options.model.as_deref() {
            if !transcriber.models().iter().any(|m| m.id == model) {
                return Err(Error::not_found(format!("model {model:?} is not loaded")));
            }
        }
        let session = transcriber.open_live(options)?;
        let resampler = (audio.sample_rate != ENGINE_RATE)
            .then(|| StreamResampler::new(audio.sample_rate, ENGINE_RATE))
            .transpose()?;
        let recognition =
            Self { call: call.clone(), input: session.input, audio, carry: Vec::new(), resampler, samples: 0 };
        Ok((recognition, session.events))
    }

    /// Seconds of audio received so far.
    pub fn audio_seconds(&self) -> f64 {
        self.samples as f64 / f64::from(self.audio.sample_rate)
    }

    /// Takes one chunk: charges what it adds to the session's length (a refusal charges
    /// nothing and ends the session), then hands it to the engine.
    pub async fn feed(&mut self, bytes: &[u8]) -> Result<(), Error> {
        let frame = self.audio.encoding.bytes_per_sample();
        self.carry.extend_from_slice(bytes);
        let whole = self.carry.len() / frame * frame;
        let samples = self.audio.encoding.decode(&self.carry[..whole]);
        self.carry.drain(..whole);
        if samples.is_empty() {
            return Ok(());
        }
        let rate = self.audio.sample_rate;
        let before = asr_tokens(self.samples, rate);
        let after = asr_tokens(self.samples + samples.len() as u64, rate);
        self.call.with(|c| c.charge(after - before))?;
        self.samples += samples.len() as u64;
        let samples = match &mut self.resampler {
            None => samples,
            Some(resampler) => {
                resampler.push(&samples)?;
                resampler.take_output()
            }
        };
        self.send(LiveInput::Audio(samples)).await
    }

    /// Ends the current utterance now. The resampler's tail goes in first (a fresh one takes
    /// the next utterance), so the utterance holds every sample received before the commit.
    pub async fn commit(&mut self) -> Result<(), Error> {
        if let Some(resampler) = self.resampler.as_mut() {
            let fresh = StreamResampler::new(self.audio.sample_rate, ENGINE_RATE)?;
            let tail = std::mem::replace(resampler, fresh).finish()?;
            self.send(LiveInput::Audio(tail)).await?;
        }
        self.send(LiveInput::Commit).await
    }

    /// The end of the audio: the resampler's tail goes in, then the input closes and the
    /// engine makes the rest final.
    pub async fn finish(mut self) -> Result<(), Error> {
        if let Some(resampler) = self.resampler.take() {
            let tail = resampler.finish()?;
            if !tail.is_empty() {
                self.send(LiveInput::Audio(tail)).await?;
            }
        }
        Ok(())
    }

    async fn send(&self, input: LiveInput) -> Result<(), Error> {
        if input == LiveInput::Audio(Vec::new()) {
            return Ok(());
        }
        self.input.send(input).await.map_err(|_| Error::internal("the live session ended"))
    }
}

/// What a live recognition tells its client, in order per utterance.
#[derive(Debug, Clone, PartialEq)]
pub enum LiveUpdate {
    SpeechStarted { utterance: u32, at: f64 },
    Partial { utterance: u32, start: f64, end: f64, text: String, stable_text: String },
    Final { utterance: u32, segment: Segment, language: String },
    SpeechStopped { utterance: u32, at: f64 },
}

/// Turns engine events into updates. With the VAD ending utterances, speech starts and stops
/// where it says; without it, an utterance's speech starts with its first text and stops after
/// its last final. Text that is only silence or blanks is never reported, so silence produces
/// no final.
#[derive(Debug, Default)]
pub struct SpeechTracker {
    open: Option<u32>,
    last_end: f64,
    /// The VAD announced the stop of this utterance already.
    stopped: Option<u32>,
}

impl SpeechTracker {
    pub fn updates(&mut self, event: LiveEvent) -> Vec<LiveUpdate> {
        let mut out = Vec::new();
        match event {
            LiveEvent::SpeechStarted { utterance, at } => self.begin(utterance, at, &mut out),
            LiveEvent::SpeechStopped { utterance, at } if self.open == Some(utterance) => {
                self.open = None;
                self.stopped = Some(utterance);
                out.push(LiveUpdate::SpeechStopped { utterance, at });
            }
            LiveEvent::Final { utterance, segment, language }
                if self.stopped == Some(utterance) && !segment.text.trim().is_empty() =>
            {
                out.push(LiveUpdate::Final { utterance, segment, language });
            }
            LiveEvent::Partial { utterance, start, end, text, stable_text } if !text.trim().is_empty() => {
                self.begin(utterance, start, &mut out);
                out.push(LiveUpdate::Partial { utterance, start, end, text, stable_text });
            }
            LiveEvent::Final { utterance, segment, language } if !segment.text.trim().is_empty() => {
                self.begin(utterance, segment.start, &mut out);
                self.last_end = segment.end;
                out.push(LiveUpdate::Final { utterance, segment, language });
            }
            LiveEvent::UtteranceEnd { utterance } if self.open == Some(utterance) => out.extend(self.close()),
            _ => {}
        }
        out
    }

    fn begin(&mut self, utterance: u32, at: f64, out: &mut Vec<LiveUpdate>) {
        if self.open == Some(utterance) {
            return;
        }
        out.extend(self.close());
        self.open = Some(utterance);
        out.push(LiveUpdate::SpeechStarted { utterance, at });
    }

    /// The speech stop of the open utterance, if one is open (at the end of the session).
    pub fn close(&mut self) -> Option<LiveUpdate> {
        let utterance = self.open.take()?;
        Some(LiveUpdate::SpeechStopped { utterance, at: self.last_end })
    }
}

/// The sending half of a live synthesis: text in, charged per piece as it arrives.
pub struct LiveSpeech {
    call: SharedCall,
    input: mpsc::Sender<TextInput>,
}

/// The receiving half: segments and their audio.
pub type SpeechEvents = mpsc::Receiver<Result<smai_core::SpeechEvent, Error>>;

impl LiveSpeech {
    /// Opens a session for a call admitted for live synthesis, once the voice is known and
    /// allowed to the key (404 for an unknown voice, 403 for one off the key's list).
    pub fn open(call: &SharedCall, options: SpeechOptions) -> Result<(Self, SpeechEvents), Error> {
        let synthesizer = call.with(|c| c.synthesizer())?;
        if !synthesizer.voices().iter().any(|v| v.id == options.voice) {
            return Err(Error::not_found(format!("unknown voice {:?}", options.voice)));
        }
        call.with(|c| c.authorize_voice(&options.voice))?;
        let session = synthesizer.open_text_stream(options)?;
        Ok((Self { call: call.clone(), input: session.input }, session.events))
    }

    /// Appends text, charged one token per character first (a refusal ends the session).
    pub async fn speak(&self, text: String) -> Result<(), Error> {
        self.call.with(|c| c.charge(tts_tokens(&text)))?;
        self.send(TextInput::Text(text)).await
    }

    pub async fn flush(&self) -> Result<(), Error> {
        self.send(TextInput::Flush).await
    }

    /// Barge-in: pending text and undelivered audio are dropped.
    pub async fn cancel(&self) -> Result<(), Error> {
        self.send(TextInput::Cancel).await
    }

    async fn send(&self, input: TextInput) -> Result<(), Error> {
        self.input.send(input).await.map_err(|_| Error::internal("the speech session ended"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn g711_expansions_match_the_standard_tables() {
        assert_eq!(mulaw_to_linear(0xff), 0);
        assert_eq!(mulaw_to_linear(0x7f), 0);
        assert_eq!(mulaw_to_linear(0x80), 32_124);
        assert_eq!(mulaw_to_linear(0x00), -32_124);
        assert_eq!(alaw_to_linear(0xd5), 8);
        assert_eq!(alaw_to_linear(0x55), -8);
        assert_eq!(alaw_to_linear(0xaa), 32_256);
        assert_eq!(alaw_to_linear(0x2a), -32_256);
        // Both laws are monotonic over their positive codes.
        let mu: Vec<i16> = (0x80..=0xffu8).rev().map(mulaw_to_linear).collect();
        assert!(mu.windows(2).all(|w| w[0] < w[1]), "{mu:?}");
    }

    #[test]
    fn pcm_frames_decode_to_unit_range() {
        let s16 = PcmEncoding::S16le.decode(&[0x00, 0x80, 0xff, 0x7f]);
        assert_eq!(s16, vec![-1.0, 32_767.0 / 32_768.0]);
        let f32s: Vec<u8> = [0.5f32, f32::NAN, 3.0].iter().flat_map(|x| x.to_le_bytes()).collect();
        assert_eq!(PcmEncoding::F32le.decode(&f32s), vec![0.5, 0.0, 1.0]);
    }

    /// An engine that says whether it has a VAD, for the mode resolution.
    struct Vad(bool);

    impl Transcriber for Vad {
        fn models(&self) -> Vec<smai_core::ModelInfo> {
            Vec::new()
        }
        fn transcribe(&self, _: Vec<u8>, _: TranscribeOptions) -> Result<smai_core::TranscriptStream, Error> {
            Err(Error::internal("unused"))
        }
        fn open_live(&self, _: TranscribeOptions) -> Result<smai_core::LiveSession, Error> {
            Err(Error::internal("unused"))
        }
        fn supports_live_vad(&self) -> bool {
            self.0
        }
    }

    #[test]
    fn an_unset_vad_mode_follows_the_engine_and_settings_are_checked() {
        let unset = VadRequest::default();
        assert_eq!(unset.resolve(&Vad(true)).unwrap(), Some(LiveVad::default()));
        assert_eq!(unset.resolve(&Vad(false)).unwrap(), None, "no VAD: manual");
        let manual = VadRequest { mode: Some("manual".into()), ..Default::default() };
        assert_eq!(manual.resolve(&Vad(true)).unwrap(), None);
        let tuned = VadRequest { min_silence_ms: Some(800), speech_pad_ms: Some(0), ..Default::default() };
        let vad = tuned.resolve(&Vad(true)).unwrap().unwrap();
        assert_eq!((vad.min_silence_ms, vad.speech_pad_ms), (800, 0));
        for bad in [
            VadRequest { mode: Some("auto".into()), ..Default::default() },
            VadRequest { threshold: Some(0.99), ..Default::default() },
            VadRequest { min_silence_ms: Some(50), ..Default::default() },
            VadRequest { max_utterance_s: Some(60.0), ..Default::default() },
        ] {
            assert!(bad.resolve(&Vad(true)).is_err(), "{bad:?}");
        }
    }

    fn segment(start: f64, end: f64, text: &str) -> Segment {
        Segment { start, end, text: text.into(), ..Default::default() }
    }

    #[test]
    fn speech_starts_with_text_and_stops_after_the_last_final() {
        let mut tracker = SpeechTracker::default();
        let blank = LiveEvent::Partial { utterance: 0, start: 0.0, end: 1.0, text: " ".into(), stable_text: "".into() };
        assert!(tracker.updates(blank).is_empty(), "silence starts nothing");
        let partial =
            LiveEvent::Partial { utterance: 0, start: 0.5, end: 1.0, text: " hi".into(), stable_text: "".into() };
        let updates = tracker.updates(partial);
        assert_eq!(updates[0], LiveUpdate::SpeechStarted { utterance: 0, at: 0.5 });
        let fin = LiveEvent::Final { utterance: 0, segment: segment(0.5, 1.2, " hi"), language: "en".into() };
        assert_eq!(tracker.updates(fin).len(), 1);
        let end = tracker.updates(LiveEvent::UtteranceEnd { utterance: 0 });
        assert_eq!(end, vec![LiveUpdate::SpeechStopped { utterance: 0, at: 1.2 }]);
        // An utterance of silence: no final, no events.
        let silent = LiveEvent::Final { utterance: 1, segment: segment(2.0, 3.0, ""), language: "en".into() };
        assert!(tracker.updates(silent).is_empty());
        assert!(tracker.updates(LiveEvent::UtteranceEnd { utterance: 1 }).is_empty());
        // A new utterance without an end event closes the previous one first.
        let a = LiveEvent::Final { utterance: 2, segment: segment(4.0, 5.0, " a"), language: "en".into() };
        let b = LiveEvent::Final { utterance: 3, segment: segment(6.0, 7.0, " b"), language: "en".into() };
        tracker.updates(a);
        let updates = tracker.updates(b);
        assert_eq!(updates[0], LiveUpdate::SpeechStopped { utterance: 2, at: 5.0 });
        assert_eq!(updates[1], LiveUpdate::SpeechStarted { utterance: 3, at: 6.0 });
        assert_eq!(tracker.close(), Some(LiveUpdate::SpeechStopped { utterance: 3, at: 7.0 }));
    }
}

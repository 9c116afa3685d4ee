//! Engine traits the server calls. Implemented by smai-inference on real models, and by small
//! fakes in server tests. Results flow on bounded channels so the caller sees segments and
//! audio as they finish, and a caller that goes away is noticed by the worker.

use crate::Error;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Task {
    #[default]
    Transcribe,
    Translate,
}

#[derive(Debug, Clone, Default)]
pub struct TranscribeOptions {
    /// Model id (`tiny.en`, `base`); `None` picks the default.
    pub model: Option<String>,
    pub language: Option<String>,
    pub task: Task,
    pub prompt: Option<String>,
    /// `None`: temperature 0 with the usual fallback schedule.
    pub temperature: Option<f32>,
    pub word_timestamps: bool,
    pub beam_size: Option<usize>,
    /// Transcribe only the speech the voice activity detector finds (files; times stay the file's).
    pub vad_filter: bool,
    /// Live sessions: the voice activity detector ends utterances (server-side endpointing);
    /// `None` ends them only at commits and the end of the audio.
    pub live_vad: Option<LiveVad>,
    /// Live sessions whose VAD ends utterances: decode no partial results, only each
    /// utterance's final (and ahead of it, during pauses), so the model is free for finals
    /// when the client wants nothing else.
    pub finals_only: bool,
}

/// Server-side endpointing of a live session: speech starts at a frame whose speech
/// probability reaches `threshold` and stops after `min_silence_ms` below `threshold - 0.15`;
/// `speech_pad_ms` of audio before the start is kept; an utterance longer than
/// `max_utterance_s` is cut at its longest pause.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct LiveVad {
    pub threshold: f32,
    pub min_silence_ms: u32,
    pub speech_pad_ms: u32,
    pub max_utterance_s: f64,
}

impl Default for LiveVad {
    fn default() -> Self {
        Self { threshold: 0.5, min_silence_ms: 600, speech_pad_ms: 300, max_utterance_s: 30.0 }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Word {
    pub word: String,
    pub start: f64,
    pub end: f64,
    pub probability: f32,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Segment {
    pub id: usize,
    pub start: f64,
    pub end: f64,
    pub text: String,
    pub tokens: Vec<u32>,
    pub temperature: f32,
    pub avg_logprob: f32,
    pub compression_ratio: f32,
    pub no_speech_prob: f32,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub words: Vec<Word>,
}

/// What a transcription stream yields: first the detected language and duration, then segments.
#[derive(Debug, Clone, PartialEq)]
pub enum TranscriptEvent {
    Started { language: String, duration: f64 },
    Segment(Segment),
}

pub type TranscriptStream = mpsc::Receiver<Result<TranscriptEvent, Error>>;

/// Mono PCM samples in [-1, 1] at `sample_rate`.
#[derive(Debug, Clone, PartialEq)]
pub struct AudioChunk {
    pub samples: Vec<f32>,
    pub sample_rate: u32,
}

pub type AudioStream = mpsc::Receiver<Result<AudioChunk, Error>>;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelInfo {
    pub id: String,
    pub languages: Vec<String>,
    pub multilingual: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VoiceInfo {
    pub id: String,
    pub language: String,
    pub sample_rate: u32,
    pub quality: String,
}

#[derive(Debug, Clone)]
pub struct SpeechOptions {
    pub voice: String,
    /// 1.0 is the voice's natural pace; maps to VITS length_scale.
    pub speed: f32,
    /// Each sentence scaled to a peak of 1, as piper-tts's `normalize_audio` does: its audio
    /// comes as one chunk once the whole sentence is synthesised. Without it the voice's own
    /// level is kept (piper-tts with `normalize_audio=False`) and a sentence's audio comes in
    /// pieces as the vocoder reaches them, so the first is heard sooner.
    pub normalize: bool,
}

/// What a caller feeds a live recognition session.
#[derive(Debug, Clone, PartialEq)]
pub enum LiveInput {
    /// Mono samples in [-1, 1] at 16 kHz (callers convert other rates and encodings first).
    Audio(Vec<f32>),
    /// End the current utterance now: what is buffered becomes final.
    Commit,
}

/// What a live recognition session reports. Times are seconds from the session's first sample.
#[derive(Debug, Clone, PartialEq)]
pub enum LiveEvent {
    /// The current guess for the unsettled audio; replaces the previous partial of its
    /// utterance. `stable_text` is a prefix of `text` that later results will not change.
    Partial { utterance: u32, start: f64, end: f64, text: String, stable_text: String },
    /// A settled piece of the transcript; never revised.
    Final { utterance: u32, segment: Segment, language: String },
    /// Every final of the utterance has been reported (after a commit, or at the end of the
    /// audio); later events belong to the next utterance.
    UtteranceEnd { utterance: u32 },
    /// The voice activity detector heard speech begin (seconds from the session's start).
    SpeechStarted { utterance: u32, at: f64 },
    /// The voice activity detector heard speech end; the utterance's finals follow.
    SpeechStopped { utterance: u32, at: f64 },
}

/// A live recognition session. Dropping `input` ends the audio: the rest is made final and
/// `events` closes. Dropping `events` cancels the session: the engine stops its work.
pub struct LiveSession {
    pub input: mpsc::Sender<LiveInput>,
    pub events: mpsc::Receiver<Result<LiveEvent, Error>>,
}

/// What a caller feeds a streamed synthesis session (text arriving piece by piece).
#[derive(Debug, Clone, PartialEq)]
pub enum TextInput {
    /// Appended to the pending text; complete sentences are synthesised as they appear.
    Text(String),
    /// Synthesise whatever is pending now, complete sentence or not.
    Flush,
    /// Barge-in: drop pending text and any audio not yet delivered.
    Cancel,
}

/// What a streamed synthesis session reports, in order per segment (one sentence each).
#[derive(Debug, Clone, PartialEq)]
pub enum SpeechEvent {
    SegmentStart {
        segment: u32,
        text: String,
    },
    Audio(AudioChunk),
    SegmentEnd {
        segment: u32,
        audio_seconds: f64,
    },
    /// Answers a [`TextInput::Cancel`]: everything before it was dropped.
    Cancelled,
}

/// A streamed synthesis session. Dropping `input` means no more text: what is pending is
/// synthesised and `events` closes. Dropping `events` cancels the session.
pub struct SpeechSession {
    pub input: mpsc::Sender<TextInput>,
    pub events: mpsc::Receiver<Result<SpeechEvent, Error>>,
}

/// Whether an engine can take work. An engine whose worker is lost for good says which.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EngineHealth {
    Serving,
    Unhealthy(String),
}

/// How long an upload is, as found before it is decoded for recognition.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AudioLength {
    /// Seconds of audio; a lower bound when `within_budget` is false.
    pub seconds: f64,
    /// False when measuring stopped at the caller's budget: the audio is longer.
    pub within_budget: bool,
}

/// Speech recognition. `transcribe` takes an encoded audio file (any supported container);
/// it fails fast with `overloaded` when the model's queue is full.
pub trait Transcriber: Send + Sync + 'static {
    fn models(&self) -> Vec<ModelInfo>;
    fn transcribe(&self, audio: Vec<u8>, options: TranscribeOptions) -> Result<TranscriptStream, Error>;
    /// The upload's duration, found cheaply (the container's header, or counting decoded
    /// packets up to `budget_seconds`), so a call can be charged before its audio is decoded.
    /// Blocking; `None` when the engine cannot tell before decoding (the call is then charged
    /// at the `Started` event). Unreadable or over-long files are refused here.
    fn measure(&self, _audio: &[u8], _budget_seconds: f64) -> Result<Option<AudioLength>, Error> {
        Ok(None)
    }
    /// Opens a live session on `options.model` (or the default model).
    fn open_live(&self, options: TranscribeOptions) -> Result<LiveSession, Error>;
    /// Whether live sessions can have their utterances ended by a voice activity detector.
    fn supports_live_vad(&self) -> bool {
        false
    }
    fn health(&self) -> EngineHealth {
        EngineHealth::Serving
    }
}

/// Speech synthesis, sentence by sentence.
pub trait Synthesizer: Send + Sync + 'static {
    fn voices(&self) -> Vec<VoiceInfo>;
    fn synthesize(&self, text: String, options: SpeechOptions) -> Result<AudioStream, Error>;
    /// Opens a session that takes text as it arrives (from an LLM, say) and synthesises each
    /// sentence once it is complete. The default cuts sentences itself and calls
    /// [`Synthesizer::synthesize`] per sentence; it needs a Tokio runtime.
    fn open_text_stream(self: std::sync::Arc<Self>, options: SpeechOptions) -> Result<SpeechSession, Error> {
        if !self.voices().iter().any(|v| v.id == options.voice) {
            return Err(Error::not_found(format!("unknown voice {:?}", options.voice)));
        }
        Ok(crate::text_stream::spawn(move |text| self.synthesize(text, options.clone())))
    }
    fn health(&self) -> EngineHealth {
        EngineHealth::Serving
    }
}

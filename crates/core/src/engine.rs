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
}

/// Speech recognition. `transcribe` takes an encoded audio file (any supported container);
/// it fails fast with `overloaded` when the model's queue is full.
pub trait Transcriber: Send + Sync + 'static {
    fn models(&self) -> Vec<ModelInfo>;
    fn transcribe(&self, audio: Vec<u8>, options: TranscribeOptions) -> Result<TranscriptStream, Error>;
}

/// Speech synthesis, sentence by sentence.
pub trait Synthesizer: Send + Sync + 'static {
    fn voices(&self) -> Vec<VoiceInfo>;
    fn synthesize(&self, text: String, options: SpeechOptions) -> Result<AudioStream, Error>;
}

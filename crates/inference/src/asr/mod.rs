//! Speech recognition: the Whisper engine (files and live sessions) over the models of
//! `whisper/`, laid out as `tts/` is for synthesis, and the voice activity detector.

pub mod endpoint;
mod engine;
pub mod live;
mod live_session;
pub mod vad;
pub mod vad_filter;
pub mod vad_regions;

pub use engine::{preview_model, whisper_options, WhisperEngine};
pub use live::{LiveTranscription, StreamBuffer, StreamEvent, StreamOptions};
pub use vad::{SileroVad, VadError, VadStream};
pub use vad_regions::{speech_regions, VadParams};

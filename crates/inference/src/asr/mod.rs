//! Speech recognition: the Whisper engine (files and live sessions) over the models of
//! `whisper/`, laid out as `tts/` is for synthesis.

mod engine;
pub mod live;

pub use engine::{whisper_options, WhisperEngine};
pub use live::{LiveTranscription, StreamBuffer, StreamEvent, StreamOptions};

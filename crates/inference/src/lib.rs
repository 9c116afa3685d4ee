//! smai-inference: speech models on candle. Whisper ASR and Piper voices land here.

pub mod audio;
pub mod cli;
pub mod engine;
pub mod models;
pub mod whisper;

pub use cli::{run_asr_eval, run_transcribe, AsrEvalArgs, TranscribeArgs};
pub use engine::WhisperEngine;
pub use models::{run_models, ModelsArgs};

//! smai-inference: speech models on candle. Whisper ASR (whisper/, audio/, engine) and Piper
//! voices (vits/, phonemize/, tts/), with the model manifest and fetch step (models/).

pub mod audio;
pub mod cli;
pub mod engine;
pub mod models;
pub mod phonemize;
pub mod stream;
pub mod tts;
pub mod vits;
pub mod whisper;

pub use cli::{run_asr_bench, run_asr_eval, run_transcribe, AsrBenchArgs, AsrEvalArgs, TranscribeArgs};
pub use engine::WhisperEngine;
pub use models::{run_models, ModelsArgs};
pub use stream::{LiveTranscription, StreamEvent, StreamOptions};

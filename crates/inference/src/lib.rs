//! smai-inference: speech models on candle. Whisper ASR (asr/, whisper/, audio/) and Piper
//! voices (tts/, vits/, phonemize/), on one model runtime (runtime/), with the model manifest
//! and fetch step (models/).

pub mod asr;
pub mod audio;
pub mod cpu_gemm;
pub mod cpu_isa;
pub mod cpu_pool;
pub mod models;
pub mod phonemize;
pub mod runtime;
pub mod tts;
pub mod vits;
pub mod whisper;

/// The device type engines load onto (from `device_from_name`), for crates without candle.
pub use candle_core::Device;

pub use asr::{LiveTranscription, StreamEvent, StreamOptions, WhisperEngine};
pub use runtime::{device_from_name, device_name};
pub use tts::PiperSynthesizer;

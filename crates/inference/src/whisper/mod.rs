//! Whisper speech recognition on candle: CTranslate2 / Hugging Face weight loading, the
//! faster-whisper decoding procedure, and long-form transcription.

pub mod alignment;
pub(crate) mod attention_kernels;
pub mod beam;
pub mod bpe;
pub mod compute_type;
pub mod cpu_attention;
mod cpu_bf16;
mod cpu_f16;
mod cpu_int8;
pub mod cpu_linear;
pub mod cpu_ops;
mod cpu_panels;
pub mod ct2;
pub mod generate;
mod kv_cache;
pub mod load;
pub mod logits;
pub mod model;
pub mod network;
#[cfg(test)]
pub(crate) mod packed_check;
mod stem;
pub mod tokenizer;
pub mod transcribe;
pub mod words;

pub use compute_type::{ComputeType, ComputeTypes};
pub use load::LoadError;
pub use model::WhisperModel;
pub use transcribe::{transcribe, transcribe_features, transcribe_until, window_token_cap, Features, WhisperOptions};

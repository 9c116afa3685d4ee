//! Text to speech with Piper voices: voice configuration, the streaming engine, output
//! encoders and the command-line entry points.

pub mod cli;
pub mod encode;
pub mod engine;
pub mod voices;

pub use encode::{encode, AudioFormat};
pub use engine::PiperSynthesizer;
pub use voices::{VoiceSpec, VoicesConfig};

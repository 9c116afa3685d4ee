//! Text to speech with Piper voices: voice configuration and the streaming engine (output
//! encoders are in `audio::encode`).

pub mod engine;
pub mod voices;

pub use engine::PiperSynthesizer;
pub use voices::{VoiceSpec, VoicesConfig};

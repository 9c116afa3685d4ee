//! Audio in and out: decode any supported container to mono, the one resampler, Whisper's
//! log-mel features, and the output encoders of synthesized speech.

mod decode;
pub mod encode;
pub mod mel;
pub mod opus;
mod resample;

pub use decode::{decode_audio, decode_to_mono_16k, DecodedAudio};
pub use encode::{encode, pcm_s16le, AudioFormat, EncodeError};
pub use resample::resample;

/// Whisper's input rate.
pub const SAMPLE_RATE: u32 = 16_000;

//! Audio input for recognition: decode any supported container to mono, resample to 16 kHz,
//! and compute Whisper's log-mel features.

mod decode;
pub mod mel;
pub mod opus;
mod resample;

pub use decode::{decode_audio, decode_to_mono_16k, DecodedAudio};
pub use resample::resample;

/// Whisper's input rate.
pub const SAMPLE_RATE: u32 = 16_000;

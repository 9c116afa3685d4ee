//! Audio in and out: decode any supported container to mono, the one resampler, Whisper's
//! log-mel features, and the output encoders of synthesized speech.

mod decode;
pub mod encode;
mod matroska;
pub mod mel;
pub mod opus;
mod probe;
mod resample;

pub use decode::{decode_to_mono_16k, decode_with_limits, DecodeLimits, MAX_SAMPLE_RATE, MIN_SAMPLE_RATE};
pub use encode::{encode, pcm_s16le, AudioFormat, EncodeError};
pub use probe::{probe_duration, DurationSource, Probe};
pub use resample::{resample, StreamResampler};

/// Whisper's input rate.
pub const SAMPLE_RATE: u32 = 16_000;

//! How long an upload is, found cheaply for admission before any full decode: from what the
//! container states, else by decoding (without keeping, downmixing or resampling samples)
//! only until the duration passes the caller's budget.

use super::decode::{check_rate, contained};
use smai_core::Error;

/// Where a probed duration comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DurationSource {
    /// The container's header. [`super::decode_with_limits`] never decodes much past it
    /// (1 s or 1%), so charging it bounds the work whatever the header claims.
    Stated,
    /// Packets decoded and counted.
    Decoded,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Probe {
    /// Seconds of audio; a lower bound when `within_budget` is false.
    pub seconds: f64,
    pub source: DurationSource,
    /// False when the duration passed the budget: decoding stopped there, and the file is at
    /// least `seconds` long (a stated duration is always reported whole).
    pub within_budget: bool,
}

/// The duration of an upload, decoding at most about `budget_seconds` of it (plus one
/// packet) when the container does not state it. Refuses what decoding would refuse early:
/// unreadable files, unsupported codecs and sample rates.
pub fn probe_duration(bytes: &[u8], budget_seconds: f64) -> Result<Probe, Error> {
    contained(bytes, |mut opened| {
        if let Some(seconds) = opened.stated_seconds {
            let within_budget = seconds <= budget_seconds;
            return Ok(Probe { seconds, source: DurationSource::Stated, within_budget });
        }
        let mut seconds = 0.0f64;
        let mut decoded_any = false;
        while let Some(audio) = opened.next(decoded_any)? {
            let rate = audio.spec().rate;
            check_rate(rate)?;
            decoded_any = true;
            seconds += audio.frames() as f64 / rate as f64;
            if seconds > budget_seconds {
                return Ok(Probe { seconds, source: DurationSource::Decoded, within_budget: false });
            }
        }
        if seconds == 0.0 {
            return Err(Error::invalid("the audio file contains no samples"));
        }
        Ok(Probe { seconds, source: DurationSource::Decoded, within_budget: true })
    })
}

//! The one resampler of smai: band-limited (rubato's synchronous FFT resampler), for audio
//! into Whisper (to 16 kHz) and speech out of Piper (to the rate a client asks for).

use rubato::{FftFixedIn, Resampler};
use smai_core::Error;

const CHUNK: usize = 1024;
/// The highest rate asked of the resampler.
const MAX_RATE: u32 = 384_000;

/// Resamples mono audio; the output has `round(len * to / from)` samples, aligned in time.
pub fn resample(samples: &[f32], from: u32, to: u32) -> Result<Vec<f32>, Error> {
    if from == to {
        return Ok(samples.to_vec());
    }
    if from == 0 || to == 0 || to > MAX_RATE {
        return Err(Error::invalid(format!("cannot resample from {from} Hz to {to} Hz")));
    }
    let mut rs = FftFixedIn::<f32>::new(from as usize, to as usize, CHUNK, 2, 1).map_err(Error::internal)?;
    let expected = (samples.len() as u64 * to as u64).div_ceil(from as u64) as usize;
    let delay = rs.output_delay();
    let mut out = Vec::with_capacity(expected + delay + CHUNK);
    let mut pos = 0;
    while pos + rs.input_frames_next() <= samples.len() {
        let n = rs.input_frames_next();
        let block = rs.process(&[&samples[pos..pos + n]], None).map_err(Error::internal)?;
        out.extend_from_slice(&block[0]);
        pos += n;
    }
    if pos < samples.len() {
        let block = rs.process_partial(Some(&[&samples[pos..]]), None).map_err(Error::internal)?;
        out.extend_from_slice(&block[0]);
    }
    // Flush the filter's delay line.
    while out.len() < expected + delay {
        let block = rs.process_partial::<&[f32]>(None, None).map_err(Error::internal)?;
        if block[0].is_empty() {
            break;
        }
        out.extend_from_slice(&block[0]);
    }
    let end = (delay + expected).min(out.len());
    Ok(out[delay.min(end)..end].to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sine_keeps_frequency_amplitude_and_length() {
        let from = 44_100;
        let f = 440.0f32;
        let n = from as usize; // one second
        let x: Vec<f32> = (0..n).map(|i| (2.0 * std::f32::consts::PI * f * i as f32 / from as f32).sin()).collect();
        let y = resample(&x, from, 16_000).unwrap();
        assert_eq!(y.len(), 16_000);
        // Away from the edges the output is the same sine sampled at 16 kHz.
        let max_err = (2000..14000)
            .map(|i| (y[i] - (2.0 * std::f32::consts::PI * f * i as f32 / 16_000.0).sin()).abs())
            .fold(0.0f32, f32::max);
        assert!(max_err < 0.01, "max error {max_err}");
    }
}

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
    let mut stream = StreamResampler::new(from, to)?;
    stream.push(samples)?;
    stream.finish()
}

/// The resampler fed piece by piece, so a decoder never holds a whole recording at its own
/// rate: input waits in one block of `CHUNK` frames and only the output grows. Fed the same
/// samples, it gives exactly what [`resample`] gives.
pub struct StreamResampler {
    rs: FftFixedIn<f32>,
    from: u32,
    to: u32,
    pending: Vec<f32>,
    consumed: u64,
    /// Output frames still to drop: the filter's delay.
    skip: usize,
    out: Vec<f32>,
    /// Output frames already handed out by `take_output`.
    taken: usize,
}

impl StreamResampler {
    pub fn new(from: u32, to: u32) -> Result<Self, Error> {
        if from == 0 || to == 0 || to > MAX_RATE || from > MAX_RATE {
            return Err(Error::invalid(format!("cannot resample from {from} Hz to {to} Hz")));
        }
        let rs = FftFixedIn::<f32>::new(from as usize, to as usize, CHUNK, 2, 1).map_err(Error::internal)?;
        let skip = rs.output_delay();
        Ok(Self { rs, from, to, pending: Vec::with_capacity(CHUNK), consumed: 0, skip, out: Vec::new(), taken: 0 })
    }

    /// Output frames produced so far (a lower bound on the final length).
    pub fn output_len(&self) -> usize {
        self.out.len()
    }

    /// Hands out the output produced so far (live audio goes on as it is resampled);
    /// `finish` then gives only what follows.
    pub fn take_output(&mut self) -> Vec<f32> {
        let out = std::mem::take(&mut self.out);
        self.taken += out.len();
        out
    }

    pub fn push(&mut self, mut samples: &[f32]) -> Result<(), Error> {
        self.consumed += samples.len() as u64;
        while !samples.is_empty() {
            let need = self.rs.input_frames_next();
            if self.pending.is_empty() && samples.len() >= need {
                let block = self.rs.process(&[&samples[..need]], None).map_err(Error::internal)?;
                self.emit(&block[0]);
                samples = &samples[need..];
                continue;
            }
            let take = (need - self.pending.len()).min(samples.len());
            self.pending.extend_from_slice(&samples[..take]);
            samples = &samples[take..];
            if self.pending.len() == need {
                let block = self.rs.process(&[&self.pending], None).map_err(Error::internal)?;
                self.pending.clear();
                self.emit(&block[0]);
            }
        }
        Ok(())
    }

    fn emit(&mut self, block: &[f32]) {
        let dropped = self.skip.min(block.len());
        self.skip -= dropped;
        self.out.extend_from_slice(&block[dropped..]);
    }

    /// Flushes the filter; the output has `ceil(len * to / from)` samples.
    pub fn finish(mut self) -> Result<Vec<f32>, Error> {
        let expected =
            ((self.consumed * self.to as u64).div_ceil(self.from as u64) as usize).saturating_sub(self.taken);
        if !self.pending.is_empty() {
            let block = self.rs.process_partial(Some(&[&self.pending]), None).map_err(Error::internal)?;
            self.emit(&block[0]);
        }
        // Flush the filter's delay line (`skip` is left when the input was shorter than it).
        // A call can yield nothing while the FFT block fills (rates sharing few factors with
        // the target have blocks longer than a chunk); two seconds of zeros past what is
        // missing covers any block, since a block is at most one second of input.
        let missing = (expected + self.skip).saturating_sub(self.out.len()) as u64;
        let zeros = missing * self.from as u64 / self.to as u64 + 2 * self.from as u64;
        let mut calls = zeros / self.rs.input_frames_next() as u64 + 2;
        while self.out.len() < expected + self.skip && calls > 0 {
            let block = self.rs.process_partial::<&[f32]>(None, None).map_err(Error::internal)?;
            self.emit(&block[0]);
            calls -= 1;
        }
        self.out.truncate(expected);
        Ok(self.out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_taken_piece_by_piece_equals_the_whole() {
        let input: Vec<f32> = (0..24_000).map(|i| (i as f32 * 0.01).sin()).collect();
        let whole = resample(&input, 24_000, 16_000).unwrap();
        let mut stream = StreamResampler::new(24_000, 16_000).unwrap();
        let mut pieces = Vec::new();
        for chunk in input.chunks(777) {
            stream.push(chunk).unwrap();
            pieces.extend(stream.take_output());
        }
        pieces.extend(stream.finish().unwrap());
        assert_eq!(pieces, whole);
    }

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

    #[test]
    fn streamed_in_uneven_pieces_equals_one_call() {
        let x: Vec<f32> = (0..50_000).map(|i| ((i * 7919) % 2001) as f32 / 1000.0 - 1.0).collect();
        let whole = resample(&x, 48_000, 16_000).unwrap();
        let mut stream = StreamResampler::new(48_000, 16_000).unwrap();
        let mut pos = 0;
        for size in [1, 1023, 1024, 3000, 17].iter().cycle() {
            let end = (pos + size).min(x.len());
            stream.push(&x[pos..end]).unwrap();
            pos = end;
            if pos == x.len() {
                break;
            }
        }
        assert_eq!(stream.finish().unwrap(), whole);
        assert_eq!(whole.len(), 50_000usize.div_ceil(3));
    }
}

//! Whisper's log-mel front end, following faster-whisper's `FeatureExtractor`: periodic Hann
//! window, n_fft 400, hop 160, reflect-padded centred STFT over audio padded with 160 zeros,
//! power spectrum without the last frame, Slaney mel filters, log10 clamped at 1e-10, floor at
//! max - 8, then (x + 4) / 4.

use rustfft::{num_complex::Complex, FftPlanner};

pub const N_FFT: usize = 400;
pub const HOP_LENGTH: usize = 160;
/// Frames in one 30 s window.
pub const N_FRAMES: usize = 3000;

/// Slaney-normalised mel filter bank (librosa `htk=False, norm="slaney"`), `n_mels x (N_FFT/2+1)`.
pub fn mel_filters(n_mels: usize, sample_rate: f64) -> Vec<Vec<f32>> {
    let n_bins = N_FFT / 2 + 1;
    let fft_freqs: Vec<f64> = (0..n_bins).map(|i| i as f64 * sample_rate / N_FFT as f64).collect();
    // Slaney mel scale: linear below 1 kHz, logarithmic above.
    let f_sp = 200.0 / 3.0;
    let min_log_hz = 1000.0;
    let min_log_mel = min_log_hz / f_sp;
    let logstep = 6.4f64.ln() / 27.0;
    let hz_to_mel = |hz: f64| if hz >= min_log_hz { min_log_mel + (hz / min_log_hz).ln() / logstep } else { hz / f_sp };
    let mel_to_hz = |m: f64| if m >= min_log_mel { min_log_hz * (logstep * (m - min_log_mel)).exp() } else { f_sp * m };
    let max_mel = hz_to_mel(sample_rate / 2.0);
    let freqs: Vec<f64> = (0..n_mels + 2).map(|i| mel_to_hz(max_mel * i as f64 / (n_mels + 1) as f64)).collect();
    (0..n_mels)
        .map(|m| {
            let (lo, mid, hi) = (freqs[m], freqs[m + 1], freqs[m + 2]);
            let enorm = 2.0 / (hi - lo);
            fft_freqs
                .iter()
                .map(|&f| {
                    let lower = (f - lo) / (mid - lo);
                    let upper = (hi - f) / (hi - mid);
                    (lower.min(upper).max(0.0) * enorm) as f32
                })
                .collect()
        })
        .collect()
}

/// Computes features for 16 kHz mono audio. Returns `(n_mels, n_frames, data)` with data
/// row-major `[n_mels][n_frames]`; `n_frames = len / 160 + 1`.
pub struct LogMel {
    filters: Vec<Vec<f32>>,
    /// Non-zero range of each filter, to skip the zeros.
    spans: Vec<(usize, usize)>,
    window: Vec<f32>,
}

impl LogMel {
    pub fn new(n_mels: usize) -> Self {
        let filters = mel_filters(n_mels, 16_000.0);
        let spans = filters
            .iter()
            .map(|row| {
                let first = row.iter().position(|&w| w != 0.0).unwrap_or(0);
                let last = row.iter().rposition(|&w| w != 0.0).map_or(0, |l| l + 1);
                (first, last.max(first))
            })
            .collect();
        let window = (0..N_FFT)
            .map(|i| (0.5 - 0.5 * (2.0 * std::f64::consts::PI * i as f64 / N_FFT as f64).cos()) as f32)
            .collect();
        Self { filters, spans, window }
    }

    pub fn n_mels(&self) -> usize {
        self.filters.len()
    }

    pub fn compute(&self, audio: &[f32]) -> (usize, Vec<f32>) {
        let mut padded = audio.to_vec();
        padded.extend(std::iter::repeat_n(0.0, HOP_LENGTH));
        let n = padded.len();
        let half = N_FFT / 2;
        // Reflect padding like numpy's "reflect" (edge sample not repeated), folding as needed.
        let reflect = |i: isize| -> f32 {
            if n == 1 {
                return padded[0];
            }
            let period = 2 * (n as isize - 1);
            let mut j = i.rem_euclid(period);
            if j >= n as isize {
                j = period - j;
            }
            padded[j as usize]
        };
        let n_frames = 1 + n / HOP_LENGTH - 1; // the STFT's last frame is dropped
        let n_frames = n_frames.max(1);
        let n_bins = N_FFT / 2 + 1;
        let fft = FftPlanner::<f32>::new().plan_fft_forward(N_FFT);
        let mut frame = vec![Complex::new(0.0f32, 0.0); N_FFT];
        let mut power = vec![0.0f32; n_bins];
        let n_mels = self.n_mels();
        let mut mel = vec![0.0f32; n_mels * n_frames];
        for t in 0..n_frames {
            let start = (t * HOP_LENGTH) as isize - half as isize;
            for (k, c) in frame.iter_mut().enumerate() {
                *c = Complex::new(reflect(start + k as isize) * self.window[k], 0.0);
            }
            fft.process(&mut frame);
            for (p, c) in power.iter_mut().zip(&frame) {
                *p = c.norm_sqr();
            }
            for (m, (row, &(a, b))) in self.filters.iter().zip(&self.spans).enumerate() {
                let e: f32 = row[a..b].iter().zip(&power[a..b]).map(|(w, p)| w * p).sum();
                mel[m * n_frames + t] = e.max(1e-10).log10();
            }
        }
        let max = mel.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        for v in mel.iter_mut() {
            *v = (v.max(max - 8.0) + 4.0) / 4.0;
        }
        (n_frames, mel)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frame_count_and_range() {
        let lm = LogMel::new(80);
        let audio: Vec<f32> = (0..16_000).map(|i| (i as f32 * 0.05).sin() * 0.3).collect();
        let (frames, mel) = lm.compute(&audio);
        assert_eq!(frames, 101);
        assert_eq!(mel.len(), 80 * 101);
        let max = mel.iter().copied().fold(f32::MIN, f32::max);
        let min = mel.iter().copied().fold(f32::MAX, f32::min);
        assert!((max - min) <= 2.0 + 1e-5, "floor at max - 8 in log10 is 2.0 after scaling");
    }

    #[test]
    fn filters_are_slaney_normalised_triangles() {
        let f = mel_filters(80, 16_000.0);
        assert_eq!(f.len(), 80);
        assert_eq!(f[0].len(), 201);
        // Each filter's area in Hz is 1 (Slaney normalisation), up to discretisation.
        for row in &f[5..75] {
            let area: f32 = row.iter().sum::<f32>() * 40.0;
            assert!((area - 1.0).abs() < 0.35, "area {area}");
        }
    }
}

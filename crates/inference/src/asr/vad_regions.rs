//! Speech regions from per-frame VAD probabilities, with the rules of the `silero-vad` wheel's
//! timestamp function (its default mode): speech starts at a frame at or above `threshold`,
//! and inside speech only frames below `threshold - 0.15` count as silence (hysteresis); a
//! silence of `min_silence_ms` ends the region, regions of `min_speech_ms` or less are dropped,
//! a region longer than `max_speech_s` is cut at the longest pause it held, and regions are
//! widened by `speech_pad_ms` (halving the gap where two would overlap).

use super::vad::{FRAME, SAMPLE_RATE};
use std::ops::Range;

#[derive(Debug, Clone, PartialEq)]
pub struct VadParams {
    pub threshold: f32,
    /// Below this, a frame inside speech is silence; `threshold - 0.15` (at least 0.01) by default.
    pub neg_threshold: Option<f32>,
    pub min_speech_ms: u32,
    pub min_silence_ms: u32,
    pub speech_pad_ms: u32,
    pub max_speech_s: f64,
}

impl Default for VadParams {
    fn default() -> Self {
        Self {
            threshold: 0.5,
            neg_threshold: None,
            min_speech_ms: 250,
            min_silence_ms: 100,
            speech_pad_ms: 30,
            max_speech_s: f64::INFINITY,
        }
    }
}

impl VadParams {
    pub fn silence_below(&self) -> f32 {
        self.neg_threshold.unwrap_or((self.threshold - 0.15).max(0.01))
    }
}

/// Pauses inside speech longer than this (98 ms) are remembered as places to cut a long region.
const CUT_CANDIDATE_SAMPLES: f64 = 98.0 * 16.0;

fn samples_of_ms(ms: u32) -> f64 {
    f64::from(SAMPLE_RATE) * f64::from(ms) / 1000.0
}

/// The scan over frames: where the open region started and the pauses seen inside it.
#[derive(Default)]
struct Scan {
    open: Option<usize>,
    /// Where the current run of silence inside speech began.
    silence_from: Option<usize>,
    /// Pauses of the open region (start, length), candidates for a cut at the maximum length.
    pauses: Vec<(usize, usize)>,
    regions: Vec<Range<usize>>,
}

/// Speech regions in samples of the 16 kHz signal of `total_samples` scored as `probs`.
pub fn speech_regions(probs: &[f32], total_samples: usize, params: &VadParams) -> Vec<Range<usize>> {
    let min_speech = samples_of_ms(params.min_speech_ms);
    let min_silence = samples_of_ms(params.min_silence_ms);
    let pad = samples_of_ms(params.speech_pad_ms);
    let max_speech = f64::from(SAMPLE_RATE) * params.max_speech_s - FRAME as f64 - 2.0 * pad;
    let quiet = params.silence_below();
    let mut scan = Scan::default();
    for (i, &p) in probs.iter().enumerate() {
        let at = i * FRAME;
        if p >= params.threshold {
            if let Some(from) = scan.silence_from.take() {
                if (at - from) as f64 > CUT_CANDIDATE_SAMPLES {
                    scan.pauses.push((from, at - from));
                }
            }
            if scan.open.is_none() {
                scan.open = Some(at);
                continue;
            }
        }
        let Some(start) = scan.open else { continue };
        if (at - start) as f64 > max_speech {
            scan.cut_long_region(at);
        }
        if p < quiet && scan.open.is_some() {
            let from = *scan.silence_from.get_or_insert(at);
            if ((at - from) as f64) >= min_silence {
                let start = scan.open.take().expect("checked open");
                if (from - start) as f64 > min_speech {
                    scan.regions.push(start..from);
                }
                scan.silence_from = None;
                scan.pauses.clear();
            }
        }
    }
    if let Some(start) = scan.open {
        if (total_samples.saturating_sub(start)) as f64 > min_speech {
            scan.regions.push(start..total_samples);
        }
    }
    pad_regions(scan.regions, pad as usize, total_samples)
}

impl Scan {
    /// Ends the open region at its longest pause and opens the next one after it; without a
    /// pause, ends it here.
    fn cut_long_region(&mut self, at: usize) {
        let start = self.open.expect("cut only while open");
        match self.pauses.iter().copied().max_by_key(|&(_, len)| len) {
            Some((pause, len)) => {
                self.regions.push(start..pause);
                self.open = Some(pause + len);
            }
            None => {
                self.regions.push(start..at);
                self.open = None;
            }
        }
        self.silence_from = None;
        self.pauses.clear();
    }
}

fn pad_regions(mut regions: Vec<Range<usize>>, pad: usize, total: usize) -> Vec<Range<usize>> {
    if let Some(first) = regions.first_mut() {
        first.start = first.start.saturating_sub(pad);
    }
    for i in 0..regions.len() {
        if i + 1 == regions.len() {
            regions[i].end = (regions[i].end + pad).min(total);
            break;
        }
        let gap = regions[i + 1].start.saturating_sub(regions[i].end);
        if gap < 2 * pad {
            regions[i].end += gap / 2;
            regions[i + 1].start -= gap / 2;
        } else {
            regions[i].end = (regions[i].end + pad).min(total);
            regions[i + 1].start -= pad;
        }
    }
    regions
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frames(pattern: &[(f32, usize)]) -> Vec<f32> {
        pattern.iter().flat_map(|&(p, n)| std::iter::repeat_n(p, n)).collect()
    }

    #[test]
    fn silence_alone_gives_no_region() {
        let probs = frames(&[(0.1, 200)]);
        assert!(speech_regions(&probs, 200 * FRAME, &VadParams::default()).is_empty());
    }

    #[test]
    fn frames_between_the_thresholds_keep_speech_going() {
        // 0.4 is below the threshold but above threshold - 0.15: no silence run starts.
        let probs = frames(&[(0.1, 10), (0.9, 20), (0.4, 40), (0.9, 20), (0.1, 20)]);
        let regions =
            speech_regions(&probs, probs.len() * FRAME, &VadParams { speech_pad_ms: 0, ..Default::default() });
        assert_eq!(regions, vec![10 * FRAME..90 * FRAME]);
    }

    #[test]
    fn a_short_blip_is_dropped_and_a_pause_splits_regions() {
        // 5 frames (160 ms) of speech is under 250 ms; 60 frames of silence split the rest.
        let probs = frames(&[(0.9, 5), (0.1, 30), (0.9, 30), (0.1, 60), (0.9, 30), (0.1, 10)]);
        let params = VadParams { speech_pad_ms: 0, ..Default::default() };
        let regions = speech_regions(&probs, probs.len() * FRAME, &params);
        assert_eq!(regions, vec![35 * FRAME..65 * FRAME, 125 * FRAME..155 * FRAME]);
    }

    #[test]
    fn a_long_region_is_cut_at_its_longest_pause() {
        // Pauses of 4 and 8 frames (128 and 256 ms) are too short to end speech with a
        // 500 ms minimum silence; past 3 s the region is cut at the longer pause.
        let probs = frames(&[(0.9, 30), (0.1, 4), (0.9, 30), (0.1, 8), (0.9, 30), (0.1, 5), (0.9, 40)]);
        let params = VadParams { speech_pad_ms: 0, min_silence_ms: 500, max_speech_s: 3.0, ..Default::default() };
        let regions = speech_regions(&probs, probs.len() * FRAME, &params);
        assert_eq!(regions[0], 0..64 * FRAME);
        assert_eq!(regions[1].start, 72 * FRAME);
    }
}

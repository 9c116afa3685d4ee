//! `vad_filter` for files, as faster-whisper's `vad_filter=True` does it: the VAD finds the
//! speech (regions of at most 30 s, so each fits one Whisper window; pauses under 2 s kept,
//! 400 ms of padding), only that audio is joined and transcribed, and every time in the result
//! is mapped back to the original file. Long silences are never shown to the model, so it
//! cannot invent text in them.

use super::vad::{SileroVad, SAMPLE_RATE};
use super::vad_regions::{speech_regions, VadParams};
use smai_core::{Error, Segment, TranscriptEvent};

/// faster-whisper's defaults for files, with regions bounded by Whisper's window.
pub fn file_params() -> VadParams {
    VadParams { min_speech_ms: 0, min_silence_ms: 2_000, speech_pad_ms: 400, max_speech_s: 30.0, ..Default::default() }
}

/// The speech of a file joined end to end, and where each piece came from.
pub struct SpeechOnly {
    pub audio: Vec<f32>,
    pub map: TimeMap,
}

/// Pieces of the joined audio: (start in the joined audio, start in the file, length), seconds.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TimeMap {
    pieces: Vec<(f64, f64, f64)>,
}

impl TimeMap {
    fn from_regions(regions: &[std::ops::Range<usize>]) -> Self {
        let rate = f64::from(SAMPLE_RATE);
        let mut joined = 0.0;
        let pieces = regions
            .iter()
            .map(|r| {
                let len = (r.end - r.start) as f64 / rate;
                let piece = (joined, r.start as f64 / rate, len);
                joined += len;
                piece
            })
            .collect();
        Self { pieces }
    }

    /// The file's time of joined time `t`. A time on the seam of two pieces is the end of the
    /// earlier one when it ends something (`is_end`), else the start of the later one.
    pub fn original(&self, t: f64, is_end: bool) -> f64 {
        let inside = |&&(from, _, len): &&(f64, f64, f64)| {
            if is_end {
                t > from && t <= from + len
            } else {
                t >= from && t < from + len
            }
        };
        match self.pieces.iter().find(inside).or(self.pieces.last()) {
            Some(&(from, original, len)) => original + (t - from).clamp(0.0, len),
            None => t,
        }
    }

    /// Moves a segment and its words onto the file's time line.
    pub fn remap(&self, segment: &mut Segment) {
        segment.start = self.original(segment.start, false);
        segment.end = self.original(segment.end, true).max(segment.start);
        for word in &mut segment.words {
            word.start = self.original(word.start, false);
            word.end = self.original(word.end, true).max(word.start);
        }
    }

    /// The event as the caller must see it: times in the file, the file's whole duration.
    pub fn event(&self, event: TranscriptEvent, file_seconds: f64) -> TranscriptEvent {
        match event {
            TranscriptEvent::Started { language, .. } => TranscriptEvent::Started { language, duration: file_seconds },
            TranscriptEvent::Segment(mut segment) => {
                self.remap(&mut segment);
                TranscriptEvent::Segment(segment)
            }
        }
    }
}

/// Keeps the speech of 16 kHz `pcm` that the VAD finds with `params`.
pub fn keep_speech(vad: &SileroVad, pcm: &[f32], params: &VadParams) -> Result<SpeechOnly, Error> {
    let probs = vad.probabilities(pcm).map_err(|e| Error::internal(format!("voice activity detection: {e}")))?;
    let regions = speech_regions(&probs, pcm.len(), params);
    let audio = regions.iter().flat_map(|r| pcm[r.clone()].iter().copied()).collect();
    Ok(SpeechOnly { audio, map: TimeMap::from_regions(&regions) })
}

#[cfg(test)]
mod tests {
    use super::*;
    use smai_core::Word;

    #[test]
    fn joined_times_map_back_to_the_file() {
        // Speech at 1-3 s and 10-12 s of the file: joined as 0-2 s and 2-4 s.
        let rate = SAMPLE_RATE as usize;
        let map = TimeMap::from_regions(&[rate..3 * rate, 10 * rate..12 * rate]);
        assert_eq!(map.original(0.5, false), 1.5);
        assert_eq!(map.original(2.0, true), 3.0);
        assert_eq!(map.original(2.0, false), 10.0);
        assert_eq!(map.original(3.5, true), 11.5);
        // Past the joined audio (a padded last window) stays at the end of the last piece.
        assert_eq!(map.original(9.0, true), 12.0);

        let mut segment = Segment {
            start: 1.0,
            end: 3.0,
            words: vec![Word { word: " two".into(), start: 1.0, end: 2.0, probability: 0.9 }],
            ..Default::default()
        };
        map.remap(&mut segment);
        assert_eq!((segment.start, segment.end), (2.0, 11.0));
        assert_eq!((segment.words[0].start, segment.words[0].end), (2.0, 3.0));
    }

    #[test]
    fn no_speech_maps_nothing_and_keeps_times() {
        let map = TimeMap::from_regions(&[]);
        assert_eq!(map.original(1.25, true), 1.25);
        let started = map.event(TranscriptEvent::Started { language: "en".into(), duration: 0.0 }, 42.0);
        assert_eq!(started, TranscriptEvent::Started { language: "en".into(), duration: 42.0 });
    }
}

//! Word timestamps of a decoded window, following faster-whisper's `add_word_timestamps`:
//! align the window's text, cap over-long words at sentence ends, merge punctuation into its
//! neighbours, hand the words to their segments, and reconcile segment and word boundaries
//! after pauses.

use super::alignment::{find_alignment, WordTiming};
use super::model::WhisperModel;
use candle_core::Tensor;
use smai_core::Word;

/// faster-whisper's defaults for `prepend_punctuations` / `append_punctuations`.
pub const PREPEND_PUNCTUATIONS: &str = "\"'“¿([{-";
pub const APPEND_PUNCTUATIONS: &str = "\"'.。,，!！?？:：”)]}、";
const SENTENCE_END_MARKS: &str = ".。!！?？";

/// A segment of a window while its words are attached (times in seconds).
#[derive(Debug, Clone, PartialEq)]
pub struct TimedSegment {
    pub start: f64,
    pub end: f64,
    /// Text tokens only (no timestamps).
    pub text_tokens: Vec<u32>,
    pub words: Vec<Word>,
}

/// Merges leading punctuation into the following word and trailing punctuation into the
/// previous one; merged-away entries keep an empty word (their tokens move).
/// Membership tests are substring tests, as in the reference.
pub fn merge_punctuations(alignment: &mut [WordTiming], prepended: &str, appended: &str) {
    let n = alignment.len();
    if n >= 2 {
        let mut j = n - 1;
        for i in (0..n - 1).rev() {
            let previous = &alignment[i];
            if previous.word.starts_with(' ') && prepended.contains(previous.word.trim()) {
                let previous = std::mem::take(&mut alignment[i].word);
                let tokens = std::mem::take(&mut alignment[i].tokens);
                let following = &mut alignment[j];
                following.word = previous + &following.word;
                following.tokens = tokens.into_iter().chain(following.tokens.drain(..)).collect();
            } else {
                j = i;
            }
        }
    }
    let mut i = 0;
    for j in 1..n {
        if !alignment[i].word.ends_with(' ') && appended.contains(alignment[j].word.as_str()) {
            let word = std::mem::take(&mut alignment[j].word);
            let tokens = std::mem::take(&mut alignment[j].tokens);
            alignment[i].word.push_str(&word);
            alignment[i].tokens.extend(tokens);
        } else {
            i = j;
        }
    }
}

/// `np.median` of the non-zero durations, capped at 0.7 s.
fn median_duration(alignment: &[WordTiming]) -> Option<f64> {
    let mut d: Vec<f64> = alignment.iter().map(|w| w.end - w.start).filter(|&d| d != 0.0).collect();
    if d.is_empty() {
        return None;
    }
    d.sort_by(f64::total_cmp);
    let m = d.len() / 2;
    let median = if d.len() % 2 == 1 { d[m] } else { (d[m - 1] + d[m]) / 2.0 };
    Some(median.min(0.7))
}

/// Python's `round(x, 2)` for the magnitudes of timestamps.
fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

/// Attaches `alignment` (one window, times from `time_offset`) to `segments`, adjusting their
/// bounds; `last_speech` is where speech last ended. Returns the updated `last_speech`.
pub fn add_word_timestamps(
    segments: &mut [TimedSegment],
    mut alignment: Vec<WordTiming>,
    time_offset: f64,
    mut last_speech: f64,
) -> f64 {
    let median = median_duration(&alignment);
    let median_duration = median.unwrap_or(0.0);
    let max_duration = median_duration * 2.0;
    if median.is_some() {
        // Words at sentence boundaries are no longer than twice the median word.
        for i in 1..alignment.len() {
            if alignment[i].end - alignment[i].start > max_duration {
                if SENTENCE_END_MARKS.contains(alignment[i].word.as_str()) {
                    alignment[i].end = alignment[i].start + max_duration;
                } else if SENTENCE_END_MARKS.contains(alignment[i - 1].word.as_str()) {
                    alignment[i].start = alignment[i].end - max_duration;
                }
            }
        }
    }
    merge_punctuations(&mut alignment, PREPEND_PUNCTUATIONS, APPEND_PUNCTUATIONS);

    let mut word_index = 0;
    for segment in segments.iter_mut() {
        let mut saved_tokens = 0;
        let mut words: Vec<Word> = Vec::new();
        while word_index < alignment.len() && saved_tokens < segment.text_tokens.len() {
            let timing = &alignment[word_index];
            if !timing.word.is_empty() {
                words.push(Word {
                    word: timing.word.clone(),
                    start: round2(time_offset + timing.start),
                    end: round2(time_offset + timing.end),
                    probability: timing.probability as f32,
                });
            }
            saved_tokens += timing.tokens.len();
            word_index += 1;
        }
        if !words.is_empty() {
            fit_boundaries(segment, &mut words, last_speech, median_duration, max_duration);
            last_speech = segment.end;
        }
        segment.words = words;
    }
    last_speech
}

/// After a pause the first words are kept to a plausible length; the segment's own start/end
/// win over a first/last word that overreaches them by more than half a second.
fn fit_boundaries(segment: &mut TimedSegment, words: &mut [Word], last_speech: f64, median: f64, max: f64) {
    let n = words.len();
    let first_too_long = words[0].end - words[0].start > max || (n > 1 && words[1].end - words[0].start > max * 2.0);
    if words[0].end - last_speech > median * 4.0 && first_too_long {
        if n > 1 && words[1].end - words[1].start > max {
            let boundary = (words[1].end / 2.0).max(words[1].end - max);
            words[0].end = boundary;
            words[1].start = boundary;
        }
        words[0].start = (words[0].end - max).max(0.0);
    }
    if segment.start < words[0].end && segment.start - 0.5 > words[0].start {
        words[0].start = (words[0].end - median).min(segment.start).max(0.0);
    } else {
        segment.start = words[0].start;
    }
    let last = n - 1;
    if segment.end > words[last].start && segment.end + 0.5 < words[last].end {
        words[last].end = (words[last].start + median).max(segment.end);
    } else {
        segment.end = words[last].end;
    }
}

/// Aligns all text of a window's `segments` at once and attaches the words; returns the
/// updated end of speech.
#[allow(clippy::too_many_arguments)]
pub fn attach_window_words(
    model: &WhisperModel,
    encoded: &Tensor,
    sot_sequence: &[u32],
    language: &str,
    segments: &mut [TimedSegment],
    time_offset: f64,
    num_frames: usize,
    last_speech: f64,
) -> candle_core::Result<f64> {
    if segments.is_empty() {
        return Ok(last_speech);
    }
    let text: Vec<u32> = segments.iter().flat_map(|s| s.text_tokens.iter().copied()).collect();
    let alignment = find_alignment(model, encoded, sot_sequence, &text, num_frames, language)?;
    Ok(add_word_timestamps(segments, alignment, time_offset, last_speech))
}

/// Where speech ends in a window's segments: the last word's end, else the last segment's.
pub fn last_word_end(segments: &[TimedSegment]) -> Option<f64> {
    segments.iter().rev().find_map(|s| s.words.last().map(|w| w.end)).or_else(|| segments.last().map(|s| s.end))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn timing(word: &str, start: f64, end: f64) -> WordTiming {
        WordTiming { word: word.into(), tokens: vec![word.len() as u32], start, end, probability: 0.9 }
    }

    #[test]
    fn punctuation_joins_its_neighbours() {
        let mut a =
            vec![timing(" \"", 0.0, 0.1), timing("Hi", 0.1, 0.3), timing(",", 0.3, 0.4), timing(" you", 0.4, 0.6)];
        merge_punctuations(&mut a, PREPEND_PUNCTUATIONS, APPEND_PUNCTUATIONS);
        let words: Vec<&str> = a.iter().map(|w| w.word.as_str()).collect();
        assert_eq!(words, ["", " \"Hi,", "", " you"]);
        assert_eq!(a[1].tokens, vec![2, 2, 1]);
    }

    #[test]
    fn words_go_to_their_segments_and_long_first_words_are_cut() {
        let alignment = vec![
            timing(" a", 0.0, 3.0), // starts long before it is said
            timing(" b", 3.0, 3.4),
            timing(" c", 3.4, 3.6),
            timing(" d", 5.0, 5.2),
        ];
        let seg = |start, end, n: usize| TimedSegment { start, end, text_tokens: vec![7; n], words: vec![] };
        let mut segments = vec![seg(12.6, 13.6, 3), seg(15.0, 15.2, 1)];
        let last = add_word_timestamps(&mut segments, alignment, 10.0, 0.0);
        let close = |a: f64, b: f64| (a - b).abs() < 1e-9;
        let s0: Vec<(f64, f64)> = segments[0].words.iter().map(|w| (w.start, w.end)).collect();
        // Durations 3.0, 0.4, 0.2, 0.2: median 0.3, so the first word after the pause is cut to 0.6 s.
        let expected = [(12.4, 13.0), (13.0, 13.4), (13.4, 13.6)];
        assert!(s0.iter().zip(expected).all(|(a, b)| close(a.0, b.0) && close(a.1, b.1)), "{s0:?}");
        assert!(close(segments[0].start, 12.4) && close(segments[0].end, 13.6));
        assert_eq!(segments[1].words.len(), 1);
        assert_eq!(last, segments[1].end);
        assert_eq!(last_word_end(&segments), Some(15.2));
    }
}

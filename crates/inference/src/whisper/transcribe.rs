//! Long-form transcription with sliding 30 s windows, following faster-whisper's
//! `generate_segments`: each window is decoded with timestamps, cut into segments at
//! timestamp pairs, and the next window starts at the last complete timestamp.

use super::generate::{detect_language, generate_with_fallback, DecodeOptions, DecodeResult, WindowBudget};
use super::logits::{LogitRules, TimestampTokens};
use super::model::WhisperModel;
use super::words::{attach_window_words, last_word_end, TimedSegment};
use crate::audio::mel::{LogMel, N_FRAMES};
use candle_core::Tensor;
use smai_core::{Error, Segment, Task, TranscriptEvent};

/// Seconds per mel frame, and per timestamp token (the encoder halves the frame rate).
const TIME_PER_FRAME: f64 = 0.01;
const TIME_PRECISION: f64 = 0.02;
const INPUT_STRIDE: usize = 2;

/// New tokens a window may generate per second of its audio, and beyond that. Speech runs at
/// about 3 text tokens a second plus a timestamp pair per segment; 8 a second plus 8 leaves
/// room for the fastest speaker, and stops a model looping on a short clip within a few
/// tokens instead of at the text context's limit (full windows stay at that limit).
const TOKENS_PER_SECOND: f64 = 8.0;
const TOKENS_PER_WINDOW: usize = 8;

/// The most new tokens a window of `seconds` of audio may cost.
pub fn window_token_cap(seconds: f64) -> usize {
    (seconds.max(0.0) * TOKENS_PER_SECOND).ceil() as usize + TOKENS_PER_WINDOW
}

/// faster-whisper's defaults for `WhisperModel.transcribe`.
#[derive(Debug, Clone)]
pub struct WhisperOptions {
    pub language: Option<String>,
    pub task: Task,
    /// Text the first window is conditioned on (faster-whisper's `initial_prompt`).
    pub initial_prompt: Option<String>,
    pub temperatures: Vec<f32>,
    pub best_of: usize,
    pub beam_size: usize,
    pub compression_ratio_threshold: Option<f32>,
    pub log_prob_threshold: Option<f32>,
    pub no_speech_threshold: Option<f32>,
    pub condition_on_previous_text: bool,
    pub prompt_reset_on_temperature: f32,
    pub suppress_blank: bool,
    pub without_timestamps: bool,
    pub max_initial_timestamp: f64,
    /// Word-level timestamps from cross-attention alignment.
    pub word_timestamps: bool,
}

impl Default for WhisperOptions {
    fn default() -> Self {
        Self {
            language: None,
            task: Task::Transcribe,
            initial_prompt: None,
            temperatures: vec![0.0, 0.2, 0.4, 0.6, 0.8, 1.0],
            best_of: 5,
            beam_size: 5,
            compression_ratio_threshold: Some(2.4),
            log_prob_threshold: Some(-1.0),
            no_speech_threshold: Some(0.6),
            condition_on_previous_text: true,
            prompt_reset_on_temperature: 0.5,
            suppress_blank: true,
            without_timestamps: false,
            max_initial_timestamp: 1.0,
            word_timestamps: false,
        }
    }
}

fn internal(e: candle_core::Error) -> Error {
    Error::internal(format!("whisper: {e}"))
}

/// The features of frames `[seek, seek + size)`, zero padded to a full window.
fn window(features: &[f32], n_frames: usize, n_mels: usize, seek: usize, size: usize) -> Vec<f32> {
    let mut out = vec![0.0f32; n_mels * N_FRAMES];
    for m in 0..n_mels {
        let row = &features[m * n_frames..(m + 1) * n_frames];
        out[m * N_FRAMES..m * N_FRAMES + size].copy_from_slice(&row[seek..seek + size]);
    }
    out
}

struct Piece {
    start: f64,
    end: f64,
    tokens: Vec<u32>,
}

/// A window whose last token is a timestamp preceded by text has no speech after it.
fn single_timestamp_ending(tokens: &[u32], ts_begin: u32) -> bool {
    let n = tokens.len();
    n >= 2 && tokens[n - 2] < ts_begin && tokens[n - 1] >= ts_begin
}

/// Cuts a window's tokens at consecutive timestamps; returns the pieces and the new seek.
fn split_by_timestamps(
    tokens: &[u32],
    ts_begin: u32,
    time_offset: f64,
    segment_size: usize,
    segment_duration: f64,
    seek: usize,
) -> (Vec<Piece>, usize) {
    let is_ts = |t: u32| t >= ts_begin;
    let n = tokens.len();
    let single_timestamp_ending = single_timestamp_ending(tokens, ts_begin);
    let consecutive: Vec<usize> = (1..n).filter(|&i| is_ts(tokens[i]) && is_ts(tokens[i - 1])).collect();
    let time = |t: u32| time_offset + (t - ts_begin) as f64 * TIME_PRECISION;
    if consecutive.is_empty() {
        let mut duration = segment_duration;
        if let Some(&last) = tokens.iter().rev().find(|&&t| is_ts(t)) {
            if last != ts_begin {
                duration = (last - ts_begin) as f64 * TIME_PRECISION;
            }
        }
        let piece = Piece { start: time_offset, end: time_offset + duration, tokens: tokens.to_vec() };
        return (vec![piece], seek + segment_size);
    }
    let mut slices = consecutive;
    if single_timestamp_ending {
        slices.push(n);
    }
    let mut pieces = Vec::new();
    let mut last_slice = 0;
    for &cut in &slices {
        let part = &tokens[last_slice..cut];
        pieces.push(Piece { start: time(part[0]), end: time(part[part.len() - 1]), tokens: part.to_vec() });
        last_slice = cut;
    }
    let next_seek = if single_timestamp_ending {
        seek + segment_size
    } else {
        seek + (tokens[last_slice - 1] - ts_begin) as usize * INPUT_STRIDE
    };
    (pieces, next_seek)
}

/// Log-mel features of a whole recording, computed before the model's queue.
pub struct Features {
    pub n_frames: usize,
    pub values: Vec<f32>,
    /// Seconds of audio.
    pub duration: f64,
}

impl Features {
    pub fn compute(mel: &LogMel, audio: &[f32]) -> Self {
        let (n_frames, values) = mel.compute(audio);
        Self { n_frames, values, duration: audio.len() as f64 / crate::audio::SAMPLE_RATE as f64 }
    }

    /// Frames of content: the last one only pads the final hop.
    fn content_frames(&self) -> usize {
        self.n_frames - 1
    }

    /// The features of `w`, zero padded to a full window, as `WhisperModel::encode` takes them.
    fn window(&self, n_mels: usize, w: Window) -> Vec<f32> {
        window(&self.values, self.n_frames, n_mels, w.seek, w.size)
    }
}

/// Frames `[seek, seek + size)` of a recording, decoded as one 30 s window.
#[derive(Debug, Clone, Copy)]
struct Window {
    seek: usize,
    size: usize,
}

impl Window {
    fn at(seek: usize, features: &Features) -> Self {
        Self { seek, size: N_FRAMES.min(features.content_frames() - seek) }
    }

    fn time_offset(self) -> f64 {
        self.seek as f64 * TIME_PER_FRAME
    }

    fn duration(self) -> f64 {
        self.size as f64 * TIME_PER_FRAME
    }

    fn end(self) -> usize {
        self.seek + self.size
    }
}

/// Transcribes 16 kHz mono audio. `emit` receives the start event then each segment; when it
/// returns false (the caller went away) decoding stops.
pub fn transcribe(
    model: &mut WhisperModel,
    audio: &[f32],
    opts: &WhisperOptions,
    emit: impl FnMut(TranscriptEvent) -> bool,
) -> Result<(), Error> {
    let features = Features::compute(&model.mel, audio);
    transcribe_features(model, &features, opts, emit)
}

/// Like [`transcribe`], from features computed beforehand (off the model's thread).
pub fn transcribe_features(
    model: &mut WhisperModel,
    features: &Features,
    opts: &WhisperOptions,
    emit: impl FnMut(TranscriptEvent) -> bool,
) -> Result<(), Error> {
    transcribe_until(model, features, opts, &|| false, emit)
}

/// Like [`transcribe_features`], stopping before the next decoder step once `cancelled`
/// says so (the caller went away), not only when `emit` is refused between segments.
pub fn transcribe_until(
    model: &mut WhisperModel,
    features: &Features,
    opts: &WhisperOptions,
    cancelled: &dyn Fn() -> bool,
    mut emit: impl FnMut(TranscriptEvent) -> bool,
) -> Result<(), Error> {
    let (language, first_encoded) = choose_language(model, features, opts)?;
    if !emit(TranscriptEvent::Started { language: language.clone(), duration: features.duration }) {
        return Ok(());
    }
    Transcription::new(model, opts, language, cancelled)?.run(features, first_encoded, emit)
}

/// The language asked for (checked against the model), else the one detected on the first
/// window; the encoded first window comes back when detection needed it.
fn choose_language(
    model: &WhisperModel,
    features: &Features,
    opts: &WhisperOptions,
) -> Result<(String, Option<Tensor>), Error> {
    let tok = &model.tokenizer;
    if !tok.multilingual {
        if let Some(l) = opts.language.as_deref().filter(|l| *l != "en") {
            return Err(Error::invalid(format!("model {} is English-only; language {l:?} is not available", model.id)));
        }
        return Ok(("en".into(), None));
    }
    if let Some(l) = &opts.language {
        tok.language_token(l).ok_or_else(|| Error::invalid(format!("unknown language {l:?}")))?;
        return Ok((l.clone(), None));
    }
    let encoded = model.encode(&features.window(model.mel.n_mels(), Window::at(0, features))).map_err(internal)?;
    let best = detect_language(model, &encoded).map_err(internal)?;
    let language = best.first().and_then(|(id, _)| tok.language_code(*id)).unwrap_or("en").to_string();
    Ok((language, Some(encoded)))
}

/// Token rules of every step: what is never sampled, what may not open a window, timestamps.
fn logit_rules(model: &WhisperModel, opts: &WhisperOptions) -> LogitRules {
    let tok = &model.tokenizer;
    let mut suppress = model.generation.suppress_ids.clone();
    suppress.extend([tok.transcribe, tok.translate, tok.sot, tok.sot_prev, tok.no_speech]);
    suppress.extend(tok.sot_lm);
    suppress.sort_unstable();
    suppress.dedup();
    LogitRules {
        suppress,
        suppress_begin: if opts.suppress_blank { model.generation.suppress_ids_begin.clone() } else { vec![] },
        timestamps: (!opts.without_timestamps).then(|| TimestampTokens {
            eot: tok.eot,
            no_timestamps: tok.no_timestamps,
            timestamp_begin: tok.timestamp_begin,
            timestamp_end: tok.vocab_size() as u32 - 1,
        }),
        max_initial_timestamp_index: (opts.max_initial_timestamp / TIME_PRECISION).round() as u32,
    }
}

/// A recording decoded window after window, as faster-whisper's `generate_segments`: each
/// window is decoded with temperature fallback (`generate_with_fallback`), cut into segments
/// at timestamp pairs, and the next window starts where the last complete segment ends.
struct Transcription<'a> {
    model: &'a mut WhisperModel,
    opts: &'a WhisperOptions,
    language: String,
    sot_sequence: Vec<u32>,
    decode: DecodeOptions,
    /// Tokens of every segment so far; the next window's prompt is taken from the end of
    /// those after `prompt_reset_since`.
    history: Vec<u32>,
    prompt_reset_since: usize,
    next_id: usize,
    /// Where the last word ended (word timestamps).
    last_speech: f64,
    cancelled: &'a dyn Fn() -> bool,
}

impl<'a> Transcription<'a> {
    fn new(
        model: &'a mut WhisperModel,
        opts: &'a WhisperOptions,
        language: String,
        cancelled: &'a dyn Fn() -> bool,
    ) -> Result<Self, Error> {
        let tok = &model.tokenizer;
        let translate = tok.multilingual && opts.task == Task::Translate;
        let sot_sequence = tok.sot_sequence(tok.language_token(&language), translate);
        let decode = DecodeOptions {
            temperatures: opts.temperatures.clone(),
            best_of: opts.best_of,
            beam_size: opts.beam_size,
            compression_ratio_threshold: opts.compression_ratio_threshold,
            log_prob_threshold: opts.log_prob_threshold,
            no_speech_threshold: opts.no_speech_threshold,
            rules: logit_rules(model, opts),
            max_length: model.max_target_positions(),
        };
        let history = match opts.initial_prompt.as_deref() {
            Some(p) => {
                let bpe = model.bpe.as_ref().ok_or_else(|| Error::invalid("this model cannot encode a prompt"))?;
                bpe.encode(&format!(" {}", p.trim()))
            }
            None => Vec::new(),
        };
        let (prompt_reset_since, next_id, last_speech) = (0, 0, 0.0);
        Ok(Self {
            model,
            opts,
            language,
            sot_sequence,
            decode,
            history,
            prompt_reset_since,
            next_id,
            last_speech,
            cancelled,
        })
    }

    /// Slides over the recording; stops early when `emit` returns false.
    fn run(
        &mut self,
        features: &Features,
        mut first_encoded: Option<Tensor>,
        mut emit: impl FnMut(TranscriptEvent) -> bool,
    ) -> Result<(), Error> {
        let mut seek = 0;
        while seek < features.content_frames() {
            if (self.cancelled)() {
                return Ok(());
            }
            let window = Window::at(seek, features);
            let encoded = match first_encoded.take().filter(|_| seek == 0) {
                Some(e) => e,
                None => self.model.encode(&features.window(self.model.mel.n_mels(), window)).map_err(internal)?,
            };
            let Some((next, segments)) = self.decode_window(window, &encoded)? else { return Ok(()) };
            seek = next;
            for segment in segments {
                if !emit(TranscriptEvent::Segment(segment)) {
                    return Ok(());
                }
            }
        }
        Ok(())
    }

    /// The previous text (at most half the text context), then the start-of-transcript tokens.
    fn prompt(&self) -> Vec<u32> {
        let tok = &self.model.tokenizer;
        let previous = &self.history[self.prompt_reset_since..];
        let max_history = self.model.max_target_positions() / 2 - 1;
        let mut prompt = Vec::new();
        if !previous.is_empty() {
            prompt.push(tok.sot_prev);
            prompt.extend_from_slice(&previous[previous.len().saturating_sub(max_history)..]);
        }
        prompt.extend_from_slice(&self.sot_sequence);
        if self.opts.without_timestamps {
            prompt.push(tok.no_timestamps);
        }
        prompt
    }

    /// Decodes one window; returns where the next one starts and the window's segments, or
    /// `None` when cancelled.
    fn decode_window(&mut self, window: Window, encoded: &Tensor) -> Result<Option<(usize, Vec<Segment>)>, Error> {
        let prompt = self.prompt();
        let budget = WindowBudget { max_new_tokens: window_token_cap(window.duration()), cancelled: self.cancelled };
        let found = generate_with_fallback(self.model, encoded, &prompt, &self.decode, budget).map_err(internal)?;
        let Some(result) = found else { return Ok(None) };
        if self.is_silence(&result) {
            return Ok(Some((window.end(), Vec::new())));
        }
        let ts_begin = self.model.tokenizer.timestamp_begin;
        let (pieces, mut next_seek) = split_by_timestamps(
            &result.tokens,
            ts_begin,
            window.time_offset(),
            window.size,
            window.duration(),
            window.seek,
        );
        let eot = self.model.tokenizer.eot;
        let (mut timed, piece_tokens): (Vec<TimedSegment>, Vec<Vec<u32>>) = pieces
            .into_iter()
            .map(|p| {
                let text_tokens = p.tokens.iter().copied().filter(|&t| t < eot).collect();
                (TimedSegment { start: p.start, end: p.end, text_tokens, words: Vec::new() }, p.tokens)
            })
            .unzip();
        if self.opts.word_timestamps {
            next_seek = self.attach_words(encoded, window, &mut timed, &result.tokens)?.unwrap_or(next_seek);
        }
        // A window that yields no progress would loop forever; always move forward.
        let next_seek = if next_seek > window.seek { next_seek } else { window.end() };
        let segments = self.segments(timed, piece_tokens, &result);
        if !self.opts.condition_on_previous_text || result.temperature > self.opts.prompt_reset_on_temperature {
            self.prompt_reset_since = self.history.len();
        }
        Ok(Some((next_seek, segments)))
    }

    /// A window the model takes for silence, unless its text is likely enough.
    fn is_silence(&self, result: &DecodeResult) -> bool {
        let Some(threshold) = self.opts.no_speech_threshold else { return false };
        result.no_speech_prob > threshold && !self.opts.log_prob_threshold.is_some_and(|lp| result.avg_logprob > lp)
    }

    /// Aligns the window's words; returns where the next window starts when the words say so
    /// (where the last word ends, unless the window ended on a lone timestamp).
    fn attach_words(
        &mut self,
        encoded: &Tensor,
        window: Window,
        timed: &mut [TimedSegment],
        tokens: &[u32],
    ) -> Result<Option<usize>, Error> {
        let (offset, size) = (window.time_offset(), window.size);
        let (model, sot, language) = (&*self.model, &self.sot_sequence, &self.language);
        self.last_speech = attach_window_words(model, encoded, sot, language, timed, offset, size, self.last_speech)
            .map_err(internal)?;
        let end = last_word_end(timed);
        self.last_speech = end.unwrap_or(self.last_speech);
        if single_timestamp_ending(tokens, self.model.tokenizer.timestamp_begin) {
            return Ok(None);
        }
        Ok(end.filter(|&e| e > offset).map(|e| (e / TIME_PER_FRAME).round() as usize))
    }

    /// The window's pieces that hold text, as numbered segments; their tokens join the history.
    fn segments(&mut self, timed: Vec<TimedSegment>, tokens: Vec<Vec<u32>>, result: &DecodeResult) -> Vec<Segment> {
        let mut segments = Vec::new();
        for (piece, tokens) in timed.into_iter().zip(tokens) {
            let text = self.model.tokenizer.decode(&tokens);
            if piece.start == piece.end || text.trim().is_empty() {
                continue;
            }
            self.history.extend_from_slice(&tokens);
            segments.push(Segment {
                id: self.next_id,
                start: piece.start,
                end: piece.end,
                text,
                tokens,
                temperature: result.temperature,
                avg_logprob: result.avg_logprob,
                compression_ratio: result.compression_ratio,
                no_speech_prob: result.no_speech_prob,
                words: piece.words,
            });
            self.next_id += 1;
        }
        segments
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TB: u32 = 100;

    #[test]
    fn splits_at_timestamp_pairs_and_seeks_to_last_complete_one() {
        // <0.00> a b <1.00><1.00> c <2.00> d   (unfinished last segment)
        let tokens = [TB, 1, 2, TB + 50, TB + 50, 3, TB + 100, 4];
        let (pieces, seek) = split_by_timestamps(&tokens, TB, 10.0, 3000, 30.0, 1000);
        assert_eq!(pieces.len(), 1);
        assert_eq!((pieces[0].start, pieces[0].end), (10.0, 11.0));
        assert_eq!(seek, 1000 + 50 * 2);
    }

    #[test]
    fn single_timestamp_ending_consumes_the_window() {
        let tokens = [TB, 1, TB + 50, TB + 50, 2, TB + 75];
        let (pieces, seek) = split_by_timestamps(&tokens, TB, 0.0, 2000, 20.0, 0);
        assert_eq!(pieces.len(), 2);
        assert_eq!((pieces[1].start, pieces[1].end), (1.0, 1.5));
        assert_eq!(seek, 2000);
    }

    #[test]
    fn no_pairs_makes_one_segment_ending_at_last_timestamp() {
        let tokens = [TB, 1, 2, TB + 40];
        let (pieces, seek) = split_by_timestamps(&tokens, TB, 5.0, 900, 9.0, 500);
        assert_eq!(pieces.len(), 1);
        assert!((pieces[0].end - 5.8).abs() < 1e-9);
        assert_eq!(seek, 1400);
    }
}

//! Long-form transcription with sliding 30 s windows, following faster-whisper's
//! `generate_segments`: each window is decoded with timestamps, cut into segments at
//! timestamp pairs, and the next window starts at the last complete timestamp.

use super::generate::{detect_language, generate_with_fallback, DecodeOptions};
use super::logits::{LogitRules, TimestampTokens};
use super::model::WhisperModel;
use super::words::{attach_window_words, last_word_end, TimedSegment};
use crate::audio::mel::N_FRAMES;
use smai_core::{Error, Segment, Task, TranscriptEvent};

/// Seconds per mel frame, and per timestamp token (the encoder halves the frame rate).
const TIME_PER_FRAME: f64 = 0.01;
const TIME_PRECISION: f64 = 0.02;
const INPUT_STRIDE: usize = 2;

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

/// Log-mel features of a whole recording.
pub struct Features {
    pub n_frames: usize,
    pub values: Vec<f32>,
    /// Seconds of audio.
    pub duration: f64,
}

impl Features {
    pub fn compute(model: &WhisperModel, audio: &[f32]) -> Self {
        let (n_frames, values) = model.mel.compute(audio);
        Self { n_frames, values, duration: audio.len() as f64 / crate::audio::SAMPLE_RATE as f64 }
    }

    /// The first 30 s window (zero padded), as `WhisperModel::encode` takes it.
    pub fn first_window(&self, n_mels: usize) -> Vec<f32> {
        window(&self.values, self.n_frames, n_mels, 0, N_FRAMES.min(self.n_frames - 1))
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
    let features = Features::compute(model, audio);
    transcribe_features(model, &features, None, opts, emit)
}

/// Like [`transcribe`] from computed features; `first_encoded`, when given, is the encoder
/// output of the first window (computed in a batch with other requests' windows).
pub fn transcribe_features(
    model: &mut WhisperModel,
    features: &Features,
    mut first_encoded: Option<candle_core::Tensor>,
    opts: &WhisperOptions,
    mut emit: impl FnMut(TranscriptEvent) -> bool,
) -> Result<(), Error> {
    let tok = model.tokenizer.clone();
    let (n_frames, duration) = (features.n_frames, features.duration);
    let features = &features.values;
    let n_mels = model.mel.n_mels();
    let content_frames = n_frames - 1;

    let language = if !tok.multilingual {
        if let Some(l) = opts.language.as_deref().filter(|l| *l != "en") {
            return Err(Error::invalid(format!("model {} is English-only; language {l:?} is not available", model.id)));
        }
        "en".to_string()
    } else if let Some(l) = &opts.language {
        tok.language_token(l).ok_or_else(|| Error::invalid(format!("unknown language {l:?}")))?;
        l.clone()
    } else {
        let enc = match first_encoded.take() {
            Some(enc) => enc,
            None => {
                let size = N_FRAMES.min(content_frames);
                model.encode(&window(features, n_frames, n_mels, 0, size)).map_err(internal)?
            }
        };
        let best = detect_language(model, &enc).map_err(internal)?;
        first_encoded = Some(enc);
        best.first().and_then(|(id, _)| tok.language_code(*id)).unwrap_or("en").to_string()
    };
    let translate = tok.multilingual && opts.task == Task::Translate;
    let sot_sequence = tok.sot_sequence(tok.language_token(&language), translate);
    if !emit(TranscriptEvent::Started { language: language.clone(), duration }) {
        return Ok(());
    }

    let vocab = tok.vocab_size() as u32;
    let mut suppress = model.generation.suppress_ids.clone();
    suppress.extend([tok.transcribe, tok.translate, tok.sot, tok.sot_prev, tok.no_speech]);
    suppress.extend(tok.sot_lm);
    suppress.sort_unstable();
    suppress.dedup();
    let rules = LogitRules {
        suppress,
        suppress_begin: if opts.suppress_blank { model.generation.suppress_ids_begin.clone() } else { vec![] },
        timestamps: (!opts.without_timestamps).then(|| TimestampTokens {
            eot: tok.eot,
            no_timestamps: tok.no_timestamps,
            timestamp_begin: tok.timestamp_begin,
            timestamp_end: vocab - 1,
        }),
        max_initial_timestamp_index: (opts.max_initial_timestamp / TIME_PRECISION).round() as u32,
    };
    let decode_opts = DecodeOptions {
        temperatures: opts.temperatures.clone(),
        best_of: opts.best_of,
        beam_size: opts.beam_size,
        compression_ratio_threshold: opts.compression_ratio_threshold,
        log_prob_threshold: opts.log_prob_threshold,
        no_speech_threshold: opts.no_speech_threshold,
        rules,
        max_length: model.max_target_positions(),
    };
    let max_prompt_history = model.max_target_positions() / 2 - 1;

    let mut seek = 0usize;
    let mut all_tokens: Vec<u32> = Vec::new();
    if let Some(p) = opts.initial_prompt.as_deref() {
        let bpe = model.bpe.as_ref().ok_or_else(|| Error::invalid("this model cannot encode a prompt"))?;
        all_tokens = bpe.encode(&format!(" {}", p.trim()));
    }
    let mut prompt_reset_since = 0usize;
    let mut next_id = 0usize;
    let mut last_speech = 0.0f64;
    while seek < content_frames {
        let time_offset = seek as f64 * TIME_PER_FRAME;
        let segment_size = N_FRAMES.min(content_frames - seek);
        let segment_duration = segment_size as f64 * TIME_PER_FRAME;
        let encoded = match first_encoded.take().filter(|_| seek == 0) {
            Some(e) => e,
            None => model.encode(&window(features, n_frames, n_mels, seek, segment_size)).map_err(internal)?,
        };
        let previous = &all_tokens[prompt_reset_since..];
        let mut prompt = Vec::new();
        if !previous.is_empty() {
            prompt.push(tok.sot_prev);
            prompt.extend_from_slice(&previous[previous.len().saturating_sub(max_prompt_history)..]);
        }
        prompt.extend_from_slice(&sot_sequence);
        if opts.without_timestamps {
            prompt.push(tok.no_timestamps);
        }
        let result = generate_with_fallback(model, &encoded, &prompt, &decode_opts).map_err(internal)?;

        if let Some(th) = opts.no_speech_threshold {
            let mut skip = result.no_speech_prob > th;
            if opts.log_prob_threshold.is_some_and(|lp| result.avg_logprob > lp) {
                skip = false;
            }
            if skip {
                seek += segment_size;
                continue;
            }
        }
        let previous_seek = seek;
        let (pieces, mut new_seek) =
            split_by_timestamps(&result.tokens, tok.timestamp_begin, time_offset, segment_size, segment_duration, seek);
        let (mut timed, piece_tokens): (Vec<TimedSegment>, Vec<Vec<u32>>) = pieces
            .into_iter()
            .map(|p| {
                let text_tokens = p.tokens.iter().copied().filter(|&t| t < tok.eot).collect();
                (TimedSegment { start: p.start, end: p.end, text_tokens, words: Vec::new() }, p.tokens)
            })
            .unzip();
        if opts.word_timestamps {
            last_speech = attach_window_words(
                model,
                &encoded,
                &sot_sequence,
                &language,
                &mut timed,
                time_offset,
                segment_size,
                last_speech,
            )
            .map_err(internal)?;
            let end = last_word_end(&timed);
            // Unless the window ended on a lone timestamp, resume where the last word ends.
            if !single_timestamp_ending(&result.tokens, tok.timestamp_begin) {
                if let Some(end) = end.filter(|&e| e > time_offset) {
                    new_seek = (end / TIME_PER_FRAME).round() as usize;
                }
            }
            last_speech = end.unwrap_or(last_speech);
        }
        // A window that yields no progress would loop forever; always move forward.
        seek = if new_seek > previous_seek { new_seek } else { previous_seek + segment_size };
        for (piece, tokens) in timed.into_iter().zip(piece_tokens) {
            let text = tok.decode(&tokens);
            if piece.start == piece.end || text.trim().is_empty() {
                continue;
            }
            all_tokens.extend_from_slice(&tokens);
            next_id += 1;
            let segment = Segment {
                id: next_id,
                start: piece.start,
                end: piece.end,
                text,
                tokens,
                temperature: result.temperature,
                avg_logprob: result.avg_logprob,
                compression_ratio: result.compression_ratio,
                no_speech_prob: result.no_speech_prob,
                words: piece.words,
            };
            if !emit(TranscriptEvent::Segment(segment)) {
                return Ok(());
            }
        }
        if !opts.condition_on_previous_text || result.temperature > opts.prompt_reset_on_temperature {
            prompt_reset_since = all_tokens.len();
        }
    }
    Ok(())
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

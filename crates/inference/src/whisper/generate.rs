//! Decoding one 30 s window, following faster-whisper's `generate_with_fallback` over
//! CTranslate2's Whisper `generate`: greedy at temperature 0, sampling (best of N) at higher
//! temperatures, falling back while the text is too repetitive (gzip compression ratio) or
//! too unlikely (average log-probability), unless the window is silence (no-speech prob).

use super::logits::{log_softmax, LogitRules};
use super::model::WhisperModel;
use candle_core::Tensor;
use std::io::Write;

#[derive(Debug, Clone)]
pub struct DecodeOptions {
    pub temperatures: Vec<f32>,
    pub best_of: usize,
    /// Beam width at temperature 0 (1: greedy).
    pub beam_size: usize,
    pub compression_ratio_threshold: Option<f32>,
    pub log_prob_threshold: Option<f32>,
    pub no_speech_threshold: Option<f32>,
    pub rules: LogitRules,
    /// Longest prompt + generated sequence (Whisper's text context).
    pub max_length: usize,
}

/// What decoding one window may cost: at most `max_new_tokens`, and no step once `cancelled`
/// says the caller went away (checked before every decoder step).
#[derive(Clone, Copy)]
pub struct WindowBudget<'a> {
    pub max_new_tokens: usize,
    pub cancelled: &'a dyn Fn() -> bool,
}

#[derive(Debug, Clone)]
pub struct DecodeResult {
    pub tokens: Vec<u32>,
    pub avg_logprob: f32,
    pub no_speech_prob: f32,
    pub temperature: f32,
    pub compression_ratio: f32,
}

/// `len(text) / len(zlib(text))`, as faster-whisper measures repetitiveness.
pub fn compression_ratio(text: &str) -> f32 {
    let bytes = text.as_bytes();
    if bytes.is_empty() {
        return 0.0;
    }
    let mut enc = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
    let compressed = enc.write_all(bytes).and_then(|_| enc.finish()).map(|c| c.len()).unwrap_or(bytes.len());
    bytes.len() as f32 / compressed.max(1) as f32
}

/// Small deterministic generator for temperature sampling (xorshift64*).
struct Rng(u64);
impl Rng {
    fn next_f32(&mut self) -> f32 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        ((self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 40) as f32) / (1u64 << 24) as f32
    }
}

struct Hypothesis {
    tokens: Vec<u32>,
    sum_logprob: f32,
}

/// One decoding pass. Returns the hypothesis and the no-speech probability, read from the
/// raw logits at the `<|startoftranscript|>` position as CTranslate2 does; `None` when
/// cancelled.
fn decode_once(
    model: &mut WhisperModel,
    encoded: &Tensor,
    prompt: &[u32],
    rules: &LogitRules,
    temperature: f32,
    budget: WindowBudget,
    rng: &mut Rng,
) -> candle_core::Result<Option<(Hypothesis, f32)>> {
    let sot_index = prompt.iter().position(|&t| t == model.tokenizer.sot).unwrap_or(0);
    let mut state = model.start(encoded)?;
    let mut generated: Vec<u32> = Vec::new();
    let mut sum_logprob = 0.0f32;
    let mut no_speech_prob = 0.0;
    for step in 0..budget.max_new_tokens {
        if (budget.cancelled)() {
            return Ok(None);
        }
        let mut logits = if step == 0 {
            let mut both = model.feed(&mut state, prompt, &[sot_index, prompt.len() - 1])?;
            let last = both.pop().expect("two positions requested");
            let lp = log_softmax(&both[0]);
            no_speech_prob = lp.get(model.tokenizer.no_speech as usize).map_or(0.0, |v| v.exp());
            last
        } else {
            let token = *generated.last().expect("a token per step");
            model.feed(&mut state, &[token], &[0])?.pop().expect("one position requested")
        };
        let masked = rules.apply(&mut logits, &generated);
        let (token, lp) = if temperature > 0.0 {
            for v in logits.iter_mut() {
                *v /= temperature;
            }
            let lp = log_softmax(&logits);
            (sample(&logits, &lp, rng), lp)
        } else {
            (argmax(&logits), masked.unwrap_or_else(|| log_softmax(&logits)))
        };
        sum_logprob += lp[token as usize];
        if token == model.tokenizer.eot {
            break;
        }
        generated.push(token);
    }
    Ok(Some((Hypothesis { tokens: generated, sum_logprob }, no_speech_prob)))
}

fn argmax(v: &[f32]) -> u32 {
    let mut best = 0;
    for (i, &x) in v.iter().enumerate() {
        if x > v[best] {
            best = i;
        }
    }
    best as u32
}

/// A token drawn with the probabilities `lp` (the log-softmax of `logits`).
fn sample(logits: &[f32], lp: &[f32], rng: &mut Rng) -> u32 {
    let mut r = rng.next_f32();
    for (i, &l) in lp.iter().enumerate() {
        let p = l.exp();
        if r < p {
            return i as u32;
        }
        r -= p;
    }
    argmax(logits)
}

/// Decodes a window at one temperature: beam search (or greedy) at 0, the most likely of
/// `best_of` samples above it; `None` when cancelled.
fn decode_at(
    model: &mut WhisperModel,
    encoded: &Tensor,
    prompt: &[u32],
    opts: &DecodeOptions,
    temperature: f32,
    budget: WindowBudget,
    rng: &mut Rng,
) -> candle_core::Result<Option<DecodeResult>> {
    let runs = if temperature > 0.0 { opts.best_of.max(1) } else { 1 };
    let mut best: Option<(Hypothesis, f32)> = None;
    if temperature <= 0.0 && opts.beam_size > 1 {
        let found = super::beam::beam_search(model, encoded, prompt, &opts.rules, opts.beam_size, budget)?;
        let Some((tokens, sum_logprob, ns)) = found else { return Ok(None) };
        best = Some((Hypothesis { tokens, sum_logprob }, ns));
    }
    for _ in 0..runs {
        if best.is_some() && temperature <= 0.0 {
            break;
        }
        let Some((h, ns)) = decode_once(model, encoded, prompt, &opts.rules, temperature, budget, rng)? else {
            return Ok(None);
        };
        // Length penalty 1: rank by mean log-probability.
        let score = |h: &Hypothesis| h.sum_logprob / h.tokens.len().max(1) as f32;
        if best.as_ref().is_none_or(|(b, _)| score(&h) > score(b)) {
            best = Some((h, ns));
        }
    }
    let (h, no_speech_prob) = best.expect("at least one run");
    let avg_logprob = h.sum_logprob / (h.tokens.len() + 1) as f32;
    let compression_ratio = compression_ratio(model.tokenizer.decode(&h.tokens).trim());
    Ok(Some(DecodeResult { tokens: h.tokens, avg_logprob, no_speech_prob, temperature, compression_ratio }))
}

/// Decodes a window with temperature fallback: the next temperature is tried while the text
/// is too repetitive or too unlikely, unless the window is taken for silence (checked first:
/// near-empty audio gives unlikely, repetitive text at every temperature, and falling back
/// over all of them is work for nothing). `None` when cancelled.
pub fn generate_with_fallback(
    model: &mut WhisperModel,
    encoded: &Tensor,
    prompt: &[u32],
    opts: &DecodeOptions,
    budget: WindowBudget,
) -> candle_core::Result<Option<DecodeResult>> {
    // CTranslate2 bounds new tokens by half the text context; the window's audio may bound
    // them further.
    let max_new = (opts.max_length / 2).min(opts.max_length.saturating_sub(prompt.len()));
    let budget = WindowBudget { max_new_tokens: budget.max_new_tokens.min(max_new), ..budget };
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let mut all: Vec<DecodeResult> = Vec::new();
    let mut below_cr: Vec<usize> = Vec::new();
    let mut last_temperature = 0.0;
    for &temperature in &opts.temperatures {
        last_temperature = temperature;
        let Some(result) = decode_at(model, encoded, prompt, opts, temperature, budget, &mut rng)? else {
            return Ok(None);
        };
        let repetitive = opts.compression_ratio_threshold.map(|th| result.compression_ratio > th);
        if repetitive == Some(false) {
            below_cr.push(all.len());
        }
        let low_logprob = opts.log_prob_threshold.is_some_and(|th| result.avg_logprob < th);
        let silence = opts.no_speech_threshold.is_some_and(|th| result.no_speech_prob > th);
        // Silence: nothing better to find (the transcription drops the window unless its
        // text is likely enough).
        let needs_fallback = !silence && (repetitive == Some(true) || low_logprob);
        all.push(result);
        if !needs_fallback {
            return Ok(all.pop());
        }
    }
    // Every temperature failed: the most likely result, preferring non-repetitive ones.
    let pool: Vec<usize> = if below_cr.is_empty() { (0..all.len()).collect() } else { below_cr };
    let best = pool
        .into_iter()
        .max_by(|&a, &b| all[a].avg_logprob.total_cmp(&all[b].avg_logprob))
        .expect("at least one temperature");
    let mut chosen = all.swap_remove(best);
    chosen.temperature = last_temperature;
    Ok(Some(chosen))
}

/// Probabilities of the model's language tokens for an encoded window, best first.
pub fn detect_language(model: &WhisperModel, encoded: &Tensor) -> candle_core::Result<Vec<(u32, f32)>> {
    let sot = model.tokenizer.sot;
    let mut state = model.start(encoded)?;
    let logits = model.feed(&mut state, &[sot], &[0])?.pop().expect("one position");
    let ids = model.generation.lang_ids.clone();
    let lang_logits: Vec<f32> =
        ids.iter().map(|&i| logits.get(i as usize).copied().unwrap_or(f32::NEG_INFINITY)).collect();
    let lp = log_softmax(&lang_logits);
    let mut out: Vec<(u32, f32)> = ids.into_iter().zip(lp.into_iter().map(f32::exp)).collect();
    out.sort_by(|a, b| b.1.total_cmp(&a.1));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compression_ratio_flags_repetition() {
        let plain = "And so my fellow Americans, ask not what your country can do for you.";
        let looped = "thank you ".repeat(30);
        assert!(compression_ratio(plain) < 1.5);
        assert!(compression_ratio(&looped) > 2.4);
        assert_eq!(compression_ratio(""), 0.0);
    }
}

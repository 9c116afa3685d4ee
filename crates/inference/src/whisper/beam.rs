//! Beam search at temperature 0, following the beam search faster-whisper requests from
//! CTranslate2 (beam 5, patience 1, length penalty 1): each live beam proposes its best
//! continuations, the best `beam_size` unfinished ones survive, and decoding stops once
//! `beam_size` hypotheses have ended; the winner has the best mean log-probability.

use super::generate::WindowBudget;
use super::logits::{log_softmax, LogitRules};
use super::model::WhisperModel;
use candle_core::Tensor;
use rayon::prelude::*;

/// A live hypothesis; its decoder state is row `i` of the shared batch when it is `beams[i]`.
struct Beam {
    tokens: Vec<u32>,
    sum_logprob: f32,
    logits: Vec<f32>,
}

/// Returns (tokens, summed log-probability, no-speech probability); `None` when cancelled.
/// The live beams are decoded together, one row each of one decoder pass per step (as
/// CTranslate2 batches them): every weight is read once per step rather than once per beam,
/// and the cached keys and values follow their beams by row selection.
pub fn beam_search(
    model: &WhisperModel,
    encoded: &Tensor,
    prompt: &[u32],
    rules: &LogitRules,
    beam_size: usize,
    budget: WindowBudget,
) -> candle_core::Result<Option<(Vec<u32>, f32, f32)>> {
    if (budget.cancelled)() {
        return Ok(None);
    }
    let eot = model.tokenizer.eot;
    let sot_index = prompt.iter().position(|&t| t == model.tokenizer.sot).unwrap_or(0);
    let mut state = model.start(encoded)?;
    let mut first = model.feed(&mut state, prompt, &[sot_index, prompt.len() - 1])?;
    let logits = first.pop().expect("two positions requested");
    let no_speech_prob = log_softmax(&first[0]).get(model.tokenizer.no_speech as usize).map_or(0.0, |v| v.exp());
    let mut beams = vec![Beam { tokens: vec![], sum_logprob: 0.0, logits }];
    let mut finished: Vec<(Vec<u32>, f32)> = Vec::new();
    for _ in 0..budget.max_new_tokens {
        if (budget.cancelled)() {
            return Ok(None);
        }
        let next = survivors(&beams, rules, beam_size, eot, &mut finished);
        if finished.len() >= beam_size || next.is_empty() {
            break;
        }
        let parents: Vec<u32> = next.iter().map(|&(b, _, _)| b as u32).collect();
        let tokens: Vec<u32> = next.iter().map(|&(_, t, _)| t).collect();
        state.select(&parents)?;
        let logits = model.feed_rows(&mut state, &tokens)?;
        beams = next
            .into_iter()
            .zip(logits)
            .map(|((b, t, score), logits)| {
                let mut tokens = beams[b].tokens.clone();
                tokens.push(t);
                Beam { tokens, sum_logprob: score, logits }
            })
            .collect();
    }
    if finished.is_empty() {
        finished = beams.into_iter().map(|b| (b.tokens, b.sum_logprob)).collect();
    }
    let score = |(t, s): &(Vec<u32>, f32)| s / t.len().max(1) as f32;
    let best = finished.into_iter().max_by(|a, b| score(a).total_cmp(&score(b))).expect("at least one hypothesis");
    Ok(Some((best.0, best.1, no_speech_prob)))
}

/// One step's selection: each beam proposes its best continuations; ended ones join
/// `finished` (up to `beam_size`), and the best `beam_size` unfinished ones survive as
/// (parent beam, token, cumulative log-probability).
fn survivors(
    beams: &[Beam],
    rules: &LogitRules,
    beam_size: usize,
    eot: u32,
    finished: &mut Vec<(Vec<u32>, f32)>,
) -> Vec<(usize, u32, f32)> {
    // Each beam's proposals on its own thread (the log-softmaxes over the vocabulary are most
    // of a step's work outside the network), gathered in beam order.
    let proposals: Vec<Vec<(usize, u32, f32)>> = beams
        .par_iter()
        .enumerate()
        .map(|(b, beam)| {
            let mut logits = beam.logits.clone();
            let lp = rules.apply(&mut logits, &beam.tokens).unwrap_or_else(|| log_softmax(&logits));
            let mut order: Vec<u32> = (0..lp.len() as u32).collect();
            let k = (beam_size + 1).min(order.len());
            order.select_nth_unstable_by(k - 1, |&x, &y| lp[y as usize].total_cmp(&lp[x as usize]));
            order[..k]
                .iter()
                .filter(|&&t| lp[t as usize].is_finite())
                .map(|&t| (b, t, beam.sum_logprob + lp[t as usize]))
                .collect()
        })
        .collect();
    let mut candidates: Vec<(usize, u32, f32)> = proposals.into_iter().flatten().collect();
    candidates.sort_by(|a, b| b.2.total_cmp(&a.2));
    let mut next = Vec::new();
    for c in candidates {
        if c.1 == eot {
            if finished.len() < beam_size {
                finished.push((beams[c.0].tokens.clone(), c.2));
            }
        } else {
            next.push(c);
            // Ended hypotheses ranked below the last surviving beam are not kept.
            if next.len() == beam_size {
                break;
            }
        }
    }
    next
}

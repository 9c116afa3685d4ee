//! Word timings from cross-attention, following faster-whisper's `find_alignment` over
//! CTranslate2's `Whisper.align` (which follows openai/whisper `timing.py`): the decoder runs
//! once over `sot + <|notimestamps|> + text + <|endoftext|>`; the scores of the alignment
//! heads are softmaxed over the window's audio frames, standardised over tokens, median
//! filtered over time (width 7) and averaged over heads; dynamic time warping then maps each
//! token to the frame where it starts.

use super::model::WhisperModel;
use candle_core::Tensor;

/// Width of the median filter over time, as the reference uses.
pub const MEDIAN_FILTER_WIDTH: usize = 7;
/// Encoder frames per second (two mel frames each).
const TOKENS_PER_SECOND: f64 = 50.0;

/// One word of an alignment: times are seconds from the window start.
#[derive(Debug, Clone, PartialEq)]
pub struct WordTiming {
    pub word: String,
    pub tokens: Vec<u32>,
    pub start: f64,
    pub end: f64,
    pub probability: f64,
}

/// Aligns `text_tokens` (no special tokens) against an encoded window whose audio fills
/// `num_frames` mel frames.
pub fn find_alignment(
    model: &WhisperModel,
    encoded: &Tensor,
    sot_sequence: &[u32],
    text_tokens: &[u32],
    num_frames: usize,
    language: &str,
) -> candle_core::Result<Vec<WordTiming>> {
    let tok = &model.tokenizer;
    let frames = num_frames / 2;
    if text_tokens.is_empty() || frames == 0 || model.generation.alignment_heads.is_empty() {
        return Ok(Vec::new());
    }
    let mut input = sot_sequence.to_vec();
    input.push(tok.no_timestamps);
    input.extend_from_slice(text_tokens);
    input.push(tok.eot);
    let (logits, scores) = model.alignment_pass(encoded, &input)?;

    // Probability of each text token among text tokens, read where it is predicted.
    let sot_len = sot_sequence.len();
    let text_logits = logits.narrow(0, sot_len, text_tokens.len())?.narrow(1, 0, tok.eot as usize)?.contiguous()?;
    let probs = candle_nn::ops::softmax_last_dim(&text_logits)?.to_vec2::<f32>()?;
    let token_probs: Vec<f64> =
        text_tokens.iter().zip(&probs).map(|(&id, row)| row.get(id as usize).copied().unwrap_or(0.0) as f64).collect();

    let frames = frames.min(scores.first().map_or(0, |s| s.dim(1).unwrap_or(0)));
    let heads = scores
        .iter()
        .map(|s| candle_nn::ops::softmax_last_dim(&s.narrow(1, 0, frames)?.contiguous()?)?.to_vec2::<f32>())
        .collect::<candle_core::Result<Vec<_>>>()?;
    let matrix = alignment_matrix(&heads, sot_len, text_tokens.len() + 1, MEDIAN_FILTER_WIDTH);
    let path = negative_dtw(&matrix, text_tokens.len() + 1, frames);

    let mut all = text_tokens.to_vec();
    all.push(tok.eot);
    let (words, word_tokens) = tok.split_to_word_tokens(&all, language);
    Ok(words_from_path(words, word_tokens, &path, &token_probs))
}

/// Per head: standardise each frame's column over tokens, median filter each row over time;
/// then the mean over heads of rows `[first_row, first_row + rows)`.
pub fn alignment_matrix(heads: &[Vec<Vec<f32>>], first_row: usize, rows: usize, width: usize) -> Vec<Vec<f32>> {
    let frames = heads.first().and_then(|h| h.first()).map_or(0, Vec::len);
    let mut sum = vec![vec![0.0f32; frames]; rows];
    for head in heads {
        let n = head.len() as f32;
        let mut normed = head.clone();
        for f in 0..frames {
            let mean = head.iter().map(|r| r[f]).sum::<f32>() / n;
            let var = head.iter().map(|r| (r[f] - mean) * (r[f] - mean)).sum::<f32>() / n;
            let std = var.sqrt();
            for (out, row) in normed.iter_mut().zip(head) {
                out[f] = if std > 0.0 { (row[f] - mean) / std } else { 0.0 };
            }
        }
        for (acc, row) in sum.iter_mut().zip(normed.iter().skip(first_row)) {
            for (a, v) in acc.iter_mut().zip(median_filter(row, width)) {
                *a += v;
            }
        }
    }
    let n = heads.len().max(1) as f32;
    sum.iter_mut().flatten().for_each(|v| *v /= n);
    sum
}

/// Median over a window of `width` (odd) centred on each value, edges mirrored; rows no
/// longer than half the window pass through.
pub fn median_filter(row: &[f32], width: usize) -> Vec<f32> {
    let (n, half) = (row.len() as isize, (width / 2) as isize);
    if n <= half {
        return row.to_vec();
    }
    let mut window = vec![0.0f32; width];
    (0..n)
        .map(|j| {
            for k in -half..=half {
                let mut at = (j + k).abs();
                if at >= n {
                    at = 2 * n - at - 2;
                }
                window[(k + half) as usize] = row[at.clamp(0, n - 1) as usize];
            }
            *window.select_nth_unstable_by(half as usize, f32::total_cmp).1
        })
        .collect()
}

/// Dynamic time warping over the negated matrix (`rows x cols`): the monotonic path of
/// highest total attention, as (row, col) pairs from (0, 0) to the last cell. Ties resolve
/// as the reference does (a strict minimum for the diagonal or vertical step, else horizontal).
pub fn negative_dtw(matrix: &[Vec<f32>], rows: usize, cols: usize) -> Vec<(usize, usize)> {
    let w = cols + 1;
    let mut cost = vec![f32::INFINITY; (rows + 1) * w];
    let mut trace = vec![2u8; (rows + 1) * w];
    cost[0] = 0.0;
    for j in 1..=cols {
        for i in 1..=rows {
            let (c0, c1, c2) = (cost[(i - 1) * w + j - 1], cost[(i - 1) * w + j], cost[i * w + j - 1]);
            let (c, t) = if c0 < c1 && c0 < c2 {
                (c0, 0)
            } else if c1 < c0 && c1 < c2 {
                (c1, 1)
            } else {
                (c2, 2)
            };
            cost[i * w + j] = c - matrix[i - 1][j - 1];
            trace[i * w + j] = t;
        }
    }
    let (mut i, mut j) = (rows, cols);
    let mut path = Vec::with_capacity(rows + cols);
    while i > 0 && j > 0 {
        path.push((i - 1, j - 1));
        match trace[i * w + j] {
            0 => (i, j) = (i - 1, j - 1),
            1 => i -= 1,
            _ => j -= 1,
        }
    }
    path.reverse();
    path
}

/// Start and end of each word: the frame where its first token's row begins on the path,
/// and where the next word's begins; probability is the mean over its tokens.
fn words_from_path(
    words: Vec<String>,
    word_tokens: Vec<Vec<u32>>,
    path: &[(usize, usize)],
    token_probs: &[f64],
) -> Vec<WordTiming> {
    if word_tokens.len() <= 1 || path.is_empty() {
        return Vec::new();
    }
    let mut jump_times = Vec::new();
    let mut last_row = None;
    for &(row, col) in path {
        if last_row != Some(row) {
            jump_times.push(col as f64 / TOKENS_PER_SECOND);
            last_row = Some(row);
        }
    }
    let time_at = |k: usize| jump_times.get(k).or(jump_times.last()).copied().unwrap_or(0.0);
    let mut boundary = 0usize;
    let n = words.len() - 1;
    words
        .into_iter()
        .zip(word_tokens)
        .take(n)
        .map(|(word, tokens)| {
            let next = boundary + tokens.len();
            let probs = &token_probs[boundary.min(token_probs.len())..next.min(token_probs.len())];
            let probability = if probs.is_empty() { 0.0 } else { probs.iter().sum::<f64>() / probs.len() as f64 };
            let timing = WordTiming { word, tokens, start: time_at(boundary), end: time_at(next), probability };
            boundary = next;
            timing
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_filter_mirrors_edges() {
        let row = [5.0, 1.0, 9.0, 2.0, 7.0];
        // Windows of 3 over [1, 5, 1, 9, 2, 7, 2].
        assert_eq!(median_filter(&row, 3), vec![1.0, 5.0, 2.0, 7.0, 2.0]);
        assert_eq!(median_filter(&[1.0, 2.0], 7), vec![1.0, 2.0]);
    }

    #[test]
    fn dtw_follows_the_attention_diagonal() {
        // Token 0 attends to frames 0-1, token 1 to frames 2-4; a vertical step shares frame 1
        // (worked by hand: it ties the horizontal one and wins the strict comparison).
        let m = vec![vec![1.0, 1.0, 0.0, 0.0, 0.0], vec![0.0, 0.0, 1.0, 1.0, 1.0]];
        let path = negative_dtw(&m, 2, 5);
        assert_eq!(path, vec![(0, 0), (0, 1), (1, 1), (1, 2), (1, 3), (1, 4)]);
        // On an identity all three steps into (2, 2) tie, and a tie takes the horizontal step.
        let eye = vec![vec![1.0, 0.0, 0.0], vec![0.0, 1.0, 0.0], vec![0.0, 0.0, 1.0]];
        assert_eq!(negative_dtw(&eye, 3, 3), vec![(0, 0), (1, 0), (1, 1), (2, 1), (2, 2)]);
    }

    #[test]
    fn words_take_the_frame_where_their_first_token_starts() {
        let path = [(0, 0), (0, 1), (1, 2), (2, 5), (2, 6), (3, 9)];
        let words = vec![" a".to_string(), " bc".to_string(), "<|endoftext|>".to_string()];
        let tokens = vec![vec![1], vec![2, 3], vec![9]];
        let w = words_from_path(words, tokens, &path, &[0.5, 0.2, 0.4]);
        assert_eq!(w.len(), 2);
        assert_eq!((w[0].start, w[0].end), (0.0, 0.04));
        assert_eq!((w[1].start, w[1].end), (0.04, 0.18));
        assert!((w[1].probability - 0.3).abs() < 1e-12);
    }
}

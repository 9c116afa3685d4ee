//! The text encoder's windowed relative-position attention on the CPU, as
//! `attentions.MultiHeadAttention` of Piper's VITS computes it for one unmasked utterance:
//! scores `q k^T / sqrt(d)` plus each query's products with the relative key embeddings of the
//! offsets within the window, softmax, then the weighted values plus the weights of those
//! offsets times the relative value embeddings. As tensor operations this took a dozen
//! allocations, two index tensors of `t x t` and two gathers per layer, half the encoder's time
//! for a sentence; here the two products run on the Whisper attention kernels and the window
//! terms are read straight off the band.

use crate::whisper::attention_kernels::{scores, weighted_values, KEY_BLOCK, ROW_BLOCK};
use crate::whisper::cpu_ops::softmax_in_place;

/// The relative embeddings of one layer: `[2 * window + 1][head channels]` each.
pub(super) struct RelativeEmbeddings<'a> {
    pub keys: &'a [f32],
    pub values: &'a [f32],
    pub window: usize,
}

/// The attention output `[c, t]` for projections `q`, `k`, `v` (`[c, t]` each, `heads`
/// heads of `c / heads` channels one after another, as the 1x1 convolutions give them).
pub(super) fn relative_attention(
    (q, k, v): (&[f32], &[f32], &[f32]),
    t: usize,
    heads: usize,
    rel: &RelativeEmbeddings,
) -> Vec<f32> {
    let c = q.len() / t.max(1);
    let dh = c / heads;
    let width = 2 * rel.window + 1;
    assert!(k.len() == c * t && v.len() == c * t && rel.keys.len() == width * dh && rel.values.len() == width * dh);
    let (rows, keys) = (t.next_multiple_of(ROW_BLOCK), t.next_multiple_of(KEY_BLOCK));
    let scale = (dh as f32).sqrt();
    // The relative key embeddings transposed (`[dh][offsets]`), padded as the kernel reads keys.
    let rel_slots = width.next_multiple_of(KEY_BLOCK);
    let mut rel_kt = vec![0.0f32; dh * rel_slots];
    for (o, row) in rel.keys.chunks_exact(dh).enumerate() {
        row.iter().enumerate().for_each(|(d, &x)| rel_kt[d * rel_slots + o] = x);
    }
    let mut out = vec![0.0f32; c * t];
    let (mut qh, mut kt, mut vh) = (vec![0.0f32; rows * dh], vec![0.0f32; dh * keys], vec![0.0f32; t * dh]);
    let (mut p, mut band) = (vec![0.0f32; rows * keys], vec![0.0f32; rows * rel_slots]);
    let mut weighted = vec![0.0f32; rows * dh];
    for h in 0..heads {
        for (d, row) in head_rows(q, h, dh, t).enumerate() {
            row.iter().enumerate().for_each(|(i, &x)| qh[i * dh + d] = x / scale);
        }
        for (d, row) in head_rows(k, h, dh, t).enumerate() {
            kt[d * keys..d * keys + t].copy_from_slice(row);
        }
        for (e, row) in head_rows(v, h, dh, t).enumerate() {
            row.iter().enumerate().for_each(|(j, &x)| vh[j * dh + e] = x);
        }
        scores(&qh, &kt, dh, keys, &mut p);
        scores(&qh, &rel_kt, dh, rel_slots, &mut band);
        for (i, row) in p.chunks_exact_mut(keys).take(t).enumerate() {
            for (j, o) in window(i, t, rel.window) {
                row[j] += band[i * rel_slots + o];
            }
            softmax_in_place(&mut row[..t]);
        }
        weighted_values(&p, keys, &vh, dh, &mut weighted);
        for i in 0..t {
            let sums = &mut weighted[i * dh..(i + 1) * dh];
            for (j, o) in window(i, t, rel.window) {
                let w = p[i * keys + j];
                sums.iter_mut().zip(&rel.values[o * dh..(o + 1) * dh]).for_each(|(s, &x)| *s += x * w);
            }
            for (e, &s) in sums.iter().enumerate() {
                out[(h * dh + e) * t + i] = s;
            }
        }
    }
    out
}

/// Head `h`'s `dh` channels of `m` (`[c, t]`), a row of `t` each.
fn head_rows(m: &[f32], h: usize, dh: usize, t: usize) -> std::slice::ChunksExact<'_, f32> {
    m[h * dh * t..(h + 1) * dh * t].chunks_exact(t)
}

/// The keys `j` within `window` of query `i` (of `t`), with their offsets' embedding rows.
fn window(i: usize, t: usize, window: usize) -> impl Iterator<Item = (usize, usize)> {
    let first = i.saturating_sub(window);
    let last = (i + window).min(t.saturating_sub(1));
    (first..=last).map(move |j| (j, j + window - i))
}

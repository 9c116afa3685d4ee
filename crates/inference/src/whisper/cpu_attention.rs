//! Unmasked multi-head attention for f32 tensors on the CPU in one pass: for each block of
//! query rows and each head, scores = q k^T into a small scratch buffer, softmax in place,
//! then scores v written into the head's columns of the output (with our kernels,
//! `attention_kernels`, for many rows; with dot products and sums of value rows for a
//! decoding step's few). Compared with the same steps as candle tensor ops, it skips splitting
//! the queries into heads and joining the heads back (two copies each), never holds all the
//! scores at once, and runs blocks in parallel with single-threaded products instead of
//! synchronising threads inside each product. The arithmetic is the same; only the order of
//! the sums differs.

use crate::cpu_isa::{prefetch, PREFETCH_BYTES};
use candle_core::{CpuStorage, CustomOp3, DType, Layout, Result, Shape, Tensor};
use rayon::prelude::*;
use std::cell::RefCell;

use super::attention_kernels::{self as kernels, KEY_BLOCK, ROW_BLOCK};
use super::cpu_linear::add_dot_products;
use super::cpu_ops::{contiguous_f32, dispatch_isa, softmax_in_place};

/// Scores of one block of rows for one head stay under this size, so they stay in cache.
const BLOCK_BYTES: usize = 512 << 10;

struct Attention {
    heads: usize,
}

thread_local! {
    static SCORES: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

impl CustomOp3 for Attention {
    fn name(&self) -> &'static str {
        "smai-attention"
    }

    fn cpu_fwd(
        &self,
        qs: &CpuStorage,
        ql: &Layout,
        ks: &CpuStorage,
        kl: &Layout,
        vs: &CpuStorage,
        vl: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (q, k, v) = (contiguous_f32(qs, ql)?, contiguous_f32(ks, kl)?, contiguous_f32(vs, vl)?);
        let (b, t, d) = ql.shape().dims3()?;
        let (kb, h, s, dh) = kl.shape().dims4()?;
        // Keys and values of batch 1 serve every query row (beams share one encoded window).
        if (kb != b && kb != 1) || h != self.heads || h * dh != d || vl.shape() != kl.shape() {
            candle_core::bail!(
                "attention shapes q {:?} k {:?} v {:?} with {} heads",
                ql.shape(),
                kl.shape(),
                vl.shape(),
                self.heads
            );
        }
        let shape = HeadShape { d, h, s, dh };
        let kv_batch = |batch: usize| {
            let kv = if kb == 1 { 0 } else { batch };
            (&k[kv * h * s * dh..(kv + 1) * h * s * dh], &v[kv * h * s * dh..(kv + 1) * h * s * dh])
        };
        if t < ROW_BLOCK {
            return Ok((CpuStorage::F32(attend_few_rows(q, b, kv_batch, shape)), ql.shape().clone()));
        }
        let threads = rayon::current_num_threads().max(1);
        // Enough blocks to keep every thread busy, each block's scores small; whole register
        // blocks of rows for the kernels.
        let rows = (BLOCK_BYTES / (4 * s.max(1))).min(t.div_ceil(4 * threads)).clamp(8, 256);
        let rows = rows.div_ceil(ROW_BLOCK) * ROW_BLOCK;
        let mut out = vec![0.0f32; b * t * d];
        for (batch, out) in out.chunks_mut(t * d).enumerate() {
            let q = &q[batch * t * d..(batch + 1) * t * d];
            let (k, v) = kv_batch(batch);
            // Many query rows: our kernels over keys transposed once.
            let (kt, s_pad) = transposed_keys(k, shape);
            out.par_chunks_mut(rows * d).enumerate().for_each(|(block, out)| {
                let n_rows = out.len() / d;
                let q = &q[block * rows * d..block * rows * d + n_rows * d];
                attend_with_kernels(q, &kt, s_pad, v, shape, out);
            });
        }
        Ok((CpuStorage::F32(out), ql.shape().clone()))
    }
}

/// One call's attention dimensions: model width, heads, keys, head width.
#[derive(Clone, Copy)]
struct HeadShape {
    d: usize,
    h: usize,
    s: usize,
    dh: usize,
}

/// Each head's keys as `[dh][s_pad]` (zeros past `s`), and `s_pad`.
fn transposed_keys(k: &[f32], shape: HeadShape) -> (Vec<f32>, usize) {
    let HeadShape { h, s, dh, .. } = shape;
    let s_pad = s.div_ceil(KEY_BLOCK) * KEY_BLOCK;
    let mut kt = vec![0.0f32; h * dh * s_pad];
    // One head per task: a serial pass here left the other threads idle.
    kt.par_chunks_exact_mut(dh * s_pad).enumerate().for_each(|(head, kt)| {
        for (j, key) in k[head * s * dh..(head + 1) * s * dh].chunks_exact(dh).enumerate() {
            for (e, &x) in key.iter().enumerate() {
                kt[e * s_pad + j] = x;
            }
        }
    });
    (kt, s_pad)
}

/// A block of query rows (`n x d`) against every head, with `attention_kernels`.
fn attend_with_kernels(q: &[f32], kt: &[f32], s_pad: usize, v: &[f32], shape: HeadShape, out: &mut [f32]) {
    let HeadShape { d, h, s, dh } = shape;
    let n = q.len() / d;
    let n_pad = n.div_ceil(ROW_BLOCK) * ROW_BLOCK;
    SCORES.with_borrow_mut(|scratch| {
        scratch.resize(n_pad * (s_pad + 2 * dh), 0.0);
        let (scores, rest) = scratch.split_at_mut(n_pad * s_pad);
        let (q_head, out_head) = rest.split_at_mut(n_pad * dh);
        for head in 0..h {
            // Padded rows stay zero; their results are never read.
            for (dst, row) in q_head.chunks_exact_mut(dh).zip(q.chunks_exact(d)) {
                dst.copy_from_slice(&row[head * dh..(head + 1) * dh]);
            }
            kernels::scores(q_head, &kt[head * dh * s_pad..(head + 1) * dh * s_pad], dh, s_pad, scores);
            for row in scores.chunks_exact_mut(s_pad).take(n) {
                softmax_in_place(&mut row[..s]);
            }
            kernels::weighted_values(scores, s_pad, &v[head * s * dh..(head + 1) * s * dh], dh, out_head);
            for (dst, src) in out.chunks_exact_mut(d).zip(out_head.chunks_exact(dh)) {
                dst[head * dh..(head + 1) * dh].copy_from_slice(src);
            }
        }
    });
}

/// A decoding step's few query rows per batch row (`b` of them, `q` is b x t x d): every
/// (batch row, head) pair on its own, in parallel. Each row's scores are dot products with
/// the keys as they lie, and its result a sum of value rows, so that the keys and values (a
/// window's 1500 per head, read at every step) stream through once, where a matrix product
/// would first copy them into its packed layout.
fn attend_few_rows<'a>(
    q: &[f32],
    b: usize,
    kv_batch: impl Fn(usize) -> (&'a [f32], &'a [f32]) + Sync,
    shape: HeadShape,
) -> Vec<f32> {
    let HeadShape { d, h, s, dh } = shape;
    let t = q.len() / (b * d).max(1);
    // Pair i = (batch row i / h, head i % h) writes its t x dh results here first.
    let mut per_head = vec![0.0f32; b * h * t * dh];
    per_head.par_chunks_mut((t * dh).max(1)).enumerate().for_each(|(i, dst)| {
        let (batch, head) = (i / h, i % h);
        let (k, v) = kv_batch(batch);
        let (kh, vh) = (&k[head * s * dh..(head + 1) * s * dh], &v[head * s * dh..(head + 1) * s * dh]);
        let q = &q[batch * t * d..(batch + 1) * t * d];
        SCORES.with_borrow_mut(|scores| {
            scores.resize(s, 0.0);
            for (row, out) in q.chunks_exact(d).zip(dst.chunks_exact_mut(dh)) {
                scores.fill(0.0);
                add_dot_products(scores, kh, &row[head * dh..(head + 1) * dh]);
                softmax_in_place(scores);
                weighted_sum(scores, vh, out);
            }
        });
    });
    let mut out = vec![0.0f32; b * t * d];
    for (i, head_rows) in per_head.chunks_exact((t * dh).max(1)).enumerate() {
        let (batch, head) = (i / h, i % h);
        for (row, src) in head_rows.chunks_exact(dh).enumerate() {
            out[(batch * t + row) * d + head * dh..][..dh].copy_from_slice(src);
        }
    }
    out
}

dispatch_isa! {
    /// `out = sum_j weights[j] * rows_j` for the rows (`weights.len()` of `out.len()` values).
    fn weighted_sum(weights: &[f32], rows: &[f32], out: &mut [f32]) => weighted_sum_any
}

/// Columns summed at a time: a Whisper head's width, whose sums then stay in registers.
const SUM_COLUMNS: usize = 64;

#[inline(always)]
fn weighted_sum_any(weights: &[f32], rows: &[f32], out: &mut [f32]) {
    let width = out.len();
    for (block, out) in out.chunks_mut(SUM_COLUMNS).enumerate() {
        let first = block * SUM_COLUMNS;
        let mut acc = [0.0f32; SUM_COLUMNS];
        if out.len() == SUM_COLUMNS {
            for (&w, row) in weights.iter().zip(rows.chunks_exact(width)) {
                let row: &[f32; SUM_COLUMNS] = row[first..first + SUM_COLUMNS].try_into().expect("a whole block");
                // The block's four cache lines some rows ahead.
                for line in (0..SUM_COLUMNS).step_by(16) {
                    prefetch(row.as_ptr().wrapping_add(PREFETCH_BYTES / 4 + line));
                }
                for (a, &x) in acc.iter_mut().zip(row) {
                    *a = w.mul_add(x, *a);
                }
            }
        } else {
            for (&w, row) in weights.iter().zip(rows.chunks_exact(width)) {
                for (a, &x) in acc.iter_mut().zip(&row[first..first + out.len()]) {
                    *a = w.mul_add(x, *a);
                }
            }
        }
        out.copy_from_slice(&acc[..out.len()]);
    }
}

/// softmax(q k^T) v over `heads` heads, for queries `q` (b, t, d) already scaled, and keys and
/// values split into heads, (b, heads, s, d / heads). The result is (b, t, d). `None` where
/// the tensors are not f32 on the CPU: the caller then uses the general path.
pub fn attention(q: &Tensor, k: &Tensor, v: &Tensor, heads: usize) -> Result<Option<Tensor>> {
    let on_cpu = |x: &Tensor| x.device().is_cpu() && x.dtype() == DType::F32;
    if !(on_cpu(q) && on_cpu(k) && on_cpu(v)) {
        return Ok(None);
    }
    let op = Attention { heads };
    q.contiguous()?.apply_op3_no_bwd(&k.contiguous()?, &v.contiguous()?, &op).map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::whisper::cpu_ops::test_tensor;
    use candle_core::Device;

    /// The reference: the same attention as plain candle tensor ops.
    fn by_tensor_ops(q: &Tensor, k: &Tensor, v: &Tensor, heads: usize) -> Result<Tensor> {
        let (b, t, d) = q.dims3()?;
        let qh = q.reshape((b, t, heads, d / heads))?.transpose(1, 2)?.contiguous()?;
        let w = candle_nn::ops::softmax_last_dim(&qh.matmul(&k.t()?)?)?;
        w.matmul(v)?.transpose(1, 2)?.reshape((b, t, d))
    }

    #[test]
    fn matches_tensor_ops_for_encoder_and_decoder_shapes() -> Result<()> {
        // (query rows, their tokens, keys, heads, head width, key rows: one shared by all or one each)
        for (b, t, s, heads, dh, kb) in [
            (1, 1500, 1500, 6, 64, 1),
            (2, 37, 300, 4, 16, 2),
            (1, 1, 1500, 8, 64, 1),
            (3, 5, 7, 2, 3, 3),
            (5, 1, 300, 4, 16, 1),
            (5, 1, 40, 4, 16, 5),
        ] {
            let q = test_tensor((b, t, heads * dh), 0.5, 1)?;
            let k = test_tensor((kb, heads, s, dh), 1.7, 2)?;
            let v = test_tensor((kb, heads, s, dh), 1.7, 3)?;
            let ours = attention(&q, &k, &v, heads)?.expect("cpu f32 takes the fused path");
            let want = by_tensor_ops(&q, &k.repeat((b / kb, 1, 1, 1))?, &v.repeat((b / kb, 1, 1, 1))?, heads)?;
            assert_eq!(ours.dims(), want.dims());
            let diff = (ours - want)?.abs()?.flatten_all()?.max(0)?.to_scalar::<f32>()?;
            assert!(diff < 1e-5, "b {b} t {t} s {s} heads {heads}: differs by {diff}");
        }
        Ok(())
    }

    #[test]
    fn weighted_sums_are_bit_identical_at_every_isa_level() {
        use crate::cpu_isa::{with_level, Isa};
        // A whole block of columns and a partial one, as a head of 64 and of 37 are summed.
        for width in [64, 37, 101] {
            let n = 1500;
            let weights: Vec<f32> = (0..n).map(|i| ((i * 7919) % 1009) as f32 * 1e-3).collect();
            let rows: Vec<f32> = (0..n * width).map(|i| ((i * 104_729) % 997) as f32 * 1e-2 - 5.0).collect();
            let run = |level| {
                with_level(level, || {
                    let mut out = vec![0.0f32; width];
                    weighted_sum(&weights, &rows, &mut out);
                    out
                })
            };
            let scalar = run(Isa::Scalar);
            // Against f64 sums, within float32 rounding of the terms' magnitudes.
            for (c, &ours) in scalar.iter().enumerate() {
                let terms = (0..n).map(|j| weights[j] as f64 * rows[j * width + c] as f64);
                let (want, size) = terms.fold((0.0, 0.0), |(s, m), t| (s + t, m + t.abs()));
                assert!((ours as f64 - want).abs() <= 1e-5 * size, "column {c}: {ours} against {want}");
            }
            for level in Isa::available() {
                let out = run(level);
                assert!(out.iter().zip(&scalar).all(|(a, b)| a.to_bits() == b.to_bits()), "{level:?}, width {width}");
            }
        }
    }

    #[test]
    fn refuses_mismatched_shapes() -> Result<()> {
        let dev = Device::Cpu;
        let q = Tensor::zeros((1, 4, 12), DType::F32, &dev)?;
        let k = Tensor::zeros((1, 3, 5, 4), DType::F32, &dev)?;
        assert!(attention(&q, &k, &k, 2).is_err());
        Ok(())
    }
}

//! Unmasked multi-head attention for f32 tensors on the CPU in one pass: for each block of
//! query rows and each head, scores = q k^T into a small scratch buffer, softmax in place,
//! then scores v written into the head's columns of the output (with our kernels,
//! `attention_kernels`, for many rows; with gemm for a decoding step's few). Compared with the
//! same steps as candle tensor ops, it skips splitting the queries into heads and joining the
//! heads back (two copies each), never holds all the scores at once, and runs blocks in
//! parallel with single-threaded products instead of synchronising threads inside each
//! product. The arithmetic is the same; only the order of the sums differs.

use candle_core::{CpuStorage, CustomOp3, DType, Layout, Result, Shape, Tensor};
use rayon::prelude::*;
use std::cell::RefCell;

use super::attention_kernels::{self as kernels, KEY_BLOCK, ROW_BLOCK};
use super::cpu_ops::{contiguous_f32, softmax_in_place};

/// Scores of one block of rows for one head stay under this size, so they stay in cache.
const BLOCK_BYTES: usize = 512 << 10;

struct Attention {
    heads: usize,
}

thread_local! {
    static SCORES: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

/// `dst (m x n) = lhs (m x k) * rhs (k x n)`, each given by a pointer and its row and column
/// strides, on the calling thread.
///
/// # Safety
/// Every element the strides address must lie inside the pointed-to allocations, and `dst`
/// must not overlap the inputs.
#[allow(clippy::too_many_arguments)]
unsafe fn matmul(
    m: usize,
    n: usize,
    k: usize,
    dst: *mut f32,
    dst_rs: usize,
    lhs: *const f32,
    lhs_rs: usize,
    lhs_cs: usize,
    rhs: *const f32,
    rhs_rs: usize,
    rhs_cs: usize,
) {
    crate::cpu_gemm::gemm(
        (m, n, k),
        (dst, 1, dst_rs as isize),
        false,
        (lhs, lhs_cs as isize, lhs_rs as isize),
        (rhs, rhs_cs as isize, rhs_rs as isize),
        (0.0, 1.0),
        gemm::Parallelism::None,
    )
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
/// (batch row, head) pair on its own, in parallel, with gemm products (which pad nothing).
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
            scores.resize(t * s, 0.0);
            // SAFETY: q's rows are t x d read at columns head*dh..+dh; kh and vh are s x dh;
            // scores holds t x s; dst is t x dh. All are separate allocations.
            unsafe {
                matmul(t, s, dh, scores.as_mut_ptr(), s, q.as_ptr().add(head * dh), d, 1, kh.as_ptr(), 1, dh);
            }
            for row in scores.chunks_mut(s) {
                softmax_in_place(row);
            }
            unsafe {
                matmul(t, dh, s, dst.as_mut_ptr(), dh, scores.as_ptr(), s, 1, vh.as_ptr(), dh, 1);
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
    fn refuses_mismatched_shapes() -> Result<()> {
        let dev = Device::Cpu;
        let q = Tensor::zeros((1, 4, 12), DType::F32, &dev)?;
        let k = Tensor::zeros((1, 3, 5, 4), DType::F32, &dev)?;
        assert!(attention(&q, &k, &k, 2).is_err());
        Ok(())
    }
}

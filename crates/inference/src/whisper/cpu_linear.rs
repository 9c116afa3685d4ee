//! Dense layers `x W^T + b`, optionally followed by exact GELU, for f32 on the CPU.
//! Many rows (the encoder's 1500 frames): one gemm whose output starts as the bias, so the
//! bias costs no extra pass or buffer, and GELU runs in place. One row (a decoding step): the
//! output is split over rayon's threads as dot products, since gemm runs a single row on one
//! thread, and the (tied) vocabulary projection alone reads 80 MB (tiny) per token.
//! Float32 weights that are all exact f16 values (as CTranslate2 files store them) are held at
//! half width and widened as the products read them (`cpu_f16`), with the same results.
//! Other devices and dtypes use candle_nn's Linear unchanged.

use candle_core::{CpuStorage, CustomOp3, DType, Layout, Module, Result, Shape, Tensor};
use rayon::prelude::*;

use crate::cpu_isa::{prefetch, PREFETCH_BYTES};

use super::compute_type::ComputeType;
use super::cpu_bf16::Bf16Weights;
use super::cpu_f16::HalfWeights;
use super::cpu_int8::QuantizedWeights;
use super::cpu_ops::{contiguous_f32, dispatch_isa, gelu_in_place, CHUNK};

/// A dense layer (weight (out, in), optional bias (out)), with the same weights as the
/// candle_nn Linear it wraps for devices other than the CPU; on the CPU its weights may be
/// packed to int8 or bf16 (`pack`).
pub struct Dense {
    inner: candle_nn::Linear,
    /// The bias, or zeros, as the fused CPU op takes one.
    bias: Tensor,
    packed: Option<PackedDense>,
}

/// Weights in a reduced number type, with their kernels.
enum Packed {
    Int8(QuantizedWeights),
    Bf16(Bf16Weights),
    /// Float32 products, the weights held as f16.
    Half(HalfWeights),
}

struct PackedDense {
    weights: Packed,
    bias: Vec<f32>,
}

impl Dense {
    pub fn new(weight: Tensor, bias: Option<Tensor>) -> Result<Self> {
        let zeros = || Tensor::zeros(weight.dim(0)?, weight.dtype(), weight.device());
        let full_bias = bias.clone().map_or_else(zeros, Ok)?;
        Ok(Self { inner: candle_nn::Linear::new(weight, bias), bias: full_bias, packed: None })
    }

    /// The float weights (empty once the layer is packed).
    pub fn weight(&self) -> &Tensor {
        self.inner.weight()
    }

    pub fn bias(&self) -> Option<&Tensor> {
        self.inner.bias()
    }

    /// Packs the weights in `compute`'s number type (int8 per output channel, or bf16; for
    /// float32, f16 where every weight is an exact f16 value) and drops the float copy; only
    /// float32 layers on the CPU are packed (others, and `auto`, are left as they are).
    pub fn pack(&mut self, compute: ComputeType) -> Result<()> {
        let w = self.inner.weight();
        if !w.device().is_cpu() || w.dtype() != DType::F32 || self.packed.is_some() {
            return Ok(());
        }
        let (out_dim, in_dim) = w.dims2()?;
        let values = || w.flatten_all()?.to_vec1::<f32>();
        let weights = match compute {
            ComputeType::Int8 => Packed::Int8(QuantizedWeights::new(&values()?, out_dim, in_dim)),
            ComputeType::Bfloat16 => Packed::Bf16(Bf16Weights::new(&values()?, out_dim, in_dim)),
            ComputeType::Float32 => match HalfWeights::new(&values()?, out_dim, in_dim) {
                Some(half) => Packed::Half(half),
                None => return Ok(()),
            },
            ComputeType::Auto => return Ok(()),
        };
        self.packed = Some(PackedDense { weights, bias: self.bias.to_vec1()? });
        let empty = Tensor::zeros((0, in_dim), DType::F32, w.device())?;
        self.inner = candle_nn::Linear::new(empty, self.inner.bias().cloned());
        Ok(())
    }

    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.forward_with(x, false)
    }

    pub fn is_packed(&self) -> bool {
        self.packed.is_some()
    }

    /// Rows `rows` of the weight matrix as `(rows.len(), in)` float, when the layer is packed
    /// (its float weights are gone then).
    pub fn packed_rows(&self, rows: &[u32], device: &candle_core::Device) -> Result<Option<Tensor>> {
        let Some(packed) = &self.packed else { return Ok(None) };
        let in_dim = self.inner.weight().dim(1)?;
        let mut values = vec![0.0f32; rows.len() * in_dim];
        for (&j, out) in rows.iter().zip(values.chunks_exact_mut(in_dim.max(1))) {
            if j as usize >= packed.out_dim() {
                candle_core::bail!("row {j} of a {}-row layer", packed.out_dim());
            }
            match &packed.weights {
                Packed::Int8(q) => q.dequantized_row(j as usize, out),
                Packed::Bf16(h) => h.dequantized_row(j as usize, out),
                Packed::Half(h) => h.dequantized_row(j as usize, out),
            }
        }
        Tensor::from_vec(values, (rows.len(), in_dim), device).map(Some)
    }

    /// GELU(x W^T + b).
    pub fn forward_gelu(&self, x: &Tensor) -> Result<Tensor> {
        self.forward_with(x, true)
    }

    fn forward_with(&self, x: &Tensor, gelu: bool) -> Result<Tensor> {
        if let Some(packed) = &self.packed {
            return packed.forward(x, gelu);
        }
        if let Some(y) = fused(x, self.weight(), &self.bias, gelu)? {
            return Ok(y);
        }
        let y = self.inner.forward(x)?;
        if gelu {
            y.gelu_erf()
        } else {
            Ok(y)
        }
    }
}

impl PackedDense {
    fn out_dim(&self) -> usize {
        match &self.weights {
            Packed::Int8(q) => q.out_dim(),
            Packed::Bf16(h) => h.out_dim(),
            Packed::Half(h) => h.out_dim(),
        }
    }

    fn forward(&self, x: &Tensor, gelu: bool) -> Result<Tensor> {
        let x = x.contiguous()?;
        let mut y = {
            let (storage, layout) = x.storage_and_layout();
            let candle_core::Storage::Cpu(values) = &*storage else {
                candle_core::bail!("packed layers run on the CPU")
            };
            let values = contiguous_f32(values, layout)?;
            match &self.weights {
                Packed::Int8(q) => q.forward(values, &self.bias),
                Packed::Bf16(h) => h.forward(values, &self.bias),
                Packed::Half(h) => h.forward(values, &self.bias),
            }
        };
        if gelu {
            y.par_chunks_mut(CHUNK).for_each(gelu_in_place);
        }
        let mut shape = x.dims().to_vec();
        *shape.last_mut().ok_or_else(|| candle_core::Error::Msg("dense input without dimensions".into()))? =
            self.out_dim();
        Tensor::from_vec(y, shape, x.device())
    }
}

fn fused(x: &Tensor, w: &Tensor, b: &Tensor, gelu: bool) -> Result<Option<Tensor>> {
    let on_cpu = |t: &Tensor| t.device().is_cpu() && t.dtype() == DType::F32;
    if !(on_cpu(x) && on_cpu(w) && on_cpu(b)) {
        return Ok(None);
    }
    x.contiguous()?.apply_op3_no_bwd(&w.contiguous()?, &b.contiguous()?, &Linear { gelu }).map(Some)
}

/// Up to this many input rows, weights are streamed once through dot products rather than
/// packed for a matrix product.
const FEW_ROWS: usize = 8;

struct Linear {
    gelu: bool,
}

impl CustomOp3 for Linear {
    fn name(&self) -> &'static str {
        "smai-linear"
    }

    fn cpu_fwd(
        &self,
        xs: &CpuStorage,
        xl: &Layout,
        ws: &CpuStorage,
        wl: &Layout,
        bs: &CpuStorage,
        bl: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (x, w, b) = (contiguous_f32(xs, xl)?, contiguous_f32(ws, wl)?, contiguous_f32(bs, bl)?);
        let (out_dim, in_dim) = wl.shape().dims2()?;
        let dims = xl.shape().dims();
        if dims.last() != Some(&in_dim) || b.len() != out_dim {
            candle_core::bail!("linear: x {:?}, weight {:?}, bias {:?}", xl.shape(), wl.shape(), bl.shape());
        }
        let mut y = product(x, b, in_dim, &F32Rows { w, in_dim }, out_dim);
        if self.gelu {
            y.par_chunks_mut(CHUNK).for_each(gelu_in_place);
        }
        let mut shape = dims.to_vec();
        *shape.last_mut().expect("checked above") = out_dim;
        Ok((CpuStorage::F32(y), Shape::from(shape)))
    }
}

/// Weight rows as f32, borrowed or widened on the way.
pub(super) trait RowSource: Sync {
    /// Calls `f` with rows `first..first + n` of the weights (`n * in` values).
    fn with_rows(&self, first: usize, n: usize, f: &mut dyn FnMut(&[f32]));

    /// `outs[r * n + j] += w_(first + j) . x_r` for each row `x_r` of `xs` (`n` outputs per
    /// row), each summed as [`add_dot_products`] sums.
    fn add_dots(&self, first: usize, outs: &mut [f32], xs: &[f32]);
}

struct F32Rows<'a> {
    w: &'a [f32],
    in_dim: usize,
}

impl RowSource for F32Rows<'_> {
    fn with_rows(&self, first: usize, n: usize, f: &mut dyn FnMut(&[f32])) {
        f(&self.w[first * self.in_dim..(first + n) * self.in_dim]);
    }

    fn add_dots(&self, first: usize, outs: &mut [f32], xs: &[f32]) {
        let n = outs.len() / (xs.len() / self.in_dim).max(1);
        let w = &self.w[first * self.in_dim..(first + n) * self.in_dim];
        for (out, x) in outs.chunks_exact_mut(n.max(1)).zip(xs.chunks_exact(self.in_dim)) {
            add_dot_products(out, w, x);
        }
    }
}

/// `x W^T + b` for `x` of `rows x in` and the weights of `source` (`b.len()` rows), reading at
/// most `block` weight rows per matrix product.
pub(super) fn product(x: &[f32], b: &[f32], in_dim: usize, source: &impl RowSource, block: usize) -> Vec<f32> {
    let rows = x.len() / in_dim.max(1);
    if rows <= FEW_ROWS {
        return few_rows(x, b, rows, in_dim, source);
    }
    let out_dim = b.len();
    let mut y: Vec<f32> = Vec::with_capacity(rows * out_dim);
    for _ in 0..rows {
        y.extend_from_slice(b);
    }
    let threads = rayon::current_num_threads();
    let parallelism = if threads > 1 { gemm::Parallelism::Rayon(threads) } else { gemm::Parallelism::None };
    for first in (0..out_dim).step_by(block.max(1)) {
        let n = block.min(out_dim - first);
        let dst = y[first..].as_mut_ptr();
        source.with_rows(first, n, &mut |w| {
            // SAFETY: dst is rows x n inside y (row stride out_dim, columns first..first + n),
            // x is rows x in_dim, w is n x in_dim (read as its transpose through the strides);
            // y is a separate allocation from both. A block's sums over `in` run in the order
            // a whole product would (gemm splits that dimension by its own size alone).
            unsafe {
                crate::cpu_gemm::gemm(
                    (rows, n, in_dim),
                    (dst, 1, out_dim as isize),
                    true,
                    (x.as_ptr(), 1, in_dim as isize),
                    (w.as_ptr(), in_dim as isize, 1),
                    (1.0, 1.0),
                    parallelism,
                );
            }
        });
    }
    y
}

/// `x W^T + b` for a few rows of `x` (one token per sequence, beams decoded together): a
/// matrix product would pack the whole weight matrix on every call. Instead each block of
/// weight rows is read from memory once and applied to every input row while it is in cache,
/// with the very dot products one row alone gets.
fn few_rows(x: &[f32], b: &[f32], rows: usize, in_dim: usize, source: &impl RowSource) -> Vec<f32> {
    let out_dim = b.len();
    if rows == 0 {
        return Vec::new();
    }
    let per_task = (CHUNK * 4 / in_dim.max(1)).max(16);
    // Task-major: task i holds its outputs for every row (rows x n); for one row that is the
    // result's own layout.
    let mut blocks = vec![0.0f32; rows * out_dim];
    blocks.par_chunks_mut(rows * per_task).enumerate().for_each(|(i, block)| {
        let (first, n) = (i * per_task, block.len() / rows);
        for out in block.chunks_exact_mut(n) {
            out.copy_from_slice(&b[first..first + n]);
        }
        source.add_dots(first, block, x);
    });
    if rows == 1 {
        return blocks;
    }
    let mut y = vec![0.0f32; rows * out_dim];
    for (i, block) in blocks.chunks(rows * per_task).enumerate() {
        let (first, n) = (i * per_task, block.len() / rows);
        for (r, out) in block.chunks_exact(n).enumerate() {
            y[r * out_dim + first..][..n].copy_from_slice(out);
        }
    }
    y
}

dispatch_isa! {
    /// `out[j] += w_j . x` for each row w_j of `w` (out.len() rows of x.len()).
    pub(super) fn add_dot_products(out: &mut [f32], w: &[f32], x: &[f32]) => add_dot_products_any
}

#[inline(always)]
fn add_dot_products_any(out: &mut [f32], w: &[f32], x: &[f32]) {
    for (o, row) in out.iter_mut().zip(w.chunks_exact(x.len())) {
        // Sixteen running sums (two AVX registers) so the loop vectorises and the adds overlap.
        let mut acc = [0.0f32; 16];
        let (rows, xs) = (row.chunks_exact(16), x.chunks_exact(16));
        let tail: f32 = rows.remainder().iter().zip(xs.remainder()).map(|(a, b)| a * b).sum();
        for (r, v) in rows.zip(xs) {
            // One line of the rows a little ahead per sixteen values (sixty-four bytes).
            prefetch(r.as_ptr().wrapping_add(PREFETCH_BYTES / 4));
            for ((acc, &a), &b) in acc.iter_mut().zip(r).zip(v) {
                *acc = a.mul_add(b, *acc);
            }
        }
        *o += acc.iter().sum::<f32>() + tail;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::whisper::cpu_ops::test_tensor;
    use candle_core::Device;

    fn max_diff(a: &Tensor, b: &Tensor) -> Result<f32> {
        (a - b)?.abs()?.flatten_all()?.max(0)?.to_scalar::<f32>()
    }

    #[test]
    fn matches_candle_linear_for_many_rows_and_one() -> Result<()> {
        for (rows, in_dim, out_dim) in
            [(1500, 384, 1536), (1, 384, 51_865), (5, 384, 51_865), (1, 37, 5), (7, 37, 5), (9, 37, 5)]
        {
            let w = test_tensor((out_dim, in_dim), 0.17, 1)?;
            let b = test_tensor(out_dim, 1.7, 2)?;
            let x = test_tensor((1, rows, in_dim), 1.7, 3)?;
            let dense = Dense::new(w.clone(), Some(b.clone()))?;
            let want = candle_nn::Linear::new(w.clone(), Some(b)).forward(&x)?;
            let diff = max_diff(&dense.forward(&x)?, &want)?;
            assert!(diff < 1e-4, "{rows}x{in_dim}->{out_dim}: differs by {diff}");
            let diff = max_diff(&dense.forward_gelu(&x)?, &want.gelu_erf()?)?;
            assert!(diff < 1e-4, "{rows}x{in_dim}->{out_dim} with GELU: differs by {diff}");
            let diff = max_diff(&Dense::new(w.clone(), None)?.forward(&x)?, &x.broadcast_matmul(&w.t()?)?)?;
            assert!(diff < 1e-4, "{rows}x{in_dim}->{out_dim} without bias: differs by {diff}");
        }
        Ok(())
    }

    #[test]
    fn dot_products_are_bit_identical_at_every_isa_level() {
        use crate::cpu_isa::{with_level, Isa};
        let (rows, len) = (37, 389);
        let w: Vec<f32> = (0..rows * len).map(|i| ((i * 7919) % 1009) as f32 * 1e-3 - 0.5).collect();
        let x: Vec<f32> = (0..len).map(|i| ((i * 104_729) % 997) as f32 * 1e-2 - 5.0).collect();
        let run = |level| {
            with_level(level, || {
                let mut out = vec![0.25f32; rows];
                add_dot_products(&mut out, &w, &x);
                out
            })
        };
        let scalar = run(Isa::Scalar);
        for level in Isa::available() {
            let out = run(level);
            assert!(out.iter().zip(&scalar).all(|(a, b)| a.to_bits() == b.to_bits()), "{level:?}: {out:?}");
        }
    }

    #[test]
    fn refuses_mismatched_shapes() -> Result<()> {
        let dev = Device::Cpu;
        let dense = Dense::new(Tensor::zeros((4, 3), DType::F32, &dev)?, None)?;
        assert!(dense.forward(&Tensor::zeros((2, 5), DType::F32, &dev)?).is_err());
        Ok(())
    }
}

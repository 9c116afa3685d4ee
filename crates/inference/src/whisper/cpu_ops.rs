//! Exact (erf) GELU and last-dimension softmax for f32 tensors on the CPU, written so the
//! compiler vectorises them (at the level `cpu_isa` chooses) and spread over rayon's pool.
//! candle's CPU GELU runs a scalar libm erf on one thread and its softmax a scalar exp; in
//! Whisper's encoder those two took about a third of the time. Other devices and dtypes use
//! candle's own ops, so GPU results are unchanged.

use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, CustomOp1, DType, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

/// Elements per parallel task for element-wise work: big enough to amortise the hand-off.
pub(super) const CHUNK: usize = 1 << 14;

/// e^x to within about 2 ulp (range reduction by ln 2 and a degree-6 polynomial, the Cephes
/// expf scheme); 0 below the smallest normal result.
// The polynomial's coefficients are written as published, digits beyond f32 included.
#[allow(clippy::excessive_precision)]
#[inline(always)]
pub fn exp(x: f32) -> f32 {
    const LOW: f32 = -87.3;
    let c = x.clamp(LOW, 88.3);
    let n = (c * std::f32::consts::LOG2_E + 0.5).floor();
    // ln 2 split in two so n * ln 2 is subtracted without rounding error.
    let r = n.mul_add(-0.693_359_4, c);
    let r = n.mul_add(2.121_944_4e-4, r);
    let mut p = 1.987_569_1e-4_f32;
    p = p.mul_add(r, 1.398_199_9e-3);
    p = p.mul_add(r, 8.333_452e-3);
    p = p.mul_add(r, 4.166_579_6e-2);
    p = p.mul_add(r, 1.666_666_5e-1);
    p = p.mul_add(r, 5.000_000_1e-1);
    let e = p.mul_add(r * r, r) + 1.0;
    // 2^n built in the exponent field: n + 127 is an integer in 1..=254, and adding 2^23
    // puts it in the low mantissa bits. This avoids a float-to-int cast, which does not
    // vectorise.
    let scale = f32::from_bits((n + (127.0 + 8_388_608.0)).to_bits() << 23);
    if x < LOW {
        0.0
    } else {
        e * scale
    }
}

/// tanh x to within about 1e-6 relative, branch-free so that loops over it vectorise:
/// (e^2x - 1) / (e^2x + 1) from [`exp`], with the Taylor series below |x| = 1/16, where the
/// quotient would cancel; |x| is capped at 9, where tanh is 1 in f32.
#[inline(always)]
pub fn tanh(x: f32) -> f32 {
    let c = x.clamp(-9.0, 9.0);
    let e = exp(2.0 * c);
    let quotient = (e - 1.0) / (e + 1.0);
    let x2 = c * c;
    let series = c * (x2 * (x2 * (2.0 / 15.0) - 1.0 / 3.0) + 1.0);
    if c.abs() < 0.0625 {
        series
    } else {
        quotient
    }
}

/// 1 / (1 + e^-x) from [`exp`].
#[inline(always)]
pub fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + exp(-x))
}

/// 0.5 x (1 + erf(x / sqrt 2)). 1 + erf is taken as erfc(-x / sqrt 2) from the Chebyshev fit
/// of Numerical Recipes' `erfcc` (relative error under 1.2e-7 everywhere), so the negative
/// tail keeps its relative precision instead of cancelling against 1.
#[allow(clippy::excessive_precision)] // Numerical Recipes' coefficients, as published
#[inline(always)]
pub fn gelu_erf(x: f32) -> f32 {
    let a = (x * std::f32::consts::FRAC_1_SQRT_2).abs();
    let t = 1.0 / a.mul_add(0.5, 1.0);
    let mut p = 0.170_872_77_f32;
    for c in [
        -0.822_152_23,
        1.488_515_87,
        -1.135_203_98,
        0.278_868_07,
        -0.186_288_06,
        0.096_784_18,
        0.374_091_96,
        1.000_023_68,
    ] {
        p = p.mul_add(t, c);
    }
    let erfc_a = t * exp(p.mul_add(t, -1.265_512_23) - a * a);
    let one_plus_erf = if x >= 0.0 { 2.0 - erfc_a } else { erfc_a };
    0.5 * x * one_plus_erf
}

#[inline(always)]
fn gelu_in_place_any(xs: &mut [f32]) {
    for x in xs {
        *x = gelu_erf(*x);
    }
}

#[inline(always)]
fn softmax_in_place_any(row: &mut [f32]) {
    // Four vectors of running maxima: with one, each block's maximum would wait on the last.
    // A plain comparison, where `f32::max` would add a NaN test to that chain (a NaN in the
    // row gives NaN outputs either way).
    let mut lanes = [[f32::NEG_INFINITY; 8]; 4];
    let mut blocks = row.chunks_exact(32);
    for b in &mut blocks {
        for (lanes, b) in lanes.iter_mut().zip(b.chunks_exact(8)) {
            for (m, &v) in lanes.iter_mut().zip(b) {
                *m = if v > *m { v } else { *m };
            }
        }
    }
    let max = blocks
        .remainder()
        .iter()
        .chain(lanes.as_flattened())
        .fold(f32::NEG_INFINITY, |m, &v| if v > m { v } else { m });
    // Exponentials and their sum in one pass, sixteen running sums so it vectorises.
    let mut sums = [0.0f32; 16];
    let mut blocks = row.chunks_exact_mut(16);
    for b in &mut blocks {
        for (v, acc) in b.iter_mut().zip(sums.iter_mut()) {
            *v = exp(*v - max);
            *acc += *v;
        }
    }
    let mut sum: f32 = 0.0;
    for v in blocks.into_remainder() {
        *v = exp(*v - max);
        sum += *v;
    }
    let sum = sums.iter().sum::<f32>() + sum;
    let inv = 1.0 / sum;
    for v in row.iter_mut() {
        *v *= inv;
    }
}

pub(super) use crate::cpu_isa::dispatch_isa;

#[inline(always)]
fn tanh_in_place_any(xs: &mut [f32]) {
    xs.iter_mut().for_each(|v| *v = tanh(*v));
}

dispatch_isa! {
    /// [`tanh`] of each element, in place.
    pub fn tanh_in_place(xs: &mut [f32]) => tanh_in_place_any
}

dispatch_isa! {
    /// GELU of each element, in place.
    pub fn gelu_in_place(xs: &mut [f32]) => gelu_in_place_any
}

dispatch_isa! {
    /// Softmax of one row, in place.
    pub fn softmax_in_place(row: &mut [f32]) => softmax_in_place_any
}

struct Gelu;
struct SoftmaxLastDim;

pub(super) fn contiguous_f32<'a>(storage: &'a CpuStorage, layout: &Layout) -> Result<&'a [f32]> {
    let CpuStorage::F32(all) = storage else { candle_core::bail!("expected f32, got {:?}", storage.dtype()) };
    match layout.contiguous_offsets() {
        Some((start, end)) => Ok(&all[start..end]),
        None => candle_core::bail!("input has to be contiguous"),
    }
}

impl CustomOp1 for Gelu {
    fn name(&self) -> &'static str {
        "smai-gelu-erf"
    }
    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let src = contiguous_f32(storage, layout)?;
        let mut dst = src.to_vec();
        dst.par_chunks_mut(CHUNK).for_each(gelu_in_place);
        Ok((CpuStorage::F32(dst), layout.shape().clone()))
    }
}

impl CustomOp1 for SoftmaxLastDim {
    fn name(&self) -> &'static str {
        "smai-softmax-last-dim"
    }
    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let src = contiguous_f32(storage, layout)?;
        let row = layout.shape().dims().last().copied().unwrap_or(1).max(1);
        let mut dst = src.to_vec();
        // Rows grouped so each task has at least CHUNK elements.
        let rows_per_task = CHUNK.div_ceil(row);
        dst.par_chunks_mut(row * rows_per_task).for_each(|rows| rows.chunks_mut(row).for_each(softmax_in_place));
        Ok((CpuStorage::F32(dst), layout.shape().clone()))
    }
}

fn on_cpu_f32(x: &Tensor) -> bool {
    x.device().is_cpu() && x.dtype() == DType::F32
}

/// Runs `f` on a thread of rayon's pool, the calling thread waiting: the parallel products,
/// attention and convolutions inside then fork from a worker, whose tasks the other workers
/// steal, where each call from outside the pool would hand its tasks over and put the
/// calling thread to sleep until they are done (tens of microseconds apiece, over the
/// hundreds of small operations of a decoder step or a voice's text encoder). For bounded
/// computation only (an encoder pass, a decoder call, a sentence's stage): a worker waiting on
/// its own tasks may take up another such piece from the pool's queue meanwhile, and a worker
/// that blocks (on a channel, say) holds one of the pool's threads.
/// On a worker already, `f` runs in place.
pub fn on_pool<R: Send>(f: impl FnOnce() -> R + Send) -> R {
    rayon::scope(|_| f())
}

/// Runs `f` on the f32 values of a CPU tensor, in row-major order, without copying them when
/// the tensor is already contiguous.
pub fn with_values<R>(x: &Tensor, f: impl FnOnce(&[f32]) -> R) -> Result<R> {
    let x = x.contiguous()?;
    let (storage, layout) = x.storage_and_layout();
    match &*storage {
        candle_core::Storage::Cpu(cpu) => {
            let start = layout.start_offset();
            Ok(f(&cpu.as_slice::<f32>()?[start..start + layout.shape().elem_count()]))
        }
        _ => candle_core::bail!("CPU tensor expected"),
    }
}

/// Exact GELU (the reference's `F.gelu`).
pub fn gelu(x: &Tensor) -> Result<Tensor> {
    if on_cpu_f32(x) {
        x.contiguous()?.apply_op1_no_bwd(&Gelu)
    } else {
        x.gelu_erf()
    }
}

/// Softmax over the last dimension.
pub fn softmax_last_dim(x: &Tensor) -> Result<Tensor> {
    if on_cpu_f32(x) {
        x.contiguous()?.apply_op1_no_bwd(&SoftmaxLastDim)
    } else {
        candle_nn::ops::softmax_last_dim(x)
    }
}

/// A tensor of fixed pseudo-random values, uniform in [-scale, scale): the kernel tests use the
/// same inputs on every run (candle's CPU generator cannot be seeded).
#[cfg(test)]
pub(super) fn test_tensor<S: Into<Shape>>(shape: S, scale: f32, seed: u64) -> Result<Tensor> {
    let shape = shape.into();
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let values = (0..shape.elem_count())
        .map(|_| {
            // xorshift64*
            state ^= state >> 12;
            state ^= state << 25;
            state ^= state >> 27;
            let r = state.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 40;
            (r as f32 / (1u64 << 24) as f32 * 2.0 - 1.0) * scale
        })
        .collect::<Vec<f32>>();
    Tensor::from_vec(values, shape, &candle_core::Device::Cpu)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn erf64(x: f64) -> f64 {
        candle_core::cpu::erf::erf_f64(x)
    }

    #[test]
    fn every_isa_level_gives_bit_identical_results() {
        use crate::cpu_isa::{with_level, Isa};
        let input: Vec<f32> = (0..4099).map(|i| ((i * 7919) % 2003) as f32 * 0.01 - 10.0).collect();
        let run = |level| {
            with_level(level, || {
                let (mut gelu, mut softmax) = (input.clone(), input.clone());
                gelu_in_place(&mut gelu);
                softmax_in_place(&mut softmax);
                (gelu, softmax)
            })
        };
        let scalar = run(Isa::Scalar);
        for level in Isa::available() {
            let (gelu, softmax) = run(level);
            assert!(gelu.iter().zip(&scalar.0).all(|(a, b)| a.to_bits() == b.to_bits()), "GELU at {level:?}");
            assert!(softmax.iter().zip(&scalar.1).all(|(a, b)| a.to_bits() == b.to_bits()), "softmax at {level:?}");
        }
    }

    #[test]
    fn exp_is_within_two_ulp_of_f64() {
        let mut worst = 0.0f64;
        for i in -87_000..88_000 {
            let x = i as f32 * 1e-3 + 0.000_37;
            let want = (x as f64).exp();
            let got = exp(x) as f64;
            worst = worst.max(((got - want) / want).abs());
        }
        eprintln!("exp: worst relative error {worst:e}");
        assert!(worst < 2.5e-7, "worst relative error {worst:e}");
        assert_eq!(exp(-200.0), 0.0);
        assert_eq!(exp(f32::NEG_INFINITY), 0.0);
        assert_eq!(exp(0.0), 1.0);
    }

    #[test]
    fn tanh_and_sigmoid_stay_within_a_micro_of_f64() {
        let (mut worst_tanh, mut worst_sigmoid) = (0.0f64, 0.0f64);
        for i in -20_000..20_000 {
            let x = i as f32 * 1e-3 + 0.000_37;
            let t = (x as f64).tanh();
            worst_tanh = worst_tanh.max((tanh(x) as f64 - t).abs() / t.abs().max(1e-30));
            let s = 1.0 / (1.0 + (-(x as f64)).exp());
            worst_sigmoid = worst_sigmoid.max((sigmoid(x) as f64 - s).abs() / s);
        }
        eprintln!("tanh: worst relative error {worst_tanh:e}; sigmoid: {worst_sigmoid:e}");
        assert!(worst_tanh < 1e-6 && worst_sigmoid < 1e-6, "tanh {worst_tanh:e}, sigmoid {worst_sigmoid:e}");
        assert_eq!((tanh(50.0), tanh(-50.0), tanh(0.0)), (1.0, -1.0, 0.0));
        assert!(sigmoid(-200.0) < 1e-30 && sigmoid(200.0) == 1.0);
    }

    #[test]
    fn gelu_matches_the_f64_definition() {
        let mut worst = 0.0f64;
        for i in -12_000..12_000 {
            let x = i as f32 * 1e-3 + 0.000_13;
            let xd = x as f64;
            let want = 0.5 * xd * (1.0 + erf64(xd / std::f64::consts::SQRT_2));
            let got = gelu_erf(x) as f64;
            // Absolute error against the input's scale: what the next matrix product sees.
            worst = worst.max((got - want).abs() / xd.abs().max(1.0));
        }
        eprintln!("gelu: worst error scaled by max(|x|, 1) {worst:e}");
        assert!(worst < 3e-7, "worst scaled error {worst:e}");
        assert_eq!(gelu_erf(0.0), 0.0);
        assert_eq!(gelu_erf(-30.0), 0.0);
        assert_eq!(gelu_erf(30.0), 30.0);
    }

    #[test]
    fn tensor_ops_match_f64_references() -> Result<()> {
        let (rows, width) = (21, 1501);
        let x = test_tensor((3, 7, width), 3.0, 1)?;
        let xs = x.flatten_all()?.to_vec1::<f32>()?;
        // GELU as a tensor op is the scalar function, element by element, and stays within
        // f32 rounding of candle's (libm erf) version.
        let ours = gelu(&x)?.flatten_all()?.to_vec1::<f32>()?;
        assert!(ours.iter().zip(&xs).all(|(&g, &v)| g == gelu_erf(v)));
        let candle = x.gelu_erf()?.flatten_all()?.to_vec1::<f32>()?;
        let worst =
            ours.iter().zip(&candle).zip(&xs).map(|((a, b), v)| (a - b).abs() / v.abs().max(1.0)).fold(0.0, f32::max);
        assert!(worst < 1e-6, "gelu differs from candle's by {worst:e} (scaled)");
        // Softmax against an f64 softmax of the same inputs, with masked (-inf) tails.
        let mask = Tensor::full(f32::NEG_INFINITY, (3, 7, 5), &x.device().clone())?;
        let ours = softmax_last_dim(&Tensor::cat(&[&x, &mask], 2)?)?.flatten_all()?.to_vec1::<f32>()?;
        let mut worst = 0.0f64;
        for (row, got) in xs.chunks(width).zip(ours.chunks(width + 5)) {
            let max = row.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v)) as f64;
            let exps: Vec<f64> = row.iter().map(|&v| (v as f64 - max).exp()).collect();
            let sum: f64 = exps.iter().sum();
            for (e, &g) in exps.iter().zip(got) {
                worst = worst.max((g as f64 - e / sum).abs() / (e / sum));
            }
            assert!(got[width..].iter().all(|&g| g == 0.0), "masked entries must be exactly 0");
        }
        eprintln!("softmax: worst relative error {worst:e} over {rows} rows of {width}");
        assert!(worst < 1e-6, "softmax worst relative error {worst:e}");
        Ok(())
    }
}

//! float32 dense layers whose weights stay at the half width the model file stores them in
//! (CTranslate2's Whisper conversions hold float16): every f16 widens to exactly one f32, so
//! products over rows widened as they are read give the float32 results bit for bit, in half
//! the memory. Weights scaled by a power of two at load (the query projections) are held
//! unscaled and scaled back as they widen, which is exact too. Weights that are not all exact
//! f16 values that way (a float32 file's) stay float32.

use std::cell::RefCell;

use half::f16;
use half::slice::HalfFloatSliceExt;

use crate::cpu_isa::{level, Isa};

use super::cpu_linear::{add_dot_products, product, RowSource};

/// Values widened per gemm call: a few MB, so the widened copy stays small beside the weights
/// (the vocabulary alone would be 80-106 MB as f32) and one call still covers an encoder layer.
const WIDEN_BLOCK: usize = 1 << 20;

thread_local! {
    /// The rows being widened, reused from call to call (decoding runs hundreds a token).
    static WIDENED: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

/// Powers of two tried as the scale of weights scaled at load: down to 2^-8.
const MAX_SHIFT: i32 = 8;

/// A float32 weight matrix `[out, in]` held as f16 values times a power of two.
pub struct HalfWeights {
    /// The f16 values' bits.
    values: Vec<u16>,
    /// 2^-shift: each weight is `values[i] * scale`.
    scale: f32,
    in_dim: usize,
    out_dim: usize,
}

impl HalfWeights {
    /// The weights at half width, or None when they are not all exactly f16 values times one
    /// power of two.
    pub fn new(w: &[f32], out_dim: usize, in_dim: usize) -> Option<Self> {
        assert_eq!(w.len(), out_dim * in_dim, "weight size");
        let isa = level();
        (0..=MAX_SHIFT).find_map(|shift| {
            let scale = 2f32.powi(-shift);
            let mut values = vec![0u16; w.len()];
            // In pieces, so that loading holds no float copy beside the weights.
            let (mut scaled, mut halves, mut back) = ([0.0f32; 4096], [f16::ZERO; 4096], [0.0f32; 4096]);
            for (piece, bits) in w.chunks(4096).zip(values.chunks_mut(4096)) {
                let n = piece.len();
                piece.iter().zip(&mut scaled[..n]).for_each(|(&v, s)| *s = v / scale);
                halves[..n].convert_from_f32_slice(&scaled[..n]);
                halves[..n].iter().zip(bits.iter_mut()).for_each(|(h, b)| *b = h.to_bits());
                widen(bits, &mut back[..n], isa);
                if !back[..n].iter().zip(piece).all(|(&h, &v)| (h * scale).to_bits() == v.to_bits()) {
                    return None;
                }
            }
            Some(Self { values, scale, in_dim, out_dim })
        })
    }

    /// `half` widened into `out`, scaled back.
    fn widen(&self, half: &[u16], out: &mut [f32], isa: Isa) {
        widen(half, out, isa);
        if self.scale != 1.0 {
            out.iter_mut().for_each(|v| *v *= self.scale);
        }
    }

    pub fn out_dim(&self) -> usize {
        self.out_dim
    }

    /// Row `j` as float: the token embedding where the vocabulary projection is tied to it.
    pub fn dequantized_row(&self, j: usize, out: &mut [f32]) {
        self.widen(&self.values[j * self.in_dim..][..self.in_dim], &mut out[..self.in_dim], level());
    }

    /// `x W^T + b` for `x` of `rows x in` (row-major), as `rows x out`: the float32 layer's
    /// own products on the widened rows.
    pub fn forward(&self, x: &[f32], b: &[f32]) -> Vec<f32> {
        // The level is read here, on the calling thread: the products run on rayon's.
        let rows = HalfRows { weights: self, isa: level() };
        product(x, b, self.in_dim, &rows, (WIDEN_BLOCK / self.in_dim.max(1)).max(1))
    }
}

/// The weights as the products read them, at the caller's vector level.
struct HalfRows<'a> {
    weights: &'a HalfWeights,
    isa: Isa,
}

impl RowSource for HalfRows<'_> {
    fn with_rows(&self, first: usize, n: usize, f: &mut dyn FnMut(&[f32])) {
        let this = self.weights;
        let half = &this.values[first * this.in_dim..(first + n) * this.in_dim];
        let widen = |buf: &mut Vec<f32>| {
            buf.resize(half.len(), 0.0);
            this.widen(half, buf, self.isa);
        };
        WIDENED.with(|cell| match cell.try_borrow_mut() {
            Ok(mut buf) => {
                widen(&mut buf);
                f(&buf);
            }
            // Only where a call nests inside another on this thread.
            Err(_) => {
                let mut buf = Vec::new();
                widen(&mut buf);
                f(&buf);
            }
        });
    }

    fn add_dots(&self, first: usize, outs: &mut [f32], xs: &[f32]) {
        let in_dim = self.weights.in_dim;
        let n = outs.len() / (xs.len() / in_dim).max(1);
        #[cfg(target_arch = "x86_64")]
        if let Some(xs) = self.inputs_scaled(xs) {
            let rows = &self.weights.values[first * in_dim..(first + n) * in_dim];
            if self.isa == Isa::Avx512 {
                // SAFETY: the level is only Avx512 where the CPU has AVX-512 F.
                return unsafe { x86::add_dots_avx512(outs, rows, &xs, in_dim) };
            }
            if self.isa == Isa::Avx2 && is_x86_feature_detected!("f16c") {
                // SAFETY: AVX2, FMA (the level) and F16C checked.
                return unsafe { x86::add_dots_avx2(outs, rows, &xs, in_dim) };
            }
        }
        // CPUs without F16C, and inputs too small to scale exactly: widened, then float32's
        // own dot products.
        self.with_rows(first, n, &mut |w| {
            for (out, x) in outs.chunks_exact_mut(n.max(1)).zip(xs.chunks_exact(in_dim)) {
                add_dot_products(out, w, x);
            }
        });
    }
}

impl HalfRows<'_> {
    /// `xs` times the weights' scale, where that is exact for every value: then the unscaled
    /// weights' products with them are the scaled weights' products with `xs` bit for bit
    /// (each multiply-add rounds the same real number once). Scaling a value by 2^-k is exact
    /// unless the result falls below the normal range.
    fn inputs_scaled<'x>(&self, xs: &'x [f32]) -> Option<std::borrow::Cow<'x, [f32]>> {
        let scale = self.weights.scale;
        if scale == 1.0 {
            return Some(xs.into());
        }
        let exact = |v: f32| v == 0.0 || (v * scale).abs() >= f32::MIN_POSITIVE;
        xs.iter().all(|&v| exact(v)).then(|| xs.iter().map(|&v| v * scale).collect::<Vec<_>>().into())
    }
}

#[inline(always)]
fn widen_one(h: u16) -> f32 {
    f16::from_bits(h).to_f32()
}

/// f16 bits widened to f32: F16C's or AVX-512's conversions where the CPU has them (half's
/// slice conversion calls a function per eight values, which cost decoding a third of its time).
fn widen(src: &[u16], dst: &mut [f32], isa: Isa) {
    assert_eq!(src.len(), dst.len(), "widen sizes");
    #[cfg(target_arch = "x86_64")]
    {
        if isa == Isa::Avx512 {
            // SAFETY: the level is only Avx512 where the CPU has AVX-512 F.
            return unsafe { x86::widen_avx512(src, dst) };
        }
        if isa == Isa::Avx2 && is_x86_feature_detected!("f16c") {
            // SAFETY: F16C checked.
            return unsafe { x86::widen_f16c(src, dst) };
        }
    }
    dst.iter_mut().zip(src).for_each(|(d, &h)| *d = widen_one(h));
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    use super::widen_one;
    use crate::cpu_isa::{prefetch, PREFETCH_BYTES};

    #[target_feature(enable = "avx512f")]
    pub unsafe fn widen_avx512(src: &[u16], dst: &mut [f32]) {
        let chunks = src.len() / 16;
        for i in 0..chunks {
            let h = _mm256_loadu_si256(src.as_ptr().add(16 * i).cast());
            _mm512_storeu_ps(dst.as_mut_ptr().add(16 * i), _mm512_cvtph_ps(h));
        }
        for i in 16 * chunks..src.len() {
            dst[i] = widen_one(src[i]);
        }
    }

    #[target_feature(enable = "avx,f16c")]
    pub unsafe fn widen_f16c(src: &[u16], dst: &mut [f32]) {
        let chunks = src.len() / 8;
        for i in 0..chunks {
            let h = _mm_loadu_si128(src.as_ptr().add(8 * i).cast());
            _mm256_storeu_ps(dst.as_mut_ptr().add(8 * i), _mm256_cvtph_ps(h));
        }
        for i in 8 * chunks..src.len() {
            dst[i] = widen_one(src[i]);
        }
    }

    /// The sixteen running sums of a row in order, then their sum and the tail's, as the
    /// scalar loop adds them.
    #[inline(always)]
    fn finish(acc: [f32; 16], row: &[u16], x: &[f32]) -> f32 {
        let done = row.len() / 16 * 16;
        let tail: f32 = row[done..].iter().zip(&x[done..]).map(|(&a, b)| widen_one(a) * b).sum();
        acc.iter().sum::<f32>() + tail
    }

    /// Calls `tile::<W, R>((j, b), args..)` over `n_out` weight rows by `n_in` input rows: W
    /// weight rows by R input rows at a time (R from the list `1, 2, ..`, as many as are left),
    /// then the weight rows left over one by one.
    macro_rules! tiles {
        ($tile:ident, $w:literal, [$($r:literal),+], $n_out:expr, $n_in:expr, $args:tt) => {{
            let (n_out, n_in, most) = ($n_out, $n_in, [$($r),+].len());
            for b in (0..n_in).step_by(most) {
                let (mut j, r) = (0, (n_in - b).min(most));
                while j + $w <= n_out {
                    match r {
                        $($r => tiles!(@call $tile, $w, $r, (j, b), $args),)+
                        _ => unreachable!("at most {most} input rows a tile"),
                    }
                    j += $w;
                }
                for j in j..n_out {
                    for b in b..b + r {
                        tiles!(@call $tile, 1, 1, (j, b), $args);
                    }
                }
            }
        }};
        (@call $tile:ident, $w:expr, $r:expr, $at:expr, ($($arg:expr),*)) => {
            $tile::<$w, $r>($at, $($arg),*)
        };
    }

    /// The operands of [`add_dots_avx512`] and [`add_dots_avx2`].
    struct Dots<'a> {
        outs: &'a mut [f32],
        rows: &'a [u16],
        xs: &'a [f32],
        n: usize,
    }

    /// Adds one tile's sums to `outs` (`n_out` per input row): each pair's sixteen running
    /// sums finished as [`finish`] does for the single-row dot product.
    #[inline(always)]
    fn add_finished<const W: usize, const R: usize>(lanes: [[[f32; 16]; R]; W], at: (usize, usize), dots: &mut Dots) {
        let ((j, b), n) = (at, dots.n);
        let n_out = dots.rows.len() / n;
        for (a, lanes) in lanes.iter().enumerate() {
            for (c, &lanes) in lanes.iter().enumerate() {
                let (row, x) = (&dots.rows[(j + a) * n..][..n], &dots.xs[(b + c) * n..][..n]);
                dots.outs[(b + c) * n_out + j + a] += finish(lanes, row, x);
            }
        }
    }

    /// `outs[b * n_out + j] += row_j . x_b` for every weight row of `rows` and every input row
    /// of `xs` (each `n` long). Every pair is summed as a single row's dot product sums it
    /// (sixteen running sums in order, then [`finish`]), so the results are the same bit for
    /// bit; the tiles give the core independent chains of multiply-adds to overlap (one chain
    /// alone waits on each add) and widen each weight once for several input rows (the
    /// beams).
    #[target_feature(enable = "avx512f")]
    pub unsafe fn add_dots_avx512(outs: &mut [f32], rows: &[u16], xs: &[f32], n: usize) {
        tiles!(tile_avx512, 4, [1, 2, 3, 4], rows.len() / n, xs.len() / n, (&mut Dots { outs, rows, xs, n }));
    }

    /// Weight rows `j..j + W` against input rows `b..b + R`, `at = (j, b)`.
    #[target_feature(enable = "avx512f")]
    unsafe fn tile_avx512<const W: usize, const R: usize>(at: (usize, usize), dots: &mut Dots) {
        let ((j, b), rows, xs, n) = (at, dots.rows, dots.xs, dots.n);
        let mut acc = [[_mm512_setzero_ps(); R]; W];
        let mut w = [_mm512_setzero_ps(); W];
        for i in (0..n / 16 * 16).step_by(16) {
            for (a, w) in w.iter_mut().enumerate() {
                let row = rows.as_ptr().add((j + a) * n + i);
                prefetch(row.wrapping_add(PREFETCH_BYTES / 2));
                *w = _mm512_cvtph_ps(_mm256_loadu_si256(row.cast()));
            }
            for c in 0..R {
                let x = _mm512_loadu_ps(xs.as_ptr().add((b + c) * n + i));
                for (acc, &w) in acc.iter_mut().zip(&w) {
                    acc[c] = _mm512_fmadd_ps(w, x, acc[c]);
                }
            }
        }
        let mut lanes = [[[0.0f32; 16]; R]; W];
        for (lanes, acc) in lanes.iter_mut().zip(&acc) {
            for (lanes, &acc) in lanes.iter_mut().zip(acc) {
                _mm512_storeu_ps(lanes.as_mut_ptr(), acc);
            }
        }
        add_finished(lanes, at, dots);
    }

    /// As [`add_dots_avx512`], each row's sixteen sums in two AVX registers.
    #[target_feature(enable = "avx2,fma,f16c")]
    pub unsafe fn add_dots_avx2(outs: &mut [f32], rows: &[u16], xs: &[f32], n: usize) {
        tiles!(tile_avx2, 2, [1, 2], rows.len() / n, xs.len() / n, (&mut Dots { outs, rows, xs, n }));
    }

    /// Weight rows `j..j + W` against input rows `b..b + R`, `at = (j, b)`.
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn tile_avx2<const W: usize, const R: usize>(at: (usize, usize), dots: &mut Dots) {
        let ((j, b), rows, xs, n) = (at, dots.rows, dots.xs, dots.n);
        let mut acc = [[[_mm256_setzero_ps(); 2]; R]; W];
        let mut w = [[_mm256_setzero_ps(); 2]; W];
        for i in (0..n / 16 * 16).step_by(16) {
            for (a, w) in w.iter_mut().enumerate() {
                let row = rows.as_ptr().add((j + a) * n + i);
                prefetch(row.wrapping_add(PREFETCH_BYTES / 2));
                *w =
                    [_mm256_cvtph_ps(_mm_loadu_si128(row.cast())), _mm256_cvtph_ps(_mm_loadu_si128(row.add(8).cast()))];
            }
            for c in 0..R {
                let x = xs.as_ptr().add((b + c) * n + i);
                let x = [_mm256_loadu_ps(x), _mm256_loadu_ps(x.add(8))];
                for (acc, w) in acc.iter_mut().zip(&w) {
                    acc[c][0] = _mm256_fmadd_ps(w[0], x[0], acc[c][0]);
                    acc[c][1] = _mm256_fmadd_ps(w[1], x[1], acc[c][1]);
                }
            }
        }
        let mut lanes = [[[0.0f32; 16]; R]; W];
        for (lanes, acc) in lanes.iter_mut().zip(&acc) {
            for (lanes, acc) in lanes.iter_mut().zip(acc) {
                _mm256_storeu_ps(lanes.as_mut_ptr(), acc[0]);
                _mm256_storeu_ps(lanes.as_mut_ptr().add(8), acc[1]);
            }
        }
        add_finished(lanes, at, dots);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::whisper::cpu_linear::Dense;
    use crate::whisper::cpu_ops::test_tensor;
    use candle_core::{Result, Tensor};

    fn rounded_to_f16(t: &Tensor) -> Result<Tensor> {
        t.to_dtype(candle_core::DType::F16)?.to_dtype(candle_core::DType::F32)
    }

    #[test]
    fn half_width_weights_give_the_float32_results_bit_for_bit() -> Result<()> {
        // Few rows (dot products), many (gemm, the vocabulary in several widened blocks).
        for (rows, in_dim, out_dim) in
            [(1, 384, 51_865), (5, 384, 3000), (3, 37, 50), (2, 37, 7), (9, 37, 5), (300, 512, 5000), (1500, 384, 1536)]
        {
            let w = rounded_to_f16(&test_tensor((out_dim, in_dim), 0.17, 1)?)?;
            let b = test_tensor(out_dim, 1.7, 2)?;
            let x = test_tensor((1, rows, in_dim), 1.7, 3)?;
            let float = Dense::new(w.clone(), Some(b.clone()))?;
            let mut half = Dense::new(w, Some(b))?;
            half.pack(crate::whisper::compute_type::ComputeType::Float32)?;
            assert!(half.is_packed(), "exact f16 weights are held at half width");
            for isa in Isa::available() {
                // Each level against float32 at that level (the levels' gemm kernels differ).
                let run = |dense: &Dense| dense.forward(&x)?.flatten_all()?.to_vec1::<f32>();
                let want = crate::cpu_isa::with_level(isa, || run(&float))?;
                let got = crate::cpu_isa::with_level(isa, || run(&half))?;
                let same = want.iter().zip(&got).all(|(a, b)| a.to_bits() == b.to_bits());
                assert!(same, "{rows}x{in_dim}->{out_dim} at {isa:?}: results differ");
            }
        }
        Ok(())
    }

    #[test]
    fn weights_scaled_by_a_power_of_two_are_held_unscaled() -> Result<()> {
        let w = (rounded_to_f16(&test_tensor((40, 64), 0.17, 1)?)? * 0.125)?;
        let values: Vec<f32> = w.flatten_all()?.to_vec1()?;
        // Some of these are below f16's normal range unscaled: only a scale holds them all.
        assert!(values.iter().any(|&v| v != 0.0 && v.abs() < 6.1e-5 && f16::from_f32(v).to_f32() != v));
        let half = HalfWeights::new(&values, 40, 64).expect("f16 values times 2^-3");
        assert!(half.scale < 1.0);
        let float = Dense::new(w, None)?;
        // Many rows (gemm) and few (dot products on inputs scaled instead), one input with a
        // value too small to scale exactly (widened weights instead).
        for (rows, tiny) in [(12, false), (5, false), (1, false), (2, true)] {
            let mut xs: Vec<f32> = test_tensor((1, rows, 64), 1.7, 3)?.flatten_all()?.to_vec1()?;
            if tiny {
                xs[70] = 3.0e-38;
            }
            let x = Tensor::from_vec(xs.clone(), (1, rows, 64), &candle_core::Device::Cpu)?;
            for isa in Isa::available() {
                let want: Vec<f32> = crate::cpu_isa::with_level(isa, || float.forward(&x)?.flatten_all()?.to_vec1())?;
                let got = crate::cpu_isa::with_level(isa, || half.forward(&xs, &[0.0; 40]));
                let same = want.iter().zip(&got).all(|(a, b)| a.to_bits() == b.to_bits());
                assert!(same, "{rows} rows at {isa:?}: scaled weights differ");
            }
        }
        Ok(())
    }

    #[test]
    fn weights_that_are_not_f16_stay_float32() -> Result<()> {
        let w = test_tensor((8, 16), 0.17, 1)?;
        assert!(HalfWeights::new(&w.flatten_all()?.to_vec1()?, 8, 16).is_none());
        let mut dense = Dense::new(w, None)?;
        dense.pack(crate::whisper::compute_type::ComputeType::Float32)?;
        assert!(!dense.is_packed());
        Ok(())
    }

    #[test]
    fn rows_widen_exactly() {
        let w: Vec<f32> = (0..12).map(|i| f16::from_f32(i as f32 * 0.3 - 1.0).to_f32()).collect();
        let half = HalfWeights::new(&w, 3, 4).expect("exact");
        let mut row = [0.0f32; 4];
        half.dequantized_row(2, &mut row);
        assert_eq!(row.as_slice(), &w[8..12]);
    }
}

//! The input and output transforms of the Winograd convolutions (`winograd.rs`), channels-last.
//! Each transformed value is a short sum over the tile's eight positions; summed one after the
//! other, every value waits on its previous multiply-add's result. The kernels here keep the
//! sums of all eight positions (input) or all outputs of a tile (output) in registers side by
//! side, a vector of channels each, so that those chains run interleaved. Written with
//! intrinsics: left to the compiler, the loops over positions were vectorised instead of those
//! over channels, with gathers.
//!
//! Every level sums each value in the same order (position ascending, one fused multiply-add
//! per term, zero coefficients included: they add exact zeros), so AVX-512, AVX2 and plain code
//! give bit-identical results.

use super::winograd::{CHUNK, COLS, POINTS};
use crate::cpu_isa::{level, Isa};

/// What the output rows are added to: the bias and, when given, the residual (`[len][cout]`).
#[derive(Clone, Copy)]
pub(super) struct Base<'a> {
    pub bias: &'a [f32],
    pub residual: Option<&'a [f32]>,
}

/// A convolution's input as the input transform reads it: `x` (`[len][cin]`) preceded by
/// `pad` rows of zeros and followed by as many as the tiles read, with the leaky ReLU of
/// `slope` applied.
pub(super) struct Input<'a> {
    pub x: &'a [f32],
    pub len: usize,
    pub pad: usize,
    pub slope: f32,
    /// One row of `cin` zeros.
    pub zeros: &'a [f32],
}

impl Input<'_> {
    /// Padded row `r`.
    fn row(&self, r: usize, cin: usize) -> *const f32 {
        match r.checked_sub(self.pad) {
            Some(t) if t < self.len => self.x[t * cin..(t + 1) * cin].as_ptr(),
            _ => self.zeros.as_ptr(),
        }
    }
}

/// For each tile i of `starts` (its first padded row): `transformed[xi * stride + i * cin + c] =
/// sum_j B^T[xi][j] * leaky_relu(row start + j * dilation)[c]`, j ascending.
pub(super) fn transform_input(
    bt: &[[f32; POINTS]; POINTS],
    input: &Input,
    starts: &[usize],
    dilation: usize,
    transformed: &mut [f32],
    stride: usize,
) {
    let cin = stride / CHUNK;
    assert!(input.x.len() == input.len * cin && input.zeros.len() == cin, "input rows");
    let isa = level();
    for (i, &start) in starts.iter().enumerate() {
        assert!((POINTS - 1) * stride + (i + 1) * cin <= transformed.len(), "transformed tile bounds");
        let rows: [*const f32; POINTS] = std::array::from_fn(|j| input.row(start + j * dilation, cin));
        let outs: [*mut f32; POINTS] = std::array::from_fn(|xi| transformed[xi * stride + i * cin..].as_mut_ptr());
        // SAFETY: every row holds `cin` floats (`Input::row`) and the assert keeps each
        // position's `cin` outputs inside `transformed`; `level` never names a level the CPU lacks.
        let done = unsafe {
            match isa {
                #[cfg(target_arch = "x86_64")]
                Isa::Avx512 => x86::input_avx512(bt, &rows, &outs, cin, input.slope),
                #[cfg(target_arch = "x86_64")]
                Isa::Avx2 => x86::input_avx2(bt, &rows, &outs, cin, input.slope),
                _ => 0,
            }
        };
        let act = |v: f32| if v < 0.0 { v * input.slope } else { v };
        for c in done..cin {
            for (xi, coefficients) in bt.iter().enumerate() {
                // SAFETY: as above, c < cin.
                let sum =
                    (0..POINTS).fold(0.0f32, |acc, j| coefficients[j].mul_add(act(unsafe { *rows[j].add(c) }), acc));
                unsafe { *outs[xi].add(c) = sum };
            }
        }
    }
}

/// For each tile i of `starts` (its first output row) and each row j of `A^T` whose output
/// `start + j * dilation` is in `out` (`[len][cout]`): that row = `(residual + bias) + sum_xi
/// A^T[j][xi] * products[xi * stride + i * cout ..]`, xi ascending. `A^T` has 6, 4 or 2 rows
/// (the covered kernels of 3, 5 and 7 taps); output channels are a multiple of [`COLS`].
pub(super) fn transform_output(
    at: &[[f32; POINTS]],
    products: &[f32],
    starts: &[usize],
    dilation: usize,
    base: Base,
    out: &mut [f32],
) {
    let tiles = OutputTiles { products, starts, dilation, base, out };
    match at.len() {
        6 => output_rows::<6>(at, tiles),
        4 => output_rows::<4>(at, tiles),
        2 => output_rows::<2>(at, tiles),
        m => unreachable!("{m} outputs per tile: kernels of 3, 5 and 7 taps only"),
    }
}

/// The arguments of [`transform_output`] after `A^T`.
struct OutputTiles<'a> {
    products: &'a [f32],
    starts: &'a [usize],
    dilation: usize,
    base: Base<'a>,
    out: &'a mut [f32],
}

/// [`transform_output`] for `M` outputs per tile.
fn output_rows<const M: usize>(at: &[[f32; POINTS]], tiles: OutputTiles) {
    let OutputTiles { products, starts, dilation, base, out } = tiles;
    let at: &[[f32; POINTS]; M] = at.try_into().expect("M rows of A^T");
    let cout = base.bias.len();
    assert!(cout.is_multiple_of(COLS), "output channels a multiple of {COLS}");
    assert!(base.residual.is_none_or(|r| r.len() == out.len()), "residual size");
    let (stride, len) = (CHUNK * cout, out.len() / cout);
    let isa = level();
    for (i, &start) in starts.iter().enumerate() {
        assert!((POINTS - 1) * stride + (i + 1) * cout <= products.len(), "products tile bounds");
        let rows = (0..M).take_while(|&j| start + j * dilation < len).count();
        let row = |j: usize| (start + j * dilation).min(len - 1) * cout;
        let tile = OutputTile {
            products: products[i * cout..].as_ptr(),
            stride,
            dst: std::array::from_fn(|j| out[row(j)..].as_mut_ptr()),
            residual: base.residual.map(|r| std::array::from_fn(|j| r[row(j)..].as_ptr())),
            bias: base.bias.as_ptr(),
            rows,
            cout,
        };
        // SAFETY: the asserts keep every read of `products`, `residual` and `bias` and every
        // write of `out` (rows below `len`, `cout` channels each) inside the slices; `level`
        // never names a level the CPU lacks.
        unsafe {
            match isa {
                #[cfg(target_arch = "x86_64")]
                Isa::Avx512 => x86::output_avx512(at, &tile),
                #[cfg(target_arch = "x86_64")]
                Isa::Avx2 => x86::output_avx2(at, &tile),
                _ => output_plain(at, &tile),
            }
        }
    }
}

/// One tile's output rows for the kernels: `rows` of the `M` rows are inside the output.
struct OutputTile<const M: usize> {
    /// The tile's products at position 0; position xi `stride` further on.
    products: *const f32,
    stride: usize,
    dst: [*mut f32; M],
    residual: Option<[*const f32; M]>,
    bias: *const f32,
    rows: usize,
    cout: usize,
}

/// The plain-code output rows.
///
/// # Safety
/// `tile`'s pointers cover `cout` channels of every position and of its first `rows` rows.
unsafe fn output_plain<const M: usize>(at: &[[f32; POINTS]; M], tile: &OutputTile<M>) {
    for c in 0..tile.cout {
        for (j, coefficients) in at.iter().enumerate().take(tile.rows) {
            let sum = (0..POINTS)
                .fold(0.0f32, |acc, xi| coefficients[xi].mul_add(*tile.products.add(xi * tile.stride + c), acc));
            let bias = *tile.bias.add(c);
            let base = tile.residual.map_or(bias, |r| *r[j].add(c) + bias);
            *tile.dst[j].add(c) = base + sum;
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    use super::{OutputTile, POINTS};

    /// Defines one level's input transform: the eight positions' sums for a vector of
    /// channels at a time, of the rows' values through the leaky ReLU (`max(x, slope * x)`,
    /// for slopes below 1 the same as `x < 0 ? slope * x : x`); returns the channels done (the
    /// rest are fewer than a vector).
    macro_rules! input_kernel {
        ($(#[$doc:meta])* $name:ident, $feature:literal, $lanes:literal,
         $zero:ident, $load:ident, $splat:ident, $mul:ident, $max:ident, $fma:ident, $store:ident) => {
            $(#[$doc])*
            #[target_feature(enable = $feature)]
            pub unsafe fn $name(
                bt: &[[f32; POINTS]; POINTS],
                rows: &[*const f32; POINTS],
                outs: &[*mut f32; POINTS],
                cin: usize,
                slope: f32,
            ) -> usize {
                let slope = $splat(slope);
                let mut c = 0;
                while c + $lanes <= cin {
                    let mut acc = [$zero(); POINTS];
                    for (j, row) in rows.iter().enumerate() {
                        let x = $load(row.add(c));
                        let x = $max(x, $mul(x, slope));
                        for (sum, coefficients) in acc.iter_mut().zip(bt) {
                            *sum = $fma($splat(coefficients[j]), x, *sum);
                        }
                    }
                    for (sum, out) in acc.iter().zip(outs) {
                        $store(out.add(c), *sum);
                    }
                    c += $lanes;
                }
                c
            }
        };
    }

    /// Defines one level's output transform: the tile's rows for two vectors of channels at a
    /// time, onto the bias and residual.
    macro_rules! output_kernel {
        ($(#[$doc:meta])* $name:ident, $feature:literal, $lanes:literal,
         $zero:ident, $load:ident, $splat:ident, $fma:ident, $add:ident, $store:ident) => {
            $(#[$doc])*
            #[target_feature(enable = $feature)]
            pub unsafe fn $name<const M: usize>(at: &[[f32; POINTS]; M], tile: &OutputTile<M>) {
                for first in (0..tile.cout).step_by(2 * $lanes) {
                    let mut acc = [[$zero(); 2]; M];
                    for xi in 0..POINTS {
                        let p = tile.products.add(xi * tile.stride + first);
                        let p = [$load(p), $load(p.add($lanes))];
                        for (sums, coefficients) in acc.iter_mut().zip(at) {
                            let a = $splat(coefficients[xi]);
                            sums[0] = $fma(a, p[0], sums[0]);
                            sums[1] = $fma(a, p[1], sums[1]);
                        }
                    }
                    for (j, sums) in acc.iter().enumerate().take(tile.rows) {
                        for (v, &sum) in sums.iter().enumerate() {
                            let c = first + v * $lanes;
                            let bias = $load(tile.bias.add(c));
                            let base = match tile.residual {
                                Some(r) => $add($load(r[j].add(c)), bias),
                                None => bias,
                            };
                            $store(tile.dst[j].add(c), $add(base, sum));
                        }
                    }
                }
            }
        };
    }

    input_kernel!(
        /// # Safety
        /// AVX-512 F present; each row readable and each output writable for `cin` floats.
        input_avx512, "avx512f", 16,
        _mm512_setzero_ps, _mm512_loadu_ps, _mm512_set1_ps, _mm512_mul_ps, _mm512_max_ps, _mm512_fmadd_ps,
        _mm512_storeu_ps
    );
    input_kernel!(
        /// # Safety
        /// AVX2 and FMA present; bounds as [`input_avx512`].
        input_avx2, "avx2,fma", 8,
        _mm256_setzero_ps, _mm256_loadu_ps, _mm256_set1_ps, _mm256_mul_ps, _mm256_max_ps, _mm256_fmadd_ps,
        _mm256_storeu_ps
    );
    output_kernel!(
        /// # Safety
        /// AVX-512 F present; `cout` a multiple of 32 and the tile's pointers valid for it.
        output_avx512, "avx512f", 16,
        _mm512_setzero_ps, _mm512_loadu_ps, _mm512_set1_ps, _mm512_fmadd_ps, _mm512_add_ps, _mm512_storeu_ps
    );
    output_kernel!(
        /// # Safety
        /// AVX2 and FMA present; bounds as [`output_avx512`].
        output_avx2, "avx2,fma", 8,
        _mm256_setzero_ps, _mm256_loadu_ps, _mm256_set1_ps, _mm256_fmadd_ps, _mm256_add_ps, _mm256_storeu_ps
    );
}

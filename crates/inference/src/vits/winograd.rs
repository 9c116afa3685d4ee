//! Winograd minimal filtering for the HiFi-GAN residual blocks' convolutions: float32 on the
//! CPU, channels-last (`[time][channel]`). A convolution of K taps spaced d apart gives m
//! outputs spaced d apart from n = m + K - 1 inputs with n products per channel pair instead of
//! m * K (Lavin and Gray, "Fast Algorithms for Convolutional Neural Networks", 2015): each
//! tile's inputs go through `B^T`, each of the n transformed positions is one matrix product
//! over the channels, and `A^T` turns the n products into the m outputs. The matrices come from
//! Toom-Cook interpolation at n = 8 points (0, ±1, ±2, ±1/2 and infinity), where float32
//! rounding stays close to a direct convolution's (unit test): for the generator's kernels of
//! 3, 5 and 7 taps that is 2.25, 2.5 and 1.75 times fewer multiply-adds than the direct kernel of
//! `cpu_conv.rs`, whose speed is already near the cores' peak.
//!
//! Every level sums each value in the same order, so AVX-512, AVX2 and plain code give
//! bit-identical results.

use super::winograd_transforms::{transform_input, transform_output, Base, Input};
use crate::cpu_isa::{level, Isa};

/// Transformed positions per tile.
pub(super) const POINTS: usize = 8;
/// Tiles transformed and multiplied together: their transformed inputs and products stay in
/// the core's cache. A multiple of every level's rows per register block.
pub(super) const CHUNK: usize = 48;
/// Output channels per register block (two AVX-512 vectors); output channels must be a multiple.
pub(super) const COLS: usize = 32;
/// Below this many input channels the transforms cost about as much as the products they save
/// (32 channels measured even with the direct kernel on AVX-512).
const MIN_INPUT_CHANNELS: usize = 64;

/// One convolution's weights, transformed: `conv(leaky_relu(x)) + bias (+ residual)`.
pub struct WinogradConv {
    cin: usize,
    cout: usize,
    taps: usize,
    dilation: usize,
    /// Outputs per tile: `POINTS - taps + 1`.
    outputs: usize,
    /// `B^T`: `[POINTS][POINTS]`.
    input_transform: [[f32; POINTS]; POINTS],
    /// `A^T`: `[outputs][POINTS]`.
    output_transform: Vec<[f32; POINTS]>,
    /// `G w` per position: `[POINTS][cin][cout]`.
    weights: Vec<f32>,
    bias: Vec<f32>,
}

impl WinogradConv {
    /// From weights `[cout, cin, taps]` (PyTorch's Conv1d layout) with "same" padding; `None`
    /// for shapes it does not cover or speed up, which keep the direct kernel: an even kernel,
    /// one of a single tap (nothing to save) or of [`POINTS`] or more, output channels not a
    /// multiple of 32, fewer than [`MIN_INPUT_CHANNELS`] input channels.
    pub fn new(
        weight: &[f32],
        bias: &[f32],
        (cout, cin, taps): (usize, usize, usize),
        dilation: usize,
    ) -> Option<Self> {
        if taps % 2 == 0 || !(3..POINTS).contains(&taps) || cout % COLS != 0 || cin < MIN_INPUT_CHANNELS {
            return None;
        }
        assert_eq!(weight.len(), cout * cin * taps, "conv weight size");
        assert_eq!(bias.len(), cout, "conv bias size");
        let outputs = POINTS - taps + 1;
        let t = Transforms::new(outputs, taps);
        let mut weights = vec![0.0f32; POINTS * cin * cout];
        for (xi, g) in t.filter.iter().enumerate() {
            for o in 0..cout {
                for c in 0..cin {
                    let taps_of = &weight[(o * cin + c) * taps..][..taps];
                    let v: f64 = g.iter().zip(taps_of).map(|(&g, &w)| g * f64::from(w)).sum();
                    weights[(xi * cin + c) * cout + o] = v as f32;
                }
            }
        }
        let input_transform = t.input.map(|row| row.map(|v| v as f32));
        let output_transform = t.output.iter().map(|row| row.map(|v| v as f32)).collect();
        Some(Self {
            cin,
            cout,
            taps,
            dilation,
            outputs,
            input_transform,
            output_transform,
            weights,
            bias: bias.to_vec(),
        })
    }

    /// [`Self::apply_into`] a new vector, with fresh buffers.
    #[cfg(test)]
    pub fn apply(&self, x: &[f32], len: usize, slope: f32, residual: Option<&[f32]>) -> Vec<f32> {
        let mut out = Vec::new();
        self.apply_into(x, len, (slope, residual), &mut out, &mut Scratch::default());
        out
    }

    /// `out` = `[len][cout]`: the convolution of `leaky_relu(x, slope)` (`x`: `[len][cin]`) plus
    /// the bias and, when given, `residual` (`[len][cout]`), on the calling thread, with the
    /// buffers of `scratch` (both reused from call to call: fresh buffers of these sizes cost
    /// page faults on every call).
    pub fn apply_into(
        &self,
        x: &[f32],
        len: usize,
        (slope, residual): (f32, Option<&[f32]>),
        out: &mut Vec<f32>,
        scratch: &mut Scratch,
    ) {
        assert_eq!(x.len(), len * self.cin, "conv input size");
        assert!(residual.is_none_or(|r| r.len() == len * self.cout), "conv residual size");
        let (m, d, cout) = (self.outputs, self.dilation, self.cout);
        let blocks = len.div_ceil(m * d);
        let Scratch { zeros, work } = scratch;
        zeros.resize(self.cin, 0.0);
        // The "same" padding and the rows the last block's tiles read past the end are zeros;
        // the leaky ReLU is applied as the input transform reads the rows.
        let input = Input { x, len, pad: (self.taps - 1) / 2 * d, slope, zeros };
        // Every output is written below; earlier contents are only overwritten.
        out.truncate(len * cout);
        out.resize(len * cout, 0.0);
        let base = Base { bias: &self.bias, residual };
        self.run_tiles(&input, blocks * d, base, out, work);
    }

    /// Tiles `0..tiles` (tile b * d + r holds outputs b * m * d + r + j * d, j < m, and reads
    /// the padded input's rows from the same one) into `out`, a chunk of tiles at a time.
    fn run_tiles(&self, input: &Input, tiles: usize, base: Base, out: &mut [f32], work: &mut Work) {
        let (m, d, cin, cout) = (self.outputs, self.dilation, self.cin, self.cout);
        let Work { transformed, products } = work;
        transformed.resize(POINTS * CHUNK * cin, 0.0);
        products.resize(POINTS * CHUNK * cout, 0.0);
        let block_rows = rows_per_block(level());
        for first in (0..tiles).step_by(CHUNK) {
            let count = CHUNK.min(tiles - first);
            let starts: Vec<usize> = (first..first + count).map(|tile| tile / d * m * d + tile % d).collect();
            transform_input(&self.input_transform, input, &starts, d, transformed, CHUNK * cin);
            // A column block's weights (`[cin][COLS]` per position) stay in cache across the
            // chunk's rows.
            for col in (0..cout).step_by(COLS) {
                for xi in 0..POINTS {
                    let v = &transformed[xi * CHUNK * cin..][..CHUNK * cin];
                    let w = &self.weights[xi * cin * cout..][..cin * cout];
                    let p = &mut products[xi * CHUNK * cout..][..CHUNK * cout];
                    for row in (0..count).step_by(block_rows) {
                        product_block(&v[row * cin..], w, p, (row, col), (cin, cout));
                    }
                }
            }
            transform_output(&self.output_transform, products, &starts, d, base, out);
        }
    }
}

/// A thread's working buffers for [`WinogradConv::apply_into`].
#[derive(Default)]
pub struct Scratch {
    /// One row of zeros, read for the padding.
    zeros: Vec<f32>,
    work: Work,
}

/// A chunk's transformed inputs and products.
#[derive(Default)]
struct Work {
    transformed: Vec<f32>,
    products: Vec<f32>,
}

/// Register-block rows (tiles) of the products at `isa`: AVX-512 keeps 12 rows x 2 vectors of
/// sums in its 32 registers, AVX2 6 rows x 2 in its 16 (32 columns as two halves).
fn rows_per_block(isa: Isa) -> usize {
    if isa == Isa::Avx512 {
        12
    } else {
        6
    }
}

/// The Toom-Cook matrices of F(m, K) at [`POINTS`] points, in f64.
struct Transforms {
    /// `B^T`, rows scaled to a largest entry of 1 (the scale moves into `filter`).
    input: [[f64; POINTS]; POINTS],
    /// `G`: `[POINTS][K]`.
    filter: Vec<Vec<f64>>,
    /// `A^T`: `[m][POINTS]`.
    output: Vec<[f64; POINTS]>,
}

impl Transforms {
    /// For the correlation `y_i = sum_k g_k x_(i+k)`, the transpose of the linear convolution
    /// that Toom-Cook computes: `y = A^T [(G g) * (B^T x)]` with `A^T = E_m^T`, `G = E_K` and
    /// `B^T = V^-T`, where `E_j` evaluates a polynomial of j coefficients at the points (the
    /// point at infinity taking the leading coefficient) and `V = E_POINTS`.
    fn new(m: usize, k: usize) -> Self {
        const FINITE: [f64; POINTS - 1] = [0.0, 1.0, -1.0, 2.0, -2.0, 0.5, -0.5];
        let evaluate = |coefficients: usize, row: usize| -> Vec<f64> {
            match FINITE.get(row) {
                Some(&p) => (0..coefficients).map(|i| p.powi(i as i32)).collect(),
                None => (0..coefficients).map(|i| f64::from(u8::from(i + 1 == coefficients))).collect(),
            }
        };
        let v: Vec<Vec<f64>> = (0..POINTS).map(|row| evaluate(POINTS, row)).collect();
        let v_inv = invert(v);
        let mut input = [[0.0; POINTS]; POINTS];
        let mut filter: Vec<Vec<f64>> = (0..POINTS).map(|row| evaluate(k, row)).collect();
        for (xi, (row, g)) in input.iter_mut().zip(&mut filter).enumerate() {
            for (j, slot) in row.iter_mut().enumerate() {
                *slot = v_inv[j][xi];
            }
            let scale = row.iter().fold(0.0f64, |a, &b| a.max(b.abs()));
            row.iter_mut().for_each(|v| *v /= scale);
            g.iter_mut().for_each(|v| *v *= scale);
        }
        let e_m: Vec<Vec<f64>> = (0..POINTS).map(|row| evaluate(m, row)).collect();
        let output = (0..m).map(|i| std::array::from_fn(|xi| e_m[xi][i])).collect();
        Self { input, filter, output }
    }
}

/// The inverse of a square matrix by Gauss-Jordan elimination with partial pivoting.
fn invert(mut a: Vec<Vec<f64>>) -> Vec<Vec<f64>> {
    let n = a.len();
    let mut inv: Vec<Vec<f64>> = (0..n).map(|i| (0..n).map(|j| f64::from(u8::from(i == j))).collect()).collect();
    for col in 0..n {
        let pivot = (col..n).max_by(|&i, &j| a[i][col].abs().total_cmp(&a[j][col].abs())).unwrap_or(col);
        a.swap(col, pivot);
        inv.swap(col, pivot);
        let p = a[col][col];
        a[col].iter_mut().for_each(|v| *v /= p);
        inv[col].iter_mut().for_each(|v| *v /= p);
        for row in 0..n {
            let f = a[row][col];
            if row != col && f != 0.0 {
                for j in 0..n {
                    a[row][j] -= f * a[col][j];
                    inv[row][j] -= f * inv[col][j];
                }
            }
        }
    }
    inv
}

/// One register block of a position's product: rows `row..` of `v` (`[rows][cin]`) times
/// columns `col..col + COLS` of `w` (`[cin][cout]`) into the same rows and columns of `p`.
fn product_block(v: &[f32], w: &[f32], p: &mut [f32], (row, col): (usize, usize), (cin, cout): (usize, usize)) {
    let rows = rows_per_block(level());
    assert!(v.len() >= rows * cin && w.len() == cin * cout && col + COLS <= cout, "product block bounds");
    assert!(p.len() >= (row + rows) * cout, "product block output");
    let out = &mut p[row * cout + col..];
    #[cfg(target_arch = "x86_64")]
    match level() {
        // SAFETY: `level` never names a level the CPU lacks; the asserts above keep every
        // access inside `v`, `w` and `out`.
        Isa::Avx512 => {
            return unsafe { x86::block_avx512(v.as_ptr(), w.as_ptr().add(col), out.as_mut_ptr(), cin, cout) }
        }
        Isa::Avx2 => {
            for half in [0, COLS / 2] {
                unsafe {
                    x86::block_avx2(v.as_ptr(), w.as_ptr().add(col + half), out.as_mut_ptr().add(half), cin, cout)
                };
            }
            return;
        }
        Isa::Scalar => {}
    }
    block_plain(v, &w[col..], out, cin, cout);
}

/// The plain-code register block: 6 rows x `COLS` columns.
fn block_plain(v: &[f32], w: &[f32], out: &mut [f32], cin: usize, cout: usize) {
    let mut acc = [[0.0f32; COLS]; 6];
    for c in 0..cin {
        let ws = &w[c * cout..][..COLS];
        for (r, row) in acc.iter_mut().enumerate() {
            let a = v[r * cin + c];
            row.iter_mut().zip(ws).for_each(|(s, &b)| *s = a.mul_add(b, *s));
        }
    }
    for (r, row) in acc.iter().enumerate() {
        out[r * cout..][..COLS].copy_from_slice(row);
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    /// Defines one level's register block: `$rows` rows of `$vectors` vectors of `$lanes`
    /// sums, each weight vector loaded once per input channel and each input broadcast once.
    macro_rules! product_kernel {
        ($(#[$doc:meta])* $name:ident, $feature:literal, $rows:literal, $vectors:literal, $lanes:literal,
         $zero:ident, $load:ident, $splat:ident, $fma:ident, $store:ident) => {
            $(#[$doc])*
            #[target_feature(enable = $feature)]
            pub unsafe fn $name(v: *const f32, w: *const f32, out: *mut f32, cin: usize, cout: usize) {
                let mut acc = [[$zero(); $vectors]; $rows];
                // Pointers stepped along, so that the loop carries no index arithmetic.
                let rows: [*const f32; $rows] = std::array::from_fn(|r| v.wrapping_add(r.wrapping_mul(cin)));
                let mut wp = w;
                for c in 0..cin {
                    let ws: [_; $vectors] = std::array::from_fn(|j| $load(wp.add(j * $lanes)));
                    for (row, &rp) in acc.iter_mut().zip(&rows) {
                        let a = $splat(*rp.add(c));
                        for (s, &b) in row.iter_mut().zip(&ws) {
                            *s = $fma(a, b, *s);
                        }
                    }
                    wp = wp.add(cout);
                }
                let mut op = out;
                for row in &acc {
                    for (j, &s) in row.iter().enumerate() {
                        $store(op.add(j * $lanes), s);
                    }
                    op = op.add(cout);
                }
            }
        };
    }

    product_kernel!(
        /// # Safety
        /// AVX-512 F present; `v` holds 12 rows of `cin`, `w` `cin` rows of `cout` from a column
        /// with 32 more, `out` 12 rows of `cout` from that column.
        block_avx512, "avx512f", 12, 2, 16,
        _mm512_setzero_ps, _mm512_loadu_ps, _mm512_set1_ps, _mm512_fmadd_ps, _mm512_storeu_ps
    );
    product_kernel!(
        /// # Safety
        /// AVX2 and FMA present; bounds as [`block_avx512`] with 6 rows and 16 columns.
        block_avx2, "avx2,fma", 6, 2, 8,
        _mm256_setzero_ps, _mm256_loadu_ps, _mm256_set1_ps, _mm256_fmadd_ps, _mm256_storeu_ps
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cpu_isa::with_level;

    /// Reproducible values in [-1, 1).
    fn values(n: usize, seed: u64) -> Vec<f32> {
        crate::whisper::packed_check::values(n, seed, 1.0)
    }

    /// The direct convolution in f64, channels-last.
    fn reference(w: &[f32], bias: &[f32], x: &[f32], shape: (usize, usize, usize, usize), len: usize) -> Vec<f64> {
        let (cout, cin, taps, dil) = shape;
        let pad = ((taps - 1) / 2 * dil) as isize;
        let act = |v: f32| f64::from(if v < 0.0 { v * 0.1 } else { v });
        let mut out = vec![0.0f64; len * cout];
        for t in 0..len {
            for o in 0..cout {
                let mut s = f64::from(bias[o]);
                for c in 0..cin {
                    for k in 0..taps {
                        let i = t as isize + (k * dil) as isize - pad;
                        if (0..len as isize).contains(&i) {
                            s += f64::from(w[(o * cin + c) * taps + k]) * act(x[i as usize * cin + c]);
                        }
                    }
                }
                out[t * cout + o] = s;
            }
        }
        out
    }

    #[test]
    fn every_level_matches_the_f64_convolution_and_the_others_bit_for_bit() {
        // (cout, cin, taps, dilation, len): the generator's shapes, short and ragged inputs.
        let cases =
            [(32, 64, 7, 12, 1000), (64, 64, 3, 1, 301), (32, 80, 5, 6, 77), (64, 64, 3, 2, 1), (384, 192, 5, 1, 50)];
        for (i, &(cout, cin, taps, dil, len)) in cases.iter().enumerate() {
            let w = values(cout * cin * taps, i as u64);
            let bias = values(cout, 50 + i as u64);
            let x = values(len * cin, 100 + i as u64);
            let residual = values(len * cout, 200 + i as u64);
            let conv = WinogradConv::new(&w, &bias, (cout, cin, taps), dil).expect("a covered shape");
            let want = reference(&w, &bias, &x, (cout, cin, taps, dil), len);
            // Float32 sums of cin * taps products of values near 1: a direct kernel's rounding
            // is near 1e-6 of the sum's scale; the transforms may add a few times that.
            let scale = ((cin * taps) as f64).sqrt();
            let mut outputs = Vec::new();
            for isa in Isa::available() {
                let out = with_level(isa, || conv.apply(&x, len, 0.1, Some(&residual)));
                for (j, (&got, &r)) in out.iter().zip(&residual).enumerate() {
                    let err = (f64::from(got) - f64::from(r) - want[j]).abs();
                    assert!(err <= 2e-5 * scale, "{isa:?} case {i} element {j}: error {err}");
                }
                outputs.push((isa, out));
            }
            for (isa, out) in &outputs[1..] {
                assert!(out == &outputs[0].1, "{isa:?} differs from {:?} in case {i}", outputs[0].0);
            }
        }
    }

    #[test]
    fn uncovered_shapes_keep_the_direct_kernel() {
        let covers = |cout: usize, cin: usize, taps: usize| {
            WinogradConv::new(&vec![0.0; cout * cin * taps], &vec![0.0; cout], (cout, cin, taps), 1).is_some()
        };
        assert!(covers(64, 64, 3) && covers(32, 64, 7), "the generator's shapes");
        assert!(!covers(64, 64, 4), "even kernel");
        assert!(!covers(64, 64, 9), "long kernel");
        assert!(!covers(64, 64, 1), "single tap");
        assert!(!covers(48, 64, 3), "48 outputs");
        assert!(!covers(32, 32, 3), "32 inputs");
    }
}

//! int8 dense layers on the CPU, with CTranslate2's semantics for `compute_type="int8"`: the
//! weights quantised once per output channel (scale 127 / max |w|, rounded to nearest), the
//! input quantised per row as it arrives, products summed exactly in int32, then scaled back
//! to float with the bias added. With AVX-512 VNNI the products run on `vpdpbusd` (unsigned
//! by signed bytes, four per lane), as oneDNN's kernels do: the input is shifted to unsigned
//! (+128) and each output subtracts `128 * sum(w)`, computed at load. With AVX2 alone the same
//! sums come from `vpmaddubsw` on the input made signed again (`x86::panel_avx2`), elsewhere
//! from plain code, so every level gives the same result bit for bit.

use rayon::prelude::*;

use crate::cpu_isa::{level, Isa};

use super::cpu_ops::dispatch_isa;
use super::cpu_panels::{run_panels, COLS, ROWS};

/// A weight matrix `[out, in]` quantised per output row, packed as
/// `[out / COLS][in / 4][COLS][4]` (columns padded with zeros to a multiple of `2 * COLS`, the
/// input to a multiple of 4) so one 64-byte load holds four inputs of sixteen outputs.
pub struct QuantizedWeights {
    packed: Vec<i8>,
    /// Per output: max |w| / 127, what an int8 weight is worth.
    scales: Vec<f32>,
    /// Per output: 128 * the sum of its int8 weights (the unsigned shift's correction); zero
    /// for the padding columns, so that a panel's are one slice.
    shift_sums: Vec<i32>,
    in_dim: usize,
    out_dim: usize,
}

/// Adding and subtracting 1.5 * 2^23 rounds an f32 of magnitude below 2^22 to the nearest
/// integer, ties to even, in the default rounding mode: `round_ties_even` without SSE4.1 in
/// the baseline target is a library call per value.
const ROUNDER: f32 = 12_582_912.0;

/// Rounds to nearest, ties to even (`std::nearbyint` in the default mode, as CTranslate2 does).
#[inline(always)]
fn quantize(v: f32, scale: f32) -> i8 {
    (((v * scale).clamp(-127.0, 127.0) + ROUNDER) - ROUNDER) as i8
}

/// The scale that maps `max |row|` to 127 (1 for an all-zero row, as CTranslate2 does).
#[inline(always)]
fn row_scale(row: &[f32]) -> f32 {
    // Sixteen running maxima so the reduction vectorises.
    let mut lanes = [0f32; 16];
    let mut blocks = row.chunks_exact(16);
    for b in &mut blocks {
        for (m, v) in lanes.iter_mut().zip(b) {
            *m = m.max(v.abs());
        }
    }
    let amax = blocks.remainder().iter().chain(&lanes).fold(0f32, |m, v| m.max(v.abs()));
    if amax > 0.0 {
        127.0 / amax
    } else {
        1.0
    }
}

/// One input row as unsigned bytes (+128) into `dst`; returns what a unit of it is worth.
#[inline(always)]
fn quantize_row_any(row: &[f32], dst: &mut [u8]) -> f32 {
    let scale = row_scale(row);
    for (d, &v) in dst.iter_mut().zip(row) {
        // `quantize`'s integer n (-127..=127) is the low bits of ROUNDER + n's representation,
        // whose low byte is n's as ROUNDER's is zero: n + 128 comes from integer operations that
        // vectorise, where the float-to-int cast ran a scalar conversion per value.
        *d = ((v * scale).clamp(-127.0, 127.0) + ROUNDER).to_bits().wrapping_add(128) as u8;
    }
    1.0 / scale
}

dispatch_isa! {
    /// [`quantize_row_any`] at the process's vector level.
    fn quantize_row(row: &[f32], dst: &mut [u8]) -> f32 => quantize_row_any
}

impl QuantizedWeights {
    pub fn new(w: &[f32], out_dim: usize, in_dim: usize) -> Self {
        assert_eq!(w.len(), out_dim * in_dim, "weight size");
        let k4 = in_dim.div_ceil(4);
        let out_pad = out_dim.div_ceil(2 * COLS) * 2 * COLS;
        let mut packed = vec![0i8; out_pad * k4 * 4];
        let (mut scales, mut shift_sums) = (Vec::with_capacity(out_dim), Vec::with_capacity(out_pad));
        for (j, row) in w.chunks_exact(in_dim.max(1)).enumerate() {
            let scale = row_scale(row);
            let mut sum = 0i32;
            for (k, &v) in row.iter().enumerate() {
                let q = quantize(v, scale);
                sum += i32::from(q);
                packed[((j / COLS * k4 + k / 4) * COLS + j % COLS) * 4 + k % 4] = q;
            }
            scales.push(1.0 / scale);
            shift_sums.push(128 * sum);
        }
        shift_sums.resize(out_pad, 0);
        Self { packed, scales, shift_sums, in_dim, out_dim }
    }

    pub fn out_dim(&self) -> usize {
        self.out_dim
    }

    /// Row `j` of the weights as float (its int8 values times its scale): the token embedding
    /// where the vocabulary projection is tied to it, as CTranslate2 gathers int8 embeddings.
    pub fn dequantized_row(&self, j: usize, out: &mut [f32]) {
        let k4 = self.in_dim.div_ceil(4);
        for (k, o) in out.iter_mut().enumerate().take(self.in_dim) {
            *o = f32::from(self.packed[((j / COLS * k4 + k / 4) * COLS + j % COLS) * 4 + k % 4]) * self.scales[j];
        }
    }

    /// `x W^T + b` for `x` of `rows x in` (row-major), as `rows x out`.
    pub fn forward(&self, x: &[f32], b: &[f32]) -> Vec<f32> {
        let rows = x.len() / self.in_dim.max(1);
        let k4 = self.in_dim.div_ceil(4);
        // Unsigned inputs (+128), rows padded to whole groups of four with 128 (zero after
        // the shift; the padded weights are zero anyway).
        let mut xq = vec![128u8; rows * k4 * 4];
        let mut x_scales = vec![0f32; rows];
        xq.par_chunks_mut(k4 * 4)
            .zip(x.par_chunks(self.in_dim.max(1)))
            .zip(x_scales.par_iter_mut())
            .for_each(|((dst, row), worth)| *worth = quantize_row(row, dst));
        let panels = self.packed.len() / (k4 * 4 * 2 * COLS);
        // Decided here, on the calling thread: the kernels run on rayon's.
        let isa = level();
        let vnni = isa == Isa::Avx512 && has_vnni();
        run_panels(
            (rows, self.out_dim, panels),
            |r, p, out| self.panel_sums(&xq[r.start * k4 * 4..r.end * k4 * 4], r.len(), p, (isa, vnni), out),
            |sums, r, p, y| self.finish(sums, r, p, &x_scales, b, y),
        )
    }

    /// Exact sums `xq . w` of `rows` (<= ROWS) unsigned input rows against panel `p` (2 * COLS
    /// outputs), as `out[r * 2 * COLS + c]`.
    fn panel_sums(&self, xq: &[u8], rows: usize, p: usize, (isa, vnni): (Isa, bool), out: &mut [i32]) {
        let k4 = self.in_dim.div_ceil(4);
        let w = &self.packed[p * 2 * k4 * COLS * 4..][..2 * k4 * COLS * 4];
        assert!(rows <= ROWS && xq.len() == rows * k4 * 4 && out.len() == rows * 2 * COLS, "int8 block bounds");
        #[cfg(target_arch = "x86_64")]
        {
            // SAFETY: `vnni` is only true where the CPU has AVX-512 F, BW and VNNI, and `isa`
            // (from `level`) never names a level the CPU lacks; the assert above keeps every read inside `xq`
            // and `w` and every write inside `out`.
            if vnni {
                return unsafe { x86::panel_vnni(xq.as_ptr(), w.as_ptr(), k4, rows, out) };
            }
            if isa >= Isa::Avx2 {
                let shift = &self.shift_sums[p * 2 * COLS..][..2 * COLS];
                return unsafe { x86::panel_avx2(xq.as_ptr(), w.as_ptr(), k4, rows, shift, out) };
            }
        }
        let _ = (isa, vnni);
        panel_sums_plain(xq, w, k4, out);
    }

    /// Float outputs of panel `p` for input rows `rows` into `y` (those rows' outputs).
    fn finish(&self, sums: &[i32], rows: std::ops::Range<usize>, p: usize, x_scales: &[f32], b: &[f32], y: &mut [f32]) {
        let first_col = p * 2 * COLS;
        let n = (2 * COLS).min(self.out_dim.saturating_sub(first_col));
        for (i, r) in rows.enumerate() {
            let dst = &mut y[i * self.out_dim + first_col..][..n];
            for (c, d) in dst.iter_mut().enumerate() {
                let j = first_col + c;
                let exact = sums[i * 2 * COLS + c] - self.shift_sums[j];
                *d = exact as f32 * (x_scales[r] * self.scales[j]) + b[j];
            }
        }
    }
}

fn has_vnni() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        is_x86_feature_detected!("avx512bw") && is_x86_feature_detected!("avx512vnni")
    }
    #[cfg(not(target_arch = "x86_64"))]
    false
}

/// Exact sums of unsigned input rows against one panel of packed weights: the plain code for
/// CPUs below AVX2 (the vector levels have kernels of their own).
fn panel_sums_plain(xq: &[u8], w: &[i8], k4: usize, out: &mut [i32]) {
    for (x, out) in xq.chunks_exact(k4 * 4).zip(out.chunks_exact_mut(2 * COLS)) {
        for (half, out) in out.chunks_exact_mut(COLS).enumerate() {
            let w = &w[half * k4 * COLS * 4..][..k4 * COLS * 4];
            let mut acc = [0i32; COLS];
            for (xs, ws) in x.chunks_exact(4).zip(w.chunks_exact(COLS * 4)) {
                for (a, w4) in acc.iter_mut().zip(ws.chunks_exact(4)) {
                    for (&xv, &wv) in xs.iter().zip(w4) {
                        *a += i32::from(xv) * i32::from(wv);
                    }
                }
            }
            out.copy_from_slice(&acc);
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    use super::{COLS, ROWS};
    use crate::cpu_isa::{prefetch, PREFETCH_BYTES};

    /// # Safety
    /// AVX-512 F, BW and VNNI present; `xq` holds `rows * k4 * 4` bytes, `w` two column blocks
    /// of `k4 * COLS * 4`, `out` `rows * 2 * COLS` sums; `rows <= ROWS`.
    #[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
    pub unsafe fn panel_vnni(xq: *const u8, w: *const i8, k4: usize, rows: usize, out: &mut [i32]) {
        let mut acc = [[_mm512_setzero_si512(); 2]; ROWS];
        let w1 = w.add(k4 * COLS * 4);
        for k in 0..k4 {
            // Decoding reads each panel once: its lines ahead of the loads.
            prefetch(w.add(k * COLS * 4).wrapping_add(PREFETCH_BYTES));
            prefetch(w1.add(k * COLS * 4).wrapping_add(PREFETCH_BYTES));
            let b0 = _mm512_loadu_si512(w.add(k * COLS * 4).cast());
            let b1 = _mm512_loadu_si512(w1.add(k * COLS * 4).cast());
            for (r, row) in acc.iter_mut().enumerate().take(rows) {
                let a = _mm512_set1_epi32(xq.add((r * k4 + k) * 4).cast::<i32>().read_unaligned());
                row[0] = _mm512_dpbusd_epi32(row[0], a, b0);
                row[1] = _mm512_dpbusd_epi32(row[1], a, b1);
            }
        }
        for (r, row) in acc.iter().enumerate().take(rows) {
            _mm512_storeu_si512(out.as_mut_ptr().add(r * 2 * COLS).cast(), row[0]);
            _mm512_storeu_si512(out.as_mut_ptr().add(r * 2 * COLS + COLS).cast(), row[1]);
        }
    }

    /// The same sums without VNNI, from `vpmaddubsw` (unsigned by signed bytes, products
    /// summed in pairs to 16 bits) and `vpmaddwd` by ones (pairs of those to 32 bits). With
    /// the unsigned input, a pair could reach 2 * 255 * 127 and saturate 16 bits; so each input
    /// goes back to signed (x - 128, in -127..=127) and the pairs are |x| times w with x's sign,
    /// at most 2 * 127 * 127: exact. Each output then gets its `128 * sum(w)` (`shift`) back,
    /// so the sums are those of the unsigned input, as the other levels give. Two rows at a
    /// time share each load of the weights. The 16-bit kernel this replaces (weights widened
    /// with `vpmovsxbw`, one row at a time) ran slower than float32's products here.
    ///
    /// # Safety
    /// AVX2 present; bounds as [`panel_vnni`].
    #[target_feature(enable = "avx2")]
    pub unsafe fn panel_avx2(xq: *const u8, w: *const i8, k4: usize, rows: usize, shift: &[i32], out: &mut [i32]) {
        assert!(shift.len() == 2 * COLS && out.len() >= rows * 2 * COLS, "int8 panel bounds");
        let mut r = 0;
        while r < rows {
            let (xq, out) = (xq.add(r * k4 * 4), out.as_mut_ptr().add(r * 2 * COLS));
            if rows - r >= 2 {
                rows_avx2::<2>(xq, w, k4, shift, out);
                r += 2;
            } else {
                rows_avx2::<1>(xq, w, k4, shift, out);
                r += 1;
            }
        }
    }

    /// `R` rows of [`panel_avx2`]: four registers of eight outputs per row.
    #[target_feature(enable = "avx2")]
    unsafe fn rows_avx2<const R: usize>(xq: *const u8, w: *const i8, k4: usize, shift: &[i32], out: *mut i32) {
        let w1 = w.add(k4 * COLS * 4);
        let (flip, ones) = (_mm256_set1_epi8(i8::MIN), _mm256_set1_epi16(1));
        let mut acc = [[_mm256_setzero_si256(); 4]; R];
        for k in 0..k4 {
            let at = k * COLS * 4;
            prefetch(w.add(at).wrapping_add(PREFETCH_BYTES));
            prefetch(w1.add(at).wrapping_add(PREFETCH_BYTES));
            let ws = [w.add(at), w.add(at + 32), w1.add(at), w1.add(at + 32)].map(|p| _mm256_loadu_si256(p.cast()));
            for (r, acc) in acc.iter_mut().enumerate() {
                let x4 = xq.add((r * k4 + k) * 4).cast::<i32>().read_unaligned();
                // Four inputs, signed again, in every 32-bit lane; their magnitudes.
                let xs = _mm256_xor_si256(_mm256_set1_epi32(x4), flip);
                let magnitudes = _mm256_sign_epi8(xs, xs);
                for (a, &wv) in acc.iter_mut().zip(&ws) {
                    let pairs = _mm256_maddubs_epi16(magnitudes, _mm256_sign_epi8(wv, xs));
                    *a = _mm256_add_epi32(*a, _mm256_madd_epi16(pairs, ones));
                }
            }
        }
        for (r, acc) in acc.iter().enumerate() {
            for (c, &a) in acc.iter().enumerate() {
                let back = _mm256_loadu_si256(shift.as_ptr().add(8 * c).cast());
                _mm256_storeu_si256(out.add(r * 2 * COLS + 8 * c).cast(), _mm256_add_epi32(a, back));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::whisper::packed_check::{check_packed, values};

    /// The same arithmetic written out: quantise both sides, sum in i64, scale back.
    fn reference(x: &[f32], w: &[f32], b: &[f32], in_dim: usize) -> Vec<f32> {
        let mut y = Vec::new();
        for row in x.chunks_exact(in_dim) {
            let sx = row_scale(row);
            for (j, wr) in w.chunks_exact(in_dim).enumerate() {
                let sw = row_scale(wr);
                let sum: i64 =
                    row.iter().zip(wr).map(|(&a, &c)| i64::from(quantize(a, sx)) * i64::from(quantize(c, sw))).sum();
                y.push(sum as f32 * ((1.0 / sx) * (1.0 / sw)) + b[j]);
            }
        }
        y
    }

    #[test]
    fn every_level_gives_the_exact_quantised_products_and_stays_near_float() {
        check_packed(0.02, QuantizedWeights::new, |layer, x, b| layer.forward(x, b), reference);
    }

    #[test]
    fn full_scale_products_of_one_sign_do_not_saturate() {
        // Every input and weight quantises to +-127, signs matching or opposed: each pair of
        // products is +-2 * 127 * 127, the most a 16-bit pair sum of the AVX2 kernel holds.
        let (rows, in_dim, out_dim) = (3usize, 64usize, 40usize);
        // Signs in runs of three along the input, the same for inputs and weights; row 1 of the
        // input and every other output flipped whole.
        let sign = |even: bool| if even { 1.0f32 } else { -1.0 };
        let x: Vec<f32> = (0..rows * in_dim)
            .map(|i| sign((i % in_dim / 3).is_multiple_of(2)) * sign(i / in_dim != 1) * 2.0)
            .collect();
        let w: Vec<f32> = (0..out_dim * in_dim)
            .map(|i| sign((i % in_dim / 3).is_multiple_of(2)) * sign((i / in_dim).is_multiple_of(2)) * 0.5)
            .collect();
        let b = vec![0.0; out_dim];
        let layer = QuantizedWeights::new(&w, out_dim, in_dim);
        let want = reference(&x, &w, &b, in_dim);
        assert!(want.iter().all(|v| (v.abs() - 64.0).abs() < 1e-3), "each output is +-64: {want:?}");
        for isa in Isa::available() {
            assert!(crate::cpu_isa::with_level(isa, || layer.forward(&x, &b)) == want, "{isa:?} saturates");
        }
    }

    #[test]
    fn input_rows_quantise_as_quantize_does_ties_and_signs_included() {
        // Halves from -127 to 127 (scale 1): every tie, both signs, both ends.
        let row: Vec<f32> = (-254..=254).map(|k| k as f32 * 0.5).collect();
        for isa in Isa::available() {
            let mut dst = vec![0u8; row.len()];
            let unit = crate::cpu_isa::with_level(isa, || quantize_row(&row, &mut dst));
            assert_eq!(unit, 1.0);
            for (&v, &q) in row.iter().zip(&dst) {
                assert_eq!(i32::from(q) - 128, i32::from(quantize(v, 1.0)), "{v} at {isa:?}");
            }
        }
    }

    #[test]
    fn dequantized_rows_are_the_quantised_weights() {
        let (out_dim, in_dim) = (37, 13);
        let w = values(out_dim * in_dim, 4, 0.3);
        let q = QuantizedWeights::new(&w, out_dim, in_dim);
        let mut row = vec![0.0; in_dim];
        for (j, wr) in w.chunks_exact(in_dim).enumerate() {
            q.dequantized_row(j, &mut row);
            let s = row_scale(wr);
            let want: Vec<f32> = wr.iter().map(|&v| f32::from(quantize(v, s)) * (1.0 / s)).collect();
            assert_eq!(row, want, "row {j}");
        }
    }

    #[test]
    fn an_all_zero_row_stays_zero() {
        let q = QuantizedWeights::new(&[0.0; 8], 2, 4);
        assert_eq!(q.forward(&[0.0; 4], &[0.5, -0.5]), vec![0.5, -0.5]);
    }
}

//! bfloat16 dense layers on the CPU (`compute_type="bfloat16"`): the weights rounded to bf16
//! once at load (half the memory of float32), each input row rounded to bf16 as it arrives,
//! products summed in f32. With AVX-512 BF16 the products run on `vdpbf16ps` (two bf16
//! products per f32 lane); elsewhere on f32 multiply-adds of the widened values, in the order
//! `vdpbf16ps` adds them (odd element, then even: a product of two bf16 is exact in f32, so
//! each step rounds once, as the instruction does), so every level gives the same sums bit
//! for bit. Rounding to bf16 is to nearest even with subnormals flushed to zero, as
//! `vcvtne2ps2bf16` does. AVX2 has its own kernel (four rows of sixteen outputs at a time, the
//! inputs widened once per call) as plain code there does not block rows in registers.

use std::ops::Range;

use rayon::prelude::*;

use crate::cpu_isa::{has_avx512_bf16, level, to_bf16, Isa};

use super::cpu_ops::dispatch_isa;
use super::cpu_panels::{run_panels, COLS, ROWS};

#[inline(always)]
fn widen(h: u16) -> f32 {
    f32::from_bits(u32::from(h) << 16)
}

/// Rounds one input row to bf16 pairs (`dst[k]` holds elements 2k and 2k + 1, low half
/// first; an odd tail is padded with zero).
#[inline(always)]
fn round_row_any(row: &[f32], dst: &mut [u32]) {
    for (d, pair) in dst.iter_mut().zip(row.chunks(2)) {
        let lo = u32::from(to_bf16(pair[0]));
        let hi = pair.get(1).map_or(0, |&v| u32::from(to_bf16(v)));
        *d = lo | (hi << 16);
    }
}

dispatch_isa! {
    /// [`round_row_any`] at the process's vector level.
    fn round_row(row: &[f32], dst: &mut [u32]) => round_row_any
}

/// A weight matrix `[out, in]` in bf16, packed as `[out / COLS][in / 2][COLS]` pairs (columns
/// padded with zeros to a multiple of `2 * COLS`, the input to a multiple of 2) so one 64-byte
/// load holds two inputs of sixteen outputs, as `vdpbf16ps` takes them.
pub struct Bf16Weights {
    packed: Vec<u32>,
    in_dim: usize,
    out_dim: usize,
}

impl Bf16Weights {
    pub fn new(w: &[f32], out_dim: usize, in_dim: usize) -> Self {
        assert_eq!(w.len(), out_dim * in_dim, "weight size");
        let k2 = in_dim.div_ceil(2);
        let out_pad = out_dim.div_ceil(2 * COLS) * 2 * COLS;
        let mut packed = vec![0u32; out_pad * k2];
        let mut pairs = vec![0u32; k2];
        for (j, row) in w.chunks_exact(in_dim.max(1)).enumerate() {
            round_row_any(row, &mut pairs);
            for (k, &pair) in pairs.iter().enumerate() {
                packed[(j / COLS * k2 + k) * COLS + j % COLS] = pair;
            }
        }
        Self { packed, in_dim, out_dim }
    }

    pub fn out_dim(&self) -> usize {
        self.out_dim
    }

    /// Row `j` of the weights as float (the bf16 values widened): the token embedding where
    /// the vocabulary projection is tied to it.
    pub fn dequantized_row(&self, j: usize, out: &mut [f32]) {
        let k2 = self.in_dim.div_ceil(2);
        for (k, o) in out.iter_mut().enumerate().take(self.in_dim) {
            let pair = self.packed[(j / COLS * k2 + k / 2) * COLS + j % COLS];
            *o = widen((pair >> (16 * (k % 2))) as u16);
        }
    }

    /// `x W^T + b` for `x` of `rows x in` (row-major), as `rows x out`.
    pub fn forward(&self, x: &[f32], b: &[f32]) -> Vec<f32> {
        let rows = x.len() / self.in_dim.max(1);
        let k2 = self.in_dim.div_ceil(2);
        let mut xb = vec![0u32; rows * k2];
        xb.par_chunks_mut(k2.max(1)).zip(x.par_chunks(self.in_dim.max(1))).for_each(|(dst, row)| round_row(row, dst));
        let panels = self.packed.len() / (k2 * 2 * COLS).max(1);
        // Decided here, on the calling thread: the kernels run on rayon's.
        let isa = level();
        let dot = isa == Isa::Avx512 && has_avx512_bf16();
        // The AVX2 kernel reads the inputs widened back to f32 (pairs in place).
        let xw: Vec<f32> = if !dot && isa >= Isa::Avx2 {
            xb.iter().flat_map(|&p| [widen(p as u16), widen((p >> 16) as u16)]).collect()
        } else {
            Vec::new()
        };
        let inputs = Inputs { rounded: &xb, widened: &xw, k2 };
        run_panels(
            (rows, self.out_dim, panels),
            |r, p, out| self.panel_sums(inputs, r, p, (isa, dot), out),
            |sums, r, p, y| self.finish(sums, r.len(), p, b, y),
        )
    }

    /// Sums of input rows `rows` (at most ROWS) against panel `p` (2 * COLS outputs), as
    /// `out[r * 2 * COLS + c]`.
    fn panel_sums(&self, x: Inputs, rows: Range<usize>, p: usize, (isa, dot): (Isa, bool), out: &mut [f32]) {
        let k2 = x.k2;
        let w = &self.packed[p * 2 * k2 * COLS..][..2 * k2 * COLS];
        let xb = &x.rounded[rows.start * k2..rows.end * k2];
        let n = rows.len();
        assert!(n <= ROWS && out.len() == n * 2 * COLS, "bf16 block bounds");
        #[cfg(target_arch = "x86_64")]
        {
            if dot {
                // SAFETY: `dot` is only true where the CPU has AVX-512 F and BF16; the slice
                // and assert above keep every read inside `xb` and `w`, every write in `out`.
                return unsafe { x86::panel_dot(xb.as_ptr(), w.as_ptr(), k2, n, out) };
            }
            if isa >= Isa::Avx2 {
                let xw = &x.widened[rows.start * 2 * k2..rows.end * 2 * k2];
                // SAFETY: `isa` (from `level`) never names a level the CPU lacks; bounds as above.
                return unsafe { x86::panel_avx2(xw.as_ptr(), w.as_ptr(), k2, n, out) };
            }
        }
        let _ = (isa, dot);
        panel_sums_plain(xb, w, k2, out);
    }

    /// Float outputs of panel `p` for `rows` input rows into `y` (those rows' outputs).
    fn finish(&self, sums: &[f32], rows: usize, p: usize, b: &[f32], y: &mut [f32]) {
        let first_col = p * 2 * COLS;
        let n = (2 * COLS).min(self.out_dim.saturating_sub(first_col));
        for i in 0..rows {
            let dst = &mut y[i * self.out_dim + first_col..][..n];
            for (c, d) in dst.iter_mut().enumerate() {
                *d = sums[i * 2 * COLS + c] + b[first_col + c];
            }
        }
    }
}

/// A call's input rows: rounded to bf16 pairs, and (for the AVX2 kernel) widened back.
#[derive(Clone, Copy)]
struct Inputs<'a> {
    rounded: &'a [u32],
    widened: &'a [f32],
    k2: usize,
}

/// The panel's sums from widened bf16 values, in `vdpbf16ps`'s order: the plain code for
/// CPUs below AVX2 (the vector levels have kernels of their own).
fn panel_sums_plain(xb: &[u32], w: &[u32], k2: usize, out: &mut [f32]) {
    for (x, out) in xb.chunks_exact(k2.max(1)).zip(out.chunks_exact_mut(2 * COLS)) {
        for (half, out) in out.chunks_exact_mut(COLS).enumerate() {
            let w = &w[half * k2 * COLS..][..k2 * COLS];
            let mut acc = [0f32; COLS];
            for (&xp, ws) in x.iter().zip(w.chunks_exact(COLS)) {
                let (x0, x1) = (widen(xp as u16), widen((xp >> 16) as u16));
                for (a, &wp) in acc.iter_mut().zip(ws) {
                    *a = x1.mul_add(widen((wp >> 16) as u16), *a);
                    *a = x0.mul_add(widen(wp as u16), *a);
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
    /// AVX-512 F and BF16 present; `xb` holds `rows * k2` pairs, `w` two column blocks of
    /// `k2 * COLS` pairs, `out` `rows * 2 * COLS` sums; `rows <= ROWS`.
    #[target_feature(enable = "avx512f,avx512bf16")]
    pub unsafe fn panel_dot(xb: *const u32, w: *const u32, k2: usize, rows: usize, out: &mut [f32]) {
        let mut acc = [[_mm512_setzero_ps(); 2]; ROWS];
        let w1 = w.add(k2 * COLS);
        for k in 0..k2 {
            // Decoding reads each panel once: its lines ahead of the loads.
            prefetch(w.add(k * COLS).wrapping_add(PREFETCH_BYTES / 4));
            prefetch(w1.add(k * COLS).wrapping_add(PREFETCH_BYTES / 4));
            let b0: __m512bh = std::mem::transmute(_mm512_loadu_si512(w.add(k * COLS).cast()));
            let b1: __m512bh = std::mem::transmute(_mm512_loadu_si512(w1.add(k * COLS).cast()));
            for (r, row) in acc.iter_mut().enumerate().take(rows) {
                let a: __m512bh = std::mem::transmute(_mm512_set1_epi32(xb.add(r * k2 + k).read() as i32));
                row[0] = _mm512_dpbf16_ps(row[0], a, b0);
                row[1] = _mm512_dpbf16_ps(row[1], a, b1);
            }
        }
        for (r, row) in acc.iter().enumerate().take(rows) {
            _mm512_storeu_ps(out.as_mut_ptr().add(r * 2 * COLS), row[0]);
            _mm512_storeu_ps(out.as_mut_ptr().add(r * 2 * COLS + COLS), row[1]);
        }
    }

    /// The same sums with AVX2: the weight pairs split into even and odd elements by shifts
    /// and masks, multiplied with the widened inputs, odd first, in blocks of up to four rows.
    ///
    /// # Safety
    /// AVX2 and FMA present; `xw` holds `rows * 2 * k2` floats, `w` two column blocks of
    /// `k2 * COLS` pairs, `out` `rows * 2 * COLS` sums.
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn panel_avx2(xw: *const f32, w: *const u32, k2: usize, rows: usize, out: &mut [f32]) {
        for half in 0..2 {
            let (w, mut r0) = (w.add(half * k2 * COLS), 0);
            while r0 < rows {
                let x = xw.add(r0 * 2 * k2);
                let dst = out.as_mut_ptr().add(r0 * 2 * COLS + half * COLS);
                match rows - r0 {
                    1 => block::<1>(x, w, k2, dst),
                    2 => block::<2>(x, w, k2, dst),
                    3 => block::<3>(x, w, k2, dst),
                    _ => block::<4>(x, w, k2, dst),
                }
                r0 += 4;
            }
        }
    }

    /// `R` rows against sixteen outputs; row `r`'s sums go to `dst + r * 2 * COLS`.
    #[target_feature(enable = "avx2,fma")]
    unsafe fn block<const R: usize>(x: *const f32, w: *const u32, k2: usize, dst: *mut f32) {
        let high = _mm256_set1_epi32(0xffff_0000_u32 as i32);
        let mut acc = [[_mm256_setzero_ps(); 2]; R];
        for k in 0..k2 {
            let mut even = [_mm256_setzero_ps(); 2];
            let mut odd = [_mm256_setzero_ps(); 2];
            prefetch(w.add(k * COLS).wrapping_add(PREFETCH_BYTES / 4));
            for h in 0..2 {
                let v = _mm256_loadu_si256(w.add(k * COLS + 8 * h).cast());
                even[h] = _mm256_castsi256_ps(_mm256_slli_epi32(v, 16));
                odd[h] = _mm256_castsi256_ps(_mm256_and_si256(v, high));
            }
            for (r, a) in acc.iter_mut().enumerate() {
                let x0 = _mm256_broadcast_ss(&*x.add((r * k2 + k) * 2));
                let x1 = _mm256_broadcast_ss(&*x.add((r * k2 + k) * 2 + 1));
                for h in 0..2 {
                    a[h] = _mm256_fmadd_ps(x1, odd[h], a[h]);
                    a[h] = _mm256_fmadd_ps(x0, even[h], a[h]);
                }
            }
        }
        for (r, a) in acc.iter().enumerate() {
            _mm256_storeu_ps(dst.add(r * 2 * COLS), a[0]);
            _mm256_storeu_ps(dst.add(r * 2 * COLS + 8), a[1]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::whisper::packed_check::{check_packed, values};

    fn bf16(v: f32) -> f32 {
        widen(to_bf16(v))
    }

    /// The same arithmetic written out: both sides rounded to bf16, pairs added odd first.
    fn reference(x: &[f32], w: &[f32], b: &[f32], in_dim: usize) -> Vec<f32> {
        let mut y = Vec::new();
        for row in x.chunks_exact(in_dim) {
            for (j, wr) in w.chunks_exact(in_dim).enumerate() {
                let mut sum = 0f32;
                for (xs, ws) in row.chunks(2).zip(wr.chunks(2)) {
                    if xs.len() == 2 {
                        sum = bf16(xs[1]).mul_add(bf16(ws[1]), sum);
                    }
                    sum = bf16(xs[0]).mul_add(bf16(ws[0]), sum);
                }
                y.push(sum + b[j]);
            }
        }
        y
    }

    #[test]
    fn every_level_gives_the_same_bf16_sums_and_stays_near_float() {
        check_packed(0.01, Bf16Weights::new, |layer, x, b| layer.forward(x, b), reference);
    }

    #[test]
    fn rounding_is_to_nearest_even_with_subnormals_flushed() {
        assert_eq!(to_bf16(1.0), 0x3f80);
        // 1 + 2^-8 is halfway between two bf16 values: ties go to the even one (1.0).
        assert_eq!(to_bf16(1.0 + 1.0 / 256.0), 0x3f80);
        assert_eq!(to_bf16(1.0 + 3.0 / 256.0), 0x3f82);
        assert_eq!(to_bf16(-1e-40), 0x8000);
        assert!(widen(to_bf16(f32::NAN)).is_nan());
        assert_eq!(widen(to_bf16(f32::INFINITY)), f32::INFINITY);
    }

    #[test]
    fn dequantized_rows_are_the_rounded_weights() {
        let (out_dim, in_dim) = (37, 13);
        let w = values(out_dim * in_dim, 4, 0.3);
        let q = Bf16Weights::new(&w, out_dim, in_dim);
        let mut row = vec![0.0; in_dim];
        for (j, wr) in w.chunks_exact(in_dim).enumerate() {
            q.dequantized_row(j, &mut row);
            assert_eq!(row, wr.iter().map(|&v| bf16(v)).collect::<Vec<_>>(), "row {j}");
        }
    }
}

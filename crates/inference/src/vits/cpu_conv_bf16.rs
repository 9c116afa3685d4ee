//! The bf16 form of the VITS convolutions (`--compute-type bfloat16` for a voice): weights and
//! inputs rounded to bf16, products summed in f32 on `vdpbf16ps`, which multiplies two input
//! channels' values by their weights per f32 lane, so a register block does twice the work of
//! an f32 multiply-add. The input tile interleaves pairs of channels (`[cin / 2][columns][2]`)
//! and the weights pair the same channels (`[cout / OC][cin / 2][taps][OC][2]`). Only CPUs
//! with AVX-512 BF16 get it: elsewhere the voice keeps f32 (widening bf16 back to f32 would
//! cost more than it saves).

use std::cell::RefCell;

use super::cpu_conv::{Source, MAX_TW, OC, TW_AVX512};
use crate::cpu_isa::{dispatch_isa, has_avx512_bf16, level, to_bf16, Isa};

/// A convolution's taps as bf16 pairs of input channels.
pub struct Bf16Taps {
    pairs: Vec<u32>,
    cin: usize,
    taps: usize,
    dilation: usize,
}

thread_local! {
    /// Each worker thread's bf16 input tile, reused from call to call.
    static PAIR_TILE: RefCell<Vec<u32>> = const { RefCell::new(Vec::new()) };
}

impl Bf16Taps {
    /// Whether this CPU, at the vector level in force, runs the bf16 kernel.
    pub fn available() -> bool {
        level() == Isa::Avx512 && has_avx512_bf16()
    }

    /// From the f32 kernels' packing, `[cout / OC][cin][taps][OC]`.
    pub fn new(packed: &[f32], cin: usize, taps: usize, dilation: usize) -> Self {
        assert!(Self::available(), "bf16 convolutions need AVX-512 BF16");
        let blocks = packed.len() / (cin * taps * OC).max(1);
        let cin2 = cin.div_ceil(2);
        let mut pairs = vec![0u32; blocks * cin2 * taps * OC];
        for b in 0..blocks {
            for c in 0..cin {
                for k in 0..taps {
                    for o in 0..OC {
                        let w = u32::from(to_bf16(packed[((b * cin + c) * taps + k) * OC + o]));
                        pairs[((b * cin2 + c / 2) * taps + k) * OC + o] |= w << (16 * (c % 2));
                    }
                }
            }
        }
        Self { pairs, cin, taps, dilation }
    }

    /// Runs `f(tile, stride)` on this thread's tile filled, as the f32 kernels' is, with the
    /// activated, zero-padded input for `width` outputs from output `first`, in bf16 pairs.
    pub fn with_tile<R>(&self, source: &Source, first: usize, width: usize, f: impl FnOnce(&[u32], usize) -> R) -> R {
        let stride = width + (self.taps - 1) * self.dilation;
        PAIR_TILE.with_borrow_mut(|tile| {
            tile.resize(self.cin.div_ceil(2) * stride, 0);
            let (skip, from, count) = source.span(first, stride);
            let row = |c: usize| &source.input[c * source.len..][..source.len][from..from + count];
            for (p, dst) in tile.chunks_exact_mut(stride).enumerate() {
                dst[..skip].fill(0);
                dst[skip + count..].fill(0);
                let odd = if 2 * p + 1 < self.cin { row(2 * p + 1) } else { &[] };
                pair_row(row(2 * p), odd, source.slope, &mut dst[skip..skip + count]);
            }
            f(tile, stride)
        })
    }

    /// One register block of channel block `ob`, as the f32 kernels' (`TW_AVX512` samples).
    pub fn block(&self, ob: usize, x: &[u32], stride: usize, acc: &mut [f32; OC * MAX_TW]) {
        let cin2 = self.cin.div_ceil(2);
        let w = &self.pairs[ob * cin2 * self.taps * OC..][..cin2 * self.taps * OC];
        let needed = (cin2 - 1) * stride + (self.taps - 1) * self.dilation + TW_AVX512;
        assert!(x.len() >= needed, "bf16 conv block bounds");
        #[cfg(target_arch = "x86_64")]
        // SAFETY: `new` checked the CPU has AVX-512 F and BF16; the assert keeps every read in `x`
        // and `w` holds `cin2 * taps * OC` pairs.
        unsafe {
            x86::block_dot(w.as_ptr(), x.as_ptr(), stride, (cin2, self.taps, self.dilation), acc)
        }
        #[cfg(not(target_arch = "x86_64"))]
        unreachable!("bf16 convolutions exist only on x86 ({w:?}, {acc:?})")
    }
}

/// `dst[j]` = the bf16 pair of the activated `even[j]` (low half) and `odd[j]` (high half;
/// zero where `odd` is empty). Branch-free, so that each level's copy is vector code.
#[inline(always)]
fn pair_row_any(even: &[f32], odd: &[f32], slope: Option<f32>, dst: &mut [u32]) {
    let s = slope.unwrap_or(1.0);
    let bits = |v: f32| u32::from(to_bf16(if v < 0.0 { v * s } else { v }));
    if odd.is_empty() {
        dst.iter_mut().zip(even).for_each(|(d, &e)| *d = bits(e));
    } else {
        dst.iter_mut().zip(even.iter().zip(odd)).for_each(|(d, (&e, &o))| *d = bits(e) | (bits(o) << 16));
    }
}

dispatch_isa! {
    /// [`pair_row_any`] at the process's vector level.
    fn pair_row(even: &[f32], odd: &[f32], slope: Option<f32>, dst: &mut [u32]) => pair_row_any
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    use super::{MAX_TW, OC, TW_AVX512};

    /// `OC` channels x 3 vectors of 16 samples, each step two input channels of one tap.
    ///
    /// # Safety
    /// AVX-512 F and BF16 present; `w` holds `cin2 * taps * OC` pairs and `x` every pair the
    /// block reads (`(cin2 - 1) * stride + (taps - 1) * dil + TW_AVX512`).
    #[target_feature(enable = "avx512f,avx512bf16")]
    pub unsafe fn block_dot(
        w: *const u32,
        x: *const u32,
        stride: usize,
        (cin2, taps, dil): (usize, usize, usize),
        acc: &mut [f32; OC * MAX_TW],
    ) {
        const VECTORS: usize = TW_AVX512 / 16;
        let mut a = [[_mm512_setzero_ps(); VECTORS]; OC];
        for c in 0..cin2 {
            for k in 0..taps {
                let xp = x.add(c * stride + k * dil);
                let mut v: [__m512bh; VECTORS] = std::mem::transmute([_mm512_setzero_ps(); VECTORS]);
                for (j, vj) in v.iter_mut().enumerate() {
                    *vj = std::mem::transmute::<__m512i, __m512bh>(_mm512_loadu_si512(xp.add(j * 16).cast()));
                }
                let wp = w.add((c * taps + k) * OC);
                for (o, row) in a.iter_mut().enumerate() {
                    let b: __m512bh = std::mem::transmute(_mm512_set1_epi32(*wp.add(o) as i32));
                    for (s, &vj) in row.iter_mut().zip(&v) {
                        *s = _mm512_dpbf16_ps(*s, vj, b);
                    }
                }
            }
        }
        for (o, row) in a.iter().enumerate() {
            for (j, &s) in row.iter().enumerate() {
                _mm512_storeu_ps(acc.as_mut_ptr().add(o * MAX_TW + j * 16), s);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::cpu_conv::{Base, PackedConv};
    use super::*;

    fn rounded(v: f32) -> f64 {
        f64::from(f32::from_bits(u32::from(to_bf16(v)) << 16))
    }

    /// Pseudo-random values in [-1, 1), reproducible.
    fn values(n: usize, seed: usize) -> Vec<f32> {
        (0..n).map(|i| (((i * 7919 + seed * 104_729) % 2003) as f32 / 1001.5) - 1.0).collect()
    }

    #[test]
    fn bf16_convolution_sums_the_rounded_values_in_f32() {
        if !Bf16Taps::available() {
            eprintln!("skipped: this CPU has no AVX-512 BF16");
            return;
        }
        // (cout, cin, taps, dilation, len, left pad): odd channel counts, several tasks, padding.
        for (i, &(cout, cin, taps, dil, len, pad)) in
            [(32, 32, 7, 3, 2000, 9), (9, 5, 3, 1, 100, 1), (1, 33, 7, 1, 300, 3), (20, 64, 2, 1, 50, 1)]
                .iter()
                .enumerate()
        {
            let (w, x) = (values(cout * cin * taps, i), values(cin * len, 10 + i));
            let mut conv = PackedConv::new(&w, cout, cin, taps, dil);
            conv.use_bf16();
            assert!(conv.is_bf16());
            let out = conv.apply_padded(&x, len, pad, len, Some(0.1), Base::default());
            for o in 0..cout {
                for t in 0..len {
                    let mut want = 0.0f64;
                    for c in 0..cin {
                        for k in 0..taps {
                            if let Some(j) = (t + k * dil).checked_sub(pad).filter(|&j| j < len) {
                                let v = x[c * len + j];
                                let act = if v < 0.0 { v * 0.1 } else { v };
                                want += rounded(w[(o * cin + c) * taps + k]) * rounded(act);
                            }
                        }
                    }
                    let got = f64::from(out[o * len + t]);
                    assert!((got - want).abs() <= 1e-5 * (1.0 + want.abs()), "case {i} ({o}, {t}): {got} vs {want}");
                }
            }
        }
    }
}

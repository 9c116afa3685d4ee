//! The two products of one attention head on the CPU, for a block of query rows: scores
//! `q k^T` and `p v`. gemm packs both operands on every call; with a head's 64 dimensions
//! that packing cost as much as the products (the encoder runs 1500 x 1500 of them per head
//! and layer). These kernels read operands laid out once per call instead: the keys
//! transposed (`[dh][s]`, so sixteen keys are one vector) and the values as stored.
//!
//! Each output sums in one fixed order (over the head's dimensions for a score, over the
//! keys for an output), one fused multiply-add at a time, so AVX-512, AVX2 and plain code
//! give bit-identical results.

use crate::cpu_isa::{level, Isa};

/// Query rows per scores block: AVX-512 keeps 12 rows x 2 vectors of 16 keys in registers,
/// AVX2 6 rows x 2 vectors of 8 keys. Callers pad their rows to a multiple of this.
pub const ROW_BLOCK: usize = 12;
/// Keys per scores block at the widest level; callers pad the keys to a multiple of this.
pub const KEY_BLOCK: usize = 32;

/// `scores[i][j] = sum_d q[i][d] * kt[d][j]` for `ROW_BLOCK`-padded rows of `q` (`rows x dh`)
/// and `KEY_BLOCK`-padded keys `kt` (`dh x s_pad`); `scores` is `rows x s_pad`.
pub fn scores(q: &[f32], kt: &[f32], dh: usize, s_pad: usize, scores: &mut [f32]) {
    let rows = q.len() / dh.max(1);
    assert!(
        rows.is_multiple_of(ROW_BLOCK)
            && s_pad.is_multiple_of(KEY_BLOCK)
            && kt.len() == dh * s_pad
            && scores.len() == rows * s_pad,
        "attention scores bounds"
    );
    let isa = level();
    for r0 in (0..rows).step_by(ROW_BLOCK) {
        let (q, out) = (&q[r0 * dh..(r0 + ROW_BLOCK) * dh], &mut scores[r0 * s_pad..(r0 + ROW_BLOCK) * s_pad]);
        match isa {
            #[cfg(target_arch = "x86_64")]
            // SAFETY: the CPU has the level `level` names; the assert above bounds every access.
            Isa::Avx512 => unsafe { x86::scores_avx512(q.as_ptr(), kt.as_ptr(), dh, s_pad, out.as_mut_ptr()) },
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 => unsafe { x86::scores_avx2(q.as_ptr(), kt.as_ptr(), dh, s_pad, out.as_mut_ptr()) },
            _ => scores_plain(q, kt, dh, s_pad, out),
        }
    }
}

/// `out[i][e] = sum_{j < s} p[i][j] * v[j][e]` for rows of `p` (`rows x s_pad`, `ROW_BLOCK`
/// padded) and `v` (`s x dh`); `out` is `rows x dh`.
pub fn weighted_values(p: &[f32], s_pad: usize, v: &[f32], dh: usize, out: &mut [f32]) {
    let rows = p.len() / s_pad.max(1);
    let s = v.len() / dh.max(1);
    assert!(rows.is_multiple_of(ROW_BLOCK) && s <= s_pad && out.len() == rows * dh, "attention values bounds");
    let isa = level();
    for r0 in (0..rows).step_by(VALUE_ROWS) {
        let (p, out) = (&p[r0 * s_pad..(r0 + VALUE_ROWS) * s_pad], &mut out[r0 * dh..(r0 + VALUE_ROWS) * dh]);
        match isa {
            #[cfg(target_arch = "x86_64")]
            // SAFETY: as above; `dh` a multiple of the kernel's vector span is checked here.
            Isa::Avx512 if dh.is_multiple_of(64) => unsafe {
                x86::values_avx512(p.as_ptr(), s_pad, v.as_ptr(), s, dh, out.as_mut_ptr())
            },
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 | Isa::Avx512 if dh.is_multiple_of(16) => unsafe {
                x86::values_avx2(p.as_ptr(), s_pad, v.as_ptr(), s, dh, out.as_mut_ptr())
            },
            _ => values_plain(p, s_pad, v, s, dh, out),
        }
    }
}

/// Rows per values block (12 rows of `ROW_BLOCK` split in two).
const VALUE_ROWS: usize = 6;

fn scores_plain(q: &[f32], kt: &[f32], dh: usize, s_pad: usize, out: &mut [f32]) {
    for (qi, row) in q.chunks_exact(dh).zip(out.chunks_exact_mut(s_pad)) {
        row.fill(0.0);
        for (d, &qv) in qi.iter().enumerate() {
            for (o, &k) in row.iter_mut().zip(&kt[d * s_pad..(d + 1) * s_pad]) {
                *o = k.mul_add(qv, *o);
            }
        }
    }
}

fn values_plain(p: &[f32], s_pad: usize, v: &[f32], s: usize, dh: usize, out: &mut [f32]) {
    for (pi, row) in p.chunks_exact(s_pad).zip(out.chunks_exact_mut(dh)) {
        row.fill(0.0);
        for (&w, vj) in pi[..s].iter().zip(v.chunks_exact(dh)) {
            for (o, &x) in row.iter_mut().zip(vj) {
                *o = x.mul_add(w, *o);
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    use super::{KEY_BLOCK, ROW_BLOCK, VALUE_ROWS};

    /// Defines one level's scores kernel: `$rows` query rows x 2 vectors of keys per register
    /// block, over `ROW_BLOCK` rows and every key block.
    macro_rules! scores_kernel {
        ($name:ident, $feature:literal, $rows:literal, $lanes:literal,
         $zero:ident, $load:ident, $splat:ident, $fma:ident, $store:ident) => {
            /// # Safety
            /// The CPU has the features; `q` holds `ROW_BLOCK * dh` floats, `kt` `dh * s_pad`,
            /// `out` `ROW_BLOCK * s_pad`, and `s_pad` is a multiple of `2 * $lanes`.
            #[target_feature(enable = $feature)]
            pub unsafe fn $name(q: *const f32, kt: *const f32, dh: usize, s_pad: usize, out: *mut f32) {
                for r0 in (0..ROW_BLOCK).step_by($rows) {
                    for j0 in (0..s_pad).step_by(2 * $lanes) {
                        let mut acc = [[$zero(); 2]; $rows];
                        for d in 0..dh {
                            let k0 = $load(kt.add(d * s_pad + j0));
                            let k1 = $load(kt.add(d * s_pad + j0 + $lanes));
                            for (i, row) in acc.iter_mut().enumerate() {
                                let b = $splat(*q.add((r0 + i) * dh + d));
                                row[0] = $fma(k0, b, row[0]);
                                row[1] = $fma(k1, b, row[1]);
                            }
                        }
                        for (i, row) in acc.iter().enumerate() {
                            $store(out.add((r0 + i) * s_pad + j0), row[0]);
                            $store(out.add((r0 + i) * s_pad + j0 + $lanes), row[1]);
                        }
                    }
                }
            }
        };
    }

    /// Defines one level's values kernel: `VALUE_ROWS` rows x `$vecs` vectors of output
    /// dimensions per register block (all accumulators, the loaded values and the splat must fit
    /// the level's registers: 6 x 4 of AVX-512's 32, 6 x 2 of AVX2's 16).
    macro_rules! values_kernel {
        ($name:ident, $feature:literal, $lanes:literal, $vecs:literal,
         $zero:ident, $load:ident, $splat:ident, $fma:ident, $store:ident) => {
            /// # Safety
            /// The CPU has the features; `p` holds `VALUE_ROWS * s_pad` floats, `v` `s * dh`,
            /// `out` `VALUE_ROWS * dh`, and `dh` is a multiple of `$vecs * $lanes`.
            #[target_feature(enable = $feature)]
            pub unsafe fn $name(p: *const f32, s_pad: usize, v: *const f32, s: usize, dh: usize, out: *mut f32) {
                for e0 in (0..dh).step_by($vecs * $lanes) {
                    let mut acc = [[$zero(); $vecs]; VALUE_ROWS];
                    for j in 0..s {
                        let vj = v.add(j * dh + e0);
                        let x: [_; $vecs] = std::array::from_fn(|c| $load(vj.add(c * $lanes)));
                        for (i, row) in acc.iter_mut().enumerate() {
                            let w = $splat(*p.add(i * s_pad + j));
                            for (a, &xv) in row.iter_mut().zip(&x) {
                                *a = $fma(xv, w, *a);
                            }
                        }
                    }
                    for (i, row) in acc.iter().enumerate() {
                        for (c, &a) in row.iter().enumerate() {
                            $store(out.add(i * dh + e0 + c * $lanes), a);
                        }
                    }
                }
            }
        };
    }

    const _: () =
        assert!(KEY_BLOCK.is_multiple_of(32) && ROW_BLOCK.is_multiple_of(12) && ROW_BLOCK.is_multiple_of(VALUE_ROWS));

    /// Both kernels of one level.
    macro_rules! level_kernels {
        ($scores:ident, $values:ident, $feature:literal, $rows:literal, $lanes:literal, $vecs:literal, $($intrinsic:ident),*) => {
            scores_kernel!($scores, $feature, $rows, $lanes, $($intrinsic),*);
            values_kernel!($values, $feature, $lanes, $vecs, $($intrinsic),*);
        };
    }

    #[rustfmt::skip]
    level_kernels!(scores_avx512, values_avx512, "avx512f", 12, 16, 4, _mm512_setzero_ps, _mm512_loadu_ps, _mm512_set1_ps, _mm512_fmadd_ps, _mm512_storeu_ps);
    #[rustfmt::skip]
    level_kernels!(scores_avx2, values_avx2, "avx2,fma", 6, 8, 2, _mm256_setzero_ps, _mm256_loadu_ps, _mm256_set1_ps, _mm256_fmadd_ps, _mm256_storeu_ps);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cpu_isa::with_level;

    fn values(n: usize, seed: usize) -> Vec<f32> {
        (0..n).map(|i| ((i * 7919 + seed * 104_729) % 2003) as f32 / 1001.0 - 1.0).collect()
    }

    #[test]
    fn every_level_gives_the_same_bits_and_the_f64_products() {
        for (rows, dh, s) in [(12usize, 64usize, 1500usize), (24, 64, 37), (12, 16, 5), (12, 48, 40), (12, 3, 33)] {
            let s_pad = s.div_ceil(KEY_BLOCK) * KEY_BLOCK;
            let q = values(rows * dh, 1);
            let mut kt = values(dh * s_pad, 2);
            for d in 0..dh {
                kt[d * s_pad + s..(d + 1) * s_pad].fill(0.0);
            }
            let v = values(s * dh, 3);
            let run = |isa| {
                with_level(isa, || {
                    let mut sc = vec![0.0; rows * s_pad];
                    scores(&q, &kt, dh, s_pad, &mut sc);
                    let mut out = vec![0.0; rows * dh];
                    weighted_values(&sc, s_pad, &v, dh, &mut out);
                    (sc, out)
                })
            };
            let plain = run(Isa::Scalar);
            for isa in Isa::available() {
                assert!(run(isa) == plain, "{isa:?} differs from plain code for {rows}x{dh} over {s} keys");
            }
            let close =
                |want: f64, got: f32, tol: f64| assert!((want - f64::from(got)).abs() < tol * (1.0 + want.abs()));
            for i in 0..rows {
                for j in 0..s {
                    let want = (0..dh).map(|d| f64::from(q[i * dh + d]) * f64::from(kt[d * s_pad + j])).sum();
                    close(want, plain.0[i * s_pad + j], 1e-4);
                }
                for e in 0..dh {
                    let want = (0..s).map(|j| f64::from(plain.0[i * s_pad + j]) * f64::from(v[j * dh + e])).sum();
                    close(want, plain.1[i * dh + e], 1e-3);
                }
            }
        }
    }
}

//! What the unit tests of the packed (int8, bf16) dense layers share: seeded test values and
//! the check that every ISA level gives the exact sums of the type and stays near float.

use crate::cpu_isa::{with_level, Isa};

/// `n` values uniform in `[-amp, amp)`, from a xorshift seeded with `seed`.
pub fn values(n: usize, seed: u64, amp: f32) -> Vec<f32> {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            ((s >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0) * amp
        })
        .collect()
}

/// For a few shapes (one row, few, many; odd sizes), with weights packed by `pack`: at every
/// level `forward` equals `exact` (the type's arithmetic written out), and `exact` is within
/// `tolerance` of the float products, relative to the largest output.
pub fn check_packed<L>(
    tolerance: f32,
    pack: impl Fn(&[f32], usize, usize) -> L,
    forward: impl Fn(&L, &[f32], &[f32]) -> Vec<f32>,
    exact: impl Fn(&[f32], &[f32], &[f32], usize) -> Vec<f32>,
) {
    for (rows, in_dim, out_dim) in [(1, 384, 1536), (5, 37, 70), (6, 384, 384), (61, 1536, 384), (13, 3, 1)] {
        let x = values(rows * in_dim, 1, 3.0);
        let w = values(out_dim * in_dim, 2, 0.2);
        let b = values(out_dim, 3, 1.0);
        let layer = pack(&w, out_dim, in_dim);
        let want = exact(&x, &w, &b, in_dim);
        for isa in Isa::available() {
            let got = with_level(isa, || forward(&layer, &x, &b));
            assert!(got == want, "{isa:?} {rows}x{in_dim}->{out_dim} differs from the exact sums");
        }
        let float: Vec<f32> = x
            .chunks_exact(in_dim)
            .flat_map(|r| {
                w.chunks_exact(in_dim).zip(&b).map(move |(c, bj)| r.iter().zip(c).map(|(a, c)| a * c).sum::<f32>() + bj)
            })
            .collect();
        let scale = float.iter().fold(0f32, |m, v| m.max(v.abs()));
        let err = want.iter().zip(&float).fold(0f32, |m, (a, f)| m.max((a - f).abs()));
        assert!(err <= tolerance * scale + 1e-3, "{rows}x{in_dim}->{out_dim}: error {err} for outputs up to {scale}");
    }
}

//! f32 matrix products on gemm's own kernels, the kernel set chosen by smai's vector level
//! (`cpu_isa`) instead of by gemm. gemm, built with its AVX-512 kernels, takes them wherever
//! the CPU has AVX-512; on AMD Zen 4, whose AVX-512 runs at half width, they are slower than its
//! AVX2 ones (float32 Whisper took 1.22x and 1.43x faster-whisper's time with them, 0.99x and
//! 1.12x without), while on CPUs with full-width AVX-512 (Intel Xeon, AMD Zen 5) they are much
//! faster (on an Intel Xeon family 6 model 207, tiny.en 0.71x against 0.97x, base 0.88x against
//! 1.10x). gemm offers no run-time choice, so the chosen table goes to gemm_common's generic
//! driver exactly as gemm's dispatch passes it. `SMAI_CPU_ISA=avx2` keeps the AVX2 kernels.

use gemm::Parallelism;

use crate::cpu_isa::{avx512_at_full_width, level, Isa};

/// The kernels a product runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GemmKernels {
    /// gemm's own choice (its portable kernels where the level is `scalar`).
    Gemm,
    Avx2,
    Avx512,
}

/// The kernels for the calling thread's level: AVX-512 only where it runs at full width.
pub fn kernels() -> GemmKernels {
    match level() {
        Isa::Avx512 if avx512_at_full_width() => GemmKernels::Avx512,
        Isa::Avx512 | Isa::Avx2 => GemmKernels::Avx2,
        Isa::Scalar => GemmKernels::Gemm,
    }
}

/// `dst = alpha * dst + beta * lhs * rhs` (`alpha` read only with `read_dst`), every matrix
/// given by a pointer and its column and row strides (none negative), as `gemm::gemm` takes
/// them.
///
/// # Safety
/// As `gemm::gemm`: every element the strides address must lie inside its allocation, and
/// `dst` must not overlap the inputs.
#[allow(clippy::too_many_arguments)]
pub unsafe fn gemm(
    (m, n, k): (usize, usize, usize),
    (dst, dst_cs, dst_rs): (*mut f32, isize, isize),
    read_dst: bool,
    (lhs, lhs_cs, lhs_rs): (*const f32, isize, isize),
    (rhs, rhs_cs, rhs_rs): (*const f32, isize, isize),
    (alpha, beta): (f32, f32),
    parallelism: Parallelism,
) {
    assert!(dst_cs >= 0 && dst_rs >= 0 && lhs_cs >= 0 && rhs_rs >= 0, "negative strides");
    #[cfg(target_arch = "x86_64")]
    {
        // As gemm::gemm does before its driver: its kernels want a column-major destination,
        // so a row-major one is computed as the transposed product.
        let ((m, n), (dst_cs, dst_rs), (lhs, lhs_cs, lhs_rs), (rhs, rhs_cs, rhs_rs)) = if dst_cs < dst_rs {
            ((n, m), (dst_rs, dst_cs), (rhs, rhs_rs, rhs_cs), (lhs, lhs_rs, lhs_cs))
        } else {
            ((m, n), (dst_cs, dst_rs), (lhs, lhs_cs, lhs_rs), (rhs, rhs_cs, rhs_rs))
        };
        use gemm_common::gemm::gemm_basic_generic;
        use gemm_common::simd::MixedSimd;
        macro_rules! run {
            ($simd:ty, $kernels:path, $lanes:expr) => {{
                use $kernels as table;
                if let Some(simd) = <$simd as MixedSimd<f32, f32, f32, f32>>::try_new() {
                    return gemm_basic_generic::<
                        _,
                        f32,
                        $lanes,
                        { table::MR_DIV_N * $lanes },
                        { table::NR },
                        { table::MR_DIV_N },
                        { table::H_M },
                        { table::H_N },
                    >(
                        simd,
                        m,
                        n,
                        k,
                        dst,
                        dst_cs,
                        dst_rs,
                        read_dst,
                        lhs,
                        lhs_cs,
                        lhs_rs,
                        rhs,
                        rhs_cs,
                        rhs_rs,
                        alpha,
                        beta,
                        false,
                        false,
                        false,
                        |a, b, c| a * b + c,
                        &table::UKR,
                        &table::H_UKR,
                        false,
                        parallelism,
                    );
                }
            }};
        }
        match kernels() {
            GemmKernels::Avx512 => run!(gemm_common::simd::V4, gemm_f32::microkernel::avx512f::f32, 16),
            GemmKernels::Avx2 => run!(gemm_common::simd::V3, gemm_f32::microkernel::fma::f32, 8),
            GemmKernels::Gemm => {}
        }
    }
    gemm::gemm(
        m,
        n,
        k,
        dst,
        dst_cs,
        dst_rs,
        read_dst,
        lhs,
        lhs_cs,
        lhs_rs,
        rhs,
        rhs_cs,
        rhs_rs,
        alpha,
        beta,
        false,
        false,
        false,
        parallelism,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cpu_isa::with_level;

    /// Every kernel set against a plain f64 product, on shapes with edge tiles.
    #[test]
    fn every_kernel_set_computes_the_product() {
        let (m, n, k) = (37, 53, 300);
        let a: Vec<f32> = (0..m * k).map(|i| ((i * 7919) % 1009) as f32 * 1e-3 - 0.5).collect();
        let b: Vec<f32> = (0..k * n).map(|i| ((i * 104_729) % 997) as f32 * 1e-3 - 0.5).collect();
        let want: Vec<f64> =
            (0..m * n).map(|idx| (0..k).map(|p| a[idx / n * k + p] as f64 * b[p * n + idx % n] as f64).sum()).collect();
        for isa in Isa::available() {
            let mut c = vec![1.0f32; m * n];
            // SAFETY: c is m x n, a m x k, b k x n, all row-major and separate.
            with_level(isa, || unsafe {
                gemm(
                    (m, n, k),
                    (c.as_mut_ptr(), 1, n as isize),
                    true,
                    (a.as_ptr(), 1, k as isize),
                    (b.as_ptr(), 1, n as isize),
                    (1.0, 1.0),
                    Parallelism::None,
                )
            });
            let worst = c.iter().zip(&want).map(|(&c, &w)| (c as f64 - 1.0 - w).abs()).fold(0.0, f64::max);
            assert!(worst < 1e-4, "{isa:?} ({:?}): off by {worst}", with_level(isa, kernels));
        }
    }
}

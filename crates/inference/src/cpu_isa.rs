//! Which vector instructions the hand-written CPU kernels run with, decided in one place: the
//! widest level the CPU has (AVX-512, else AVX2 + FMA, else plain code), or the level named by
//! `SMAI_CPU_ISA` (`avx512`, `avx2`, `scalar`), so that every path can be run, measured and
//! tested on one machine. A level the CPU lacks falls back to the best it has, with a warning.
//! Kernels are written once, as `#[inline(always)]` plain Rust whose multiply-adds are
//! `mul_add` and whose sums run in a fixed order, and [`dispatch_isa!`] compiles one copy per
//! level: every level gives bit-identical results. Kernels whose register blocking differs per
//! level (the VITS convolutions, `vits/cpu_conv.rs`) are written with intrinsics per level and
//! choose by [`level`] too, keeping the same summation order. On aarch64 the plain code is NEON code
//! (NEON is part of the base architecture); gemm, which candle and our products call, picks
//! its own kernels at run time.

use std::cell::Cell;
use std::sync::OnceLock;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Isa {
    Scalar,
    /// AVX2 with FMA.
    Avx2,
    /// AVX-512 F and VL (with AVX2 and FMA).
    Avx512,
}

impl Isa {
    /// The widest level this CPU runs.
    pub fn detected() -> Self {
        #[cfg(target_arch = "x86_64")]
        {
            let avx2 = is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma");
            if avx2 && is_x86_feature_detected!("avx512f") && is_x86_feature_detected!("avx512vl") {
                return Self::Avx512;
            }
            if avx2 {
                return Self::Avx2;
            }
        }
        Self::Scalar
    }

    /// Every level this CPU runs, narrowest first.
    pub fn available() -> Vec<Self> {
        [Self::Scalar, Self::Avx2, Self::Avx512].into_iter().filter(|l| *l <= Self::detected()).collect()
    }

    pub fn parse(name: &str) -> Option<Self> {
        match name.trim().to_ascii_lowercase().as_str() {
            "scalar" => Some(Self::Scalar),
            "avx2" => Some(Self::Avx2),
            "avx512" => Some(Self::Avx512),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Scalar => "scalar",
            Self::Avx2 => "avx2",
            Self::Avx512 => "avx512",
        }
    }
}

/// Whether 512-bit instructions run at full width: every AVX-512 CPU but AMD's family 19h
/// (Zen 4, which splits them in two 256-bit halves; Zen 5 is family 1Ah).
pub fn avx512_at_full_width() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::__cpuid;
        static FULL: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
        *FULL.get_or_init(|| {
            // SAFETY: cpuid leaves 0 and 1 exist on every x86-64 CPU (recent Rust marks
            // `__cpuid` safe; older toolchains still need the block).
            #[allow(unused_unsafe)]
            let (vendor, signature) = unsafe { (__cpuid(0), __cpuid(1)) };
            let amd = [vendor.ebx, vendor.edx, vendor.ecx] == [0x6874_7541, 0x6974_6e65, 0x444d_4163];
            let family = ((signature.eax >> 8) & 0xf) + ((signature.eax >> 20) & 0xff);
            !(amd && family == 0x19)
        })
    }
    #[cfg(not(target_arch = "x86_64"))]
    false
}

thread_local! {
    static ON_THIS_THREAD: Cell<Option<Isa>> = const { Cell::new(None) };
}

/// The level kernels run with: the calling thread's choice (see [`with_level`]), else the
/// process's (`SMAI_CPU_ISA`, else the detected one). Never one the CPU lacks.
pub fn level() -> Isa {
    ON_THIS_THREAD.with(Cell::get).unwrap_or_else(process_level)
}

fn process_level() -> Isa {
    static LEVEL: OnceLock<Isa> = OnceLock::new();
    *LEVEL.get_or_init(|| {
        let detected = Isa::detected();
        let Ok(asked) = std::env::var("SMAI_CPU_ISA") else { return detected };
        match Isa::parse(&asked) {
            Some(level) if level <= detected => level,
            Some(level) => {
                tracing::warn!(
                    asked = level.name(),
                    using = detected.name(),
                    "SMAI_CPU_ISA names a level this CPU lacks"
                );
                detected
            }
            None => {
                tracing::warn!(%asked, using = detected.name(), "SMAI_CPU_ISA must be avx512, avx2 or scalar");
                detected
            }
        }
    })
}

/// Runs `f` with the kernels it calls on this thread at `level` (capped at what the CPU has):
/// for tests and benches that compare levels.
pub fn with_level<R>(level: Isa, f: impl FnOnce() -> R) -> R {
    let level = level.min(Isa::detected());
    let before = ON_THIS_THREAD.with(|l| l.replace(Some(level)));
    let result = f();
    ON_THIS_THREAD.with(|l| l.set(before));
    result
}

/// How far ahead of a stream of reads the kernels ask for its cache lines. A decoding step
/// reads each weight, and each cached key and value, once (about 130 MB a token for Whisper
/// base): with the hardware prefetchers alone, those streams ran at under half the rate they
/// reach with software prefetches this far ahead (Xeon guest, family 6 model 207).
pub const PREFETCH_BYTES: usize = 4096;

/// Asks the cache for the line holding `p`, which may lie past the end of the data: a
/// prefetch reads nothing and never faults.
#[inline(always)]
pub fn prefetch<T>(p: *const T) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: `prefetcht0` only hints the cache; it dereferences nothing.
    unsafe {
        std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(p.cast())
    };
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}

/// Defines `fn $name(args)` running the `#[inline(always)]` kernel `$kernel` compiled for the
/// level [`level`] says.
macro_rules! dispatch_isa {
    ($(#[$doc:meta])* $vis:vis fn $name:ident($($arg:ident: $ty:ty),*) => $kernel:ident) => {
        $crate::cpu_isa::dispatch_isa! { $(#[$doc])* $vis fn $name($($arg: $ty),*) -> () => $kernel }
    };
    ($(#[$doc:meta])* $vis:vis fn $name:ident($($arg:ident: $ty:ty),*) -> $ret:ty => $kernel:ident) => {
        $(#[$doc])*
        $vis fn $name($($arg: $ty),*) -> $ret {
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx512f,avx512vl,avx2,fma")]
                unsafe fn avx512($($arg: $ty),*) -> $ret {
                    $kernel($($arg),*)
                }
                #[target_feature(enable = "avx2,fma")]
                unsafe fn avx2($($arg: $ty),*) -> $ret {
                    $kernel($($arg),*)
                }
                match $crate::cpu_isa::level() {
                    // SAFETY: `level` never names a level the CPU lacks.
                    $crate::cpu_isa::Isa::Avx512 => return unsafe { avx512($($arg),*) },
                    $crate::cpu_isa::Isa::Avx2 => return unsafe { avx2($($arg),*) },
                    $crate::cpu_isa::Isa::Scalar => {}
                }
            }
            $kernel($($arg),*)
        }
    };
}
pub(crate) use dispatch_isa;

/// Whether the CPU has AVX-512 BF16 (`vdpbf16ps`), which the bf16 kernels run on.
pub fn has_avx512_bf16() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        is_x86_feature_detected!("avx512bf16")
    }
    #[cfg(not(target_arch = "x86_64"))]
    false
}

/// f32 to bf16 bits as `vcvtne2ps2bf16` rounds: to nearest even, subnormals to signed zero,
/// NaN stays NaN. Every bf16 path rounds with it. Written without branches (each case
/// computed, one selected) so that loops over it become vector code.
#[inline(always)]
pub fn to_bf16(v: f32) -> u16 {
    let u = v.to_bits();
    let rounded = u.wrapping_add(0x7fff + ((u >> 16) & 1)) >> 16;
    let quiet_nan = (u >> 16) | 0x40;
    let signed_zero = (u >> 16) & 0x8000;
    let finite_or_inf = if (u & 0x7fff_ffff) > 0x7f80_0000 { quiet_nan } else { rounded };
    (if u & 0x7f80_0000 == 0 { signed_zero } else { finite_or_inf }) as u16
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_parse_and_are_capped_at_the_cpu() {
        assert_eq!(Isa::parse(" AVX512 "), Some(Isa::Avx512));
        assert_eq!(Isa::parse("sse"), None);
        assert!(Isa::available().contains(&Isa::Scalar));
        assert_eq!(with_level(Isa::Scalar, level), Isa::Scalar);
        assert_eq!(with_level(Isa::Avx512, level), Isa::detected().min(Isa::Avx512));
        assert_eq!(level(), process_level(), "the thread's choice ends with with_level");
    }
}

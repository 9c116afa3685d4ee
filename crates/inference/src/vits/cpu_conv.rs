//! Direct 1-D convolution on the CPU for the VITS layers (the generator's residual blocks, the
//! flows' WaveNets, the pre/post convolutions). The convolution is computed as onnxruntime's
//! MLAS and other direct-convolution kernels do: a register block of output channels times
//! output samples accumulates `w[o, c, k] * x[c, t + k * dilation - pad]` over the input
//! channels and taps, with the weights broadcast and the input read straight from a padded
//! copy of the few hundred samples each parallel task covers (built in cache, with the leaky
//! ReLU before the convolution applied on the way), the sums written once, onto the bias and
//! residual, as each register block finishes. We write it ourselves because the matrix-product route (stacking the taps' shifted
//! copies, then gemm packing them again) spent most of its time moving data for these small
//! channel counts, and gemm's kernels stop at AVX2 on our targets.
//!
//! Every level sums each output in the same order (input channel, then tap, one fused
//! multiply-add each), so AVX-512, AVX2 and plain code give bit-identical results.

use std::mem::MaybeUninit;

use rayon::prelude::*;

use super::cpu_conv_bf16::Bf16Taps;
use crate::cpu_isa::{dispatch_isa, level, Isa};

/// Output channels per block of packed weights.
pub(super) const OC: usize = 8;
/// Output samples per register block at each level: AVX-512 keeps 8 channels x 3 vectors of 16
/// in its 32 registers, AVX2 two halves of 4 channels x 3 vectors of 8 in its 16 (fewer input
/// loads per multiply-add than 4 x 6 vectors: the input tile often lives in L2).
pub(super) const TW_AVX512: usize = 48;
const TW_AVX2: usize = 24;
pub(super) const MAX_TW: usize = TW_AVX512;
/// Register blocks of output channels per parallel task.
const OC_BLOCKS_PER_TASK: usize = 16;
/// Multiply-adds per parallel task, at least: fewer would spend more time scheduling than computing.
const TASK_WORK: usize = 1 << 20;

/// A convolution's weights laid out for the kernels: `[cout / OC][cin][taps][OC]`, output
/// channels padded with zeros to a multiple of `OC`.
pub struct PackedConv {
    /// Empty once the convolution runs in bf16 (`bf16` holds the taps then).
    weights: Vec<f32>,
    /// The same taps in bf16, when the convolution runs in bf16 (`--compute-type bfloat16`).
    bf16: Option<Bf16Taps>,
    cin: usize,
    cout: usize,
    taps: usize,
    dilation: usize,
}

impl PackedConv {
    /// From weights `[cout, cin, taps]` (PyTorch's Conv1d layout).
    pub fn new(weight: &[f32], cout: usize, cin: usize, taps: usize, dilation: usize) -> Self {
        assert_eq!(weight.len(), cout * cin * taps, "conv weight size");
        let blocks = cout.div_ceil(OC);
        let mut weights = vec![0.0f32; blocks * cin * taps * OC];
        for o in 0..cout {
            for c in 0..cin {
                for k in 0..taps {
                    weights[((o / OC * cin + c) * taps + k) * OC + o % OC] = weight[(o * cin + c) * taps + k];
                }
            }
        }
        Self { weights, bf16: None, cin, cout, taps, dilation }
    }

    /// Runs this convolution in bf16 from now on (inputs and weights rounded to bf16, sums in
    /// f32), where [`Bf16Taps::available`] says the CPU has the kernel.
    pub fn use_bf16(&mut self) {
        if self.bf16.is_none() && Bf16Taps::available() {
            self.bf16 = Some(Bf16Taps::new(&self.weights, self.cin, self.taps, self.dilation));
            self.weights = Vec::new();
        }
    }

    pub fn is_bf16(&self) -> bool {
        self.bf16.is_some()
    }

    /// The "same"-padded convolution of `input` (`[cin, len]`), with the leaky ReLU of `slope`
    /// applied to the input first, added to `base`: `[cout, len]`.
    pub fn apply(&self, input: &[f32], len: usize, slope: Option<f32>, base: Base) -> Vec<f32> {
        self.apply_padded(input, len, self.same_pad(), len, slope, base)
    }

    /// The left padding that keeps the output as long as the input.
    fn same_pad(&self) -> usize {
        (self.taps - 1) * self.dilation / 2
    }

    /// `[cout, out_len]`: the convolution of `input` (`[cin, len]`) preceded by `left_pad` zeros
    /// and followed by as many as the output needs (output `t` reads input
    /// `t + k * dilation - left_pad` for tap `k`), added to `base`.
    pub fn apply_padded(
        &self,
        input: &[f32],
        len: usize,
        left_pad: usize,
        out_len: usize,
        slope: Option<f32>,
        base: Base,
    ) -> Vec<f32> {
        let mut out = Vec::new();
        self.run(&Source { input, len, left_pad, slope }, (out_len, None), base, &mut out, true);
        out
    }

    /// A transposed convolution's output `[channels, len]` (see [`Phases`]) from this
    /// convolution's `frames` output frames of `source`, plus `bias` (`[channels]`): each sum
    /// goes straight to its place, with no `[cout, frames]` buffer and no pass to interleave it.
    pub fn apply_phases(&self, source: &Source, frames: usize, bias: &[f32], phases: Phases) -> Vec<f32> {
        assert_eq!(phases.channels * phases.stride, self.cout, "transposed conv phases");
        assert!(frames * phases.stride >= phases.len + phases.shift, "transposed conv frames");
        let mut out = Vec::new();
        let base = Base { bias: Some(bias), residual: None };
        self.run(source, (frames, Some(phases)), base, &mut out, true);
        out
    }

    /// [`Self::apply`] into `out` (its earlier contents replaced), all on the calling thread:
    /// for callers that already run one task per thread, reusing their buffers.
    pub fn apply_serial_into(&self, input: &[f32], len: usize, slope: Option<f32>, base: Base, out: &mut Vec<f32>) {
        self.run(&Source { input, len, left_pad: self.same_pad(), slope }, (len, None), base, out, false);
    }

    /// The convolution into `out`, split into parallel tasks of (time blocks, channel blocks)
    /// when `parallel`, else run whole on this thread.
    fn run(&self, source: &Source, shape: (usize, Option<Phases>), base: Base, out: &mut Vec<f32>, parallel: bool) {
        let (out_len, phases) = shape;
        let (rows, size) = match phases {
            Some(ph) => (ph.channels, ph.channels * ph.len),
            None => (self.cout, self.cout * out_len),
        };
        assert_eq!(source.input.len(), self.cin * source.len, "conv input size");
        assert!(base.bias.is_none_or(|b| b.len() == rows), "conv bias size");
        assert!(base.residual.is_none_or(|r| r.len() == size && phases.is_none()), "conv residual size");
        out.clear();
        if size == 0 {
            return;
        }
        // Every element is written once below (the tasks cover every (channel, time) pair), so
        // the output is not zeroed first: one pass less over the vocoder's long outputs.
        out.reserve(size);
        let isa = level();
        let tw = if self.bf16.is_some() { TW_AVX512 } else { block_width(isa) };
        let time_blocks = out_len.div_ceil(tw);
        let oc_blocks = self.cout.div_ceil(OC);
        let shared = SharedOut(out.spare_capacity_mut().as_mut_ptr());
        let task = Task { source, out_len, phases, base, shared, tw, isa };
        let tasks = self.split(time_blocks, oc_blocks, tw);
        if parallel && tasks.len() > 1 {
            tasks.into_par_iter().for_each(|t| self.run_task(&task, t));
        } else {
            // One after another still: each task's input tile stays in the core's first-level cache.
            tasks.into_iter().for_each(|t| self.run_task(&task, t));
        }
        // SAFETY: the tasks wrote all `size` elements (see above).
        unsafe { out.set_len(size) };
    }

    /// The parallel tasks' (time blocks, channel blocks): at least [`TASK_WORK`] multiply-adds
    /// each where there is that much, up to [`OC_BLOCKS_PER_TASK`] channel blocks sharing each
    /// task's input tile.
    fn split(&self, time_blocks: usize, oc_blocks: usize, tw: usize) -> Vec<TaskRange> {
        let work_per_block = OC * tw * self.cin * self.taps * oc_blocks.min(OC_BLOCKS_PER_TASK);
        let blocks_per_task = TASK_WORK.div_ceil(work_per_block.max(1)).clamp(1, time_blocks);
        let mut tasks = Vec::new();
        for tb in (0..time_blocks).step_by(blocks_per_task) {
            for ob in (0..oc_blocks).step_by(OC_BLOCKS_PER_TASK) {
                tasks.push((tb..(tb + blocks_per_task).min(time_blocks), ob..(ob + OC_BLOCKS_PER_TASK).min(oc_blocks)));
            }
        }
        tasks
    }

    /// One task: the kernel over its blocks, each block's sums written onto the base.
    fn run_task(&self, task: &Task, (blocks, channel_blocks): TaskRange) {
        let Task { source, out_len, phases, base, shared, tw, isa } = *task;
        let each_block = |kernel: &BlockKernel| {
            let mut acc = [0.0f32; OC * MAX_TW];
            for tb in blocks.clone() {
                let t0 = tb * tw;
                let width = tw.min(out_len - t0);
                for ob in channel_blocks.clone() {
                    kernel(tb - blocks.start, width, ob, &mut acc);
                    for o in 0..OC.min(self.cout - ob * OC) {
                        let ch = ob * OC + o;
                        let sums = &acc[o * MAX_TW..o * MAX_TW + width];
                        if let Some(phases) = phases {
                            // SAFETY: as below; each (row, frame) has its own place, if any.
                            unsafe { phases.scatter(ch, t0, sums, base.bias, shared) };
                            continue;
                        }
                        let row = ch * out_len + t0;
                        // SAFETY: tasks cover disjoint (channel block, time range) pairs of
                        // `out`, so no other thread touches these elements; row + width <= cout * out_len.
                        let dst = unsafe { std::slice::from_raw_parts_mut(shared.at(row), width) };
                        base.add(ch, row, sums, dst);
                    }
                }
            }
        };
        let (first, width) = (blocks.start * tw, blocks.len() * tw);
        match &self.bf16 {
            Some(taps) => taps.with_tile(source, first, width, |tile, stride| {
                each_block(&|i, _, ob, acc| taps.block(ob, &tile[i * tw..], stride, acc))
            }),
            None => TILE.with_borrow_mut(|tile| {
                let stride = self.fill_tile(source, first, width, tile);
                let taps = self.cin * self.taps * OC;
                each_block(&|i, width, ob, acc| {
                    let w = &self.weights[ob * taps..][..taps];
                    self.block(isa, w, (&tile[i * tw..], stride), width, acc)
                })
            }),
        }
    }

    /// Fills `tile` (`[cin, stride]`) with the activated, zero-padded input the kernels read for
    /// `width` outputs from output `first`, and returns its stride. Built per task, so that it
    /// stays in cache instead of a padded copy of the whole input going through memory.
    fn fill_tile(&self, source: &Source, first: usize, width: usize, tile: &mut Vec<f32>) -> usize {
        let stride = width + (self.taps - 1) * self.dilation;
        tile.resize(self.cin * stride, 0.0);
        let (skip, from, count) = source.span(first, stride);
        for (c, dst) in tile.chunks_exact_mut(stride).enumerate() {
            dst[..skip].fill(0.0);
            dst[skip + count..].fill(0.0);
            let src = &source.input[c * source.len..][from..from + count];
            let dst = &mut dst[skip..skip + count];
            match source.slope {
                Some(slope) => activated_copy(dst, src, slope),
                None => dst.copy_from_slice(src),
            }
        }
        stride
    }

    /// One register block: `acc[o * MAX_TW + j]` = the convolution sum of output channel `o`
    /// of the block at sample `j < width` of the time block whose padded input starts at `x`.
    /// A block's last samples past `width` are left out a vector at a time: the text encoder's
    /// and the flows' sequences (tens to a few hundred samples) otherwise spent up to a third of
    /// their multiply-adds on the padding of their last block.
    fn block(&self, isa: Isa, w: &[f32], (x, stride): (&[f32], usize), width: usize, acc: &mut [f32; OC * MAX_TW]) {
        let (cin, taps, dil) = (self.cin, self.taps, self.dilation);
        let tw = block_width(isa);
        let needed = (cin - 1) * stride + (taps - 1) * dil + tw;
        assert!(x.len() >= needed && w.len() == cin * taps * OC, "conv block bounds");
        assert!((1..=tw).contains(&width), "conv block width");
        let shape = (cin, taps, dil);
        #[cfg(target_arch = "x86_64")]
        match isa {
            // SAFETY: `level` never names a level the CPU lacks; the assert above keeps every
            // read inside `x` and `w` (narrower kernels read less).
            Isa::Avx512 => {
                let (w, x) = (w.as_ptr(), x.as_ptr());
                return unsafe {
                    match width.div_ceil(16) {
                        1 => x86::block_avx512_16(w, x, stride, shape, 0, acc),
                        2 => x86::block_avx512_32(w, x, stride, shape, 0, acc),
                        _ => x86::block_avx512(w, x, stride, shape, 0, acc),
                    }
                };
            }
            Isa::Avx2 => {
                let (w, x) = (w.as_ptr(), x.as_ptr());
                for half in [0, OC / 2] {
                    unsafe {
                        match width.div_ceil(8) {
                            1 => x86::block_avx2_8(w, x, stride, shape, half, acc),
                            2 => x86::block_avx2_16(w, x, stride, shape, half, acc),
                            _ => x86::block_avx2(w, x, stride, shape, half, acc),
                        }
                    }
                }
                return;
            }
            Isa::Scalar => {}
        }
        block_plain(w, x, stride, cin, taps, dil, acc);
    }
}

/// A parallel task's time blocks and output channel blocks.
type TaskRange = (std::ops::Range<usize>, std::ops::Range<usize>);

/// What every task of one convolution call shares.
#[derive(Clone, Copy)]
struct Task<'a> {
    source: &'a Source<'a>,
    out_len: usize,
    phases: Option<Phases>,
    base: Base<'a>,
    shared: SharedOut,
    tw: usize,
    isa: Isa,
}

/// A register-block kernel as `PackedConv::run_task` runs it: (time block in the tile,
/// outputs in it, channel block, sums).
type BlockKernel<'a> = dyn Fn(usize, usize, usize, &mut [f32; OC * MAX_TW]) + 'a;

/// Output samples per register block at `isa`.
fn block_width(isa: Isa) -> usize {
    if isa == Isa::Avx512 {
        TW_AVX512
    } else {
        TW_AVX2
    }
}

/// The input of one convolution call.
pub(super) struct Source<'a> {
    pub input: &'a [f32],
    pub len: usize,
    pub left_pad: usize,
    pub slope: Option<f32>,
}

impl Source<'_> {
    /// For a tile of `stride` padded columns from column `first`: the columns before the input
    /// (`skip`), and the input samples (`from`, `count`) in the columns after them, the rest
    /// being zeros. Padded column j holds input `j - left_pad`.
    pub fn span(&self, first: usize, stride: usize) -> (usize, usize, usize) {
        let skip = self.left_pad.saturating_sub(first).min(stride);
        let from = (first + skip).saturating_sub(self.left_pad).min(self.len);
        (skip, from, (stride - skip).min(self.len - from))
    }
}

thread_local! {
    /// Each worker thread's input tile, reused from call to call.
    static TILE: std::cell::RefCell<Vec<f32>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// What a convolution's sums are added to: `residual[o, t] + bias[o]`, either optional.
#[derive(Clone, Copy, Default)]
pub struct Base<'a> {
    pub bias: Option<&'a [f32]>,
    /// `[cout, out_len]`.
    pub residual: Option<&'a [f32]>,
}

impl Base<'_> {
    /// Writes `dst[j] = base at (channel, offset + j) + sums[j]`: the order in which the sums
    /// were once accumulated onto a copy of the base, so results keep their rounding.
    fn add(&self, channel: usize, offset: usize, sums: &[f32], dst: &mut [MaybeUninit<f32>]) {
        let b = self.bias.map_or(0.0, |b| b[channel]);
        match self.residual {
            Some(r) => {
                let r = &r[offset..offset + dst.len()];
                dst.iter_mut().zip(sums).zip(r).for_each(|((d, &a), &r)| _ = d.write((r + b) + a));
            }
            None => dst.iter_mut().zip(sums).for_each(|(d, &a)| _ = d.write(b + a)),
        }
    }
}

/// Output rows that are the phases of a transposed convolution (stride s): row
/// `p * channels + o`, frame `u` holds sample `u * s + p - shift` of output channel `o`, kept
/// where that lies in `0..len`.
#[derive(Clone, Copy, Debug)]
pub struct Phases {
    pub stride: usize,
    pub channels: usize,
    pub shift: usize,
    pub len: usize,
}

impl Phases {
    /// Writes `bias[o] + sums[j]` for frames `t0 + j` of row `row` to their places in `out`
    /// (`[channels, len]`).
    ///
    /// # Safety
    /// `out` holds `channels * len` elements, and no other thread writes this row's frames.
    unsafe fn scatter(&self, row: usize, t0: usize, sums: &[f32], bias: Option<&[f32]>, out: SharedOut) {
        let (p, o) = (row / self.channels, row % self.channels);
        let b = bias.map_or(0.0, |b| b[o]);
        let first = self.shift.saturating_sub(p).div_ceil(self.stride).saturating_sub(t0);
        for (j, &v) in sums.iter().enumerate().skip(first) {
            let sample = (t0 + j) * self.stride + p - self.shift;
            if sample >= self.len {
                break;
            }
            (*out.at(o * self.len + sample)).write(b + v);
        }
    }
}

dispatch_isa! {
    /// `dst = leaky_relu(src, slope)`, at the CPU's vector width: compiled for the baseline,
    /// filling the kernels' input tiles took 4 % of a synthesis.
    fn activated_copy(dst: &mut [f32], src: &[f32], slope: f32) => activated_copy_any
}

#[inline(always)]
fn activated_copy_any(dst: &mut [f32], src: &[f32], slope: f32) {
    dst.iter_mut().zip(src).for_each(|(d, &v)| *d = if v < 0.0 { v * slope } else { v });
}

/// The plain-code kernel (and NEON's, through the compiler), with the AVX2 block width.
fn block_plain(w: &[f32], x: &[f32], stride: usize, cin: usize, taps: usize, dil: usize, acc: &mut [f32; OC * MAX_TW]) {
    let mut a = [[0.0f32; TW_AVX2]; OC];
    for c in 0..cin {
        for k in 0..taps {
            let xs = &x[c * stride + k * dil..][..TW_AVX2];
            let ws = &w[(c * taps + k) * OC..][..OC];
            for (row, &wv) in a.iter_mut().zip(ws) {
                for (s, &xv) in row.iter_mut().zip(xs) {
                    *s = wv.mul_add(xv, *s);
                }
            }
        }
    }
    for (o, row) in a.iter().enumerate() {
        acc[o * MAX_TW..o * MAX_TW + TW_AVX2].copy_from_slice(row);
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    use super::{MAX_TW, OC, TW_AVX2, TW_AVX512};

    /// Defines one level's register-block kernel: `$lanes`-float vectors, `$rows` output
    /// channels (from `first` within the block of `OC`) of `$tw / $lanes` vectors of
    /// accumulators, input vectors loaded once per (channel, tap) and each weight broadcast once.
    macro_rules! block_kernel {
        ($(#[$doc:meta])* $name:ident, $feature:literal, $rows:expr, $tw:expr, $lanes:literal,
         $zero:ident, $load:ident, $splat:ident, $fma:ident, $store:ident) => {
            $(#[$doc])*
            #[target_feature(enable = $feature)]
            pub unsafe fn $name(
                w: *const f32,
                x: *const f32,
                stride: usize,
                (cin, taps, dil): (usize, usize, usize),
                first: usize,
                acc: &mut [f32; OC * MAX_TW],
            ) {
                const VECTORS: usize = $tw / $lanes;
                let mut a = [[$zero(); VECTORS]; $rows];
                let mut v = [$zero(); VECTORS];
                for c in 0..cin {
                    for k in 0..taps {
                        let xp = x.add(c * stride + k * dil);
                        for (j, vj) in v.iter_mut().enumerate() {
                            *vj = $load(xp.add(j * $lanes));
                        }
                        let wp = w.add((c * taps + k) * OC + first);
                        for (o, row) in a.iter_mut().enumerate() {
                            let b = $splat(*wp.add(o));
                            for (s, &vj) in row.iter_mut().zip(&v) {
                                *s = $fma(vj, b, *s);
                            }
                        }
                    }
                }
                for (o, row) in a.iter().enumerate() {
                    for (j, &s) in row.iter().enumerate() {
                        $store(acc.as_mut_ptr().add((first + o) * MAX_TW + j * $lanes), s);
                    }
                }
            }
        };
    }

    block_kernel!(
        /// # Safety
        /// AVX-512 F present; `w` holds `cin * taps * OC` floats and `x` every float the block
        /// reads (`(cin - 1) * stride + (taps - 1) * dil + TW_AVX512`).
        block_avx512, "avx512f", OC, TW_AVX512, 16,
        _mm512_setzero_ps, _mm512_loadu_ps, _mm512_set1_ps, _mm512_fmadd_ps, _mm512_storeu_ps
    );
    block_kernel!(
        /// # Safety
        /// As [`block_avx512`]; a sequence's last 16 samples or fewer, reading fewer inputs.
        block_avx512_16, "avx512f", OC, 16, 16,
        _mm512_setzero_ps, _mm512_loadu_ps, _mm512_set1_ps, _mm512_fmadd_ps, _mm512_storeu_ps
    );
    block_kernel!(
        /// # Safety
        /// As [`block_avx512`]; it reads fewer input samples.
        block_avx512_32, "avx512f", OC, 32, 16,
        _mm512_setzero_ps, _mm512_loadu_ps, _mm512_set1_ps, _mm512_fmadd_ps, _mm512_storeu_ps
    );
    block_kernel!(
        /// # Safety
        /// AVX2 and FMA present; bounds as [`block_avx512`] with `TW_AVX2`; `first` is 0 or `OC / 2`.
        block_avx2, "avx2,fma", OC / 2, TW_AVX2, 8,
        _mm256_setzero_ps, _mm256_loadu_ps, _mm256_set1_ps, _mm256_fmadd_ps, _mm256_storeu_ps
    );
    block_kernel!(
        /// # Safety
        /// As [`block_avx2`]; it reads fewer input samples.
        block_avx2_8, "avx2,fma", OC / 2, 8, 8,
        _mm256_setzero_ps, _mm256_loadu_ps, _mm256_set1_ps, _mm256_fmadd_ps, _mm256_storeu_ps
    );
    block_kernel!(
        /// # Safety
        /// As [`block_avx2`]; it reads fewer input samples.
        block_avx2_16, "avx2,fma", OC / 2, 16, 8,
        _mm256_setzero_ps, _mm256_loadu_ps, _mm256_set1_ps, _mm256_fmadd_ps, _mm256_storeu_ps
    );
}

/// The output buffer shared by the tasks of one convolution, each writing its own elements.
#[derive(Clone, Copy)]
struct SharedOut(*mut MaybeUninit<f32>);

// SAFETY: the tasks that share it write disjoint elements (see `PackedConv::apply`).
unsafe impl Send for SharedOut {}
unsafe impl Sync for SharedOut {}

impl SharedOut {
    fn at(self, offset: usize) -> *mut MaybeUninit<f32> {
        self.0.wrapping_add(offset)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cpu_isa::with_level;

    fn reference(
        w: &[f32],
        x: &[f32],
        shape: (usize, usize, usize, usize),
        len: usize,
        slope: Option<f32>,
    ) -> Vec<f64> {
        let (cout, cin, taps, dil) = shape;
        let pad = ((taps - 1) * dil / 2) as isize;
        let act = |v: f32| f64::from(if slope.is_some_and(|_| v < 0.0) { v * slope.unwrap_or(1.0) } else { v });
        let mut out = vec![0.0f64; cout * len];
        for o in 0..cout {
            for t in 0..len {
                for c in 0..cin {
                    for k in 0..taps {
                        let i = t as isize + (k * dil) as isize - pad;
                        if (0..len as isize).contains(&i) {
                            out[o * len + t] += f64::from(w[(o * cin + c) * taps + k]) * act(x[c * len + i as usize]);
                        }
                    }
                }
            }
        }
        out
    }

    /// Pseudo-random values in [-1, 1), reproducible.
    fn values(n: usize, seed: u64) -> Vec<f32> {
        let mut s = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (0..n)
            .map(|_| {
                s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                ((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
            })
            .collect()
    }

    #[test]
    fn every_level_matches_the_f64_convolution_and_the_others_bit_for_bit() {
        // (cout, cin, taps, dilation, len): the generator's shapes, odd sizes and short inputs,
        // with last blocks of one, two and three vectors at every level.
        let cases = [
            (32, 32, 7, 5, 1000),
            (6, 3, 3, 1, 5),
            (1, 32, 7, 1, 97),
            (9, 5, 5, 12, 300),
            (4, 2, 1, 1, 1),
            (16, 12, 3, 2, 125),
            (8, 8, 5, 1, 68),
        ];
        for (i, &(cout, cin, taps, dil, len)) in cases.iter().enumerate() {
            let w = values(cout * cin * taps, i as u64);
            let x = values(cin * len, 100 + i as u64);
            let residual = values(cout * len, 200 + i as u64);
            let conv = PackedConv::new(&w, cout, cin, taps, dil);
            let want = reference(&w, &x, (cout, cin, taps, dil), len, Some(0.1));
            let mut outputs = Vec::new();
            for isa in Isa::available() {
                let base = Base { bias: None, residual: Some(&residual) };
                let out = with_level(isa, || conv.apply(&x, len, Some(0.1), base));
                for (j, (&got, &r)) in out.iter().zip(&residual).enumerate() {
                    let err = (f64::from(got) - f64::from(r) - want[j]).abs();
                    assert!(err <= 1e-4 * (1.0 + want[j].abs()), "{isa:?} case {i} element {j}: error {err}");
                }
                outputs.push((isa, out));
            }
            for (isa, out) in &outputs[1..] {
                assert!(out == &outputs[0].1, "{isa:?} differs from {:?} in case {i}", outputs[0].0);
            }
        }
    }
}

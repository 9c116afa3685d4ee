//! HiFi-GAN generator of VITS (`Generator` in Piper's training code): transposed-conv
//! upsampling with multi-receptive-field residual blocks, latent frames -> waveform.

use candle_core::{Module, Result, Tensor};
use candle_nn::VarBuilder;
use rayon::prelude::*;

use super::cpu_conv::{PackedConv, Phases, Source};
use super::layers::{conv1d, leaky_relu, with_values, TapConv1d};
use super::stage_cpu::{run_tile, FastResBlock, TileKind};
use super::{ResBlockKind, VitsConfig};
use crate::whisper::cpu_ops;

const LRELU_SLOPE: f64 = 0.1;

/// Residual block: kind "1" has two convs per dilation, kind "2" one.
struct ResBlock {
    convs: Vec<(TapConv1d, Option<TapConv1d>)>,
}

impl ResBlock {
    fn load(vb: VarBuilder, kind: ResBlockKind, ch: usize, kernel: usize, dilations: &[usize]) -> Result<Self> {
        let mut convs = Vec::with_capacity(dilations.len());
        for (j, &d) in dilations.iter().enumerate() {
            convs.push(match kind {
                ResBlockKind::One => (
                    TapConv1d::load(vb.pp(format!("convs1.{j}")), ch, ch, kernel, d, true)?,
                    Some(TapConv1d::load(vb.pp(format!("convs2.{j}")), ch, ch, kernel, 1, true)?),
                ),
                ResBlockKind::Two => (TapConv1d::load(vb.pp(format!("convs.{j}")), ch, ch, kernel, d, true)?, None),
            });
        }
        Ok(Self { convs })
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let slope = Some(LRELU_SLOPE as f32);
        let mut x = x.clone();
        for (c1, c2) in &self.convs {
            x = match c2 {
                Some(c2) => c2.forward_fused(&c1.forward_fused(&x, slope, None)?, slope, Some(&x))?,
                None => c1.forward_fused(&x, slope, Some(&x))?,
            };
        }
        Ok(x)
    }
}

/// ConvTranspose1d (stride s, kernel K) split into s output phases: output sample u*s + p is
/// a plain convolution of the input with kernel taps p, p + s, ... On the CPU all phases are
/// one direct convolution (`[s * out, in, taps]`, the leaky ReLU before the upsampler applied
/// as the input is copied in) whose rows are then interleaved; elsewhere each group of taps is
/// one matrix product for all phases at once (candle's own transposed convolution is slow when
/// padding is not 0).
struct Upsample {
    /// Per tap group q: `[s * out, in]`, row `p * out + o` holding `W[:, o, p + q * s]`.
    groups: Vec<Tensor>,
    /// The CPU: every phase as output rows `p * out + o` of one convolution over
    /// `n_groups` taps, tap `j` reading input `u - (n_groups - 1) + j`.
    phases: Option<PackedConv>,
    bias: Tensor, // [out, 1]
    bias_values: Vec<f32>,
    stride: usize,
    kernel: usize,
    padding: usize,
    out_channels: usize,
}

impl Upsample {
    fn load(vb: VarBuilder, cin: usize, cout: usize, kernel: usize, stride: usize) -> Result<Self> {
        let weight = vb.get((cin, cout, kernel), "weight")?;
        let n_groups = kernel.div_ceil(stride);
        let phases = weight.device().is_cpu().then(|| phase_conv(&weight, stride)).transpose()?;
        let weight = weight.pad_with_zeros(2, 0, n_groups * stride - kernel)?;
        let groups = if phases.is_some() {
            Vec::new()
        } else {
            (0..n_groups)
                .map(|q| weight.narrow(2, q * stride, stride)?.permute((2, 1, 0))?.reshape((stride * cout, cin)))
                .collect::<Result<_>>()?
        };
        let bias = vb.get(cout, "bias")?;
        Ok(Self {
            groups,
            phases,
            bias_values: bias.to_vec1()?,
            bias: bias.reshape((cout, 1))?,
            stride,
            kernel,
            padding: (kernel - stride) / 2,
            out_channels: cout,
        })
    }

    /// `[1, in, t]` -> `[1, out, (t - 1) * stride + kernel - 2 * padding]`, of `leaky_relu(x)`.
    fn forward(&self, x: &Tensor, slope: f32) -> Result<Tensor> {
        let len = x.dim(2)?;
        let full = (len - 1) * self.stride + self.kernel;
        let out_len = full - 2 * self.padding;
        let Some(phases) = &self.phases else {
            return self.forward_products(&leaky_relu(x, slope)?, len, out_len);
        };
        let n_groups = self.kernel.div_ceil(self.stride);
        let phases_of = Phases { stride: self.stride, channels: self.out_channels, shift: self.padding, len: out_len };
        let out = with_values(x, |input| {
            let source = Source { input, len, left_pad: n_groups - 1, slope: Some(slope) };
            phases.apply_phases(&source, len + n_groups - 1, &self.bias_values, phases_of)
        })?;
        Tensor::from_vec(out, (1, self.out_channels, out_len), x.device())
    }

    /// Devices other than the CPU: one product per tap group, phases interleaved by reshaping.
    fn forward_products(&self, x: &Tensor, len: usize, out_len: usize) -> Result<Tensor> {
        let q_len = self.groups.len();
        let frames = len + q_len - 1;
        let padded = x.squeeze(0)?.pad_with_zeros(1, q_len - 1, q_len - 1)?;
        let mut phases: Option<Tensor> = None;
        for (q, group) in self.groups.iter().enumerate() {
            let shifted = padded.narrow(1, q_len - 1 - q, frames)?.contiguous()?;
            let y = group.matmul(&shifted)?;
            phases = Some(match phases {
                Some(acc) => (acc + y)?,
                None => y,
            });
        }
        let phases = phases.ok_or_else(|| candle_core::Error::Msg("upsampler without taps".into()))?;
        // [s * out, frames] -> [out, frames * s], sample u * s + p from phase p.
        let y = phases
            .reshape((self.stride, self.out_channels, frames))?
            .permute((1, 2, 0))?
            .contiguous()?
            .reshape((self.out_channels, frames * self.stride))?;
        let y = y.narrow(1, self.padding, out_len)?.broadcast_add(&self.bias)?;
        y.unsqueeze(0)
    }
}

/// ConvTranspose1d weights `[in, out, K]` as the phase convolution's `[s * out, in, taps]`:
/// row `p * out + o`, tap `j` holds `W[:, o, p + (taps - 1 - j) * s]` (zero past K).
fn phase_conv(weight: &Tensor, stride: usize) -> Result<PackedConv> {
    let (cin, cout, kernel) = weight.dims3()?;
    let taps = kernel.div_ceil(stride);
    let w = weight.flatten_all()?.to_vec1::<f32>()?;
    let mut conv = vec![0.0f32; stride * cout * cin * taps];
    for p in 0..stride {
        for o in 0..cout {
            for c in 0..cin {
                for j in 0..taps {
                    let k = p + (taps - 1 - j) * stride;
                    if k < kernel {
                        conv[(((p * cout + o) * cin + c) * taps) + j] = w[(c * cout + o) * kernel + k];
                    }
                }
            }
        }
    }
    Ok(PackedConv::new(&conv, stride * cout, cin, taps, 1))
}

pub struct Generator {
    conv_pre: TapConv1d,
    cond: Option<TapConv1d>,
    ups: Vec<Upsample>,
    resblocks: Vec<ResBlock>,
    /// The CPU in float32, per stage: its residual blocks as a tile runs them (`stage_cpu`).
    fast_stages: Vec<Option<Vec<FastResBlock>>>,
    kernels_per_stage: usize,
    conv_post: TapConv1d,
    context: usize,
    /// Samples on each side of an output sample that a stage's residual blocks read.
    stage_reach: usize,
}

impl Generator {
    pub fn load(vb: VarBuilder, cfg: &VitsConfig) -> Result<Self> {
        let ch0 = cfg.upsample_initial_channel;
        let conv_pre = conv1d(vb.pp("conv_pre"), cfg.inter_channels, ch0, 7, 1)?;
        let mut ups = Vec::new();
        let mut resblocks = Vec::new();
        let mut fast_stages = Vec::new();
        let mut ch = ch0;
        for (i, (&rate, &kernel)) in cfg.upsample_rates.iter().zip(&cfg.upsample_kernel_sizes).enumerate() {
            let out = ch / 2;
            ups.push(Upsample::load(vb.pp(format!("ups.{i}")), ch, out, kernel, rate)?);
            let kernels = cfg.resblock_kernel_sizes.iter().zip(&cfg.resblock_dilations).enumerate();
            let stage_vb = |j: usize| vb.pp(format!("resblocks.{}", i * cfg.resblock_kernel_sizes.len() + j));
            for (j, (&k, dil)) in kernels.clone() {
                resblocks.push(ResBlock::load(stage_vb(j), cfg.resblock, out, k, dil)?);
            }
            let load_stage = |tile: TileKind| {
                kernels
                    .clone()
                    .map(|(j, (&k, dil))| FastResBlock::load(stage_vb(j), (cfg.resblock, tile), out, k, dil))
                    .collect::<Result<Option<Vec<_>>>>()
            };
            // Winograd where it covers every convolution of the stage, else the direct kernel.
            let fast = match load_stage(TileKind::Winograd)? {
                Some(blocks) => Some(blocks),
                None => load_stage(TileKind::Direct)?,
            };
            fast_stages.push(fast);
            ch = out;
        }
        let cond = if cfg.gin_channels > 0 { Some(conv1d(vb.pp("cond"), cfg.gin_channels, ch0, 1, 1)?) } else { None };
        Ok(Self {
            conv_pre,
            cond,
            ups,
            resblocks,
            fast_stages,
            kernels_per_stage: cfg.resblock_kernel_sizes.len(),
            context: receptive_radius(cfg),
            stage_reach: resblock_reach(cfg).ceil() as usize,
            conv_post: TapConv1d::load(vb.pp("conv_post"), ch, 1, 7, 1, false)?,
        })
    }

    /// Runs the upsamplers, residual blocks and output convolution in bf16 where the CPU has
    /// the kernel; returns whether it does. Measured against piper-tts on en_US-joe-medium the
    /// waveform keeps 41-44 dB SNR (the flows and text encoder in bf16 would drop it to 12 dB,
    /// so they stay f32).
    pub fn use_bf16(&mut self) -> bool {
        for block in &mut self.resblocks {
            for (first, second) in &mut block.convs {
                first.use_bf16();
                if let Some(second) = second {
                    second.use_bf16();
                }
            }
        }
        for up in &mut self.ups {
            if let Some(phases) = &mut up.phases {
                phases.use_bf16();
            }
        }
        self.conv_post.use_bf16();
        let bf16 = self.conv_post.is_bf16();
        if bf16 {
            // The residual blocks run the bf16 direct kernel then (faster here than float32
            // Winograd, measured); their Winograd weights go.
            self.fast_stages.iter_mut().for_each(|stage| *stage = None);
        }
        bf16
    }

    /// Latent frames on each side of a frame that reach its output samples.
    pub fn context_frames(&self) -> usize {
        self.context
    }

    /// `[1, inter, frames]` -> `[1, 1, samples]` in [-1, 1].
    pub fn forward(&self, z: &Tensor, g: Option<&Tensor>) -> Result<Tensor> {
        let mut x = self.conv_pre.forward(z)?;
        if let (Some(cond), Some(g)) = (&self.cond, g) {
            x = x.broadcast_add(&cond.forward(g)?)?;
        }
        for (i, up) in self.ups.iter().enumerate() {
            let last = i + 1 == self.ups.len();
            x = up.forward(&x, LRELU_SLOPE as f32)?;
            let blocks = &self.resblocks[i * self.kernels_per_stage..(i + 1) * self.kernels_per_stage];
            let tile = tile_len(x.dim(1)?);
            let fast = self.fast_stages[i].as_deref();
            let stage = |x: &Tensor| match fast {
                Some(fast) => run_tile(fast, x),
                None => self.stage(blocks, x),
            };
            // Tiles in parallel for both kinds of stage: the direct kernel's own tasks then run
            // on their tile's thread (rayon keeps nested work local), one hand-off per tile
            // instead of one per convolution (the 32-channel stage took 20 % less time).
            x = if last && x.device().is_cpu() {
                tiled(&x, self.stage_reach + POST_REACH, tile, |x| self.post(&stage(x)?))?
            } else if x.device().is_cpu() {
                tiled(&x, self.stage_reach, tile, stage)?
            } else {
                self.stage(blocks, &x)?
            };
        }
        if self.ups.is_empty() || !x.device().is_cpu() {
            x = self.post(&x)?;
        }
        Ok(x)
    }

    /// A stage's parallel residual blocks, averaged.
    fn stage(&self, blocks: &[ResBlock], x: &Tensor) -> Result<Tensor> {
        let mut sum: Option<Tensor> = None;
        for block in blocks {
            let y = block.forward(x)?;
            sum = Some(match sum {
                Some(s) => (s + y)?,
                None => y,
            });
        }
        let sum = sum.ok_or_else(|| candle_core::Error::Msg("generator stage without resblocks".into()))?;
        sum / self.kernels_per_stage as f64
    }

    fn post(&self, x: &Tensor) -> Result<Tensor> {
        // F.leaky_relu's default slope here, not LRELU_SLOPE, as in the reference.
        let y = self.conv_post.forward_fused(x, Some(0.01), None)?;
        if !y.device().is_cpu() {
            return y.tanh();
        }
        let mut values = with_values(&y, <[f32]>::to_vec)?;
        cpu_ops::tanh_in_place(&mut values);
        Tensor::from_vec(values, y.shape(), y.device())
    }
}

/// Samples on each side that conv_post (kernel 7) reads.
const POST_REACH: usize = 3;
/// Bytes of one stage tensor per tile: small enough that a tile's intermediate tensors stay in
/// the cores' caches. Whole, a late stage's tensors (32 channels x 256 samples a frame) run to
/// megabytes per sentence, and each convolution then streams them through memory.
const TILE_BYTES: usize = 1 << 20;

/// Time samples per tile for a stage of `channels`.
fn tile_len(channels: usize) -> usize {
    (TILE_BYTES / (4 * channels.max(1))).max(256)
}

/// `f` (convolutions with "same" zero padding that together read `reach` samples on each side)
/// applied to `x` (`[1, c, len]`) tile by tile: each tile of at most `tile` samples is computed
/// from the input widened by `reach` on each side and keeps its middle, which is then exactly
/// what `f` of the whole gives (each output sums the same inputs in the same order). The tiles
/// run in parallel, at least one per thread so that short sentences use every core too.
fn tiled(x: &Tensor, reach: usize, tile: usize, f: impl Fn(&Tensor) -> Result<Tensor> + Sync) -> Result<Tensor> {
    let (_, channels, len) = x.dims3()?;
    let tile = tile.min(len.div_ceil(rayon::current_num_threads())).max(1);
    if len <= tile {
        return f(x);
    }
    let starts: Vec<usize> = (0..len).step_by(tile).collect();
    let pieces = with_values(x, |values| {
        let piece = |&start: &usize| {
            let end = (start + tile).min(len);
            let (lo, hi) = (start.saturating_sub(reach), (end + reach).min(len));
            let mut rows = Vec::with_capacity(channels * (hi - lo));
            values.chunks_exact(len).for_each(|row| rows.extend_from_slice(&row[lo..hi]));
            let y = f(&Tensor::from_vec(rows, (1, channels, hi - lo), x.device())?)?;
            y.narrow(2, start - lo, end - start)?.contiguous()
        };
        starts.par_iter().map(piece).collect::<Result<Vec<_>>>()
    })??;
    Tensor::cat(&pieces, 2)
}

/// The generator's receptive field in latent frames on each side, rounded up, plus one: every
/// convolution reaches `(kernel - 1) / 2 * dilation` samples of its stage's rate, an upsampler
/// `ceil(kernel / stride)` samples of its input's, the parallel resblocks as far as the widest.
fn receptive_radius(cfg: &VitsConfig) -> usize {
    let mut frames = reach(7, 1); // conv_pre
    let mut rate = 1.0;
    for (&stride, &kernel) in cfg.upsample_rates.iter().zip(&cfg.upsample_kernel_sizes) {
        frames += kernel.div_ceil(stride) as f64 / rate;
        rate *= stride as f64;
        frames += resblock_reach(cfg) / rate;
    }
    frames += POST_REACH as f64 / rate;
    frames.ceil() as usize + 1
}

/// Samples that a convolution of `kernel` taps spaced `dilation` apart reads on each side.
fn reach(kernel: usize, dilation: usize) -> f64 {
    ((kernel - 1) / 2 * dilation) as f64
}

/// Samples on each side that a stage's residual blocks read, at the stage's rate: the widest
/// block's chain of convolutions.
fn resblock_reach(cfg: &VitsConfig) -> f64 {
    cfg.resblock_kernel_sizes
        .iter()
        .zip(&cfg.resblock_dilations)
        .map(|(&k, dilations)| {
            let second = if cfg.resblock == ResBlockKind::One { reach(k, 1) } else { 0.0 };
            dilations.iter().map(|&d| reach(k, d) + second).sum::<f64>()
        })
        .fold(0.0, f64::max)
}

#[cfg(test)]
mod tests {
    use candle_core::Device;

    use super::super::cpu_conv::Base;
    use super::*;

    #[test]
    fn upsampler_matches_the_transposed_convolution() -> Result<()> {
        // (in, out, kernel, stride, length): the voices' shapes, small, and an odd split.
        for (cin, cout, kernel, stride, len) in [(16, 8, 16, 8, 13), (8, 4, 8, 4, 50), (6, 5, 5, 3, 7)] {
            let ramp = |n: usize, m: usize| (0..n).map(|i| ((i * m % 41) as f32 - 20.0) / 30.0).collect::<Vec<f32>>();
            let (w, bias, x) = (ramp(cin * cout * kernel, 7), ramp(cout, 3), ramp(cin * len, 11));
            let mut tensors = std::collections::HashMap::new();
            tensors.insert("weight".to_string(), Tensor::from_vec(w.clone(), (cin, cout, kernel), &Device::Cpu)?);
            tensors.insert("bias".to_string(), Tensor::from_vec(bias.clone(), cout, &Device::Cpu)?);
            let vb = VarBuilder::from_tensors(tensors, candle_core::DType::F32, &Device::Cpu);
            let up = Upsample::load(vb, cin, cout, kernel, stride)?;
            let got = up.forward(&Tensor::from_vec(x.clone(), (1, cin, len), &Device::Cpu)?, 0.1)?;
            // ConvTranspose1d: input t feeds output t * stride + k - padding through tap k.
            let padding = (kernel - stride) / 2;
            let out_len = (len - 1) * stride + kernel - 2 * padding;
            let mut want = vec![0.0f64; cout * out_len];
            for o in 0..cout {
                for (j, slot) in want[o * out_len..(o + 1) * out_len].iter_mut().enumerate() {
                    *slot = f64::from(bias[o]);
                    for c in 0..cin {
                        for t in 0..len {
                            let Some(k) = (j + padding).checked_sub(t * stride).filter(|&k| k < kernel) else {
                                continue;
                            };
                            let v = x[c * len + t];
                            let v = if v < 0.0 { v * 0.1 } else { v };
                            *slot += f64::from(w[(c * cout + o) * kernel + k]) * f64::from(v);
                        }
                    }
                }
            }
            assert_eq!(got.dims3()?, (1, cout, out_len));
            for (g, w) in got.flatten_all()?.to_vec1::<f32>()?.iter().zip(&want) {
                assert!((f64::from(*g) - w).abs() <= 1e-5 * (1.0 + w.abs()), "{g} against {w}");
            }
        }
        Ok(())
    }

    #[test]
    fn winograd_stage_matches_the_direct_residual_blocks() -> Result<()> {
        let (ch, len, kernels, dilations) = (64, 700, [3, 5], [1, 3]);
        let mut tensors = std::collections::HashMap::new();
        for (b, &k) in kernels.iter().enumerate() {
            for j in 0..dilations.len() {
                let n = ch * ch * k;
                let w: Vec<f32> = (0..n).map(|i| ((i * 7919 + b + j) % 1000) as f32 / 8000.0 - 0.06).collect();
                let bias: Vec<f32> = (0..ch).map(|i| (i % 7) as f32 / 70.0).collect();
                tensors
                    .insert(format!("resblocks.{b}.convs.{j}.weight"), Tensor::from_vec(w, (ch, ch, k), &Device::Cpu)?);
                tensors.insert(format!("resblocks.{b}.convs.{j}.bias"), Tensor::from_vec(bias, ch, &Device::Cpu)?);
            }
        }
        let vb = VarBuilder::from_tensors(tensors, candle_core::DType::F32, &Device::Cpu);
        let load =
            |b: usize| ResBlock::load(vb.pp(format!("resblocks.{b}")), ResBlockKind::Two, ch, kernels[b], &dilations);
        let direct = [load(0)?, load(1)?];
        let fast_load = |b: usize| {
            let vb = vb.pp(format!("resblocks.{b}"));
            FastResBlock::load(vb, (ResBlockKind::Two, TileKind::Winograd), ch, kernels[b], &dilations)
        };
        let fast = [fast_load(0)?.expect("covered"), fast_load(1)?.expect("covered")];
        let direct_load = |b: usize| {
            let vb = vb.pp(format!("resblocks.{b}"));
            FastResBlock::load(vb, (ResBlockKind::Two, TileKind::Direct), ch, kernels[b], &dilations)
        };
        let direct_tiles = [direct_load(0)?.expect("CPU"), direct_load(1)?.expect("CPU")];
        let x: Vec<f32> = (0..ch * len).map(|i| ((i * 104729) % 1000) as f32 / 500.0 - 1.0).collect();
        let x = Tensor::from_vec(x, (1, ch, len), &Device::Cpu)?;
        let want = ((direct[0].forward(&x)? + direct[1].forward(&x)?)? / 2.0)?;
        // Tiles of 128 samples, widened by the blocks' reach (1 + 3 for kernel 3, 2 + 6 for 5).
        let got = tiled(&x, 8, 128, |x| run_tile(&fast, x))?;
        let err = (got - &want)?.abs()?.flatten_all()?.max(0)?.to_scalar::<f32>()?;
        let scale = want.abs()?.flatten_all()?.max(0)?.to_scalar::<f32>()?;
        assert!(err <= 1e-5 * scale, "largest difference {err} against values up to {scale}");
        // The direct kernel's tiles sum in the same order as the blocks' own convolutions.
        let got = tiled(&x, 8, 128, |x| run_tile(&direct_tiles, x))?;
        let want = want.flatten_all()?.to_vec1::<f32>()?;
        assert_eq!(got.flatten_all()?.to_vec1::<f32>()?, want, "direct-kernel tiles");
        Ok(())
    }

    #[test]
    fn tiles_widened_by_the_reach_give_exactly_the_whole() -> Result<()> {
        let (channels, len) = (3, 100);
        let weights = |n: usize, seed: usize| -> Vec<f32> {
            (0..n).map(|i| ((i * 37 + seed) % 23) as f32 / 23.0 - 0.5).collect()
        };
        // Two chained convolutions reading 2 * 3 and 1 samples on each side: 7 in all.
        let first = PackedConv::new(&weights(channels * channels * 5, 1), channels, channels, 5, 3);
        let second = PackedConv::new(&weights(channels * channels * 3, 2), channels, channels, 3, 1);
        let chain = |x: &Tensor| -> Result<Tensor> {
            let n = x.dim(2)?;
            let y = with_values(x, |v| first.apply(v, n, Some(0.1), Base { bias: None, residual: Some(v) }))?;
            let z = second.apply(&y, n, Some(0.1), Base { bias: None, residual: Some(&y) });
            Tensor::from_vec(z, (1, channels, n), &Device::Cpu)
        };
        let x = Tensor::from_vec(weights(channels * len, 3), (1, channels, len), &Device::Cpu)?;
        let whole = chain(&x)?.flatten_all()?.to_vec1::<f32>()?;
        let tiles = tiled(&x, 7, 16, chain)?.flatten_all()?.to_vec1::<f32>()?;
        assert_eq!(tiles, whole, "tiles widened by the full reach");
        let short = tiled(&x, 6, 16, chain)?.flatten_all()?.to_vec1::<f32>()?;
        assert_ne!(short, whole, "a reach one sample short must show at the tiles' edges");
        Ok(())
    }
}

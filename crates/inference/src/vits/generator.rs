//! HiFi-GAN generator of VITS (`Generator` in Piper's training code): transposed-conv
//! upsampling with multi-receptive-field residual blocks, latent frames -> waveform.

use candle_core::{Module, Result, Tensor};
use candle_nn::{ops::leaky_relu, Conv1d, VarBuilder};

use super::layers::{conv1d, TapConv1d};
use super::{ResBlockKind, VitsConfig};

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
        let mut x = x.clone();
        for (c1, c2) in &self.convs {
            let mut y = c1.forward(&leaky_relu(&x, LRELU_SLOPE)?)?;
            if let Some(c2) = c2 {
                y = c2.forward(&leaky_relu(&y, LRELU_SLOPE)?)?;
            }
            x = (x + y)?;
        }
        Ok(x)
    }
}

/// ConvTranspose1d computed with padding 0 and then trimmed: candle's CPU kernel is fast only
/// without padding.
struct Upsample {
    weight: Tensor,
    bias: Tensor,
    stride: usize,
    padding: usize,
}

impl Upsample {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let y = x.conv_transpose1d(&self.weight, 0, 0, self.stride, 1, 1)?;
        let len = y.dim(2)? - 2 * self.padding;
        y.narrow(2, self.padding, len)?.broadcast_add(&self.bias)
    }
}

pub struct Generator {
    conv_pre: Conv1d,
    cond: Option<Conv1d>,
    ups: Vec<Upsample>,
    resblocks: Vec<ResBlock>,
    kernels_per_stage: usize,
    conv_post: TapConv1d,
}

impl Generator {
    pub fn load(vb: VarBuilder, cfg: &VitsConfig) -> Result<Self> {
        let ch0 = cfg.upsample_initial_channel;
        let conv_pre = conv1d(vb.pp("conv_pre"), cfg.inter_channels, ch0, 7, 1)?;
        let mut ups = Vec::new();
        let mut resblocks = Vec::new();
        let mut ch = ch0;
        for (i, (&rate, &kernel)) in cfg.upsample_rates.iter().zip(&cfg.upsample_kernel_sizes).enumerate() {
            let out = ch / 2;
            let up = vb.pp(format!("ups.{i}"));
            ups.push(Upsample {
                weight: up.get((ch, out, kernel), "weight")?,
                bias: up.get(out, "bias")?.reshape((1, out, 1))?,
                stride: rate,
                padding: (kernel - rate) / 2,
            });
            for (j, (&k, dil)) in cfg.resblock_kernel_sizes.iter().zip(&cfg.resblock_dilations).enumerate() {
                let idx = i * cfg.resblock_kernel_sizes.len() + j;
                resblocks.push(ResBlock::load(vb.pp(format!("resblocks.{idx}")), cfg.resblock, out, k, dil)?);
            }
            ch = out;
        }
        let cond = if cfg.gin_channels > 0 {
            Some(conv1d(vb.pp("cond"), cfg.gin_channels, ch0, 1, 1)?)
        } else {
            None
        };
        Ok(Self {
            conv_pre,
            cond,
            ups,
            resblocks,
            kernels_per_stage: cfg.resblock_kernel_sizes.len(),
            conv_post: TapConv1d::load(vb.pp("conv_post"), ch, 1, 7, 1, false)?,
        })
    }

    /// `[1, inter, frames]` -> `[1, 1, samples]` in [-1, 1].
    pub fn forward(&self, z: &Tensor, g: Option<&Tensor>) -> Result<Tensor> {
        let mut x = self.conv_pre.forward(z)?;
        if let (Some(cond), Some(g)) = (&self.cond, g) {
            x = x.broadcast_add(&cond.forward(g)?)?;
        }
        for (i, up) in self.ups.iter().enumerate() {
            x = up.forward(&leaky_relu(&x, LRELU_SLOPE)?)?;
            let blocks = &self.resblocks[i * self.kernels_per_stage..(i + 1) * self.kernels_per_stage];
            let mut sum: Option<Tensor> = None;
            for block in blocks {
                let y = block.forward(&x)?;
                sum = Some(match sum {
                    Some(s) => (s + y)?,
                    None => y,
                });
            }
            let sum = sum.ok_or_else(|| candle_core::Error::Msg("generator stage without resblocks".into()))?;
            x = (sum / self.kernels_per_stage as f64)?;
        }
        // F.leaky_relu's default slope here, not LRELU_SLOPE, as in the reference.
        let x = leaky_relu(&x, 0.01)?;
        self.conv_post.forward(&x)?.tanh()
    }
}

//! The encoder's two input convolutions (`conv1`, `conv2` of openai/whisper's AudioEncoder:
//! kernel 3, padding 1, stride 1 then 2, each followed by GELU). On the CPU each is one dense
//! layer over the taps' inputs gathered per output frame (im2col), so its product runs on the
//! same kernels as every other product, at the vector level `cpu_isa` chose (candle's conv1d
//! calls gemm, which picks its own, so `SMAI_CPU_ISA=avx2` did not reach it), with the weights
//! at half width where they are exact f16 values and GELU in place. The result is
//! channels-last, as the encoder's layers take it. Other devices keep candle's Conv1d (its
//! channels-first output transposed).

use candle_core::{Module, Result, Tensor};
use candle_nn::{Conv1d, Conv1dConfig, VarBuilder};

use super::compute_type::ComputeType;
use super::cpu_linear::Dense;
use super::cpu_ops;

/// Taps of each convolution.
const TAPS: usize = 3;

/// How a convolution's input lies in memory.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Layout {
    /// `[1, channels, time]` (the log-mel features).
    ChannelsFirst,
    /// `[1, time, channels]` (the first convolution's output here).
    ChannelsLast,
}

pub struct StemConv {
    /// Off the CPU only (on it, the dense layer's copy is the only one kept).
    conv: Option<Conv1d>,
    /// The weights as `[out, in * TAPS]` (input channel major, tap minor, as im2col rows are).
    dense: Dense,
    stride: usize,
}

impl StemConv {
    pub fn load(vb: &VarBuilder, cin: usize, cout: usize, stride: usize) -> Result<Self> {
        let (weight, bias) = (vb.get((cout, cin, TAPS), "weight")?, vb.get(cout, "bias")?);
        let dense = Dense::new(weight.reshape((cout, cin * TAPS))?, Some(bias.clone()))?;
        let conv = (!weight.device().is_cpu()).then(|| Conv1d::new(weight, Some(bias), conv_config(stride)));
        Ok(Self { conv, dense, stride })
    }

    /// Holds the CPU's weights at half width where every weight is an exact f16 value (the
    /// products' results are unchanged); the convolutions stay float in every compute type.
    pub fn pack(&mut self) -> Result<()> {
        self.dense.pack(ComputeType::Float32)
    }

    /// GELU of the convolution of `x`, channels-last: `[1, time_out, out]`.
    pub fn forward_gelu(&self, x: &Tensor, layout: Layout) -> Result<Tensor> {
        if let Some(conv) = &self.conv {
            let x = match layout {
                Layout::ChannelsFirst => x.clone(),
                Layout::ChannelsLast => x.transpose(1, 2)?.contiguous()?,
            };
            return cpu_ops::gelu(&conv.forward(&x)?)?.transpose(1, 2);
        }
        let (_, a, b) = x.dims3()?;
        let (cin, len) = match layout {
            Layout::ChannelsFirst => (a, b),
            Layout::ChannelsLast => (b, a),
        };
        let rows = cpu_ops::with_values(x, |values| im2col(values, (cin, len), layout, self.stride))?;
        let out_len = rows.len() / (cin * TAPS).max(1);
        self.dense.forward_gelu(&Tensor::from_vec(rows, (1, out_len, cin * TAPS), x.device())?)
    }
}

fn conv_config(stride: usize) -> Conv1dConfig {
    Conv1dConfig { padding: 1, stride, dilation: 1, groups: 1, cudnn_fwd_algo: None }
}

/// Row `t` holds, for each input channel `c` and tap `k`, the input at channel `c`, time
/// `t * stride + k - 1` (zero outside the signal): `[time_out][cin * TAPS]`.
fn im2col(x: &[f32], (cin, len): (usize, usize), layout: Layout, stride: usize) -> Vec<f32> {
    let out_len = if len == 0 { 0 } else { (len - 1) / stride + 1 };
    let at = |c: usize, t: usize| match layout {
        Layout::ChannelsFirst => x[c * len + t],
        Layout::ChannelsLast => x[t * cin + c],
    };
    let mut rows = vec![0.0f32; out_len * cin * TAPS];
    for (t, row) in rows.chunks_exact_mut(cin * TAPS).enumerate() {
        for (k, first) in (0..TAPS).map(|k| (k, (t * stride + k).checked_sub(1))) {
            let Some(src) = first.filter(|&s| s < len) else { continue };
            for c in 0..cin {
                row[c * TAPS + k] = at(c, src);
            }
        }
    }
    rows
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use candle_core::{DType, Device};

    use super::*;
    use crate::whisper::cpu_ops::test_tensor;

    /// Both convolutions, from both layouts, against candle's Conv1d and GELU.
    #[test]
    fn matches_candle_conv1d_with_gelu() -> Result<()> {
        let dev = Device::Cpu;
        for (cin, cout, len, stride) in [(80usize, 48usize, 301usize, 1usize), (48, 40, 301, 2), (7, 5, 2, 2)] {
            let tensors = HashMap::from([
                // Exact f16 values, so that `pack` holds them at half width.
                (
                    "weight".to_string(),
                    test_tensor((cout, cin, TAPS), 0.3, 1)?.to_dtype(DType::F16)?.to_dtype(DType::F32)?,
                ),
                ("bias".to_string(), test_tensor(cout, 0.5, 2)?),
            ]);
            let reference = Conv1d::new(tensors["weight"].clone(), Some(tensors["bias"].clone()), conv_config(stride));
            let mut stem = StemConv::load(&VarBuilder::from_tensors(tensors, DType::F32, &dev), cin, cout, stride)?;
            let x = test_tensor((1, cin, len), 2.0, 3)?;
            let want = cpu_ops::gelu(&reference.forward(&x)?)?.transpose(1, 2)?.contiguous()?;
            for packed in [false, true] {
                if packed {
                    stem.pack()?;
                }
                for (input, layout) in
                    [(x.clone(), Layout::ChannelsFirst), (x.transpose(1, 2)?.contiguous()?, Layout::ChannelsLast)]
                {
                    let got = stem.forward_gelu(&input, layout)?;
                    assert_eq!(got.dims(), want.dims(), "{layout:?}");
                    let diff = (&got - &want)?.abs()?.flatten_all()?.max(0)?.to_scalar::<f32>()?;
                    assert!(diff < 1e-4, "{cin}->{cout} stride {stride} {layout:?}: differs by {diff}");
                }
            }
        }
        Ok(())
    }
}

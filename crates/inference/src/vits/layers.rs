//! Building blocks shared by the VITS parts: channel-first layer norm, 1-D convolutions with
//! "same" padding, depthwise convolution and the WaveNet stack of the coupling flows.
//! They follow the layers of Piper's VITS training code (`vits/modules.py`).

use candle_core::{Module, Result, Tensor, D};
use candle_nn::VarBuilder;

use super::cpu_conv::{Base, PackedConv};
use crate::cpu_isa::dispatch_isa;
use crate::whisper::cpu_ops;

/// Conv1d whose output length equals its input length (odd kernels), with bias.
pub fn conv1d(vb: VarBuilder, cin: usize, cout: usize, kernel: usize, dilation: usize) -> Result<TapConv1d> {
    TapConv1d::load(vb, cin, cout, kernel, dilation, true)
}

/// Conv1d with "same" padding. On the CPU it runs our direct kernel (`cpu_conv`), with the
/// leaky ReLU before a convolution, the bias and a residual sum applied while copying in and
/// writing out, saving whole passes over the signal. Elsewhere it is a matrix product: the
/// kernel taps' shifted copies of the input stacked (`[taps * in, t]`) against the weight
/// flattened tap-major (`[out, taps * in]`).
pub struct TapConv1d {
    /// Devices other than the CPU: `[out, taps * in]`.
    weight: Option<Tensor>,
    /// The CPU: the weights as the direct kernel reads them.
    packed: Option<PackedConv>,
    bias: Option<Tensor>,
    bias_values: Vec<f32>,
    taps: usize,
    dilation: usize,
}

pub use crate::whisper::cpu_ops::with_values;

/// Leaky ReLU in one pass over the values (candle's takes several); CPU tensors only.
pub fn leaky_relu(x: &Tensor, slope: f32) -> Result<Tensor> {
    if !x.device().is_cpu() {
        return candle_nn::ops::leaky_relu(x, slope as f64);
    }
    let values = with_values(x, |v| v.iter().map(|&v| if v < 0.0 { v * slope } else { v }).collect::<Vec<f32>>())?;
    Tensor::from_vec(values, x.shape(), x.device())
}

impl TapConv1d {
    pub fn load(vb: VarBuilder, cin: usize, cout: usize, kernel: usize, dilation: usize, bias: bool) -> Result<Self> {
        let weight = vb.get((cout, cin, kernel), "weight")?;
        let bias = if bias { Some(vb.get(cout, "bias")?) } else { None };
        Self::from_tensors(weight, bias, dilation)
    }

    /// Convolutions of the same input as one, their outputs stacked in order (`[sum of outs]`):
    /// one call over the input instead of one each.
    pub fn load_stacked(vbs: &[VarBuilder], cin: usize, cout: usize, kernel: usize) -> Result<Self> {
        let weights = vbs.iter().map(|vb| vb.get((cout, cin, kernel), "weight")).collect::<Result<Vec<_>>>()?;
        let biases = vbs.iter().map(|vb| vb.get(cout, "bias")).collect::<Result<Vec<_>>>()?;
        Self::from_tensors(Tensor::cat(&weights, 0)?, Some(Tensor::cat(&biases, 0)?), 1)
    }

    /// From weights `[out, in, kernel]` and an optional bias `[out]`.
    fn from_tensors(weight: Tensor, bias: Option<Tensor>, dilation: usize) -> Result<Self> {
        let (cout, cin, kernel) = weight.dims3()?;
        let (weight, packed) = if weight.device().is_cpu() {
            let values = weight.flatten_all()?.to_vec1::<f32>()?;
            (None, Some(PackedConv::new(&values, cout, cin, kernel, dilation)))
        } else {
            (Some(weight.permute((0, 2, 1))?.reshape((cout, kernel * cin))?.contiguous()?), None)
        };
        let bias = bias.map(|b| b.reshape((cout, 1))).transpose()?;
        let bias_values = match &bias {
            Some(b) => b.flatten_all()?.to_vec1::<f32>()?,
            None => vec![0.0; cout],
        };
        Ok(Self { weight, packed, bias, bias_values, taps: kernel, dilation })
    }

    /// Runs in bf16 where the CPU has the kernel (see `PackedConv::use_bf16`).
    pub fn use_bf16(&mut self) {
        if let Some(packed) = &mut self.packed {
            packed.use_bf16();
        }
    }

    pub fn is_bf16(&self) -> bool {
        self.packed.as_ref().is_some_and(PackedConv::is_bf16)
    }

    /// `[1, in, t]` -> `[1, out, t]`: `conv(leaky_relu(x, slope)) + residual`, either optional.
    pub fn forward_fused(&self, x: &Tensor, slope: Option<f32>, residual: Option<&Tensor>) -> Result<Tensor> {
        let Some(packed) = &self.packed else {
            let x = match slope {
                Some(s) => candle_nn::ops::leaky_relu(x, s as f64)?,
                None => x.clone(),
            };
            let y = self.forward_stacked(&x)?;
            return match residual {
                Some(r) => y + r,
                None => Ok(y),
            };
        };
        let (_, _, len) = x.dims3()?;
        let cout = self.bias_values.len();
        let conv = |residual: Option<&[f32]>| {
            let base = Base { bias: Some(&self.bias_values), residual };
            with_values(x, |input| packed.apply(input, len, slope, base))
        };
        let out = match residual {
            // The residual is often the input itself: its values are borrowed once.
            Some(r) if r.id() == x.id() => with_values(x, |input| {
                packed.apply(input, len, slope, Base { bias: Some(&self.bias_values), residual: Some(input) })
            })?,
            Some(r) => with_values(r, |r| conv(Some(r)))??,
            None => conv(None)?,
        };
        Tensor::from_vec(out, (1, cout, len), x.device())
    }

    /// On the CPU: the values `[out, len]` of this convolution on `input` (`[in, len]`, no
    /// activation), plus the bias and `residual` (`[out, len]`) when given; `None` elsewhere.
    fn apply_values(&self, input: &[f32], len: usize, residual: Option<&[f32]>) -> Option<Vec<f32>> {
        let base = Base { bias: Some(&self.bias_values), residual };
        self.packed.as_ref().map(|packed| packed.apply(input, len, None, base))
    }

    /// The whole sequence as one product (devices other than the CPU).
    fn forward_stacked(&self, x: &Tensor) -> Result<Tensor> {
        let x = x.squeeze(0)?;
        let stacked = if self.taps == 1 {
            x.contiguous()?
        } else {
            let len = x.dim(1)?;
            let pad = (self.taps - 1) * self.dilation / 2;
            let padded = x.pad_with_zeros(1, pad, pad)?;
            let shifted =
                (0..self.taps).map(|k| padded.narrow(1, k * self.dilation, len)).collect::<Result<Vec<_>>>()?;
            Tensor::cat(&shifted, 0)?
        };
        let weight =
            self.weight.as_ref().ok_or_else(|| candle_core::Error::Msg("conv weights packed for the CPU".into()))?;
        let mut out = weight.matmul(&stacked)?;
        if let Some(bias) = &self.bias {
            out = out.broadcast_add(bias)?;
        }
        out.unsqueeze(0)
    }
}

impl Module for TapConv1d {
    /// `[1, in, t]` -> `[1, out, t]`
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.forward_fused(x, None, None)
    }
}

/// Layer norm over channels of a `[batch, channels, time]` tensor (`gamma`/`beta`, eps 1e-5).
pub struct ChannelNorm {
    gamma: Tensor,
    beta: Tensor,
    /// `gamma` and `beta` as values, for the CPU path.
    affine: (Vec<f32>, Vec<f32>),
}

impl ChannelNorm {
    pub fn load(vb: VarBuilder, channels: usize) -> Result<Self> {
        let (gamma, beta) = (vb.get(channels, "gamma")?, vb.get(channels, "beta")?);
        let affine = (gamma.to_vec1()?, beta.to_vec1()?);
        Ok(Self { gamma, beta, affine })
    }

    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        if x.device().is_cpu() && x.rank() == 3 && x.dim(0)? == 1 {
            let (channels, len) = (x.dim(1)?, x.dim(2)?);
            let values = with_values(x, |v| self.normalize(v, channels, len))?;
            return Tensor::from_vec(values, x.shape(), x.device());
        }
        self.forward_ops(x)
    }

    /// Layer norm over the channel axis with candle's operations (devices other than the CPU).
    fn forward_ops(&self, x: &Tensor) -> Result<Tensor> {
        let x = x.transpose(1, 2)?;
        let mean = x.mean_keepdim(D::Minus1)?;
        let centered = x.broadcast_sub(&mean)?;
        let var = centered.sqr()?.mean_keepdim(D::Minus1)?;
        let normed = centered.broadcast_div(&(var + 1e-5)?.sqrt()?)?;
        normed.broadcast_mul(&self.gamma)?.broadcast_add(&self.beta)?.transpose(1, 2)
    }

    /// The same on `[channels, len]` values, reading them channel by channel so the sums over
    /// channels run down whole rows (the transposed reductions go element by element).
    fn normalize(&self, x: &[f32], channels: usize, len: usize) -> Vec<f32> {
        let n = channels as f32;
        let mut mean = vec![0f32; len];
        for row in x.chunks_exact(len) {
            mean.iter_mut().zip(row).for_each(|(m, v)| *m += v);
        }
        mean.iter_mut().for_each(|m| *m /= n);
        let mut var = vec![0f32; len];
        for row in x.chunks_exact(len) {
            var.iter_mut().zip(row).zip(&mean).for_each(|((s, v), m)| *s += (v - m) * (v - m));
        }
        let scale: Vec<f32> = var.iter().map(|s| 1.0 / (s / n + 1e-5).sqrt()).collect();
        let (gamma, beta) = &self.affine;
        let mut out = vec![0f32; channels * len];
        for (c, (dst, row)) in out.chunks_exact_mut(len).zip(x.chunks_exact(len)).enumerate() {
            for (((d, v), m), k) in dst.iter_mut().zip(row).zip(&mean).zip(&scale) {
                *d = (v - m) * k * gamma[c] + beta[c];
            }
        }
        out
    }
}

/// Depthwise (groups = channels) conv with odd kernel and "same" padding, as shifted sums:
/// far cheaper on CPU than one convolution per channel.
pub struct DepthwiseConv {
    taps: Vec<Tensor>, // kernel taps, each [1, channels, 1]
    bias: Tensor,
    dilation: usize,
    /// The CPU: `[channels][kernel]` and `[channels]`.
    values: (Vec<f32>, Vec<f32>),
}

impl DepthwiseConv {
    pub fn load(vb: VarBuilder, channels: usize, kernel: usize, dilation: usize) -> Result<Self> {
        let weight = vb.get((channels, 1, kernel), "weight")?;
        let taps = (0..kernel).map(|k| weight.narrow(2, k, 1)?.reshape((1, channels, 1))).collect::<Result<_>>()?;
        let bias = vb.get(channels, "bias")?;
        let values = (weight.flatten_all()?.to_vec1()?, bias.to_vec1()?);
        Ok(Self { taps, bias: bias.reshape((1, channels, 1))?, dilation, values })
    }

    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        if x.device().is_cpu() {
            self.forward_cpu(x)
        } else {
            self.forward_ops(x)
        }
    }

    fn forward_ops(&self, x: &Tensor) -> Result<Tensor> {
        let len = x.dim(2)?;
        let pad = (self.taps.len() - 1) * self.dilation / 2;
        let padded = x.pad_with_zeros(2, pad, pad)?;
        let mut out = self.bias.broadcast_as(x.shape())?.contiguous()?;
        for (k, tap) in self.taps.iter().enumerate() {
            let shifted = padded.narrow(2, k * self.dilation, len)?;
            out = (out + shifted.broadcast_mul(tap)?)?;
        }
        Ok(out)
    }

    /// The same sums, in the same order, in one pass per channel (the tensor operations went
    /// through strided copies, a few microseconds each on the duration predictor's short rows).
    fn forward_cpu(&self, x: &Tensor) -> Result<Tensor> {
        let (_, channels, len) = x.dims3()?;
        let (weights, bias) = &self.values;
        let kernel = self.taps.len();
        let pad = (kernel - 1) * self.dilation / 2;
        let mut out = vec![0.0f32; channels * len];
        with_values(x, |x| {
            for (c, (dst, row)) in out.chunks_exact_mut(len.max(1)).zip(x.chunks_exact(len.max(1))).enumerate() {
                dst.fill(bias[c]);
                for (k, &w) in weights[c * kernel..(c + 1) * kernel].iter().enumerate() {
                    // Output t reads input t + k * dilation - pad, where that lies in the row.
                    let shift = k * self.dilation;
                    let (first, last) = (pad.saturating_sub(shift), (len + pad).saturating_sub(shift).min(len));
                    for t in first..last {
                        dst[t] += row[t + shift - pad] * w;
                    }
                }
            }
        })?;
        Tensor::from_vec(out, (1, channels, len), x.device())
    }
}

/// Dilated depthwise-separable conv stack (`DDSConv`), used by the duration predictor.
pub struct DdsConv {
    layers: Vec<(DepthwiseConv, ChannelNorm, TapConv1d, ChannelNorm)>,
}

impl DdsConv {
    pub fn load(vb: VarBuilder, channels: usize, kernel: usize, n_layers: usize) -> Result<Self> {
        let mut layers = Vec::with_capacity(n_layers);
        for i in 0..n_layers {
            let dilation = kernel.pow(i as u32);
            layers.push((
                DepthwiseConv::load(vb.pp(format!("convs_sep.{i}")), channels, kernel, dilation)?,
                ChannelNorm::load(vb.pp(format!("norms_1.{i}")), channels)?,
                conv1d(vb.pp(format!("convs_1x1.{i}")), channels, channels, 1, 1)?,
                ChannelNorm::load(vb.pp(format!("norms_2.{i}")), channels)?,
            ));
        }
        Ok(Self { layers })
    }

    pub fn forward(&self, x: &Tensor, g: Option<&Tensor>) -> Result<Tensor> {
        let mut x = match g {
            Some(g) => x.broadcast_add(g)?,
            None => x.clone(),
        };
        for (sep, norm1, pointwise, norm2) in &self.layers {
            let y = cpu_ops::gelu(&norm1.forward(&sep.forward(&x)?)?)?;
            let y = cpu_ops::gelu(&norm2.forward(&pointwise.forward(&y)?)?)?;
            x = (x + y)?;
        }
        Ok(x)
    }
}

/// Non-causal WaveNet (`WN`) with gated tanh/sigmoid units and residual/skip outputs.
pub struct WaveNet {
    in_layers: Vec<TapConv1d>,
    res_skip: Vec<TapConv1d>,
    cond: Option<TapConv1d>,
    hidden: usize,
}

impl WaveNet {
    pub fn load(
        vb: VarBuilder,
        hidden: usize,
        kernel: usize,
        dilation_rate: usize,
        n_layers: usize,
        gin: usize,
    ) -> Result<Self> {
        let mut in_layers = Vec::with_capacity(n_layers);
        let mut res_skip = Vec::with_capacity(n_layers);
        for i in 0..n_layers {
            let dilation = dilation_rate.pow(i as u32);
            in_layers.push(conv1d(vb.pp(format!("in_layers.{i}")), hidden, 2 * hidden, kernel, dilation)?);
            let out = if i + 1 < n_layers { 2 * hidden } else { hidden };
            res_skip.push(conv1d(vb.pp(format!("res_skip_layers.{i}")), hidden, out, 1, 1)?);
        }
        let cond = if gin > 0 { Some(conv1d(vb.pp("cond_layer"), gin, 2 * hidden * n_layers, 1, 1)?) } else { None };
        Ok(Self { in_layers, res_skip, cond, hidden })
    }

    pub fn forward(&self, x: &Tensor, g: Option<&Tensor>) -> Result<Tensor> {
        if x.device().is_cpu() && x.dim(0)? == 1 {
            if let Some(out) = self.forward_cpu(x, g)? {
                return Ok(out);
            }
        }
        self.forward_ops(x, g)
    }

    /// [`Self::forward`] on the CPU's values: the residual stream and the skip sum are one
    /// `[2h, t]` buffer that each layer's res/skip convolution adds onto as it writes it, one
    /// pass where the tensor operations took four, each allocating. `None` where the
    /// convolutions are not on the CPU.
    fn forward_cpu(&self, x: &Tensor, g: Option<&Tensor>) -> Result<Option<Tensor>> {
        let (h, len) = (self.hidden, x.dim(2)?);
        let cond = match (&self.cond, g) {
            (Some(layer), Some(g)) => Some(layer.forward(g)?.flatten_all()?.to_vec1::<f32>()?),
            _ => None,
        };
        let mut stream = with_values(x, |v| {
            let mut stream = Vec::with_capacity(2 * h * len);
            stream.extend_from_slice(v);
            stream.resize(2 * h * len, 0.0);
            stream
        })?;
        let n = self.in_layers.len();
        for (i, (in_layer, res_skip)) in self.in_layers.iter().zip(&self.res_skip).enumerate() {
            let Some(mut x_in) = in_layer.apply_values(&stream[..h * len], len, None) else { return Ok(None) };
            if let Some(cond) = &cond {
                for (row, &c) in x_in.chunks_exact_mut(len).zip(&cond[i * 2 * h..(i + 1) * 2 * h]) {
                    row.iter_mut().for_each(|v| *v += c);
                }
            }
            let mut acts = vec![0.0f32; h * len];
            let (filter, gate) = x_in.split_at(h * len);
            gate_values(filter, gate, &mut acts);
            let last = i + 1 == n;
            let residual = if last { &stream[h * len..] } else { &stream[..] };
            let Some(next) = res_skip.apply_values(&acts, len, Some(residual)) else { return Ok(None) };
            if last {
                return Ok(Some(Tensor::from_vec(next, (1, h, len), x.device())?));
            }
            stream = next;
        }
        Ok(None)
    }

    /// [`Self::forward`] as tensor operations (devices other than the CPU).
    fn forward_ops(&self, x: &Tensor, g: Option<&Tensor>) -> Result<Tensor> {
        let h = self.hidden;
        let cond = match (&self.cond, g) {
            (Some(layer), Some(g)) => Some(layer.forward(g)?),
            _ => None,
        };
        let mut x = x.clone();
        let mut output: Option<Tensor> = None;
        let n = self.in_layers.len();
        for (i, (in_layer, res_skip)) in self.in_layers.iter().zip(&self.res_skip).enumerate() {
            let mut x_in = in_layer.forward(&x)?;
            if let Some(cond) = &cond {
                x_in = x_in.broadcast_add(&cond.narrow(1, i * 2 * h, 2 * h)?)?;
            }
            let acts = gated(&x_in, h)?;
            let rs = res_skip.forward(&acts)?;
            let skip = if i + 1 < n {
                x = (x + rs.narrow(1, 0, h)?)?;
                rs.narrow(1, h, h)?
            } else {
                rs
            };
            output = Some(match output {
                Some(o) => (o + skip)?,
                None => skip,
            });
        }
        output.ok_or_else(|| candle_core::Error::Msg("WaveNet without layers".into()))
    }
}

/// WaveNet's gate, `tanh(x[..h]) * sigmoid(x[h..])` over the channels of `[1, 2h, t]`: on
/// the CPU in one vectorised pass (libm's scalar tanh and exp took 6 % of a synthesis),
/// elsewhere as operations.
fn gated(x: &Tensor, h: usize) -> Result<Tensor> {
    if !x.device().is_cpu() {
        return x.narrow(1, 0, h)?.tanh()? * candle_nn::ops::sigmoid(&x.narrow(1, h, h)?)?;
    }
    let len = x.dim(2)?;
    let mut out = vec![0.0f32; h * len];
    with_values(x, |v| {
        let (filter, gate) = v.split_at(h * len);
        gate_values(filter, gate, &mut out)
    })?;
    Tensor::from_vec(out, (1, h, len), x.device())
}

#[inline(always)]
fn gate_values_any(filter: &[f32], gate: &[f32], out: &mut [f32]) {
    for ((o, &a), &b) in out.iter_mut().zip(filter).zip(gate) {
        *o = cpu_ops::tanh(a) * cpu_ops::sigmoid(b);
    }
}

dispatch_isa! {
    /// [`gate_values_any`] at the process's vector level.
    fn gate_values(filter: &[f32], gate: &[f32], out: &mut [f32]) => gate_values_any
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn channel_norm_on_the_cpu_matches_the_tensor_operations() -> Result<()> {
        let (channels, len) = (7, 13);
        let values: Vec<f32> = (0..channels * len).map(|i| ((i * 37 % 101) as f32 - 50.0) / 9.0).collect();
        let x = Tensor::from_vec(values, (1, channels, len), &Device::Cpu)?;
        let gamma = Tensor::from_vec((0..channels).map(|c| 0.5 + c as f32 / 4.0).collect(), channels, &Device::Cpu)?;
        let beta = Tensor::from_vec((0..channels).map(|c| c as f32 / 3.0 - 1.0).collect(), channels, &Device::Cpu)?;
        let norm = ChannelNorm { affine: (gamma.to_vec1()?, beta.to_vec1()?), gamma, beta };
        let fast = norm.forward(&x)?.flatten_all()?.to_vec1::<f32>()?;
        let ops = norm.forward_ops(&x)?.flatten_all()?.to_vec1::<f32>()?;
        let worst = fast.iter().zip(&ops).fold(0f32, |m, (a, b)| m.max((a - b).abs()));
        assert!(worst < 1e-5, "CPU channel norm differs by {worst}");
        Ok(())
    }

    #[test]
    fn depthwise_conv_on_the_cpu_gives_the_tensor_operations_sums() -> Result<()> {
        let (channels, kernel, len) = (4, 3, 9);
        let ramp = |n: usize, m: usize| (0..n).map(|i| ((i * m % 17) as f32 - 8.0) / 5.0).collect::<Vec<f32>>();
        let weight = Tensor::from_vec(ramp(channels * kernel, 7), (channels, 1, kernel), &Device::Cpu)?;
        let bias = Tensor::from_vec(ramp(channels, 3), channels, &Device::Cpu)?;
        let x = Tensor::from_vec(ramp(channels * len, 11), (1, channels, len), &Device::Cpu)?;
        for dilation in [1, 3, 9] {
            let taps = (0..kernel).map(|k| weight.narrow(2, k, 1)?.reshape((1, channels, 1))).collect::<Result<_>>()?;
            let values = (weight.flatten_all()?.to_vec1()?, bias.to_vec1()?);
            let conv = DepthwiseConv { taps, bias: bias.reshape((1, channels, 1))?, dilation, values };
            let fast = conv.forward_cpu(&x)?.flatten_all()?.to_vec1::<f32>()?;
            assert_eq!(fast, conv.forward_ops(&x)?.flatten_all()?.to_vec1::<f32>()?, "dilation {dilation}");
        }
        Ok(())
    }

    #[test]
    fn wavenet_on_the_cpu_values_matches_the_tensor_operations() -> Result<()> {
        let (hidden, kernel, layers, gin, len) = (16, 5, 3, 4, 37);
        let dev = Device::Cpu;
        let ramp = |n: usize, m: usize| -> Vec<f32> { (0..n).map(|i| ((i * m % 31) as f32 - 15.0) / 60.0).collect() };
        let mut tensors = std::collections::HashMap::new();
        for i in 0..layers {
            let out = if i + 1 < layers { 2 * hidden } else { hidden };
            let convs = [("in_layers", 2 * hidden, kernel), ("res_skip_layers", out, 1)];
            for (j, (name, cout, taps)) in convs.into_iter().enumerate() {
                let w = Tensor::from_vec(ramp(cout * hidden * taps, 7 + 2 * i + j), (cout, hidden, taps), &dev)?;
                tensors.insert(format!("{name}.{i}.weight"), w);
                tensors.insert(format!("{name}.{i}.bias"), Tensor::from_vec(ramp(cout, 3 + i + j), cout, &dev)?);
            }
        }
        let cond_out = 2 * hidden * layers;
        tensors
            .insert("cond_layer.weight".into(), Tensor::from_vec(ramp(cond_out * gin, 5), (cond_out, gin, 1), &dev)?);
        tensors.insert("cond_layer.bias".into(), Tensor::from_vec(ramp(cond_out, 9), cond_out, &dev)?);
        let vb = VarBuilder::from_tensors(tensors, candle_core::DType::F32, &dev);
        let x = Tensor::from_vec(ramp(hidden * len, 11), (1, hidden, len), &dev)?;
        let g = Tensor::from_vec(ramp(gin, 13), (1, gin, 1), &dev)?;
        for (gin, g) in [(0, None), (gin, Some(&g))] {
            let net = WaveNet::load(vb.clone(), hidden, kernel, 1, layers, gin)?;
            let fast = net.forward(&x, g)?.flatten_all()?.to_vec1::<f32>()?;
            let ops = net.forward_ops(&x, g)?.flatten_all()?.to_vec1::<f32>()?;
            let worst = fast.iter().zip(&ops).fold(0f32, |m, (a, b)| m.max((a - b).abs()));
            assert!(worst <= 1e-5, "gin {gin}: the CPU WaveNet differs by {worst}");
        }
        Ok(())
    }

    #[test]
    fn one_pass_gate_matches_the_tensor_operations() -> Result<()> {
        let (h, len) = (3, 11);
        let values: Vec<f32> = (0..2 * h * len).map(|i| ((i * 29 % 53) as f32 - 26.0) / 7.0).collect();
        let x = Tensor::from_vec(values, (1, 2 * h, len), &Device::Cpu)?;
        let ops = (x.narrow(1, 0, h)?.tanh()? * candle_nn::ops::sigmoid(&x.narrow(1, h, h)?)?)?;
        let fast = gated(&x, h)?.flatten_all()?.to_vec1::<f32>()?;
        for (a, b) in fast.iter().zip(ops.flatten_all()?.to_vec1::<f32>()?) {
            assert!((a - b).abs() <= 2e-6 * (1.0 + b.abs()), "gate {a} vs {b}");
        }
        Ok(())
    }
}

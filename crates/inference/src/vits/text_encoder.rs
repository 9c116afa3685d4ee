//! VITS text encoder (`TextEncoder` + `attentions.Encoder` of Piper's VITS): phoneme embedding,
//! transformer layers with windowed relative-position attention, projection to the prior's
//! mean and log-scale.

use candle_core::{DType, Device, Module, Result, Tensor, D};
use candle_nn::{Embedding, VarBuilder};

use super::layers::{conv1d, with_values, ChannelNorm, TapConv1d};
use super::text_attention_cpu::{relative_attention, RelativeEmbeddings};
use super::VitsConfig;

struct RelativeAttention {
    /// The query, key and value projections as one (`[3c, c]`).
    qkv: TapConv1d,
    o: TapConv1d,
    emb_rel_k: Tensor, // [2w+1, k_channels]
    emb_rel_v: Tensor,
    /// The CPU: `emb_rel_k` and `emb_rel_v` as values.
    rel_values: Option<(Vec<f32>, Vec<f32>)>,
    heads: usize,
    window: usize,
}

impl RelativeAttention {
    fn load(vb: VarBuilder, cfg: &VitsConfig) -> Result<Self> {
        let c = cfg.hidden_channels;
        let kc = c / cfg.n_heads;
        let rel = 2 * cfg.window_size + 1;
        let emb_rel_k = vb.get((1, rel, kc), "emb_rel_k")?.squeeze(0)?;
        let emb_rel_v = vb.get((1, rel, kc), "emb_rel_v")?.squeeze(0)?;
        let rel_values = match emb_rel_k.device().is_cpu() {
            true => Some((emb_rel_k.flatten_all()?.to_vec1()?, emb_rel_v.flatten_all()?.to_vec1()?)),
            false => None,
        };
        Ok(Self {
            qkv: TapConv1d::load_stacked(&[vb.pp("conv_q"), vb.pp("conv_k"), vb.pp("conv_v")], c, c, 1)?,
            o: conv1d(vb.pp("conv_o"), c, c, 1, 1)?,
            emb_rel_k,
            emb_rel_v,
            rel_values,
            heads: cfg.n_heads,
            window: cfg.window_size,
        })
    }

    /// `[b, c, t]` -> `[b, heads, t, c / heads]`
    fn split_heads(&self, x: &Tensor) -> Result<Tensor> {
        let (b, c, t) = x.dims3()?;
        x.reshape((b, self.heads, c / self.heads, t))?.transpose(2, 3)?.contiguous()
    }

    /// `x + attention(x)`: the residual sum is taken as the output projection writes.
    fn forward_residual(&self, x: &Tensor) -> Result<Tensor> {
        let (b, c, t) = x.dims3()?;
        let Some((keys, values)) = self.rel_values.as_ref().filter(|_| b == 1) else {
            return x + self.forward_ops(x)?;
        };
        let rel = RelativeEmbeddings { keys, values, window: self.window };
        let out = with_values(&self.qkv.forward(x)?, |qkv| {
            let (q, kv) = qkv.split_at(c * t);
            let (k, v) = kv.split_at(c * t);
            relative_attention((q, k, v), t, self.heads, &rel)
        })?;
        self.o.forward_fused(&Tensor::from_vec(out, (1, c, t), x.device())?, None, Some(x))
    }

    /// The attention as tensor operations (devices other than the CPU).
    fn forward_ops(&self, x: &Tensor) -> Result<Tensor> {
        let (b, c, t) = x.dims3()?;
        let kc = c / self.heads;
        let qkv = self.qkv.forward(x)?;
        let q = (self.split_heads(&qkv.narrow(1, 0, c)?)? / (kc as f64).sqrt())?;
        let k = self.split_heads(&qkv.narrow(1, c, c)?)?;
        let v = self.split_heads(&qkv.narrow(1, 2 * c, c)?)?;
        let scores = q.matmul(&k.transpose(2, 3)?.contiguous()?)?;
        let rel_logits = q.broadcast_matmul(&self.emb_rel_k.t()?.contiguous()?)?;
        let scores = (scores + self.band_to_absolute(&rel_logits, t)?)?;
        let p = candle_nn::ops::softmax_last_dim(&scores)?;
        let out = p.matmul(&v)?;
        let out = (out + self.absolute_to_band(&p, t)?.broadcast_matmul(&self.emb_rel_v)?)?;
        let out = out.transpose(2, 3)?.contiguous()?.reshape((b, c, t))?;
        self.o.forward(&out)
    }

    /// `[.., t, 2w+1]` logits per relative offset -> `[.., t, t]`, zero outside the window.
    fn band_to_absolute(&self, rel: &Tensor, t: usize) -> Result<Tensor> {
        let w = self.window;
        let width = 2 * w + 1;
        let padded = rel.pad_with_zeros(D::Minus1, 0, 1)?;
        let idx: Vec<u32> = (0..t)
            .flat_map(|i| {
                (0..t).map(move |j| {
                    let d = j as isize - i as isize;
                    if d.unsigned_abs() <= w {
                        (d + w as isize) as u32
                    } else {
                        width as u32
                    }
                })
            })
            .collect();
        let idx = Tensor::from_vec(idx, (1, 1, t, t), rel.device())?;
        let (b, h, _, _) = rel.dims4()?;
        padded.contiguous()?.gather(&idx.broadcast_as((b, h, t, t))?.contiguous()?, 3)
    }

    /// `[.., t, t]` weights -> `[.., t, 2w+1]` by relative offset, zero past the sequence ends.
    fn absolute_to_band(&self, p: &Tensor, t: usize) -> Result<Tensor> {
        let w = self.window;
        let width = 2 * w + 1;
        let padded = p.pad_with_zeros(D::Minus1, 0, 1)?;
        let idx: Vec<u32> = (0..t)
            .flat_map(|i| {
                (0..width).map(move |d| {
                    let j = i as isize + d as isize - w as isize;
                    if j >= 0 && (j as usize) < t {
                        j as u32
                    } else {
                        t as u32
                    }
                })
            })
            .collect();
        let idx = Tensor::from_vec(idx, (1, 1, t, width), p.device())?;
        let (b, h, _, _) = p.dims4()?;
        padded.contiguous()?.gather(&idx.broadcast_as((b, h, t, width))?.contiguous()?, 3)
    }
}

struct FeedForward {
    conv_1: TapConv1d,
    conv_2: TapConv1d,
}

impl FeedForward {
    fn load(vb: VarBuilder, cfg: &VitsConfig) -> Result<Self> {
        let (c, f, k) = (cfg.hidden_channels, cfg.filter_channels, cfg.ffn_kernel_size);
        Ok(Self { conv_1: conv1d(vb.pp("conv_1"), c, f, k, 1)?, conv_2: conv1d(vb.pp("conv_2"), f, c, k, 1)? })
    }

    /// `x + ffn(x)`. The ReLU between the convolutions is the second's input activation (a
    /// leaky ReLU of slope 0: negative inputs become -0.0, whose products add nothing), and
    /// the residual sum is taken as it writes.
    fn forward_residual(&self, x: &Tensor) -> Result<Tensor> {
        self.conv_2.forward_fused(&self.conv_1.forward(x)?, Some(0.0), Some(x))
    }
}

pub struct TextEncoder {
    emb: Embedding,
    layers: Vec<(RelativeAttention, ChannelNorm, FeedForward, ChannelNorm)>,
    proj: TapConv1d,
    hidden: usize,
}

/// Encoder output `x` (for the duration predictor) and the prior's `m`, `logs`, each `[1, c, t]`.
pub struct Encoded {
    pub x: Tensor,
    pub m: Tensor,
    pub logs: Tensor,
}

impl TextEncoder {
    pub fn load(vb: VarBuilder, cfg: &VitsConfig) -> Result<Self> {
        let c = cfg.hidden_channels;
        let emb = Embedding::new(vb.pp("emb").get((cfg.n_vocab, c), "weight")?, c);
        let enc = vb.pp("encoder");
        let mut layers = Vec::with_capacity(cfg.n_layers);
        for i in 0..cfg.n_layers {
            layers.push((
                RelativeAttention::load(enc.pp(format!("attn_layers.{i}")), cfg)?,
                ChannelNorm::load(enc.pp(format!("norm_layers_1.{i}")), c)?,
                FeedForward::load(enc.pp(format!("ffn_layers.{i}")), cfg)?,
                ChannelNorm::load(enc.pp(format!("norm_layers_2.{i}")), c)?,
            ));
        }
        let proj = conv1d(vb.pp("proj"), c, 2 * cfg.inter_channels, 1, 1)?;
        Ok(Self { emb, layers, proj, hidden: c })
    }

    pub fn forward(&self, ids: &[i64], device: &Device) -> Result<Encoded> {
        let ids: Vec<u32> = ids.iter().map(|&i| i as u32).collect();
        let ids = Tensor::from_vec(ids.clone(), (1, ids.len()), device)?;
        let x = (self.emb.forward(&ids)? * (self.hidden as f64).sqrt())?;
        let mut x = x.transpose(1, 2)?.contiguous()?.to_dtype(DType::F32)?;
        for (attn, norm1, ffn, norm2) in &self.layers {
            x = norm1.forward(&attn.forward_residual(&x)?)?;
            x = norm2.forward(&ffn.forward_residual(&x)?)?;
        }
        let stats = self.proj.forward(&x)?;
        let half = stats.dim(1)? / 2;
        Ok(Encoded { m: stats.narrow(1, 0, half)?, logs: stats.narrow(1, half, half)?, x })
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use candle_core::Device;

    use super::*;
    use crate::whisper::packed_check::values;

    #[test]
    fn cpu_attention_matches_the_tensor_operations() -> Result<()> {
        // Two heads of 48 channels, a window of 4 reaching past both ends of 23 positions.
        let (c, heads, window, t) = (96, 2, 4, 23);
        let dev = Device::Cpu;
        let mut tensors = HashMap::new();
        for (i, name) in ["conv_q", "conv_k", "conv_v", "conv_o"].iter().enumerate() {
            let w = Tensor::from_vec(values(c * c, i as u64, 0.2), (c, c, 1), &dev)?;
            tensors.insert(format!("{name}.weight"), w);
            tensors.insert(format!("{name}.bias"), Tensor::from_vec(values(c, 10 + i as u64, 0.1), c, &dev)?);
        }
        let rel = |seed| {
            Tensor::from_vec(values((2 * window + 1) * c / heads, seed, 0.5), (1, 2 * window + 1, c / heads), &dev)
        };
        tensors.insert("emb_rel_k".into(), rel(20)?);
        tensors.insert("emb_rel_v".into(), rel(21)?);
        let vb = VarBuilder::from_tensors(tensors, DType::F32, &dev);
        let qkv = TapConv1d::load_stacked(&[vb.pp("conv_q"), vb.pp("conv_k"), vb.pp("conv_v")], c, c, 1)?;
        let (emb_rel_k, emb_rel_v) = (rel(20)?.squeeze(0)?, rel(21)?.squeeze(0)?);
        let rel_values = Some((emb_rel_k.flatten_all()?.to_vec1()?, emb_rel_v.flatten_all()?.to_vec1()?));
        let attention = RelativeAttention {
            qkv,
            o: conv1d(vb.pp("conv_o"), c, c, 1, 1)?,
            emb_rel_k,
            emb_rel_v,
            rel_values,
            heads,
            window,
        };
        let x = Tensor::from_vec(values(c * t, 30, 2.0), (1, c, t), &dev)?;
        let fast = attention.forward_residual(&x)?.flatten_all()?.to_vec1::<f32>()?;
        let ops = (&x + attention.forward_ops(&x)?)?.flatten_all()?.to_vec1::<f32>()?;
        let scale = ops.iter().fold(0f32, |m, v| m.max(v.abs()));
        let worst = fast.iter().zip(&ops).fold(0f32, |m, (a, b)| m.max((a - b).abs()));
        assert!(worst <= 1e-5 * scale, "CPU attention differs by {worst} (values up to {scale})");
        Ok(())
    }
}

//! The Whisper network, following openai/whisper `model.py` (AudioEncoder, TextDecoder),
//! with exact (erf) GELU as the reference uses, and a self-attention key/value cache so each
//! decoding step only runs the new token. Weights use the Hugging Face / candle-transformers
//! names (`model.encoder.layers.0.self_attn.q_proj.weight`, ...), read through a VarBuilder.

use candle_core::{DType, Device, IndexOp, Module, Result, Tensor};
use candle_nn::{LayerNorm, VarBuilder};
use candle_transformers::models::whisper::Config;

use super::compute_type::ComputeType;
use super::cpu_linear::Dense;
use super::kv_cache::kept_and_appended;
use super::stem::{Layout, StemConv};
use super::{cpu_attention, cpu_ops};

fn linear(vb: &VarBuilder, in_dim: usize, out_dim: usize, bias: bool) -> Result<Dense> {
    let w = vb.get((out_dim, in_dim), "weight")?;
    let b = if bias { Some(vb.get(out_dim, "bias")?) } else { None };
    Dense::new(w, b)
}

fn layer_norm(vb: &VarBuilder, dim: usize) -> Result<LayerNorm> {
    Ok(LayerNorm::new(vb.get(dim, "weight")?, vb.get(dim, "bias")?, 1e-5))
}

struct Attention {
    q: Dense,
    k: Dense,
    v: Dense,
    out: Dense,
    n_head: usize,
}

impl Attention {
    fn load(vb: &VarBuilder, d: usize, n_head: usize) -> Result<Self> {
        // The reference scales queries and keys by d_head^-0.25 each at every call; scaling
        // the query projection once by d_head^-0.5 gives the same scores without those passes
        // (the decoder's cached keys included).
        let scale = ((d / n_head) as f64).powf(-0.5);
        let q = linear(&vb.pp("q_proj"), d, d, true)?;
        let q = Dense::new((q.weight() * scale)?, q.bias().map(|b| b * scale).transpose()?)?;
        Ok(Self {
            q,
            k: linear(&vb.pp("k_proj"), d, d, false)?,
            v: linear(&vb.pp("v_proj"), d, d, true)?,
            out: linear(&vb.pp("out_proj"), d, d, true)?,
            n_head,
        })
    }

    fn pack(&mut self, compute: ComputeType) -> Result<()> {
        for dense in [&mut self.q, &mut self.k, &mut self.v, &mut self.out] {
            dense.pack(compute)?;
        }
        Ok(())
    }

    /// (b, t, d) -> (b, heads, t, d_head)
    fn heads(&self, x: &Tensor) -> Result<Tensor> {
        let (b, t, d) = x.dims3()?;
        x.reshape((b, t, self.n_head, d / self.n_head))?.transpose(1, 2)?.contiguous()
    }

    /// Attention of `x` over keys/values `k`, `v` (already split into heads).
    fn attend(&self, x: &Tensor, k: &Tensor, v: &Tensor, mask: Option<&Tensor>) -> Result<Tensor> {
        // The 1/sqrt(d_head) scale is folded into the query projection at load time.
        let q = self.q.forward(x)?;
        if mask.is_none() {
            // Rows (beams) attending over one window's keys are folded into one batch: one
            // product per head for all of them (each row's result the same up to sum order).
            let (b, t, d) = q.dims3()?;
            let folded = b > 1 && k.dim(0)? == 1;
            let q_rows = if folded { q.reshape((1, b * t, d))? } else { q.clone() };
            if let Some(y) = cpu_attention::attention(&q_rows, k, v, self.n_head)? {
                return self.out.forward(&y.reshape((b, t, d))?);
            }
        }
        Ok(self.attend_projected(&q, k, v, mask)?.0)
    }

    /// As `attend`, also returning the scaled scores before the softmax, (b, heads, t, keys).
    fn attend_scored(&self, x: &Tensor, k: &Tensor, v: &Tensor, mask: Option<&Tensor>) -> Result<(Tensor, Tensor)> {
        self.attend_projected(&self.q.forward(x)?, k, v, mask)
    }

    /// Attention for queries already projected, `q` (b, t, d), as tensor ops on any device.
    fn attend_projected(&self, q: &Tensor, k: &Tensor, v: &Tensor, mask: Option<&Tensor>) -> Result<(Tensor, Tensor)> {
        let (b, t, d) = q.dims3()?;
        // Broadcast: beams (b rows) attend over one window's keys (batch 1).
        let mut scores = self.heads(q)?.broadcast_matmul(&k.t()?)?;
        if let Some(m) = mask {
            scores = scores.broadcast_add(m)?;
        }
        let w = cpu_ops::softmax_last_dim(&scores)?;
        let y = w.broadcast_matmul(v)?.transpose(1, 2)?.reshape((b, t, d))?;
        Ok((self.out.forward(&y)?, scores))
    }

    fn keys_values(&self, x: &Tensor) -> Result<(Tensor, Tensor)> {
        Ok((self.heads(&self.k.forward(x)?)?, self.heads(&self.v.forward(x)?)?))
    }
}

struct Mlp {
    ln: LayerNorm,
    fc1: Dense,
    fc2: Dense,
}

impl Mlp {
    fn load(vb: &VarBuilder, d: usize) -> Result<Self> {
        Ok(Self {
            ln: layer_norm(&vb.pp("final_layer_norm"), d)?,
            fc1: linear(&vb.pp("fc1"), d, 4 * d, true)?,
            fc2: linear(&vb.pp("fc2"), 4 * d, d, true)?,
        })
    }
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        x + self.fc2.forward(&self.fc1.forward_gelu(&self.ln.forward(x)?)?)?
    }

    fn pack(&mut self, compute: ComputeType) -> Result<()> {
        self.fc1.pack(compute)?;
        self.fc2.pack(compute)
    }
}

struct EncoderBlock {
    ln: LayerNorm,
    attn: Attention,
    mlp: Mlp,
}

pub struct Encoder {
    conv1: StemConv,
    conv2: StemConv,
    positions: Tensor,
    blocks: Vec<EncoderBlock>,
    ln_post: LayerNorm,
}

impl Encoder {
    pub fn load(vb: VarBuilder, cfg: &Config) -> Result<Self> {
        let d = cfg.d_model;
        let blocks = (0..cfg.encoder_layers)
            .map(|i| {
                let vb = vb.pp(format!("layers.{i}"));
                Ok(EncoderBlock {
                    ln: layer_norm(&vb.pp("self_attn_layer_norm"), d)?,
                    attn: Attention::load(&vb.pp("self_attn"), d, cfg.encoder_attention_heads)?,
                    mlp: Mlp::load(&vb, d)?,
                })
            })
            .collect::<Result<_>>()?;
        Ok(Self {
            conv1: StemConv::load(&vb.pp("conv1"), cfg.num_mel_bins, d, 1)?,
            conv2: StemConv::load(&vb.pp("conv2"), d, d, 2)?,
            positions: vb.get((cfg.max_source_positions, d), "embed_positions.weight")?,
            blocks,
            ln_post: layer_norm(&vb.pp("layer_norm"), d)?,
        })
    }

    /// Attention and MLP products in `compute`'s type (`cpu_int8`, `cpu_bf16`); the
    /// convolutions stay float.
    pub fn pack(&mut self, compute: ComputeType) -> Result<()> {
        self.conv1.pack()?;
        self.conv2.pack()?;
        for b in &mut self.blocks {
            b.attn.pack(compute)?;
            b.mlp.pack(compute)?;
        }
        Ok(())
    }

    /// (1, n_mels, 3000) features -> (1, 1500, d) audio states.
    pub fn forward(&self, mel: &Tensor) -> Result<Tensor> {
        let x = self.conv1.forward_gelu(mel, Layout::ChannelsFirst)?;
        let x = self.conv2.forward_gelu(&x, Layout::ChannelsLast)?;
        let mut x = x.broadcast_add(&self.positions.narrow(0, 0, x.dim(1)?)?)?;
        for b in &self.blocks {
            let h = b.ln.forward(&x)?;
            let (k, v) = b.attn.keys_values(&h)?;
            x = (&x + b.attn.attend(&h, &k, &v, None)?)?;
            x = b.mlp.forward(&x)?;
        }
        self.ln_post.forward(&x)
    }
}

struct DecoderBlock {
    ln: LayerNorm,
    attn: Attention,
    cross_ln: LayerNorm,
    cross: Attention,
    mlp: Mlp,
}

pub struct Decoder {
    embed: Tensor,
    /// The output projection, tied to the token embedding (no bias).
    vocab: Dense,
    positions: Tensor,
    blocks: Vec<DecoderBlock>,
    ln: LayerNorm,
}

/// Decoding state of one or more sequences over one encoded window: cached self-attention
/// keys/values, one batch row per sequence, and the window's cross-attention keys/values
/// (batch 1, shared by every row).
#[derive(Clone)]
pub struct DecoderState {
    self_kv: Vec<Option<(Tensor, Tensor)>>,
    cross_kv: Vec<(Tensor, Tensor)>,
    /// Cached rows kept by [`DecoderState::select`] since the last step, in order: the next
    /// step gathers them as it appends its keys and values (one copy of the cache, not two).
    kept: Option<Vec<u32>>,
    pub length: usize,
}

impl DecoderState {
    /// Keeps the cached rows `rows`, in that order (a row may repeat): the sequences that go
    /// on after a beam search step are continuations of these.
    pub fn select(&mut self, rows: &[u32]) -> Result<()> {
        let Some((k, _)) = self.self_kv.iter().flatten().next() else { return Ok(()) };
        let batch = self.kept.as_ref().map_or(k.dim(0)?, Vec::len);
        if rows.iter().any(|&r| r as usize >= batch) {
            candle_core::bail!("rows {rows:?} of a cache of {batch}");
        }
        if rows.len() == batch && rows.iter().enumerate().all(|(i, &r)| r as usize == i) {
            return Ok(());
        }
        self.kept = Some(match &self.kept {
            Some(kept) => rows.iter().map(|&r| kept[r as usize]).collect(),
            None => rows.to_vec(),
        });
        Ok(())
    }
}

impl Decoder {
    pub fn load(vb: VarBuilder, cfg: &Config) -> Result<Self> {
        let d = cfg.d_model;
        let h = cfg.decoder_attention_heads;
        let blocks = (0..cfg.decoder_layers)
            .map(|i| {
                let vb = vb.pp(format!("layers.{i}"));
                Ok(DecoderBlock {
                    ln: layer_norm(&vb.pp("self_attn_layer_norm"), d)?,
                    attn: Attention::load(&vb.pp("self_attn"), d, h)?,
                    cross_ln: layer_norm(&vb.pp("encoder_attn_layer_norm"), d)?,
                    cross: Attention::load(&vb.pp("encoder_attn"), d, h)?,
                    mlp: Mlp::load(&vb, d)?,
                })
            })
            .collect::<Result<_>>()?;
        let embed = vb.get((cfg.vocab_size, d), "embed_tokens.weight")?;
        Ok(Self {
            vocab: Dense::new(embed.clone(), None)?,
            embed,
            positions: vb.get((cfg.max_target_positions, d), "embed_positions.weight")?,
            blocks,
            ln: layer_norm(&vb.pp("layer_norm"), d)?,
        })
    }

    /// Attention, MLP and vocabulary products in `compute`'s type (`cpu_int8`, `cpu_bf16`),
    /// as CTranslate2 runs them; the token embedding tied to the vocabulary is then read from
    /// its packed rows.
    pub fn pack(&mut self, compute: ComputeType) -> Result<()> {
        for b in &mut self.blocks {
            b.attn.pack(compute)?;
            b.cross.pack(compute)?;
            b.mlp.pack(compute)?;
        }
        self.vocab.pack(compute)?;
        if self.vocab.is_packed() {
            self.embed = Tensor::zeros((0, self.positions.dim(1)?), self.embed.dtype(), self.positions.device())?;
        }
        Ok(())
    }

    /// The embeddings of `tokens`, (n, d).
    fn embeddings(&self, tokens: &[u32]) -> Result<Tensor> {
        match self.vocab.packed_rows(tokens, self.positions.device())? {
            Some(rows) => Ok(rows),
            None => self.embed.index_select(&Tensor::new(tokens, self.positions.device())?, 0),
        }
    }

    pub fn max_positions(&self) -> usize {
        self.positions.dim(0).unwrap_or(448)
    }

    /// A fresh state for one encoded window.
    pub fn start(&self, audio: &Tensor) -> Result<DecoderState> {
        let cross_kv = self.blocks.iter().map(|b| b.cross.keys_values(audio)).collect::<Result<_>>()?;
        Ok(DecoderState { self_kv: vec![None; self.blocks.len()], cross_kv, kept: None, length: 0 })
    }

    /// Runs `tokens` after what `state` holds; returns their final hidden states (1, n, d).
    pub fn forward(&self, tokens: &[u32], state: &mut DecoderState) -> Result<Tensor> {
        Ok(self.forward_with_cross_scores(tokens, state, &[])?.0)
    }

    /// As `forward`, also returning the cross-attention scores (before the softmax) of each
    /// `(layer, head)` in `heads`, each (n, audio frames): the word alignment reads these.
    pub fn forward_with_cross_scores(
        &self,
        tokens: &[u32],
        state: &mut DecoderState,
        heads: &[(usize, usize)],
    ) -> Result<(Tensor, Vec<Tensor>)> {
        let dev = self.positions.device();
        let n = tokens.len();
        let offset = state.length;
        if offset + n > self.max_positions() {
            candle_core::bail!("sequence of {} tokens exceeds the text context", offset + n);
        }
        let x = self.embeddings(tokens)?.broadcast_add(&self.positions.narrow(0, offset, n)?)?.unsqueeze(0)?;
        let mask = causal_mask(n, offset, dev)?;
        self.run_blocks(x, state, mask.as_ref(), heads)
    }

    /// One token for each row of `state` (beams decoded together: every weight is read once
    /// per step for all of them); the final hidden states, (rows, 1, d).
    pub fn step(&self, tokens: &[u32], state: &mut DecoderState) -> Result<Tensor> {
        let offset = state.length;
        if offset + 1 > self.max_positions() {
            candle_core::bail!("sequence of {} tokens exceeds the text context", offset + 1);
        }
        let x = self.embeddings(tokens)?.broadcast_add(&self.positions.narrow(0, offset, 1)?)?;
        let x = x.unsqueeze(1)?;
        Ok(self.run_blocks(x, state, None, &[])?.0)
    }

    /// The decoder blocks over `x` (rows, n, d) after what `state` holds.
    fn run_blocks(
        &self,
        mut x: Tensor,
        state: &mut DecoderState,
        mask: Option<&Tensor>,
        heads: &[(usize, usize)],
    ) -> Result<(Tensor, Vec<Tensor>)> {
        let n = x.dim(1)?;
        let mut picked: Vec<Option<Tensor>> = vec![None; heads.len()];
        for (i, b) in self.blocks.iter().enumerate() {
            let h = b.ln.forward(&x)?;
            let (k_new, v_new) = b.attn.keys_values(&h)?;
            let (k, v) = match &state.self_kv[i] {
                Some((k, v)) => {
                    let kept = state.kept.as_deref();
                    (kept_and_appended(k, &k_new, kept)?, kept_and_appended(v, &v_new, kept)?)
                }
                None => (k_new, v_new),
            };
            x = (&x + b.attn.attend(&h, &k, &v, mask)?)?;
            state.self_kv[i] = Some((k, v));
            let (ck, cv) = &state.cross_kv[i];
            let hx = b.cross_ln.forward(&x)?;
            let y = if heads.iter().any(|&(layer, _)| layer == i) {
                let (y, scores) = b.cross.attend_scored(&hx, ck, cv, None)?;
                for (k, &(layer, head)) in heads.iter().enumerate() {
                    if layer == i {
                        picked[k] = Some(scores.i((0, head))?);
                    }
                }
                y
            } else {
                b.cross.attend(&hx, ck, cv, None)?
            };
            x = (&x + y)?;
            x = b.mlp.forward(&x)?;
        }
        state.length += n;
        state.kept = None;
        let picked = picked.into_iter().collect::<Option<Vec<_>>>();
        let picked =
            picked.ok_or_else(|| candle_core::Error::Msg(format!("alignment heads {heads:?} out of range")))?;
        Ok((self.ln.forward(&x)?, picked))
    }

    /// Logits of each hidden state of (1, n, d) over the vocabulary: (n, vocab).
    pub fn all_logits(&self, hidden: &Tensor) -> Result<Tensor> {
        self.vocab.forward(&hidden.squeeze(0)?)
    }

    /// Logits of each row's hidden state of (rows, 1, d): one vector per row.
    pub fn row_logits(&self, hidden: &Tensor) -> Result<Vec<Vec<f32>>> {
        let rows = hidden.dim(0)?;
        self.vocab.forward(&hidden.reshape((rows, ()))?)?.to_vec2::<f32>()
    }

    /// Logits of one hidden state (d) over the vocabulary (tied output projection).
    pub fn logits(&self, hidden: &Tensor) -> Result<Vec<f32>> {
        self.vocab.forward(&hidden.reshape((1, ()))?)?.flatten_all()?.to_vec1::<f32>()
    }
}

/// Mask so token i of the new block sees cached positions and new positions up to i.
fn causal_mask(n: usize, offset: usize, dev: &Device) -> Result<Option<Tensor>> {
    if n <= 1 {
        return Ok(None);
    }
    let total = offset + n;
    let m: Vec<f32> =
        (0..n).flat_map(|i| (0..total).map(move |j| if j > offset + i { f32::NEG_INFINITY } else { 0.0 })).collect();
    Tensor::from_vec(m, (n, total), dev)?.to_dtype(DType::F32).map(Some)
}

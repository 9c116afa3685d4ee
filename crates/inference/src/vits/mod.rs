//! Piper voices (VITS) on candle. The model follows Piper's VITS training code (`vits/models.py`
//! of the piper repository), inference path only; weights come from the voice's ONNX export.

pub mod config;
mod cpu_conv;
mod cpu_conv_bf16;
mod duration;
mod flow;
mod generator;
mod layers;
pub mod onnx;
mod spline;
mod stage_cpu;
mod text_attention_cpu;
mod text_encoder;
mod winograd;
mod winograd_transforms;

use std::collections::HashMap;
use std::path::Path;
use std::sync::OnceLock;

use candle_core::{DType, Device, Module, Tensor};
use candle_nn::VarBuilder;

use crate::whisper::compute_type::ComputeType;
use crate::whisper::cpu_ops::on_pool;
pub use config::{InferenceScales, PiperConfig};
use onnx::OnnxWeights;

#[derive(Debug, thiserror::Error)]
pub enum VoiceError {
    #[error("cannot read voice file {path}: {source}")]
    Io { path: String, source: std::io::Error },
    #[error("corrupt voice: {0}")]
    Corrupt(String),
    #[error("unsupported voice: {0}")]
    Unsupported(String),
    #[error("voice file lacks the weight {0}")]
    MissingWeight(String),
    #[error("unknown speaker {0:?}")]
    Speaker(String),
    #[error("model: {0}")]
    Model(#[from] candle_core::Error),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResBlockKind {
    One,
    Two,
}

/// Hyper-parameters of a VITS voice, read off the weight shapes and the graph's conv settings
/// (Piper's .onnx.json does not carry them).
#[derive(Debug, Clone, PartialEq)]
pub struct VitsConfig {
    pub n_vocab: usize,
    pub hidden_channels: usize,
    pub filter_channels: usize,
    pub n_heads: usize,
    pub n_layers: usize,
    pub ffn_kernel_size: usize,
    pub window_size: usize,
    pub inter_channels: usize,
    pub dp_filter_channels: usize,
    pub dp_kernel_size: usize,
    pub dp_n_flows: usize,
    pub flow_n_layers: usize,
    pub flow_kernel_size: usize,
    pub flow_wn_layers: usize,
    pub gin_channels: usize,
    pub n_speakers: usize,
    pub upsample_initial_channel: usize,
    pub upsample_rates: Vec<usize>,
    pub upsample_kernel_sizes: Vec<usize>,
    pub resblock: ResBlockKind,
    pub resblock_kernel_sizes: Vec<usize>,
    pub resblock_dilations: Vec<Vec<usize>>,
}

/// Hyper-parameters read off the weights' names and shapes.
struct Shapes<'a>(&'a OnnxWeights);

impl<'a> Shapes<'a> {
    fn shape(&self, name: &str) -> Result<&'a [usize], VoiceError> {
        self.0.tensors.get(name).map(|t| t.shape.as_slice()).ok_or_else(|| VoiceError::MissingWeight(name.to_string()))
    }

    fn dim(&self, name: &str, i: usize) -> Result<usize, VoiceError> {
        self.shape(name)?
            .get(i)
            .copied()
            .ok_or_else(|| VoiceError::Corrupt(format!("weight {name} has too few dimensions")))
    }

    /// How many of `name(0)`, `name(1)`, ... exist, counting up to the first missing one.
    fn count(&self, name: impl Fn(usize) -> String) -> usize {
        (0..).take_while(|&i| self.0.tensors.contains_key(&name(i))).count()
    }
}

/// The HiFi-GAN generator's layout.
struct GeneratorLayout {
    upsample_rates: Vec<usize>,
    upsample_kernel_sizes: Vec<usize>,
    resblock: ResBlockKind,
    resblock_kernel_sizes: Vec<usize>,
    resblock_dilations: Vec<Vec<usize>>,
}

impl GeneratorLayout {
    fn read(s: &Shapes) -> Result<Self, VoiceError> {
        let w = s.0;
        let n_ups = s.count(|i| format!("dec.ups.{i}.weight"));
        let resblock = if w.tensors.contains_key("dec.resblocks.0.convs1.0.weight") {
            ResBlockKind::One
        } else {
            ResBlockKind::Two
        };
        let n_blocks = s
            .count(|i| format!("dec.resblocks.{i}.convs1.0.weight"))
            .max(s.count(|i| format!("dec.resblocks.{i}.convs.0.weight")));
        if n_blocks == 0 || n_blocks.checked_rem(n_ups) != Some(0) {
            return Err(VoiceError::MissingWeight("dec.ups.* / dec.resblocks.* (HiFi-GAN generator)".into()));
        }
        let conv_name = if resblock == ResBlockKind::One { "convs1" } else { "convs" };
        let mut resblock_kernel_sizes = Vec::new();
        let mut resblock_dilations = Vec::new();
        for j in 0..n_blocks / n_ups {
            resblock_kernel_sizes.push(s.dim(&format!("dec.resblocks.{j}.{conv_name}.0.weight"), 2)?);
            let n = s.count(|m| format!("dec.resblocks.{j}.{conv_name}.{m}.weight"));
            resblock_dilations.push(
                (0..n)
                    .map(|m| w.convs.get(&format!("dec.resblocks.{j}.{conv_name}.{m}")).map_or(1, |a| a.dilation))
                    .collect(),
            );
        }
        let mut upsample_rates = Vec::new();
        let mut upsample_kernel_sizes = Vec::new();
        for i in 0..n_ups {
            upsample_kernel_sizes.push(s.dim(&format!("dec.ups.{i}.weight"), 2)?);
            let attrs = w
                .convs
                .get(&format!("dec.ups.{i}"))
                .ok_or_else(|| VoiceError::Corrupt(format!("graph has no ConvTranspose node for dec.ups.{i}")))?;
            upsample_rates.push(attrs.stride);
        }
        Ok(Self { upsample_rates, upsample_kernel_sizes, resblock, resblock_kernel_sizes, resblock_dilations })
    }
}

impl VitsConfig {
    pub fn from_weights(w: &OnnxWeights) -> Result<Self, VoiceError> {
        let s = Shapes(w);
        let hidden = s.dim("enc_p.emb.weight", 1)?;
        let rel_k = s.shape("enc_p.encoder.attn_layers.0.emb_rel_k")?;
        let (rel, k_channels) = (rel_k.get(1).copied().unwrap_or(0), rel_k.get(2).copied().unwrap_or(0));
        if k_channels == 0 || hidden % k_channels != 0 || rel % 2 == 0 {
            return Err(VoiceError::Unsupported(format!("relative attention embedding of shape {rel_k:?}")));
        }
        let generator = GeneratorLayout::read(&s)?;
        let dp_flow_max = (1..16usize).rev().find(|i| w.tensors.contains_key(&format!("dp.flows.{i}.pre.weight")));
        let (gin_channels, n_speakers) = match w.tensors.get("emb_g.weight") {
            Some(t) if t.shape.len() == 2 => (t.shape[1], t.shape[0]),
            _ => (0, 1),
        };
        Ok(Self {
            n_vocab: s.dim("enc_p.emb.weight", 0)?,
            hidden_channels: hidden,
            filter_channels: s.dim("enc_p.encoder.ffn_layers.0.conv_1.weight", 0)?,
            n_heads: hidden / k_channels,
            n_layers: s.count(|i| format!("enc_p.encoder.attn_layers.{i}.conv_q.weight")),
            ffn_kernel_size: s.dim("enc_p.encoder.ffn_layers.0.conv_1.weight", 2)?,
            window_size: rel / 2,
            inter_channels: s.dim("enc_p.proj.weight", 0)? / 2,
            dp_filter_channels: s.dim("dp.pre.weight", 0)?,
            dp_kernel_size: s.dim("dp.convs.convs_sep.0.weight", 2)?,
            dp_n_flows: dp_flow_max
                .map(|i| i.div_ceil(2))
                .ok_or_else(|| VoiceError::MissingWeight("dp.flows.*".into()))?,
            flow_n_layers: s.count(|i| format!("flow.flows.{}.pre.weight", 2 * i)),
            flow_kernel_size: s.dim("flow.flows.0.enc.in_layers.0.weight", 2)?,
            flow_wn_layers: s.count(|i| format!("flow.flows.0.enc.in_layers.{i}.weight")),
            gin_channels,
            n_speakers,
            upsample_initial_channel: s.dim("dec.conv_pre.weight", 0)?,
            upsample_rates: generator.upsample_rates,
            upsample_kernel_sizes: generator.upsample_kernel_sizes,
            resblock: generator.resblock,
            resblock_kernel_sizes: generator.resblock_kernel_sizes,
            resblock_dilations: generator.resblock_dilations,
        })
    }

    /// Output samples per latent frame.
    pub fn hop_length(&self) -> usize {
        self.upsample_rates.iter().product()
    }
}

/// The VITS synthesizer: phoneme ids -> waveform.
pub struct Vits {
    enc_p: text_encoder::TextEncoder,
    dp: duration::DurationPredictor,
    flow: flow::CouplingFlow,
    dec: generator::Generator,
    emb_g: Option<candle_nn::Embedding>,
    device: Device,
    pub config: VitsConfig,
}

fn missing_as_voice_error(e: candle_core::Error) -> VoiceError {
    let text = e.to_string();
    match text.split("cannot find tensor ").nth(1) {
        Some(name) => VoiceError::MissingWeight(name.trim().to_string()),
        None => VoiceError::Model(e),
    }
}

impl Vits {
    pub fn load(vb: VarBuilder, cfg: &VitsConfig) -> Result<Self, VoiceError> {
        let build = || -> candle_core::Result<Self> {
            let emb_g = if cfg.gin_channels > 0 {
                Some(candle_nn::Embedding::new(
                    vb.pp("emb_g").get((cfg.n_speakers, cfg.gin_channels), "weight")?,
                    cfg.gin_channels,
                ))
            } else {
                None
            };
            Ok(Self {
                enc_p: text_encoder::TextEncoder::load(vb.pp("enc_p"), cfg)?,
                dp: duration::DurationPredictor::load(vb.pp("dp"), cfg)?,
                flow: flow::CouplingFlow::load(vb.pp("flow"), cfg)?,
                dec: generator::Generator::load(vb.pp("dec"), cfg)?,
                emb_g,
                device: vb.device().clone(),
                config: cfg.clone(),
            })
        };
        build().map_err(missing_as_voice_error)
    }

    /// Loads from parsed ONNX weights onto `device`.
    pub fn from_onnx(weights: &OnnxWeights, device: &Device) -> Result<Self, VoiceError> {
        let cfg = VitsConfig::from_weights(weights)?;
        let mut tensors = HashMap::with_capacity(weights.tensors.len());
        for (name, raw) in &weights.tensors {
            let t = Tensor::from_slice(&raw.values, raw.shape.as_slice(), device)?;
            tensors.insert(name.clone(), t);
        }
        let vb = VarBuilder::from_tensors(tensors, DType::F32, device);
        Self::load(vb, &cfg)
    }

    /// Sets the vocoder's number type from `compute` and returns the one in force: bf16 for
    /// `bfloat16` on CPUs with AVX-512 BF16 (`cpu_conv_bf16`), and for `auto` where their
    /// AVX-512 is also double-pumped (AMD Zen 4: bf16 0.70-0.75x piper-tts's time against
    /// float32's 0.81-0.97x; on an Intel Xeon with full-width AVX-512, float32's Winograd
    /// stages were faster than bf16, measured), float32 otherwise; int8 is not offered.
    pub fn use_compute_type(&mut self, compute: ComputeType) -> ComputeType {
        let auto_bf16 = compute == ComputeType::Auto && !crate::cpu_isa::avx512_at_full_width();
        let wanted = (compute == ComputeType::Bfloat16 || auto_bf16) && self.device.is_cpu();
        if wanted && self.dec.use_bf16() {
            ComputeType::Bfloat16
        } else {
            ComputeType::Float32
        }
    }

    /// Waveform in [-1, 1] for one utterance of phoneme ids (Piper's BOS/pad/EOS included).
    pub fn synthesize(&self, ids: &[i64], scales: InferenceScales, speaker: i64) -> Result<Vec<f32>, VoiceError> {
        match self.latent(ids, scales, speaker)? {
            Some(latent) => self.vocode(&latent, 0..latent.frames),
            None => Ok(Vec::new()),
        }
    }

    /// The text encoder, durations and prior sample of an utterance (`None` when it has no
    /// frames); the flow runs as its frames are asked for.
    pub fn latent(&self, ids: &[i64], scales: InferenceScales, speaker: i64) -> Result<Option<Latent>, VoiceError> {
        on_pool(|| self.latent_here(ids, scales, speaker))
    }

    fn latent_here(&self, ids: &[i64], scales: InferenceScales, speaker: i64) -> Result<Option<Latent>, VoiceError> {
        if ids.is_empty() {
            return Ok(None);
        }
        if let Some(bad) = ids.iter().find(|&&i| i < 0 || i as usize >= self.config.n_vocab) {
            return Err(VoiceError::Corrupt(format!(
                "phoneme id {bad} is outside the voice's {} symbols",
                self.config.n_vocab
            )));
        }
        let g = match &self.emb_g {
            Some(emb) => {
                if speaker < 0 || speaker as usize >= self.config.n_speakers {
                    return Err(VoiceError::Speaker(speaker.to_string()));
                }
                let sid = Tensor::new(&[speaker as u32], &self.device)?;
                Some(emb.forward(&sid)?.unsqueeze(2)?) // [1, gin, 1]
            }
            None => None,
        };
        let enc = self.enc_p.forward(ids, &self.device)?;
        let logw = self.dp.reverse(&enc.x, g.as_ref(), scales.noise_w)?;
        let durations: Vec<f32> = logw.flatten_all()?.to_vec1()?;
        let mut frames: Vec<u32> = Vec::new();
        for (t, lw) in durations.iter().enumerate() {
            let n = (lw.exp() * scales.length_scale).ceil().max(0.0) as usize;
            frames.extend(std::iter::repeat_n(t as u32, n));
        }
        if frames.is_empty() {
            return Ok(None);
        }
        let index = Tensor::from_vec(frames.clone(), frames.len(), &self.device)?;
        let m = enc.m.index_select(&index, 2)?;
        let logs = enc.logs.index_select(&index, 2)?;
        let z_p = if scales.noise_scale == 0.0 {
            m
        } else {
            let noise = m.randn_like(0.0, 1.0)?;
            (m + (noise * logs.exp()?)? * scales.noise_scale as f64)?
        };
        Ok(Some(Latent { frames: frames.len(), z_p, z: OnceLock::new(), g }))
    }

    /// Latent frames `range` (`[1, inter, len]`) out of the flow: a range at the start of the
    /// utterance whose span with its receptive field is at most two thirds of the utterance
    /// through the flow over that span alone (the first piece of a streamed sentence, out
    /// sooner: a third of the flow's time or more off the first audio, for at most two thirds
    /// of a flow's work more in all), anything else from the whole utterance's flow, run once.
    fn latent_frames(&self, latent: &Latent, range: std::ops::Range<usize>) -> Result<Tensor, VoiceError> {
        let len = range.end - range.start;
        if let Some(z) = latent.z.get() {
            return Ok(z.narrow(2, range.start, len)?);
        }
        let context = self.flow.context_frames();
        let from = range.start.saturating_sub(context);
        let to = (range.end + context).min(latent.frames);
        if range.start == 0 && 3 * (to - from) <= 2 * latent.frames {
            let z = self.flow.reverse(&latent.z_p.narrow(2, from, to - from)?.contiguous()?, latent.g.as_ref())?;
            return Ok(z.narrow(2, range.start - from, len)?);
        }
        let z = self.flow.reverse(&latent.z_p, latent.g.as_ref())?;
        Ok(latent.z.get_or_init(|| z).narrow(2, range.start, len)?)
    }

    /// The waveform of latent frames `range` alone: the vocoder runs over the range widened by
    /// its receptive field on each side (within the utterance) and the middle is kept, so the
    /// pieces of an utterance join into the waveform [`Self::synthesize`] gives (to rounding).
    pub fn vocode(&self, latent: &Latent, range: std::ops::Range<usize>) -> Result<Vec<f32>, VoiceError> {
        on_pool(|| self.vocode_here(latent, range))
    }

    fn vocode_here(&self, latent: &Latent, range: std::ops::Range<usize>) -> Result<Vec<f32>, VoiceError> {
        let end = range.end.min(latent.frames);
        if range.start >= end {
            return Ok(Vec::new());
        }
        let context = self.dec.context_frames();
        let from = range.start.saturating_sub(context);
        let to = (end + context).min(latent.frames);
        let z = self.latent_frames(latent, from..to)?;
        let mut audio: Vec<f32> = self.dec.forward(&z, latent.g.as_ref())?.flatten_all()?.to_vec1()?;
        let hop = audio.len() / (to - from);
        audio.truncate((end - from) * hop);
        audio.drain(..(range.start - from) * hop);
        Ok(audio)
    }
}

/// An utterance up to the flow: its prior sample (`[1, inter, frames]`), its latent frames
/// once the whole flow has run, and the speaker's conditioning.
pub struct Latent {
    pub frames: usize,
    z_p: Tensor,
    z: OnceLock<Tensor>,
    g: Option<Tensor>,
}

/// A Piper voice: its model and its .onnx.json.
pub struct Voice {
    pub model: Vits,
    pub config: PiperConfig,
    /// The vocoder's number type in force.
    pub compute_type: ComputeType,
}

impl Voice {
    /// Loads `<name>.onnx` and its `<name>.onnx.json` beside it (or `config_path`).
    pub fn load(onnx_path: &Path, config_path: Option<&Path>, device: &Device) -> Result<Self, VoiceError> {
        Self::load_as(onnx_path, config_path, device, ComputeType::Float32)
    }

    /// [`Self::load`] with the vocoder in `compute` where the CPU allows it
    /// ([`Vits::use_compute_type`]).
    pub fn load_as(
        onnx_path: &Path,
        config_path: Option<&Path>,
        device: &Device,
        compute: ComputeType,
    ) -> Result<Self, VoiceError> {
        crate::cpu_pool::init();
        let json_path = config_path.map(Path::to_path_buf).unwrap_or_else(|| {
            let mut p = onnx_path.as_os_str().to_owned();
            p.push(".json");
            p.into()
        });
        let read =
            |p: &Path| std::fs::read(p).map_err(|source| VoiceError::Io { path: p.display().to_string(), source });
        let config = PiperConfig::parse(&String::from_utf8_lossy(&read(&json_path)?))?;
        let weights = OnnxWeights::parse(&read(onnx_path)?)?;
        let mut model = Vits::from_onnx(&weights, device)?;
        let compute_type = model.use_compute_type(compute);
        if config.num_symbols > 0 && config.num_symbols != model.config.n_vocab {
            return Err(VoiceError::Corrupt(format!(
                "config has {} symbols but the model embeds {}",
                config.num_symbols, model.config.n_vocab
            )));
        }
        Ok(Self { model, config, compute_type })
    }
}

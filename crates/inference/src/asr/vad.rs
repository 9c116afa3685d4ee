//! Silero VAD 6 at 16 kHz on candle, following the reference graph of the `silero-vad` 6.2.3
//! wheel (`silero_vad_16k_op15.onnx` as its `OnnxWrapper` runs it): every 512-sample frame is
//! read with the 64 samples before it, reflect-padded by 64 on the right, turned into a
//! 4-column STFT magnitude (a stored 258-row basis, hop 128), passed through four ReLU
//! convolutions, one LSTM step (the state carries over to the next frame) and a sigmoid.
//!
//! The convolutions run batched over every frame at hand; only the LSTM step is sequential, so
//! a file is scored in a few large products and a live stream frame by frame.

use candle_core::{DType, Device, Module, Tensor, D};
use candle_nn::{Conv1d, Conv1dConfig, VarBuilder};
use std::collections::HashMap;
use std::path::Path;

/// New samples per decision (32 ms at 16 kHz).
pub const FRAME: usize = 512;
/// Samples of the previous frame read again with each frame.
pub const CONTEXT: usize = 64;
pub const SAMPLE_RATE: u32 = 16_000;
const WINDOW: usize = FRAME + CONTEXT;
/// Right reflect padding before the STFT.
const PAD: usize = 64;
const HIDDEN: usize = 128;

/// Where `smai models pull --only silero-vad` installs the weights, under the models folder.
pub const INSTALLED_WEIGHTS: &str = "silero-vad/silero_vad_16k_op15.onnx";

#[derive(Debug, thiserror::Error)]
pub enum VadError {
    #[error("cannot read VAD weights {path}: {reason}")]
    Read { path: String, reason: String },
    #[error("VAD weights lack {0}")]
    MissingWeight(String),
    #[error("VAD model: {0}")]
    Model(#[from] candle_core::Error),
}

/// Checkpoint names (the wheel's safetensors file) and where the ONNX graph keeps each.
const WEIGHT_NAMES: [(&str, &str); 15] = [
    ("stft_conv.weight", "model.stft.forward_basis_buffer"),
    ("conv1.weight", "model.encoder.0.reparam_conv.weight"),
    ("conv1.bias", "model.encoder.0.reparam_conv.bias"),
    ("conv2.weight", "model.encoder.1.reparam_conv.weight"),
    ("conv2.bias", "model.encoder.1.reparam_conv.bias"),
    ("conv3.weight", "model.encoder.2.reparam_conv.weight"),
    ("conv3.bias", "model.encoder.2.reparam_conv.bias"),
    ("conv4.weight", "model.encoder.3.reparam_conv.weight"),
    ("conv4.bias", "model.encoder.3.reparam_conv.bias"),
    ("lstm_cell.weight_ih", "model.decoder.rnn.weight_ih"),
    ("lstm_cell.weight_hh", "model.decoder.rnn.weight_hh"),
    ("lstm_cell.bias_ih", "model.decoder.rnn.bias_ih"),
    ("lstm_cell.bias_hh", "model.decoder.rnn.bias_hh"),
    ("final_conv.weight", "model.decoder.decoder.2.weight"),
    ("final_conv.bias", "model.decoder.decoder.2.bias"),
];

/// LSTM state of one stream: `h` before the decoder's ReLU, and the cell.
#[derive(Debug, Clone)]
pub struct VadState {
    h: Vec<f32>,
    c: Vec<f32>,
}

impl Default for VadState {
    fn default() -> Self {
        Self { h: vec![0.0; HIDDEN], c: vec![0.0; HIDDEN] }
    }
}

pub struct SileroVad {
    stft_basis: Tensor,
    encoder: [Conv1d; 4],
    input_gates: candle_nn::Linear,
    /// `weight_hh` row-major (512 × 128), applied by hand in the sequential step.
    weight_hh: Vec<f32>,
    head_weight: Vec<f32>,
    head_bias: f32,
}

impl SileroVad {
    /// Loads the wheel's 16 kHz ONNX graph (its initializers) or a safetensors file with the
    /// checkpoint names; either way only the weights are read, nothing of ONNX runs.
    pub fn load(path: &Path) -> Result<Self, VadError> {
        let read_err = |reason: String| VadError::Read { path: path.display().to_string(), reason };
        let is_onnx = path.extension().is_some_and(|e| e == "onnx");
        let tensors = if is_onnx {
            let bytes = std::fs::read(path).map_err(|e| read_err(e.to_string()))?;
            onnx_tensors(&bytes).map_err(read_err)?
        } else {
            candle_core::safetensors::load(path, &Device::Cpu).map_err(|e| read_err(e.to_string()))?
        };
        Self::from_tensors(tensors)
    }

    /// The installed model of a models folder, `None` when it is not installed.
    /// Whether the weights are in `models_dir` (without loading them).
    pub fn is_installed(models_dir: &Path) -> bool {
        models_dir.join(INSTALLED_WEIGHTS).exists()
    }

    pub fn installed(models_dir: &Path) -> Result<Option<Self>, VadError> {
        let path = models_dir.join(INSTALLED_WEIGHTS);
        if !path.exists() {
            return Ok(None);
        }
        Self::load(&path).map(Some)
    }

    /// Builds the model from tensors under the checkpoint names (or the ONNX names).
    pub fn from_tensors(mut tensors: HashMap<String, Tensor>) -> Result<Self, VadError> {
        for (name, onnx_name) in WEIGHT_NAMES {
            if !tensors.contains_key(name) {
                let t = tensors.remove(onnx_name).ok_or_else(|| VadError::MissingWeight(name.into()))?;
                tensors.insert(name.into(), t);
            }
        }
        let vb = VarBuilder::from_tensors(tensors, DType::F32, &Device::Cpu);
        Self::from_varbuilder(&vb)
    }

    fn from_varbuilder(vb: &VarBuilder) -> Result<Self, VadError> {
        let conv = |name: &str, cin: usize, cout: usize, stride: usize| -> Result<Conv1d, VadError> {
            let cfg = Conv1dConfig { padding: 1, stride, ..Default::default() };
            let weight = vb.get((cout, cin, 3), &format!("{name}.weight"))?;
            let bias = vb.get(cout, &format!("{name}.bias"))?;
            Ok(Conv1d::new(weight, Some(bias), cfg))
        };
        let lstm = vb.pp("lstm_cell");
        let bias = (lstm.get(4 * HIDDEN, "bias_ih")? + lstm.get(4 * HIDDEN, "bias_hh")?)?;
        let input_gates = candle_nn::Linear::new(lstm.get((4 * HIDDEN, HIDDEN), "weight_ih")?, Some(bias));
        let weight_hh = lstm.get((4 * HIDDEN, HIDDEN), "weight_hh")?.flatten_all()?.to_vec1()?;
        let head = vb.pp("final_conv");
        Ok(Self {
            stft_basis: vb.get((2 * 129, 1, 256), "stft_conv.weight")?,
            encoder: [
                conv("conv1", 129, 128, 1)?,
                conv("conv2", 128, 64, 2)?,
                conv("conv3", 64, 64, 2)?,
                conv("conv4", 64, 128, 1)?,
            ],
            input_gates,
            weight_hh,
            head_weight: head.get((1, HIDDEN, 1), "weight")?.flatten_all()?.to_vec1()?,
            head_bias: head.get(1, "bias")?.to_vec1::<f32>()?[0],
        })
    }

    /// Speech probability of each window (`CONTEXT + FRAME` samples each, back to back in
    /// `windows`), carrying `state` from one to the next.
    pub fn score_windows(&self, windows: &[f32], state: &mut VadState) -> Result<Vec<f32>, VadError> {
        let n = windows.len() / WINDOW;
        if n == 0 {
            return Ok(Vec::new());
        }
        let gates_in = self.encode(&windows[..n * WINDOW], n)?;
        Ok(gates_in.chunks_exact(4 * HIDDEN).map(|g| self.step(g, state)).collect())
    }

    /// Features of every window, projected to the LSTM's input gates: (n × 512) row-major.
    fn encode(&self, windows: &[f32], n: usize) -> Result<Vec<f32>, VadError> {
        let padded: Vec<f32> = windows.chunks_exact(WINDOW).flat_map(reflect_right).collect();
        let x = Tensor::from_vec(padded, (n, 1, WINDOW + PAD), &Device::Cpu)?;
        let spectrum = x.conv1d(&self.stft_basis, 0, 128, 1, 1)?; // (n, 258, 4)
        let re = spectrum.narrow(1, 0, 129)?;
        let im = spectrum.narrow(1, 129, 129)?;
        let mut features = (re.sqr()? + im.sqr()?)?.sqrt()?;
        for conv in &self.encoder {
            features = conv.forward(&features)?.relu()?;
        }
        let features = features.squeeze(D::Minus1)?; // (n, 128)
        Ok(self.input_gates.forward(&features)?.flatten_all()?.to_vec1()?)
    }

    /// One LSTM step (gate order i, f, g, o) and the decoder head: the frame's probability.
    fn step(&self, gates_in: &[f32], state: &mut VadState) -> f32 {
        let mut gates = [0f32; 4 * HIDDEN];
        for (row, (gate, input)) in gates.iter_mut().zip(gates_in).enumerate() {
            *gate = input + dot(&self.weight_hh[row * HIDDEN..(row + 1) * HIDDEN], &state.h);
        }
        let (i, rest) = gates.split_at(HIDDEN);
        let (f, rest) = rest.split_at(HIDDEN);
        let (g, o) = rest.split_at(HIDDEN);
        for k in 0..HIDDEN {
            state.c[k] = sigmoid(f[k]) * state.c[k] + sigmoid(i[k]) * g[k].tanh();
            state.h[k] = sigmoid(o[k]) * state.c[k].tanh();
        }
        let relu_h: f32 = self.head_weight.iter().zip(&state.h).map(|(w, h)| w * h.max(0.0)).sum();
        sigmoid(self.head_bias + relu_h)
    }

    /// Probabilities of a whole 16 kHz signal, one per 512 samples (the last frame zero-padded),
    /// as the reference scores a file.
    pub fn probabilities(&self, samples: &[f32]) -> Result<Vec<f32>, VadError> {
        let mut stream = VadStream::new();
        let mut probs = stream.push(self, samples)?;
        probs.extend(stream.finish(self)?);
        Ok(probs)
    }
}

/// The window followed by its last `PAD` samples mirrored, the edge sample not repeated.
fn reflect_right(window: &[f32]) -> impl Iterator<Item = f32> + '_ {
    let mirrored = (0..PAD).map(move |m| window[WINDOW - 2 - m]);
    window.iter().copied().chain(mirrored)
}

fn dot(a: &[f32], b: &[f32]) -> f32 {
    // Eight partial sums let the compiler vectorise the loop.
    let mut acc = [0f32; 8];
    for (ca, cb) in a.chunks_exact(8).zip(b.chunks_exact(8)) {
        for k in 0..8 {
            acc[k] += ca[k] * cb[k];
        }
    }
    let tail: f32 = a.chunks_exact(8).remainder().iter().zip(b.chunks_exact(8).remainder()).map(|(x, y)| x * y).sum();
    acc.iter().sum::<f32>() + tail
}

fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + (-x).exp())
}

/// Float initializers of an ONNX graph as tensors under their graph names.
fn onnx_tensors(bytes: &[u8]) -> Result<HashMap<String, Tensor>, String> {
    let weights = crate::vits::onnx::OnnxWeights::parse(bytes).map_err(|e| e.to_string())?;
    weights
        .tensors
        .into_iter()
        .map(|(name, raw)| {
            let t = Tensor::from_vec(raw.values, raw.shape, &Device::Cpu).map_err(|e| e.to_string())?;
            Ok((name, t))
        })
        .collect()
}

/// One audio stream's detector state: the context, the LSTM state and a partial frame kept
/// between pushes, so chunk sizes never change the probabilities.
#[derive(Debug, Clone)]
pub struct VadStream {
    state: VadState,
    /// The last `CONTEXT` samples read, then the samples of the frame not yet complete.
    buffer: Vec<f32>,
}

impl Default for VadStream {
    fn default() -> Self {
        Self { state: VadState::default(), buffer: vec![0.0; CONTEXT] }
    }
}

impl VadStream {
    pub fn new() -> Self {
        Self::default()
    }

    /// Scores every frame the new samples complete, in order.
    pub fn push(&mut self, model: &SileroVad, samples: &[f32]) -> Result<Vec<f32>, VadError> {
        self.buffer.extend_from_slice(samples);
        let frames = (self.buffer.len() - CONTEXT) / FRAME;
        if frames == 0 {
            return Ok(Vec::new());
        }
        let mut windows = Vec::with_capacity(frames * WINDOW);
        for f in 0..frames {
            windows.extend_from_slice(&self.buffer[f * FRAME..f * FRAME + WINDOW]);
        }
        let probs = model.score_windows(&windows, &mut self.state)?;
        self.buffer.drain(..frames * FRAME);
        Ok(probs)
    }

    /// Scores a partial last frame, zero-padded; nothing when the samples ended on a frame.
    pub fn finish(&mut self, model: &SileroVad) -> Result<Vec<f32>, VadError> {
        let partial = self.buffer.len() - CONTEXT;
        if partial == 0 {
            return Ok(Vec::new());
        }
        self.buffer.resize(CONTEXT + FRAME, 0.0);
        self.push(model, &[])
    }
}

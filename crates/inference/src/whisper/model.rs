//! A loaded Whisper model: the network, the tokenizer, generation config and the mel front
//! end, with the calls decoding needs (encode a 30 s window; run tokens against it).

use super::bpe::BpeEncoder;
use super::compute_type::ComputeType;
use super::cpu_ops::on_pool;
use super::load::{load_dir, GenerationConfig, LoadError};
use super::network::{Decoder, DecoderState, Encoder};
use super::tokenizer::WhisperTokenizer;
use crate::audio::mel::{LogMel, N_FRAMES};
use candle_core::{Device, IndexOp, Tensor};
use candle_transformers::models::whisper::Config;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

pub struct WhisperModel {
    pub id: String,
    encoder: Encoder,
    decoder: Decoder,
    pub config: Config,
    pub tokenizer: WhisperTokenizer,
    /// Prompt encoder, when the model ships `tokenizer.json`.
    pub bpe: Option<BpeEncoder>,
    pub generation: GenerationConfig,
    /// The log-mel front end, shared with the work done before the model's queue.
    pub mel: Arc<LogMel>,
    pub device: Device,
    /// What the products run in (resolved: never `auto`).
    pub compute_type: ComputeType,
    /// Decoder calls so far: the work decoding did, for tests and accounting.
    steps: AtomicU64,
}

impl WhisperModel {
    /// Loads `dir` (CTranslate2 or Hugging Face layout) plus `vocabulary.txt`.
    pub fn load(id: &str, dir: &Path, device: &Device) -> Result<Self, LoadError> {
        crate::cpu_pool::init();
        let vocab_path = dir.join("vocabulary.txt");
        if !vocab_path.is_file() {
            return Err(LoadError::Missing(dir.display().to_string()));
        }
        let vocab =
            std::fs::read_to_string(&vocab_path).map_err(|e| LoadError::Io(vocab_path.display().to_string(), e))?;
        let tokenizer = WhisperTokenizer::from_vocabulary(&vocab).map_err(LoadError::Config)?;
        let bpe = match std::fs::read_to_string(dir.join("tokenizer.json")) {
            Ok(text) => Some(BpeEncoder::from_tokenizer_json(&text).map_err(LoadError::Config)?),
            Err(_) => None,
        };
        let w = load_dir(dir, device)?;
        if w.config.vocab_size != tokenizer.vocab_size() {
            return Err(LoadError::Config(format!(
                "vocabulary.txt has {} tokens but the weights {}",
                tokenizer.vocab_size(),
                w.config.vocab_size
            )));
        }
        Ok(Self {
            id: id.to_string(),
            encoder: w.encoder,
            decoder: w.decoder,
            mel: Arc::new(LogMel::new(w.config.num_mel_bins)),
            config: w.config,
            tokenizer,
            bpe,
            generation: w.generation,
            device: device.clone(),
            compute_type: ComputeType::Float32,
            steps: AtomicU64::new(0),
        })
    }

    /// Loads as [`Self::load`], then sets the products' number type (`auto` resolved here).
    pub fn load_as(id: &str, dir: &Path, device: &Device, compute: ComputeType) -> Result<Self, LoadError> {
        let mut model = Self::load(id, dir, device)?;
        let compute = compute.resolve(device);
        // Float32 too: weights stored as f16 stay at half width on the CPU (same results).
        model.encoder.pack(compute).map_err(LoadError::Tensor)?;
        model.decoder.pack(compute).map_err(LoadError::Tensor)?;
        model.compute_type = compute;
        Ok(model)
    }

    pub fn max_target_positions(&self) -> usize {
        self.config.max_target_positions
    }

    // Each call below is one bounded piece of work run on rayon's pool (`on_pool`): an
    // encoder pass, a decoder call, the cross-attention keys of a window.

    /// Encodes one window of features, `n_mels x N_FRAMES` row-major (zero padded).
    pub fn encode(&self, window: &[f32]) -> candle_core::Result<Tensor> {
        let x = Tensor::from_slice(window, (1, self.mel.n_mels(), N_FRAMES), &self.device)?;
        on_pool(|| self.encoder.forward(&x))
    }

    /// A decoding state against an encoded window.
    pub fn start(&self, encoded: &Tensor) -> candle_core::Result<DecoderState> {
        on_pool(|| self.decoder.start(encoded))
    }

    /// Decoder calls ([`WhisperModel::feed`]) since the model was loaded.
    pub fn decoder_steps(&self) -> u64 {
        self.steps.load(Ordering::Relaxed)
    }

    /// Feeds `tokens` and returns the logits at each of `positions` (indices into `tokens`).
    pub fn feed(
        &self,
        state: &mut DecoderState,
        tokens: &[u32],
        positions: &[usize],
    ) -> candle_core::Result<Vec<Vec<f32>>> {
        self.steps.fetch_add(1, Ordering::Relaxed);
        on_pool(|| {
            let hidden = self.decoder.forward(tokens, state)?;
            positions.iter().map(|&p| self.decoder.logits(&hidden.i((0, p))?)).collect()
        })
    }

    /// Feeds one token to each row of `state` in one decoder pass (beams together); the
    /// logits of each row.
    pub fn feed_rows(&self, state: &mut DecoderState, tokens: &[u32]) -> candle_core::Result<Vec<Vec<f32>>> {
        self.steps.fetch_add(1, Ordering::Relaxed);
        on_pool(|| self.decoder.row_logits(&self.decoder.step(tokens, state)?))
    }

    /// One pass of `tokens` from an empty context for the word alignment: returns the
    /// raw logits at every position (n, vocab) and the cross-attention scores of the
    /// model's alignment heads, each (n, audio frames).
    pub fn alignment_pass(&self, encoded: &Tensor, tokens: &[u32]) -> candle_core::Result<(Tensor, Vec<Tensor>)> {
        on_pool(|| {
            let mut state = self.decoder.start(encoded)?;
            let heads = &self.generation.alignment_heads;
            let (hidden, scores) = self.decoder.forward_with_cross_scores(tokens, &mut state, heads)?;
            Ok((self.decoder.all_logits(&hidden)?, scores))
        })
    }
}

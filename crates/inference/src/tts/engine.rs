//! The speech synthesis engine: each Piper model runs on its own worker (`runtime`) behind a
//! bounded queue; a request is split into sentences and each sentence's audio is sent on the
//! stream as soon as it is computed.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use candle_core::Device;
use smai_core::{AudioChunk, AudioStream, EngineHealth, Error, SpeechOptions, Synthesizer, VoiceInfo};
use tokio::sync::mpsc;

use super::voices::{model_path, VoiceSpec, VoicesConfig};
use crate::phonemize::{phonemes_to_ids, phonemize};
use crate::runtime::{device_name, Worker, WorkerConfig};
use crate::vits::{InferenceScales, PiperConfig, Voice};
use crate::whisper::compute_type::ComputeTypes;

/// Sentences buffered per stream before the worker waits for the reader.
const STREAM_BUFFER: usize = 4;
const MIN_SPEED: f32 = 0.25;
const MAX_SPEED: f32 = 4.0;

/// A voice as the engine serves it: its model worker and its settings.
#[derive(Clone)]
struct ServedVoice {
    info: VoiceInfo,
    worker: usize,
    speaker: i64,
    scales: InferenceScales,
}

pub struct PiperSynthesizer {
    voices: HashMap<String, ServedVoice>,
    order: Vec<String>,
    workers: Vec<Worker<Arc<Voice>>>,
    device: Device,
}

impl PiperSynthesizer {
    /// Loads every model the voices use (once per model, in float32) and starts their workers.
    pub fn load(config: &VoicesConfig, models_dir: &Path, device: &Device, queue: usize) -> Result<Self, Error> {
        Self::load_as(config, models_dir, device, queue, &ComputeTypes::default())
    }

    /// [`Self::load`] with each model's vocoder in the number type `compute` gives its model id
    /// (`bfloat16`: bf16 on CPUs with AVX-512 BF16, `auto` only where that AVX-512 is
    /// double-pumped; see `Vits::use_compute_type`).
    pub fn load_as(
        config: &VoicesConfig,
        models_dir: &Path,
        device: &Device,
        queue: usize,
        compute: &ComputeTypes,
    ) -> Result<Self, Error> {
        config.validate().map_err(|e| Error::invalid(e.to_string()))?;
        let mut workers = Vec::new();
        let mut by_model: HashMap<String, (usize, Arc<Voice>)> = HashMap::new();
        let mut voices = HashMap::new();
        let mut order = Vec::new();
        for spec in &config.voices {
            let (worker, voice) = match by_model.get(&spec.model) {
                Some(found) => found.clone(),
                None => {
                    let path = model_path(models_dir, &spec.model);
                    if !path.exists() {
                        return Err(Error::not_found(format!(
                            "model {} of voice {} is not installed (expected {}; run `smai models pull {}`)",
                            spec.model,
                            spec.id,
                            path.display(),
                            spec.model
                        )));
                    }
                    let voice = Arc::new(
                        Voice::load_as(&path, None, device, compute.for_model(&spec.model))
                            .map_err(|e| Error::internal(format!("loading voice model {}: {e}", path.display())))?,
                    );
                    tracing::info!(model = %spec.model, compute_type = %voice.compute_type, "voice model loaded");
                    let config = WorkerConfig::new(format!("piper {}", spec.model), queue);
                    let model = voice.clone();
                    workers.push(Worker::start(config, move || Ok((model, ())))?.0);
                    let entry = (workers.len() - 1, voice);
                    by_model.insert(spec.model.clone(), entry.clone());
                    entry
                }
            };
            let defaults = voice.config.inference;
            let speaker = voice
                .config
                .speaker_id(spec.speaker.as_deref())
                .map_err(|e| Error::invalid(format!("voice {}: {e}", spec.id)))?;
            voices.insert(
                spec.id.clone(),
                ServedVoice {
                    info: voice_info(spec, &voice.config),
                    worker,
                    speaker,
                    scales: InferenceScales {
                        noise_scale: spec.noise_scale.unwrap_or(defaults.noise_scale),
                        length_scale: spec.length_scale.unwrap_or(defaults.length_scale),
                        noise_w: spec.noise_w.unwrap_or(defaults.noise_w),
                    },
                },
            );
            order.push(spec.id.clone());
        }
        Ok(Self { voices, order, workers, device: device.clone() })
    }

    /// The voices as their `.onnx.json` files describe them, without loading any weights:
    /// what lists show while the weights load.
    pub fn preview(config: &VoicesConfig, models_dir: &Path) -> Result<Vec<VoiceInfo>, Error> {
        config.validate().map_err(|e| Error::invalid(e.to_string()))?;
        let describe = |spec: &VoiceSpec| {
            let mut path = model_path(models_dir, &spec.model).into_os_string();
            path.push(".json");
            let json = std::fs::read_to_string(&path)
                .map_err(|e| Error::not_found(format!("voice {}: {}: {e}", spec.id, path.to_string_lossy())))?;
            let piper = PiperConfig::parse(&json).map_err(|e| Error::internal(format!("voice {}: {e}", spec.id)))?;
            Ok(voice_info(spec, &piper))
        };
        config.voices.iter().map(describe).collect()
    }

    /// Where the voices run: `cpu`, `cuda` or `metal`.
    pub fn device_name(&self) -> &'static str {
        device_name(&self.device)
    }

    /// Like [`Synthesizer::synthesize`] with the sampling noise set (0 and 0: deterministic,
    /// for tests and benches); the voice's length scale and `speed` still apply.
    pub fn synthesize_with_noise(
        &self,
        text: String,
        options: &SpeechOptions,
        noise: Option<(f32, f32)>,
    ) -> Result<AudioStream, Error> {
        let voice = self
            .voices
            .get(&options.voice)
            .ok_or_else(|| Error::invalid(format!("unknown voice {:?}", options.voice)))?;
        if !options.speed.is_finite() || !(MIN_SPEED..=MAX_SPEED).contains(&options.speed) {
            return Err(Error::invalid(format!("speed must be between {MIN_SPEED} and {MAX_SPEED}")));
        }
        if text.trim().is_empty() {
            return Err(Error::invalid("input text is empty"));
        }
        let mut scales = voice.scales;
        if let Some((noise_scale, noise_w)) = noise {
            scales.noise_scale = noise_scale;
            scales.noise_w = noise_w;
        }
        scales.length_scale /= options.speed;
        let (reply, stream) = mpsc::channel(STREAM_BUFFER);
        let (speaker, normalize) = (voice.speaker, options.normalize);
        self.workers[voice.worker].submit("synthesize", reply, move |voice: &mut Arc<Voice>, out| {
            run_job(voice, &text, (speaker, normalize), scales, out)
        })?;
        Ok(stream)
    }
}

impl Synthesizer for PiperSynthesizer {
    fn voices(&self) -> Vec<VoiceInfo> {
        self.order.iter().map(|id| self.voices[id].info.clone()).collect()
    }

    fn synthesize(&self, text: String, options: SpeechOptions) -> Result<AudioStream, Error> {
        self.synthesize_with_noise(text, &options, None)
    }

    fn health(&self) -> EngineHealth {
        self.workers.iter().map(Worker::health).find(|h| *h != EngineHealth::Serving).unwrap_or(EngineHealth::Serving)
    }
}

/// Synthesizes sentence by sentence (each peak-normalised, or streamed in pieces at the
/// voice's own level); stops early when the reader has gone.
fn run_job(voice: &Voice, text: &str, (speaker, normalize): (i64, bool), scales: InferenceScales, out: &AudioSender) {
    let sample_rate = voice.config.audio.sample_rate;
    let sentences = match phonemize(voice.config.espeak_voice(), text) {
        Ok(s) => s,
        Err(e) => {
            let _ = out.blocking_send(Err(Error::internal(e)));
            return;
        }
    };
    for phonemes in sentences {
        if out.is_closed() {
            return;
        }
        let ids = match phonemes_to_ids(&phonemes, &voice.config.phoneme_id_map) {
            Ok(ids) => ids,
            Err(e) => {
                let _ = out.blocking_send(Err(Error::internal(e)));
                return;
            }
        };
        let sent = if normalize {
            let result = voice.model.synthesize(&ids, scales, speaker).map_err(Error::internal);
            let chunk = result.map(|samples| AudioChunk { samples: peak_normalize(samples), sample_rate });
            let failed = chunk.is_err();
            out.blocking_send(chunk).is_ok() && !failed
        } else {
            stream_sentence(voice, &ids, (speaker, scales), out)
        };
        if !sent {
            return;
        }
    }
}

/// Latent frames in the first piece of a streamed sentence (about 0.19 s of audio at
/// 22.05 kHz): small, so it is heard soon; later pieces double up to [`LAST_PIECE_FRAMES`],
/// each ready long before the one before it has played.
const FIRST_PIECE_FRAMES: usize = 16;
const LAST_PIECE_FRAMES: usize = 128;

/// The frame ranges a sentence of `frames` latent frames is vocoded in.
fn piece_ranges(frames: usize) -> Vec<std::ops::Range<usize>> {
    let (mut ranges, mut start, mut size) = (Vec::new(), 0, FIRST_PIECE_FRAMES);
    while start < frames {
        let end = (start + size).min(frames);
        ranges.push(start..end);
        start = end;
        size = (size * 2).min(LAST_PIECE_FRAMES);
    }
    ranges
}

/// One sentence's audio in pieces at the voice's own level (clamped to [-1, 1]); false when
/// the job should stop (an error was sent, or the reader has gone).
fn stream_sentence(voice: &Voice, ids: &[i64], (speaker, scales): (i64, InferenceScales), out: &AudioSender) -> bool {
    let sample_rate = voice.config.audio.sample_rate;
    let latent = match voice.model.latent(ids, scales, speaker) {
        Ok(Some(latent)) => latent,
        Ok(None) => return true,
        Err(e) => {
            let _ = out.blocking_send(Err(Error::internal(e)));
            return false;
        }
    };
    for range in piece_ranges(latent.frames) {
        let chunk = voice
            .model
            .vocode(&latent, range)
            .map(|mut samples| {
                samples.iter_mut().for_each(|s| *s = s.clamp(-1.0, 1.0));
                AudioChunk { samples, sample_rate }
            })
            .map_err(Error::internal);
        let failed = chunk.is_err();
        if out.blocking_send(chunk).is_err() || failed {
            return false;
        }
    }
    true
}

type AudioSender = mpsc::Sender<Result<AudioChunk, Error>>;

/// Peak normalisation per sentence, as piper-tts does by default.
pub fn peak_normalize(mut samples: Vec<f32>) -> Vec<f32> {
    let peak = samples.iter().fold(0f32, |m, s| m.max(s.abs()));
    if peak < 1e-8 {
        samples.iter_mut().for_each(|s| *s = 0.0);
    } else {
        samples.iter_mut().for_each(|s| *s = (*s / peak).clamp(-1.0, 1.0));
    }
    samples
}

/// How a voice is listed: the configuration's language, else the model's own.
fn voice_info(spec: &VoiceSpec, config: &PiperConfig) -> VoiceInfo {
    let language = spec
        .language
        .clone()
        .or_else(|| config.language.as_ref().map(|l| l.code.clone()))
        .unwrap_or_else(|| config.espeak_voice().to_string());
    VoiceInfo {
        id: spec.id.clone(),
        language,
        sample_rate: config.audio.sample_rate,
        quality: config.audio.quality.clone().unwrap_or_else(|| "unknown".into()),
    }
}

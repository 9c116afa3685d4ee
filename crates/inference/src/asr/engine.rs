//! The Whisper engine behind `smai_core::Transcriber`. Each loaded model runs on its own
//! worker (`runtime`), where only the network runs: container decoding, resampling and the
//! log-mel features are computed before, on the rayon pool, while the request holds its place
//! in the model's queue. A full queue is refused at once (`overloaded`), and a caller that
//! goes away stops its decoding.

use super::endpoint::Endpointer;
use super::live::{self, Decoded, LiveTranscription, StreamOptions};
use super::live_session;
use super::vad::SileroVad;
use super::vad_filter::{file_params, keep_speech, TimeMap};
use crate::audio::mel::LogMel;
use crate::audio::{decode_with_limits, probe_duration, DecodeLimits};
use crate::runtime::{device_name, Worker, WorkerConfig};
use crate::whisper::{transcribe_until, ComputeTypes, Features, WhisperModel, WhisperOptions};
use candle_core::Device;
use smai_core::{
    AudioLength, EngineHealth, Error, LiveSession, ModelInfo, TranscribeOptions, Transcriber, TranscriptEvent,
    TranscriptStream,
};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;
use std::sync::Arc;
use tokio::sync::mpsc;

/// Events buffered per request before the worker waits for the caller.
const STREAM_BUFFER: usize = 64;

/// A loaded model: its worker, and the front end that runs before its queue.
struct Loaded {
    info: ModelInfo,
    worker: Worker<WhisperModel>,
    mel: Arc<LogMel>,
}

pub struct WhisperEngine {
    models: Vec<Loaded>,
    default_model: String,
    device: Device,
    limits: DecodeLimits,
    /// For `vad_filter`; requests asking for it are refused without one.
    vad: Option<Arc<SileroVad>>,
}

impl WhisperEngine {
    /// Loads each model id from `<models_dir>/<id>` on its own worker; the first is the
    /// default. `queue_depth` requests may wait per model beyond the one being decoded.
    pub fn load(models_dir: &Path, ids: &[String], device: &Device, queue_depth: usize) -> Result<Self, Error> {
        Self::load_as(models_dir, ids, device, queue_depth, &ComputeTypes::default())
    }

    /// As [`Self::load`], each model's products in the number type `compute` gives it.
    pub fn load_as(
        models_dir: &Path,
        ids: &[String],
        device: &Device,
        queue_depth: usize,
        compute: &ComputeTypes,
    ) -> Result<Self, Error> {
        let default_model = ids.first().cloned().ok_or_else(|| Error::invalid("no Whisper model to load"))?;
        let mut models = Vec::new();
        for id in ids {
            let (dir, id_owned, device) = (models_dir.join(id), id.clone(), device.clone());
            let compute = compute.for_model(id);
            let config = WorkerConfig::new(format!("whisper {id}"), queue_depth);
            let (worker, (info, mel)) = Worker::start(config, move || {
                let model = WhisperModel::load_as(&id_owned, &dir, &device, compute)
                    .map_err(|e| Error::internal(format!("loading Whisper model {id_owned}: {e}")))?;
                tracing::info!(model = %id_owned, compute_type = %model.compute_type, asked = %compute, "Whisper model loaded");
                let info = ModelInfo {
                    id: id_owned,
                    languages: model_languages(&model),
                    multilingual: model.tokenizer.multilingual,
                };
                let mel = model.mel.clone();
                Ok((model, (info, mel)))
            })?;
            models.push(Loaded { info, worker, mel });
        }
        Ok(Self { models, default_model, device: device.clone(), limits: DecodeLimits::default(), vad: None })
    }

    /// Enables `vad_filter` with this detector.
    pub fn with_vad(mut self, vad: Arc<SileroVad>) -> Self {
        self.vad = Some(vad);
        self
    }

    /// Bounds every upload's decoding (`--max-audio-seconds`); the default is
    /// [`DecodeLimits::default`].
    pub fn with_decode_limits(mut self, limits: DecodeLimits) -> Self {
        self.limits = limits;
        self
    }

    pub fn decode_limits(&self) -> DecodeLimits {
        self.limits
    }

    /// Where the models run: `cpu`, `cuda` or `metal`.
    pub fn device_name(&self) -> &'static str {
        device_name(&self.device)
    }

    fn model(&self, options: &TranscribeOptions) -> Result<&Loaded, Error> {
        let id = options.model.as_deref().unwrap_or(&self.default_model);
        self.models
            .iter()
            .find(|m| m.info.id == id)
            .ok_or_else(|| Error::not_found(format!("model {id:?} is not loaded")))
    }

    /// Opens a live transcription on the model `options.transcribe.model` names (or the
    /// default one); its decoding shares that model's queue with file requests.
    pub fn open_stream(&self, options: StreamOptions) -> Result<LiveTranscription, Error> {
        let model = self.model(&options.transcribe)?;
        let decoding = whisper_options(&options.transcribe)?;
        LiveTranscription::new(model.worker.clone(), model.mel.clone(), decoding, options)
    }
}

/// A model's id and languages read from its vocabulary alone, without its weights: what lists
/// show while the weights load. Language tokens sit between `<|startoftranscript|>` and
/// `<|translate|>`, as in every Whisper vocabulary.
pub fn preview_model(models_dir: &Path, id: &str) -> Result<ModelInfo, Error> {
    let path = models_dir.join(id).join("vocabulary.txt");
    let vocabulary = std::fs::read_to_string(&path).map_err(|e| Error::internal(format!("{}: {e}", path.display())))?;
    let tokenizer =
        crate::whisper::tokenizer::WhisperTokenizer::from_vocabulary(&vocabulary).map_err(Error::internal)?;
    let languages = if tokenizer.multilingual {
        let first = tokenizer.token_id("<|startoftranscript|>").unwrap_or_default() + 1;
        let end = tokenizer.token_id("<|translate|>").unwrap_or_default();
        (first..end).filter_map(|i| tokenizer.language_code(i).map(str::to_owned)).collect()
    } else {
        vec!["en".to_owned()]
    };
    Ok(ModelInfo { id: id.to_owned(), languages, multilingual: tokenizer.multilingual })
}

fn model_languages(model: &WhisperModel) -> Vec<String> {
    if !model.tokenizer.multilingual {
        return vec!["en".into()];
    }
    let ids = &model.generation.lang_ids;
    ids.iter().filter_map(|&i| model.tokenizer.language_code(i).map(str::to_string)).collect()
}

/// Maps request options onto the decoding options; refuses what is not implemented.
pub fn whisper_options(options: &TranscribeOptions) -> Result<WhisperOptions, Error> {
    let mut o = WhisperOptions {
        language: options.language.clone(),
        task: options.task,
        initial_prompt: options.prompt.clone().filter(|p| !p.trim().is_empty()),
        word_timestamps: options.word_timestamps,
        ..Default::default()
    };
    if let Some(b) = options.beam_size {
        if !(1..=16).contains(&b) {
            return Err(Error::invalid("beam_size must be between 1 and 16"));
        }
        o.beam_size = b;
    }
    if let Some(t) = options.temperature {
        if !(0.0..=1.0).contains(&t) {
            return Err(Error::invalid("temperature must be between 0 and 1"));
        }
        o.temperatures = vec![t];
    }
    Ok(o)
}

/// What the model gets of a file: its features, and with `vad_filter` the map from the speech
/// it hears back to the file (and the file's length).
struct Prepared {
    features: Features,
    speech_map: Option<(TimeMap, f64)>,
}

/// Decodes the container, keeps only the speech when a VAD is given, and computes the features.
/// A decoder that panics on a malformed file makes the request fail with `internal_error`
/// rather than vanish.
fn prepare(audio: &[u8], mel: &LogMel, limits: &DecodeLimits, vad: Option<&SileroVad>) -> Result<Prepared, Error> {
    catch_unwind(AssertUnwindSafe(|| {
        let pcm = decode_with_limits(audio, limits)?;
        let Some(vad) = vad else {
            return Ok(Prepared { features: Features::compute(mel, &pcm), speech_map: None });
        };
        let speech = keep_speech(vad, &pcm, &file_params())?;
        let file_seconds = pcm.len() as f64 / f64::from(super::vad::SAMPLE_RATE);
        Ok(Prepared { features: Features::compute(mel, &speech.audio), speech_map: Some((speech.map, file_seconds)) })
    }))
    .unwrap_or_else(|_| Err(Error::internal("preparing the audio panicked")))
}

/// The model's part of a file request: decoding, segment by segment, while the caller listens.
fn run_file(model: &mut WhisperModel, prepared: &Prepared, opts: &WhisperOptions, out: &TranscriptSender) {
    if out.is_closed() {
        return;
    }
    let send = |event| out.blocking_send(Ok(event)).is_ok();
    if let Some((_, file_seconds)) = &prepared.speech_map {
        if prepared.features.duration == 0.0 {
            // No speech at all: nothing for the model to hear, and nothing to say.
            let language = opts.language.clone().unwrap_or_else(|| "en".into());
            send(TranscriptEvent::Started { language, duration: *file_seconds });
            return;
        }
    }
    // A caller that goes away stops the decoding before its next step.
    let gone = || out.is_closed();
    let result = transcribe_until(model, &prepared.features, opts, &gone, |event| match &prepared.speech_map {
        Some((map, file_seconds)) => send(map.event(event, *file_seconds)),
        None => send(event),
    });
    if let Err(e) = result {
        let _ = out.blocking_send(Err(e));
    }
}

type TranscriptSender = mpsc::Sender<Result<TranscriptEvent, Error>>;

/// Transcribes 16 kHz PCM of a live session on a model's worker and waits for the result;
/// the features are computed here, before the queue. `cancelled` stops the decoding early.
pub(crate) fn decode_pcm(
    worker: &Worker<WhisperModel>,
    mel: &LogMel,
    audio: &[f32],
    opts: &WhisperOptions,
    cancelled: &live::Cancelled,
) -> Result<Decoded, Error> {
    let slot = worker.reserve()?;
    let features = Features::compute(mel, audio);
    let (tx, mut rx) = mpsc::channel(1);
    let (opts, cancelled) = (opts.clone(), cancelled.clone());
    slot.send("live", tx, move |model: &mut WhisperModel, out| {
        let mut decoded = Decoded::default();
        let stop = || cancelled();
        let result = transcribe_until(model, &features, &opts, &stop, |event| {
            match event {
                TranscriptEvent::Started { language, .. } => decoded.language = language,
                TranscriptEvent::Segment(s) => decoded.segments.push(s),
            }
            !cancelled()
        });
        let _ = out.blocking_send(result.map(|()| decoded));
    });
    rx.blocking_recv().unwrap_or_else(|| Err(Error::internal(format!("{}: the model thread stopped", worker.name()))))
}

impl Transcriber for WhisperEngine {
    fn models(&self) -> Vec<ModelInfo> {
        self.models.iter().map(|m| m.info.clone()).collect()
    }

    fn transcribe(&self, audio: Vec<u8>, options: TranscribeOptions) -> Result<TranscriptStream, Error> {
        let model = self.model(&options)?;
        let opts = whisper_options(&options)?;
        let slot = model.worker.reserve()?;
        let (tx, rx) = mpsc::channel(STREAM_BUFFER);
        let vad =
            match (options.vad_filter, &self.vad) {
                (false, _) => None,
                (true, Some(vad)) => Some(vad.clone()),
                (true, None) => return Err(Error::not_found(
                    "vad_filter needs the Silero VAD model, which is not loaded (smai models pull --only silero-vad)",
                )),
            };
        let (mel, limits) = (model.mel.clone(), self.limits);
        rayon::spawn(move || {
            let span = slot.span().clone();
            let _entered = span.enter();
            match prepare(&audio, &mel, &limits, vad.as_deref()) {
                Err(e) => {
                    let _ = tx.try_send(Err(e));
                }
                Ok(_) if tx.is_closed() => {}
                Ok(prepared) => slot.send("transcribe", tx, move |model, out| run_file(model, &prepared, &opts, out)),
            }
        });
        Ok(rx)
    }

    fn measure(&self, audio: &[u8], budget_seconds: f64) -> Result<Option<AudioLength>, Error> {
        // Past the cap the file is refused whatever the key's budget.
        let cap = self.limits.max_seconds as f64;
        let probe = catch_unwind(AssertUnwindSafe(|| probe_duration(audio, budget_seconds.min(cap))))
            .unwrap_or_else(|_| Err(Error::internal("measuring the audio panicked")))?;
        if probe.seconds > cap {
            return Err(self.limits.too_long());
        }
        Ok(Some(AudioLength { seconds: probe.seconds, within_budget: probe.within_budget }))
    }

    fn open_live(&self, options: TranscribeOptions) -> Result<LiveSession, Error> {
        let Some(settings) = options.live_vad else {
            let transcription = self.open_stream(StreamOptions { transcribe: options, ..Default::default() })?;
            return live_session::spawn_session(transcription, None, false);
        };
        let vad = self.vad.clone().ok_or_else(|| {
            Error::not_found(
                "server-side endpointing needs the Silero VAD model, which is not loaded \
                 (smai models pull --only silero-vad); or end utterances yourself (vad mode manual)",
            )
        })?;
        // Utterances end at the VAD's decision; what settles inside one becomes the stable
        // start of its partials and comes out with its finals.
        let finals_only = options.finals_only;
        let stream = StreamOptions { settle_at_sentence_ends: true, transcribe: options, ..Default::default() };
        let transcription = self.open_stream(stream)?.with_greedy_partials().with_stable_partials();
        live_session::spawn_session(transcription, Some(Endpointer::new(vad, settings)), finals_only)
    }

    fn supports_live_vad(&self) -> bool {
        self.vad.is_some()
    }

    fn health(&self) -> EngineHealth {
        self.models
            .iter()
            .map(|m| m.worker.health())
            .find(|h| *h != EngineHealth::Serving)
            .unwrap_or(EngineHealth::Serving)
    }
}

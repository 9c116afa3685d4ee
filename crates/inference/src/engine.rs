//! The Whisper engine behind `smai_core::Transcriber`: each loaded model runs on its own
//! worker thread and takes jobs from a bounded queue, so a full queue is refused at once
//! (`overloaded`) instead of piling up, and a caller that goes away stops its decoding.

use crate::audio::decode_to_mono_16k;
use crate::stream::{LiveTranscription, StreamOptions};
use crate::whisper::{transcribe, transcribe_features, Features, WhisperModel, WhisperOptions};
use candle_core::{Device, Tensor};
use smai_core::{Error, ModelInfo, Segment, TranscribeOptions, Transcriber, TranscriptEvent, TranscriptStream};
use std::path::Path;
use std::sync::mpsc::{sync_channel, SyncSender, TrySendError};
use std::time::Duration;
use tokio::sync::mpsc;

/// Events buffered per request before the worker waits for the caller.
const STREAM_BUFFER: usize = 64;
/// How long a batching worker waits for requests arriving together with the first one.
const GATHER: Duration = Duration::from_millis(5);

/// Work for a model's thread: an encoded file whose events stream back, or decoded 16 kHz
/// PCM whose segments come back at once (live sessions, stream.rs).
pub(crate) enum Job {
    File { audio: Vec<u8>, options: TranscribeOptions, out: mpsc::Sender<Result<TranscriptEvent, Error>> },
    Pcm { audio: Vec<f32>, options: TranscribeOptions, reply: SyncSender<Result<Vec<Segment>, Error>> },
}

struct Worker {
    info: ModelInfo,
    queue: SyncSender<Job>,
}

pub struct WhisperEngine {
    workers: Vec<Worker>,
    default_model: String,
}

/// `cpu`, `cuda` or `metal` (the latter two need the crate feature of that name).
pub fn device_from_name(name: &str) -> Result<Device, Error> {
    match name {
        "cpu" => Ok(Device::Cpu),
        "cuda" => Device::new_cuda(0).map_err(|e| Error::invalid(format!("cuda device unavailable: {e}"))),
        "metal" => Device::new_metal(0).map_err(|e| Error::invalid(format!("metal device unavailable: {e}"))),
        other => Err(Error::invalid(format!("unknown device {other:?} (cpu, cuda, metal)"))),
    }
}

impl WhisperEngine {
    /// Loads each model id from `<models_dir>/<id>` on its own thread; the first is the default.
    /// `queue_depth` jobs may wait per model beyond the one being decoded. Each request is
    /// encoded alone: batching the first windows of waiting requests (`load_batched`) measured
    /// no gain with the `asr_concurrency` example, neither on a 2-core CPU (1.08x slower) nor
    /// on an H200 with tiny.en (1.00x at 4 requests, 1.07x at 8), where the token-by-token
    /// decoder, not the encoder, takes the time.
    pub fn load(models_dir: &Path, ids: &[String], device: &Device, queue_depth: usize) -> Result<Self, Error> {
        Self::load_batched(models_dir, ids, device, queue_depth, 1)
    }

    /// Like [`WhisperEngine::load`], encoding up to `max_batch` waiting requests' first
    /// windows together.
    pub fn load_batched(
        models_dir: &Path,
        ids: &[String],
        device: &Device,
        queue_depth: usize,
        max_batch: usize,
    ) -> Result<Self, Error> {
        let max_batch = max_batch.max(1);
        let default_model = ids.first().cloned().ok_or_else(|| Error::invalid("no Whisper model to load"))?;
        let mut workers = Vec::new();
        for id in ids {
            let dir = models_dir.join(id);
            let (ready_tx, ready_rx) = sync_channel::<Result<ModelInfo, Error>>(1);
            let (queue, jobs) = sync_channel::<Job>(queue_depth);
            let (id_owned, device) = (id.clone(), device.clone());
            std::thread::Builder::new()
                .name(format!("whisper-{id}"))
                .spawn(move || {
                    let mut model = match WhisperModel::load(&id_owned, &dir, &device) {
                        Ok(m) => m,
                        Err(e) => {
                            let _ = ready_tx.send(Err(Error::internal(e)));
                            return;
                        }
                    };
                    let info = ModelInfo {
                        id: id_owned.clone(),
                        languages: model_languages(&model),
                        multilingual: model.tokenizer.multilingual,
                    };
                    if ready_tx.send(Ok(info)).is_err() {
                        return;
                    }
                    while let Ok(job) = jobs.recv() {
                        let mut batch = vec![job];
                        while batch.len() < max_batch {
                            match jobs.recv_timeout(GATHER) {
                                Ok(job) => batch.push(job),
                                Err(_) => break,
                            }
                        }
                        run_batch(&mut model, batch);
                    }
                })
                .map_err(Error::internal)?;
            let info = ready_rx.recv().map_err(|_| Error::internal(format!("worker for {id} exited")))??;
            workers.push(Worker { info, queue });
        }
        Ok(Self { workers, default_model })
    }
}

impl WhisperEngine {
    fn worker(&self, options: &TranscribeOptions) -> Result<&Worker, Error> {
        let id = options.model.as_deref().unwrap_or(&self.default_model);
        self.workers
            .iter()
            .find(|w| w.info.id == id)
            .ok_or_else(|| Error::not_found(format!("model {id:?} is not loaded")))
    }

    /// Opens a live transcription on the model `options.transcribe.model` names (or the
    /// default one); its decoding shares that model's queue with file requests.
    pub fn open_stream(&self, options: StreamOptions) -> Result<LiveTranscription, Error> {
        let worker = self.worker(&options.transcribe)?;
        whisper_options(&options.transcribe)?;
        LiveTranscription::new(worker.queue.clone(), options)
    }
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

/// Runs jobs taken from the queue together: the first windows of the files go through the
/// encoder as one batch, then each file is decoded in turn; live-session PCM runs alone.
fn run_batch(model: &mut WhisperModel, jobs: Vec<Job>) {
    let mut ready = Vec::with_capacity(jobs.len());
    for job in jobs {
        match job {
            Job::Pcm { audio, options, reply } => run_pcm(model, audio, options, reply),
            Job::File { out, .. } if out.is_closed() => {}
            Job::File { audio, options, out } => {
                let prepared = whisper_options(&options).and_then(|opts| {
                    let audio = decode_to_mono_16k(&audio)?;
                    Ok((opts, Features::compute(model, &audio)))
                });
                match prepared {
                    Ok((opts, features)) => ready.push((out, opts, features)),
                    Err(e) => {
                        let _ = out.blocking_send(Err(e));
                    }
                }
            }
        }
    }
    let mut encoded: Vec<Option<Tensor>> = vec![None; ready.len()];
    if ready.len() > 1 {
        let n_mels = model.mel.n_mels();
        let windows: Vec<Vec<f32>> = ready.iter().map(|(_, _, f)| f.first_window(n_mels)).collect();
        // On failure each request encodes its own window below, as it would alone.
        if let Ok(batch) = model.encode_batch(&windows) {
            encoded = (0..ready.len()).map(|i| batch.narrow(0, i, 1).ok()).collect();
        }
    }
    for ((out, opts, features), first) in ready.into_iter().zip(encoded) {
        if out.is_closed() {
            continue;
        }
        let result = transcribe_features(model, &features, first, &opts, |event| out.blocking_send(Ok(event)).is_ok());
        if let Err(e) = result {
            let _ = out.blocking_send(Err(e));
        }
    }
}

fn run_pcm(
    model: &mut WhisperModel,
    audio: Vec<f32>,
    options: TranscribeOptions,
    reply: SyncSender<Result<Vec<Segment>, Error>>,
) {
    let mut segments = Vec::new();
    let result = whisper_options(&options).and_then(|opts| {
        transcribe(model, &audio, &opts, |event| {
            if let TranscriptEvent::Segment(s) = event {
                segments.push(s);
            }
            true
        })
    });
    let _ = reply.send(result.map(|()| segments));
}

/// Transcribes 16 kHz PCM on a model's thread and waits for the segments.
pub(crate) fn decode_pcm(
    queue: &SyncSender<Job>,
    audio: Vec<f32>,
    options: TranscribeOptions,
) -> Result<Vec<Segment>, Error> {
    let (reply, answer) = sync_channel(1);
    match queue.try_send(Job::Pcm { audio, options, reply }) {
        Ok(()) => {}
        Err(TrySendError::Full(_)) => return Err(Error::overloaded(Duration::from_secs(1))),
        Err(TrySendError::Disconnected(_)) => return Err(Error::internal("the model's worker stopped")),
    }
    answer.recv().map_err(|_| Error::internal("the model's worker stopped"))?
}

impl Transcriber for WhisperEngine {
    fn models(&self) -> Vec<ModelInfo> {
        self.workers.iter().map(|w| w.info.clone()).collect()
    }

    fn transcribe(&self, audio: Vec<u8>, options: TranscribeOptions) -> Result<TranscriptStream, Error> {
        let worker = self.worker(&options)?;
        let id = &worker.info.id;
        whisper_options(&options)?;
        let (tx, rx) = mpsc::channel(STREAM_BUFFER);
        match worker.queue.try_send(Job::File { audio, options, out: tx }) {
            Ok(()) => Ok(rx),
            Err(TrySendError::Full(_)) => Err(Error::overloaded(Duration::from_secs(1))),
            Err(TrySendError::Disconnected(_)) => Err(Error::internal(format!("worker of {id} stopped"))),
        }
    }

    fn open_live(&self, _options: TranscribeOptions) -> Result<smai_core::LiveSession, Error> {
        Err(Error::internal("live sessions are not wired to this engine yet"))
    }
}

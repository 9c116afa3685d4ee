//! Engines wrapped so that every route using them is measured the same way: jobs in flight,
//! audio seconds, real-time factor and time to first audio. Each job's results pass through a
//! small forwarding task; a caller that goes away is passed on to the engine at once, because
//! the task then drops the engine's stream.

use super::{InFlight, Metrics, ModelLabels, ServiceLabels, VoiceLabels};
use smai_core::{
    AudioChunk, AudioLength, AudioStream, EngineHealth, Error, LiveSession, ModelInfo, SpeechOptions, Synthesizer,
    TranscribeOptions, Transcriber, TranscriptEvent, TranscriptStream, VoiceInfo,
};
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::mpsc;

pub struct MeteredTranscriber {
    inner: Arc<dyn Transcriber>,
    metrics: Arc<Metrics>,
}

impl MeteredTranscriber {
    pub fn new(inner: Arc<dyn Transcriber>, metrics: Arc<Metrics>) -> Self {
        Self { inner, metrics }
    }
}

impl Transcriber for MeteredTranscriber {
    fn models(&self) -> Vec<ModelInfo> {
        self.inner.models()
    }

    fn transcribe(&self, audio: Vec<u8>, options: TranscribeOptions) -> Result<TranscriptStream, Error> {
        // The engine refuses unknown models, so an accepted job's model is a loaded one.
        let models = self.inner.models();
        let model = match &options.model {
            Some(id) => models.iter().find(|m| &m.id == id),
            None => models.first(),
        }
        .map_or_else(|| "unknown".to_owned(), |m| m.id.clone());
        let inner = self.inner.transcribe(audio, options)?;
        let metrics = self.metrics.clone();
        let observe = |started: &mut Option<(f64, Instant)>, event: &TranscriptEvent| {
            if let TranscriptEvent::Started { duration, .. } = event {
                // The worker sends this once it has the job, so queue time stays out.
                *started = Some((*duration, Instant::now()));
            }
        };
        let finish = move |started: Option<(f64, Instant)>| {
            if let Some((seconds, working)) = started.filter(|(s, _)| *s > 0.0) {
                metrics.asr_audio_seconds.get_or_create(&ModelLabels { model }).inc_by(seconds);
                let ratio = working.elapsed().as_secs_f64() / seconds;
                metrics.real_time_factor.get_or_create(&ServiceLabels { service: "asr".into() }).observe(ratio);
            }
        };
        Ok(relay(inner, self.metrics.in_flight("asr"), None, observe, finish))
    }

    fn measure(&self, audio: &[u8], budget_seconds: f64) -> Result<Option<AudioLength>, Error> {
        self.inner.measure(audio, budget_seconds)
    }

    fn supports_live_vad(&self) -> bool {
        self.inner.supports_live_vad()
    }

    fn open_live(&self, options: TranscribeOptions) -> Result<LiveSession, Error> {
        self.inner.open_live(options)
    }

    fn health(&self) -> EngineHealth {
        self.inner.health()
    }
}

pub struct MeteredSynthesizer {
    inner: Arc<dyn Synthesizer>,
    metrics: Arc<Metrics>,
}

impl MeteredSynthesizer {
    pub fn new(inner: Arc<dyn Synthesizer>, metrics: Arc<Metrics>) -> Self {
        Self { inner, metrics }
    }
}

impl Synthesizer for MeteredSynthesizer {
    fn voices(&self) -> Vec<VoiceInfo> {
        self.inner.voices()
    }

    fn synthesize(&self, text: String, options: SpeechOptions) -> Result<AudioStream, Error> {
        // The engine refuses unknown voices, so an accepted job's voice is a loaded one.
        let voice = VoiceLabels { voice: options.voice.clone() };
        let started = Instant::now();
        let inner = self.inner.synthesize(text, options)?;
        let (metrics, first_audio) = (self.metrics.clone(), self.metrics.clone());
        let first_voice = voice.clone();
        // State: seconds of audio so far, and whether the first audio has been seen.
        let observe = move |(seconds, heard): &mut (f64, bool), audio: &AudioChunk| {
            if !*heard && !audio.samples.is_empty() {
                *heard = true;
                first_audio
                    .tts_time_to_first_audio
                    .get_or_create(&first_voice)
                    .observe(started.elapsed().as_secs_f64());
            }
            if audio.sample_rate > 0 {
                *seconds += audio.samples.len() as f64 / f64::from(audio.sample_rate);
            }
        };
        let finish = move |(seconds, _): (f64, bool)| {
            if seconds > 0.0 {
                metrics.tts_audio_seconds.get_or_create(&voice).inc_by(seconds);
                let ratio = started.elapsed().as_secs_f64() / seconds;
                metrics.real_time_factor.get_or_create(&ServiceLabels { service: "tts".into() }).observe(ratio);
            }
        };
        Ok(relay(inner, self.metrics.in_flight("tts"), (0.0, false), observe, finish))
    }

    fn health(&self) -> EngineHealth {
        self.inner.health()
    }
}

/// Forwards an engine's stream to a new one, showing each good item to `observe` (with the
/// job's `state`). `finish` gets the state once the engine's stream ends normally: not after
/// an error, nor when the caller has gone (then the engine's stream is dropped at once).
fn relay<T: Send + 'static, S: Send + 'static>(
    mut inner: mpsc::Receiver<Result<T, Error>>,
    in_flight: InFlight,
    mut state: S,
    mut observe: impl FnMut(&mut S, &T) + Send + 'static,
    finish: impl FnOnce(S) + Send + 'static,
) -> mpsc::Receiver<Result<T, Error>> {
    let (tx, rx) = mpsc::channel(4);
    tokio::spawn(async move {
        // Declared in this order so the gauge drops before the caller sees the end.
        let tx = tx;
        let _in_flight = in_flight;
        loop {
            let item = tokio::select! {
                item = inner.recv() => item,
                _ = tx.closed() => return,
            };
            let Some(item) = item else { break };
            let failed = item.is_err();
            if let Ok(value) = &item {
                observe(&mut state, value);
            }
            if tx.send(item).await.is_err() || failed {
                return;
            }
        }
        finish(state);
    });
    rx
}

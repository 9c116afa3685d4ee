//! Engines wrapped so that every route using them is measured the same way: jobs in flight,
//! audio seconds, real-time factor and time to first audio. Each job's results pass through a
//! small forwarding task; a caller that goes away is passed on to the engine at once, because
//! the task then drops the engine's stream.

use super::{Metrics, ModelLabels, ServiceLabels, VoiceLabels};
use smai_core::{
    AudioStream, Error, ModelInfo, SpeechOptions, Synthesizer, TranscribeOptions, TranscriptEvent, TranscriptStream,
    Transcriber, VoiceInfo,
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
        let mut inner = self.inner.transcribe(audio, options)?;
        let in_flight = self.metrics.in_flight("asr");
        let metrics = self.metrics.clone();
        let (tx, rx) = mpsc::channel(4);
        tokio::spawn(async move {
            // Declared in this order so the gauge drops before the caller sees the end.
            let tx = tx;
            let _in_flight = in_flight;
            let mut duration = None;
            loop {
                let event = tokio::select! {
                    event = inner.recv() => event,
                    _ = tx.closed() => return,
                };
                let Some(event) = event else { break };
                let failed = event.is_err();
                if let Ok(TranscriptEvent::Started { duration: seconds, .. }) = &event {
                    // The worker sends this once it has the job, so queue time stays out.
                    duration = Some((*seconds, Instant::now()));
                }
                if tx.send(event).await.is_err() || failed {
                    return;
                }
            }
            if let Some((seconds, working)) = duration.filter(|(s, _)| *s > 0.0) {
                metrics.asr_audio_seconds.get_or_create(&ModelLabels { model }).inc_by(seconds);
                let ratio = working.elapsed().as_secs_f64() / seconds;
                metrics.real_time_factor.get_or_create(&ServiceLabels { service: "asr".into() }).observe(ratio);
            }
        });
        Ok(rx)
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
        let mut inner = self.inner.synthesize(text, options)?;
        let in_flight = self.metrics.in_flight("tts");
        let metrics = self.metrics.clone();
        let (tx, rx) = mpsc::channel(4);
        tokio::spawn(async move {
            // Declared in this order so the gauge drops before the caller sees the end.
            let tx = tx;
            let _in_flight = in_flight;
            let mut seconds = 0.0;
            let mut first = true;
            loop {
                let chunk = tokio::select! {
                    chunk = inner.recv() => chunk,
                    _ = tx.closed() => return,
                };
                let Some(chunk) = chunk else { break };
                let failed = chunk.is_err();
                if let Ok(audio) = &chunk {
                    if first && !audio.samples.is_empty() {
                        first = false;
                        metrics.tts_time_to_first_audio.get_or_create(&voice).observe(started.elapsed().as_secs_f64());
                    }
                    if audio.sample_rate > 0 {
                        seconds += audio.samples.len() as f64 / f64::from(audio.sample_rate);
                    }
                }
                if tx.send(chunk).await.is_err() || failed {
                    return;
                }
            }
            if seconds > 0.0 {
                metrics.tts_audio_seconds.get_or_create(&voice).inc_by(seconds);
                let ratio = started.elapsed().as_secs_f64() / seconds;
                metrics.real_time_factor.get_or_create(&ServiceLabels { service: "tts".into() }).observe(ratio);
            }
        });
        Ok(rx)
    }
}

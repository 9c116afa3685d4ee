//! Engines whose weights are still loading. The server listens at once (health checks, and
//! Wyoming's `describe`, which Home Assistant gives a second, are answered); the model and
//! voice lists come from the installed files' descriptions, readiness says "loading", and
//! calls are refused with 503 and a retry time until the weights are in.

use smai_core::{
    AudioLength, AudioStream, EngineHealth, Error, ErrorCode, LiveSession, ModelInfo, SpeechOptions, SpeechSession,
    Synthesizer, TranscribeOptions, Transcriber, TranscriptStream, VoiceInfo,
};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

const LOADING: &str = "models are loading";

fn loading() -> Error {
    Error::new(ErrorCode::Overloaded, format!("{LOADING}; retry shortly")).with_retry_after(Duration::from_secs(2))
}

/// An engine that arrives once its weights are in; until then calls are refused as loading.
struct Pending<T: ?Sized>(OnceLock<Arc<T>>);

impl<T: ?Sized> Pending<T> {
    fn new() -> Self {
        Self(OnceLock::new())
    }

    fn set(&self, engine: Arc<T>) {
        let _ = self.0.set(engine);
    }

    fn engine(&self) -> Result<&Arc<T>, Error> {
        self.0.get().ok_or_else(loading)
    }

    /// `loaded(engine)` once it is in, else `planned`.
    fn either<R>(&self, planned: impl FnOnce() -> R, loaded: impl FnOnce(&Arc<T>) -> R) -> R {
        self.0.get().map_or_else(planned, loaded)
    }

    fn health(&self, loaded: impl FnOnce(&Arc<T>) -> EngineHealth) -> EngineHealth {
        self.either(|| EngineHealth::Unhealthy(LOADING.into()), loaded)
    }
}

/// A transcriber that is a list of models until [`LoadingTranscriber::loaded`] fills it in.
pub struct LoadingTranscriber {
    planned: Vec<ModelInfo>,
    /// Whether live sessions will have a VAD (it is installed).
    planned_vad: bool,
    engine: Pending<dyn Transcriber>,
}

impl LoadingTranscriber {
    pub fn new(planned: Vec<ModelInfo>, planned_vad: bool) -> Self {
        Self { planned, planned_vad, engine: Pending::new() }
    }

    /// The loaded engine takes over every call from now on.
    pub fn loaded(&self, engine: Arc<dyn Transcriber>) {
        self.engine.set(engine);
    }
}

impl Transcriber for LoadingTranscriber {
    fn models(&self) -> Vec<ModelInfo> {
        self.engine.either(|| self.planned.clone(), |e| e.models())
    }
    fn transcribe(&self, audio: Vec<u8>, options: TranscribeOptions) -> Result<TranscriptStream, Error> {
        self.engine.engine()?.transcribe(audio, options)
    }
    fn measure(&self, audio: &[u8], budget_seconds: f64) -> Result<Option<AudioLength>, Error> {
        self.engine.engine()?.measure(audio, budget_seconds)
    }
    fn open_live(&self, options: TranscribeOptions) -> Result<LiveSession, Error> {
        self.engine.engine()?.open_live(options)
    }
    fn supports_live_vad(&self) -> bool {
        self.engine.either(|| self.planned_vad, |e| e.supports_live_vad())
    }
    fn health(&self) -> EngineHealth {
        self.engine.health(|e| e.health())
    }
}

/// A synthesizer that is a list of voices until [`LoadingSynthesizer::loaded`] fills it in.
pub struct LoadingSynthesizer {
    planned: Vec<VoiceInfo>,
    engine: Pending<dyn Synthesizer>,
}

impl LoadingSynthesizer {
    pub fn new(planned: Vec<VoiceInfo>) -> Self {
        Self { planned, engine: Pending::new() }
    }

    pub fn loaded(&self, engine: Arc<dyn Synthesizer>) {
        self.engine.set(engine);
    }
}

impl Synthesizer for LoadingSynthesizer {
    fn voices(&self) -> Vec<VoiceInfo> {
        self.engine.either(|| self.planned.clone(), |e| e.voices())
    }
    fn synthesize(&self, text: String, options: SpeechOptions) -> Result<AudioStream, Error> {
        self.engine.engine()?.synthesize(text, options)
    }
    fn open_text_stream(self: Arc<Self>, options: SpeechOptions) -> Result<SpeechSession, Error> {
        self.engine.engine()?.clone().open_text_stream(options)
    }
    fn health(&self) -> EngineHealth {
        self.engine.health(|e| e.health())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_loading_engine_lists_its_plan_refuses_calls_and_then_delegates() {
        let planned = ModelInfo { id: "tiny.en".into(), languages: vec!["en".into()], multilingual: false };
        let loading = LoadingTranscriber::new(vec![planned.clone()], true);
        assert_eq!(loading.models(), vec![planned]);
        assert!(loading.supports_live_vad());
        assert!(matches!(loading.health(), EngineHealth::Unhealthy(m) if m == LOADING));
        let refused = loading.transcribe(Vec::new(), TranscribeOptions::default()).unwrap_err();
        assert_eq!(refused.code, ErrorCode::Overloaded);
        assert!(refused.retry_after.is_some(), "a retry time comes with the refusal");
    }
}

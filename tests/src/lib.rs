//! Shared pieces of the end-to-end tests: a server on port 0 with a real SQLite file and an
//! injectable clock, and small fake engines for tests that are about the server, not models.

pub mod prometheus;

use smai_auth::NewKey;
use smai_core::{
    AudioChunk, AudioStream, Error, ManualClock, ModelInfo, Segment, SpeechOptions, Synthesizer, SystemClock, Clock,
    TranscribeOptions, TranscriptEvent, TranscriptStream, Transcriber, VoiceAccess, VoiceInfo, Service, Tier,
};
use smai_server::serve::{Engines, RunningServer};
use smai_server::ServeConfig;
use std::collections::BTreeSet;
use std::sync::Arc;
use tokio::sync::mpsc;

/// Synthesises a fixed 0.1 s tone per request at 16 kHz.
pub struct ToneSynthesizer;

impl Synthesizer for ToneSynthesizer {
    fn voices(&self) -> Vec<VoiceInfo> {
        ["joe", "joe-slow"]
            .into_iter()
            .map(|id| VoiceInfo { id: id.into(), language: "en_US".into(), sample_rate: 16_000, quality: "medium".into() })
            .collect()
    }
    fn synthesize(&self, _text: String, _options: SpeechOptions) -> Result<AudioStream, Error> {
        let (tx, rx) = mpsc::channel(4);
        let samples = (0..1600).map(|i| (i as f32 * 0.05).sin() * 0.5).collect();
        tx.try_send(Ok(AudioChunk { samples, sample_rate: 16_000 })).expect("fresh channel has room");
        Ok(rx)
    }
}

/// Answers every upload with one segment whose text counts the bytes it got.
pub struct ByteCountTranscriber;

impl Transcriber for ByteCountTranscriber {
    fn models(&self) -> Vec<ModelInfo> {
        vec![ModelInfo { id: "tiny.en".into(), languages: vec!["en".into()], multilingual: false }]
    }
    fn transcribe(&self, audio: Vec<u8>, _options: TranscribeOptions) -> Result<TranscriptStream, Error> {
        let (tx, rx) = mpsc::channel(4);
        let segment = Segment {
            id: 0,
            start: 0.0,
            end: 1.0,
            text: format!(" received {} bytes", audio.len()),
            tokens: vec![],
            temperature: 0.0,
            avg_logprob: 0.0,
            compression_ratio: 1.0,
            no_speech_prob: 0.0,
            words: vec![],
        };
        tx.try_send(Ok(TranscriptEvent::Started { language: "en".into(), duration: 1.25 })).expect("room");
        tx.try_send(Ok(TranscriptEvent::Segment(segment))).expect("room");
        Ok(rx)
    }
}

/// Holds every transcription open until `release` is set, to keep requests in flight.
pub struct HeldTranscriber {
    pub release: tokio::sync::watch::Receiver<bool>,
}

impl Transcriber for HeldTranscriber {
    fn models(&self) -> Vec<ModelInfo> {
        ByteCountTranscriber.models()
    }
    fn transcribe(&self, audio: Vec<u8>, options: TranscribeOptions) -> Result<TranscriptStream, Error> {
        let mut inner = ByteCountTranscriber.transcribe(audio, options)?;
        let (tx, rx) = mpsc::channel(4);
        let mut release = self.release.clone();
        tokio::spawn(async move {
            if let Some(started) = inner.recv().await {
                let _ = tx.send(started).await;
            }
            let _ = release.wait_for(|open| *open).await;
            while let Some(event) = inner.recv().await {
                let _ = tx.send(event).await;
            }
        });
        Ok(rx)
    }
}

pub struct TestServer {
    pub server: RunningServer,
    pub clock: ManualClock,
    pub db: std::path::PathBuf,
    pub base: String,
    pub dir: tempfile::TempDir,
}

impl TestServer {
    pub async fn start() -> Self {
        Self::start_with(|_| {}).await
    }

    pub async fn start_with(configure: impl FnOnce(&mut ServeConfig)) -> Self {
        let engines = Engines { transcriber: Some(Arc::new(ByteCountTranscriber)), synthesizer: Some(Arc::new(ToneSynthesizer)) };
        Self::start_full(configure, engines).await
    }

    pub async fn start_full(configure: impl FnOnce(&mut ServeConfig), engines: Engines) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let db = dir.path().join("smai.db");
        let mut config = ServeConfig::for_tests(db.clone());
        configure(&mut config);
        let clock = ManualClock::new(SystemClock.now_ms());
        let server = smai_server::start(&config, Arc::new(clock.clone()), engines).await.expect("server starts");
        let base = format!("http://{}", server.addr);
        Self { server, clock, db, base, dir }
    }

    pub async fn create_key(&self, services: &[Service], voices: VoiceAccess, expires_in_ms: Option<i64>) -> (String, String) {
        let new = NewKey {
            org: "acme".into(),
            name: Some("test".into()),
            services: services.iter().copied().collect::<BTreeSet<_>>(),
            voices,
            tier: Tier::default(),
            expires_in_ms,
        };
        let (record, key) = self.server.state.authenticator.store().create(&new).await.expect("key created");
        (record.id, key.as_str().to_owned())
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }
}

//! Shared pieces of the end-to-end tests: a server on port 0 with a real SQLite file and an
//! injectable clock, and small fake engines for tests that are about the server, not models.

pub mod prometheus;
pub mod real;
pub mod tls;
pub mod ws;
pub mod wyoming;

use smai_auth::NewKey;
use smai_core::{
    AudioChunk, AudioStream, Clock, Error, LiveEvent, LiveInput, LiveSession, ManualClock, ModelInfo, Segment, Service,
    SpeechOptions, Synthesizer, SystemClock, Tier, TranscribeOptions, Transcriber, TranscriptEvent, TranscriptStream,
    VoiceAccess, VoiceInfo, Word,
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
            .map(|id| VoiceInfo {
                id: id.into(),
                language: "en_US".into(),
                sample_rate: 16_000,
                quality: "medium".into(),
            })
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
            end: 1.0,
            text: format!(" received {} bytes", audio.len()),
            compression_ratio: 1.0,
            ..Default::default()
        };
        tx.try_send(Ok(TranscriptEvent::Started { language: "en".into(), duration: 1.25 })).expect("room");
        tx.try_send(Ok(TranscriptEvent::Segment(segment))).expect("room");
        Ok(rx)
    }
    fn open_live(&self, _options: TranscribeOptions) -> Result<LiveSession, Error> {
        Ok(counting_live_session())
    }
}

/// A live session that counts what it hears: a partial after every chunk, and a final per
/// utterance (ended by a commit or by the end of the audio) saying how many samples it had.
pub fn counting_live_session() -> LiveSession {
    let (input, mut inputs) = mpsc::channel::<LiveInput>(16);
    let (tx, events) = mpsc::channel(16);
    tokio::spawn(async move {
        let (mut utterance, mut heard, mut offset) = (0u32, 0usize, 0.0f64);
        loop {
            let input = inputs.recv().await;
            let event = match input {
                Some(LiveInput::Audio(samples)) => {
                    heard += samples.len();
                    let text = format!(" hearing {heard} samples");
                    let end = offset + heard as f64 / 16_000.0;
                    LiveEvent::Partial { utterance, start: offset, end, stable_text: String::new(), text }
                }
                Some(LiveInput::Commit) | None if heard > 0 => {
                    let end = offset + heard as f64 / 16_000.0;
                    let text = format!(" heard {heard} samples");
                    let segment = Segment { start: offset, end, text, compression_ratio: 1.0, ..Default::default() };
                    let event = LiveEvent::Final { utterance, segment, language: "en".into() };
                    (utterance, heard, offset) = (utterance + 1, 0, end);
                    event
                }
                Some(LiveInput::Commit) => continue,
                None => return,
            };
            if tx.send(Ok(event)).await.is_err() {
                return;
            }
        }
    });
    LiveSession { input, events }
}

/// Holds every transcription open until `release` is set, to keep requests in flight.
pub struct HeldTranscriber {
    pub release: tokio::sync::watch::Receiver<bool>,
}

impl Transcriber for HeldTranscriber {
    fn models(&self) -> Vec<ModelInfo> {
        ByteCountTranscriber.models()
    }
    fn open_live(&self, options: TranscribeOptions) -> Result<LiveSession, Error> {
        ByteCountTranscriber.open_live(options)
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

/// Synthesises one 0.1 s tone per sentence (split on '.') at 22.05 kHz; every sentence after
/// the first waits until `release` is set, so a test can watch a stream mid-way.
pub struct GatedSynthesizer {
    pub release: tokio::sync::watch::Receiver<bool>,
}

pub const GATED_RATE: u32 = 22_050;

impl Synthesizer for GatedSynthesizer {
    fn voices(&self) -> Vec<VoiceInfo> {
        vec![VoiceInfo {
            id: "joe".into(),
            language: "en_US".into(),
            sample_rate: GATED_RATE,
            quality: "medium".into(),
        }]
    }
    fn synthesize(&self, text: String, _options: SpeechOptions) -> Result<AudioStream, Error> {
        let sentences = text.split('.').filter(|s| !s.trim().is_empty()).count().max(1);
        let (tx, rx) = mpsc::channel(1);
        let mut release = self.release.clone();
        tokio::spawn(async move {
            for i in 0..sentences {
                if i == 1 {
                    let _ = release.wait_for(|open| *open).await;
                }
                let samples = (0..2205).map(|n| ((n + i) as f32 * 0.07).sin() * 0.5).collect();
                if tx.send(Ok(AudioChunk { samples, sample_rate: GATED_RATE })).await.is_err() {
                    return;
                }
            }
        });
        Ok(rx)
    }
}

/// Answers with segments that spell out the options it was given, so tests can see what the
/// server passed through; reports an English-only `tiny.en` and a multilingual `base`.
pub struct EchoTranscriber;

impl Transcriber for EchoTranscriber {
    fn models(&self) -> Vec<ModelInfo> {
        vec![
            ModelInfo { id: "tiny.en".into(), languages: vec!["en".into()], multilingual: false },
            ModelInfo { id: "base".into(), languages: vec!["en".into(), "fr".into()], multilingual: true },
        ]
    }
    fn open_live(&self, options: TranscribeOptions) -> Result<LiveSession, Error> {
        ByteCountTranscriber.open_live(options)
    }
    fn transcribe(&self, audio: Vec<u8>, options: TranscribeOptions) -> Result<TranscriptStream, Error> {
        let (tx, rx) = mpsc::channel(8);
        let texts = [
            format!(
                " task={:?} model={} language={}.",
                options.task,
                options.model.as_deref().unwrap_or("-"),
                options.language.as_deref().unwrap_or("-")
            ),
            format!(
                " prompt={} temperature={}.",
                options.prompt.as_deref().unwrap_or("-"),
                options.temperature.map_or("-".to_owned(), |t| t.to_string())
            ),
            format!(
                " bytes={} words={}.{}",
                audio.len(),
                options.word_timestamps,
                if options.vad_filter { " vad=true" } else { "" }
            ),
        ];
        tx.try_send(Ok(TranscriptEvent::Started { language: "en".into(), duration: 3.0 })).expect("room");
        for (id, text) in texts.into_iter().enumerate() {
            let start = id as f64;
            let words = if options.word_timestamps {
                text.split_whitespace()
                    .enumerate()
                    .map(|(i, w)| Word {
                        word: format!(" {w}"),
                        start: start + i as f64 * 0.25,
                        end: start + (i + 1) as f64 * 0.25,
                        probability: 0.9,
                    })
                    .collect()
            } else {
                vec![]
            };
            let segment = Segment {
                id,
                start,
                end: start + 1.0,
                text,
                avg_logprob: -0.1,
                compression_ratio: 1.0,
                words,
                ..Default::default()
            };
            tx.try_send(Ok(TranscriptEvent::Segment(segment))).expect("room");
        }
        Ok(rx)
    }
}

/// A transcriber with a bounded queue like the real engine's: at most `capacity` jobs are
/// held (until `release` is set); one more is refused with `overloaded` at once.
pub struct QueuedTranscriber {
    pub capacity: usize,
    pub queued: Arc<std::sync::atomic::AtomicUsize>,
    pub release: tokio::sync::watch::Receiver<bool>,
}

impl Transcriber for QueuedTranscriber {
    fn models(&self) -> Vec<ModelInfo> {
        ByteCountTranscriber.models()
    }
    fn open_live(&self, options: TranscribeOptions) -> Result<LiveSession, Error> {
        ByteCountTranscriber.open_live(options)
    }
    fn transcribe(&self, audio: Vec<u8>, options: TranscribeOptions) -> Result<TranscriptStream, Error> {
        use std::sync::atomic::Ordering;
        if self.queued.fetch_add(1, Ordering::SeqCst) >= self.capacity {
            self.queued.fetch_sub(1, Ordering::SeqCst);
            return Err(Error::overloaded(std::time::Duration::from_secs(2)));
        }
        let mut inner = ByteCountTranscriber.transcribe(audio, options)?;
        let (tx, rx) = mpsc::channel(4);
        let (mut release, queued) = (self.release.clone(), self.queued.clone());
        tokio::spawn(async move {
            let _ = release.wait_for(|open| *open).await;
            queued.fetch_sub(1, Ordering::SeqCst);
            while let Some(event) = inner.recv().await {
                let _ = tx.send(event).await;
            }
        });
        Ok(rx)
    }
}

/// Limits high enough never to refuse.
pub const UNLIMITED: Tier = Tier { rpm: 1_000_000_000, tpm: 1_000_000_000, tpd: 1_000_000_000, concurrency: 1_000 };

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
        let engines =
            Engines { transcriber: Some(Arc::new(ByteCountTranscriber)), synthesizer: Some(Arc::new(ToneSynthesizer)) };
        Self::start_full(configure, engines).await
    }

    pub async fn start_full(configure: impl FnOnce(&mut ServeConfig), engines: Engines) -> Self {
        Self::start_in(tempfile::tempdir().expect("temp dir"), configure, engines).await
    }

    /// A server whose database is `smai.db` in `dir` (which may hold it already).
    pub async fn start_in(dir: tempfile::TempDir, configure: impl FnOnce(&mut ServeConfig), engines: Engines) -> Self {
        let db = dir.path().join("smai.db");
        let mut config = ServeConfig::for_tests(db.clone());
        configure(&mut config);
        let clock = ManualClock::new(SystemClock.now_ms());
        let server = smai_server::start(&config, Arc::new(clock.clone()), engines).await.expect("server starts");
        let scheme = if config.tls_cert.is_some() { "https" } else { "http" };
        let base = format!("{scheme}://{}", server.addr);
        Self { server, clock, db, base, dir }
    }

    pub async fn create_key(
        &self,
        services: &[Service],
        voices: VoiceAccess,
        expires_in_ms: Option<i64>,
    ) -> (String, String) {
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

    /// A key with the limits of `tier`.
    pub async fn create_key_with(&self, services: &[Service], voices: VoiceAccess, tier: Tier) -> String {
        let new = NewKey {
            org: "acme".into(),
            name: None,
            services: services.iter().copied().collect::<BTreeSet<_>>(),
            voices,
            tier,
            expires_in_ms: None,
        };
        let (_, key) = self.server.state.authenticator.store().create(&new).await.expect("key created");
        key.as_str().to_owned()
    }

    /// A key whose limits never bind, for benches that measure admission rather than refusals.
    pub async fn create_unlimited_key(&self, services: &[Service]) -> String {
        let new = NewKey {
            org: "bench".into(),
            name: None,
            services: services.iter().copied().collect::<BTreeSet<_>>(),
            voices: VoiceAccess::All,
            tier: UNLIMITED,
            expires_in_ms: None,
        };
        let (_, key) = self.server.state.authenticator.store().create(&new).await.expect("key created");
        key.as_str().to_owned()
    }

    /// Usage rows (route, status, tokens) once the server has shut down and flushed them.
    pub async fn usage_rows(self) -> Vec<(String, i64, i64)> {
        let Self { server, db, dir: _dir, .. } = self;
        server.shutdown().await.expect("clean shutdown");
        let pool = smai_auth::open_database(&db).await.expect("database opens");
        let query = "SELECT route, status, tokens FROM usage_log ORDER BY id";
        let rows = sqlx::query_as(query).fetch_all(&pool).await.expect("usage rows");
        pool.close().await;
        rows
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }
}

/// Polls a condition that another task makes true; fails after 10 s.
pub async fn wait_until(mut condition: impl FnMut() -> bool) {
    for _ in 0..1000 {
        if condition() {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    panic!("condition not reached in 10 s");
}

/// The JSON `data:` payloads of a server-sent event stream.
pub fn sse_events(body: &str) -> Vec<serde_json::Value> {
    body.split("\n\n")
        .filter(|e| !e.trim().is_empty())
        .map(|e| serde_json::from_str(e.strip_prefix("data: ").expect("data line")).expect("JSON event"))
        .collect()
}

//! Prometheus metrics of one server: a registry per `AppState`, so servers in one process
//! (tests, benches) keep separate counts. Label values come from a closed set (route
//! templates, status codes, limit kinds, loaded models and voices), never from what a client
//! typed, so a client cannot grow the label space, and no label ever carries a key.

mod engines;

pub use engines::{MeteredSynthesizer, MeteredTranscriber};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::{Metric, Registry};
use std::sync::atomic::AtomicU64;
use std::time::Duration;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub route: String,
    pub method: String,
    pub status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabels {
    pub route: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AuthRejectionLabels {
    pub status: u16,
    pub code: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct LimitLabels {
    pub limit: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ServiceLabels {
    pub service: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ModelLabels {
    pub model: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct VoiceLabels {
    pub voice: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    pub outcome: &'static str,
}

/// Registered only when TLS is on, so a plain server does not report a certificate.
pub struct TlsMetrics {
    pub certificate_expiry: Gauge,
    pub reloads: Family<OutcomeLabels, Counter>,
}

impl TlsMetrics {
    fn register(registry: &mut Registry) -> Self {
        let certificate_expiry = registered(
            registry,
            "tls_certificate_expiry_timestamp_seconds",
            "When the server certificate in service expires (notAfter, seconds since the Unix epoch)",
            Gauge::default(),
        );
        let reloads = registered(
            registry,
            "tls_reloads",
            "Certificate reloads by outcome: applied, or rejected (the previous configuration kept serving)",
            Family::default(),
        );
        Self { certificate_expiry, reloads }
    }
}

type SecondsCounter = Counter<f64, AtomicU64>;
type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

pub struct Metrics {
    registry: Registry,
    pub requests: Family<RequestLabels, Counter>,
    pub request_duration: HistogramFamily<RouteLabels>,
    pub auth_rejections: Family<AuthRejectionLabels, Counter>,
    pub rate_limit_rejections: Family<LimitLabels, Counter>,
    pub asr_audio_seconds: Family<ModelLabels, SecondsCounter>,
    pub tts_audio_seconds: Family<VoiceLabels, SecondsCounter>,
    pub real_time_factor: HistogramFamily<ServiceLabels>,
    pub tts_time_to_first_audio: HistogramFamily<VoiceLabels>,
    pub engine_jobs: Family<ServiceLabels, Gauge>,
    pub tls: Option<TlsMetrics>,
}

/// Registers `metric` and gives it back: the registry and the struct share it.
fn registered<M: Metric + Clone>(registry: &mut Registry, name: &str, help: &str, metric: M) -> M {
    registry.register(name, help, metric.clone());
    metric
}

/// 1 ms to about 65 s: covers a 401 and a long transcription alike.
fn latency_buckets() -> Histogram {
    Histogram::new(exponential_buckets(0.001, 2.0, 17))
}

/// Processing time over audio time: 0.01 (100x faster than real time) to about 10.
fn ratio_buckets() -> Histogram {
    Histogram::new(exponential_buckets(0.01, 2.0, 11))
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        Self::build(false)
    }

    /// The metrics of a server whose listener speaks TLS.
    pub fn with_tls() -> Self {
        Self::build(true)
    }

    fn build(tls: bool) -> Self {
        let mut r = Registry::with_prefix("smai");
        let requests = registered(
            &mut r,
            "http_requests",
            "HTTP responses by route template, method and status",
            Family::default(),
        );
        let request_duration = registered(
            &mut r,
            "http_request_duration_seconds",
            "Time from the request to the end of the response body, by route template",
            Family::new_with_constructor(latency_buckets as fn() -> Histogram),
        );
        let auth_rejections = registered(
            &mut r,
            "auth_rejections",
            "Requests refused by authentication (401) or authorisation (403), by error code",
            Family::default(),
        );
        let rate_limit_rejections = registered(
            &mut r,
            "rate_limit_rejections",
            "Requests refused with 429, by the limit that refused them (rpm, tpm, tpd, concurrency)",
            Family::default(),
        );
        let asr_audio_seconds = registered(
            &mut r,
            "asr_audio_seconds",
            "Seconds of audio transcribed to completion, by model",
            Family::default(),
        );
        let tts_audio_seconds = registered(
            &mut r,
            "tts_audio_seconds",
            "Seconds of audio synthesised to completion, by voice",
            Family::default(),
        );
        let real_time_factor = registered(
            &mut r,
            "real_time_factor",
            "Time over audio time per completed job (below 1 is faster than real time), by service: ASR from the \
             worker taking the job, TTS from submission (queue wait included)",
            Family::new_with_constructor(ratio_buckets as fn() -> Histogram),
        );
        let tts_time_to_first_audio = registered(
            &mut r,
            "tts_time_to_first_audio_seconds",
            "Time from handing text to the synthesiser to its first audio chunk, by voice",
            Family::new_with_constructor(latency_buckets as fn() -> Histogram),
        );
        let engine_jobs = registered(
            &mut r,
            "engine_jobs_in_flight",
            "Jobs accepted by an engine and not yet finished (queued plus running), by service",
            Family::default(),
        );
        let tls = tls.then(|| TlsMetrics::register(&mut r));
        let registry = r;
        Self {
            registry,
            requests,
            request_duration,
            auth_rejections,
            rate_limit_rejections,
            asr_audio_seconds,
            tts_audio_seconds,
            real_time_factor,
            tts_time_to_first_audio,
            engine_jobs,
            tls,
        }
    }

    /// The Prometheus text exposition format, version 0.0.4.
    pub fn render(&self) -> String {
        let mut text = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::prometheus_text::encode(&mut text, &self.registry);
        text
    }

    pub fn observe_request(&self, route: &str, method: &str, status: u16) {
        self.requests
            .get_or_create(&RequestLabels { route: route.to_owned(), method: method.to_owned(), status })
            .inc();
    }

    pub fn observe_duration(&self, route: &str, elapsed: Duration) {
        self.request_duration.get_or_create(&RouteLabels { route: route.to_owned() }).observe(elapsed.as_secs_f64());
    }

    pub fn in_flight(&self, service: &str) -> InFlight {
        let gauge = self.engine_jobs.get_or_create_owned(&ServiceLabels { service: service.to_owned() });
        gauge.inc();
        InFlight(gauge)
    }
}

/// One engine job counted in `engine_jobs_in_flight` until dropped.
pub struct InFlight(Gauge);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.dec();
    }
}

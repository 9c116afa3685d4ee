//! gRPC: `smai.v1.TextToSpeech` and `smai.v1.SpeechRecognition` on tonic, thin adapters over
//! the service core behind one auth layer, with `grpc.health.v1.Health` (following readiness)
//! and server reflection (v1 and v1alpha), both without a key.

pub mod asr;
pub mod auth;
mod connection;
mod handler;
pub mod proto;
pub mod status;
pub mod tts;

use crate::service::Service;
use crate::tls::TlsAcceptor;
use proto::speech_recognition_server::SpeechRecognitionServer;
use proto::text_to_speech_server::TextToSpeechServer;
use smai_core::EngineHealth;
use std::future::Future;
use std::time::Duration;
use tokio::net::TcpListener;
use tonic_health::server::HealthReporter;
use tonic_health::ServingStatus;

/// Room for the fields around a message's audio: a Recognize at the upload limit is still
/// decoded, and refused by its own check with a clear message.
const ENVELOPE_ALLOWANCE: usize = 64 * 1024;

/// How often health follows the engines' readiness.
const HEALTH_POLL: Duration = Duration::from_millis(250);

pub const TTS_SERVICE: &str = "smai.v1.TextToSpeech";
pub const ASR_SERVICE: &str = "smai.v1.SpeechRecognition";

/// Serves every gRPC service on `listener` (TLS 1.3 with `tls`) until `shutdown` completes,
/// then lets open calls and streams finish.
pub async fn serve(
    listener: TcpListener,
    service: Service,
    max_message_bytes: usize,
    tls: Option<TlsAcceptor>,
    shutdown: impl Future<Output = ()> + Send,
) -> anyhow::Result<()> {
    let (reporter, health) = tonic_health::server::health_reporter();
    let watcher = tokio::spawn(follow_readiness(service.clone(), reporter));
    let reflection_v1 = reflection().build_v1()?;
    let reflection_v1alpha = reflection().build_v1alpha()?;
    let limit = max_message_bytes + ENVELOPE_ALLOWANCE;
    let tts = TextToSpeechServer::new(tts::TextToSpeechService { service: service.clone() })
        .max_decoding_message_size(limit)
        .max_encoding_message_size(usize::MAX);
    let asr = asr::SpeechRecognitionService { service: service.clone(), max_audio_bytes: max_message_bytes };
    let asr = SpeechRecognitionServer::new(asr).max_decoding_message_size(limit);
    let served = tonic::transport::Server::builder()
        .http2_keepalive_interval(Some(Duration::from_secs(30)))
        .http2_keepalive_timeout(Some(Duration::from_secs(20)))
        .layer(auth::AuthLayer::new(service))
        .add_service(health)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .add_service(tts)
        .add_service(asr)
        .serve_with_incoming_shutdown(connection::incoming(listener, tls), shutdown)
        .await;
    watcher.abort();
    Ok(served?)
}

/// Reflection over the smai and health protos.
fn reflection() -> tonic_reflection::server::Builder<'static> {
    tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
}

/// Health says SERVING for a service once its engine has models loaded and is serving, and
/// for the whole server ("") once every engine is, as /readyz does.
async fn follow_readiness(service: Service, reporter: HealthReporter) {
    let status = |ok: bool| if ok { ServingStatus::Serving } else { ServingStatus::NotServing };
    let mut last = None;
    loop {
        let readiness = service.readiness();
        let now = [
            ("", status(readiness.is_ready())),
            (TTS_SERVICE, status(readiness.tts == Some(EngineHealth::Serving))),
            (ASR_SERVICE, status(readiness.asr == Some(EngineHealth::Serving))),
        ];
        if last != Some(now) {
            for (name, serving) in now {
                reporter.set_service_status(name, serving).await;
            }
            last = Some(now);
        }
        tokio::time::sleep(HEALTH_POLL).await;
    }
}

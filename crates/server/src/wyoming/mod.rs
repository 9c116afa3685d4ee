//! The Wyoming adapter (Home Assistant's protocol for local speech engines) onto the service
//! core: one plain-TCP listener serving a speech-to-text and a text-to-speech program. Wyoming
//! has no authentication, so every request runs as the one configured key (or the anonymous
//! principal in no-auth mode), with that key's services, voices and limits and a usage row per
//! request, like any other call.

mod asr;
mod audio;
mod connection;
mod info;
mod tts;
pub mod wire;
pub mod zeroconf;

use crate::service::{Call, CallContext, Service};
use smai_core::Error;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

/// What a request under way does after its engine's next output.
pub enum Step {
    Send(Vec<wire::Event>),
    /// Send these, and the request is answered.
    Answer(Vec<wire::Event>),
}

/// What every connection of the listener shares.
#[derive(Clone)]
pub struct Settings {
    pub service: Service,
    /// The key every request runs as (`None` in no-auth mode).
    pub key_id: Option<String>,
    /// A connection with no request under way that sends nothing for this long is closed.
    pub idle_timeout: Duration,
    pub max_connections: usize,
}

impl Settings {
    /// Starts a call as the listener's principal (checked again per request, so a revoked
    /// key stops working within the key cache's time).
    async fn call(&self, route: &str, peer: SocketAddr) -> Result<Call, Error> {
        let request_id = uuid::Uuid::new_v4().simple().to_string();
        let context = CallContext { request_id, route: format!("wyoming/{route}"), source: Some(peer.ip()) };
        self.service.authenticate_as(self.key_id.as_deref(), context).await
    }
}

/// Checks at start-up that the listener has a principal: a key that exists and is active when
/// keys are required.
pub async fn check_principal(settings: &Settings) -> anyhow::Result<()> {
    match settings.service.configured_principal(settings.key_id.as_deref()).await {
        Ok(_) => Ok(()),
        Err(e) => anyhow::bail!("--wyoming-listen: {}", e.message),
    }
}

/// Accepts connections until `shutdown` completes; open connections end with the process.
pub async fn serve(listener: TcpListener, settings: Settings, shutdown: impl Future<Output = ()> + Send) {
    let slots = Arc::new(Semaphore::new(settings.max_connections));
    let accept = async {
        loop {
            let (stream, peer) = match listener.accept().await {
                Ok(accepted) => accepted,
                Err(e) => {
                    tracing::warn!(error = %e, "wyoming accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            // Past the cap a new connection is closed at once.
            let Ok(slot) = slots.clone().try_acquire_owned() else {
                tracing::warn!(%peer, "wyoming connection refused: too many open connections");
                continue;
            };
            let _ = stream.set_nodelay(true);
            let settings = settings.clone();
            tokio::spawn(async move {
                connection::run(stream, peer, settings).await;
                drop(slot);
            });
        }
    };
    tokio::select! {
        () = accept => {}
        () = shutdown => {}
    }
}

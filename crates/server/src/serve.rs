//! Starting and stopping the server. Tests call `start` with port 0 and an injected clock.

use crate::config::{AuthMode, ServeConfig};
use crate::http::router;
use crate::metrics::{MeteredSynthesizer, MeteredTranscriber, Metrics};
use crate::service::{Service, ServiceParts};
use crate::state::AppState;
use crate::tls::reload::Reloader;
use smai_auth::{
    open_database, Authenticator, AuthenticatorConfig, KeyStore, Limiter, RefusalLog, Retention, UsageLog,
};
use smai_core::{SharedClock, Synthesizer, Transcriber};
use sqlx::SqlitePool;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// The engines a server runs on; `None` leaves that service's routes answering 404.
#[derive(Clone, Default)]
pub struct Engines {
    pub transcriber: Option<Arc<dyn Transcriber>>,
    pub synthesizer: Option<Arc<dyn Synthesizer>>,
}

pub struct RunningServer {
    pub addr: SocketAddr,
    /// Where gRPC listens, unless `--grpc-listen off`.
    pub grpc_addr: Option<SocketAddr>,
    /// Where the Wyoming listener is, when `--wyoming-listen` is set.
    pub wyoming_addr: Option<SocketAddr>,
    pub state: AppState,
    pool: SqlitePool,
    stop: watch::Sender<bool>,
    task: JoinHandle<std::io::Result<()>>,
    grpc_task: Option<JoinHandle<anyhow::Result<()>>>,
    maintenance: JoinHandle<()>,
    tls_reload: Option<JoinHandle<()>>,
    wyoming: Option<WyomingListener>,
}

pub async fn start(config: &ServeConfig, clock: SharedClock, engines: Engines) -> anyhow::Result<RunningServer> {
    let cors_origins = crate::http::cors::parse_origins(&config.cors_origins).map_err(anyhow::Error::msg)?;
    let tls_files = config.tls_files().map_err(anyhow::Error::msg)?;
    let metrics = Arc::new(if tls_files.is_some() { Metrics::with_tls() } else { Metrics::new() });
    let tls = tls_files.map(|files| Reloader::start(files, metrics.clone())).transpose()?;
    let pool = open_database(&config.db).await?;
    let store = KeyStore::new(pool.clone(), clock.clone());
    let auth_config = AuthenticatorConfig { cache_ttl: config.key_cache_ttl, ..Default::default() };
    // Token-per-day usage is reloaded from SQLite and written back every few seconds.
    let limiter = Limiter::with_store(clock.clone(), pool.clone()).await?;
    let maintenance = limiter.spawn_maintenance();
    let service = Service::new(ServiceParts {
        auth_mode: config.auth,
        authenticator: Authenticator::new(store, clock.clone(), auth_config),
        usage: UsageLog::start_with(
            pool.clone(),
            Some(Retention { keep: config.usage_retention, clock: clock.clone() }),
        ),
        refusals: RefusalLog::start(pool.clone(), clock.clone()),
        limiter,
        clock,
        transcriber: engines
            .transcriber
            .map(|t| Arc::new(MeteredTranscriber::new(t, metrics.clone())) as Arc<dyn Transcriber>),
        synthesizer: engines
            .synthesizer
            .map(|s| Arc::new(MeteredSynthesizer::new(s, metrics.clone())) as Arc<dyn Synthesizer>),
        anonymous_tier: config.anonymous_tier(),
        metrics,
    });
    let state = AppState {
        service,
        max_body_bytes: config.max_body_bytes,
        metrics_mode: config.metrics,
        cors_origins,
        ws_idle_timeout: config.ws_idle_timeout,
        playground: config.playground,
    };
    if config.auth == AuthMode::Disabled {
        tracing::warn!(
            "AUTHENTICATION IS DISABLED: every request runs as an anonymous principal with all services and \
             voices. Use this only inside a private network."
        );
    }
    let listener = crate::listener::bind(config.listen)?;
    let addr = listener.local_addr()?;
    let (stop, _) = watch::channel(false);
    let app = router(state.clone());
    let settings = crate::listener::Settings::from(config);
    let (tls_reload, acceptor) =
        tls.map(|(reloader, acceptor)| (reloader.spawn(config.tls_reload_interval), acceptor)).unzip();
    let scheme = if acceptor.is_some() { "https" } else { "http" };
    let grpc = config.grpc_listen.addr().map(crate::listener::bind).transpose()?;
    let grpc_addr = grpc.as_ref().map(TcpListener::local_addr).transpose()?;
    let grpc_task = grpc.map(|listener| {
        let (service, limit, acceptor) = (state.service.clone(), config.max_body_bytes, acceptor.clone());
        tokio::spawn(serve_grpc(listener, service, limit, acceptor, stop.subscribe(), config.shutdown_grace))
    });
    let wyoming = start_wyoming(config, &state, &stop).await?;
    let task = tokio::spawn(crate::listener::serve(listener, app, settings, acceptor, stopped(stop.subscribe())));
    tracing::info!(%addr, ?grpc_addr, scheme, db = %config.db.display(), "smai listening");
    let wyoming_addr = wyoming.as_ref().map(|w| w.addr);
    Ok(RunningServer {
        addr,
        grpc_addr,
        wyoming_addr,
        state,
        pool,
        stop,
        task,
        grpc_task,
        maintenance,
        tls_reload,
        wyoming,
    })
}

/// The Wyoming listener: where it is, its task, and its zeroconf announcement (withdrawn
/// when dropped).
struct WyomingListener {
    addr: SocketAddr,
    task: JoinHandle<()>,
    _announcement: Option<crate::wyoming::zeroconf::Announcement>,
}

/// The Wyoming listener, when configured: its principal is checked before it binds.
async fn start_wyoming(
    config: &ServeConfig,
    state: &AppState,
    stop: &watch::Sender<bool>,
) -> anyhow::Result<Option<WyomingListener>> {
    let Some(bind) = config.wyoming_listen.0 else { return Ok(None) };
    let settings = crate::wyoming::Settings {
        service: state.service.clone(),
        key_id: config.wyoming_key_id.clone(),
        idle_timeout: config.ws_idle_timeout,
        max_connections: config.max_connections,
    };
    crate::wyoming::check_principal(&settings).await?;
    let listener = crate::listener::bind(bind)?;
    let addr = listener.local_addr()?;
    let announcement = match &config.wyoming_zeroconf {
        Some(name) => {
            let ip = Some(addr.ip()).filter(|ip| !ip.is_unspecified());
            Some(crate::wyoming::zeroconf::announce(name, ip, addr.port())?)
        }
        None => None,
    };
    tracing::warn!(%addr, "Wyoming listening: plain TCP without keys or TLS; keep it on a trusted network");
    let task = tokio::spawn(crate::wyoming::serve(listener, settings, stopped(stop.subscribe())));
    Ok(Some(WyomingListener { addr, task, _announcement: announcement }))
}

async fn stopped(mut stop: watch::Receiver<bool>) {
    let _ = stop.wait_for(|stopping| *stopping).await;
}

/// gRPC until the stop; then open streams get the shutdown grace period to finish.
async fn serve_grpc(
    listener: TcpListener,
    service: crate::service::Service,
    max_message_bytes: usize,
    tls: Option<crate::tls::TlsAcceptor>,
    stop: watch::Receiver<bool>,
    grace: std::time::Duration,
) -> anyhow::Result<()> {
    let served = crate::grpc::serve(listener, service, max_message_bytes, tls, stopped(stop.clone()));
    let grace_over = async move {
        stopped(stop).await;
        tokio::time::sleep(grace).await;
    };
    tokio::select! {
        served = served => served,
        () = grace_over => {
            tracing::warn!(?grace, "gRPC calls still open after the shutdown grace period were closed");
            Ok(())
        }
    }
}

impl RunningServer {
    /// Stops accepting, lets requests in flight finish within the shutdown grace period (then
    /// closes the rest), and writes every queued usage row.
    pub async fn shutdown(self) -> anyhow::Result<()> {
        let _ = self.stop.send(true);
        self.task.await??;
        if let Some(grpc) = self.grpc_task {
            grpc.await??;
        }
        if let Some(wyoming) = self.wyoming {
            wyoming.task.await?;
        }
        self.state.usage.shutdown().await;
        self.state.refusals.flush().await;
        self.maintenance.abort();
        if let Some(reload) = self.tls_reload {
            reload.abort();
        }
        self.state.limiter.flush().await?;
        self.pool.close().await;
        Ok(())
    }

    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }
}

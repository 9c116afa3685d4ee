//! `smai serve`: load the engines, start the server, stop on Ctrl-C or SIGTERM.

use crate::config::ServeConfig;
use crate::serve::start;
use smai_core::SystemClock;
use std::sync::Arc;

pub async fn serve(config: ServeConfig) -> anyhow::Result<()> {
    crate::listener::raise_fd_limit();
    // A TLS mistake is reported at once, not after the models have loaded.
    if let Some(files) = config.tls_files().map_err(anyhow::Error::msg)? {
        crate::tls::load(&files, std::time::SystemTime::now())?;
    }
    // The server listens while the weights load: readiness says so, calls get 503.
    let (engines, mut loading) = crate::engines::start_loading(&config)?;
    let server = start(&config, Arc::new(SystemClock), engines).await?;
    let stop = shutdown_signal();
    tokio::pin!(stop);
    tokio::select! {
        loaded = &mut loading => {
            if let Err(e) = loaded.map_err(anyhow::Error::from).and_then(|r| r) {
                tracing::error!(error = %e, "loading the models failed");
                server.shutdown().await?;
                return Err(e);
            }
            stop.await;
        }
        () = &mut stop => loading.abort(),
    }
    tracing::info!("shutting down");
    server.shutdown().await
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = terminate => {},
    }
}

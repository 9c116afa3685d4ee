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
    let engines = crate::engines::load(&config).await?;
    let server = start(&config, Arc::new(SystemClock), engines).await?;
    shutdown_signal().await;
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

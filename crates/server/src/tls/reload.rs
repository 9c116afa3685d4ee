//! Certificate reload without restart: on SIGHUP, and when the files' contents change (polled),
//! the files are loaded and checked again; a good result serves new connections from then on,
//! a bad one (garbage, a key of another certificate, an expired certificate) is logged and the
//! configuration in service stays.

use super::{load, Loaded, TlsAcceptor, TlsError, TlsFiles};
use crate::metrics::{Metrics, OutcomeLabels};
use sha2::{Digest, Sha256};
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tokio::task::JoinHandle;

/// Keeps the acceptor's configuration in step with the files.
pub struct Reloader {
    files: TlsFiles,
    acceptor: TlsAcceptor,
    metrics: Arc<Metrics>,
    /// The files' contents as last seen, so a poll notices changes however the files were written.
    seen: [u8; 32],
}

impl Reloader {
    /// Loads the files for the first time; errors here stop the server from starting.
    pub fn start(files: TlsFiles, metrics: Arc<Metrics>) -> Result<(Self, TlsAcceptor), TlsError> {
        let seen = fingerprint(&files);
        let loaded = load(&files, SystemTime::now())?;
        let acceptor = TlsAcceptor::new(loaded.config.clone());
        let reloader = Self { files, acceptor: acceptor.clone(), metrics, seen };
        reloader.in_service(&loaded, "TLS certificate loaded");
        Ok((reloader, acceptor))
    }

    /// Loads the files again and swaps the result in if it is good. Returns whether it was.
    pub fn reload(&mut self, why: &str) -> bool {
        self.seen = fingerprint(&self.files);
        let outcome = match load(&self.files, SystemTime::now()) {
            Ok(loaded) => {
                self.acceptor.replace(loaded.config.clone());
                self.in_service(&loaded, "TLS certificate reloaded");
                "applied"
            }
            Err(error) => {
                tracing::error!(%error, trigger = why, "TLS reload rejected; the previous certificate stays in service");
                "rejected"
            }
        };
        if let Some(tls) = &self.metrics.tls {
            tls.reloads.get_or_create(&OutcomeLabels { outcome }).inc();
        }
        outcome == "applied"
    }

    fn in_service(&self, loaded: &Loaded, message: &str) {
        tracing::info!(subject = %loaded.subject, not_after = %super::rfc3339(loaded.not_after), cert = %self.files.cert.display(), "{message}");
        if let Some(tls) = &self.metrics.tls {
            tls.certificate_expiry.set(loaded.not_after);
        }
    }

    fn files_changed(&self) -> bool {
        fingerprint(&self.files) != self.seen
    }

    /// Reloads on SIGHUP and, every `poll` (zero: never), when the files changed.
    pub fn spawn(mut self, poll: Duration) -> JoinHandle<()> {
        // Installed before returning, so a SIGHUP from here on reloads rather than terminates.
        let mut hangups = hangup_signals();
        tokio::spawn(async move {
            let mut ticks =
                (!poll.is_zero()).then(|| tokio::time::interval_at(tokio::time::Instant::now() + poll, poll));
            loop {
                tokio::select! {
                    Some(()) = next_hangup(&mut hangups) => {
                        self.reload("SIGHUP");
                    }
                    _ = async { ticks.as_mut().expect("guarded").tick().await }, if ticks.is_some() => {
                        if self.files_changed() {
                            self.reload("file change");
                        }
                    }
                }
            }
        })
    }
}

/// One digest over every file's contents (a missing file counts as empty).
fn fingerprint(files: &TlsFiles) -> [u8; 32] {
    let mut digest = Sha256::new();
    for path in files.paths() {
        let bytes = std::fs::read(path).unwrap_or_default();
        digest.update((bytes.len() as u64).to_le_bytes());
        digest.update(&bytes);
    }
    digest.finalize().into()
}

#[cfg(unix)]
type Hangups = Option<tokio::signal::unix::Signal>;
#[cfg(not(unix))]
type Hangups = Option<()>;

#[cfg(unix)]
fn hangup_signals() -> Hangups {
    match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
        Ok(signal) => Some(signal),
        Err(error) => {
            tracing::warn!(%error, "cannot listen for SIGHUP; certificates reload on file changes only");
            None
        }
    }
}

#[cfg(not(unix))]
fn hangup_signals() -> Hangups {
    None
}

/// The next SIGHUP; pending forever where there are none to wait for.
async fn next_hangup(hangups: &mut Hangups) -> Option<()> {
    #[cfg(unix)]
    if let Some(signal) = hangups {
        return signal.recv().await;
    }
    let _ = hangups;
    std::future::pending().await
}

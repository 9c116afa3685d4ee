//! What `Limiter::admit` hands back: an admission holding a concurrency permit, or a rejection
//! saying which limit refused and when to come back.

use super::key::KeyEntry;
use super::snapshot::{whole_seconds, RateSnapshot};
use smai_core::{Error, ErrorCode};
use std::fmt;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

/// One open request or stream of a key. Dropping it (completion, error, client disconnect,
/// panic unwinding, task abort) gives the slot back.
#[must_use = "the request counts as open only while its permit is held"]
pub struct ConcurrencyPermit {
    pub(crate) entry: Arc<KeyEntry>,
}

impl Drop for ConcurrencyPermit {
    fn drop(&mut self) {
        self.entry.open.fetch_sub(1, Ordering::AcqRel);
    }
}

impl fmt::Debug for ConcurrencyPermit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConcurrencyPermit").field("open", &self.entry.open()).finish()
    }
}

/// An admitted request: keep `permit` alive for as long as the request or stream is open.
#[derive(Debug)]
pub struct Admission {
    pub permit: ConcurrencyPermit,
    /// Limits after this request was charged, for the response headers.
    pub snapshot: RateSnapshot,
}

/// The limit that refused a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LimitKind {
    RequestsPerMinute,
    TokensPerMinute,
    TokensPerDay,
    Concurrency,
}

impl LimitKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::RequestsPerMinute => "rpm",
            Self::TokensPerMinute => "tpm",
            Self::TokensPerDay => "tpd",
            Self::Concurrency => "concurrency",
        }
    }
}

/// A refused request. Nothing was charged against any limit.
#[derive(Debug, Clone)]
pub struct Rejection {
    pub limit: LimitKind,
    /// When a retry of the same request can succeed (for `cannot_succeed`, the limit's window).
    pub retry_after: Duration,
    /// The cost alone exceeds a limit (or the limit is zero): retrying cannot help.
    pub cannot_succeed: bool,
    /// Limits as they stand, unchanged by this request.
    pub snapshot: RateSnapshot,
    /// Safe to show the client.
    pub message: String,
}

impl Rejection {
    pub fn error_code(&self) -> ErrorCode {
        match self.limit {
            LimitKind::Concurrency => ErrorCode::ConcurrencyLimitExceeded,
            _ => ErrorCode::RateLimitExceeded,
        }
    }

    /// `Retry-After` in whole seconds, rounded up so a retry at that time is on time.
    pub fn retry_after_secs(&self) -> u64 {
        whole_seconds(self.retry_after)
    }

    /// The snapshot's headers plus `retry-after`, unless retrying cannot help: clients (the
    /// OpenAI SDKs among them) retry a 429 that carries it.
    pub fn headers(&self) -> Vec<(&'static str, String)> {
        let mut headers = self.snapshot.headers();
        if !self.cannot_succeed {
            headers.push(("retry-after", self.retry_after_secs().to_string()));
        }
        headers
    }

    pub fn into_error(self) -> Error {
        let error = Error::new(self.error_code(), self.message);
        if self.cannot_succeed {
            error
        } else {
            error.with_retry_after(self.retry_after)
        }
    }
}

impl From<Rejection> for Error {
    fn from(rejection: Rejection) -> Self {
        rejection.into_error()
    }
}

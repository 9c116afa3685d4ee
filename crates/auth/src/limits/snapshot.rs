//! What a response tells the client about its limits, as API.md's headers.

use std::fmt::Write;
use std::time::Duration;

/// One limit as seen by a client: its quota, what is left, and when it is whole again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LimitStatus {
    pub limit: u64,
    pub remaining: u64,
    /// Time until the limit is back to its initial state (all of `limit` available).
    pub reset: Duration,
}

impl LimitStatus {
    pub(crate) fn full(limit: u64) -> Self {
        Self { limit, remaining: limit, reset: Duration::ZERO }
    }
}

/// A key's limits at one instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateSnapshot {
    /// Requests per minute.
    pub requests: LimitStatus,
    /// Tokens per minute.
    pub tokens: LimitStatus,
    /// Tokens per rolling day.
    pub tokens_per_day: LimitStatus,
    pub concurrency_limit: u32,
    /// Open requests and streams of the key, the one this snapshot belongs to included.
    pub concurrency_open: u32,
}

/// Policy windows in seconds, as advertised in `RateLimit-Policy`.
const REQUESTS_WINDOW_S: u64 = 60;
const TOKENS_WINDOW_S: u64 = 60;
const TOKENS_PER_DAY_WINDOW_S: u64 = 86_400;

impl RateSnapshot {
    /// Header names (lower case, as HTTP/2 and gRPC metadata require) and values of API.md.
    pub fn headers(&self) -> Vec<(&'static str, String)> {
        let (r, t, d) = (&self.requests, &self.tokens, &self.tokens_per_day);
        vec![
            ("x-ratelimit-limit-requests", r.limit.to_string()),
            ("x-ratelimit-remaining-requests", r.remaining.to_string()),
            ("x-ratelimit-reset-requests", format_reset(r.reset)),
            ("x-ratelimit-limit-tokens", t.limit.to_string()),
            ("x-ratelimit-remaining-tokens", t.remaining.to_string()),
            ("x-ratelimit-reset-tokens", format_reset(t.reset)),
            (
                "ratelimit-policy",
                format!(
                    "\"rpm\";q={};w={REQUESTS_WINDOW_S}, \"tpm\";q={};w={TOKENS_WINDOW_S}, \"tpd\";q={};w={TOKENS_PER_DAY_WINDOW_S}",
                    r.limit, t.limit, d.limit
                ),
            ),
            (
                "ratelimit",
                format!(
                    "\"rpm\";r={};t={}, \"tpm\";r={};t={}, \"tpd\";r={};t={}",
                    r.remaining,
                    whole_seconds(r.reset),
                    t.remaining,
                    whole_seconds(t.reset),
                    d.remaining,
                    whole_seconds(d.reset)
                ),
            ),
        ]
    }
}

/// Seconds rounded up, as `Retry-After` and the `t` parameter want them.
pub fn whole_seconds(d: Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}

/// A reset in the style of the OpenAI headers (`17ms`, `1s`, `6m0s`, `1h0m0s`): below one
/// second in milliseconds (rounded up), otherwise in whole seconds rounded up.
pub fn format_reset(d: Duration) -> String {
    if d.is_zero() {
        return "0s".into();
    }
    if d < Duration::from_secs(1) {
        let ms = d.as_nanos().div_ceil(1_000_000);
        return format!("{ms}ms");
    }
    let total = whole_seconds(d);
    let (h, m, s) = (total / 3600, total % 3600 / 60, total % 60);
    let mut out = String::new();
    if h > 0 {
        let _ = write!(out, "{h}h{m}m");
    } else if m > 0 {
        let _ = write!(out, "{m}m");
    }
    let _ = write!(out, "{s}s");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resets_read_like_openai_durations() {
        assert_eq!(format_reset(Duration::ZERO), "0s");
        assert_eq!(format_reset(Duration::from_micros(16_200)), "17ms");
        assert_eq!(format_reset(Duration::from_secs(1)), "1s");
        assert_eq!(format_reset(Duration::from_millis(1_001)), "2s");
        assert_eq!(format_reset(Duration::from_secs(360)), "6m0s");
        assert_eq!(format_reset(Duration::from_secs(3_600)), "1h0m0s");
        assert_eq!(format_reset(Duration::from_secs(86_399)), "23h59m59s");
    }
}

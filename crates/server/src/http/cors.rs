//! Cross-origin access for web pages, off by default. Only the origins an operator lists may
//! call the API from a browser; they may send the key headers and read the rate headers.

use axum::http::{header, HeaderName, HeaderValue, Method};
use std::time::Duration;
use tower_http::cors::{AllowOrigin, CorsLayer};

/// Response headers a page may read besides the basic ones.
const EXPOSED: [&str; 10] = [
    "x-request-id",
    "retry-after",
    "x-ratelimit-limit-requests",
    "x-ratelimit-remaining-requests",
    "x-ratelimit-reset-requests",
    "x-ratelimit-limit-tokens",
    "x-ratelimit-remaining-tokens",
    "x-ratelimit-reset-tokens",
    "ratelimit-policy",
    "ratelimit",
];

/// Checks configured origins (`https://app.example`); each must be a valid header value.
pub fn parse_origins(origins: &[String]) -> Result<Vec<HeaderValue>, String> {
    origins
        .iter()
        .map(|o| o.trim().trim_end_matches('/'))
        .filter(|o| !o.is_empty())
        .map(|o| {
            let valid = match o.split_once("://") {
                Some((scheme, host)) => matches!(scheme, "http" | "https") && !host.is_empty() && !host.contains('/'),
                None => false,
            };
            let value = HeaderValue::from_str(o).ok().filter(|_| valid);
            value.ok_or_else(|| format!("invalid CORS origin {o:?}: use scheme://host[:port]"))
        })
        .collect()
}

/// The CORS layer for `origins`, or none when the list is empty.
pub fn layer(origins: &[HeaderValue]) -> Option<CorsLayer> {
    if origins.is_empty() {
        return None;
    }
    let layer = CorsLayer::new()
        .allow_origin(AllowOrigin::list(origins.iter().cloned()))
        .allow_methods([Method::GET, Method::POST])
        .allow_headers([header::AUTHORIZATION, header::CONTENT_TYPE, HeaderName::from_static("x-api-key")])
        .expose_headers(EXPOSED.map(HeaderName::from_static))
        .max_age(Duration::from_secs(600));
    Some(layer)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_must_be_scheme_and_host() {
        let parsed = parse_origins(&["https://app.example/".into(), "http://localhost:3000".into()]).unwrap();
        assert_eq!(parsed, ["https://app.example", "http://localhost:3000"]);
        assert!(parse_origins(&["app.example".into()]).is_err());
        assert!(parse_origins(&["https://app.example/path".into()]).is_err());
        assert!(layer(&[]).is_none());
    }
}

//! The playground: one page at `/` and `/playground` for trying the server in a browser (type
//! and hear it, speak and read it, upload a file). Its files are embedded in the binary and
//! served under a strict Content-Security-Policy: the page's own files only, no inline code,
//! and connections back to this origin alone (its REST calls and the live sockets). Only the
//! page may use the microphone, on this origin; every API route keeps `microphone=()`.

use super::context::PermissionsPolicy;
use crate::config::AuthMode;
use crate::state::AppState;
use axum::extract::State;
use axum::http::{header, HeaderName, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use clap::ValueEnum;

/// Whether the playground is served (`on`, the default) or its routes answer 404 (`off`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum PlaygroundMode {
    On,
    Off,
}

/// `'self'` covers same-origin `ws:`/`wss:` in connect-src; `blob:` media is the synthesised
/// WAV and the uploaded file played back in the page.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; style-src 'self'; \
     img-src 'self'; media-src 'self' blob:; connect-src 'self'; object-src 'none'; base-uri 'none'; \
     form-action 'none'; frame-ancestors 'none'";

/// The page records from the microphone, from its own origin only.
pub const PAGE_PERMISSIONS_POLICY: &str = "microphone=(self), camera=()";

const PAGE: &str = include_str!("../../assets/playground/index.html");
const SCRIPT: &str = include_str!("../../assets/playground/playground.js");
const STYLE: &str = include_str!("../../assets/playground/playground.css");
const WORKLET: &str = include_str!("../../assets/playground/capture-worklet.js");
const ICON: &str = include_str!("../../assets/playground/icon.svg");

/// Where the page says which auth mode it is in, so it hides the key field without first
/// making a request that fails.
const AUTH_PLACEHOLDER: &str = "data-auth=\"enabled\"";

pub fn routes(mode: PlaygroundMode) -> Router<AppState> {
    match mode {
        PlaygroundMode::Off => Router::new(),
        PlaygroundMode::On => Router::new()
            .route("/", get(page))
            .route("/playground", get(page))
            .route("/playground/playground.js", get(|| asset(SCRIPT, "text/javascript; charset=utf-8")))
            .route("/playground/capture-worklet.js", get(|| asset(WORKLET, "text/javascript; charset=utf-8")))
            .route("/playground/playground.css", get(|| asset(STYLE, "text/css; charset=utf-8")))
            .route("/playground/icon.svg", get(|| asset(ICON, "image/svg+xml"))),
    }
}

async fn page(State(state): State<AppState>) -> Response {
    let html = match state.service.auth_mode {
        AuthMode::Enabled => PAGE.to_owned(),
        AuthMode::Disabled => PAGE.replacen(AUTH_PLACEHOLDER, "data-auth=\"disabled\"", 1),
    };
    let mut response = asset_response(html, "text/html; charset=utf-8");
    response.extensions_mut().insert(PermissionsPolicy(PAGE_PERMISSIONS_POLICY));
    response
}

async fn asset(body: &'static str, content_type: &'static str) -> Response {
    asset_response(body.to_owned(), content_type)
}

fn asset_response(body: String, content_type: &'static str) -> Response {
    let headers = [
        (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
        (HeaderName::from_static("content-security-policy"), HeaderValue::from_static(CONTENT_SECURITY_POLICY)),
        // Revalidated each time, so a new server version's page is never mixed with old files.
        (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
    ];
    (headers, body).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_has_the_placeholder_the_auth_mode_replaces() {
        assert_eq!(PAGE.matches(AUTH_PLACEHOLDER).count(), 1);
    }

    #[test]
    fn the_page_loads_only_its_own_files() {
        for (file, text) in [("index.html", PAGE), ("playground.js", SCRIPT), ("capture-worklet.js", WORKLET)] {
            assert!(!text.contains("http://") && !text.contains("https://"), "{file} names another origin");
        }
    }
}

//! The playground page as served: at `/` and `/playground` with its files, a strict
//! Content-Security-Policy, the microphone allowed for the page alone (the API keeps
//! `microphone=()`), no inline script or style, the auth mode for the page to read, and
//! `--playground off` leaving every one of its routes at 404. The page in a browser:
//! playground_browser.rs.

use reqwest::{Client, StatusCode};
use smai_e2e::TestServer;
use smai_server::config::PlaygroundMode;
use smai_server::http::playground::{CONTENT_SECURITY_POLICY, PAGE_PERMISSIONS_POLICY};

const ASSETS: [(&str, &str); 4] = [
    ("/playground/playground.js", "text/javascript; charset=utf-8"),
    ("/playground/capture-worklet.js", "text/javascript; charset=utf-8"),
    ("/playground/playground.css", "text/css; charset=utf-8"),
    ("/playground/icon.svg", "image/svg+xml"),
];

fn header<'a>(response: &'a reqwest::Response, name: &str) -> &'a str {
    response.headers().get(name).unwrap_or_else(|| panic!("{name} missing")).to_str().unwrap()
}

#[test]
fn the_policy_allows_this_origin_only() {
    let directives: Vec<&str> = CONTENT_SECURITY_POLICY.split(';').map(str::trim).collect();
    for expected in ["default-src 'self'", "script-src 'self'", "style-src 'self'", "connect-src 'self'"] {
        assert!(directives.contains(&expected), "{expected} in {CONTENT_SECURITY_POLICY}");
    }
    for loose in ["unsafe-inline", "unsafe-eval", "*", "data:", "http:", "https:", "ws:", "wss:"] {
        assert!(
            !CONTENT_SECURITY_POLICY.split_whitespace().any(|w| w == loose || w == format!("'{loose}'")),
            "{loose}"
        );
    }
    assert_eq!(PAGE_PERMISSIONS_POLICY, "microphone=(self), camera=()");
}

#[tokio::test]
async fn the_page_and_its_files_are_served_with_the_page_headers() {
    let t = TestServer::start().await;
    let client = Client::new();
    for path in ["/", "/playground"] {
        let response = client.get(t.url(path)).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{path}");
        assert_eq!(header(&response, "content-type"), "text/html; charset=utf-8");
        assert_eq!(header(&response, "content-security-policy"), CONTENT_SECURITY_POLICY);
        assert_eq!(header(&response, "permissions-policy"), "microphone=(self), camera=()", "{path}");
        assert_eq!(header(&response, "x-frame-options"), "DENY");
        assert_eq!(header(&response, "x-content-type-options"), "nosniff");
        let html = response.text().await.unwrap();
        assert!(html.contains("data-auth=\"enabled\""), "the page is told keys are on");
        // The worklet is loaded by the script, not the page.
        for asset in ["/playground/playground.js", "/playground/playground.css", "/playground/icon.svg"] {
            assert!(html.contains(&format!("\"{asset}\"")), "{asset} linked");
        }
    }
    for (path, content_type) in ASSETS {
        let response = client.get(t.url(path)).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{path}");
        assert_eq!(header(&response, "content-type"), content_type, "{path}");
        assert_eq!(header(&response, "content-security-policy"), CONTENT_SECURITY_POLICY);
        assert_eq!(header(&response, "permissions-policy"), "microphone=(), camera=()", "only the page relaxes it");
        assert!(!response.bytes().await.unwrap().is_empty(), "{path}");
    }
    t.server.shutdown().await.unwrap();
}

#[tokio::test]
async fn api_routes_keep_the_microphone_off_and_have_no_page_policy() {
    let t = TestServer::start().await;
    let client = Client::new();
    for path in ["/v1/voices", "/healthz", "/v1/realtime/asr", "/no/such/route", "/playground/missing.js"] {
        let response = client.get(t.url(path)).send().await.unwrap();
        assert_eq!(header(&response, "permissions-policy"), "microphone=(), camera=()", "{path}");
        assert!(response.headers().get("content-security-policy").is_none(), "{path}");
    }
    t.server.shutdown().await.unwrap();
}

/// Every `<script>` loads a file, and there is no `<style>` element, `style=` attribute or
/// `on...=` handler: the strict policy would block them.
#[tokio::test]
async fn the_page_has_no_inline_script_or_style() {
    let t = TestServer::start().await;
    let html = Client::new().get(t.url("/")).send().await.unwrap().text().await.unwrap().to_lowercase();
    let scripts: Vec<&str> = html.split("<script").skip(1).collect();
    assert!(!scripts.is_empty(), "the page has its script");
    for script in scripts {
        let (tag, rest) = script.split_once('>').expect("closed tag");
        assert!(tag.contains(" src=\"/playground/"), "script without src: <script{tag}>");
        assert!(rest.starts_with("</script>"), "script with a body: {rest:.60}");
    }
    assert!(!html.contains("<style"), "a <style> element");
    assert!(!html.contains(" style="), "a style attribute");
    let handler = html.split(|c: char| c.is_whitespace()).any(|w| w.starts_with("on") && w.contains("=\""));
    assert!(!handler, "an inline event handler");
    assert!(!html.contains("javascript:"), "a javascript: URL");
    t.server.shutdown().await.unwrap();
}

#[tokio::test]
async fn no_auth_mode_tells_the_page_to_hide_the_key_field() {
    let t = TestServer::start_with(|c| c.auth = smai_server::AuthMode::Disabled).await;
    let html = Client::new().get(t.url("/playground")).send().await.unwrap().text().await.unwrap();
    assert!(html.contains("data-auth=\"disabled\"") && !html.contains("data-auth=\"enabled\""));
    t.server.shutdown().await.unwrap();
}

#[tokio::test]
async fn playground_off_answers_404_on_every_route_of_it() {
    let t = TestServer::start_with(|c| c.playground = PlaygroundMode::Off).await;
    let client = Client::new();
    for path in ["/", "/playground"].into_iter().chain(ASSETS.iter().map(|(path, _)| *path)) {
        let response = client.get(t.url(path)).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::NOT_FOUND, "{path}");
        assert!(response.headers().get("content-security-policy").is_none(), "{path}");
        assert_eq!(header(&response, "permissions-policy"), "microphone=(), camera=()");
        let body: serde_json::Value = response.json().await.unwrap();
        assert_eq!(body["error"]["code"], "not_found", "{path}");
    }
    assert_eq!(client.get(t.url("/healthz")).send().await.unwrap().status(), StatusCode::OK, "the rest still serves");
    t.server.shutdown().await.unwrap();
}

#[test]
fn the_switch_reads_on_and_off() {
    use clap::Parser;
    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        serve: smai_server::ServeConfig,
    }
    let default = Cli::try_parse_from(["smai"]).unwrap();
    assert_eq!(default.serve.playground, PlaygroundMode::On);
    let off = Cli::try_parse_from(["smai", "--playground", "off"]).unwrap();
    assert_eq!(off.serve.playground, PlaygroundMode::Off);
    assert!(Cli::try_parse_from(["smai", "--playground", "maybe"]).is_err());
}

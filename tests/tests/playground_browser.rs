//! The playground page in Debian's headless Chromium against the real models (tiny.en, voice
//! joe): tests/browser/playground.mjs drives it through Playwright and checks each flow (speak
//! and transcribe the download back, record a dev clip from the fake microphone, uploads,
//! refusals, a second server without auth over HTTPS, no console errors). Screenshots of each state go to
//! `<target>/tmp/playground-screenshots`. Without Chromium, Node or the pinned playwright-core
//! the test says so and passes, unless `SMAI_REQUIRE_BROWSER=1` (as scripts/test sets).

use smai_core::{Service, Tier, VoiceAccess};
use smai_e2e::real::{dev_clips, real_server, workspace};
use smai_server::AuthMode;
use std::path::{Path, PathBuf};

fn chromium() -> PathBuf {
    std::env::var_os("SMAI_CHROMIUM").map_or_else(|| PathBuf::from("/usr/bin/chromium"), PathBuf::from)
}

/// What the browser test needs and this machine lacks, if anything.
fn missing_tools() -> Option<String> {
    if !chromium().is_file() {
        return Some(format!("no Chromium at {} (apt-get install chromium)", chromium().display()));
    }
    if !std::process::Command::new("node").arg("--version").output().is_ok_and(|o| o.status.success()) {
        return Some("no node on PATH (apt-get install nodejs)".into());
    }
    let playwright = workspace().join("tests/browser/node_modules/playwright-core/package.json");
    if !playwright.is_file() {
        return Some("playwright-core is not installed (cd tests/browser && npm ci)".into());
    }
    None
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_playground_works_in_chromium_against_the_real_models() {
    if let Some(missing) = missing_tools() {
        let required = std::env::var("SMAI_REQUIRE_BROWSER").as_deref() == Ok("1");
        assert!(!required, "SMAI_REQUIRE_BROWSER=1 but {missing}");
        eprintln!("SKIPPED the playground's browser test: {missing}; scripts/test installs what it needs");
        return;
    }
    let (t, key) = real_server(|_| {}).await;
    // One request a minute: the page's second catalogue call is refused with a retry time.
    let rpm_one = Tier { rpm: 1, ..Tier::default() };
    let limited = t.create_key_with(&[Service::Tts, Service::Asr], VoiceAccess::All, rpm_one).await;
    // The same models without keys, served over HTTPS: the page hides its key field and speaks
    // without one, its socket over wss.
    let ca = smai_e2e::tls::Ca::new("playground test CA");
    let tls_dir = tempfile::tempdir().unwrap();
    let files = smai_e2e::tls::TlsFiles::write(tls_dir.path(), &ca.server("localhost"));
    let (no_auth, _) = real_server(|c| {
        c.auth = AuthMode::Disabled;
        c.tls_cert = Some(files.cert.clone());
        c.tls_key = Some(files.key.clone());
    })
    .await;
    assert!(no_auth.base.starts_with("https://"), "{}", no_auth.base);
    let (clip, _) = dev_clips("ljspeech_prernasocity/wavs/LJ001-0004", 1).remove(0);
    let shots = Path::new(env!("CARGO_TARGET_TMPDIR")).join("playground-screenshots");
    let _ = std::fs::remove_dir_all(&shots);

    let script = workspace().join("tests/browser/playground.mjs");
    let output = tokio::process::Command::new("node")
        .arg(&script)
        .arg(&t.base)
        .arg(&key)
        .arg(&shots)
        .arg(&clip)
        .arg(&limited)
        .arg(&no_auth.base)
        .env("SMAI_CHROMIUM", chromium())
        .output()
        .await
        .expect("node runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    eprintln!("{stdout}{}", String::from_utf8_lossy(&output.stderr));
    assert!(output.status.success(), "the browser flows failed: {}", output.status);
    assert!(!stdout.contains("skipped"), "every flow ran");
    let screenshots = std::fs::read_dir(&shots)
        .unwrap()
        .filter(|e| e.as_ref().is_ok_and(|e| e.path().extension() == Some("png".as_ref())));
    assert!(screenshots.count() >= 13, "a screenshot of each state in {}", shots.display());
    t.server.shutdown().await.unwrap();
    no_auth.server.shutdown().await.unwrap();
}

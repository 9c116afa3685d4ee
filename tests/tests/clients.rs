//! Real clients against the real server on the installed models: the official `openai`
//! Python package (tests/python/openai_compat.py) and the README's examples (curl, Python,
//! Node). The Python comes from the venv named by SMAI_TEST_PYTHON (see .ci/run); these tests
//! fail, rather than skip, when it or the models are missing.

use smai_core::{Service, VoiceAccess};
use smai_e2e::real::run_client;
use smai_e2e::TestServer;
use smai_server::ServeConfig;
use std::path::{Path, PathBuf};

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("workspace root").to_path_buf()
}

fn models_dir() -> PathBuf {
    std::env::var_os("SMAI_MODELS_DIR").map(PathBuf::from).unwrap_or_else(|| workspace().join("models/cache"))
}

/// A short dev-set clip and words its transcript must contain.
fn clip() -> (PathBuf, &'static str) {
    let dir =
        std::env::var_os("SMAI_EVAL_DIR").map(PathBuf::from).unwrap_or_else(|| workspace().join("../shared/eval/dev"));
    let clip = dir.join("ljspeech_prernasocity/wavs/LJ001-0002.wav");
    assert!(clip.is_file(), "dev clip missing at {} (set SMAI_EVAL_DIR)", clip.display());
    (clip, "comparatively,modern")
}

fn python() -> String {
    std::env::var("SMAI_TEST_PYTHON").unwrap_or_else(|_| {
        panic!(
            "SMAI_TEST_PYTHON is not set: create the venv with `python3 -m venv .venv && .venv/bin/pip install \
             openai==1.109.1` and export SMAI_TEST_PYTHON=$PWD/.venv/bin/python"
        )
    })
}

/// The server on the real engines (tiny.en as the default, base for translation, voice joe),
/// and an API key for both services.
async fn real_server() -> (TestServer, String) {
    let models = models_dir();
    let dir = tempfile::tempdir().expect("temp dir");
    let mut config = ServeConfig::for_tests(dir.path().join("unused.db"));
    config.models_dir = models.clone();
    config.asr_models = vec!["tiny.en".into(), "base".into()];
    for needed in ["tiny.en/model.bin", "base/model.bin", "en_US-joe-medium/en_US-joe-medium.onnx"] {
        assert!(
            models.join(needed).is_file(),
            "model file {needed} missing under {} (run `smai models pull`)",
            models.display()
        );
    }
    let engines = smai_server::engines::load(&config).await.expect("real engines load");
    assert!(engines.synthesizer.is_some() && engines.transcriber.is_some());
    let t = TestServer::start_full(|c| c.models_dir = models, engines).await;
    let (_, key) = t.create_key(&[Service::Tts, Service::Asr], VoiceAccess::All, None).await;
    (t, key)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_openai_python_package_works_against_the_server() {
    let python = python();
    let (t, key) = real_server().await;
    let (clip, words) = clip();
    let script = workspace().join("tests/python/openai_compat.py");
    let mut command = tokio::process::Command::new(python);
    command.arg(script).env("SMAI_TEST_CLIP", clip).env("SMAI_TEST_CLIP_WORDS", words);
    let stdout = run_client(&mut command, &t, &key, &workspace()).await;
    assert!(stdout.contains("all openai client checks passed"));
    t.server.shutdown().await.unwrap();
}

/// Whether a transcript of the examples' synthesised sentence ("Hello! This sentence was
/// spoken by a machine.") has most of its words; synthesis samples noise, so one may slip.
fn heard_back(transcript: &str) -> bool {
    let transcript = transcript.to_lowercase();
    ["hello", "sentence", "spoken", "machine"].iter().filter(|w| transcript.contains(*w)).count() >= 3
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_readme_examples_run_against_the_server() {
    let python = python();
    let (t, key) = real_server().await;
    let examples = workspace().join("examples");
    let cwd = tempfile::tempdir().unwrap();

    let out =
        run_client(tokio::process::Command::new("bash").arg(examples.join("curl.sh")), &t, &key, cwd.path()).await;
    assert!(heard_back(&out), "curl example: {out}");
    assert!(std::fs::metadata(cwd.path().join("hello.pcm")).unwrap().len() > 10_000, "streamed pcm saved");

    let out =
        run_client(tokio::process::Command::new(&python).arg(examples.join("speech.py")), &t, &key, cwd.path()).await;
    assert!(heard_back(&out), "python example: {out}");
    assert!(std::fs::read(cwd.path().join("hello.mp3")).unwrap().len() > 5_000);

    let (clip, _) = clip();
    let out = run_client(
        tokio::process::Command::new("node").arg(examples.join("transcribe.mjs")).arg(&clip),
        &t,
        &key,
        cwd.path(),
    )
    .await;
    assert!(out.starts_with("[0.00 - ") && out.to_lowercase().contains("comparatively modern"), "node example: {out}");
    t.server.shutdown().await.unwrap();
}

//! The real models for end-to-end tests: where they and the dev set are, and a server on them.
//! Tests using these fail, rather than skip, when the models are missing (`smai models pull`).

use crate::TestServer;
use smai_core::{Service, VoiceAccess};
use smai_server::ServeConfig;
use std::path::{Path, PathBuf};

pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("workspace root").to_path_buf()
}

/// `$SMAI_MODELS_DIR`, else models/cache at the workspace root.
pub fn models_dir() -> PathBuf {
    std::env::var_os("SMAI_MODELS_DIR").map(PathBuf::from).unwrap_or_else(|| workspace().join("models/cache"))
}

/// `$SMAI_EVAL_DIR`, else the dev set beside the workspace.
pub fn eval_dir() -> PathBuf {
    std::env::var_os("SMAI_EVAL_DIR").map(PathBuf::from).unwrap_or_else(|| workspace().join("../shared/eval/dev"))
}

/// The first `n` dev clips whose path starts with `prefix` and ends with `.wav`, with their
/// reference transcripts.
pub fn dev_clips(prefix: &str, n: usize) -> Vec<(PathBuf, String)> {
    let manifest = std::fs::read_to_string(eval_dir().join("manifest.tsv")).expect("dev manifest");
    let clips: Vec<(PathBuf, String)> = manifest
        .lines()
        .skip(1)
        .map(|line| line.split('\t').collect::<Vec<_>>())
        .filter(|f| f[0].starts_with(prefix) && f[0].ends_with(".wav"))
        .take(n)
        .map(|f| (eval_dir().join(f[0]), f[3].to_owned()))
        .collect();
    assert_eq!(clips.len(), n, "dev clips {prefix}* missing under {}", eval_dir().display());
    clips
}

/// Mono 16-bit samples of a WAV file and its rate.
pub fn wav_samples(path: &Path) -> (Vec<i16>, u32) {
    let mut reader = hound::WavReader::open(path).unwrap();
    let spec = reader.spec();
    assert_eq!((spec.channels, spec.bits_per_sample), (1, 16), "{}", path.display());
    (reader.samples::<i16>().map(Result::unwrap).collect(), spec.sample_rate)
}

/// The real engines (tiny.en, the Silero VAD, voice joe without sampling noise, so two
/// syntheses of one text are identical) on port 0, `configure` applied; a key for both services.
pub async fn real_server(configure: impl FnOnce(&mut ServeConfig)) -> (TestServer, String) {
    let models = models_dir();
    let engines = real_engines().await;
    let t = TestServer::start_full(
        |c| {
            c.models_dir = models;
            configure(c);
        },
        engines,
    )
    .await;
    let (_, key) = t.create_key(&[Service::Tts, Service::Asr], VoiceAccess::All, None).await;
    (t, key)
}

/// The engines of [`real_server`].
pub async fn real_engines() -> smai_server::serve::Engines {
    let models = models_dir();
    for needed in ["tiny.en/model.bin", "en_US-joe-medium/en_US-joe-medium.onnx", "silero-vad/silero_vad_16k_op15.onnx"]
    {
        assert!(models.join(needed).is_file(), "model file {needed} missing under {}", models.display());
    }
    let dir = tempfile::tempdir().unwrap();
    let voices = dir.path().join("voices.json");
    let spec = r#"{"voices":[{"id":"joe","model":"en_US-joe-medium","noise_scale":0,"noise_w":0}]}"#;
    std::fs::write(&voices, spec).unwrap();
    let mut config = ServeConfig::for_tests(dir.path().join("unused.db"));
    config.models_dir = models.clone();
    config.asr_models = vec!["tiny.en".into()];
    config.voices_config = Some(voices.clone());
    // As the server reads it: benches compare compute types with it; unset, float32.
    if let Ok(compute) = std::env::var("SMAI_COMPUTE_TYPE") {
        config.compute_type = smai_inference::whisper::ComputeTypes::parse(&compute).expect("SMAI_COMPUTE_TYPE");
    }
    smai_server::engines::load(&config).await.expect("real engines load")
}

/// REST's transcript (text format) of a file, for the streaming protocols to be compared with.
pub async fn rest_transcript(t: &TestServer, key: &str, clip: &Path) -> String {
    let file = reqwest::multipart::Part::bytes(std::fs::read(clip).unwrap()).file_name("clip.wav");
    let form = reqwest::multipart::Form::new().part("file", file).text("response_format", "text");
    let response =
        reqwest::Client::new().post(t.url("/v1/audio/transcriptions")).bearer_auth(key).multipart(form).send().await;
    let response = response.unwrap();
    assert!(response.status().is_success(), "{response:?}");
    response.text().await.unwrap().trim().to_owned()
}

/// Runs a client program against the server (`SMAI_BASE_URL`, `SMAI_API_KEY` set) in `cwd`;
/// its standard output, after checking it succeeded.
pub async fn run_client(command: &mut tokio::process::Command, t: &TestServer, key: &str, cwd: &Path) -> String {
    let output = command
        .env("SMAI_BASE_URL", &t.base)
        .env("SMAI_API_KEY", key)
        .current_dir(cwd)
        .output()
        .await
        .unwrap_or_else(|e| panic!("cannot run {command:?}: {e}"));
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    eprintln!("{stdout}{}", String::from_utf8_lossy(&output.stderr));
    assert!(output.status.success(), "{command:?} failed: {}", output.status);
    stdout
}

//! gRPC on the real models: Recognize equal to REST's transcript, StreamingRecognize of real
//! speech in 100 ms chunks (interim results before finals, WER within 2 points of REST's),
//! StreamingSynthesize equal to REST's synthesis sentence for sentence, and the README's
//! Python grpcio example over TLS 1.3 with a private CA. These fail, rather than skip, when
//! the models or the grpcio venv (SMAI_GRPC_PYTHON, made by scripts/test) are missing.

use smai_e2e::real::{dev_clips, real_server, rest_transcript, wav_samples, workspace};
use smai_e2e::tls::Ca;
use smai_e2e::TestServer;
use smai_server::config::GrpcListen;
use smai_server::grpc::proto::speech_recognition_client::SpeechRecognitionClient;
use smai_server::grpc::proto::streaming_recognize_request::Request as StreamRequest;
use smai_server::grpc::proto::streaming_recognize_response::Response as StreamResponse;
use smai_server::grpc::proto::text_to_speech_client::TextToSpeechClient;
use smai_server::grpc::proto::*;
use std::path::{Path, PathBuf};
use tonic::transport::Channel;
use tonic::Request;

fn clips() -> Vec<(PathBuf, String)> {
    dev_clips("ljspeech", 3)
}

/// The real engines with gRPC on port 0, over TLS when `tls` gives the certificate files.
async fn real_grpc_server(tls: Option<(PathBuf, PathBuf)>) -> (TestServer, String) {
    real_server(|c| {
        c.grpc_listen = GrpcListen::On("127.0.0.1:0".parse().unwrap());
        if let Some((cert, key)) = tls {
            c.tls_cert = Some(cert);
            c.tls_key = Some(key);
        }
    })
    .await
}

async fn channel(t: &TestServer) -> Channel {
    let addr = t.server.grpc_addr.expect("gRPC listens");
    Channel::from_shared(format!("http://{addr}")).unwrap().connect().await.expect("gRPC connects")
}

fn with_key<T>(message: T, key: &str) -> Request<T> {
    let mut request = Request::new(message);
    request.metadata_mut().insert("x-api-key", key.parse().unwrap());
    request
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recognize_gives_the_rest_transcript() {
    let (t, key) = real_grpc_server(None).await;
    let mut asr = SpeechRecognitionClient::new(channel(&t).await);
    let (clip, _) = &clips()[0];
    let rest = rest_transcript(&t, &key, clip).await;
    let request = RecognizeRequest { config: None, audio: std::fs::read(clip).unwrap() };
    let answer = asr.recognize(with_key(request, &key)).await.unwrap().into_inner();
    assert_eq!(answer.text, rest);
    assert_eq!(answer.language, "en");
    assert!((answer.duration_seconds - 9.655).abs() < 0.05, "{}", answer.duration_seconds);
    assert!(!answer.segments.is_empty() && answer.segments.iter().all(|s| s.end_ms > s.start_ms));
    t.server.shutdown().await.unwrap();
}

/// The clip's 16-bit samples as little-endian bytes, and its rate.
fn pcm_of(clip: &Path) -> (Vec<u8>, u32) {
    let (samples, rate) = wav_samples(clip);
    (samples.iter().flat_map(|s| s.to_le_bytes()).collect(), rate)
}

/// Streams `clip` in 100 ms chunks at its own rate, four times faster than real time (sent all
/// at once, a short clip could end before any partial is decoded); returns the finals' text and
/// whether an interim result came before the first final.
async fn stream_clip(asr: &mut SpeechRecognitionClient<Channel>, key: &str, clip: &Path) -> (String, bool) {
    let (bytes, rate) = pcm_of(clip);
    let config = StreamingRecognitionConfig {
        config: None,
        encoding: AudioEncoding::LinearPcm as i32,
        sample_rate_hz: rate,
        interim_results: true,
        vad: None,
    };
    let mut requests = vec![StreamingRecognizeRequest { request: Some(StreamRequest::Config(config)) }];
    let chunk = (rate / 10) as usize * 2;
    requests.extend(
        bytes.chunks(chunk).map(|c| StreamingRecognizeRequest { request: Some(StreamRequest::Audio(c.to_vec())) }),
    );
    let paced = futures_util::StreamExt::then(tokio_stream::iter(requests), |request| async move {
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
        request
    });
    let mut responses = asr.streaming_recognize(with_key(paced, key)).await.unwrap().into_inner();
    let (mut finals, mut interim_first, mut seen_final) = (String::new(), false, false);
    while let Some(response) = responses.message().await.unwrap() {
        if let Some(StreamResponse::Result(result)) = response.response {
            if result.is_final {
                seen_final = true;
                finals.push_str(&result.text);
            } else if !seen_final {
                interim_first = true;
            }
        }
    }
    (finals.trim().to_owned(), interim_first)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streaming_recognize_in_100_ms_chunks_is_within_two_wer_points_of_rest() {
    let (t, key) = real_grpc_server(None).await;
    let mut asr = SpeechRecognitionClient::new(channel(&t).await);
    let (mut rest, mut streamed) = (Vec::new(), Vec::new());
    for (clip, reference) in clips() {
        let whole = rest_transcript(&t, &key, &clip).await;
        let (live, interim_first) = stream_clip(&mut asr, &key, &clip).await;
        eprintln!("{}\n  REST:   {whole}\n  stream: {live}", clip.display());
        assert!(interim_first, "interim results come before the first final");
        rest.push((reference.clone(), whole));
        streamed.push((reference, live));
    }
    let wer =
        |pairs: &[(String, String)]| smai_tools::wer::corpus_wer(pairs.iter().map(|(r, h)| (r.as_str(), h.as_str())));
    let (rest_wer, stream_wer) = (wer(&rest), wer(&streamed));
    eprintln!("WER: REST {:.2} %, streamed {:.2} %", rest_wer * 100.0, stream_wer * 100.0);
    assert!(stream_wer <= rest_wer + 0.02, "streamed WER {stream_wer:.4} vs REST {rest_wer:.4}");
    t.server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streaming_synthesize_sends_each_sentence_as_rest_synthesises_it() {
    let (t, key) = real_grpc_server(None).await;
    let mut tts = TextToSpeechClient::new(channel(&t).await);
    let text = "The first sentence is short. Here comes a second one! And is this the third?";
    let request =
        SynthesizeRequest { text: text.into(), voice: "joe".into(), speed: 0.0, response_format: "pcm".into() };
    let mut chunks = tts.streaming_synthesize(with_key(request, &key)).await.unwrap().into_inner();
    let (mut streamed, mut texts) = (Vec::new(), Vec::new());
    while let Some(chunk) = chunks.message().await.unwrap() {
        assert_eq!(chunk.sample_rate_hz, 22_050);
        texts.push(chunk.text.trim().to_owned());
        streamed.extend_from_slice(&chunk.audio);
    }
    assert_eq!(texts, ["The first sentence is short.", "Here comes a second one!", "And is this the third?"]);
    let body = serde_json::json!({"input": text, "voice": "joe", "response_format": "pcm"});
    let response = reqwest::Client::new().post(t.url("/v1/audio/speech")).bearer_auth(&key).json(&body).send().await;
    let whole = response.unwrap().bytes().await.unwrap();
    assert_eq!(streamed.len(), whole.len(), "the same sample count");
    let samples = |b: &[u8]| b.chunks_exact(2).map(|c| i16::from_le_bytes([c[0], c[1]])).collect::<Vec<_>>();
    let diff = samples(&streamed).iter().zip(samples(&whole)).map(|(a, b)| (i32::from(*a) - i32::from(b)).abs()).max();
    assert!(diff.unwrap_or(0) <= 1, "largest sample difference {diff:?}");
    t.server.shutdown().await.unwrap();
}

fn grpc_python() -> String {
    std::env::var("SMAI_GRPC_PYTHON").unwrap_or_else(|_| {
        panic!(
            "SMAI_GRPC_PYTHON is not set: create the venv with `python3 -m venv .venv-grpc && .venv-grpc/bin/pip \
             install grpcio==1.76.0 grpcio-tools==1.76.0 grpcio-status==1.76.0` and export \
             SMAI_GRPC_PYTHON=$PWD/.venv-grpc/bin/python"
        )
    })
}

async fn run(command: &mut tokio::process::Command) -> String {
    let output = command.output().await.unwrap_or_else(|e| panic!("cannot run {command:?}: {e}"));
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    eprintln!("{stdout}{}", String::from_utf8_lossy(&output.stderr));
    assert!(output.status.success(), "{command:?} failed: {}", output.status);
    stdout
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_readme_grpcio_example_runs_over_tls_with_a_private_ca() {
    let python = grpc_python();
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("smai test CA");
    let issued = ca.server("localhost");
    let (cert, key_file, ca_file) =
        (dir.path().join("server.pem"), dir.path().join("server.key"), dir.path().join("ca.pem"));
    std::fs::write(&cert, &issued.chain_pem).unwrap();
    std::fs::write(&key_file, &issued.key_pem).unwrap();
    std::fs::write(&ca_file, &ca.pem).unwrap();
    let (t, key) = real_grpc_server(Some((cert, key_file))).await;

    let generated = dir.path().join("gen");
    std::fs::create_dir_all(&generated).unwrap();
    let proto = workspace().join("proto");
    let mut protoc = tokio::process::Command::new(&python);
    protoc.args(["-m", "grpc_tools.protoc", "-I"]).arg(&proto).arg("--python_out").arg(&generated);
    protoc
        .arg("--grpc_python_out")
        .arg(&generated)
        .arg(proto.join("smai/v1/tts.proto"))
        .arg(proto.join("smai/v1/asr.proto"));
    run(&mut protoc).await;

    let port = t.server.grpc_addr.unwrap().port();
    let (clip, _) = &clips()[1];
    let mut example = tokio::process::Command::new(&python);
    example
        .arg(workspace().join("examples/grpc_client.py"))
        .arg(clip)
        .env("PYTHONPATH", &generated)
        .env("SMAI_GRPC_ADDR", format!("localhost:{port}"))
        .env("SMAI_CA_CERT", &ca_file)
        .env("SMAI_API_KEY", &key)
        .current_dir(dir.path());
    let out = run(&mut example).await;
    let transcript = out.lines().find_map(|l| l.strip_prefix("transcript:")).expect("a transcript line").to_lowercase();
    let heard = ["hello", "sentence", "spoken", "machine"].iter().filter(|w| transcript.contains(*w)).count();
    assert!(heard >= 3, "synthesised speech transcribed back: {transcript}");
    assert!(out.contains("sentence 1: 'This sentence was spoken by a machine.'"), "{out}");
    assert!(out.lines().any(|l| l.starts_with("final 0 [")), "live finals printed: {out}");
    assert!(out.contains("refused: UNAUTHENTICATED reason=unauthorized domain=smai"), "{out}");
    assert!(out.contains("requests left this minute: 59"), "{out}");
    assert!(out.contains("voices (bearer): joe"), "{out}");
    t.server.shutdown().await.unwrap();
}

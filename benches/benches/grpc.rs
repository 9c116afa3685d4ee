//! gRPC next to its peers, in one run. Recognize against REST's transcription of the same
//! file on the same server: with the fake engine (1 MiB upload: the protocols' own cost) and,
//! when the models are installed, tiny.en on a dev clip (what a user sees). Then refusals:
//! UNAUTHENTICATED through smai's auth layer against a bare tonic service that refuses every
//! call at once, each iteration 64 calls in flight on one channel; the throughput ratio is
//! the bare time over smai's.

use criterion::{criterion_group, criterion_main, Criterion};
use futures_util::future::join_all;
use smai_core::{Service, VoiceAccess};
use smai_e2e::TestServer;
use smai_server::config::GrpcListen;
use smai_server::grpc::proto::speech_recognition_client::SpeechRecognitionClient;
use smai_server::grpc::proto::text_to_speech_client::TextToSpeechClient;
use smai_server::grpc::proto::text_to_speech_server::{TextToSpeech, TextToSpeechServer};
use smai_server::grpc::proto::*;
use std::path::PathBuf;
use tonic::transport::Channel;
use tonic::{Request, Response, Status, Streaming};

/// Refuses everything, as fast as tonic can answer: the floor for a refusal.
struct RefuseAll;

type Chunks = tokio_stream::Empty<Result<AudioChunk, Status>>;

fn refused() -> Status {
    Status::unauthenticated("unauthorized: missing API key: send X-API-Key or Authorization: Bearer")
}

#[tonic::async_trait]
impl TextToSpeech for RefuseAll {
    async fn synthesize(&self, _: Request<SynthesizeRequest>) -> Result<Response<SynthesizeResponse>, Status> {
        Err(refused())
    }
    type StreamingSynthesizeStream = Chunks;
    async fn streaming_synthesize(&self, _: Request<SynthesizeRequest>) -> Result<Response<Chunks>, Status> {
        Err(refused())
    }
    type SynthesizeOnlineStream = Chunks;
    async fn synthesize_online(
        &self,
        _: Request<Streaming<SynthesizeOnlineRequest>>,
    ) -> Result<Response<Chunks>, Status> {
        Err(refused())
    }
    async fn list_voices(&self, _: Request<ListVoicesRequest>) -> Result<Response<ListVoicesResponse>, Status> {
        Err(refused())
    }
}

async fn connect(addr: std::net::SocketAddr) -> Channel {
    Channel::from_shared(format!("http://{addr}")).unwrap().connect().await.unwrap()
}

fn with_key<T>(message: T, key: &str) -> Request<T> {
    let mut request = Request::new(message);
    request.metadata_mut().insert("x-api-key", key.parse().unwrap());
    request
}

async fn rest_transcribe(client: &reqwest::Client, t: &TestServer, key: &str, audio: Vec<u8>) {
    let form = reqwest::multipart::Form::new().part("file", reqwest::multipart::Part::bytes(audio).file_name("a.wav"));
    let response = client.post(t.url("/v1/audio/transcriptions")).bearer_auth(key).multipart(form).send().await;
    let response = response.unwrap();
    assert!(response.status().is_success());
    response.bytes().await.unwrap();
}

fn recognize_pair(c: &mut Criterion, runtime: &tokio::runtime::Runtime, t: &TestServer, name: &str, audio: Vec<u8>) {
    let key = runtime.block_on(t.create_unlimited_key(&[Service::Asr]));
    let channel = runtime.block_on(connect(t.server.grpc_addr.unwrap()));
    let client = reqwest::Client::new();
    let mut group = c.benchmark_group(format!("recognize_{name}"));
    group.sample_size(10);
    group.bench_function("rest", |b| b.to_async(runtime).iter(|| rest_transcribe(&client, t, &key, audio.clone())));
    group.bench_function("grpc", |b| {
        b.to_async(runtime).iter(|| async {
            let mut asr = SpeechRecognitionClient::new(channel.clone());
            let request = RecognizeRequest { config: None, audio: audio.clone() };
            asr.recognize(with_key(request, &key)).await.unwrap();
        })
    });
    group.finish();
}

fn models_dir() -> PathBuf {
    std::env::var_os("SMAI_MODELS_DIR").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("../models/cache"))
}

fn recognize(c: &mut Criterion) {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let grpc = |c: &mut smai_server::ServeConfig| c.grpc_listen = GrpcListen::On("127.0.0.1:0".parse().unwrap());
    let t = runtime.block_on(TestServer::start_with(grpc));
    recognize_pair(c, &runtime, &t, "fake_engine_1mib", vec![7; 1 << 20]);
    runtime.block_on(t.server.shutdown()).unwrap();

    let models = models_dir();
    if !models.join("tiny.en/model.bin").is_file() {
        eprintln!("tiny.en is not installed under {}: skipping the real-model pair", models.display());
        return;
    }
    let mut config = smai_server::ServeConfig::for_tests(PathBuf::from("unused.db"));
    (config.models_dir, config.asr_models) = (models, vec!["tiny.en".into()]);
    let mut engines = runtime.block_on(smai_server::engines::load(&config)).unwrap();
    engines.synthesizer = None;
    let t = runtime.block_on(TestServer::start_full(grpc, engines));
    let clip = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../shared/eval/dev/ljspeech_prernasocity/wavs/LJ001-0002.wav");
    recognize_pair(c, &runtime, &t, "tiny_en_clip", std::fs::read(clip).expect("dev clip"));
    runtime.block_on(t.server.shutdown()).unwrap();
}

const IN_FLIGHT: usize = 64;

fn refusals(c: &mut Criterion) {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let grpc = |c: &mut smai_server::ServeConfig| c.grpc_listen = GrpcListen::On("127.0.0.1:0".parse().unwrap());
    let t = runtime.block_on(TestServer::start_with(grpc));
    let _ = runtime.block_on(t.create_key(&[Service::Tts], VoiceAccess::All, None));
    let bare_addr = runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        // Without Nagle, as smai's listener: otherwise delayed ACKs, not tonic, set the pace.
        let incoming = tokio_stream::StreamExt::map(tokio_stream::wrappers::TcpListenerStream::new(listener), |tcp| {
            tcp.and_then(|tcp| tcp.set_nodelay(true).map(|()| tcp))
        });
        let server = tonic::transport::Server::builder().add_service(TextToSpeechServer::new(RefuseAll));
        tokio::spawn(server.serve_with_incoming(incoming));
        addr
    });
    let smai = runtime.block_on(connect(t.server.grpc_addr.unwrap()));
    let bare = runtime.block_on(connect(bare_addr));
    let burst = |channel: Channel| async move {
        let calls = (0..IN_FLIGHT).map(|_| {
            let mut tts = TextToSpeechClient::new(channel.clone());
            async move { tts.list_voices(ListVoicesRequest {}).await.unwrap_err() }
        });
        for status in join_all(calls).await {
            assert_eq!(status.code(), tonic::Code::Unauthenticated, "{status:?}");
        }
    };
    let mut group = c.benchmark_group("unauthenticated_64_in_flight");
    group.throughput(criterion::Throughput::Elements(IN_FLIGHT as u64));
    group.bench_function("bare_tonic", |b| b.to_async(&runtime).iter(|| burst(bare.clone())));
    group.bench_function("smai", |b| b.to_async(&runtime).iter(|| burst(smai.clone())));
    group.finish();
    runtime.block_on(t.server.shutdown()).unwrap();
}

criterion_group! {
    name = benches;
    config = Criterion::default().measurement_time(std::time::Duration::from_secs(5)).warm_up_time(std::time::Duration::from_secs(1));
    targets = recognize, refusals
}
criterion_main!(benches);

//! gRPC end to end with a real tonic client against the real server on port 0 (small fake
//! engines: these tests are about the protocol, auth and limits; tests/tests/grpc_models.rs
//! runs the real models): metadata auth, the error table with ErrorInfo and RetryInfo, rate
//! metadata, the message size limit, health and reflection, streams, and a client that cancels.

use smai_core::{ModelInfo, Service, Tier, TranscribeOptions, Transcriber, VoiceAccess};
use smai_e2e::{ByteCountTranscriber, TestServer, ToneSynthesizer};
use smai_server::config::GrpcListen;
use smai_server::grpc::proto::speech_recognition_client::SpeechRecognitionClient;
use smai_server::grpc::proto::streaming_recognize_request::Request as StreamRequest;
use smai_server::grpc::proto::streaming_recognize_response::Response as StreamResponse;
use smai_server::grpc::proto::synthesize_online_request::Request as OnlineRequest;
use smai_server::grpc::proto::text_to_speech_client::TextToSpeechClient;
use smai_server::grpc::proto::*;
use smai_server::serve::Engines;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Channel;
use tonic::{Code, Request, Status};
use tonic_types::StatusExt;

const BOTH: [Service; 2] = [Service::Tts, Service::Asr];

async fn start(configure: impl FnOnce(&mut smai_server::ServeConfig)) -> TestServer {
    let engines =
        Engines { transcriber: Some(Arc::new(ByteCountTranscriber)), synthesizer: Some(Arc::new(ToneSynthesizer)) };
    start_with_engines(configure, engines).await
}

async fn start_with_engines(configure: impl FnOnce(&mut smai_server::ServeConfig), engines: Engines) -> TestServer {
    let grpc = |c: &mut smai_server::ServeConfig| {
        c.grpc_listen = GrpcListen::On("127.0.0.1:0".parse().unwrap());
        configure(c);
    };
    TestServer::start_full(grpc, engines).await
}

async fn channel(t: &TestServer) -> Channel {
    let addr = t.server.grpc_addr.expect("gRPC listens");
    Channel::from_shared(format!("http://{addr}")).unwrap().connect().await.expect("gRPC connects")
}

fn keyed<T>(message: T, name: &'static str, value: &str) -> Request<T> {
    let mut request = Request::new(message);
    request.metadata_mut().insert(name, value.parse().expect("ASCII metadata"));
    request
}

fn with_key<T>(message: T, key: &str) -> Request<T> {
    keyed(message, "x-api-key", key)
}

fn reason(status: &Status) -> String {
    let details = status.get_error_details();
    let info = details.error_info().unwrap_or_else(|| panic!("no ErrorInfo on {status:?}"));
    assert_eq!(info.domain, "smai");
    assert!(!info.metadata["request_id"].is_empty());
    assert!(status.message().starts_with(&format!("{}: ", info.reason)), "{status:?}");
    info.reason.clone()
}

fn speech(text: &str, voice: &str) -> SynthesizeRequest {
    SynthesizeRequest { text: text.into(), voice: voice.into(), speed: 0.0, response_format: String::new() }
}

fn remaining_requests(metadata: &tonic::metadata::MetadataMap) -> u64 {
    metadata.get("x-ratelimit-remaining-requests").expect("rate metadata").to_str().unwrap().parse().unwrap()
}

#[tokio::test]
async fn synthesize_takes_the_key_as_x_api_key_or_bearer_and_returns_rate_metadata() {
    let t = start(|_| {}).await;
    let (_, key) = t.create_key(&BOTH, VoiceAccess::All, None).await;
    let mut tts = TextToSpeechClient::new(channel(&t).await);

    let answer = tts.synthesize(with_key(speech("Hello there.", "joe"), &key)).await.unwrap();
    assert_eq!(remaining_requests(answer.metadata()), 59);
    assert!(answer.metadata().get("ratelimit-policy").is_some());
    assert!(answer.metadata().get("x-request-id").is_some());
    let answer = answer.into_inner();
    assert_eq!(&answer.audio[..4], b"RIFF");
    assert_eq!((answer.content_type.as_str(), answer.sample_rate_hz), ("audio/wav", 16_000));
    assert!((answer.audio_seconds - 0.1).abs() < 1e-9);

    let bearer = keyed(speech("Hello again.", "joe"), "authorization", &format!("Bearer {key}"));
    let answer = tts.synthesize(bearer).await.unwrap();
    assert_eq!(remaining_requests(answer.metadata()), 58);
    let voices = tts.list_voices(with_key(ListVoicesRequest {}, &key)).await.unwrap().into_inner();
    let ids: Vec<&str> = voices.voices.iter().map(|v| v.id.as_str()).collect();
    assert_eq!(ids, ["joe", "joe-slow"]);
    t.server.shutdown().await.unwrap();
}

#[tokio::test]
async fn missing_malformed_and_revoked_keys_are_unauthenticated() {
    let t = start(|_| {}).await;
    let (id, key) = t.create_key(&BOTH, VoiceAccess::All, None).await;
    let mut tts = TextToSpeechClient::new(channel(&t).await);
    let missing = tts.synthesize(Request::new(speech("Hi.", "joe"))).await.unwrap_err();
    assert_eq!((missing.code(), reason(&missing).as_str()), (Code::Unauthenticated, "unauthorized"));
    let malformed = tts.synthesize(with_key(speech("Hi.", "joe"), "smai_not_a_key")).await.unwrap_err();
    assert_eq!((malformed.code(), reason(&malformed).as_str()), (Code::Unauthenticated, "unauthorized"));
    let two = keyed(with_key(speech("Hi.", "joe"), &key).into_inner(), "authorization", "Bearer smai_other");
    let mut two_keys = two;
    two_keys.metadata_mut().insert("x-api-key", key.parse().unwrap());
    assert_eq!(tts.synthesize(two_keys).await.unwrap_err().code(), Code::Unauthenticated);

    t.server.state.authenticator.store().revoke(&id).await.unwrap();
    let revoked = tts.synthesize(with_key(speech("Hi.", "joe"), &key)).await.unwrap_err();
    assert_eq!((revoked.code(), reason(&revoked).as_str()), (Code::Unauthenticated, "unauthorized"));
    assert!(!revoked.message().contains(&key), "the key is never echoed");
    t.server.shutdown().await.unwrap();
}

/// Refusals answered before the message is read must not leave their streams to be reset:
/// past enough resets the HTTP/2 server ends the connection, failing every call on the channel.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousands_of_refused_calls_on_one_channel_all_answer_unauthenticated() {
    let t = start(|_| {}).await;
    let channel = channel(&t).await;
    for _ in 0..400 {
        let calls = (0..64).map(|_| {
            let mut tts = TextToSpeechClient::new(channel.clone());
            async move { tts.list_voices(ListVoicesRequest {}).await.unwrap_err() }
        });
        for status in futures_util::future::join_all(calls).await {
            assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
        }
    }
    t.server.shutdown().await.unwrap();
}

#[tokio::test]
async fn permission_refusals_are_permission_denied_and_not_charged() {
    let t = start(|_| {}).await;
    let (_, tts_only) = t.create_key(&[Service::Tts], VoiceAccess::All, None).await;
    let joe_only = VoiceAccess::Only(["joe".to_owned()].into_iter().collect());
    let (_, limited_voices) = t.create_key(&BOTH, joe_only, None).await;
    let channel = channel(&t).await;
    let (mut tts, mut asr) = (TextToSpeechClient::new(channel.clone()), SpeechRecognitionClient::new(channel));

    let recognize = RecognizeRequest { config: None, audio: vec![1; 100] };
    let denied = asr.recognize(with_key(recognize, &tts_only)).await.unwrap_err();
    assert_eq!((denied.code(), reason(&denied).as_str()), (Code::PermissionDenied, "forbidden"));
    let voice = tts.synthesize(with_key(speech("Hi.", "joe-slow"), &limited_voices)).await.unwrap_err();
    assert_eq!((voice.code(), reason(&voice).as_str()), (Code::PermissionDenied, "voice_not_allowed"));
    let unknown = tts.synthesize(with_key(speech("Hi.", "nobody"), &limited_voices)).await.unwrap_err();
    assert_eq!(unknown.code(), Code::NotFound);

    // Neither refusal cost a request: these are the first charged calls of both keys.
    let listed = tts.list_voices(with_key(ListVoicesRequest {}, &tts_only)).await.unwrap();
    assert_eq!(remaining_requests(listed.metadata()), 59);
    let voices = tts.list_voices(with_key(ListVoicesRequest {}, &limited_voices)).await.unwrap();
    let ids: Vec<String> = voices.into_inner().voices.into_iter().map(|v| v.id).collect();
    assert_eq!(ids, ["joe"], "only the key's voices are listed");
    t.server.shutdown().await.unwrap();
}

#[tokio::test]
async fn past_the_rpm_calls_are_resource_exhausted_with_retry_info() {
    let t = start(|_| {}).await;
    let key = t.create_key_with(&BOTH, VoiceAccess::All, Tier { rpm: 2, ..Tier::default() }).await;
    let mut tts = TextToSpeechClient::new(channel(&t).await);
    for _ in 0..2 {
        tts.synthesize(with_key(speech("Hi.", "joe"), &key)).await.unwrap();
    }
    let refused = tts.synthesize(with_key(speech("Hi.", "joe"), &key)).await.unwrap_err();
    assert_eq!((refused.code(), reason(&refused).as_str()), (Code::ResourceExhausted, "rate_limit_exceeded"));
    let delay = refused.get_error_details().retry_info().and_then(|r| r.retry_delay).expect("RetryInfo");
    assert!(delay >= Duration::from_secs(1) && delay <= Duration::from_secs(60), "{delay:?}");
    let retry_after: u64 =
        refused.metadata().get("retry-after").expect("retry-after").to_str().unwrap().parse().unwrap();
    assert_eq!(retry_after, delay.as_secs());
    assert_eq!(remaining_requests(refused.metadata()), 0);
    t.server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recognize_accepts_up_to_the_upload_limit_and_refuses_past_it() {
    let t = start(|_| {}).await;
    let key = t.create_key_with(&BOTH, VoiceAccess::All, smai_e2e::UNLIMITED).await;
    let mut asr = SpeechRecognitionClient::new(channel(&t).await);
    let limit = 25 * 1024 * 1024;

    let fits = RecognizeRequest { config: None, audio: vec![7; 24 * 1024 * 1024] };
    let answer = asr.recognize(with_key(fits, &key)).await.unwrap().into_inner();
    assert_eq!(answer.text, format!("received {} bytes", 24 * 1024 * 1024));
    assert_eq!((answer.language.as_str(), answer.duration_seconds), ("en", 1.25));
    assert_eq!(answer.segments.len(), 1);

    for size in [limit + 1, 26 * 1024 * 1024] {
        let over = RecognizeRequest { config: None, audio: vec![7; size] };
        let refused = asr.recognize(with_key(over, &key)).await.unwrap_err();
        assert_eq!((refused.code(), reason(&refused).as_str()), (Code::InvalidArgument, "payload_too_large"), "{size}");
    }
    t.server.shutdown().await.unwrap();
}

/// Loaded once `loaded` is set: no model before, as while a server loads.
struct LoadingTranscriber {
    loaded: Arc<AtomicBool>,
}

impl Transcriber for LoadingTranscriber {
    fn models(&self) -> Vec<ModelInfo> {
        if self.loaded.load(Ordering::SeqCst) {
            ByteCountTranscriber.models()
        } else {
            Vec::new()
        }
    }
    fn transcribe(
        &self,
        audio: Vec<u8>,
        options: TranscribeOptions,
    ) -> Result<smai_core::TranscriptStream, smai_core::Error> {
        ByteCountTranscriber.transcribe(audio, options)
    }
    fn open_live(&self, options: TranscribeOptions) -> Result<smai_core::LiveSession, smai_core::Error> {
        ByteCountTranscriber.open_live(options)
    }
}

/// The services a reflection client of version `$version` (v1, v1alpha) lists.
macro_rules! reflected_services {
    ($version:ident, $channel:expr) => {{
        use tonic_reflection::pb::$version::server_reflection_client::ServerReflectionClient;
        use tonic_reflection::pb::$version::server_reflection_request::MessageRequest;
        use tonic_reflection::pb::$version::server_reflection_response::MessageResponse;
        use tonic_reflection::pb::$version::ServerReflectionRequest;
        let list = MessageRequest::ListServices(String::new());
        let request = ServerReflectionRequest { host: String::new(), message_request: Some(list) };
        let mut client = ServerReflectionClient::new($channel);
        let mut answers = client.server_reflection_info(tokio_stream::iter([request])).await.unwrap().into_inner();
        match answers.message().await.unwrap().and_then(|a| a.message_response) {
            Some(MessageResponse::ListServicesResponse(list)) => {
                list.service.into_iter().map(|s| s.name).collect::<Vec<String>>()
            }
            other => panic!("unexpected reflection answer {other:?}"),
        }
    }};
}

#[tokio::test]
async fn health_follows_model_loading_and_reflection_lists_the_services_without_a_key() {
    use tonic_health::pb::health_check_response::ServingStatus;
    use tonic_health::pb::health_client::HealthClient;
    use tonic_health::pb::HealthCheckRequest;
    let loaded = Arc::new(AtomicBool::new(false));
    let engines = Engines {
        transcriber: Some(Arc::new(LoadingTranscriber { loaded: loaded.clone() })),
        synthesizer: Some(Arc::new(ToneSynthesizer)),
    };
    let t = start_with_engines(|_| {}, engines).await;
    let channel = channel(&t).await;
    let mut health = HealthClient::new(channel.clone());
    let check = |service: &str| HealthCheckRequest { service: service.into() };
    let status = |r: tonic_health::pb::HealthCheckResponse| r.status;
    let overall = status(health.check(check("")).await.unwrap().into_inner());
    assert_eq!(overall, ServingStatus::NotServing as i32);
    let asr = status(health.check(check("smai.v1.SpeechRecognition")).await.unwrap().into_inner());
    assert_eq!(asr, ServingStatus::NotServing as i32);
    let tts = status(health.check(check("smai.v1.TextToSpeech")).await.unwrap().into_inner());
    assert_eq!(tts, ServingStatus::Serving as i32);

    loaded.store(true, Ordering::SeqCst);
    let mut serving = false;
    for _ in 0..100 {
        if status(health.check(check("")).await.unwrap().into_inner()) == ServingStatus::Serving as i32 {
            serving = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(serving, "health turns SERVING once the models are loaded");

    let v1 = reflected_services!(v1, channel.clone());
    let v1alpha = reflected_services!(v1alpha, channel);
    for services in [&v1, &v1alpha] {
        for name in ["smai.v1.TextToSpeech", "smai.v1.SpeechRecognition", "grpc.health.v1.Health"] {
            assert!(services.iter().any(|s| s == name), "{name} missing from {services:?}");
        }
    }
    t.server.shutdown().await.unwrap();
}

fn streaming_config(sample_rate_hz: u32, interim_results: bool) -> StreamingRecognizeRequest {
    let config = StreamingRecognitionConfig {
        config: None,
        encoding: AudioEncoding::LinearPcm as i32,
        sample_rate_hz,
        interim_results,
        vad: None,
    };
    StreamingRecognizeRequest { request: Some(StreamRequest::Config(config)) }
}

fn audio(bytes: Vec<u8>) -> StreamingRecognizeRequest {
    StreamingRecognizeRequest { request: Some(StreamRequest::Audio(bytes)) }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streaming_recognize_orders_events_and_charges_each_chunk_exactly() {
    let t = start(|_| {}).await;
    let (_, key) = t.create_key(&BOTH, VoiceAccess::All, None).await;
    let mut asr = SpeechRecognitionClient::new(channel(&t).await);
    // 8 kHz s16le: 0.25 s in 5 chunks of 50 ms, a commit, then 30 ms and the half-close.
    let mut requests = vec![streaming_config(8_000, true)];
    requests.extend((0..5).map(|_| audio(vec![0; 800])));
    requests.push(StreamingRecognizeRequest { request: Some(StreamRequest::Control(Control::Commit as i32)) });
    requests.push(audio(vec![0; 480]));
    let mut responses =
        asr.streaming_recognize(with_key(tokio_stream::iter(requests), &key)).await.unwrap().into_inner();
    let mut seen = Vec::new();
    while let Some(response) = responses.message().await.unwrap() {
        seen.push(response.response.expect("a response"));
    }
    let kinds: Vec<String> = seen
        .iter()
        .map(|r| match r {
            StreamResponse::SpeechEvent(e) if e.r#type == speech_event::Type::Started as i32 => {
                format!("start{}", e.utterance)
            }
            StreamResponse::SpeechEvent(e) => format!("stop{}", e.utterance),
            StreamResponse::Result(r) if r.is_final => format!("final{}", r.utterance),
            StreamResponse::Result(r) => format!("partial{}", r.utterance),
        })
        .collect();
    let first_final = kinds.iter().position(|k| k == "final0").expect("a final for the first utterance");
    assert_eq!(kinds[0], "start0");
    assert!(kinds[1..first_final].iter().all(|k| k == "partial0") && first_final > 1, "{kinds:?}");
    assert_eq!(kinds[first_final + 1], "stop0", "{kinds:?}");
    assert_eq!(kinds.last().unwrap(), "stop1", "{kinds:?}");
    let finals: Vec<&StreamingRecognitionResult> = seen
        .iter()
        .filter_map(|r| match r {
            StreamResponse::Result(r) if r.is_final => Some(r),
            _ => None,
        })
        .collect();
    assert_eq!(finals.len(), 2);
    assert_eq!((finals[0].start_ms, finals[0].end_ms, finals[0].stability), (0, 250, 1.0));
    assert_eq!(finals[0].stable_text, finals[0].text);
    let rows = t.usage_rows().await;
    let live: Vec<_> = rows.iter().filter(|r| r.0 == "/smai.v1.SpeechRecognition/StreamingRecognize").collect();
    // 0.28 s in all: ceil(2.8) = 3 tokens, however it was chunked.
    assert_eq!(live.len(), 1);
    assert_eq!((live[0].1, live[0].2), (200, 3));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_cancels_a_stream_frees_its_slot_and_leaves_one_usage_row() {
    let t = start(|_| {}).await;
    let key = t.create_key_with(&BOTH, VoiceAccess::All, Tier { concurrency: 1, ..Tier::default() }).await;
    let mut asr = SpeechRecognitionClient::new(channel(&t).await);
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    tx.send(streaming_config(16_000, true)).await.unwrap();
    tx.send(audio(vec![0; 3200])).await.unwrap();
    let mut responses = asr.streaming_recognize(with_key(ReceiverStream::new(rx), &key)).await.unwrap().into_inner();
    assert!(responses.message().await.unwrap().is_some(), "the stream is running");
    // The slot is held: a second call is refused while the stream runs.
    let busy = asr.list_models(with_key(ListModelsRequest {}, &key)).await.unwrap_err();
    assert_eq!(reason(&busy), "concurrency_limit_exceeded");
    drop(responses);
    drop(tx);
    let mut freed = false;
    for _ in 0..100 {
        if asr.list_models(with_key(ListModelsRequest {}, &key)).await.is_ok() {
            freed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(freed, "the cancelled stream's slot was given back");
    let rows = t.usage_rows().await;
    let live: Vec<_> = rows.iter().filter(|r| r.0 == "/smai.v1.SpeechRecognition/StreamingRecognize").collect();
    assert_eq!(live.len(), 1, "{rows:?}");
    // Dropping the call half-closes its input and resets the stream; whichever the server sees
    // first decides whether the session ended cleanly (200) or was cut off (499).
    assert!([499, 200].contains(&live[0].1), "recorded as closed by the client, or ended: {rows:?}");
    assert_eq!(live[0].2, 1, "the 0.1 s it sent was charged");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn synthesize_online_takes_text_in_pieces_and_answers_per_sentence() {
    let t = start(|_| {}).await;
    let (_, key) = t.create_key(&BOTH, VoiceAccess::All, None).await;
    let mut tts = TextToSpeechClient::new(channel(&t).await);
    let config = SynthesizeOnlineConfig { voice: "joe".into(), speed: 0.0, response_format: String::new() };
    let pieces = ["Hello there. How", " are you? I am", " fine"];
    let mut requests = vec![SynthesizeOnlineRequest { request: Some(OnlineRequest::Config(config)) }];
    requests.extend(pieces.iter().map(|p| SynthesizeOnlineRequest { request: Some(OnlineRequest::Text((*p).into())) }));
    let mut chunks = tts.synthesize_online(with_key(tokio_stream::iter(requests), &key)).await.unwrap().into_inner();
    let mut texts = Vec::new();
    while let Some(chunk) = chunks.message().await.unwrap() {
        assert!(chunk.segment_end);
        assert_eq!((chunk.sample_rate_hz, chunk.audio.len()), (16_000, 3200), "0.1 s of s16le per sentence");
        assert_eq!(chunk.segment as usize, texts.len());
        texts.push(chunk.text.trim().to_owned());
    }
    assert_eq!(texts, ["Hello there.", "How are you?", "I am fine"]);

    // A voice off the key's list is refused before any text is taken.
    let joe_only = VoiceAccess::Only(["joe".to_owned()].into_iter().collect());
    let (_, limited) = t.create_key(&BOTH, joe_only, None).await;
    let config = SynthesizeOnlineConfig { voice: "joe-slow".into(), speed: 0.0, response_format: String::new() };
    let requests = [SynthesizeOnlineRequest { request: Some(OnlineRequest::Config(config)) }];
    let refused = tts.synthesize_online(with_key(tokio_stream::iter(requests), &limited)).await.unwrap_err();
    assert_eq!(reason(&refused), "voice_not_allowed");
    let rows = t.usage_rows().await;
    let online: Vec<_> = rows.iter().filter(|r| r.0 == "/smai.v1.TextToSpeech/SynthesizeOnline").collect();
    let characters: usize = pieces.iter().map(|p| p.chars().count()).sum();
    assert_eq!((online[0].1, online[0].2), (200, characters as i64));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn arbitrary_metadata_values_never_crash_the_server() {
    use proptest::prelude::*;
    use proptest::test_runner::{Config, TestRunner};
    let t = start(|_| {}).await;
    let (_, key) = t.create_key(&BOTH, VoiceAccess::All, None).await;
    let channel = channel(&t).await;
    let handle = tokio::runtime::Handle::current();
    let strategy =
        (any::<u8>(), proptest::collection::vec(0x20u8..0x7f, 0..200), proptest::collection::vec(any::<u8>(), 0..64));
    let mut runner = TestRunner::new(Config { cases: 200, ..Config::default() });
    runner
        .run(&strategy, |(which, value, binary)| {
            let mut request = Request::new(ListVoicesRequest {});
            let text = String::from_utf8(value).expect("printable ASCII");
            let metadata = request.metadata_mut();
            match which % 3 {
                0 => {
                    metadata.insert("x-api-key", text.parse().expect("ASCII value"));
                }
                1 => {
                    metadata.insert("authorization", text.parse().expect("ASCII value"));
                }
                _ => {
                    metadata.insert("x-api-key", text.parse().expect("ASCII value"));
                    metadata.insert_bin("x-api-key-bin", tonic::metadata::MetadataValue::from_bytes(&binary));
                }
            }
            let mut tts = TextToSpeechClient::new(channel.clone());
            let answer =
                tokio::task::block_in_place(|| handle.block_on(tts.list_voices(request)).map(|_| ()).map_err(Box::new));
            let status = answer.expect_err("no such value is a key");
            prop_assert_eq!(status.code(), Code::Unauthenticated);
            Ok(())
        })
        .unwrap();
    let mut tts = TextToSpeechClient::new(channel);
    tts.list_voices(with_key(ListVoicesRequest {}, &key)).await.expect("the server still answers");
    t.server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_lets_an_open_stream_finish() {
    let t = start(|_| {}).await;
    let (_, key) = t.create_key(&BOTH, VoiceAccess::All, None).await;
    let mut asr = SpeechRecognitionClient::new(channel(&t).await);
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    tx.send(streaming_config(16_000, false)).await.unwrap();
    tx.send(audio(vec![0; 3200])).await.unwrap();
    let mut responses = asr.streaming_recognize(with_key(ReceiverStream::new(rx), &key)).await.unwrap().into_inner();
    let TestServer { server, dir: _dir, .. } = t;
    let stopping = tokio::spawn(server.shutdown());
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!stopping.is_finished(), "shutdown waits for the open stream");
    tx.send(audio(vec![0; 3200])).await.unwrap();
    drop(tx);
    let mut finals = Vec::new();
    while let Some(response) = responses.message().await.expect("the stream ends cleanly") {
        if let Some(StreamResponse::Result(result)) = response.response {
            finals.push(result.text);
        }
    }
    // Two chunks of 1600 samples each (3200 bytes of s16le).
    assert_eq!(finals, [" heard 3200 samples"], "the audio sent after the shutdown began was heard");
    stopping.await.unwrap().unwrap();
}

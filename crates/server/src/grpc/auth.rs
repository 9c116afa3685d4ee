//! The one auth and limit layer in front of every smai gRPC service: a tower layer (tonic's
//! interceptors cannot await a key lookup) that builds the protocol-neutral credentials from
//! the metadata, starts a service-core call authorised for the method's operation, and hands
//! it to the handler in the request's extensions. Health and reflection pass without a key.
//! The key's rate-limit values come back as response metadata under REST's header names.

use super::status::{http_status_of, status_of};
use crate::service::{CallContext, Credentials, Operation, Service, SharedCall};
use http::{HeaderName, HeaderValue, Request, Response};
use smai_core::{Error, ErrorCode};
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use tonic::body::Body;
use tonic::transport::server::TcpConnectInfo;
use tonic::Code;

/// The request id of a gRPC call, for handlers' error statuses and logs.
#[derive(Debug, Clone)]
pub struct RequestId(pub String);

/// The operation of each smai method; `None` for other services (health, reflection).
pub fn operation_of(path: &str) -> Option<Operation> {
    let (service, method) = path.strip_prefix('/')?.split_once('/')?;
    let operation = match (service, method) {
        ("smai.v1.TextToSpeech", "Synthesize" | "StreamingSynthesize") => Operation::Speech,
        ("smai.v1.TextToSpeech", "SynthesizeOnline") => Operation::SpeechStream,
        ("smai.v1.TextToSpeech", "ListVoices") => Operation::ListVoices,
        ("smai.v1.SpeechRecognition", "Recognize") => Operation::Transcription,
        ("smai.v1.SpeechRecognition", "StreamingRecognize") => Operation::LiveTranscription,
        ("smai.v1.SpeechRecognition", "ListModels") => Operation::ListModels,
        _ => return None,
    };
    Some(operation)
}

#[derive(Clone)]
pub struct AuthLayer {
    service: Service,
}

impl AuthLayer {
    pub fn new(service: Service) -> Self {
        Self { service }
    }
}

impl<S> tower::Layer<S> for AuthLayer {
    type Service = Authenticated<S>;
    fn layer(&self, inner: S) -> Authenticated<S> {
        Authenticated { inner, service: self.service.clone() }
    }
}

#[derive(Clone)]
pub struct Authenticated<S> {
    inner: S,
    service: Service,
}

type BoxFuture<T, E> = Pin<Box<dyn Future<Output = Result<T, E>> + Send>>;

impl<S> tower::Service<Request<Body>> for Authenticated<S>
where
    S: tower::Service<Request<Body>, Response = Response<Body>> + Clone + Send + 'static,
    S::Future: Send,
{
    type Response = Response<Body>;
    type Error = S::Error;
    type Future = BoxFuture<Response<Body>, S::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<Body>) -> Self::Future {
        // The clone that was made ready is the one that serves this request.
        let ready = self.inner.clone();
        let inner = std::mem::replace(&mut self.inner, ready);
        let service = self.service.clone();
        Box::pin(authenticate_then_call(service, inner, request))
    }
}

async fn authenticate_then_call<S>(
    service: Service,
    mut inner: S,
    mut request: Request<Body>,
) -> Result<Response<Body>, S::Error>
where
    S: tower::Service<Request<Body>, Response = Response<Body>>,
{
    let Some(operation) = operation_of(request.uri().path()) else {
        return inner.call(request).await;
    };
    let request_id = uuid::Uuid::new_v4().simple().to_string();
    let credentials = Credentials::from_fields(request.headers().iter().map(|(n, v)| (n.as_str(), v.as_bytes())));
    let source = request.extensions().get::<TcpConnectInfo>().and_then(TcpConnectInfo::remote_addr).map(|a| a.ip());
    let context = CallContext { request_id: request_id.clone(), route: request.uri().path().to_owned(), source };
    let mut call = match service.authenticate(&credentials, context).await {
        Ok(call) => call,
        Err(error) => {
            drain_small(request.into_body()).await;
            return Ok(refusal(&error, &request_id, Vec::new()));
        }
    };
    if let Err(error) = call.authorize(operation) {
        call.set_status(crate::http::status_of(error.code).as_u16());
        let rate = call.rate_headers();
        drop(call);
        drain_small(request.into_body()).await;
        return Ok(refusal(&error, &request_id, rate));
    }
    let shared = SharedCall::new(call);
    request.extensions_mut().insert(shared.clone());
    request.extensions_mut().insert(RequestId(request_id.clone()));
    let response = inner.call(request).await?;
    Ok(finish_response(response, &shared, &request_id))
}

/// Reads the rest of a refused call's request body when it is small (a unary message), so
/// that answering before it is read does not leave the stream to be reset: past enough such
/// resets the HTTP/2 server takes the client for a reset flood and ends the connection, with
/// every other call the client has on it. Larger bodies are left unread (their streams are
/// reset), and a slow one is waited for 1 s at most.
async fn drain_small(body: Body) {
    use http_body_util::BodyExt;
    let limited = http_body_util::Limited::new(body, DRAIN_LIMIT);
    let _ = tokio::time::timeout(std::time::Duration::from_secs(1), limited.collect()).await;
}

/// Bodies up to this size are read to their end before a refusal is answered.
const DRAIN_LIMIT: usize = 64 << 10;

/// The rate headers, the request id, and tonic's own refusals (a message over the size
/// limit, a body it cannot decode) recorded on the call and put in the contract's terms.
fn finish_response(mut response: Response<Body>, shared: &SharedCall, request_id: &str) -> Response<Body> {
    if let Some(code) = trailers_only_code(&response) {
        // tonic refuses a message over max_decoding_message_size with OUT_OF_RANGE, a code
        // no smai handler answers.
        if code == Code::OutOfRange {
            let error = Error::new(
                ErrorCode::PayloadTooLarge,
                "the message is larger than the server accepts (its upload limit)",
            );
            shared.finish(413);
            response = status_of(&error, request_id).into_http();
        } else {
            shared.finish(http_status_of(code));
        }
    }
    let rate = shared.with(|c| Ok(c.rate_headers())).unwrap_or_default();
    insert_headers(response.headers_mut(), rate, request_id);
    response
}

/// The status of a trailers-only response (an error before any message), when it failed.
fn trailers_only_code(response: &Response<Body>) -> Option<Code> {
    let value = response.headers().get("grpc-status")?.to_str().ok()?.parse::<i32>().ok()?;
    Some(Code::from_i32(value)).filter(|c| *c != Code::Ok)
}

fn refusal(error: &Error, request_id: &str, rate: Vec<(&'static str, String)>) -> Response<Body> {
    let mut response = status_of(error, request_id).into_http();
    insert_headers(response.headers_mut(), rate, request_id);
    response
}

fn insert_headers(headers: &mut http::HeaderMap, rate: Vec<(&'static str, String)>, request_id: &str) {
    for (name, value) in rate {
        if let Ok(value) = HeaderValue::from_str(&value) {
            headers.insert(HeaderName::from_static(name), value);
        }
    }
    if let Ok(value) = HeaderValue::from_str(request_id) {
        headers.insert(HeaderName::from_static("x-request-id"), value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn methods_map_to_operations_and_other_services_pass() {
        assert_eq!(operation_of("/smai.v1.TextToSpeech/Synthesize"), Some(Operation::Speech));
        assert_eq!(operation_of("/smai.v1.TextToSpeech/SynthesizeOnline"), Some(Operation::SpeechStream));
        assert_eq!(operation_of("/smai.v1.SpeechRecognition/StreamingRecognize"), Some(Operation::LiveTranscription));
        assert_eq!(operation_of("/grpc.health.v1.Health/Check"), None);
        assert_eq!(operation_of("/grpc.reflection.v1.ServerReflection/ServerReflectionInfo"), None);
        assert_eq!(operation_of("garbage"), None);
    }
}

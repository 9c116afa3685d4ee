//! Each request as the router gets it: its body under a deadline, its connection's address,
//! and a guard that keeps the request counted in flight until its response body is done.

use super::tracker::{Connection, RequestGuard};
use crate::http::context::{error_body, ClientCertificate, SECURITY_HEADERS};
use axum::body::{Body, Bytes};
use axum::extract::ConnectInfo;
use axum::http::{header, HeaderName, HeaderValue, Request, Response, StatusCode};
use axum::{BoxError, Router};
use http_body::{Frame, SizeHint};
use hyper::body::Incoming;
use smai_core::ErrorCode;
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::time::Sleep;
use tower::ServiceExt;

/// The hyper service of one connection.
#[derive(Clone)]
pub(super) struct RequestService {
    pub(super) router: Router,
    pub(super) connection: Arc<Connection>,
    pub(super) peer: SocketAddr,
    pub(super) body_timeout: Duration,
    /// The verified client certificate's subject, on mutual-TLS connections.
    pub(super) client: Option<ClientCertificate>,
}

impl hyper::service::Service<Request<Incoming>> for RequestService {
    type Response = Response<GuardedBody>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn call(&self, request: Request<Incoming>) -> Self::Future {
        let guard = self.connection.begin_request();
        let timed_out = Arc::new(AtomicBool::new(false));
        let deadline = Box::pin(tokio::time::sleep(self.body_timeout));
        let mut request = request.map(|body| TimedBody { body, deadline, timed_out: timed_out.clone() });
        request.extensions_mut().insert(ConnectInfo(self.peer));
        if let Some(client) = &self.client {
            request.extensions_mut().insert(client.clone());
        }
        let router = self.router.clone();
        Box::pin(async move {
            let response = router.oneshot(request).await.unwrap_or_else(|never| match never {});
            // Whatever the handler made of the failed read, the client was too slow.
            let response = if timed_out.load(Ordering::Relaxed) { body_timeout_response(&response) } else { response };
            Ok(response.map(|body| GuardedBody { body, _guard: guard }))
        })
    }
}

/// The request body, failing once its deadline passes.
pub(super) struct TimedBody {
    body: Incoming,
    deadline: Pin<Box<Sleep>>,
    timed_out: Arc<AtomicBool>,
}

#[derive(Debug)]
struct BodyTimeout;

impl std::fmt::Display for BodyTimeout {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the request body was not received in time")
    }
}

impl std::error::Error for BodyTimeout {}

impl http_body::Body for TimedBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        if let Poll::Ready(frame) = Pin::new(&mut this.body).poll_frame(cx) {
            return Poll::Ready(frame.map(|f| f.map_err(BoxError::from)));
        }
        if this.deadline.as_mut().poll(cx).is_ready() {
            this.timed_out.store(true, Ordering::Relaxed);
            return Poll::Ready(Some(Err(BodyTimeout.into())));
        }
        Poll::Pending
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// The response body, holding its request's place in flight.
pub(super) struct GuardedBody {
    body: Body,
    _guard: RequestGuard,
}

impl http_body::Body for GuardedBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.get_mut().body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// 408 in the contract's shape, under the request id the router gave the request.
fn body_timeout_response(original: &Response<Body>) -> Response<Body> {
    let request_id = original.headers().get("x-request-id").and_then(|v| v.to_str().ok()).unwrap_or("");
    let body = error_body(ErrorCode::InvalidRequest, &BodyTimeout.to_string(), request_id);
    let mut response = Response::new(Body::from(body));
    *response.status_mut() = StatusCode::REQUEST_TIMEOUT;
    let headers = response.headers_mut();
    for (name, value) in SECURITY_HEADERS {
        headers.insert(HeaderName::from_static(name), HeaderValue::from_static(value));
    }
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
    if let Ok(id) = HeaderValue::from_str(request_id) {
        headers.insert(HeaderName::from_static("x-request-id"), id);
    }
    response
}

//! What every smai gRPC handler shares: the call the auth layer started (taken from the
//! request's extensions), one way to answer or fail (recording the outcome on the call), and
//! the outbound side of a streamed answer: a bounded channel whose closing, when the client
//! cancels or goes away, stops the work and ends the call with no status (a 499 usage row).

use super::auth::RequestId;
use super::status::status_of;
use crate::service::SharedCall;
use smai_core::Error;
use std::future::Future;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

/// Messages a streamed answer may have queued before the client reads them.
const OUTBOUND_BUFFER: usize = 8;

#[derive(Clone)]
pub struct Handler {
    pub call: SharedCall,
    pub request_id: String,
}

impl Handler {
    /// The call of `request` and its message.
    // tonic's service traits fix `Status` as the error type.
    #[allow(clippy::result_large_err)]
    pub fn of<T>(request: Request<T>) -> Result<(Self, T), Status> {
        let call = request.extensions().get::<SharedCall>().cloned();
        let request_id = request.extensions().get::<RequestId>().map(|r| r.0.clone()).unwrap_or_default();
        let Some(call) = call else {
            return Err(status_of(&Error::internal("a smai method without the auth layer"), &request_id));
        };
        Ok((Self { call, request_id }, request.into_inner()))
    }

    /// Records `error` as the call's outcome and answers it.
    pub fn fail(&self, error: Error) -> Status {
        status_of(&self.call.fail(error), &self.request_id)
    }
}

/// Answers a unary call.
#[allow(clippy::result_large_err)]
pub fn respond<T>(handler: &Handler, result: Result<T, Error>) -> Result<Response<T>, Status> {
    match result {
        Ok(message) => {
            handler.call.finish(200);
            Ok(Response::new(message))
        }
        Err(error) => Err(handler.fail(error)),
    }
}

/// The sending side of a streamed answer; it holds the call until the stream ends.
pub struct Outbound<T> {
    handler: Handler,
    tx: mpsc::Sender<Result<T, Status>>,
}

impl<T: Send + 'static> Outbound<T> {
    pub fn channel(handler: &Handler) -> (Self, ReceiverStream<Result<T, Status>>) {
        let (tx, rx) = mpsc::channel(OUTBOUND_BUFFER);
        (Self { handler: handler.clone(), tx }, ReceiverStream::new(rx))
    }

    pub async fn send(&self, message: T) -> Result<(), Error> {
        self.tx.send(Ok(message)).await.map_err(|_| client_gone())
    }

    /// Waits for `work`, unless the client goes away first.
    pub async fn until_closed<F: Future>(&self, work: F) -> Result<F::Output, Error> {
        tokio::select! {
            output = work => Ok(output),
            () = self.tx.closed() => Err(client_gone()),
        }
    }

    /// Ends the stream: OK, or the error as the stream's status. When the client has gone,
    /// nothing is recorded, and the call ends as one the client closed.
    pub async fn end(self, result: Result<(), Error>) {
        if self.tx.is_closed() {
            return;
        }
        match result {
            Ok(()) => self.handler.call.finish(200),
            Err(error) => {
                let status = self.handler.fail(error);
                let _ = self.tx.send(Err(status)).await;
            }
        }
    }
}

/// The next message of a client's stream; `None` once the client half-closed.
pub async fn next_message<M>(requests: &mut Streaming<M>) -> Result<Option<M>, Error> {
    requests
        .message()
        .await
        .map_err(|status| Error::invalid(format!("reading the request stream: {}", status.message())))
}

/// The `oneof` of a stream message, which every message must set.
pub fn required<R>(request: Option<R>) -> Result<R, Error> {
    request.ok_or_else(|| Error::invalid("empty request message"))
}

fn client_gone() -> Error {
    Error::internal("the client went away")
}

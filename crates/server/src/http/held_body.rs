//! A response body that keeps a value alive until the body has been sent or dropped (the
//! client went away): what must happen when a response really ends goes in that value's
//! `Drop`. Size hints pass through, so `Content-Length` survives.

use axum::body::{Body, Bytes};
use http_body::{Frame, SizeHint};
use std::pin::Pin;
use std::task::{Context, Poll};

pub(crate) struct HeldBody<T> {
    inner: Body,
    _held: T,
}

impl<T: Send + Unpin + 'static> HeldBody<T> {
    pub(crate) fn wrap(inner: Body, held: T) -> Body {
        Body::new(Self { inner, _held: held })
    }
}

impl<T: Unpin> http_body::Body for HeldBody<T> {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.get_mut().inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

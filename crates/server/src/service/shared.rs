//! A call shared by a protocol's middleware, its handler, and a streamed answer that outlives
//! the handler. The call (its concurrency slot, its usage row) ends when the last holder lets
//! go, or when the middleware takes it out.

use super::Call;
use smai_core::Error;
use std::sync::{Arc, Mutex, MutexGuard};

#[derive(Clone, Default)]
pub struct SharedCall(Arc<Mutex<Option<Call>>>);

impl SharedCall {
    pub fn new(call: Call) -> Self {
        Self(Arc::new(Mutex::new(Some(call))))
    }

    fn lock(&self) -> MutexGuard<'_, Option<Call>> {
        self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Places the call (the middleware fills an empty slot once authentication succeeded).
    pub fn put(&self, call: Call) {
        *self.lock() = Some(call);
    }

    /// Takes the call out: it ends when the taker drops it.
    pub fn take(&self) -> Option<Call> {
        self.lock().take()
    }

    /// Runs `f` on the call; an internal error when it has ended already.
    pub fn with<R>(&self, f: impl FnOnce(&mut Call) -> Result<R, Error>) -> Result<R, Error> {
        match self.lock().as_mut() {
            Some(call) => f(call),
            None => Err(Error::internal("the call has ended")),
        }
    }

    /// Records how the call ended, in the contract's HTTP terms.
    pub fn finish(&self, status: u16) {
        if let Some(call) = self.lock().as_mut() {
            call.set_status(status);
        }
    }

    /// Records the failure `error` as the call's outcome and hands the error back.
    pub fn fail(&self, error: Error) -> Error {
        self.finish(crate::http::status_of(error.code).as_u16());
        error
    }
}

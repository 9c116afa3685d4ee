//! REST's adapter onto the service core. A handler takes an [`Authorized`] extractor for its
//! operation: the key is verified and the operation authorised (service granted, limits
//! checked) before the handler runs and before its body is read, so no handler can forget a
//! check. The [`track`] middleware then puts the call's rate headers on the response and
//! keeps the call (its concurrency slot, its usage row) alive until the body has been sent.

use super::context::RequestId;
use super::error::ApiError;
use super::held_body::HeldBody;
use super::metrics::RateLimited;
use crate::service::{Call, CallContext, Credentials, Operation, Reservation, SharedCall};
use crate::state::AppState;
use axum::extract::{ConnectInfo, FromRequestParts, MatchedPath, Request};
use axum::http::request::Parts;
use axum::http::{HeaderName, HeaderValue};
use axum::middleware::Next;
use axum::response::Response;
use smai_core::{Error, Principal, Synthesizer, Transcriber};
use std::marker::PhantomData;
use std::net::SocketAddr;
use std::sync::Arc;

/// Per route: the operation its handler performs.
pub trait RestOperation: Send + Sync + 'static {
    const OPERATION: Operation;
}

/// The operations of the REST routes, as types a handler's signature names.
pub mod ops {
    use super::{Operation, RestOperation};

    macro_rules! rest_operations {
        ($($name:ident),*) => {$(
            pub struct $name;
            impl RestOperation for $name {
                const OPERATION: Operation = Operation::$name;
            }
        )*};
    }
    rest_operations!(Speech, Transcription, Translation, ListModels, ListVoices);
}

/// A call authenticated and authorised for the operation `O`.
pub struct Authorized<O: RestOperation> {
    slot: SharedCall,
    _operation: PhantomData<O>,
}

impl<O: RestOperation> Authorized<O> {
    fn with<R>(&self, f: impl FnOnce(&mut Call) -> Result<R, Error>) -> Result<R, ApiError> {
        self.slot.with(f).map_err(ApiError)
    }

    /// The call, for the service core's operations.
    pub fn shared(&self) -> &SharedCall {
        &self.slot
    }

    pub fn principal(&self) -> Result<Principal, ApiError> {
        self.with(|call| Ok(call.principal().clone()))
    }

    pub fn authorize_voice(&self, voice: &str) -> Result<(), ApiError> {
        self.with(|call| call.authorize_voice(voice))
    }

    pub fn admit(&self, tokens: u64) -> Result<(), ApiError> {
        self.with(|call| call.admit(tokens))
    }

    pub fn admit_reserved(&self, tokens: u64) -> Result<Reservation, ApiError> {
        self.with(|call| call.admit_reserved(tokens))
    }

    pub fn charge(&self, tokens: u64) -> Result<(), ApiError> {
        self.with(|call| call.charge(tokens))
    }

    pub fn refund(&self, tokens: u64) -> Result<(), ApiError> {
        self.with(|call| {
            call.refund(tokens);
            Ok(())
        })
    }

    pub fn charged(&self) -> Result<u64, ApiError> {
        self.with(|call| Ok(call.charged()))
    }

    pub fn tokens_left(&self) -> Result<u64, ApiError> {
        self.with(|call| Ok(call.tokens_left()))
    }

    pub fn synthesizer(&self) -> Result<Arc<dyn Synthesizer>, ApiError> {
        self.with(|call| call.synthesizer())
    }

    pub fn transcriber(&self) -> Result<Arc<dyn Transcriber>, ApiError> {
        self.with(|call| call.transcriber())
    }
}

impl<O: RestOperation> FromRequestParts<AppState> for Authorized<O> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let slot = parts
            .extensions
            .get::<SharedCall>()
            .cloned()
            .ok_or_else(|| Error::internal("route without the call middleware"))?;
        let credentials = Credentials::from_fields(parts.headers.iter().map(|(n, v)| (n.as_str(), v.as_bytes())));
        let request_id = parts.extensions.get::<RequestId>().map(|r| r.0.clone()).unwrap_or_default();
        let route = parts
            .extensions
            .get::<MatchedPath>()
            .map_or_else(|| parts.uri.path().to_owned(), |p| p.as_str().to_owned());
        let source = parts.extensions.get::<ConnectInfo<SocketAddr>>().map(|info| info.0.ip());
        let context = CallContext { request_id, route, source };
        let mut call = state.service.authenticate(&credentials, context).await?;
        let authorized = call.authorize(O::OPERATION);
        slot.put(call);
        authorized?;
        Ok(Self { slot, _operation: PhantomData })
    }
}

/// Around every authenticated route: gives the extractor its slot, then finishes the call.
pub async fn track(mut request: Request, next: Next) -> Response {
    let slot = SharedCall::default();
    request.extensions_mut().insert(slot.clone());
    let mut response = next.run(request).await;
    // None: authentication failed, and the service counted the refusal already.
    let Some(mut call) = slot.take() else { return response };
    call.set_status(response.status().as_u16());
    if let Some(limit) = call.refused_by() {
        response.extensions_mut().insert(RateLimited(limit));
    }
    for (name, value) in call.rate_headers() {
        if let Ok(value) = HeaderValue::from_str(&value) {
            response.headers_mut().insert(HeaderName::from_static(name), value);
        }
    }
    hold_until_body_ends(response, call)
}

/// The call ends (slot freed, usage row written) when the body has been sent or dropped. An
/// error's body is a short JSON document already in memory: that call ends now.
fn hold_until_body_ends(response: Response, call: Call) -> Response {
    if response.status().is_client_error() || response.status().is_server_error() {
        return response;
    }
    let (parts, body) = response.into_parts();
    Response::from_parts(parts, HeldBody::wrap(body, call))
}

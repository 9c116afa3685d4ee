//! Rate limits on the REST surface. Routes without a token cost are admitted by the auth
//! layer; routes that charge tokens admit themselves through `RateContext` once the cost is
//! known (text length, audio duration). The permit rides in the response body, so the
//! concurrency slot is held until a streamed response ends or the client goes away.

use super::error::ApiError;
use axum::body::Body;
use axum::http::{HeaderName, HeaderValue};
use axum::response::Response;
use super::metrics::RateLimited;
use smai_auth::limits::{ConcurrencyPermit, LimitKind};
use smai_auth::{Limiter, Rejection};
use smai_core::Principal;
use std::sync::{Arc, Mutex};

/// Routes whose handlers admit with a token count themselves.
pub fn charges_tokens(route: &str) -> bool {
    matches!(route, "/v1/audio/speech" | "/v1/audio/transcriptions" | "/v1/audio/translations")
}

#[derive(Default)]
struct Outcome {
    permit: Option<ConcurrencyPermit>,
    headers: Option<Vec<(&'static str, String)>>,
    rejected_by: Option<LimitKind>,
}

/// Handed to handlers as an extension; the auth layer reads the outcome back.
#[derive(Clone)]
pub struct RateContext {
    limiter: Limiter,
    principal: Principal,
    outcome: Arc<Mutex<Outcome>>,
}

impl RateContext {
    pub fn new(limiter: Limiter, principal: Principal) -> Self {
        Self { limiter, principal, outcome: Default::default() }
    }

    /// Charges one request and `tokens` tokens, all or nothing.
    pub fn admit(&self, tokens: u64) -> Result<(), ApiError> {
        let result = self.limiter.admit(self.principal.limit_key(), &self.principal.tier, tokens);
        let mut outcome = self.outcome.lock().unwrap_or_else(|p| p.into_inner());
        match result {
            Ok(admission) => {
                outcome.headers = Some(admission.snapshot.headers());
                outcome.permit = Some(admission.permit);
                Ok(())
            }
            Err(rejection) => {
                outcome.headers = Some(rejection.headers());
                outcome.rejected_by = Some(rejection.limit);
                Err(rejection_error(rejection))
            }
        }
    }

    /// Puts the rate headers on the response and ties the concurrency slot to its body.
    pub fn finish(&self, mut response: Response) -> Response {
        let (permit, headers, rejected_by) = {
            let mut outcome = self.outcome.lock().unwrap_or_else(|p| p.into_inner());
            (outcome.permit.take(), outcome.headers.take(), outcome.rejected_by.take())
        };
        if let Some(limit) = rejected_by {
            response.extensions_mut().insert(RateLimited(limit));
        }
        let headers =
            headers.unwrap_or_else(|| self.limiter.snapshot(self.principal.limit_key(), &self.principal.tier).headers());
        apply_headers(&mut response, &headers);
        match permit {
            Some(permit) => hold_until_body_ends(response, permit),
            None => response,
        }
    }
}

fn rejection_error(rejection: Rejection) -> ApiError {
    ApiError(rejection.into_error())
}

fn apply_headers(response: &mut Response, headers: &[(&'static str, String)]) {
    for (name, value) in headers {
        if let Ok(value) = HeaderValue::from_str(value) {
            response.headers_mut().insert(HeaderName::from_static(name), value);
        }
    }
}

fn hold_until_body_ends(response: Response, permit: ConcurrencyPermit) -> Response {
    let (parts, body) = response.into_parts();
    let stream = futures_util::StreamExt::map(body.into_data_stream(), move |chunk| {
        let _held = &permit;
        chunk
    });
    Response::from_parts(parts, Body::from_stream(stream))
}

//! The auth layer for /v1 routes: finds the presented key, verifies it, hands the handler a
//! `Principal`, and writes the usage row once the response is known.

use super::context::RequestId;
use super::error::ApiError;
use super::limits::{charges_tokens, RateContext};
use crate::config::AuthMode;
use crate::state::AppState;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{header, HeaderMap};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use smai_auth::UsageRecord;
use smai_core::{Error, Principal, Service};
use std::time::Instant;

/// Tokens a handler charged, left in the response extensions for the usage row.
#[derive(Clone, Copy, Debug)]
pub struct Charged {
    pub service: Service,
    pub tokens: u64,
}

pub async fn authenticate(State(state): State<AppState>, mut request: Request, next: Next) -> Response {
    let started = Instant::now();
    let request_id = request.extensions().get::<RequestId>().map(|r| r.0.clone()).unwrap_or_default();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| request.uri().path().to_owned());

    let principal = match state.auth_mode {
        AuthMode::Disabled => Ok(Principal::anonymous(state.anonymous_tier)),
        AuthMode::Enabled => match presented_key(request.headers()) {
            Ok(key) => state.authenticator.verify(&key).await,
            Err(e) => Err(e),
        },
    };
    let (response, principal) = match principal {
        Ok(principal) => {
            let rate = RateContext::new(state.limiter.clone(), principal.clone());
            let admitted = if charges_tokens(&route) { Ok(()) } else { rate.admit(0) };
            let response = match admitted {
                Ok(()) => {
                    request.extensions_mut().insert(principal.clone());
                    request.extensions_mut().insert(rate.clone());
                    next.run(request).await
                }
                Err(rejected) => rejected.into_response(),
            };
            (rate.finish(response), Some(principal))
        }
        Err(e) => (ApiError(e).into_response(), None),
    };

    let charged = response.extensions().get::<Charged>().copied();
    state.usage.record(UsageRecord {
        at_ms: state.clock.now_ms(),
        key_id: principal.as_ref().and_then(|p| p.key_id.clone()),
        org: principal.as_ref().map(|p| p.org.clone()),
        service: charged.map(|c| c.service.as_str().to_owned()),
        route,
        tokens: charged.map_or(0, |c| c.tokens),
        status: response.status().as_u16(),
        latency_ms: started.elapsed().as_millis() as u64,
        request_id,
    });
    response
}

/// The single key a request presents through `X-API-Key` and/or `Authorization: Bearer`.
/// Several headers are fine when they agree; two different keys are refused.
pub fn presented_key(headers: &HeaderMap) -> Result<String, Error> {
    let mut found: Option<String> = None;
    let mut offer = |candidate: &str| -> Result<(), Error> {
        let candidate = candidate.trim();
        if candidate.is_empty() {
            return Err(Error::unauthorized("empty API key"));
        }
        match &found {
            Some(existing) if existing != candidate => Err(Error::unauthorized("request carries two different API keys")),
            Some(_) => Ok(()),
            None => {
                found = Some(candidate.to_owned());
                Ok(())
            }
        }
    };
    for value in headers.get_all("x-api-key") {
        let text = value.to_str().map_err(|_| Error::unauthorized("API key header is not valid ASCII"))?;
        offer(text)?;
    }
    for value in headers.get_all(header::AUTHORIZATION) {
        let text = value.to_str().map_err(|_| Error::unauthorized("Authorization header is not valid ASCII"))?;
        let text = text.trim();
        let (scheme, token) = text.split_once(' ').unwrap_or((text, ""));
        if !scheme.eq_ignore_ascii_case("bearer") {
            return Err(Error::unauthorized("Authorization must use the Bearer scheme"));
        }
        offer(token)?;
    }
    found.ok_or_else(|| Error::unauthorized("missing API key: send X-API-Key or Authorization: Bearer"))
}

/// Refuses with 403 `forbidden` when the key lacks a service.
pub fn require_service(principal: &Principal, service: Service) -> Result<(), ApiError> {
    if principal.can_use(service) {
        Ok(())
    } else {
        Err(Error::forbidden(format!("this API key does not grant the {} service", service.as_str())).into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;
    use proptest::prelude::*;

    fn headers(pairs: &[(&'static str, &[u8])]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            if let Ok(v) = HeaderValue::from_bytes(value) {
                map.append(*name, v);
            }
        }
        map
    }

    #[test]
    fn agreeing_headers_are_one_key_and_different_ones_are_refused() {
        let same = headers(&[("x-api-key", b"abc"), ("authorization", b"bearer abc")]);
        assert_eq!(presented_key(&same).unwrap(), "abc");
        let different = headers(&[("x-api-key", b"abc"), ("authorization", b"Bearer xyz")]);
        assert!(presented_key(&different).is_err());
        let twice = headers(&[("x-api-key", b"abc"), ("x-api-key", b"abd")]);
        assert!(presented_key(&twice).is_err());
        assert!(presented_key(&headers(&[("authorization", b"Basic abc")])).is_err());
        assert!(presented_key(&headers(&[("x-api-key", b"   ")])).is_err());
        assert!(presented_key(&HeaderMap::new()).is_err());
    }

    proptest! {
        // Any header bytes give a key or a 401, never a panic.
        #[test]
        fn arbitrary_header_values_never_panic(
            a in proptest::collection::vec(any::<u8>(), 0..300),
            b in proptest::collection::vec(any::<u8>(), 0..300),
            c in proptest::collection::vec(any::<u8>(), 0..300),
        ) {
            let map = headers(&[("x-api-key", &a), ("authorization", &b), ("x-api-key", &c)]);
            if let Err(e) = presented_key(&map) {
                prop_assert_eq!(e.code, smai_core::ErrorCode::Unauthorized);
            }
        }
    }
}

//! What a caller presents, whatever the protocol: HTTP headers, gRPC metadata (the same two
//! names, `x-api-key` and `authorization`), or the key of a WebSocket auth message.

use smai_core::Error;

/// The key a caller presented, or why what it presented is not one.
#[derive(Clone)]
pub struct Credentials {
    presented: Result<String, Error>,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never prints the key.
        let state = if self.presented.is_ok() { "key" } else { "none" };
        f.debug_struct("Credentials").field("presented", &state).finish()
    }
}

impl Credentials {
    /// A key given directly (a WebSocket auth message, a configured listener key).
    pub fn api_key(key: impl Into<String>) -> Self {
        let key = key.into();
        let presented = if key.trim().is_empty() { Err(Error::unauthorized("empty API key")) } else { Ok(key) };
        Self { presented }
    }

    /// Nothing presented.
    pub fn missing() -> Self {
        Self { presented: Err(missing_key()) }
    }

    /// The single key carried by `X-API-Key` and/or `Authorization: Bearer` among `fields`
    /// (name, raw value). Several fields are fine when they agree; two different keys are
    /// refused. Names are compared case-insensitively, as HTTP and gRPC do.
    pub fn from_fields<'a>(fields: impl IntoIterator<Item = (&'a str, &'a [u8])>) -> Self {
        let mut found: Option<String> = None;
        for (name, value) in fields {
            let offered = if name.eq_ignore_ascii_case("x-api-key") {
                api_key_field(value)
            } else if name.eq_ignore_ascii_case("authorization") {
                bearer_field(value)
            } else {
                continue;
            };
            let offered = match offered {
                Ok(key) => key,
                Err(e) => return Self { presented: Err(e) },
            };
            match &found {
                Some(existing) if *existing != offered => {
                    return Self { presented: Err(Error::unauthorized("request carries two different API keys")) };
                }
                Some(_) => {}
                None => found = Some(offered),
            }
        }
        Self { presented: found.ok_or_else(missing_key) }
    }

    /// The presented key, or the 401 to answer.
    pub fn key(&self) -> Result<&str, Error> {
        self.presented.as_deref().map_err(Clone::clone)
    }
}

fn missing_key() -> Error {
    Error::unauthorized("missing API key: send X-API-Key or Authorization: Bearer")
}

fn api_key_field(value: &[u8]) -> Result<String, Error> {
    let text = std::str::from_utf8(value)
        .ok()
        .filter(|t| t.is_ascii())
        .ok_or_else(|| Error::unauthorized("API key header is not valid ASCII"))?;
    non_empty(text)
}

fn bearer_field(value: &[u8]) -> Result<String, Error> {
    let text = std::str::from_utf8(value)
        .ok()
        .filter(|t| t.is_ascii())
        .ok_or_else(|| Error::unauthorized("Authorization header is not valid ASCII"))?;
    let text = text.trim();
    let (scheme, token) = text.split_once(' ').unwrap_or((text, ""));
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(Error::unauthorized("Authorization must use the Bearer scheme"));
    }
    non_empty(token)
}

fn non_empty(candidate: &str) -> Result<String, Error> {
    let candidate = candidate.trim();
    if candidate.is_empty() {
        return Err(Error::unauthorized("empty API key"));
    }
    Ok(candidate.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn key(fields: &[(&str, &[u8])]) -> Result<String, Error> {
        Credentials::from_fields(fields.iter().copied()).key().map(str::to_owned)
    }

    #[test]
    fn agreeing_fields_are_one_key_and_different_ones_are_refused() {
        assert_eq!(key(&[("x-api-key", b"abc"), ("authorization", b"bearer abc")]).unwrap(), "abc");
        assert_eq!(key(&[("X-Api-Key", b"abc"), ("content-type", b"x")]).unwrap(), "abc");
        assert!(key(&[("x-api-key", b"abc"), ("authorization", b"Bearer xyz")]).is_err());
        assert!(key(&[("x-api-key", b"abc"), ("x-api-key", b"abd")]).is_err());
        assert!(key(&[("authorization", b"Basic abc")]).is_err());
        assert!(key(&[("x-api-key", b"   ")]).is_err());
        assert!(key(&[("x-api-key", "k\u{e9}y".as_bytes())]).is_err());
        assert!(key(&[]).is_err());
        assert!(Credentials::api_key(" ").key().is_err());
        assert_eq!(Credentials::api_key("smai_x").key().unwrap(), "smai_x");
    }

    #[test]
    fn debug_output_never_shows_the_key() {
        let shown = format!("{:?}", Credentials::api_key("smai_secret"));
        assert!(!shown.contains("secret"), "{shown}");
    }

    proptest! {
        // Any field bytes give a key or a 401, never a panic.
        #[test]
        fn arbitrary_field_values_never_panic(
            a in proptest::collection::vec(any::<u8>(), 0..300),
            b in proptest::collection::vec(any::<u8>(), 0..300),
            c in proptest::collection::vec(any::<u8>(), 0..300),
        ) {
            let fields: [(&str, &[u8]); 3] = [("x-api-key", &a), ("authorization", &b), ("x-api-key", &c)];
            if let Err(e) = Credentials::from_fields(fields).key() {
                prop_assert_eq!(e.code, smai_core::ErrorCode::Unauthorized);
            }
        }
    }
}

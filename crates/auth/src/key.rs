//! Key format of the API contract: `smai_` + 43 base62 characters (256 random bits) + 6 base62
//! characters of CRC32 over everything before them. The checksum lets a malformed or mistyped
//! key be refused without touching the database.

use rand::RngCore;
use sha2::{Digest, Sha256};
use std::fmt;
use subtle::ConstantTimeEq;

const PREFIX: &str = "smai_";
const BODY_LEN: usize = 43;
const CHECKSUM_LEN: usize = 6;
pub const KEY_LEN: usize = PREFIX.len() + BODY_LEN + CHECKSUM_LEN;
/// How much of the body is kept in the clear for display (`smai_AbCd1234…`).
const DISPLAY_LEN: usize = 8;
const ALPHABET: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// A plaintext API key. Debug output is redacted so it never reaches a log by accident.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiKey(String);

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ApiKey({}…)", self.display_prefix())
    }
}

/// SHA-256 of the full key; the only form a key is stored in.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct KeyDigest(pub [u8; 32]);

impl fmt::Debug for KeyDigest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyDigest({:02x}{:02x}…)", self.0[0], self.0[1])
    }
}

impl KeyDigest {
    /// Constant-time comparison, so response timing says nothing about how much matched.
    pub fn ct_eq(&self, other: &[u8]) -> bool {
        other.len() == 32 && bool::from(self.0.ct_eq(other))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum KeyFormatError {
    #[error("API key has the wrong length")]
    Length,
    #[error("API key must start with smai_")]
    Prefix,
    #[error("API key contains characters outside base62")]
    Alphabet,
    #[error("API key checksum does not match")]
    Checksum,
}

impl ApiKey {
    pub fn generate() -> Self {
        let mut bytes = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut bytes);
        let body = base62_fixed(&bytes, BODY_LEN);
        let head = format!("{PREFIX}{body}");
        let checksum = base62_fixed(&crc32fast::hash(head.as_bytes()).to_be_bytes(), CHECKSUM_LEN);
        Self(format!("{head}{checksum}"))
    }

    /// Checks shape, alphabet and checksum; no I/O.
    pub fn parse(text: &str) -> Result<Self, KeyFormatError> {
        if text.len() != KEY_LEN {
            return Err(KeyFormatError::Length);
        }
        if !text.starts_with(PREFIX) {
            return Err(KeyFormatError::Prefix);
        }
        let rest = &text.as_bytes()[PREFIX.len()..];
        if !rest.iter().all(u8::is_ascii_alphanumeric) {
            return Err(KeyFormatError::Alphabet);
        }
        let (head, checksum) = text.split_at(PREFIX.len() + BODY_LEN);
        let expected = base62_fixed(&crc32fast::hash(head.as_bytes()).to_be_bytes(), CHECKSUM_LEN);
        if expected.as_bytes() != checksum.as_bytes() {
            return Err(KeyFormatError::Checksum);
        }
        Ok(Self(text.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn digest(&self) -> KeyDigest {
        KeyDigest(Sha256::digest(self.0.as_bytes()).into())
    }

    /// Non-secret prefix shown in listings: `smai_` and the first characters of the body.
    pub fn display_prefix(&self) -> &str {
        &self.0[..PREFIX.len() + DISPLAY_LEN]
    }
}

/// Big-endian bytes as a base62 number, left-padded with '0' to exactly `width` digits.
fn base62_fixed(bytes: &[u8], width: usize) -> String {
    let mut number = bytes.to_vec();
    let mut digits = Vec::with_capacity(width);
    while digits.len() < width {
        // Long division of the byte string by 62.
        let mut remainder = 0u32;
        for byte in number.iter_mut() {
            let acc = (remainder << 8) | u32::from(*byte);
            *byte = (acc / 62) as u8;
            remainder = acc % 62;
        }
        digits.push(ALPHABET[remainder as usize]);
    }
    digits.reverse();
    String::from_utf8(digits).expect("alphabet is ASCII")
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn generated_keys_parse_and_are_distinct() {
        let a = ApiKey::generate();
        let b = ApiKey::generate();
        assert_ne!(a, b);
        assert_eq!(a.as_str().len(), KEY_LEN);
        assert_eq!(ApiKey::parse(a.as_str()).unwrap(), a);
        assert!(a.display_prefix().starts_with("smai_"));
        assert!(!format!("{a:?}").contains(a.as_str()));
    }

    #[test]
    fn a_single_changed_character_breaks_the_checksum() {
        let key = ApiKey::generate();
        let mut chars: Vec<char> = key.as_str().chars().collect();
        chars[20] = if chars[20] == 'a' { 'b' } else { 'a' };
        let mutated: String = chars.into_iter().collect();
        assert_eq!(ApiKey::parse(&mutated), Err(KeyFormatError::Checksum));
    }

    #[test]
    fn shape_errors_are_named() {
        assert_eq!(ApiKey::parse(""), Err(KeyFormatError::Length));
        let key = ApiKey::generate();
        let wrong_prefix = key.as_str().replacen("smai_", "sk_x_", 1);
        assert_eq!(ApiKey::parse(&wrong_prefix), Err(KeyFormatError::Prefix));
        let bad_alphabet = format!("smai_{}", "-".repeat(KEY_LEN - 5));
        assert_eq!(ApiKey::parse(&bad_alphabet), Err(KeyFormatError::Alphabet));
    }

    #[test]
    fn base62_is_positional() {
        assert_eq!(base62_fixed(&[0], 3), "000");
        assert_eq!(base62_fixed(&[61], 2), "0z");
        assert_eq!(base62_fixed(&[0, 62], 2), "10");
        // 2^256 - 1 needs all 43 digits.
        assert_ne!(base62_fixed(&[0xff; 32], BODY_LEN).as_bytes()[0], b'0');
    }

    proptest! {
        #[test]
        fn parse_never_panics(s in "\\PC{0,80}") {
            let _ = ApiKey::parse(&s);
        }

        #[test]
        fn near_keys_of_the_right_length_are_refused(position in 0usize..(KEY_LEN - PREFIX.len()), replacement in "[0-9A-Za-z]") {
            // A one-character typo anywhere after the prefix, in the body or the checksum,
            // is caught by the checksum: CRC32 detects every error burst shorter than 32 bits.
            let key = ApiKey::generate();
            let mut chars: Vec<char> = key.as_str().chars().collect();
            let replacement = replacement.chars().next().expect("one character");
            prop_assume!(chars[PREFIX.len() + position] != replacement);
            chars[PREFIX.len() + position] = replacement;
            let typo: String = chars.into_iter().collect();
            prop_assert_eq!(ApiKey::parse(&typo), Err(KeyFormatError::Checksum));
        }

        #[test]
        fn random_strings_of_the_right_shape_are_refused(s in "[0-9A-Za-z]{49}") {
            // Passing by chance takes guessing the 6-character checksum: 1 in 62^6.
            prop_assert_eq!(ApiKey::parse(&format!("smai_{s}")), Err(KeyFormatError::Checksum));
        }
    }
}

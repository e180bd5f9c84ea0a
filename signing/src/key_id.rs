//! Short, stable names for public keys.

use std::fmt;
use std::str::FromStr;

use sha2::{Digest, Sha256};

/// Domain separation prefix of the key id hash, so a key id can never be
/// confused with any other SHA-256 of a public key.
const KEY_ID_DOMAIN: &[u8] = b"smolvm-key-id-v1\0";

/// The first 8 bytes of `SHA-256("smolvm-key-id-v1\0" || public key bytes)`.
///
/// A key id names a key for people and lets a verifier pick the right trusted
/// key; it is not a security boundary. 64 bits are cheap to collide on
/// purpose, so trust is always decided by comparing full key bytes (see
/// [`crate::verify_trusted`]).
///
/// Displays as 16 lowercase hex digits, the only form [`FromStr`] accepts.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KeyId([u8; 8]);

/// A key id string that is not 16 lowercase hex digits.
///
/// Its own type rather than a [`SigningError`](crate::SigningError) variant
/// because that error names [`KeyId`] in its other variants;
/// `SigningError::InvalidKeyId` wraps it where it travels with them.
#[derive(thiserror::Error, Debug, Clone, PartialEq, Eq)]
#[error("key id {input:?} is not 16 lowercase hex digits")]
pub struct ParseKeyIdError {
    input: String,
}

impl ParseKeyIdError {
    /// The rejected text.
    pub fn input(&self) -> &str {
        &self.input
    }
}

impl KeyId {
    /// Number of bytes in a key id.
    pub const LEN: usize = 8;

    /// Derives the key id of the 32 public key bytes.
    pub fn derive(public_key: &[u8; 32]) -> Self {
        let digest = Sha256::new()
            .chain_update(KEY_ID_DOMAIN)
            .chain_update(public_key)
            .finalize();
        let mut id = [0u8; Self::LEN];
        id.copy_from_slice(&digest[..Self::LEN]);
        KeyId(id)
    }

    /// Wraps key id bytes as stored in a file header.
    pub const fn from_bytes(bytes: [u8; 8]) -> Self {
        KeyId(bytes)
    }

    /// The key id bytes, for storing in a file header.
    pub const fn to_bytes(self) -> [u8; 8] {
        self.0
    }
}

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyId({self})")
    }
}

impl FromStr for KeyId {
    type Err = ParseKeyIdError;

    fn from_str(input: &str) -> Result<Self, Self::Err> {
        let invalid = || ParseKeyIdError {
            input: input.to_owned(),
        };
        // Uppercase is refused so that every key id has exactly one spelling
        // and text comparison of ids is meaningful.
        if input.len() != 2 * Self::LEN
            || !input
                .bytes()
                .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
        {
            return Err(invalid());
        }
        let mut id = [0u8; Self::LEN];
        hex::decode_to_slice(input, &mut id).map_err(|_| invalid())?;
        Ok(KeyId(id))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_then_parse_round_trips() {
        let id = KeyId::from_bytes([0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef]);
        assert_eq!(id.to_string(), "0123456789abcdef");
        assert_eq!("0123456789abcdef".parse::<KeyId>().unwrap(), id);
    }

    #[test]
    fn parse_rejects_uppercase_wrong_length_and_non_hex() {
        for bad in [
            "0123456789ABCDEF",
            "0123456789abcde",
            "0123456789abcdef0",
            "0123456789abcdeg",
            "",
            " 123456789abcdef",
        ] {
            assert!(
                matches!(bad.parse::<KeyId>(), Err(e) if e.input() == bad),
                "{bad:?} was accepted"
            );
        }
    }

    #[test]
    fn derivation_uses_the_domain_prefix() {
        // Without the prefix the id would be the first 8 bytes of the plain
        // SHA-256 of the key; the id must differ from that.
        let key = [7u8; 32];
        let plain = Sha256::digest(key);
        assert_ne!(KeyId::derive(&key).to_bytes(), plain[..8]);
        let mut prefixed = KEY_ID_DOMAIN.to_vec();
        prefixed.extend_from_slice(&key);
        assert_eq!(
            KeyId::derive(&key).to_bytes(),
            Sha256::digest(&prefixed)[..8]
        );
    }
}

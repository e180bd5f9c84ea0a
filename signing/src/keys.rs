//! Ed25519 public and secret keys, signing, and verification against a
//! trusted key list.

use std::fmt;

use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use rand_core::OsRng;

use crate::error::SigningError;
use crate::key_id::KeyId;

/// Length of an ed25519 public key and of a secret key seed, in bytes.
pub const KEY_LEN: usize = 32;
/// Length of an ed25519 signature, in bytes.
pub const SIGNATURE_LEN: usize = 64;

/// An ed25519 public key that is a valid, not small-order curve point.
#[derive(Clone, Copy)]
pub struct PublicKey {
    key: VerifyingKey,
    // Derived from `key` on construction; kept so hot paths (matching a
    // signer against many trusted keys) do not rehash.
    id: KeyId,
}

impl PublicKey {
    /// Parses 32 public key bytes, refusing non-points and small-order
    /// points (a signature "under" a small-order key can be forged).
    pub fn from_bytes(bytes: &[u8; KEY_LEN]) -> Result<Self, SigningError> {
        let key = VerifyingKey::from_bytes(bytes)
            .map_err(|_| SigningError::InvalidPublicKey { bytes: *bytes })?;
        if key.is_weak() {
            return Err(SigningError::WeakPublicKey { bytes: *bytes });
        }
        Ok(Self::from_verifying_key(key))
    }

    fn from_verifying_key(key: VerifyingKey) -> Self {
        let id = KeyId::derive(key.as_bytes());
        PublicKey { key, id }
    }

    /// The 32 public key bytes.
    pub fn to_bytes(&self) -> [u8; KEY_LEN] {
        self.key.to_bytes()
    }

    /// The key id: a short name, not proof of identity (see [`KeyId`]).
    pub fn key_id(&self) -> KeyId {
        self.id
    }

    /// Checks `sig` over `msg` with the strict rules: canonical `S`, no
    /// small-order `R` or key. Lax verification would accept more than one
    /// signature per message, and signatures under small-order keys.
    pub fn verify(&self, msg: &[u8], sig: &[u8; SIGNATURE_LEN]) -> Result<(), SigningError> {
        self.key
            .verify_strict(msg, &Signature::from_bytes(sig))
            .map_err(|_| SigningError::BadSignature { key_id: self.id })
    }
}

impl PartialEq for PublicKey {
    fn eq(&self, other: &Self) -> bool {
        self.key.as_bytes() == other.key.as_bytes()
    }
}

impl Eq for PublicKey {}

impl std::hash::Hash for PublicKey {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.key.as_bytes().hash(state);
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PublicKey")
            .field("key_id", &self.id)
            .field("bytes", &hex::encode(self.key.as_bytes()))
            .finish()
    }
}

/// An ed25519 secret key. Its memory is wiped on drop, and it has no `Clone`
/// so that copies are made on purpose only (via the file format).
pub struct SecretKey {
    key: SigningKey,
}

impl SecretKey {
    /// Generates a key from the operating system's random source.
    pub fn generate() -> Self {
        SecretKey {
            key: SigningKey::generate(&mut OsRng),
        }
    }

    /// Wraps a 32-byte seed (the RFC 8032 "secret key").
    pub fn from_seed(seed: &[u8; KEY_LEN]) -> Self {
        SecretKey {
            key: SigningKey::from_bytes(seed),
        }
    }

    /// The 32-byte seed. Handle with care: this is the secret.
    pub(crate) fn seed(&self) -> [u8; KEY_LEN] {
        self.key.to_bytes()
    }

    /// The matching public key.
    pub fn public_key(&self) -> PublicKey {
        // A key derived from a seed is a multiple of the prime-order base
        // point; it is small-order only if the hashed seed is a multiple of
        // that order (probability about 2^-250), so it is not checked.
        PublicKey::from_verifying_key(self.key.verifying_key())
    }

    /// Signs `msg` (pure Ed25519, RFC 8032; deterministic).
    pub fn sign(&self, msg: &[u8]) -> [u8; SIGNATURE_LEN] {
        self.key.sign(msg).to_bytes()
    }
}

impl fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SecretKey")
            .field("key_id", &self.public_key().key_id())
            .finish_non_exhaustive()
    }
}

/// Verifies that `signer` is one of the `trusted` keys and that `sig` over
/// `msg` verifies under it.
///
/// Trust is decided on full key bytes, never on key ids alone: a 64-bit id
/// can be collided on purpose. When the signer is not trusted the error says
/// whether a trusted key shares its id (a substituted key, or a collision)
/// or not (simply an unknown signer).
pub fn verify_trusted(
    msg: &[u8],
    sig: &[u8; SIGNATURE_LEN],
    signer: &PublicKey,
    trusted: &[PublicKey],
) -> Result<(), SigningError> {
    if trusted.contains(signer) {
        return signer.verify(msg, sig);
    }
    let key_id = signer.key_id();
    if trusted.iter().any(|t| t.key_id() == key_id) {
        Err(SigningError::KeyIdCollision { key_id })
    } else {
        Err(SigningError::UntrustedKey { key_id })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ed25519_dalek::Verifier;

    /// The identity point: order 1, the smallest of the small-order points.
    const IDENTITY: [u8; 32] = {
        let mut b = [0u8; 32];
        b[0] = 1;
        b
    };

    #[test]
    fn verify_rejects_signature_under_small_order_key() {
        // Bypass `from_bytes` (which refuses this key) to reach `verify`.
        let weak = PublicKey::from_verifying_key(VerifyingKey::from_bytes(&IDENTITY).unwrap());
        // R = identity, S = 0 satisfies [S]B = R + [k]A for A = identity and
        // every message, so a lax verifier accepts it.
        let mut forged = [0u8; SIGNATURE_LEN];
        forged[..32].copy_from_slice(&IDENTITY);
        let msg = b"any message at all";
        assert!(
            weak.key
                .verify(msg, &Signature::from_bytes(&forged))
                .is_ok(),
            "premise: the lax verifier accepts the forgery"
        );
        assert!(matches!(
            weak.verify(msg, &forged),
            Err(SigningError::BadSignature { .. })
        ));
    }

    #[test]
    fn verify_trusted_compares_key_bytes_not_key_ids() {
        let signer_secret = SecretKey::generate();
        let signer = signer_secret.public_key();
        let msg = b"payload";
        let sig = signer_secret.sign(msg);
        // A real 64-bit collision is out of reach, so forge a trusted key
        // that carries the signer's id but other key bytes.
        let impostor = PublicKey {
            key: SecretKey::generate().public_key().key,
            id: signer.key_id(),
        };
        match verify_trusted(msg, &sig, &signer, &[impostor]) {
            Err(SigningError::KeyIdCollision { key_id }) => assert_eq!(key_id, signer.key_id()),
            other => panic!("expected KeyIdCollision, got {other:?}"),
        }
    }

    #[test]
    fn secret_key_debug_does_not_print_the_seed() {
        let secret = SecretKey::from_seed(&[0xab; 32]);
        let debug = format!("{secret:?}");
        assert!(!debug.contains("abab"), "{debug}");
        assert!(!debug.contains("171, 171"), "{debug}");
        assert!(debug.contains(&secret.public_key().key_id().to_string()));
    }
}

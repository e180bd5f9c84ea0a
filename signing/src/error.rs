//! The one error type of this crate.
//!
//! Every message names the thing at fault (a file and line, a key id) and,
//! where there is one, the fix.

use std::io;
use std::path::PathBuf;

use crate::key_id::{KeyId, ParseKeyIdError};

/// Everything that can go wrong while reading keys, writing keys, signing or
/// verifying.
#[derive(thiserror::Error, Debug)]
#[non_exhaustive]
pub enum SigningError {
    /// A file system operation on `path` failed.
    #[error("cannot {action} {}", path.display())]
    Io {
        /// What we were doing, as a verb phrase ("read key file").
        action: &'static str,
        /// The file or directory the operation was on.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },

    /// A key file is not in any format we read, or breaks its format's rules.
    #[error("key file {}: {reason}", path.display())]
    KeyFileSyntax {
        /// The key file.
        path: PathBuf,
        /// What is wrong and, where known, how to fix it.
        reason: String,
    },

    /// A public key file states a key id that does not belong to its key.
    #[error(
        "key file {}: the stated key id {stated} does not match the key (its id is {computed}); \
         the file was edited or corrupted, get a fresh copy of the public key",
        path.display()
    )]
    KeyIdMismatch {
        /// The public key file.
        path: PathBuf,
        /// The key id written in the file.
        stated: KeyId,
        /// The key id computed from the key bytes in the file.
        computed: KeyId,
    },

    /// An OpenSSH private key is protected by a passphrase.
    #[error(
        "key file {}: the OpenSSH private key is encrypted with a passphrase, which smolvm does \
         not decrypt; sign with a decrypted copy (cp KEY KEY.nopass && ssh-keygen -p -N \"\" -f \
         KEY.nopass) or create a smolvm key",
        path.display()
    )]
    EncryptedOpenSshKey {
        /// The key file.
        path: PathBuf,
    },

    /// An OpenSSH key of an algorithm other than ed25519.
    #[error(
        "key file {}: OpenSSH key type {algorithm} is not supported, smolvm signs with ed25519 \
         only (ssh-keygen -t ed25519)",
        path.display()
    )]
    UnsupportedOpenSshKey {
        /// The key file.
        path: PathBuf,
        /// The OpenSSH algorithm name, e.g. `ssh-rsa`.
        algorithm: String,
    },

    /// The `ssh-key` crate rejected an OpenSSH key file.
    #[error("key file {}: not a valid OpenSSH key", path.display())]
    OpenSsh {
        /// The key file.
        path: PathBuf,
        /// The parser's error.
        #[source]
        source: ssh_key::Error,
    },

    /// 32 bytes that do not encode a point on the curve.
    #[error(
        "public key bytes {} are not a valid ed25519 point",
        hex::encode(bytes)
    )]
    InvalidPublicKey {
        /// The rejected bytes.
        bytes: [u8; 32],
    },

    /// A small-order public key: signatures under it prove nothing.
    #[error(
        "public key bytes {} are a small-order (weak) ed25519 point; signatures under it prove \
         nothing, so it is refused",
        hex::encode(bytes)
    )]
    WeakPublicKey {
        /// The rejected bytes.
        bytes: [u8; 32],
    },

    /// A key id string that is not 16 lowercase hex digits.
    // Transparent: the parse error already names the text and the fault,
    // and a message of its own here would only repeat it.
    #[error(transparent)]
    InvalidKeyId(#[from] ParseKeyIdError),

    /// The signature does not verify under the key.
    #[error(
        "signature does not verify under key {key_id}: the signed data was changed after signing, \
         or was signed by another key"
    )]
    BadSignature {
        /// The id of the key the signature was checked against.
        key_id: KeyId,
    },

    /// The signing key is not trusted and no trusted key shares its id.
    #[error(
        "signing key {key_id} is not trusted: no trusted key has this key id; add its public key \
         file to the trusted keys if you trust the signer"
    )]
    UntrustedKey {
        /// The signer's key id.
        key_id: KeyId,
    },

    /// A trusted key has the signer's id but different key bytes.
    #[error(
        "signing key {key_id} is not trusted: a trusted key has the same key id {key_id} but \
         different key bytes, so the signer's key was substituted or its id collides; compare the \
         full public keys"
    )]
    KeyIdCollision {
        /// The key id shared by the signer and a trusted key.
        key_id: KeyId,
    },

    /// `write_keypair` would replace an existing file.
    #[error(
        "refusing to overwrite existing key file {}: the key in it would be lost for good; move \
         it away first, or force the overwrite",
        path.display()
    )]
    KeyExists {
        /// The existing file.
        path: PathBuf,
    },

    /// A key name that cannot be a plain file name stem.
    #[error(
        "key name {name:?} is not usable as a file name: use letters, digits, '-', '_' or '.', \
         not starting with '.'"
    )]
    InvalidKeyName {
        /// The rejected name.
        name: String,
    },
}

//! Verification of a whole artifact: structure, signature, trust, hashes.
//! One implementation for `pack verify`, `pack create`'s self-check, the
//! stub and `pack run`.

use smolvm_format::{Artifact, FormatError, ReadAt};
use smolvm_signing::{KeyId, PublicKey, SigningError};
use thiserror::Error;

pub use crate::trust::TrustError;

#[derive(Debug, Error)]
pub enum VerifyError {
    #[error(transparent)]
    Format(#[from] FormatError),
    #[error("artifact is unsigned (packed with --no-sign); an unsigned artifact is never reported valid")]
    Unsigned,
    #[error("signer: {0}")]
    Signer(String),
    #[error("signature: {0}")]
    Signature(SigningError),
    #[error("untrusted signer: {0}")]
    Untrusted(SigningError),
    /// The signer's rotation record (crate::rotation) does not verify.
    #[error("key rotation record: {0}")]
    Rotation(String),
}

/// What verification established.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SignatureState {
    Unsigned,
    /// Signed and the signature verifies with the key the artifact carries.
    SelfConsistent {
        key_id: KeyId,
    },
    /// ...and that key is one of the trusted keys given.
    Trusted {
        key_id: KeyId,
    },
}

impl SignatureState {
    /// The signer's key id (`None` when unsigned).
    pub fn key_id(&self) -> Option<KeyId> {
        match self {
            SignatureState::Unsigned => None,
            SignatureState::SelfConsistent { key_id } | SignatureState::Trusted { key_id } => {
                Some(*key_id)
            }
        }
    }
}

/// How much to check.
pub struct VerifyOptions<'k> {
    /// Keys to trust. Empty: check the signature against the key the
    /// artifact carries (integrity, not authenticity).
    pub trusted: &'k [PublicKey],
    /// Refuse unsigned artifacts.
    pub require_signature: bool,
    /// Also hash the stub, every section and the padding. The runtime's warm
    /// path skips this: its inputs come from a cache keyed by the verified hashes.
    pub integrity: bool,
}

/// Checks the signature of an already parsed artifact against its own
/// signer key and, if given, the trusted keys.
pub fn check_signature<R: ReadAt + ?Sized>(
    art: &Artifact<'_, R>,
    trusted: &[PublicKey],
) -> Result<SignatureState, VerifyError> {
    let (Some(signer), Some(block)) = (&art.manifest.signer, &art.signature) else {
        return Ok(SignatureState::Unsigned);
    };
    let key = PublicKey::from_bytes(signer.public_key.as_bytes())
        .map_err(|e| VerifyError::Signer(e.to_string()))?;
    let derived = key.key_id();
    if derived.to_bytes() != signer.key_id.to_bytes() {
        return Err(VerifyError::Signer(format!(
            "key id {} does not belong to the public key in the manifest (it derives {derived})",
            signer.key_id
        )));
    }
    let input = art.signing_input();
    // The signature first, so "untrusted" always means "sound but not ours".
    key.verify(&input, &block.signature)
        .map_err(VerifyError::Signature)?;
    // A record that does not verify is a damaged or forged artifact,
    // whether or not this start would have used it.
    crate::rotation::lineage(&art.manifest).map_err(|e| VerifyError::Rotation(e.0))?;
    if trusted.is_empty() {
        Ok(SignatureState::SelfConsistent { key_id: derived })
    } else {
        smolvm_signing::verify_trusted(&input, &block.signature, &key, trusted).map_err(
            |e| match e {
                SigningError::BadSignature { .. } => VerifyError::Signature(e),
                other => VerifyError::Untrusted(other),
            },
        )?;
        Ok(SignatureState::Trusted { key_id: derived })
    }
}

/// Parses and verifies `src` per `opts`. Signature before hashes: a forged
/// manifest is rejected without reading the sections.
pub fn verify_artifact<'a, R: ReadAt + Sync + ?Sized>(
    src: &'a R,
    opts: &VerifyOptions<'_>,
) -> Result<(Artifact<'a, R>, SignatureState), VerifyError> {
    let art = Artifact::parse(src)?;
    let state = check_signature(&art, opts.trusted)?;
    if state == SignatureState::Unsigned && (opts.require_signature || !opts.trusted.is_empty()) {
        return Err(VerifyError::Unsigned);
    }
    if opts.integrity {
        art.verify_integrity()?;
    }
    Ok((art, state))
}

impl crate::exit::ExitStatus for VerifyError {
    fn exit_code(&self) -> u8 {
        use crate::exit::INVALID;
        match self {
            VerifyError::Format(e) => e.exit_code(),
            _ => INVALID,
        }
    }
}

impl crate::exit::ExitStatus for TrustError {
    fn exit_code(&self) -> u8 {
        use crate::exit::USAGE_OR_IO;
        match self {
            TrustError::Key(e) => e.exit_code(),
            // The artifact is not the one this name was trusted as.
            TrustError::SignerChanged { .. } => crate::exit::INVALID,
            _ => USAGE_OR_IO,
        }
    }
}

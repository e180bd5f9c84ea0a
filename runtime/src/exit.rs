//! Exit codes and error reporting, shared by every binary (the `smolvm`
//! CLI, `pack run`, the stub), so that one failure gives one code and one
//! line wherever it happens.
//!
//! The convention (README, "Exit codes"): 0 ok; 1 verification or
//! validation failed; 2 usage or I/O error; a running machine exits with the
//! guest's own code.
//!
//! The error convention: a message never repeats its `source()`. Each error
//! says what it was doing and the chain says why; binaries print the whole
//! chain once, joined by ": " ([`chain`]).

use std::error::Error;
use std::fmt;

use smolvm_format::FormatError;
use smolvm_signing::SigningError;

use crate::cache::CacheError;
use crate::run::RunError;
use crate::spec::SpecError;
use crate::verify::{TrustError, VerifyError};

/// Verification or validation failed: the input is wrong or not trusted.
pub const INVALID: u8 = 1;
/// Usage or I/O error: the request or the environment is wrong.
pub const USAGE_OR_IO: u8 = 2;
/// A running machine whose timeout expired (`--smolvm-timeout`, `pack run
/// --timeout`), as GNU `timeout` (crate::control).
pub const TIMED_OUT: u8 = 124;
/// A running machine forced down by a second SIGINT: 128 + SIGINT.
pub const INTERRUPTED: u8 = 130;

/// An error that knows which exit code it means.
pub trait ExitStatus {
    /// [`INVALID`] or [`USAGE_OR_IO`].
    fn exit_code(&self) -> u8;
}

/// A usage error a binary finds itself (a missing input, a bad option
/// value): exit 2 wherever it is in a chain.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

impl ExitStatus for UsageError {
    fn exit_code(&self) -> u8 {
        USAGE_OR_IO
    }
}

impl ExitStatus for std::io::Error {
    fn exit_code(&self) -> u8 {
        USAGE_OR_IO
    }
}

impl ExitStatus for FormatError {
    fn exit_code(&self) -> u8 {
        match self {
            FormatError::Io { .. } => USAGE_OR_IO,
            _ => INVALID,
        }
    }
}

impl ExitStatus for SigningError {
    fn exit_code(&self) -> u8 {
        match self {
            // The signature or the signer is wrong: verification failed.
            SigningError::BadSignature { .. }
            | SigningError::UntrustedKey { .. }
            | SigningError::KeyIdCollision { .. }
            | SigningError::InvalidPublicKey { .. }
            | SigningError::WeakPublicKey { .. } => INVALID,
            // A key file we were asked to use cannot be used, or a key pair
            // cannot be written: the request is wrong.
            _ => USAGE_OR_IO,
        }
    }
}

impl ExitStatus for VerifyError {
    fn exit_code(&self) -> u8 {
        match self {
            VerifyError::Format(e) => e.exit_code(),
            _ => INVALID,
        }
    }
}

impl ExitStatus for TrustError {
    fn exit_code(&self) -> u8 {
        match self {
            TrustError::Key(e) => e.exit_code(),
            // The artifact is not the one this name was trusted as.
            TrustError::SignerChanged { .. } => INVALID,
            _ => USAGE_OR_IO,
        }
    }
}

impl ExitStatus for CacheError {
    fn exit_code(&self) -> u8 {
        match self {
            // A section that does not decode or hash right failed verification.
            CacheError::Section { source, .. } => source.exit_code(),
            _ => USAGE_OR_IO,
        }
    }
}

impl ExitStatus for SpecError {
    fn exit_code(&self) -> u8 {
        INVALID
    }
}

/// A disk that is too large or a volume path that cannot be bound is the
/// artifact's; the rest is this host's (a disk in use, I/O).
impl ExitStatus for crate::disk::DiskError {
    fn exit_code(&self) -> u8 {
        use crate::disk::DiskError;
        match self {
            DiskError::Size { .. } | DiskError::Volume { .. } => INVALID,
            DiskError::Io { .. }
            | DiskError::InUse { .. }
            | DiskError::NotFormatted { .. }
            | DiskError::NoDataDir => USAGE_OR_IO,
        }
    }
}

/// A state file that cannot be read or written is this host's.
impl ExitStatus for crate::state_file::StateError {
    fn exit_code(&self) -> u8 {
        USAGE_OR_IO
    }
}

/// Consent is the person's: without it, or with a "no", the request is
/// what is missing (exit 2), as for any other usage error.
impl ExitStatus for crate::consent::ConsentError {
    fn exit_code(&self) -> u8 {
        USAGE_OR_IO
    }
}

impl ExitStatus for RunError {
    fn exit_code(&self) -> u8 {
        match self {
            RunError::Verify(e) => e.exit_code(),
            RunError::Trust(e) => e.exit_code(),
            RunError::Cache(e) => e.exit_code(),
            RunError::Config(_) | RunError::Spec(_) | RunError::Rollback { .. } => INVALID,
            // The signed config's network settings were checked at pack
            // time; what fails here are run-time publications (usage).
            RunError::Network(_)
            | RunError::Unsupported(_)
            | RunError::Settings(_)
            | RunError::Io { .. } => USAGE_OR_IO,
            RunError::Disk(e) => e.exit_code(),
            RunError::Consent(e) => e.exit_code(),
            #[cfg(feature = "vmm")]
            RunError::Launch(_) => USAGE_OR_IO,
        }
    }
}

/// The exit code for an error chain: the outermost link whose type knows its
/// code decides (it knows its own sources best); `more` names the caller's
/// own types. Links of other types (context strings) are passed over; a
/// chain of none of them is a validation failure.
pub fn exit_code_with(
    err: &(dyn Error + 'static),
    more: &dyn Fn(&(dyn Error + 'static)) -> Option<u8>,
) -> u8 {
    let mut link = Some(err);
    while let Some(e) = link {
        if let Some(code) = known(e).or_else(|| more(e)) {
            return code;
        }
        link = e.source();
    }
    INVALID
}

/// [`exit_code_with`] for chains of this crate's and its dependencies' types.
pub fn exit_code(err: &(dyn Error + 'static)) -> u8 {
    exit_code_with(err, &|_| None)
}

fn known(e: &(dyn Error + 'static)) -> Option<u8> {
    macro_rules! try_types {
        ($($t:ty),*) => {
            $(if let Some(x) = e.downcast_ref::<$t>() {
                return Some(x.exit_code());
            })*
        };
    }
    try_types!(
        RunError,
        VerifyError,
        TrustError,
        CacheError,
        crate::disk::DiskError,
        crate::consent::ConsentError,
        crate::state_file::StateError,
        SpecError,
        FormatError,
        SigningError,
        UsageError,
        std::io::Error
    );
    None
}

/// An error and its sources on one line, joined by ": ".
pub fn chain<'a>(err: &'a (dyn Error + 'static)) -> Chain<'a> {
    Chain(err)
}

/// See [`chain`].
pub struct Chain<'a>(&'a (dyn Error + 'static));

impl fmt::Display for Chain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)?;
        let mut link = self.0.source();
        while let Some(e) = link {
            write!(f, ": {e}")?;
            link = e.source();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn io(kind: std::io::ErrorKind) -> std::io::Error {
        std::io::Error::from(kind)
    }

    #[test]
    fn chain_prints_each_source_once() {
        let e = RunError::Io {
            what: "reading the artifact".into(),
            source: io(std::io::ErrorKind::NotFound),
        };
        let line = chain(&e).to_string();
        assert_eq!(line, "reading the artifact: entity not found");
        let f = FormatError::Io {
            what: "trailer",
            source: io(std::io::ErrorKind::UnexpectedEof),
        };
        let line = chain(&f).to_string();
        assert_eq!(line.matches("unexpected end of file").count(), 1, "{line}");
    }

    #[test]
    fn codes_follow_the_convention() {
        let io_in_format = VerifyError::Format(FormatError::Io {
            what: "trailer",
            source: io(std::io::ErrorKind::PermissionDenied),
        });
        assert_eq!(exit_code(&io_in_format), USAGE_OR_IO);
        assert_eq!(exit_code(&VerifyError::Unsigned), INVALID);
        let bad_section = RunError::Cache(CacheError::Section {
            what: "kernel",
            source: FormatError::NonCanonicalManifest,
        });
        assert_eq!(exit_code(&bad_section), INVALID);
        assert_eq!(exit_code(&UsageError("no root".into())), USAGE_OR_IO);
        assert_eq!(
            exit_code(&RunError::Rollback {
                name: "a".into(),
                version: "1".into(),
                minimum: "2".into(),
                why: "--smolvm-min-version".into(),
            }),
            INVALID
        );
        // An unknown outer link passes the decision to its source.
        #[derive(Debug, thiserror::Error)]
        #[error("context")]
        struct Context(#[source] std::io::Error);
        assert_eq!(
            exit_code(&Context(io(std::io::ErrorKind::NotFound))),
            USAGE_OR_IO
        );
        // ...and a chain nobody classifies is a validation failure.
        #[derive(Debug, thiserror::Error)]
        #[error("plain")]
        struct Plain;
        assert_eq!(exit_code(&Plain), INVALID);
        assert_eq!(exit_code_with(&Plain, &|_| Some(USAGE_OR_IO)), USAGE_OR_IO);
    }
}

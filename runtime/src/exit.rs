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
//!
//! A leaf: it imports nothing of this crate. Each error type says its own
//! exit code beside its definition (`impl ExitStatus`), and one aggregator,
//! [`crate::error`], walks a chain and asks each link.

use std::error::Error;
use std::fmt;

use smolvm_format::FormatError;
use smolvm_signing::SigningError;

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

/// An error and its sources on one line, joined by ": ".
pub fn chain<'a>(err: &'a (dyn Error + 'static)) -> Chain<'a> {
    Chain(err)
}

/// See [`chain`].
pub struct Chain<'a>(&'a (dyn Error + 'static));

impl fmt::Display for Chain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Our own messages never repeat their source; some libraries'
        // do (reqwest's "error sending request for url (...)" holds its
        // source's text): a source already said is not said again.
        let mut said = self.0.to_string();
        let mut link = self.0.source();
        while let Some(e) = link {
            let text = e.to_string();
            if !said.contains(&text) {
                said.push_str(": ");
                said.push_str(&text);
            }
            link = e.source();
        }
        f.write_str(&said)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chain_prints_each_source_once() {
        let f = FormatError::Io {
            what: "trailer",
            source: std::io::Error::from(std::io::ErrorKind::UnexpectedEof),
        };
        let line = chain(&f).to_string();
        assert_eq!(line.matches("unexpected end of file").count(), 1, "{line}");
    }

    /// An error that, like reqwest's, prints its source inside its own text.
    #[derive(Debug)]
    struct Wrapping(std::io::Error);

    impl fmt::Display for Wrapping {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            write!(f, "error sending request ({})", self.0)
        }
    }

    impl Error for Wrapping {
        fn source(&self) -> Option<&(dyn Error + 'static)> {
            Some(&self.0)
        }
    }

    #[test]
    fn a_source_a_library_already_printed_is_not_printed_again() {
        let e = Wrapping(std::io::Error::other("connection refused"));
        assert_eq!(
            chain(&e).to_string(),
            "error sending request (connection refused)"
        );
        let e = FormatError::Io {
            what: "trailer",
            source: std::io::Error::other("disk on fire"),
        };
        assert!(chain(&e).to_string().ends_with(": disk on fire"));
    }
}

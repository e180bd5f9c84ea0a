//! The one place an error chain becomes an exit code (crate::exit has the
//! codes and the trait; each error type implements it beside its
//! definition). Kept apart from crate::exit so that module stays a leaf:
//! this one imports every error type of the crate, and nothing imports it
//! back but the binaries.

use std::error::Error;

use smolvm_format::FormatError;
use smolvm_signing::SigningError;

use crate::cache::CacheError;
use crate::exit::{ExitStatus, UsageError, INVALID};
use crate::run::RunError;
use crate::spec::SpecError;
use crate::verify::{TrustError, VerifyError};

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
        crate::install::InstallError,
        SpecError,
        FormatError,
        SigningError,
        UsageError,
        std::io::Error
    );
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exit::{chain, USAGE_OR_IO};

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

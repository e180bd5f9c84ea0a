//! A root filesystem as a tree, and the image the guest mounts.
//!
//! - [`tree`]: the model (one node per normalised path), read from a host
//!   directory or a root tarball;
//! - [`flatten`]: image layers applied in order with overlay semantics
//!   (whiteouts, opaque directories, hard links across layers);
//! - [`pax`]: what PAX records add to a tar entry (xattrs, exact mtimes,
//!   GNU sparse maps);
//! - [`spool`]: the private directory large file contents are written to
//!   while a tree is read;
//! - [`compress`]: gzip/zstd/plain detection for tarballs and layers;
//! - [`erofs`]: the tree written as an EROFS image.
//!
//! This crate knows nothing of registries, Smolfiles or the CLI above it:
//! nothing here touches the host beyond reading the inputs it is given.

pub mod compress;
pub mod erofs;
pub mod flatten;
pub mod pax;
pub mod spool;
#[cfg(any(test, feature = "testutil"))]
pub mod testutil;
pub mod tree;

use thiserror::Error;

/// What went wrong reading or writing a tree. `what` names the input (a
/// path, an image and its layer) so the message stands on its own; I/O
/// sources are returned by `source()`, never repeated in the message.
#[derive(Debug, Error)]
pub enum RootfsError {
    #[error("{what}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    /// `entry` is a tree path as [`tree::display_name`] shows it (bytes
    /// that are not printable UTF-8 escaped).
    #[error("{what}: entry \"{entry}\": {fault}")]
    Entry {
        what: String,
        entry: String,
        fault: String,
    },
    #[error("{what}: {fault}")]
    Invalid { what: String, fault: String },
}

pub(crate) fn io_err(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> RootfsError {
    let what = what.into();
    move |source| RootfsError::Io { what, source }
}

//! Errors of the format reader and writer.

use thiserror::Error;

use crate::fixed_hex::Sha256Digest;
use crate::section_kind::SectionKind;

/// Everything that can be wrong with an artifact's bytes.
///
/// Messages name the structure, the field and the fault, so that a user
/// reading one line knows what is broken.
#[derive(Debug, Error)]
pub enum FormatError {
    #[error("reading {what}")]
    Io {
        what: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("file is {len} bytes, too short to hold a smolmachine trailer ({need} bytes); not a smolmachine artifact")]
    TooShort { len: u64, need: u64 },
    #[error("{structure}: bad magic {found:02x?}, expected {expected:?}; not a smolmachine artifact or the file is damaged")]
    BadMagic {
        structure: &'static str,
        found: Vec<u8>,
        expected: &'static str,
    },
    #[error("{structure}: format version {found} is not supported; this reader supports versions {oldest} to {newest} (upgrade smolvm to read newer artifacts; repack older ones)")]
    UnsupportedVersion {
        structure: &'static str,
        found: u32,
        oldest: u32,
        newest: u32,
    },
    #[error("{structure}: format version {found} differs from the trailer's {trailer}; the parts of the payload come from different artifacts")]
    VersionMismatch {
        structure: &'static str,
        found: u32,
        trailer: u32,
    },
    #[error("{structure}: field `{field}` has value {value:#x}, expected {expected}")]
    BadField {
        structure: &'static str,
        field: &'static str,
        value: u64,
        expected: String,
    },
    #[error("{what}: range offset {offset:#x} + length {len:#x} runs past the end of the file ({file_len:#x} bytes)")]
    OutOfBounds {
        what: String,
        offset: u64,
        len: u64,
        file_len: u64,
    },
    #[error("{what}: offset/length arithmetic overflows (offset {offset:#x}, length {len:#x})")]
    Overflow { what: String, offset: u64, len: u64 },
    #[error("manifest is not valid: {0}")]
    Manifest(String),
    #[error("manifest is not in canonical encoding (re-encoding it gives different bytes); it was not written by a conforming writer")]
    NonCanonicalManifest,
    #[error("section `{kind}`: {fault}")]
    Section { kind: SectionKind, fault: String },
    #[error(
        "section `{kind}`: SHA-256 of the stored bytes is {actual}, the manifest says {expected}"
    )]
    HashMismatch {
        kind: SectionKind,
        expected: Sha256Digest,
        actual: Sha256Digest,
    },
    #[error("stub: SHA-256 of the {len} bytes before the payload is {actual}, the manifest says {expected}")]
    StubHashMismatch {
        len: u64,
        expected: Sha256Digest,
        actual: Sha256Digest,
    },
    #[error(
        "padding at offset {offset:#x} is not zero; the payload has bytes no hash vouches for"
    )]
    NonZeroPadding { offset: u64 },
    #[error("signature block: {0}")]
    SignatureBlock(String),
    #[error("decompressing section `{kind}`: {fault}")]
    Decompress { kind: SectionKind, fault: String },
}

/// Shorthand used throughout the crate.
pub type Result<T, E = FormatError> = std::result::Result<T, E>;

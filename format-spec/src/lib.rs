//! The `.smolmachine` on-disk format (version 5; reads 3 to 5).
//!
//! A payload is found from the end of the file, so it works appended to any
//! stub executable and as a bare `.smolmachine` file (payload offset 0).
//! `SPEC.md` beside this crate is normative; this is the short picture:
//!
//! ```text
//!  file offset
//!  0                +---------------------------+
//!                   | stub executable (optional)|  pinned by manifest.stub (length, sha256)
//!                   | zero padding to 4096      |
//!  P (4096-aligned) +---------------------------+
//!                   | header (64 B)             |  magic SMOLMACH, version, lengths
//!  P+64             | manifest (canonical JSON) |  name, version, target, signer,
//!                   |                           |  stub, section table, config
//!                   | signature block (96 B)    |  ed25519 over domain||header||manifest
//!                   | zero padding to 4096      |
//!  D = P+align(..)  +---------------------------+
//!                   | section 0 stored bytes    |  each at D + entry.offset (4096-aligned),
//!                   | zero padding to 4096      |  sha256 of stored bytes in the manifest
//!                   | section 1 ...             |
//!                   | section n-1               |
//!  EOF-64           +---------------------------+
//!                   | trailer (64 B)            |  magic SMOLTAIL, version, P, payload length
//!  EOF              +---------------------------+
//! ```

pub mod error;
pub mod fixed_hex;
pub mod frames;
pub mod layout;
pub mod manifest;
pub mod read;
pub mod section_kind;
pub mod write;

pub use error::{FormatError, Result};
pub use fixed_hex::{
    Ed25519Signature, ImageDigest, ParseHexError, ParseImageDigestError, Sha256Digest, SignerKeyId,
    SignerPublicKey,
};
pub use frames::{FrameDecoder, FrameSpan, FramedEncoder, Frames};
pub use layout::{
    Header, SignatureBlock, Trailer, ALGORITHM_TAG_ED25519, FORMAT_VERSION,
    OLDEST_READABLE_VERSION, PAGE_SIZE, TRAILER_LEN,
};
pub use manifest::{
    Compression, MachineConfig, Manifest, NetworkPolicy, RotationLink, SectionEntry, SectionKind,
    Signer, StubRecord, Target, MAX_ATTESTATION_SIZE, MAX_ICON_SIZE,
};
pub use read::{Artifact, FileSource, ReadAt, SectionStream};
pub use write::{
    pad_stub, plan_sections, plan_sections_hashed, stub_record, PayloadWriter, SectionData,
};

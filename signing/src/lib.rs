//! Ed25519 signing keys for smolvm artifacts.
//!
//! This crate signs and verifies raw byte messages; what the message is (the
//! artifact's signed header) is the format crate's business, so the two can
//! be reviewed apart.
//!
//! * [`SecretKey`] signs, [`PublicKey`] verifies with the strict rules
//!   (`verify_strict`): one valid signature per message and key, and no
//!   small-order keys.
//! * [`KeyId`] is a short name for a public key; trust is decided by
//!   [`verify_trusted`] on full key bytes.
//! * Key files are text, one key per file, in the smolvm formats or as
//!   OpenSSH ed25519 keys; `KEYS.md` specifies them. [`write_keypair`]
//!   creates a new pair on disk without ever replacing a key by accident.

mod error;
mod key_file;
mod key_id;
mod keypair;
mod keys;

pub use error::SigningError;
pub use key_file::{PUBLIC_TAG, SECRET_TAG};
pub use key_id::{KeyId, ParseKeyIdError};
pub use keypair::{write_keypair, PUBLIC_KEY_EXTENSION, SECRET_KEY_EXTENSION};
pub use keys::{verify_trusted, PublicKey, SecretKey, KEY_LEN, SIGNATURE_LEN};

/// Name of the only signature algorithm, as recorded in artifacts.
pub const ALGORITHM_ED25519: &str = "ed25519";

//! The smolmachine runtime: everything between "here is an artifact" and
//! "the guest runs", shared by the stub executable and `smolvm pack run`.

pub mod verify;

pub use verify::{check_signature, verify_artifact, SignatureState, VerifyError, VerifyOptions};

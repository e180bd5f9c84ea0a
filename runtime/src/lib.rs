//! The smolmachine runtime: everything between "here is an artifact" and
//! "the guest runs", shared by the stub executable and `smolvm pack run`.

pub mod cache;
pub mod control;
pub mod disk;
pub mod exit;
pub mod inspect;
#[cfg(feature = "vmm")]
pub mod kernel_map;
#[cfg(feature = "vmm")]
pub mod launch;
pub mod net;
pub mod rootfs_image;
pub mod run;
#[cfg(all(feature = "vmm", target_os = "linux"))]
pub mod sandbox;
pub mod seal;
pub mod settings;
pub mod spec;
pub mod trust;
pub mod verify;

pub use exit::ExitStatus;
pub use run::{run_artifact, RunError, RunOptions, Trace};
pub use verify::{check_signature, verify_artifact, SignatureState, VerifyError, VerifyOptions};

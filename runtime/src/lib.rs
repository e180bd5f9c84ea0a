//! The smolmachine runtime: everything between "here is an artifact" and
//! "the guest runs", shared by the stub executable and `smolvm pack run`.

pub mod cache;
pub mod consent;
pub mod control;
pub mod dirs;
pub mod disk;
pub mod double_click;
pub mod error;
pub mod escape;
pub mod exit;
pub mod flags;
/// The names and numbers the host and the guest init agree on (shared
/// with guest-init/init.c through a header build.rs writes).
pub mod guest_abi;
pub mod host_env;
pub mod inspect;
pub mod install;
#[cfg(feature = "vmm")]
pub mod kernel_map;
pub mod known_signers;
#[cfg(feature = "vmm")]
pub mod launch;
pub mod net;
pub mod rootfs_image;
pub mod rotation;
pub mod run;
#[cfg(all(feature = "vmm", target_os = "linux"))]
pub mod sandbox;
pub mod seal;
pub mod settings;
pub mod spec;
pub mod state_file;
pub mod trace;
pub mod trust;
pub mod units;
pub mod verify;

pub use error::{exit_code, exit_code_with};
pub use exit::ExitStatus;
pub use run::{prepare, run_artifact, Prepared, RunError, RunOptions};
pub use trace::Trace;
pub use verify::{check_signature, verify_artifact, SignatureState, VerifyError, VerifyOptions};

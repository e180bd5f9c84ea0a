//! The exit codes of the packer's own error types, for
//! `smolvm_runtime::error::exit_code_with` (the one mapping every binary uses).

use std::error::Error;

use smolvm_rootfs::RootfsError;
use smolvm_runtime::exit::{ExitStatus, INVALID, USAGE_OR_IO};

use crate::image::ImageError;
use crate::kernel::KernelError;
use crate::remote::RemoteError;
use crate::signer::SignerError;
use crate::smolfile::SmolfileError;
use crate::user::UserError;

/// The exit code of one link of an error chain, when it is a packer type.
pub fn packer_exit_code(e: &(dyn Error + 'static)) -> Option<u8> {
    if let Some(e) = e.downcast_ref::<ImageError>() {
        return Some(image(e));
    }
    if let Some(e) = e.downcast_ref::<RemoteError>() {
        return Some(match e {
            RemoteError::Registry(e) => image(e),
            other => other.exit_code(),
        });
    }
    if let Some(e) = e.downcast_ref::<RootfsError>() {
        return Some(rootfs(e));
    }
    if let Some(e) = e.downcast_ref::<SmolfileError>() {
        return Some(match e {
            SmolfileError::Read { .. } => USAGE_OR_IO,
            SmolfileError::Parse { .. } | SmolfileError::Invalid { .. } => INVALID,
        });
    }
    if let Some(e) = e.downcast_ref::<KernelError>() {
        return Some(match e {
            // Nothing to pack with: the request or the machine is wrong.
            KernelError::Read { .. } | KernelError::NotFound { .. } => USAGE_OR_IO,
            _ => INVALID,
        });
    }
    if e.downcast_ref::<crate::kernel_fetch::KernelFetchError>()
        .is_some()
    {
        return Some(smolvm_runtime::exit::INVALID);
    }
    if let Some(e) = e.downcast_ref::<crate::icon::IconError>() {
        return Some(e.exit_code());
    }
    if let Some(e) = e.downcast_ref::<SignerError>() {
        return Some(e.exit_code());
    }
    if let Some(e) = e.downcast_ref::<UserError>() {
        return Some(match e {
            UserError::Invalid { .. } => INVALID,
            UserError::Read { source, .. } => rootfs(source),
        });
    }
    None
}

fn rootfs(e: &RootfsError) -> u8 {
    match e {
        RootfsError::Io { source, .. } => source.exit_code(),
        _ => INVALID,
    }
}

fn image(e: &ImageError) -> u8 {
    match e {
        ImageError::Rootfs(e) => rootfs(e),
        // Talking to a registry failed (unreachable, refused, not found,
        // too large) or a local input is missing: I/O.
        ImageError::Io { .. } | ImageError::Registry { .. } => USAGE_OR_IO,
        // The reference or the choice among images is wrong: usage.
        ImageError::Reference { .. }
        | ImageError::TagNotFound { .. }
        | ImageError::Ambiguous { .. }
        | ImageError::Platform { .. } => USAGE_OR_IO,
        // The bytes are not what they must be: validation.
        ImageError::NotAnImage { .. }
        | ImageError::DigestMismatch { .. }
        | ImageError::Invalid { .. } => INVALID,
    }
}

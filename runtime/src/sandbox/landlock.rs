//! Step 1 of the sandbox: the host's files, through Landlock.
//!
//! Every file-system right the kernel knows (up to [`TESTED_ABI`]) is
//! handled, so anything not granted is refused; the grants are rules on the
//! descriptors the caller opened. Best effort over the ABI (an older kernel
//! enforces the rights it has), but a ruleset the kernel enforces nothing of
//! is an error: that would be sharing the person's files unconfined.

use landlock::{
    Access as _, AccessFs, AccessNet, BitFlags, CompatLevel, Compatible, PathBeneath, Ruleset,
    RulesetAttr, RulesetCreatedAttr, RulesetStatus, Scope, ABI,
};

use super::{Access, Landlock, Policy, SandboxError};

/// The newest ABI these rules were written and tested against. ABI 9 adds
/// `LANDLOCK_ACCESS_FS_RESOLVE_UNIX` (connecting to pathname Unix sockets):
/// handling it would need rules for `unix_peers` and a test on such a
/// kernel; until then the supervisor alone decides Unix destinations.
const TESTED_ABI: ABI = ABI::V7;

/// The files glibc's resolver reads (nss "files" and "dns" are inside libc
/// since 2.34). Granted read-only, each only if it exists, only with the
/// network on. No NSS module can be loaded from /lib: a host whose
/// nsswitch.conf names e.g. `resolve` or `mdns` falls back to the next
/// source.
pub(super) const RESOLVER_FILES: [&str; 5] = [
    "/etc/resolv.conf",
    "/etc/hosts",
    "/etc/nsswitch.conf",
    "/etc/gai.conf",
    "/etc/host.conf",
];

/// `landlock_create_ruleset(NULL, 0, LANDLOCK_CREATE_RULESET_VERSION)`.
pub(super) fn probe() -> Landlock {
    const LANDLOCK_CREATE_RULESET_VERSION: libc::c_uint = 1;
    // SAFETY: with a NULL attribute pointer, size 0 and the VERSION flag the
    // call only returns a number; it creates nothing.
    let abi = unsafe {
        libc::syscall(
            libc::SYS_landlock_create_ruleset,
            std::ptr::null::<libc::c_void>(),
            0usize,
            LANDLOCK_CREATE_RULESET_VERSION,
        )
    };
    if abi >= 1 {
        return Landlock::Full {
            abi: u32::try_from(abi).unwrap_or(u32::MAX),
        };
    }
    let why = match std::io::Error::last_os_error().raw_os_error() {
        Some(libc::ENOSYS) => {
            "this kernel has no Landlock (Linux 5.13+ with CONFIG_SECURITY_LANDLOCK needed)"
                .to_string()
        }
        Some(libc::EOPNOTSUPP) => {
            "Landlock is built in but not enabled (add landlock to the kernel's lsm= list)"
                .to_string()
        }
        Some(e) => format!(
            "landlock_create_ruleset: {}",
            std::io::Error::from_raw_os_error(e)
        ),
        None => "landlock_create_ruleset failed".to_string(),
    };
    Landlock::Unavailable { why }
}

/// The Landlock rights of a grant. Files get file rights only (the kernel
/// refuses directory rights on a file rule).
fn rights(access: Access) -> BitFlags<AccessFs> {
    let read_dir = AccessFs::ReadFile | AccessFs::ReadDir;
    match access {
        Access::ReadDir => read_dir,
        Access::ReadWriteDir => {
            read_dir
                | AccessFs::WriteFile
                | AccessFs::RemoveDir
                | AccessFs::RemoveFile
                | AccessFs::MakeDir
                | AccessFs::MakeReg
                | AccessFs::MakeSym
                | AccessFs::Refer
                | AccessFs::Truncate
        }
        Access::ReadFile => AccessFs::ReadFile.into(),
        // IoctlDev: /dev/kvm is opened after this, and KVM is all ioctls.
        Access::ReadWriteFile => {
            AccessFs::ReadFile | AccessFs::WriteFile | AccessFs::Truncate | AccessFs::IoctlDev
        }
    }
}

fn err(what: &str) -> impl FnOnce(landlock::RulesetError) -> SandboxError + '_ {
    move |source| SandboxError::Landlock {
        what: what.to_string(),
        source,
    }
}

pub(super) fn restrict(policy: &Policy) -> Result<(), SandboxError> {
    let mut ruleset = Ruleset::default()
        .set_compatibility(CompatLevel::BestEffort)
        .handle_access(AccessFs::from_all(TESTED_ABI))
        .map_err(err("file rights"))?
        .scope(Scope::from_all(TESTED_ABI))
        .map_err(err("scopes"))?;
    if policy.net.is_none() {
        // Handled with no rule: no TCP bind or connect at all (ABI 4).
        ruleset = ruleset
            .handle_access(AccessNet::from_all(TESTED_ABI))
            .map_err(err("TCP rights"))?;
    }
    let mut created = ruleset.create().map_err(err("creating the ruleset"))?;
    for g in &policy.grants {
        created = created
            .add_rule(PathBeneath::new(&g.fd, rights(g.access)))
            .map_err(err(&g.what))?;
    }
    if policy.net.is_some() {
        for path in RESOLVER_FILES {
            // Absent files stay absent (and unreadable).
            let Ok(g) = super::Grant::open(std::path::Path::new(path), Access::ReadFile, false)
            else {
                continue;
            };
            created = created
                .add_rule(PathBeneath::new(&g.fd, rights(g.access)))
                .map_err(err(path))?;
        }
    }
    let status = created
        .restrict_self()
        .map_err(err("restricting this process"))?;
    if status.ruleset == RulesetStatus::NotEnforced {
        return Err(SandboxError::LandlockNotEnforced);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_grant_executes_or_makes_special_files() {
        let forbidden = AccessFs::Execute
            | AccessFs::MakeChar
            | AccessFs::MakeBlock
            | AccessFs::MakeFifo
            | AccessFs::MakeSock;
        for a in [
            Access::ReadDir,
            Access::ReadWriteDir,
            Access::ReadFile,
            Access::ReadWriteFile,
        ] {
            assert!((rights(a) & forbidden).is_empty(), "{a:?}");
        }
        assert!(!rights(Access::ReadDir).contains(AccessFs::WriteFile));
        assert!((rights(Access::ReadFile) & !AccessFs::from_file(TESTED_ABI)).is_empty());
        assert!((rights(Access::ReadWriteFile) & !AccessFs::from_file(TESTED_ABI)).is_empty());
    }
}

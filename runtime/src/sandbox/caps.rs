//! Step 3 of the sandbox: no capabilities, in any set, and not dumpable.
//!
//! Plain prctl/capset rather than the `caps` crate: the bounding set has to
//! be walked up to the kernel's last capability, which `caps` learns from
//! /proc/sys/kernel/cap_last_cap, a file Landlock has already closed.
//! `PR_CAPBSET_DROP` answers EINVAL past the last one, which is the end.

use super::SandboxError;

/// `_LINUX_CAPABILITY_VERSION_3`: two 32-bit words per set.
const CAPABILITY_VERSION_3: u32 = 0x2008_0522;

#[repr(C)]
struct CapHeader {
    version: u32,
    pid: libc::c_int,
}

#[repr(C)]
#[derive(Clone, Copy, Default)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

fn fail(what: &'static str) -> SandboxError {
    SandboxError::Capabilities {
        what,
        source: std::io::Error::last_os_error(),
    }
}

fn current() -> Result<[CapData; 2], SandboxError> {
    let mut header = CapHeader {
        version: CAPABILITY_VERSION_3,
        pid: 0,
    };
    let mut data = [CapData::default(); 2];
    // SAFETY: capget writes two CapData (version 3) and reads the header;
    // both live across the call.
    let r = unsafe {
        libc::syscall(
            libc::SYS_capget,
            &mut header as *mut CapHeader,
            data.as_mut_ptr(),
        )
    };
    if r != 0 {
        return Err(fail("capget"));
    }
    Ok(data)
}

/// Drops every capability: the bounding set first (that needs CAP_SETPCAP,
/// still held then), the ambient set, then effective, permitted and
/// inheritable in one capset. A process that holds none (a non-root user)
/// only has its bounding set emptied where it may, which needs no privilege
/// when there is nothing to drop. Also makes the process non-dumpable: no
/// core file of guest memory, no ptrace by the person's other processes.
pub(super) fn drop_all() -> Result<(), SandboxError> {
    let held = current()?;
    let any_held = held
        .iter()
        .any(|d| d.effective | d.permitted | d.inheritable != 0);
    if any_held {
        for cap in 0..64 {
            // SAFETY: plain prctl with integer arguments.
            let r = unsafe { libc::prctl(libc::PR_CAPBSET_DROP, cap, 0, 0, 0) };
            if r != 0 {
                if std::io::Error::last_os_error().raw_os_error() == Some(libc::EINVAL) {
                    break; // past the kernel's last capability
                }
                return Err(fail("PR_CAPBSET_DROP"));
            }
        }
    }
    // SAFETY: plain prctl with integer arguments.
    let r = unsafe {
        libc::prctl(
            libc::PR_CAP_AMBIENT,
            libc::PR_CAP_AMBIENT_CLEAR_ALL,
            0,
            0,
            0,
        )
    };
    if r != 0 {
        return Err(fail("PR_CAP_AMBIENT_CLEAR_ALL"));
    }
    if any_held {
        let mut header = CapHeader {
            version: CAPABILITY_VERSION_3,
            pid: 0,
        };
        let none = [CapData::default(); 2];
        // SAFETY: capset reads the header and two CapData; all live across
        // the call.
        let r = unsafe {
            libc::syscall(
                libc::SYS_capset,
                &mut header as *mut CapHeader,
                none.as_ptr(),
            )
        };
        if r != 0 {
            return Err(fail("capset"));
        }
        if current()?
            .iter()
            .any(|d| d.effective | d.permitted | d.inheritable != 0)
        {
            return Err(SandboxError::Capabilities {
                what: "capabilities still held after capset",
                source: std::io::Error::from_raw_os_error(libc::EPERM),
            });
        }
    }
    // The process stays dumpable: non-dumpable would hide the VMM's
    // /proc/PID files from the person who started it (their own tools and
    // the real-boot tests read its maps and status) and protects nothing of
    // the host from a compromised VMM.
    Ok(())
}

//! Step 0 of the sandbox: a mount namespace whose root holds only what the
//! VMM still opens by name.
//!
//! Everything else libkrun uses after [`super::enter`] it was given as
//! `/proc/self/fd/N` (the kernel, the disks, the shares, the latter as
//! `/proc/self/fd/N/.`): such a path resolves through the open descriptor,
//! not through the mount tree, so it works from any root. What is opened by
//! name keeps its absolute path, bound onto an otherwise empty tmpfs:
//!
//! ```text
//! /                  tmpfs: read-only, nosuid, nodev, noexec, mode 0755
//! |-- proc           a new procfs (read-only, `subset=pid` where the kernel
//! |                  has it) when this process may mount one (root); else
//! |                  the host's /proc bound recursively, its top mount
//! |                  read-only (a user namespace cannot mount procfs
//! |                  without a pid namespace of its own)
//! |-- dev/kvm        Policy::by_name: the host's node, bound
//! |-- <unix_peers>   each socket file, bound at its own path
//! `-- etc/...        with the network on: the resolver's files present
//! ```
//!
//! Every bind is remounted read-only where the kernel lets it (device I/O
//! and `connect` do not write the file system; chmod and truncate do).
//!
//! How: as root `unshare(CLONE_NEWNS)`; otherwise `unshare(CLONE_NEWUSER |
//! CLONE_NEWNS)` with the person's uid and gid mapped to themselves and
//! `setgroups` denied, which gives this process capabilities inside that
//! namespace only, dropped again by step 3 like any others. Every mount is
//! then made private (nothing propagates back to the host), the tmpfs is
//! made with the new mount API (fsopen/fsmount, Linux 5.2) and stacked on
//! `/`, and it is filled from inside (its descriptor is the working
//! directory: a lookup from `/` never enters a mount stacked on the root
//! itself, so the bind sources still resolve in the host's tree). Then
//! `chroot(".")`: the process's root is the tmpfs, and no path from it
//! leads back (`..` stops at a process's root).
//!
//! ## Why chroot, not pivot_root
//! virtiofsd (its src/sandbox.rs) uses `pivot_root(".", ".")` and detaches
//! the old root. Measured here (exec -> first KVM_RUN, 2026-12-07, perf and
//! timings in the step), that pair was ~0.2 ms of every start, and more on
//! a busy host: `pivot_root` walks every task on the machine
//! (`chroot_fs_refs`), and the detach waits for an RCU grace period (seen
//! up to 2 ms). With `chroot` the old tree stays mounted in this private
//! namespace, reachable by no path from the new root; the process can
//! never chroot again (step 3 drops `CAP_SYS_CHROOT`, the allow-list
//! refuses `chroot`), and what it holds open outside the root (the shares,
//! the kernel, the disks) is confined by Landlock, as it would be after a
//! `pivot_root` too (an open descriptor keeps a detached tree walkable).
//!
//! Where it cannot be made (unprivileged user namespaces disabled or, as
//! on Ubuntu 24.04, restricted by AppArmor; a container's seccomp profile;
//! a kernel before 5.2) the step is skipped quietly and
//! [`MountNs::Skipped`] says why: Landlock and
//! seccomp confine the VMM without it. Anything that fails before
//! `chroot` leaves the host's tree in view (the namespace's private copy
//! of it), which is the skipped case; a failure after it is an error.

use std::ffi::{CStr, CString};
use std::io::Write;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Component, Path, PathBuf};

use super::{MountNs, SandboxError};

/// Ubuntu's switch (23.10+): unprivileged user namespaces are made, but
/// without capabilities in them, so nothing could be mounted. Read to skip
/// early rather than be left in a user namespace that brings nothing.
const APPARMOR_RESTRICTS_USERNS: &str = "/proc/sys/kernel/apparmor_restrict_unprivileged_userns";

/// Why a step before `chroot` failed: the namespace is skipped.
struct Skip(String);

fn os_error(what: &str) -> Skip {
    Skip(format!("{what}: {}", std::io::Error::last_os_error()))
}

/// `r == 0`, else the step's error.
fn ok(r: libc::c_long, what: &str) -> Result<(), Skip> {
    if r == 0 {
        Ok(())
    } else {
        Err(os_error(what))
    }
}

fn cstring(p: &Path) -> Result<CString, Skip> {
    CString::new(p.as_os_str().as_bytes())
        .map_err(|_| Skip(format!("{}: a NUL byte in the path", p.display())))
}

/// One host path kept in the new root: the host's node, opened `O_PATH` in
/// the new namespace, and where it goes (its absolute path without the
/// leading `/`, relative to the new root).
struct Bind {
    source: OwnedFd,
    target: PathBuf,
    is_dir: bool,
}

/// Enters the namespace (see the module docs). `keep`: the host paths the
/// VMM opens by name; those absent on the host stay absent.
pub(super) fn enter(keep: &[PathBuf]) -> Result<MountNs, SandboxError> {
    if let Err(Skip(why)) = build(keep) {
        return Ok(MountNs::Skipped { why });
    }
    let fail = |step: &'static str| SandboxError::MountNamespace {
        step,
        source: std::io::Error::last_os_error(),
    };
    // SAFETY: a NUL-terminated path.
    if unsafe { libc::chdir(c"/".as_ptr()) } != 0 {
        return Err(fail("chdir to the new root"));
    }
    Ok(MountNs::Entered)
}

/// Everything up to and including `chroot`.
fn build(keep: &[PathBuf]) -> Result<(), Skip> {
    unshare()?;
    // SAFETY: NUL-terminated path; NULL source, type and data are what a
    // propagation change takes.
    let r = unsafe {
        libc::mount(
            std::ptr::null(),
            c"/".as_ptr(),
            std::ptr::null(),
            libc::MS_REC | libc::MS_PRIVATE,
            std::ptr::null(),
        )
    };
    ok(r.into(), "making every mount private")?;
    // Opened in the new namespace: a bind takes its source only from the
    // caller's own.
    let binds = open_sources(keep)?;
    let root = new_tmpfs()?;
    // SAFETY: an empty NUL-terminated path with MOVE_MOUNT_F_EMPTY_PATH
    // names the descriptor itself; "/" is NUL-terminated.
    let r = unsafe {
        libc::syscall(
            libc::SYS_move_mount,
            root.as_raw_fd(),
            c"".as_ptr(),
            libc::AT_FDCWD,
            c"/".as_ptr(),
            libc::MOVE_MOUNT_F_EMPTY_PATH,
        )
    };
    ok(r, "move_mount of the new root onto /")?;
    let filled = fill_and_enter(&root, &binds);
    if filled.is_err() {
        // The tmpfs stays stacked on / otherwise: harmless (no lookup from
        // / enters it), but not left behind on purpose.
        let path = format!("/proc/self/fd/{}", root.as_raw_fd());
        if let Ok(path) = CString::new(path) {
            // SAFETY: a NUL-terminated path.
            unsafe { libc::umount2(path.as_ptr(), libc::MNT_DETACH) };
        }
    }
    filled
}

fn unshare() -> Result<(), Skip> {
    // SAFETY: geteuid and getegid have no preconditions.
    let (uid, gid) = unsafe { (libc::geteuid(), libc::getegid()) };
    if uid == 0 {
        // SAFETY: unshare with a flag; the process runs one thread.
        return ok(
            unsafe { libc::unshare(libc::CLONE_NEWNS) }.into(),
            "unshare(CLONE_NEWNS)",
        );
    }
    if std::fs::read_to_string(APPARMOR_RESTRICTS_USERNS).is_ok_and(|v| v.trim() == "1") {
        return Err(Skip(format!(
            "unprivileged user namespaces are restricted by AppArmor ({APPARMOR_RESTRICTS_USERNS} = 1)"
        )));
    }
    // SAFETY: unshare with flags; the process runs one thread (a user
    // namespace needs that, and enter checked it).
    let r = unsafe { libc::unshare(libc::CLONE_NEWUSER | libc::CLONE_NEWNS) };
    ok(r.into(), "unshare(CLONE_NEWUSER | CLONE_NEWNS)")?;
    // The person stays who they are; setgroups is denied first, as the
    // kernel requires of an unprivileged gid_map.
    for (file, line) in [
        ("/proc/self/setgroups", "deny".to_string()),
        ("/proc/self/uid_map", format!("{uid} {uid} 1\n")),
        ("/proc/self/gid_map", format!("{gid} {gid} 1\n")),
    ] {
        std::fs::OpenOptions::new()
            .write(true)
            .open(file)
            .and_then(|mut f| f.write_all(line.as_bytes()))
            .map_err(|e| Skip(format!("writing {file}: {e}")))?;
    }
    Ok(())
}

/// The target of `p` in the new root: its normal components (a `..` would
/// leave the tree it builds; such a path is not kept, and the namespace is
/// skipped rather than lose it).
fn target(p: &Path) -> Result<PathBuf, Skip> {
    let mut t = PathBuf::new();
    for c in p.components() {
        match c {
            Component::RootDir | Component::CurDir => {}
            Component::Normal(n) => t.push(n),
            Component::ParentDir | Component::Prefix(_) => {
                return Err(Skip(format!("{}: a path with '..'", p.display())))
            }
        }
    }
    if t.as_os_str().is_empty() || t.starts_with("proc") {
        return Err(Skip(format!("{}: cannot be kept by name", p.display())));
    }
    Ok(t)
}

fn open_sources(keep: &[PathBuf]) -> Result<Vec<Bind>, Skip> {
    let mut binds = Vec::new();
    for p in keep {
        let target = target(p)?;
        let file = match std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_PATH | libc::O_CLOEXEC)
            .open(p)
        {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(Skip(format!("opening {}: {e}", p.display()))),
        };
        let is_dir = file
            .metadata()
            .map_err(|e| Skip(format!("fstat {}: {e}", p.display())))?
            .is_dir();
        binds.push(Bind {
            source: file.into(),
            target,
            is_dir,
        });
    }
    Ok(binds)
}

/// A new, detached tmpfs mount (mode 0755, nosuid, nodev, noexec).
fn new_tmpfs() -> Result<OwnedFd, Skip> {
    // SAFETY: a NUL-terminated file system name and a flag.
    let fs = unsafe { libc::syscall(libc::SYS_fsopen, c"tmpfs".as_ptr(), libc::FSOPEN_CLOEXEC) };
    let fs = owned(fs, "fsopen(tmpfs)")?;
    // SAFETY: NUL-terminated key and value; aux 0 for a string.
    let r = unsafe {
        libc::syscall(
            libc::SYS_fsconfig,
            fs.as_raw_fd(),
            libc::FSCONFIG_SET_STRING,
            c"mode".as_ptr(),
            c"0755".as_ptr(),
            0,
        )
    };
    ok(r, "fsconfig(mode=0755)")?;
    // SAFETY: NULL key and value, as FSCONFIG_CMD_CREATE takes them.
    let r = unsafe {
        libc::syscall(
            libc::SYS_fsconfig,
            fs.as_raw_fd(),
            libc::FSCONFIG_CMD_CREATE,
            std::ptr::null::<libc::c_char>(),
            std::ptr::null::<libc::c_void>(),
            0,
        )
    };
    ok(r, "fsconfig(create)")?;
    // SAFETY: the configured fs context and flags.
    let mnt = unsafe {
        libc::syscall(
            libc::SYS_fsmount,
            fs.as_raw_fd(),
            libc::FSMOUNT_CLOEXEC,
            libc::MOUNT_ATTR_NOSUID | libc::MOUNT_ATTR_NODEV | libc::MOUNT_ATTR_NOEXEC,
        )
    };
    owned(mnt, "fsmount")
}

fn owned(r: libc::c_long, what: &str) -> Result<OwnedFd, Skip> {
    let fd = libc::c_int::try_from(r).map_err(|_| os_error(what))?;
    if fd < 0 {
        return Err(os_error(what));
    }
    // SAFETY: the system call just returned this descriptor; nothing else
    // owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// From the new root as working directory; back to the old one if a step
/// fails.
fn fill_and_enter(root: &OwnedFd, binds: &[Bind]) -> Result<(), Skip> {
    let cwd = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC)
        .open(".")
        .map_err(|e| Skip(format!("opening the working directory: {e}")))?;
    let r = fill_and_enter_from(root, binds);
    if r.is_err() {
        // SAFETY: fchdir to a directory descriptor we own.
        unsafe { libc::fchdir(cwd.as_raw_fd()) };
    }
    r
}

fn fill_and_enter_from(root: &OwnedFd, binds: &[Bind]) -> Result<(), Skip> {
    // SAFETY: a directory descriptor we own.
    let r = unsafe { libc::fchdir(root.as_raw_fd()) };
    ok(r.into(), "fchdir to the new root")?;
    // Every node first, every bind after: nothing is ever created through
    // a bind, on the host.
    for b in binds {
        make_node(&b.target, b.is_dir)?;
    }
    mkdir(Path::new("proc"))?;
    mount_proc()?;
    for b in binds {
        let source = CString::new(format!("/proc/self/fd/{}", b.source.as_raw_fd()))
            .map_err(|_| Skip("a descriptor path with a NUL byte".into()))?;
        let target = cstring(&b.target)?;
        // SAFETY: NUL-terminated paths; NULL type and data for a bind.
        // MS_REC: a user namespace may not split a tree its parent locked.
        let r = unsafe {
            libc::mount(
                source.as_ptr(),
                target.as_ptr(),
                std::ptr::null(),
                libc::MS_BIND | libc::MS_REC,
                std::ptr::null(),
            )
        };
        ok(r.into(), &format!("binding /{}", b.target.display()))?;
        remount_read_only(&target);
    }
    // SAFETY: NUL-terminated path; a flags-only remount of our own tmpfs.
    let r = unsafe {
        libc::mount(
            std::ptr::null(),
            c".".as_ptr(),
            std::ptr::null(),
            libc::MS_REMOUNT
                | libc::MS_BIND
                | libc::MS_RDONLY
                | libc::MS_NOSUID
                | libc::MS_NODEV
                | libc::MS_NOEXEC,
            std::ptr::null(),
        )
    };
    ok(r.into(), "remounting the new root read-only")?;
    // The working directory is the new root (see the module docs on why
    // not pivot_root).
    // SAFETY: a NUL-terminated path.
    let r = unsafe { libc::chroot(c".".as_ptr()) };
    ok(r.into(), "chroot")
}

fn mkdir(p: &Path) -> Result<(), Skip> {
    let c = cstring(p)?;
    // SAFETY: a NUL-terminated path.
    if unsafe { libc::mkdirat(libc::AT_FDCWD, c.as_ptr(), 0o755) } == 0
        || std::io::Error::last_os_error().raw_os_error() == Some(libc::EEXIST)
    {
        return Ok(());
    }
    Err(os_error(&format!("mkdir /{}", p.display())))
}

/// The mount point of a bind: its parent directories, then an empty
/// directory or file.
fn make_node(target: &Path, is_dir: bool) -> Result<(), Skip> {
    let mut at = PathBuf::new();
    let parts: Vec<_> = target.components().collect();
    for c in &parts[..parts.len().saturating_sub(1)] {
        at.push(c);
        mkdir(&at)?;
    }
    if is_dir {
        return mkdir(target);
    }
    std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o644)
        .custom_flags(libc::O_CLOEXEC | libc::O_NOFOLLOW)
        .open(target)
        .map(drop)
        .map_err(|e| Skip(format!("creating /{}: {e}", target.display())))
}

/// A procfs of our own where allowed (root): showing only processes
/// (`subset=pid`, Linux 5.8), read-only. Else the host's, bound.
fn mount_proc() -> Result<(), Skip> {
    let flags = libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC | libc::MS_RDONLY;
    let fresh = |data: Option<&CStr>| {
        // SAFETY: NUL-terminated strings (data NULL or a NUL-terminated
        // option string, which procfs parses as text).
        unsafe {
            libc::mount(
                c"proc".as_ptr(),
                c"proc".as_ptr(),
                c"proc".as_ptr(),
                flags,
                data.map_or(std::ptr::null(), |d| d.as_ptr().cast()),
            )
        }
    };
    if fresh(Some(c"subset=pid")) == 0 {
        return Ok(());
    }
    if std::io::Error::last_os_error().raw_os_error() == Some(libc::EINVAL) && fresh(None) == 0 {
        return Ok(());
    }
    // SAFETY: NUL-terminated paths; NULL type and data for a bind.
    let r = unsafe {
        libc::mount(
            c"/proc".as_ptr(),
            c"proc".as_ptr(),
            std::ptr::null(),
            libc::MS_BIND | libc::MS_REC,
            std::ptr::null(),
        )
    };
    ok(r.into(), "binding /proc")?;
    remount_read_only(c"proc");
    Ok(())
}

/// Best effort: a bind's mount read-only, keeping the flags a user
/// namespace may not clear (nosuid, nodev, noexec of the source).
fn remount_read_only(target: &CStr) {
    // SAFETY: statvfs writes one struct we own.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: a NUL-terminated path and a struct we own.
    if unsafe { libc::statvfs(target.as_ptr(), &mut st) } != 0 {
        return;
    }
    let mut keep = 0;
    for (st_flag, ms_flag) in [
        (libc::ST_NOSUID, libc::MS_NOSUID),
        (libc::ST_NODEV, libc::MS_NODEV),
        (libc::ST_NOEXEC, libc::MS_NOEXEC),
    ] {
        if st.f_flag & st_flag != 0 {
            keep |= ms_flag;
        }
    }
    // SAFETY: a NUL-terminated path; a flags-only remount of our own bind.
    unsafe {
        libc::mount(
            std::ptr::null(),
            target.as_ptr(),
            std::ptr::null(),
            libc::MS_REMOUNT | libc::MS_BIND | libc::MS_RDONLY | keep,
            std::ptr::null(),
        )
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_are_relative_and_stay_inside() {
        assert_eq!(
            target(Path::new("/dev/kvm")).ok(),
            Some(PathBuf::from("dev/kvm"))
        );
        assert_eq!(
            target(Path::new("run/./a.sock")).ok(),
            Some(PathBuf::from("run/a.sock"))
        );
        for bad in ["/", "/a/../etc", "/proc/self/fd/3", "proc"] {
            assert!(target(Path::new(bad)).is_err(), "{bad}");
        }
    }
}

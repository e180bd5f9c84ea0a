//! The VMM's sandbox: what the process that runs libkrun may still do once
//! the guest runs.
//!
//! A `.smolmachine` brings its own guest kernel, so the guest is attacker
//! code that can drive libkrun's devices with any bytes. libkrun's security
//! model leaves confining the VMM to the program that embeds it. [`enter`]
//! does that in the VMM child (crate::control::split) right before
//! `krun_start_enter`, while the process still runs one thread:
//!
//! 0. **A mount namespace** (mount_ns.rs), where one can be made: the
//!    VMM's root becomes an empty read-only tmpfs holding, at their own
//!    paths, only what it still opens by name ([`Policy::by_name`]:
//!    `/dev/kvm`; the `unix_peers`; the resolver's `/etc` files with the
//!    network on) and `/proc` (through which it reopens the descriptors it
//!    was given: the kernel, the disks, the shares). Root unshares the
//!    mount namespace alone; anyone else a user namespace with it, mapping
//!    only their own uid and gid. Where that is not allowed (Ubuntu 24.04's
//!    AppArmor restriction, containers) the step is skipped quietly and
//!    [`Report::mount_ns`] says so: the layers below hold on their own.
//! 1. **Landlock** (landlock.rs): of the host's files only the grants (the
//!    shares, disk images, the kernel, `/dev/kvm`, and with the network on
//!    the resolver's few `/etc` files); no execute anywhere, no device,
//!    fifo or socket nodes made in shares; abstract Unix sockets and signals
//!    scoped to the sandbox (ABI 6); TCP bind/connect refused when the
//!    network is off (ABI 4).
//! 2. `PR_SET_NO_NEW_PRIVS`.
//! 3. Every capability dropped, bounding set included (caps.rs), and the
//!    process left dumpable (its owner may read its /proc files). libkrun's virtio-fs decides at device
//!    creation (inside `krun_start_enter`, so after this) whether it switches
//!    uids, by CAP_SETUID/CAP_SETGID/CAP_FOWNER: started as root it now
//!    behaves as for a non-root user, and files the guest creates belong to
//!    the person. In step 0's user namespace the process held every
//!    capability (inside it only); they go the same way.
//! 4. The socket supervisor (crate::net::supervisor), always: `connect`,
//!    `bind`, addressed `sendto`, `sendmsg`, `sendmmsg` go to a supervisor
//!    thread. Unix destinations pass only when they are exactly one of
//!    [`Policy::unix_peers`]; IP destinations go to the egress policy when
//!    the network is on (with the DNS resolver started first) and are
//!    refused when it is off.
//! 5. The system call allow-list (seccomp.rs), on every thread (TSYNC).
//!
//! Everything fails closed: an error from any step is a [`SandboxError`] and
//! the caller must not start the VM.
//!
//! ## How the two seccomp filters combine
//! The kernel runs every installed filter and takes the most restrictive
//! answer: KILL > TRAP > ERRNO > USER_NOTIF > TRACE > LOG > ALLOW; between
//! two ERRNO answers the filter installed last wins. So a call the allow-list
//! refuses (EPERM) never reaches the supervisor, a call the supervisor filter
//! answers with ERRNO (io_uring, clone3, a foreign architecture: ENOSYS)
//! gets that errno even when the allow-list lists it, and an allowed
//! `connect` is still decided by the supervisor.
//!
//! ## Platform seam
//! Linux only (the module is compiled for Linux with the `vmm` feature). A
//! macOS backend would offer the same three functions over its own
//! mechanism (the App Sandbox or `sandbox_init`); nothing outside this
//! module depends on how confinement is done.

use std::os::fd::OwnedFd;
use std::path::PathBuf;
use std::sync::Arc;

use thiserror::Error;

mod caps;
mod landlock;
mod mount_ns;
pub mod seccomp;

/// What a grant lets the VMM do with one host path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// List and read what is below the directory.
    ReadDir,
    /// Also create, write, rename and remove regular files, directories and
    /// symlinks below it (never device nodes, fifos or sockets; never
    /// execute).
    ReadWriteDir,
    ReadFile,
    /// Read and write (and `ioctl`, for `/dev/kvm`) the one file.
    ReadWriteFile,
}

impl Access {
    fn is_dir(self) -> bool {
        matches!(self, Access::ReadDir | Access::ReadWriteDir)
    }
}

/// One host path the VMM may use after [`enter`].
#[derive(Debug)]
pub struct Grant {
    /// Opened `O_PATH` (directories `O_PATH | O_DIRECTORY | O_NOFOLLOW`): the
    /// rule is tied to what was opened, not to a path that can be swapped.
    pub fd: OwnedFd,
    pub access: Access,
    /// For messages: what this is ("volume /home/me/src", "/dev/kvm").
    pub what: String,
    /// A directory the person shared (a volume, the current directory), as
    /// opposed to what smolvm serves of its own (the boot directory, disk
    /// images, the kernel, `/dev/kvm`). Only shares make Landlock a hard
    /// requirement (see [`check`]).
    pub share: bool,
}

impl Grant {
    /// Opens `path` the way [`Grant::fd`] wants it for `access`.
    pub fn open(
        path: &std::path::Path,
        access: Access,
        share: bool,
    ) -> Result<Grant, SandboxError> {
        use std::os::unix::fs::OpenOptionsExt;
        let mut flags = libc::O_PATH | libc::O_CLOEXEC;
        if access.is_dir() {
            flags |= libc::O_DIRECTORY | libc::O_NOFOLLOW;
        }
        let file = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(flags)
            .open(path)
            .map_err(|source| SandboxError::Grant {
                what: path.display().to_string(),
                source,
            })?;
        Ok(Grant {
            fd: file.into(),
            access,
            what: path.display().to_string(),
            share,
        })
    }
}

impl Grant {
    /// A grant on an open file: the disk images and the kernel the stub
    /// holds (unnamed `O_TMPFILE` files and deleted ones included), which
    /// libkrun reopens through `/proc/self/fd/N`. Landlock checks that
    /// reopening against the file itself, so the rule is on the file.
    pub fn of_file(
        file: &std::fs::File,
        access: Access,
        what: impl Into<String>,
    ) -> Result<Grant, SandboxError> {
        use std::os::fd::AsRawFd;
        let mut g = Grant::open(
            std::path::Path::new(&format!("/proc/self/fd/{}", file.as_raw_fd())),
            access,
            false,
        )?;
        g.what = what.into();
        Ok(g)
    }
}

/// The network, when the machine has one (TSI).
pub struct NetGrant {
    /// The guest's egress policy; the supervisor and the resolver decide by it.
    pub egress: Arc<crate::net::Egress>,
}

/// Everything [`enter`] needs to know.
pub struct Policy {
    /// Shares (directories), disk image files, the kernel file, `/dev/kvm`...
    pub grants: Vec<Grant>,
    /// The host paths the VMM opens by name after [`enter`] (`/dev/kvm`):
    /// its mount namespace keeps them at the same path, beside `/proc`, the
    /// `unix_peers` and, with the network on, the resolver's files; nothing
    /// else of the host's tree is there. What may be done with them is
    /// still the grants' (Landlock). Files it was handed as open
    /// descriptors (`/proc/self/fd/N`) need no entry.
    pub by_name: Vec<PathBuf>,
    /// `Some`: TSI networking on: IP sockets allowed, each destination
    /// decided by the egress policy. `None`: no IP socket at all.
    pub net: Option<NetGrant>,
    /// The only Unix socket paths the VMM may `connect`/`sendto` (the
    /// control channel, the SSH agent), compared byte for byte with the
    /// address the call names.
    pub unix_peers: Vec<PathBuf>,
    /// The person's `--smolvm-allow-no-landlock`: start even when shares
    /// cannot be confined.
    pub allow_without_landlock: bool,
}

/// What this kernel offers of Landlock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Landlock {
    Full { abi: u32 },
    Unavailable { why: String },
}

/// The person's opt-out flag, named in the refusal.
pub const ALLOW_NO_LANDLOCK_FLAG: &str = "--smolvm-allow-no-landlock";

#[derive(Debug, Error)]
pub enum SandboxError {
    #[error("refusing to share host directories without Landlock ({why}): the VMM could read and write every file you can; run on Linux 5.13+ with Landlock enabled (lsm=landlock), or accept that with {ALLOW_NO_LANDLOCK_FLAG}")]
    NoLandlock { why: String },
    #[error("opening {what} for the sandbox's rules")]
    Grant {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("sandbox: the VMM process runs {threads} threads; it must be entered while single-threaded (call sandbox::enter before anything starts a thread)")]
    NotSingleThreaded { threads: usize },
    #[error("sandbox: building the Landlock rules ({what})")]
    Landlock {
        what: String,
        #[source]
        source: ::landlock::RulesetError,
    },
    #[error("sandbox: this kernel accepted none of the Landlock file rules; refusing to share host directories unconfined (accept that with {ALLOW_NO_LANDLOCK_FLAG})")]
    LandlockNotEnforced,
    #[error("sandbox: the VMM's mount namespace ({step}); its new root is half made")]
    MountNamespace {
        step: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("sandbox: setting no_new_privs")]
    NoNewPrivs(#[source] std::io::Error),
    #[error("sandbox: dropping capabilities ({what})")]
    Capabilities {
        what: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("sandbox: starting the DNS resolver; refusing to start with an unenforced network")]
    Resolver(#[source] std::io::Error),
    #[error("sandbox: installing the socket supervisor (seccomp user notification with TSYNC_ESRCH, Linux 5.7+)")]
    Supervisor(#[source] std::io::Error),
    #[error("sandbox: building the system call filter: {0}")]
    SeccompBuild(String),
    #[error("sandbox: installing the system call filter (seccomp, TSYNC)")]
    SeccompInstall(#[source] std::io::Error),
    #[error("sandbox: thread {tid} could not take the system call filter (TSYNC); nothing was installed")]
    SeccompThread { tid: i64 },
}

/// What this kernel offers of Landlock. Cheap (one system call that creates
/// nothing) and without side effects.
pub fn probe() -> Landlock {
    landlock::probe()
}

/// Whether a machine may start, decided before anything has a side effect
/// (cache writes, the fork): with shares, Landlock is required unless the
/// person opted out. A machine without shares starts without it (nothing of
/// the host is served); seccomp applies either way.
pub fn check(policy_has_shares: bool, allow_without_landlock: bool) -> Result<(), SandboxError> {
    check_with(&probe(), policy_has_shares, allow_without_landlock)
}

/// [`check`] for a given probe result (the decision alone; tests use it to
/// see the refusal on a host that has Landlock).
pub fn check_with(
    landlock: &Landlock,
    policy_has_shares: bool,
    allow_without_landlock: bool,
) -> Result<(), SandboxError> {
    match landlock {
        Landlock::Full { .. } => Ok(()),
        Landlock::Unavailable { why } if policy_has_shares && !allow_without_landlock => {
            Err(SandboxError::NoLandlock { why: why.clone() })
        }
        Landlock::Unavailable { .. } => Ok(()),
    }
}

/// Whether the VMM got a mount namespace of its own (step 0).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MountNs {
    /// Its root holds only /proc and what [`Policy`] names.
    Entered,
    /// It sees the host's tree, confined by Landlock alone; `why` is the
    /// step that was refused (e.g. "unshare(CLONE_NEWUSER | CLONE_NEWNS):
    /// Operation not permitted").
    Skipped { why: String },
}

/// Which of the optional layers [`enter`] applied (the rest always apply,
/// or `enter` fails).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    pub mount_ns: MountNs,
    /// `None`: no Landlock on this kernel (allowed only without shares, or
    /// with the person's opt-out).
    pub landlock_abi: Option<u32>,
}

/// Threads of this process, from /proc/self/status (read before Landlock).
fn thread_count() -> Option<usize> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("Threads:"))
        .and_then(|n| n.trim().parse().ok())
}

/// Confines this process (see the module docs for the steps). Call in the
/// VMM child, single-threaded, right before `krun_start_enter`; the
/// restrictions last for the life of the process. On error the caller must
/// not start the VM. Returns which optional layers applied.
pub fn enter(policy: Policy, trace: &crate::trace::Trace) -> Result<Report, SandboxError> {
    match thread_count() {
        Some(1) => {}
        Some(threads) => return Err(SandboxError::NotSingleThreaded { threads }),
        // No /proc: Landlock would still bind only this thread, so refuse
        // rather than guess.
        None => return Err(SandboxError::NotSingleThreaded { threads: 0 }),
    }
    let has_shares = policy.grants.iter().any(|g| g.share);
    // 0. The mount namespace, while this process may still mount.
    let mut by_name = policy.by_name.clone();
    by_name.extend(policy.unix_peers.iter().cloned());
    if policy.net.is_some() {
        by_name.extend(landlock::RESOLVER_FILES.iter().map(PathBuf::from));
    }
    let mount_ns = mount_ns::enter(&by_name)?;
    trace.mark("sandbox: mount namespace");
    // 1. Landlock.
    let landlock = probe();
    let landlock_abi = match &landlock {
        Landlock::Full { abi } => Some(*abi),
        Landlock::Unavailable { .. } => None,
    };
    match landlock {
        Landlock::Full { .. } => landlock::restrict(&policy)?,
        unavailable @ Landlock::Unavailable { .. } => {
            check_with(&unavailable, has_shares, policy.allow_without_landlock)?;
            if has_shares {
                if let Landlock::Unavailable { why } = unavailable {
                    eprintln!("smolvm: warning: Landlock is unavailable ({why}); the machine's shares are not confined ({ALLOW_NO_LANDLOCK_FLAG})");
                }
            }
        }
    }
    trace.mark("sandbox: Landlock");
    // 2. no_new_privs (Landlock set it already when it ran; idempotent).
    // SAFETY: plain prctl with integer arguments.
    if unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) } != 0 {
        return Err(SandboxError::NoNewPrivs(std::io::Error::last_os_error()));
    }
    // 3. Capabilities.
    caps::drop_all()?;
    trace.mark("sandbox: no_new_privs, capabilities");
    // 4. The socket supervisor (and the resolver, which it trusts).
    let net = match &policy.net {
        Some(net) => {
            let resolver =
                crate::net::dns::start(net.egress.clone()).map_err(SandboxError::Resolver)?;
            Some(crate::net::supervisor::NetRules {
                egress: net.egress.clone(),
                dns: resolver.addr,
                trusted: resolver.tids,
            })
        }
        None => None,
    };
    let with_net = net.is_some();
    crate::net::supervisor::install_rules(crate::net::supervisor::Rules {
        net,
        unix_peers: crate::net::supervisor::UnixPeers::only(&policy.unix_peers),
    })
    .map_err(SandboxError::Supervisor)?;
    trace.mark("sandbox: socket supervisor");
    // 5. The allow-list, on every thread (the resolver's and the
    // supervisor's included).
    seccomp::install(with_net)?;
    trace.mark("sandbox: system call filter");
    Ok(Report {
        mount_ns,
        landlock_abi,
    })
}

//! Step 5 of the sandbox: the system calls the VMM may make, as data.
//!
//! [`GROUPS`] is the allow-list, one group per reason; anything else fails
//! with EPERM (never SIGSYS: libkrun installs its own SIGSYS handler, and
//! never a kill, so an attack from inside sees a refusal it can report).
//! Compiled with `seccompiler` (rust-vmm's, from Firecracker) and installed
//! with TSYNC on every thread.
//!
//! ## How the list was measured
//! The release stub was run natively under strace (`SMOLVM_SKIP_KVM_CHECK=1`:
//! on these kvm-pvm machines it reaches `KVM_RUN`, then the guest dies of an
//! internal error after ~10 s, so everything up to and including the vCPU
//! loop, the device threads and their event loops is seen), for `net =
//! false`, `net = true`, a volume, a storage disk and the SSH agent;
//! `runtime/examples/bare_boot.rs --sandbox` did the same with this filter
//! installed, where each refusal shows as `= -1 EPERM`. What only a running
//! guest triggers was read from libkrun 1.19.7's device code
//! (krun-devices: virtio/fs/linux/passthrough.rs, virtio/block, virtio/vsock,
//! virtio/console; krun-vmm's vCPU and event loops): the virtio-fs
//! operations, the TSI proxy's socket calls and the disk's I/O.
//!
//! Measured 2026-12-06 (host kernel 6.18, glibc 2.36, libkrun 1.19.7, the
//! release stub of bf01a03 and the same stub with `sandbox::enter` wired in
//! before `krun_start_enter`), from the VMM's `prctl(PR_SET_NAME, "libkrun
//! VM")` on, every thread included: `net = false`, and `net = true` with a
//! volume, an overlay and a storage disk and the SSH agent, both made these
//! 31-33 calls: brk clone clone3 close dup epoll_create1 epoll_ctl
//! epoll_wait eventfd2 exit_group fcntl fstatfs futex getpid gettid ioctl
//! mmap mprotect munmap openat prctl read rseq rt_sigaction rt_sigprocmask
//! rt_sigreturn sched_getaffinity sched_yield set_robust_list sigaltstack
//! statx tgkill write. Under the sandbox none failed with EPERM or EACCES,
//! and `clone3` got its ENOSYS and was followed by `clone`. The rest of the
//! list is what the guest's requests make the devices call (read, as said
//! above), which no guest here could trigger: kvm-pvm runs none.
//!
//! Re-measure with `scripts/seccomp-measure.sh ARTIFACT [ARGS...]`: it runs
//! the artifact natively under `strace -f` and prints the calls the VMM
//! made that are not in this file, and those that failed with EPERM. On a
//! host with real KVM the guest runs, and the same command then measures
//! the device paths too (give the workload something to do in a share, on
//! a disk and on the network).
//!
//! ## What stays out, on purpose
//! `execve`/`execveat`, `ptrace`, the mount family (`mount`, `umount2`,
//! `pivot_root`, `chroot`, `move_mount`, `open_tree`, `fsopen`...), `bpf`,
//! `kexec_*`, the keyring calls, `userfaultfd`, `perf_event_open`, module
//! loading, `setns`/`unshare`, `io_uring_*` (its work would bypass every
//! filter), `personality`, `reboot`, `swapon`, `acct`, namespaces through
//! `clone`, `fork` (only `clone` of a thread), netlink and packet sockets,
//! and IP sockets when the network is off.

use std::collections::BTreeMap;

use seccompiler::{
    SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter, SeccompRule,
    TargetArch,
};

use super::SandboxError;

/// One argument test; all tests of a rule must hold.
#[derive(Clone, Copy, Debug)]
pub enum Arg {
    /// The 32-bit argument `n` equals the value.
    Eq(u8, u32),
    /// The 32-bit argument `n` differs from the value.
    Ne(u8, u32),
    /// The 64-bit argument `n`, masked with `.1`, equals `.2`.
    Masked(u8, u64, u64),
    /// The 32-bit argument `n` is this process's pid.
    OwnPid(u8),
}

/// When a listed call is allowed.
#[derive(Clone, Copy, Debug)]
pub enum When {
    Always,
    /// When one of the rules holds (each rule: all of its tests).
    Any(&'static [&'static [Arg]]),
    /// As `Any`, and with the network on also when one of the second rules
    /// holds.
    AnyOrWithNet(&'static [&'static [Arg]], &'static [&'static [Arg]]),
}

/// One allowed call. `name` is libc's constant (`SYS_openat`), which
/// scripts/seccomp-measure.sh reads out of this file.
#[derive(Debug)]
pub struct Call {
    pub nr: libc::c_long,
    pub name: &'static str,
    pub when: When,
}

/// A reason, and the calls it needs.
#[derive(Debug)]
pub struct Group {
    pub why: &'static str,
    pub calls: &'static [Call],
}

macro_rules! sys {
    ($nr:ident) => {
        sys!($nr, When::Always)
    };
    ($nr:ident, $when:expr) => {
        Call {
            nr: libc::$nr,
            name: stringify!($nr),
            when: $when,
        }
    };
}

/// Namespace flags `clone` must not carry, and `CLONE_THREAD`, which it
/// must: threads only, no new process, no namespace.
#[allow(clippy::cast_sign_loss)]
const CLONE_MASK: u64 = (libc::CLONE_NEWUSER
    | libc::CLONE_NEWNS
    | libc::CLONE_NEWPID
    | libc::CLONE_NEWNET
    | libc::CLONE_NEWUTS
    | libc::CLONE_NEWIPC
    | libc::CLONE_NEWCGROUP
    | libc::CLONE_THREAD) as u64;
#[allow(clippy::cast_sign_loss, clippy::cast_possible_truncation)]
const CLONE_THREAD: u64 = libc::CLONE_THREAD as u64;

// u32 views of the constants the argument tests compare with (all small and
// non-negative, so the casts keep every value; `try_from` is not const).
#[allow(clippy::cast_sign_loss, clippy::cast_possible_truncation)]
const AF_UNIX: u32 = libc::AF_UNIX as u32;
#[allow(clippy::cast_sign_loss, clippy::cast_possible_truncation)]
const AF_INET: u32 = libc::AF_INET as u32;
#[allow(clippy::cast_sign_loss, clippy::cast_possible_truncation)]
const AF_INET6: u32 = libc::AF_INET6 as u32;
#[allow(clippy::cast_sign_loss, clippy::cast_possible_truncation)]
const TIOCSTI: u32 = libc::TIOCSTI as u32;
#[allow(clippy::cast_sign_loss, clippy::cast_possible_truncation)]
const TIOCLINUX: u32 = libc::TIOCLINUX as u32;
#[allow(clippy::cast_sign_loss, clippy::cast_possible_truncation)]
const PR_SET_NAME: u32 = libc::PR_SET_NAME as u32;
#[allow(clippy::cast_sign_loss, clippy::cast_possible_truncation)]
const PR_GET_NAME: u32 = libc::PR_GET_NAME as u32;
#[allow(clippy::cast_sign_loss, clippy::cast_possible_truncation)]
const PR_SET_KEEPCAPS: u32 = libc::PR_SET_KEEPCAPS as u32;
#[allow(clippy::cast_sign_loss, clippy::cast_possible_truncation)]
const PR_GET_KEEPCAPS: u32 = libc::PR_GET_KEEPCAPS as u32;
#[allow(clippy::cast_sign_loss, clippy::cast_possible_truncation)]
const PR_GET_DUMPABLE: u32 = libc::PR_GET_DUMPABLE as u32;
#[allow(clippy::cast_sign_loss, clippy::cast_possible_truncation)]
const PR_CAPBSET_READ: u32 = libc::PR_CAPBSET_READ as u32;
#[allow(clippy::cast_sign_loss, clippy::cast_possible_truncation)]
const PR_CAP_AMBIENT: u32 = libc::PR_CAP_AMBIENT as u32;
#[allow(clippy::cast_sign_loss, clippy::cast_possible_truncation)]
const PR_CAP_AMBIENT_IS_SET: u32 = libc::PR_CAP_AMBIENT_IS_SET as u32;
/// glibc names its anonymous mappings with it (PR_SET_VMA_ANON_NAME).
const PR_SET_VMA: u32 = 0x5356_4d41;

/// The allow-list. Each group says why; measured as the module docs say.
pub static GROUPS: &[Group] = &[
    Group {
        why: "memory: glibc's allocator, thread stacks, guest RAM (mmap of memfd/anonymous), KVM's run structures",
        calls: &[
            sys!(SYS_mmap),
            sys!(SYS_munmap),
            sys!(SYS_mprotect),
            sys!(SYS_madvise),
            sys!(SYS_mremap),
            sys!(SYS_brk),
            sys!(SYS_msync),
            sys!(SYS_mincore),
            sys!(SYS_membarrier),
        ],
    },
    Group {
        why: "threads: vCPU, device and event-loop threads (std/pthread); clone only for a thread in the same namespaces; clone3 is listed so the supervisor filter's ENOSYS applies and glibc falls back to clone, whose flags this filter can see",
        calls: &[
            sys!(
                SYS_clone,
                When::Any(&[&[Arg::Masked(0, CLONE_MASK, CLONE_THREAD)]])
            ),
            sys!(SYS_clone3),
            sys!(SYS_futex),
            sys!(SYS_set_robust_list),
            sys!(SYS_get_robust_list),
            sys!(SYS_rseq),
            sys!(SYS_set_tid_address),
            sys!(SYS_gettid),
            sys!(SYS_getpid),
            sys!(SYS_getppid),
            sys!(SYS_sched_yield),
            sys!(SYS_sched_getaffinity),
            sys!(SYS_sched_setaffinity),
            sys!(SYS_exit),
            sys!(SYS_exit_group),
            sys!(SYS_restart_syscall),
        ],
    },
    Group {
        why: "signals: libkrun kicks vCPU threads out of KVM_RUN with a real-time signal (pthread_kill), glibc's abort raises on itself; only ever this process",
        calls: &[
            sys!(SYS_rt_sigaction),
            sys!(SYS_rt_sigprocmask),
            sys!(SYS_rt_sigreturn),
            sys!(SYS_rt_sigtimedwait),
            sys!(SYS_sigaltstack),
            sys!(SYS_signalfd4),
            sys!(SYS_tgkill, When::Any(&[&[Arg::OwnPid(0)]])),
            sys!(SYS_kill, When::Any(&[&[Arg::OwnPid(0)]])),
        ],
    },
    Group {
        why: "time and randomness",
        calls: &[
            sys!(SYS_clock_gettime),
            sys!(SYS_clock_getres),
            sys!(SYS_clock_nanosleep),
            sys!(SYS_nanosleep),
            sys!(SYS_gettimeofday),
            sys!(SYS_getrandom),
            sys!(SYS_timerfd_create),
            sys!(SYS_timerfd_settime),
            sys!(SYS_timerfd_gettime),
        ],
    },
    Group {
        why: "event loops: libkrun's epoll loops, eventfds of virtio queues and irqfds, the console's polls",
        calls: &[
            sys!(SYS_epoll_create1),
            sys!(SYS_epoll_ctl),
            sys!(SYS_epoll_pwait),
            sys!(SYS_epoll_pwait2),
            sys!(SYS_eventfd2),
            sys!(SYS_ppoll),
            sys!(SYS_pselect6),
            sys!(SYS_pipe2),
        ],
    },
    Group {
        why: "descriptors and plain I/O: console, disks (imago: pread/pwrite and their vector forms, flushes, discard by fallocate), the kernel file, /proc/self/fd reopening",
        calls: &[
            sys!(SYS_read),
            sys!(SYS_write),
            sys!(SYS_readv),
            sys!(SYS_writev),
            sys!(SYS_pread64),
            sys!(SYS_pwrite64),
            sys!(SYS_preadv),
            sys!(SYS_pwritev),
            sys!(SYS_preadv2),
            sys!(SYS_pwritev2),
            sys!(SYS_lseek),
            sys!(SYS_close),
            sys!(SYS_close_range),
            sys!(SYS_dup),
            sys!(SYS_dup3),
            sys!(SYS_fcntl),
            sys!(SYS_flock),
            sys!(SYS_fsync),
            sys!(SYS_fdatasync),
            sys!(SYS_syncfs),
            sys!(SYS_fallocate),
            sys!(SYS_ftruncate),
            sys!(SYS_fadvise64),
            sys!(SYS_memfd_create),
        ],
    },
    Group {
        why: "virtio-fs passthrough: every file operation the guest may ask of a share (Landlock limits where they reach)",
        calls: &[
            sys!(SYS_openat),
            sys!(SYS_newfstatat),
            sys!(SYS_fstat),
            sys!(SYS_statx),
            sys!(SYS_fstatfs),
            sys!(SYS_statfs),
            sys!(SYS_getdents64),
            sys!(SYS_readlinkat),
            sys!(SYS_faccessat),
            sys!(SYS_faccessat2),
            sys!(SYS_fchmod),
            sys!(SYS_fchmodat),
            sys!(SYS_fchown),
            sys!(SYS_fchownat),
            sys!(SYS_utimensat),
            sys!(SYS_renameat2),
            sys!(SYS_linkat),
            sys!(SYS_symlinkat),
            sys!(SYS_mknodat),
            sys!(SYS_mkdirat),
            sys!(SYS_unlinkat),
            sys!(SYS_copy_file_range),
            sys!(SYS_fchdir),
            sys!(SYS_getcwd),
            sys!(SYS_umask),
            sys!(SYS_setxattr),
            sys!(SYS_lsetxattr),
            sys!(SYS_fsetxattr),
            sys!(SYS_getxattr),
            sys!(SYS_lgetxattr),
            sys!(SYS_fgetxattr),
            sys!(SYS_listxattr),
            sys!(SYS_llistxattr),
            sys!(SYS_flistxattr),
            sys!(SYS_removexattr),
            sys!(SYS_lremovexattr),
            sys!(SYS_fremovexattr),
            sys!(SYS_name_to_handle_at),
            // Needs CAP_DAC_READ_SEARCH, which is gone: fails with EPERM.
            sys!(SYS_open_by_handle_at),
        ],
    },
    Group {
        why: "credentials: virtio-fs reads its ids and capabilities and drops CAP_FSETID around writes; without capabilities none of these can gain anything",
        calls: &[
            sys!(SYS_getuid),
            sys!(SYS_geteuid),
            sys!(SYS_getgid),
            sys!(SYS_getegid),
            sys!(SYS_getresuid),
            sys!(SYS_getresgid),
            sys!(SYS_setresuid),
            sys!(SYS_setresgid),
            sys!(SYS_setfsuid),
            sys!(SYS_setfsgid),
            sys!(SYS_capget),
            sys!(SYS_capset),
        ],
    },
    Group {
        why: "ioctl: KVM (vm, vCPU, irqfd, ioeventfd), the terminal (TCGETS/TCSETS/TIOCGWINSZ), FIONBIO/FIOCLEX, the supervisor's seccomp notifications; never terminal input injection",
        calls: &[sys!(
            SYS_ioctl,
            When::Any(&[&[Arg::Ne(1, TIOCSTI), Arg::Ne(1, TIOCLINUX)]])
        )],
    },
    Group {
        why: "prctl: thread names, glibc's mapping names, libkrun's capability checks",
        calls: &[sys!(
            SYS_prctl,
            When::Any(&[
                &[Arg::Eq(0, PR_SET_NAME)],
                &[Arg::Eq(0, PR_GET_NAME)],
                &[Arg::Eq(0, PR_SET_VMA)],
                &[Arg::Eq(0, PR_SET_KEEPCAPS)],
                &[Arg::Eq(0, PR_GET_KEEPCAPS)],
                &[Arg::Eq(0, PR_GET_DUMPABLE)],
                &[Arg::Eq(0, PR_CAPBSET_READ)],
                &[Arg::Eq(0, PR_CAP_AMBIENT), Arg::Eq(1, PR_CAP_AMBIENT_IS_SET)],
            ])
        )],
    },
    Group {
        why: "sockets: Unix sockets (vsock ports to the control channel and the SSH agent, socketpairs); IP sockets only with the network on (TSI); every destination is decided by the socket supervisor",
        calls: &[
            sys!(
                SYS_socket,
                When::AnyOrWithNet(
                    &[&[Arg::Eq(0, AF_UNIX)]],
                    &[&[Arg::Eq(0, AF_INET)], &[Arg::Eq(0, AF_INET6)]]
                )
            ),
            sys!(SYS_socketpair, When::Any(&[&[Arg::Eq(0, AF_UNIX)]])),
            sys!(SYS_connect),
            sys!(SYS_bind),
            sys!(SYS_listen),
            sys!(SYS_accept),
            sys!(SYS_accept4),
            sys!(SYS_getsockopt),
            sys!(SYS_setsockopt),
            sys!(SYS_getsockname),
            sys!(SYS_getpeername),
            sys!(SYS_recvfrom),
            sys!(SYS_recvmsg),
            sys!(SYS_recvmmsg),
            sys!(SYS_sendto),
            sys!(SYS_sendmsg),
            sys!(SYS_sendmmsg),
            sys!(SYS_shutdown),
        ],
    },
    Group {
        why: "the socket supervisor reads and rewrites socket addresses in this process's own memory",
        calls: &[
            sys!(SYS_process_vm_readv, When::Any(&[&[Arg::OwnPid(0)]])),
            sys!(SYS_process_vm_writev, When::Any(&[&[Arg::OwnPid(0)]])),
        ],
    },
    Group {
        why: "process facts std and glibc ask for (limits of this process only)",
        calls: &[
            sys!(SYS_prlimit64, When::Any(&[&[Arg::Eq(0, 0)], &[Arg::OwnPid(0)]])),
            sys!(SYS_getrusage),
            sys!(SYS_sysinfo),
            sys!(SYS_uname),
        ],
    },
    #[cfg(target_arch = "x86_64")]
    Group {
        why: "x86_64's older forms of the calls above (and two aarch64 lacks), which glibc and Rust's std still use in places",
        calls: &[
            sys!(SYS_poll),
            sys!(SYS_epoll_wait),
            sys!(SYS_open),
            sys!(SYS_stat),
            sys!(SYS_lstat),
            sys!(SYS_access),
            sys!(SYS_readlink),
            sys!(SYS_dup2),
            sys!(SYS_pipe),
            sys!(SYS_time),
            sys!(SYS_arch_prctl),
            sys!(SYS_renameat),
            sys!(SYS_sync_file_range),
        ],
    },
];

/// The architecture the filter is built for.
fn target() -> TargetArch {
    #[cfg(target_arch = "x86_64")]
    return TargetArch::x86_64;
    #[cfg(target_arch = "aarch64")]
    return TargetArch::aarch64;
}

fn condition(arg: Arg, pid: u32) -> seccompiler::Result<SeccompCondition> {
    let (i, len, op, value) = match arg {
        Arg::Eq(i, v) => (i, SeccompCmpArgLen::Dword, SeccompCmpOp::Eq, u64::from(v)),
        Arg::Ne(i, v) => (i, SeccompCmpArgLen::Dword, SeccompCmpOp::Ne, u64::from(v)),
        Arg::Masked(i, mask, v) => (i, SeccompCmpArgLen::Qword, SeccompCmpOp::MaskedEq(mask), v),
        Arg::OwnPid(i) => (i, SeccompCmpArgLen::Dword, SeccompCmpOp::Eq, u64::from(pid)),
    };
    Ok(SeccompCondition::new(i, len, op, value)?)
}

fn rules(sets: &[&[&'static [Arg]]], pid: u32) -> seccompiler::Result<Vec<SeccompRule>> {
    sets.iter()
        .flat_map(|set| set.iter())
        .map(|tests| {
            let conds = tests
                .iter()
                .map(|&a| condition(a, pid))
                .collect::<seccompiler::Result<Vec<_>>>()?;
            Ok(SeccompRule::new(conds)?)
        })
        .collect()
}

/// The allow-list as a BPF program, for this process (`pid`) and network
/// setting.
pub fn program(net: bool, pid: u32) -> Result<seccompiler::BpfProgram, SandboxError> {
    let build = || -> seccompiler::Result<seccompiler::BpfProgram> {
        let mut map: BTreeMap<i64, Vec<SeccompRule>> = BTreeMap::new();
        for call in GROUPS.iter().flat_map(|g| g.calls) {
            let rules = match call.when {
                When::Always => Vec::new(),
                When::Any(any) => rules(&[any], pid)?,
                When::AnyOrWithNet(any, with_net) if net => rules(&[any, with_net], pid)?,
                When::AnyOrWithNet(any, _) => rules(&[any], pid)?,
            };
            map.insert(call.nr, rules);
        }
        let filter = SeccompFilter::new(
            map,
            SeccompAction::Errno(u32::try_from(libc::EPERM).expect("small")),
            SeccompAction::Allow,
            target(),
        )?;
        Ok(filter.try_into()?)
    };
    let mut prog = build().map_err(SandboxError::SeccompBuild)?;
    // seccompiler kills the process on a foreign architecture (i386's int
    // 0x80 on x86_64); a refusal is what we want everywhere.
    let eperm = libc::SECCOMP_RET_ERRNO | u32::try_from(libc::EPERM).expect("small");
    for insn in &mut prog {
        if insn.code == RET_K && insn.k == libc::SECCOMP_RET_KILL_PROCESS {
            insn.k = eperm;
        }
    }
    Ok(prog)
}

const RET_K: u16 = 0x06; // BPF_RET | BPF_K

/// Installs the allow-list on every thread of this process (TSYNC). No
/// `PR_SET_NO_NEW_PRIVS` here: the sandbox set it in step 2.
pub(super) fn install(net: bool) -> Result<(), SandboxError> {
    // SAFETY: getpid has no preconditions.
    let pid = u32::try_from(unsafe { libc::getpid() }).expect("pids are positive");
    let prog: Vec<libc::sock_filter> = program(net, pid)?
        .into_iter()
        .map(|i| libc::sock_filter {
            code: i.code,
            jt: i.jt,
            jf: i.jf,
            k: i.k,
        })
        .collect();
    let fprog = libc::sock_fprog {
        len: u16::try_from(prog.len()).map_err(|_| {
            SandboxError::SeccompInstall(std::io::Error::from_raw_os_error(libc::E2BIG))
        })?,
        filter: prog.as_ptr().cast_mut(),
    };
    // SAFETY: fprog points at `prog`, a valid program that outlives the
    // call (the kernel copies it and never writes through the pointer).
    let r = unsafe {
        libc::syscall(
            libc::SYS_seccomp,
            libc::SECCOMP_SET_MODE_FILTER,
            libc::SECCOMP_FILTER_FLAG_TSYNC,
            &fprog as *const libc::sock_fprog,
        )
    };
    match r {
        0 => Ok(()),
        // A positive answer is the id of a thread that could not be
        // synchronised (it runs another filter tree): nothing installed.
        r if r > 0 => Err(SandboxError::SeccompThread { tid: r }),
        _ => Err(SandboxError::SeccompInstall(std::io::Error::last_os_error())),
    }
}

/// Every call name in the list (`SYS_` stripped), for tools and tests.
pub fn names() -> impl Iterator<Item = &'static str> {
    GROUPS
        .iter()
        .flat_map(|g| g.calls)
        .map(|c| c.name.trim_start_matches("SYS_"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const NEVER: &[libc::c_long] = &[
        libc::SYS_execve,
        libc::SYS_execveat,
        libc::SYS_ptrace,
        libc::SYS_mount,
        libc::SYS_umount2,
        libc::SYS_pivot_root,
        libc::SYS_chroot,
        libc::SYS_move_mount,
        libc::SYS_open_tree,
        libc::SYS_fsopen,
        libc::SYS_bpf,
        libc::SYS_kexec_load,
        libc::SYS_kexec_file_load,
        libc::SYS_keyctl,
        libc::SYS_add_key,
        libc::SYS_request_key,
        libc::SYS_userfaultfd,
        libc::SYS_perf_event_open,
        libc::SYS_init_module,
        libc::SYS_finit_module,
        libc::SYS_delete_module,
        libc::SYS_setns,
        libc::SYS_unshare,
        libc::SYS_io_uring_setup,
        libc::SYS_io_uring_enter,
        libc::SYS_io_uring_register,
        libc::SYS_personality,
        libc::SYS_reboot,
        libc::SYS_swapon,
        libc::SYS_acct,
        libc::SYS_seccomp,
    ];

    #[test]
    fn the_never_list_stays_out() {
        for call in GROUPS.iter().flat_map(|g| g.calls) {
            assert!(!NEVER.contains(&call.nr), "{} is listed", call.name);
        }
    }

    #[test]
    fn no_call_is_listed_twice_and_every_group_says_why() {
        let mut seen = std::collections::HashSet::new();
        for g in GROUPS {
            assert!(!g.why.is_empty());
            for c in g.calls {
                assert!(seen.insert(c.nr), "{} twice", c.name);
            }
        }
    }

    #[test]
    fn the_program_builds_for_both_network_settings_and_never_kills() {
        for net in [false, true] {
            let p = program(net, 4242).unwrap();
            assert!(p.len() < 4096, "BPF programs are capped at 4096");
            let fatal = [
                libc::SECCOMP_RET_KILL_PROCESS,
                libc::SECCOMP_RET_KILL_THREAD,
                libc::SECCOMP_RET_TRAP,
            ];
            for (n, i) in p.iter().enumerate() {
                let action = i.k & libc::SECCOMP_RET_ACTION_FULL;
                assert!(
                    i.code != RET_K || !fatal.contains(&action),
                    "instruction {n} returns {:#x}",
                    i.k
                );
            }
        }
    }
}

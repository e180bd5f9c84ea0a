//! Step 5 of the sandbox: the system calls the VMM may make, as data.
//!
//! [`GROUPS`] is the allow-list, one group per reason; anything else fails
//! with EPERM (never SIGSYS: libkrun installs its own SIGSYS handler, and
//! never a kill, so an attack from inside sees a refusal it can report).
//! Compiled here into a binary search over the call numbers ([`program`])
//! and installed with TSYNC on every thread.
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

// The architecture and the classic BPF opcodes the supervisor's filter
// uses too, and the two more this compiler emits (linux/bpf_common.h).
use crate::net::supervisor::{AUDIT_ARCH, JEQ as JEQ_K, JGE as JGE_K, LD_ABS, RET as RET_K};
const AND_K: u16 = 0x54; // BPF_ALU | BPF_AND | BPF_K
const JA: u16 = 0x05; // BPF_JMP | BPF_JA

// Offsets in `struct seccomp_data`.
const NR: u32 = 0;
const ARCH: u32 = 4;

const ALLOW: u32 = libc::SECCOMP_RET_ALLOW;
#[allow(clippy::cast_sign_loss)]
const EPERM: u32 = libc::SECCOMP_RET_ERRNO | libc::EPERM as u32;

/// The kernel's cap on a filter's length (BPF_MAXINSNS).
const MAX_INSNS: usize = 4096;

fn insn(code: u16, jt: u8, jf: u8, k: u32) -> libc::sock_filter {
    libc::sock_filter { code, jt, jf, k }
}

/// The low 32 bits of argument `i` in `seccomp_data` (both architectures
/// are little-endian); the high ones follow.
fn arg_lo(i: u8) -> u32 {
    16 + 8 * u32::from(i)
}

#[allow(clippy::cast_possible_truncation)]
fn words(x: u64) -> (u32, u32) {
    (x as u32, (x >> 32) as u32)
}

/// Instructions of one test; each holds one jump.
fn test_len(arg: Arg) -> usize {
    match arg {
        Arg::Eq(..) | Arg::Ne(..) | Arg::OwnPid(_) => 2,
        Arg::Masked(..) => 6,
    }
}

/// The rules of a verdict: any of them, each all of its tests.
fn rules_of(
    any: &'static [&'static [Arg]],
    with_net: Option<&'static [&'static [Arg]]>,
) -> impl Iterator<Item = &'static [Arg]> {
    any.iter().chain(with_net.unwrap_or(&[])).copied()
}

/// Instructions of one rule: its tests, then a return.
fn rule_len(tests: &[Arg]) -> usize {
    tests.iter().map(|&t| test_len(t)).sum::<usize>() + 1
}

/// Appends `rules` as a self-contained block: it returns ALLOW when a rule
/// holds and EPERM when none does. A failing test jumps to the next rule.
fn rules_block(
    rules: impl Iterator<Item = &'static [Arg]>,
    pid: u32,
    out: &mut Vec<libc::sock_filter>,
) -> Result<(), SandboxError> {
    for tests in rules {
        let end = out.len() + rule_len(tests);
        // From the jump just pushed to the rule's end (the next rule).
        let fail = |out: &Vec<libc::sock_filter>| {
            u8::try_from(end - out.len()).map_err(|_| too_long("a rule"))
        };
        for &test in tests {
            match test {
                Arg::Eq(i, v) | Arg::Ne(i, v) => {
                    out.push(insn(LD_ABS, 0, 0, arg_lo(i)));
                    out.push(insn(JEQ_K, 0, 0, v));
                    let f = fail(out)?;
                    let last = out.last_mut().expect("pushed");
                    if matches!(test, Arg::Eq(..)) {
                        last.jf = f;
                    } else {
                        last.jt = f;
                    }
                }
                Arg::OwnPid(i) => {
                    out.push(insn(LD_ABS, 0, 0, arg_lo(i)));
                    out.push(insn(JEQ_K, 0, 0, pid));
                    out.last_mut().expect("pushed").jf = fail(out)?;
                }
                Arg::Masked(i, mask, v) => {
                    let ((mask_lo, mask_hi), (v_lo, v_hi)) = (words(mask), words(v));
                    for (offset, mask, v) in [(0, mask_lo, v_lo), (4, mask_hi, v_hi)] {
                        out.push(insn(LD_ABS, 0, 0, arg_lo(i) + offset));
                        out.push(insn(AND_K, 0, 0, mask));
                        out.push(insn(JEQ_K, 0, 0, v));
                        out.last_mut().expect("pushed").jf = fail(out)?;
                    }
                }
            }
        }
        out.push(insn(RET_K, 0, 0, ALLOW));
        debug_assert_eq!(out.len(), end);
    }
    out.push(insn(RET_K, 0, 0, EPERM));
    Ok(())
}

fn too_long(what: &str) -> SandboxError {
    SandboxError::SeccompBuild(format!(
        "{what} is longer than a BPF jump reaches (255 instructions)"
    ))
}

/// What a range of system call numbers gets.
#[derive(Clone, Copy, Debug)]
enum Verdict {
    Allow,
    Deny,
    /// The listed call's rules decide.
    Rules(&'static [&'static [Arg]], Option<&'static [&'static [Arg]]>),
}

/// The numbers from `start` up to the next segment's start.
#[derive(Clone, Copy, Debug)]
struct Segment {
    start: u32,
    verdict: Verdict,
}

/// The whole number line, in order from 0: runs of calls allowed always
/// merge into one segment, gaps are refused, and so is everything after
/// the last listed call (x86_64's x32 numbers, from 0x40000000, included).
fn segments(net: bool) -> Vec<Segment> {
    let mut calls: Vec<&Call> = GROUPS.iter().flat_map(|g| g.calls).collect();
    calls.sort_by_key(|c| c.nr);
    let mut out: Vec<Segment> = Vec::new();
    let mut next = 0u32; // the first number not yet covered
    for c in calls {
        let nr = u32::try_from(c.nr).expect("system call numbers are small");
        let verdict = match c.when {
            When::Always => Verdict::Allow,
            When::Any(any) => Verdict::Rules(any, None),
            When::AnyOrWithNet(any, with_net) => Verdict::Rules(any, net.then_some(with_net)),
        };
        if nr > next {
            out.push(Segment {
                start: next,
                verdict: Verdict::Deny,
            });
        }
        match (out.last(), verdict) {
            (
                Some(Segment {
                    verdict: Verdict::Allow,
                    ..
                }),
                Verdict::Allow,
            ) if nr == next => {}
            _ => out.push(Segment { start: nr, verdict }),
        }
        next = nr + 1;
    }
    out.push(Segment {
        start: next,
        verdict: Verdict::Deny,
    });
    out
}

/// Instructions [`search`] emits for `segs`, counted without emitting
/// (the jump over a left half needs its length first).
fn search_len(segs: &[Segment]) -> usize {
    if let [seg] = segs {
        return match seg.verdict {
            Verdict::Allow | Verdict::Deny => 1,
            Verdict::Rules(any, with_net) => {
                rules_of(any, with_net).map(rule_len).sum::<usize>() + 1
            }
        };
    }
    let mid = segs.len() / 2;
    let left = search_len(&segs[..mid]);
    let jump = if left <= usize::from(u8::MAX) { 1 } else { 2 };
    jump + left + search_len(&segs[mid..])
}

/// Appends a binary search over `segs` (the accumulator holds the call's
/// number), self-contained: every path ends in a return.
fn search(
    segs: &[Segment],
    pid: u32,
    out: &mut Vec<libc::sock_filter>,
) -> Result<(), SandboxError> {
    if let [seg] = segs {
        match seg.verdict {
            Verdict::Allow => out.push(insn(RET_K, 0, 0, ALLOW)),
            Verdict::Deny => out.push(insn(RET_K, 0, 0, EPERM)),
            Verdict::Rules(any, with_net) => rules_block(rules_of(any, with_net), pid, out)?,
        }
        return Ok(());
    }
    let mid = segs.len() / 2;
    let left = search_len(&segs[..mid]);
    let boundary = segs[mid].start;
    match u8::try_from(left) {
        // nr >= boundary: over the left half.
        Ok(over) => out.push(insn(JGE_K, over, 0, boundary)),
        // Too far for a conditional jump: through an unconditional one.
        Err(_) => {
            out.push(insn(JGE_K, 0, 1, boundary));
            let over = u32::try_from(left).map_err(|_| too_long("the filter"))?;
            out.push(insn(JA, 0, 0, over));
        }
    }
    search(&segs[..mid], pid, out)?;
    search(&segs[mid..], pid, out)
}

/// The allow-list as a BPF program, for this process (`pid`) and network
/// setting.
///
/// Compiled here rather than with a general filter compiler (the first
/// version used seccompiler, which tests one call number after another):
/// a search over the sorted numbers makes every call's path a dozen
/// instructions instead of up to ~900. That path is what each KVM exit's
/// `ioctl` runs, and what the kernel emulates for every call number when it
/// installs the filter (its action cache): the install went from ~0.6 ms to
/// ~0.05 ms (measured in the tests' `install_cost`, see docs/security.md).
pub fn program(net: bool, pid: u32) -> Result<Vec<libc::sock_filter>, SandboxError> {
    let mut prog = vec![
        insn(LD_ABS, 0, 0, ARCH),
        insn(JEQ_K, 1, 0, AUDIT_ARCH),
        // A foreign architecture (i386's int 0x80 on x86_64): refused, never
        // killed.
        insn(RET_K, 0, 0, EPERM),
        insn(LD_ABS, 0, 0, NR),
    ];
    let segs = segments(net);
    prog.reserve(search_len(&segs));
    search(&segs, pid, &mut prog)?;
    if prog.len() > MAX_INSNS {
        return Err(SandboxError::SeccompBuild(format!(
            "{} instructions; the kernel takes at most {MAX_INSNS}",
            prog.len()
        )));
    }
    Ok(prog)
}

/// Installs the allow-list on every thread of this process (TSYNC). No
/// `PR_SET_NO_NEW_PRIVS` here: the sandbox set it in step 2.
pub(super) fn install(net: bool) -> Result<(), SandboxError> {
    // SAFETY: getpid has no preconditions.
    let pid = u32::try_from(unsafe { libc::getpid() }).expect("pids are positive");
    let prog = program(net, pid)?;
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
// The tests read arguments' low words and index data by offsets on purpose.
#[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
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
            assert!(p.len() < MAX_INSNS, "BPF programs are capped at 4096");
            for (n, i) in p.iter().enumerate() {
                assert!(
                    i.code != RET_K || i.k == ALLOW || i.k == EPERM,
                    "instruction {n} returns {:#x}",
                    i.k
                );
            }
        }
    }

    /// Runs `prog` on one `seccomp_data` the way the kernel's classic BPF
    /// interpreter does (for the instructions this compiler emits).
    fn run(prog: &[libc::sock_filter], arch: u32, nr: u32, args: [u64; 6]) -> u32 {
        let mut data = Vec::new();
        data.extend(nr.to_le_bytes());
        data.extend(arch.to_le_bytes());
        data.extend(0u64.to_le_bytes()); // instruction pointer
        for a in args {
            data.extend(a.to_le_bytes());
        }
        let (mut a, mut pc) = (0u32, 0usize);
        loop {
            let i = prog[pc];
            pc += 1;
            let jump = |taken: bool| usize::from(if taken { i.jt } else { i.jf });
            match i.code {
                LD_ABS => {
                    let at = i.k as usize;
                    a = u32::from_le_bytes(data[at..at + 4].try_into().unwrap());
                }
                AND_K => a &= i.k,
                JA => pc += i.k as usize,
                JEQ_K => pc += jump(a == i.k),
                JGE_K => pc += jump(a >= i.k),
                RET_K => return i.k,
                code => panic!("instruction {} has opcode {code:#x}", pc - 1),
            }
        }
    }

    /// What the table says, read directly.
    fn table_allows(net: bool, pid: u32, nr: u32, args: [u64; 6]) -> bool {
        let holds = |rule: &[Arg]| {
            rule.iter().all(|&t| match t {
                Arg::Eq(i, v) => args[usize::from(i)] as u32 == v,
                Arg::Ne(i, v) => args[usize::from(i)] as u32 != v,
                Arg::OwnPid(i) => args[usize::from(i)] as u32 == pid,
                Arg::Masked(i, mask, v) => args[usize::from(i)] & mask == v,
            })
        };
        let Some(call) = GROUPS
            .iter()
            .flat_map(|g| g.calls)
            .find(|c| c.nr == i64::from(nr))
        else {
            return false;
        };
        match call.when {
            When::Always => true,
            When::Any(any) => any.iter().any(|r| holds(r)),
            When::AnyOrWithNet(any, with_net) => {
                any.iter().any(|r| holds(r)) || (net && with_net.iter().any(|r| holds(r)))
            }
        }
    }

    /// Argument values worth trying for `nr`: every constant its rules
    /// compare with, one either side, the pid, the masks' bits, and noise.
    fn candidates(nr: u32, pid: u32, seed: &mut u64) -> Vec<u64> {
        let mut v = vec![0, 1, u64::MAX, u64::from(pid), u64::from(pid) + 1, 1 << 32];
        for call in GROUPS
            .iter()
            .flat_map(|g| g.calls)
            .filter(|c| c.nr == i64::from(nr))
        {
            let rules: Vec<&[Arg]> = match call.when {
                When::Always => vec![],
                When::Any(a) => a.to_vec(),
                When::AnyOrWithNet(a, b) => a.iter().chain(b).copied().collect(),
            };
            for t in rules.iter().flat_map(|r| r.iter()) {
                match *t {
                    Arg::Eq(_, x) | Arg::Ne(_, x) => {
                        let x = u64::from(x);
                        v.extend([x, x + 1, x.wrapping_sub(1), x | 1 << 40]);
                    }
                    Arg::Masked(_, m, x) => {
                        v.extend([x, x | !m, x ^ m, m, x | 1 << 40]);
                        v.extend((0..64).map(|b| x ^ (1 << b)));
                    }
                    Arg::OwnPid(_) => {}
                }
            }
        }
        for _ in 0..8 {
            // xorshift64: deterministic noise
            *seed ^= *seed << 13;
            *seed ^= *seed >> 7;
            *seed ^= *seed << 17;
            v.push(*seed);
        }
        v
    }

    #[test]
    fn the_compiled_program_decides_exactly_as_the_table_says() {
        let pid = 4242;
        let mut seed = 0x9e37_79b9_7f4a_7c15;
        let mut numbers: Vec<u32> = (0..1100).collect();
        numbers.extend([
            0x4000_0000,
            0x4000_0001,
            0x4000_0000 + 16,
            u32::MAX - 1,
            u32::MAX,
        ]);
        for net in [false, true] {
            let prog = program(net, pid).unwrap();
            for &nr in &numbers {
                let values = candidates(nr, pid, &mut seed);
                // Every value in each of the first three arguments (where
                // the rules look), the others varied along.
                for (k, &x) in values.iter().enumerate() {
                    for slot in 0..3 {
                        let mut args = [0u64; 6];
                        for (j, a) in args.iter_mut().enumerate() {
                            *a = values[(k + j * 7) % values.len()];
                        }
                        args[slot] = x;
                        let want = table_allows(net, pid, nr, args);
                        let got = run(&prog, AUDIT_ARCH, nr, args);
                        assert_eq!(
                            got,
                            if want { ALLOW } else { EPERM },
                            "net {net}, call {nr}, arguments {args:x?}"
                        );
                    }
                }
            }
            // Another architecture is refused whatever the number.
            for nr in [0, 1, libc::SYS_read as u32, libc::SYS_ioctl as u32] {
                assert_eq!(run(&prog, 0x4000_0003, nr, [0; 6]), EPERM);
            }
        }
    }

    #[test]
    fn every_call_takes_a_short_path() {
        // The point of the search: a dozen or so instructions before a
        // verdict or the call's own rules, whatever its number.
        let prog = program(true, 1).unwrap();
        let depth = |nr: u32| {
            let mut pc = 4; // after the architecture check and the load
            let mut steps = 0;
            while matches!(prog[pc].code, JGE_K | JA) {
                let i = prog[pc];
                pc += 1 + match i.code {
                    JA => i.k as usize,
                    _ => usize::from(if nr >= i.k { i.jt } else { i.jf }),
                };
                steps += 1;
            }
            steps
        };
        let worst = (0..1100).map(depth).max().unwrap();
        assert!(worst <= 20, "a call needs {worst} jumps");
    }
}

//! The socket supervisor: a seccomp filter on the VMM process that sends
//! every `connect`, `bind`, addressed `sendto`, `sendmsg` and `sendmmsg` to
//! a supervisor thread (SECCOMP_RET_USER_NOTIF), which reads the socket
//! address from our own memory and answers: let it through, refuse it with
//! an errno the guest sees, or rewrite it first (guest DNS to our resolver,
//! published listeners to their host address) and let it through.
//!
//! Two kinds of destination ([`Rules`]): IP addresses go to the egress
//! policy when the machine has a network ([`NetRules`]) and are refused
//! when it has none; Unix socket addresses pass only when they name one of
//! the allowed peers byte for byte ([`UnixPeers::Only`]: the control
//! channel, the SSH agent), so TSI's Unix-socket proxying cannot reach any
//! other host socket, abstract ones included, and no Unix socket can be
//! bound. The runtime always restricts Unix peers; [`UnixPeers::Any`] is
//! for tests of the network policy alone.
//!
//! Installed right before `krun_start_enter` with TSYNC, so every libkrun
//! thread, present or future, is under it. Never SECCOMP_RET_TRAP: libkrun
//! installs its own SIGSYS handler, which would kill the process.
//!
//! Why CONTINUE is sound here: the addresses are built by libkrun's TSI
//! proxy in its own (host) memory from the guest's request; the guest
//! cannot write host memory, and the thread that made the call is blocked
//! until we answer. Memory is read from that thread (the notification's
//! pid), and the id is checked valid before a rewrite writes it; the kernel
//! applies an answer only to a call still pending, so an answer never
//! reaches a different call.

use std::net::{IpAddr, SocketAddr};
use std::os::fd::{FromRawFd, OwnedFd, RawFd};
use std::sync::Arc;

pub use super::sockaddr::UnixPeers;
use super::sockaddr::{rewrite, screen, Call, Screened};
use super::{canonical, Egress, GUEST_DNS};

/// One line on stderr that never panics: with `SMOLVM_NET_LOG` on and
/// stderr gone (a closed pipe), `eprintln!` would panic, and with
/// `panic = "abort"` take the VM down.
macro_rules! log_line {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr(), $($arg)*);
    }};
}

/// `seccomp_data.arch` of this build's architecture (the allow-list in
/// crate::sandbox::seccomp checks it too).
#[cfg(target_arch = "x86_64")]
pub(crate) const AUDIT_ARCH: u32 = 0xc000_003e;
#[cfg(target_arch = "aarch64")]
pub(crate) const AUDIT_ARCH: u32 = 0xc000_00b7;

/// Whether this kernel can run the supervisor; the reason when it cannot.
pub fn available() -> Result<(), String> {
    let action: u32 = libc::SECCOMP_RET_USER_NOTIF;
    // SAFETY: SECCOMP_GET_ACTION_AVAIL reads one u32 from the pointer.
    let r = unsafe {
        libc::syscall(
            libc::SYS_seccomp,
            libc::SECCOMP_GET_ACTION_AVAIL,
            0,
            &action as *const u32,
        )
    };
    if r != 0 {
        return Err(format!(
            "this kernel has no seccomp user notification ({}; Linux 5.7 or later needed)",
            std::io::Error::last_os_error()
        ));
    }
    Ok(())
}

struct Insn(u16, u8, u8, u32);

// Classic BPF opcodes (linux/bpf_common.h), shared with the allow-list's
// compiler (crate::sandbox::seccomp).
pub(crate) const LD_ABS: u16 = 0x20; // BPF_LD | BPF_W | BPF_ABS
pub(crate) const JEQ: u16 = 0x15; // BPF_JMP | BPF_JEQ | BPF_K
pub(crate) const JGE: u16 = 0x35; // BPF_JMP | BPF_JGE | BPF_K
pub(crate) const RET: u16 = 0x06; // BPF_RET | BPF_K

fn u32_of(v: libc::c_long) -> u32 {
    u32::try_from(v).expect("syscall numbers are small")
}

/// The filter program. Jump offsets are relative to the next instruction;
/// the three verdicts sit at the end.
fn program() -> Vec<libc::sock_filter> {
    const ARGS4_LO: u32 = 16 + 4 * 8; // offsetof(seccomp_data, args[4])
    let enosys = libc::SECCOMP_RET_ERRNO | u32::try_from(libc::ENOSYS).expect("small");
    // Indices of the verdicts, counted from the program below.
    const ALLOW: u8 = 15;
    const NOTIFY: u8 = 16;
    const DENY: u8 = 17;
    let at = |i: u8, target: u8| target - i - 1;
    let mut p = vec![
        Insn(LD_ABS, 0, 0, 4),                                   // 0: arch
        Insn(JEQ, 0, at(1, DENY), AUDIT_ARCH),                   // 1
        Insn(LD_ABS, 0, 0, 0),                                   // 2: nr
        Insn(JGE, at(3, DENY), 0, 0x4000_0000),                  // 3: x32 ABI
        Insn(JEQ, at(4, NOTIFY), 0, u32_of(libc::SYS_connect)),  // 4
        Insn(JEQ, at(5, NOTIFY), 0, u32_of(libc::SYS_bind)),     // 5
        Insn(JEQ, at(6, NOTIFY), 0, u32_of(libc::SYS_sendmsg)),  // 6
        Insn(JEQ, at(7, NOTIFY), 0, u32_of(libc::SYS_sendmmsg)), // 7
        // io_uring would do socket work outside any syscall filter.
        Insn(JEQ, at(8, DENY), 0, u32_of(libc::SYS_io_uring_setup)), // 8
        // clone3's flags sit in memory no filter can read: ENOSYS makes
        // glibc fall back to clone, whose flags the allow-list checks
        // (crate::sandbox::seccomp).
        Insn(JEQ, at(9, DENY), 0, u32_of(libc::SYS_clone3)), // 9
        Insn(JEQ, 0, at(10, ALLOW), u32_of(libc::SYS_sendto)), // 10
        Insn(LD_ABS, 0, 0, ARGS4_LO),                        // 11: dest_addr (low)
        Insn(JEQ, 0, at(12, NOTIFY), 0),                     // 12
        Insn(LD_ABS, 0, 0, ARGS4_LO + 4),                    // 13: dest_addr (high)
        Insn(JEQ, at(14, ALLOW), at(14, NOTIFY), 0),         // 14
        Insn(RET, 0, 0, libc::SECCOMP_RET_ALLOW),            // 15 ALLOW
        Insn(RET, 0, 0, libc::SECCOMP_RET_USER_NOTIF),       // 16 NOTIFY
        Insn(RET, 0, 0, enosys),                             // 17 DENY
    ];
    debug_assert_eq!(p.len(), usize::from(DENY) + 1);
    p.drain(..)
        .map(|Insn(code, jt, jf, k)| libc::sock_filter { code, jt, jf, k })
        .collect()
}

/// How a notified call is answered.
#[derive(Debug, PartialEq, Eq)]
enum Verdict {
    Continue,
    Errno(i32),
}

/// What the supervisor decides IP destinations by, when there is a network.
pub struct NetRules {
    pub egress: Arc<Egress>,
    /// Our resolver: guest datagrams to `GUEST_DNS:53` are sent here.
    pub dns: SocketAddr,
    /// Thread ids whose calls pass unchecked (our own resolver, which does
    /// the host's lookups).
    pub trusted: super::dns::TrustedThreads,
}

/// Everything the supervisor decides by.
pub struct Rules {
    /// `None`: no network: every IP destination and IP `bind` is refused.
    pub net: Option<NetRules>,
    pub unix_peers: UnixPeers,
}

struct Supervisor {
    net: Option<NetRules>,
    unix_peers: UnixPeers,
    /// SMOLVM_NET_LOG: 1 prints refusals, 2 also what passed.
    log: u8,
}

/// Installs the filter on every thread of this process and starts the
/// supervisor thread. Call right before entering the VM: from here on the
/// process's socket calls are checked.
pub fn install_rules(rules: Rules) -> std::io::Result<()> {
    let mut filter = program();
    let prog = libc::sock_fprog {
        len: u16::try_from(filter.len()).expect("short program"),
        filter: filter.as_mut_ptr(),
    };
    // SAFETY: plain prctl; no pointers.
    if unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    let flags = libc::SECCOMP_FILTER_FLAG_TSYNC
        | libc::SECCOMP_FILTER_FLAG_NEW_LISTENER
        | libc::SECCOMP_FILTER_FLAG_TSYNC_ESRCH;
    // SAFETY: prog points at a valid program that outlives the call (the
    // kernel copies it).
    let fd = unsafe {
        libc::syscall(
            libc::SYS_seccomp,
            libc::SECCOMP_SET_MODE_FILTER,
            flags,
            &prog as *const libc::sock_fprog,
        )
    };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    let fd = RawFd::try_from(fd).expect("file descriptors fit in c_int");
    // SAFETY: the kernel just returned this listener descriptor to us.
    let listener = unsafe { OwnedFd::from_raw_fd(fd) };
    // Asked here, not in the thread: a system call filter installed after
    // this one (crate::sandbox) does not allow seccomp(2) itself.
    let sizes = notif_sizes()?;
    let sup = Supervisor {
        net: rules.net,
        unix_peers: rules.unix_peers,
        log: std::env::var("SMOLVM_NET_LOG")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(0),
    };
    std::thread::Builder::new()
        .name("smolvm-netpolicy".into())
        .spawn(move || sup.serve(listener, sizes))?;
    Ok(())
}

/// Kernel sizes of the notification structs (they may be larger than ours).
fn notif_sizes() -> std::io::Result<libc::seccomp_notif_sizes> {
    let mut sizes = libc::seccomp_notif_sizes {
        seccomp_notif: 0,
        seccomp_notif_resp: 0,
        seccomp_data: 0,
    };
    // SAFETY: GET_NOTIF_SIZES writes one seccomp_notif_sizes.
    let r = unsafe {
        libc::syscall(
            libc::SYS_seccomp,
            libc::SECCOMP_GET_NOTIF_SIZES,
            0,
            &mut sizes as *mut libc::seccomp_notif_sizes,
        )
    };
    if r != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(sizes)
}

/// Reads `len` bytes at `addr` of the calling thread `pid` (the
/// notification's, not ours: a filtered process that forked would otherwise
/// be judged by what our memory holds at its address). For a thread of this
/// process it is the same memory and needs no ptrace permission.
fn read_mem(pid: libc::pid_t, addr: u64, len: usize) -> Option<Vec<u8>> {
    let mut buf = vec![0u8; len];
    let local = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: len,
    };
    let remote = libc::iovec {
        iov_base: usize::try_from(addr).ok()? as *mut libc::c_void,
        iov_len: len,
    };
    // SAFETY: process_vm_readv copies into our buffer (len bytes) and
    // faults safely (EFAULT) on a bad remote address.
    let n = unsafe { libc::process_vm_readv(pid, &local, 1, &remote, 1, 0) };
    (usize::try_from(n).ok()? == len).then_some(buf)
}

/// Writes `data` at `addr` of the calling thread `pid` (see [`read_mem`]).
fn write_mem(pid: libc::pid_t, addr: u64, data: &[u8]) -> bool {
    let local = libc::iovec {
        iov_base: data.as_ptr() as *mut libc::c_void,
        iov_len: data.len(),
    };
    let Ok(a) = usize::try_from(addr) else {
        return false;
    };
    let remote = libc::iovec {
        iov_base: a as *mut libc::c_void,
        iov_len: data.len(),
    };
    // SAFETY: process_vm_writev reads our slice and writes the target
    // range, failing with EFAULT rather than faulting.
    let n = unsafe { libc::process_vm_writev(pid, &local, 1, &remote, 1, 0) };
    usize::try_from(n).is_ok_and(|n| n == data.len())
}

/// Whether `tid` is a thread of this process: tgkill with signal 0 sends
/// nothing and fails (ESRCH) for a thread of any other process. The caller
/// is blocked in its system call, so its id cannot be reused meanwhile.
fn is_own_thread(tid: libc::pid_t) -> bool {
    // SAFETY: signal 0 only checks that the thread exists in our group.
    unsafe { libc::syscall(libc::SYS_tgkill, libc::getpid(), tid, 0) == 0 }
}

/// The type of socket `fd` of the calling thread `pid`; `None` when it is
/// not a socket, or when the caller is another process (its descriptor
/// numbers are not ours: the VMM never forks, its sandbox allows only
/// threads, so such a caller is refused wherever the type matters).
fn socket_type(pid: libc::pid_t, fd: u64) -> Option<i32> {
    if !is_own_thread(pid) {
        return None;
    }
    let fd = RawFd::try_from(fd).ok()?;
    let mut ty: libc::c_int = 0;
    let mut len = libc::socklen_t::try_from(std::mem::size_of::<libc::c_int>()).ok()?;
    // SAFETY: SO_TYPE writes one c_int; fd is a number in our own table
    // (the supervisor shares it with the calling thread).
    let r = unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_TYPE,
            (&mut ty as *mut libc::c_int).cast(),
            &mut len,
        )
    };
    (r == 0).then_some(ty)
}

const MAX_SOCKADDR: u64 = 128;

/// One notification being answered: the listener, its id, and the calling
/// thread (in our pid namespace), whose memory holds the call's arguments.
struct Notif {
    fd: RawFd,
    id: u64,
    pid: libc::pid_t,
}

impl Supervisor {
    fn serve(self, listener: OwnedFd, sizes: libc::seccomp_notif_sizes) {
        use std::os::fd::AsRawFd;
        let req_len =
            usize::from(sizes.seccomp_notif).max(std::mem::size_of::<libc::seccomp_notif>());
        let resp_len = usize::from(sizes.seccomp_notif_resp)
            .max(std::mem::size_of::<libc::seccomp_notif_resp>());
        // u64 storage: aligned for both structs.
        let mut req_buf = vec![0u64; req_len.div_ceil(8)];
        let mut resp_buf = vec![0u64; resp_len.div_ceil(8)];
        let fd = listener.as_raw_fd();
        loop {
            req_buf.iter_mut().for_each(|w| *w = 0);
            // SAFETY: the buffer is zeroed, aligned and at least the kernel's
            // seccomp_notif size.
            let r =
                unsafe { libc::ioctl(fd, libc::SECCOMP_IOCTL_NOTIF_RECV, req_buf.as_mut_ptr()) };
            if r != 0 {
                match std::io::Error::last_os_error().raw_os_error() {
                    Some(libc::EINTR) | Some(libc::ENOENT) => continue,
                    _ => return,
                }
            }
            // SAFETY: the kernel filled a seccomp_notif at the buffer start.
            let req = unsafe { &*(req_buf.as_ptr() as *const libc::seccomp_notif) };
            let verdict = self.decide(fd, req);
            resp_buf.iter_mut().for_each(|w| *w = 0);
            // SAFETY: aligned, zeroed, large enough for seccomp_notif_resp.
            let resp = unsafe { &mut *(resp_buf.as_mut_ptr() as *mut libc::seccomp_notif_resp) };
            resp.id = req.id;
            match verdict {
                Verdict::Continue => {
                    resp.flags =
                        u32::try_from(libc::SECCOMP_USER_NOTIF_FLAG_CONTINUE).expect("flag fits");
                }
                Verdict::Errno(e) => resp.error = -e,
            }
            // SAFETY: resp is a valid response for the id just received; an
            // ENOENT (the caller is gone) is harmless.
            unsafe { libc::ioctl(fd, libc::SECCOMP_IOCTL_NOTIF_SEND, resp_buf.as_mut_ptr()) };
        }
    }

    fn id_valid(n: &Notif) -> bool {
        let mut id = n.id;
        // SAFETY: ID_VALID reads one u64.
        unsafe {
            libc::ioctl(
                n.fd,
                libc::SECCOMP_IOCTL_NOTIF_ID_VALID,
                &mut id as *mut u64,
            ) == 0
        }
    }

    fn decide(&self, fd: RawFd, req: &libc::seccomp_notif) -> Verdict {
        let Ok(pid) = libc::pid_t::try_from(req.pid) else {
            return Verdict::Errno(libc::EPERM);
        };
        if self.net.as_ref().is_some_and(|n| n.trusted.contains(pid)) {
            return Verdict::Continue;
        }
        let n = &Notif {
            fd,
            id: req.id,
            pid,
        };
        let a = req.data.args;
        let nr = libc::c_long::from(req.data.nr);
        let v = match nr {
            libc::SYS_connect => self.outbound(
                n,
                a[0],
                a[1],
                a[2],
                libc::ECONNREFUSED,
                Call::Connect,
                "connect",
            ),
            libc::SYS_sendto => {
                self.outbound(n, a[0], a[4], a[5], libc::EACCES, Call::Send, "sendto")
            }
            libc::SYS_bind => self.bind(n, a[0], a[1], a[2]),
            libc::SYS_sendmsg => self.sendmsg(n, a[0], a[1]),
            libc::SYS_sendmmsg => self.sendmmsg(n, a[0], a[1], a[2]),
            _ => Verdict::Errno(libc::ENOSYS),
        };
        // No ID_VALID here (one system call less per connect): the memory we
        // read belonged to this call if the call is still pending, and the
        // kernel applies our answer only to a pending call (NOTIF_SEND fails
        // with ENOENT otherwise). A pending caller never left its system
        // call, so its thread id was not reused in between. Side effects
        // before the answer (a rewrite) check ID_VALID themselves.
        v
    }

    fn deny_local(&self, what: &str, to: &str, errno: i32) -> Verdict {
        if self.log >= 1 {
            log_line!("smolvm: socket policy refused {what} to {to}: not an allowed local peer");
        }
        Verdict::Errno(errno)
    }

    fn deny(&self, what: &str, to: SocketAddr, why: &str, errno: i32) -> Verdict {
        if self.log >= 1 {
            log_line!("smolvm: network policy refused {what} to {to}: {why}");
        }
        Verdict::Errno(errno)
    }

    /// connect/sendto to the sockaddr at `ptr` (`len` bytes) on `sock`.
    #[allow(clippy::too_many_arguments)]
    fn outbound(
        &self,
        n: &Notif,
        sock: u64,
        ptr: u64,
        len: u64,
        errno: i32,
        call: Call,
        what: &str,
    ) -> Verdict {
        if ptr == 0 {
            return Verdict::Continue;
        }
        let Some(bytes) = read_mem(
            n.pid,
            ptr,
            usize::try_from(len.min(MAX_SOCKADDR)).unwrap_or(0),
        ) else {
            return Verdict::Errno(libc::EFAULT);
        };
        let to = match screen(call, &bytes, &self.unix_peers) {
            Screened::Ip(to) => to,
            Screened::Malformed => return Verdict::Errno(libc::EINVAL),
            Screened::Pass => return Verdict::Continue,
            Screened::Refused(name) => return self.deny_local(what, &name, errno),
        };
        let Some(net) = &self.net else {
            return self.deny(what, to, "the machine has no network", errno);
        };
        if canonical(to.ip()) == IpAddr::V4(GUEST_DNS) && to.port() == 53 {
            if socket_type(n.pid, sock) != Some(libc::SOCK_DGRAM) {
                return self.deny(what, to, "DNS over TCP is not offered", libc::ECONNREFUSED);
            }
            let Some(new) = rewrite(&bytes, net.dns) else {
                return Verdict::Errno(libc::EAFNOSUPPORT);
            };
            if !Self::id_valid(n) || !write_mem(n.pid, ptr, &new) {
                return Verdict::Errno(libc::EINTR);
            }
            return Verdict::Continue;
        }
        match net.egress.check(to.ip()) {
            Ok(()) => {
                if self.log >= 2 {
                    log_line!("smolvm: network policy allowed {what} to {to}");
                }
                Verdict::Continue
            }
            Err(why) => self.deny(what, to, &why.to_string(), errno),
        }
    }

    fn bind(&self, n: &Notif, sock: u64, ptr: u64, len: u64) -> Verdict {
        let Some(bytes) = read_mem(
            n.pid,
            ptr,
            usize::try_from(len.min(MAX_SOCKADDR)).unwrap_or(0),
        ) else {
            return Verdict::Errno(libc::EFAULT);
        };
        let at = match screen(Call::Bind, &bytes, &self.unix_peers) {
            Screened::Ip(at) => at,
            Screened::Malformed => return Verdict::Errno(libc::EINVAL),
            Screened::Pass => return Verdict::Continue,
            Screened::Refused(name) => return self.deny_local("bind", &name, libc::EACCES),
        };
        let Some(net) = &self.net else {
            return self.deny("bind", at, "the machine has no network", libc::EACCES);
        };
        // Port 0: an ephemeral source port for outgoing datagrams. A stream
        // socket bound to port 0 could only be for a listener on a port
        // nobody published (libkrun's TSI refuses those too: patch 0008).
        if at.port() == 0 {
            return match socket_type(n.pid, sock) {
                Some(libc::SOCK_DGRAM) => Verdict::Continue,
                _ => self.deny(
                    "bind",
                    at,
                    "a stream bind to port 0 (unpublished)",
                    libc::EACCES,
                ),
            };
        }
        let published = net
            .egress
            .policy
            .publish
            .iter()
            .find(|p| p.host == at.port());
        match (published, socket_type(n.pid, sock)) {
            (Some(p), Some(libc::SOCK_STREAM)) => {
                let Some(new) = rewrite(&bytes, SocketAddr::new(p.addr, p.host)) else {
                    return self.deny(
                        "listen",
                        at,
                        "address family of the publication",
                        libc::EAFNOSUPPORT,
                    );
                };
                if !Self::id_valid(n) || !write_mem(n.pid, ptr, &new) {
                    return Verdict::Errno(libc::EINTR);
                }
                Verdict::Continue
            }
            _ => self.deny("listen", at, "port not published", libc::EACCES),
        }
    }

    fn sendmsg(&self, n: &Notif, sock: u64, msg: u64) -> Verdict {
        let Some(hdr) = read_mem(n.pid, msg, std::mem::size_of::<libc::msghdr>()) else {
            return Verdict::Errno(libc::EFAULT);
        };
        // SAFETY: hdr holds size_of::<msghdr>() bytes; read_unaligned copes
        // with the Vec's alignment.
        let h: libc::msghdr = unsafe { std::ptr::read_unaligned(hdr.as_ptr().cast()) };
        self.outbound(
            n,
            sock,
            h.msg_name as u64,
            u64::from(h.msg_namelen),
            libc::EACCES,
            Call::Send,
            "sendmsg",
        )
    }

    fn sendmmsg(&self, n: &Notif, sock: u64, vec: u64, vlen: u64) -> Verdict {
        // The kernel sends at most UIO_MAXIOV messages per call.
        let size = std::mem::size_of::<libc::mmsghdr>() as u64;
        for i in 0..vlen.min(1024) {
            let Some(at) = i.checked_mul(size).and_then(|o| vec.checked_add(o)) else {
                return Verdict::Errno(libc::EFAULT);
            };
            match self.sendmsg(n, sock, at) {
                Verdict::Continue => {}
                deny => return deny,
            }
        }
        Verdict::Continue
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn program_jumps_land_on_verdicts_and_stay_in_range() {
        let p = program();
        for (i, insn) in p.iter().enumerate() {
            if insn.code == JEQ || insn.code == JGE {
                for off in [insn.jt, insn.jf] {
                    let target = i + 1 + usize::from(off);
                    assert!(target < p.len(), "insn {i} jumps out");
                }
            }
        }
        assert_eq!(p.last().unwrap().code, RET);
    }
}

//! Signals, the timeout and the terminal of a running machine.
//!
//! libkrun has no way to send a signal into the guest, and when the guest
//! stops it ends the process with `_exit` (no destructor, no handler of ours
//! runs). So a started machine is two processes:
//!
//! - the **VMM** (a child): configures libkrun and enters the VM, as a
//!   single process did before. It dies with us (`PR_SET_PDEATHSIG`).
//! - the **supervisor** (this process, the one the user started): it blocks
//!   SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGUSR1 and SIGUSR2 (the VMM inherits
//!   the mask, so neither libkrun's own SIGINT handler nor a default action
//!   ever sees them), reads them from a signalfd and forwards each one, as
//!   one byte holding its number, over the **control channel** to the guest
//!   init, which sends it to the workload's process group
//!   (guest-init/init.c). When the VMM ends, the supervisor restores the
//!   terminal and exits with the VMM's status, which is the workload's.
//!
//! The control channel is a Unix socket in a private (0700) temporary
//! directory; libkrun connects it to guest vsock port [`crate::guest_abi::CONTROL_PORT`] when the
//! guest init connects there. The directory is removed as soon as the guest
//! is connected, and on every exit of the supervisor.
//!
//! Forcing the machine down (a second SIGINT; the timeout after its grace
//! period) kills the VMM with SIGKILL: the guest stops at once.
//!
//! The terminal: libkrun puts the first of stdin, stdout, stderr that is a
//! terminal in raw mode and makes the descriptors it copies non-blocking
//! (which changes the file the shell shares). Their state is saved before
//! the VMM starts and put back when it ends, however it ends.

use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// The signals a running machine passes on to its workload.
pub const FORWARDED: [libc::c_int; 6] = [
    libc::SIGINT,
    libc::SIGTERM,
    libc::SIGHUP,
    libc::SIGQUIT,
    libc::SIGUSR1,
    libc::SIGUSR2,
];

/// How long the workload has to end after the timeout's SIGTERM before the
/// machine is forced down.
pub const GRACE: Duration = Duration::from_secs(3);

/// The exit code after a timeout.
pub const TIMEOUT_EXIT: i32 = crate::exit::TIMED_OUT as i32;
/// The exit code when a second SIGINT forced the machine down.
pub const INTERRUPT_EXIT: i32 = crate::exit::INTERRUPTED as i32;

/// Parses a timeout in seconds (`90`, `2.5`), more than zero, at most
/// 999,999,999. (Decimal digits by hand: float parsing and printing would
/// add kilobytes to the stub.)
pub fn parse_timeout(s: &str) -> Result<Duration, String> {
    let bad = || format!("{s:?} is not a timeout: give seconds, more than 0 (like 30 or 2.5)");
    let (whole, frac) = s.split_once('.').unwrap_or((s, ""));
    let digits = |t: &str| t.bytes().all(|b| b.is_ascii_digit());
    if (whole.is_empty() && frac.is_empty()) || !digits(whole) || !digits(frac) || whole.len() > 9 {
        return Err(bad());
    }
    let secs = whole
        .bytes()
        .fold(0u64, |v, b| v * 10 + u64::from(b - b'0'));
    let nanos = frac
        .bytes()
        .chain(std::iter::repeat(b'0'))
        .take(9)
        .fold(0u32, |v, b| v * 10 + u32::from(b - b'0'));
    let d = Duration::new(secs, nanos);
    if d.is_zero() {
        return Err(bad());
    }
    Ok(d)
}

/// `d` in seconds as the user would write it (`30`, `2.5`).
fn seconds(d: Duration) -> String {
    let mut s = d.as_secs().to_string();
    let ms = d.subsec_millis();
    if ms != 0 {
        s.push_str(format!(".{ms:03}").trim_end_matches('0'));
    }
    s
}

/// The state of this process's stdio that the VMM changes: the terminal
/// modes of the descriptor libkrun makes raw, and every descriptor's file
/// status flags.
pub struct Stdio {
    termios: Option<(RawFd, libc::termios)>,
    flags: Vec<(RawFd, libc::c_int)>,
}

impl Stdio {
    /// Saves it.
    pub fn save() -> Stdio {
        let mut termios = None;
        let mut flags = Vec::new();
        for fd in 0..3 {
            // SAFETY: F_GETFL on a descriptor number; no memory is passed.
            let f = unsafe { libc::fcntl(fd, libc::F_GETFL) };
            if f >= 0 {
                flags.push((fd, f));
            }
            if termios.is_none() {
                // SAFETY: termios is plain data; tcgetattr fills it or fails.
                let mut t: libc::termios = unsafe { std::mem::zeroed() };
                // SAFETY: t is a valid, writable termios.
                if unsafe { libc::tcgetattr(fd, &mut t) } == 0 {
                    termios = Some((fd, t));
                }
            }
        }
        Stdio { termios, flags }
    }

    /// Whether a terminal's modes were saved.
    pub fn has_terminal(&self) -> bool {
        self.termios.is_some()
    }

    /// Puts it back (best effort: there is nobody left to tell).
    pub fn restore(&self) {
        if let Some((fd, t)) = &self.termios {
            // SAFETY: t is the termios tcgetattr gave us.
            unsafe { libc::tcsetattr(*fd, libc::TCSANOW, t) };
        }
        for &(fd, f) in &self.flags {
            // SAFETY: F_SETFL with an int; no memory is passed.
            unsafe { libc::fcntl(fd, libc::F_SETFL, f) };
        }
    }
}

fn sigset(signals: &[libc::c_int]) -> libc::sigset_t {
    // SAFETY: sigset_t is plain data, initialised by sigemptyset.
    let mut set: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: set is a valid sigset_t; the signal numbers are valid.
    unsafe {
        libc::sigemptyset(&mut set);
        for &s in signals {
            libc::sigaddset(&mut set, s);
        }
    }
    set
}

fn mask(how: libc::c_int, signals: &[libc::c_int]) -> io::Result<()> {
    let set = sigset(signals);
    // SAFETY: set is a valid sigset_t; the old mask is not wanted.
    let r = unsafe { libc::pthread_sigmask(how, &set, std::ptr::null_mut()) };
    if r != 0 {
        return Err(io::Error::from_raw_os_error(r));
    }
    Ok(())
}

/// The signals the supervisor waits for: the forwarded ones and SIGCHLD.
fn watched() -> Vec<libc::c_int> {
    let mut s = FORWARDED.to_vec();
    s.push(libc::SIGCHLD);
    s
}

/// Blocks the signals a [`SignalRelay`] watches in the calling thread (and
/// the threads and processes it starts from now on).
pub fn block_watched() -> io::Result<()> {
    mask(libc::SIG_BLOCK, &watched())
}

/// The host end of the control channel before the guest connects.
pub struct Channel {
    dir: tempfile::TempDir,
    listener: UnixListener,
}

impl Channel {
    pub fn new() -> io::Result<Channel> {
        // 0700: only this user can connect (or replace the socket).
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::Builder::new()
            .prefix("smolvm-control-")
            .permissions(std::fs::Permissions::from_mode(0o700))
            .tempdir_in(crate::dirs::sockets())?;
        let listener = UnixListener::bind(dir.path().join("control.sock"))?;
        Ok(Channel { dir, listener })
    }

    /// The socket libkrun connects the guest's vsock port to.
    pub fn socket(&self) -> PathBuf {
        self.dir.path().join("control.sock")
    }
}

/// What the supervisor loop saw end the machine.
#[derive(Debug, PartialEq, Eq)]
pub enum Ending {
    /// The VMM exited with this status (the workload's, or 128 + signal if
    /// the VMM itself was killed).
    Exited(i32),
    /// The timeout expired (the VMM is gone: it ended in the grace period or
    /// was killed after it).
    TimedOut,
    /// A second SIGINT: the VMM was killed.
    Interrupted,
}

impl Ending {
    pub fn code(&self) -> i32 {
        match self {
            Ending::Exited(c) => *c,
            Ending::TimedOut => TIMEOUT_EXIT,
            Ending::Interrupted => INTERRUPT_EXIT,
        }
    }
}

/// One line on stderr, ending in CR LF on a terminal (which may be raw).
fn say(msg: &str) {
    // SAFETY: isatty on a descriptor number.
    let eol = if unsafe { libc::isatty(2) } == 1 {
        "\r\n"
    } else {
        "\n"
    };
    let _ = io::stderr().write_all(format!("smolvm: {msg}{eol}").as_bytes());
}

fn exit_status(status: libc::c_int) -> i32 {
    if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else if libc::WIFSIGNALED(status) {
        128 + libc::WTERMSIG(status)
    } else {
        125
    }
}

/// The VMM's status if it has ended.
fn reap(child: libc::pid_t, block: bool) -> Option<i32> {
    let mut status = 0;
    loop {
        // SAFETY: status is a valid int to write.
        let r = unsafe { libc::waitpid(child, &mut status, if block { 0 } else { libc::WNOHANG }) };
        if r == child {
            return Some(exit_status(status));
        }
        if r < 0 && io::Error::last_os_error().kind() == io::ErrorKind::Interrupted {
            continue;
        }
        return None;
    }
}

fn kill_and_reap(child: libc::pid_t) {
    // SAFETY: kill on our own child's pid.
    unsafe { libc::kill(child, libc::SIGKILL) };
    let _ = reap(child, true);
}

/// Reads once from the guest's end of the control channel, which poll
/// found readable, and says whether the guest is still there. This is all
/// the supervisor ever does with bytes from the guest: the guest init
/// writes nothing to the channel, so readable means it closed (or the read
/// failed); anything it does send is dropped unread, at most 64 bytes a
/// read, never kept. The `control_channel` fuzz target drives it.
pub fn guest_still_connected(conn: &mut impl Read) -> bool {
    let mut buf = [0u8; 64];
    matches!(conn.read(&mut buf), Ok(n) if n > 0)
}

/// The supervisor's side of a running machine (see the module docs).
pub struct SignalRelay {
    child: libc::pid_t,
    signals: OwnedFd,
    channel: Option<Channel>,
    conn: Option<UnixStream>,
    /// Signals that arrived before the guest connected.
    pending: Vec<u8>,
    /// The guest closed the channel: nothing more can be forwarded.
    gone: bool,
    timeout: Option<Duration>,
}

impl SignalRelay {
    /// Watches `child` (the VMM). The calling thread must have the
    /// forwarded signals and SIGCHLD blocked (every thread, so that none of
    /// them is delivered elsewhere).
    pub fn new(
        child: libc::pid_t,
        channel: Channel,
        timeout: Option<Duration>,
    ) -> io::Result<SignalRelay> {
        let set = sigset(&watched());
        // SAFETY: set is a valid sigset_t; -1 asks for a new descriptor.
        let fd = unsafe { libc::signalfd(-1, &set, libc::SFD_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(SignalRelay {
            child,
            // SAFETY: signalfd returned a new descriptor we own.
            signals: unsafe { OwnedFd::from_raw_fd(fd) },
            channel: Some(channel),
            conn: None,
            pending: Vec::new(),
            gone: false,
            timeout,
        })
    }

    fn forward(&mut self, sig: libc::c_int) {
        let byte = u8::try_from(sig).expect("signal numbers fit a byte");
        if let Some(c) = &mut self.conn {
            if c.write_all(&[byte]).is_err() {
                self.conn = None;
                self.gone = true;
            }
        } else if !self.gone {
            self.pending.push(byte);
        }
    }

    /// Runs until the VMM is gone; says how it ended.
    pub fn run(mut self) -> Ending {
        let start = Instant::now();
        let mut deadline = self.timeout.map(|t| start + t);
        let mut timed_out = false;
        let mut interrupts = 0u32;
        loop {
            let mut fds = vec![libc::pollfd {
                fd: self.signals.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            }];
            if let Some(ch) = &self.channel {
                fds.push(libc::pollfd {
                    fd: ch.listener.as_raw_fd(),
                    events: libc::POLLIN,
                    revents: 0,
                });
            } else if let Some(c) = &self.conn {
                fds.push(libc::pollfd {
                    fd: c.as_raw_fd(),
                    events: libc::POLLIN,
                    revents: 0,
                });
            }
            let wait_ms = deadline.map_or(-1, |d| {
                let left = d.saturating_duration_since(Instant::now());
                // Rounded up, so the deadline has passed when poll returns.
                i32::try_from(left.as_millis() + 1).unwrap_or(i32::MAX)
            });
            let nfds = libc::nfds_t::try_from(fds.len()).expect("two at most");
            // SAFETY: fds is a valid array of nfds pollfds.
            let r = unsafe { libc::poll(fds.as_mut_ptr(), nfds, wait_ms) };
            if r < 0 {
                if io::Error::last_os_error().kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                // Nothing left to watch with: wait for the VMM as before.
                return Ending::Exited(reap(self.child, true).unwrap_or(125));
            }
            if deadline.is_some_and(|d| Instant::now() >= d) {
                if timed_out {
                    kill_and_reap(self.child);
                    return Ending::TimedOut;
                }
                timed_out = true;
                let t = self.timeout.expect("a deadline comes from a timeout");
                say(&format!(
                    "timed out after {}s: stopping the machine (SIGTERM to the workload, forced down {}s later; exit code {TIMEOUT_EXIT})",
                    seconds(t),
                    GRACE.as_secs()
                ));
                self.forward(libc::SIGTERM);
                deadline = Some(Instant::now() + GRACE);
            }
            if fds[0].revents & libc::POLLIN != 0 {
                // SAFETY: signalfd_siginfo is plain data.
                let mut info: libc::signalfd_siginfo = unsafe { std::mem::zeroed() };
                let len = std::mem::size_of::<libc::signalfd_siginfo>();
                // SAFETY: reads at most len bytes into info.
                let n = unsafe {
                    libc::read(
                        self.signals.as_raw_fd(),
                        (&mut info as *mut libc::signalfd_siginfo).cast(),
                        len,
                    )
                };
                if usize::try_from(n).ok() == Some(len) {
                    let sig = libc::c_int::try_from(info.ssi_signo).unwrap_or(0);
                    if sig == libc::SIGCHLD {
                        if let Some(code) = reap(self.child, false) {
                            return if timed_out {
                                Ending::TimedOut
                            } else {
                                Ending::Exited(code)
                            };
                        }
                    } else if sig == libc::SIGINT && interrupts >= 1 {
                        say("interrupted again: forcing the machine down");
                        kill_and_reap(self.child);
                        return Ending::Interrupted;
                    } else {
                        if sig == libc::SIGINT {
                            interrupts += 1;
                        }
                        self.forward(sig);
                    }
                }
            }
            if fds.len() > 1 && fds[1].revents != 0 {
                if let Some(ch) = self.channel.take() {
                    match ch.listener.accept() {
                        Ok((mut conn, _)) => {
                            if !self.pending.is_empty() && conn.write_all(&self.pending).is_err() {
                                self.gone = true;
                            } else {
                                self.conn = Some(conn);
                            }
                            self.pending.clear();
                            // Connected: the socket's directory has done its job.
                            drop(ch);
                        }
                        Err(_) => self.channel = Some(ch),
                    }
                } else if let Some(c) = &mut self.conn {
                    if !guest_still_connected(c) {
                        self.conn = None;
                        self.gone = true;
                    }
                }
            }
        }
    }
}

/// The two sides of a started machine (see the module docs).
pub enum Side {
    /// This process, the one the person started: supervise the VMM child.
    Supervisor(VmmChild),
    /// The child: configure libkrun with this control socket and enter the VM.
    Vmm { control_socket: PathBuf },
}

/// The supervisor's hold on the VMM child.
pub struct VmmChild {
    pid: libc::pid_t,
    channel: Channel,
    stdio: Stdio,
}

/// Splits this process in two (see the module docs). Signals are blocked in
/// both before the fork (and before libkrun or the network supervisor start
/// any thread), so none is lost while the child starts the VM.
pub fn fork_vmm() -> io::Result<Side> {
    let channel = Channel::new()?;
    let stdio = Stdio::save();
    block_watched()?;
    // SAFETY: getpid has no preconditions.
    let parent = unsafe { libc::getpid() };
    // SAFETY: this process runs one thread here (the VMM is not configured
    // yet); the child only continues this thread's work.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        let e = io::Error::last_os_error();
        let _ = mask(libc::SIG_UNBLOCK, &watched());
        return Err(e);
    }
    if pid > 0 {
        return Ok(Side::Supervisor(VmmChild {
            pid,
            channel,
            stdio,
        }));
    }
    // SAFETY: plain prctl; no pointers.
    unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) };
    // SAFETY: getppid has no preconditions.
    if unsafe { libc::getppid() } != parent {
        // The supervisor died before the line above.
        // SAFETY: ending the process.
        unsafe { libc::_exit(1) };
    }
    let control_socket = channel.socket();
    // The directory is the supervisor's to remove; this process keeps
    // neither it nor the listener.
    let Channel { dir, listener } = channel;
    drop(listener);
    std::mem::forget(dir);
    mask(libc::SIG_UNBLOCK, &[libc::SIGCHLD])?;
    one_malloc_arena();
    Ok(Side::Vmm { control_socket })
}

/// The VMM's threads (the vCPU, the devices, the socket supervisor) share
/// the main allocation arena instead of glibc making one per thread (a
/// 128 MiB reservation trimmed by two munmaps and an mprotect each): the
/// vCPU thread's arena sat between `krun_start_enter` and the first
/// `KVM_RUN`. Small allocations still come from each thread's cache.
fn one_malloc_arena() {
    #[cfg(target_env = "gnu")]
    // SAFETY: mallopt only sets an allocator parameter; no thread but this
    // one exists yet.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 1);
    }
}

impl VmmChild {
    /// Supervises the VMM until it ends, restores the terminal and exits
    /// with its status (the workload's, or 124/130).
    pub fn supervise(self, timeout: Option<Duration>) -> ! {
        let VmmChild {
            pid,
            channel,
            stdio,
        } = self;
        // A background supervisor must still be able to restore the terminal.
        let _ = mask(libc::SIG_BLOCK, &[libc::SIGTTOU]);
        let ending = match SignalRelay::new(pid, channel, timeout) {
            Ok(s) => s.run(),
            Err(e) => {
                say(&format!(
                    "cannot watch for signals ({e}); they will not reach the workload"
                ));
                Ending::Exited(reap(pid, true).unwrap_or(125))
            }
        };
        stdio.restore();
        std::process::exit(ending.code());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timeouts_are_positive_seconds() {
        assert_eq!(parse_timeout("30"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_timeout("2.5"), Ok(Duration::from_millis(2500)));
        assert_eq!(parse_timeout(".25"), Ok(Duration::from_millis(250)));
        assert_eq!(
            parse_timeout("999999999.999999999"),
            Ok(Duration::new(999_999_999, 999_999_999))
        );
        assert_eq!(seconds(Duration::from_secs(30)), "30");
        assert_eq!(seconds(Duration::from_millis(2500)), "2.5");
        assert_eq!(seconds(Duration::from_millis(300)), "0.3");
        for bad in [
            "0",
            "0.000",
            "-1",
            "5m",
            "",
            ".",
            "inf",
            "NaN",
            "1e10",
            "1000000000",
            " 5",
            "1.2.3",
        ] {
            let e = parse_timeout(bad).unwrap_err();
            assert!(e.contains("give seconds, more than 0"), "{bad}: {e}");
        }
    }

    #[test]
    fn the_guest_is_gone_at_end_of_file_or_a_failed_read() {
        let mut sent: &[u8] = &[7; 100];
        assert!(guest_still_connected(&mut sent));
        assert_eq!(sent.len(), 36, "64 bytes a read, dropped");
        assert!(guest_still_connected(&mut sent));
        assert!(!guest_still_connected(&mut sent), "end of file");
        struct Failing;
        impl Read for Failing {
            fn read(&mut self, _: &mut [u8]) -> io::Result<usize> {
                Err(io::Error::from(io::ErrorKind::ConnectionReset))
            }
        }
        assert!(!guest_still_connected(&mut Failing));
    }

    #[test]
    fn exit_statuses_map_like_a_shell() {
        assert_eq!(exit_status(7 << 8), 7);
        assert_eq!(exit_status(libc::SIGKILL), 137);
        assert_eq!(Ending::TimedOut.code(), 124);
        assert_eq!(Ending::Interrupted.code(), 130);
        assert_eq!(Ending::Exited(3).code(), 3);
    }

    #[test]
    fn the_control_socket_is_private_and_removed_with_the_channel() {
        use std::os::unix::fs::PermissionsExt;
        let ch = Channel::new().unwrap();
        let sock = ch.socket();
        let dir = sock.parent().unwrap().to_path_buf();
        let mode = std::fs::metadata(&dir).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o700);
        assert!(UnixStream::connect(&sock).is_ok());
        drop(ch);
        assert!(!dir.exists());
    }

    /// A pseudo-terminal pair for the terminal tests.
    fn pty() -> (OwnedFd, OwnedFd) {
        let (mut master, mut slave) = (-1, -1);
        // SAFETY: openpty writes two descriptors; name, termios and size may be NULL.
        let r = unsafe {
            libc::openpty(
                &mut master,
                &mut slave,
                std::ptr::null_mut(),
                std::ptr::null(),
                std::ptr::null(),
            )
        };
        assert_eq!(r, 0, "openpty: {}", io::Error::last_os_error());
        // SAFETY: openpty returned two new descriptors we own.
        unsafe { (OwnedFd::from_raw_fd(master), OwnedFd::from_raw_fd(slave)) }
    }

    #[test]
    fn raw_mode_and_nonblocking_are_undone() {
        let (_master, slave) = pty();
        let fd = slave.as_raw_fd();
        // SAFETY: termios is plain data.
        let mut before: libc::termios = unsafe { std::mem::zeroed() };
        // SAFETY: valid pointer to a termios.
        assert_eq!(unsafe { libc::tcgetattr(fd, &mut before) }, 0);
        // SAFETY: F_GETFL, no memory.
        let flags_before = unsafe { libc::fcntl(fd, libc::F_GETFL) };
        let saved = Stdio {
            termios: Some((fd, before)),
            flags: vec![(fd, flags_before)],
        };
        // What libkrun does to the terminal.
        let mut raw = before;
        // SAFETY: raw is a valid termios; fd is our pty.
        unsafe {
            libc::cfmakeraw(&mut raw);
            assert_eq!(libc::tcsetattr(fd, libc::TCSANOW, &raw), 0);
            libc::fcntl(fd, libc::F_SETFL, flags_before | libc::O_NONBLOCK);
        }
        saved.restore();
        // SAFETY: as above.
        let mut after: libc::termios = unsafe { std::mem::zeroed() };
        // SAFETY: valid pointer to a termios.
        assert_eq!(unsafe { libc::tcgetattr(fd, &mut after) }, 0);
        assert_eq!(after.c_lflag, before.c_lflag);
        assert_eq!(after.c_iflag, before.c_iflag);
        assert_eq!(after.c_oflag, before.c_oflag);
        assert_ne!(after.c_lflag & libc::ICANON, 0, "canonical mode is back");
        // SAFETY: F_GETFL, no memory.
        let flags_after = unsafe { libc::fcntl(fd, libc::F_GETFL) };
        assert_eq!(flags_after & libc::O_NONBLOCK, 0, "blocking again");
    }
}

//! The host side of signals and the timeout (runtime::control), with a real
//! child process in the VMM's place and a thread in the guest init's: it
//! connects to the control socket and sends each signal number it reads to
//! the child, as init.c does to the workload's process group.
//!
//! Its own binary without the test harness: the supervisor needs the
//! signals blocked in every thread of the process, and the checks send
//! signals to the whole process.

mod one_test;

use std::io::Read;
use std::os::unix::net::UnixStream;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use smolvm_runtime::control::{block_watched, Channel, Ending, SignalRelay, GRACE};

/// A shell in the VMM's place running `script`; a fake guest init for it.
/// `connect_after`: how long the fake guest takes to connect (boot time).
fn machine(
    script: &str,
    timeout: Option<Duration>,
    connect_after: Duration,
) -> (Child, SignalRelay) {
    let child = Command::new("/bin/sh")
        .args(["-c", script])
        .spawn()
        .expect("spawn /bin/sh");
    let pid = i32::try_from(child.id()).expect("pid");
    let channel = Channel::new().expect("control channel");
    let socket = channel.socket();
    std::thread::spawn(move || {
        std::thread::sleep(connect_after);
        let Ok(mut conn) = UnixStream::connect(&socket) else {
            return;
        };
        let mut byte = [0u8; 1];
        while conn.read_exact(&mut byte).is_ok() {
            // SAFETY: kill on the test's own child.
            unsafe { libc::kill(pid, libc::c_int::from(byte[0])) };
        }
    });
    let sup = SignalRelay::new(pid, channel, timeout).expect("supervisor");
    (child, sup)
}

/// Sends `signals` to this process, `gap` apart, starting after `delay`.
fn send_later(signals: &'static [libc::c_int], delay: Duration, gap: Duration) {
    std::thread::spawn(move || {
        std::thread::sleep(delay);
        for &s in signals {
            // SAFETY: kill on our own process.
            unsafe { libc::kill(libc::getpid(), s) };
            std::thread::sleep(gap);
        }
    });
}

/// The shell is ready when it has written this file (its traps are set).
fn wait_ready(path: &std::path::Path) {
    let t = Instant::now();
    while !path.exists() {
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "the shell never got ready"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn main() {
    if one_test::answered_list() {
        return;
    }
    block_watched().expect("block the watched signals");
    let dir = tempfile::tempdir().unwrap();
    let out = |name: &str| dir.path().join(name);
    let sh_loop = "while :; do sleep 0.05; done";

    // Each forwarded signal reaches the workload; SIGTERM's trap decides the code.
    let log = out("log");
    let ready = out("ready");
    let script = format!(
        "for s in INT HUP QUIT USR1 USR2; do trap \"echo $s >>{log}\" $s; done; trap 'echo TERM >>{log}; exit 7' TERM; touch {ready}; {sh_loop}",
        log = log.display(),
        ready = ready.display()
    );
    let (_child, sup) = machine(&script, None, Duration::ZERO);
    std::thread::spawn({
        let ready = ready.clone();
        move || {
            wait_ready(&ready);
            send_later(
                &[
                    libc::SIGINT,
                    libc::SIGHUP,
                    libc::SIGQUIT,
                    libc::SIGUSR1,
                    libc::SIGUSR2,
                    libc::SIGTERM,
                ],
                Duration::ZERO,
                Duration::from_millis(300),
            );
        }
    });
    assert_eq!(sup.run(), Ending::Exited(7), "the workload's own code");
    assert_eq!(
        std::fs::read_to_string(&log).unwrap(),
        "INT\nHUP\nQUIT\nUSR1\nUSR2\nTERM\n",
        "every signal arrived, in order"
    );
    println!("ok: signals forwarded, exit code the workload's");

    // Signals before the guest connects wait for it.
    let ready = out("ready2");
    let script = format!("trap 'exit 9' TERM; touch {}; {sh_loop}", ready.display());
    let (_child, sup) = machine(&script, None, Duration::from_millis(800));
    let r = ready.clone();
    std::thread::spawn(move || {
        wait_ready(&r);
        send_later(&[libc::SIGTERM], Duration::ZERO, Duration::ZERO);
    });
    assert_eq!(
        sup.run(),
        Ending::Exited(9),
        "a pending signal is delivered"
    );
    println!("ok: a signal before the guest connects is delivered when it does");

    // A second SIGINT forces the machine down.
    let ready = out("ready3");
    let script = format!("trap '' INT; touch {}; {sh_loop}", ready.display());
    let (mut child, sup) = machine(&script, None, Duration::ZERO);
    let r = ready.clone();
    std::thread::spawn(move || {
        wait_ready(&r);
        send_later(
            &[libc::SIGINT, libc::SIGINT],
            Duration::ZERO,
            Duration::from_millis(300),
        );
    });
    assert_eq!(sup.run(), Ending::Interrupted);
    assert_eq!(Ending::Interrupted.code(), 130);
    assert!(
        child.try_wait().is_err(),
        "killed and reaped by the supervisor"
    );
    println!("ok: a second SIGINT forces it down (130)");

    // The timeout: SIGTERM first; a workload that ends on it ends the run at once.
    let started = Instant::now();
    let (_child, sup) = machine(
        &format!("trap 'exit 0' TERM; {sh_loop}"),
        Some(Duration::from_millis(500)),
        Duration::ZERO,
    );
    assert_eq!(sup.run(), Ending::TimedOut);
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(500) && took < Duration::from_millis(500) + GRACE,
        "ended by its SIGTERM, within the grace period: {took:?}"
    );
    println!("ok: timeout, graceful ({took:?})");

    // ...and one that ignores it is forced down after the grace period.
    let started = Instant::now();
    let (_child, sup) = machine(
        &format!("trap '' TERM; {sh_loop}"),
        Some(Duration::from_millis(300)),
        Duration::ZERO,
    );
    assert_eq!(sup.run(), Ending::TimedOut);
    assert_eq!(Ending::TimedOut.code(), 124);
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(300) + GRACE && took < Duration::from_millis(300) + GRACE * 2,
        "forced down after the grace period: {took:?}"
    );
    println!("ok: timeout, forced after the grace period ({took:?})");
}

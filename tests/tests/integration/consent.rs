//! The person's consent for their current directory (issue 21,
//! SECURITY-CHECKLIST item 22), on the release stub with `--smolvm-dry-run`
//! (verify and prepare, no VM): a machine packed with `share_cwd = true`
//! gets the directory with `--smolvm-share-cwd` or `SMOLVM_SHARE_CWD=1`,
//! with a remembered "always", or with the answer to the question asked on a
//! real terminal (a pty that is the stub's controlling terminal); without
//! any of them, exit 2 and one line naming the flag.

use crate::common;

use std::io::{Read, Write};
use std::os::fd::{FromRawFd, OwnedFd};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{expect, Machine};

const SMOLFILE: &str = "share_cwd = true\n";

/// What a run on the pty showed and how it ended.
struct OnTerminal {
    code: i32,
    /// Everything written to the terminal (the prompt, the echoed answer,
    /// errors).
    screen: String,
}

/// A pty pair: (master, slave).
fn openpty() -> (OwnedFd, OwnedFd) {
    let (mut master, mut slave) = (-1, -1);
    // SAFETY: openpty writes two descriptors into the two ints; the name,
    // termios and winsize pointers may be null.
    let rc = unsafe {
        libc::openpty(
            &mut master,
            &mut slave,
            std::ptr::null_mut(),
            std::ptr::null(),
            std::ptr::null(),
        )
    };
    assert_eq!(rc, 0, "openpty: {}", std::io::Error::last_os_error());
    // SAFETY: both descriptors were just opened by openpty and are owned
    // by nobody else.
    unsafe { (OwnedFd::from_raw_fd(master), OwnedFd::from_raw_fd(slave)) }
}

/// Runs `cmd` with stdin, stdout and stderr on a new pty that is its
/// controlling terminal (so `/dev/tty` is the pty), types `typed`, and
/// collects the screen until the stub exits.
fn on_terminal(mut cmd: Command, typed: &str) -> OnTerminal {
    use std::os::unix::process::CommandExt;
    let (master, slave) = openpty();
    let io = || Stdio::from(slave.try_clone().unwrap());
    cmd.stdin(io()).stdout(io()).stderr(io());
    // SAFETY: only async-signal-safe calls between fork and exec: a new
    // session, then the pty (stdin) as its controlling terminal.
    unsafe {
        cmd.pre_exec(|| {
            if libc::setsid() < 0 || libc::ioctl(0, libc::TIOCSCTTY, 0) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = loop {
        match cmd.spawn() {
            Err(e) if e.kind() == std::io::ErrorKind::ExecutableFileBusy => {
                std::thread::sleep(Duration::from_millis(20));
            }
            r => break r.unwrap(),
        }
    };
    // Only the child holds the slave now: its exit ends the reads (EIO).
    drop(cmd);
    drop(slave);
    let mut master = std::fs::File::from(master);
    // Typed ahead: the terminal keeps the line until the stub reads it.
    master.write_all(typed.as_bytes()).unwrap();
    let mut reader = master.try_clone().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut screen = Vec::new();
        let mut buf = [0u8; 4096];
        while let Ok(n @ 1..) = reader.read(&mut buf) {
            screen.extend_from_slice(&buf[..n]);
        }
        let _ = tx.send(screen);
    });
    let Ok(screen) = rx.recv_timeout(Duration::from_secs(60)) else {
        let _ = child.kill();
        panic!("the stub did not finish on the terminal");
    };
    let status = child.wait().unwrap();
    OnTerminal {
        code: status.code().expect("exited, not killed"),
        screen: String::from_utf8_lossy(&screen).into_owned(),
    }
}

/// A machine and a packed `notes` that asks for the current directory, and
/// a project directory to start it from.
fn setup() -> Option<(Machine, std::path::PathBuf, std::path::PathBuf)> {
    let m = Machine::new()?;
    let app = m.pack_with("notes", "1.0.0", "test", SMOLFILE);
    let project = m.path("home/project");
    std::fs::create_dir_all(&project).unwrap();
    Some((m, app, project))
}

fn consent_file(m: &Machine) -> std::path::PathBuf {
    m.path("state/smolvm/consent.json")
}

fn key_id(m: &Machine, name: &str) -> String {
    smolvm_signing::PublicKey::read_file(&m.pubkey(name))
        .unwrap()
        .key_id()
        .to_string()
}

/// In `dir`, on the pty, answering `typed`.
fn ask(m: &Machine, app: &Path, dir: &Path, args: &[&str], typed: &str) -> OnTerminal {
    let mut cmd = m.command(app, args);
    cmd.current_dir(dir);
    on_terminal(cmd, typed)
}

/// No terminal (stdin is /dev/null, as from a file manager or a pipe) and
/// no flag: refused before anything else, one line naming the flag; the
/// flag and the environment variable share without a question.
#[test]
fn without_a_terminal_the_flag_decides() {
    let Some((m, app, project)) = setup() else {
        return;
    };
    let here = |c: &mut Command| {
        c.current_dir(&project);
    };
    let err = expect(
        &m.run_with(&app, &[], here),
        2,
        &["no terminal", "--smolvm-share-cwd", "SMOLVM_SHARE_CWD=1"],
    );
    assert!(err.contains(project.to_str().unwrap()), "{err}");
    assert!(err.contains(&key_id(&m, "test")), "{err}");
    // With the flag, or the variable: prepared (the share needs Landlock;
    // a kernel without it would refuse for that reason, not this one).
    let flags = ["--smolvm-share-cwd", "--smolvm-allow-no-landlock"];
    expect(&m.run_with(&app, &flags, here), 0, &[]);
    let env = |c: &mut Command| {
        c.current_dir(&project).env("SMOLVM_SHARE_CWD", "1");
    };
    expect(
        &m.run_with(&app, &["--smolvm-allow-no-landlock"], env),
        0,
        &[],
    );
    // Neither is remembered.
    assert!(!consent_file(&m).exists());
    expect(&m.run_with(&app, &[], here), 2, &["--smolvm-share-cwd"]);
    // A machine that does not ask is not affected.
    let plain = m.pack("plain", "1.0.0", "test");
    expect(&m.run_with(&plain, &[], here), 0, &[]);
}

/// On a terminal the person is asked, naming the directory, the tool and
/// its signer; "y" shares once, "n" (or just Enter) refuses with exit 2.
#[test]
fn on_a_terminal_the_answer_decides() {
    let Some((m, app, project)) = setup() else {
        return;
    };
    let args = ["--smolvm-allow-no-landlock"];
    let t = ask(&m, &app, &project, &args, "y\n");
    assert_eq!(t.code, 0, "{}", t.screen);
    for needle in [
        "notes",
        &key_id(&m, "test"),
        project.to_str().unwrap(),
        "[y]es once / [a]lways for this directory / [N]o",
    ] {
        assert!(t.screen.contains(needle), "{needle:?} not in: {}", t.screen);
    }
    assert!(!consent_file(&m).exists(), "once is not remembered");
    for typed in ["n\n", "\n", "whatever\n"] {
        let t = ask(&m, &app, &project, &args, typed);
        assert_eq!(t.code, 2, "{typed:?}: {}", t.screen);
        assert!(t.screen.contains("not shared; "), "{}", t.screen);
    }
}

/// "a" remembers the answer for this signer, name and directory: a later
/// start without a terminal shares it, another directory or another signer
/// of the same name is asked again (here: refused, no terminal).
#[test]
fn always_is_remembered_per_signer_name_and_directory() {
    let Some((m, app, project)) = setup() else {
        return;
    };
    let args = ["--smolvm-allow-no-landlock"];
    let t = ask(&m, &app, &project, &args, "a\n");
    assert_eq!(t.code, 0, "{}", t.screen);
    let state = std::fs::read_to_string(consent_file(&m)).unwrap();
    assert!(state.contains(project.to_str().unwrap()), "{state}");
    assert!(state.contains(&format!("{} notes", key_id(&m, "test"))));
    let in_dir = |dir: &Path| {
        let dir = dir.to_path_buf();
        move |c: &mut Command| {
            c.current_dir(&dir);
        }
    };
    expect(&m.run_with(&app, &args, in_dir(&project)), 0, &[]);
    let elsewhere = m.path("home/elsewhere");
    std::fs::create_dir_all(&elsewhere).unwrap();
    expect(
        &m.run_with(&app, &args, in_dir(&elsewhere)),
        2,
        &["--smolvm-share-cwd"],
    );
    // Another signer's `notes` (trusted for this run): not its consent.
    let others = m.pack_with("notes", "1.0.0", "other", SMOLFILE);
    let trusted = m.key_flag("other");
    expect(
        &m.run_with(&others, &[&trusted, args[0]], in_dir(&project)),
        2,
        &["--smolvm-share-cwd", &key_id(&m, "other")],
    );
}

/// The home directory (and `/`) is never remembered: only "once" is offered
/// there, and "a" counts once.
#[test]
fn home_is_never_remembered() {
    let Some((m, app, _)) = setup() else {
        return;
    };
    let home = m.path("home");
    let args = ["--smolvm-allow-no-landlock"];
    let t = ask(&m, &app, &home, &args, "a\n");
    assert_eq!(t.code, 0, "{}", t.screen);
    assert!(
        t.screen.contains("[y]es once / [N]o (never remembered"),
        "{}",
        t.screen
    );
    assert!(!consent_file(&m).exists());
    let here = |c: &mut Command| {
        c.current_dir(&home);
    };
    expect(&m.run_with(&app, &args, here), 2, &["--smolvm-share-cwd"]);
    let t = ask(&m, &app, Path::new("/"), &args, "a\n");
    assert_eq!(t.code, 0, "{}", t.screen);
    assert!(!consent_file(&m).exists());
}

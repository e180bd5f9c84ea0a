//! A double-click (issue 21, runtime::double_click), on the release stub
//! with `SMOLVM_DRY_RUN=1` (verify and prepare, no VM): started with no
//! arguments, no terminal and a desktop session, a packed tool reopens
//! itself in a terminal emulator whose window shows its output and exit
//! code and stays open until Enter; with no terminal emulator it says so in
//! a notification, and so do its own errors.
//!
//! Two kinds of check:
//! * native: the terminal emulator is a test double (a script standing in
//!   for `$TERMINAL` that records the arguments it was given and runs the
//!   command, as a terminal does); what is under test is ours: when the
//!   tool reopens, with what, in what order it tries terminals, that the
//!   window's command shows the exit code, and the notifications;
//! * real: a headless X server (Xvfb) and a real xterm (both installed by
//!   scripts/setup-desktop.sh; skipped where they are missing unless
//!   `SMOLVM_REQUIRE_DESKTOP=1`): the window opens, shows the tool's output
//!   and exit code, stays open, and closes on Enter; a screenshot is kept in
//!   target/desktop-logs.

use crate::common;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::Machine;

/// A scratch directory of programs for `PATH`.
fn script(dir: &Path, name: &str, body: &str) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, format!("#!/bin/sh\n{body}")).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

/// A stand-in terminal emulator: records its arguments (one a line) in
/// `LOG.argv`, drops the `-e` a terminal takes, and runs the command with
/// its output in `LOG.screen` (no terminal: the reopened start must not
/// reopen again) and no input (Enter, at once).
fn fake_terminal(dir: &Path, name: &str, log: &Path) -> PathBuf {
    let log = log.display();
    script(
        dir,
        name,
        &format!(
            "printf '%s\\n' \"$@\" > '{log}.argv'\n\
             [ \"$1\" = -e ] && shift\n\
             exec \"$@\" < /dev/null > '{log}.screen' 2>&1\n"
        ),
    )
}

/// A double-click-like start of `exe`: no arguments, stdin /dev/null,
/// stdout and stderr pipes, an X display named, this machine's directories,
/// `PATH` as given. `SMOLVM_DRY_RUN=1`: no VM.
fn double_click(m: &Machine, exe: &Path, path: &str, change: impl Fn(&mut Command)) -> Output {
    let mut cmd = Command::new(exe);
    cmd.env_clear()
        .env("PATH", path)
        .env("DISPLAY", ":77")
        .env("HOME", m.path("home"))
        .env("XDG_CONFIG_HOME", m.path("config"))
        .env("XDG_STATE_HOME", m.path("state"))
        .env("XDG_DATA_HOME", m.path("data"))
        .env("SMOLVM_CACHE_DIR", m.path("cache"))
        .env("SMOLVM_DRY_RUN", "1")
        .stdin(Stdio::null());
    change(&mut cmd);
    let start = Instant::now();
    let out = smolvm_tests::output_when_not_busy(&mut cmd, exe);
    assert!(start.elapsed() < Duration::from_secs(60), "took too long");
    out
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

/// The reopened start runs in the terminal: the window's command is the
/// hold script around this very executable, it shows the output and the
/// exit code, and the double-clicked process ends 0.
#[test]
fn a_double_click_reopens_in_the_terminal_and_shows_the_exit_code() {
    let Some(m) = Machine::new() else {
        return;
    };
    let app = m.pack("notes", "1.0.0", "test");
    let bin = m.path("bin");
    let log = m.path("term");
    let term = fake_terminal(&bin, "myterm", &log);
    let out = double_click(&m, &app, "/usr/bin:/bin", |c| {
        c.env("TERMINAL", &term).env("SMOLVM_TRACE", "1");
    });
    assert_eq!(common::code(&out), 0, "{}", common::err_text(&out));
    let argv = read(&log.with_extension("argv"));
    let lines: Vec<&str> = argv.lines().collect();
    assert_eq!(lines[..3], ["-e", "/bin/sh", "-c"], "{argv}");
    assert!(argv.contains(&format!("\n{}\n", app.display())), "{argv}");
    let screen = read(&log.with_extension("screen"));
    // The start's own output (SMOLVM_TRACE) reached the window, then how
    // it ended.
    assert!(screen.contains("dry run done"), "{screen}");
    assert!(
        screen
            .ends_with("[notes-1.0.0-test exited with code 0. Press Enter to close this window.]"),
        "{screen}"
    );
}

/// What used to go nowhere: a refused signature is shown in the window,
/// with exit code 1.
#[test]
fn an_error_before_the_machine_starts_is_shown_in_the_window() {
    let Some(m) = Machine::new() else {
        return;
    };
    let app = m.pack("notes", "1.0.0", "test");
    let log = m.path("term");
    let term = fake_terminal(&m.path("bin"), "myterm", &log);
    let out = double_click(&m, &app, "/usr/bin:/bin", |c| {
        c.env("TERMINAL", &term)
            .env("SMOLVM_TRUSTED_KEYS", m.pubkey("other"));
    });
    assert_eq!(common::code(&out), 0, "{}", common::err_text(&out));
    let screen = read(&log.with_extension("screen"));
    assert!(screen.contains("notes-1.0.0-test: "), "{screen}");
    assert!(screen.contains("exited with code 1."), "{screen}");
}

/// Arguments, a terminal on any descriptor, no display, or
/// `SMOLVM_NO_TERMINAL=1`: not a double-click, the terminal is not opened.
#[test]
fn other_starts_do_not_reopen() {
    let Some(m) = Machine::new() else {
        return;
    };
    let app = m.pack("notes", "1.0.0", "test");
    let log = m.path("term");
    let term = fake_terminal(&m.path("bin"), "myterm", &log);
    let argv = log.with_extension("argv");
    type Change = dyn Fn(&mut Command);
    let cases: [(&str, &Change); 3] = [
        ("an argument", &|c| {
            c.arg("--smolvm-dry-run");
        }),
        ("no display", &|c| {
            c.env_remove("DISPLAY");
        }),
        ("SMOLVM_NO_TERMINAL=1", &|c| {
            c.env("SMOLVM_NO_TERMINAL", "1");
        }),
    ];
    for (what, change) in cases {
        let out = double_click(&m, &app, "/usr/bin:/bin", |c| {
            c.env("TERMINAL", &term);
            change(c);
        });
        assert_eq!(common::code(&out), 0, "{what}: {}", common::err_text(&out));
        assert!(!argv.exists(), "{what}: the terminal was opened");
    }
    // Wayland alone is a desktop too.
    let out = double_click(&m, &app, "/usr/bin:/bin", |c| {
        c.env("TERMINAL", &term)
            .env_remove("DISPLAY")
            .env("WAYLAND_DISPLAY", "wayland-0");
    });
    assert_eq!(common::code(&out), 0, "{}", common::err_text(&out));
    assert!(argv.exists(), "Wayland: the terminal was not opened");
}

/// A terminal that fails before it runs the command (here `$TERMINAL`,
/// which cannot open its display) is passed over for the next one in the
/// documented order; one that is not installed is skipped.
#[test]
fn a_terminal_that_fails_is_passed_over_for_the_next() {
    let Some(m) = Machine::new() else {
        return;
    };
    let app = m.pack("notes", "1.0.0", "test");
    let bin = m.path("bin");
    let broken = script(
        &bin,
        "broken-term",
        "echo 'cannot open display' >&2\nexit 1\n",
    );
    // Only xterm (the last of the list) is "installed".
    let log = m.path("xterm");
    fake_terminal(&bin, "xterm", &log);
    // /usr/bin may hold real terminals: PATH has only what the test put
    // there and what the hold script runs.
    let tools = m.path("tools");
    std::fs::create_dir_all(&tools).unwrap();
    let rm = ["/usr/bin/rm", "/bin/rm"]
        .iter()
        .find(|p| Path::new(p).exists())
        .expect("rm");
    std::os::unix::fs::symlink(rm, tools.join("rm")).unwrap();
    let path = format!("{}:{}", bin.display(), tools.display());
    let out = double_click(&m, &app, &path, |c| {
        c.env("TERMINAL", &broken);
    });
    assert_eq!(common::code(&out), 0, "{}", common::err_text(&out));
    let screen = read(&log.with_extension("screen"));
    assert!(screen.contains("exited with code 0."), "{screen}");
}

/// No terminal emulator at all: a notification says so, the start goes on
/// without a terminal, and its own error is notified too; when
/// notify-send fails (no notification daemon), zenity shows it.
#[test]
fn without_a_terminal_emulator_it_is_never_silent() {
    let Some(m) = Machine::new() else {
        return;
    };
    let app = m.pack("notes", "1.0.0", "test");
    let bin = m.path("bin");
    let notes = m.path("notified");
    script(
        &bin,
        "notify-send",
        &format!("printf '%s\\n' \"$@\" >> '{}'\n", notes.display()),
    );
    let path = bin.display().to_string();
    // Prepared (dry run): only the missing terminal is told.
    let out = double_click(&m, &app, &path, |_| {});
    assert_eq!(common::code(&out), 0, "{}", common::err_text(&out));
    let told = read(&notes);
    assert!(told.contains("notes-1.0.0-test could not start"), "{told}");
    assert!(
        told.contains("no terminal window could be opened") && told.contains("$TERMINAL"),
        "{told}"
    );
    // A refused signature: notified as well, and the exit code is 1.
    std::fs::remove_file(&notes).unwrap();
    let out = double_click(&m, &app, &path, |c| {
        c.env("SMOLVM_TRUSTED_KEYS", m.pubkey("other"));
    });
    assert_eq!(common::code(&out), 1, "{}", common::err_text(&out));
    let told = read(&notes);
    let errors: Vec<&str> = told
        .lines()
        .filter(|l| l.starts_with("notes-1.0.0-test: "))
        .collect();
    assert_eq!(errors.len(), 2, "{told}");
    assert!(errors[1].contains("key"), "{told}");
    // notify-send fails: zenity is next.
    script(&bin, "notify-send", "exit 1\n");
    let dialog = m.path("dialog");
    script(
        &bin,
        "zenity",
        &format!("printf '%s\\n' \"$@\" >> '{}'\n", dialog.display()),
    );
    let out = double_click(&m, &app, &path, |_| {});
    assert_eq!(common::code(&out), 0, "{}", common::err_text(&out));
    let shown = read(&dialog);
    assert!(shown.starts_with("--error\n--no-markup\n"), "{shown}");
    assert!(
        shown.contains("no terminal window could be opened"),
        "{shown}"
    );
}

// ---------------------------------------------------------------- real X

/// `Some(programs)` when Xvfb, xterm, xwininfo, xwd and xdotool are all
/// installed (scripts/setup-desktop.sh), else a skip (a failure with
/// `SMOLVM_REQUIRE_DESKTOP=1`).
fn desktop_tools() -> bool {
    let missing: Vec<&str> = ["Xvfb", "xterm", "xwininfo", "xwd", "xdotool"]
        .into_iter()
        .filter(|t| {
            !std::env::var_os("PATH")
                .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(t).is_file()))
        })
        .collect();
    if missing.is_empty() {
        return true;
    }
    let why = format!("{} missing (scripts/setup-desktop.sh)", missing.join(", "));
    assert!(
        std::env::var_os("SMOLVM_REQUIRE_DESKTOP").is_none(),
        "{why}"
    );
    eprintln!("SKIPPING: {why}");
    false
}

/// A headless X server on a free display, killed on drop.
struct Xvfb {
    child: std::process::Child,
    display: String,
}

impl Xvfb {
    fn start() -> Xvfb {
        // -displayfd: the server picks a free display and writes its number.
        let mut child = Command::new("Xvfb")
            .args([
                "-displayfd",
                "1",
                "-screen",
                "0",
                "800x600x24",
                "-nolisten",
                "tcp",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("Xvfb");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let number = line.trim();
        assert!(!number.is_empty(), "Xvfb did not say its display");
        Xvfb {
            child,
            display: format!(":{number}"),
        }
    }

    fn run(&self, program: &str, args: &[&str]) -> Output {
        Command::new(program)
            .args(args)
            .env("DISPLAY", &self.display)
            .output()
            .unwrap_or_else(|e| panic!("{program}: {e}"))
    }
}

impl Drop for Xvfb {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Polls `check` until it holds or `secs` pass.
fn wait_for(secs: u64, mut check: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + Duration::from_secs(secs);
    while Instant::now() < end {
        if check() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    check()
}

/// The real thing: on an X display, a double-click-like start (no
/// arguments, no terminal) opens an xterm window that shows the tool's
/// error (a refused signature) and its exit code, and stays open; Enter
/// closes it, and the started process then ends. xterm writes what it
/// shows to a log (its `logging` resource, through XENVIRONMENT), and a
/// screenshot of the screen is kept in target/desktop-logs.
#[test]
fn under_x_a_real_terminal_window_shows_the_output_and_waits_for_enter() {
    if !desktop_tools() {
        return;
    }
    let Some(m) = Machine::new() else {
        return;
    };
    let app = m.pack("notes", "1.0.0", "test");
    let x = Xvfb::start();
    let screen_log = m.path("xterm.log");
    let resources = m.path("xterm.resources");
    std::fs::write(
        &resources,
        format!(
            "XTerm*logging: true\nXTerm*logFile: {}\nXTerm*title: smolvm-desktop-test\n",
            screen_log.display()
        ),
    )
    .unwrap();
    let mut cmd = Command::new(&app);
    cmd.env_clear()
        .env("PATH", "/usr/local/bin:/usr/bin:/bin")
        .env("DISPLAY", &x.display)
        .env("TERMINAL", "xterm")
        .env("XENVIRONMENT", &resources)
        .env("HOME", m.path("home"))
        .env("XDG_CONFIG_HOME", m.path("config"))
        .env("XDG_STATE_HOME", m.path("state"))
        .env("XDG_DATA_HOME", m.path("data"))
        .env("SMOLVM_CACHE_DIR", m.path("cache"))
        .env("SMOLVM_DRY_RUN", "1")
        // What used to go nowhere: a refused signature.
        .env("SMOLVM_TRUSTED_KEYS", m.pubkey("other"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut started = loop {
        match cmd.spawn() {
            Err(e) if e.kind() == std::io::ErrorKind::ExecutableFileBusy => {
                std::thread::sleep(Duration::from_millis(20));
            }
            r => break r.unwrap(),
        }
    };
    let shown = wait_for(60, || read(&screen_log).contains("Press Enter"));
    let text = read(&screen_log);
    let tree = String::from_utf8_lossy(&x.run("xwininfo", &["-root", "-tree"]).stdout).into_owned();
    // The screenshot, for the log.
    let logs = smolvm_tests::repo().join("target/desktop-logs");
    std::fs::create_dir_all(&logs).unwrap();
    let shot = logs.join("double-click.xwd");
    let shot_arg = shot.to_str().unwrap();
    let xwd = x.run("xwd", &["-root", "-silent", "-out", shot_arg]);
    eprintln!(
        "screenshot: {} (xwd: {}); window text:\n{text}",
        shot.display(),
        xwd.status
    );
    if !shown {
        let _ = started.kill();
        panic!("no window showed the exit code: log {text:?}, windows {tree}");
    }
    assert!(
        tree.contains("smolvm-desktop-test"),
        "no xterm window: {tree}"
    );
    assert!(text.contains("notes-1.0.0-test: "), "{text}");
    assert!(
        text.contains("[notes-1.0.0-test exited with code 1. Press Enter to close this window.]"),
        "{text}"
    );
    // The window stays: the started process waits for it.
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        started.try_wait().unwrap().is_none(),
        "the window closed by itself"
    );
    // Enter, typed into the window (focused first: there is no window
    // manager to give it the focus), closes it.
    let found = x.run("xdotool", &["search", "--name", "smolvm-desktop-test"]);
    let window = String::from_utf8_lossy(&found.stdout)
        .lines()
        .next()
        .map(str::to_string);
    let window = window.unwrap_or_else(|| panic!("xdotool found no window: {found:?}"));
    let key = x.run(
        "xdotool",
        &["windowfocus", "--sync", &window, "key", "Return"],
    );
    assert!(key.status.success(), "xdotool: {key:?}");
    let closed = wait_for(30, || started.try_wait().unwrap().is_some());
    if !closed {
        let _ = started.kill();
    }
    assert!(closed, "Enter did not close the window");
    let status = started.wait().unwrap();
    assert_eq!(status.code(), Some(0));
}

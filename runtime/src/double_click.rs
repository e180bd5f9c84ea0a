//! A double-click in a file manager (issue 21): a command-line tool started
//! with no terminal would print its output and its errors (no KVM, a refused
//! signature) nowhere. So a start that looks like one reopens itself in the
//! person's terminal emulator, and the window stays open after the workload
//! ends, showing its exit code, until Enter.
//!
//! ```text
//! no arguments, and none of stdin/stdout/stderr a terminal,
//! and a desktop session (WAYLAND_DISPLAY or DISPLAY set),
//! and SMOLVM_NO_TERMINAL is not 1                  -> a double-click
//!
//! a double-click: the first terminal emulator of [`candidates`] that runs
//!   TERMINAL <its syntax> /bin/sh -c HOLD sh EXE NAME MARKER
//!   (HOLD runs EXE, prints "NAME exited with code N", waits for Enter)
//!   -> this process waits for the terminal and exits 0
//! no terminal emulator could be started
//!   -> a notification (notify-send, zenity, kdialog) says so, and the start
//!      goes on here: its own errors are notified too (never silent)
//! ```
//!
//! The reopened start runs with `SMOLVM_NO_TERMINAL=1`, so it can never
//! reopen itself again (a "terminal" that gives it no tty would loop).
//!
//! The terminal emulators, in the order tried, with how each is told the
//! command: `$TERMINAL` (the convention of i3 and sway; `-e` unless it is one
//! of the named ones below), `x-terminal-emulator -e` (Debian's choice of
//! the system's terminal), `xdg-terminal-exec` (the freedesktop proposal),
//! then [`KNOWN`] in its order. A terminal that cannot be started (not
//! installed) is skipped; one that ends with a failure before the hold
//! script ran (it removes MARKER first thing) is skipped too, and one that
//! ran it is never retried, so the workload never runs twice.

use std::ffi::{OsStr, OsString};
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// Set to `1`: never reopen in a terminal (also set for the reopened start).
pub const NO_TERMINAL_VAR: &str = "SMOLVM_NO_TERMINAL";

/// Terminal emulators tried after `$TERMINAL`, `x-terminal-emulator` and
/// `xdg-terminal-exec`, in this order (common desktops' defaults first, the
/// X11 classics last), each with the arguments that put a command (program
/// and arguments, not one string) after them.
pub const KNOWN: &[(&str, &[&str])] = &[
    ("gnome-terminal", &["--"]),
    ("konsole", &["-e"]),
    ("xfce4-terminal", &["-x"]),
    ("mate-terminal", &["-x"]),
    ("kitty", &[]),
    ("alacritty", &["-e"]),
    ("foot", &[]),
    ("wezterm", &["start", "--"]),
    ("terminator", &["-x"]),
    ("urxvt", &["-e"]),
    ("st", &["-e"]),
    ("xterm", &["-e"]),
];

/// Runs `$1` (the executable, no arguments), shows how it ended, and waits
/// for Enter. `$2`: the name shown; `$3`: the marker file it removes first
/// (so the caller knows the terminal ran it). SIGINT and SIGQUIT (Ctrl-C in
/// the window) are caught, not ignored: the workload gets them as usual (an
/// ignored signal would stay ignored across exec) and the window stays.
const HOLD_SCRIPT: &str = r#"rm -f -- "$3"
trap : INT QUIT
"$1"
code=$?
printf '\n[%s exited with code %d. Press Enter to close this window.]' "$2" "$code"
read -r _
exit 0"#;

/// Whether this start is a double-click: see the module doc. `var` reads
/// the environment.
pub fn is_double_click(
    has_args: bool,
    any_terminal: bool,
    var: impl Fn(&str) -> Option<OsString>,
) -> bool {
    let set = |name: &str| var(name).is_some_and(|v| !v.is_empty());
    !has_args
        && !any_terminal
        && (set("WAYLAND_DISPLAY") || set("DISPLAY"))
        && var(NO_TERMINAL_VAR).is_none_or(|v| v != "1")
}

/// One way to open a window running a command.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Terminal {
    pub program: OsString,
    /// What comes between the program and the command.
    pub before_command: Vec<&'static str>,
}

/// The terminal emulators to try, in order; `terminal_var` is `$TERMINAL`.
pub fn candidates(terminal_var: Option<OsString>) -> Vec<Terminal> {
    let known = |program: &OsStr| {
        let base = Path::new(program).file_name()?;
        KNOWN
            .iter()
            .find(|(name, _)| OsStr::new(name) == base)
            .map(|(_, before)| before.to_vec())
    };
    let mut list = Vec::new();
    if let Some(t) = terminal_var.filter(|t| !t.is_empty()) {
        let before_command = known(&t).unwrap_or_else(|| vec!["-e"]);
        list.push(Terminal {
            program: t,
            before_command,
        });
    }
    list.push(Terminal {
        program: "x-terminal-emulator".into(),
        before_command: vec!["-e"],
    });
    list.push(Terminal {
        program: "xdg-terminal-exec".into(),
        before_command: vec![],
    });
    list.extend(KNOWN.iter().map(|(name, before)| Terminal {
        program: (*name).into(),
        before_command: before.to_vec(),
    }));
    list
}

/// The command a terminal runs: the hold script around `exe`.
pub fn hold_command(exe: &Path, name: &str, marker: &Path) -> Vec<OsString> {
    vec![
        "/bin/sh".into(),
        "-c".into(),
        HOLD_SCRIPT.into(),
        "sh".into(),
        exe.into(),
        name.into(),
        marker.into(),
    ]
}

/// What [`on_start`] decided.
pub enum Start {
    /// Not a double-click: start here as usual.
    Here,
    /// A double-click with no terminal emulator: start here, and notify
    /// the start's own errors ([`notify`]), as no one sees stderr.
    HereNotifyingErrors,
    /// Reopened in a terminal, which has ended: exit with this code.
    Reopened(u8),
}

/// Reopens this executable in a terminal when the start is a double-click
/// (the edge: reads the process's arguments, descriptors and environment).
/// `name` is what the window and the notifications call the tool.
pub fn on_start(name: &str) -> Start {
    let has_args = std::env::args_os().nth(1).is_some();
    let any_terminal = std::io::stdin().is_terminal()
        || std::io::stdout().is_terminal()
        || std::io::stderr().is_terminal();
    if !is_double_click(has_args, any_terminal, |v| std::env::var_os(v)) {
        return Start::Here;
    }
    let failed = match reopen(name, &candidates(std::env::var_os("TERMINAL"))) {
        Ok(code) => return Start::Reopened(code),
        Err(why) => why,
    };
    notify(
        name,
        &format!(
            "{name}: no terminal window could be opened ({failed}); set $TERMINAL to your terminal emulator, or start {name} from a terminal (SMOLVM_NO_TERMINAL=1 starts it without one)"
        ),
    );
    Start::HereNotifyingErrors
}

/// Tries each terminal in turn; `Ok(code)` once one ran the hold script (or
/// succeeded), else why none did.
fn reopen(name: &str, terminals: &[Terminal]) -> Result<u8, String> {
    let exe = std::env::current_exe().map_err(|e| format!("cannot find this program: {e}"))?;
    let mut tried = Vec::new();
    for t in terminals {
        let marker = Marker::new().map_err(|e| format!("cannot create a temporary file: {e}"))?;
        let mut cmd = Command::new(&t.program);
        cmd.args(&t.before_command)
            .args(hold_command(&exe, name, &marker.0))
            .env(NO_TERMINAL_VAR, "1")
            .stdin(Stdio::null());
        let shown = Path::new(&t.program).display().to_string();
        let status = match cmd.status() {
            Ok(s) => s,
            Err(e) => {
                tried.push(format!("{shown}: {e}"));
                continue;
            }
        };
        // The hold script ran (it removed the marker): the workload ran
        // there; never start it a second time.
        if status.success() || !marker.0.exists() {
            return Ok(0);
        }
        tried.push(format!("{shown}: {status}"));
    }
    Err(tried.join("; "))
}

/// A temporary file the hold script removes: proof that it ran.
struct Marker(PathBuf);

impl Marker {
    fn new() -> std::io::Result<Marker> {
        let (_, path) = tempfile::Builder::new()
            .prefix("smolvm-terminal-")
            .tempfile()?
            .keep()
            .map_err(|e| e.error)?;
        Ok(Marker(path))
    }
}

impl Drop for Marker {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Shows `message` where a person without a terminal sees it: the first of
/// `notify-send`, `zenity`, `kdialog` that works, and stderr (a session's
/// log) always. Returns whether a notification was shown.
pub fn notify(name: &str, message: &str) -> bool {
    eprintln!("{message}");
    let title = format!("{name} could not start");
    let tries: [(&str, Vec<&str>); 3] = [
        ("notify-send", vec!["--urgency=critical", &title, message]),
        (
            "zenity",
            vec![
                "--error",
                "--no-markup",
                "--title",
                &title,
                "--text",
                message,
            ],
        ),
        ("kdialog", vec!["--title", &title, "--error", message]),
    ];
    tries.iter().any(|(program, args)| {
        Command::new(program)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env<'a>(vars: &'a [(&str, &str)]) -> impl Fn(&str) -> Option<OsString> + 'a {
        move |name| {
            vars.iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| OsString::from(v))
        }
    }

    #[test]
    fn only_a_bare_start_without_terminal_on_a_desktop_is_a_double_click() {
        let x11 = [("DISPLAY", ":0")];
        let wayland = [("WAYLAND_DISPLAY", "wayland-0")];
        assert!(is_double_click(false, false, env(&x11)));
        assert!(is_double_click(false, false, env(&wayland)));
        assert!(!is_double_click(true, false, env(&x11)), "arguments");
        assert!(!is_double_click(false, true, env(&x11)), "a terminal");
        assert!(!is_double_click(false, false, env(&[])), "no desktop");
        assert!(!is_double_click(false, false, env(&[("DISPLAY", "")])));
        let off = [("DISPLAY", ":0"), (NO_TERMINAL_VAR, "1")];
        assert!(!is_double_click(false, false, env(&off)));
        let not_off = [("DISPLAY", ":0"), (NO_TERMINAL_VAR, "0")];
        assert!(is_double_click(false, false, env(&not_off)));
    }

    #[test]
    fn terminal_comes_first_with_its_own_syntax() {
        let list = candidates(Some("/opt/bin/gnome-terminal".into()));
        assert_eq!(list[0].program, "/opt/bin/gnome-terminal");
        assert_eq!(list[0].before_command, ["--"]);
        assert_eq!(list[1].program, "x-terminal-emulator");
        assert_eq!(list[2].program, "xdg-terminal-exec");
        assert_eq!(list.last().unwrap().program, "xterm");
        // An unknown one gets the common -e.
        assert_eq!(candidates(Some("myterm".into()))[0].before_command, ["-e"]);
        // Unset or empty: the defaults only.
        assert_eq!(candidates(None), candidates(Some("".into())));
        assert_eq!(candidates(None).len(), KNOWN.len() + 2);
    }

    /// The hold script, run without a terminal: the exit code is shown and
    /// it ends after reading a line; the marker is gone.
    #[test]
    fn the_hold_script_shows_the_exit_code() {
        let t = tempfile::tempdir().unwrap();
        let exe = t.path().join("tool");
        std::fs::write(&exe, "#!/bin/sh\necho working\nexit 3\n").unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&exe, std::fs::Permissions::from_mode(0o755)).unwrap();
        let marker = t.path().join("marker");
        std::fs::write(&marker, "").unwrap();
        let cmd = hold_command(&exe, "tool", &marker);
        let out = Command::new(&cmd[0])
            .args(&cmd[1..])
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert!(out.status.success());
        let text = String::from_utf8(out.stdout).unwrap();
        assert_eq!(
            text,
            "working\n\n[tool exited with code 3. Press Enter to close this window.]"
        );
        assert!(!marker.exists());
    }
}

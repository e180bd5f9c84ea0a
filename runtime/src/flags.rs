//! The runtime flags of a packed executable (`--smolvm-*`), parsed once at
//! the edge into one value.
//!
//! Only the **leading** arguments can be runtime flags: the first argument
//! that is not one ends them, and `--` ends them and is dropped. So a file
//! named `--smolvm-reset-storage` that a glob expands to after a workload
//! argument reaches the workload, never the runtime, and a workload can be
//! given a literal `--smolvm-...` argument (`./tool -- --smolvm-x`).
//!
//! Every value is checked here ([`crate::settings`]'s parsers, which
//! `smolvm pack run` uses for its own spelling of the same settings), so a
//! bad flag is one line and exit 2 before anything else happens.

use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;
use std::time::Duration;

use crate::exit::UsageError;
use crate::settings::{self, RunSettings};

/// What the person asked the executable to do.
#[derive(Debug, PartialEq, Eq)]
pub enum Command {
    /// `--smolvm-help`.
    Help,
    /// `--smolvm-info`: show what is inside, with the run-time settings applied.
    Info(StubFlags),
    /// Verify and boot (or, with `dry_run`, stop right before the VM).
    Run(StubFlags),
    /// `--smolvm-install`: verify, then copy to `~/.local/bin` with a menu
    /// entry (crate::install). The flags give the keys to verify with.
    Install(StubFlags),
    /// `--smolvm-uninstall`: remove what `--smolvm-install` put in place.
    Uninstall,
}

/// The runtime flags, checked, and the workload's arguments.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct StubFlags {
    pub settings: RunSettings,
    /// Key files (`--smolvm-key=`), in the order given.
    pub keys: Vec<PathBuf>,
    pub min_version: Option<String>,
    pub timeout: Option<Duration>,
    pub publish: Vec<String>,
    pub ssh_agent: bool,
    /// Share the current directory with a machine that asks for it
    /// (`--smolvm-share-cwd`; crate::consent).
    pub share_cwd: bool,
    pub reset_storage: bool,
    pub dry_run: bool,
    /// Serve host shares without Landlock on a kernel that lacks it
    /// (`--smolvm-allow-no-landlock`; crate::sandbox).
    pub allow_no_landlock: bool,
    /// What the workload gets.
    pub args: Vec<OsString>,
}

fn usage(msg: String) -> UsageError {
    UsageError(msg)
}

/// Splits `--smolvm-NAME=VALUE` into `(NAME, Some(VALUE))`, and
/// `--smolvm-NAME` into `(NAME, None)`; `None` for any other argument.
fn split(arg: &OsStr) -> Option<(&[u8], Option<&[u8]>)> {
    let rest = arg.as_bytes().strip_prefix(b"--smolvm-")?;
    Some(match rest.iter().position(|&b| b == b'=') {
        Some(i) => (&rest[..i], Some(&rest[i + 1..])),
        None => (rest, None),
    })
}

/// Which of the commands that are not a run was asked for.
#[derive(Default)]
struct Modes {
    info: bool,
    install: bool,
    uninstall: bool,
}

impl Modes {
    /// The command these modes and flags make; at most one mode, and
    /// installing takes no workload arguments.
    fn command(self, f: StubFlags) -> Result<Command, UsageError> {
        let Modes {
            info,
            install,
            uninstall,
        } = self;
        if [info, install, uninstall].iter().filter(|b| **b).count() > 1 {
            return Err(usage(
                "give one of --smolvm-info, --smolvm-install and --smolvm-uninstall".into(),
            ));
        }
        if (install || uninstall) && !f.args.is_empty() {
            return Err(usage(format!(
                "--smolvm-{}install takes no arguments for the workload",
                if uninstall { "un" } else { "" }
            )));
        }
        Ok(if uninstall {
            Command::Uninstall
        } else if install {
            Command::Install(f)
        } else if info {
            Command::Info(f)
        } else {
            Command::Run(f)
        })
    }
}

/// The switch a flag that takes no value sets; `None` for a flag that
/// takes one (or an unknown one).
fn switch_of<'a>(name: &[u8], f: &'a mut StubFlags, modes: &'a mut Modes) -> Option<&'a mut bool> {
    Some(match name {
        b"info" => &mut modes.info,
        b"install" => &mut modes.install,
        b"uninstall" => &mut modes.uninstall,
        b"dry-run" => &mut f.dry_run,
        b"ssh-agent" => &mut f.ssh_agent,
        b"share-cwd" => &mut f.share_cwd,
        b"reset-storage" => &mut f.reset_storage,
        b"allow-no-landlock" => &mut f.allow_no_landlock,
        _ => return None,
    })
}

/// Parses the arguments after the program name.
pub fn parse(args: impl IntoIterator<Item = OsString>) -> Result<Command, UsageError> {
    let mut f = StubFlags::default();
    let mut modes = Modes::default();
    let mut args = args.into_iter();
    for arg in args.by_ref() {
        if arg == "--" {
            break;
        }
        let Some((name, value)) = split(&arg) else {
            f.args.push(arg);
            break;
        };
        let shown = String::from_utf8_lossy(arg.as_bytes()).into_owned();
        if name == b"help" {
            no_value(value, &shown)?;
            return Ok(Command::Help);
        }
        if let Some(switch) = switch_of(name, &mut f, &mut modes) {
            no_value(value, &shown)?;
            *switch = true;
        } else {
            set_valued(&mut f, name, value, &shown)?;
        }
    }
    f.args.extend(args);
    modes.command(f)
}

/// A switch given a value (`--smolvm-info=yes`) is a mistake, not a yes.
fn no_value(value: Option<&[u8]>, shown: &str) -> Result<(), UsageError> {
    match value {
        None => Ok(()),
        Some(_) => Err(usage(format!("{shown}: this flag takes no value"))),
    }
}

/// Applies a flag that takes a value (`--smolvm-NAME=VALUE`).
fn set_valued(
    f: &mut StubFlags,
    name: &[u8],
    value: Option<&[u8]>,
    shown: &str,
) -> Result<(), UsageError> {
    let text = || -> Result<&str, UsageError> {
        let v = value.ok_or_else(|| {
            usage(format!(
                "{shown}: give a value after '=' (see --smolvm-help)"
            ))
        })?;
        std::str::from_utf8(v).map_err(|_| usage(format!("{shown}: the value is not UTF-8")))
    };
    match name {
        b"env" => f.settings.env.push(settings::parse_env(text()?)?),
        b"cpus" => {
            f.settings.cpus = Some(settings::parse_cpus(text()?, settings::host_cpus())?);
        }
        b"memory" => {
            f.settings.memory_mib =
                Some(settings::parse_memory(text()?, settings::host_memory_mib())?);
        }
        b"workdir" => f.settings.workdir = Some(settings::parse_workdir(text()?)?),
        b"volume" => f.settings.volumes.push(settings::parse_volume(text()?)?),
        b"publish" => f.publish.push(text()?.to_string()),
        b"min-version" => match text()? {
            "" => {
                return Err(usage(format!(
                    "{shown}: give a version, like --smolvm-min-version=1.2.0"
                )))
            }
            v => f.min_version = Some(v.to_string()),
        },
        b"timeout" => {
            f.timeout = Some(
                crate::control::parse_timeout(text()?)
                    .map_err(|e| usage(format!("{shown}: {e}")))?,
            );
        }
        b"key" => {
            let v = value.filter(|v| !v.is_empty()).ok_or_else(|| {
                usage(format!("{shown}: give a public key file, like --smolvm-key=signer.pub"))
            })?;
            f.keys.push(PathBuf::from(OsStr::from_bytes(v)));
        }
        _ => {
            return Err(usage(format!(
                "unknown runtime option {shown} (see --smolvm-help; to give it to the workload, put -- before it)"
            )))
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(args: &[&str]) -> StubFlags {
        match parse(args.iter().map(OsString::from)).unwrap() {
            Command::Run(f) => f,
            other => panic!("{args:?}: {other:?}"),
        }
    }

    fn err(args: &[&str]) -> String {
        parse(args.iter().map(OsString::from)).unwrap_err().0
    }

    fn strings(v: &[OsString]) -> Vec<&str> {
        v.iter().map(|a| a.to_str().unwrap()).collect()
    }

    #[test]
    fn only_leading_flags_are_the_runtimes() {
        let f = run(&["--smolvm-dry-run", "ls", "--smolvm-reset-storage", "x"]);
        assert!(f.dry_run);
        assert!(
            !f.reset_storage,
            "a flag after the first argument is the workload's"
        );
        assert_eq!(strings(&f.args), ["ls", "--smolvm-reset-storage", "x"]);
        // A glob that expands to a file named like a flag, after an argument.
        let f = run(&["notes.txt", "--smolvm-reset-storage"]);
        assert!(!f.reset_storage);
        assert_eq!(strings(&f.args), ["notes.txt", "--smolvm-reset-storage"]);
    }

    #[test]
    fn double_dash_ends_the_flags_and_is_dropped() {
        let f = run(&["--smolvm-ssh-agent", "--", "--smolvm-help", "--"]);
        assert!(f.ssh_agent);
        assert_eq!(strings(&f.args), ["--smolvm-help", "--"]);
        let f = run(&["--"]);
        assert!(f.args.is_empty());
        // Only the first `--` is the runtime's.
        let f = run(&["echo", "--", "x"]);
        assert_eq!(strings(&f.args), ["echo", "--", "x"]);
    }

    #[test]
    fn values_are_checked_and_named() {
        assert!(err(&["--smolvm-timeout=0"]).contains("--smolvm-timeout=0"));
        assert!(err(&["--smolvm-timeout"]).contains("give a value"));
        assert!(err(&["--smolvm-min-version="]).contains("give a version"));
        assert!(err(&["--smolvm-key="]).contains("give a public key file"));
        assert!(err(&["--smolvm-dry-run=1"]).contains("takes no value"));
        assert!(err(&["--smolvm-bogus"]).contains("unknown runtime option --smolvm-bogus"));
        assert!(
            err(&["--smolvm-cpus=0"]).contains("cpus"),
            "{}",
            err(&["--smolvm-cpus=0"])
        );
        let f = run(&[
            "--smolvm-key=a.pub",
            "--smolvm-key=b.pub",
            "--smolvm-timeout=2.5",
            "--smolvm-publish=8080:80",
            "--smolvm-env=A=1",
            "--smolvm-min-version=1.2.0",
            "--smolvm-allow-no-landlock",
            "--smolvm-share-cwd",
        ]);
        assert_eq!(f.keys, [PathBuf::from("a.pub"), PathBuf::from("b.pub")]);
        assert_eq!(f.timeout, Some(Duration::from_millis(2500)));
        assert_eq!(f.publish, ["8080:80"]);
        assert_eq!(f.settings.env, ["A=1"]);
        assert_eq!(f.min_version.as_deref(), Some("1.2.0"));
        assert!(f.allow_no_landlock);
        assert!(f.share_cwd);
        assert!(err(&["--smolvm-share-cwd=yes"]).contains("takes no value"));
    }

    #[test]
    fn help_and_info() {
        assert_eq!(
            parse(["--smolvm-help", "x"].map(OsString::from)).unwrap(),
            Command::Help
        );
        assert!(matches!(
            parse(["--smolvm-info"].map(OsString::from)).unwrap(),
            Command::Info(_)
        ));
        // After the first argument, --smolvm-help is the workload's.
        assert!(matches!(
            parse(["sh", "--smolvm-help"].map(OsString::from)).unwrap(),
            Command::Run(_)
        ));
    }

    #[test]
    fn install_and_uninstall() {
        let p = |a: &[&str]| parse(a.iter().map(OsString::from));
        assert!(matches!(
            p(&["--smolvm-install"]).unwrap(),
            Command::Install(_)
        ));
        match p(&["--smolvm-key=k.pub", "--smolvm-install"]).unwrap() {
            Command::Install(f) => assert_eq!(f.keys, [PathBuf::from("k.pub")]),
            other => panic!("{other:?}"),
        }
        assert_eq!(p(&["--smolvm-uninstall"]).unwrap(), Command::Uninstall);
        assert!(p(&["--smolvm-install", "x"])
            .unwrap_err()
            .0
            .contains("no arguments"));
        assert!(p(&["--smolvm-install", "--smolvm-uninstall"])
            .unwrap_err()
            .0
            .contains("give one of"));
        // After the first argument: the workload's.
        assert!(matches!(
            p(&["x", "--smolvm-install"]).unwrap(),
            Command::Run(_)
        ));
    }

    #[test]
    fn non_utf8_arguments_pass_through() {
        let odd = OsString::from(OsStr::from_bytes(b"\xff\xfe"));
        let f = match parse([odd.clone()]).unwrap() {
            Command::Run(f) => f,
            other => panic!("{other:?}"),
        };
        assert_eq!(f.args, [odd]);
        let flag = OsString::from(OsStr::from_bytes(b"--smolvm-env=\xff"));
        assert!(parse([flag]).unwrap_err().0.contains("not UTF-8"));
    }
}

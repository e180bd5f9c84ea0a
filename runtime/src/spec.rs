//! The run spec: what the guest init executes, as handed to it in the file
//! `/.smolvm/spec` (see guest-init/init.c for the reader).
//!
//! Format: NUL-terminated strings: `smolvm-spec-2`, workdir, uid (decimal
//! or empty), gid (decimal or empty), argc, argv..., envc, env..., then
//! records until the end, each a name and its fields:
//!
//! ```text
//!   volume  TAG GUEST-PATH ro|rw   mount virtio-fs TAG at GUEST-PATH (in order)
//!   init    COMMAND                run `/bin/sh -c COMMAND` as root first (in order)
//!   group   GID                    the workload's groups (`setgroups`), in order;
//!                                  without any, just the gid
//! ```
//!
//! The init refuses a record it does not know (host and init ship together:
//! a new record is a new feature on both sides, not a version bump).
//!
//! The guest init reads the spec into a fixed buffer and fixed tables, and
//! the kernel's execve and chdir have limits of their own; a spec past any of
//! them would only fail inside the guest ("run spec has no command", exit
//! 125). [`check_workload`] (at pack time) and [`build_spec`] (on the host,
//! before booting) refuse such a workload with the field and the limit.

use std::ffi::OsString;
use std::os::unix::ffi::OsStrExt;

use smolvm_format::MachineConfig;
use thiserror::Error;

use crate::guest_abi;

/// Encoded spec bytes the guest init accepts: it reads into a 1 MiB buffer
/// and refuses a spec that reaches one byte less.
pub const MAX_SPEC_BYTES: usize = guest_abi::SPEC_BUFFER as usize - 2;
/// Arguments, and separately environment entries, the guest init accepts.
pub const MAX_SPEC_STRINGS: usize = guest_abi::SPEC_STRINGS as usize;
/// Longest single argument or environment entry execve takes (Linux's
/// `MAX_ARG_STRLEN`, 32 pages, counting the terminating NUL).
pub const MAX_ARG_LEN: usize = 32 * 4096 - 1;
/// Longest working directory chdir takes (`PATH_MAX`, counting the NUL).
pub const MAX_WORKDIR_LEN: usize = guest_abi::WORKDIR_LEN as usize;
/// Volume records the guest init takes.
pub const MAX_SPEC_VOLUMES: usize = guest_abi::VOLUMES as usize;
/// `init` commands the guest init takes.
pub const MAX_INIT_COMMANDS: usize = guest_abi::INIT_COMMANDS as usize;
/// The spec's version string; guest-init/init.c checks it.
const SPEC_VERSION: &[u8] = guest_abi::SPEC_VERSION.as_bytes();

/// A workload the guest cannot run as given.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum SpecError {
    #[error(
        "{field} entry {index} contains a NUL byte; a NUL ends a string in the guest, remove it"
    )]
    NulInList { field: &'static str, index: usize },
    #[error("{field} contains a NUL byte; a NUL ends a string in the guest, remove it")]
    Nul { field: &'static str },
    #[error(
        "{field} contains control character {found}; write the value without control characters"
    )]
    ControlChar { field: &'static str, found: String },
    #[error("workdir {found:?} is not an absolute path; start it with '/'")]
    RelativeWorkdir { found: String },
    #[error("workdir is {len} bytes; the guest's limit (PATH_MAX) is {MAX_WORKDIR_LEN}")]
    WorkdirTooLong { len: usize },
    #[error("{field} entry {index} is {len} bytes; the guest kernel takes at most {MAX_ARG_LEN} per argument or variable")]
    StringTooLong {
        field: &'static str,
        index: usize,
        len: usize,
    },
    #[error("{count} {what}; the guest init takes at most {MAX_SPEC_STRINGS}")]
    TooMany { what: &'static str, count: usize },
    #[error("the command line and environment take {bytes} bytes; the guest init takes at most {MAX_SPEC_BYTES}, shorten them")]
    TooLarge { bytes: usize },
}

/// Environment every workload gets unless the config sets the variable.
const DEFAULT_ENV: &[(&str, &str)] = &[
    (
        "PATH",
        "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    ),
    ("HOME", "/root"),
];

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunSpec {
    pub argv: Vec<Vec<u8>>,
    pub env: Vec<Vec<u8>>,
    pub workdir: Vec<u8>,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    /// `init` commands, run in order as root before the workload.
    pub init: Vec<Vec<u8>>,
    /// The workload's groups (`config.groups`: gid first); empty without a user.
    pub groups: Vec<u32>,
    /// virtio-fs shares to mount, in order ([`RunSpec::set_volumes`]).
    pub mounts: Vec<SpecMount>,
}

/// One `volume` record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpecMount {
    /// The virtio-fs tag the host gives the share ([`volume_tag`]).
    pub tag: String,
    pub guest: String,
    pub read_only: bool,
}

/// The virtio-fs tag of the `index`th volume, the same on both sides.
pub fn volume_tag(index: usize) -> String {
    format!("smolvm-vol{index}")
}

/// Checks a packed workload (entrypoint, cmd, env, workdir, user) against
/// what the guest accepts, as it would run with no arguments: NUL bytes,
/// control characters in workdir and user, and the limits above.
pub fn check_workload(config: &MachineConfig) -> Result<(), SpecError> {
    for (field, value) in [("workdir", &config.workdir), ("user", &config.user)] {
        if let Some(c) = value
            .as_deref()
            .and_then(|v| v.chars().find(|c| c.is_control()))
        {
            return Err(if c == '\0' {
                SpecError::Nul { field }
            } else {
                SpecError::ControlChar {
                    field,
                    found: c.escape_unicode().to_string(),
                }
            });
        }
    }
    if let Some(w) = &config.workdir {
        if !w.starts_with('/') {
            return Err(SpecError::RelativeWorkdir { found: w.clone() });
        }
    }
    assemble(config, &[], None).map(|_| ())
}

/// Builds the spec: entrypoint + (the executable's arguments if any, else cmd).
/// The user is the one resolved at pack time (`config.uid`/`gid`): the host
/// never reads the image's files.
/// `term` is the host's `TERM`, which the guest gets unless the machine
/// sets its own.
pub fn build_spec(
    config: &MachineConfig,
    args: &[OsString],
    term: Option<OsString>,
) -> Result<RunSpec, SpecError> {
    assemble(config, args, term)
}

fn assemble(
    config: &MachineConfig,
    args: &[OsString],
    term: Option<OsString>,
) -> Result<RunSpec, SpecError> {
    let argv = workload_argv(config, args)?;
    check_strings("env", &config.env)?;
    let workdir = checked_workdir(config)?;
    let env = workload_env(config, term);
    check_counts(config, &argv, &env)?;
    check_strings("init", &config.init)?;
    let spec = RunSpec {
        argv,
        env,
        workdir: workdir.into_bytes(),
        uid: config.uid,
        gid: config.gid,
        init: config.init.iter().map(|c| c.as_bytes().to_vec()).collect(),
        groups: config.groups.clone(),
        mounts: Vec::new(),
    };
    spec.check_size()?;
    Ok(spec)
}

/// The entrypoint followed by the executable's arguments if any, else by
/// cmd (`/bin/sh` when all are empty), each entry checked.
fn workload_argv(config: &MachineConfig, args: &[OsString]) -> Result<Vec<Vec<u8>>, SpecError> {
    let from_args = !args.is_empty();
    let mut argv: Vec<Vec<u8>> = config
        .entrypoint
        .iter()
        .map(|s| s.as_bytes().to_vec())
        .collect();
    if from_args {
        argv.extend(args.iter().map(|a| a.as_bytes().to_vec()));
    } else {
        argv.extend(config.cmd.iter().map(|s| s.as_bytes().to_vec()));
    }
    if argv.is_empty() {
        argv.push(b"/bin/sh".to_vec());
    }
    let argv_field = |i: usize| {
        if i < config.entrypoint.len() {
            ("entrypoint", i)
        } else if from_args {
            ("argument", i - config.entrypoint.len())
        } else {
            ("cmd", i - config.entrypoint.len())
        }
    };
    for (i, a) in argv.iter().enumerate() {
        let (field, index) = argv_field(i);
        if a.contains(&0) {
            return Err(SpecError::NulInList { field, index });
        }
        if a.len() > MAX_ARG_LEN {
            return Err(SpecError::StringTooLong {
                field,
                index,
                len: a.len(),
            });
        }
    }
    Ok(argv)
}

/// Every entry of a string list (`env`, `init`) without NUL and within
/// [`MAX_ARG_LEN`].
fn check_strings(field: &'static str, list: &[String]) -> Result<(), SpecError> {
    for (index, s) in list.iter().enumerate() {
        if s.contains('\0') {
            return Err(SpecError::NulInList { field, index });
        }
        if s.len() > MAX_ARG_LEN {
            return Err(SpecError::StringTooLong {
                field,
                index,
                len: s.len(),
            });
        }
    }
    Ok(())
}

/// The working directory (`/` when unset), without NUL and within
/// [`MAX_WORKDIR_LEN`].
fn checked_workdir(config: &MachineConfig) -> Result<String, SpecError> {
    let workdir = config.workdir.clone().unwrap_or_else(|| "/".into());
    if workdir.contains('\0') {
        return Err(SpecError::Nul { field: "workdir" });
    }
    if workdir.len() > MAX_WORKDIR_LEN {
        return Err(SpecError::WorkdirTooLong { len: workdir.len() });
    }
    Ok(workdir)
}

/// The defaults the config does not set (HOME from the passwd entry
/// resolved at pack time), the host's `TERM` unless the config sets one,
/// then the config's own entries.
fn workload_env(config: &MachineConfig, term: Option<OsString>) -> Vec<Vec<u8>> {
    let mut env: Vec<Vec<u8>> = Vec::new();
    for (k, v) in DEFAULT_ENV {
        if !config
            .env
            .iter()
            .any(|e| e.split_once('=').is_some_and(|(ek, _)| ek == *k))
        {
            // HOME is the user's passwd home (resolved at pack time).
            let v = match (*k, &config.home) {
                ("HOME", Some(home)) => home.as_str(),
                _ => v,
            };
            env.push(format!("{k}={v}").into_bytes());
        }
    }
    if let Some(term) = term {
        if !config.env.iter().any(|e| e.starts_with("TERM=")) {
            let mut t = b"TERM=".to_vec();
            t.extend_from_slice(term.as_bytes());
            env.push(t);
        }
    }
    env.extend(config.env.iter().map(|e| e.as_bytes().to_vec()));
    env
}

/// The spec's string counts within [`MAX_SPEC_STRINGS`] and
/// [`MAX_INIT_COMMANDS`].
fn check_counts(
    config: &MachineConfig,
    argv: &[Vec<u8>],
    env: &[Vec<u8>],
) -> Result<(), SpecError> {
    if argv.len() > MAX_SPEC_STRINGS {
        return Err(SpecError::TooMany {
            what: "arguments (entrypoint and command)",
            count: argv.len(),
        });
    }
    if env.len() > MAX_SPEC_STRINGS {
        return Err(SpecError::TooMany {
            what: "environment entries",
            count: env.len(),
        });
    }
    if config.init.len() > MAX_INIT_COMMANDS {
        return Err(SpecError::TooMany {
            what: "init commands",
            count: config.init.len(),
        });
    }
    Ok(())
}

impl RunSpec {
    /// Adds the volumes (already checked by [`crate::settings`]) as `volume`
    /// records, tagged by position ([`volume_tag`]).
    pub fn set_volumes(&mut self, volumes: &[crate::settings::Volume]) -> Result<(), SpecError> {
        if volumes.len() > MAX_SPEC_VOLUMES {
            return Err(SpecError::TooMany {
                what: "volumes",
                count: volumes.len(),
            });
        }
        self.mounts = volumes
            .iter()
            .enumerate()
            .map(|(i, v)| SpecMount {
                tag: volume_tag(i),
                guest: v.guest.clone(),
                read_only: v.read_only,
            })
            .collect();
        self.check_size()
    }

    fn check_size(&self) -> Result<(), SpecError> {
        let bytes = self.encoded_len();
        if bytes > MAX_SPEC_BYTES {
            return Err(SpecError::TooLarge { bytes });
        }
        Ok(())
    }

    /// Length of [`RunSpec::encode`]'s output, without building it.
    pub fn encoded_len(&self) -> usize {
        let num = |n: Option<u32>| n.map_or(0, |v| v.to_string().len());
        let strings = |v: &[Vec<u8>]| v.iter().map(|s| s.len() + 1).sum::<usize>();
        let records = self
            .mounts
            .iter()
            .map(|m| "volume".len() + m.tag.len() + m.guest.len() + "ro".len() + 4)
            .sum::<usize>()
            + self
                .init
                .iter()
                .map(|c| "init".len() + c.len() + 2)
                .sum::<usize>()
            + self
                .groups
                .iter()
                .map(|g| "group".len() + g.to_string().len() + 2)
                .sum::<usize>();
        SPEC_VERSION.len()
            + 1
            + self.workdir.len()
            + 1
            + num(self.uid)
            + 1
            + num(self.gid)
            + 1
            + self.argv.len().to_string().len()
            + 1
            + strings(&self.argv)
            + self.env.len().to_string().len()
            + 1
            + strings(&self.env)
            + records
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        let mut put = |b: &[u8]| {
            out.extend_from_slice(b);
            out.push(0);
        };
        put(SPEC_VERSION);
        put(&self.workdir);
        put(self
            .uid
            .map(|u| u.to_string())
            .unwrap_or_default()
            .as_bytes());
        put(self
            .gid
            .map(|g| g.to_string())
            .unwrap_or_default()
            .as_bytes());
        put(self.argv.len().to_string().as_bytes());
        for a in &self.argv {
            put(a);
        }
        put(self.env.len().to_string().as_bytes());
        for e in &self.env {
            put(e);
        }
        for m in &self.mounts {
            put(b"volume");
            put(m.tag.as_bytes());
            put(m.guest.as_bytes());
            put(if m.read_only { b"ro" } else { b"rw" });
        }
        for c in &self.init {
            put(b"init");
            put(c);
        }
        for g in &self.groups {
            put(b"group");
            put(g.to_string().as_bytes());
        }
        out
    }
}

impl crate::exit::ExitStatus for SpecError {
    fn exit_code(&self) -> u8 {
        crate::exit::INVALID
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_guest_takes_as_many_groups_as_a_manifest_may_hold() {
        assert_eq!(
            guest_abi::GROUPS as usize,
            smolvm_format::manifest::MAX_GROUPS
        );
    }

    #[test]
    fn args_replace_cmd_and_keep_entrypoint() {
        let c = MachineConfig {
            entrypoint: vec!["/bin/echo".into()],
            cmd: vec!["default".into()],
            ..MachineConfig::default()
        };
        let s = build_spec(&c, &["a b".into(), "".into(), "\"q\"".into()], None).unwrap();
        assert_eq!(
            s.argv,
            vec![
                b"/bin/echo".to_vec(),
                b"a b".to_vec(),
                b"".to_vec(),
                b"\"q\"".to_vec()
            ]
        );
        let s = build_spec(&c, &[], None).unwrap();
        assert_eq!(s.argv, vec![b"/bin/echo".to_vec(), b"default".to_vec()]);
    }

    #[test]
    fn encoding_is_nul_separated_with_counts() {
        let s = RunSpec {
            argv: vec![b"sh".to_vec(), b"".to_vec()],
            env: vec![b"A=1".to_vec()],
            workdir: b"/".to_vec(),
            uid: Some(5),
            gid: None,
            init: vec![b"echo 1".to_vec()],
            groups: vec![7, 4294967294],
            mounts: vec![SpecMount {
                tag: volume_tag(0),
                guest: "/data".into(),
                read_only: true,
            }],
        };
        let want = b"smolvm-spec-2\0/\x005\0\x002\0sh\0\0\x31\0A=1\0volume\0smolvm-vol0\0/data\0ro\0init\0echo 1\0group\x007\0group\x004294967294\0".to_vec();
        assert_eq!(s.encode(), want);
        assert_eq!(s.encoded_len(), want.len());
    }

    #[test]
    fn home_and_groups_come_from_the_resolved_user() {
        let mut c = MachineConfig {
            user: Some("app".into()),
            uid: Some(1000),
            gid: Some(1000),
            groups: vec![1000, 27],
            home: Some("/home/app".into()),
            ..MachineConfig::default()
        };
        let s = build_spec(&c, &[], None).unwrap();
        assert!(s.env.contains(&b"HOME=/home/app".to_vec()), "{:?}", s.env);
        assert_eq!(s.groups, vec![1000, 27]);
        // env still wins over the passwd home.
        c.env = vec!["HOME=/data".into()];
        let s = build_spec(&c, &[], None).unwrap();
        let homes: Vec<_> = s.env.iter().filter(|e| e.starts_with(b"HOME=")).collect();
        assert_eq!(homes, vec![&b"HOME=/data".to_vec()]);
        // Without a user: root's home, no group records.
        let s = build_spec(&MachineConfig::default(), &[], None).unwrap();
        assert!(s.env.contains(&b"HOME=/root".to_vec()));
        assert!(s.groups.is_empty());
    }

    #[test]
    fn init_commands_are_carried_in_order_and_checked() {
        let mut c = MachineConfig {
            init: vec!["echo one".into(), "echo two".into()],
            ..MachineConfig::default()
        };
        let s = build_spec(&c, &[], None).unwrap();
        assert_eq!(s.init, vec![b"echo one".to_vec(), b"echo two".to_vec()]);
        c.init.push("a\0b".into());
        assert_eq!(
            check_workload(&c).unwrap_err(),
            SpecError::NulInList {
                field: "init",
                index: 2
            }
        );
        c.init = vec!["true".into(); MAX_INIT_COMMANDS + 1];
        assert!(matches!(
            check_workload(&c),
            Err(SpecError::TooMany {
                what: "init commands",
                ..
            })
        ));
        c.init = vec!["x".repeat(MAX_ARG_LEN + 1)];
        assert!(matches!(
            check_workload(&c),
            Err(SpecError::StringTooLong { field: "init", .. })
        ));
    }

    #[test]
    fn volumes_become_tagged_records() {
        let mut s = build_spec(&MachineConfig::default(), &[], None).unwrap();
        let v = |g: &str, ro| crate::settings::Volume {
            host: "/h".into(),
            guest: g.into(),
            read_only: ro,
        };
        s.set_volumes(&[v("/a", false), v("/b", true)]).unwrap();
        assert_eq!(s.mounts[1].tag, "smolvm-vol1");
        assert!(s.mounts[1].read_only);
        assert_eq!(s.encoded_len(), s.encode().len());
        let many = vec![v("/a", false); MAX_SPEC_VOLUMES + 1];
        assert!(matches!(
            s.set_volumes(&many),
            Err(SpecError::TooMany {
                what: "volumes",
                ..
            })
        ));
    }

    fn config(
        entrypoint: &[&str],
        cmd: &[&str],
        env: &[&str],
        workdir: Option<&str>,
    ) -> MachineConfig {
        let v = |x: &[&str]| x.iter().map(|s| s.to_string()).collect();
        MachineConfig {
            entrypoint: v(entrypoint),
            cmd: v(cmd),
            env: v(env),
            workdir: workdir.map(str::to_string),
            ..MachineConfig::default()
        }
    }

    #[test]
    fn nul_bytes_are_refused_in_every_field() {
        let e = check_workload(&config(&["/bin/a\0b"], &[], &[], None)).unwrap_err();
        assert_eq!(
            e,
            SpecError::NulInList {
                field: "entrypoint",
                index: 0
            }
        );
        let e = check_workload(&config(&["/bin/a"], &["x", "y\0"], &[], None)).unwrap_err();
        assert_eq!(
            e,
            SpecError::NulInList {
                field: "cmd",
                index: 1
            }
        );
        let e = check_workload(&config(&[], &[], &["A=1\0B=2"], None)).unwrap_err();
        assert_eq!(
            e,
            SpecError::NulInList {
                field: "env",
                index: 0
            }
        );
        let e = check_workload(&config(&[], &[], &[], Some("/srv\0/x"))).unwrap_err();
        assert_eq!(e, SpecError::Nul { field: "workdir" });
        let e = build_spec(
            &config(&["/bin/a"], &[], &[], None),
            &["ok".into(), "b\0".into()],
            None,
        )
        .unwrap_err();
        assert_eq!(
            e,
            SpecError::NulInList {
                field: "argument",
                index: 1
            }
        );
        assert!(e.to_string().contains("NUL"), "{e}");
    }

    #[test]
    fn control_characters_and_relative_paths_in_workdir_and_user_are_refused() {
        let e = check_workload(&config(&[], &[], &[], Some("/srv\x1b[2K"))).unwrap_err();
        assert!(
            matches!(
                e,
                SpecError::ControlChar {
                    field: "workdir",
                    ..
                }
            ),
            "{e}"
        );
        let mut c = config(&[], &[], &[], None);
        c.user = Some("root\u{9b}".into());
        assert!(matches!(
            check_workload(&c),
            Err(SpecError::ControlChar { field: "user", .. })
        ));
        let e = check_workload(&config(&[], &[], &[], Some("srv"))).unwrap_err();
        assert!(matches!(e, SpecError::RelativeWorkdir { .. }), "{e}");
        // Scripts with newlines and tabs are ordinary commands.
        check_workload(&config(
            &["/bin/sh", "-c"],
            &["echo a\n\techo b"],
            &[],
            Some("/srv"),
        ))
        .unwrap();
    }

    #[test]
    fn the_guest_inits_limits_are_checked_on_the_host() {
        // Exactly MAX_SPEC_STRINGS arguments fit; one more does not.
        let many: Vec<String> = (0..MAX_SPEC_STRINGS).map(|_| "x".to_string()).collect();
        let mut c = MachineConfig {
            cmd: many,
            ..MachineConfig::default()
        };
        check_workload(&c).unwrap();
        c.entrypoint = vec!["/bin/echo".into()];
        let e = check_workload(&c).unwrap_err();
        assert_eq!(
            e,
            SpecError::TooMany {
                what: "arguments (entrypoint and command)",
                count: MAX_SPEC_STRINGS + 1
            }
        );
        let env: Vec<String> = (0..=MAX_SPEC_STRINGS).map(|i| format!("V{i}=1")).collect();
        let c = MachineConfig {
            env,
            ..MachineConfig::default()
        };
        assert!(matches!(
            check_workload(&c),
            Err(SpecError::TooMany {
                what: "environment entries",
                ..
            })
        ));
        // One argument past execve's limit.
        let c = config(&["/bin/echo"], &[&"a".repeat(MAX_ARG_LEN + 1)], &[], None);
        assert_eq!(
            check_workload(&c).unwrap_err(),
            SpecError::StringTooLong {
                field: "cmd",
                index: 0,
                len: MAX_ARG_LEN + 1
            }
        );
        let w = format!("/{}", "d".repeat(MAX_WORKDIR_LEN));
        assert!(matches!(
            check_workload(&config(&[], &[], &[], Some(&w))),
            Err(SpecError::WorkdirTooLong { .. })
        ));
    }

    #[test]
    fn the_encoded_size_is_capped_at_what_init_reads() {
        // Arguments of MAX_ARG_LEN bytes: 8 of them pass 1 MiB.
        let big = "a".repeat(MAX_ARG_LEN);
        let c = MachineConfig {
            cmd: vec![big; 8],
            ..MachineConfig::default()
        };
        let e = check_workload(&c).unwrap_err();
        assert!(
            matches!(e, SpecError::TooLarge { bytes } if bytes > MAX_SPEC_BYTES),
            "{e}"
        );
        // At the limit exactly it passes, and encoded_len is what encode writes.
        let base = assemble(&MachineConfig::default(), &[], None).unwrap();
        let room = MAX_SPEC_BYTES - base.encoded_len();
        let mut cmd = vec!["a".repeat(MAX_ARG_LEN); room / (MAX_ARG_LEN + 1)];
        let c = MachineConfig {
            cmd: cmd.clone(),
            ..MachineConfig::default()
        };
        let used = assemble(&c, &[], None).unwrap().encoded_len();
        cmd.push("b".repeat(MAX_SPEC_BYTES - used - 1));
        let c = MachineConfig {
            cmd,
            ..MachineConfig::default()
        };
        let spec = assemble(&c, &[], None).unwrap();
        assert_eq!(spec.encoded_len(), MAX_SPEC_BYTES);
        assert_eq!(spec.encode().len(), MAX_SPEC_BYTES);
        let mut c = c;
        c.cmd.last_mut().unwrap().push('c');
        assert_eq!(
            assemble(&c, &[], None).unwrap_err(),
            SpecError::TooLarge {
                bytes: MAX_SPEC_BYTES + 1
            }
        );
    }
}

//! What the tests that run the release stub on packed executables share: a
//! scratch "machine" (keys, a fake kernel, a tiny root, HOME and the XDG
//! directories under one temporary directory) and one-line error checks.
//! Each test crate uses part of it.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use smolvm_tests::{fake_kernel, other_key, smolvm, test_key, write_key_files};

/// The release stub, or `None` (the test skips) when it is not built.
pub fn stub() -> Option<PathBuf> {
    let path = smolvm_tests::stub_bin();
    if path.exists() {
        return Some(path);
    }
    let why = format!(
        "{} missing (cargo build --release -p smolvm-stub)",
        path.display()
    );
    assert!(std::env::var_os("SMOLVM_REQUIRE_BOOT").is_none(), "{why}");
    eprintln!("SKIPPING: {why}");
    None
}

/// A scratch directory standing in for a user's machine: keys, inputs,
/// packed executables, and HOME, XDG_CONFIG_HOME, XDG_STATE_HOME and the
/// cache all under it, so no test reads or writes the real user's files.
pub struct Machine {
    pub dir: tempfile::TempDir,
    pub stub: PathBuf,
}

impl Machine {
    /// `None` (the test skips) without the stub binary, or when the system
    /// trusted-keys directory holds keys: they would be trusted beside the
    /// ones each test sets up.
    pub fn new() -> Option<Machine> {
        let stub = stub()?;
        let system = Path::new(smolvm_runtime::trust::SYSTEM_KEY_DIR);
        let system_keys = std::fs::read_dir(system).map_or(0, |d| {
            d.filter(|e| {
                e.as_ref()
                    .is_ok_and(|e| e.path().extension().is_some_and(|x| x == "pub"))
            })
            .count()
        });
        if system_keys > 0 {
            eprintln!("SKIPPING: {} holds keys", system.display());
            return None;
        }
        let m = Machine {
            dir: tempfile::tempdir().unwrap(),
            stub,
        };
        write_key_files(&m.path("keys"), "test", &test_key());
        write_key_files(&m.path("keys"), "other", &other_key());
        std::fs::write(m.path("vmlinux"), fake_kernel()).unwrap();
        let root = m.path("root");
        std::fs::create_dir_all(root.join("bin")).unwrap();
        std::fs::write(root.join("bin/hello"), "#!/bin/sh\necho hi\n").unwrap();
        std::fs::create_dir_all(m.user_keys()).unwrap();
        Some(m)
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// `keys/NAME.pub`, as a `--smolvm-key=` argument.
    pub fn key_flag(&self, name: &str) -> String {
        format!("--smolvm-key={}", self.pubkey(name).display())
    }

    pub fn pubkey(&self, name: &str) -> PathBuf {
        self.path(&format!("keys/{name}.pub"))
    }

    /// The user's trusted-keys directory ($XDG_CONFIG_HOME/smolvm/trusted-keys).
    pub fn user_keys(&self) -> PathBuf {
        self.path("config/smolvm/trusted-keys")
    }

    /// Trusts exactly the keys `names` through the user's directory.
    pub fn trust(&self, names: &[&str]) {
        let dir = self.user_keys();
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        for n in names {
            std::fs::copy(self.pubkey(n), dir.join(format!("{n}.pub"))).unwrap();
        }
    }

    /// The remembered minimum versions ($XDG_STATE_HOME/smolvm/min-versions.json).
    pub fn state_file(&self) -> PathBuf {
        self.path("state/smolvm/min-versions.json")
    }

    /// Packs `name` at `version`, signed with `keys/KEY.key`, as an executable.
    pub fn pack(&self, name: &str, version: &str, key: &str) -> PathBuf {
        self.pack_with(name, version, key, "")
    }

    /// [`Machine::pack`] with a Smolfile (`smolfile`, when not empty).
    pub fn pack_with(&self, name: &str, version: &str, key: &str, smolfile: &str) -> PathBuf {
        self.pack_args(name, version, key, smolfile, &[], "")
    }

    /// [`Machine::pack_with`] with more `pack create` arguments (`extra`),
    /// written to a file whose name ends in `tag`.
    pub fn pack_args(
        &self,
        name: &str,
        version: &str,
        key: &str,
        smolfile: &str,
        extra: &[&std::ffi::OsStr],
        tag: &str,
    ) -> PathBuf {
        let out = self.path(&format!("{name}-{version}-{key}{tag}"));
        let mut cmd = smolvm();
        if !smolfile.is_empty() {
            let sf = self.path(&format!("{name}-{version}-{key}.Smolfile"));
            std::fs::write(&sf, smolfile).unwrap();
            cmd.arg("pack").arg("create").arg("--smolfile").arg(&sf);
        } else {
            cmd.args(["pack", "create"]);
        }
        cmd.arg("--rootfs")
            .arg(self.path("root"))
            .arg("--kernel")
            .arg(self.path("vmlinux"))
            .arg("--stub")
            .arg(&self.stub)
            .arg("--key")
            .arg(self.path(&format!("keys/{key}.key")))
            .args(extra)
            .args(["--name", name, "--artifact-version", version, "-o"])
            .arg(&out)
            .assert()
            .success();
        out
    }

    /// The command [`Machine::run`] runs, not started.
    pub fn command(&self, exe: &Path, args: &[&str]) -> Command {
        let mut cmd = Command::new(exe);
        cmd.arg("--smolvm-dry-run")
            .args(args)
            .env("HOME", self.path("home"))
            .env("XDG_CONFIG_HOME", self.path("config"))
            .env("XDG_STATE_HOME", self.path("state"))
            .env("XDG_DATA_HOME", self.path("data"))
            .env("SMOLVM_CACHE_DIR", self.path("cache"))
            .env_remove("SMOLVM_TRUSTED_KEYS")
            .env_remove("SMOLVM_SHARE_CWD")
            .env_remove("SMOLVM_DRY_RUN");
        cmd
    }

    /// `exe --smolvm-dry-run ARGS` with this machine's environment.
    pub fn run(&self, exe: &Path, args: &[&str]) -> Output {
        self.run_with(exe, args, |_| {})
    }

    /// [`Machine::run`], with a change to the command first.
    pub fn run_with(&self, exe: &Path, args: &[&str], change: impl Fn(&mut Command)) -> Output {
        let mut cmd = self.command(exe, args);
        change(&mut cmd);
        smolvm_tests::output_when_not_busy(&mut cmd, exe)
    }
}

pub fn code(out: &Output) -> i32 {
    out.status.code().expect("exited, not killed")
}

pub fn err_text(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Asserts the exit code, and for failures one stderr line containing each
/// of `needles`; returns stderr.
#[track_caller]
pub fn expect(out: &Output, want: i32, needles: &[&str]) -> String {
    let err = err_text(out);
    assert_eq!(code(out), want, "stderr: {err}");
    if want != 0 {
        assert_eq!(err.lines().count(), 1, "one line: {err}");
    }
    for n in needles {
        assert!(err.contains(n), "{n:?} not in: {err}");
    }
    err
}

//! The scratch directory the command-line tests pack in, laid out the same
//! way everywhere, and the commands that use it:
//!
//! ```text
//! keys/test.key keys/test.pub     the test key (TEST_SEED)
//! keys/other.key keys/other.pub   a second key ([`Scratch::with_other_key`])
//! vmlinux                         a fake kernel
//! stub                            a stub ([`Scratch::with_stub`])
//! home/ config/ state/ cache/     the user's directories ([`Scratch::user_env`])
//! ```

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::{fake_kernel, other_key, smolvm, test_key, write_key_files};

/// A temporary directory with the test key and a fake kernel in it,
/// removed when dropped.
pub struct Scratch {
    dir: tempfile::TempDir,
}

impl Default for Scratch {
    fn default() -> Self {
        Scratch::new()
    }
}

impl Scratch {
    /// `keys/test.{key,pub}` and `vmlinux`.
    pub fn new() -> Scratch {
        let s = Scratch {
            dir: tempfile::tempdir().unwrap(),
        };
        write_key_files(&s.path("keys"), "test", &test_key());
        std::fs::write(s.path("vmlinux"), fake_kernel()).unwrap();
        s
    }

    /// Adds `keys/other.{key,pub}`: a key that is not the test key.
    pub fn with_other_key(self) -> Scratch {
        write_key_files(&self.path("keys"), "other", &other_key());
        self
    }

    /// Adds `stub` holding `bytes` (a copy of /bin/true, or
    /// [`crate::fake_stub`]): enough for `pack create`, which only appends
    /// to it.
    pub fn with_stub(self, bytes: &[u8]) -> Scratch {
        std::fs::write(self.path("stub"), bytes).unwrap();
        self
    }

    /// The scratch directory.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// `rel` inside the scratch directory.
    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// `smolvm pack create --kernel SCRATCH/vmlinux`, plus `--stub
    /// SCRATCH/stub` when there is one; the caller adds the root, the key
    /// and the output.
    pub fn pack_create(&self) -> assert_cmd::Command {
        let mut cmd = smolvm();
        cmd.args(["pack", "create", "--kernel"])
            .arg(self.path("vmlinux"));
        if self.path("stub").exists() {
            cmd.arg("--stub").arg(self.path("stub"));
        }
        cmd
    }

    /// Points `cmd` at this scratch's HOME, XDG config and state
    /// directories and cache, and away from trusted keys named in the
    /// test's own environment: nothing of the real user's is read or
    /// written.
    pub fn user_env(&self, cmd: &mut Command) {
        cmd.env("HOME", self.path("home"))
            .env("XDG_CONFIG_HOME", self.path("config"))
            .env("XDG_STATE_HOME", self.path("state"))
            .env("SMOLVM_CACHE_DIR", self.path("cache"))
            .env_remove("SMOLVM_TRUSTED_KEYS");
    }
}

/// A command's standard output, as text.
pub fn stdout_text(a: &assert_cmd::assert::Assert) -> String {
    String::from_utf8_lossy(&a.get_output().stdout).into_owned()
}

/// A command's standard error, as text.
pub fn stderr_text(a: &assert_cmd::assert::Assert) -> String {
    String::from_utf8_lossy(&a.get_output().stderr).into_owned()
}

/// Status of `GET /v2/` on 127.0.0.1:PORT (an OCI registry's base
/// endpoint), if anything answers.
pub fn v2_status(port: u16) -> Option<u16> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(3))).ok()?;
    write!(s, "GET /v2/ HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\n\r\n").ok()?;
    let mut head = [0u8; 12];
    s.read_exact(&mut head).ok()?;
    std::str::from_utf8(&head[9..12]).ok()?.parse().ok()
}

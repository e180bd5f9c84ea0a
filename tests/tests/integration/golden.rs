//! `smolvm pack inspect` output, human and JSON, checked against the files
//! in `tests/golden/`. Inputs are fixed (generated stub, kernel and root
//! with fixed owners and mtimes, the RFC 8032 test key, SOURCE_DATE_EPOCH),
//! so the output is the same on every machine; a change in it is a change
//! in what users see and must be looked at.
//!
//! After an intended change: `SMOLVM_BLESS=1 cargo test -p smolvm-tests
//! --test golden`, then review the diff of `tests/golden/`.

use std::path::{Path, PathBuf};

use smolvm_tests::{
    fake_kernel, fake_stub, repo, smolvm, test_key, tiny_rootfs_tar, write_key_files,
};

/// A Smolfile that sets every field `inspect` shows, so each line is covered.
const SMOLFILE: &str = r#"entrypoint = ["/bin/sh", "-c"]
cmd = ["echo \"hello\" from $(uname -s)"]
env = ["GREETING=hello", "EMPTY="]
workdir = "/srv"
user = "1000:1000"
cpus = 2
memory = 256
net = true
ports = ["8080:80"]
volumes = ["/data"]
storage = 4
overlay = 2
init = ["mkdir -p /srv"]

[network]
allow_hosts = ["example.org"]
allow_cidrs = ["10.0.0.0/8"]

[auth]
ssh_agent = true

[artifact]
name = "golden"
version = "1.2.3-rc1"
"#;

fn check_golden(name: &str, actual: &str) {
    let path = repo().join("tests/golden").join(name);
    if std::env::var_os("SMOLVM_BLESS").is_some_and(|v| v == "1") {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, actual).unwrap();
        eprintln!("blessed {}", path.display());
        return;
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e}; create it with SMOLVM_BLESS=1 cargo test -p smolvm-tests --test golden",
            path.display()
        )
    });
    if expected != actual {
        let first = expected
            .lines()
            .zip(actual.lines())
            .position(|(e, a)| e != a)
            .unwrap_or(expected.lines().count().min(actual.lines().count()));
        panic!(
            "{} differs from the output, first at line {}:\n  expected: {:?}\n  actual:   {:?}\n--- actual output ---\n{actual}\n(if the change is intended: SMOLVM_BLESS=1 cargo test -p smolvm-tests --test golden)",
            path.display(),
            first + 1,
            expected.lines().nth(first).unwrap_or("<end>"),
            actual.lines().nth(first).unwrap_or("<end>"),
        );
    }
}

struct Inputs {
    _dir: tempfile::TempDir,
    root: PathBuf,
}

impl Inputs {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().to_path_buf();
        write_key_files(&root.join("keys"), "test", &test_key());
        std::fs::write(root.join("vmlinux"), fake_kernel()).unwrap();
        std::fs::write(root.join("stub"), fake_stub()).unwrap();
        std::fs::write(root.join("root.tar"), tiny_rootfs_tar()).unwrap();
        std::fs::write(root.join("Smolfile"), SMOLFILE).unwrap();
        Inputs { _dir: dir, root }
    }

    fn create(&self, out: &str, extra: &[&str]) -> PathBuf {
        let out = self.root.join(out);
        let p = |rel: &str| self.root.join(rel);
        smolvm()
            .env("SOURCE_DATE_EPOCH", "1700000000")
            .args(["pack", "create", "--rootfs"])
            .arg(p("root.tar"))
            .arg("--kernel")
            .arg(p("vmlinux"))
            .arg("--stub")
            .arg(p("stub"))
            .arg("-o")
            .arg(&out)
            .args(extra)
            .assert()
            .success();
        out
    }
}

fn inspect(file: &Path, json: bool) -> String {
    let mut cmd = smolvm();
    // `pack inspect` shows the signer this machine remembers for the name
    // (runtime::known_signers): none in an empty state directory.
    cmd.env("XDG_STATE_HOME", file.with_file_name("no-state"))
        .args(["pack", "inspect"])
        .arg(file);
    if json {
        cmd.arg("--json");
    }
    let out = cmd.assert().code(0).get_output().stdout.clone();
    String::from_utf8(out).expect("inspect prints UTF-8")
}

#[test]
fn inspect_output_matches_golden_files() {
    let inputs = Inputs::new();
    let key = inputs.root.join("keys/test.key");
    let smolfile = inputs.root.join("Smolfile");
    let packed = inputs.create(
        "golden",
        &[
            "--key",
            key.to_str().unwrap(),
            "--smolfile",
            smolfile.to_str().unwrap(),
        ],
    );
    check_golden("inspect-packed.txt", &inspect(&packed, false));
    check_golden("inspect-packed.json", &inspect(&packed, true));
    let bare = inputs.create("plain.smolmachine", &["--no-sign", "--level", "19"]);
    check_golden("inspect-bare-unsigned.txt", &inspect(&bare, false));
}

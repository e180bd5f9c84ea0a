//! The `smolvm pack` command line end to end: keygen, create in both output
//! forms, inspect, verify with the right and the wrong key, unsigned
//! artifacts, JSON output, reproducible output, output naming and the exit
//! codes (0 ok, 1 verification failed, 2 usage or I/O error).
//!
//! The binary is `SMOLVM_BIN` or a debug build made on first use (see
//! `smolvm_tests::smolvm_bin`). Nothing here boots: the kernel is a tiny
//! fake ELF and the stub a copy of /bin/true.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use smolvm_tests::fixture::{stderr_text as stderr, stdout_text as stdout, Scratch};
use smolvm_tests::smolvm;

/// A scratch directory with keys, a kernel, a root and a stub in it.
struct Fixture(Scratch);

impl std::ops::Deref for Fixture {
    type Target = Scratch;
    fn deref(&self) -> &Scratch {
        &self.0
    }
}

impl Fixture {
    fn new() -> Self {
        let f = Fixture(
            Scratch::new()
                .with_other_key()
                .with_stub(&std::fs::read("/bin/true").unwrap()),
        );
        f.make_root("root");
        f
    }

    /// A small root directory (fresh mtimes each time it is made).
    fn make_root(&self, rel: &str) -> PathBuf {
        let root = self.path(rel);
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(root.join("bin")).unwrap();
        std::fs::create_dir_all(root.join("etc")).unwrap();
        std::fs::write(root.join("bin/hello"), "#!/bin/sh\necho hi\n").unwrap();
        std::fs::set_permissions(root.join("bin/hello"), PermissionsExt::from_mode(0o755)).unwrap();
        std::fs::write(root.join("etc/hostname"), "smol\n").unwrap();
        std::os::unix::fs::symlink("hello", root.join("bin/sh")).unwrap();
        root
    }

    /// `pack create` of the fixture root to `out`, signed with the test key
    /// unless `extra` says otherwise.
    fn create(&self, out: &Path, extra: &[&str]) -> assert_cmd::assert::Assert {
        let mut cmd = self.pack_create();
        cmd.arg("--rootfs")
            .arg(self.path("root"))
            .arg("-o")
            .arg(out);
        if !extra.contains(&"--no-sign") {
            cmd.arg("--key").arg(self.path("keys/test.key"));
        }
        cmd.args(extra).assert()
    }

    fn verify(&self, file: &Path, keys: &[&str], extra: &[&str]) -> assert_cmd::assert::Assert {
        let mut cmd = smolvm();
        cmd.args(["pack", "verify"]).arg(file);
        for k in keys {
            cmd.arg("--key").arg(self.path(k));
        }
        cmd.args(extra).assert()
    }
}

fn json(a: &assert_cmd::assert::Assert) -> serde_json::Value {
    serde_json::from_slice(&a.get_output().stdout)
        .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {}", stdout(a)))
}

#[test]
fn round_trip_create_verify_inspect_in_both_forms() {
    let f = Fixture::new();
    for (name, bare) in [("hello", false), ("hello.smolmachine", true)] {
        let out = f.path(name);
        let created = f.create(&out, &[]).success();
        assert!(
            stderr(&created).contains("signed by key 3c09b807520d5931, verified"),
            "{}",
            stderr(&created)
        );
        let bytes = std::fs::read(&out).unwrap();
        assert_eq!(bytes.starts_with(b"\x7fELF"), !bare, "{name}");
        let mode = std::fs::metadata(&out).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, if bare { 0o644 } else { 0o755 }, "{name}");

        let ok = f.verify(&out, &["keys/test.pub"], &[]).code(0);
        assert!(stdout(&ok).contains("valid"), "{}", stdout(&ok));
        assert!(stdout(&ok).contains(&format!("{} 0.0.0", name.trim_end_matches(".smolmachine"))));

        let human = smolvm()
            .args(["pack", "inspect"])
            .arg(&out)
            .assert()
            .code(0);
        let text = stdout(&human);
        assert!(
            text.contains(if bare {
                "bare payload"
            } else {
                "packed executable"
            }),
            "{text}"
        );
        assert!(text.contains("ed25519 by key 3c09b807520d5931"), "{text}");
        for kind in ["config", "kernel", "rootfs"] {
            assert!(text.contains(kind), "{text}");
        }

        let j = json(
            &smolvm()
                .args(["pack", "inspect", "--json"])
                .arg(&out)
                .assert()
                .code(0),
        );
        assert_eq!(j["form"], if bare { "bare" } else { "executable" });
        assert_eq!(j["file_size"], bytes.len() as u64);
        assert_eq!(j["signature"]["state"], "self-consistent");
        assert_eq!(j["signature"]["key_id"], "3c09b807520d5931");
        let kinds: Vec<&str> = j["sections"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["kind"].as_str().unwrap())
            .collect();
        assert_eq!(kinds, ["config", "kernel", "rootfs", "sbom", "provenance"]);
        assert_eq!(j["stub"].is_null(), bare);
        if !bare {
            assert_eq!(j["payload_offset"], j["stub"]["length"]);
        }
        assert_eq!(j["config"]["cpus"], 1);

        let j = json(&f.verify(&out, &["keys/test.pub"], &["--json"]).code(0));
        assert_eq!(j["verdict"], "valid");
        assert_eq!(j["valid"], true);
        assert_eq!(j["exit_code"], 0);
    }
}

#[test]
fn verify_with_wrong_missing_or_several_keys() {
    let f = Fixture::new();
    let out = f.path("app");
    f.create(&out, &[]).success();
    let wrong = f.verify(&out, &["keys/other.pub"], &[]).code(1);
    assert!(stderr(&wrong).contains("untrusted"), "{}", stderr(&wrong));
    let j = json(&f.verify(&out, &["keys/other.pub"], &["--json"]).code(1));
    assert_eq!(j["verdict"], "untrusted");
    assert_eq!(j["valid"], false);
    // No key: intact and signed, but nobody said whom to trust.
    let none = f.verify(&out, &[], &[]).code(1);
    assert!(stderr(&none).contains("untrusted"), "{}", stderr(&none));
    // The right key among others.
    f.verify(&out, &["keys/other.pub", "keys/test.pub"], &[])
        .code(0);
    // Rollback pinning.
    f.verify(&out, &["keys/test.pub"], &["--min-version", "0.0.0"])
        .code(0);
    let old = f
        .verify(&out, &["keys/test.pub"], &["--min-version", "0.1"])
        .code(1);
    assert!(stderr(&old).contains("rollback"), "{}", stderr(&old));
}

#[test]
fn tampered_artifact_fails_verify_with_exit_1() {
    let f = Fixture::new();
    let out = f.path("app.smolmachine");
    f.create(&out, &[]).success();
    let good = std::fs::read(&out).unwrap();
    // One byte in the manifest, one in the last section, one appended.
    for (what, bad) in [
        ("manifest", {
            let mut b = good.clone();
            b[64 + 30] ^= 1;
            b
        }),
        ("rootfs", {
            let mut b = good.clone();
            let at = b.len() - 65;
            b[at] ^= 1;
            b
        }),
        ("appended", [&good[..], b"x"].concat()),
    ] {
        let p = f.path(&format!("bad-{what}.smolmachine"));
        std::fs::write(&p, bad).unwrap();
        let a = f.verify(&p, &["keys/test.pub"], &[]).code(1);
        assert!(stderr(&a).contains("invalid"), "{what}: {}", stderr(&a));
        let j = json(&f.verify(&p, &["keys/test.pub"], &["--json"]).code(1));
        assert_eq!(j["verdict"], "invalid", "{what}");
    }
}

#[test]
fn unsigned_artifacts_are_reported_unsigned_and_never_verify() {
    let f = Fixture::new();
    for name in ["plain", "plain.smolmachine"] {
        let out = f.path(name);
        let created = f.create(&out, &["--no-sign"]).success();
        assert!(
            stderr(&created).contains("UNSIGNED"),
            "{}",
            stderr(&created)
        );
        let text = stdout(
            &smolvm()
                .args(["pack", "inspect"])
                .arg(&out)
                .assert()
                .code(0),
        );
        assert!(text.contains("unsigned (not valid"), "{text}");
        let j = json(
            &smolvm()
                .args(["pack", "inspect", "--json"])
                .arg(&out)
                .assert()
                .code(0),
        );
        assert_eq!(j["signature"]["state"], "unsigned");
        for keys in [&[][..], &["keys/test.pub"][..]] {
            let a = f.verify(&out, keys, &[]).code(1);
            assert!(stderr(&a).contains("unsigned"), "{}", stderr(&a));
            let j = json(&f.verify(&out, keys, &["--json"]).code(1));
            assert_eq!(j["verdict"], "unsigned");
        }
    }
}

#[test]
fn keygen_writes_a_usable_pair_and_never_replaces_it() {
    let f = Fixture::new();
    let dir = f.path("newkeys");
    let a = smolvm()
        .args(["pack", "keygen", "-o"])
        .arg(&dir)
        .assert()
        .code(0);
    let out = stdout(&a);
    assert!(
        out.contains("smolvm.key") && out.contains("key id"),
        "{out}"
    );
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&dir.join("smolvm.key")), 0o600);
    assert_eq!(mode(&dir.join("smolvm.pub")), 0o644);
    assert_eq!(mode(&dir), 0o700);
    let secret_before = std::fs::read(dir.join("smolvm.key")).unwrap();
    // A second run without --force refuses and leaves the key alone.
    let again = smolvm()
        .args(["pack", "keygen", "-o"])
        .arg(&dir)
        .assert()
        .failure();
    assert!(!stderr(&again).is_empty());
    assert_eq!(
        std::fs::read(dir.join("smolvm.key")).unwrap(),
        secret_before
    );
    // The generated pair signs and verifies.
    let out = f.path("k.smolmachine");
    smolvm()
        .args(["pack", "create", "--rootfs"])
        .arg(f.path("root"))
        .arg("--kernel")
        .arg(f.path("vmlinux"))
        .arg("--key")
        .arg(dir.join("smolvm.key"))
        .arg("-o")
        .arg(&out)
        .assert()
        .success();
    smolvm()
        .args(["pack", "verify"])
        .arg(&out)
        .arg("--key")
        .arg(dir.join("smolvm.pub"))
        .assert()
        .code(0);
    f.verify(&out, &["keys/test.pub"], &[]).code(1);
    // --force replaces it with a different key.
    smolvm()
        .args(["pack", "keygen", "--force", "-o"])
        .arg(&dir)
        .assert()
        .code(0);
    assert_ne!(
        std::fs::read(dir.join("smolvm.key")).unwrap(),
        secret_before
    );
}

#[test]
fn same_inputs_and_source_date_epoch_give_identical_bytes() {
    let f = Fixture::new();
    for name in ["a", "a.smolmachine"] {
        let first = f.path(&format!("1-{name}"));
        let second = f.path(&format!("2-{name}"));
        let cmd = |out: &Path| {
            // Recreate the root between runs: new mtimes, same content. The
            // epoch clamps the mtimes, so the bytes must not change.
            f.make_root("root");
            std::thread::sleep(std::time::Duration::from_millis(1100));
            let mut c = f.pack_create();
            c.env("SOURCE_DATE_EPOCH", "1700000000")
                .args(["--name", "repro", "--rootfs"])
                .arg(f.path("root"))
                .arg("--key")
                .arg(f.path("keys/test.key"))
                .arg("-o")
                .arg(out)
                .assert()
                .success();
        };
        cmd(&first);
        cmd(&second);
        let (a, b) = (
            std::fs::read(&first).unwrap(),
            std::fs::read(&second).unwrap(),
        );
        assert!(a == b, "{name}: two packs of the same inputs differ");
        let j = json(
            &smolvm()
                .args(["pack", "inspect", "--json"])
                .arg(&first)
                .assert()
                .code(0),
        );
        assert_eq!(j["created"], 1_700_000_000u64);
    }
}

#[test]
fn output_is_written_under_exactly_the_given_name() {
    let f = Fixture::new();
    let out_dir = f.path("out");
    std::fs::create_dir_all(&out_dir).unwrap();
    for name in ["x", "x.smolmachine", "y.bin", "z.smolmachine"] {
        f.create(&out_dir.join(name), &[]).success();
    }
    let mut names: Vec<String> = std::fs::read_dir(&out_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    // No NAME.smolmachine.smolmachine, no leftover temporary files.
    assert_eq!(names, ["x", "x.smolmachine", "y.bin", "z.smolmachine"]);
    let form = |n: &str| {
        json(
            &smolvm()
                .args(["pack", "inspect", "--json"])
                .arg(out_dir.join(n))
                .assert()
                .code(0),
        )["form"]
            .as_str()
            .unwrap()
            .to_string()
    };
    assert_eq!(form("x"), "executable");
    assert_eq!(form("y.bin"), "executable");
    assert_eq!(form("x.smolmachine"), "bare");
    // The default name is the file stem, without the extension.
    let j = json(
        &smolvm()
            .args(["pack", "inspect", "--json"])
            .arg(out_dir.join("z.smolmachine"))
            .assert()
            .code(0),
    );
    assert_eq!(j["name"], "z");
    // Creating over an existing artifact replaces it in place.
    f.create(
        &out_dir.join("x.smolmachine"),
        &["--artifact-version", "2.0"],
    )
    .success();
    let j = json(
        &smolvm()
            .args(["pack", "inspect", "--json"])
            .arg(out_dir.join("x.smolmachine"))
            .assert()
            .code(0),
    );
    assert_eq!(j["version"], "2.0");
}

#[test]
fn failed_create_leaves_nothing_behind() {
    let f = Fixture::new();
    let out_dir = f.path("out");
    std::fs::create_dir_all(&out_dir).unwrap();
    std::fs::write(f.path("not-elf"), b"#!/bin/sh\n").unwrap();
    smolvm()
        .args(["pack", "create", "--rootfs"])
        .arg(f.path("root"))
        .arg("--kernel")
        .arg(f.path("vmlinux"))
        .arg("--key")
        .arg(f.path("keys/test.key"))
        .arg("--stub")
        .arg(f.path("not-elf"))
        .arg("-o")
        .arg(out_dir.join("app"))
        .assert()
        .failure();
    smolvm()
        .args(["pack", "create", "--rootfs"])
        .arg(f.path("root"))
        .arg("--kernel")
        .arg(f.path("not-elf"))
        .arg("--no-sign")
        .arg("-o")
        .arg(out_dir.join("app.smolmachine"))
        .assert()
        .failure();
    assert_eq!(std::fs::read_dir(&out_dir).unwrap().count(), 0);
}

#[test]
fn exit_codes_follow_the_convention() {
    let f = Fixture::new();
    let good = f.path("good.smolmachine");
    f.create(&good, &[]).success();
    std::fs::write(f.path("garbage"), vec![0x5a; 10_000]).unwrap();

    // 0: valid.
    f.verify(&good, &["keys/test.pub"], &[]).code(0);
    smolvm()
        .args(["pack", "inspect"])
        .arg(&good)
        .assert()
        .code(0);
    // 1: not an artifact, or verification failed.
    f.verify(&f.path("garbage"), &["keys/test.pub"], &[])
        .code(1);
    smolvm()
        .args(["pack", "inspect"])
        .arg(f.path("garbage"))
        .assert()
        .code(1);
    // 2: usage and I/O errors.
    f.verify(&f.path("missing"), &["keys/test.pub"], &[])
        .code(2);
    f.verify(&good, &["keys/missing.pub"], &[]).code(2);
    smolvm()
        .args(["pack", "inspect"])
        .arg(f.path("missing"))
        .assert()
        .code(2);
    smolvm().args(["pack", "verify"]).assert().code(2);
    smolvm().args(["pack", "frobnicate"]).assert().code(2);
    smolvm()
        .args(["pack", "create", "--level", "99", "-o", "x"])
        .assert()
        .code(2);
    smolvm()
        .args(["pack", "create", "--no-sign", "--key", "k", "-o", "x"])
        .assert()
        .code(2);
    // A directory where a file is expected: an I/O error.
    f.verify(&f.path("keys"), &["keys/test.pub"], &[]).code(2);
}

/// Issue 8: the effective network policy is shown by inspect in both forms,
/// and a networked machine on a host that cannot enforce the policy (no
/// seccomp user notification, simulated) refuses to start, before any
/// first-start work, in one line. Bad run-time publications are usage
/// errors naming the entry.
#[test]
fn network_policy_is_shown_and_fails_closed() {
    let f = Fixture::new();
    std::fs::write(
        f.path("Smolfile"),
        "net = true\nports = [\"8080:80\"]\n[network]\nallow_hosts = [\"example.com\"]\nallow_cidrs = [\"192.0.2.0/24\"]\n",
    )
    .unwrap();
    let out = f.path("m.smolmachine");
    f.create(&out, &["--smolfile", f.path("Smolfile").to_str().unwrap()])
        .success();
    let a = smolvm()
        .args(["pack", "inspect"])
        .arg(&out)
        .assert()
        .success();
    let text = stdout(&a);
    for needle in [
        "egress only to: hosts [example.com] cidrs [192.0.2.0/24] (enforced on the host",
        "loopback, link-local (169.254.0.0/16 incl. cloud metadata)",
        "published ports: 127.0.0.1:8080->80",
    ] {
        assert!(text.contains(needle), "{needle:?} missing:\n{text}");
    }
    let a = smolvm()
        .args(["pack", "inspect", "--json"])
        .arg(&out)
        .assert()
        .success();
    let j = &json(&a)["network_policy"];
    assert_eq!(j["enforced"], true, "{j}");
    assert_eq!(j["boots"], true, "{j}");
    assert_eq!(j["allow_hosts"][0], "example.com", "{j}");
    assert_eq!(j["published_ports"][0]["address"], "127.0.0.1", "{j}");
    assert_eq!(j["published_ports"][0]["host"], 8080, "{j}");

    let cache = f.path("cache");
    let a = smolvm()
        .env("SMOLVM_CACHE_DIR", &cache)
        .env("XDG_STATE_HOME", f.path("state"))
        .env("SMOLVM_TEST_NO_SECCOMP_NOTIFY", "1")
        .args(["pack", "run", "--dry-run"])
        .arg(&out)
        .assert()
        .code(2);
    let err = stderr(&a);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains("cannot be enforced here") && err.contains("refusing to start"),
        "{err}"
    );
    assert!(!cache.exists(), "refused before touching the cache");
    let a = smolvm()
        .env("SMOLVM_CACHE_DIR", &cache)
        .env("XDG_STATE_HOME", f.path("state"))
        .args(["pack", "run", "--dry-run", "-p", "8080:81"])
        .arg(&out)
        .assert()
        .code(2);
    assert!(
        stderr(&a).contains("host port 8080 is published twice"),
        "{}",
        stderr(&a)
    );
    let a = smolvm()
        .env("SMOLVM_CACHE_DIR", &cache)
        .env("XDG_STATE_HOME", f.path("state"))
        .args(["pack", "run", "--dry-run", "-p", "99999:80"])
        .arg(&out)
        .assert()
        .code(2);
    assert!(stderr(&a).contains("\"99999:80\""), "{}", stderr(&a));
    smolvm()
        .env("SMOLVM_CACHE_DIR", &cache)
        .env("XDG_STATE_HOME", f.path("state"))
        .args(["pack", "run", "--dry-run", "-p", "9090:80"])
        .arg(&out)
        .assert()
        .success();

    // An artifact without network needs no supervisor.
    std::fs::write(f.path("Smolfile"), "net = false\n").unwrap();
    f.create(&out, &["--smolfile", f.path("Smolfile").to_str().unwrap()])
        .success();
    smolvm()
        .env("SMOLVM_CACHE_DIR", &cache)
        .env("XDG_STATE_HOME", f.path("state"))
        .env("SMOLVM_TEST_NO_SECCOMP_NOTIFY", "1")
        .args(["pack", "run", "--dry-run"])
        .arg(&out)
        .assert()
        .success();
}

/// An unsigned artifact whose config strings carry terminal escapes cannot
/// make `pack inspect` draw a "valid, trusted key" line: every control
/// character is shown as `\u{..}`, and `--json` keeps the exact strings.
#[test]
fn inspect_escapes_terminal_control_characters_from_the_manifest() {
    use smolvm_format::MachineConfig;
    const FORGED: &str =
        "/srv\r\x1b[2K\x1b[1A\x1b[2K  signature   ed25519 by key 0123: valid, trusted key\n\u{9b}31m\u{202e}x\x7f";
    let mut config = MachineConfig {
        workdir: Some(FORGED.into()),
        user: Some(format!("0{FORGED}")),
        uid: Some(0),
        gid: Some(0),
        groups: vec![0],
        home: Some("/root".into()),
        image: Some(FORGED.into()),
        // A digest is decoded when the manifest is parsed: only `sha256:`
        // and lowercase hex can be there (reader_manifest.rs).
        image_digest: Some(format!("sha256:{}", "ab".repeat(32)).parse().unwrap()),
        cmd: vec![FORGED.into()],
        ..MachineConfig::default()
    };
    config.provenance.insert("workdir".into(), FORGED.into());
    let built = smolvm_tests::build(&smolvm_tests::ArtifactSpec {
        signer: None,
        config,
        ..Default::default()
    });
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("forged.smolmachine");
    std::fs::write(&file, &built.bytes).unwrap();

    let a = smolvm()
        .args(["pack", "inspect"])
        .arg(&file)
        .assert()
        .success();
    let out = stdout(&a);
    assert!(
        !out.chars().any(|c| c.is_control() && c != '\n'),
        "control characters reached the terminal: {out:?}"
    );
    assert!(!out.contains('\u{202e}'), "{out:?}");
    assert!(
        out.contains("\\u{1b}[2K") && out.contains("\\u{9b}"),
        "{out}"
    );
    // No forged line: the only signature line is the real one.
    let sig_lines: Vec<&str> = out
        .lines()
        .filter(|l| l.trim_start().starts_with("signature"))
        .collect();
    assert_eq!(
        sig_lines,
        ["  signature   unsigned (not valid; packed with --no-sign)"]
    );

    let a = smolvm()
        .args(["pack", "inspect", "--json"])
        .arg(&file)
        .assert()
        .success();
    let j = json(&a);
    assert_eq!(j["config"]["workdir"], FORGED);
    assert_eq!(j["config"]["provenance"]["workdir"], FORGED);
}

/// Issue 10: a workload the guest would refuse at every start ("run spec has
/// no command", exit 125) is refused when packed, naming the field, and a
/// start whose arguments pass the guest's limits stops on the host before
/// the cache or the VM.
#[test]
fn workloads_past_the_guests_limits_are_refused_at_pack_and_at_run_time() {
    let f = Fixture::new();
    let smolfile = f.path("Smolfile");
    let out = f.path("w.smolmachine");
    let sf = ["--smolfile", smolfile.to_str().unwrap()];

    // Control characters in a config string: refused at pack time.
    std::fs::write(&smolfile, "workdir = \"/srv\\u001b[2K\"\n").unwrap();
    let a = f.create(&out, &sf).failure();
    let err = stderr(&a);
    assert!(
        err.contains("`workdir`") && err.contains("control character"),
        "{err}"
    );
    assert!(!err.contains('\x1b'), "{err:?}");
    assert!(!out.exists());

    // More arguments than the guest init takes (8192).
    let cmd: Vec<String> = (0..8193).map(|i| format!("\"a{i}\"")).collect();
    std::fs::write(&smolfile, format!("cmd = [{}]\n", cmd.join(","))).unwrap();
    let err = stderr(&f.create(&out, &sf).failure());
    assert!(
        err.contains("8193 arguments") && err.contains("8192"),
        "{err}"
    );
    assert!(!out.exists());

    // At the limit it packs; one more argument at run time is refused before
    // the cache is touched.
    let cmd: Vec<String> = (0..8192).map(|i| format!("\"a{i}\"")).collect();
    std::fs::write(&smolfile, format!("cmd = [{}]\n", cmd.join(","))).unwrap();
    f.create(&out, &sf).success();
    std::fs::write(&smolfile, "entrypoint = [\"/bin/echo\"]\n").unwrap();
    f.create(&out, &sf).success();
    let cache = f.path("cache");
    let a = smolvm()
        .env("SMOLVM_CACHE_DIR", &cache)
        .env("XDG_STATE_HOME", f.path("state"))
        .args(["pack", "run", "--dry-run"])
        .arg(&out)
        .arg("--")
        .args((0..8192).map(|i| format!("b{i}")))
        .assert()
        .code(1);
    let err = stderr(&a);
    assert!(
        err.contains("8193 arguments") && err.contains("8192"),
        "{err}"
    );
    assert!(!cache.exists(), "refused before touching the cache");
    smolvm()
        .env("SMOLVM_CACHE_DIR", &cache)
        .env("XDG_STATE_HOME", f.path("state"))
        .args(["pack", "run", "--dry-run"])
        .arg(&out)
        .arg("--")
        .args((0..8191).map(|i| format!("b{i}")))
        .assert()
        .success();
}

/// Issue 10: one error model. Every error prints its chain once (an OS
/// error is not repeated), and each command's usage, I/O, validation and
/// verification failures exit 2, 2, 1 and 1.
#[test]
fn errors_print_their_cause_once_and_exit_by_kind() {
    let f = Fixture::new();
    let good = f.path("good.smolmachine");
    f.create(&good, &[]).success();
    let once = |a: &assert_cmd::assert::Assert, needle: &str| {
        let err = stderr(a);
        assert_eq!(err.matches(needle).count(), 1, "{err}");
        assert_eq!(err.lines().count(), 1, "{err}");
    };
    let enoent = "No such file or directory";
    once(&f.verify(&good, &["keys/missing.pub"], &[]).code(2), enoent);
    once(
        &f.verify(&f.path("missing"), &["keys/test.pub"], &[])
            .code(2),
        enoent,
    );
    let run = |args: &[&str]| {
        smolvm()
            .env("SMOLVM_CACHE_DIR", f.path("cache"))
            .env("XDG_CONFIG_HOME", f.path("config"))
            .env("XDG_STATE_HOME", f.path("state"))
            .env_remove("SMOLVM_TRUSTED_KEYS")
            .args(["pack", "run", "--dry-run"])
            .args(args)
            .assert()
    };
    once(&run(&[f.path("missing").to_str().unwrap()]).code(2), enoent);
    once(
        &run(&[
            "--key",
            f.path("keys/missing.pub").to_str().unwrap(),
            good.to_str().unwrap(),
        ])
        .code(2),
        enoent,
    );
    // Usage: no root at all, and a key file that is not a key.
    let a = smolvm()
        .args(["pack", "create", "--no-sign", "-o"])
        .arg(f.path("x.smolmachine"))
        .arg("--kernel")
        .arg(f.path("vmlinux"))
        .assert()
        .code(2);
    assert!(stderr(&a).contains("no root filesystem"), "{}", stderr(&a));
    std::fs::write(f.path("notakey.pub"), "hello\n").unwrap();
    f.verify(&good, &["notakey.pub"], &[]).code(2);
    // I/O: a registry nobody listens on.
    let a = smolvm()
        .env("SMOLVM_REGISTRY_TIMEOUT", "5")
        .env("SMOLVM_CACHE_DIR", f.path("cache"))
        .args([
            "pack",
            "create",
            "--no-sign",
            "--image",
            "127.0.0.1:9/nothing:1",
            "-o",
        ])
        .arg(f.path("x.smolmachine"))
        .arg("--kernel")
        .arg(f.path("vmlinux"))
        .assert()
        .code(2);
    assert!(stderr(&a).contains("127.0.0.1:9"), "{}", stderr(&a));
    // Usage: -o onto a directory, said once before anything is packed.
    std::fs::create_dir(f.path("outdir")).unwrap();
    let a = f.create(&f.path("outdir"), &["--no-sign"]).code(2);
    once(&a, "is a directory");
    assert!(stderr(&a).contains("outdir/NAME"), "{}", stderr(&a));
    // Validation: sizes no start accepts (issue 22), naming the field.
    for (text, field) in [
        ("storage = 0\nvolumes = [\"/data\"]\n", "`storage`"),
        ("overlay = 3000\n", "`overlay`"),
    ] {
        std::fs::write(f.path("Smolfile"), text).unwrap();
        let a = f
            .create(
                &f.path("y.smolmachine"),
                &["--smolfile", f.path("Smolfile").to_str().unwrap()],
            )
            .code(1);
        once(&a, field);
        assert!(!f.path("y.smolmachine").exists());
    }
    // Validation: a Smolfile that breaks its schema.
    std::fs::write(f.path("Smolfile"), "cpus = \"many\"\n").unwrap();
    f.create(
        &f.path("y.smolmachine"),
        &["--smolfile", f.path("Smolfile").to_str().unwrap()],
    )
    .code(1);
    // Verification: pack run of an artifact signed by another key.
    let a = run(&[
        "--key",
        f.path("keys/other.pub").to_str().unwrap(),
        good.to_str().unwrap(),
    ])
    .code(1);
    assert!(stderr(&a).contains("not trusted"), "{}", stderr(&a));
}

/// Issue 10: whom `pack run` trusts. Given keys (--key, SMOLVM_TRUSTED_KEYS)
/// win; else the trusted-keys directory when it holds a key; else the
/// artifact's own key. A directory that cannot be read is exit 2 naming it.
#[test]
fn pack_run_trusts_the_key_directory_unless_keys_are_given() {
    let f = Fixture::new();
    let app = f.path("app.smolmachine");
    f.create(&app, &[]).success();
    let dir = f.path("config/smolvm/trusted-keys");
    std::fs::create_dir_all(&dir).unwrap();
    let run = |extra: &[&str], env_keys: Option<&Path>| {
        let mut c = smolvm();
        c.env("SMOLVM_CACHE_DIR", f.path("cache"))
            .env("XDG_CONFIG_HOME", f.path("config"))
            .env("XDG_STATE_HOME", f.path("state"))
            .env_remove("SMOLVM_TRUSTED_KEYS");
        if let Some(k) = env_keys {
            c.env("SMOLVM_TRUSTED_KEYS", k);
        }
        c.args(["pack", "run", "--dry-run"])
            .args(extra)
            .arg(&app)
            .assert()
    };
    let pubkey = |name: &str| f.path(&format!("keys/{name}.pub"));
    // An empty directory: the artifact's own key.
    run(&[], None).success();
    // A directory with another key: refused.
    std::fs::copy(pubkey("other"), dir.join("other.pub")).unwrap();
    let a = run(&[], None).code(1);
    assert!(stderr(&a).contains("not trusted"), "{}", stderr(&a));
    // Given keys replace the directory, both ways.
    run(&["--key", pubkey("test").to_str().unwrap()], None).success();
    run(&[], Some(&pubkey("test"))).success();
    std::fs::copy(pubkey("test"), dir.join("test.pub")).unwrap();
    run(&[], None).success();
    std::fs::remove_file(dir.join("test.pub")).unwrap();
    run(&["--key", pubkey("other").to_str().unwrap()], None).code(1);
    // A broken key file in the directory: exit 2, naming it.
    std::fs::write(dir.join("broken.pub"), "nonsense\n").unwrap();
    let a = run(&[], None).code(2);
    assert!(stderr(&a).contains("broken.pub"), "{}", stderr(&a));
    std::fs::remove_file(dir.join("broken.pub")).unwrap();
    // A directory that cannot be listed: exit 2, naming it.
    std::fs::remove_dir_all(&dir).unwrap();
    std::fs::write(&dir, "").unwrap();
    let a = run(&[], None).code(2);
    assert!(stderr(&a).contains("trusted-keys"), "{}", stderr(&a));
}

/// Issue 10: rollback. `--min-version` refuses older artifacts; a start
/// with a trusted key remembers its version per signer and name, and older
/// ones are refused after it, with a line saying why; starts that only
/// check the artifact's own key neither record nor consult it.
#[test]
fn pack_run_refuses_older_versions_than_required_or_remembered() {
    let f = Fixture::new();
    let make = |version: &str| {
        let out = f.path(&format!("app-{version}.smolmachine"));
        f.create(&out, &["--name", "app", "--artifact-version", version])
            .success();
        out
    };
    let (v1, v2, v3) = (make("1.1.0"), make("1.2.0"), make("1.10.0"));
    let state = f.path("state/smolvm/min-versions.json");
    let run = |file: &Path, extra: &[&str]| {
        smolvm()
            .env("SMOLVM_CACHE_DIR", f.path("cache"))
            .env("XDG_CONFIG_HOME", f.path("config"))
            .env("XDG_STATE_HOME", f.path("state"))
            .env_remove("SMOLVM_TRUSTED_KEYS")
            .args(["pack", "run", "--dry-run"])
            .args(extra)
            .arg(file)
            .assert()
    };
    let a = run(&v2, &["--min-version", "1.3"]).code(1);
    let err = stderr(&a);
    assert!(
        err.contains("app 1.2.0 is older than the minimum version 1.3") && err.lines().count() == 1,
        "{err}"
    );
    run(&v2, &["--min-version", "1.2"]).success();
    assert!(!state.exists(), "no trusted key, nothing remembered");

    let key = [
        "--key",
        f.path("keys/test.pub").to_str().unwrap().to_string().leak(),
    ];
    run(&v2, &key).success();
    assert!(std::fs::read_to_string(&state).unwrap().contains("1.2.0"));
    let a = run(&v1, &key).code(1);
    let err = stderr(&a);
    assert!(
        err.contains("app 1.1.0 is older than the minimum version 1.2.0")
            && err.contains("min-versions.json"),
        "{err}"
    );
    // Only the artifact's own key: not a pinned tool, not refused.
    run(&v1, &[]).success();
    // Newer raises the floor (numerically: 1.10 > 1.2).
    run(&v3, &key).success();
    run(&v2, &key).code(1);
    // Another signer's "app" is another tool.
    let other = f.path("other.smolmachine");
    smolvm()
        .args(["pack", "create", "--rootfs"])
        .arg(f.path("root"))
        .arg("--kernel")
        .arg(f.path("vmlinux"))
        .args(["--name", "app", "--artifact-version", "0.1.0", "--key"])
        .arg(f.path("keys/other.key"))
        .arg("-o")
        .arg(&other)
        .assert()
        .success();
    run(
        &other,
        &["--key", f.path("keys/other.pub").to_str().unwrap()],
    )
    .success();
}

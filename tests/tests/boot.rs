//! Real boots: packed executables run inside QEMU (TCG, emulated SVM) as the
//! L1 machine, whose KVM runs the libkrun guest (L2). See
//! tests/harness/README.md and /work/shared/BOOTING.md.
//!
//! All scenarios share one L1 boot. `SMOLVM_REQUIRE_BOOT=1` (set by
//! scripts/test.sh, so by CI) turns a missing harness into a failure; without
//! it the test skips with the reason only if QEMU is not installed.

use smolvm_tests::{bin, repo, stub_bin as stub};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

fn smolvm() -> PathBuf {
    bin("SMOLVM_BIN", "target/release/smolvm")
}

fn kernel() -> PathBuf {
    repo().join(".cache/kernel/libkrunfw.so.5")
}

fn scratch(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("smolvm-boot-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Decides whether the real-boot test can run; panics (CI) or returns false (local skip).
fn harness_available() -> bool {
    let required = std::env::var_os("SMOLVM_REQUIRE_BOOT").is_some_and(|v| v == "1");
    let mut missing = Vec::new();
    if Command::new("qemu-system-x86_64")
        .arg("--version")
        .output()
        .is_err()
    {
        missing.push("qemu-system-x86_64 (run scripts/setup-harness.sh)".to_string());
    }
    for p in [
        smolvm(),
        stub(),
        kernel(),
        repo().join(".cache/harness/vmlinux"),
    ] {
        if !p.exists() {
            missing.push(format!(
                "{} (run scripts/test.sh, which builds and fetches it)",
                p.display()
            ));
        }
    }
    if missing.is_empty() {
        return true;
    }
    assert!(
        !required,
        "real-boot harness cannot run: missing {}",
        missing.join(", ")
    );
    eprintln!("SKIPPING real boots: missing {}", missing.join(", "));
    false
}

/// A busybox root with every applet linked.
fn busybox_root(dir: &Path) -> PathBuf {
    let root = dir.join("root");
    std::fs::create_dir_all(root.join("bin")).unwrap();
    std::fs::copy("/bin/busybox", root.join("bin/busybox"))
        .expect("busybox-static at /bin/busybox");
    let list = Command::new("/bin/busybox").arg("--list").output().unwrap();
    for applet in String::from_utf8(list.stdout).unwrap().lines() {
        if applet != "busybox" {
            std::os::unix::fs::symlink("busybox", root.join("bin").join(applet)).unwrap();
        }
    }
    root
}

fn run_ok(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Scenario name -> (exit code, output), parsed from the L1 console.
fn parse_markers(console: &str) -> BTreeMap<String, (i32, String)> {
    let mut out = BTreeMap::new();
    let mut current: Option<(String, String)> = None;
    for line in console.lines() {
        if let Some(name) = line
            .strip_prefix("@@SMOL-BEGIN ")
            .and_then(|l| l.strip_suffix("@@"))
        {
            current = Some((name.to_string(), String::new()));
        } else if let Some(rest) = line
            .strip_prefix("@@SMOL-END ")
            .and_then(|l| l.strip_suffix("@@"))
        {
            let (name, rc) = rest.rsplit_once(" rc=").expect("END marker has rc");
            if let Some((n, text)) = current.take() {
                assert_eq!(n, name, "END for a scenario that did not BEGIN");
                out.insert(n, (rc.parse().unwrap(), text));
            }
        } else if let Some((_, text)) = current.as_mut() {
            text.push_str(line);
            text.push('\n');
        }
    }
    out
}

#[test]
fn packed_machines_boot_for_real() {
    if !harness_available() {
        return;
    }
    let dir = scratch("main");
    let root = busybox_root(&dir);
    let files = dir.join("files");
    std::fs::create_dir_all(&files).unwrap();
    std::fs::write(
        dir.join("Smolfile"),
        "entrypoint = [\"/bin/sh\", \"-c\"]\ncmd = [\"echo hello-from-smolmachine\"]\n[artifact]\nname = \"hello\"\nversion = \"1.0.0\"\n",
    )
    .unwrap();
    run_ok(
        Command::new(smolvm())
            .args(["pack", "keygen", "-o"])
            .arg(dir.join("keys")),
    );
    let pack = |out: &Path| {
        run_ok(
            Command::new(smolvm())
                .args(["pack", "create", "--smolfile"])
                .arg(dir.join("Smolfile"))
                .arg("--rootfs")
                .arg(&root)
                .arg("--kernel")
                .arg(kernel())
                .arg("--key")
                .arg(dir.join("keys/smolvm.key"))
                .arg("--stub")
                .arg(stub())
                .arg("-o")
                .arg(out),
        )
    };
    pack(&files.join("hello"));
    pack(&files.join("hello.smolmachine"));
    std::fs::copy(smolvm(), files.join("smolvm")).unwrap();

    // Tampered copies: one byte of the manifest (the signature no longer
    // matches) and the last byte of the rootfs section (the last section;
    // its hash no longer matches, seen on a cold cache).
    let good = std::fs::read(files.join("hello")).unwrap();
    let payload = good.len() - 64;
    let payload_offset = usize::try_from(u64::from_le_bytes(
        good[payload + 16..payload + 24].try_into().unwrap(),
    ))
    .unwrap();
    let mut bad = good.clone();
    bad[payload_offset + 64 + 20] ^= 0x01;
    std::fs::write(files.join("hello-bad-manifest"), &bad).unwrap();
    let mut bad = good.clone();
    bad[payload - 1] ^= 0x01;
    std::fs::write(files.join("hello-bad-rootfs"), &bad).unwrap();
    for f in ["hello-bad-manifest", "hello-bad-rootfs"] {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(files.join(f), std::fs::Permissions::from_mode(0o755)).unwrap();
    }

    let script = dir.join("scenarios.sh");
    std::fs::write(
        &script,
        r#"export SMOLVM_CACHE_DIR=/tmp/smolcache
scenario hello ./hello
scenario exit7 ./hello 'exit 7'
scenario args ./hello 'for a in "$@"; do printf "[%s]\n" "$a"; done' argv0 "a b" '"q"' '' "it's" 'x\y'
scenario stdin sh -c 'echo abc | ./hello cat'
scenario write ./hello 'echo data > /persist; cat /persist'
scenario write-gone ./hello 'test -e /persist && echo present || echo absent'
scenario tamper-manifest ./hello-bad-manifest
scenario tamper-rootfs env SMOLVM_CACHE_DIR=/tmp/fresh-cache ./hello-bad-rootfs
scenario tamper-no-cache-entry sh -c 'ls /tmp/fresh-cache/rootfs | grep -v lock || echo none'
scenario pack-run ./smolvm pack run hello.smolmachine -- 'echo from-bare; exit 3'
scenario info ./hello --smolvm-info
"#,
    )
    .unwrap();
    let out = Command::new(repo().join("tests/harness/run-l1.sh"))
        .arg("--files")
        .arg(&files)
        .arg("--script")
        .arg(&script)
        .args(["--timeout", "600"])
        .output()
        .unwrap();
    let console = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "L1 run failed ({}):\n{console}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let s = parse_markers(&console);
    let get = |name: &str| {
        s.get(name)
            .unwrap_or_else(|| panic!("scenario {name} missing:\n{console}"))
            .clone()
    };
    println!("{console}");

    assert_eq!(get("hello"), (0, "hello-from-smolmachine\n".into()));
    assert_eq!(get("exit7").0, 7);
    assert_eq!(
        get("args"),
        (0, "[a b]\n[\"q\"]\n[]\n[it's]\n[x\\y]\n".into())
    );
    assert_eq!(get("stdin"), (0, "abc\n".into()));
    assert_eq!(get("write"), (0, "data\n".into()));
    assert_eq!(get("write-gone"), (0, "absent\n".into()));

    let (rc, text) = get("tamper-manifest");
    assert_eq!(rc, 1, "{text}");
    assert!(
        text.contains("manifest") || text.contains("signature"),
        "{text}"
    );
    assert_eq!(text.lines().count(), 1, "one line, no guest output: {text}");
    let (rc, text) = get("tamper-rootfs");
    assert_eq!(rc, 1, "{text}");
    assert!(text.contains("SHA-256"), "{text}");
    assert_eq!(text.lines().count(), 1, "{text}");
    assert_eq!(
        get("tamper-no-cache-entry"),
        (0, "none\n".into()),
        "a failed extraction left a cache entry"
    );

    assert_eq!(get("pack-run"), (3, "from-bare\n".into()));
    let (rc, text) = get("info");
    assert_eq!(rc, 0);
    assert!(text.starts_with("hello 1.0.0\n"), "{text}");
}

/// On this host /dev/kvm is kvm-pvm, which cannot run the guest: the stub
/// must say so in one line and fail, not hang.
#[test]
fn a_host_without_usable_kvm_gets_one_clear_line() {
    if !Path::new("/sys/module/kvm_pvm").exists()
        || !stub().exists()
        || !smolvm().exists()
        || !kernel().exists()
    {
        eprintln!("skipping: needs this project's kvm-pvm build machines and built binaries");
        return;
    }
    let dir = scratch("nokvm");
    let root = busybox_root(&dir);
    run_ok(
        Command::new(smolvm())
            .args(["pack", "keygen", "-o"])
            .arg(dir.join("keys")),
    );
    run_ok(
        Command::new(smolvm())
            .args(["pack", "create", "--rootfs"])
            .arg(&root)
            .arg("--kernel")
            .arg(kernel())
            .arg("--key")
            .arg(dir.join("keys/smolvm.key"))
            .arg("--stub")
            .arg(stub())
            .arg("-o")
            .arg(dir.join("m")),
    );
    let out = Command::new(dir.join("m"))
        .env("SMOLVM_CACHE_DIR", dir.join("cache"))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("no usable KVM") && err.contains("kvm-pvm"),
        "{err}"
    );
    assert_eq!(err.lines().count(), 1, "{err}");
}

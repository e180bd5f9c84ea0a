//! Real boots: packed executables run inside QEMU (TCG, emulated SVM) as the
//! L1 machine, whose KVM runs the libkrun guest (L2). See
//! tests/harness/README.md and /work/shared/BOOTING.md.
//!
//! All scenarios share one L1 boot, and each runs twice (lib.sh's `both`): as
//! root and as a non-root user with its own HOME and cache, because most
//! users are not root. `SMOLVM_REQUIRE_BOOT=1` (set by scripts/test.sh, so by
//! CI) turns a missing harness into a failure; without it the test skips with
//! the reason only if QEMU is not installed.

use smolvm_tests::{
    as_each_host_user, boot_dirs, busybox_root, guest_kernel as kernel, release_smolvm as smolvm,
    run_l1, run_ok, scratch_dir, stub_bin as stub,
};
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::Command;

#[test]
fn packed_machines_boot_for_real() {
    let Some((dir, files)) = boot_dirs("main") else {
        return;
    };
    let root = busybox_root(&dir);
    std::fs::write(
        dir.join("Smolfile"),
        "entrypoint = [\"/bin/sh\", \"-c\"]\ncmd = [\"echo hello-from-smolmachine\"]\n[artifact]\nname = \"hello\"\nversion = \"1.0.0\"\n",
    )
    .unwrap();
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
    // matches), the last byte of the rootfs section (its hash no longer
    // matches, seen on a cold cache) and the last byte of the file's last
    // section, the provenance, which no start uses but every start checks.
    let good = std::fs::read(files.join("hello")).unwrap();
    let payload = good.len() - 64;
    let payload_offset = usize::try_from(u64::from_le_bytes(
        good[payload + 16..payload + 24].try_into().unwrap(),
    ))
    .unwrap();
    let mut bad = good.clone();
    bad[payload_offset + 64 + 20] ^= 0x01;
    std::fs::write(files.join("hello-bad-manifest"), &bad).unwrap();
    let layout = smolvm_tests::layout_of(&good).unwrap();
    let rootfs_end = layout
        .sections
        .iter()
        .find(|(kind, _)| *kind == smolvm_format::SectionKind::Rootfs)
        .map(|(_, r)| usize::try_from(r.end).unwrap())
        .unwrap();
    let mut bad = good.clone();
    bad[rootfs_end - 1] ^= 0x01;
    std::fs::write(files.join("hello-bad-rootfs"), &bad).unwrap();
    let mut bad = good.clone();
    bad[payload - 1] ^= 0x01;
    std::fs::write(files.join("hello-bad-provenance"), &bad).unwrap();
    for f in [
        "hello-bad-manifest",
        "hello-bad-rootfs",
        "hello-bad-provenance",
    ] {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(files.join(f), std::fs::Permissions::from_mode(0o755)).unwrap();
    }

    // What the guest must see of its root: owners as packed (the packer
    // records them as on this host), whoever runs the stub.
    let owner = |p: &Path| {
        let m = std::fs::metadata(p).unwrap();
        format!("{}:{}", m.uid(), m.gid())
    };
    let owners = format!(
        "{} 755 /bin\n{} 755 /bin/busybox\n0\n",
        owner(&root.join("bin")),
        owner(&root.join("bin/busybox"))
    );

    // `both` runs each scenario as root, then as `user` (uid 1000) with its
    // own cache in ~/.cache/smolvm (the exported SMOLVM_CACHE_DIR is root's
    // only); a scenario that needs a fresh cache puts it under $HOME.
    let script = dir.join("scenarios.sh");
    std::fs::write(
        &script,
        r#"export SMOLVM_CACHE_DIR=/tmp/smolcache
both hello ./hello
both args ./hello 'for a in "$@"; do printf "[%s]\n" "$a"; done; exit 7' argv0 "a b" '"q"' '' "it's" 'x\y'
both stdin sh -c 'echo abc | ./hello cat'
both write ./hello 'echo data > /persist; cat /persist'
both write-gone ./hello 'test -e /persist && echo present || echo absent'
both owners ./hello 'stat -c "%u:%g %a %n" /bin /bin/busybox; id -u'
both tamper-manifest ./hello-bad-manifest
both tamper-rootfs sh -c 'SMOLVM_CACHE_DIR=$HOME/fresh-cache exec ./hello-bad-rootfs'
both tamper-no-cache-entry sh -c 'ls "$HOME/fresh-cache/rootfs" | grep -v lock || echo none'
both tamper-provenance ./hello-bad-provenance
both pack-run ./smolvm pack run hello.smolmachine -- 'echo from-bare; exit 3'
both info ./hello --smolvm-info
"#,
    )
    .unwrap();
    let mut s = run_l1(&files, &script, 600);

    s.expect_both("hello", 0, "hello-from-smolmachine\n");
    // Arguments arrive intact (spaces, quotes, empty, backslash) and the
    // guest's exit code comes back.
    s.expect_both("args", 7, "[a b]\n[\"q\"]\n[]\n[it's]\n[x\\y]\n");
    s.expect_both("stdin", 0, "abc\n");
    s.expect_both("write", 0, "data\n");
    s.expect_both("write-gone", 0, "absent\n");
    // The guest sees the owners and modes that were packed, and its workload
    // runs as the image's user (root here), also when the host user is not
    // root: a guest that sees its files owned by the host user's uid is the
    // defect this scenario is here for.
    s.expect_both("owners", 0, &owners);

    s.check_both("tamper-manifest", |rc, text| {
        assert_eq!(rc, 1, "{text}");
        assert!(
            text.contains("manifest") || text.contains("signature"),
            "{text}"
        );
        assert_eq!(text.lines().count(), 1, "one line, no guest output: {text}");
    });
    s.check_both("tamper-rootfs", |rc, text| {
        assert_eq!(rc, 1, "{text}");
        assert!(text.contains("SHA-256"), "{text}");
        assert_eq!(text.lines().count(), 1, "{text}");
    });
    s.check_both("tamper-provenance", |rc, text| {
        assert_eq!(rc, 1, "{text}");
        assert!(text.contains("provenance"), "{text}");
        assert_eq!(text.lines().count(), 1, "{text}");
    });
    s.check_both("tamper-no-cache-entry", |rc, text| {
        assert_eq!(
            (rc, text),
            (0, "none\n"),
            "a failed extraction left a cache entry"
        );
    });

    s.expect_both("pack-run", 3, "from-bare\n");
    s.check_both("info", |rc, text| {
        assert_eq!(rc, 0, "{text}");
        assert!(text.starts_with("hello 1.0.0\n"), "{text}");
    });
    s.finish();
}

/// On this host /dev/kvm is kvm-pvm, which cannot run the guest: the stub
/// must say so in one line and fail, not hang, for root and for a user.
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
    let dir = scratch_dir("boot", "nokvm");
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
    // Root, and the user (uid 1000, no supplementary groups). Where /dev/kvm
    // is root-only, as on this host, the user cannot open it at all, and
    // that is its one line; where it can, it meets kvm-pvm as root does.
    let kvm_mode = std::fs::metadata("/dev/kvm").map_or(0, |m| m.mode());
    as_each_host_user(&dir, |user| {
        let opens_kvm = if user.is_switched() {
            kvm_mode & 0o006 == 0o006
        } else {
            std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .open("/dev/kvm")
                .is_ok()
        };
        let cause = if opens_kvm {
            "kvm-pvm"
        } else {
            "permission denied"
        };
        let out = user.command(dir.join("m"), "main").output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{err}");
        assert!(
            err.contains("no usable KVM") && err.contains(cause),
            "expected the cause {cause:?}: {err}"
        );
        assert_eq!(err.lines().count(), 1, "{err}");
    });
}

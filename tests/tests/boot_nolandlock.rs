//! A kernel without Landlock (issue 19), for real: L1 boots with an `lsm=`
//! list that leaves Landlock out, so the stub's probe meets what a person on
//! Linux < 5.13 (or with Landlock disabled) has. A machine given a share
//! must refuse to start, in one line naming `--smolvm-allow-no-landlock`
//! (exit 2), before anything is written to the cache; the same machine
//! without a share starts (nothing of the host is served, and seccomp, the
//! socket supervisor, no_new_privs and the dropped capabilities still
//! apply); with the opt-out the share works, with a warning. As root and as
//! uid 1000 (lib.sh `both`), in one L1 boot.

use smolvm_tests::{boot_dirs, busybox_root, pack_signed, run_l1_with};

/// Debian 6.1's built-in list without `landlock` (its default is
/// `landlock,lockdown,yama,loadpin,safesetid,integrity,apparmor,selinux,smack,tomoyo,bpf`).
const NO_LANDLOCK: &str = "lsm=lockdown,yama,loadpin,safesetid,integrity,apparmor,bpf";

#[test]
fn without_landlock_shares_are_refused_and_shareless_machines_start() {
    let Some((dir, files)) = boot_dirs("nolandlock") else {
        return;
    };
    let root = busybox_root(&dir);
    pack_signed(
        &dir,
        &root,
        &files,
        "m",
        "entrypoint = [\"/bin/sh\", \"-c\"]\ncmd = [\"echo guest-ran; exit 5\"]\n",
    );
    let script = dir.join("scenarios.sh");
    std::fs::write(
        &script,
        r#"
scenario lsm sh -c 'mount -t securityfs securityfs /sys/kernel/security 2>/dev/null; cat /sys/kernel/security/lsm; echo'
both share-refused sh -c 'd=$HOME/nl-share; mkdir -p "$d"; SMOLVM_CACHE_DIR=$HOME/nl-cache ./m --smolvm-volume="$d:/data" "echo SHOULD-NOT-RUN"; rc=$?; ls "$HOME/nl-cache" 2>/dev/null | grep -c . || true; exit $rc'
both no-share ./m
both opted-out sh -c 'd=$HOME/nl-share2; mkdir -p "$d"; ./m --smolvm-allow-no-landlock --smolvm-volume="$d:/data" "echo in-share >/data/f; cat /data/f; exit 4"; rc=$?; cat "$d/f"; exit $rc'
both vmm-confined sh -c 'o=$(mktemp); ./m "echo guest-up; sleep 3; exit 0" >"$o" 2>&1 & i=0; while ! grep -qs guest-up "$o" && [ $i -lt 600 ]; do sleep 0.1; i=$((i+1)); done; for s in /proc/[0-9]*/status; do grep -q "^Name:.libkrun VM" "$s" 2>/dev/null && grep -E "^(NoNewPrivs|Seccomp|CapEff):" "$s"; done; wait'
"#,
    )
    .unwrap();
    let mut s = run_l1_with(&files, &script, 600, &["--append", NO_LANDLOCK]);
    s.check("lsm", |rc, t| {
        assert_eq!(rc, 0, "{t}");
        assert!(t.contains("yama"), "the LSM list is readable: {t}");
        assert!(!t.contains("landlock"), "L1 must run without Landlock: {t}");
    });
    s.check_both("share-refused", |rc, t| {
        assert_eq!(rc, 2, "{t}");
        assert!(!t.contains("SHOULD-NOT-RUN"), "{t}");
        let line = t
            .lines()
            .find(|l| l.contains("Landlock"))
            .unwrap_or_else(|| panic!("no line about Landlock: {t}"));
        assert!(line.contains("--smolvm-allow-no-landlock"), "{line}");
        // Refused before the cache: nothing was written there.
        assert!(
            t.lines().any(|l| l.trim() == "0"),
            "the cache was written: {t}"
        );
    });
    s.check_both("no-share", |rc, t| {
        assert_eq!(rc, 5, "{t}");
        assert!(t.contains("guest-ran"), "{t}");
    });
    s.check_both("opted-out", |rc, t| {
        assert_eq!(rc, 4, "{t}");
        assert!(t.contains("Landlock is unavailable"), "a warning: {t}");
        assert_eq!(
            t.matches("in-share").count(),
            2,
            "guest and host see the file: {t}"
        );
    });
    s.check_both("vmm-confined", |rc, t| {
        assert_eq!(rc, 0, "{t}");
        assert!(t.contains("NoNewPrivs:\t1"), "{t}");
        assert!(t.contains("Seccomp:\t2"), "{t}");
        assert!(t.contains("CapEff:\t0000000000000000"), "{t}");
    });
    s.finish();
}

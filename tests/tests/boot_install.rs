//! Real boots of what issue 21 put on the desktop: a tool installed with
//! `--smolvm-install` (with its icon) starts from `~/.local/bin` and boots,
//! sharing the current directory with the person's consent; and a tool
//! whose publisher moved to a new key (`pack create --rotate-from`) boots
//! after the first signer was remembered, saying so once. Every scenario
//! runs as root and as uid 1000 (lib.sh `both`), in one L1 boot.

use std::process::Command;

use smolvm_tests::{
    boot_dirs, busybox_root, grey_png, guest_kernel, pack_signed, release_smolvm, run_l1, run_ok,
    stub_bin,
};

/// Install, run the installed copy in a directory with a file (consent by
/// flag), then uninstall; the exit code is the installed copy's.
const INSTALLED: &str = r#"d=$HOME/proj-installed; rm -rf "$d"; mkdir -p "$d"; printf 'a\nb\n' >"$d/list.txt"
/work/wcl --smolvm-install >/dev/null || exit 90
test -s "$HOME/.local/share/icons/hicolor/48x48/apps/smolvm-wcl.png" || exit 91
grep -qx 'Icon=smolvm-wcl' "$HOME/.local/share/applications/smolvm-wcl.desktop" || exit 92
cd "$d" && "$HOME/.local/bin/wcl" --smolvm-share-cwd list.txt
rc=$?
/work/wcl --smolvm-uninstall >/dev/null || exit 93
test -e "$HOME/.local/bin/wcl" && exit 94
exit $rc
"#;

/// The first signer (key A) is remembered; the same name signed by key B
/// with A's endorsement then boots, with one line about the new signer, and
/// B is remembered; B without the endorsement would have been refused.
const ROTATED: &str = r#"rm -f "$HOME/.local/state/smolvm/known-signers.json"
/work/hello-a >/dev/null 2>&1 || exit 90
/work/hello-b-plain >/dev/null 2>&1; echo "plain-b-exit=$?"
/work/hello-b-from-a
"#;

fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

#[test]
fn an_installed_tool_and_a_rotated_key_boot_for_real() {
    let Some((dir, files)) = boot_dirs("install") else {
        return;
    };
    let root = busybox_root(&dir);
    std::fs::write(dir.join("icon.png"), grey_png(48, 48)).unwrap();
    pack_signed(
        &dir,
        &root,
        &files,
        "wcl",
        "share_cwd = true\nentrypoint = [\"wc\", \"-l\"]\n[artifact]\nicon = \"icon.png\"\n",
    );
    // Key A is boot_dirs' keys/smolvm.key; key B a second pair.
    run_ok(
        Command::new(release_smolvm())
            .args(["pack", "keygen", "--name", "b", "-o"])
            .arg(dir.join("keys")),
    );
    std::fs::write(
        dir.join("hello.Smolfile"),
        "entrypoint = [\"/bin/sh\", \"-c\"]\ncmd = [\"echo hello-from-b\"]\n[artifact]\nname = \"hello\"\n",
    )
    .unwrap();
    let pack = |out: &str, key: &str, extra: &[&str]| {
        run_ok(
            Command::new(release_smolvm())
                .args(["pack", "create", "--smolfile"])
                .arg(dir.join("hello.Smolfile"))
                .arg("--rootfs")
                .arg(&root)
                .arg("--kernel")
                .arg(guest_kernel())
                .arg("--stub")
                .arg(stub_bin())
                .arg("--key")
                .arg(dir.join(format!("keys/{key}.key")))
                .args(extra)
                .arg("-o")
                .arg(files.join(out)),
        );
    };
    pack("hello-a", "smolvm", &[]);
    pack("hello-b-plain", "b", &[]);
    let old = dir.join("keys/smolvm.key");
    pack(
        "hello-b-from-a",
        "b",
        &["--rotate-from", old.to_str().unwrap()],
    );
    let script = dir.join("scenarios.sh");
    std::fs::write(
        &script,
        format!(
            "export SMOLVM_CACHE_DIR=/tmp/installcache\nboth installed sh -c {}\nboth rotated sh -c {}\n",
            quote(INSTALLED),
            quote(ROTATED)
        ),
    )
    .unwrap();
    let mut s = run_l1(&files, &script, 1200);
    s.expect_both("installed", 0, "2 list.txt\n");
    s.check_both("rotated", |rc, t| {
        assert_eq!(rc, 0, "{t}");
        assert!(t.contains("plain-b-exit=1\n"), "B alone is refused: {t}");
        assert!(t.contains("hello-from-b\n"), "{t}");
        let notes: Vec<&str> = t
            .lines()
            .filter(|l| l.contains("endorsed by key"))
            .collect();
        assert_eq!(notes.len(), 1, "one line about the new signer: {t}");
    });
}

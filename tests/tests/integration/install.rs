//! `--smolvm-install` / `--smolvm-uninstall` (issue 21, runtime::install)
//! on the release stub, with HOME and XDG_DATA_HOME in a scratch directory
//! only: the copy in ~/.local/bin runs, the menu entry passes the
//! freedesktop validator (`desktop-file-validate`, installed by
//! scripts/setup-desktop.sh; skipped where it is missing unless
//! `SMOLVM_REQUIRE_DESKTOP=1`), and what is not ours is never replaced or
//! removed.

use crate::common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::{expect, Machine};

/// `exe ARGS` with this machine's HOME and XDG directories and `PATH`.
fn run(m: &Machine, exe: &Path, args: &[&str], path: &str) -> Output {
    let mut cmd = Command::new(exe);
    cmd.args(args)
        .env("HOME", m.path("home"))
        .env("XDG_CONFIG_HOME", m.path("config"))
        .env("XDG_STATE_HOME", m.path("state"))
        .env("XDG_DATA_HOME", m.path("data"))
        .env("SMOLVM_CACHE_DIR", m.path("cache"))
        .env("PATH", path)
        .env_remove("SMOLVM_TRUSTED_KEYS");
    smolvm_tests::output_when_not_busy(&mut cmd, exe)
}

fn installed(m: &Machine, name: &str) -> (PathBuf, PathBuf) {
    (
        m.path(&format!("home/.local/bin/{name}")),
        m.path(&format!("data/applications/smolvm-{name}.desktop")),
    )
}

fn out_text(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// `desktop-file-validate` on `entry`, or a skip.
fn validate(entry: &Path) {
    match Command::new("desktop-file-validate").arg(entry).output() {
        Ok(o) => {
            let said = format!(
                "{}{}",
                String::from_utf8_lossy(&o.stdout),
                String::from_utf8_lossy(&o.stderr)
            );
            assert!(o.status.success() && said.trim().is_empty(), "{said}");
        }
        Err(e) => {
            let why = format!("desktop-file-validate: {e} (scripts/setup-desktop.sh)");
            assert!(
                std::env::var_os("SMOLVM_REQUIRE_DESKTOP").is_none(),
                "{why}"
            );
            eprintln!("SKIPPING validation: {why}");
        }
    }
}

#[test]
fn install_puts_a_running_copy_and_a_valid_entry_in_place_and_uninstall_removes_them() {
    let Some(m) = Machine::new() else {
        return;
    };
    let app = m.pack("notes", "1.0.0", "test");
    let path = "/usr/bin:/bin";
    let out = run(&m, &app, &["--smolvm-install"], path);
    expect(&out, 0, &[]);
    let (program, entry) = installed(&m, "notes");
    let said = out_text(&out);
    assert!(said.starts_with("installed notes 1.0.0 as "), "{said}");
    assert!(said.contains("is not on your PATH"), "{said}");
    assert_eq!(
        std::fs::read(&program).unwrap(),
        std::fs::read(&app).unwrap()
    );
    let text = std::fs::read_to_string(&entry).unwrap();
    for line in [
        "Name=notes".to_string(),
        "Terminal=true".to_string(),
        format!("Exec={}", program.display()),
    ] {
        assert!(text.lines().any(|l| l == line), "{line}: {text}");
    }
    validate(&entry);
    // The copy is the tool: it verifies and prepares.
    expect(&m.run(&program, &[]), 0, &[]);
    // A new version replaces it (an update), and the PATH note goes once
    // ~/.local/bin is on it.
    let v2 = m.pack("notes", "2.0.0", "test");
    let with_bin = format!("{}:{path}", m.path("home/.local/bin").display());
    let out = run(&m, &v2, &["--smolvm-install"], &with_bin);
    expect(&out, 0, &[]);
    assert!(
        out_text(&out).starts_with("updated notes 2.0.0"),
        "{}",
        out_text(&out)
    );
    assert!(!out_text(&out).contains("not on your PATH"));
    assert_eq!(
        std::fs::read(&program).unwrap(),
        std::fs::read(&v2).unwrap()
    );
    // Uninstall, from any copy of the tool.
    let out = run(&m, &app, &["--smolvm-uninstall"], path);
    expect(&out, 0, &[]);
    assert!(!program.exists() && !entry.exists());
    assert_eq!(
        out_text(&out),
        format!(
            "removed {}\nremoved {}\n",
            program.display(),
            entry.display()
        )
    );
    let out = run(&m, &app, &["--smolvm-uninstall"], path);
    assert_eq!(out_text(&out), "notes was not installed\n");
}

/// A file in ~/.local/bin that is not this name's smolmachine is neither
/// replaced nor removed; a name another program on PATH has is refused.
#[test]
fn what_is_not_ours_stays() {
    let Some(m) = Machine::new() else {
        return;
    };
    let app = m.pack("notes", "1.0.0", "test");
    let (program, entry) = installed(&m, "notes");
    std::fs::create_dir_all(program.parent().unwrap()).unwrap();
    std::fs::write(&program, "#!/bin/sh\necho mine\n").unwrap();
    let path = "/usr/bin:/bin";
    expect(
        &run(&m, &app, &["--smolvm-install"], path),
        2,
        &["is not notes installed by smolvm", "move it away"],
    );
    expect(
        &run(&m, &app, &["--smolvm-uninstall"], path),
        2,
        &["is not notes installed by smolvm"],
    );
    assert_eq!(
        std::fs::read_to_string(&program).unwrap(),
        "#!/bin/sh\necho mine\n"
    );
    assert!(!entry.exists());
    // Another signer's smolmachine of another name is not ours either.
    std::fs::copy(m.pack("other", "1.0.0", "test"), &program).unwrap();
    expect(
        &run(&m, &app, &["--smolvm-install"], path),
        2,
        &["is not notes installed by smolvm"],
    );
    // A tool named like a program on PATH would be run in its place.
    let sh = m.pack("sh", "1.0.0", "test");
    expect(
        &run(&m, &sh, &["--smolvm-install"], path),
        2,
        &[
            "sh is already the name of /usr/bin/sh",
            "would be run in its place",
        ],
    );
    assert!(!installed(&m, "sh").0.exists());
}

/// Install verifies first, as a start does: refused by the trusted key,
/// nothing is written.
#[test]
fn install_verifies_first() {
    let Some(m) = Machine::new() else {
        return;
    };
    let app = m.pack("notes", "1.0.0", "test");
    let other = m.key_flag("other");
    expect(
        &run(&m, &app, &[&other, "--smolvm-install"], "/usr/bin:/bin"),
        1,
        &["not trusted"],
    );
    let (program, entry) = installed(&m, "notes");
    assert!(!program.exists() && !entry.exists());
}

/// A home directory with a space: the entry's Exec quotes it, and the
/// validator accepts it.
#[test]
fn an_odd_home_is_quoted_in_the_entry() {
    let Some(m) = Machine::new() else {
        return;
    };
    let app = m.pack("notes", "1.0.0", "test");
    let home = m.path("my home");
    let mut cmd = Command::new(&app);
    cmd.arg("--smolvm-install")
        .env("HOME", &home)
        .env("XDG_DATA_HOME", m.path("data"))
        .env("PATH", "/usr/bin:/bin")
        .env_remove("SMOLVM_TRUSTED_KEYS");
    let out = smolvm_tests::output_when_not_busy(&mut cmd, &app);
    expect(&out, 0, &[]);
    let entry = m.path("data/applications/smolvm-notes.desktop");
    let text = std::fs::read_to_string(&entry).unwrap();
    let exec = format!("Exec=\"{}/.local/bin/notes\"", home.display());
    assert!(text.lines().any(|l| l == exec), "{exec}: {text}");
    validate(&entry);
}

/// A tool with an icon (Smolfile `[artifact] icon`): install copies the
/// signed PNG into the person's hicolor theme at the largest size directory
/// not above its width, names it in the entry (which still validates), a
/// reinstall of another size leaves one icon, and uninstall removes it.
#[test]
fn install_puts_the_icon_in_the_theme_and_uninstall_removes_it() {
    let Some(m) = Machine::new() else {
        return;
    };
    let png = smolvm_tests::grey_png(256, 256);
    std::fs::write(m.path("icon.png"), &png).unwrap();
    let smolfile = "[artifact]\nicon = \"icon.png\"\n";
    let app = m.pack_with("notes", "1.0.0", "test", smolfile);
    let path = "/usr/bin:/bin";
    let out = run(&m, &app, &["--smolvm-install"], path);
    expect(&out, 0, &[]);
    let icon = m.path("data/icons/hicolor/256x256/apps/smolvm-notes.png");
    assert_eq!(std::fs::read(&icon).unwrap(), png);
    assert!(
        out_text(&out).contains(&format!("icon: {}", icon.display())),
        "{}",
        out_text(&out)
    );
    let (program, entry) = installed(&m, "notes");
    let text = std::fs::read_to_string(&entry).unwrap();
    assert!(text.lines().any(|l| l == "Icon=smolvm-notes"), "{text}");
    validate(&entry);
    // pack inspect lists the section.
    let shown = smolvm_tests::smolvm()
        .args(["pack", "inspect"])
        .arg(&app)
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&shown.stdout).contains("\n  icon "),
        "{}",
        String::from_utf8_lossy(&shown.stdout)
    );
    // A 100x100 icon in the next version goes to 96x96, the old one away.
    std::fs::write(m.path("icon.png"), smolvm_tests::grey_png(100, 100)).unwrap();
    let v2 = m.pack_with("notes", "2.0.0", "test", smolfile);
    expect(&run(&m, &v2, &["--smolvm-install"], path), 0, &[]);
    assert!(!icon.exists());
    let small = m.path("data/icons/hicolor/96x96/apps/smolvm-notes.png");
    assert!(small.exists());
    let out = run(&m, &app, &["--smolvm-uninstall"], path);
    expect(&out, 0, &[]);
    assert!(!program.exists() && !entry.exists() && !small.exists());
    assert!(
        out_text(&out).contains(&format!("removed {}", small.display())),
        "{}",
        out_text(&out)
    );
}

/// The icon is checked at pack time: a file that is not a PNG, one too
/// large in pixels or bytes, or a missing file is refused, naming the file,
/// the Smolfile field and the fix; nothing is written.
#[test]
fn pack_create_checks_the_icon() {
    let Some(m) = Machine::new() else {
        return;
    };
    let pack = |icon: &[u8], what: &str| {
        let sf = m.path("Smolfile");
        std::fs::write(&sf, "[artifact]\nicon = \"icon.png\"\n").unwrap();
        let _ = std::fs::remove_file(m.path("icon.png"));
        if !icon.is_empty() {
            std::fs::write(m.path("icon.png"), icon).unwrap();
        }
        let out = smolvm_tests::smolvm()
            .args(["pack", "create", "--smolfile"])
            .arg(&sf)
            .arg("--rootfs")
            .arg(m.path("root"))
            .arg("--kernel")
            .arg(m.path("vmlinux"))
            .arg("--stub")
            .arg(&m.stub)
            .arg("--key")
            .arg(m.path("keys/test.key"))
            .arg("-o")
            .arg(m.path("out"))
            .output()
            .unwrap();
        assert!(!m.path("out").exists(), "{what}");
        (
            out.status.code().unwrap(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let cases: [(Vec<u8>, &str, i32, &[&str]); 5] = [
        (
            b"GIF89a not a png".to_vec(),
            "a GIF",
            1,
            &[
                "[artifact] icon",
                "icon.png",
                "not a PNG",
                "export the icon as PNG",
            ],
        ),
        (
            smolvm_tests::grey_png(2048, 2048),
            "2048 pixels",
            1,
            &["2048x2048", "to 1024x1024"],
        ),
        (
            smolvm_tests::grey_png(64, 32),
            "not square",
            1,
            &["64x32", "square"],
        ),
        (
            {
                let mut big = smolvm_tests::grey_png(64, 64);
                big.resize(600 << 10, 0);
                big
            },
            "over the byte cap",
            1,
            &["byte cap", "save it smaller"],
        ),
        (Vec::new(), "missing", 2, &["icon.png", "cannot read it"]),
    ];
    for (bytes, what, code, needles) in cases {
        let (got, err) = pack(&bytes, what);
        assert_eq!(got, code, "{what}: {err}");
        for n in needles {
            assert!(err.contains(n), "{what}: {n:?} not in {err}");
        }
    }
}

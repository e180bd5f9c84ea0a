//! Run-time settings, volumes and Smolfile rules on the command line (issue
//! 9), without booting: the real stub (dry runs and `--smolvm-info`),
//! `smolvm pack run` and `smolvm pack create`. The guest side is
//! tests/tests/boot_volumes.rs.

use std::path::Path;
use std::process::{Command, Output};

use smolvm_tests::fixture::Scratch;
use smolvm_tests::{smolvm, stub_bin};

struct Fixture(Scratch);

impl std::ops::Deref for Fixture {
    type Target = Scratch;
    fn deref(&self) -> &Scratch {
        &self.0
    }
}

impl Fixture {
    fn new() -> Fixture {
        let f = Fixture(Scratch::new());
        std::fs::create_dir_all(f.path("root/bin")).unwrap();
        std::fs::write(f.path("root/bin/hello"), "#!/bin/sh\necho hi\n").unwrap();
        std::fs::create_dir_all(f.path("share")).unwrap();
        f
    }

    /// `pack create` with `smolfile` as the Smolfile, to `out` (a packed
    /// executable with the real stub, or a bare payload for `.smolmachine`).
    fn create(&self, smolfile: &str, out: &str) -> assert_cmd::assert::Assert {
        let sf = self.path(&format!("{out}.Smolfile"));
        std::fs::write(&sf, smolfile).unwrap();
        let mut c = self.pack_create();
        c.arg("--smolfile")
            .arg(&sf)
            .arg("--rootfs")
            .arg(self.path("root"))
            .arg("--key")
            .arg(self.path("keys/test.key"))
            .arg("-o")
            .arg(self.path(out));
        if !out.ends_with(".smolmachine") {
            c.arg("--stub").arg(stub_bin());
        }
        c.assert()
    }

    /// The packed executable `exe` with `args`, in this fixture's cache.
    fn run(&self, exe: &Path, args: &[&str]) -> Output {
        let mut cmd = Command::new(exe);
        cmd.args(args);
        self.user_env(&mut cmd);
        cmd.env_remove("SMOLVM_DRY_RUN");
        smolvm_tests::output_when_not_busy(&mut cmd, exe)
    }
}

fn stub_available() -> bool {
    if stub_bin().exists() {
        return true;
    }
    let why = format!(
        "{} missing (cargo build --profile stub -p smolvm-stub)",
        stub_bin().display()
    );
    assert!(std::env::var_os("SMOLVM_REQUIRE_BOOT").is_none(), "{why}");
    eprintln!("SKIPPING: {why}");
    false
}

/// Exit code `want` and, for a failure, one stderr line holding each needle.
#[track_caller]
fn expect(out: &Output, want: i32, needles: &[&str]) {
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(want), "stderr: {err}");
    if want != 0 {
        assert_eq!(err.lines().count(), 1, "one line: {err}");
    }
    for n in needles {
        assert!(err.contains(n), "{n:?} not in: {err}");
    }
}

#[test]
fn the_stub_refuses_bad_run_time_settings_with_exit_2() {
    if !stub_available() {
        return;
    }
    let f = Fixture::new();
    f.create("entrypoint = [\"/bin/hello\"]\n", "app").success();
    let app = f.path("app");
    let share = f.path("share");
    let file = f.path("root/bin/hello");
    let vol = |spec: String| format!("--smolvm-volume={spec}");
    for (arg, needles) in [
        (
            vol("/nonexistent-dir:/data".into()),
            vec!["/nonexistent-dir", "existing host directory"],
        ),
        (
            vol(format!("{}:/data", file.display())),
            vec!["not a directory"],
        ),
        (vol(format!("{}", share.display())), vec!["HOST:GUEST"]),
        (vol(format!("{}:data", share.display())), vec!["absolute"]),
        (vol(format!("{}:/proc", share.display())), vec!["/proc"]),
        (vol(format!("{}:/a/../b", share.display())), vec!["'..'"]),
        ("--smolvm-env=1BAD=x".into(), vec!["not a variable name"]),
        ("--smolvm-env=NOVALUE".into(), vec!["KEY=VALUE"]),
        ("--smolvm-env=A=\u{1b}[2K".into(), vec!["control character"]),
        ("--smolvm-cpus=0".into(), vec!["cpus", "from 1 to"]),
        ("--smolvm-cpus=100000".into(), vec!["from 1 to"]),
        ("--smolvm-memory=32".into(), vec!["memory", "from 64 to"]),
        ("--smolvm-memory=lots".into(), vec!["from 64 to"]),
        ("--smolvm-workdir=srv".into(), vec!["absolute"]),
        ("--smolvm-workdir=/a\nb".into(), vec!["control character"]),
    ] {
        let out = f.run(&app, &["--smolvm-dry-run", &arg]);
        expect(&out, 2, &needles);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            !err.contains('\u{1b}'),
            "the message is safe to print: {err:?}"
        );
    }
    // Two volumes at one guest path.
    let twice = vol(format!("{}:/data", share.display()));
    expect(
        &f.run(&app, &["--smolvm-dry-run", &twice, &twice]),
        2,
        &["two volumes at guest path /data"],
    );
    // Good values pass, through the cache to the configured (not entered) VM.
    let ok = f.run(
        &app,
        &[
            "--smolvm-dry-run",
            &vol(format!("{}:/data:ro", share.display())),
            "--smolvm-env=A=b c",
            "--smolvm-cpus=1",
            "--smolvm-memory=128",
            "--smolvm-workdir=/srv",
        ],
    );
    expect(&ok, 0, &[]);
}

#[test]
fn info_shows_each_value_and_where_it_came_from() {
    if !stub_available() {
        return;
    }
    let f = Fixture::new();
    f.create(
        "entrypoint = [\"/bin/hello\"]\ncpus = 2\nenv = [\"A=packed\"]\nvolumes = [\"/state\"]\nstorage = 3\noverlay = 1\ninit = [\"echo first\", \"echo second\"]\n",
        "app",
    )
    .success();
    let share = f.path("share").canonicalize().unwrap();
    let out = f.run(
        &f.path("app"),
        &[
            "--smolvm-info",
            "--smolvm-memory=128",
            "--smolvm-env=A=run",
            &format!("--smolvm-volume={}:/data:ro", share.display()),
        ],
    );
    expect(&out, 0, &[]);
    let text = String::from_utf8_lossy(&out.stdout);
    for line in [
        "  cpus        2  (smolfile)".to_string(),
        "  memory      128 MiB  (run-time)".to_string(),
        "  env         [\"A=run\"]  (run-time)".to_string(),
        format!(
            "  volume      {} -> /data (read-only)  (run-time)",
            share.display()
        ),
        "  state       [\"/state\"] (persistent state)".to_string(),
        "  storage     3 GiB".to_string(),
        "  overlay     1 GiB".to_string(),
        "  init        [\"echo first\",\"echo second\"] (run in order as root before the workload)"
            .to_string(),
    ] {
        assert!(text.lines().any(|l| l == line), "{line:?} not in:\n{text}");
    }
    // Without run-time values, the packed ones and their sources.
    let out = f.run(&f.path("app"), &["--smolvm-info"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("  memory      512 MiB  (default)"), "{text}");
    assert!(!text.contains("run-time"), "{text}");
}

#[test]
fn pack_run_checks_its_settings_like_the_stub() {
    let f = Fixture::new();
    f.create("entrypoint = [\"/bin/hello\"]\n", "app.smolmachine")
        .success();
    for (args, says) in [
        (
            vec!["-v", "/nonexistent-dir:/data"],
            "existing host directory",
        ),
        (vec!["-e", "1A=x"], "not a variable name"),
        (vec!["--cpus", "0"], "from 1 to"),
        (vec!["--mem", "1"], "from 64 to"),
        (vec!["--workdir", "rel"], "absolute"),
    ] {
        let out = smolvm()
            .args(["pack", "run", "--dry-run"])
            .args(&args)
            .arg(f.path("app.smolmachine"))
            .env("SMOLVM_CACHE_DIR", f.path("cache"))
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(says), "{args:?}: {err}");
    }
}

#[test]
fn pack_create_refuses_host_paths_and_packs_smolvm_smolfiles() {
    let f = Fixture::new();
    let out = f.create("volumes = [\"/srv/data:/data\"]\n", "hostpath.smolmachine");
    let err = String::from_utf8_lossy(&out.get_output().stderr).into_owned();
    out.code(1);
    assert!(
        err.contains("`volumes`") && err.contains("never carries host paths"),
        "{err}"
    );
    assert_eq!(err.lines().count(), 1, "{err}");
    let out = f.create("gpu = true\n", "gpu.smolmachine");
    let err = String::from_utf8_lossy(&out.get_output().stderr).into_owned();
    out.code(1);
    assert!(err.contains("`gpu`") && err.contains("no GPU"), "{err}");
    let out = f.create("[health]\nexec = [\"true\"]\n", "health.smolmachine");
    let err = String::from_utf8_lossy(&out.get_output().stderr).into_owned();
    out.code(1);
    assert!(err.contains("not supported in a packed machine"), "{err}");

    // A Smolfile written for smolvm: [artifact] wins, [dev] is noted and ignored.
    let smolvm_style = r#"entrypoint = ["/bin/hello"]
cmd = ["dev"]
cpus = 1
memory = 256
env = ["PORT=8080"]
[dev]
volumes = ["./src:/app"]
init = ["make"]
[artifact]
cpus = 2
memory = 1024
cmd = ["prod"]
oci_platform = "linux/amd64"
[restart]
policy = "never"
"#;
    let out = f.create(smolvm_style, "smolvm.smolmachine").success();
    let err = String::from_utf8_lossy(&out.get_output().stderr).into_owned();
    assert!(
        err.contains("note: ") && err.contains("[dev] is ignored"),
        "{err}"
    );
    let text = smolvm()
        .args(["pack", "inspect", "--json"])
        .arg(f.path("smolvm.smolmachine"))
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&text.stdout).unwrap();
    let c = &v["config"];
    assert_eq!(
        (c["cpus"].as_u64(), c["memory_mib"].as_u64()),
        (Some(2), Some(1024))
    );
    assert_eq!(c["cmd"], serde_json::json!(["prod"]));
    assert_eq!(
        c["init"],
        serde_json::json!([]),
        "[dev] init is not carried"
    );
    assert_eq!(
        c["volumes"],
        serde_json::json!([]),
        "[dev] volumes are not carried"
    );
}

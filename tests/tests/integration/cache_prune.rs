//! `smolvm pack cache ls` and `smolvm pack prune` (issue 11) on a private
//! cache filled by real dry-run starts (`pack run --dry-run`: verify,
//! extract the kernel and root image into the cache, configure the VMM, no
//! VM), and prune racing a start in flight: a dry-run start held under
//! strace just after it took its lock on the root image (the delay is
//! injected on the return of its second `flock`, the first being the
//! kernel's), so that prune runs while the start holds both.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use smolvm_tests::{fixture, pattern, smolvm_bin};

/// A scratch directory ([`fixture::Scratch`]) with what these tests pack
/// and run in it.
struct Scratch(fixture::Scratch);

impl std::ops::Deref for Scratch {
    type Target = fixture::Scratch;
    fn deref(&self) -> &fixture::Scratch {
        &self.0
    }
}

impl Scratch {
    fn new() -> Scratch {
        Scratch(fixture::Scratch::new())
    }

    /// A bare payload named `name` whose root holds 1 MiB of its own data
    /// (`pattern` seeds differing in more than their lowest bit).
    fn pack(&self, name: &str, seed: u64) -> PathBuf {
        let root = self.path(&format!("root-{name}"));
        std::fs::create_dir_all(&root).unwrap();
        std::fs::write(root.join("data"), pattern(1 << 20, seed)).unwrap();
        let out = self.path(&format!("{name}.smolmachine"));
        self.pack_create()
            .args(["--level", "1", "--rootfs"])
            .arg(&root)
            .arg("--key")
            .arg(self.path("keys/test.key"))
            .args(["--name", name, "-o"])
            .arg(&out)
            .assert()
            .success();
        out
    }

    /// `program ARGS` with this scratch's cache, HOME and XDG directories.
    fn command(&self, program: &Path) -> Command {
        let mut c = Command::new(program);
        self.user_env(&mut c);
        c
    }

    fn smolvm(&self, args: &[&str]) -> Output {
        self.command(smolvm_bin()).args(args).output().unwrap()
    }

    fn dry_run(&self, artifact: &Path) -> Vec<String> {
        vec![
            "pack".into(),
            "run".into(),
            "--dry-run".into(),
            "--key".into(),
            self.path("keys/test.pub").display().to_string(),
            artifact.display().to_string(),
        ]
    }

    /// The cache file of `artifact`'s section `kind` (kernel or rootfs).
    fn cached(&self, artifact: &Path, kind: &str) -> PathBuf {
        let out = self.smolvm(&["pack", "inspect", "--json", artifact.to_str().unwrap()]);
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let hash = v["sections"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["kind"] == kind)
            .and_then(|s| s["sha256"].as_str())
            .unwrap()
            .to_string();
        match kind {
            "kernel" => self.path(&format!("cache/kernel/{hash}.elf")),
            _ => self.path(&format!("cache/rootfs/{hash}.erofs")),
        }
    }
}

#[track_caller]
fn ok(out: &Output) -> String {
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.status.code(), Some(0), "{text}");
    text
}

fn strace_available() -> bool {
    let found = Command::new("strace")
        .arg("-V")
        .output()
        .is_ok_and(|o| o.status.success());
    if !found {
        assert!(
            std::env::var_os("SMOLVM_REQUIRE_BOOT").is_none_or(|v| v != "1"),
            "strace is missing (apt-get install strace)"
        );
        eprintln!("SKIPPING: strace is missing");
    }
    found
}

#[test]
fn prune_keeps_what_a_start_in_flight_holds() {
    if !strace_available() {
        return;
    }
    let sc = Scratch::new();
    let a = sc.pack("alpha", 1);
    let b = sc.pack("beta", 2);
    // Warm the cache: one kernel (shared), two root images.
    for art in [&a, &b] {
        let args = sc.dry_run(art);
        ok(&sc.command(smolvm_bin()).args(&args).output().unwrap());
    }
    let (kernel, root_a, root_b) = (
        sc.cached(&a, "kernel"),
        sc.cached(&a, "rootfs"),
        sc.cached(&b, "rootfs"),
    );
    for f in [&kernel, &root_a, &root_b] {
        assert!(f.is_file(), "{} not in the cache", f.display());
    }
    let ls = ok(&sc.smolvm(&["pack", "cache", "ls"]));
    assert!(ls.contains("3 entries"), "{ls}");
    assert!(!ls.contains(" yes "), "nothing runs yet: {ls}");

    // A start of alpha, held for 8 s once its second flock (the root
    // image's shared lock) has been taken.
    let log = sc.path("strace.log");
    let start = sc
        .command(Path::new("strace"))
        .args(["-f", "-o"])
        .arg(&log)
        .args([
            "-e",
            "trace=flock",
            "-e",
            "inject=flock:delay_exit=8000000:when=2",
        ])
        .arg(smolvm_bin())
        .args(sc.dry_run(&a))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Wait until alpha's root image is held.
    let deadline = Instant::now() + Duration::from_secs(30);
    let root_a_hash = root_a.file_stem().unwrap().to_string_lossy().into_owned();
    loop {
        let ls = ok(&sc.smolvm(&["pack", "cache", "ls"]));
        if ls
            .lines()
            .any(|l| l.contains(&root_a_hash) && l.contains(" yes "))
        {
            eprintln!("while the start is in flight:\n{ls}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the start never held its root image: {ls}\nstrace: {}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(50));
    }

    let dry = ok(&sc.smolvm(&["pack", "prune", "--dry-run"]));
    assert_eq!(dry.matches("in use, kept").count(), 2, "{dry}");
    assert_eq!(dry.matches("would remove").count(), 1, "{dry}");
    assert!(root_b.is_file(), "a dry run removed something");

    let pruned = ok(&sc.smolvm(&["pack", "prune"]));
    eprintln!("prune during the start:\n{pruned}");
    assert_eq!(pruned.matches("in use, kept").count(), 2, "{pruned}");
    assert!(kernel.is_file() && root_a.is_file(), "{pruned}");
    assert!(
        !root_b.exists(),
        "beta's root image was not removed: {pruned}"
    );

    // The start finishes as if nothing happened.
    let out = start.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "the start failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let held = std::fs::read_to_string(&log).unwrap();
    assert!(held.contains("DELAYED"), "no delay was injected: {held}");

    // Nothing holds them now: everything goes, and a start writes it anew.
    let pruned = ok(&sc.smolvm(&["pack", "prune"]));
    assert!(!pruned.contains("in use"), "{pruned}");
    assert!(!kernel.exists() && !root_a.exists(), "{pruned}");
    let ls = ok(&sc.smolvm(&["pack", "cache", "ls"]));
    assert!(ls.contains("0 entries"), "{ls}");
    ok(&sc
        .command(smolvm_bin())
        .args(sc.dry_run(&a))
        .output()
        .unwrap());
    assert!(kernel.is_file() && root_a.is_file());
}

/// `--keep-last`, `--max-size`: the most recently used survive; sizes and
/// ages that do not parse are usage errors (exit 2).
#[test]
fn prune_policies_keep_the_most_recently_used() {
    let sc = Scratch::new();
    let arts: Vec<PathBuf> = (0..3u64)
        .map(|i| sc.pack(&format!("m{i}"), 10 + 2 * i))
        .collect();
    for art in &arts {
        ok(&sc
            .command(smolvm_bin())
            .args(sc.dry_run(art))
            .output()
            .unwrap());
        // Distinct last-use times (seconds resolution in listings).
        std::thread::sleep(Duration::from_millis(20));
    }
    let roots: Vec<PathBuf> = arts.iter().map(|a| sc.cached(a, "rootfs")).collect();
    let out = ok(&sc.smolvm(&["pack", "prune", "--keep-last", "2"]));
    assert!(!roots[0].exists(), "{out}");
    assert!(roots[1].is_file() && roots[2].is_file(), "{out}");
    assert!(
        sc.cached(&arts[0], "kernel").is_file(),
        "the one kernel is kept: {out}"
    );
    // Using m1 again makes it the most recent: --keep-last 1 keeps it.
    ok(&sc
        .command(smolvm_bin())
        .args(sc.dry_run(&arts[1]))
        .output()
        .unwrap());
    let out = ok(&sc.smolvm(&["pack", "prune", "--keep-last", "1"]));
    assert!(roots[1].is_file() && !roots[2].exists(), "{out}");
    // A cache already under the size: nothing goes; a tiny size: all.
    let out = ok(&sc.smolvm(&["pack", "prune", "--max-size", "1G"]));
    assert!(roots[1].is_file(), "{out}");
    let out = ok(&sc.smolvm(&["pack", "prune", "--max-size", "1"]));
    assert!(!roots[1].exists(), "{out}");
    for bad in [["--max-size", "lots"], ["--older-than", "soon"]] {
        let out = sc.smolvm(&["pack", "prune", bad[0], bad[1]]);
        assert_eq!(out.status.code(), Some(2), "{bad:?}");
    }
}

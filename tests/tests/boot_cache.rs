//! The runtime's first-start cache under concurrency and kills (security
//! checklist item 16), exercised natively through the stub's dry run, which
//! does everything but enter the VM (no KVM, so no L1 machine needed).
//!
//! Each scenario runs as root and as a non-root user (uid 1000, a HOME of its
//! own, cache in ~/.cache/smolvm; see `smolvm_tests::host_users`): most users
//! are not root.

use smolvm_tests::{as_each_host_user, bin, repo, HostUser};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

/// A scratch directory, removed when the test ends: each scenario packs
/// and extracts up to 160 MiB per host user, and leaving that behind on
/// every run filled this machine's disk.
struct Scratch(PathBuf);

impl std::ops::Deref for Scratch {
    type Target = Path;
    fn deref(&self) -> &Path {
        &self.0
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn scratch(name: &str) -> Scratch {
    let d = std::env::temp_dir().join(format!("smolvm-cache-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    Scratch(d)
}

/// Packs a machine whose rootfs holds `mib` MiB of incompressible data, so
/// extraction takes long enough to be interrupted.
fn packed(dir: &Path, mib: usize) -> Option<PathBuf> {
    let (smolvm, stub) = (
        bin("SMOLVM_BIN", "target/release/smolvm"),
        bin("SMOLVM_STUB", "target/stub/smolvm-stub"),
    );
    let kernel = repo().join(".cache/kernel/libkrunfw.so.5");
    if !smolvm.exists() || !stub.exists() || !kernel.exists() {
        assert!(
            std::env::var_os("SMOLVM_REQUIRE_BOOT").is_none(),
            "missing built binaries or kernel; run scripts/test.sh"
        );
        eprintln!("skipping: build with scripts/test.sh first");
        return None;
    }
    let root = dir.join("root");
    std::fs::create_dir_all(root.join("data")).unwrap();
    // xorshift: incompressible enough, no extra crates.
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    for f in 0..mib {
        let mut buf = vec![0u8; 1 << 20];
        for chunk in buf.chunks_mut(8) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            chunk.copy_from_slice(&x.to_le_bytes());
        }
        std::fs::write(root.join(format!("data/{f}")), buf).unwrap();
    }
    // Signed: the stub refuses unsigned artifacts.
    let keys = dir.join("keys");
    assert!(Command::new(&smolvm)
        .args(["pack", "keygen", "-o"])
        .arg(&keys)
        .status()
        .unwrap()
        .success());
    let out = Command::new(&smolvm)
        .args(["pack", "create", "--level", "1", "--key"])
        .arg(keys.join("smolvm.key"))
        .arg("--rootfs")
        .arg(&root)
        .arg("--kernel")
        .arg(&kernel)
        .arg("--stub")
        .arg(&stub)
        .arg("-o")
        .arg(dir.join("m"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    Some(dir.join("m"))
}

/// A dry run of `exe` as `user`, in its cache named `cache`.
fn dry_run(user: &HostUser, exe: &Path, cache: &str) -> Command {
    let mut c = user.command(exe, cache);
    c.arg("--smolvm-dry-run").env("SMOLVM_TRACE", "1");
    c
}

/// Published root images: the only names a start trusts (a temporary file
/// is renamed to `<sha256>.erofs` only after its hash checked out).
fn published_images(cache: &Path) -> usize {
    std::fs::read_dir(cache.join("rootfs"))
        .map(|rd| {
            rd.flatten()
                .filter(|e| e.file_name().to_string_lossy().ends_with(".erofs"))
                .count()
        })
        .unwrap_or(0)
}

/// Polls until a first-start extraction directory appears under `cache`
/// (at most 60 s: a start in a loaded machine can take seconds to get
/// there; a count of 400 polls gave it 2).
fn wait_for_extraction(cache: &Path) {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
        if let Ok(rd) = std::fs::read_dir(cache.join("rootfs")) {
            if rd
                .flatten()
                .any(|e| e.file_name().to_string_lossy().starts_with(".tmp-"))
            {
                return;
            }
        }
    }
    panic!("extraction never started");
}

#[test]
fn concurrent_first_starts_extract_once_and_all_start() {
    let dir = scratch("concurrent");
    let Some(exe) = packed(&dir, 48) else { return };
    as_each_host_user(&dir, |user| {
        let children: Vec<_> = (0..4)
            .map(|_| {
                dry_run(user, &exe, "c")
                    .stdout(Stdio::null())
                    .stderr(Stdio::piped())
                    .spawn()
                    .unwrap()
            })
            .collect();
        let mut extractions = 0;
        for c in children {
            let out = c.wait_with_output().unwrap();
            let err = String::from_utf8_lossy(&out.stderr);
            assert!(out.status.success(), "a concurrent start failed: {err}");
            assert!(err.contains("rootfs ready"), "{err}");
            extractions += err.matches("writing the rootfs image").count();
        }
        assert_eq!(extractions, 1, "several first starts must extract once");
        assert_eq!(published_images(&user.cache_dir("c")), 1);
    });
}

#[test]
fn a_killed_extraction_is_never_trusted() {
    let dir = scratch("killed");
    let Some(exe) = packed(&dir, 160) else { return };
    as_each_host_user(&dir, |user| {
        let cache = user.cache_dir("k");
        let mut child = dry_run(user, &exe, "k")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        // Wait until the extraction is under way, then kill -9 mid-way.
        let rootfs_dir = cache.join("rootfs");
        wait_for_extraction(&cache);
        std::thread::sleep(Duration::from_millis(50));
        child.kill().unwrap();
        let status = child.wait().unwrap();
        assert!(
            !status.success(),
            "the extraction finished before the kill; make the rootfs bigger"
        );
        assert_eq!(
            published_images(&cache),
            0,
            "a killed extraction left a trusted entry"
        );

        // The next start notices, re-extracts and succeeds.
        let out = dry_run(user, &exe, "k").output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{err}");
        assert!(
            err.contains("writing the rootfs image"),
            "the next start must re-extract: {err}"
        );
        assert_eq!(published_images(&cache), 1);
        let leftovers: Vec<_> = std::fs::read_dir(&rootfs_dir)
            .unwrap()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().starts_with(".tmp-"))
            .collect();
        assert!(
            leftovers.is_empty(),
            "stale temporary extraction left behind"
        );
    });
}

/// Starts a cold `smolvm pack run --dry-run` as `user` of a copy of the bare
/// payload `bare`, waits until extraction is under way, lets `meddle` change
/// the file, and returns the run's exit status, stderr and cache dir.
fn meddle_during_extraction(
    user: &HostUser,
    bare: &Path,
    dir: &Path,
    name: &str,
    meddle: impl FnOnce(&Path),
) -> (std::process::ExitStatus, String, PathBuf) {
    let copy = dir.join(format!("{name}-{}.smolmachine", user.label));
    std::fs::copy(bare, &copy).unwrap();
    let cache = user.cache_dir(name);
    let child = user
        .command(bin("SMOLVM_BIN", "target/release/smolvm"), name)
        .args(["pack", "run", "--dry-run"])
        .arg(&copy)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_for_extraction(&cache);
    meddle(&copy);
    let out = child.wait_with_output().unwrap();
    (
        out.status,
        String::from_utf8_lossy(&out.stderr).into_owned(),
        cache,
    )
}

#[test]
fn truncating_or_rewriting_the_file_during_extraction_fails_closed() {
    let dir = scratch("meddle");
    let Some(exe) = packed(&dir, 160) else { return };
    // A running packed executable cannot be opened for writing at all
    // (ETXTBSY): the kernel protects the stub's own file. A bare payload
    // booted by `pack run` has no such protection, so meddle with that.
    let bare = dir.join("m.smolmachine");
    let smolvm = bin("SMOLVM_BIN", "target/release/smolvm");
    let out = Command::new(&smolvm)
        .args(["pack", "create", "--level", "1", "--key"])
        .arg(dir.join("keys/smolvm.key"))
        .arg("--rootfs")
        .arg(dir.join("root"))
        .arg("--kernel")
        .arg(repo().join(".cache/kernel/libkrunfw.so.5"))
        .arg("-o")
        .arg(&bare)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let _ = exe;
    let len = std::fs::metadata(&bare).unwrap().len();

    as_each_host_user(&dir, |user| {
        // Truncated by another process: a clean error (no SIGBUS), nothing
        // trusted.
        let (status, err, cache) = meddle_during_extraction(user, &bare, &dir, "truncated", |f| {
            std::fs::OpenOptions::new()
                .write(true)
                .open(f)
                .unwrap()
                .set_len(len / 2)
                .unwrap();
        });
        assert!(
            matches!(status.code(), Some(1 | 2)),
            "exit {status:?}, expected a clean failure: {err}"
        );
        assert_eq!(published_images(&cache), 0, "{err}");

        // Rewritten in place: what would be extracted no longer matches the
        // verified hash, so nothing is published and nothing boots.
        let (status, err, cache) = meddle_during_extraction(user, &bare, &dir, "rewritten", |f| {
            use std::os::unix::fs::FileExt;
            let file = std::fs::OpenOptions::new().write(true).open(f).unwrap();
            // The last 16 MiB before the trailer are rootfs bytes not read yet.
            for off in (len - (16 << 20)..len - 4096).step_by(4096) {
                file.write_all_at(b"\xff\xfe\xfd\xfc", off).unwrap();
            }
        });
        assert_eq!(status.code(), Some(1), "{err}");
        assert!(err.contains("SHA-256"), "{err}");
        assert_eq!(published_images(&cache), 0, "{err}");
    });
}

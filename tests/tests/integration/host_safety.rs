//! A hostile root filesystem section must not reach the host outside the
//! cache (security checklist items 8, 12 and 13), checked at the artifact
//! level through both ways a machine starts: a packed executable with the
//! real stub run with `--smolvm-dry-run` (what people double-click), and
//! `smolvm pack run --dry-run` on a bare `.smolmachine`; each with and without
//! the signer pinned (`--smolvm-key=PUB`, `--key PUB`), as root and as an
//! unprivileged user whose HOME holds the targets (`$HOME`, `~/.ssh`,
//! `~/.ssh/authorized_keys`).
//!
//! The payloads are the tars that made format 1's host-side extraction chmod
//! host paths before the section hash was checked: (a) a symlink swapped
//! after a directory was made through it, then that directory chmodded by
//! path; (b) a non-UTF-8 directory name whose lossy UTF-8 rendering is the
//! name of a symlink out; (c) both, with the rootfs bytes replaced after
//! signing by same-length hostile ones (manifest and signature still verify,
//! the section hash does not): exit 1, nothing published.
//! host_side_payloads.rs runs the same kind of tars through `pack run`; this
//! file adds the stub, the pinned and unpinned key, and a snapshot of
//! everything around the cache.
//!
//! The assertions are about the host, not about how the runtime reads the
//! section: files and directories around the cache keep their modes, owners
//! and contents, nothing appears next to them, and no run dies of a signal
//! or a panic. Format 2 stores the section as the image the guest mounts, so
//! (a) and (b) now end as successful dry runs; only (c)'s exit code is
//! pinned, the others need only be documented ones.
//!
//! Binaries: `SMOLVM_BIN` (default target/release/smolvm) and `SMOLVM_STUB`
//! (default target/stub/smolvm-stub), built by `cargo build --release -p
//! smolvm-packer` and `cargo build --profile stub -p smolvm-stub`. Without
//! them the tests skip, unless `SMOLVM_REQUIRE_BOOT` is set (scripts/test.sh).

use std::collections::BTreeMap;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use sha2::{Digest, Sha256};
use smolvm_format::SectionKind;
use smolvm_tests::{bin, build, stub_bin, test_key, write_key_files, ArtifactSpec};

/// The unprivileged user the non-root runs switch to.
const USER: (u32, u32) = (1000, 1000);

/// What the owner's `~/.ssh/authorized_keys` holds before and after.
const OWNER_KEY: &[u8] = b"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOwner owner@host\n";

// ------------------------------------------------------------------ archives

/// One tar entry with a raw byte name: tar names are bytes, and case (b)
/// needs one that is not UTF-8.
enum Item<'a> {
    Dir(&'a [u8], u32),
    Symlink(&'a [u8], &'a [u8]),
}

fn tar_of(items: &[Item<'_>]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for item in items {
        let (kind, name, mode, link): (_, &[u8], u32, &[u8]) = match *item {
            Item::Dir(name, mode) => (tar::EntryType::Directory, name, mode, b""),
            Item::Symlink(name, to) => (tar::EntryType::Symlink, name, 0o777, to),
        };
        // A plain header: the link name field has a fixed size, so two
        // archives that differ only in a link target have the same length.
        assert!(name.len() < 100 && link.len() < 100, "fits a plain header");
        let mut h = tar::Header::new_gnu();
        let gnu = h.as_gnu_mut().expect("GNU header");
        gnu.name[..name.len()].copy_from_slice(name);
        gnu.linkname[..link.len()].copy_from_slice(link);
        h.set_entry_type(kind);
        h.set_mode(mode);
        h.set_size(0);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(1_600_000_000);
        h.set_cksum();
        b.append(&h, std::io::empty()).expect("append tar entry");
    }
    b.into_inner().expect("finish tar")
}

/// (a): `lnk -> real`, `real/`, `lnk/.ssh/` 0777 (made as `real/.ssh`), then
/// `lnk` replaced by a symlink to `home`. Whatever chmods `lnk/.ssh` by path
/// at the end chmods `home/.ssh`.
fn symlink_swap(home: &[u8]) -> Vec<u8> {
    tar_of(&[
        Item::Symlink(b"lnk", b"real"),
        Item::Dir(b"real", 0o755),
        Item::Dir(b"lnk/.ssh", 0o777),
        Item::Symlink(b"lnk", home),
    ])
}

/// (b): symlinks named `h\u{FFFD}` (to `home`) and `k\u{FFFD}` (to
/// `home/.ssh/authorized_keys`), and directories named `h\xff` and `k\xff`
/// (0777): rebuilt from their lossy UTF-8 form, the directories' names are
/// the symlinks'.
fn lossy_twins(home: &[u8]) -> Vec<u8> {
    let keys = [home, b"/.ssh/authorized_keys"].concat();
    tar_of(&[
        Item::Symlink("h\u{FFFD}".as_bytes(), home),
        Item::Dir(b"h\xff", 0o777),
        Item::Symlink("k\u{FFFD}".as_bytes(), &keys),
        Item::Dir(b"k\xff", 0o777),
    ])
}

// --------------------------------------------------------------------- cases

#[derive(Clone, Copy)]
struct Case {
    name: &'static str,
    /// The rootfs section, given the victim's HOME.
    tar: fn(&[u8]) -> Vec<u8>,
    /// Signed with harmless link targets, then the section bytes replaced by
    /// the hostile ones (same length): the section hash no longer matches.
    altered_after_signing: bool,
}

#[derive(Clone, Copy, Debug)]
enum Runner {
    /// `smolvm pack run --dry-run FILE.smolmachine`
    PackRun,
    /// `./FILE --smolvm-dry-run` (a packed executable with the real stub)
    Stub,
}

/// Who runs the binary: the test's own uid (root in CI), or, when that is
/// root, also [`USER`] through setpriv, with a HOME and cache it owns.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Who {
    Caller,
    User,
}

struct Binaries {
    smolvm: PathBuf,
    stub: PathBuf,
}

/// The binaries under test, copied to `dir` (0755) so that the unprivileged
/// user can reach them whatever the modes above the target directory.
fn binaries(dir: &Path) -> Option<Binaries> {
    let (smolvm, stub) = (bin("SMOLVM_BIN", "target/release/smolvm"), stub_bin());
    if !smolvm.is_file() || !stub.is_file() {
        assert!(
            std::env::var_os("SMOLVM_REQUIRE_BOOT").is_none(),
            "missing {} or {}: cargo build --release -p smolvm-packer && cargo build --profile stub -p smolvm-stub",
            smolvm.display(),
            stub.display()
        );
        eprintln!("skipping: build the smolvm binary and the stub first (see the module doc)");
        return None;
    }
    std::fs::create_dir_all(dir).unwrap();
    let copy = |from: &Path, name: &str| {
        let to = dir.join(name);
        std::fs::copy(from, &to).unwrap();
        std::fs::set_permissions(&to, std::fs::Permissions::from_mode(0o755)).unwrap();
        to
    };
    Some(Binaries {
        smolvm: copy(&smolvm, "smolvm"),
        stub: copy(&stub, "smolvm-stub"),
    })
}

/// Runs each case for every user, runner and key setting, all of them even
/// if one fails; then panics naming every run that failed.
fn run_cases(cases: &[Case]) {
    let scratch = tempfile::tempdir().unwrap();
    // The user must traverse to the binaries and to its world.
    std::fs::set_permissions(scratch.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let Some(bins) = binaries(&scratch.path().join("bin")) else {
        return;
    };
    // /proc/self belongs to the effective uid.
    let uid = std::fs::metadata("/proc/self").unwrap().uid();
    let users: &[Who] = if uid == 0 {
        &[Who::Caller, Who::User]
    } else {
        eprintln!(
            "not running as root: runs only as uid {uid}, not also as uid {}",
            USER.0
        );
        &[Who::Caller]
    };
    let (mut failures, mut n) = (Vec::new(), 0);
    for (&case, &who) in cases.iter().flat_map(|c| users.iter().map(move |w| (c, w))) {
        for runner in [Runner::PackRun, Runner::Stub] {
            for with_key in [true, false] {
                let label = format!(
                    "{} as uid {} via {runner:?}{}",
                    case.name,
                    if who == Who::User { USER.0 } else { uid },
                    if with_key { " with the key" } else { "" }
                );
                n += 1;
                let world = scratch.path().join(format!("run{n}"));
                if let Err(why) = run_once(case, &bins, &world, &label, who, runner, with_key) {
                    failures.push(format!("{label}: {why}"));
                }
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} run(s) failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// One run in a fresh `world`: HOME (with `.ssh`), keys, the artifact, and the
/// cache directory; everything but the cache is compared before and after.
fn run_once(
    case: Case,
    bins: &Binaries,
    world: &Path,
    label: &str,
    who: Who,
    runner: Runner,
    with_key: bool,
) -> Result<(), String> {
    let home = world.join("home");
    let cache = world.join("cache");
    let state = world.join("state");
    std::fs::create_dir_all(home.join(".ssh")).unwrap();
    std::fs::write(home.join(".profile"), b"umask 022\n").unwrap();
    std::fs::write(home.join(".ssh/authorized_keys"), OWNER_KEY).unwrap();
    for (p, mode) in [
        (world, 0o755),
        (&home, 0o700),
        (&home.join(".ssh"), 0o700),
        (&home.join(".ssh/authorized_keys"), 0o600),
        (&home.join(".profile"), 0o644),
    ] {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
    }
    let (_, public) = write_key_files(&world.join("keys"), "test", &test_key());

    let hostile = (case.tar)(home.as_os_str().as_bytes());
    let stub = match runner {
        Runner::PackRun => None,
        Runner::Stub => Some(std::fs::read(&bins.stub).unwrap()),
    };
    let spec = |rootfs| ArtifactSpec {
        stub: stub.clone(),
        // Stored as is, so the section bytes are the tar's bytes.
        compress: false,
        rootfs,
        ..Default::default()
    };
    let built = if case.altered_after_signing {
        let signed = build(&spec((case.tar)(b"real")));
        let (_, range) = signed
            .layout
            .sections
            .iter()
            .find(|(k, _)| *k == SectionKind::Rootfs)
            .cloned()
            .expect("a rootfs section");
        let mut bytes = signed.bytes.clone();
        let range = usize::try_from(range.start).unwrap()..usize::try_from(range.end).unwrap();
        assert_eq!(range.len(), hostile.len(), "same-length replacement");
        bytes[range].copy_from_slice(&hostile);
        (bytes, signed.manifest)
    } else {
        let b = build(&spec(hostile.clone()));
        (b.bytes, b.manifest)
    };
    let (bytes, manifest) = built;
    let rootfs_sha = manifest
        .section(SectionKind::Rootfs)
        .expect("a rootfs section")
        .sha256
        .to_string();
    let file = match runner {
        Runner::PackRun => world.join("machine.smolmachine"),
        Runner::Stub => world.join("machine"),
    };
    std::fs::write(&file, &bytes).unwrap();
    let mode = if matches!(runner, Runner::Stub) {
        0o755
    } else {
        0o644
    };
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(mode)).unwrap();
    if who == Who::User {
        chown_tree(world, USER);
    }

    let before = snapshot(world, &cache);
    let mut cmd = match who {
        Who::Caller => Command::new(match runner {
            Runner::PackRun => &bins.smolvm,
            Runner::Stub => &file,
        }),
        Who::User => {
            let mut c = Command::new("setpriv");
            c.arg(format!("--reuid={}", USER.0))
                .arg(format!("--regid={}", USER.1))
                .args(["--clear-groups", "--"])
                .arg(match runner {
                    Runner::PackRun => &bins.smolvm,
                    Runner::Stub => &file,
                });
            c
        }
    };
    match runner {
        Runner::PackRun => {
            cmd.args(["pack", "run", "--dry-run"]);
            if with_key {
                cmd.arg("--key").arg(&public);
            }
            cmd.arg(&file);
        }
        Runner::Stub => {
            cmd.arg("--smolvm-dry-run");
            if with_key {
                let mut flag = b"--smolvm-key=".to_vec();
                flag.extend_from_slice(public.as_os_str().as_bytes());
                cmd.arg(std::ffi::OsStr::from_bytes(&flag));
            }
        }
    }
    let out = cmd
        .current_dir(world)
        .env("HOME", &home)
        .env("SMOLVM_CACHE_DIR", &cache)
        // A trusted start records its version (the documented rollback
        // state, runtime/src/trust.rs): kept apart, and checked to be only that.
        .env("XDG_STATE_HOME", &state)
        .env_remove("XDG_CACHE_HOME")
        .env_remove("SMOLVM_TRUSTED_KEYS")
        .env_remove("SMOLVM_DRY_RUN")
        .env_remove("SMOLVM_TRACE")
        .output()
        .map_err(|e| format!("cannot run: {e}"))?;
    let after = snapshot(world, &cache);
    let stderr = String::from_utf8_lossy(&out.stderr);
    eprintln!("{label}: {}: {}", out.status, stderr.trim());

    let mut faults = Vec::new();
    for (path, (was, now)) in differences(&before, &after) {
        if path.starts_with(&state)
            && (path == state
                || path == state.join("smolvm")
                || path == state.join("smolvm/min-versions.json")
                // The first signer of a name, remembered by a start with no
                // trusted keys (issue 21, trust on first use).
                || path == state.join("smolvm/known-signers.json")
                || path == state.join("smolvm/known-signers.keys.json")
                // The lock files each is changed under (runtime::state_file).
                || path == state.join("smolvm/min-versions.json.lock")
                || path == state.join("smolvm/known-signers.json.lock")
                || path == state.join("smolvm/known-signers.keys.json.lock"))
        {
            continue;
        }
        faults.push(format!(
            "{} outside the cache changed: {was} -> {now}",
            path.display()
        ));
    }
    match out.status.code() {
        // A signal (a panic under panic=abort, a crash) is never an answer.
        None => faults.push(format!("killed: {}", out.status)),
        // 0 ok (dry run), 1 verification failed, 2 I/O or environment.
        Some(0..=2) => {}
        // 101: a Rust panic in a binary that unwinds.
        Some(c) => faults.push(format!("exit code {c} is not a documented one")),
    }
    if case.altered_after_signing {
        if out.status.code() != Some(1) {
            faults.push(format!(
                "exit {:?}, want 1 (section hash mismatch)",
                out.status.code()
            ));
        }
        let published = published(&cache, &rootfs_sha, &hostile);
        if !published.is_empty() {
            faults.push(format!("published from altered bytes: {published:?}"));
        }
    }
    if faults.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "{}\n  stderr: {}",
            faults.join("; "),
            stderr.trim()
        ))
    }
}

fn chown_tree(p: &Path, (uid, gid): (u32, u32)) {
    std::os::unix::fs::lchown(p, Some(uid), Some(gid)).unwrap();
    if std::fs::symlink_metadata(p).unwrap().is_dir() {
        for e in std::fs::read_dir(p).unwrap() {
            chown_tree(&e.unwrap().path(), (uid, gid));
        }
    }
}

// ------------------------------------------------------------ host state

/// What a path outside the cache is: type, mode, owner, and content (its
/// hash) or link target.
#[derive(Clone, Debug, PartialEq)]
struct Node {
    kind: &'static str,
    mode: u32,
    uid: u32,
    gid: u32,
    content: String,
}

impl std::fmt::Display for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} {:o} {}:{} {}",
            self.kind, self.mode, self.uid, self.gid, self.content
        )
    }
}

/// Every path under `top` except the subtree `skip` (the cache), without
/// following symlinks.
fn snapshot(top: &Path, skip: &Path) -> BTreeMap<PathBuf, Node> {
    fn walk(p: &Path, skip: &Path, out: &mut BTreeMap<PathBuf, Node>) {
        if p == skip {
            return;
        }
        let m = std::fs::symlink_metadata(p).unwrap();
        let t = m.file_type();
        let (kind, content) = if t.is_symlink() {
            let target = std::fs::read_link(p).unwrap();
            ("symlink", format!("-> {}", target.display()))
        } else if t.is_file() && m.len() > 1 << 20 {
            // The artifact (it holds a stub): size and mtime are enough.
            (
                "file",
                format!("{} bytes, mtime {}.{}", m.len(), m.mtime(), m.mtime_nsec()),
            )
        } else if t.is_file() {
            let hash = Sha256::digest(std::fs::read(p).unwrap());
            ("file", hex::encode(&hash[..8]))
        } else if t.is_dir() {
            ("dir", String::new())
        } else {
            ("other", String::new())
        };
        out.insert(
            p.to_path_buf(),
            Node {
                kind,
                mode: m.mode() & 0o7777,
                uid: m.uid(),
                gid: m.gid(),
                content,
            },
        );
        if t.is_dir() {
            for e in std::fs::read_dir(p).unwrap() {
                walk(&e.unwrap().path(), skip, out);
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(top, skip, &mut out);
    out
}

/// Paths whose state differs, with "absent" for a side where there is none.
fn differences(
    before: &BTreeMap<PathBuf, Node>,
    after: &BTreeMap<PathBuf, Node>,
) -> Vec<(PathBuf, (String, String))> {
    let show = |n: Option<&Node>| n.map_or("absent".to_string(), |n| n.to_string());
    let mut paths: Vec<&PathBuf> = before.keys().chain(after.keys()).collect();
    paths.sort();
    paths.dedup();
    paths
        .into_iter()
        .filter(|p| before.get(*p) != after.get(*p))
        .map(|p| (p.clone(), (show(before.get(p)), show(after.get(p)))))
        .collect()
}

/// What in the cache could stand for the rootfs of an altered section: a name
/// carrying the manifest's rootfs hash (other than a lock), a completion
/// marker, or a file holding the altered bytes themselves.
fn published(cache: &Path, sha: &str, section: &[u8]) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![cache.to_path_buf()];
    while let Some(p) = stack.pop() {
        let Ok(m) = std::fs::symlink_metadata(&p) else {
            continue;
        };
        let name = p.file_name().map(|n| n.to_string_lossy().into_owned());
        let name = name.unwrap_or_default();
        let named = (name.contains(sha) && !name.ends_with(".lock")) || name.ends_with(".complete");
        let holds = m.is_file()
            && m.len() == section.len() as u64
            && std::fs::read(&p).is_ok_and(|b| b == section);
        if p != cache && (named || holds) {
            out.push(p.clone());
        }
        if m.is_dir() {
            if let Ok(rd) = std::fs::read_dir(&p) {
                stack.extend(rd.flatten().map(|e| e.path()));
            }
        }
    }
    out
}

// --------------------------------------------------------------------- tests

#[test]
fn a_symlink_swapped_under_a_directory_changes_nothing_outside_the_cache() {
    run_cases(&[Case {
        name: "(a) symlink swap",
        tar: symlink_swap,
        altered_after_signing: false,
    }]);
}

#[test]
fn a_non_utf8_name_beside_its_lossy_twin_changes_nothing_outside_the_cache() {
    run_cases(&[Case {
        name: "(b) non-UTF-8 name pair",
        tar: lossy_twins,
        altered_after_signing: false,
    }]);
}

#[test]
fn rootfs_bytes_altered_after_signing_exit_1_and_change_nothing() {
    run_cases(&[
        Case {
            name: "(c) symlink swap altered after signing",
            tar: symlink_swap,
            altered_after_signing: true,
        },
        Case {
            name: "(c) non-UTF-8 name pair altered after signing",
            tar: lossy_twins,
            altered_after_signing: true,
        },
    ]);
}

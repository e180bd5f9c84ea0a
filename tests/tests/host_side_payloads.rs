//! Hostile rootfs sections must not reach the host (issue 7).
//!
//! Until format version 2, a first start unpacked the rootfs tar on the
//! host and chmodded directories again through paths that followed
//! symlinks, before the section hash was checked: a signed payload, or one
//! whose rootfs bytes were changed after signing, could chmod a host path
//! outside the cache (`~/.ssh`, `$HOME`). Two tars did it:
//!
//! - symlink `lnk -> real`, directory `lnk/victim`, then `lnk` replaced by a
//!   symlink to the outside directory: the permission pass followed the new
//!   `lnk`;
//! - a symlink named `x\u{FFFD}` beside a directory named `x\xff`: the path
//!   rebuilt with `from_utf8_lossy` named the symlink.
//!
//! The host no longer interprets the section (the guest mounts it as an
//! image), but these exact payloads stay as regressions: signed normally,
//! and altered after signing, run by root and by a non-root user, they
//! change nothing outside the cache, and the altered one publishes nothing.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use smolvm_format::SectionKind;
use smolvm_tests::{as_each_host_user, bin, build, write_key_files, ArtifactSpec, HostUser};
use smolvm_tests::{test_key, USER_GID, USER_UID};

fn scratch(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("smolvm-hostile-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// One tar entry with raw byte names (tar names are bytes, not text).
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
        assert!(name.len() < 100 && link.len() < 100, "fits a plain header");
        let mut h = tar::Header::new_gnu();
        let gnu = h.as_gnu_mut().unwrap();
        gnu.name[..name.len()].copy_from_slice(name);
        gnu.linkname[..link.len()].copy_from_slice(link);
        h.set_entry_type(kind);
        h.set_mode(mode);
        h.set_size(0);
        h.set_mtime(1_600_000_000);
        h.set_cksum();
        b.append(&h, std::io::empty()).unwrap();
    }
    b.into_inner().unwrap()
}

/// The symlink swap aimed at `outside` (which holds `victim`).
fn symlink_swap(outside: &Path) -> Vec<u8> {
    let target = outside.as_os_str().as_encoded_bytes();
    tar_of(&[
        Item::Dir(b"real", 0o755),
        Item::Symlink(b"lnk", b"real"),
        Item::Dir(b"lnk/victim", 0o777),
        Item::Symlink(b"lnk", target),
    ])
}

/// The lossy twin aimed at `victim` itself.
fn lossy_twin(victim: &Path) -> Vec<u8> {
    tar_of(&[
        Item::Symlink(
            "x\u{FFFD}".as_bytes(),
            victim.as_os_str().as_encoded_bytes(),
        ),
        Item::Dir(b"x\xff", 0o777),
    ])
}

/// A directory outside any cache, with a file, that a payload must not touch.
struct Victim {
    dir: PathBuf,
    file: PathBuf,
}

impl Victim {
    fn new(parent: &Path, owner: Option<(u32, u32)>) -> Victim {
        let dir = parent.join("victim");
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("authorized_keys");
        std::fs::write(&file, "ssh-ed25519 AAAA the-users-key\n").unwrap();
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).unwrap();
        if let Some((uid, gid)) = owner {
            std::os::unix::fs::chown(&file, Some(uid), Some(gid)).unwrap();
            std::os::unix::fs::chown(&dir, Some(uid), Some(gid)).unwrap();
        }
        Victim { dir, file }
    }

    fn assert_untouched(&self, what: &str) {
        let mode = |p: &Path| std::fs::symlink_metadata(p).unwrap().mode() & 0o7777;
        assert_eq!(
            mode(&self.dir),
            0o700,
            "{what}: victim directory mode changed"
        );
        assert_eq!(mode(&self.file), 0o600, "{what}: victim file mode changed");
        assert_eq!(
            std::fs::read_to_string(&self.file).unwrap(),
            "ssh-ed25519 AAAA the-users-key\n",
            "{what}: victim file content changed"
        );
        let entries: Vec<_> = std::fs::read_dir(&self.dir)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(
            entries.len(),
            1,
            "{what}: something was created beside the victim: {entries:?}"
        );
    }
}

/// Writes `bytes` as a world-readable bare payload.
fn write_payload(path: &Path, bytes: &[u8]) {
    std::fs::write(path, bytes).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o644)).unwrap();
}

/// The signed payload with the rootfs section's last stored byte flipped:
/// the manifest still verifies, the section's hash no longer matches.
fn altered_after_signing(bytes: &[u8], built: &smolvm_tests::Built) -> Vec<u8> {
    let (_, range) = built
        .layout
        .sections
        .iter()
        .find(|(k, _)| *k == SectionKind::Rootfs)
        .unwrap();
    let mut out = bytes.to_vec();
    let last = usize::try_from(range.end - 1).unwrap();
    out[last] ^= 0x01;
    out
}

fn run(
    user: &HostUser,
    smolvm: &Path,
    payload: &Path,
    cache: &str,
    key: Option<&Path>,
) -> (i32, String) {
    let mut c = user.command(smolvm, cache);
    c.args(["pack", "run", "--dry-run"]);
    if let Some(k) = key {
        c.arg("--key").arg(k);
    }
    let out = c.arg(payload).output().unwrap();
    let code = out
        .status
        .code()
        .unwrap_or_else(|| panic!("killed by a signal: {:?}", out.status));
    (code, String::from_utf8_lossy(&out.stderr).into_owned())
}

/// Files under the cache, relative, hashes masked.
fn cache_files(cache: &Path) -> Vec<String> {
    fn walk(dir: &Path, base: &Path, out: &mut Vec<String>) {
        let Ok(rd) = std::fs::read_dir(dir) else {
            return;
        };
        for e in rd.flatten() {
            let p = e.path();
            if e.file_type().unwrap().is_dir() {
                walk(&p, base, out);
            } else {
                out.push(p.strip_prefix(base).unwrap().display().to_string());
            }
        }
    }
    let mut out = Vec::new();
    walk(cache, cache, &mut out);
    out.sort();
    out
}

#[test]
fn hostile_rootfs_sections_change_nothing_outside_the_cache() {
    let dir = scratch("payloads");
    let smolvm = dir.join("smolvm");
    std::fs::copy(bin("SMOLVM_BIN", "target/release/smolvm"), &smolvm)
        .or_else(|_| std::fs::copy(smolvm_tests::smolvm_bin(), &smolvm))
        .unwrap();
    let (_, public) = write_key_files(&dir.join("keys"), "test", &test_key());
    std::fs::set_permissions(dir.join("keys"), std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(&public, std::fs::Permissions::from_mode(0o644)).unwrap();

    as_each_host_user(&dir, |user| {
        let owner = user.is_switched().then_some((USER_UID, USER_GID));
        let home = dir.join(format!("outside-{}", user.label));
        std::fs::create_dir_all(&home).unwrap();
        if let Some((uid, gid)) = owner {
            std::os::unix::fs::chown(&home, Some(uid), Some(gid)).unwrap();
        }
        let victim = Victim::new(&home, owner);
        for (name, tar) in [
            ("swap", symlink_swap(&victim.dir)),
            ("lossy", lossy_twin(&victim.dir)),
        ] {
            let built = build(&ArtifactSpec {
                rootfs: tar,
                ..ArtifactSpec::default()
            });
            let signed = dir.join(format!("{name}-{}.smolmachine", user.label));
            write_payload(&signed, &built.bytes);
            let altered = dir.join(format!("{name}-altered-{}.smolmachine", user.label));
            write_payload(&altered, &altered_after_signing(&built.bytes, &built));

            // Signed as it is: the runtime stores the section as an opaque
            // image file (the guest would fail to mount it); nothing else.
            let cache = format!("{name}-signed");
            let (code, err) = run(user, &smolvm, &signed, &cache, None);
            assert_eq!(
                code, 0,
                "{name}: the dry run should publish the image: {err}"
            );
            victim.assert_untouched(name);
            let files = cache_files(&user.cache_dir(&cache));
            assert!(
                files
                    .iter()
                    .all(|f| f.starts_with("kernel/") && f.ends_with(".elf")
                        || f.starts_with("rootfs/")
                            && (f.ends_with(".erofs") || f.ends_with(".lock"))),
                "{name}: the cache holds only the kernel, the image and its lock: {files:?}"
            );

            // Altered after signing, even with the signer pinned: exit 1,
            // nothing published, nothing outside touched.
            let cache = format!("{name}-altered");
            let (code, err) = run(user, &smolvm, &altered, &cache, Some(&public));
            assert_eq!(
                code, 1,
                "{name}: an altered rootfs must fail verification: {err}"
            );
            assert!(err.contains("SHA-256"), "{name}: {err}");
            assert_eq!(err.lines().count(), 1, "{name}: one line: {err}");
            victim.assert_untouched(&format!("{name} altered"));
            let files = cache_files(&user.cache_dir(&cache));
            assert!(
                !files
                    .iter()
                    .any(|f| f.ends_with(".erofs") || f.contains(".tmp-")),
                "{name}: an altered section published or left something: {files:?}"
            );
        }
    });
    let _ = std::fs::remove_dir_all(&dir);
}

//! The guest's writable disks, beside the read-only root image:
//!
//! * the **overlay disk** (`overlay = N` GiB): the per-run writable layer
//!   on a sparse host file instead of guest RAM. An unnamed file
//!   (`O_TMPFILE`) in the cache directory, so it is gone when the run ends,
//!   however it ends.
//! * the **storage disk**: the machine's persistent state, for each
//!   `volumes` entry that names only a guest path (`volumes = ["/state"]`).
//!   One sparse disk per signer and artifact name,
//!   `$XDG_DATA_HOME/smolvm/storage/<signer key id>/NAME.ext4` (default
//!   `~/.local/share/smolvm/storage`): state belongs to a signer, so a
//!   stranger's artifact that borrows a name never opens it
//!   (SECURITY-CHECKLIST item 23; a disk from before, `storage/NAME.ext4`,
//!   moves to the first signer that starts the name, [`migrate_legacy`]).
//!   Of `storage = N` GiB or
//!   [`DEFAULT_STORAGE_GIB`], kept across runs and new versions; every
//!   volume is a directory on it (`volumes/<guest path>`) that the guest
//!   init binds at its path. A run holds an exclusive `flock` on it: a
//!   second run of the same machine is refused instead of mounting one
//!   ext4 twice.
//!
//! Both are ext4, formatted on the host ([`ext4`]): files keep the owners
//! the guest gives them, whoever runs the machine on the host.

pub mod ext4;

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use smolvm_signing::KeyId;
use thiserror::Error;

/// The storage disk's size when the machine sets none. The file is sparse:
/// it takes host space only as the guest writes, so the size is a ceiling.
pub const DEFAULT_STORAGE_GIB: u32 = 8;
/// Largest `storage`/`overlay` in GiB ([`ext4::MAX_BYTES`]).
pub const MAX_GIB: u32 = 2048;
/// Longest guest path of a persistent volume.
const MAX_VOLUME_PATH: usize = 1024;
/// Guest paths a volume may not cover: the system mounts and the
/// runtime's own directory.
const RESERVED: &[&str] = &["/proc", "/sys", "/dev", "/.smolvm"];

#[derive(Debug, Error)]
pub enum DiskError {
    #[error("{what} {}", path.display())]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("the storage of {name} ({}) is in use by another run of {name}; two runs cannot share one storage disk: wait for the other run to end", path.display())]
    InUse { name: String, path: PathBuf },
    #[error("{} is not a storage disk smolvm made (no ext4 superblock); move it away, or start with --smolvm-reset-storage (pack run: --reset-storage) to begin with an empty one", path.display())]
    NotFormatted { path: PathBuf },
    #[error("{field} = {gib} GiB is outside 1..={MAX_GIB}: no start accepts this artifact's `{field}`; it must be repacked with `{field}` within that range in its Smolfile (pack create now refuses it)")]
    Size { field: &'static str, gib: u32 },
    #[error("volume {entry:?}: {why}")]
    Volume { entry: String, why: &'static str },
    #[error("no directory for the machine's storage: set XDG_DATA_HOME or HOME")]
    NoDataDir,
}

fn io_at(what: &'static str, path: &Path) -> impl FnOnce(io::Error) -> DiskError {
    let path = path.to_path_buf();
    move |source| DiskError::Io { what, path, source }
}

/// Everything a start refuses in a machine's disks: storage and overlay
/// sizes and the persistent volumes. `pack create` runs the same check on
/// the Smolfile, so an artifact that could never start is never signed.
/// (A start checks `storage` only when there are volumes to keep on it.)
pub fn check_disk_config(config: &smolvm_format::MachineConfig) -> Result<(), DiskError> {
    if let Some(gib) = config.storage_gib {
        gib_bytes("storage", gib)?;
    }
    if let Some(gib) = config.overlay_gib {
        gib_bytes("overlay", gib)?;
    }
    persistent_volumes(&config.volumes)?;
    Ok(())
}

fn gib_bytes(field: &'static str, gib: u32) -> Result<u64, DiskError> {
    if gib == 0 || gib > MAX_GIB {
        return Err(DiskError::Size { field, gib });
    }
    Ok(u64::from(gib) << 30)
}

/// Where storage disks live: `$XDG_DATA_HOME/smolvm/storage`, default
/// `~/.local/share/smolvm/storage` (relative XDG values are ignored).
pub fn default_storage_dir() -> Result<PathBuf, DiskError> {
    crate::dirs::data()
        .map(|d| d.join("storage"))
        .ok_or(DiskError::NoDataDir)
}

/// The directory of one signer's storage disks: `dir/<key id>`.
pub fn signer_storage_dir(dir: &Path, signer: KeyId) -> PathBuf {
    dir.join(signer.to_string())
}

/// What became of a storage disk from before disks belonged to a signer
/// (`storage/NAME.ext4`).
#[derive(Debug, PartialEq, Eq)]
pub enum Migration {
    /// There is none, or this signer has its own disk already.
    Nothing,
    /// Moved to this signer's directory.
    Moved { from: PathBuf, to: PathBuf },
    /// Left where it is: another signer (`claimed_by`, a key id) has a
    /// disk of this name, so whose it is cannot be told.
    LeftAlone { legacy: PathBuf, claimed_by: String },
    /// Moved from the old key's directory to the new one's: the old key
    /// endorsed the new one (crate::rotation, [`follow_rotation`]).
    Followed { from: PathBuf, to: PathBuf },
}

impl Migration {
    /// The one line a start prints about it, if any.
    pub fn note(&self, name: &str) -> Option<String> {
        match self {
            Migration::Nothing => None,
            Migration::Moved { from, to } => Some(format!(
                "note: the storage of {name} moved from {} to {} (storage now belongs to a signer)",
                from.display(),
                to.display()
            )),
            Migration::Followed { from, to } => Some(format!(
                "note: the storage of {name} moved from {} to {} with its signer's new key",
                from.display(),
                to.display()
            )),
            Migration::LeftAlone { legacy, claimed_by } => Some(format!(
                "note: {} (storage of {name} from before storage belonged to a signer) is left alone, since key {claimed_by} also has storage for {name}; this start uses its signer's own disk (move the old one into the right key id's directory if it is that signer's)",
                legacy.display()
            )),
        }
    }
}

/// Moves `dir/<from>/NAME.ext4` (a regular file, never a link) to
/// `dir/<to>/NAME.ext4` when `to` has no disk of that name yet: the start
/// accepted `to` because `from`, the name's remembered signer, endorsed it
/// (crate::rotation), so the data follows the key. Linked into place
/// without replacing, then unlinked, as [`migrate_legacy`].
pub fn follow_rotation(
    dir: &Path,
    from: KeyId,
    to: KeyId,
    name: &str,
) -> Result<Migration, DiskError> {
    let file = format!("{name}.ext4");
    let old = signer_storage_dir(dir, from).join(&file);
    match std::fs::symlink_metadata(&old) {
        Ok(m) if m.file_type().is_file() => {}
        Ok(_) => return Ok(Migration::Nothing),
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Migration::Nothing),
        Err(e) => return Err(io_at("looking at the old key's storage disk", &old)(e)),
    }
    let own = signer_storage_dir(dir, to);
    let target = own.join(&file);
    if std::fs::symlink_metadata(&target).is_ok() {
        return Ok(Migration::Nothing);
    }
    if !move_disk(&old, &own, &target, "moving the old key's storage disk to")? {
        return Ok(Migration::Nothing);
    }
    Ok(Migration::Followed {
        from: old,
        to: target,
    })
}

/// Moves the disk `from` to `target` in the directory `own` (made 0700 if
/// missing): linked into place without replacing, then unlinked, so two
/// starts at once move it once. `false` when another start moved it (or
/// made a disk there) first.
fn move_disk(
    from: &Path,
    own: &Path,
    target: &Path,
    what: &'static str,
) -> Result<bool, DiskError> {
    std::fs::DirBuilder::new()
        .mode(0o700)
        .recursive(true)
        .create(own)
        .map_err(io_at("creating the storage directory", own))?;
    match std::fs::hard_link(from, target) {
        Ok(()) => {}
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::AlreadyExists | io::ErrorKind::NotFound
            ) =>
        {
            return Ok(false)
        }
        Err(e) => return Err(io_at(what, target)(e)),
    }
    match std::fs::remove_file(from) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(io_at("removing the moved storage disk", from)(e)),
    }
    Ok(true)
}

/// Moves `dir/NAME.ext4` (a regular file, never a link) to
/// `dir/<signer>/NAME.ext4` when `signer` has no disk of that name yet and
/// no other signer has one either. Linked into place without replacing,
/// then unlinked: two first starts at once move it once.
pub fn migrate_legacy(dir: &Path, signer: KeyId, name: &str) -> Result<Migration, DiskError> {
    let file = format!("{name}.ext4");
    let legacy = dir.join(&file);
    match std::fs::symlink_metadata(&legacy) {
        Ok(m) if m.file_type().is_file() => {}
        Ok(_) => return Ok(Migration::Nothing),
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Migration::Nothing),
        Err(e) => return Err(io_at("looking at the old storage disk", &legacy)(e)),
    }
    let own = signer_storage_dir(dir, signer);
    let target = own.join(&file);
    if std::fs::symlink_metadata(&target).is_ok() {
        return Ok(Migration::Nothing);
    }
    let own_name = signer.to_string();
    for entry in std::fs::read_dir(dir).map_err(io_at("listing the storage directory", dir))? {
        let entry = entry.map_err(io_at("listing the storage directory", dir))?;
        let key = entry.file_name();
        if key.to_str() == Some(own_name.as_str()) {
            continue;
        }
        if std::fs::symlink_metadata(entry.path().join(&file)).is_ok() {
            return Ok(Migration::LeftAlone {
                legacy,
                claimed_by: key.to_string_lossy().into_owned(),
            });
        }
    }
    if !move_disk(&legacy, &own, &target, "moving the old storage disk to")? {
        return Ok(Migration::Nothing);
    }
    Ok(Migration::Moved {
        from: legacy,
        to: target,
    })
}

/// The persistent volumes of a machine: its `volumes` entries that name
/// only a guest path (entries with a `:` are host shares, not state).
/// Checked here too, because the guest init binds them as given: absolute,
/// normalised, not `/` and not over the system mounts.
pub fn persistent_volumes(volumes: &[String]) -> Result<Vec<String>, DiskError> {
    let mut out: Vec<String> = Vec::new();
    for entry in volumes.iter().filter(|v| !v.contains(':')) {
        let bad = |why| DiskError::Volume {
            entry: entry.clone(),
            why,
        };
        let path = entry.strip_suffix('/').unwrap_or(entry);
        if !path.starts_with('/') {
            return Err(bad(
                "a persistent volume is an absolute guest path, like \"/state\"",
            ));
        }
        if path.len() > MAX_VOLUME_PATH || path.bytes().any(|b| b.is_ascii_control()) {
            return Err(bad("the path is too long or holds control characters"));
        }
        if path[1..]
            .split('/')
            .any(|c| c.is_empty() || c == "." || c == "..")
        {
            return Err(bad(
                "write the path without empty, \".\" or \"..\" components",
            ));
        }
        if RESERVED
            .iter()
            .any(|r| path == *r || path.starts_with(&format!("{r}/")))
        {
            return Err(bad("/proc, /sys, /dev and /.smolvm belong to the system"));
        }
        if out.iter().any(|o| o == path) {
            return Err(bad("listed twice"));
        }
        out.push(path.to_string());
    }
    Ok(out)
}

/// The per-run overlay disk: an unnamed sparse file in `dir`, formatted
/// (no journal: nothing of it outlives the run).
pub fn overlay_disk(dir: &Path, gib: u32) -> Result<File, DiskError> {
    let bytes = gib_bytes("overlay", gib)?;
    let file = tempfile::tempfile_in(dir).map_err(io_at("creating the overlay disk in", dir))?;
    ext4::format(
        &file,
        bytes,
        &ext4::Options {
            label: "smolvm-overlay",
            journal: false,
        },
    )
    .map_err(io_at("formatting the overlay disk in", dir))?;
    Ok(file)
}

/// A machine's storage disk, open and locked for this run.
pub struct Storage {
    /// Holds the run's exclusive lock for as long as it is open.
    pub file: File,
    pub path: PathBuf,
    /// Created (or reset) by this start.
    pub fresh: bool,
}

fn format_storage(file: &File, bytes: u64, path: &Path) -> Result<(), DiskError> {
    ext4::format(
        file,
        bytes,
        &ext4::Options {
            label: "smolvm-storage",
            journal: true,
        },
    )
    .map_err(io_at("formatting the storage disk", path))?;
    file.sync_all()
        .map_err(io_at("writing the storage disk", path))
}

/// Opens (creating on first use, or emptying with `reset`) the storage
/// disk of machine `name` in `dir`, and locks it for this run.
pub fn open_storage(
    dir: &Path,
    name: &str,
    gib: Option<u32>,
    reset: bool,
) -> Result<Storage, DiskError> {
    let bytes = gib_bytes("storage", gib.unwrap_or(DEFAULT_STORAGE_GIB))?;
    // The name was validated with the manifest ([A-Za-z0-9._+-], no
    // leading dot): a plain file name.
    smolvm_format::manifest::validate_name(name).map_err(|_| DiskError::Volume {
        entry: name.to_string(),
        why: "the machine's name is not usable as a file name",
    })?;
    std::fs::DirBuilder::new()
        .mode(0o700)
        .recursive(true)
        .create(dir)
        .map_err(io_at("creating the storage directory", dir))?;
    let path = dir.join(format!("{name}.ext4"));
    let mut fresh = false;
    let file = loop {
        match std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(&path)
        {
            Ok(f) => break f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                // Formatted under a temporary name, then linked into place
                // without replacing: two first starts never hand out two
                // different disks.
                let tmp = tempfile::NamedTempFile::new_in(dir)
                    .map_err(io_at("creating the storage disk in", dir))?;
                format_storage(tmp.as_file(), bytes, &path)?;
                match std::fs::hard_link(tmp.path(), &path) {
                    Ok(()) => fresh = true,
                    Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                    Err(e) => return Err(io_at("creating the storage disk", &path)(e)),
                }
            }
            Err(e) => return Err(io_at("opening the storage disk", &path)(e)),
        }
    };
    // SAFETY: flock on a descriptor this function owns; no memory involved.
    if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        let e = io::Error::last_os_error();
        return Err(if e.kind() == io::ErrorKind::WouldBlock {
            DiskError::InUse {
                name: name.to_string(),
                path,
            }
        } else {
            io_at("locking the storage disk", &path)(e)
        });
    }
    if reset {
        format_storage(&file, bytes, &path)?;
        fresh = true;
    } else if !ext4::is_formatted(&file).map_err(io_at("reading the storage disk", &path))? {
        return Err(DiskError::NotFormatted { path });
    }
    Ok(Storage { file, path, fresh })
}

/// The writable disks of one run, ready to attach.
#[derive(Default)]
pub struct Disks {
    /// The per-run overlay disk (`overlay = N`).
    pub overlay: Option<File>,
    /// The persistent storage disk, when the machine has persistent volumes.
    pub storage: Option<Storage>,
    /// Their guest paths.
    pub volumes: Vec<String>,
    /// What became of an old disk of this name ([`migrate_legacy`]).
    pub migration: Option<Migration>,
}

impl Disks {
    /// Checks the machine's volumes and sizes, then creates the overlay
    /// disk in `scratch` (the cache directory: on disk, unlike a tmpfs
    /// /tmp) and opens, locks and (with `reset`) empties the storage disk of
    /// `signer` and `name` in `storage_dir` (moving an old one there first:
    /// the disk of `rotated_from`, the remembered key that endorsed
    /// `signer`, [`follow_rotation`]; else one from before disks belonged
    /// to a signer, [`migrate_legacy`]).
    pub fn prepare(
        config: &smolvm_format::MachineConfig,
        name: &str,
        signer: KeyId,
        rotated_from: Option<KeyId>,
        scratch: &Path,
        storage_dir: impl FnOnce() -> Result<PathBuf, DiskError>,
        reset: bool,
    ) -> Result<Disks, DiskError> {
        let volumes = persistent_volumes(&config.volumes)?;
        let mut migration = None;
        let storage = if volumes.is_empty() {
            None
        } else {
            let dir = storage_dir()?;
            let followed = match rotated_from {
                Some(old) => follow_rotation(&dir, old, signer, name)?,
                None => Migration::Nothing,
            };
            migration = Some(if followed == Migration::Nothing {
                migrate_legacy(&dir, signer, name)?
            } else {
                followed
            });
            Some(open_storage(
                &signer_storage_dir(&dir, signer),
                name,
                config.storage_gib,
                reset,
            )?)
        };
        let overlay = match config.overlay_gib {
            Some(gib) => Some(overlay_disk(scratch, gib)?),
            None => None,
        };
        Ok(Disks {
            overlay,
            storage,
            volumes,
            migration,
        })
    }

    /// `/.smolvm/disks` for the guest init; `None` when there is no disk.
    pub fn guest_manifest(&self) -> Option<Vec<u8>> {
        (self.overlay.is_some() || self.storage.is_some())
            .then(|| guest_manifest(self.overlay.is_some(), &self.volumes))
    }
}

/// What the guest init reads from `/.smolvm/disks` (see
/// guest-init/init.c): NUL-terminated strings `smolvm-disks-1`, overlay
/// (`0`/`1`), storage (`0`/`1`), the number of volumes, their guest paths.
pub fn guest_manifest(overlay: bool, volumes: &[String]) -> Vec<u8> {
    let mut out = Vec::new();
    let storage = !volumes.is_empty();
    for s in [
        crate::guest_abi::DISKS_VERSION,
        if overlay { "1" } else { "0" },
        if storage { "1" } else { "0" },
        &volumes.len().to_string(),
    ] {
        out.extend_from_slice(s.as_bytes());
        out.push(0);
    }
    for v in volumes {
        out.extend_from_slice(v.as_bytes());
        out.push(0);
    }
    out
}

/// A disk that is too large or a volume path that cannot be bound is the
/// artifact's; the rest is this host's (a disk in use, I/O).
impl crate::exit::ExitStatus for DiskError {
    fn exit_code(&self) -> u8 {
        use crate::exit::{INVALID, USAGE_OR_IO};
        match self {
            DiskError::Size { .. } | DiskError::Volume { .. } => INVALID,
            DiskError::Io { .. }
            | DiskError::InUse { .. }
            | DiskError::NotFormatted { .. }
            | DiskError::NoDataDir => USAGE_OR_IO,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vols(v: &[&str]) -> Result<Vec<String>, DiskError> {
        persistent_volumes(&v.iter().map(|s| s.to_string()).collect::<Vec<_>>())
    }

    #[test]
    fn guest_only_entries_are_the_persistent_volumes() {
        assert_eq!(
            vols(&["/state", "./data:/data", "/var/lib/app/", "/srv:/srv:ro"]).unwrap(),
            ["/state", "/var/lib/app"]
        );
        for bad in [
            "state", "/", "//x", "/a/../b", "/a/./b", "/proc", "/dev/x", "/.smolvm", "/a\nb",
        ] {
            assert!(vols(&[bad]).is_err(), "{bad:?} accepted");
        }
        assert!(vols(&["/a", "/a/"]).is_err());
        assert!(vols(&["/devices"]).is_ok());
    }

    #[test]
    fn storage_is_created_once_kept_locked_and_reset() {
        let dir = tempfile::tempdir().unwrap();
        let min = Some(1);
        let s = open_storage(dir.path(), "demo", min, false).unwrap();
        assert!(s.fresh);
        assert_eq!(s.path, dir.path().join("demo.ext4"));
        assert_eq!(s.file.metadata().unwrap().len(), 1 << 30);
        // A second run while the first holds it.
        let err = open_storage(dir.path(), "demo", min, false).err().unwrap();
        assert!(matches!(err, DiskError::InUse { .. }), "{err}");
        assert!(err.to_string().contains("in use by another run of demo"));
        drop(s);
        // Kept: the same file, not formatted again.
        std::fs::OpenOptions::new()
            .write(true)
            .open(dir.path().join("demo.ext4"))
            .and_then(|f| std::os::unix::fs::FileExt::write_all_at(&f, b"mark", 1 << 29))
            .unwrap();
        let again = open_storage(dir.path(), "demo", min, false).unwrap();
        assert!(!again.fresh);
        let mut buf = [0u8; 4];
        std::os::unix::fs::FileExt::read_exact_at(&again.file, &mut buf, 1 << 29).unwrap();
        assert_eq!(&buf, b"mark");
        drop(again);
        let reset = open_storage(dir.path(), "demo", min, true).unwrap();
        assert!(reset.fresh);
        std::os::unix::fs::FileExt::read_exact_at(&reset.file, &mut buf, 1 << 29).unwrap();
        assert_eq!(buf, [0; 4]);
        // Only the disk is left in the directory (no temporary files).
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["demo.ext4"]);
    }

    #[test]
    fn a_file_that_is_not_a_disk_is_not_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("demo.ext4"), b"precious").unwrap();
        let err = open_storage(dir.path(), "demo", None, false).err().unwrap();
        assert!(matches!(err, DiskError::NotFormatted { .. }), "{err}");
        assert_eq!(
            std::fs::read(dir.path().join("demo.ext4")).unwrap(),
            b"precious"
        );
    }

    const A: KeyId = KeyId::from_bytes([0xa; 8]);
    const B: KeyId = KeyId::from_bytes([0xb; 8]);

    fn files_under(dir: &Path) -> Vec<String> {
        let mut out = Vec::new();
        for e in std::fs::read_dir(dir).unwrap() {
            let e = e.unwrap();
            let name = e.file_name().to_string_lossy().into_owned();
            if e.file_type().unwrap().is_dir() {
                out.extend(
                    files_under(&e.path())
                        .into_iter()
                        .map(|f| format!("{name}/{f}")),
                );
            } else {
                out.push(name);
            }
        }
        out.sort();
        out
    }

    #[test]
    fn storage_is_per_signer_and_an_old_disk_moves_to_the_first() {
        let dir = tempfile::tempdir().unwrap();
        let config = smolvm_format::MachineConfig {
            volumes: vec!["/state".into()],
            storage_gib: Some(1),
            ..Default::default()
        };
        let scratch = tempfile::tempdir().unwrap();
        let prepare = |signer| {
            Disks::prepare(
                &config,
                "notes",
                signer,
                None,
                scratch.path(),
                || Ok(dir.path().to_path_buf()),
                false,
            )
        };
        let a = prepare(A).unwrap();
        let path = a.storage.as_ref().unwrap().path.clone();
        assert_eq!(path, dir.path().join("0a0a0a0a0a0a0a0a/notes.ext4"));
        assert_eq!(a.migration, Some(Migration::Nothing));
        drop(a);
        // Another signer of the same name: its own, fresh disk.
        let b = prepare(B).unwrap();
        assert!(b.storage.as_ref().unwrap().fresh);
        drop(b);
        assert_eq!(
            files_under(dir.path()),
            ["0a0a0a0a0a0a0a0a/notes.ext4", "0b0b0b0b0b0b0b0b/notes.ext4"]
        );
    }

    #[test]
    fn a_disk_follows_its_signer_to_the_key_it_endorsed() {
        let dir = tempfile::tempdir().unwrap();
        let config = smolvm_format::MachineConfig {
            volumes: vec!["/state".into()],
            storage_gib: Some(1),
            ..Default::default()
        };
        let scratch = tempfile::tempdir().unwrap();
        let prepare = |signer, from| {
            Disks::prepare(
                &config,
                "notes",
                signer,
                from,
                scratch.path(),
                || Ok(dir.path().to_path_buf()),
                false,
            )
        };
        let a = prepare(A, None).unwrap();
        let a_path = a.storage.as_ref().unwrap().path.clone();
        drop(a);
        use std::os::unix::fs::MetadataExt;
        let a_inode = std::fs::metadata(&a_path).unwrap().ino();
        // B endorsed by A: A's disk becomes B's, with one note.
        let b = prepare(B, Some(A)).unwrap();
        let b_path = dir.path().join("0b0b0b0b0b0b0b0b/notes.ext4");
        assert_eq!(b.storage.as_ref().unwrap().path, b_path);
        assert!(!b.storage.as_ref().unwrap().fresh);
        let note = b.migration.as_ref().unwrap().note("notes").unwrap();
        assert!(note.contains("with its signer's new key"), "{note}");
        drop(b);
        assert_eq!(std::fs::metadata(&b_path).unwrap().ino(), a_inode);
        assert!(!a_path.exists());
        // Once B has a disk, nothing moves again.
        assert_eq!(
            follow_rotation(dir.path(), A, B, "notes").unwrap(),
            Migration::Nothing
        );
    }

    #[test]
    fn an_old_disk_moves_only_when_no_other_signer_claimed_the_name() {
        let dir = tempfile::tempdir().unwrap();
        let legacy = dir.path().join("notes.ext4");
        std::fs::write(&legacy, b"old disk").unwrap();
        // Moved to the first signer, with its bytes.
        let m = migrate_legacy(dir.path(), A, "notes").unwrap();
        let to = dir.path().join("0a0a0a0a0a0a0a0a/notes.ext4");
        assert_eq!(
            m,
            Migration::Moved {
                from: legacy.clone(),
                to: to.clone()
            }
        );
        assert!(m
            .note("notes")
            .unwrap()
            .starts_with("note: the storage of notes moved"));
        assert_eq!(std::fs::read(&to).unwrap(), b"old disk");
        assert!(!legacy.exists());
        assert_eq!(
            migrate_legacy(dir.path(), A, "notes").unwrap(),
            Migration::Nothing
        );
        // Another old disk of that name: B may not take it (A has one),
        // and A keeps its own (the old one is left, quietly).
        std::fs::write(&legacy, b"older").unwrap();
        let m = migrate_legacy(dir.path(), B, "notes").unwrap();
        assert_eq!(
            m,
            Migration::LeftAlone {
                legacy: legacy.clone(),
                claimed_by: "0a0a0a0a0a0a0a0a".into()
            }
        );
        let note = m.note("notes").unwrap();
        assert!(
            note.contains("is left alone") && note.lines().count() == 1,
            "{note}"
        );
        assert_eq!(
            migrate_legacy(dir.path(), A, "notes").unwrap(),
            Migration::Nothing
        );
        assert_eq!(std::fs::read(&legacy).unwrap(), b"older");
        // A link is never followed or moved.
        std::fs::remove_file(&legacy).unwrap();
        std::os::unix::fs::symlink("/etc/passwd", &legacy).unwrap();
        assert_eq!(
            migrate_legacy(dir.path(), B, "notes").unwrap(),
            Migration::Nothing
        );
        assert!(std::fs::symlink_metadata(&legacy)
            .unwrap()
            .file_type()
            .is_symlink());
    }

    #[test]
    fn sizes_are_checked() {
        let dir = tempfile::tempdir().unwrap();
        assert!(matches!(
            overlay_disk(dir.path(), 0),
            Err(DiskError::Size {
                field: "overlay",
                ..
            })
        ));
        assert!(matches!(
            open_storage(dir.path(), "x", Some(MAX_GIB + 1), false),
            Err(DiskError::Size {
                field: "storage",
                ..
            })
        ));
        let f = overlay_disk(dir.path(), 2).unwrap();
        assert_eq!(f.metadata().unwrap().len(), 2 << 30);
        assert!(ext4::is_formatted(&f).unwrap());
        // Unnamed: nothing is left in the directory.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[test]
    fn the_guest_manifest_lists_the_volumes() {
        assert_eq!(
            guest_manifest(true, &["/state".into(), "/b".into()]),
            b"smolvm-disks-1\x001\x001\x002\x00/state\x00/b\x00"
        );
        assert_eq!(
            guest_manifest(false, &[]),
            b"smolvm-disks-1\x000\x000\x000\x00"
        );
    }
}

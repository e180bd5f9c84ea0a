//! The per-user, content-addressed cache of what a machine boots from.
//!
//! ```text
//! $XDG_CACHE_HOME/smolvm/          (0700, must be ours)
//!   kernel/<sha256>.elf             decompressed kernel; published by rename
//!   rootfs/<sha256>.erofs           the root filesystem image (see rootfs_image.rs)
//!   blobs/sha256/<hex>              registry blobs and manifests (the packer's)
//! ```
//!
//! A start holds a shared `flock` on the kernel and root image it boots
//! from for as long as it runs (the descriptors live as long as the VM),
//! and marks them used (their access time). `smolvm pack prune` removes an
//! entry only under an exclusive non-blocking lock, so what a running
//! machine holds is never removed; a start that opens a file just before
//! prune unlinks it still has the complete, verified file (an unlinked
//! file lives as long as a descriptor does), and the next start writes it
//! again.
//!
//! Keys are the SHA-256 of a section's stored bytes as the verified manifest
//! states them; content is checked against that hash while it is written,
//! before it is published. A warm start therefore trusts the cache without
//! re-reading the artifact's sections: that is what keeps start-up flat in
//! artifact size. The trust boundary is the user's own cache directory
//! (see SPEC.md, threat model). Nothing of an image is ever unpacked here.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{DirBuilderExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use smolvm_format::{Artifact, FormatError, ReadAt, SectionEntry};

use thiserror::Error;

mod section_write;
#[cfg(test)]
pub(crate) use section_write::WRITE_CHUNK;
pub(crate) use section_write::{write_section, Fsync};

#[derive(Debug, Error)]
pub enum CacheError {
    #[error("cache {path}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cache directory {path} is {fault}; refusing to trust it (remove it or set SMOLVM_CACHE_DIR)")]
    Unsafe { path: PathBuf, fault: String },
    #[error("no cache directory: set HOME, XDG_CACHE_HOME or SMOLVM_CACHE_DIR")]
    NoHome,
    #[error("preparing {what}")]
    Section {
        what: &'static str,
        #[source]
        source: FormatError,
    },
}

pub(crate) fn io(path: &Path) -> impl FnOnce(std::io::Error) -> CacheError + '_ {
    move |source| CacheError::Io {
        path: path.to_path_buf(),
        source,
    }
}

pub struct Cache {
    root: PathBuf,
}

/// The cache directory (crate::dirs: `SMOLVM_CACHE_DIR`, else
/// `$XDG_CACHE_HOME/smolvm` when absolute, else `$HOME/.cache/smolvm`).
pub fn default_cache_dir() -> Result<PathBuf, CacheError> {
    crate::dirs::cache().ok_or(CacheError::NoHome)
}

fn ensure_private_dir(path: &Path) -> Result<(), CacheError> {
    match std::fs::DirBuilder::new()
        .mode(0o700)
        .recursive(true)
        .create(path)
    {
        Ok(()) => {}
        Err(e) => return Err(io(path)(e)),
    }
    let meta = std::fs::symlink_metadata(path).map_err(io(path))?;
    // SAFETY: geteuid has no preconditions and cannot fail.
    let euid = unsafe { libc::geteuid() };
    if !meta.is_dir() {
        return Err(CacheError::Unsafe {
            path: path.to_path_buf(),
            fault: "not a directory (a symlink?)".into(),
        });
    }
    if meta.uid() != euid {
        return Err(CacheError::Unsafe {
            path: path.to_path_buf(),
            fault: format!("owned by uid {}, not by you (uid {euid})", meta.uid()),
        });
    }
    if meta.mode() & 0o022 != 0 {
        return Err(CacheError::Unsafe {
            path: path.to_path_buf(),
            fault: format!("writable by others (mode {:o})", meta.mode() & 0o777),
        });
    }
    Ok(())
}

impl Cache {
    /// Opens (creating if needed) the cache at `root`, checking that it is a
    /// directory of ours that nobody else can write.
    pub fn open(root: PathBuf) -> Result<Cache, CacheError> {
        ensure_private_dir(&root)?;
        ensure_private_dir(&root.join("kernel"))?;
        ensure_private_dir(&root.join("rootfs"))?;
        Ok(Cache { root })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The decompressed kernel for `entry`, opened read-only. Extracted on
    /// first use; the returned descriptor is what the VM boots from.
    pub fn kernel<R: ReadAt + ?Sized>(
        &self,
        art: &Artifact<'_, R>,
        entry: &SectionEntry,
    ) -> Result<File, CacheError> {
        let dir = self.root.join("kernel");
        let path = dir.join(format!("{}.elf", entry.sha256));
        if let Ok(f) = File::open(&path) {
            if f.metadata().map(|m| m.len()).ok() == Some(entry.size) {
                return hold(f, &path);
            }
        }
        // Concurrent first starts each write a private temporary file; the
        // renames are atomic and the contents identical.
        let mut tmp = tempfile::Builder::new()
            .prefix(".tmp-kernel-")
            .tempfile_in(&dir)
            .map_err(io(&dir))?;
        write_section(art, entry, "the kernel", tmp.as_file_mut(), Fsync::Soon)?;
        tmp.as_file().sync_all().map_err(io(&path))?;
        tmp.persist(&path).map_err(|e| io(&path)(e.error))?;
        hold(File::open(&path).map_err(io(&path))?, &path)
    }

    /// The kernels, root images and blobs in the cache (not temporary
    /// files of starts in progress, not lock files).
    pub fn entries(&self) -> Result<Vec<CacheEntry>, CacheError> {
        let mut out = Vec::new();
        for (kind, dir, suffix) in [
            (EntryKind::Kernel, self.root.join("kernel"), ".elf"),
            (EntryKind::Rootfs, self.root.join("rootfs"), ".erofs"),
            (EntryKind::Blob, self.root.join("blobs/sha256"), ""),
        ] {
            let list = match std::fs::read_dir(&dir) {
                Ok(l) => l,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(io(&dir)(e)),
            };
            for e in list {
                let e = e.map_err(io(&dir))?;
                let name = e.file_name().to_string_lossy().into_owned();
                let Some(hash) = name.strip_suffix(suffix) else {
                    continue;
                };
                if hash.len() != 64 || !hash.bytes().all(|b| b.is_ascii_hexdigit()) {
                    continue;
                }
                let path = e.path();
                let meta = match std::fs::symlink_metadata(&path) {
                    Ok(m) if m.is_file() => m,
                    Ok(_) => continue,
                    // Removed since it was listed.
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                    Err(e) => return Err(io(&path)(e)),
                };
                let time = |secs: i64, nanos: i64| {
                    let secs = u64::try_from(secs).unwrap_or(0);
                    let nanos = u32::try_from(nanos).unwrap_or(0);
                    SystemTime::UNIX_EPOCH + Duration::new(secs, nanos)
                };
                let used = time(meta.atime(), meta.atime_nsec());
                let written = time(meta.mtime(), meta.mtime_nsec());
                out.push(CacheEntry {
                    kind,
                    hash: hash.to_string(),
                    path,
                    size: meta.len(),
                    last_used: used.max(written),
                });
            }
        }
        Ok(out)
    }
}

/// What a cache entry holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum EntryKind {
    Kernel,
    Rootfs,
    Blob,
}

impl EntryKind {
    pub fn name(self) -> &'static str {
        match self {
            EntryKind::Kernel => "kernel",
            EntryKind::Rootfs => "rootfs",
            EntryKind::Blob => "blob",
        }
    }
}

/// One file of the cache.
#[derive(Debug, Clone)]
pub struct CacheEntry {
    pub kind: EntryKind,
    /// The SHA-256 it is keyed by (hex).
    pub hash: String,
    pub path: PathBuf,
    pub size: u64,
    /// When a start last used it (access time, set by starts) or it was
    /// written, whichever is later.
    pub last_used: SystemTime,
}

/// What [`remove_unless_busy`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Removal {
    Removed,
    /// A running start holds it: kept.
    Busy,
    /// Already gone.
    Gone,
}

/// Removes `entry` unless a start holds it: under an exclusive,
/// non-blocking `flock`, so a start that holds its shared lock keeps it.
pub fn remove_unless_busy(entry: &CacheEntry) -> Result<Removal, CacheError> {
    let f = match File::open(&entry.path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Removal::Gone),
        Err(e) => return Err(io(&entry.path)(e)),
    };
    if !flock(&f, libc::LOCK_EX | libc::LOCK_NB).map_err(io(&entry.path))? {
        return Ok(Removal::Busy);
    }
    match std::fs::remove_file(&entry.path) {
        Ok(()) => Ok(Removal::Removed),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Removal::Gone),
        Err(e) => Err(io(&entry.path)(e)),
    }
    // The lock goes with `f`.
}

/// Whether a running start holds `entry` (a momentary exclusive try).
pub fn in_use(entry: &CacheEntry) -> Result<bool, CacheError> {
    match File::open(&entry.path) {
        Ok(f) => Ok(!flock(&f, libc::LOCK_EX | libc::LOCK_NB).map_err(io(&entry.path))?),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(io(&entry.path)(e)),
    }
}

/// What a start does with a cache file it boots from: a shared lock held
/// as long as `f` (prune skips it), and its access time set to now (what
/// `--keep-last` and `--older-than` go by; set explicitly, since mounts
/// with `noatime`/`relatime` would not).
pub(crate) fn hold(f: File, path: &Path) -> Result<File, CacheError> {
    flock(&f, libc::LOCK_SH).map_err(io(path))?;
    let times = [
        libc::timespec {
            tv_sec: 0,
            tv_nsec: libc::UTIME_NOW,
        },
        libc::timespec {
            tv_sec: 0,
            tv_nsec: libc::UTIME_OMIT,
        },
    ];
    // SAFETY: the descriptor is valid for the lifetime of `f`, and `times`
    // is an array of two timespecs, as futimens requires. A failure (a
    // cache on a read-only file system) only leaves the time as it was.
    let _ = unsafe { libc::futimens(f.as_raw_fd(), times.as_ptr()) };
    Ok(f)
}

/// `flock(op)`, retried on EINTR; false when `LOCK_NB` was asked and the
/// lock is held elsewhere.
pub fn flock(f: &File, op: libc::c_int) -> std::io::Result<bool> {
    loop {
        // SAFETY: the descriptor is valid for the lifetime of `f`.
        let r = unsafe { libc::flock(f.as_raw_fd(), op) };
        if r == 0 {
            return Ok(true);
        }
        let e = std::io::Error::last_os_error();
        match e.raw_os_error() {
            Some(libc::EINTR) => continue,
            Some(libc::EWOULDBLOCK) if op & libc::LOCK_NB != 0 => return Ok(false),
            _ => return Err(e),
        }
    }
}

impl crate::exit::ExitStatus for CacheError {
    fn exit_code(&self) -> u8 {
        match self {
            // A section that does not decode or hash right failed verification.
            CacheError::Section { source, .. } => source.exit_code(),
            _ => crate::exit::USAGE_OR_IO,
        }
    }
}

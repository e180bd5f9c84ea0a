//! The per-user, content-addressed cache of what a machine boots from.
//!
//! ```text
//! $XDG_CACHE_HOME/smolvm/          (0700, must be ours)
//!   kernel/<sha256>.elf             decompressed kernel; published by rename
//!   rootfs/<sha256>.erofs           the root filesystem image (see rootfs_image.rs)
//!   boot/                           libkrun's virtio-fs root: mount points only
//! ```
//!
//! Keys are the SHA-256 of a section's stored bytes as the verified manifest
//! states them; content is checked against that hash while it is written,
//! before it is published. A warm start therefore trusts the cache without
//! re-reading the artifact's sections: that is what keeps start-up flat in
//! artifact size. The trust boundary is the user's own cache directory
//! (see SPEC.md, threat model). Nothing of an image is ever unpacked here.

use std::fs::File;
use std::os::unix::fs::{DirBuilderExt, MetadataExt};
use std::path::{Path, PathBuf};

use smolvm_format::{Artifact, FormatError, ReadAt, SectionEntry};

use crate::rootfs_image::write_section;
use thiserror::Error;

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

/// The cache directory: `SMOLVM_CACHE_DIR`, else `$XDG_CACHE_HOME/smolvm`,
/// else `$HOME/.cache/smolvm`.
pub fn default_cache_dir() -> Result<PathBuf, CacheError> {
    if let Some(d) = std::env::var_os("SMOLVM_CACHE_DIR") {
        return Ok(PathBuf::from(d));
    }
    if let Some(d) = std::env::var_os("XDG_CACHE_HOME").filter(|d| !d.is_empty()) {
        return Ok(PathBuf::from(d).join("smolvm"));
    }
    std::env::var_os("HOME")
        .map(|h| PathBuf::from(h).join(".cache/smolvm"))
        .ok_or(CacheError::NoHome)
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
                return Ok(f);
            }
        }
        // Concurrent first starts each write a private temporary file; the
        // renames are atomic and the contents identical.
        let mut tmp = tempfile::Builder::new()
            .prefix(".tmp-kernel-")
            .tempfile_in(&dir)
            .map_err(io(&dir))?;
        write_section(art, entry, "the kernel", tmp.as_file_mut())?;
        tmp.as_file().sync_all().map_err(io(&path))?;
        tmp.persist(&path).map_err(|e| io(&path)(e.error))?;
        File::open(&path).map_err(io(&path))
    }
}

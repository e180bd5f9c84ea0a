//! The root filesystem as the guest gets it: one EROFS image file in the
//! cache, attached as a read-only disk. The host never unpacks it.
//!
//! ```text
//! $XDG_CACHE_HOME/smolvm/
//!   rootfs/<sha256>.erofs        the image; published by rename, complete by construction
//!   rootfs/<sha256>.lock         flock: one writer per hash at a time
//!   rootfs/.tmp-<sha256>-XXXXXX  being written (never trusted; removed by the next writer)
//!   boot/{dev,proc,sys}/         libkrun's virtio-fs root: mount points only
//! ```

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use smolvm_format::{Artifact, FormatError, ReadAt, SectionEntry};

use crate::cache::{Cache, CacheError};

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> CacheError + '_ {
    move |source| CacheError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Writes go out in chunks this large: few syscalls, little memory.
const WRITE_CHUNK: usize = 1 << 20;

impl Cache {
    /// The fixed directory libkrun's init gets as its virtio-fs root: only
    /// the mount points it needs. The root filesystem itself is the image.
    pub fn boot_dir(&self) -> Result<PathBuf, CacheError> {
        let dir = self.root().join("boot");
        for sub in ["", "dev", "proc", "sys"] {
            let p = dir.join(sub);
            match std::fs::DirBuilder::new().mode(0o755).create(&p) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(io(&p)(e)),
            }
        }
        Ok(dir)
    }

    /// The root filesystem image for `entry`, opened read-only: the file the
    /// guest mounts from its read-only disk. Written on first use: streamed
    /// through zstd into a temporary file, hashed while written, fsynced,
    /// and published by rename only if the stored bytes match the verified
    /// hash. Nothing of the image is ever created as a host file.
    pub fn rootfs_image<R: ReadAt + ?Sized>(
        &self,
        art: &Artifact<'_, R>,
        entry: &SectionEntry,
        trace: &crate::run::Trace,
    ) -> Result<File, CacheError> {
        let dir = self.root().join("rootfs");
        let path = dir.join(format!("{}.erofs", entry.sha256));
        if let Some(f) = open_complete(&path, entry.size)? {
            return Ok(f);
        }
        let lock_path = dir.join(format!("{}.lock", entry.sha256));
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .open(&lock_path)
            .map_err(io(&lock_path))?;
        flock_exclusive(&lock).map_err(io(&lock_path))?;
        // Someone else may have finished while we waited.
        if let Some(f) = open_complete(&path, entry.size)? {
            return Ok(f);
        }
        // Temporary files of killed starts: never trusted, removed.
        let tmp_prefix = format!(".tmp-{}-", entry.sha256);
        for e in std::fs::read_dir(&dir).map_err(io(&dir))?.flatten() {
            if e.file_name().to_string_lossy().starts_with(&tmp_prefix) {
                let _ = std::fs::remove_file(e.path());
            }
        }
        trace.mark("writing the rootfs image (first start)");
        let mut tmp = tempfile::Builder::new()
            .prefix(&tmp_prefix)
            .tempfile_in(&dir)
            .map_err(io(&dir))?;
        write_section(art, entry, "the root filesystem", tmp.as_file_mut())?;
        tmp.as_file().sync_all().map_err(io(&path))?;
        tmp.persist(&path).map_err(|e| io(&path)(e.error))?;
        // The rename itself must survive a power loss before anyone trusts it.
        File::open(&dir)
            .and_then(|d| d.sync_all())
            .map_err(io(&dir))?;
        trace.mark("rootfs image published");
        File::open(&path).map_err(io(&path))
    }
}

/// Streams `entry`'s decompressed bytes into `out`. The section reader
/// checks the stored bytes' SHA-256, the declared size and the single-frame
/// rule at the end ([`smolvm_format::SectionStream::finish`]); an error
/// there is returned, so the caller never publishes what did not verify.
pub(crate) fn write_section<R: ReadAt + ?Sized>(
    art: &Artifact<'_, R>,
    entry: &SectionEntry,
    what: &'static str,
    out: &mut File,
) -> Result<(), CacheError> {
    let section = |source| CacheError::Section { what, source };
    let mut stream = art.open_section(entry).map_err(section)?;
    let mut buf = vec![0u8; WRITE_CHUNK];
    loop {
        let n = match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => {
                // A decoder error is usually a section whose bytes changed:
                // report the hash mismatch rather than the symptom.
                return Err(match art.verify_section(entry) {
                    Err(source @ FormatError::HashMismatch { .. }) => section(source),
                    _ => section(FormatError::Decompress {
                        kind: entry.kind.to_string(),
                        fault: e.to_string(),
                    }),
                });
            }
        };
        out.write_all(&buf[..n]).map_err(|source| CacheError::Io {
            path: PathBuf::from(format!("<{what}>")),
            source,
        })?;
    }
    stream.finish().map_err(section)
}

/// The published image at `path`, if there is one of the declared size.
/// Only complete, verified images are ever renamed to that name.
fn open_complete(path: &Path, size: u64) -> Result<Option<File>, CacheError> {
    match File::open(path) {
        Ok(f) if f.metadata().map_err(io(path))?.len() == size => Ok(Some(f)),
        Ok(_) => Ok(None),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io(path)(e)),
    }
}

fn flock_exclusive(f: &File) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    loop {
        // SAFETY: the descriptor is valid for the lifetime of `f`.
        let r = unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX) };
        if r == 0 {
            return Ok(());
        }
        let e = std::io::Error::last_os_error();
        if e.kind() != std::io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

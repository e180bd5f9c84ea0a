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

use crate::cache::{io, Cache, CacheError};

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

#[cfg(test)]
mod tests {
    use super::*;
    use smolvm_format::{
        plan_sections, Compression, MachineConfig, Manifest, PayloadWriter, SectionData,
        SectionKind, Target, FORMAT_VERSION,
    };

    /// An unsigned bare payload holding `rootfs` (zstd): the cache does not
    /// look at signatures, its caller has checked them.
    fn artifact(rootfs: &[u8]) -> Vec<u8> {
        let config = MachineConfig::default();
        let json = config.to_canonical_json();
        let sections = vec![
            SectionData {
                kind: SectionKind::Config,
                compression: Compression::None,
                size: json.len() as u64,
                stored: json,
            },
            SectionData {
                kind: SectionKind::Kernel,
                compression: Compression::None,
                size: 16,
                stored: vec![0x7f; 16],
            },
            SectionData {
                kind: SectionKind::Rootfs,
                compression: Compression::Zstd,
                size: rootfs.len() as u64,
                stored: zstd::bulk::compress(rootfs, 1).unwrap(),
            },
        ];
        let manifest = Manifest {
            format_version: FORMAT_VERSION,
            name: "img".into(),
            version: "1.0.0".into(),
            created: 0,
            target: Target {
                os: "linux".into(),
                arch: "x86_64".into(),
            },
            signer: None,
            stub: None,
            sections: plan_sections(&sections).unwrap(),
            config,
        };
        let mut out = Vec::new();
        PayloadWriter::new(&manifest)
            .unwrap()
            .write(&mut out, &[], &sections, None)
            .unwrap();
        out
    }

    /// Bigger than one write chunk, and not all the same byte.
    fn image_bytes() -> Vec<u8> {
        (0..3 * WRITE_CHUNK + 77)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13).to_le_bytes()[0])
            .collect()
    }

    fn publish(
        bytes: &[u8],
        change: impl FnOnce(&mut SectionEntry),
    ) -> (Result<File, CacheError>, tempfile::TempDir, Vec<String>) {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::open(dir.path().join("cache")).unwrap();
        let art = Artifact::parse(bytes).unwrap();
        let mut entry = art.manifest.section(SectionKind::Rootfs).unwrap().clone();
        change(&mut entry);
        let r = cache.rootfs_image(&art, &entry, &crate::run::Trace::new());
        let mut names: Vec<String> = std::fs::read_dir(dir.path().join("cache/rootfs"))
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| !n.ends_with(".lock"))
            .collect();
        names.sort();
        (r, dir, names)
    }

    #[test]
    fn the_image_is_one_file_with_every_byte() {
        let image = image_bytes();
        let (r, _dir, names) = publish(&artifact(&image), |_| {});
        let mut f = r.unwrap();
        let mut got = Vec::new();
        f.read_to_end(&mut got).unwrap();
        assert!(got == image, "published bytes differ");
        assert_eq!(names.len(), 1, "{names:?}");
        assert!(names[0].ends_with(".erofs"), "{names:?}");
    }

    #[test]
    fn a_hash_mismatch_publishes_nothing() {
        let (r, _dir, names) = publish(&artifact(&image_bytes()), |e| {
            e.sha256 = "00".repeat(32);
        });
        let err = r.unwrap_err();
        assert!(
            matches!(
                err,
                CacheError::Section {
                    source: FormatError::HashMismatch { .. },
                    ..
                }
            ),
            "{err}"
        );
        assert!(names.is_empty(), "{names:?}");
    }

    #[test]
    fn a_stream_shorter_than_declared_publishes_nothing() {
        let (r, _dir, names) = publish(&artifact(&image_bytes()), |e| e.size += 1);
        assert!(r.is_err());
        assert!(names.is_empty(), "{names:?}");
    }

    #[test]
    fn leftovers_of_a_killed_start_are_removed_and_never_trusted() {
        let bytes = artifact(&image_bytes());
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::open(dir.path().join("cache")).unwrap();
        let art = Artifact::parse(&bytes[..]).unwrap();
        let entry = art.manifest.section(SectionKind::Rootfs).unwrap().clone();
        let rootfs = dir.path().join("cache/rootfs");
        // What a SIGKILL mid-write leaves: a partial temporary file.
        let stale = rootfs.join(format!(".tmp-{}-XXXXXX", entry.sha256));
        std::fs::write(&stale, b"partial").unwrap();
        // And a file of the wrong size under the published name is not used.
        let published = rootfs.join(format!("{}.erofs", entry.sha256));
        std::fs::write(&published, b"short").unwrap();
        let mut f = cache
            .rootfs_image(&art, &entry, &crate::run::Trace::new())
            .unwrap();
        let mut got = Vec::new();
        f.read_to_end(&mut got).unwrap();
        assert!(got == image_bytes());
        assert!(!stale.exists(), "the stale temporary file was kept");
    }
}

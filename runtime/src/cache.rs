//! The per-user, content-addressed cache of what a machine boots from.
//!
//! ```text
//! $XDG_CACHE_HOME/smolvm/          (0700, must be ours)
//!   kernel/<sha256>.elf             decompressed kernel; published by rename
//!   rootfs/<sha256>/                extracted root; published by rename ...
//!   rootfs/<sha256>.complete        ... and trusted only once this marker exists
//!   rootfs/<sha256>.lock            flock: one extraction per hash at a time
//!   rootfs/.tmp-<sha256>-<pid>/     extraction in progress (never trusted)
//! ```
//!
//! Keys are the SHA-256 of a section's stored bytes as the verified manifest
//! states them; content is checked against that hash while it is written,
//! before it is published. A warm start therefore trusts the cache without
//! re-reading the artifact's sections: that is what keeps start-up flat in
//! artifact size. The trust boundary is the user's own cache directory
//! (see SPEC.md, threat model).

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use smolvm_format::{Artifact, FormatError, ReadAt, SectionEntry};
use thiserror::Error;

#[derive(Debug, Error)]
pub enum CacheError {
    #[error("cache {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cache directory {path} is {fault}; refusing to trust it (remove it or set SMOLVM_CACHE_DIR)")]
    Unsafe { path: PathBuf, fault: String },
    #[error("no cache directory: set HOME, XDG_CACHE_HOME or SMOLVM_CACHE_DIR")]
    NoHome,
    #[error("extracting {what}: {source}")]
    Section {
        what: &'static str,
        #[source]
        source: FormatError,
    },
    #[error("extracting the root filesystem: entry {entry:?}: {fault}")]
    Entry { entry: String, fault: String },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> CacheError + '_ {
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
        let mut stream = art
            .open_section(entry)
            .map_err(|source| CacheError::Section {
                what: "the kernel",
                source,
            })?;
        std::io::copy(&mut stream, tmp.as_file_mut()).map_err(|e| CacheError::Section {
            what: "the kernel",
            source: FormatError::Decompress {
                kind: "kernel".into(),
                fault: e.to_string(),
            },
        })?;
        stream.finish().map_err(|source| CacheError::Section {
            what: "the kernel",
            source,
        })?;
        tmp.as_file().sync_all().map_err(io(&path))?;
        tmp.persist(&path).map_err(|e| io(&path)(e.error))?;
        File::open(&path).map_err(io(&path))
    }

    /// The extracted root filesystem for `entry`: a directory the VM uses
    /// read-only as its lower layer.
    pub fn rootfs<R: ReadAt + Sync + ?Sized>(
        &self,
        art: &Artifact<'_, R>,
        entry: &SectionEntry,
        trace: &crate::run::Trace,
    ) -> Result<PathBuf, CacheError> {
        let dir = self.root.join("rootfs");
        let target = dir.join(&entry.sha256);
        let marker = dir.join(format!("{}.complete", entry.sha256));
        if marker.exists() && target.is_dir() {
            return Ok(target);
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
        if marker.exists() && target.is_dir() {
            return Ok(target);
        }
        // Anything here without a marker is left over from a killed run.
        let tmp_prefix = format!(".tmp-{}-", entry.sha256);
        for e in std::fs::read_dir(&dir).map_err(io(&dir))?.flatten() {
            if e.file_name().to_string_lossy().starts_with(&tmp_prefix) {
                remove_tree(&e.path())?;
            }
        }
        if target.exists() {
            remove_tree(&target)?;
        }
        let tmp = dir.join(format!("{tmp_prefix}{}", std::process::id()));
        std::fs::DirBuilder::new()
            .mode(0o755)
            .create(&tmp)
            .map_err(io(&tmp))?;
        trace.mark("extracting rootfs (first start)");
        let result = extract_rootfs(art, entry, &tmp);
        if let Err(e) = result {
            let _ = remove_tree(&tmp);
            return Err(explain_failure(art, entry, "the root filesystem", e));
        }
        std::fs::rename(&tmp, &target).map_err(io(&target))?;
        let mut m = File::create(&marker).map_err(io(&marker))?;
        m.write_all(entry.sha256.as_bytes()).map_err(io(&marker))?;
        m.sync_all().map_err(io(&marker))?;
        Ok(target)
    }
}

/// A section that fails to decompress or unpack is usually a section whose
/// bytes were changed: report the hash mismatch (a verification failure)
/// rather than the decoder's symptom.
fn explain_failure<R: ReadAt + ?Sized>(
    art: &Artifact<'_, R>,
    entry: &SectionEntry,
    what: &'static str,
    original: CacheError,
) -> CacheError {
    match art.verify_section(entry) {
        Err(source @ FormatError::HashMismatch { .. }) => CacheError::Section { what, source },
        _ => original,
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

/// Removes a tree even when the image made some directories read-only.
fn remove_tree(path: &Path) -> Result<(), CacheError> {
    fn make_writable(p: &Path) {
        if let Ok(m) = std::fs::symlink_metadata(p) {
            if m.is_dir() {
                let _ = std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o700));
                if let Ok(rd) = std::fs::read_dir(p) {
                    for e in rd.flatten() {
                        make_writable(&e.path());
                    }
                }
            }
        }
    }
    make_writable(path);
    std::fs::remove_dir_all(path).map_err(io(path))
}

/// Size of the chunks the decompressing thread hands to the unpacking one.
const PIPE_CHUNK: usize = 512 << 10;
/// Chunks in flight (besides the two being worked on).
const PIPE_DEPTH: usize = 4;

/// The unpacking end of the extraction pipeline: reads the chunks the
/// producer sends and returns their buffers for reuse. The end of the
/// channel reads as end of file; whether that end was a clean one is the
/// producer's verdict, which the caller checks before trusting anything.
struct ChunkReader {
    rx: std::sync::mpsc::Receiver<Vec<u8>>,
    back: std::sync::mpsc::SyncSender<Vec<u8>>,
    chunk: Vec<u8>,
    pos: usize,
}

impl std::io::Read for ChunkReader {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        if self.pos == self.chunk.len() {
            let Ok(next) = self.rx.recv() else {
                return Ok(0);
            };
            let done = std::mem::replace(&mut self.chunk, next);
            // The producer may already have stopped; then the buffer just goes.
            let _ = self.back.try_send(done);
            self.pos = 0;
        }
        let n = out.len().min(self.chunk.len() - self.pos);
        out[..n].copy_from_slice(&self.chunk[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

/// Unpacks the verified tar stream into `dst`. Device nodes are not created
/// on the host (the guest gets its own /dev); paths that would land outside
/// `dst` are an error. The section hash is checked at the end, before the
/// caller publishes the directory.
///
/// Two threads, like `zstd -d | tar -x`: one reads, hashes and decompresses
/// the section, the other unpacks and writes files. The producer's result
/// (decoding errors, size, single frame, SHA-256) decides first: an unpack
/// that looked complete still fails if the stream behind it did not verify.
fn extract_rootfs<R: ReadAt + Sync + ?Sized>(
    art: &Artifact<'_, R>,
    entry: &SectionEntry,
    dst: &Path,
) -> Result<(), CacheError> {
    use std::io::Read;
    let section = |source| CacheError::Section {
        what: "the root filesystem",
        source,
    };
    let archive_err = |e: std::io::Error| CacheError::Entry {
        entry: "<archive>".into(),
        fault: e.to_string(),
    };
    let mut stream = art.open_section(entry).map_err(section)?;
    let (tx, rx) = std::sync::mpsc::sync_channel::<Vec<u8>>(PIPE_DEPTH);
    let (back_tx, back_rx) = std::sync::mpsc::sync_channel::<Vec<u8>>(PIPE_DEPTH + 2);
    std::thread::scope(|s| {
        let producer = s.spawn(move || -> Result<(), CacheError> {
            loop {
                let mut buf = back_rx.try_recv().unwrap_or_default();
                buf.resize(PIPE_CHUNK, 0);
                let mut filled = 0;
                while filled < buf.len() {
                    match stream.read(&mut buf[filled..]) {
                        Ok(0) => break,
                        Ok(n) => filled += n,
                        Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                        Err(e) => return Err(archive_err(e)),
                    }
                }
                if filled == 0 {
                    break;
                }
                buf.truncate(filled);
                if tx.send(buf).is_err() {
                    // The unpacker stopped on an error of its own; it reports it.
                    return Ok(());
                }
            }
            drop(tx);
            // Everything was read (the tar reader's end-of-archive padding
            // too: it belongs to the section and its hash).
            stream.finish().map_err(section)
        });
        let mut reader = ChunkReader {
            rx,
            back: back_tx,
            chunk: Vec::new(),
            pos: 0,
        };
        let unpacked = unpack(&mut reader, dst).and_then(|()| {
            // The tar reader stops at the end-of-archive marker; drain the
            // rest so the producer reaches the end and checks the hash.
            std::io::copy(&mut reader, &mut std::io::sink())
                .map(drop)
                .map_err(archive_err)
        });
        // Dropping the reader unblocks a producer waiting to send.
        drop(reader);
        let produced = producer.join().expect("rootfs extraction thread panicked");
        produced.and(unpacked)
    })
}

fn unpack(stream: &mut impl std::io::Read, dst: &Path) -> Result<(), CacheError> {
    // SAFETY: geteuid has no preconditions and cannot fail.
    let root = unsafe { libc::geteuid() } == 0;
    let mut dir_modes: Vec<(PathBuf, u32)> = Vec::new();
    {
        let mut archive = tar::Archive::new(stream);
        archive.set_preserve_permissions(true);
        archive.set_preserve_mtime(true);
        archive.set_preserve_ownerships(root);
        archive.set_unpack_xattrs(false);
        archive.set_overwrite(true);
        let tar_err = |e: std::io::Error| CacheError::Entry {
            entry: "<archive>".into(),
            fault: e.to_string(),
        };
        for e in archive.entries().map_err(tar_err)? {
            let mut e = e.map_err(tar_err)?;
            let name = String::from_utf8_lossy(&e.path_bytes()).into_owned();
            let kind = e.header().entry_type();
            if matches!(kind, tar::EntryType::Char | tar::EntryType::Block) {
                continue;
            }
            let mode = e.header().mode().unwrap_or(0o755);
            let unpacked = e.unpack_in(dst).map_err(|err| CacheError::Entry {
                entry: name.clone(),
                fault: err.to_string(),
            })?;
            if !unpacked {
                return Err(CacheError::Entry {
                    entry: name,
                    fault: "path leaves the root (`..`)".into(),
                });
            }
            if kind == tar::EntryType::Directory {
                // Keep directories writable until everything is in them.
                let p = dst.join(name.trim_start_matches('/'));
                let _ = std::fs::set_permissions(
                    &p,
                    std::fs::Permissions::from_mode(0o700 | (mode & 0o7777)),
                );
                dir_modes.push((p, mode & 0o7777));
            }
        }
    }
    for (p, mode) in dir_modes.into_iter().rev() {
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).map_err(io(&p))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use smolvm_format::{
        plan_sections, Compression, MachineConfig, Manifest, PayloadWriter, SectionData,
        SectionKind, Target, FORMAT_VERSION,
    };

    /// An unsigned bare payload holding `rootfs` (stored uncompressed): the
    /// cache does not look at signatures, its caller has checked them.
    fn artifact(rootfs: Vec<u8>) -> Vec<u8> {
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
                compression: Compression::None,
                size: rootfs.len() as u64,
                stored: rootfs,
            },
        ];
        let manifest = Manifest {
            format_version: FORMAT_VERSION,
            name: "pipe".into(),
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

    /// A tar of `files` (path, size) with deterministic content; a path is
    /// written into the header as is, `..` included.
    fn tar_of(files: &[(&str, usize)]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        let mut dir = tar::Header::new_gnu();
        dir.set_entry_type(tar::EntryType::Directory);
        dir.set_path("data").unwrap();
        dir.set_mode(0o555);
        dir.set_size(0);
        dir.set_uid(0);
        dir.set_gid(0);
        dir.set_mtime(0);
        dir.set_cksum();
        b.append(&dir, std::io::empty()).unwrap();
        for (i, &(path, size)) in files.iter().enumerate() {
            let mut h = tar::Header::new_gnu();
            h.as_gnu_mut().unwrap().name[..path.len()].copy_from_slice(path.as_bytes());
            h.set_mode(0o644);
            h.set_size(size as u64);
            h.set_uid(0);
            h.set_gid(0);
            h.set_mtime(0);
            h.set_cksum();
            b.append(&h, content(i, size).as_slice()).unwrap();
        }
        b.into_inner().unwrap()
    }

    fn content(i: usize, size: usize) -> Vec<u8> {
        (0..size)
            .map(|j| (j.wrapping_mul(31) ^ i).to_le_bytes()[0])
            .collect()
    }

    fn extract(
        bytes: &[u8],
        change: impl FnOnce(&mut SectionEntry),
    ) -> (Result<PathBuf, CacheError>, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::open(dir.path().join("cache")).unwrap();
        let art = Artifact::parse(bytes).unwrap();
        let mut entry = art.manifest.section(SectionKind::Rootfs).unwrap().clone();
        change(&mut entry);
        let r = cache.rootfs(&art, &entry, &crate::run::Trace::new());
        (r, dir)
    }

    fn published(dir: &tempfile::TempDir) -> Vec<String> {
        std::fs::read_dir(dir.path().join("cache/rootfs"))
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| !n.ends_with(".lock"))
            .collect()
    }

    // More than PIPE_DEPTH chunks, so the producer waits on the unpacker.
    const BIG: usize = 3 << 20;

    #[test]
    fn pipelined_extraction_writes_every_byte_and_restores_modes() {
        let files = [
            ("data/a", BIG),
            ("data/b", 1),
            ("data/c", 0),
            ("data/d", BIG + 7),
        ];
        let (root, _dir) = extract(&artifact(tar_of(&files)), |_| {});
        let root = root.unwrap();
        for (i, (path, size)) in files.iter().enumerate() {
            assert_eq!(
                std::fs::read(root.join(path)).unwrap(),
                content(i, *size),
                "{path}"
            );
        }
        let mode = std::fs::metadata(root.join("data")).unwrap().mode() & 0o777;
        assert_eq!(mode, 0o555);
        remove_tree(&root).unwrap();
    }

    #[test]
    fn a_hash_mismatch_publishes_nothing() {
        let (r, dir) = extract(&artifact(tar_of(&[("data/a", BIG)])), |e| {
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
        assert!(published(&dir).is_empty(), "{:?}", published(&dir));
    }

    #[test]
    fn an_unpack_error_stops_the_producer_and_publishes_nothing() {
        // The bad entry comes early; the producer still has chunks to send.
        let files = [("data/a", 1000), ("../evil", 10), ("data/b", 4 * BIG)];
        let (r, dir) = extract(&artifact(tar_of(&files)), |_| {});
        let err = r.unwrap_err();
        assert!(
            matches!(&err, CacheError::Entry { entry, .. } if entry == "../evil"),
            "{err}"
        );
        assert!(published(&dir).is_empty(), "{:?}", published(&dir));
        assert!(!dir.path().join("cache/evil").exists());
    }

    #[test]
    fn a_stream_shorter_than_declared_fails() {
        let (r, dir) = extract(&artifact(tar_of(&[("data/a", BIG)])), |e| e.size += 1);
        assert!(r.is_err());
        assert!(published(&dir).is_empty(), "{:?}", published(&dir));
    }
}

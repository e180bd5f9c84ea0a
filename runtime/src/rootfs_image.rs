//! The root filesystem as the guest gets it: one EROFS image file in the
//! cache, attached as a read-only disk. The host never unpacks it.
//!
//! ```text
//! $XDG_CACHE_HOME/smolvm/
//!   rootfs/<sha256>.erofs        the image; published by rename, complete by construction
//!   rootfs/<sha256>.lock         flock: one writer per hash at a time
//!   rootfs/.tmp-<sha256>-XXXXXX  being written (never trusted; removed by the next writer)
//! ```

use std::fs::{File, OpenOptions};
use std::io::Read;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Mutex};

use sha2::{Digest, Sha256};
use smolvm_format::{
    Artifact, FormatError, FrameDecoder, FrameSpan, ReadAt, SectionEntry, Sha256Digest,
};

use crate::cache::{hold, io, Cache, CacheError};

/// The root filesystem image a start boots from.
#[derive(Debug)]
pub struct RootImage {
    /// The image, read-only, with a shared lock held against pruning.
    pub file: File,
    /// Set on a first start: the image is complete and verified, but not
    /// yet durable, and not under its trusted name. [`Publish::finish`]
    /// makes it both; until then no other start trusts it.
    pub pending: Option<Publish>,
}

/// A first start's image on its way into the cache: written and verified,
/// then fsynced, renamed to `<sha256>.erofs` and the directory fsynced.
/// The VM may boot from it before that (through its own descriptor); the
/// write to disk then overlaps the boot instead of delaying it. Dropped
/// without [`finish`](Self::finish) (a killed start, a forked child), it
/// leaves a temporary file that the next start removes and writes again.
#[derive(Debug)]
pub struct Publish {
    tmp: File,
    tmp_path: PathBuf,
    path: PathBuf,
    dir: PathBuf,
    /// The writers' lock (`<sha256>.lock`), released when this is dropped.
    _lock: File,
}

impl Publish {
    /// Makes the image durable and gives it its trusted name: fsync, rename,
    /// fsync of the directory, in that order, so a power loss at any point
    /// leaves either no published image or a complete one.
    pub fn finish(self) -> Result<(), CacheError> {
        self.tmp.sync_all().map_err(io(&self.path))?;
        std::fs::rename(&self.tmp_path, &self.path).map_err(io(&self.path))?;
        // The rename itself must survive a power loss before anyone trusts it.
        File::open(&self.dir)
            .and_then(|d| d.sync_all())
            .map_err(io(&self.dir))
    }
}

/// Writes go out in chunks this large: few syscalls, little memory.
const WRITE_CHUNK: usize = 1 << 20;

impl Cache {
    /// The root filesystem image for `entry`, opened read-only: the file the
    /// guest mounts from its read-only disk. Written on first use: streamed
    /// through zstd into a temporary file and hashed while written; it is
    /// returned only if the stored bytes match the verified hash, with the
    /// [`Publish`] step (fsync, rename) still to do. Nothing of the image is
    /// ever created as a host file.
    pub fn rootfs_image<R: ReadAt + ?Sized>(
        &self,
        art: &Artifact<'_, R>,
        entry: &SectionEntry,
        trace: &crate::trace::Trace,
    ) -> Result<RootImage, CacheError> {
        let dir = self.root().join("rootfs");
        let path = dir.join(format!("{}.erofs", entry.sha256));
        let published = |file| RootImage {
            file,
            pending: None,
        };
        if let Some(f) = open_complete(&path, entry.size)? {
            return Ok(published(f));
        }
        let lock_path = dir.join(format!("{}.lock", entry.sha256));
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .open(&lock_path)
            .map_err(io(&lock_path))?;
        crate::cache::flock(&lock, libc::LOCK_EX).map_err(io(&lock_path))?;
        // Someone else may have finished while we waited.
        if let Some(f) = open_complete(&path, entry.size)? {
            return Ok(published(f));
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
        // The fsync comes in the publish, while the guest boots: writeback
        // started now would take the cores the decoding needs (measured on
        // two cores: first start 247 -> 194 ms to "entering the VM").
        write_section(
            art,
            entry,
            "the root filesystem",
            tmp.as_file_mut(),
            Fsync::Later,
        )?;
        // Verified. From here the file stays when this process ends without
        // publishing it (the next start removes it); an error before this
        // point deletes it at once.
        let (tmp, tmp_path) = tmp.into_parts();
        let tmp_path = tmp_path.keep().map_err(|e| io(&dir)(e.error))?;
        let file = hold(File::open(&tmp_path).map_err(io(&tmp_path))?, &tmp_path)?;
        trace.mark("rootfs image written");
        Ok(RootImage {
            file,
            pending: Some(Publish {
                tmp,
                tmp_path,
                path,
                dir,
                _lock: lock,
            }),
        })
    }
}

/// When the caller fsyncs what [`write_section`] wrote.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Fsync {
    /// Right after: each frame's writeback starts as soon as it is written,
    /// so the fsync waits for little.
    Soon,
    /// Later, off the critical path: the page cache keeps the frames until
    /// then, and the cores stay with the decoders.
    Later,
}

/// Writes `entry`'s decompressed bytes into `out`, which must be empty.
/// The stored bytes' SHA-256, the declared size and the frame rules are
/// checked by the time this returns `Ok`; an error is returned otherwise,
/// so the caller never publishes what did not verify.
pub(crate) fn write_section<R: ReadAt + ?Sized>(
    art: &Artifact<'_, R>,
    entry: &SectionEntry,
    what: &'static str,
    out: &mut File,
    fsync: Fsync,
) -> Result<(), CacheError> {
    if entry.frames.is_some() {
        write_frames(art, entry, what, out, fsync)
    } else {
        write_stream(art, entry, what, out)
    }
}

/// One frame (or an uncompressed section): streamed through the section
/// reader, which checks everything at the end
/// ([`smolvm_format::SectionStream::finish`]).
fn write_stream<R: ReadAt + ?Sized>(
    art: &Artifact<'_, R>,
    entry: &SectionEntry,
    what: &'static str,
    out: &mut File,
) -> Result<(), CacheError> {
    let section = |source| CacheError::Section { what, source };
    let mut stream = art.open_section(entry).map_err(section)?;
    let mut buf = vec![0u8; WRITE_CHUNK];
    let mut at = 0u64;
    loop {
        let n = match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(decode_failure(art, entry, what, e.to_string())),
        };
        write_nonzero_blocks(out, at, &buf[..n]).map_err(write_error(what))?;
        at += n as u64;
    }
    // Zero blocks at the end were skipped: the length covers them (holes).
    out.set_len(at).map_err(write_error(what))?;
    stream.finish().map_err(section)
}

/// A framed section: this thread reads the stored bytes in order and
/// hashes them, workers on every core decompress a frame each into its
/// place in the file (with [`Fsync::Soon`], starting its writeback at
/// once). The hash is compared after every frame is
/// written; on any error the caller publishes nothing.
fn write_frames<R: ReadAt + ?Sized>(
    art: &Artifact<'_, R>,
    entry: &SectionEntry,
    what: &'static str,
    out: &File,
    fsync: Fsync,
) -> Result<(), CacheError> {
    let section = |source| CacheError::Section { what, source };
    let spans = entry.frame_spans().map_err(section)?;
    // Every frame's place exists before any is written (and mapped).
    out.set_len(entry.size).map_err(write_error(what))?;
    let workers = std::thread::available_parallelism()
        .map_or(1, std::num::NonZeroUsize::get)
        .min(spans.len());
    // One frame queued per worker: memory stays at a few frames.
    let (jobs, queue) = mpsc::sync_channel::<(FrameSpan, Vec<u8>)>(workers);
    let queue = Mutex::new(queue);
    let (give_back, spare) = mpsc::channel::<Vec<u8>>();
    let failed = AtomicBool::new(false);
    let mut hasher = Sha256::new();
    let (read, decoded) = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..workers)
            .map(|_| {
                scope.spawn(|| -> Result<(), String> {
                    let fail = |e: String| {
                        failed.store(true, Ordering::Relaxed);
                        e
                    };
                    let mut decoder =
                        FrameDecoder::new(entry.kind).map_err(|e| fail(e.to_string()))?;
                    loop {
                        // Held only while taking a job; a poisoned lock means
                        // another worker panicked, which join reports.
                        let job = match queue.lock() {
                            Ok(q) => q.recv(),
                            Err(_) => return Ok(()),
                        };
                        let Ok((span, stored)) = job else {
                            return Ok(());
                        };
                        write_frame(out, &mut decoder, entry.kind, &span, &stored).map_err(fail)?;
                        if fsync == Fsync::Soon {
                            start_writeback(out, span.offset, span.size);
                        }
                        let _ = give_back.send(stored);
                    }
                })
            })
            .collect();
        let mut read = Ok(());
        for span in &spans {
            if failed.load(Ordering::Relaxed) {
                break;
            }
            // Buffers come back from the workers: no fresh pages per frame.
            let mut stored = spare.try_recv().unwrap_or_default();
            if let Err(e) = art.read_frame(entry, span, &mut stored) {
                read = Err(e);
                break;
            }
            hasher.update(&stored);
            if jobs.send((*span, stored)).is_err() {
                break;
            }
        }
        drop(jobs);
        let mut decoded = Ok(());
        for h in handles {
            let r = h
                .join()
                .unwrap_or_else(|_| Err("a frame worker panicked".into()));
            if decoded.is_ok() {
                decoded = r;
            }
        }
        (read, decoded)
    });
    read.map_err(section)?;
    if let Err(fault) = decoded {
        return Err(decode_failure(art, entry, what, fault));
    }
    let actual = Sha256Digest::from(hasher.finalize());
    if actual != entry.sha256 {
        return Err(section(FormatError::HashMismatch {
            kind: entry.kind,
            expected: entry.sha256,
            actual,
        }));
    }
    Ok(())
}

/// Decodes one frame into its place in `out` (which is at least that
/// long). On Linux straight into a shared mapping of the place, populated
/// writable first: no copy, and unlike `pwrite`, which takes the file's
/// lock, every core fills the page cache at once (measured: 117 MB in
/// 71-81 ms on two cores, against 200-270 ms with `pwrite` from either one
/// thread or two). Where a mapping or its population fails (another
/// platform or file system, a full disk: `MADV_POPULATE_WRITE` reports
/// what would otherwise be a SIGBUS), the frame is decoded into a buffer
/// and written, and that write reports the error.
///
/// A frame that compressed more than [`MOSTLY_ZEROS_RATIO`] to one is
/// mostly zeros (a sparse file's holes, an empty disk image): it is
/// decoded into a buffer and only its blocks that hold data are written,
/// so the cache file keeps the holes (`write_frames` sized the file
/// first, so what is skipped reads as zeros).
fn write_frame(
    out: &File,
    decoder: &mut FrameDecoder,
    kind: smolvm_format::SectionKind,
    span: &FrameSpan,
    stored: &[u8],
) -> Result<(), String> {
    let mostly_zeros = (stored.len() as u64).saturating_mul(MOSTLY_ZEROS_RATIO) < span.size;
    #[cfg(target_os = "linux")]
    if !mostly_zeros {
        if let Some(mut place) = mapped_place(out, span) {
            return decoder
                .decode_into(kind, span, stored, &mut place)
                .map_err(|e| e.to_string());
        }
    }
    let content = decoder
        .decode(kind, span, stored)
        .map_err(|e| e.to_string())?;
    let written = if mostly_zeros {
        write_nonzero_blocks(out, span.offset, content)
    } else {
        out.write_all_at(content, span.offset)
    };
    written.map_err(|e| format!("writing: {e}"))
}

/// Ordinary root filesystem frames compress 2-4 to one; a frame past 64
/// is mostly zero blocks.
const MOSTLY_ZEROS_RATIO: u64 = 64;

/// What a hole is made of: a file system block.
const HOLE_BLOCK: usize = 4096;

/// Writes `content` at `offset` except its all-zero blocks (counted from
/// `content`'s start), which are left to read as the file's holes: each
/// run of blocks with data is one write. The file must already be long
/// enough or be sized after, and must hold zeros where nothing is written
/// (a new file).
fn write_nonzero_blocks(out: &File, offset: u64, content: &[u8]) -> std::io::Result<()> {
    // A comparison with zeros is one memcmp: several times faster than a
    // byte loop in the size-tuned stub.
    static ZEROS: [u8; HOLE_BLOCK] = [0; HOLE_BLOCK];
    let is_zero = |block: &[u8]| block == &ZEROS[..block.len()];
    let mut blocks = content.chunks(HOLE_BLOCK).enumerate().peekable();
    while let Some((first, block)) = blocks.next() {
        if is_zero(block) {
            continue;
        }
        let mut end = first * HOLE_BLOCK + block.len();
        while let Some((_, next)) = blocks.next_if(|(_, b)| !is_zero(b)) {
            end += next.len();
        }
        let start = first * HOLE_BLOCK;
        out.write_all_at(&content[start..end], offset + start as u64)?;
    }
    Ok(())
}

/// A writable shared mapping of `span`'s place in `out`, every page of it
/// present and writable, or `None` if that cannot be had.
#[cfg(target_os = "linux")]
fn mapped_place(out: &File, span: &FrameSpan) -> Option<memmap2::MmapMut> {
    let len = usize::try_from(span.size).ok().filter(|&len| len > 0)?;
    // SAFETY: a mapping is unsound if the file shrinks or changes under it.
    // `out` is this start's own temporary file (the kernel's or the rootfs
    // image's): created exclusively under a fresh name in the private
    // (0700) cache directory and already `span.offset + span.size` bytes
    // long (write_frames sizes it first). No code truncates or writes
    // another start's temporary file; a later writer at most unlinks it,
    // which leaves a mapping valid. (A process of the same user could
    // truncate it, but could as well ptrace this one.) Each frame's place
    // is mapped by the one worker decoding that frame, so mappings never
    // overlap, and the mapping is dropped before the frame counts as
    // written.
    let map = unsafe {
        memmap2::MmapOptions::new()
            .offset(span.offset)
            .len(len)
            .map_mut(out)
    }
    .ok()?;
    // Faults in every page now (blocks reserved), where a failure is an
    // error code rather than a SIGBUS in the middle of decoding. A page
    // faults again only after writeback has cleaned it, when its blocks
    // are already allocated.
    map.advise(memmap2::Advice::PopulateWrite).ok()?;
    Some(map)
}

/// A decoder or write error is usually a section whose bytes changed:
/// report the hash mismatch rather than the symptom.
fn decode_failure<R: ReadAt + ?Sized>(
    art: &Artifact<'_, R>,
    entry: &SectionEntry,
    what: &'static str,
    fault: String,
) -> CacheError {
    CacheError::Section {
        what,
        source: match art.verify_section(entry) {
            Err(source @ FormatError::HashMismatch { .. }) => source,
            _ => FormatError::Decompress {
                kind: entry.kind,
                fault,
            },
        },
    }
}

fn write_error(what: &'static str) -> impl Fn(std::io::Error) -> CacheError {
    move |source| CacheError::Io {
        path: PathBuf::from(format!("<{what}>")),
        source,
    }
}

/// Asks the kernel to start writing `len` bytes at `offset` back to disk,
/// without waiting for it.
fn start_writeback(file: &File, offset: u64, len: u64) {
    use std::os::fd::AsRawFd;
    let (Ok(offset), Ok(nbytes)) = (i64::try_from(offset), i64::try_from(len)) else {
        return;
    };
    // SAFETY: the descriptor is valid for the lifetime of `file`, and the
    // call only schedules I/O for pages of this file. Its result is ignored
    // on purpose: it is a hint (some file systems do not support it), and
    // any write error surfaces in the fsync that must follow before
    // anything is published.
    let _ = unsafe {
        libc::sync_file_range(
            file.as_raw_fd(),
            offset,
            nbytes,
            libc::SYNC_FILE_RANGE_WRITE,
        )
    };
}

/// The published image at `path`, if there is one of the declared size.
/// Only complete, verified images are ever renamed to that name.
fn open_complete(path: &Path, size: u64) -> Result<Option<File>, CacheError> {
    match File::open(path) {
        Ok(f) if f.metadata().map_err(io(path))?.len() == size => Ok(Some(hold(f, path)?)),
        Ok(_) => Ok(None),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io(path)(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use smolvm_format::{
        plan_sections, Compression, MachineConfig, Manifest, PayloadWriter, SectionData,
        SectionKind, Target, FORMAT_VERSION,
    };
    use std::io::Write;

    /// An unsigned bare payload holding `rootfs` (zstd): the cache does not
    /// look at signatures, its caller has checked them.
    fn artifact(rootfs: &[u8]) -> Vec<u8> {
        artifact_with(rootfs, zstd::bulk::compress(rootfs, 1).unwrap(), None)
    }

    /// The same with `rootfs` in independent frames, as `pack create` does.
    fn framed_artifact(rootfs: &[u8]) -> Vec<u8> {
        let mut enc = smolvm_format::FramedEncoder::new(Vec::new(), 1, 2).unwrap();
        enc.write_all(rootfs).unwrap();
        let (stored, frames) = enc.finish().unwrap();
        assert!(frames.stored_lens.len() > 1);
        artifact_with(rootfs, stored, Some(frames))
    }

    fn artifact_with(
        rootfs: &[u8],
        stored: Vec<u8>,
        frames: Option<smolvm_format::Frames>,
    ) -> Vec<u8> {
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
                stored,
            },
        ];
        let mut entries = plan_sections(&sections).unwrap();
        entries[2].frames = frames;
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
            sections: entries,
            config,
        };
        let mut out = Vec::new();
        PayloadWriter::new(&manifest)
            .unwrap()
            .write(&mut out, &[], &sections, None)
            .unwrap();
        out
    }

    fn empty_cache() -> (tempfile::TempDir, Cache) {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::open(dir.path().join("cache")).unwrap();
        (dir, cache)
    }

    /// What a start does before it may exit: publish a first start's image.
    fn finish(img: RootImage) -> Result<File, CacheError> {
        if let Some(p) = img.pending {
            p.finish()?;
        }
        Ok(img.file)
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
        let r = cache
            .rootfs_image(&art, &entry, &crate::trace::Trace::new())
            .and_then(finish);
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

    /// Two full frames and a partial one.
    fn framed_image_bytes() -> Vec<u8> {
        let len = 2 * usize::try_from(smolvm_format::frames::FRAME_SIZE).unwrap() + 77;
        (0..len)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 21).to_le_bytes()[0] & 0x3f)
            .collect()
    }

    #[test]
    fn a_framed_image_is_written_on_all_cores_with_every_byte() {
        let image = framed_image_bytes();
        let (r, _dir, names) = publish(&framed_artifact(&image), |_| {});
        let mut got = Vec::new();
        r.unwrap().read_to_end(&mut got).unwrap();
        assert!(got == image, "published bytes differ");
        assert_eq!(names.len(), 1, "{names:?}");
    }

    /// An image that is mostly holes (issue 22: a 2 GiB sparse file made
    /// a first start write 2.1 GB): the cache file keeps them, framed or
    /// not, and reads back every byte.
    #[test]
    fn zero_blocks_stay_holes_in_the_cache() {
        use std::os::unix::fs::MetadataExt;
        let frame = usize::try_from(smolvm_format::frames::FRAME_SIZE).unwrap();
        let mut image = vec![0u8; 6 * frame + 4096 * 3 + 10];
        // Data in the first frame, mid-way through the fourth (not block
        // aligned), and in the last partial block; zeros elsewhere.
        image[..100_000].copy_from_slice(&framed_image_bytes()[..100_000]);
        image[3 * frame + 5000..3 * frame + 9000].fill(7);
        let last = image.len() - 1;
        image[last] = 1;
        for bytes in [framed_artifact(&image), artifact(&image)] {
            let (r, _dir, _) = publish(&bytes, |_| {});
            let mut f = r.unwrap();
            let allocated = f.metadata().unwrap().blocks() * 512;
            let mut got = Vec::new();
            f.read_to_end(&mut got).unwrap();
            assert!(got == image, "published bytes differ");
            assert!(
                allocated < 1 << 20,
                "{allocated} bytes allocated for {} bytes of data",
                100_000 + 4000 + 1
            );
        }
    }

    /// A descriptor open for writing only cannot be mapped (a shared
    /// writable mapping needs read access too), as on a file system
    /// without shared mappings: every frame goes through `pwrite` instead.
    #[test]
    fn frames_that_cannot_be_mapped_are_written_all_the_same() {
        let image = framed_image_bytes();
        let bytes = framed_artifact(&image);
        let art = Artifact::parse(&bytes[..]).unwrap();
        let entry = art.manifest.section(SectionKind::Rootfs).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("image");
        let mut out = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
            .unwrap();
        write_section(&art, entry, "the root filesystem", &mut out, Fsync::Soon).unwrap();
        assert!(
            std::fs::read(&path).unwrap() == image,
            "written bytes differ"
        );
    }

    #[test]
    fn a_changed_byte_in_a_frame_publishes_nothing() {
        let mut bytes = framed_artifact(&framed_image_bytes());
        let art = Artifact::parse(&bytes[..]).unwrap();
        let entry = art.manifest.section(SectionKind::Rootfs).unwrap();
        let spans = entry.frame_spans().unwrap();
        // A byte inside the second frame's compressed blocks.
        let at = art.section_file_offset(entry) + spans[1].stored_offset + spans[1].stored_len / 2;
        bytes[usize::try_from(at).unwrap()] ^= 0x55;
        let (r, _dir, names) = publish(&bytes, |_| {});
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
    fn a_frame_table_that_lies_publishes_nothing() {
        let bytes = framed_artifact(&framed_image_bytes());
        // Boundaries moved by one byte, the sum kept: signed lies are
        // caught by the frame checks, not trusted.
        let (r, _dir, names) = publish(&bytes, |e| {
            let lens = &mut e.frames.as_mut().unwrap().stored_lens;
            lens[0] += 1;
            lens[1] -= 1;
        });
        // Frames 0 and 1 are both wrong now; whichever worker fails first reports.
        let err = crate::exit::chain(&r.unwrap_err()).to_string();
        assert!(err.contains("frame 0") || err.contains("frame 1"), "{err}");
        assert!(names.is_empty(), "{names:?}");
        // A table that does not add up is refused before anything is read.
        let (r, _dir, names) = publish(&bytes, |e| {
            e.frames.as_mut().unwrap().stored_lens[0] += 1;
        });
        let err = crate::exit::chain(&r.unwrap_err()).to_string();
        assert!(err.contains("add up to"), "{err}");
        assert!(names.is_empty(), "{names:?}");
    }

    #[test]
    fn a_hash_mismatch_publishes_nothing() {
        let (r, _dir, names) = publish(&artifact(&image_bytes()), |e| {
            e.sha256 = Sha256Digest::from_bytes([0; 32]);
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
        let (dir, cache) = empty_cache();
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
            .rootfs_image(&art, &entry, &crate::trace::Trace::new())
            .and_then(finish)
            .unwrap();
        let mut got = Vec::new();
        f.read_to_end(&mut got).unwrap();
        assert!(got == image_bytes());
        assert!(!stale.exists(), "the stale temporary file was kept");
    }

    /// A first start boots from the verified image before it is published;
    /// one that ends before publishing (killed, or the VMM child, which
    /// drops it) leaves only a temporary file, which the next start does
    /// not trust: it writes the image again and publishes it.
    #[test]
    fn an_image_is_trusted_only_once_published() {
        let bytes = artifact(&image_bytes());
        let (dir, cache) = empty_cache();
        let art = Artifact::parse(&bytes[..]).unwrap();
        let entry = art.manifest.section(SectionKind::Rootfs).unwrap().clone();
        let rootfs = dir.path().join("cache/rootfs");
        let names = || {
            let mut n: Vec<String> = std::fs::read_dir(&rootfs)
                .unwrap()
                .flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| !n.ends_with(".lock"))
                .map(|n| n.replace(&entry.sha256.to_string(), "HASH"))
                .collect();
            n.sort();
            n
        };
        let trace = crate::trace::Trace::new();

        let mut first = cache.rootfs_image(&art, &entry, &trace).unwrap();
        let mut got = Vec::new();
        first.file.read_to_end(&mut got).unwrap();
        assert!(got == image_bytes(), "the unpublished image is whole");
        let left = names();
        assert_eq!(left.len(), 1, "{left:?}");
        assert!(left[0].starts_with(".tmp-HASH-"), "{left:?}");
        drop(first.pending.take()); // never finished

        let second = cache.rootfs_image(&art, &entry, &trace).unwrap();
        let publish = second
            .pending
            .expect("an unpublished image is written again");
        assert_eq!(names().len(), 1, "the stale temporary file was kept");
        publish.finish().unwrap();
        assert_eq!(names(), ["HASH.erofs"]);

        let third = cache.rootfs_image(&art, &entry, &trace).unwrap();
        assert!(
            third.pending.is_none(),
            "a published image is used as it is"
        );
    }
}

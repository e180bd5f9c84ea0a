//! Writing one verified section of an artifact into a cache file: the
//! kernel (cache.rs) and the root filesystem image (rootfs_image.rs) both
//! come through here. The stored bytes are hashed while they are written;
//! nothing is returned as written unless they match the signed manifest.

use std::fs::File;
use std::io::Read;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Mutex};

use sha2::{Digest, Sha256};
use smolvm_format::{
    Artifact, FormatError, FrameDecoder, FrameSpan, ReadAt, SectionEntry, Sha256Digest,
};

use super::CacheError;

/// Writes go out in chunks this large: few syscalls, little memory.
pub(crate) const WRITE_CHUNK: usize = 1 << 20;

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

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
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use smolvm_format::{Artifact, ReadAt, SectionEntry};

use crate::cache::{hold, io, write_section, Cache, CacheError, Fsync};

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
    use crate::cache::WRITE_CHUNK;
    use smolvm_format::{
        plan_sections, Compression, MachineConfig, Manifest, PayloadWriter, SectionData,
        SectionKind, Target, FORMAT_VERSION,
    };
    use smolvm_format::{FormatError, Sha256Digest};
    use std::io::Read;
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

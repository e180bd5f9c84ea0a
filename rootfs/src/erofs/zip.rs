//! LZ4 compression of regular files, the way the kernel's EROFS reads it
//! back: fixed-input pclusters.
//!
//! A file is cut into extents of [`EXTENT_LCLUSTERS`] logical clusters
//! (one block each; the last extent may be shorter). Each extent of two or
//! more lclusters is compressed on its own with LZ4 (block format, 64 KiB
//! window); when that saves at least one block it becomes a big pcluster:
//! the compressed bytes end exactly at the end of its last block, zeros
//! before them (ZERO_PADDING). Otherwise every lcluster of the extent is
//! stored as is in a block of its own (PLAIN). One 8-byte index per
//! lcluster says which: HEAD (first lcluster of a pcluster, its first
//! block), NONHEAD (distance back to the head; the first NONHEAD carries
//! the pcluster's block count instead) or PLAIN (its block).
//!
//! Fixed input (every pcluster starts at an lcluster boundary) keeps each
//! extent independent: no byte of one extent is needed to read another,
//! and the work splits over every core. A file whose extents together do
//! not save a block is not compressed at all (the caller keeps it flat).

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{mpsc, Mutex};

use super::emit::HostFile;
use super::layout::{Content, Inode};
use super::ondisk::{DataLayout, LclusterIndex, BLOCK_BYTES, Z_LI_D0_CBLKCNT};
use super::WHAT;
use crate::tree::FileData;
use crate::RootfsError;

/// Logical clusters (blocks of input) per extent: 128 KiB of input per
/// pcluster. Longer extents compress better and waste less of their last
/// block; a read of any byte decompresses its whole extent.
pub const EXTENT_LCLUSTERS: usize = MAX_PCLUSTER_BLOCKS as usize + 1;
/// Input bytes per extent.
pub const EXTENT_BYTES: usize = EXTENT_LCLUSTERS * BLOCK_BYTES;
/// The largest pcluster this writer makes, in blocks: an extent is only
/// compressed when it saves a block.
pub const MAX_PCLUSTER_BLOCKS: u16 = 31;
/// LZ4's longest match distance (the block format's 16-bit offsets).
pub const LZ4_MAX_DISTANCE: u16 = u16::MAX;

/// A compressed file's data area and its index.
#[derive(Debug, Default)]
pub struct Zipped {
    /// The data blocks not yet handed on ([`Zipped::flushed`] before them),
    /// in order, as they go into the image.
    pub blocks: Vec<u8>,
    /// Blocks already taken out of `blocks` (written to the spool).
    pub flushed: u64,
    /// One per lcluster; block addresses relative to the first data block.
    pub indexes: Vec<LclusterIndex>,
}

impl Zipped {
    /// Data blocks so far, flushed or not.
    pub fn block_count(&self) -> u64 {
        self.flushed + (self.blocks.len() / BLOCK_BYTES) as u64
    }
}

/// Reusable buffers for [`Zipper::extent`].
#[derive(Default)]
pub struct Zipper {
    scratch: Vec<u8>,
}

impl Zipper {
    /// Appends the extent `input` (at most [`EXTENT_BYTES`]; shorter only
    /// as a file's last) to `z`.
    pub fn extent(&mut self, input: &[u8], z: &mut Zipped) {
        debug_assert!(!input.is_empty() && input.len() <= EXTENT_BYTES);
        let lclusters = input.len().div_ceil(BLOCK_BYTES);
        let first = u32::try_from(z.block_count()).unwrap_or(u32::MAX);
        if lclusters >= 2 {
            self.scratch
                .resize(lz4_flex::block::get_maximum_output_size(input.len()), 0);
            // The buffer is the worst case's size: it cannot be too small.
            let n = lz4_flex::block::compress_into(input, &mut self.scratch)
                .expect("output buffer sized for the worst case");
            let pblocks = n.div_ceil(BLOCK_BYTES);
            if pblocks < lclusters {
                let start = z.blocks.len();
                z.blocks.resize(start + pblocks * BLOCK_BYTES - n, 0);
                z.blocks.extend_from_slice(&self.scratch[..n]);
                z.indexes.push(LclusterIndex::Head { blkaddr: first });
                // Both fit: lclusters <= EXTENT_LCLUSTERS, far below
                // Z_LI_D0_CBLKCNT (2048).
                let count = u16::try_from(pblocks).expect("small");
                let total = u16::try_from(lclusters).expect("small");
                for j in 1..total {
                    let delta0 = if j == 1 { Z_LI_D0_CBLKCNT | count } else { j };
                    z.indexes.push(LclusterIndex::NonHead {
                        delta0,
                        delta1: total - j,
                    });
                }
                return;
            }
        }
        for (i, chunk) in input.chunks(BLOCK_BYTES).enumerate() {
            let blkaddr = first.saturating_add(u32::try_from(i).expect("small"));
            z.indexes.push(LclusterIndex::Plain { blkaddr });
            z.blocks.extend_from_slice(chunk);
            z.blocks
                .resize(z.blocks.len().next_multiple_of(BLOCK_BYTES), 0);
        }
    }
}

/// Whether a compressed file of `size` bytes taking `blocks` data blocks
/// is worth it: it must save a block against any flat layout (whose last
/// partial block may go inline, taking no data block).
pub fn saves_a_block(size: u64, blocks: u64) -> bool {
    blocks < size / BLOCK_BYTES as u64
}

/// Where a compressed inode's data area waits between planning and
/// writing: its blocks in the spool, and its index.
#[derive(Debug)]
pub struct ZipInfo {
    /// One per lcluster; block addresses relative to the inode's first
    /// data block.
    pub indexes: Vec<LclusterIndex>,
    pub blocks: u64,
    /// Byte offset of its blocks in [`Spool`].
    pub spool_at: u64,
}

/// Compressed data areas, each file's blocks in one piece; the writer
/// copies each back by offset, so the image does not depend on which file
/// finished first.
#[derive(Debug)]
pub struct Spool {
    file: File,
    len: u64,
}

impl Spool {
    /// Copies `len` bytes at `at` into `out`.
    pub fn read_into(&self, at: u64, out: &mut [u8]) -> Result<(), RootfsError> {
        self.file.read_exact_at(out, at).map_err(spool_error)
    }

    fn append(&mut self, bytes: &[u8]) -> Result<(), RootfsError> {
        self.file
            .write_all_at(bytes, self.len)
            .map_err(spool_error)?;
        self.len += bytes.len() as u64;
        Ok(())
    }

    /// Drops everything from `len` on (a file that turned out not to save
    /// a block, written by the one holding the spool).
    fn truncate(&mut self, len: u64) -> Result<(), RootfsError> {
        self.file.set_len(len).map_err(spool_error)?;
        self.len = len;
        Ok(())
    }
}

fn spool_error(source: std::io::Error) -> RootfsError {
    RootfsError::Io {
        what: format!("{WHAT}: the compression spool (a temporary file)"),
        source,
    }
}

/// Files this small cannot save a block.
const MIN_ZIP_SIZE: u64 = 2 * BLOCK_BYTES as u64;
/// A worker keeps at most this much of a file's compressed blocks in
/// memory; a larger file holds the spool from its first flush to its end
/// (its blocks must stay in one piece), so memory stays bounded whatever
/// the file sizes. Smaller files take the spool only to append.
const FLUSH_BYTES: usize = 8 << 20;

type SpoolLock<'a> = std::sync::MutexGuard<'a, Spool>;

/// Compresses every regular file of two blocks or more on all cores,
/// reading each from the host once (its length checked). Files that
/// save a block get [`Inode::zip`] and the compressed layout; the others
/// stay as they are. `progress` hears the content bytes read so far.
/// Returns the spool, or `None` when no file was compressed.
pub fn compress_files(
    inodes: &mut [Inode<'_>],
    progress: &dyn Fn(u64),
) -> Result<Option<Spool>, RootfsError> {
    let work: Vec<(usize, &str, &FileData)> = inodes
        .iter()
        .enumerate()
        .filter_map(|(i, inode)| match inode.content {
            Content::File(data) if inode.size >= MIN_ZIP_SIZE => Some((i, inode.path, data)),
            _ => None,
        })
        .collect();
    if work.is_empty() {
        return Ok(None);
    }
    let workers = std::thread::available_parallelism()
        .map_or(1, std::num::NonZeroUsize::get)
        .min(work.len());
    let next = AtomicUsize::new(0);
    let stop = AtomicBool::new(false);
    type Done = Result<(usize, Option<ZipInfo>), RootfsError>;
    let (done, results) = mpsc::sync_channel::<Done>(workers);
    let spool = Mutex::new(Spool {
        file: tempfile::tempfile().map_err(spool_error)?,
        len: 0,
    });
    let mut zipped: Vec<Option<ZipInfo>> = (0..work.len()).map(|_| None).collect();
    let collected = std::thread::scope(|scope| {
        for _ in 0..workers {
            let done = done.clone();
            let (work, next, stop, spool) = (&work, &next, &stop, &spool);
            scope.spawn(move || {
                let mut zipper = Zipper::default();
                let mut extent = vec![0u8; EXTENT_BYTES];
                while !stop.load(Ordering::Relaxed) {
                    let k = next.fetch_add(1, Ordering::Relaxed);
                    let Some(&(_, path, data)) = work.get(k) else {
                        break;
                    };
                    let r = zip_file(data, path, spool, &mut zipper, &mut extent).map(|z| (k, z));
                    if done.send(r).is_err() {
                        break;
                    }
                }
            });
        }
        drop(done);
        let mut read = 0u64;
        for r in results {
            let (k, info) = match r {
                Ok(ki) => ki,
                Err(e) => {
                    stop.store(true, Ordering::Relaxed);
                    return Err(e);
                }
            };
            read += inodes[work[k].0].size;
            progress(read);
            zipped[k] = info;
        }
        Ok(())
    });
    collected?;
    let mut any = false;
    for (k, info) in zipped.into_iter().enumerate() {
        let inode = &mut inodes[work[k].0];
        inode.read_in_plan = true;
        if let Some(info) = info {
            inode.layout = DataLayout::CompressedFull;
            inode.zip = Some(info);
            any = true;
        }
    }
    let spool = spool.into_inner().map_err(|_| poisoned())?;
    Ok(any.then_some(spool))
}

fn poisoned() -> RootfsError {
    RootfsError::Invalid {
        what: WHAT.into(),
        fault: "a compression worker panicked".into(),
    }
}

/// One file's way into the spool: its blocks go in one piece, so once
/// they outgrow [`FLUSH_BYTES`] the spool is held to the file's end.
struct FileSpool<'a> {
    spool: &'a Mutex<Spool>,
    /// The spool and where this file's blocks start in it.
    held: Option<(SpoolLock<'a>, u64)>,
}

impl FileSpool<'_> {
    /// Moves `z`'s blocks into the spool.
    fn flush(&mut self, z: &mut Zipped) -> Result<(), RootfsError> {
        let (g, _) = match &mut self.held {
            Some(h) => h,
            None => {
                let g = self.spool.lock().map_err(|_| poisoned())?;
                let start = g.len;
                self.held.insert((g, start))
            }
        };
        g.append(&z.blocks)?;
        z.flushed = z.block_count();
        z.blocks.clear();
        Ok(())
    }

    fn add(
        &mut self,
        zipper: &mut Zipper,
        chunk: &[u8],
        z: &mut Zipped,
    ) -> Result<(), RootfsError> {
        zipper.extent(chunk, z);
        if z.blocks.len() >= FLUSH_BYTES {
            self.flush(z)?;
        }
        Ok(())
    }
}

/// Reads a whole file extent by extent and compresses it into the spool.
/// `None` when it saves no block (nothing of it stays in the spool).
fn zip_file(
    data: &FileData,
    entry: &str,
    spool: &Mutex<Spool>,
    zipper: &mut Zipper,
    extent: &mut [u8],
) -> Result<Option<ZipInfo>, RootfsError> {
    let mut z = Zipped::default();
    let mut out = FileSpool { spool, held: None };
    match data {
        FileData::Inline(bytes) => {
            for chunk in bytes.chunks(EXTENT_BYTES) {
                out.add(zipper, chunk, &mut z)?;
            }
        }
        FileData::Host { path, len } => {
            let mut f = HostFile::open(path, entry, *len)?;
            let mut left = *len;
            while left > 0 {
                let n = usize::try_from(left).map_or(EXTENT_BYTES, |n| n.min(EXTENT_BYTES));
                f.read_exact(&mut extent[..n])?;
                out.add(zipper, &extent[..n], &mut z)?;
                left -= n as u64;
            }
            f.expect_end()?;
        }
    }
    if !saves_a_block(data.len(), z.block_count()) {
        if let Some((mut g, start)) = out.held {
            g.truncate(start)?;
        }
        return Ok(None);
    }
    out.flush(&mut z)?;
    let (lock, spool_at) = out.held.expect("flushed above");
    drop(lock); // the file's blocks are all in
    Ok(Some(ZipInfo {
        blocks: z.block_count(),
        indexes: z.indexes,
        spool_at,
    }))
}

#[cfg(test)]
#[allow(clippy::cast_possible_truncation)] // small test data
mod tests {
    use super::*;

    fn zip_all(data: &[u8]) -> Zipped {
        let mut z = Zipped::default();
        let mut zipper = Zipper::default();
        for extent in data.chunks(EXTENT_BYTES) {
            zipper.extent(extent, &mut z);
        }
        z
    }

    /// Reads a file back from the zipped form as the kernel does: walk
    /// the indexes, decompress each pcluster after its zero padding.
    fn unzip(z: &Zipped, size: usize) -> Vec<u8> {
        let mut out = Vec::with_capacity(size);
        let mut lcn = 0;
        while lcn < z.indexes.len() {
            match z.indexes[lcn] {
                LclusterIndex::Plain { blkaddr } => {
                    let at = blkaddr as usize * BLOCK_BYTES;
                    let n = BLOCK_BYTES.min(size - out.len());
                    out.extend_from_slice(&z.blocks[at..at + n]);
                    lcn += 1;
                }
                LclusterIndex::Head { blkaddr } => {
                    let LclusterIndex::NonHead { delta0, delta1 } = z.indexes[lcn + 1] else {
                        panic!("a head of a big pcluster is followed by its block count");
                    };
                    assert_ne!(delta0 & Z_LI_D0_CBLKCNT, 0);
                    let blocks = usize::from(delta0 & !Z_LI_D0_CBLKCNT);
                    let extent = (usize::from(delta1) + 1) * BLOCK_BYTES;
                    let at = blkaddr as usize * BLOCK_BYTES;
                    let stored = &z.blocks[at..at + blocks * BLOCK_BYTES];
                    let start = stored.iter().position(|&b| b != 0).unwrap();
                    let want = extent.min(size - out.len());
                    let plain = lz4_flex::block::decompress(&stored[start..], want).unwrap();
                    assert_eq!(
                        plain.len(),
                        want,
                        "a pcluster decodes to its extent exactly"
                    );
                    out.extend_from_slice(&plain);
                    lcn += usize::from(delta1) + 1;
                }
                LclusterIndex::NonHead { .. } => panic!("NONHEAD without a head at {lcn}"),
            }
        }
        out
    }

    fn pattern(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i / 7 % 13) as u8 + b'a').collect()
    }

    fn noise(len: usize) -> Vec<u8> {
        let mut x = 0x9E37_79B9_7F4A_7C15u64;
        (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect()
    }

    #[test]
    fn compressible_files_become_big_pclusters_that_read_back() {
        for len in [
            8192,
            8193,
            EXTENT_BYTES,
            EXTENT_BYTES + 1,
            3 * EXTENT_BYTES + 4095,
        ] {
            let data = pattern(len);
            let z = zip_all(&data);
            assert_eq!(z.indexes.len(), len.div_ceil(BLOCK_BYTES), "{len}");
            assert!(saves_a_block(len as u64, z.block_count()), "{len}");
            assert!(matches!(z.indexes[0], LclusterIndex::Head { blkaddr: 0 }));
            assert_eq!(unzip(&z, len), data, "{len}");
        }
    }

    #[test]
    fn incompressible_extents_stay_plain_block_by_block() {
        let data = noise(2 * EXTENT_BYTES + 100);
        let z = zip_all(&data);
        assert!(z
            .indexes
            .iter()
            .enumerate()
            .all(|(i, x)| *x == LclusterIndex::Plain { blkaddr: i as u32 }));
        assert!(!saves_a_block(data.len() as u64, z.block_count()));
        assert_eq!(unzip(&z, data.len()), data);
    }

    #[test]
    fn mixed_extents_address_their_blocks_in_order() {
        let mut data = pattern(EXTENT_BYTES);
        data.extend(noise(EXTENT_BYTES));
        data.extend(pattern(EXTENT_BYTES / 2 + 10));
        let z = zip_all(&data);
        let heads: Vec<u32> = z
            .indexes
            .iter()
            .filter_map(|x| match x {
                LclusterIndex::Head { blkaddr } => Some(*blkaddr),
                _ => None,
            })
            .collect();
        assert_eq!(heads.len(), 2);
        assert_eq!(heads[0], 0);
        // The plain blocks of the noise extent sit between the two heads.
        assert_eq!(
            z.indexes[EXTENT_LCLUSTERS],
            LclusterIndex::Plain {
                blkaddr: heads[1] - EXTENT_LCLUSTERS as u32
            }
        );
        assert_eq!(unzip(&z, data.len()), data);
    }

    #[test]
    fn a_single_lcluster_extent_is_never_compressed() {
        let mut data = pattern(EXTENT_BYTES);
        data.extend(pattern(100));
        let z = zip_all(&data);
        assert!(matches!(
            z.indexes.last(),
            Some(LclusterIndex::Plain { .. })
        ));
        assert_eq!(unzip(&z, data.len()), data);
    }
}

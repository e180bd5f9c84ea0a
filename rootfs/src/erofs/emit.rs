//! Writes a reserved [`Layout`] front to back: superblock, the metadata
//! area in nid order (inodes, xattrs, inline tails), the shared xattrs,
//! then the data blocks.
//! File contents are read from the host at this point, in chunks; the
//! tail of a file that also has full blocks is read in the metadata pass
//! and its blocks in the data pass, and both reads check the length.

use std::fs::File;
use std::io::{BufWriter, Read, Seek, SeekFrom, Write};
use std::path::Path;

use super::layout::{Content, DirEntry, Inode, Layout};
use super::ondisk::{
    xattr_icount, z_map_header, DataLayout, Dirent, InodeExtended, LclusterIndex, Lz4Config,
    SuperBlock, BLOCK_BYTES, BLOCK_SIZE, BLOCK_SIZE_BITS, CHUNK_NULL_ADDR, NID_SLOT,
    SUPERBLOCK_OFFSET,
};
use super::zip::{LZ4_MAX_DISTANCE, MAX_PCLUSTER_BLOCKS};
use super::WHAT;
use crate::tree::{display_name, quoted_name, FileData};
use crate::RootfsError;

/// Read and write granularity for file contents.
const CHUNK: usize = 1 << 20;

pub fn emit<W: Write>(
    layout: &Layout<'_>,
    out: W,
    progress: &dyn Fn(u64),
) -> Result<u64, RootfsError> {
    let mut e = Emitter {
        out: BufWriter::with_capacity(CHUNK, out),
        written: 0,
        content_done: 0,
        progress,
        counting: true,
        buf: Vec::new(),
    };
    e.zeros_to(SUPERBLOCK_OFFSET)?;
    let root_nid = u16::try_from(layout.inodes[0].nid).expect("the root is placed first");
    e.put(
        &SuperBlock {
            root_nid,
            inos: layout.inodes.len() as u64,
            build_time: layout.build_time,
            blocks: layout.total_blocks,
            meta_blkaddr: 0,
            xattr_blkaddr: if layout.shared_xattrs.is_empty() {
                0
            } else {
                layout.meta_blocks
            },
            lz4: layout.spool.is_some(),
            chunked: layout.inodes.iter().any(|i| i.chunks.is_some()),
        }
        .encode(),
    )?;
    if layout.spool.is_some() {
        e.put(
            &Lz4Config {
                max_distance: LZ4_MAX_DISTANCE,
                max_pclusterblks: MAX_PCLUSTER_BLOCKS,
            }
            .encode(),
        )?;
    }

    for &index in &layout.by_nid {
        let inode = &layout.inodes[index];
        e.zeros_to(inode.nid * NID_SLOT)?;
        e.metadata(layout, index, inode)?;
    }
    e.zeros_to(u64::from(layout.meta_blocks) * BLOCK_SIZE)?;
    e.put(&layout.shared_xattrs)?;
    e.zeros_to_block()?;

    for inode in layout.inodes.iter().filter(|i| i.data_blocks() > 0) {
        e.expect_at(u64::from(inode.blkaddr) * BLOCK_SIZE)?;
        e.data_blocks(layout, inode)?;
    }
    e.out.flush().map_err(write_error)?;
    e.expect_at(u64::from(layout.total_blocks) * BLOCK_SIZE)?;
    Ok(e.written)
}

/// An index with its block address made absolute (the zipper counts
/// from the inode's first data block).
fn absolute(index: &LclusterIndex, first: u32) -> LclusterIndex {
    match *index {
        LclusterIndex::Plain { blkaddr } => LclusterIndex::Plain {
            blkaddr: first + blkaddr,
        },
        LclusterIndex::Head { blkaddr } => LclusterIndex::Head {
            blkaddr: first + blkaddr,
        },
        nonhead @ LclusterIndex::NonHead { .. } => nonhead,
    }
}

fn write_error(source: std::io::Error) -> RootfsError {
    RootfsError::Io {
        what: format!("{WHAT}: writing the image"),
        source,
    }
}

struct Emitter<'p, W: Write> {
    out: BufWriter<W>,
    written: u64,
    content_done: u64,
    progress: &'p dyn Fn(u64),
    /// Whether the current inode's content counts as progress (not when
    /// it was read and counted while planning).
    counting: bool,
    /// Scratch for directory blocks and file chunks.
    buf: Vec<u8>,
}

impl<W: Write> Emitter<'_, W> {
    fn put(&mut self, bytes: &[u8]) -> Result<(), RootfsError> {
        self.out.write_all(bytes).map_err(write_error)?;
        self.written += bytes.len() as u64;
        Ok(())
    }

    /// The emitted bytes must land where the layout reserved them; a
    /// mismatch is a bug here, and must not yield a plausible image.
    fn expect_at(&self, offset: u64) -> Result<(), RootfsError> {
        if self.written == offset {
            return Ok(());
        }
        Err(RootfsError::Invalid {
            what: WHAT.into(),
            fault: format!(
                "writer bug: at byte {} where the layout reserved byte {offset}",
                self.written
            ),
        })
    }

    fn zeros_to(&mut self, offset: u64) -> Result<(), RootfsError> {
        if offset < self.written {
            return self.expect_at(offset);
        }
        const ZEROS: [u8; BLOCK_BYTES] = [0; BLOCK_BYTES];
        while self.written < offset {
            let n =
                usize::try_from(offset - self.written).map_or(BLOCK_BYTES, |n| n.min(BLOCK_BYTES));
            self.put(&ZEROS[..n])?;
        }
        Ok(())
    }

    fn zeros_to_block(&mut self) -> Result<(), RootfsError> {
        self.zeros_to(self.written.next_multiple_of(BLOCK_SIZE))
    }

    fn content_written(&mut self, n: u64) {
        if self.counting {
            self.content_done += n;
            (self.progress)(self.content_done);
        }
    }

    /// The inode, its xattrs and its inline tail.
    fn metadata(
        &mut self,
        layout: &Layout<'_>,
        index: usize,
        inode: &Inode<'_>,
    ) -> Result<(), RootfsError> {
        self.counting = !inode.read_in_plan;
        let u = match (&inode.content, &inode.zip) {
            (Content::Device(dev), _) => *dev,
            // i_u of a chunk-based inode is its chunk format.
            _ if inode.chunks.is_some() => {
                let bits = inode.chunks.as_ref().map_or(0, |c| c.bits);
                u32::from(bits - BLOCK_SIZE_BITS)
            }
            // i_u of a compressed inode counts its data blocks.
            (_, Some(z)) => u32::try_from(z.blocks).expect("within the image's u32 blocks"),
            _ => inode.blkaddr,
        };
        let xattr_icount = xattr_icount(inode.xattrs.len()).expect("layout caps the xattr body");
        self.put(
            &InodeExtended {
                layout: inode.layout,
                xattr_icount,
                mode: inode.mode,
                size: inode.size,
                u,
                ino: u32::try_from(index + 1).unwrap_or(u32::MAX),
                uid: inode.uid,
                gid: inode.gid,
                mtime: inode.mtime.cast_unsigned(),
                mtime_nsec: inode.mtime_nsec,
                nlink: inode.nlink,
            }
            .encode(),
        )?;
        self.put(&inode.xattrs)?;
        if let Some(c) = &inode.chunks {
            let record = inode.nid * NID_SLOT;
            self.zeros_to(record + inode.chunk_map_at())?;
            let mut next = inode.blkaddr;
            for i in 0..c.present.len() {
                let addr = if c.present[i] {
                    let at = next;
                    next += u32::try_from(c.chunk_blocks(i, inode.size))
                        .expect("within the image's u32 blocks");
                    at
                } else {
                    CHUNK_NULL_ADDR
                };
                self.put(&addr.to_le_bytes())?;
            }
            return self.expect_at(record + inode.record_len());
        }
        if let Some(z) = &inode.zip {
            let record = inode.nid * NID_SLOT;
            self.zeros_to(record + inode.z_map_header_at())?;
            self.put(&z_map_header())?;
            self.zeros_to(self.written + 8)?; // reserved before full indexes
            for index in &z.indexes {
                self.put(&absolute(index, inode.blkaddr).encode())?;
            }
            return self.expect_at(record + inode.record_len());
        }
        if let Content::File(FileData::Host { path, len: 0 }) = &inode.content {
            // Nothing to copy, but it must still be empty.
            HostFile::open(path, inode.path, 0)?.expect_end()?;
        }
        let tail = inode.tail_len();
        if tail == 0 {
            return Ok(());
        }
        let full = inode.size - tail; // bytes in data blocks
        match &inode.content {
            Content::Dir(dir) => {
                let last = dir.block_starts.len() - 1;
                self.dir_block(layout, dir.block(last))?;
            }
            Content::File(FileData::Inline(bytes)) => {
                self.put(&bytes[usize::try_from(full).expect("in memory")..])?;
                self.content_written(tail);
            }
            Content::File(FileData::Host { path, len }) => {
                let mut f = HostFile::open(path, inode.path, *len)?;
                f.seek(full)?;
                self.copy(&mut f, tail)?;
                f.expect_end()?;
            }
            Content::Symlink(target) => self.put(target)?,
            Content::Device(_) | Content::Special => unreachable!("no data"),
        }
        self.expect_at(inode.nid * NID_SLOT + inode.record_len())
    }

    /// The inode's blocks in the data area, the last one zero-padded.
    fn data_blocks(&mut self, layout: &Layout<'_>, inode: &Inode<'_>) -> Result<(), RootfsError> {
        self.counting = !inode.read_in_plan;
        if let (Some(z), Some(spool)) = (&inode.zip, &layout.spool) {
            debug_assert_eq!(inode.layout, DataLayout::CompressedFull);
            let mut chunk = std::mem::take(&mut self.buf);
            let mut at = 0;
            let len = z.blocks * BLOCK_SIZE;
            let mut result = Ok(());
            while at < len && result.is_ok() {
                let n = usize::try_from(len - at).map_or(CHUNK, |n| n.min(CHUNK));
                chunk.resize(n, 0);
                result = spool
                    .read_into(z.spool_at + at, &mut chunk)
                    .and_then(|()| self.put(&chunk));
                at += n as u64;
            }
            self.buf = chunk;
            return result;
        }
        if let (Some(c), Content::File(FileData::Host { path, len })) =
            (&inode.chunks, &inode.content)
        {
            let mut f = HostFile::open(path, inode.path, *len)?;
            f.expect_len()?;
            for i in 0..c.present.len() {
                let n = c.chunk_len(i, inode.size);
                if c.present[i] {
                    f.seek((i as u64) << c.bits)?;
                    self.copy(&mut f, n)?;
                    self.zeros_to_block()?;
                } else {
                    self.content_written(n); // a hole: nothing to store
                }
            }
            return f.expect_len();
        }
        let bytes = inode.size - inode.tail_len();
        match &inode.content {
            Content::Dir(dir) => {
                let blocks = usize::try_from(inode.data_blocks()).expect("dir blocks");
                for b in 0..blocks {
                    self.dir_block(layout, dir.block(b))?;
                    self.zeros_to_block()?;
                }
            }
            Content::File(FileData::Inline(data)) => {
                self.put(&data[..usize::try_from(bytes).expect("in memory")])?;
                self.content_written(bytes);
            }
            Content::File(FileData::Host { path, len }) => {
                let mut f = HostFile::open(path, inode.path, *len)?;
                self.copy(&mut f, bytes)?;
                // The tail went inline; read past it so a file that
                // shrank since the metadata pass is caught too.
                f.skip(*len - bytes)?;
                f.expect_end()?;
            }
            Content::Symlink(target) => self.put(target)?,
            Content::Device(_) | Content::Special => unreachable!("no data"),
        }
        self.zeros_to_block()
    }

    /// One directory block: the dirents, then the names back to back.
    fn dir_block(
        &mut self,
        layout: &Layout<'_>,
        entries: &[DirEntry<'_>],
    ) -> Result<(), RootfsError> {
        let mut block = std::mem::take(&mut self.buf);
        block.clear();
        let mut nameoff = entries.len() * Dirent::SIZE;
        for e in entries {
            let dirent = Dirent {
                nid: layout.inodes[e.inode].nid,
                nameoff: u16::try_from(nameoff).expect("a block is 4 KiB"),
                file_type: e.file_type,
            };
            block.extend_from_slice(&dirent.encode());
            nameoff += e.name.len();
        }
        for e in entries {
            block.extend_from_slice(&e.name);
        }
        debug_assert!(block.len() as u64 <= BLOCK_SIZE);
        let r = self.put(&block);
        self.buf = block;
        r
    }

    /// Copies exactly `n` bytes of a host file.
    fn copy(&mut self, f: &mut HostFile<'_>, n: u64) -> Result<(), RootfsError> {
        let mut chunk = std::mem::take(&mut self.buf);
        chunk.resize(CHUNK, 0);
        let result = self.copy_through(f, n, &mut chunk);
        self.buf = chunk;
        result
    }

    fn copy_through(
        &mut self,
        f: &mut HostFile<'_>,
        mut n: u64,
        chunk: &mut [u8],
    ) -> Result<(), RootfsError> {
        while n > 0 {
            let want = usize::try_from(n).map_or(chunk.len(), |n| n.min(chunk.len()));
            f.read_exact(&mut chunk[..want])?;
            self.put(&chunk[..want])?;
            n -= want as u64;
            self.content_written(want as u64);
        }
        Ok(())
    }
}

/// A host file being copied, which must still have the length the tree
/// recorded: a file that changed while packing must fail the build, not
/// yield an image whose sizes and block maps disagree.
pub(super) struct HostFile<'a> {
    file: File,
    host: &'a Path,
    entry: &'a str,
    len: u64,
}

impl<'a> HostFile<'a> {
    pub(super) fn open(host: &'a Path, entry: &'a str, len: u64) -> Result<Self, RootfsError> {
        let file = crate::tree::open_host(host).map_err(|source| RootfsError::Io {
            what: format!(
                "{WHAT}: opening {} for {}",
                host.display(),
                quoted_name(entry)
            ),
            source,
        })?;
        Ok(HostFile {
            file,
            host,
            entry,
            len,
        })
    }

    fn io(&self, source: std::io::Error) -> RootfsError {
        RootfsError::Io {
            what: format!(
                "{WHAT}: reading {} for {}",
                self.host.display(),
                quoted_name(self.entry)
            ),
            source,
        }
    }

    fn changed(&self, how: &str) -> RootfsError {
        RootfsError::Entry {
            what: WHAT.into(),
            entry: display_name(self.entry),
            fault: format!(
                "{} is {how} than the {} bytes recorded in the tree (it changed while packing)",
                self.host.display(),
                self.len
            ),
        }
    }

    fn seek(&mut self, to: u64) -> Result<(), RootfsError> {
        self.file
            .seek(SeekFrom::Start(to))
            .map_err(|e| self.io(e))?;
        Ok(())
    }

    pub(super) fn read_exact(&mut self, buf: &mut [u8]) -> Result<(), RootfsError> {
        let mut filled = 0;
        while filled < buf.len() {
            match self.file.read(&mut buf[filled..]) {
                Ok(0) => return Err(self.changed("shorter")),
                Ok(n) => filled += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(self.io(e)),
            }
        }
        Ok(())
    }

    /// Reads and drops `n` (< one block) bytes.
    fn skip(&mut self, n: u64) -> Result<(), RootfsError> {
        let mut scratch = [0u8; BLOCK_BYTES];
        let n = usize::try_from(n).expect("less than a block");
        self.read_exact(&mut scratch[..n])
    }

    /// The file's length is still the recorded one (for a file read in
    /// pieces, holes skipped, where reading on to the end would not do).
    fn expect_len(&mut self) -> Result<(), RootfsError> {
        let now = self.file.metadata().map_err(|e| self.io(e))?.len();
        match now.cmp(&self.len) {
            std::cmp::Ordering::Equal => Ok(()),
            std::cmp::Ordering::Less => Err(self.changed("shorter")),
            std::cmp::Ordering::Greater => Err(self.changed("longer")),
        }
    }

    pub(super) fn expect_end(&mut self) -> Result<(), RootfsError> {
        let mut probe = [0u8; 1];
        loop {
            match self.file.read(&mut probe) {
                Ok(0) => return Ok(()),
                Ok(_) => return Err(self.changed("longer")),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(self.io(e)),
            }
        }
    }
}

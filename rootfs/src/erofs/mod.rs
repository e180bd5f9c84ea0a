//! Writes a [`Tree`] as an uncompressed EROFS image that the guest kernel
//! mounts read-only from a virtio-blk disk.
//!
//! The format is the kernel's (`Documentation/filesystems/erofs.rst`,
//! `fs/erofs/erofs_fs.h`); this writer uses its plain subset: 4 KiB blocks,
//! 64-byte extended inodes, inline and shared xattrs (no name filter, no
//! long prefixes), no superblock checksum; LZ4 only when asked, and
//! chunk-based files only for holes.
//!
//! ```text
//! byte 0    1024          1152                 meta_blocks * 4096                     total_blocks * 4096
//! | zero   | superblock  | metadata area       | shared xattrs    | data area          |
//! |        | (128 bytes) | inode records,      | (whole blocks,   | whole blocks of    |
//! |        |             | 32-byte aligned,    |  none if nothing | files and dirs, in |
//! |        |             | in nid order        |  is shared)      | tree order         |
//!
//! inode record (never crosses a block boundary):
//! | extended inode (64) | xattr ibody: header (12), shared ids, entries | inline tail |
//!
//! directory block (also the inline tail of a directory):
//! | dirent 0 | dirent 1 | ... | name 0 | name 1 | ... | zero padding |
//!   12 bytes each: nid (u64), nameoff (u16), file_type (u8), reserved
//! ```
//!
//! - nid = byte offset / 32 (meta_blkaddr is 0). Records go best-fit into
//!   partly filled metadata blocks. The root is placed first, at byte 1152
//!   (nid 36), or at block 1 (nid 128) when its inline directory does not
//!   fit beside the superblock: either fits the superblock's 16 bits.
//! - A file's, directory's or symlink's data is FLAT_PLAIN (all in data
//!   blocks) or FLAT_INLINE (full blocks in the data area, the last partial
//!   block inline after the inode). Inline is used whenever the tail fits
//!   beside the inode and its xattrs in one block, so small files and
//!   directories take no data block of their own.
//! - Directory entries, "." and ".." included, are sorted by name bytes
//!   and never split across blocks; the directory's size ends exactly at
//!   its last name.
//! - A host file of 1 MiB or more with holes (SEEK_DATA/SEEK_HOLE: a
//!   sparse file, or a tar entry whose zero runs the spool left as holes)
//!   is CHUNK_BASED when the image is not compressed: its size cut into
//!   chunks of 4 KiB or more (at most 65,536 chunks), one 4-byte block
//!   address per chunk after the inode and its xattrs, `EROFS_NULL_ADDR`
//!   for a chunk that is all hole, which takes no block and reads as zeros.
//!   (fsck.erofs 1.5 checks such images but its `--extract` drops holes.)
//! - An xattr (name and value) that several inodes have is stored once in
//!   the shared area, and so is a value too large to sit inline beside
//!   its inode (see `xattr.rs`); the superblock's `xattr_blkaddr` is the
//!   area's first block.
//! - All names of a hard-link group are one inode; i_nlink counts them.
//!   A directory's i_nlink is 2 plus its subdirectories.
//!
//! The whole layout is reserved first ([`ImagePlan::new`]), so the image
//! length is known before any byte is written; then
//! [`ImagePlan::write_to`] emits it front to back, streaming file contents
//! from the host. Same tree and options, same bytes: no timestamps but the
//! tree's, no uuid.

mod emit;
mod layout;
mod ondisk;
pub mod read;
mod xattr;
mod zip;

use std::io::Write;

use crate::tree::Tree;
use crate::RootfsError;

pub use layout::SYMLINK_TARGET_MAX;
pub use ondisk::{BLOCK_SIZE, NAME_LEN_MAX};
pub use xattr::XATTR_IBODY_MAX;

/// Leads every error message of this module.
const WHAT: &str = "erofs image";

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ErofsOptions {
    /// Caps every mtime, and is the superblock's build time
    /// (SOURCE_DATE_EPOCH). `None` keeps the tree's mtimes and a build
    /// time of 0.
    pub clamp_mtime: Option<u64>,
    /// How regular files' data is stored.
    pub compression: Compression,
}

/// How regular files' data is stored in the image.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Compression {
    /// As is: the image is as large as the tree, and nothing is
    /// decompressed on read.
    #[default]
    None,
    /// LZ4 in fixed 128 KiB extents (see the module docs): files of two
    /// blocks or more that save a block. Fewer bytes to store and to
    /// read from disk; the guest decompresses on read.
    Lz4,
}

/// A tree with its image layout reserved: every inode's place and every
/// data block are fixed, the tree is validated, nothing is written yet.
#[derive(Debug)]
pub struct ImagePlan<'t> {
    layout: layout::Layout<'t>,
}

impl<'t> ImagePlan<'t> {
    /// Validates the tree and reserves the layout. Errors name the entry
    /// and the fault: a name over 255 bytes, an xattr namespace EROFS
    /// cannot store, a hard link that does not end at a regular file, an
    /// id, mode or device number out of range, a missing parent.
    pub fn new(tree: &'t Tree, opts: &ErofsOptions) -> Result<Self, RootfsError> {
        Self::with_progress(tree, opts, &|_| {})
    }

    /// [`new`](Self::new), telling `progress` the content bytes read and
    /// compressed so far: with compression, planning reads every file
    /// that may be compressed (and [`write_to`](Self::write_to) then
    /// reports only the others).
    pub fn with_progress(
        tree: &'t Tree,
        opts: &ErofsOptions,
        progress: &dyn Fn(u64),
    ) -> Result<Self, RootfsError> {
        Ok(ImagePlan {
            layout: layout::plan(tree, opts, progress)?,
        })
    }

    /// Length of the image [`write_to`](Self::write_to) will write.
    pub fn image_len(&self) -> u64 {
        u64::from(self.layout.total_blocks) * BLOCK_SIZE
    }

    /// Number of inodes (hard-link groups count once, the root counts).
    pub fn inode_count(&self) -> u64 {
        self.layout.inodes.len() as u64
    }

    /// Writes the image. `progress` is told the bytes of file content
    /// written so far (of files not already read while planning: see
    /// [`with_progress`](Self::with_progress)). Host files are read now and must still have the
    /// length recorded in the tree; one that does not fails the write.
    /// Returns the bytes written, always [`image_len`](Self::image_len).
    pub fn write_to<W: Write>(&self, out: W, progress: &dyn Fn(u64)) -> Result<u64, RootfsError> {
        emit::emit(&self.layout, out, progress)
    }
}

/// Plans and writes `tree` as an EROFS image in one go; returns the bytes
/// written. See [`ImagePlan`] to learn the length before writing.
pub fn write_image<W: Write>(
    tree: &Tree,
    out: W,
    opts: &ErofsOptions,
    progress: &dyn Fn(u64),
) -> Result<u64, RootfsError> {
    let plan = ImagePlan::with_progress(tree, opts, progress)?;
    // Files read while planning were counted then; writing goes on from
    // there.
    let base = plan.layout.read_in_plan();
    plan.write_to(out, &|n| progress(base + n))
}

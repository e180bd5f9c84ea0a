//! Reserves the whole image before a byte is written: one inode per file
//! system object (hard-link groups share one), directory entries, where
//! each inode sits in the metadata area (its nid) and which data blocks it
//! owns. Everything here is computed from the tree alone, so the same tree
//! always gets the same layout.

use std::borrow::Cow;
use std::collections::HashMap;

use super::ondisk::{
    encode_dev, file_type, mode, DataLayout, Dirent, InodeExtended, LclusterIndex, Lz4Config,
    SuperBlock, BLOCK_BYTES, BLOCK_SIZE, BLOCK_SIZE_BITS, CHUNK_BLKBITS_MAX, CHUNK_ENTRY_SIZE,
    NAME_LEN_MAX, NID_SLOT, NID_SLOT_BYTES, SUPERBLOCK_OFFSET, Z_MAP_HEADER_SIZE,
};
use super::zip::{self, Spool, ZipInfo};
use super::{xattr, Compression, ErofsOptions, WHAT};
use crate::tree::{display_name, name_bytes, quoted_name, FileData, Node, NodeKind, Tree};
use crate::RootfsError;

/// Longest symlink target: `readlink` hands back at most PATH_MAX (4096)
/// bytes including the terminating NUL.
pub const SYMLINK_TARGET_MAX: usize = 4095;

/// The reserved image: inodes in creation order (root first, then the
/// tree's path order), each with its nid and data blocks fixed.
#[derive(Debug)]
pub struct Layout<'t> {
    pub inodes: Vec<Inode<'t>>,
    /// Indices into `inodes`, ordered by position in the metadata area.
    pub by_nid: Vec<usize>,
    /// Blocks of the metadata area (block 0 holds the superblock); the
    /// shared xattr area and then file and directory data blocks follow
    /// it.
    pub meta_blocks: u32,
    /// The shared xattr area (see [`xattr`]), written from block
    /// `meta_blocks` on and padded to whole blocks; empty when nothing is
    /// shared.
    pub shared_xattrs: Vec<u8>,
    pub total_blocks: u32,
    pub build_time: u64,
    /// Compressed files' data areas; `None` when no file is compressed
    /// (the superblock then has no compression features at all).
    pub spool: Option<Spool>,
}

#[derive(Debug)]
pub struct Inode<'t> {
    /// The first path naming this inode ("" for the root), for errors.
    pub path: &'t str,
    pub content: Content<'t>,
    pub mode: u16,
    pub uid: u32,
    pub gid: u32,
    pub mtime: i64,
    pub mtime_nsec: u32,
    pub nlink: u32,
    /// Encoded inline xattr body (header, shared ids and entries), empty
    /// if none.
    pub xattrs: Vec<u8>,
    pub size: u64,
    pub layout: DataLayout,
    /// First data block; 0 when the inode owns none.
    pub blkaddr: u32,
    pub nid: u64,
    /// The compressed data area and index ([`DataLayout::CompressedFull`]).
    pub zip: Option<ZipInfo>,
    /// Its content was read (and reported) while planning.
    pub read_in_plan: bool,
    /// Which chunks hold data ([`DataLayout::ChunkBased`]).
    pub chunks: Option<ChunkMap>,
}

/// A chunk-based file's chunks: which hold data (the others are holes).
#[derive(Debug)]
pub struct ChunkMap {
    /// log2 of the chunk size, at least the block's.
    pub bits: u8,
    pub present: Vec<bool>,
}

impl ChunkMap {
    pub fn chunk_size(&self) -> u64 {
        1 << self.bits
    }

    /// Bytes of the file in chunk `i` (the last one may be short).
    pub fn chunk_len(&self, i: usize, size: u64) -> u64 {
        let start = (i as u64) << self.bits;
        self.chunk_size().min(size.saturating_sub(start))
    }

    /// Data blocks of chunk `i`, 0 for a hole.
    pub fn chunk_blocks(&self, i: usize, size: u64) -> u64 {
        if self.present[i] {
            self.chunk_len(i, size).div_ceil(BLOCK_SIZE)
        } else {
            0
        }
    }
}

#[derive(Debug)]
pub enum Content<'t> {
    Dir(DirBlocks<'t>),
    File(&'t FileData),
    /// The target's bytes (see [`crate::tree::name_bytes`]).
    Symlink(Cow<'t, [u8]>),
    /// Encoded device number.
    Device(u32),
    /// A fifo or socket: a mode and nothing more.
    Special,
}

/// A directory's entries, "." and ".." included, in name byte order (the
/// kernel binary-searches them), cut into blocks that no entry straddles.
#[derive(Debug, Default)]
pub struct DirBlocks<'t> {
    pub entries: Vec<DirEntry<'t>>,
    /// Index into `entries` of each block's first entry.
    pub block_starts: Vec<usize>,
}

#[derive(Debug, Clone)]
pub struct DirEntry<'t> {
    /// The name's bytes (see [`crate::tree::name_bytes`]).
    pub name: Cow<'t, [u8]>,
    /// Index of the target in [`Layout::inodes`].
    pub inode: usize,
    pub file_type: u8,
}

impl Layout<'_> {
    /// Content bytes read (for compression) while planning.
    pub fn read_in_plan(&self) -> u64 {
        self.inodes
            .iter()
            .filter(|i| i.read_in_plan)
            .map(|i| i.size)
            .sum()
    }
}

impl DirBlocks<'_> {
    /// The entries of block `i`.
    pub fn block(&self, i: usize) -> &[DirEntry<'_>] {
        let end = self
            .block_starts
            .get(i + 1)
            .copied()
            .unwrap_or(self.entries.len());
        &self.entries[self.block_starts[i]..end]
    }

    fn cut_into_blocks(&mut self) -> u64 {
        self.block_starts.clear();
        let mut used = BLOCK_SIZE; // forces a first block
        for (i, e) in self.entries.iter().enumerate() {
            let need = (Dirent::SIZE + e.name.len()) as u64;
            if used + need > BLOCK_SIZE {
                self.block_starts.push(i);
                used = 0;
            }
            used += need;
        }
        // i_size: full blocks, then exactly the bytes of the last one (the
        // kernel ends the last name there).
        (self.block_starts.len() as u64 - 1) * BLOCK_SIZE + used
    }
}

impl Inode<'_> {
    /// Bytes stored inline after the inode and its xattrs.
    pub fn tail_len(&self) -> u64 {
        match self.layout {
            DataLayout::FlatInline => self.size % BLOCK_SIZE,
            DataLayout::FlatPlain | DataLayout::CompressedFull | DataLayout::ChunkBased => 0,
        }
    }

    /// Data blocks owned outside the metadata area.
    pub fn data_blocks(&self) -> u64 {
        match self.layout {
            DataLayout::FlatInline => self.size / BLOCK_SIZE,
            DataLayout::FlatPlain => self.size.div_ceil(BLOCK_SIZE),
            DataLayout::CompressedFull => self.zip.as_ref().map_or(0, |z| z.blocks),
            DataLayout::ChunkBased => self.chunks.as_ref().map_or(0, |c| {
                (0..c.present.len())
                    .map(|i| c.chunk_blocks(i, self.size))
                    .sum()
            }),
        }
    }

    /// Where a chunk-based inode's block map starts, from the start of its
    /// record: the first 4-byte boundary after the inode and its xattrs.
    pub fn chunk_map_at(&self) -> u64 {
        (InodeExtended::SIZE as u64 + self.xattrs.len() as u64).next_multiple_of(CHUNK_ENTRY_SIZE)
    }

    /// Where a compressed inode's map header starts, from the start of its
    /// record: the first 8-byte boundary after the inode and its xattrs.
    pub fn z_map_header_at(&self) -> u64 {
        (InodeExtended::SIZE as u64 + self.xattrs.len() as u64).next_multiple_of(8)
    }

    /// Bytes this inode takes in the metadata area: for a compressed inode
    /// its map header, 8 reserved bytes and one index per lcluster follow
    /// the xattrs (the kernel's full-index layout).
    pub fn record_len(&self) -> u64 {
        if let Some(c) = &self.chunks {
            return self.chunk_map_at() + CHUNK_ENTRY_SIZE * c.present.len() as u64;
        }
        match &self.zip {
            Some(z) => {
                self.z_map_header_at()
                    + Z_MAP_HEADER_SIZE as u64
                    + 8
                    + LclusterIndex::SIZE as u64 * z.indexes.len() as u64
            }
            None => InodeExtended::SIZE as u64 + self.xattrs.len() as u64 + self.tail_len(),
        }
    }

    pub fn file_type(&self) -> u8 {
        match self.content {
            Content::Dir(_) => file_type::DIR,
            Content::File(_) => file_type::REG_FILE,
            Content::Symlink(_) => file_type::SYMLINK,
            Content::Device(_) if self.mode & 0o170000 == mode::S_IFCHR => file_type::CHRDEV,
            Content::Device(_) => file_type::BLKDEV,
            Content::Special if self.mode & 0o170000 == mode::S_IFSOCK => file_type::SOCK,
            Content::Special => file_type::FIFO,
        }
    }

    #[cfg(test)]
    pub fn dir(&self) -> Option<&DirBlocks<'_>> {
        match &self.content {
            Content::Dir(d) => Some(d),
            _ => None,
        }
    }
}

pub(super) fn entry_error(entry: &str, fault: impl Into<String>) -> RootfsError {
    RootfsError::Entry {
        what: WHAT.into(),
        entry: display_name(entry),
        fault: fault.into(),
    }
}

/// The root when the tree has no node for "" (it normally has none).
static IMPLICIT_ROOT: Node = Node::dir(0o755);

/// `progress` hears the file content bytes compressed so far (only when
/// `opts` asks for compression).
pub fn plan<'t>(
    tree: &'t Tree,
    opts: &ErofsOptions,
    progress: &dyn Fn(u64),
) -> Result<Layout<'t>, RootfsError> {
    // SOURCE_DATE_EPOCH caps mtimes: a later one becomes the epoch itself,
    // nanoseconds dropped.
    let clamp = |t: i64, nsec: u32| match opts
        .clamp_mtime
        .map(|c| i64::try_from(c).unwrap_or(i64::MAX))
    {
        Some(c) if (t, nsec) > (c, 0) => (c, 0),
        _ => (t, nsec),
    };
    let root_node = tree.nodes.get("").unwrap_or(&IMPLICIT_ROOT);
    if root_node.kind != NodeKind::Dir {
        return Err(entry_error("", "the root must be a directory"));
    }

    // Inodes: the root, then every node except hard links, in path order.
    let mut inodes = Vec::with_capacity(tree.nodes.len() + 1);
    let mut xattrs = Vec::with_capacity(tree.nodes.len() + 1);
    let mut by_path: HashMap<&str, usize> = HashMap::with_capacity(tree.nodes.len() + 1);
    inodes.push(new_inode("", root_node, &clamp)?);
    xattrs.push(("", &root_node.xattrs));
    by_path.insert("", 0);
    for (path, node) in &tree.nodes {
        if path.is_empty() {
            continue;
        }
        check_path(path)?;
        if !matches!(node.kind, NodeKind::HardLink(_)) {
            by_path.insert(path, inodes.len());
            inodes.push(new_inode(path, node, &clamp)?);
            xattrs.push((path.as_str(), &node.xattrs));
        }
    }
    let xattrs = xattr::plan(&xattrs)?;
    for (inode, body) in inodes.iter_mut().zip(xattrs.bodies) {
        inode.xattrs = body;
    }
    // Every name of a hard-link group is one more link to the file's inode.
    for (path, node) in &tree.nodes {
        if let NodeKind::HardLink(_) = node.kind {
            let target = resolve_hard_link(tree, path)?;
            let index = by_path[target];
            by_path.insert(path, index);
            inodes[index].nlink += 1;
        }
    }

    fill_directories(tree, &by_path, &mut inodes)?;

    for inode in &mut inodes {
        inode.layout = choose_layout(inode);
    }
    let spool = match opts.compression {
        Compression::None => {
            for inode in &mut inodes {
                if let Some(chunks) = holes_as_chunks(inode)? {
                    inode.layout = DataLayout::ChunkBased;
                    inode.chunks = Some(chunks);
                }
            }
            None
        }
        Compression::Lz4 => zip::compress_files(&mut inodes, progress)?,
    };
    let (by_nid, meta_blocks) = place_metadata(&mut inodes, metadata_start(spool.is_some()));
    let xattr_blocks = (xattrs.shared.len() as u64).div_ceil(BLOCK_SIZE);
    let data_start = u64::from(meta_blocks) + xattr_blocks;
    let total_blocks = place_data(
        &mut inodes,
        u32::try_from(data_start).map_err(|_| too_big(data_start))?,
    )?;
    Ok(Layout {
        inodes,
        by_nid,
        meta_blocks,
        shared_xattrs: xattrs.shared,
        total_blocks,
        build_time: opts.clamp_mtime.unwrap_or(0),
        spool,
    })
}
/// Directory entries, from each path's parent, then `.` and `..`; a
/// subdirectory's `..` is one more link to its parent, and a directory's
/// size is fixed once its entries are cut into blocks.
fn fill_directories<'t>(
    tree: &'t Tree,
    by_path: &HashMap<&'t str, usize>,
    inodes: &mut [Inode<'t>],
) -> Result<(), RootfsError> {
    let mut parent_of = vec![0usize; inodes.len()];
    for path in tree.nodes.keys().filter(|p| !p.is_empty()) {
        let (parent, name) = path.rsplit_once('/').unwrap_or(("", path));
        let &parent_index = by_path.get(parent).ok_or_else(|| {
            entry_error(
                path,
                format!("parent {} is not in the tree", quoted_name(parent)),
            )
        })?;
        let child = by_path[path.as_str()];
        let file_type = inodes[child].file_type();
        if file_type == file_type::DIR {
            parent_of[child] = parent_index;
            inodes[parent_index].nlink += 1;
        }
        let Content::Dir(dir) = &mut inodes[parent_index].content else {
            return Err(entry_error(
                path,
                format!("parent {} is not a directory", quoted_name(parent)),
            ));
        };
        dir.entries.push(DirEntry {
            name: name_bytes(name),
            inode: child,
            file_type,
        });
    }
    for (index, inode) in inodes.iter_mut().enumerate() {
        if let Content::Dir(dir) = &mut inode.content {
            dir.entries.push(DirEntry {
                name: Cow::Borrowed(b"."),
                inode: index,
                file_type: file_type::DIR,
            });
            dir.entries.push(DirEntry {
                name: Cow::Borrowed(b".."),
                inode: parent_of[index],
                file_type: file_type::DIR,
            });
            dir.entries.sort_unstable_by(|a, b| a.name.cmp(&b.name));
            inode.size = dir.cut_into_blocks();
        }
    }
    Ok(())
}

/// Every component of a path must be a name the kernel can look up.
fn check_path(path: &str) -> Result<(), RootfsError> {
    for name in path.split('/') {
        let fault = if name.is_empty() {
            "has an empty name component (not a normalised path)".to_string()
        } else if name == "." || name == ".." {
            format!("has a \"{name}\" component (not a normalised path)")
        } else if name.contains('\0') {
            "has a NUL byte in a name".to_string()
        } else if name_bytes(name).len() > NAME_LEN_MAX {
            format!(
                "name {}... is {} bytes; EROFS names are at most {NAME_LEN_MAX}",
                quoted_name(&name.chars().take(16).collect::<String>()),
                name_bytes(name).len()
            )
        } else {
            continue;
        };
        return Err(entry_error(path, fault));
    }
    Ok(())
}

/// Follows a chain of hard links to the inode (anything but a directory)
/// it ends at.
fn resolve_hard_link<'t>(tree: &'t Tree, path: &'t str) -> Result<&'t str, RootfsError> {
    let mut at = path;
    // A chain longer than the tree has nodes must loop.
    for _ in 0..=tree.nodes.len() {
        let Some(node) = tree.nodes.get(at) else {
            return Err(entry_error(
                path,
                format!("hard link target {} is not in the tree", quoted_name(at)),
            ));
        };
        match &node.kind {
            NodeKind::HardLink(next) => at = next,
            NodeKind::Dir => {
                return Err(entry_error(
                    path,
                    format!("hard link target {} is a directory", quoted_name(at)),
                ))
            }
            _ => return Ok(at),
        }
    }
    Err(entry_error(path, "hard links form a loop"))
}

fn new_inode<'t>(
    path: &'t str,
    node: &'t Node,
    clamp: &dyn Fn(i64, u32) -> (i64, u32),
) -> Result<Inode<'t>, RootfsError> {
    if node.mode & !0o7777 != 0 {
        return Err(entry_error(
            path,
            format!("mode {:#o} has bits outside 0o7777", node.mode),
        ));
    }
    let id = |v: u64, which: &str| {
        u32::try_from(v)
            .map_err(|_| entry_error(path, format!("{which} {v} does not fit EROFS's 32 bits")))
    };
    let (type_bits, content, size) = match &node.kind {
        NodeKind::Dir => (mode::S_IFDIR, Content::Dir(DirBlocks::default()), 0),
        NodeKind::File(data) => (mode::S_IFREG, Content::File(data), data.len()),
        NodeKind::Symlink(target) => {
            let t = name_bytes(target);
            check_symlink(path, &t)?;
            let len = t.len() as u64;
            (mode::S_IFLNK, Content::Symlink(t), len)
        }
        NodeKind::Char { major, minor } | NodeKind::Block { major, minor } => {
            let dev = encode_dev(*major, *minor).ok_or_else(|| {
                entry_error(
                    path,
                    format!(
                        "device {major}:{minor} does not fit Linux's encoding \
                         (major < 4096, minor < 1048576)"
                    ),
                )
            })?;
            let bits = if matches!(node.kind, NodeKind::Char { .. }) {
                mode::S_IFCHR
            } else {
                mode::S_IFBLK
            };
            (bits, Content::Device(dev), 0)
        }
        NodeKind::Fifo => (mode::S_IFIFO, Content::Special, 0),
        NodeKind::Socket => (mode::S_IFSOCK, Content::Special, 0),
        NodeKind::HardLink(_) => unreachable!("hard links share their target's inode"),
    };
    let permissions = u16::try_from(node.mode).expect("checked against 0o7777");
    if node.mtime_nsec >= 1_000_000_000 {
        return Err(entry_error(
            path,
            format!(
                "mtime nanoseconds {} are not below one second",
                node.mtime_nsec
            ),
        ));
    }
    let (mtime, mtime_nsec) = clamp(node.mtime, node.mtime_nsec);
    Ok(Inode {
        path,
        content,
        mode: type_bits | permissions,
        uid: id(node.uid, "uid")?,
        gid: id(node.gid, "gid")?,
        mtime,
        mtime_nsec,
        nlink: if type_bits == mode::S_IFDIR { 2 } else { 1 },
        xattrs: Vec::new(), // planned for all inodes at once
        size,
        layout: DataLayout::FlatPlain,
        blkaddr: 0,
        nid: 0,
        zip: None,
        read_in_plan: false,
        chunks: None,
    })
}

fn check_symlink(path: &str, target: &[u8]) -> Result<(), RootfsError> {
    let fault = if target.is_empty() {
        "symlink target is empty (Linux cannot create it)".to_string()
    } else if target.contains(&0) {
        "symlink target has a NUL byte".to_string()
    } else if target.len() > SYMLINK_TARGET_MAX {
        format!(
            "symlink target is {} bytes; readlink returns at most {SYMLINK_TARGET_MAX}",
            target.len()
        )
    } else {
        return Ok(());
    };
    Err(entry_error(path, fault))
}

/// Host files at least this long are looked at for holes.
const CHUNKED_FROM: u64 = 1 << 20;
/// Chunks per file at most: a 2 GiB file gets 32 KiB chunks, a 256 KiB
/// block map (4 bytes a chunk) in the metadata area.
const MAX_CHUNKS_BITS: u32 = 16;

/// The chunks of a host file that hold data, when some chunk is all hole
/// (the host's SEEK_DATA/SEEK_HOLE; a file system without them reports
/// none): such a file is stored chunk-based and its holes take no blocks.
/// `None` for anything else.
fn holes_as_chunks(inode: &Inode<'_>) -> Result<Option<ChunkMap>, RootfsError> {
    let Content::File(FileData::Host { path, len }) = &inode.content else {
        return Ok(None);
    };
    let len = *len;
    if len < CHUNKED_FROM {
        return Ok(None);
    }
    let io = |source| RootfsError::Io {
        what: format!("{WHAT}: looking for holes in {}", path.display()),
        source,
    };
    let file = crate::tree::open_host(path).map_err(io)?;
    let data = data_ranges(&file, len).map_err(io)?;
    // Chunk bits: at least the block's, and few enough chunks.
    let size_bits = u64::BITS - (len - 1).leading_zeros();
    let bits = size_bits
        .saturating_sub(MAX_CHUNKS_BITS)
        .max(u32::from(BLOCK_SIZE_BITS));
    let bits = u8::try_from(bits).expect("at most 64");
    if bits - BLOCK_SIZE_BITS > CHUNK_BLKBITS_MAX {
        return Ok(None);
    }
    let count = usize::try_from(len.div_ceil(1 << bits)).expect("at most 2^16");
    let mut present = vec![false; count];
    for (start, end) in data {
        let first = usize::try_from(start >> bits).expect("below count");
        let last = usize::try_from((end - 1) >> bits).expect("below count");
        present[first..=last.min(count - 1)].fill(true);
    }
    if present.iter().all(|p| *p) {
        return Ok(None);
    }
    Ok(Some(ChunkMap { bits, present }))
}

/// The byte ranges of `file` (`len` long) that hold data, by SEEK_DATA and
/// SEEK_HOLE: all of it where the file system does not tell.
fn data_ranges(file: &std::fs::File, len: u64) -> std::io::Result<Vec<(u64, u64)>> {
    use std::os::fd::AsRawFd;
    let seek = |offset: u64, whence: libc::c_int| -> std::io::Result<Option<u64>> {
        let offset = libc::off_t::try_from(offset)
            .map_err(|_| std::io::Error::from(std::io::ErrorKind::InvalidInput))?;
        // SAFETY: lseek on a descriptor `file` owns; it only moves the
        // file offset.
        let r = unsafe { libc::lseek(file.as_raw_fd(), offset, whence) };
        match u64::try_from(r) {
            Ok(at) => Ok(Some(at)),
            Err(_) => {
                let e = std::io::Error::last_os_error();
                // ENXIO: no data (or hole) at or after the offset.
                if e.raw_os_error() == Some(libc::ENXIO) {
                    Ok(None)
                } else {
                    Err(e)
                }
            }
        }
    };
    let mut ranges = Vec::new();
    let mut at = 0u64;
    while at < len {
        let start = match seek(at, libc::SEEK_DATA) {
            Ok(Some(s)) => s,
            Ok(None) => break,
            // SEEK_DATA unsupported: it is all data.
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => return Ok(vec![(0, len)]),
            Err(e) => return Err(e),
        };
        if start >= len {
            break;
        }
        let end = seek(start, libc::SEEK_HOLE)?.unwrap_or(len).min(len);
        if end <= start {
            return Ok(vec![(0, len)]);
        }
        ranges.push((start, end));
        at = end;
    }
    Ok(ranges)
}

/// Inline the last partial block when it fits beside the inode in one
/// block; full blocks, empty data and no-room tails stay plain.
fn choose_layout(inode: &Inode<'_>) -> DataLayout {
    let tail = inode.size % BLOCK_SIZE;
    let meta = (InodeExtended::SIZE + inode.xattrs.len()) as u64;
    let has_data = matches!(
        inode.content,
        Content::Dir(_) | Content::File(_) | Content::Symlink(_)
    );
    if has_data && tail > 0 && meta + tail <= BLOCK_SIZE {
        DataLayout::FlatInline
    } else {
        DataLayout::FlatPlain
    }
}

/// The first byte of block 0 the metadata area may use: after the
/// superblock and, in a compressed image, its LZ4 config record.
pub fn metadata_start(compressed: bool) -> u64 {
    let records = if compressed { Lz4Config::SIZE } else { 0 };
    SUPERBLOCK_OFFSET + (SuperBlock::SIZE + records) as u64
}

/// Gives every inode a 32-byte aligned place in the metadata area such
/// that its record (inode, xattrs, inline tail) never crosses a block
/// boundary: the kernel rejects inline data that does. Records go best-fit
/// into the partly filled block with the least room that still takes them
/// (on a 5 GB /usr of 133k entries this leaves 1.6% of the area as
/// padding, half of it the 32-byte rounding; first-fit over the 32 newest
/// blocks left 5.9%). A compressed file's record longer than a block (its
/// index: 8 bytes per 4 KiB of file) starts a block of its own and runs
/// on through as many as it needs; its index entries are read one by one
/// and never straddle a block (8-byte aligned). Block 0 is usable from
/// `start` on; the root comes first so its nid fits the superblock's 16
/// bits. Returns the inodes in position order and the metadata area's
/// length in blocks.
fn place_metadata(inodes: &mut [Inode<'_>], start: u64) -> (Vec<usize>, u32) {
    const SLOTS: usize = BLOCK_BYTES / NID_SLOT_BYTES;
    const MIN_RECORD_SLOTS: usize = InodeExtended::SIZE / NID_SLOT_BYTES;
    let slots_of = |bytes: u64| usize::try_from(bytes / NID_SLOT).unwrap_or(usize::MAX);
    // by_free[n]: blocks with exactly n free slots at their end, newest
    // last (LIFO keeps the placement a function of the tree alone).
    let mut by_free: Vec<Vec<u64>> = vec![Vec::new(); SLOTS + 1];
    by_free[SLOTS - slots_of(start.next_multiple_of(NID_SLOT))].push(0);
    let mut next_block = 1u64;
    for inode in inodes.iter_mut() {
        let need = slots_of(inode.record_len().next_multiple_of(NID_SLOT));
        if need > SLOTS {
            debug_assert!(
                inode.zip.is_some() || inode.chunks.is_some(),
                "xattrs and tails are capped to one block"
            );
            let block = next_block;
            let blocks = need.div_ceil(SLOTS);
            next_block += blocks as u64;
            inode.nid = (block * BLOCK_SIZE) / NID_SLOT;
            let left = blocks * SLOTS - need;
            if left >= MIN_RECORD_SLOTS {
                by_free[left].push(next_block - 1);
            }
            continue;
        }
        let (block, free) = match (need..=SLOTS).find(|&n| !by_free[n].is_empty()) {
            Some(n) => (by_free[n].pop().expect("non-empty"), n),
            None => {
                next_block += 1;
                (next_block - 1, SLOTS)
            }
        };
        let slot = (block * BLOCK_SIZE) / NID_SLOT + (SLOTS - free) as u64;
        inode.nid = slot;
        let left = free - need;
        if left >= MIN_RECORD_SLOTS {
            by_free[left].push(block);
        }
    }
    let mut by_nid: Vec<usize> = (0..inodes.len()).collect();
    by_nid.sort_unstable_by_key(|&i| inodes[i].nid);
    let meta_blocks = u32::try_from(next_block).unwrap_or(u32::MAX);
    (by_nid, meta_blocks)
}

/// Hands out data blocks from `first` on (after the metadata and shared
/// xattr areas), in creation order so a directory's files sit together.
/// Errors when the image outgrows EROFS's 32-bit block addresses (16 TiB).
fn place_data(inodes: &mut [Inode<'_>], first: u32) -> Result<u32, RootfsError> {
    let mut next = u64::from(first);
    for inode in inodes.iter_mut() {
        let blocks = inode.data_blocks();
        if blocks > 0 {
            inode.blkaddr = u32::try_from(next).map_err(|_| too_big(next))?;
            next += blocks;
        }
    }
    u32::try_from(next).map_err(|_| too_big(next))
}

fn too_big(blocks: u64) -> RootfsError {
    RootfsError::Invalid {
        what: WHAT.into(),
        fault: format!(
            "the image needs more than {blocks} blocks of 4 KiB; EROFS block addresses are 32-bit"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(kind: NodeKind) -> Node {
        Node {
            mode: 0o644,
            uid: 0,
            gid: 0,
            mtime: 5,
            mtime_nsec: 0,
            kind,
            xattrs: Default::default(),
        }
    }

    fn file(len: usize) -> Node {
        node(NodeKind::File(FileData::Inline(vec![b'x'; len])))
    }

    fn tree(entries: Vec<(&str, Node)>) -> Tree {
        Tree {
            nodes: entries
                .into_iter()
                .map(|(p, n)| (p.to_string(), n))
                .collect(),
            ..Tree::default()
        }
    }

    fn plan_of(t: &Tree) -> Layout<'_> {
        plan(t, &ErofsOptions::default(), &|_| {}).unwrap()
    }

    fn err_of(t: &Tree) -> String {
        plan(t, &ErofsOptions::default(), &|_| {})
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn root_is_nid_36_and_records_never_cross_a_block() {
        let mut entries = vec![];
        let names: Vec<String> = (0..300).map(|i| format!("f{i:03}")).collect();
        for (i, name) in names.iter().enumerate() {
            entries.push((name.as_str(), file(i * 37 % 5000)));
        }
        let t = tree(entries);
        let l = plan_of(&t);
        assert_eq!(l.inodes[0].nid, 36);
        let mut spans: Vec<(u64, u64)> = vec![];
        for inode in &l.inodes {
            let start = inode.nid * NID_SLOT;
            let end = start + inode.record_len();
            assert_eq!(start / BLOCK_SIZE, (end - 1) / BLOCK_SIZE, "{}", inode.path);
            assert!(start >= 1152);
            spans.push((start, end));
        }
        spans.sort_unstable();
        for w in spans.windows(2) {
            assert!(w[0].1 <= w[1].0, "records overlap: {w:?}");
        }
        assert!(spans.last().unwrap().1 <= u64::from(l.meta_blocks) * BLOCK_SIZE);
    }

    #[test]
    fn tails_inline_only_when_partial_and_fitting() {
        let t = tree(vec![
            ("empty", file(0)),
            ("full", file(8192)),
            ("small", file(100)),
            ("big", file(4096 * 3 + 5)),
            ("almost", file(4096 - 64)),
            ("too-big", file(4096 - 63)),
        ]);
        let l = plan_of(&t);
        let get = |p: &str| l.inodes.iter().find(|i| i.path == p).unwrap();
        assert_eq!(get("empty").layout, DataLayout::FlatPlain);
        assert_eq!(get("empty").data_blocks(), 0);
        assert_eq!(get("full").layout, DataLayout::FlatPlain);
        assert_eq!(get("full").data_blocks(), 2);
        assert_eq!(get("small").layout, DataLayout::FlatInline);
        assert_eq!(get("big").layout, DataLayout::FlatInline);
        assert_eq!((get("big").data_blocks(), get("big").tail_len()), (3, 5));
        assert_eq!(get("almost").layout, DataLayout::FlatInline);
        assert_eq!(get("too-big").layout, DataLayout::FlatPlain);
        assert_eq!(get("too-big").data_blocks(), 1);
        // Data blocks follow the metadata area, in path order.
        assert_eq!(get("big").blkaddr, l.meta_blocks);
        assert_eq!(get("full").blkaddr, l.meta_blocks + 3);
        assert_eq!(get("too-big").blkaddr, l.meta_blocks + 5);
        assert_eq!(l.total_blocks, l.meta_blocks + 6);
    }

    #[test]
    fn directory_entries_sort_by_bytes_and_never_straddle_blocks() {
        // 40 names of 200 bytes: 212 bytes an entry, 19 to a block.
        let names: Vec<String> = (0..40)
            .map(|i| format!("{i:02}{}", "n".repeat(198)))
            .collect();
        let mut entries: Vec<(&str, Node)> = vec![("d", node(NodeKind::Dir))];
        let paths: Vec<String> = names.iter().map(|n| format!("d/{n}")).collect();
        for p in &paths {
            entries.push((p, file(1)));
        }
        entries.push(("d/!first", file(1)));
        let t = tree(entries);
        let l = plan_of(&t);
        let d = l.inodes.iter().find(|i| i.path == "d").unwrap();
        let blocks = d.dir().unwrap();
        let names: Vec<&[u8]> = blocks.entries.iter().map(|e| e.name.as_ref()).collect();
        assert_eq!(&names[..3], &[&b"!first"[..], b".", b".."]);
        assert!(names.windows(2).all(|w| w[0] < w[1]));
        let mut total = 0;
        for b in 0..blocks.block_starts.len() {
            let used: usize = blocks.block(b).iter().map(|e| 12 + e.name.len()).sum();
            assert!(used <= 4096);
            total += used;
            if b + 1 == blocks.block_starts.len() {
                assert_eq!(d.size, b as u64 * 4096 + used as u64);
            }
        }
        assert!(total > 8192);
        assert_eq!(d.nlink, 2);
        assert_eq!(l.inodes[0].nlink, 3, "root: itself, its '.', and d's '..'");
    }

    #[test]
    fn hard_link_chains_share_one_inode() {
        let t = tree(vec![
            ("a", node(NodeKind::HardLink("b".into()))),
            ("b", node(NodeKind::HardLink("c".into()))),
            ("c", file(3)),
        ]);
        let l = plan_of(&t);
        assert_eq!(l.inodes.len(), 2);
        assert_eq!(l.inodes[1].nlink, 3);
        let root = l.inodes[0].dir().unwrap();
        assert!(root
            .entries
            .iter()
            .filter(|e| e.name.len() == 1 && e.name.as_ref() != b".")
            .all(|e| e.inode == 1));
    }

    #[test]
    fn bad_trees_are_rejected_naming_the_entry() {
        let long = "x".repeat(256);
        for (t, want) in [
            (tree(vec![(long.as_str(), file(1))]), "at most 255"),
            (
                tree(vec![("a/b", file(1))]),
                "parent \"a\" is not in the tree",
            ),
            (
                tree(vec![("a", file(1)), ("a/b", file(1))]),
                "not a directory",
            ),
            (
                tree(vec![("l", node(NodeKind::HardLink("m".into())))]),
                "\"m\" is not in the tree",
            ),
            (
                tree(vec![
                    ("d", node(NodeKind::Dir)),
                    ("l", node(NodeKind::HardLink("d".into()))),
                ]),
                "is a directory",
            ),
            (
                tree(vec![
                    ("l", node(NodeKind::HardLink("m".into()))),
                    ("m", node(NodeKind::HardLink("l".into()))),
                ]),
                "loop",
            ),
            (
                tree(vec![("s", node(NodeKind::Symlink(String::new())))]),
                "empty",
            ),
            (
                tree(vec![(
                    "c",
                    node(NodeKind::Char {
                        major: 4096,
                        minor: 0,
                    }),
                )]),
                "major < 4096",
            ),
            (tree(vec![("a//b", file(1))]), "empty name component"),
            (tree(vec![("n\0", file(1))]), "NUL"),
        ] {
            let e = err_of(&t);
            assert!(e.contains(want), "{e} should contain {want}");
        }
        let mut n = file(1);
        n.uid = 1 << 32;
        assert!(err_of(&tree(vec![("u", n)])).contains("uid 4294967296"));
        let mut n = file(1);
        n.mode = 0o100644;
        assert!(err_of(&tree(vec![("m", n)])).contains("outside 0o7777"));
    }
}

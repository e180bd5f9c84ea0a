//! Reading an EROFS image back: the entries and file contents of what
//! [`super::write_image`] wrote, for `pack inspect --files` and `pack
//! diff`. The image comes from an artifact, so it is attacker input: every
//! offset is checked arithmetic against the image length, directories are
//! visited once (a directory entry pointing back up is refused, not
//! followed), and counts are capped before anything is allocated for them.
//!
//! The subset read is the one written (see the module docs of
//! [`super`]): 4 KiB blocks, compact or extended inodes, FLAT_PLAIN,
//! FLAT_INLINE, CHUNK_BASED (block maps) and full-index LZ4 files with big
//! pclusters; inline and shared xattrs with the kernel's name indexes.
//! Anything else is an error naming the inode and the feature.

use super::ondisk::{
    mode, BLOCK_BYTES, BLOCK_SIZE, BLOCK_SIZE_BITS, CHUNK_BLKBITS_MAX, CHUNK_ENTRY_SIZE,
    CHUNK_NULL_ADDR, MAGIC, NID_SLOT, SUPERBLOCK_OFFSET, XATTR_IBODY_HEADER_SIZE, XATTR_NAMESPACES,
    XATTR_SHARED_COUNT_AT, XATTR_SHARED_ID_SIZE,
};
use crate::RootfsError;

const WHAT: &str = "erofs image (reading)";

/// More entries than any root we would pack; refuses an image that claims
/// (through directory sizes) billions of them before listing them.
pub const MAX_ENTRIES: usize = 4_000_000;
/// Deeper than PATH_MAX allows with one-byte names.
const MAX_DEPTH: usize = 2048;

/// What kind of entry a path is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EntryKind {
    File,
    Dir,
    Symlink { target: Vec<u8> },
    CharDevice { rdev: u32 },
    BlockDevice { rdev: u32 },
    Fifo,
    Socket,
}

impl EntryKind {
    /// One word, as `find -printf %y` would say it.
    pub fn name(&self) -> &'static str {
        match self {
            EntryKind::File => "file",
            EntryKind::Dir => "dir",
            EntryKind::Symlink { .. } => "symlink",
            EntryKind::CharDevice { .. } => "char",
            EntryKind::BlockDevice { .. } => "block",
            EntryKind::Fifo => "fifo",
            EntryKind::Socket => "socket",
        }
    }
}

/// One path in the image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageEntry {
    /// Relative to the root, no leading `/`; the root itself is "". Names
    /// are bytes in the tree's form ([`crate::tree::name_from_bytes`]):
    /// show them with [`crate::tree::display_name`].
    pub path: String,
    pub kind: EntryKind,
    /// Permission bits (`0o7777`).
    pub perm: u16,
    pub uid: u32,
    pub gid: u32,
    /// File size, symlink target length, directory size.
    pub size: u64,
    pub nid: u64,
}

/// An inode as stored.
#[derive(Debug, Clone, Copy)]
struct RawInode {
    nid: u64,
    /// Byte offset of the inode in the image.
    at: u64,
    /// Inode plus inline xattrs, in bytes.
    head_len: u64,
    /// Inline xattr body (header included), in bytes.
    xattr_len: u64,
    layout: u16,
    mode: u16,
    size: u64,
    u: u32,
    uid: u32,
    gid: u32,
}

/// A parsed EROFS image in memory.
pub struct ImageReader<'a> {
    image: &'a [u8],
    meta_at: u64,
    root_nid: u64,
    /// Byte offset of the shared xattr area.
    xattr_at: u64,
}

fn invalid(fault: String) -> RootfsError {
    RootfsError::Invalid {
        what: WHAT.into(),
        fault,
    }
}

impl<'a> ImageReader<'a> {
    /// Checks the superblock.
    pub fn new(image: &'a [u8]) -> Result<Self, RootfsError> {
        let r = ImageReader {
            image,
            meta_at: 0,
            root_nid: 0,
            xattr_at: 0,
        };
        let sb = r.bytes(SUPERBLOCK_OFFSET, 128)?;
        let le32 = |o: usize| u32::from_le_bytes([sb[o], sb[o + 1], sb[o + 2], sb[o + 3]]);
        if le32(0) != MAGIC {
            return Err(invalid(format!(
                "superblock magic {:#010x}, expected {MAGIC:#010x}: not an EROFS image",
                le32(0)
            )));
        }
        if sb[12] != 12 {
            return Err(invalid(format!(
                "block size 2^{} bytes; only 4096-byte blocks are read",
                sb[12]
            )));
        }
        let root_nid = u64::from(u16::from_le_bytes([sb[14], sb[15]]));
        let meta_at = u64::from(le32(40))
            .checked_mul(BLOCK_SIZE)
            .ok_or_else(|| invalid("meta_blkaddr overflows".into()))?;
        // A u32 block address times 4096 always fits a u64.
        let xattr_at = u64::from(le32(44)) * BLOCK_SIZE;
        Ok(ImageReader {
            image,
            meta_at,
            root_nid,
            xattr_at,
        })
    }

    /// `len` bytes at `at`, or an error naming the range.
    fn bytes(&self, at: u64, len: u64) -> Result<&'a [u8], RootfsError> {
        let end = at
            .checked_add(len)
            .filter(|&e| e <= self.image.len() as u64)
            .ok_or_else(|| {
                invalid(format!(
                    "{len} bytes at offset {at} run past the end of the image ({} bytes)",
                    self.image.len()
                ))
            })?;
        // Both bounds are at most the slice's length, checked above, so
        // they fit a usize.
        let (at, end) = (
            usize::try_from(at).unwrap_or(usize::MAX),
            usize::try_from(end).unwrap_or(usize::MAX),
        );
        Ok(&self.image[at..end])
    }

    fn inode(&self, nid: u64) -> Result<RawInode, RootfsError> {
        let at = nid
            .checked_mul(NID_SLOT)
            .and_then(|o| o.checked_add(self.meta_at))
            .ok_or_else(|| invalid(format!("nid {nid} overflows")))?;
        let head = self.bytes(at, 32)?;
        let u16_at = |b: &[u8], o: usize| u16::from_le_bytes([b[o], b[o + 1]]);
        let u32_at = |b: &[u8], o: usize| u32::from_le_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]]);
        let format = u16_at(head, 0);
        let xattr_icount = u64::from(u16_at(head, 2));
        let xattr_len = if xattr_icount == 0 {
            0
        } else {
            12 + (xattr_icount - 1) * 4
        };
        let layout = (format >> 1) & 0x7;
        let extended = format & 1 == 1;
        let (inode_len, raw) = if extended {
            let b = self.bytes(at, 64)?;
            let size = u64::from_le_bytes(b[8..16].try_into().expect("8 bytes"));
            (
                64,
                RawInode {
                    nid,
                    at,
                    head_len: 0,
                    xattr_len,
                    layout,
                    mode: u16_at(b, 4),
                    size,
                    u: u32_at(b, 16),
                    uid: u32_at(b, 24),
                    gid: u32_at(b, 28),
                },
            )
        } else {
            (
                32,
                RawInode {
                    nid,
                    at,
                    head_len: 0,
                    xattr_len,
                    layout,
                    mode: u16_at(head, 4),
                    size: u64::from(u32_at(head, 8)),
                    u: u32_at(head, 16),
                    uid: u32::from(u16_at(head, 24)),
                    gid: u32::from(u16_at(head, 26)),
                },
            )
        };
        Ok(RawInode {
            head_len: inode_len + xattr_len,
            ..raw
        })
    }

    /// Bytes to reserve for data that claims `size`: no more than the
    /// image could hold, since the claim is attacker input until read.
    fn reserve(&self, size: u64) -> usize {
        usize::try_from(size.min(self.image.len() as u64)).unwrap_or(0)
    }

    /// The bytes of an inode's data (file contents, directory blocks,
    /// symlink target), at most `cap` of them.
    fn data(&self, ino: &RawInode, cap: u64) -> Result<Vec<u8>, RootfsError> {
        if ino.size > cap {
            return Err(invalid(format!(
                "inode {} claims {} bytes, more than the {cap} allowed here",
                ino.nid, ino.size
            )));
        }
        let blocks_at = u64::from(ino.u)
            .checked_mul(BLOCK_SIZE)
            .ok_or_else(|| invalid(format!("inode {}: block address overflows", ino.nid)))?;
        match ino.layout {
            // FLAT_PLAIN
            0 => Ok(self.bytes(blocks_at, ino.size)?.to_vec()),
            // FLAT_INLINE: whole blocks, then the tail after the inode.
            2 => {
                let tail = ino.size % BLOCK_SIZE;
                let full = ino.size - tail;
                // The size is checked against the image below, block by block.
                let mut out = Vec::with_capacity(self.reserve(ino.size));
                if full > 0 {
                    out.extend_from_slice(self.bytes(blocks_at, full)?);
                }
                let tail_at = ino
                    .at
                    .checked_add(ino.head_len)
                    .ok_or_else(|| invalid(format!("inode {}: tail overflows", ino.nid)))?;
                // The kernel keeps an inline tail in the inode's block.
                if tail > 0 && tail_at / BLOCK_SIZE != (tail_at + tail - 1) / BLOCK_SIZE {
                    return Err(invalid(format!(
                        "inode {}: its inline tail crosses a block boundary",
                        ino.nid
                    )));
                }
                out.extend_from_slice(self.bytes(tail_at, tail)?);
                Ok(out)
            }
            // COMPRESSED_FULL
            1 => self.decompress(ino),
            // CHUNK_BASED
            4 => self.chunks(ino),
            other => Err(invalid(format!(
                "inode {}: data layout {other} is not one this reader knows (flat plain, flat \
                 inline, compressed full, chunk-based)",
                ino.nid
            ))),
        }
    }

    /// Chunk-based data: one 4-byte block address per chunk after the
    /// inode and its xattrs (4-aligned), `EROFS_NULL_ADDR` for a hole.
    fn chunks(&self, ino: &RawInode) -> Result<Vec<u8>, RootfsError> {
        let bad = |fault: String| invalid(format!("chunk-based inode {}: {fault}", ino.nid));
        // i_u: chunk bits above the block's in the low 5 bits; bit 5 asks
        // for 8-byte chunk indexes, which the writer never uses.
        if ino.u & !u32::from(CHUNK_BLKBITS_MAX) != 0 {
            return Err(bad(format!(
                "chunk format {:#x}: only block maps are read",
                ino.u
            )));
        }
        let bits = u32::from(BLOCK_SIZE_BITS) + ino.u;
        let chunk = 1u64 << bits;
        let count = ino.size.div_ceil(chunk);
        let map_at = ino
            .at
            .checked_add(ino.head_len)
            .map(|o| o.next_multiple_of(CHUNK_ENTRY_SIZE))
            .ok_or_else(|| bad("block map offset overflows".into()))?;
        let map = self.bytes(
            map_at,
            count
                .checked_mul(CHUNK_ENTRY_SIZE)
                .ok_or_else(|| bad("block map overflows".into()))?,
        )?;
        // Holes read as zeros: the output is as large as the file, which
        // the caller's cap bounds (an image of holes is small).
        let len = usize::try_from(ino.size)
            .map_err(|_| bad(format!("{} bytes do not fit in memory", ino.size)))?;
        let mut out = vec![0u8; len];
        for (i, entry) in map.chunks_exact(4).enumerate() {
            let addr = u32::from_le_bytes(entry.try_into().expect("4 bytes"));
            if addr == CHUNK_NULL_ADDR {
                continue;
            }
            // i < count, so start < size.
            let start = (i as u64) << bits;
            let n = chunk.min(ino.size - start);
            let from = self.bytes(u64::from(addr) * BLOCK_SIZE, n)?;
            let start = usize::try_from(start).expect("below len");
            out[start..start + from.len()].copy_from_slice(from);
        }
        Ok(out)
    }

    /// The extended attributes of `entry`, inline and shared, by full name
    /// (`user.x`, `system.posix_acl_access`).
    pub fn xattrs(&self, entry: &ImageEntry) -> Result<Vec<(String, Vec<u8>)>, RootfsError> {
        let ino = self.inode(entry.nid)?;
        let bad = |fault: String| invalid(format!("inode {} xattrs: {fault}", ino.nid));
        if ino.xattr_len == 0 {
            return Ok(Vec::new());
        }
        let body_at = ino
            .at
            .checked_add(ino.head_len - ino.xattr_len)
            .ok_or_else(|| bad("body offset overflows".into()))?;
        let body = self.bytes(body_at, ino.xattr_len)?;
        let shared = usize::from(body[XATTR_SHARED_COUNT_AT]);
        let inline_at = XATTR_IBODY_HEADER_SIZE + shared * XATTR_SHARED_ID_SIZE;
        if inline_at > body.len() {
            return Err(bad(format!(
                "{shared} shared ids do not fit a body of {} bytes",
                body.len()
            )));
        }
        let mut out = Vec::new();
        for id in body[XATTR_IBODY_HEADER_SIZE..inline_at].chunks_exact(4) {
            let id = u32::from_le_bytes(id.try_into().expect("4 bytes"));
            let at = self
                .xattr_at
                .checked_add(u64::from(id) * 4)
                .ok_or_else(|| bad(format!("shared id {id} overflows")))?;
            let head = self.bytes(at, 4)?;
            let len = 4 + u64::from(head[0]) + u64::from(u16::from_le_bytes([head[2], head[3]]));
            let (name, value, _) = xattr_entry(self.bytes(at, len)?).map_err(&bad)?;
            out.push((name, value));
        }
        let mut rest = &body[inline_at..];
        while !rest.is_empty() {
            let (name, value, used) = xattr_entry(rest).map_err(&bad)?;
            out.push((name, value));
            rest = &rest[used.min(rest.len())..];
        }
        Ok(out)
    }

    /// LZ4 full-index data: one 8-byte index per block of output after the
    /// map header (see `zip.rs`).
    fn decompress(&self, ino: &RawInode) -> Result<Vec<u8>, RootfsError> {
        let bad = |fault: String| invalid(format!("compressed inode {}: {fault}", ino.nid));
        let header_at = ino
            .at
            .checked_add(ino.head_len)
            .map(|o| o.next_multiple_of(8))
            .ok_or_else(|| bad("map header offset overflows".into()))?;
        let header = self.bytes(header_at, 8)?;
        if header[6] != 0 || header[7] != 0 {
            return Err(bad(format!(
                "algorithm {} / cluster bits {}: only LZ4 with 4 KiB logical clusters is read",
                header[6], header[7]
            )));
        }
        let lclusters = ino.size.div_ceil(BLOCK_SIZE);
        let index_at = header_at + 16;
        let indexes = self.bytes(
            index_at,
            lclusters
                .checked_mul(8)
                .ok_or_else(|| bad("index table overflows".into()))?,
        )?;
        let index = |i: u64| -> (u16, &[u8]) {
            // i < lclusters, and the table holds lclusters * 8 bytes.
            let e = indexes
                .chunks_exact(8)
                .nth(usize::try_from(i).unwrap_or(usize::MAX))
                .expect("index within the table");
            (u16::from_le_bytes([e[0], e[1]]) & 0x3, &e[4..8])
        };
        let mut out = Vec::with_capacity(self.reserve(ino.size));
        let mut i = 0;
        while i < lclusters {
            let (kind, rest) = index(i);
            let blkaddr = u64::from(u32::from_le_bytes(rest.try_into().expect("4 bytes")));
            let remaining = ino.size - out.len() as u64;
            match kind {
                0 => {
                    let n = remaining.min(BLOCK_SIZE);
                    out.extend_from_slice(self.bytes(blkaddr * BLOCK_SIZE, n)?);
                    i += 1;
                }
                1 => {
                    let mut span = 1;
                    while i + span < lclusters && index(i + span).0 == 2 {
                        span += 1;
                    }
                    let pblocks = if span > 1 {
                        let (_, d) = index(i + 1);
                        let d0 = u16::from_le_bytes([d[0], d[1]]);
                        if d0 & (1 << 11) == 0 {
                            return Err(bad(format!(
                                "lcluster {} carries no pcluster block count",
                                i + 1
                            )));
                        }
                        u64::from(d0 & 0x7ff)
                    } else {
                        1
                    };
                    let stored = self.bytes(
                        blkaddr * BLOCK_SIZE,
                        pblocks
                            .checked_mul(BLOCK_SIZE)
                            .ok_or_else(|| bad("pcluster size overflows".into()))?,
                    )?;
                    // ZERO_PADDING: the compressed bytes end at the last
                    // block's end; zeros before them.
                    let first = stored.iter().position(|&b| b != 0).unwrap_or(stored.len());
                    let want = remaining.min(span * BLOCK_SIZE);
                    // LZ4 expands at most ~255 times: a claim beyond that
                    // is refused before the output is allocated.
                    if want > pblocks * BLOCK_SIZE * 256 {
                        return Err(bad(format!(
                            "pcluster at block {blkaddr} claims {want} bytes from {pblocks} blocks"
                        )));
                    }
                    let start = out.len();
                    // want is at most a few GiB (capped above) and
                    // remaining <= size.
                    let want_len = usize::try_from(want)
                        .map_err(|_| bad(format!("{want} bytes do not fit in memory")))?;
                    out.resize(start + want_len, 0);
                    let n = lz4_flex::block::decompress_into(&stored[first..], &mut out[start..])
                        .map_err(|e| bad(format!("lz4 pcluster at block {blkaddr}: {e}")))?;
                    if n as u64 != want {
                        return Err(bad(format!(
                            "lz4 pcluster at block {blkaddr} gave {n} bytes, expected {want}"
                        )));
                    }
                    i += span;
                }
                _ => {
                    return Err(bad(format!(
                        "lcluster {i} continues a pcluster that never started"
                    )))
                }
            }
        }
        Ok(out)
    }

    /// Every entry, directories before their contents, names in byte
    /// order (the order the writer stores them).
    pub fn entries(&self) -> Result<Vec<ImageEntry>, RootfsError> {
        let mut out = Vec::new();
        let mut seen_dirs = std::collections::HashSet::new();
        let root = self.inode(self.root_nid)?;
        if root.mode & 0o170000 != mode::S_IFDIR {
            return Err(invalid(format!(
                "root inode {} is not a directory",
                self.root_nid
            )));
        }
        let mut stack = vec![(String::new(), root, 0usize)];
        while let Some((path, ino, depth)) = stack.pop() {
            let entry = self.entry(path.clone(), &ino)?;
            let is_dir = entry.kind == EntryKind::Dir;
            out.push(entry);
            if out.len() > MAX_ENTRIES {
                return Err(invalid(format!("more than {MAX_ENTRIES} entries")));
            }
            if !is_dir {
                continue;
            }
            if !seen_dirs.insert(ino.nid) || depth > MAX_DEPTH {
                return Err(invalid(format!(
                    "directory {path:?} (inode {}) is reached twice or nests deeper than {MAX_DEPTH}",
                    ino.nid
                )));
            }
            let mut children = self.dir_entries(&ino)?;
            // Popped last-first: push in reverse for byte order.
            children.reverse();
            for (name, nid) in children {
                let child = self.inode(nid)?;
                let p = if path.is_empty() {
                    name
                } else {
                    format!("{path}/{name}")
                };
                stack.push((p, child, depth + 1));
            }
        }
        Ok(out)
    }

    fn entry(&self, path: String, ino: &RawInode) -> Result<ImageEntry, RootfsError> {
        let kind = match ino.mode & 0o170000 {
            mode::S_IFREG => EntryKind::File,
            mode::S_IFDIR => EntryKind::Dir,
            mode::S_IFLNK => EntryKind::Symlink {
                target: self.data(ino, 4096)?,
            },
            mode::S_IFCHR => EntryKind::CharDevice { rdev: ino.u },
            mode::S_IFBLK => EntryKind::BlockDevice { rdev: ino.u },
            mode::S_IFIFO => EntryKind::Fifo,
            0o140000 => EntryKind::Socket,
            other => {
                return Err(invalid(format!(
                    "{path:?} (inode {}): file type {other:#o} is unknown",
                    ino.nid
                )))
            }
        };
        Ok(ImageEntry {
            path,
            kind,
            perm: ino.mode & 0o7777,
            uid: ino.uid,
            gid: ino.gid,
            size: ino.size,
            nid: ino.nid,
        })
    }

    /// A directory's entries other than `.` and `..`: (name, nid).
    fn dir_entries(&self, dir: &RawInode) -> Result<Vec<(String, u64)>, RootfsError> {
        // A directory of MAX_ENTRIES names of at most 255 bytes fits.
        let data = self.data(dir, (MAX_ENTRIES as u64) * 268)?;
        let mut out = Vec::new();
        for block in data.chunks(BLOCK_BYTES) {
            if block.len() < 12 {
                return Err(invalid(format!(
                    "directory inode {}: a short block",
                    dir.nid
                )));
            }
            let nameoff0 = usize::from(u16::from_le_bytes([block[8], block[9]]));
            if nameoff0 < 12 || nameoff0 % 12 != 0 || nameoff0 > block.len() {
                return Err(invalid(format!(
                    "directory inode {}: first name offset {nameoff0} is not a multiple of 12 \
                     inside the block",
                    dir.nid
                )));
            }
            let count = nameoff0 / 12;
            for k in 0..count {
                let d = &block[k * 12..k * 12 + 12];
                let nid = u64::from_le_bytes(d[0..8].try_into().expect("8 bytes"));
                let start = usize::from(u16::from_le_bytes([d[8], d[9]]));
                let end = if k + 1 < count {
                    usize::from(u16::from_le_bytes([block[k * 12 + 20], block[k * 12 + 21]]))
                } else {
                    // The last name ends at the block's end or its first NUL.
                    block[start.min(block.len())..]
                        .iter()
                        .position(|&b| b == 0)
                        .map_or(block.len(), |p| start + p)
                };
                if start > end || end > block.len() {
                    return Err(invalid(format!(
                        "directory inode {}: name {k} at {start}..{end} is outside its block",
                        dir.nid
                    )));
                }
                let name = &block[start..end];
                if name == b"." || name == b".." {
                    continue;
                }
                if name.is_empty() || name.contains(&b'/') {
                    return Err(invalid(format!(
                        "directory inode {}: a name that is empty or holds '/'",
                        dir.nid
                    )));
                }
                out.push((name.to_vec(), nid));
            }
        }
        // Byte order, as stored.
        out.sort();
        Ok(out
            .into_iter()
            .map(|(name, nid)| (crate::tree::name_from_bytes(&name), nid))
            .collect())
    }

    /// The contents of a regular file entry (holes read as zeros).
    pub fn file_contents(&self, entry: &ImageEntry) -> Result<Vec<u8>, RootfsError> {
        let ino = self.inode(entry.nid)?;
        self.data(&ino, self.image.len() as u64 * 256)
    }
}

/// One xattr entry at the start of `bytes`: its full name, value, and
/// the bytes it takes with its padding.
fn xattr_entry(bytes: &[u8]) -> Result<(String, Vec<u8>, usize), String> {
    let [name_len, index, v0, v1, rest @ ..] = bytes else {
        return Err(format!(
            "{} bytes left, short of an entry header",
            bytes.len()
        ));
    };
    let (name_len, value_len) = (
        usize::from(*name_len),
        usize::from(u16::from_le_bytes([*v0, *v1])),
    );
    if name_len + value_len > rest.len() {
        return Err(format!(
            "an entry of {name_len} name and {value_len} value bytes runs past its {} bytes",
            rest.len()
        ));
    }
    let (prefix, _, is_prefix) = XATTR_NAMESPACES
        .iter()
        .find(|(_, i, _)| i == index)
        .ok_or_else(|| format!("name index {index} is not one this reader knows"))?;
    if !is_prefix && name_len != 0 {
        return Err(format!("{prefix} with a name suffix"));
    }
    let name = format!("{prefix}{}", String::from_utf8_lossy(&rest[..name_len]));
    let value = rest[name_len..name_len + value_len].to_vec();
    Ok((name, value, (4 + name_len + value_len).next_multiple_of(4)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tree::{Node, NodeKind, Tree};

    fn image_of(tree: &Tree, compression: super::super::Compression) -> Vec<u8> {
        let mut out = Vec::new();
        super::super::write_image(
            tree,
            &mut out,
            &super::super::ErofsOptions {
                clamp_mtime: Some(0),
                compression,
            },
            &|_| {},
        )
        .unwrap();
        out
    }

    fn node(perm: u32, kind: NodeKind) -> Node {
        Node {
            mode: perm,
            uid: 0,
            gid: 0,
            mtime: 0,
            mtime_nsec: 0,
            xattrs: Default::default(),
            kind,
        }
    }

    fn sample() -> Tree {
        let mut t = Tree::default();
        let big: Vec<u8> = (0..100_000u32).map(|i| (i % 7) as u8).collect();
        let file = |data: &[u8]| {
            node(
                0o644,
                NodeKind::File(crate::tree::FileData::Inline(data.to_vec())),
            )
        };
        t.nodes.insert("etc".into(), node(0o755, NodeKind::Dir));
        t.nodes.insert("etc/hostname".into(), file(b"smol\n"));
        t.nodes.insert("big".into(), file(&big));
        t.nodes.insert("block".into(), file(&vec![9u8; 8192]));
        t.nodes.insert(
            "link".into(),
            node(0o777, NodeKind::Symlink("etc/hostname".into())),
        );
        for i in 0..300u32 {
            t.nodes
                .insert(format!("etc/f{i:03}"), file(&i.to_le_bytes()));
        }
        t
    }

    #[test]
    fn reads_back_what_the_writer_wrote_flat_and_compressed() {
        let tree = sample();
        // The compressed image really holds compressed files.
        assert!(
            image_of(&tree, super::super::Compression::Lz4).len()
                < image_of(&tree, super::super::Compression::None).len()
        );
        for compression in [
            super::super::Compression::None,
            super::super::Compression::Lz4,
        ] {
            let image = image_of(&tree, compression);
            let r = ImageReader::new(&image).unwrap();
            let entries = r.entries().unwrap();
            assert_eq!(entries[0].path, "");
            assert_eq!(entries.len(), 1 + 5 + 300, "{compression:?}");
            for e in &entries {
                match tree.nodes.get(&e.path).map(|n| &n.kind) {
                    Some(NodeKind::File(crate::tree::FileData::Inline(want))) => {
                        assert_eq!(&r.file_contents(e).unwrap(), want, "{}", e.path);
                    }
                    Some(NodeKind::Symlink(t)) => {
                        assert_eq!(
                            e.kind,
                            EntryKind::Symlink {
                                target: t.clone().into_bytes()
                            }
                        );
                    }
                    _ => {}
                }
            }
        }
    }

    /// Everything the reader offers, on an image that may be damaged:
    /// errors are fine, panics are not.
    fn read_everything(image: &[u8]) {
        let Ok(r) = ImageReader::new(image) else {
            return;
        };
        let Ok(entries) = r.entries() else {
            return;
        };
        for e in &entries {
            let _ = r.xattrs(e);
            if e.kind == EntryKind::File {
                let _ = r.file_contents(e);
            }
        }
    }

    #[test]
    fn truncations_and_bit_flips_are_errors_not_panics() {
        // The sample, with xattrs: shared (on every file), inline, and a
        // value too large to sit inline.
        let mut tree = sample();
        for (i, node) in tree.nodes.values_mut().enumerate() {
            node.xattrs.insert("user.shared".into(), b"s\n".to_vec());
            if i % 3 == 0 {
                node.xattrs
                    .insert("user.own".into(), vec![u8::try_from(i % 256).unwrap(); 9]);
            }
        }
        tree.nodes
            .get_mut("big")
            .unwrap()
            .xattrs
            .insert("trusted.big".into(), vec![7; 6000]);
        for compression in [
            super::super::Compression::None,
            super::super::Compression::Lz4,
        ] {
            let image = image_of(&tree, compression);
            for cut in (0..image.len()).step_by(997) {
                read_everything(&image[..cut]);
            }
            for at in (1024..image.len().min(40_000)).step_by(13) {
                let mut bad = image.clone();
                bad[at] ^= 0x5a;
                read_everything(&bad);
            }
        }
    }

    /// Names that are not UTF-8 come back as the same bytes (in the
    /// tree's form), in byte order.
    #[test]
    fn names_come_back_as_their_bytes_in_byte_order() {
        let mut t = Tree::default();
        let names: Vec<&[u8]> = vec![b"a\x80", b"a\xc3\xa9", b"a\xff\n", b"b"];
        for n in &names {
            t.nodes.insert(
                crate::tree::name_from_bytes(n),
                node(0o644, NodeKind::File(crate::tree::FileData::Inline(vec![]))),
            );
        }
        let image = image_of(&t, super::super::Compression::None);
        let got: Vec<Vec<u8>> = ImageReader::new(&image)
            .unwrap()
            .entries()
            .unwrap()
            .into_iter()
            .skip(1)
            .map(|e| crate::tree::name_bytes(&e.path).into_owned())
            .collect();
        assert_eq!(got, names);
    }

    /// Shared and inline xattrs and a chunk-based file with holes read
    /// back as written.
    #[test]
    fn reads_xattrs_inline_and_shared_and_files_with_holes() {
        use std::io::{Seek, SeekFrom, Write};
        let mut t = Tree::default();
        let acl = vec![2, 0, 0, 0, 1, 0, 7, 0, 0xff, 0xff, 0xff, 0xff];
        let big: Vec<u8> = (0..20_000u32).map(|i| (i % 251) as u8).collect();
        for i in 0..3 {
            let mut n = node(0o644, NodeKind::File(crate::tree::FileData::Inline(vec![])));
            n.xattrs
                .insert("system.posix_acl_access".into(), acl.clone());
            n.xattrs.insert("user.own".into(), vec![i, b'\n']);
            n.xattrs.insert("trusted.big".into(), big.clone());
            t.nodes.insert(format!("f{i}"), n);
        }
        let dir = tempfile::tempdir().unwrap();
        let host = dir.path().join("sparse");
        let mut f = std::fs::File::create(&host).unwrap();
        f.set_len(4 << 20).unwrap();
        f.seek(SeekFrom::Start(3 << 20)).unwrap();
        f.write_all(b"data after a hole").unwrap();
        drop(f);
        t.nodes.insert(
            "sparse".into(),
            node(
                0o600,
                NodeKind::File(crate::tree::FileData::Host {
                    path: host,
                    len: 4 << 20,
                }),
            ),
        );
        let image = image_of(&t, super::super::Compression::None);
        let r = ImageReader::new(&image).unwrap();
        let entries = r.entries().unwrap();
        for e in entries.iter().filter(|e| e.path.starts_with('f')) {
            let mut got = r.xattrs(e).unwrap();
            got.sort();
            let i = e.path.as_bytes()[1] - b'0';
            assert_eq!(
                got,
                vec![
                    ("system.posix_acl_access".to_string(), acl.clone()),
                    ("trusted.big".to_string(), big.clone()),
                    ("user.own".to_string(), vec![i, b'\n']),
                ],
                "{}",
                e.path
            );
        }
        let sparse = entries.iter().find(|e| e.path == "sparse").unwrap();
        assert!(r.xattrs(sparse).unwrap().is_empty());
        let data = r.file_contents(sparse).unwrap();
        assert_eq!(data.len(), 4 << 20);
        assert_eq!(&data[3 << 20..(3 << 20) + 17], b"data after a hole");
        assert!(data[..3 << 20].iter().all(|&b| b == 0));
        // The holes took no blocks: the image is far below the file.
        if image.len() >= 1 << 20 {
            eprintln!(
                "this file system keeps no holes: image {} bytes",
                image.len()
            );
        }
    }
}

//! The EROFS on-disk structures this writer emits, field for field as in
//! the kernel's `fs/erofs/erofs_fs.h` (uncompressed subset, 4 KiB blocks).
//!
//! Each structure is a plain value with native-typed fields in on-disk
//! order and an `encode` that writes it little-endian into a fixed-size
//! array. Nothing here decides where anything goes: that is `layout`.

/// Block size. The kernel mounts only block size == page size before 6.x
/// and 4 KiB is what every x86-64/arm64 guest kernel accepts.
pub const BLOCK_SIZE: u64 = 1 << BLOCK_SIZE_BITS;
/// [`BLOCK_SIZE`] for buffer lengths.
pub const BLOCK_BYTES: usize = 1 << BLOCK_SIZE_BITS;
pub const BLOCK_SIZE_BITS: u8 = 12;
/// The superblock lives at a fixed byte offset; bytes 0..1024 stay zero
/// (room for a boot sector, as in ext*).
pub const SUPERBLOCK_OFFSET: u64 = 1024;
pub const MAGIC: u32 = 0xE0F5_E1E2;
/// An inode's nid is its byte offset from the metadata area start divided
/// by this slot size, so inodes start on 32-byte boundaries.
pub const NID_SLOT: u64 = 32;
/// [`NID_SLOT`] for buffer arithmetic.
pub const NID_SLOT_BYTES: usize = 32;
/// Longest name in a directory entry (the kernel rejects longer ones).
pub const NAME_LEN_MAX: usize = 255;

/// `i_format` bit 0: 1 = 64-byte extended inode.
const INODE_LAYOUT_EXTENDED: u16 = 1;
/// `i_format` bits 1..=3: data layout.
const DATALAYOUT_SHIFT: u16 = 1;

/// How an inode's data is stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DataLayout {
    /// All data in consecutive blocks from `raw_blkaddr` (none if empty).
    FlatPlain = 0,
    /// LZ4 pclusters described by one 8-byte index per logical cluster
    /// ("full" indexes) after the inode, its xattrs and a map header;
    /// `i_u` counts the data blocks.
    CompressedFull = 1,
    /// Full blocks from `raw_blkaddr`, the last partial block right after
    /// the inode and its xattrs, in the same metadata block.
    FlatInline = 2,
    /// The file in chunks of `1 << chunk bits` bytes, each either
    /// consecutive data blocks or a hole: one 4-byte block address per
    /// chunk (a "block map") after the inode and its xattrs, 4-aligned,
    /// [`CHUNK_NULL_ADDR`] for a hole, which reads as zeros. `i_u` holds
    /// the chunk bits less [`BLOCK_SIZE_BITS`].
    ChunkBased = 4,
}

/// `EROFS_NULL_ADDR`: a chunk with no blocks (a hole).
pub const CHUNK_NULL_ADDR: u32 = u32::MAX;
/// `EROFS_BLOCK_MAP_ENTRY_SIZE`: one block address per chunk.
pub const CHUNK_ENTRY_SIZE: u64 = 4;
/// `EROFS_CHUNK_FORMAT_BLKBITS_MASK`: chunk bits above the block's.
pub const CHUNK_BLKBITS_MAX: u8 = 0x1f;

/// File type bits of `i_mode` (`S_IFMT` values).
pub mod mode {
    pub const S_IFIFO: u16 = 0o010000;
    pub const S_IFCHR: u16 = 0o020000;
    pub const S_IFDIR: u16 = 0o040000;
    pub const S_IFBLK: u16 = 0o060000;
    pub const S_IFREG: u16 = 0o100000;
    pub const S_IFLNK: u16 = 0o120000;
    pub const S_IFSOCK: u16 = 0o140000;
}

/// `file_type` of a directory entry (`EROFS_FT_*`, the same numbers as
/// the VFS `FT_*`).
pub mod file_type {
    pub const REG_FILE: u8 = 1;
    pub const DIR: u8 = 2;
    pub const CHRDEV: u8 = 3;
    pub const BLKDEV: u8 = 4;
    pub const FIFO: u8 = 5;
    pub const SOCK: u8 = 6;
    pub const SYMLINK: u8 = 7;
}

/// Little-endian cursor over a fixed buffer; the `encode` functions check
/// in tests that they fill their structure exactly.
struct Le<'a> {
    buf: &'a mut [u8],
    pos: usize,
}

impl Le<'_> {
    fn bytes(&mut self, v: &[u8]) -> &mut Self {
        self.buf[self.pos..self.pos + v.len()].copy_from_slice(v);
        self.pos += v.len();
        self
    }
    fn u8(&mut self, v: u8) -> &mut Self {
        self.bytes(&[v])
    }
    fn u16(&mut self, v: u16) -> &mut Self {
        self.bytes(&v.to_le_bytes())
    }
    fn u32(&mut self, v: u32) -> &mut Self {
        self.bytes(&v.to_le_bytes())
    }
    fn u64(&mut self, v: u64) -> &mut Self {
        self.bytes(&v.to_le_bytes())
    }
    fn zeros(&mut self, n: usize) -> &mut Self {
        self.pos += n; // the buffer starts zeroed
        self
    }
    fn end(&self) -> usize {
        self.pos
    }
}

/// `EROFS_FEATURE_INCOMPAT_ZERO_PADDING`: a compressed pcluster's bytes
/// end at its last block's end, zeros before them (the kernel finds the
/// start by skipping the zeros).
const FEATURE_INCOMPAT_ZERO_PADDING: u32 = 0x1;
/// `EROFS_FEATURE_INCOMPAT_COMPR_CFGS` (the same bit is BIG_PCLUSTER):
/// `available_compr_algs` is a bitmap and one config record per algorithm
/// follows the superblock; pclusters may span several blocks.
const FEATURE_INCOMPAT_COMPR_CFGS: u32 = 0x2;
/// `Z_EROFS_COMPRESSION_LZ4` as a bit of `available_compr_algs`.
const COMPR_ALG_LZ4_BIT: u16 = 1 << 0;
/// `EROFS_FEATURE_INCOMPAT_CHUNKED_FILE`: some inode is
/// [`DataLayout::ChunkBased`].
const FEATURE_INCOMPAT_CHUNKED_FILE: u32 = 0x4;

/// `struct erofs_super_block` (128 bytes at byte 1024). Fields this writer
/// never sets (checksum, uuid, volume name, device tables) are written as
/// zero; the feature bits and the compression bitmap only
/// when the image holds compressed files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SuperBlock {
    pub root_nid: u16,
    pub inos: u64,
    pub build_time: u64,
    pub blocks: u32,
    pub meta_blkaddr: u32,
    /// First block of the shared xattr area (0 when there is none): a
    /// shared xattr's id is its byte offset from there divided by 4.
    pub xattr_blkaddr: u32,
    /// Some file is LZ4-compressed: [`Lz4Config`] follows the superblock.
    pub lz4: bool,
    /// Some file is chunk-based (has holes).
    pub chunked: bool,
}

impl SuperBlock {
    pub const SIZE: usize = 128;

    pub fn encode(&self) -> [u8; Self::SIZE] {
        let mut out = [0u8; Self::SIZE];
        let mut w = Le {
            buf: &mut out,
            pos: 0,
        };
        w.u32(MAGIC)
            .u32(0) // checksum: only read with FEATURE_COMPAT_SB_CHKSUM
            .u32(0) // feature_compat
            .u8(BLOCK_SIZE_BITS)
            .u8(0) // sb_extslots
            .u16(self.root_nid)
            .u64(self.inos)
            .u64(self.build_time)
            .u32(0) // build_time_nsec
            .u32(self.blocks)
            .u32(self.meta_blkaddr)
            .u32(self.xattr_blkaddr)
            .zeros(16) // uuid: zero keeps images reproducible
            .zeros(16); // volume_name
        let chunked = if self.chunked {
            FEATURE_INCOMPAT_CHUNKED_FILE
        } else {
            0
        };
        if self.lz4 {
            w.u32(FEATURE_INCOMPAT_ZERO_PADDING | FEATURE_INCOMPAT_COMPR_CFGS | chunked)
                .u16(COMPR_ALG_LZ4_BIT); // available_compr_algs
        } else {
            w.u32(chunked).u16(0);
        }
        w.zeros(42); // devices, dirblkbits, xattr prefixes, packed nid, reserved
        debug_assert_eq!(w.end(), Self::SIZE);
        out
    }
}

/// The LZ4 config record right after the superblock when it has
/// compression configs: a 16-bit length (14), then `struct
/// z_erofs_lz4_cfgs`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lz4Config {
    /// Longest match distance the compressor used (LZ4's own limit).
    pub max_distance: u16,
    /// Largest pcluster in blocks: the kernel sizes its buffers by it.
    pub max_pclusterblks: u16,
}

impl Lz4Config {
    pub const SIZE: usize = 16;

    pub fn encode(&self) -> [u8; Self::SIZE] {
        let mut out = [0u8; Self::SIZE];
        let mut w = Le {
            buf: &mut out,
            pos: 0,
        };
        w.u16(14)
            .u16(self.max_distance)
            .u16(self.max_pclusterblks)
            .zeros(10);
        debug_assert_eq!(w.end(), Self::SIZE);
        out
    }
}

/// `Z_EROFS_ADVISE_BIG_PCLUSTER_1`: HEAD1 pclusters may span several
/// blocks; the first NONHEAD index after the head holds the count.
const Z_ADVISE_BIG_PCLUSTER_1: u16 = 0x0002;
/// `Z_EROFS_COMPRESSION_LZ4` in `h_algorithmtype` (HEAD1 nibble).
const Z_ALGORITHM_LZ4: u8 = 0;
/// `Z_EROFS_LI_D0_CBLKCNT`: set in `delta[0]` of the first NONHEAD
/// lcluster, whose low bits are then the pcluster's block count.
pub const Z_LI_D0_CBLKCNT: u16 = 1 << 11;

/// `struct z_erofs_map_header` (8 bytes) of a compressed inode, at the
/// first 8-byte boundary after its inode and xattrs; full indexes start 8
/// bytes after it. Logical clusters are one block; LZ4; big pclusters.
pub const Z_MAP_HEADER_SIZE: usize = 8;

pub fn z_map_header() -> [u8; Z_MAP_HEADER_SIZE] {
    let mut out = [0u8; Z_MAP_HEADER_SIZE];
    let mut w = Le {
        buf: &mut out,
        pos: 0,
    };
    w.u32(0) // h_fragmentoff / h_idata_size: no tail packing, no fragments
        .u16(Z_ADVISE_BIG_PCLUSTER_1)
        .u8(Z_ALGORITHM_LZ4)
        .u8(0); // h_clusterbits: lcluster = 2^(12 + 0) bytes
    debug_assert_eq!(w.end(), Z_MAP_HEADER_SIZE);
    out
}

/// `struct z_erofs_lcluster_index` (8 bytes), one per logical cluster of
/// a compressed inode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LclusterIndex {
    /// Stored as is in one block at `blkaddr`.
    Plain { blkaddr: u32 },
    /// Starts an LZ4 pcluster whose blocks start at `blkaddr`.
    Head { blkaddr: u32 },
    /// Inside a pcluster: `delta0` back to its head (or
    /// [`Z_LI_D0_CBLKCNT`] | block count on the first), `delta1` ahead to
    /// the next head.
    NonHead { delta0: u16, delta1: u16 },
}

impl LclusterIndex {
    pub const SIZE: usize = 8;

    pub fn encode(&self) -> [u8; Self::SIZE] {
        let mut out = [0u8; Self::SIZE];
        let mut w = Le {
            buf: &mut out,
            pos: 0,
        };
        // di_advise: the lcluster type in bits 0-1; di_clusterofs: every
        // pcluster starts at the start of its lcluster here.
        match *self {
            LclusterIndex::Plain { blkaddr } => w.u16(0).u16(0).u32(blkaddr),
            LclusterIndex::Head { blkaddr } => w.u16(1).u16(0).u32(blkaddr),
            LclusterIndex::NonHead { delta0, delta1 } => w.u16(2).u16(0).u16(delta0).u16(delta1),
        };
        debug_assert_eq!(w.end(), Self::SIZE);
        out
    }
}

/// `struct erofs_inode_extended` (64 bytes): 32-bit ids, 64-bit size and
/// its own mtime, so no field is squeezed into the compact form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InodeExtended {
    pub layout: DataLayout,
    /// Inline xattr size in 4-byte units after a 12-byte header; see
    /// [`xattr_icount`].
    pub xattr_icount: u16,
    /// File type bits and permissions.
    pub mode: u16,
    pub size: u64,
    /// `raw_blkaddr` for files, directories and symlinks; the encoded
    /// device number for char and block devices; 0 otherwise.
    pub u: u32,
    /// Only used by 32-bit `stat`; the kernel's inode number is the nid.
    pub ino: u32,
    pub uid: u32,
    pub gid: u32,
    /// Seconds since the epoch, two's complement when before it (the
    /// kernel reads `i_mtime` into a signed time64_t).
    pub mtime: u64,
    pub mtime_nsec: u32,
    pub nlink: u32,
}

impl InodeExtended {
    pub const SIZE: usize = 64;

    pub fn encode(&self) -> [u8; Self::SIZE] {
        let mut out = [0u8; Self::SIZE];
        let format = INODE_LAYOUT_EXTENDED | ((self.layout as u16) << DATALAYOUT_SHIFT);
        let mut w = Le {
            buf: &mut out,
            pos: 0,
        };
        w.u16(format)
            .u16(self.xattr_icount)
            .u16(self.mode)
            .u16(0) // i_reserved
            .u64(self.size)
            .u32(self.u)
            .u32(self.ino)
            .u32(self.uid)
            .u32(self.gid)
            .u64(self.mtime)
            .u32(self.mtime_nsec)
            .u32(self.nlink)
            .zeros(16);
        debug_assert_eq!(w.end(), Self::SIZE);
        out
    }
}

/// `struct erofs_dirent` (12 bytes). A directory block holds these for all
/// its entries, then their names back to back; the first entry's `nameoff`
/// tells the reader how many entries the block has.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dirent {
    pub nid: u64,
    /// Offset of the name from the start of the block.
    pub nameoff: u16,
    pub file_type: u8,
}

impl Dirent {
    pub const SIZE: usize = 12;

    pub fn encode(&self) -> [u8; Self::SIZE] {
        let mut out = [0u8; Self::SIZE];
        let mut w = Le {
            buf: &mut out,
            pos: 0,
        };
        w.u64(self.nid).u16(self.nameoff).u8(self.file_type).u8(0);
        debug_assert_eq!(w.end(), Self::SIZE);
        out
    }
}

/// `struct erofs_xattr_ibody_header` (12 bytes): `h_name_filter` (u32,
/// zero: the superblock does not enable the filter), `h_shared_count`
/// (u8), 7 reserved bytes; then `h_shared_count` little-endian u32 ids
/// of shared xattrs, then the inline entries.
pub const XATTR_IBODY_HEADER_SIZE: usize = 12;
/// Offset of `h_shared_count` in the ibody header.
pub const XATTR_SHARED_COUNT_AT: usize = 4;
/// `h_shared_count` is a u8: an inode refers to at most this many shared
/// xattrs.
pub const XATTR_SHARED_MAX: usize = 255;
/// Bytes of one shared xattr id in the ibody.
pub const XATTR_SHARED_ID_SIZE: usize = 4;
/// `value_size` is a u16, so EROFS stores values of at most 65535 bytes
/// (Linux allows 65536, `XATTR_SIZE_MAX`).
pub const XATTR_VALUE_MAX: usize = u16::MAX as usize;

/// `struct erofs_xattr_entry` (4 bytes), followed by the name suffix and
/// the value, padded to 4 bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct XattrEntry {
    pub name_len: u8,
    pub name_index: u8,
    pub value_size: u16,
}

impl XattrEntry {
    pub const SIZE: usize = 4;

    pub fn encode(&self) -> [u8; Self::SIZE] {
        let mut out = [0u8; Self::SIZE];
        let mut w = Le {
            buf: &mut out,
            pos: 0,
        };
        w.u8(self.name_len).u8(self.name_index).u16(self.value_size);
        debug_assert_eq!(w.end(), Self::SIZE);
        out
    }
}

/// Attribute namespaces EROFS can store, as (prefix, name index). The two
/// ACL names are whole names (stored with an empty suffix); the others are
/// prefixes of the full name. Index 5 (lustre) is not a Linux namespace.
pub const XATTR_NAMESPACES: &[(&str, u8, bool)] = &[
    ("user.", 1, true),
    ("system.posix_acl_access", 2, false),
    ("system.posix_acl_default", 3, false),
    ("trusted.", 4, true),
    ("security.", 6, true),
];

/// Splits a full attribute name into its EROFS name index and stored
/// suffix, or `None` when EROFS has no index for its namespace.
pub fn xattr_name_index(name: &str) -> Option<(u8, &str)> {
    XATTR_NAMESPACES
        .iter()
        .find_map(|&(prefix, index, is_prefix)| {
            if is_prefix {
                name.strip_prefix(prefix).map(|suffix| (index, suffix))
            } else {
                (name == prefix).then_some((index, ""))
            }
        })
}

/// `i_xattr_icount` for an inline xattr body of `ibody_len` bytes (header
/// included): one unit for the 12-byte header, then one per 4 bytes.
/// `None` when the body does not fit the 16-bit count.
pub fn xattr_icount(ibody_len: usize) -> Option<u16> {
    if ibody_len == 0 {
        return Some(0);
    }
    debug_assert!(ibody_len >= XATTR_IBODY_HEADER_SIZE && ibody_len.is_multiple_of(4));
    u16::try_from(1 + (ibody_len - XATTR_IBODY_HEADER_SIZE) / 4).ok()
}

/// Linux `new_encode_dev`: 12-bit major, 20-bit minor, interleaved so
/// that small numbers keep the old 8:8 encoding. `None` if out of range.
pub fn encode_dev(major: u32, minor: u32) -> Option<u32> {
    (major < (1 << 12) && minor < (1 << 20))
        .then_some((minor & 0xff) | (major << 8) | ((minor & !0xff) << 12))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn u16_at(b: &[u8], at: usize) -> u16 {
        u16::from_le_bytes([b[at], b[at + 1]])
    }
    fn u32_at(b: &[u8], at: usize) -> u32 {
        u32::from_le_bytes(b[at..at + 4].try_into().unwrap())
    }
    fn u64_at(b: &[u8], at: usize) -> u64 {
        u64::from_le_bytes(b[at..at + 8].try_into().unwrap())
    }

    /// Offsets as in erofs_fs.h, so a field written in the wrong order
    /// cannot go unnoticed.
    #[test]
    fn superblock_fields_sit_at_their_header_offsets() {
        let b = SuperBlock {
            root_nid: 0x1234,
            inos: 0x0102_0304_0506_0708,
            build_time: 0x1111_2222_3333_4444,
            blocks: 0xAABB_CCDD,
            meta_blkaddr: 0x0506_0708,
            xattr_blkaddr: 0x0A0B_0C0D,
            lz4: false,
            chunked: false,
        }
        .encode();
        assert_eq!(u32_at(&b, 0), MAGIC);
        assert_eq!(b[12], 12, "blkszbits");
        assert_eq!(u16_at(&b, 14), 0x1234, "root_nid");
        assert_eq!(u64_at(&b, 16), 0x0102_0304_0506_0708, "inos");
        assert_eq!(u64_at(&b, 24), 0x1111_2222_3333_4444, "build_time");
        assert_eq!(u32_at(&b, 36), 0xAABB_CCDD, "blocks");
        assert_eq!(u32_at(&b, 40), 0x0506_0708, "meta_blkaddr");
        assert_eq!(u32_at(&b, 44), 0x0A0B_0C0D, "xattr_blkaddr");
        assert!(b[48..].iter().all(|&x| x == 0));
    }

    #[test]
    fn extended_inode_fields_sit_at_their_header_offsets() {
        let b = InodeExtended {
            layout: DataLayout::FlatInline,
            xattr_icount: 7,
            mode: mode::S_IFREG | 0o4755,
            size: 0x1_0000_0001,
            u: 0xDEAD_BEEF,
            ino: 9,
            uid: 100_000,
            gid: 200_000,
            mtime: 0x1_2345_6789,
            mtime_nsec: 999_999_999,
            nlink: 3,
        }
        .encode();
        assert_eq!(u16_at(&b, 0), 1 | (2 << 1), "i_format: extended, inline");
        assert_eq!(u16_at(&b, 2), 7, "i_xattr_icount");
        assert_eq!(u16_at(&b, 4), 0o104755, "i_mode");
        assert_eq!(u64_at(&b, 8), 0x1_0000_0001, "i_size");
        assert_eq!(u32_at(&b, 16), 0xDEAD_BEEF, "i_u");
        assert_eq!(u32_at(&b, 20), 9, "i_ino");
        assert_eq!(u32_at(&b, 24), 100_000, "i_uid");
        assert_eq!(u32_at(&b, 28), 200_000, "i_gid");
        assert_eq!(u64_at(&b, 32), 0x1_2345_6789, "i_mtime");
        assert_eq!(u32_at(&b, 40), 999_999_999, "i_mtime_nsec");
        assert_eq!(u32_at(&b, 44), 3, "i_nlink");
    }

    #[test]
    fn dirent_and_xattr_entry_layouts() {
        let d = Dirent {
            nid: 0x0102_0304_0506_0708,
            nameoff: 0x0A0B,
            file_type: file_type::SYMLINK,
        }
        .encode();
        assert_eq!(d, [8, 7, 6, 5, 4, 3, 2, 1, 0x0B, 0x0A, 7, 0]);
        let e = XattrEntry {
            name_len: 10,
            name_index: 6,
            value_size: 0x0102,
        }
        .encode();
        assert_eq!(e, [10, 6, 2, 1]);
    }

    #[test]
    fn xattr_names_map_to_their_index_and_suffix() {
        assert_eq!(xattr_name_index("user.foo"), Some((1, "foo")));
        assert_eq!(xattr_name_index("system.posix_acl_access"), Some((2, "")));
        assert_eq!(xattr_name_index("system.posix_acl_default"), Some((3, "")));
        assert_eq!(
            xattr_name_index("trusted.overlay.opaque"),
            Some((4, "overlay.opaque"))
        );
        assert_eq!(
            xattr_name_index("security.capability"),
            Some((6, "capability"))
        );
        assert_eq!(xattr_name_index("system.nfs4_acl"), None);
        assert_eq!(xattr_name_index("system.posix_acl_accessX"), None);
        assert_eq!(xattr_name_index("foo.bar"), None);
    }

    #[test]
    fn xattr_icount_counts_header_then_words() {
        assert_eq!(xattr_icount(0), Some(0));
        assert_eq!(xattr_icount(12), Some(1));
        assert_eq!(xattr_icount(12 + 4 * 5), Some(6));
        assert_eq!(xattr_icount(12 + 4 * 65534), Some(u16::MAX));
        assert_eq!(xattr_icount(12 + 4 * 65535), None);
    }

    #[test]
    fn device_numbers_use_the_new_encoding() {
        assert_eq!(encode_dev(1, 3), Some(0x103));
        assert_eq!(
            encode_dev(8, 0x12345),
            Some(0x45 | (8 << 8) | (0x12300 << 12))
        );
        assert_eq!(encode_dev(4095, (1 << 20) - 1), Some(0xFFFF_FFFF));
        assert_eq!(encode_dev(4096, 0), None);
        assert_eq!(encode_dev(0, 1 << 20), None);
    }
}

//! A minimal ext4 formatter for the guest's writable disks.
//!
//! The guest kernel (libkrunfw) mounts ext4, and nothing in a guest root can
//! be assumed to hold `mkfs`, so the host formats the disk itself, on a new
//! sparse file. It writes only metadata, a few dozen blocks whatever the size:
//! groups past the first are marked uninitialised (`uninit_bg`: the kernel
//! derives their bitmaps) and every inode table is declared zeroed, which a
//! sparse file is, so the kernel's lazy inode-table zeroing never runs.
//!
//! ```text
//! block size 4096, 32768 blocks (128 MiB) per group, first data block 0
//!
//! group 0:  [0: boot 1 KiB + superblock][1..=G: group descriptors]
//!           [block bitmap][inode bitmap][inode table: ipg/16 blocks]
//!           [root directory][lost+found][journal: J blocks, optional]
//! group g:  [superblock + descriptors copy, if g is 1 or a power of 3, 5, 7]
//!           [block bitmap][inode bitmap][inode table]   (flags: uninit)
//! ```
//!
//! Features: `has_journal` (when asked), `ext_attr` (overlayfs keeps
//! whiteouts and opaque markers in xattrs), `dir_index`; `filetype`,
//! `extents`; `sparse_super`, `large_file`, `uninit_bg`, `dir_nlink`,
//! `extra_isize`. No `64bit` (hence the size cap), no `metadata_csum`, no
//! `resize_inode` (the disk is never grown in place). Inodes are 256 bytes,
//! one per 16 KiB of disk, at most 8192 per group.
//!
//! Checked by `e2fsck -fn` and `debugfs` in the unit tests below and by the
//! guest kernel in tests/tests/boot_storage.rs.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;

/// Bytes per block. 4 KiB: the page size, and what mke2fs picks for any
/// disk this size.
pub const BLOCK: u64 = 4096;
const BLOCKS_PER_GROUP: u64 = 8 * BLOCK;
const INODE_SIZE: u64 = 256;
const INODES_PER_BLOCK: u64 = BLOCK / INODE_SIZE;
/// One inode per 16 KiB of disk (mke2fs's default ratio).
const BYTES_PER_INODE: u64 = 16 * 1024;
const MAX_INODES_PER_GROUP: u64 = 8192;
const DESC_SIZE: u64 = 32;
/// The smallest disk formatted: one group with room for its metadata, the
/// root, lost+found, the smallest journal jbd2 accepts and some data.
pub const MIN_BYTES: u64 = 16 << 20;
/// Without the `64bit` feature block numbers are 32 bits (16 TiB); the cap
/// is lower because the descriptor table and its backups are written at
/// format time (about 1.5 MiB of them at 2 TiB).
pub const MAX_BYTES: u64 = 2 << 40;

const ROOT_INO: u32 = 2;
const JOURNAL_INO: u32 = 8;
const LOST_FOUND_INO: u32 = 11;
const FIRST_INO: u32 = 11;

const BG_INODE_UNINIT: u16 = 1;
const BG_BLOCK_UNINIT: u16 = 2;
const BG_INODE_ZEROED: u16 = 4;

const S_IFDIR: u16 = 0o040000;
const S_IFREG: u16 = 0o100000;
const EXT4_EXTENTS_FL: u32 = 0x8_0000;
const FT_DIR: u8 = 2;

/// What [`format()`] made, for callers and tests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Geometry {
    pub blocks: u64,
    pub groups: u64,
    pub inodes_per_group: u64,
    pub journal_blocks: u64,
}

/// Options of one format.
pub struct Options<'a> {
    /// Volume label (at most 16 bytes are kept).
    pub label: &'a str,
    /// A jbd2 journal: a disk that outlives the VM (the persistent storage)
    /// then survives a VM killed mid-write. A throw-away overlay needs none.
    pub journal: bool,
}

struct Layout {
    blocks: u64,
    groups: u64,
    ipg: u64,
    itable_blocks: u64,
    gdt_blocks: u64,
    journal_blocks: u64,
}

fn has_backup(g: u64) -> bool {
    fn power_of(mut n: u64, base: u64) -> bool {
        while n.is_multiple_of(base) {
            n /= base;
        }
        n == 1
    }
    g <= 1 || power_of(g, 3) || power_of(g, 5) || power_of(g, 7)
}

impl Layout {
    fn new(bytes: u64, journal: bool) -> io::Result<Layout> {
        if !(MIN_BYTES..=MAX_BYTES).contains(&bytes) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("disk size {bytes} bytes is outside {MIN_BYTES}..={MAX_BYTES}"),
            ));
        }
        let mut blocks = bytes / BLOCK;
        let groups = blocks.div_ceil(BLOCKS_PER_GROUP);
        let ipg = (bytes / BYTES_PER_INODE)
            .div_ceil(groups)
            .next_multiple_of(INODES_PER_BLOCK)
            .clamp(INODES_PER_BLOCK, MAX_INODES_PER_GROUP);
        let mut l = Layout {
            blocks,
            groups,
            ipg,
            itable_blocks: ipg / INODES_PER_BLOCK,
            gdt_blocks: (groups * DESC_SIZE).div_ceil(BLOCK),
            journal_blocks: 0,
        };
        // A last group too small for its own metadata and some data is
        // left unused (as mke2fs does).
        let last = blocks - (groups - 1) * BLOCKS_PER_GROUP;
        if groups > 1 && last < l.overhead(groups - 1) + 64 {
            blocks -= last;
            l.blocks = blocks;
            l.groups -= 1;
            l.gdt_blocks = (l.groups * DESC_SIZE).div_ceil(BLOCK);
        }
        if journal {
            // jbd2's minimum is 1024 blocks; larger disks get more room for
            // big transactions. One extent holds up to 32768 blocks, and the
            // journal stays inside group 0.
            l.journal_blocks = match l.blocks {
                b if b < 1 << 16 => 1024,
                b if b < 1 << 18 => 4096,
                _ => 16384,
            };
        }
        if l.group_blocks(0) < l.overhead(0) + 2 + l.journal_blocks + 64 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("disk of {bytes} bytes is too small for its metadata"),
            ));
        }
        Ok(l)
    }

    fn group_start(&self, g: u64) -> u64 {
        g * BLOCKS_PER_GROUP
    }

    fn group_blocks(&self, g: u64) -> u64 {
        (self.blocks - self.group_start(g)).min(BLOCKS_PER_GROUP)
    }

    /// Blocks at the start of group g that hold metadata.
    fn overhead(&self, g: u64) -> u64 {
        let backup = if has_backup(g) {
            1 + self.gdt_blocks
        } else {
            0
        };
        backup + 2 + self.itable_blocks
    }

    /// First block of group g's block bitmap (then inode bitmap, inode table).
    fn bitmaps(&self, g: u64) -> u64 {
        self.group_start(g) + self.overhead(g) - 2 - self.itable_blocks
    }

    fn root_block(&self) -> u64 {
        self.overhead(0)
    }

    fn lost_found_block(&self) -> u64 {
        self.overhead(0) + 1
    }

    fn journal_start(&self) -> u64 {
        self.overhead(0) + 2
    }

    /// Blocks group g uses when formatted.
    fn used(&self, g: u64) -> u64 {
        let extra = if g == 0 { 2 + self.journal_blocks } else { 0 };
        self.overhead(g) + extra
    }
}

fn put16(b: &mut [u8], at: usize, v: u16) {
    b[at..at + 2].copy_from_slice(&v.to_le_bytes());
}

fn put32(b: &mut [u8], at: usize, v: u32) {
    b[at..at + 4].copy_from_slice(&v.to_le_bytes());
}

fn put32be(b: &mut [u8], at: usize, v: u32) {
    b[at..at + 4].copy_from_slice(&v.to_be_bytes());
}

/// Values the layout bounds to 32 bits (blocks < 2^32 by MAX_BYTES).
fn u32_of(v: u64) -> u32 {
    u32::try_from(v).expect("bounded by MAX_BYTES")
}

fn u16_of(v: u64) -> u16 {
    u16::try_from(v).expect("bounded by the group size")
}

/// CRC-16 (polynomial 0x8005, reflected), the group descriptor checksum of
/// `uninit_bg` (e2fsprogs' and the kernel's `crc16`).
fn crc16(mut crc: u16, data: &[u8]) -> u16 {
    for &byte in data {
        crc ^= u16::from(byte);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xA001
            } else {
                crc >> 1
            };
        }
    }
    crc
}

fn set_bits(bitmap: &mut [u8], range: std::ops::Range<u64>) {
    for bit in range {
        let i = usize::try_from(bit / 8).expect("bit within one block");
        bitmap[i] |= 1 << (bit % 8);
    }
}

fn now() -> u32 {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    // ext4's 32-bit seconds (extra bits unused here) saturate in 2106.
    u32::try_from(secs).unwrap_or(u32::MAX)
}

fn random16() -> io::Result<[u8; 16]> {
    let mut b = [0u8; 16];
    let mut f = File::open("/dev/urandom")?;
    io::Read::read_exact(&mut f, &mut b)?;
    Ok(b)
}

/// A 256-byte inode with one extent of `len` blocks at `start`.
fn inode(mode: u16, links: u16, start: u64, len: u64, time: u32) -> [u8; 256] {
    let mut i = [0u8; 256];
    put16(&mut i, 0x00, mode);
    let size = len * BLOCK;
    put32(&mut i, 0x04, u32_of(size & 0xffff_ffff));
    put32(&mut i, 0x6C, u32_of(size >> 32));
    for at in [0x08, 0x0C, 0x10, 0x90] {
        put32(&mut i, at, time); // atime, ctime, mtime, crtime
    }
    put16(&mut i, 0x1A, links);
    put32(&mut i, 0x1C, u32_of(len * (BLOCK / 512)));
    put32(&mut i, 0x20, EXT4_EXTENTS_FL);
    // i_block: extent header (magic, entries, max, depth 0), one extent.
    put16(&mut i, 0x28, 0xF30A);
    put16(&mut i, 0x2A, 1);
    put16(&mut i, 0x2C, 4);
    put32(&mut i, 0x34, 0); // first logical block
    put16(&mut i, 0x38, u16_of(len));
    put16(&mut i, 0x3A, u16_of(start >> 32));
    put32(&mut i, 0x3C, u32_of(start & 0xffff_ffff));
    put16(&mut i, 0x80, 32); // i_extra_isize
    i
}

fn dir_entry(b: &mut [u8], at: usize, ino: u32, rec_len: u16, name: &[u8]) -> usize {
    put32(b, at, ino);
    put16(b, at + 4, rec_len);
    b[at + 6] = u8::try_from(name.len()).expect("short name");
    b[at + 7] = FT_DIR;
    b[at + 8..at + 8 + name.len()].copy_from_slice(name);
    at + usize::from(rec_len)
}

fn write_block(file: &File, block: u64, data: &[u8]) -> io::Result<()> {
    file.write_all_at(data, block * BLOCK)
}

/// Formats `file` as an empty ext4 filesystem of `bytes` (rounded down to
/// whole blocks). The file's previous contents are discarded: it is
/// truncated to zero and extended sparsely, so every block the format does
/// not write reads as zeros, which the inode tables rely on.
pub fn format(file: &File, bytes: u64, opts: &Options<'_>) -> io::Result<Geometry> {
    let l = Layout::new(bytes, opts.journal)?;
    file.set_len(0)?;
    file.set_len(l.blocks * BLOCK)?;
    let time = now();
    let uuid = random16()?;
    let hash_seed = random16()?;

    // Each step below is one function for the reader and inlined here for
    // the stub: as calls they cost it 1,408 bytes (measured, release).
    let (gdt, free) = group_descriptors(&l, &uuid);
    write_bitmaps(file, &l)?;
    let journal_i_block = write_inode_table(file, &l, time)?;
    write_directories(file, &l)?;
    write_journal_superblock(file, &l, &uuid)?;
    let sb = superblock(&l, opts, time, &uuid, &hash_seed, free, &journal_i_block);
    // The superblock, copied with the descriptors into the backup groups;
    // the primary is written last, so a format cut short has no magic.
    write_superblocks(file, &l, sb, &gdt)?;
    Ok(Geometry {
        blocks: l.blocks,
        groups: l.groups,
        inodes_per_group: l.ipg,
        journal_blocks: l.journal_blocks,
    })
}

/// Free blocks and free inodes over all groups, as the superblock counts them.
#[derive(Clone, Copy)]
struct FreeCounts {
    blocks: u64,
    inodes: u64,
}

/// The group descriptor table, and the free counts it records.
#[inline(always)]
fn group_descriptors(l: &Layout, uuid: &[u8; 16]) -> (Vec<u8>, FreeCounts) {
    let mut gdt = vec![0u8; usize::try_from(l.gdt_blocks * BLOCK).expect("capped size")];
    let (mut free_blocks, mut free_inodes) = (0u64, 0u64);
    for g in 0..l.groups {
        let d = &mut gdt[usize::try_from(g * DESC_SIZE).expect("capped size")..]
            [..usize::try_from(DESC_SIZE).expect("32")];
        let bb = l.bitmaps(g);
        put32(d, 0x00, u32_of(bb));
        put32(d, 0x04, u32_of(bb + 1));
        put32(d, 0x08, u32_of(bb + 2));
        let free = l.group_blocks(g) - l.used(g);
        let used_inodes = if g == 0 { u64::from(FIRST_INO) } else { 0 };
        put16(d, 0x0C, u16_of(free));
        put16(d, 0x0E, u16_of(l.ipg - used_inodes));
        put16(d, 0x10, if g == 0 { 2 } else { 0 });
        let flags = match g {
            0 => BG_INODE_ZEROED,
            // The kernel derives an uninitialised block bitmap, padding
            // included; mke2fs still writes the last group's, and so do we.
            _ if g == l.groups - 1 => BG_INODE_ZEROED | BG_INODE_UNINIT,
            _ => BG_INODE_ZEROED | BG_INODE_UNINIT | BG_BLOCK_UNINIT,
        };
        put16(d, 0x12, flags);
        put16(d, 0x1C, u16_of(l.ipg - used_inodes));
        let mut crc = crc16(0xffff, uuid);
        crc = crc16(crc, &u32_of(g).to_le_bytes());
        crc = crc16(crc, &d[..0x1E]);
        put16(d, 0x1E, crc);
        free_blocks += free;
        free_inodes += l.ipg - used_inodes;
    }

    (
        gdt,
        FreeCounts {
            blocks: free_blocks,
            inodes: free_inodes,
        },
    )
}

/// Group 0's bitmaps, and the last group's block bitmap.
#[inline(always)]
fn write_bitmaps(file: &File, l: &Layout) -> io::Result<()> {
    let mut bitmap = vec![0u8; 4096];
    set_bits(&mut bitmap, 0..l.used(0));
    set_bits(&mut bitmap, l.group_blocks(0)..BLOCKS_PER_GROUP);
    write_block(file, l.bitmaps(0), &bitmap)?;
    bitmap.fill(0);
    set_bits(&mut bitmap, 0..u64::from(FIRST_INO));
    set_bits(&mut bitmap, l.ipg..BLOCKS_PER_GROUP);
    write_block(file, l.bitmaps(0) + 1, &bitmap)?;
    if l.groups > 1 {
        let g = l.groups - 1;
        bitmap.fill(0);
        set_bits(&mut bitmap, 0..l.used(g));
        set_bits(&mut bitmap, l.group_blocks(g)..BLOCKS_PER_GROUP);
        write_block(file, l.bitmaps(g), &bitmap)?;
    }
    Ok(())
}

/// Inodes 1..=16 live in the first block of group 0's inode table; returns
/// the journal inode's `i_block` (the superblock keeps a copy).
#[inline(always)]
fn write_inode_table(file: &File, l: &Layout, time: u32) -> io::Result<Vec<u8>> {
    let mut itable = vec![0u8; 4096];
    let mut put_inode = |ino: u32, data: &[u8; 256]| {
        let at = usize::try_from((u64::from(ino) - 1) * INODE_SIZE).expect("first block");
        itable[at..at + 256].copy_from_slice(data);
    };
    put_inode(
        ROOT_INO,
        &inode(S_IFDIR | 0o755, 3, l.root_block(), 1, time),
    );
    put_inode(
        LOST_FOUND_INO,
        &inode(S_IFDIR | 0o700, 2, l.lost_found_block(), 1, time),
    );
    if l.journal_blocks > 0 {
        put_inode(
            JOURNAL_INO,
            &inode(
                S_IFREG | 0o600,
                1,
                l.journal_start(),
                l.journal_blocks,
                time,
            ),
        );
    }
    let journal_i_block: Vec<u8> = itable[(JOURNAL_INO as usize - 1) * 256..][0x28..0x64].to_vec();
    write_block(file, l.bitmaps(0) + 2, &itable)?;
    Ok(journal_i_block)
}

/// Directories: "." and ".." then lost+found in the root.
#[inline(always)]
fn write_directories(file: &File, l: &Layout) -> io::Result<()> {
    let mut dir = vec![0u8; 4096];
    let at = dir_entry(&mut dir, 0, ROOT_INO, 12, b".");
    let at = dir_entry(&mut dir, at, ROOT_INO, 12, b"..");
    dir_entry(&mut dir, at, LOST_FOUND_INO, 4096 - 24, b"lost+found");
    write_block(file, l.root_block(), &dir)?;
    dir.fill(0);
    let at = dir_entry(&mut dir, 0, LOST_FOUND_INO, 12, b".");
    dir_entry(&mut dir, at, ROOT_INO, 4096 - 12, b"..");
    write_block(file, l.lost_found_block(), &dir)?;
    Ok(())
}

/// The journal's superblock (big-endian, jbd2 v2): empty and clean
/// (s_start 0); its remaining blocks are the file's zeros.
#[inline(always)]
fn write_journal_superblock(file: &File, l: &Layout, uuid: &[u8; 16]) -> io::Result<()> {
    if l.journal_blocks > 0 {
        let mut j = vec![0u8; 4096];
        put32be(&mut j, 0x00, 0xC03B_3998); // magic
        put32be(&mut j, 0x04, 4); // superblock v2
        put32be(&mut j, 0x0C, u32_of(BLOCK));
        put32be(&mut j, 0x10, u32_of(l.journal_blocks));
        put32be(&mut j, 0x14, 1); // first log block
        put32be(&mut j, 0x18, 1); // first expected sequence
        j[0x30..0x40].copy_from_slice(uuid);
        put32be(&mut j, 0x40, 1); // users: this filesystem
        write_block(file, l.journal_start(), &j)?;
    }

    Ok(())
}

/// The primary superblock's bytes (group number 0).
#[inline(always)]
fn superblock(
    l: &Layout,
    opts: &Options<'_>,
    time: u32,
    uuid: &[u8; 16],
    hash_seed: &[u8; 16],
    free: FreeCounts,
    journal_i_block: &[u8],
) -> Vec<u8> {
    let mut sb = vec![0u8; 1024];
    put32(&mut sb, 0x00, u32_of(l.groups * l.ipg));
    put32(&mut sb, 0x04, u32_of(l.blocks));
    put32(&mut sb, 0x0C, u32_of(free.blocks));
    put32(&mut sb, 0x10, u32_of(free.inodes));
    put32(&mut sb, 0x18, 2); // log2(block size) - 10
    put32(&mut sb, 0x1C, 2); // clusters are blocks
    put32(&mut sb, 0x20, u32_of(BLOCKS_PER_GROUP));
    put32(&mut sb, 0x24, u32_of(BLOCKS_PER_GROUP));
    put32(&mut sb, 0x28, u32_of(l.ipg));
    put32(&mut sb, 0x30, time); // wtime
    put16(&mut sb, 0x36, 0xFFFF); // no mount-count fsck (-1)
    put16(&mut sb, 0x38, 0xEF53);
    put16(&mut sb, 0x3A, 1); // clean
    put16(&mut sb, 0x3C, 1); // errors: continue
    put32(&mut sb, 0x40, time); // lastcheck
    put32(&mut sb, 0x4C, 1); // dynamic revision
    put32(&mut sb, 0x54, FIRST_INO);
    put16(&mut sb, 0x58, u16_of(INODE_SIZE));
    let journal = if l.journal_blocks > 0 { 0x4 } else { 0 };
    put32(&mut sb, 0x5C, journal | 0x8 | 0x20); // ext_attr, dir_index
    put32(&mut sb, 0x60, 0x2 | 0x40); // filetype, extents
    put32(&mut sb, 0x64, 0x1 | 0x2 | 0x10 | 0x20 | 0x40);
    sb[0x68..0x78].copy_from_slice(uuid);
    let label = opts.label.as_bytes();
    let n = label.len().min(16);
    sb[0x78..0x78 + n].copy_from_slice(&label[..n]);
    if l.journal_blocks > 0 {
        put32(&mut sb, 0xE0, JOURNAL_INO);
        sb[0xFD] = 1; // s_jnl_blocks holds a copy of the journal's i_block
        sb[0x10C..0x10C + 60].copy_from_slice(journal_i_block);
        put32(&mut sb, 0x10C + 15 * 4, 0); // i_size_high
        put32(&mut sb, 0x10C + 16 * 4, u32_of(l.journal_blocks * BLOCK));
    }
    sb[0xEC..0xFC].copy_from_slice(hash_seed);
    sb[0xFC] = 1; // half_md4
    put32(&mut sb, 0x100, 0x4 | 0x8); // user_xattr, acl
    put32(&mut sb, 0x108, time); // mkfs_time
    put16(&mut sb, 0x15C, 32); // min_extra_isize
    put16(&mut sb, 0x15E, 32); // want_extra_isize
    put32(&mut sb, 0x160, 0x2); // unsigned directory hash
    sb
}

/// The superblock and the descriptors into each backup group (numbered),
/// then into group 0.
#[inline(always)]
fn write_superblocks(file: &File, l: &Layout, mut sb: Vec<u8>, gdt: &[u8]) -> io::Result<()> {
    for g in (1..l.groups).filter(|&g| has_backup(g)) {
        put16(&mut sb, 0x5A, u16_of(g));
        let start = l.group_start(g);
        file.write_all_at(&sb, start * BLOCK)?;
        file.write_all_at(gdt, (start + 1) * BLOCK)?;
    }
    put16(&mut sb, 0x5A, 0);
    file.write_all_at(gdt, BLOCK)?;
    file.write_all_at(&sb, 1024)?;
    Ok(())
}

/// Whether `file` starts with an ext4 superblock (the last thing [`format()`]
/// writes).
pub fn is_formatted(file: &File) -> io::Result<bool> {
    let mut magic = [0u8; 2];
    match file.read_exact_at(&mut magic, 1024 + 0x38) {
        Ok(()) => Ok(magic == 0xEF53u16.to_le_bytes()),
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Ok(false),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;
    use std::process::Command;

    /// e2fsprogs is a test prerequisite (scripts/setup-harness.sh installs it).
    fn tool(name: &str) -> String {
        for dir in ["/usr/sbin", "/sbin", "/usr/bin"] {
            let p = format!("{dir}/{name}");
            if Path::new(&p).exists() {
                return p;
            }
        }
        panic!("{name} not found: install e2fsprogs (scripts/setup-harness.sh does)");
    }

    fn fsck(path: &Path, used_inodes: u32) -> String {
        let out = Command::new(tool("e2fsck"))
            .arg("-fn")
            .arg(path)
            .output()
            .unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            out.status.success(),
            "e2fsck -fn {}:\n{text}",
            path.display()
        );
        // Nothing but the banner, the five passes and the summary: no
        // warning, no question answered "no".
        let other: Vec<&str> = text
            .lines()
            .filter(|l| !l.starts_with("e2fsck ") && !l.starts_with("Pass "))
            .collect();
        assert!(
            other.len() == 1 && other[0].starts_with(&format!("smolvm-test: {used_inodes}/")),
            "e2fsck -fn {}:\n{text}",
            path.display()
        );
        text
    }

    fn debugfs(path: &Path, write: bool, cmd: &str) -> String {
        let mut c = Command::new(tool("debugfs"));
        if write {
            c.arg("-w");
        }
        let out = c.arg("-R").arg(cmd).arg(path).output().unwrap();
        assert!(out.status.success(), "debugfs {cmd}");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn formatted(bytes: u64, journal: bool) -> (tempfile::TempDir, std::path::PathBuf, Geometry) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("disk.ext4");
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)
            .unwrap();
        let geo = format(
            &file,
            bytes,
            &Options {
                label: "smolvm-test",
                journal,
            },
        )
        .unwrap();
        assert!(is_formatted(&file).unwrap());
        (dir, path, geo)
    }

    /// Sizes that exercise one partial group, whole groups, a dropped tiny
    /// last group, many backup groups and a second descriptor block.
    #[test]
    fn e2fsck_finds_nothing_to_fix() {
        for (bytes, journal) in [
            (MIN_BYTES, true),
            (MIN_BYTES, false),
            (100 << 20, true),
            (1 << 30, true),
            ((1 << 30) + (100 << 10), false), // last group of 25 blocks: dropped
            ((3 << 30) + (77 << 20), true),
            (20 << 30, true),
            (600 << 30, false), // 4800 groups: two descriptor blocks
        ] {
            let (_dir, path, geo) = formatted(bytes, journal);
            fsck(&path, FIRST_INO);
            let stats = debugfs(&path, false, "stats");
            assert!(
                stats.contains("Filesystem magic number:  0xEF53"),
                "{stats}"
            );
            let features = stats
                .lines()
                .find(|l| l.starts_with("Filesystem features:"))
                .unwrap();
            for f in [
                "ext_attr",
                "dir_index",
                "filetype",
                "extent",
                "sparse_super",
                "uninit_bg",
            ] {
                assert!(features.contains(f), "{features}");
            }
            assert_eq!(features.contains("has_journal"), journal, "{features}");
            let count = |key: &str| -> u64 {
                let line = stats.lines().find(|l| l.starts_with(key)).unwrap();
                line[key.len()..].trim().parse().unwrap()
            };
            assert_eq!(count("Block count:"), geo.blocks);
            assert_eq!(count("Inodes per group:"), geo.inodes_per_group);
            assert_eq!(geo.blocks.div_ceil(BLOCKS_PER_GROUP), geo.groups);
            // Sparse: only metadata was written.
            let meta = std::fs::metadata(&path).unwrap();
            let on_disk = std::os::unix::fs::MetadataExt::blocks(&meta) * 512;
            assert!(on_disk < 4 << 20, "{bytes}: {on_disk} bytes allocated");
        }
    }

    /// libext2fs (the same code as e2fsck) can use what was formatted:
    /// files written into uninitialised groups leave a consistent disk.
    #[test]
    fn files_written_by_debugfs_check_clean() {
        let (dir, path, _) = formatted(1 << 30, true);
        let src = dir.path().join("payload");
        std::fs::write(&src, vec![7u8; 3 << 20]).unwrap();
        debugfs(&path, true, "mkdir state");
        for i in 0..4 {
            debugfs(&path, true, &format!("write {} state/f{i}", src.display()));
        }
        fsck(&path, 16);
        let ls = debugfs(&path, false, "ls -l state");
        assert!(ls.contains("f3"), "{ls}");
        let journal = debugfs(&path, false, "logdump");
        // Clean and empty: jbd2 replays nothing at the first mount.
        assert!(
            journal.contains("Journal starts at block 0, transaction 1"),
            "{journal}"
        );
    }

    #[test]
    fn sizes_outside_the_range_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let file = File::create(dir.path().join("d")).unwrap();
        let opts = Options {
            label: "x",
            journal: true,
        };
        assert!(format(&file, MIN_BYTES - 1, &opts).is_err());
        assert!(format(&file, MAX_BYTES + 1, &opts).is_err());
    }

    #[test]
    fn backup_groups_are_sparse_super_ones() {
        let got: Vec<u64> = (0..200).filter(|&g| has_backup(g)).collect();
        assert_eq!(got, [0, 1, 3, 5, 7, 9, 25, 27, 49, 81, 125]);
    }

    #[test]
    fn an_unformatted_file_is_recognised() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("d");
        std::fs::write(&path, vec![0u8; 8192]).unwrap();
        assert!(!is_formatted(&File::open(&path).unwrap()).unwrap());
        std::fs::write(&path, b"short").unwrap();
        assert!(!is_formatted(&File::open(&path).unwrap()).unwrap());
    }
}

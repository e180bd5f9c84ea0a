//! EROFS images at scale: a directory of 100,000 entries (dirent blocks,
//! binary search by the kernel) and a 5 GiB file (64-bit size, block
//! addresses past 2^20, streamed from a sparse host file).

mod erofs_support;

use std::fs::File;
use std::io::{Seek, SeekFrom, Write};
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::Path;

use erofs_support::*;
use smolvm_rootfs::erofs::{ErofsOptions, ImagePlan};
use smolvm_rootfs::tree::{FileData, NodeKind, Tree};

#[test]
fn a_hundred_thousand_entries_in_one_directory() {
    const N: usize = 100_000;
    let mut tree = Tree::default();
    tree.nodes.insert("big".into(), dir());
    for i in 0..N {
        // Varied name lengths so dirent blocks end at varied offsets.
        let name = format!("big/entry-{i:06}{}", "-".repeat(i % 23));
        let content = vec![b"abcdefghijklmnopqrstuvwxyz"[i % 26]; i % 5];
        tree.nodes.insert(name, file(&content));
    }
    tree.nodes.insert("big/sub".into(), dir());
    let scratch = tempfile::tempdir().unwrap();
    let opts = ErofsOptions::default();
    let image = write_to_file(&tree, &opts, scratch.path());
    // Entries of 12 + ~20 bytes: the directory spans hundreds of blocks.
    let info = dump(&image, &["--path=/big"]);
    let size: u64 = dump_field(&info, "Size:")
        .split_whitespace()
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!(size > 500 * 4096, "{info}");
    check_image_by_mount(&tree, &opts, &image);
    if let Some(m) = mount(&image) {
        // Lookups, not only readdir: first, last, around block edges.
        for i in [0, 1, 127, 128, 4999, 50_000, N - 1] {
            let name = format!("big/entry-{i:06}{}", "-".repeat(i % 23));
            let meta = std::fs::symlink_metadata(m.path().join(&name)).unwrap();
            assert_eq!(meta.len(), (i % 5) as u64, "{name}");
        }
        assert!(std::fs::symlink_metadata(m.path().join("big/entry-100000")).is_err());
        assert_eq!(std::fs::metadata(m.path().join("big")).unwrap().nlink(), 3);
    }
}

/// Writes to a file, leaving holes for all-zero 4 KiB blocks, so a 5 GiB
/// image of a sparse file takes little disk.
struct SparseSink {
    file: File,
    pos: u64,
}

impl Write for SparseSink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        const ZERO: [u8; 4096] = [0; 4096];
        // Up to the next 4 KiB boundary, so each piece is one block's.
        let room = 4096 - (self.pos % 4096) as usize;
        let piece = &buf[..buf.len().min(room)];
        if piece == &ZERO[..piece.len()] {
            self.file.seek(SeekFrom::Current(piece.len() as i64))?;
        } else {
            self.file.write_all(piece)?;
        }
        self.pos += piece.len() as u64;
        Ok(piece.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        // A trailing hole still counts towards the length.
        self.file.set_len(self.pos)
    }
}

fn read_at(path: &Path, offset: u64, len: usize) -> Vec<u8> {
    let mut buf = vec![0u8; len];
    File::open(path)
        .unwrap()
        .read_exact_at(&mut buf, offset)
        .unwrap();
    buf
}

#[test]
fn a_five_gib_sparse_host_file() {
    const LEN: u64 = (5 << 30) + 123;
    let scratch = tempfile::tempdir().unwrap();
    let host = scratch.path().join("sparse");
    let f = File::create(&host).unwrap();
    f.set_len(LEN).unwrap();
    // Markers at the start, across the 4 GiB line (32-bit i_size would
    // wrap there), in a middle block, and in the inline tail.
    let markers = [0u64, (4 << 30) - 3, 3 * 4096 * 100_003 + 17, LEN - 100];
    for (i, &at) in markers.iter().enumerate() {
        f.write_all_at(format!("marker-{i}").as_bytes(), at)
            .unwrap();
    }
    drop(f);

    let mut tree = Tree::default();
    tree.nodes.insert(
        "big".into(),
        node(
            0o644,
            NodeKind::File(FileData::Host {
                path: host.clone(),
                len: LEN,
            }),
        ),
    );
    tree.nodes
        .insert("small".into(), file(b"after the big one"));
    let plan = ImagePlan::new(&tree, &ErofsOptions::default()).unwrap();
    let image = scratch.path().join("image.erofs");
    let mut sink = SparseSink {
        file: File::create(&image).unwrap(),
        pos: 0,
    };
    let n = plan.write_to(&mut sink, &|_| {}).unwrap();
    sink.flush().unwrap();
    assert_eq!(n, plan.image_len());
    assert_eq!(std::fs::metadata(&image).unwrap().len(), n);
    // Its holes take no blocks (chunk-based): the image holds the chunks
    // with markers, the block map and the rest of the tree.
    assert!(n < 2 << 20, "a {n}-byte image");

    let info = dump(&image, &["--path=/big"]);
    assert!(info.contains(&format!("Size: {LEN} ")), "{info}");
    fsck(&image, None);

    let Some(m) = mount(&image) else { return };
    let big = m.path().join("big");
    assert_eq!(std::fs::metadata(&big).unwrap().len(), LEN);
    for (i, &at) in markers.iter().enumerate() {
        let want = format!("marker-{i}");
        assert_eq!(
            read_at(&big, at, want.len()),
            want.as_bytes(),
            "marker {i} at {at}"
        );
    }
    // Sampled ranges, block-aligned and not, equal the host file's.
    for at in [
        4096u64,
        (2 << 30) + 5,
        (4 << 30) - 4096,
        LEN - 4096 - 50,
        LEN - 123,
    ] {
        let len = usize::try_from(LEN - at).map_or(8192, |n| n.min(8192));
        assert_eq!(
            read_at(&big, at, len),
            read_at(&host, at, len),
            "range at {at}"
        );
    }
    assert_eq!(
        std::fs::read(m.path().join("small")).unwrap(),
        b"after the big one"
    );
}

//! EROFS images of hand-made trees: every entry kind and edge the writer
//! handles, checked by fsck.erofs (with extraction) and a kernel mount;
//! determinism, mtime clamping, the reserved length, and the errors for
//! host files that changed while packing.

mod erofs_support;

use std::cell::Cell;
use std::collections::BTreeMap;
use std::io::Write;

use erofs_support::*;
use smolvm_rootfs::erofs::{write_image, Compression, ErofsOptions, ImagePlan};
use smolvm_rootfs::tree::{FileData, Node, NodeKind, Tree};
use smolvm_rootfs::RootfsError;

fn insert(tree: &mut Tree, path: &str, node: Node) {
    tree.nodes.insert(path.to_string(), node);
}

/// A POSIX ACL as the kernel's xattr form: version 2, then (tag, perm, id)
/// entries sorted by tag: user::rwx, user:1000:r-x, group::r-x, mask::r-x,
/// other::---.
fn acl() -> Vec<u8> {
    let mut v = 2u32.to_le_bytes().to_vec();
    for (tag, perm, id) in [
        (1u16, 7u16, u32::MAX),
        (2, 5, 1000),
        (4, 5, u32::MAX),
        (0x10, 5, u32::MAX),
        (0x20, 0, u32::MAX),
    ] {
        v.extend_from_slice(&tag.to_le_bytes());
        v.extend_from_slice(&perm.to_le_bytes());
        v.extend_from_slice(&id.to_le_bytes());
    }
    v
}

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| i.to_le_bytes()[0].wrapping_mul(31).wrapping_add(seed))
        .collect()
}

/// Every kind of entry and the edges of the layout.
fn kitchen_sink(host_dir: &std::path::Path) -> Tree {
    let mut t = Tree::default();
    insert(&mut t, "bin", dir());
    insert(&mut t, "etc", node(0o2755, NodeKind::Dir));
    insert(&mut t, "tmp", node(0o1777, NodeKind::Dir));
    insert(&mut t, "usr", dir());
    insert(&mut t, "usr/lib", dir());
    insert(&mut t, "usr/lib/deep", dir());
    insert(&mut t, "usr/lib/deep/er", dir());
    insert(&mut t, "usr/lib/deep/er/file", file(b"deep"));
    insert(&mut t, "empty-dir", node(0o700, NodeKind::Dir));

    // Sizes around the block size: empty, tiny, one byte short of where
    // the tail no longer fits beside the inode, exactly one and two
    // blocks, blocks plus a tail.
    for len in [
        0usize,
        1,
        100,
        4031,
        4032,
        4033,
        4095,
        4096,
        4097,
        8192,
        3 * 4096 + 7,
    ] {
        insert(
            &mut t,
            &format!("usr/lib/size-{len}"),
            file(&pattern(len, len.to_le_bytes()[0])),
        );
    }
    // Files read from the host at write time.
    for len in [0usize, 5, 4096, 10_000] {
        let host = host_dir.join(format!("host-{len}"));
        std::fs::write(&host, pattern(len, 7)).unwrap();
        insert(
            &mut t,
            &format!("usr/lib/host-{len}"),
            node(
                0o644,
                NodeKind::File(FileData::Host {
                    path: host,
                    len: len as u64,
                }),
            ),
        );
    }

    // Modes, owners beyond 16 bits, an mtime beyond 32 bits.
    insert(
        &mut t,
        "bin/su",
        Node {
            uid: 0,
            ..node(0o4755, NodeKind::File(FileData::Inline(b"#!su".to_vec())))
        },
    );
    insert(
        &mut t,
        "bin/wall",
        node(0o2755, NodeKind::File(FileData::Inline(b"wall".to_vec()))),
    );
    insert(
        &mut t,
        "bin/odd",
        node(0o7000, NodeKind::File(FileData::Inline(vec![]))),
    );
    insert(
        &mut t,
        "bin/owned",
        Node {
            uid: 100_000,
            gid: 4_000_000_000,
            mtime: 1 << 33,
            ..file(b"owned")
        },
    );

    // Symlinks: short, absolute, dangling, and one target of 4000 bytes
    // (inline beside the inode), one of 4095 bytes (too long to inline).
    insert(
        &mut t,
        "bin/sh",
        node(0o777, NodeKind::Symlink("busybox".into())),
    );
    insert(
        &mut t,
        "bin/abs",
        node(0o777, NodeKind::Symlink("/usr/lib/deep/er/file".into())),
    );
    insert(
        &mut t,
        "bin/dangling",
        node(0o777, NodeKind::Symlink("../nowhere".into())),
    );
    let long_target = format!("/{}", "d/".repeat(1999) + "x");
    insert(
        &mut t,
        "bin/long-link",
        node(0o777, NodeKind::Symlink(long_target)),
    );
    let longest = format!("/{}", "e".repeat(4094));
    insert(
        &mut t,
        "bin/longest-link",
        node(0o777, NodeKind::Symlink(longest)),
    );

    // Hard links: a chain, across directories, to a file with blocks.
    insert(&mut t, "bin/busybox", file(&pattern(9000, 1)));
    insert(
        &mut t,
        "bin/ls",
        node(0o644, NodeKind::HardLink("bin/busybox".into())),
    );
    insert(
        &mut t,
        "usr/lib/cat",
        node(0o644, NodeKind::HardLink("bin/ls".into())),
    );
    insert(
        &mut t,
        "etc/a-link",
        node(0o644, NodeKind::HardLink("usr/lib/size-1".into())),
    );

    // Devices and a fifo.
    insert(&mut t, "dev", dir());
    insert(
        &mut t,
        "dev/null",
        node(0o666, NodeKind::Char { major: 1, minor: 3 }),
    );
    insert(
        &mut t,
        "dev/sda",
        node(0o660, NodeKind::Block { major: 8, minor: 0 }),
    );
    insert(
        &mut t,
        "dev/big",
        node(
            0o600,
            NodeKind::Char {
                major: 4095,
                minor: (1 << 20) - 1,
            },
        ),
    );
    insert(
        &mut t,
        "dev/mid",
        node(
            0o600,
            NodeKind::Block {
                major: 259,
                minor: 65_536,
            },
        ),
    );
    insert(&mut t, "dev/initctl", node(0o600, NodeKind::Fifo));

    // Xattrs of every namespace, on files, a directory, a symlink, a device.
    let mut ping = file(b"ping");
    ping.xattrs.insert(
        "security.capability".into(),
        vec![
            1, 0, 0, 2, 0, 0x20, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
        ],
    );
    ping.xattrs.insert(
        "user.mime_type".into(),
        b"application/x-executable".to_vec(),
    );
    ping.xattrs
        .insert("trusted.overlay.opaque".into(), b"y".to_vec());
    ping.xattrs.insert("system.posix_acl_access".into(), acl());
    insert(
        &mut t,
        "bin/ping",
        Node {
            mode: 0o750,
            ..ping
        },
    );
    let mut xdir = node(0o750, NodeKind::Dir);
    xdir.xattrs.insert("system.posix_acl_default".into(), acl());
    xdir.xattrs.insert("user.empty".into(), vec![]);
    insert(&mut t, "xdir", xdir);
    let mut xlink = node(0o777, NodeKind::Symlink("target".into()));
    xlink.xattrs.insert(
        "security.selinux".into(),
        b"system_u:object_r:bin_t:s0\0".to_vec(),
    );
    insert(&mut t, "xdir/link", xlink);
    let mut xdev = node(
        0o600,
        NodeKind::Char {
            major: 10,
            minor: 200,
        },
    );
    xdev.xattrs.insert("trusted.t".into(), vec![0xff; 300]);
    insert(&mut t, "xdir/tun", xdev);
    // Xattrs that leave no room for the file's tail: it goes to a block.
    let mut fat = file(&pattern(3000, 3));
    fat.xattrs.insert("user.big".into(), vec![b'v'; 2000]);
    insert(&mut t, "xdir/fat", fat);

    // Names: the longest, odd bytes, ones sorting before ".", non-ASCII.
    let names = [
        "n".repeat(255),
        "!bang".into(),
        " space".into(),
        "-dash".into(),
        "+plus".into(),
        "tab\there".into(),
        "new\nline".into(),
        "back\\slash".into(),
        "ünïcödé-名前-🦀".into(),
        "\u{7f}del".into(),
        ".hidden".into(),
        "..dots".into(),
        "...".into(),
    ];
    insert(&mut t, "names", dir());
    for n in &names {
        insert(&mut t, &format!("names/{n}"), file(n.as_bytes()));
    }

    // A directory of several dirent blocks.
    insert(&mut t, "many", dir());
    for i in 0..700 {
        insert(
            &mut t,
            &format!("many/entry-{i:05}-{}", "x".repeat(i % 40)),
            file(&[]),
        );
        if i % 50 == 0 {
            insert(&mut t, &format!("many/sub-{i}"), dir());
        }
    }

    // A directory of exactly one full block ("." 13 + ".." 14 + 31 entries
    // of 12 + 120 or 12 + 97 bytes = 4096): no tail, so stored plain.
    insert(&mut t, "exact", dir());
    for i in 0..31 {
        let len = if i == 30 { 97 } else { 120 };
        let name = format!("{i:03}{}", "e".repeat(len - 3));
        insert(&mut t, &format!("exact/{name}"), file(&[]));
    }
    t
}

#[test]
fn every_kind_of_entry_round_trips() {
    let scratch = tempfile::tempdir().unwrap();
    let tree = kitchen_sink(scratch.path());
    let opts = ErofsOptions::default();
    let image = write_to_file(&tree, &opts, scratch.path());
    check_image(&tree, &opts, &image);

    let sb = dump(&image, &["-s"]);
    assert_eq!(dump_field(&sb, "Filesystem magic number:"), "0xE0F5E1E2");
    assert_eq!(dump_field(&sb, "Filesystem root nid:"), "36");
    let inodes = tree
        .nodes
        .values()
        .filter(|n| !matches!(n.kind, NodeKind::HardLink(_)))
        .count()
        + 1;
    assert_eq!(
        dump_field(&sb, "Filesystem inode count:"),
        inodes.to_string()
    );
    let len = std::fs::metadata(&image).unwrap().len();
    assert_eq!(
        dump_field(&sb, "Filesystem blocks:"),
        (len / 4096).to_string()
    );

    // Small files and directories take no data block: the image is the
    // metadata plus the blocks of files over 4 KiB.
    let root = dump(&image, &["--path=/"]);
    assert!(root.contains("Layout: 2"), "root dir inline:\n{root}");
    let big = dump(&image, &["--path=/usr/lib/size-4096"]);
    assert!(
        big.contains("Layout: 0"),
        "a full block stays plain:\n{big}"
    );
    let exact = dump(&image, &["--path=/exact"]);
    assert!(
        exact.contains("Size: 4096 ") && exact.contains("Layout: 0"),
        "{exact}"
    );
}

/// Pseudo-random bytes: LZ4 saves nothing on them.
fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = 0x9E37_79B9_7F4A_7C15u64 ^ seed;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x.to_le_bytes()[0]
        })
        .collect()
}

/// LZ4: the kitchen sink plus files that exercise the compressed layout
/// (several extents, an index longer than a metadata block, extents that
/// stay plain between compressed ones, a file that saves nothing) round
/// trip through fsck.erofs and a mount, the compressed files are
/// compressed, the others are not, the image is smaller, and the same
/// tree gives the same bytes.
#[test]
fn lz4_compressed_files_round_trip() {
    let scratch = tempfile::tempdir().unwrap();
    let mut tree = kitchen_sink(scratch.path());
    insert(&mut tree, "usr/share", dir());
    let text: Vec<u8> = b"the quick brown fox jumps over the lazy dog 0123456789\n"
        .iter()
        .copied()
        .cycle()
        .take(6_000_123)
        .collect();
    insert(&mut tree, "usr/share/big-text", file(&text));
    let mut mixed = pattern(3 * 131_072, 3);
    mixed.splice(131_072..2 * 131_072, noise(131_072, 1));
    mixed.extend(pattern(5000, 9));
    insert(&mut tree, "usr/share/noise", file(&noise(300_000, 2)));
    // Larger than a worker keeps in memory (8 MiB of compressed blocks):
    // one whose blocks go to the spool in pieces, one that saves nothing
    // after filling the spool (which takes it back).
    let mut large = Vec::with_capacity(24 << 20);
    for i in 0..(24u64 << 20) / 131_072 {
        large.extend(if i % 2 == 0 {
            noise(131_072, i)
        } else {
            pattern(131_072, i.to_le_bytes()[0])
        });
    }
    large.extend(pattern(777, 1));
    // Read from the host at write time, like a packed tree's files.
    for (name, bytes) in [
        ("mixed", mixed),
        ("large-mixed", large),
        ("large-noise", noise(10 << 20, 3)),
    ] {
        let host = scratch.path().join(name);
        std::fs::write(&host, &bytes).unwrap();
        insert(
            &mut tree,
            &format!("usr/share/{name}"),
            node(
                0o640,
                NodeKind::File(FileData::Host {
                    path: host,
                    len: bytes.len() as u64,
                }),
            ),
        );
    }
    insert(&mut tree, "usr/share/two-blocks", file(&pattern(8192, 5)));

    let lz4 = ErofsOptions {
        compression: Compression::Lz4,
        ..ErofsOptions::default()
    };
    let image = write_to_file(&tree, &lz4, scratch.path());
    check_image(&tree, &lz4, &image);

    for (path, layout) in [
        ("/usr/share/big-text", "Layout: 1"),
        ("/usr/share/mixed", "Layout: 1"),
        ("/usr/share/two-blocks", "Layout: 1"),
        ("/usr/share/noise", "Layout: 2"),
        ("/usr/share/large-mixed", "Layout: 1"),
        ("/usr/share/large-noise", "Layout: 0"),
        ("/usr/lib/size-100", "Layout: 2"),
    ] {
        let d = dump(&image, &[&format!("--path={path}")]);
        assert!(d.contains(layout), "{path}: want {layout}:\n{d}");
    }
    let sub = |name: &str| {
        let d = scratch.path().join(name);
        std::fs::create_dir(&d).unwrap();
        d
    };
    let plain = write_to_file(&tree, &ErofsOptions::default(), &sub("plain"));
    let (zlen, plen) = (
        std::fs::metadata(&image).unwrap().len(),
        std::fs::metadata(&plain).unwrap().len(),
    );
    // The text compresses ~100x, the mixed file by half; the noise not.
    assert!(
        zlen + 17 * (1 << 20) < plen,
        "compressed image {zlen} bytes, plain {plen}"
    );
    let again = write_to_file(&tree, &lz4, &sub("again"));
    assert!(
        std::fs::read(&image).unwrap() == std::fs::read(&again).unwrap(),
        "two compressed writes of one tree differ"
    );
}

#[test]
fn a_root_too_big_for_block_0_moves_to_block_1() {
    // 100 entries of 12 + 18 bytes: a 3027-byte root directory, whose
    // inline record does not fit the 2944 bytes after the superblock.
    let mut tree = Tree::default();
    for i in 0..100 {
        insert(&mut tree, &format!("root-entry-{i:07}"), file(b"r"));
    }
    let scratch = tempfile::tempdir().unwrap();
    let opts = ErofsOptions::default();
    let image = write_to_file(&tree, &opts, scratch.path());
    let sb = dump(&image, &["-s"]);
    assert_eq!(dump_field(&sb, "Filesystem root nid:"), "128");
    check_image(&tree, &opts, &image);
}

#[test]
fn same_tree_gives_same_bytes_and_clamp_caps_mtimes() {
    let scratch = tempfile::tempdir().unwrap();
    let tree = kitchen_sink(scratch.path());
    let image = |opts: &ErofsOptions| {
        let mut out = Vec::new();
        write_image(&tree, &mut out, opts, &|_| {}).unwrap();
        out
    };
    let plain = ErofsOptions::default();
    assert!(
        image(&plain) == image(&plain),
        "two writes of one tree differ"
    );

    let clamped = ErofsOptions {
        clamp_mtime: Some(1_600_000_000),
        ..ErofsOptions::default()
    };
    let a = image(&clamped);
    assert!(a == image(&clamped));
    assert!(a != image(&plain));
    let path = scratch.path().join("clamped.erofs");
    std::fs::write(&path, &a).unwrap();
    // check_image expects min(mtime, clamp) everywhere.
    check_image(&tree, &clamped, &path);
    let sb = dump(&path, &["-s"]);
    assert!(
        dump_field(&sb, "Filesystem created:").contains("2020"),
        "{sb}"
    );
}

#[test]
fn length_is_known_before_writing_and_progress_counts_content() {
    let scratch = tempfile::tempdir().unwrap();
    let tree = kitchen_sink(scratch.path());
    let plan = ImagePlan::new(&tree, &ErofsOptions::default()).unwrap();
    let last = Cell::new(0u64);
    let mut out = Vec::new();
    let n = plan
        .write_to(&mut out, &|done| {
            assert!(done >= last.get(), "progress went backwards");
            last.set(done);
        })
        .unwrap();
    assert_eq!(n, plan.image_len());
    assert_eq!(out.len() as u64, n);
    assert_eq!(n % 4096, 0);
    let content: u64 = tree
        .nodes
        .values()
        .map(|n| match &n.kind {
            NodeKind::File(d) => d.len(),
            _ => 0,
        })
        .sum();
    assert_eq!(last.get(), content);
}

#[test]
fn an_empty_tree_is_a_mountable_root() {
    let scratch = tempfile::tempdir().unwrap();
    let tree = Tree::default();
    let opts = ErofsOptions::default();
    let image = write_to_file(&tree, &opts, scratch.path());
    assert_eq!(std::fs::metadata(&image).unwrap().len(), 4096);
    check_image(&tree, &opts, &image);
}

fn host_file_tree(host: &std::path::Path, len: u64) -> Tree {
    let mut t = Tree::default();
    insert(
        &mut t,
        "f",
        node(
            0o644,
            NodeKind::File(FileData::Host {
                path: host.to_path_buf(),
                len,
            }),
        ),
    );
    t
}

fn write_err(tree: &Tree) -> RootfsError {
    write_image(tree, std::io::sink(), &ErofsOptions::default(), &|_| {}).unwrap_err()
}

#[test]
fn host_files_that_changed_size_fail_naming_file_and_entry() {
    let scratch = tempfile::tempdir().unwrap();
    let host = scratch.path().join("data");
    // Empty, tail only, blocks only, blocks and tail: each read path checks.
    let cases = [0u64, 100, 8192, 8292].into_iter().flat_map(|recorded| {
        [recorded.wrapping_sub(1), recorded + 1, 0]
            .into_iter()
            .filter(move |&actual| actual != recorded && actual != u64::MAX)
            .map(move |actual| (recorded, actual))
    });
    for (recorded, actual) in cases {
        std::fs::write(&host, vec![1u8; usize::try_from(actual).unwrap()]).unwrap();
        let e = write_err(&host_file_tree(&host, recorded));
        let msg = e.to_string();
        let want = if actual < recorded {
            "shorter"
        } else {
            "longer"
        };
        assert!(
            matches!(e, RootfsError::Entry { .. }),
            "{recorded}/{actual}: {msg}"
        );
        assert!(
            msg.contains(want)
                && msg.contains("\"f\"")
                && msg.contains(&host.display().to_string()),
            "{recorded}/{actual}: {msg}"
        );
    }

    // A file that changes between the tail's read (metadata pass) and
    // its blocks' read (data pass) is caught too.
    for (grow, want) in [(false, "shorter"), (true, "longer")] {
        std::fs::write(&host, vec![1u8; 8292]).unwrap();
        let tree = host_file_tree(&host, 8292);
        let plan = ImagePlan::new(&tree, &ErofsOptions::default()).unwrap();
        let changed = Cell::new(false);
        let e = plan
            .write_to(std::io::sink(), &|done| {
                if !changed.replace(true) {
                    assert_eq!(done, 100, "the tail is read first");
                    let f = std::fs::OpenOptions::new().write(true).open(&host).unwrap();
                    f.set_len(if grow { 9000 } else { 8000 }).unwrap();
                }
            })
            .unwrap_err();
        assert!(e.to_string().contains(want), "{e}");
    }

    std::fs::remove_file(&host).unwrap();
    let e = write_err(&host_file_tree(&host, 5));
    assert!(matches!(e, RootfsError::Io { .. }), "{e}");
    assert!(e.to_string().contains(&host.display().to_string()), "{e}");
}

#[test]
fn a_failing_sink_is_an_io_error() {
    struct Full;
    impl Write for Full {
        fn write(&mut self, _: &[u8]) -> std::io::Result<usize> {
            Err(std::io::Error::new(
                std::io::ErrorKind::StorageFull,
                "disk full",
            ))
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut t = Tree::default();
    insert(&mut t, "f", file(&[0; 5 << 20]));
    let e = write_image(&t, Full, &ErofsOptions::default(), &|_| {}).unwrap_err();
    assert!(matches!(e, RootfsError::Io { .. }), "{e}");
    assert_eq!(e.to_string(), "erofs image: writing the image");
}

#[test]
fn invalid_entries_are_refused_before_writing() {
    let bad_xattr = {
        let mut n = file(b"x");
        n.xattrs = BTreeMap::from([("os2.name".to_string(), vec![1])]);
        n
    };
    for (path, node, want) in [
        ("x".repeat(256), file(b"x"), "at most 255"),
        ("f".into(), bad_xattr, "xattr \"os2.name\""),
        (
            "h".into(),
            node(0o644, NodeKind::HardLink("nowhere".into())),
            "not in the tree",
        ),
    ] {
        let mut t = Tree::default();
        insert(&mut t, &path, node);
        let mut out = Vec::new();
        let e = write_image(&t, &mut out, &ErofsOptions::default(), &|_| {}).unwrap_err();
        assert!(e.to_string().contains(want), "{e}");
        assert!(e.to_string().contains(&format!("entry {path:?}")), "{e}");
        assert!(out.is_empty(), "nothing is written for an invalid tree");
    }
}

/// Host files with holes are stored chunk-based: the holes take no
/// blocks, and fsck.erofs and the kernel read every byte back (issue 22:
/// a 2 GiB sparse file made a 2 GiB image). Files without holes, and
/// small ones, stay flat.
#[test]
fn sparse_host_files_keep_their_holes_in_the_image() {
    use std::os::unix::fs::FileExt;
    let scratch = tempfile::tempdir().unwrap();
    let host = |name: &str, len: u64, data: &[(u64, &[u8])]| {
        let p = scratch.path().join(name);
        let f = std::fs::File::create(&p).unwrap();
        f.set_len(len).unwrap();
        for (at, bytes) in data {
            f.write_all_at(bytes, *at).unwrap();
        }
        node(0o644, NodeKind::File(FileData::Host { path: p, len }))
    };
    let mut t = Tree::default();
    let big = 600u64 << 20;
    // Data at the start, mid-way (across a chunk edge) and in the last byte.
    insert(
        &mut t,
        "sparse",
        host(
            "sparse",
            big,
            &[(0, b"head"), ((300 << 20) - 3, b"across"), (big - 1, b"!")],
        ),
    );
    insert(&mut t, "all-hole", host("all-hole", 3 << 20, &[]));
    insert(
        &mut t,
        "odd-length",
        host("odd-length", (5 << 20) + 77, &[((5 << 20) + 70, b"tail")]),
    );
    insert(
        &mut t,
        "dense",
        host("dense", 2 << 20, &[(0, &pattern(2 << 20, 9))]),
    );
    let opts = ErofsOptions::default();
    let image = write_to_file(&t, &opts, scratch.path());
    let len = std::fs::metadata(&image).unwrap().len();
    assert!(
        len < (4 << 20),
        "image of {len} bytes for 2 MiB of dense data and holes"
    );
    let info = dump(&image, &["--path=/sparse"]);
    assert!(info.contains("Layout: 4"), "chunk-based: {info}");
    // fsck.erofs checks the image; its 1.5 --extract writes a chunk-based
    // file's data back to back, leaving the holes out, so the kernel is the
    // reader that compares contents.
    fsck(&image, None);
    match mount(&image) {
        Some(m) => assert_same(
            &expected(&t, None, Reader::Mount),
            &scan(m.path(), Reader::Mount),
            "kernel mount",
        ),
        None => eprintln!("contents not compared: no kernel mount here"),
    }
}

/// Issue 22: xattrs over ~4 KB per inode were refused, and an attribute
/// that many inodes share was stored once per inode. Now values up to
/// EROFS's 65535 bytes fit, an inode may have hundreds, and repeats are
/// stored once: the kernel and fsck.erofs read them all, and so does the
/// in-tree reader.
#[test]
fn shared_xattrs_hold_large_values_and_store_repeats_once() {
    let scratch = tempfile::tempdir().unwrap();
    // A file capability whose bytes hold a newline, and an ACL.
    let cap = vec![
        0, 0, 0, 2, 0x0a, 0x20, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    ];
    let shared_pair = |n: &mut Node| {
        n.xattrs.insert("security.capability".into(), cap.clone());
        n.xattrs.insert("system.posix_acl_access".into(), acl());
    };
    let mut t = Tree::default();
    let mut root = dir();
    root.xattrs.insert("user.root".into(), vec![0xff; 5000]);
    insert(&mut t, "", root);
    insert(&mut t, "bin", dir());
    for i in 0..400 {
        let mut n = file(format!("tool {i}").as_bytes());
        shared_pair(&mut n);
        if i % 7 == 0 {
            n.xattrs
                .insert("user.own".into(), format!("{i}\n").into_bytes());
        }
        insert(&mut t, &format!("bin/tool{i:03}"), n);
    }
    // The largest values EROFS stores, beside inline data.
    let mut max = file(&pattern(10_000, 3));
    max.xattrs.insert("user.max".into(), pattern(65_535, 1));
    max.xattrs.insert("trusted.max".into(), pattern(65_535, 2));
    max.xattrs.insert("user.small".into(), b"s".to_vec());
    insert(&mut t, "max", max);
    // Hundreds of distinct attributes on one directory (60 KB of
    // values: 200 shared) and one symlink (255 shared, the rest inline).
    let mut many = dir();
    let mut link = node(0o777, NodeKind::Symlink("max".into()));
    for i in 0..300 {
        if i < 200 {
            many.xattrs
                .insert(format!("user.attr{i:03}"), pattern(200 + i, 7));
        }
        link.xattrs
            .insert(format!("trusted.t{i:03}"), pattern(10 + i % 50, 9));
    }
    insert(&mut t, "many", many);
    insert(&mut t, "link", link);
    let mut dev = node(0o600, NodeKind::Char { major: 1, minor: 3 });
    dev.xattrs
        .insert("security.selinux".into(), pattern(6000, 4));
    insert(&mut t, "null", dev);

    for compression in [Compression::None, Compression::Lz4] {
        let opts = ErofsOptions {
            compression,
            ..ErofsOptions::default()
        };
        let image = write_to_file(&t, &opts, scratch.path());
        check_image(&t, &opts, &image);

        let bytes = std::fs::read(&image).unwrap();
        let r = smolvm_rootfs::erofs::read::ImageReader::new(&bytes).unwrap();
        for e in r.entries().unwrap() {
            let want: Vec<(String, Vec<u8>)> = t.nodes[&e.path]
                .xattrs
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            let mut got = r.xattrs(&e).unwrap();
            got.sort();
            assert_eq!(got, want, "in-tree reader, {:?}", e.path);
        }
        // Same tree, same bytes.
        let again = write_to_file(&t, &opts, scratch.path());
        assert_eq!(std::fs::read(&again).unwrap(), bytes);
    }

    // One copy of the repeated pair: 400 inodes hold two 4-byte ids each
    // instead of two inline entries (24 + 36 bytes).
    let image = write_to_file(&t, &ErofsOptions::default(), scratch.path());
    let sb = dump(&image, &["-s"]);
    eprintln!(
        "image {} bytes; {}",
        std::fs::metadata(&image).unwrap().len(),
        sb.lines()
            .find(|l| l.contains("xattr"))
            .unwrap_or("(no xattr line in dump.erofs -s)")
    );
}

/// What is over EROFS's limits is refused naming the entry: a value of
/// Linux's largest size (65536) and more than one block inline beside
/// 255 shared attributes.
#[test]
fn xattrs_beyond_erofs_limits_are_refused_naming_the_entry() {
    let mut t = Tree::default();
    let mut n = file(b"x");
    n.xattrs.insert("user.huge".into(), vec![0; 65_536]);
    insert(&mut t, "huge", n);
    let e = write_image(&t, std::io::sink(), &ErofsOptions::default(), &|_| {})
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("\"huge\"") && e.contains("user.huge") && e.contains("at most 65535"),
        "{e}"
    );
}

/// Issue 22: messages name entries by their bytes, escaped (`\xff`,
/// `\n`), once: not the tree's internal characters for bytes that are not
/// UTF-8, not escaped twice.
#[test]
fn messages_show_names_that_are_not_utf8_escaped() {
    let name = smolvm_rootfs::tree::name_from_bytes(b"bad\xff\n\"name");
    let mut bad_xattr = file(b"");
    bad_xattr.xattrs.insert("os2.x".into(), vec![]);
    let mut t = Tree::default();
    insert(&mut t, &name, bad_xattr);
    let e = write_err(&t).to_string();
    assert!(e.contains(r#"entry "bad\xff\n\"name": xattr"#), "{e}");

    let scratch = tempfile::tempdir().unwrap();
    let host = scratch.path().join("f");
    std::fs::write(&host, b"abc").unwrap();
    let mut t = Tree::default();
    insert(
        &mut t,
        &name,
        node(
            0o644,
            NodeKind::File(FileData::Host {
                path: host,
                len: 10,
            }),
        ),
    );
    let e = write_err(&t).to_string();
    assert!(e.contains(r#"entry "bad\xff\n\"name": "#), "{e}");
    assert!(e.contains("is shorter than the 10 bytes"), "{e}");

    let mut t = Tree::default();
    insert(&mut t, &format!("{name}/child"), file(b""));
    let e = write_err(&t).to_string();
    assert!(
        e.contains(r#"parent "bad\xff\n\"name" is not in the tree"#),
        "{e}"
    );
}

//! Arbitrary trees round-trip through an EROFS image: fsck.erofs accepts
//! each image and extracts the same tree, and the kernel mounts it and
//! shows the same tree (full modes, xattrs, link counts, shared inodes).

mod erofs_support;

use std::collections::BTreeMap;

use erofs_support::*;
use proptest::prelude::*;
use smolvm_rootfs::erofs::{Compression, ErofsOptions};
use smolvm_rootfs::tree::{name_bytes, name_from_bytes, FileData, Node, NodeKind, Tree};

#[derive(Debug, Clone, Copy)]
enum Noise {
    None,
    All,
    OddBlocks,
}

#[derive(Debug, Clone)]
enum Kind {
    Dir,
    File {
        len: usize,
        seed: u8,
        host: bool,
        /// Bytes that do not compress: none, all, or every other 4 KiB.
        noise: Noise,
    },
    Symlink(String),
    /// Picks one of the files made so far.
    HardLink(usize),
    Char(u32, u32),
    Block(u32, u32),
    Fifo,
    Socket,
}

#[derive(Debug, Clone)]
struct Spec {
    /// Picks one of the directories made so far as the parent.
    parent: usize,
    name: String,
    kind: Kind,
    mode: u32,
    uid: u64,
    gid: u64,
    mtime: (i64, u32),
    xattrs: BTreeMap<String, Vec<u8>>,
}

/// Any UTF-8 name the kernel takes, mostly short, sometimes up to the
/// 255-byte limit.
fn name() -> impl Strategy<Value = String> {
    // Names are bytes: some are not UTF-8 at all (the tree carries them
    // as in smolvm_rootfs::tree::name_from_bytes).
    let bytes = prop::collection::vec(prop_oneof![1u8..=46, 48u8..=255], 1..12)
        .prop_map(|b| name_from_bytes(&b));
    prop_oneof![
        6 => "[^/\u{0}]{1,12}",
        2 => bytes,
        1 => "[a-zA-Z0-9é_.-]{200,255}",
    ]
    .prop_map(|mut n| {
        while name_bytes(&n).len() > 255 {
            n.pop();
        }
        n
    })
    .prop_filter("not . or ..", |n| n != "." && n != "..")
}

fn kind() -> impl Strategy<Value = Kind> {
    // Sizes up to three blocks and a bit, with the block edges likely;
    // now and then a file over several 128 KiB compression extents.
    let len = prop_oneof![
        8 => 0usize..=3 * 4096 + 100,
        4 => prop::sample::select(vec![
            0usize, 1, 4031, 4032, 4033, 4095, 4096, 4097, 8192, 12_288,
            131_072, 131_073, 135_168,
        ]),
        1 => 4096usize..=400_000,
    ];
    let noise = prop_oneof![Just(Noise::None), Just(Noise::All), Just(Noise::OddBlocks)];
    prop_oneof![
        3 => Just(Kind::Dir),
        5 => (len, any::<u8>(), any::<bool>(), noise)
            .prop_map(|(len, seed, host, noise)| Kind::File { len, seed, host, noise }),
        2 => prop_oneof![
            3 => "[^\u{0}]{1,40}",
            1 => prop::collection::vec(1u8..=255, 1..40).prop_map(|b| name_from_bytes(&b)),
            1 => (1usize..4095).prop_map(|n| "t".repeat(n)),
        ].prop_map(Kind::Symlink),
        2 => any::<usize>().prop_map(Kind::HardLink),
        1 => (0u32..4096, 0u32..(1 << 20)).prop_map(|(a, b)| Kind::Char(a, b)),
        1 => (0u32..4096, 0u32..(1 << 20)).prop_map(|(a, b)| Kind::Block(a, b)),
        1 => Just(Kind::Fifo),
        1 => Just(Kind::Socket),
    ]
}

fn id() -> impl Strategy<Value = u64> {
    prop_oneof![
        Just(0u64),
        Just(1000),
        Just(65_534),
        0u64..=u64::from(u32::MAX)
    ]
}

fn xattrs() -> impl Strategy<Value = BTreeMap<String, Vec<u8>>> {
    let name = (
        prop::sample::select(vec!["user.", "trusted.", "security."]),
        "[a-z0-9_.]{1,24}",
    )
        .prop_map(|(p, s)| format!("{p}{s}"));
    prop::collection::btree_map(name, prop::collection::vec(any::<u8>(), 0..120), 0..4)
}

fn spec() -> impl Strategy<Value = Spec> {
    // mtimes from 1902 to 2^33 s (past 32 bits, short of 2446): the range
    // the ext4 that fsck.erofs extracts onto can store; nanoseconds too.
    (
        any::<usize>(),
        name(),
        kind(),
        0u32..=0o7777,
        id(),
        id(),
        (
            -(1i64 << 31) + 1..(1 << 33),
            prop_oneof![Just(0u32), 0u32..1_000_000_000],
        ),
        xattrs(),
    )
        .prop_map(|(parent, name, kind, mode, uid, gid, mtime, xattrs)| Spec {
            parent,
            name,
            kind,
            mode,
            uid,
            gid,
            mtime,
            xattrs,
        })
}

/// Builds a tree from specs: parents are directories made earlier, hard
/// links point at files (or links) made earlier, repeated names dropped.
fn build(specs: Vec<Spec>, host_dir: &std::path::Path) -> Tree {
    let mut tree = Tree::default();
    let mut dirs = vec![String::new()];
    let mut files: Vec<String> = vec![];
    for (i, s) in specs.into_iter().enumerate() {
        let parent = &dirs[s.parent % dirs.len()];
        let path = if parent.is_empty() {
            s.name.clone()
        } else {
            format!("{parent}/{}", s.name)
        };
        if tree.nodes.contains_key(&path) {
            continue;
        }
        let mut xattrs = s.xattrs;
        let kind = match s.kind {
            Kind::Dir => NodeKind::Dir,
            Kind::File {
                len,
                seed,
                host,
                noise,
            } => {
                let mut x = 0x9E37_79B9_7F4A_7C15u64 ^ u64::from(seed);
                let bytes: Vec<u8> = (0..len)
                    .map(|j| {
                        x ^= x << 13;
                        x ^= x >> 7;
                        x ^= x << 17;
                        let random = match noise {
                            Noise::None => false,
                            Noise::All => true,
                            Noise::OddBlocks => j / 4096 % 2 == 1,
                        };
                        if random {
                            x.to_le_bytes()[0]
                        } else {
                            j.to_le_bytes()[0].wrapping_mul(seed | 1) ^ seed
                        }
                    })
                    .collect();
                if host {
                    let p = host_dir.join(format!("h{i}"));
                    std::fs::write(&p, &bytes).unwrap();
                    NodeKind::File(FileData::Host {
                        path: p,
                        len: len as u64,
                    })
                } else {
                    NodeKind::File(FileData::Inline(bytes))
                }
            }
            Kind::Symlink(t) => NodeKind::Symlink(t),
            Kind::HardLink(_) if files.is_empty() => {
                NodeKind::File(FileData::Inline(b"x".to_vec()))
            }
            Kind::HardLink(k) => NodeKind::HardLink(files[k % files.len()].clone()),
            Kind::Char(a, b) => NodeKind::Char { major: a, minor: b },
            Kind::Block(a, b) => NodeKind::Block { major: a, minor: b },
            Kind::Fifo => NodeKind::Fifo,
            Kind::Socket => NodeKind::Socket,
        };
        // Linux allows user.* only on files and directories.
        if !matches!(kind, NodeKind::Dir | NodeKind::File(_)) {
            xattrs.retain(|k, _| !k.starts_with("user."));
        }
        match kind {
            NodeKind::Dir => dirs.push(path.clone()),
            // Hard links may name any inode but a directory.
            _ => files.push(path.clone()),
        }
        let node = Node {
            mode: s.mode,
            uid: s.uid,
            gid: s.gid,
            mtime: s.mtime.0,
            mtime_nsec: s.mtime.1,
            kind,
            xattrs,
        };
        tree.nodes.insert(path, node);
    }
    tree
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 32,
        // Shrinking re-runs fsck and a mount per step; keep it bounded.
        max_shrink_iters: 200,
        ..ProptestConfig::default()
    })]

    #[test]
    fn arbitrary_trees_round_trip(
        specs in prop::collection::vec(spec(), 0..60),
        clamp in prop::option::of(0u64..(1 << 33)),
        lz4 in any::<bool>(),
    ) {
        let scratch = tempfile::tempdir().unwrap();
        let tree = build(specs, scratch.path());
        let compression = if lz4 { Compression::Lz4 } else { Compression::None };
        let opts = ErofsOptions { clamp_mtime: clamp, compression };
        let image = write_to_file(&tree, &opts, scratch.path());
        check_image(&tree, &opts, &image);
    }
}

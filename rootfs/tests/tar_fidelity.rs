//! Archives made by real tools read as the same tree as the directory they
//! were made from: GNU tar in its gnu, posix and ustar formats (with
//! `--xattrs`, `--acls`, `-S` and each PAX sparse version) and Python's
//! tarfile. The posix archive's image, loop-mounted, shows what the source
//! directory shows.
//!
//! The source holds what archives have tripped on: xattr values with
//! newlines and binary bytes (a `security.capability` blob with 0x0a, an
//! ACL), names and symlink targets with newlines, long names, hard links
//! to a symlink, a fifo and a device, a sparse file, mtimes before 1970
//! and with nanoseconds, and a root directory with its own owner, mode,
//! mtime and xattr. Parts that need root (owners, devices, the security
//! and system xattrs) are left out when not running as root.

mod erofs_support;

use std::collections::BTreeMap;
use std::fs::FileTimes;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use erofs_support::{fnv1a, mount, scan, write_to_file, Reader};
use smolvm_rootfs::erofs::ErofsOptions;
use smolvm_rootfs::tree::{name_bytes, FileData, NodeKind, Tree};

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// A time `secs` (negative: before 1970) plus `nsec` after the epoch.
fn time(secs: i64, nsec: u32) -> SystemTime {
    let base = if secs >= 0 {
        UNIX_EPOCH + Duration::from_secs(secs.unsigned_abs())
    } else {
        UNIX_EPOCH - Duration::from_secs(secs.unsigned_abs())
    };
    base + Duration::from_nanos(u64::from(nsec))
}

fn set_mtime(path: &Path, secs: i64, nsec: u32) {
    let f = std::fs::File::options().read(true).open(path).unwrap();
    f.set_times(FileTimes::new().set_modified(time(secs, nsec)))
        .unwrap();
}

fn chmod(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

fn mknod(path: &Path, mode: libc::mode_t, dev: libc::dev_t) {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes()).unwrap();
    // SAFETY: c is NUL-terminated.
    let r = unsafe { libc::mknod(c.as_ptr(), mode, dev) };
    assert_eq!(
        r,
        0,
        "mknod {}: {}",
        path.display(),
        std::io::Error::last_os_error()
    );
}

/// A POSIX ACL in the kernel's xattr form: user::rwx, user:1000:r-x,
/// group::r-x, mask::r-x, other::---.
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

const SPARSE_LEN: u64 = 10 << 20;

/// Builds the source tree under `root`. `full`: long names, names with
/// newlines and an mtime before 1970 (what ustar cannot hold).
fn make_source(root: &Path, full: bool) {
    let p = |rel: &str| root.join(rel);
    for d in ["bin", "lib", "dev", "d", "tmp"] {
        std::fs::create_dir(p(d)).unwrap();
    }
    std::fs::write(p("bin/prog"), b"#!/bin/sh\necho hi\n").unwrap();
    chmod(&p("bin/prog"), 0o4755);
    xattr::set(p("bin/prog"), "user.bin", b"a\nb\0c\xff").unwrap();
    std::fs::hard_link(p("bin/prog"), p("bin/prog-again")).unwrap();
    std::os::unix::fs::symlink("../bin/prog", p("lib/sym")).unwrap();
    std::fs::hard_link(p("lib/sym"), p("lib/sym-hard")).unwrap();
    mknod(&p("dev/fifo"), libc::S_IFIFO | 0o640, 0);
    std::fs::hard_link(p("dev/fifo"), p("dev/fifo-again")).unwrap();
    chmod(&p("tmp"), 0o1777);
    std::fs::write(p("empty"), b"").unwrap();
    std::fs::write(p("nsec"), b"n").unwrap();
    set_mtime(&p("nsec"), 1_700_000_000, 1);
    // Sparse: 10 MiB with one block of data at 8 MiB.
    let f = std::fs::File::create(p("sparse")).unwrap();
    f.set_len(SPARSE_LEN).unwrap();
    std::os::unix::fs::FileExt::write_all_at(&f, &[7u8; 4096], 8 << 20).unwrap();
    drop(f);
    if full {
        std::os::unix::fs::symlink("a\nb", p("nl-sym")).unwrap();
        let long = format!("d/{}\nx", "n".repeat(140));
        std::fs::write(p(&long), b"long").unwrap();
        // Names and a symlink target that are not UTF-8.
        use std::ffi::OsStr;
        use std::os::unix::ffi::OsStrExt;
        std::fs::write(
            root.join("bin").join(OsStr::from_bytes(b"\xff\xfe")),
            b"bytes",
        )
        .unwrap();
        std::os::unix::fs::symlink(OsStr::from_bytes(b"\xfft"), p("lib/bytes")).unwrap();
        std::fs::write(p("old"), b"1960").unwrap();
        set_mtime(&p("old"), -315_619_200, 500_000_000);
    }
    if is_root() {
        // The blob of issue 22 (telegraf's): 0x0a in the middle.
        let cap = [
            1u8, 0, 0, 2, 2, 0, 0x0a, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
        ];
        xattr::set(p("bin/prog"), "security.capability", &cap).unwrap();
        if xattr::set(p("bin/prog"), "system.posix_acl_access", &acl()).is_err() {
            eprintln!("no ACLs on this filesystem: left out");
        }
        mknod(&p("dev/null"), libc::S_IFCHR | 0o666, libc::makedev(1, 3));
        std::fs::hard_link(p("dev/null"), p("dev/null-again")).unwrap();
        std::os::unix::fs::lchown(p("d"), Some(1000), Some(1000)).unwrap();
        std::os::unix::fs::chown(root, Some(1000), Some(1000)).unwrap();
    }
    // The root's own attributes, set last (adding entries moves mtimes).
    xattr::set(root, "user.root", b"r\n").unwrap();
    chmod(root, 0o750);
    for d in ["bin", "lib", "dev", "d", "tmp"] {
        set_mtime(&p(d), 1_650_000_000, 250);
    }
    set_mtime(root, 1_600_000_000, 123_456_789);
}

/// One path as any reader of a tree sees it; hard-link groups named by
/// their smallest path, so which name holds the data does not matter.
#[derive(Debug, Clone, PartialEq, Eq)]
struct View {
    kind: String,
    group: Option<String>,
    mode: u32,
    uid: u64,
    gid: u64,
    mtime: (i64, u32),
    xattrs: BTreeMap<String, Vec<u8>>,
}

fn view(tree: &Tree) -> BTreeMap<String, View> {
    let inode_of = |path: &str| {
        let mut at = path.to_string();
        while let NodeKind::HardLink(t) = &tree.nodes[&at].kind {
            at = t.clone();
        }
        at
    };
    let mut groups: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for path in tree.nodes.keys() {
        groups.entry(inode_of(path)).or_default().push(path.clone());
    }
    let mut out = BTreeMap::new();
    for path in tree.nodes.keys() {
        let inode = inode_of(path);
        let node = &tree.nodes[&inode];
        let kind = match &node.kind {
            NodeKind::Dir => "dir".to_string(),
            NodeKind::File(data) => {
                let (len, hash) = match data {
                    FileData::Inline(v) => fnv1a(&v[..]),
                    FileData::Host { path, .. } => fnv1a(std::fs::File::open(path).unwrap()),
                };
                format!("file {len} {hash:x}")
            }
            NodeKind::Symlink(t) => format!("symlink {:?}", name_bytes(t)),
            NodeKind::Char { major, minor } => format!("char {major}:{minor}"),
            NodeKind::Block { major, minor } => format!("block {major}:{minor}"),
            NodeKind::Fifo => "fifo".into(),
            NodeKind::Socket => "socket".into(),
            NodeKind::HardLink(_) => unreachable!(),
        };
        let members = &groups[&inode];
        out.insert(
            path.clone(),
            View {
                kind,
                group: (members.len() > 1).then(|| members[0].clone()),
                mode: node.mode,
                uid: node.uid,
                gid: node.gid,
                mtime: (node.mtime, node.mtime_nsec),
                xattrs: node.xattrs.clone(),
            },
        );
    }
    out
}

#[derive(Clone, Copy)]
struct Keeps {
    xattrs: bool,
    nsec: bool,
    /// The root directory's own entry (`./`).
    root: bool,
    /// Hard links to fifos and devices: GNU tar and Python's tarfile
    /// archive each name as a node of its own (the crafted archive of
    /// `hard_links_to_every_kind_of_inode` has them).
    special_links: bool,
    /// Hard links to symlinks: GNU tar keeps them, tarfile does not.
    symlink_links: bool,
}

/// `want` reduced to what an archive format can carry.
fn reduce(mut v: BTreeMap<String, View>, keeps: Keeps) -> BTreeMap<String, View> {
    if !keeps.root {
        v.remove("");
    }
    for view in v.values_mut() {
        if !keeps.xattrs {
            view.xattrs.clear();
        }
        if !keeps.nsec {
            view.mtime.1 = 0;
        }
        if !keeps.special_links && (view.kind == "fifo" || view.kind.starts_with("char ")) {
            view.group = None;
        }
        if !keeps.symlink_links && view.kind.starts_with("symlink ") {
            view.group = None;
        }
    }
    v
}

fn assert_same_view(want: &BTreeMap<String, View>, got: &BTreeMap<String, View>, what: &str) {
    let mut diffs = Vec::new();
    for (path, w) in want {
        match got.get(path) {
            None => diffs.push(format!("{path:?}: missing")),
            Some(g) if g != w => diffs.push(format!("{path:?}:\n  want {w:?}\n  got  {g:?}")),
            _ => {}
        }
    }
    for path in got.keys().filter(|p| !want.contains_key(*p)) {
        diffs.push(format!("{path:?}: not in the source"));
    }
    assert!(
        diffs.is_empty(),
        "{what}: {} differences:\n{}",
        diffs.len(),
        diffs.join("\n")
    );
}

fn run(cmd: &mut Command) {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn gnu_tar(src: &Path, out: &Path, args: &[&str]) {
    run(Command::new("tar")
        .args(args)
        .arg("-cf")
        .arg(out)
        .arg("-C")
        .arg(src)
        .arg("."));
}

fn python_tar(src: &Path, out: &Path, format: &str) {
    let script = format!(
        "import sys, tarfile\n\
         with tarfile.open(sys.argv[2], 'w', format=tarfile.{format}) as t:\n    \
         t.add(sys.argv[1], arcname='.')\n"
    );
    run(Command::new("python3")
        .arg("-c")
        .arg(script)
        .arg(src)
        .arg(out));
}

/// Every archive of the full source reads as the directory does.
#[test]
fn archives_from_real_tools_read_as_the_directory() {
    let scratch = tempfile::tempdir().unwrap();
    let src = scratch.path().join("src");
    std::fs::create_dir(&src).unwrap();
    make_source(&src, true);
    let want = view(&Tree::from_dir(&src).unwrap());
    assert_eq!(want[""].mode, 0o750, "the root's own mode is read");
    assert_eq!(want[""].mtime, (1_600_000_000, 123_456_789));
    assert_eq!(want["old"].mtime, (-315_619_200, 500_000_000));
    assert_eq!(
        want["lib/sym-hard"].group.as_deref(),
        Some("lib/sym"),
        "a hard link to a symlink stays one"
    );

    let all = Keeps {
        xattrs: true,
        nsec: true,
        root: true,
        special_links: false,
        symlink_links: true,
    };
    let cases: Vec<(&str, Vec<&str>, Keeps)> = vec![
        ("posix --xattrs", vec!["--format=posix", "--xattrs"], all),
        (
            "posix --xattrs --acls",
            vec!["--format=posix", "--xattrs", "--acls"],
            all,
        ),
        (
            "posix -S (sparse 0.0)",
            vec!["--format=posix", "--xattrs", "-S", "--sparse-version=0.0"],
            all,
        ),
        (
            "posix -S (sparse 0.1)",
            vec!["--format=posix", "--xattrs", "-S", "--sparse-version=0.1"],
            all,
        ),
        (
            "posix -S (sparse 1.0)",
            vec!["--format=posix", "--xattrs", "-S", "--sparse-version=1.0"],
            all,
        ),
        (
            "gnu",
            vec!["--format=gnu"],
            Keeps {
                xattrs: false,
                nsec: false,
                ..all
            },
        ),
        (
            "gnu -S",
            vec!["--format=gnu", "-S"],
            Keeps {
                xattrs: false,
                nsec: false,
                ..all
            },
        ),
    ];
    for (name, args, keeps) in cases {
        let archive = scratch.path().join("a.tar");
        gnu_tar(&src, &archive, &args);
        let got = Tree::from_archive(&archive).unwrap_or_else(|e| panic!("tar {name}: {e}"));
        let want = reduce(want.clone(), keeps);
        assert_same_view(&want, &reduce(view(&got), keeps), &format!("tar {name}"));
    }
    for format in ["PAX_FORMAT", "GNU_FORMAT"] {
        let archive = scratch.path().join("p.tar");
        python_tar(&src, &archive, format);
        let got = Tree::from_archive(&archive).unwrap_or_else(|e| panic!("python {format}: {e}"));
        // tarfile keeps no xattrs, and its mtimes are floats.
        let keeps = Keeps {
            xattrs: false,
            nsec: false,
            symlink_links: false,
            ..all
        };
        let mut got = reduce(view(&got), keeps);
        if format == "GNU_FORMAT" {
            // tarfile's GNU format truncates a pre-1970 float mtime
            // toward zero; the second is all the format has.
            if let Some(v) = got.get_mut("old") {
                v.mtime.0 = want["old"].mtime.0;
            }
        }
        assert_same_view(
            &reduce(want.clone(), keeps),
            &got,
            &format!("python {format}"),
        );
    }
}

/// ustar holds no long names, xattrs or nanoseconds: a source within its
/// limits reads the same too.
#[test]
fn ustar_archives_read_as_the_directory() {
    let scratch = tempfile::tempdir().unwrap();
    let src = scratch.path().join("src");
    std::fs::create_dir(&src).unwrap();
    make_source(&src, false);
    let keeps = Keeps {
        xattrs: false,
        nsec: false,
        root: true,
        special_links: false,
        symlink_links: true,
    };
    let want = reduce(view(&Tree::from_dir(&src).unwrap()), keeps);
    let archive = scratch.path().join("u.tar");
    gnu_tar(&src, &archive, &["--format=ustar"]);
    let got = Tree::from_archive(&archive).unwrap();
    assert_same_view(&want, &reduce(view(&got), keeps), "tar ustar");
}

/// The image of the posix archive, mounted, shows what the source shows
/// (root, xattrs, nanoseconds, pre-1970 mtimes, hard-link groups of every
/// kind). And the directory itself, socket included, packs the same.
#[test]
fn the_mounted_image_shows_the_source() {
    let scratch = tempfile::tempdir().unwrap();
    let src = scratch.path().join("src");
    std::fs::create_dir(&src).unwrap();
    make_source(&src, true);
    let archive = scratch.path().join("a.tar");
    gnu_tar(&src, &archive, &["--format=posix", "--xattrs", "-S"]);
    let mut source = scan(&src, Reader::Mount);
    for (path, seen) in &mut source {
        if path.starts_with("dev/fifo") || path.starts_with("dev/null") {
            seen.nlink = 1; // GNU tar archives these names apart
        }
    }
    let from_tar = Tree::from_archive(&archive).unwrap();
    let image = write_to_file(&from_tar, &ErofsOptions::default(), scratch.path());
    erofs_support::fsck(&image, None);
    if let Some(m) = mount(&image) {
        erofs_support::assert_same(&source, &scan(m.path(), Reader::Mount), "image of the tar");
    }

    // A socket (tar has no way to carry one) in the directory itself.
    let sock = src.join("sock");
    let _listener = std::os::unix::net::UnixListener::bind(&sock).unwrap();
    set_mtime(&src, 1_600_000_000, 123_456_789);
    let source = scan(&src, Reader::Mount);
    let from_dir = Tree::from_dir(&src).unwrap();
    assert_eq!(from_dir.nodes["sock"].kind, NodeKind::Socket);
    let image_dir = scratch.path().join("dir");
    std::fs::create_dir(&image_dir).unwrap();
    let image = write_to_file(&from_dir, &ErofsOptions::default(), &image_dir);
    erofs_support::fsck(&image, None);
    if let Some(m) = mount(&image) {
        erofs_support::assert_same(&source, &scan(m.path(), Reader::Mount), "image of the dir");
        let meta = std::fs::metadata(m.path()).unwrap();
        assert_eq!(meta.mode() & 0o7777, 0o750);
    }
}

/// A tar hard link may name a symlink, a fifo or a device (as it may in a
/// directory): the group stays one inode in the image.
#[test]
fn hard_links_to_every_kind_of_inode() {
    let mut b = tar::Builder::new(Vec::new());
    let entries: [(&str, tar::EntryType, Option<&str>); 7] = [
        ("sym", tar::EntryType::Symlink, Some("target")),
        ("sym-hard", tar::EntryType::Link, Some("sym")),
        ("fifo", tar::EntryType::Fifo, None),
        ("fifo-hard", tar::EntryType::Link, Some("fifo")),
        ("null", tar::EntryType::Char, None),
        ("null-hard", tar::EntryType::Link, Some("null")),
        ("null-hard2", tar::EntryType::Link, Some("null-hard")),
    ];
    for (path, kind, link) in entries {
        let mut h = tar::Header::new_ustar();
        h.set_entry_type(kind);
        h.set_mode(0o640);
        h.set_size(0);
        h.set_mtime(1_700_000_000);
        if kind == tar::EntryType::Char {
            h.set_device_major(1).unwrap();
            h.set_device_minor(3).unwrap();
        }
        if let Some(l) = link {
            h.set_link_name(l).unwrap();
        }
        h.set_path(path).unwrap();
        h.set_cksum();
        b.append(&h, &[][..]).unwrap();
    }
    let layer = b.into_inner().unwrap();
    let scratch = tempfile::tempdir().unwrap();
    let archive = scratch.path().join("links.tar");
    std::fs::write(&archive, layer).unwrap();
    let tree = Tree::from_archive(&archive).unwrap();
    for (link, target) in [
        ("sym-hard", "sym"),
        ("fifo-hard", "fifo"),
        ("null-hard", "null"),
        ("null-hard2", "null"),
    ] {
        assert_eq!(
            tree.nodes[link].kind,
            NodeKind::HardLink(target.into()),
            "{link}"
        );
    }
    let image = write_to_file(&tree, &ErofsOptions::default(), scratch.path());
    erofs_support::check_image(&tree, &ErofsOptions::default(), &image);
}

/// Issue 22: a tree whose paths run past PATH_MAX failed with "File name
/// too long (os error 36)". The walk goes by directory descriptors and
/// files are opened piece by piece: a file 5,000 bytes of path deep packs
/// and reads back from the mounted image.
#[test]
fn paths_longer_than_path_max_pack() {
    use rustix::fs::{Mode, OFlags};
    let scratch = tempfile::tempdir().unwrap();
    let src = scratch.path().join("src");
    std::fs::create_dir(&src).unwrap();
    let name = |i: usize| format!("{i:02}{}", "d".repeat(248));
    let mut dir =
        rustix::fs::open(&src, OFlags::DIRECTORY | OFlags::RDONLY, Mode::empty()).unwrap();
    let mut rel = String::new();
    for i in 0..20 {
        rustix::fs::mkdirat(&dir, name(i).as_str(), Mode::from_raw_mode(0o750)).unwrap();
        dir = rustix::fs::openat(
            &dir,
            name(i).as_str(),
            OFlags::DIRECTORY | OFlags::RDONLY,
            Mode::empty(),
        )
        .unwrap();
        rel = if rel.is_empty() {
            name(i)
        } else {
            format!("{rel}/{}", name(i))
        };
    }
    let leaf = rustix::fs::openat(
        &dir,
        "leaf",
        OFlags::CREATE | OFlags::WRONLY,
        Mode::from_raw_mode(0o640),
    )
    .unwrap();
    rustix::io::write(&leaf, b"at the bottom").unwrap();
    let user_xattrs =
        rustix::fs::fsetxattr(&leaf, "user.deep", b"v\n", rustix::fs::XattrFlags::empty()).is_ok();
    drop(leaf);
    rustix::fs::symlinkat("leaf", &dir, "link").unwrap();
    assert!(src.join(&rel).as_os_str().len() > 5000);

    let tree = Tree::from_dir(&src).unwrap();
    let leaf_path = format!("{rel}/leaf");
    assert_eq!(tree.nodes[&leaf_path].mode, 0o640);
    if user_xattrs {
        assert_eq!(tree.nodes[&leaf_path].xattrs["user.deep"], b"v\n");
    }
    assert_eq!(
        tree.nodes[&format!("{rel}/link")].kind,
        NodeKind::Symlink("leaf".into())
    );
    assert_eq!(
        tree.read_file(&leaf_path, 100).unwrap().unwrap(),
        b"at the bottom"
    );
    let image = write_to_file(&tree, &ErofsOptions::default(), scratch.path());
    erofs_support::fsck(&image, None);
    if let Some(m) = mount(&image) {
        let mut f = smolvm_rootfs::tree::open_host(&m.path().join(&leaf_path)).unwrap();
        let mut got = Vec::new();
        std::io::Read::read_to_end(&mut f, &mut got).unwrap();
        assert_eq!(got, b"at the bottom");
    }
}

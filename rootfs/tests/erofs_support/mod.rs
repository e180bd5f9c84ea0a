//! Shared checks for the EROFS writer tests: write a tree to an image,
//! check it with erofs-utils' fsck.erofs and extract it, loop-mount it,
//! and compare what comes back with the tree.
//!
//! Two independent readers, because each sees only part of the truth:
//! fsck.erofs 1.5 checks every inode and data block and extracts names,
//! types, contents, owners, permissions, mtimes, symlink targets and
//! devices, but drops setuid/setgid on non-directories (it chowns after
//! chmod), cannot give symlinks a mode, extracts hard links as copies and
//! ignores xattrs. The kernel mount
//! sees all of that: full modes, xattrs, i_nlink, shared inode numbers.

#![allow(dead_code)] // each test file uses part of this

use std::collections::BTreeMap;
use std::io::Read;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use smolvm_rootfs::erofs::{write_image, ErofsOptions};
use smolvm_rootfs::tree::{name_bytes, name_from_bytes, FileData, Node, NodeKind, Tree};
use std::os::unix::ffi::OsStrExt;

pub fn node(mode: u32, kind: NodeKind) -> Node {
    Node {
        mode,
        uid: 0,
        gid: 0,
        mtime: 1_700_000_000,
        mtime_nsec: 0,
        kind,
        xattrs: BTreeMap::new(),
    }
}

pub fn dir() -> Node {
    node(0o755, NodeKind::Dir)
}

pub fn file(bytes: &[u8]) -> Node {
    node(0o644, NodeKind::File(FileData::Inline(bytes.to_vec())))
}

/// Writes `tree` to `dir/image.erofs`, returning its path.
pub fn write_to_file(tree: &Tree, opts: &ErofsOptions, dir: &Path) -> PathBuf {
    let path = dir.join("image.erofs");
    let out = std::fs::File::create(&path).unwrap();
    let n = write_image(tree, out, opts, &|_| {}).unwrap();
    assert_eq!(n, std::fs::metadata(&path).unwrap().len());
    path
}

fn tool(name: &str) -> Command {
    let found = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join(name).is_file()))
        .unwrap_or(false);
    assert!(
        found,
        "{name} not found: install erofs-utils (scripts/setup-harness.sh does)"
    );
    Command::new(name)
}

/// Runs fsck.erofs on the image, panicking with its output if it
/// complains. With `extract_to`, also extracts the tree there.
pub fn fsck(image: &Path, extract_to: Option<&Path>) {
    let mut cmd = tool("fsck.erofs");
    if let Some(dir) = extract_to {
        cmd.arg(format!("--extract={}", dir.display()));
    }
    let out = cmd.arg(image).output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "fsck.erofs failed on {}:\n{text}",
        image.display()
    );
    assert!(!text.contains("<E>"), "fsck.erofs reported errors:\n{text}");
}

/// `dump.erofs ARGS image` output.
pub fn dump(image: &Path, args: &[&str]) -> String {
    let out = tool("dump.erofs").args(args).arg(image).output().unwrap();
    assert!(out.status.success(), "dump.erofs {args:?}: {out:?}");
    String::from_utf8(out.stdout).unwrap()
}

/// The value after `label` on dump.erofs's line for it.
pub fn dump_field(dump: &str, label: &str) -> String {
    dump.lines()
        .find_map(|l| l.strip_prefix(label))
        .unwrap_or_else(|| panic!("no {label:?} in:\n{dump}"))
        .trim()
        .to_string()
}

/// A read-only loop mount, unmounted on drop.
pub struct Mount {
    dir: tempfile::TempDir,
}

impl Mount {
    pub fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        let ok = Command::new("umount")
            .arg(self.dir.path())
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            eprintln!("umount {} failed", self.dir.path().display());
        }
    }
}

/// Loop-mounts the image, or says why this machine cannot and returns
/// `None`. When mounting is possible, a mount that fails is a test failure
/// (the kernel rejected the image).
pub fn mount(image: &Path) -> Option<Mount> {
    // SAFETY: geteuid has no preconditions and cannot fail.
    let euid = unsafe { libc::geteuid() };
    let reason = if euid != 0 {
        Some("not root")
    } else if !Path::new("/dev/loop-control").exists() {
        Some("no /dev/loop-control")
    } else {
        None
    };
    if let Some(reason) = reason {
        eprintln!("skipping the kernel mount check: {reason}");
        return None;
    }
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new("mount")
        .args(["-t", "erofs", "-o", "loop,ro"])
        .arg(image)
        .arg(dir.path())
        .output()
        .unwrap();
    if !out.status.success() {
        let fs = std::fs::read_to_string("/proc/filesystems").unwrap_or_default();
        if !fs.lines().any(|l| l.trim_end().ends_with("erofs")) {
            eprintln!("skipping the kernel mount check: this kernel has no erofs");
            return None;
        }
        let dmesg = Command::new("dmesg")
            .output()
            .map(|o| o.stdout)
            .unwrap_or_default();
        let dmesg = String::from_utf8_lossy(&dmesg);
        let tail: Vec<&str> = dmesg.lines().rev().take(10).collect();
        panic!(
            "the kernel refused to mount {}: {}\ndmesg (last lines first):\n{}",
            image.display(),
            String::from_utf8_lossy(&out.stderr),
            tail.join("\n")
        );
    }
    Some(Mount { dir })
}

/// What a reader of the image sees at one path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seen {
    pub kind: SeenKind,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    /// Seconds (negative before 1970) and nanoseconds.
    pub mtime: (i64, u32),
    pub xattrs: BTreeMap<String, Vec<u8>>,
    /// i_nlink (files: names of the group; directories: 2 + subdirectories).
    pub nlink: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SeenKind {
    Dir,
    /// Size and an FNV-1a hash of the content.
    File(u64, u64),
    Symlink(String),
    Char(u32, u32),
    Block(u32, u32),
    Fifo,
    Socket,
}

/// Which parts of [`Seen`] a reader can report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reader {
    /// fsck.erofs --extract: no setuid/setgid on files, no xattrs, no nlink.
    FsckExtract,
    /// The kernel: everything.
    Mount,
}

pub fn fnv1a(mut r: impl Read) -> (u64, u64) {
    let mut hash = 0xcbf2_9ce4_8422_2325u64;
    let mut len = 0u64;
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = r.read(&mut buf).unwrap();
        if n == 0 {
            return (len, hash);
        }
        len += n as u64;
        for &b in &buf[..n] {
            hash = (hash ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
    }
}

fn content_of(data: &FileData) -> (u64, u64) {
    match data {
        FileData::Inline(v) => fnv1a(&v[..]),
        FileData::Host { path, .. } => fnv1a(std::fs::File::open(path).unwrap()),
    }
}

/// What `reader` should see for `tree`, with `clamp` applied to mtimes.
/// Includes the root as "" (implicit: 0755 root:root, mtime 0).
pub fn expected(tree: &Tree, clamp: Option<u64>, reader: Reader) -> BTreeMap<String, Seen> {
    let mut nlinks: BTreeMap<&str, u64> = BTreeMap::new();
    let resolve = |p: &str| resolve_link(tree, p).to_string();
    let mut subdirs: BTreeMap<String, u64> = BTreeMap::new();
    for (path, n) in &tree.nodes {
        if let NodeKind::HardLink(_) = n.kind {
            let target = resolve(path);
            let target = tree.nodes.get_key_value(&target).unwrap().0;
            *nlinks.entry(target.as_str()).or_insert(1) += 1;
        }
        // The root's own node is no subdirectory of itself.
        if n.kind == NodeKind::Dir && !path.is_empty() {
            let parent = path.rsplit_once('/').map_or("", |(p, _)| p);
            *subdirs.entry(parent.to_string()).or_default() += 1;
        }
    }
    let root = node(0o755, NodeKind::Dir);
    let mut root = Node { mtime: 0, ..root };
    if let Some(r) = tree.nodes.get("") {
        root = r.clone();
    }
    let mut out = BTreeMap::new();
    for (path, n) in std::iter::once((&String::new(), &root)).chain(&tree.nodes) {
        let (path, n) = (path.clone(), n);
        let target = match &n.kind {
            NodeKind::HardLink(_) => resolve(&path),
            _ => path.clone(),
        };
        let t = if target == path {
            n
        } else {
            &tree.nodes[&target]
        };
        let kind = match &t.kind {
            NodeKind::Dir => SeenKind::Dir,
            NodeKind::File(d) => {
                let (len, hash) = content_of(d);
                SeenKind::File(len, hash)
            }
            NodeKind::Symlink(s) => SeenKind::Symlink(s.clone()),
            NodeKind::Char { major, minor } => SeenKind::Char(*major, *minor),
            NodeKind::Block { major, minor } => SeenKind::Block(*major, *minor),
            NodeKind::Fifo => SeenKind::Fifo,
            NodeKind::Socket => SeenKind::Socket,
            NodeKind::HardLink(_) => unreachable!(),
        };
        let nlink = match kind {
            SeenKind::Dir => 2 + subdirs.get(&path).copied().unwrap_or(0),
            _ => nlinks.get(target.as_str()).copied().unwrap_or(1),
        };
        let mut seen = Seen {
            kind,
            mode: t.mode,
            uid: u32::try_from(t.uid).unwrap(),
            gid: u32::try_from(t.gid).unwrap(),
            mtime: match clamp.map(|c| i64::try_from(c).unwrap()) {
                Some(c) if (t.mtime, t.mtime_nsec) > (c, 0) => (c, 0),
                _ => (t.mtime, t.mtime_nsec),
            },
            xattrs: t.xattrs.clone(),
            nlink,
        };
        if reader == Reader::FsckExtract {
            seen = forget_for_fsck(seen);
        }
        out.insert(path, seen);
    }
    if reader == Reader::FsckExtract {
        // The extraction directory is made by the test, not from the image.
        out.remove("");
    }
    out
}

/// The regular file a chain of hard links ends at.
pub fn resolve_link<'t>(tree: &'t Tree, mut path: &'t str) -> &'t str {
    while let NodeKind::HardLink(t) = &tree.nodes[path].kind {
        path = t;
    }
    path
}

/// What fsck.erofs --extract cannot reproduce: it chowns after chmod, so
/// non-directories lose setuid/setgid; symlinks are always 0777 on Linux.
fn forget_for_fsck(mut s: Seen) -> Seen {
    match s.kind {
        SeenKind::Dir => {}
        SeenKind::Symlink(_) => s.mode = 0o777,
        _ => s.mode &= 0o1777,
    }
    s.xattrs.clear();
    s.nlink = 0;
    s.mtime.1 = 0; // fsck.erofs 1.5 sets whole seconds
    s
}

/// Walks a directory (an extraction or a mount) the way `expected` sees a
/// tree. The root is "" (skipped for fsck extractions).
pub fn scan(root: &Path, reader: Reader) -> BTreeMap<String, Seen> {
    let mut out = BTreeMap::new();
    let mut stack = vec![(root.to_path_buf(), String::new())];
    while let Some((host, rel)) = stack.pop() {
        let m = std::fs::symlink_metadata(&host).unwrap();
        let ft = m.file_type();
        let kind = if ft.is_dir() {
            for e in std::fs::read_dir(&host).unwrap() {
                let e = e.unwrap();
                let name = name_from_bytes(e.file_name().as_bytes());
                let child = if rel.is_empty() {
                    name.clone()
                } else {
                    format!("{rel}/{name}")
                };
                stack.push((e.path(), child));
            }
            SeenKind::Dir
        } else if ft.is_file() {
            let (len, hash) = fnv1a(std::fs::File::open(&host).unwrap());
            assert_eq!(len, m.len(), "{rel}: read length vs st_size");
            SeenKind::File(len, hash)
        } else if ft.is_symlink() {
            SeenKind::Symlink(name_from_bytes(
                std::fs::read_link(&host).unwrap().as_os_str().as_bytes(),
            ))
        } else if ft.is_char_device() {
            SeenKind::Char(libc::major(m.rdev()), libc::minor(m.rdev()))
        } else if ft.is_block_device() {
            SeenKind::Block(libc::major(m.rdev()), libc::minor(m.rdev()))
        } else if ft.is_fifo() {
            SeenKind::Fifo
        } else if ft.is_socket() {
            SeenKind::Socket
        } else {
            panic!("{rel}: unexpected file type {ft:?}");
        };
        let mut xattrs = BTreeMap::new();
        if reader == Reader::Mount {
            for name in xattr::list(&host).unwrap() {
                let name = name.into_string().unwrap();
                let value = xattr::get(&host, &name).unwrap().unwrap();
                xattrs.insert(name, value);
            }
        }
        let seen = Seen {
            kind,
            mode: m.mode() & 0o7777,
            uid: m.uid(),
            gid: m.gid(),
            mtime: (m.mtime(), u32::try_from(m.mtime_nsec()).unwrap()),
            xattrs,
            nlink: m.nlink(),
        };
        if reader == Reader::FsckExtract {
            if !rel.is_empty() {
                out.insert(rel, forget_for_fsck(seen));
            }
        } else {
            out.insert(rel, seen);
        }
    }
    out
}

/// Asserts two views agree, listing every difference.
pub fn assert_same(expected: &BTreeMap<String, Seen>, seen: &BTreeMap<String, Seen>, what: &str) {
    let mut diffs = Vec::new();
    for (path, e) in expected {
        match seen.get(path) {
            None => diffs.push(format!("{path:?}: missing")),
            Some(s) if s != e => {
                diffs.push(format!("{path:?}:\n  expected {e:?}\n  seen     {s:?}"))
            }
            _ => {}
        }
    }
    for path in seen.keys().filter(|p| !expected.contains_key(*p)) {
        diffs.push(format!("{path:?}: not in the tree"));
    }
    assert!(
        diffs.is_empty(),
        "{what}: {} differences:\n{}",
        diffs.len(),
        diffs
            .iter()
            .take(20)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
}

/// Hard links: every name of a group has the same st_ino as its target.
pub fn assert_hard_links_share_inodes(tree: &Tree, mount: &Path) {
    for (path, n) in &tree.nodes {
        if let NodeKind::HardLink(_) = n.kind {
            let target = resolve_link(tree, path);
            let at = |p: &str| mount.join(std::ffi::OsStr::from_bytes(&name_bytes(p)));
            let a = std::fs::symlink_metadata(at(path)).unwrap();
            let b = std::fs::symlink_metadata(at(target)).unwrap();
            assert_eq!(a.ino(), b.ino(), "{path} and {target} should be one inode");
        }
    }
}

/// Hard links as dump.erofs sees them (no mount needed): every name of a
/// group resolves to its target's nid, and the inode counts every name.
pub fn assert_hard_links_by_dump(tree: &Tree, image: &Path) {
    let mut names: BTreeMap<&str, u64> = BTreeMap::new();
    for (path, n) in &tree.nodes {
        if let NodeKind::HardLink(_) = n.kind {
            *names.entry(resolve_link(tree, path)).or_insert(1) += 1;
        }
    }
    let nid_and_links = |path: &str| {
        // The path's bytes, which need not be UTF-8.
        let mut arg = b"--path=/".to_vec();
        arg.extend_from_slice(&name_bytes(path));
        let out = tool("dump.erofs")
            .arg(std::ffi::OsStr::from_bytes(&arg))
            .arg(image)
            .output()
            .unwrap();
        assert!(out.status.success(), "dump.erofs {path:?}: {out:?}");
        let info = String::from_utf8_lossy(&out.stdout).into_owned();
        let line = dump_field(&info, "NID:");
        let mut words = line.split_whitespace();
        let nid = words.next().unwrap().to_string();
        assert_eq!(words.next(), Some("Links:"), "{info}");
        (nid, words.next().unwrap().parse::<u64>().unwrap())
    };
    for (path, n) in &tree.nodes {
        if let NodeKind::HardLink(_) = n.kind {
            let target = resolve_link(tree, path);
            let (nid, links) = nid_and_links(target);
            assert_eq!(links, names[target], "i_nlink of {target}");
            assert_eq!(
                nid_and_links(path).0,
                nid,
                "{path} and {target} should be one inode"
            );
        }
    }
}

/// For trees too big to extract quickly (ext4 takes minutes to create
/// and delete 100,000 files on a loaded machine): fsck.erofs without
/// extraction, then the mount comparison; the extraction comparison only
/// when this machine cannot mount.
pub fn check_image_by_mount(tree: &Tree, opts: &ErofsOptions, image: &Path) {
    fsck(image, None);
    match mount(image) {
        Some(m) => {
            assert_same(
                &expected(tree, opts.clamp_mtime, Reader::Mount),
                &scan(m.path(), Reader::Mount),
                "kernel mount",
            );
            assert_hard_links_share_inodes(tree, m.path());
        }
        None => check_image(tree, opts, image),
    }
}

/// The whole check: fsck, extract and compare, hard links by dump.erofs;
/// mount and compare (including the root, xattrs, nlink and shared
/// inodes).
pub fn check_image(tree: &Tree, opts: &ErofsOptions, image: &Path) {
    let t = std::time::Instant::now();
    let lap = |what: &str| eprintln!("{:>8.2?} {what}", t.elapsed());
    let scratch = tempfile::tempdir().unwrap();
    let extract = scratch.path().join("x");
    fsck(image, Some(&extract));
    lap("fsck.erofs --extract");
    assert_hard_links_by_dump(tree, image);
    let want = expected(tree, opts.clamp_mtime, Reader::FsckExtract);
    lap("expected");
    let seen = scan(&extract, Reader::FsckExtract);
    lap("scan extraction");
    assert_same(&want, &seen, "fsck.erofs --extract");
    if let Some(m) = mount(image) {
        lap("mount");
        let seen = scan(m.path(), Reader::Mount);
        lap("scan mount");
        assert_same(
            &expected(tree, opts.clamp_mtime, Reader::Mount),
            &seen,
            "kernel mount",
        );
        assert_hard_links_share_inodes(tree, m.path());
        lap("compared");
    }
}

//! Random full trees on the host, packed and read back (issue 22).
//!
//! Each case builds a directory from a seed: names of random bytes (not
//! UTF-8, newlines, backslashes, 255-byte names), every file type
//! (regular, directory, symlink, fifo, socket; char and block devices as
//! root), random modes with setuid/setgid/sticky, owners (as root),
//! xattrs with newlines and binary values (some shared by many inodes,
//! `security.capability` and ACLs as root), hard links to every kind of
//! non-directory, sparse files, mtimes before 1970 and with nanoseconds,
//! and sometimes a path deeper than PATH_MAX. The directory and a GNU tar
//! of it (`--format=posix --xattrs -S`) are packed with each encoding
//! (plain and LZ4), the image is loop-mounted (or extracted by
//! `fsck.erofs --extract` where this machine cannot mount) and walked by
//! directory descriptors, names as bytes, and compared with the source:
//! types, modes, owners, sizes, contents, xattrs, symlink targets, device
//! numbers, hard-link groups, link counts and mtimes.
//!
//! `SMOLVM_RANDOM_TREES=N` runs N cases (default 6, about 20 s in a debug
//! build); `SMOLVM_RANDOM_TREES_SEED=S` runs the one case a failure
//! names.

mod erofs_support;

use std::collections::BTreeMap;
use std::ffi::{CString, OsStr};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use rustix::fs::{AtFlags, FileType, Mode, OFlags, Timespec, Timestamps, XattrFlags};
use smolvm_rootfs::erofs::{Compression, ErofsOptions};
use smolvm_rootfs::tree::Tree;

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// xorshift64*: the same seed, the same tree.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn usize(&mut self, n: usize) -> usize {
        usize::try_from(self.below(n as u64)).unwrap()
    }
    fn chance(&mut self, one_in: u64) -> bool {
        self.below(one_in) == 0
    }
    fn pick<'a, T>(&mut self, from: &'a [T]) -> &'a T {
        &from[self.usize(from.len())]
    }
    fn bytes(&mut self, len: usize) -> Vec<u8> {
        (0..len).map(|_| self.next().to_le_bytes()[3]).collect()
    }
}

/// A name of random bytes: ASCII, characters the shell and escapes trip
/// on, bytes that are not UTF-8, and sometimes 255 of them.
fn name(rng: &mut Rng) -> Vec<u8> {
    let len = if rng.chance(20) {
        200 + rng.usize(56)
    } else {
        1 + rng.usize(24)
    };
    loop {
        let n: Vec<u8> = (0..len)
            .map(|_| match rng.below(10) {
                0 => *rng.pick(b" \n\t\\*?'\"$-.:"),
                1 | 2 => 0x80 + rng.next().to_le_bytes()[0] % 0x80,
                _ => *rng.pick(b"abcdefghijklmnopqrstuvwxyz0123456789_"),
            })
            .collect();
        if n != b"." && n != b".." {
            return n;
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Made {
    File,
    Dir,
    Symlink,
    Fifo,
    Socket,
    Device,
}

/// One name created in the source: its directory (an index into the
/// directory list) and its kind.
struct Entry {
    dir: usize,
    name: Vec<u8>,
    made: Made,
}

struct Source {
    root: PathBuf,
    /// Directory descriptors (O_PATH): the root first, then in creation
    /// order, each after its parent; with its host path.
    dirs: Vec<(OwnedFd, PathBuf)>,
    entries: Vec<Entry>,
    /// Whether anything is deeper than PATH_MAX.
    deep: bool,
}

impl Source {
    fn fd(&self, dir: usize) -> &OwnedFd {
        &self.dirs[dir].0
    }

    fn unique_name(&self, rng: &mut Rng, dir: usize) -> Vec<u8> {
        loop {
            let n = name(rng);
            if !self.entries.iter().any(|e| e.dir == dir && e.name == n) {
                return n;
            }
        }
    }

    /// The path of `name` in `dir` through /proc/self/fd: short however
    /// deep the directory is.
    fn proc_path(&self, dir: usize, name: &[u8]) -> PathBuf {
        let mut p = format!("/proc/self/fd/{}/", self.fd(dir).as_raw_fd()).into_bytes();
        p.extend_from_slice(name);
        PathBuf::from(OsStr::from_bytes(&p))
    }
}

/// An ACL in the kernel's xattr form: user::rwx, user:<id>:r-x, group::r-x,
/// mask::r-x, other::---.
fn acl(id: u32) -> Vec<u8> {
    let mut v = 2u32.to_le_bytes().to_vec();
    for (tag, perm, id) in [
        (1u16, 7u16, u32::MAX),
        (2, 5, id),
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

const DIR_OPEN: OFlags = OFlags::PATH
    .union(OFlags::DIRECTORY)
    .union(OFlags::NOFOLLOW)
    .union(OFlags::CLOEXEC);

fn make_source(rng: &mut Rng, root: &Path) -> Source {
    let root_fd = rustix::fs::open(root, DIR_OPEN, Mode::empty()).unwrap();
    let mut s = Source {
        root: root.to_path_buf(),
        dirs: vec![(root_fd, root.to_path_buf())],
        entries: Vec::new(),
        deep: false,
    };
    let root_user = is_root();

    // Directories, each in one made before it.
    for _ in 0..2 + rng.usize(6) {
        let parent = rng.usize(s.dirs.len());
        let n = s.unique_name(rng, parent);
        mkdir(&mut s, parent, n);
    }
    // A chain deeper than PATH_MAX: 17 names of 250 bytes.
    if rng.chance(3) {
        let mut at = 0;
        for i in 0..17 {
            let mut n = format!("deep{i:02}").into_bytes();
            n.resize(250, b'd');
            at = mkdir(&mut s, at, n);
        }
        s.deep = true;
        let leaf = s.dirs.len() - 1;
        file(&mut s, rng, leaf, b"leaf".to_vec());
    }

    // Files of every kind.
    for _ in 0..8 + rng.usize(30) {
        let dir = rng.usize(s.dirs.len());
        let n = s.unique_name(rng, dir);
        let fd = s.fd(dir).try_clone().unwrap();
        match rng.below(10) {
            0..=4 => file(&mut s, rng, dir, n),
            5 | 6 => {
                let len = if rng.chance(8) {
                    300 + rng.usize(700)
                } else {
                    1 + rng.usize(60)
                };
                let target: Vec<u8> = rng.bytes(len).into_iter().map(|b| b.max(1)).collect();
                rustix::fs::symlinkat(target.as_slice(), &fd, n.as_slice()).unwrap();
                s.entries.push(Entry {
                    dir,
                    name: n,
                    made: Made::Symlink,
                });
            }
            7 => {
                rustix::fs::mknodat(&fd, n.as_slice(), FileType::Fifo, Mode::RUSR, 0).unwrap();
                s.entries.push(Entry {
                    dir,
                    name: n,
                    made: Made::Fifo,
                });
            }
            8 if root_user => {
                let (ty, major, minor) = if rng.chance(2) {
                    (
                        FileType::CharacterDevice,
                        rng.below(4096),
                        rng.below(1 << 20),
                    )
                } else {
                    (FileType::BlockDevice, rng.below(4096), rng.below(1 << 20))
                };
                let dev = rustix::fs::makedev(
                    u32::try_from(major).unwrap(),
                    u32::try_from(minor).unwrap(),
                );
                rustix::fs::mknodat(&fd, n.as_slice(), ty, Mode::RUSR, dev).unwrap();
                s.entries.push(Entry {
                    dir,
                    name: n,
                    made: Made::Device,
                });
            }
            _ => {
                // A socket needs a path that fits sun_path (108 bytes).
                let path = s.dirs[dir].1.join(OsStr::from_bytes(&n));
                if path.as_os_str().len() < 100 {
                    drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
                    s.entries.push(Entry {
                        dir,
                        name: n,
                        made: Made::Socket,
                    });
                }
            }
        }
    }

    // xattrs: one value many inodes share, some of their own.
    let shared_len = 40 + rng.usize(200);
    let shared = rng.bytes(shared_len);
    let cap: Vec<u8> = [
        1u8, 0, 0, 2, 2, 0, 0x0a, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    ]
    .into();
    for i in 0..s.entries.len() {
        let (dir, made) = (s.entries[i].dir, s.entries[i].made);
        let path = s.proc_path(dir, &s.entries[i].name);
        let set = |name: &str, value: &[u8]| {
            rustix::fs::lsetxattr(&path, name, value, XattrFlags::empty())
                .unwrap_or_else(|e| panic!("{name} on {path:?}: {e}"));
        };
        // user.* only on files and directories (the kernel's rule).
        if matches!(made, Made::File | Made::Dir) {
            if rng.chance(2) {
                set("user.shared", &shared);
            }
            for k in 0..rng.usize(3) {
                let len = if rng.chance(6) {
                    500 + rng.usize(1000)
                } else {
                    rng.usize(40)
                };
                let mut value = rng.bytes(len);
                if !value.is_empty() {
                    value[0] = b'\n';
                }
                set(&format!("user.x{k}"), &value);
            }
        }
        if root_user {
            if made == Made::File && rng.chance(3) {
                set("security.capability", &cap);
            }
            if matches!(made, Made::File | Made::Dir) && rng.chance(4) {
                set("system.posix_acl_access", &acl(1000));
            }
            if rng.chance(4) {
                let len = 1 + rng.usize(30);
                set("trusted.t", &rng.bytes(len));
            }
        }
    }

    // Hard links to every kind of non-directory (mostly one of each kind
    // there is, and a few more), in any directory.
    let mut targets: Vec<usize> = Vec::new();
    for kind in [
        Made::File,
        Made::Symlink,
        Made::Fifo,
        Made::Socket,
        Made::Device,
    ] {
        let of_kind: Vec<usize> = (0..s.entries.len())
            .filter(|&i| s.entries[i].made == kind)
            .collect();
        if !of_kind.is_empty() && !rng.chance(4) {
            targets.push(*rng.pick(&of_kind));
        }
    }
    let non_dirs: Vec<usize> = (0..s.entries.len())
        .filter(|&i| s.entries[i].made != Made::Dir)
        .collect();
    for _ in 0..rng.usize(4) {
        if !non_dirs.is_empty() {
            targets.push(*rng.pick(&non_dirs));
        }
    }
    for t in targets {
        let dir = rng.usize(s.dirs.len());
        let n = s.unique_name(rng, dir);
        let (from_dir, made) = (s.entries[t].dir, s.entries[t].made);
        rustix::fs::linkat(
            s.fd(from_dir),
            s.entries[t].name.as_slice(),
            s.fd(dir),
            n.as_slice(),
            AtFlags::empty(),
        )
        .unwrap();
        s.entries.push(Entry { dir, name: n, made });
    }

    // Owners, then modes (chown clears setuid), then mtimes, deepest
    // first (adding a name moves its directory's mtime).
    let ids = [0u32, 1, 1000, 65534, 123_456, 4_294_967_294];
    for i in (0..s.entries.len()).rev() {
        let (dir, made) = (s.entries[i].dir, s.entries[i].made);
        let n = s.entries[i].name.clone();
        if root_user {
            rustix::fs::chownat(
                s.fd(dir),
                n.as_slice(),
                Some(rustix::fs::Uid::from_raw(*rng.pick(&ids))),
                Some(rustix::fs::Gid::from_raw(*rng.pick(&ids))),
                AtFlags::SYMLINK_NOFOLLOW,
            )
            .unwrap();
        }
        if made != Made::Symlink {
            let mut mode = u32::try_from(rng.below(0o10000)).unwrap();
            if !root_user {
                // Readable and searchable by the walk that packs it.
                mode |= if made == Made::Dir { 0o700 } else { 0o400 };
            }
            chmod(&s, dir, &n, mode);
        }
    }
    for i in (0..s.entries.len()).rev() {
        let secs = i64::try_from(rng.below(6_000_000_000)).unwrap() - 2_000_000_000;
        let nsec = i64::try_from(rng.below(1_000_000_000)).unwrap();
        let t = Timestamps {
            last_access: Timespec {
                tv_sec: 0,
                tv_nsec: 0,
            },
            last_modification: Timespec {
                tv_sec: secs,
                tv_nsec: nsec,
            },
        };
        let (dir, name) = (s.entries[i].dir, &s.entries[i].name);
        rustix::fs::utimensat(s.fd(dir), name.as_slice(), &t, AtFlags::SYMLINK_NOFOLLOW).unwrap();
    }
    // The root's own attributes.
    rustix::fs::lsetxattr(root, "user.root", b"r\n", XattrFlags::empty()).unwrap();
    if root_user {
        rustix::fs::chown(
            root,
            Some(rustix::fs::Uid::from_raw(1000)),
            Some(rustix::fs::Gid::from_raw(1000)),
        )
        .unwrap();
    }
    rustix::fs::chmod(root, Mode::from_raw_mode(0o750)).unwrap();
    let t = Timestamps {
        last_access: Timespec {
            tv_sec: 0,
            tv_nsec: 0,
        },
        last_modification: Timespec {
            tv_sec: -1,
            tv_nsec: 999_999_999,
        },
    };
    rustix::fs::utimensat(rustix::fs::CWD, root, &t, AtFlags::empty()).unwrap();
    s
}

fn mkdir(s: &mut Source, parent: usize, n: Vec<u8>) -> usize {
    let fd = s.fd(parent);
    rustix::fs::mkdirat(fd, n.as_slice(), Mode::RWXU).unwrap();
    let child = rustix::fs::openat(fd, n.as_slice(), DIR_OPEN, Mode::empty()).unwrap();
    let path = s.dirs[parent].1.join(OsStr::from_bytes(&n));
    s.dirs.push((child, path));
    s.entries.push(Entry {
        dir: parent,
        name: n,
        made: Made::Dir,
    });
    s.dirs.len() - 1
}

/// A regular file: empty, around a block, larger, or sparse (a hole of
/// a few MiB around a little data).
fn file(s: &mut Source, rng: &mut Rng, dir: usize, n: Vec<u8>) {
    let f = rustix::fs::openat(
        s.fd(dir),
        n.as_slice(),
        OFlags::CREATE | OFlags::EXCL | OFlags::WRONLY | OFlags::CLOEXEC,
        Mode::RUSR | Mode::WUSR,
    )
    .unwrap();
    let f = std::fs::File::from(f);
    if rng.chance(8) {
        let len = (2 << 20) + rng.below(3 << 20);
        f.set_len(len).unwrap();
        let at = rng.below(len - 5000);
        std::os::unix::fs::FileExt::write_all_at(&f, &rng.bytes(5000), at).unwrap();
    } else {
        let len = *rng.pick(&[0usize, 1, 100, 4095, 4096, 4097, 9000, 40_000]);
        let data = if rng.chance(2) {
            rng.bytes(len)
        } else {
            // Compressible: LZ4 stores it compressed.
            (0..len).map(|i| b"smol"[i % 4]).collect()
        };
        std::io::Write::write_all(&mut &f, &data).unwrap();
    }
    s.entries.push(Entry {
        dir,
        name: n,
        made: Made::File,
    });
}

fn chmod(s: &Source, dir: usize, name: &[u8], mode: u32) {
    // fchmodat follows symlinks; never called on one.
    rustix::fs::chmodat(s.fd(dir), name, Mode::from_raw_mode(mode), AtFlags::empty()).unwrap();
}

/// What a reader sees at one path, names and targets as bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Seen {
    kind: Kind,
    mode: u32,
    uid: u32,
    gid: u32,
    mtime: (i64, u32),
    xattrs: BTreeMap<Vec<u8>, Vec<u8>>,
    nlink: u64,
    /// The smallest path of its hard-link group (itself when alone).
    group: Vec<u8>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Kind {
    Dir,
    /// Size and FNV-1a of the content.
    File(u64, u64),
    Symlink(Vec<u8>),
    Char(u32, u32),
    Block(u32, u32),
    Fifo,
    Socket,
}

/// Walks `root` by directory descriptors (paths may be longer than
/// PATH_MAX), never following a symlink.
#[allow(clippy::useless_conversion)] // Stat's field types vary by architecture
fn scan(root: &Path) -> BTreeMap<Vec<u8>, Seen> {
    let mut out = BTreeMap::new();
    let mut inodes: BTreeMap<(u64, u64), Vec<u8>> = BTreeMap::new();
    let mut key_of: BTreeMap<Vec<u8>, (u64, u64)> = BTreeMap::new();
    let root_fd = rustix::fs::open(
        root,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .unwrap();
    let st = rustix::fs::fstat(&root_fd).unwrap();
    let xattrs = xattrs_of(&root_fd, None);
    out.insert(Vec::new(), seen(&st, Kind::Dir, xattrs, Vec::new()));
    let mut stack = vec![(root_fd, Vec::new())];
    while let Some((dir, rel)) = stack.pop() {
        for e in rustix::fs::Dir::read_from(&dir).unwrap() {
            let e = e.unwrap();
            let n = e.file_name().to_bytes().to_vec();
            if n == b"." || n == b".." {
                continue;
            }
            let path = if rel.is_empty() {
                n.clone()
            } else {
                [&rel[..], b"/", &n].concat()
            };
            let c = CString::new(n).unwrap();
            let st = rustix::fs::statat(&dir, c.as_c_str(), AtFlags::SYMLINK_NOFOLLOW).unwrap();
            let ft = FileType::from_raw_mode(st.st_mode);
            let rdev = (rustix::fs::major(st.st_rdev), rustix::fs::minor(st.st_rdev));
            let (kind, xattrs) = match ft {
                FileType::Directory => {
                    let fd = rustix::fs::openat(
                        &dir,
                        c.as_c_str(),
                        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW,
                        Mode::empty(),
                    )
                    .unwrap();
                    let x = xattrs_of(&fd, None);
                    stack.push((fd, path.clone()));
                    (Kind::Dir, x)
                }
                FileType::RegularFile => {
                    let fd = rustix::fs::openat(
                        &dir,
                        c.as_c_str(),
                        OFlags::RDONLY | OFlags::NOFOLLOW,
                        Mode::empty(),
                    )
                    .unwrap();
                    let x = xattrs_of(&fd, None);
                    let mut f = std::fs::File::from(fd);
                    let mut data = Vec::new();
                    std::io::Read::read_to_end(&mut f, &mut data).unwrap();
                    (Kind::File(data.len() as u64, fnv1a(&data)), x)
                }
                other => {
                    let kind = match other {
                        FileType::Symlink => Kind::Symlink(
                            rustix::fs::readlinkat(&dir, c.as_c_str(), Vec::new())
                                .unwrap()
                                .into_bytes(),
                        ),
                        FileType::CharacterDevice => Kind::Char(rdev.0, rdev.1),
                        FileType::BlockDevice => Kind::Block(rdev.0, rdev.1),
                        FileType::Fifo => Kind::Fifo,
                        _ => Kind::Socket,
                    };
                    (kind, xattrs_of(&dir, Some(c.as_bytes())))
                }
            };
            if ft != FileType::Directory {
                let key = (u64::from(st.st_dev), u64::from(st.st_ino));
                let first = inodes.entry(key).or_insert_with(|| path.clone());
                // The walk is not in path order: keep the smallest.
                if path < *first {
                    *first = path.clone();
                }
                key_of.insert(path.clone(), key);
            }
            let group = path.clone();
            out.insert(path, seen(&st, kind, xattrs, group));
        }
    }
    // Groups by their smallest path, now that every name is known.
    for (p, key) in key_of {
        out.get_mut(&p).unwrap().group = inodes[&key].clone();
    }
    out
}

#[allow(clippy::useless_conversion)]
fn seen(
    st: &rustix::fs::Stat,
    kind: Kind,
    xattrs: BTreeMap<Vec<u8>, Vec<u8>>,
    group: Vec<u8>,
) -> Seen {
    Seen {
        kind,
        mode: u32::from(st.st_mode) & 0o7777,
        uid: st.st_uid,
        gid: st.st_gid,
        mtime: (
            i64::from(st.st_mtime),
            u32::try_from(st.st_mtime_nsec).unwrap(),
        ),
        xattrs,
        nlink: u64::from(st.st_nlink),
        group,
    }
}

/// xattrs of the open `fd`, or of `name` in the directory `fd` (not
/// following a symlink).
fn xattrs_of(fd: &OwnedFd, name: Option<&[u8]>) -> BTreeMap<Vec<u8>, Vec<u8>> {
    let mut out = BTreeMap::new();
    let (list, path) = match name {
        None => {
            let mut buf = vec![0u8; rustix::fs::flistxattr_query(fd).unwrap_or(0)];
            let n = rustix::fs::flistxattr(fd, &mut buf[..]).unwrap_or(0);
            buf.truncate(n);
            (buf, None)
        }
        Some(name) => {
            let mut p = format!("/proc/self/fd/{}/", fd.as_fd().as_raw_fd()).into_bytes();
            p.extend_from_slice(name);
            let p = PathBuf::from(OsStr::from_bytes(&p));
            let mut buf = vec![0u8; rustix::fs::llistxattr_query(&p).unwrap_or(0)];
            let n = rustix::fs::llistxattr(&p, &mut buf[..]).unwrap_or(0);
            buf.truncate(n);
            (buf, Some(p))
        }
    };
    for attr in list.split(|b| *b == 0).filter(|a| !a.is_empty()) {
        let c = CString::new(attr).unwrap();
        let mut value = vec![0u8; 1 << 16];
        let n = match &path {
            None => rustix::fs::fgetxattr(fd, c.as_c_str(), &mut value[..]),
            Some(p) => rustix::fs::lgetxattr(p, c.as_c_str(), &mut value[..]),
        }
        .unwrap();
        value.truncate(n);
        out.insert(attr.to_vec(), value);
    }
    out
}

fn fnv1a(data: &[u8]) -> u64 {
    data.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// What a GNU tar of the source carries: no sockets, and fifos and
/// devices archived name by name (no hard links between them).
fn as_gnu_tar_keeps(mut source: BTreeMap<Vec<u8>, Seen>) -> BTreeMap<Vec<u8>, Seen> {
    source.retain(|_, s| s.kind != Kind::Socket);
    for (p, s) in source.iter_mut() {
        if matches!(s.kind, Kind::Fifo | Kind::Char(..) | Kind::Block(..)) {
            s.nlink = 1;
            s.group = p.clone();
        }
    }
    source
}

/// What `fsck.erofs --extract` by a non-root user can show: no owners,
/// xattrs, setuid/setgid or link counts; hard links come out as copies.
fn as_extracted(mut v: BTreeMap<Vec<u8>, Seen>) -> BTreeMap<Vec<u8>, Seen> {
    v.remove(&Vec::new());
    for (p, s) in v.iter_mut() {
        s.uid = 0;
        s.gid = 0;
        s.xattrs.clear();
        s.nlink = 0;
        s.group = p.clone();
        if s.kind != Kind::Dir {
            s.mode &= !0o6000;
        }
        if matches!(s.kind, Kind::Symlink(_)) {
            s.mode = 0;
            s.mtime = (0, 0);
        }
    }
    v
}

fn show(p: &[u8]) -> String {
    p.escape_ascii().to_string()
}

/// The fields in which `got` is not `want`, each with both values.
fn fields_apart(want: &Seen, got: &Seen) -> String {
    let mut out = Vec::new();
    let mut field = |name: &str, w: String, g: String| {
        if w != g {
            out.push(format!("{name}: want {w}, got {g}"));
        }
    };
    field(
        "kind",
        format!("{:?}", want.kind),
        format!("{:?}", got.kind),
    );
    field(
        "mode",
        format!("{:o}", want.mode),
        format!("{:o}", got.mode),
    );
    field("uid", want.uid.to_string(), got.uid.to_string());
    field("gid", want.gid.to_string(), got.gid.to_string());
    field(
        "mtime",
        format!("{:?}", want.mtime),
        format!("{:?}", got.mtime),
    );
    let names = |s: &Seen| {
        s.xattrs
            .iter()
            .map(|(k, v)| format!("{}={}", show(k), show(v)))
            .collect::<Vec<_>>()
            .join(" ")
    };
    field("xattrs", names(want), names(got));
    field("nlink", want.nlink.to_string(), got.nlink.to_string());
    field("group", show(&want.group), show(&got.group));
    out.join("; ")
}

fn assert_same(want: &BTreeMap<Vec<u8>, Seen>, got: &BTreeMap<Vec<u8>, Seen>, what: &str) {
    let mut diffs = Vec::new();
    for (p, w) in want {
        match got.get(p) {
            None => diffs.push(format!("{}: missing", show(p))),
            Some(g) if g != w => diffs.push(format!("{}: {}", show(p), fields_apart(w, g))),
            Some(_) => {}
        }
    }
    for p in got.keys().filter(|p| !want.contains_key(*p)) {
        diffs.push(format!("{}: not in the source", show(p)));
    }
    let shown: Vec<String> = diffs
        .iter()
        .take(5)
        .map(|d| d.chars().take(600).collect())
        .collect();
    assert!(
        diffs.is_empty(),
        "{what}: {} differences, first ones:\n{}",
        diffs.len(),
        shown.join("\n")
    );
}

/// The image as a reader sees it: loop-mounted, or extracted where this
/// machine cannot mount.
fn read_image(image: &Path, scratch: &Path) -> (BTreeMap<Vec<u8>, Seen>, bool) {
    erofs_support::fsck(image, None);
    if let Some(m) = erofs_support::mount(image) {
        return (scan(m.path()), true);
    }
    let out = scratch.join("extracted");
    let _ = std::fs::remove_dir_all(&out);
    erofs_support::fsck(image, Some(&out));
    (as_extracted(scan(&out)), false)
}

fn run_case(seed: u64) {
    let scratch = tempfile::tempdir().unwrap();
    let src = scratch.path().join("src");
    std::fs::create_dir(&src).unwrap();
    let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
    let made = make_source(&mut rng, &src);
    let source = scan(&src);
    let what = |input: &str, c: Compression| {
        format!(
            "seed {seed} (SMOLVM_RANDOM_TREES_SEED={seed}), {input}, {c:?}, {} entries{}",
            source.len(),
            if made.deep { ", deep" } else { "" }
        )
    };

    let mut kinds: BTreeMap<String, (usize, usize)> = BTreeMap::new();
    for (p, v) in &source {
        let k = format!("{:?}", v.kind);
        let k = k.split(['(', ' ']).next().unwrap_or("").to_string();
        let e = kinds.entry(k).or_default();
        e.0 += 1;
        e.1 += usize::from(v.kind != Kind::Dir && v.group != *p);
    }
    eprintln!(
        "seed {seed}: {} entries{} (kind: names, extra hard-link names) {kinds:?}",
        source.len(),
        if made.deep { ", deep" } else { "" }
    );

    let archive = scratch.path().join("src.tar");
    let out = Command::new("tar")
        .args([
            "--format=posix",
            "--xattrs",
            "--xattrs-include=*",
            "-S",
            "--numeric-owner",
        ])
        .arg("-cf")
        .arg(&archive)
        .arg("-C")
        .arg(&made.root)
        .arg(".")
        .output()
        .unwrap();
    // GNU tar says "socket ignored" and exits 0; anything else fails.
    assert!(
        out.status.success(),
        "seed {seed}: tar: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    let from_dir = Tree::from_dir(&src).unwrap_or_else(|e| panic!("seed {seed}: {e}"));
    let from_tar = Tree::from_archive(&archive).unwrap_or_else(|e| panic!("seed {seed}: {e}"));
    for (input, tree, want) in [
        ("directory", &from_dir, source.clone()),
        ("GNU tar", &from_tar, as_gnu_tar_keeps(source.clone())),
    ] {
        for compression in [Compression::None, Compression::Lz4] {
            let what = what(input, compression);
            let dir = tempfile::tempdir_in(scratch.path()).unwrap();
            let opts = ErofsOptions {
                compression,
                ..ErofsOptions::default()
            };
            let image = erofs_support::write_to_file(tree, &opts, dir.path());
            let (got, mounted) = read_image(&image, dir.path());
            let want = if mounted {
                want.clone()
            } else {
                as_extracted(want.clone())
            };
            assert_same(&want, &got, &what);
        }
    }
}

#[test]
fn random_trees_read_back_as_their_source() {
    if let Some(seed) = std::env::var("SMOLVM_RANDOM_TREES_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
    {
        return run_case(seed);
    }
    let cases: u64 = std::env::var("SMOLVM_RANDOM_TREES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(6);
    for seed in 1..=cases {
        run_case(seed);
    }
}

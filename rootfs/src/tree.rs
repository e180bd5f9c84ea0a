//! The root filesystem tree: inputs normalised into one sorted model.
//!
//! Inputs (a directory or a tar archive) are read into a [`Tree`]: one node
//! per normalised path, in byte order. The tree is written out sorted, with
//! mtimes clamped to SOURCE_DATE_EPOCH when it is set and owner/mode kept as
//! in the input, so the same input gives the same bytes. Nothing is ever
//! created on the host from the input: device nodes stay tar entries.

use std::collections::BTreeMap;
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use crate::spool::Spool;
use crate::{io_err, RootfsError};

/// Where a regular file's bytes are.
#[derive(Debug, Clone, PartialEq)]
pub enum FileData {
    Inline(Vec<u8>),
    /// Read from the host at emission time; `len` is the size seen when walking.
    Host {
        path: PathBuf,
        len: u64,
    },
}

impl FileData {
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn len(&self) -> u64 {
        match self {
            FileData::Inline(v) => v.len() as u64,
            FileData::Host { len, .. } => *len,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum NodeKind {
    Dir,
    File(FileData),
    /// Target as written; never followed.
    Symlink(String),
    /// Normalised path of another node in the tree.
    HardLink(String),
    Char {
        major: u32,
        minor: u32,
    },
    Block {
        major: u32,
        minor: u32,
    },
    Fifo,
    /// A Unix socket's inode (no listener: a name only). Directories keep
    /// them; tar cannot carry them.
    Socket,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    pub mode: u32,
    pub uid: u64,
    pub gid: u64,
    /// Seconds since the epoch; before 1970 is negative.
    pub mtime: i64,
    /// Nanoseconds within `mtime`'s second (below 1,000,000,000).
    pub mtime_nsec: u32,
    pub kind: NodeKind,
    /// Extended attributes by full name (`security.capability`, `user.x`).
    pub xattrs: BTreeMap<String, Vec<u8>>,
}

impl Node {
    /// A directory owned by root, as made for missing parents, mount points
    /// and the implicit root.
    pub const fn dir(mode: u32) -> Node {
        Node {
            mode,
            uid: 0,
            gid: 0,
            mtime: 0,
            mtime_nsec: 0,
            kind: NodeKind::Dir,
            xattrs: BTreeMap::new(),
        }
    }
}

/// A root filesystem as a sorted map from normalised relative path
/// (no leading `/` or `./`, no `..`, no trailing `/`) to node.
#[derive(Debug, Default, Clone)]
pub struct Tree {
    pub nodes: BTreeMap<String, Node>,
    /// Where contents read from archives were spooled (the
    /// [`FileData::Host`] paths inside it); kept for as long as the tree is.
    pub spool: Option<std::sync::Arc<Spool>>,
}

/// Names and symlink targets are bytes on Linux, and a tree keeps them as
/// bytes: the tree's paths and targets are `String`s in which each byte
/// that is not part of valid UTF-8 stands as one character of
/// U+10FF80..=U+10FFFF (byte 0x80 + n as U+10FF80 + n). A name that really
/// holds one of those characters has its UTF-8 bytes carried the same way,
/// so every byte string has exactly one form and comes back unchanged
/// ([`name_bytes`]). `/`, `.` and every other ASCII byte are themselves, so
/// path handling on the strings is path handling on the bytes.
const BYTE_ESCAPE_BASE: u32 = 0x10_FF00;
const BYTE_ESCAPE_FIRST: u32 = BYTE_ESCAPE_BASE + 0x80;

fn escape_byte(b: u8) -> char {
    char::from_u32(BYTE_ESCAPE_BASE + u32::from(b)).expect("U+10FF80..=U+10FFFF are chars")
}

/// The tree's form of a name or path from the host or an archive.
pub fn name_from_bytes(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    for chunk in bytes.utf8_chunks() {
        for c in chunk.valid().chars() {
            if u32::from(c) >= BYTE_ESCAPE_FIRST {
                let mut buf = [0u8; 4];
                out.extend(c.encode_utf8(&mut buf).bytes().map(escape_byte));
            } else {
                out.push(c);
            }
        }
        out.extend(chunk.invalid().iter().copied().map(escape_byte));
    }
    out
}

/// The bytes a tree name or path stands for (see [`name_from_bytes`]).
pub fn name_bytes(name: &str) -> std::borrow::Cow<'_, [u8]> {
    if !name.chars().any(|c| u32::from(c) >= BYTE_ESCAPE_FIRST) {
        return std::borrow::Cow::Borrowed(name.as_bytes());
    }
    let mut out = Vec::with_capacity(name.len());
    for c in name.chars() {
        match u32::from(c).checked_sub(BYTE_ESCAPE_BASE) {
            Some(b) if u32::from(c) >= BYTE_ESCAPE_FIRST => {
                out.push(u8::try_from(b).expect("at most 0xFF"));
            }
            _ => {
                let mut buf = [0u8; 4];
                out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
            }
        }
    }
    std::borrow::Cow::Owned(out)
}

/// A tree name for messages: its bytes, with what is not printable UTF-8
/// escaped (`\xff`, `\n`, `\"`), never raw control characters.
pub fn display_name(name: &str) -> String {
    let bytes = name_bytes(name);
    let mut out = String::new();
    for chunk in bytes.utf8_chunks() {
        for c in chunk.valid().chars() {
            if c.is_control() || c == '\\' || c == '"' {
                out.extend(c.escape_default());
            } else {
                out.push(c);
            }
        }
        for b in chunk.invalid() {
            out.push_str(&format!("\\x{b:02x}"));
        }
    }
    out
}

/// [`display_name`] in double quotes, for a name inside a message.
pub fn quoted_name(name: &str) -> String {
    format!("\"{}\"", display_name(name))
}

/// Directories libkrun's init mounts onto; the guest root is read-only, so
/// they must exist in the image.
const MOUNT_POINTS: &[&str] = &["dev", "proc", "sys", "tmp", "run"];

/// Normalises a path from an archive or walk: strips leading `/` and `./`,
/// rejects `..` and empty names. Returns `None` for the root itself.
pub fn normalise(raw: &str) -> Result<Option<String>, String> {
    let mut parts = Vec::new();
    for c in Path::new(raw).components() {
        match c {
            Component::RootDir | Component::CurDir => {}
            Component::Normal(p) => {
                let s = p.to_str().ok_or_else(|| "path is not UTF-8".to_string())?;
                parts.push(s.to_string());
            }
            Component::ParentDir => return Err("path contains `..`".into()),
            Component::Prefix(_) => return Err("path has a prefix".into()),
        }
    }
    Ok((!parts.is_empty()).then(|| parts.join("/")))
}

impl Tree {
    /// Reads a directory tree. Symlinks are recorded, not followed (the
    /// root itself may be one); names of one inode (a file, symlink, fifo,
    /// device or socket) become hard links to the first path in order. The
    /// root directory's own owner, mode, mtime and xattrs are the tree's
    /// `""` node.
    ///
    /// The walk goes by directory descriptors (`openat`, `fstatat`,
    /// `readlinkat` relative to the directory being read, never following
    /// a symlink), so paths longer than PATH_MAX read, and a directory
    /// swapped for a symlink while walking is refused rather than
    /// followed. Regular files are opened again by path when the image is
    /// written ([`open_host`]).
    // The field types of `Stat` differ between architectures.
    #[allow(clippy::useless_conversion)]
    pub fn from_dir(root: &Path) -> Result<Tree, RootfsError> {
        use rustix::fs::{AtFlags, FileType, Mode, OFlags};
        let io = |path: &Path| io_err(format!("rootfs {}", path.display()));
        let what = format!("rootfs {}", root.display());
        let meta = std::fs::metadata(root).map_err(io(root))?;
        if !meta.is_dir() {
            return Err(RootfsError::Invalid {
                what,
                fault: "not a directory".into(),
            });
        }
        let dir_flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        // The root itself may be a symlink (`--rootfs LINK`): followed.
        let root_fd = rustix::fs::open(
            root,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| io(root)(e.into()))?;
        let root_stat = rustix::fs::fstat(&root_fd).map_err(|e| io(root)(e.into()))?;
        let mut tree = Tree::default();
        tree.nodes.insert(
            String::new(),
            Node {
                xattrs: read_xattrs_at(&root_fd, None, root).map_err(io(root))?,
                ..node_from_stat(&root_stat, NodeKind::Dir)
            },
        );
        let mut inodes: BTreeMap<(u64, u64), String> = BTreeMap::new();
        let mut stack = vec![(root_fd, root.to_path_buf(), String::new())];
        while let Some((dir_fd, dir, rel)) = stack.pop() {
            let mut names: Vec<std::ffi::CString> = Vec::new();
            for entry in rustix::fs::Dir::read_from(&dir_fd).map_err(|e| io(&dir)(e.into()))? {
                let entry = entry.map_err(|e| io(&dir)(e.into()))?;
                let name = entry.file_name();
                if name != c"." && name != c".." {
                    names.push(name.to_owned());
                }
            }
            names.sort();
            for c_name in names {
                let name_bytes = c_name.as_bytes();
                let host = dir.join(std::ffi::OsStr::from_bytes(name_bytes));
                let name = name_from_bytes(name_bytes);
                let rel_path = if rel.is_empty() {
                    name
                } else {
                    format!("{rel}/{name}")
                };
                let io_here = |e: rustix::io::Errno| io(&host)(e.into());
                let mut st =
                    rustix::fs::statat(&dir_fd, c_name.as_c_str(), AtFlags::SYMLINK_NOFOLLOW)
                        .map_err(io_here)?;
                let ft = FileType::from_raw_mode(st.st_mode);
                let nlink = u64::from(st.st_nlink);
                let key = (u64::from(st.st_dev), u64::from(st.st_ino));
                let linked = (ft != FileType::Directory && nlink > 1)
                    .then(|| inodes.get(&key).cloned())
                    .flatten();
                let (kind, opened) = match linked {
                    Some(first) => (NodeKind::HardLink(first), None),
                    None => host_kind(&dir_fd, &c_name, ft, &mut st, &host, dir_flags)?,
                };
                if ft != FileType::Directory && nlink > 1 && !matches!(kind, NodeKind::HardLink(_))
                {
                    inodes.insert(key, rel_path.clone());
                }
                let xattrs = match (&kind, &opened) {
                    // The inode's, read once with its first name.
                    (NodeKind::HardLink(_), _) => Ok(BTreeMap::new()),
                    (_, Some(fd)) => read_xattrs_at(fd, None, &host),
                    _ => read_xattrs_at(&dir_fd, Some(c_name.as_c_str()), &host),
                }
                .map_err(io(&host))?;
                let node = Node {
                    xattrs,
                    ..node_from_stat(&st, kind)
                };
                if let Some(fd) = opened {
                    stack.push((fd, host, rel_path.clone()));
                }
                tree.nodes.insert(rel_path, node);
            }
        }
        Ok(tree)
    }

    /// The node at `path` with every symlink on the way (the last component
    /// too) resolved inside the tree: `..` stops at the root and absolute
    /// targets start there. Nothing is looked up on the host.
    pub fn resolve(&self, path: &str) -> Option<(&str, &Node)> {
        let mut resolved: Vec<&str> = Vec::new();
        let mut pending: std::collections::VecDeque<&str> = path.split('/').collect();
        let mut hops = 0;
        while let Some(c) = pending.pop_front() {
            match c {
                "" | "." => continue,
                ".." => {
                    resolved.pop();
                    continue;
                }
                _ => {}
            }
            resolved.push(c);
            let key = resolved.join("/");
            let (key, node) = self.nodes.get_key_value(&key)?;
            if let NodeKind::Symlink(target) = &node.kind {
                hops += 1;
                if hops > 40 {
                    return None;
                }
                resolved.pop();
                if target.starts_with('/') {
                    resolved.clear();
                }
                for part in target.split('/').rev() {
                    pending.push_front(part);
                }
            } else if pending.iter().all(|p| p.is_empty() || *p == ".") {
                return Some((key.as_str(), node));
            }
        }
        None
    }

    /// The content of the regular file at `path` (symlinks and hard links
    /// resolved inside the tree), at most `limit` bytes; `None` if there is
    /// no such file.
    pub fn read_file(&self, path: &str, limit: u64) -> Result<Option<Vec<u8>>, RootfsError> {
        let Some((_, mut node)) = self.resolve(path) else {
            return Ok(None);
        };
        if let NodeKind::HardLink(target) = &node.kind {
            match self.nodes.get(target) {
                Some(n) => node = n,
                None => return Ok(None),
            }
        }
        let too_big = || RootfsError::Invalid {
            what: format!("rootfs /{path}"),
            fault: format!("larger than {limit} bytes"),
        };
        match &node.kind {
            NodeKind::File(FileData::Inline(d)) if d.len() as u64 > limit => Err(too_big()),
            NodeKind::File(FileData::Inline(d)) => Ok(Some(d.clone())),
            NodeKind::File(FileData::Host { len, .. }) if *len > limit => Err(too_big()),
            NodeKind::File(FileData::Host { path: host, .. }) => {
                use std::io::Read;
                let mut out = Vec::new();
                open_host(host)
                    .and_then(|f| f.take(limit).read_to_end(&mut out))
                    .map_err(io_err(format!("rootfs {}", host.display())))?;
                Ok(Some(out))
            }
            _ => Ok(None),
        }
    }

    /// Adds the directories the guest's init needs if the image lacks them.
    pub fn ensure_mount_points(&mut self) {
        for dir in MOUNT_POINTS {
            self.nodes
                .entry((*dir).to_string())
                .or_insert(Node::dir(if *dir == "tmp" { 0o1777 } else { 0o755 }));
        }
    }

    /// Total bytes of regular-file content (for progress).
    pub fn content_len(&self) -> u64 {
        self.nodes
            .values()
            .map(|n| match &n.kind {
                NodeKind::File(d) => d.len(),
                _ => 0,
            })
            .sum()
    }
}

/// The node kind of one directory entry as `statat` saw it (`st`); a
/// subdirectory is opened here and `st` becomes the opened one's, so the
/// walk descends into what it recorded.
fn host_kind(
    dir_fd: &rustix::fd::OwnedFd,
    c_name: &std::ffi::CStr,
    ft: rustix::fs::FileType,
    st: &mut rustix::fs::Stat,
    host: &Path,
    dir_flags: rustix::fs::OFlags,
) -> Result<(NodeKind, Option<rustix::fd::OwnedFd>), RootfsError> {
    use rustix::fs::{FileType, Mode};
    let io_here = |e: rustix::io::Errno| io_err(format!("rootfs {}", host.display()))(e.into());
    let kind = match ft {
        FileType::Directory => {
            let fd =
                rustix::fs::openat(dir_fd, c_name, dir_flags, Mode::empty()).map_err(io_here)?;
            // What is read is what was opened.
            *st = rustix::fs::fstat(&fd).map_err(io_here)?;
            return Ok((NodeKind::Dir, Some(fd)));
        }
        FileType::Symlink => {
            let target = rustix::fs::readlinkat(dir_fd, c_name, Vec::new()).map_err(io_here)?;
            NodeKind::Symlink(name_from_bytes(target.as_bytes()))
        }
        FileType::RegularFile => NodeKind::File(FileData::Host {
            path: host.to_path_buf(),
            len: u64::try_from(st.st_size).unwrap_or(0),
        }),
        FileType::CharacterDevice | FileType::BlockDevice => {
            let rdev = st.st_rdev;
            let (major, minor) = (rustix::fs::major(rdev), rustix::fs::minor(rdev));
            if ft == FileType::CharacterDevice {
                NodeKind::Char { major, minor }
            } else {
                NodeKind::Block { major, minor }
            }
        }
        FileType::Fifo => NodeKind::Fifo,
        _ => NodeKind::Socket,
    };
    Ok((kind, None))
}

/// A node with `st`'s owner, permissions and mtime (nanoseconds too).
// The field types of `Stat` differ between architectures.
#[allow(clippy::useless_conversion)]
fn node_from_stat(st: &rustix::fs::Stat, kind: NodeKind) -> Node {
    Node {
        mode: u32::from(st.st_mode) & 0o7777,
        uid: u64::from(st.st_uid),
        gid: u64::from(st.st_gid),
        mtime: i64::from(st.st_mtime),
        mtime_nsec: u32::try_from(st.st_mtime_nsec).unwrap_or(0),
        kind,
        xattrs: BTreeMap::new(),
    }
}

/// Opens a host file for reading, never following a symlink in its last
/// component. A path longer than PATH_MAX (a tree read by
/// [`Tree::from_dir`] may hold one) is opened piece by piece: each run of
/// components shorter than PATH_MAX relative to the directory before it.
pub fn open_host(path: &Path) -> std::io::Result<std::fs::File> {
    use rustix::fs::{Mode, OFlags};
    use std::os::fd::OwnedFd;
    let read = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    match rustix::fs::open(path, read, Mode::empty()) {
        Ok(fd) => return Ok(std::fs::File::from(fd)),
        Err(e) if e != rustix::io::Errno::NAMETOOLONG => return Err(e.into()),
        Err(_) => {}
    }
    let bytes = path.as_os_str().as_bytes();
    let (dirs, last) = match bytes.iter().rposition(|&b| b == b'/') {
        Some(at) => (&bytes[..=at], &bytes[at + 1..]),
        None => (&b""[..], bytes),
    };
    // Pieces of at most PIECE bytes, cut after a '/'.
    const PIECE: usize = 3072;
    let mut at: Option<OwnedFd> = None;
    let mut rest = dirs;
    while !rest.is_empty() {
        let cut = if rest.len() <= PIECE {
            rest.len()
        } else {
            rest[..PIECE]
                .iter()
                .rposition(|&b| b == b'/')
                .map(|p| p + 1)
                .ok_or_else(|| std::io::Error::from_raw_os_error(libc::ENAMETOOLONG))?
        };
        let piece = std::ffi::OsStr::from_bytes(&rest[..cut]);
        let flags = OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC;
        let fd = match &at {
            None => rustix::fs::open(piece, flags, Mode::empty()),
            Some(dir) => rustix::fs::openat(dir, piece, flags, Mode::empty()),
        }?;
        at = Some(fd);
        rest = &rest[cut..];
    }
    let last = std::ffi::OsStr::from_bytes(last);
    let fd = match &at {
        None => rustix::fs::open(last, read, Mode::empty()),
        Some(dir) => rustix::fs::openat(dir, last, read, Mode::empty()),
    }?;
    Ok(std::fs::File::from(fd))
}

/// The extended attributes of `name` in the directory `dir` (never
/// following a symlink), or of `dir` itself when `name` is `None`. A name
/// is read through `/proc/self/fd`, whose paths are short however deep
/// the tree is (`host` when /proc is not mounted).
fn read_xattrs_at(
    dir: &std::os::fd::OwnedFd,
    name: Option<&std::ffi::CStr>,
    host: &Path,
) -> std::io::Result<BTreeMap<String, Vec<u8>>> {
    use std::os::fd::AsRawFd;
    let Some(name) = name else {
        return read_xattrs(
            || rustix::fs::flistxattr_query(dir),
            |list| rustix::fs::flistxattr(dir, list),
            |attr, value| rustix::fs::fgetxattr(dir, attr, value),
        );
    };
    let mut via_proc = format!("/proc/self/fd/{}/", dir.as_raw_fd()).into_bytes();
    via_proc.extend_from_slice(name.to_bytes());
    let path = if Path::new("/proc/self/fd").is_dir() {
        Path::new(std::ffi::OsStr::from_bytes(&via_proc))
    } else {
        host
    };
    read_xattrs(
        || rustix::fs::llistxattr_query(path),
        |list| rustix::fs::llistxattr(path, list),
        |attr, value| rustix::fs::lgetxattr(path, attr, value),
    )
}

/// Extended attributes by `list` (names, NUL-separated, `list_len` long)
/// and `get` (one value), which take a buffer and return the bytes they
/// filled.
fn read_xattrs(
    list_len: impl Fn() -> rustix::io::Result<usize>,
    list: impl Fn(&mut [u8]) -> rustix::io::Result<usize>,
    get: impl Fn(&std::ffi::CStr, &mut [u8]) -> rustix::io::Result<usize>,
) -> std::io::Result<BTreeMap<String, Vec<u8>>> {
    let mut out = BTreeMap::new();
    let len = match list_len() {
        Ok(len) => len,
        // Filesystems without xattr support have none to keep.
        Err(e) if e == rustix::io::Errno::NOTSUP => return Ok(out),
        Err(e) => return Err(e.into()),
    };
    if len == 0 {
        return Ok(out);
    }
    let mut names = vec![0u8; len];
    let got = list(&mut names[..])?;
    names.truncate(got);
    for name in names.split(|b| *b == 0).filter(|n| !n.is_empty()) {
        let c_name = std::ffi::CString::new(name).expect("split at NUL");
        let mut value = vec![0u8; 256];
        loop {
            match get(c_name.as_c_str(), &mut value[..]) {
                Ok(n) => {
                    value.truncate(n);
                    break;
                }
                Err(e) if e == rustix::io::Errno::RANGE && value.len() < 1 << 16 => {
                    value.resize(value.len() * 4, 0);
                }
                Err(e) => return Err(e.into()),
            }
        }
        out.insert(String::from_utf8_lossy(name).into_owned(), value);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_directory_reads_sorted_with_links_symlinks_and_xattrs() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir_all(root.join("b/c")).unwrap();
        std::fs::write(root.join("b/c/file"), b"hello").unwrap();
        std::fs::write(root.join("a"), b"x").unwrap();
        std::fs::hard_link(root.join("b/c/file"), root.join("a-link")).unwrap();
        std::os::unix::fs::symlink("../../etc/passwd", root.join("b/sym")).unwrap();
        let user_xattr = xattr_set(&root.join("a"), "user.smolvm", b"v");
        let t = Tree::from_dir(root).unwrap();
        assert_eq!(
            t.nodes.keys().collect::<Vec<_>>(),
            ["", "a", "a-link", "b", "b/c", "b/c/file", "b/sym"]
        );
        // The first path of an inode holds the data; the rest link to it.
        assert!(matches!(t.nodes["a-link"].kind, NodeKind::File(_)));
        assert_eq!(
            t.nodes["b/c/file"].kind,
            NodeKind::HardLink("a-link".into())
        );
        assert_eq!(
            t.nodes["b/sym"].kind,
            NodeKind::Symlink("../../etc/passwd".into())
        );
        if user_xattr {
            assert_eq!(t.nodes["a"].xattrs["user.smolvm"], b"v");
        }
        // Symlinks resolve inside the tree only: `..` stops at the root.
        assert!(
            t.resolve("b/sym").is_none(),
            "etc/passwd is not in the tree"
        );
        assert_eq!(t.read_file("b/c/file", 100).unwrap().unwrap(), b"hello");
    }

    /// Sets an xattr on a host file; false where the filesystem has none.
    fn xattr_set(path: &Path, name: &str, value: &[u8]) -> bool {
        use std::os::unix::ffi::OsStrExt;
        let p = std::ffi::CString::new(path.as_os_str().as_bytes()).unwrap();
        let n = std::ffi::CString::new(name).unwrap();
        // SAFETY: both strings are NUL-terminated; the value is valid for its length.
        let r = unsafe {
            libc::lsetxattr(
                p.as_ptr(),
                n.as_ptr(),
                value.as_ptr().cast(),
                value.len(),
                0,
            )
        };
        r == 0
    }

    proptest::proptest! {
        /// Every byte string has one tree form, and it comes back unchanged.
        #[test]
        fn names_are_bytes_end_to_end(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..40)) {
            let name = name_from_bytes(&bytes);
            let back = name_bytes(&name).into_owned();
            proptest::prop_assert_eq!(back, bytes.clone());
            // ASCII (and so `/` and `.`) stands for itself.
            let ascii: Vec<u8> = bytes.iter().filter(|b| b.is_ascii()).copied().collect();
            proptest::prop_assert_eq!(name.chars().filter(char::is_ascii).count(), ascii.len());
        }
    }

    #[test]
    fn names_that_are_not_utf8_or_hold_escape_characters_round_trip() {
        for bytes in [
            &b"plain"[..],
            b"\xff\xfe",
            b"caf\xc3\xa9",
            b"half \xc3",
            "\u{10FF80}\u{10FFFF}".as_bytes(),
            b"\xf4\x8f\xbe\x80",
        ] {
            assert_eq!(name_bytes(&name_from_bytes(bytes)).as_ref(), bytes);
        }
        assert_eq!(display_name(&name_from_bytes(b"a\xffb\nc")), "a\\xffb\\nc");
    }

    /// `--rootfs LINK` where LINK names a directory: the directory is read
    /// (issue 22: it said "not a directory"), with its own attributes.
    #[test]
    fn a_symlink_to_a_directory_reads_as_the_directory() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let real = dir.path().join("real");
        std::fs::create_dir(&real).unwrap();
        std::fs::write(real.join("f"), b"x").unwrap();
        std::fs::set_permissions(&real, std::fs::Permissions::from_mode(0o711)).unwrap();
        std::os::unix::fs::symlink(&real, dir.path().join("link")).unwrap();
        let t = Tree::from_dir(&dir.path().join("link")).unwrap();
        assert_eq!(t.nodes.keys().collect::<Vec<_>>(), ["", "f"]);
        assert_eq!(t.nodes[""].mode, 0o711);
    }

    /// A directory whose names and symlink targets are not UTF-8 reads
    /// (the issue: "file name is not UTF-8").
    #[test]
    fn a_directory_with_names_that_are_not_utf8_reads() {
        use std::ffi::OsStr;
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::write(root.join(OsStr::from_bytes(b"f\xff")), b"x").unwrap();
        std::os::unix::fs::symlink(OsStr::from_bytes(b"t\xfe"), root.join("s")).unwrap();
        let t = Tree::from_dir(root).unwrap();
        let name = name_from_bytes(b"f\xff");
        assert!(t.nodes.contains_key(&name), "{:?}", t.nodes.keys());
        assert_eq!(
            t.nodes["s"].kind,
            NodeKind::Symlink(name_from_bytes(b"t\xfe"))
        );
    }
}

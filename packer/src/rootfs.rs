//! Root filesystem input, normalised into a deterministic tar stream.
//!
//! Inputs (a directory or a tar archive) are read into a [`Tree`]: one node
//! per normalised path, in byte order. The tree is written out sorted, with
//! mtimes clamped to SOURCE_DATE_EPOCH when it is set and owner/mode kept as
//! in the input, so the same input gives the same bytes. Nothing is ever
//! created on the host from the input: device nodes stay tar entries.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Component, Path, PathBuf};

use thiserror::Error;

#[derive(Debug, Error)]
pub enum RootfsError {
    #[error("rootfs {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("rootfs {path}: entry {entry:?}: {fault}")]
    BadEntry {
        path: PathBuf,
        entry: String,
        fault: String,
    },
    #[error("rootfs {path}: {fault}")]
    Unsupported { path: PathBuf, fault: String },
}

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
}

#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    pub mode: u32,
    pub uid: u64,
    pub gid: u64,
    pub mtime: u64,
    pub kind: NodeKind,
}

/// A root filesystem as a sorted map from normalised relative path
/// (no leading `/` or `./`, no `..`, no trailing `/`) to node.
#[derive(Debug, Default, Clone)]
pub struct Tree {
    pub nodes: BTreeMap<String, Node>,
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
    /// Reads a directory tree. Symlinks are recorded, not followed; files
    /// that share an inode become hard links to the first path in order.
    pub fn from_dir(root: &Path) -> Result<Tree, RootfsError> {
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| RootfsError::Io { path, source }
        };
        let meta = std::fs::symlink_metadata(root).map_err(io(root))?;
        if !meta.is_dir() {
            return Err(RootfsError::Unsupported {
                path: root.to_path_buf(),
                fault: "not a directory".into(),
            });
        }
        let mut tree = Tree::default();
        let mut inodes: BTreeMap<(u64, u64), String> = BTreeMap::new();
        let mut stack = vec![(root.to_path_buf(), String::new())];
        while let Some((dir, rel)) = stack.pop() {
            let mut entries: Vec<_> = std::fs::read_dir(&dir)
                .map_err(io(&dir))?
                .collect::<Result<_, _>>()
                .map_err(io(&dir))?;
            entries.sort_by_key(|e| e.file_name());
            for entry in entries {
                let host = entry.path();
                let name = entry.file_name();
                let name = name.to_str().ok_or_else(|| RootfsError::BadEntry {
                    path: root.to_path_buf(),
                    entry: host.display().to_string(),
                    fault: "file name is not UTF-8".into(),
                })?;
                let rel_path = if rel.is_empty() {
                    name.to_string()
                } else {
                    format!("{rel}/{name}")
                };
                let m = std::fs::symlink_metadata(&host).map_err(io(&host))?;
                let ft = m.file_type();
                let kind = if ft.is_dir() {
                    stack.push((host.clone(), rel_path.clone()));
                    NodeKind::Dir
                } else if ft.is_symlink() {
                    let target = std::fs::read_link(&host).map_err(io(&host))?;
                    NodeKind::Symlink(target.to_str().map(str::to_string).ok_or_else(|| {
                        RootfsError::BadEntry {
                            path: root.to_path_buf(),
                            entry: rel_path.clone(),
                            fault: "symlink target is not UTF-8".into(),
                        }
                    })?)
                } else if ft.is_file() {
                    if m.nlink() > 1 {
                        if let Some(first) = inodes.get(&(m.dev(), m.ino())) {
                            NodeKind::HardLink(first.clone())
                        } else {
                            inodes.insert((m.dev(), m.ino()), rel_path.clone());
                            NodeKind::File(FileData::Host {
                                path: host.clone(),
                                len: m.len(),
                            })
                        }
                    } else {
                        NodeKind::File(FileData::Host {
                            path: host.clone(),
                            len: m.len(),
                        })
                    }
                } else if ft.is_char_device() || ft.is_block_device() {
                    let rdev = m.rdev();
                    let (major, minor) = (libc::major(rdev), libc::minor(rdev));
                    if ft.is_char_device() {
                        NodeKind::Char { major, minor }
                    } else {
                        NodeKind::Block { major, minor }
                    }
                } else if ft.is_fifo() {
                    NodeKind::Fifo
                } else {
                    // Sockets cannot be archived; they are runtime state, not content.
                    continue;
                };
                tree.nodes.insert(
                    rel_path,
                    Node {
                        mode: m.mode() & 0o7777,
                        uid: u64::from(m.uid()),
                        gid: u64::from(m.gid()),
                        mtime: u64::try_from(m.mtime()).unwrap_or(0),
                        kind,
                    },
                );
            }
        }
        Ok(tree)
    }

    /// Reads a tar archive (plain, gzip or zstd, detected from its first
    /// bytes), by the same rules as an image layer (see
    /// [`crate::image::flatten`]) except that `.wh.` names are plain files.
    pub fn from_archive(path: &Path) -> Result<Tree, RootfsError> {
        use crate::image::{decompress, flatten::Flattener, ImageError};
        let io = |source| RootfsError::Io {
            path: path.to_path_buf(),
            source,
        };
        let file = std::fs::File::open(path).map_err(io)?;
        let reader = decompress(std::io::BufReader::with_capacity(1 << 20, file)).map_err(io)?;
        let mut flat = Flattener::plain(&path.display().to_string());
        flat.apply_layer(reader, "1").map_err(|e| match e {
            ImageError::Layer { entry, fault, .. } => RootfsError::BadEntry {
                path: path.to_path_buf(),
                entry,
                fault,
            },
            ImageError::Io { source, .. } => RootfsError::Io {
                path: path.to_path_buf(),
                source,
            },
            other => RootfsError::Unsupported {
                path: path.to_path_buf(),
                fault: other.to_string(),
            },
        })?;
        Ok(flat.finish())
    }

    /// Adds the directories the guest's init needs if the image lacks them.
    pub fn ensure_mount_points(&mut self) {
        for dir in MOUNT_POINTS {
            self.nodes.entry((*dir).to_string()).or_insert(Node {
                mode: if *dir == "tmp" { 0o1777 } else { 0o755 },
                uid: 0,
                gid: 0,
                mtime: 0,
                kind: NodeKind::Dir,
            });
        }
    }

    /// Makes every hard link point at the first path of its group in
    /// emission order, so a link never precedes its target in the stream,
    /// and drops links whose target vanished (whiteouts).
    fn order_hard_links(&mut self) -> Result<(), String> {
        let mut groups: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (path, node) in &self.nodes {
            if let NodeKind::HardLink(target) = &node.kind {
                let mut root = target.clone();
                // Follow chains (a link to a link) to the file.
                for _ in 0..64 {
                    match self.nodes.get(&root).map(|n| &n.kind) {
                        Some(NodeKind::HardLink(next)) => root = next.clone(),
                        _ => break,
                    }
                }
                groups.entry(root).or_default().push(path.clone());
            }
        }
        for (target, links) in groups {
            let Some(target_node) = self.nodes.get(&target).cloned() else {
                return Err(format!(
                    "hard link {:?} points at {target:?}, which is not in the image",
                    links[0]
                ));
            };
            if !matches!(target_node.kind, NodeKind::File(_)) {
                return Err(format!(
                    "hard link {:?} points at {target:?}, which is not a regular file",
                    links[0]
                ));
            }
            let first = links
                .iter()
                .chain(std::iter::once(&target))
                .min()
                .expect("non-empty")
                .clone();
            if first != target {
                let link_node = self.nodes.get(&first).cloned().expect("listed");
                self.nodes.insert(
                    first.clone(),
                    Node {
                        kind: target_node.kind.clone(),
                        ..link_node
                    },
                );
                self.nodes.insert(
                    target.clone(),
                    Node {
                        kind: NodeKind::HardLink(first.clone()),
                        ..target_node
                    },
                );
            }
            for l in links {
                if l != first {
                    if let Some(n) = self.nodes.get_mut(&l) {
                        n.kind = NodeKind::HardLink(first.clone());
                    }
                }
            }
        }
        Ok(())
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

    /// Writes the tree as a tar stream in path order. `clamp_mtime` caps
    /// every mtime (SOURCE_DATE_EPOCH). `progress` is told the bytes of file
    /// content written so far. Returns the bytes written.
    pub fn write_tar<W: Write>(
        mut self,
        out: W,
        clamp_mtime: Option<u64>,
        progress: &dyn Fn(u64),
    ) -> Result<u64, RootfsError> {
        let fake = PathBuf::from("<rootfs>");
        self.order_hard_links()
            .map_err(|fault| RootfsError::Unsupported {
                path: fake.clone(),
                fault,
            })?;
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| RootfsError::Io { path, source }
        };
        let mut counting = CountingWriter {
            inner: out,
            count: 0,
        };
        let mut builder = tar::Builder::new(&mut counting);
        let mut done = 0u64;
        for (path, node) in &self.nodes {
            let mut h = tar::Header::new_gnu();
            h.set_mode(node.mode);
            h.set_uid(node.uid);
            h.set_gid(node.gid);
            h.set_mtime(clamp_mtime.map_or(node.mtime, |c| node.mtime.min(c)));
            h.set_size(0);
            match &node.kind {
                NodeKind::Dir => {
                    h.set_entry_type(tar::EntryType::Directory);
                    builder
                        .append_data(&mut h, format!("{path}/"), std::io::empty())
                        .map_err(io(&fake))?;
                }
                NodeKind::File(FileData::Inline(data)) => {
                    h.set_entry_type(tar::EntryType::Regular);
                    h.set_size(data.len() as u64);
                    builder
                        .append_data(&mut h, path, &data[..])
                        .map_err(io(&fake))?;
                    done += data.len() as u64;
                }
                NodeKind::File(FileData::Host { path: host, len }) => {
                    h.set_entry_type(tar::EntryType::Regular);
                    h.set_size(*len);
                    let f = std::fs::File::open(host).map_err(io(host))?;
                    let reader = ExactReader {
                        inner: f.take(*len),
                        remaining: *len,
                        path: host.clone(),
                    };
                    builder
                        .append_data(&mut h, path, reader)
                        .map_err(io(host))?;
                    done += len;
                }
                NodeKind::Symlink(target) => {
                    h.set_entry_type(tar::EntryType::Symlink);
                    builder
                        .append_link(&mut h, path, target)
                        .map_err(io(&fake))?;
                }
                NodeKind::HardLink(target) => {
                    h.set_entry_type(tar::EntryType::Link);
                    builder
                        .append_link(&mut h, path, target)
                        .map_err(io(&fake))?;
                }
                NodeKind::Char { major, minor } | NodeKind::Block { major, minor } => {
                    h.set_entry_type(if matches!(node.kind, NodeKind::Char { .. }) {
                        tar::EntryType::Char
                    } else {
                        tar::EntryType::Block
                    });
                    h.set_device_major(*major).map_err(io(&fake))?;
                    h.set_device_minor(*minor).map_err(io(&fake))?;
                    builder
                        .append_data(&mut h, path, std::io::empty())
                        .map_err(io(&fake))?;
                }
                NodeKind::Fifo => {
                    h.set_entry_type(tar::EntryType::Fifo);
                    builder
                        .append_data(&mut h, path, std::io::empty())
                        .map_err(io(&fake))?;
                }
            }
            progress(done);
        }
        builder.finish().map_err(io(&fake))?;
        drop(builder);
        Ok(counting.count)
    }
}

struct CountingWriter<W> {
    inner: W,
    count: u64,
}

impl<W: Write> Write for CountingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.count += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// Yields exactly `remaining` bytes or fails: a file that shrank while we
/// packed it must not produce a corrupt archive.
struct ExactReader<R> {
    inner: R,
    remaining: u64,
    path: PathBuf,
}

impl<R: Read> Read for ExactReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.remaining == 0 {
            return Ok(0);
        }
        let n = self.inner.read(buf)?;
        if n == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                format!("{} shrank while being packed", self.path.display()),
            ));
        }
        self.remaining -= n as u64;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tar_of(tree: Tree) -> Vec<u8> {
        let mut out = Vec::new();
        tree.write_tar(&mut out, Some(100), &|_| {}).unwrap();
        out
    }

    fn names(bytes: &[u8]) -> Vec<String> {
        tar::Archive::new(bytes)
            .entries()
            .unwrap()
            .map(|e| e.unwrap().path().unwrap().display().to_string())
            .collect()
    }

    #[test]
    fn directory_packs_sorted_with_clamped_mtimes_and_links() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir_all(root.join("b/c")).unwrap();
        std::fs::write(root.join("b/c/file"), b"hello").unwrap();
        std::fs::write(root.join("a"), b"x").unwrap();
        std::fs::hard_link(root.join("b/c/file"), root.join("a-link")).unwrap();
        std::os::unix::fs::symlink("../../etc/passwd", root.join("b/sym")).unwrap();
        let bytes = tar_of(Tree::from_dir(root).unwrap());
        assert_eq!(
            names(&bytes),
            vec!["a", "a-link", "b/", "b/c/", "b/c/file", "b/sym"]
        );
        let mut ar = tar::Archive::new(&bytes[..]);
        for e in ar.entries().unwrap() {
            let e = e.unwrap();
            assert!(e.header().mtime().unwrap() <= 100);
            let p = e.path().unwrap().display().to_string();
            if p == "b/c/file" {
                // The link sorts first, so it carries the data and this links to it.
                assert_eq!(e.header().entry_type(), tar::EntryType::Link);
                assert_eq!(
                    e.link_name().unwrap().unwrap().display().to_string(),
                    "a-link"
                );
            }
            if p == "b/sym" {
                assert_eq!(
                    e.link_name().unwrap().unwrap().display().to_string(),
                    "../../etc/passwd"
                );
            }
        }
        // Deterministic: packing twice gives the same bytes.
        assert_eq!(bytes, tar_of(Tree::from_dir(root).unwrap()));
    }

    #[test]
    fn archive_paths_with_dotdot_are_rejected() {
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_size(1);
        h.set_entry_type(tar::EntryType::Regular);
        // set_path refuses `..`, so write the name bytes directly.
        h.as_old_mut().name[..9].copy_from_slice(b"../escape");
        h.set_cksum();
        b.append(&h, &b"x"[..]).unwrap();
        let bytes = b.into_inner().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("in.tar");
        std::fs::write(&path, bytes).unwrap();
        let err = Tree::from_archive(&path).unwrap_err();
        assert!(
            matches!(err, RootfsError::BadEntry { .. }) && err.to_string().contains(".."),
            "{err}"
        );
    }

    #[test]
    fn whiteout_names_in_a_plain_tarball_are_files() {
        let mut b = tar::Builder::new(Vec::new());
        for p in ["etc/a", "etc/.wh.a", "opt/.wh..wh..opq"] {
            let mut h = tar::Header::new_gnu();
            h.set_size(1);
            h.set_mode(0o644);
            h.set_entry_type(tar::EntryType::Regular);
            b.append_data(&mut h, p, &b"x"[..]).unwrap();
        }
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("root.tar");
        std::fs::write(&path, b.into_inner().unwrap()).unwrap();
        let t = Tree::from_archive(&path).unwrap();
        for p in ["etc/a", "etc/.wh.a", "opt/.wh..wh..opq"] {
            assert!(t.nodes.contains_key(p), "{p} missing: {:?}", t.nodes.keys());
        }
    }
}

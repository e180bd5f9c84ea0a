//! Layers applied in order onto one [`Tree`], with the semantics of an
//! overlay filesystem, all in memory:
//!
//! - `.wh.NAME` deletes NAME (and everything under it) from lower layers;
//!   `.wh..wh..opq` hides everything lower layers put in its directory,
//!   but not what the same layer adds there.
//! - A directory over a directory merges; anything else replaces (a
//!   directory's contents go with it).
//! - Parent paths are resolved through symlinks already in the tree, the
//!   way a container runtime applies a layer, but only inside the tree: `..`
//!   stops at the root and absolute targets start at it. Nothing is ever
//!   followed on the host, and a symlink pointing anywhere is stored as is.
//! - Hard links may point at files of earlier layers. When a linked file is
//!   deleted or replaced, the other names keep the old content (as overlay
//!   copy-up does): one of them takes over the data.
//! - Device nodes, fifos, modes and owners are recorded as tree nodes.
//!
//! File contents stay in memory only while they are small: a file over
//! [`SPOOL_FILE_ABOVE`], and every file once [`MAX_INLINE_CONTENT`] is held,
//! is written to a private spool directory (under `$TMPDIR`, removed when
//! the tree is dropped) and becomes a [`FileData::Host`] the EROFS writer
//! streams. Runs of zeros are left as holes, so a tarball of one huge
//! zero-filled file costs neither memory nor disk.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::io::Read;
use std::path::Path;
use std::sync::Arc;

use crate::compress::decompress;
use crate::pax::{parse_pax_time, PaxRecords};
use crate::tree::{
    display_name, name_from_bytes, normalise, quoted_name, FileData, Node, NodeKind, Tree,
};
use crate::{io_err, RootfsError};

// Spool has a module of its own so that the tree can hold one without
// depending on this module; the path here stays for callers.
pub use crate::spool::Spool;

/// Entries over all layers: a full distribution image has ~100k; millions
/// mean a hostile image, and every entry costs memory.
pub const MAX_ENTRIES: u64 = 4_000_000;
/// File content over all layers. Large contents are spooled to disk (see
/// the module doc), so this bounds the spool directory, not memory.
pub const MAX_CONTENT: u64 = 16 << 30;
/// A file larger than this is spooled to disk rather than held in memory.
pub const SPOOL_FILE_ABOVE: u64 = 1 << 20;
/// File content held in memory over the whole tree; past it every file is
/// spooled. Memory for contents is thus at most this, whatever the input:
/// 128 MiB holds a typical distribution root's small files, so ordinary
/// images are not slowed by a file per entry on disk.
pub const MAX_INLINE_CONTENT: u64 = 128 << 20;
/// Symlinks followed while resolving one path (Linux's MAXSYMLINKS).
const MAX_SYMLINK_HOPS: usize = 40;

/// Applies layers one by one; see the module doc for the rules.
pub struct Flattener {
    tree: Tree,
    /// File path -> the paths hard-linked to it. Links always name the
    /// path that holds the data, never another link.
    linkers: BTreeMap<String, BTreeSet<String>>,
    entries: u64,
    content: u64,
    /// Bytes of file content held in memory (`FileData::Inline`).
    inline: u64,
    spool: Option<Spool>,
    what: String,
    /// OCI whiteouts delete; off for a plain root filesystem tarball, where
    /// a `.wh.` name is just a file.
    whiteouts: bool,
}

impl Flattener {
    /// `what` names the image in errors.
    pub fn new(what: &str) -> Flattener {
        Flattener {
            tree: Tree::default(),
            linkers: BTreeMap::new(),
            entries: 0,
            content: 0,
            inline: 0,
            spool: None,
            what: what.to_string(),
            whiteouts: true,
        }
    }

    /// For one plain root filesystem tarball: the same rules, but `.wh.`
    /// names are ordinary files.
    pub fn plain(what: &str) -> Flattener {
        Flattener {
            whiteouts: false,
            ..Flattener::new(what)
        }
    }

    pub fn finish(mut self) -> Tree {
        self.tree.spool = self.spool.map(Arc::new);
        self.tree
    }

    /// Names the input (and the layer, for images) in errors.
    fn source_name(&self, layer: &str) -> String {
        if self.whiteouts {
            format!("{}: layer {layer}", self.what)
        } else {
            self.what.clone()
        }
    }

    /// Applies one uncompressed layer tar.
    pub fn apply_layer<R: Read>(&mut self, reader: R, layer: &str) -> Result<(), RootfsError> {
        let what = self.source_name(layer);
        let mut archive = tar::Archive::new(reader);
        // Paths this layer wrote: an opaque marker must not hide them.
        let mut added: HashSet<String> = HashSet::new();
        let entries = archive.entries().map_err(io_err(what.clone()))?;
        for entry in entries {
            let mut entry = entry.map_err(io_err(what.clone()))?;
            self.entries += 1;
            let et = entry.header().entry_type();
            if matches!(
                et,
                tar::EntryType::XGlobalHeader
                    | tar::EntryType::XHeader
                    | tar::EntryType::GNULongName
                    | tar::EntryType::GNULongLink
            ) {
                continue;
            }
            let pax = PaxRecords::read(&mut entry).map_err(|source| RootfsError::Io {
                what: format!(
                    "{what}: {}: PAX header",
                    String::from_utf8_lossy(&entry.path_bytes())
                ),
                source,
            })?;
            // A PAX sparse file (GNU formats 0.0, 0.1, 1.0) is stored under a
            // made-up name; its own is in GNU.sparse.name.
            let raw = match pax.sparse_name() {
                Some(name) => name_from_bytes(name),
                None => name_from_bytes(&entry.path_bytes()),
            };
            let bad = |fault: String| RootfsError::Entry {
                what: what.clone(),
                entry: display_name(&raw),
                fault,
            };
            if self.entries > MAX_ENTRIES {
                return Err(bad(format!(
                    "the image has more than {MAX_ENTRIES} entries"
                )));
            }
            let Some(rel) = normalise(&raw).map_err(&bad)? else {
                // The root directory itself: its owner, mode, mtime and
                // xattrs are the image's root's (a later layer's win).
                if et != tar::EntryType::Directory {
                    return Err(bad(format!("the root is a {et:?} entry, not a directory")));
                }
                let node = self
                    .header_node(&entry, &pax, NodeKind::Dir)
                    .map_err(&bad)?;
                self.place("", node).map_err(&bad)?;
                continue;
            };
            let (parent_raw, name) = rel.rsplit_once('/').unwrap_or(("", rel.as_str()));
            let parent = self.resolve_dir(parent_raw).map_err(&bad)?;
            let path = join(&parent, name);

            if let Some(hidden) = name.strip_prefix(".wh.").filter(|_| self.whiteouts) {
                if name == ".wh..wh..opq" {
                    self.remove_tree(&parent, false, Some(&added));
                } else if !hidden.starts_with(".wh.") {
                    self.remove_tree(&join(&parent, hidden), true, None);
                }
                // Other `.wh..wh.*` names are aufs bookkeeping: ignored.
                continue;
            }

            let kind = self.entry_kind(&mut entry, &pax, &what, &raw, &path)?;
            let node = self.header_node(&entry, &pax, kind).map_err(&bad)?;
            self.ensure_parents(&parent);
            self.place(&path, node).map_err(&bad)?;
            added.insert(path);
        }
        Ok(())
    }

    /// The node kind of one entry, with a regular file's content stored on
    /// the way (it is read from the archive now or never).
    fn entry_kind<R: Read>(
        &mut self,
        entry: &mut tar::Entry<'_, R>,
        pax: &PaxRecords,
        what: &str,
        raw: &str,
        path: &str,
    ) -> Result<NodeKind, RootfsError> {
        let et = entry.header().entry_type();
        let bad = |fault: String| RootfsError::Entry {
            what: what.to_string(),
            entry: display_name(raw),
            fault,
        };
        let link_name = || -> Result<String, RootfsError> {
            let l = entry
                .link_name_bytes()
                .ok_or_else(|| bad("link entry without a target".into()))?;
            Ok(name_from_bytes(&l))
        };
        let h = entry.header();
        Ok(match et {
            tar::EntryType::Directory => NodeKind::Dir,
            tar::EntryType::Symlink => NodeKind::Symlink(link_name()?),
            tar::EntryType::Link => {
                let target = self.link_target(&link_name()?).map_err(&bad)?;
                if target == path {
                    return Err(bad("hard link to itself".into()));
                }
                NodeKind::HardLink(target)
            }
            tar::EntryType::Char | tar::EntryType::Block => {
                let major = h.device_major().ok().flatten().unwrap_or(0);
                let minor = h.device_minor().ok().flatten().unwrap_or(0);
                if et == tar::EntryType::Char {
                    NodeKind::Char { major, minor }
                } else {
                    NodeKind::Block { major, minor }
                }
            }
            tar::EntryType::Fifo => NodeKind::Fifo,
            // The tar crate expands old GNU sparse entries ('S') itself:
            // their holes read as zeros, which the spool leaves as holes.
            tar::EntryType::Regular | tar::EntryType::Continuous | tar::EntryType::GNUSparse => {
                let stored = entry.size();
                let sparse = pax.sparse(entry, stored).map_err(&bad)?;
                let size = sparse.as_ref().map_or(stored, |s| s.real_size);
                self.content = self.content.saturating_add(size);
                if self.content > MAX_CONTENT {
                    return Err(bad(format!(
                        "the image holds more than {MAX_CONTENT} bytes of files"
                    )));
                }
                let data = match sparse {
                    Some(map) => self.store(what, raw, &mut map.reader(entry), size),
                    None => self.store(what, raw, entry, size),
                }?;
                NodeKind::File(data)
            }
            other => return Err(bad(format!("unsupported entry type {other:?}"))),
        })
    }

    /// A node of `kind` with the entry's mode, owner, mtime (PAX's, with
    /// its fraction and sign, over the header's) and xattrs.
    fn header_node<R: Read>(
        &self,
        entry: &tar::Entry<'_, R>,
        pax: &PaxRecords,
        kind: NodeKind,
    ) -> Result<Node, String> {
        let h = entry.header();
        let mode = h.mode().map_err(|e| format!("mode: {e}"))? & 0o7777;
        // Some writers leave these blank; blank means 0.
        let (mtime, mtime_nsec) = match pax.get(b"mtime") {
            Some(v) => parse_pax_time(v).ok_or_else(|| {
                format!("PAX mtime {:?} is not a time", String::from_utf8_lossy(v))
            })?,
            None => (header_mtime(h)?, 0),
        };
        Ok(Node {
            mode,
            uid: h.uid().unwrap_or(0),
            gid: h.gid().unwrap_or(0),
            mtime,
            mtime_nsec,
            kind,
            xattrs: pax.xattrs(),
        })
    }

    /// Keeps `size` bytes of `r` in memory or in the spool (see the module
    /// doc).
    fn store(
        &mut self,
        what: &str,
        raw: &str,
        r: &mut impl Read,
        size: u64,
    ) -> Result<FileData, RootfsError> {
        let io = io_err(format!("{what}: {}", display_name(raw)));
        if size > SPOOL_FILE_ABOVE || self.inline + size > MAX_INLINE_CONTENT {
            let spool = match &mut self.spool {
                Some(s) => s,
                None => self.spool.insert(Spool::new().map_err(io_err(format!(
                    "{what}: creating a spool directory for file contents in {} (set TMPDIR to use another)",
                    std::env::temp_dir().display()
                )))?),
            };
            let path = spool.store(r, size).map_err(io)?;
            Ok(FileData::Host { path, len: size })
        } else {
            let mut data = Vec::with_capacity(usize::try_from(size).unwrap_or(0));
            r.take(size).read_to_end(&mut data).map_err(io)?;
            if data.len() as u64 != size {
                return Err(RootfsError::Entry {
                    what: what.to_string(),
                    entry: display_name(raw),
                    fault: format!(
                        "the archive ends after {} of the entry's {size} bytes",
                        data.len()
                    ),
                });
            }
            self.inline += size;
            Ok(FileData::Inline(data))
        }
    }

    /// Resolves a directory path through symlinks in the tree. Missing
    /// components are fine (they are created as plain directories); a
    /// component that is a file is an error.
    fn resolve_dir(&self, dir: &str) -> Result<String, String> {
        let mut resolved: Vec<String> = Vec::new();
        let mut pending: std::collections::VecDeque<String> =
            dir.split('/').map(str::to_string).collect();
        let mut hops = 0;
        while let Some(c) = pending.pop_front() {
            match c.as_str() {
                "" | "." => continue,
                ".." => {
                    resolved.pop(); // `..` at the root stays at the root
                    continue;
                }
                _ => {}
            }
            let candidate = if resolved.is_empty() {
                c.clone()
            } else {
                format!("{}/{c}", resolved.join("/"))
            };
            match self.tree.nodes.get(&candidate).map(|n| &n.kind) {
                None | Some(NodeKind::Dir) => resolved.push(c),
                Some(NodeKind::Symlink(target)) => {
                    hops += 1;
                    if hops > MAX_SYMLINK_HOPS {
                        return Err(format!(
                            "too many levels of symbolic links resolving {}",
                            quoted_name(dir)
                        ));
                    }
                    if target.starts_with('/') {
                        resolved.clear();
                    }
                    let mut next: std::collections::VecDeque<String> =
                        target.split('/').map(str::to_string).collect();
                    next.extend(pending.drain(..));
                    pending = next;
                }
                Some(_) => {
                    return Err(format!(
                        "parent {} is not a directory in the layers below",
                        quoted_name(&candidate)
                    ))
                }
            }
        }
        Ok(resolved.join("/"))
    }

    /// The file a hard link entry names, resolved to the path holding the data.
    fn link_target(&self, raw: &str) -> Result<String, String> {
        let t = normalise(raw)
            .map_err(|f| format!("hard link target: {f}"))?
            .ok_or("hard link to the root directory")?;
        let (parent, name) = t.rsplit_once('/').unwrap_or(("", t.as_str()));
        let path = join(&self.resolve_dir(parent)?, name);
        match self.tree.nodes.get(&path).map(|n| &n.kind) {
            Some(NodeKind::HardLink(data)) => Ok(data.clone()),
            Some(NodeKind::Dir) => Err(format!(
                "hard link target {} is a directory",
                quoted_name(&t)
            )),
            Some(_) => Ok(path),
            None => Err(format!(
                "hard link target {} is not in this or an earlier layer",
                quoted_name(&t)
            )),
        }
    }

    fn ensure_parents(&mut self, dir: &str) {
        if dir.is_empty() {
            return;
        }
        let mut prefix = String::new();
        for c in dir.split('/') {
            if !prefix.is_empty() {
                prefix.push('/');
            }
            prefix.push_str(c);
            self.tree
                .nodes
                .entry(prefix.clone())
                .or_insert(Node::dir(0o755));
        }
    }

    fn place(&mut self, path: &str, node: Node) -> Result<(), String> {
        if let Some(existing) = self.tree.nodes.get_mut(path) {
            if matches!(existing.kind, NodeKind::Dir) && matches!(node.kind, NodeKind::Dir) {
                // Directories merge: new metadata, contents kept.
                *existing = node;
                return Ok(());
            }
            self.remove_tree(path, true, None);
        }
        if let NodeKind::HardLink(target) = &node.kind {
            if matches!(
                self.tree.nodes.get(target).map(|n| &n.kind),
                None | Some(NodeKind::Dir | NodeKind::HardLink(_))
            ) {
                return Err(format!(
                    "hard link target {} was replaced by this same entry",
                    quoted_name(target)
                ));
            }
            self.linkers
                .entry(target.clone())
                .or_default()
                .insert(path.to_string());
        }
        self.tree.nodes.insert(path.to_string(), node);
        Ok(())
    }

    /// Removes everything under `dir` (and `dir` itself with `include_self`),
    /// sparing paths in `keep`. Files that other surviving paths hard-link to
    /// hand their data to the first of them.
    fn remove_tree(&mut self, dir: &str, include_self: bool, keep: Option<&HashSet<String>>) {
        let prefix = if dir.is_empty() {
            String::new()
        } else {
            format!("{dir}/")
        };
        let mut doomed: BTreeSet<String> = self
            .tree
            .nodes
            .range(prefix.clone()..)
            .take_while(|(k, _)| k.starts_with(&prefix))
            .filter(|(k, _)| !k.is_empty()) // the root stays
            .map(|(k, _)| k.clone())
            .filter(|k| keep.is_none_or(|keep| !keep.contains(k)))
            .collect();
        if include_self && !dir.is_empty() && self.tree.nodes.contains_key(dir) {
            doomed.insert(dir.to_string());
        }
        for path in &doomed {
            let kind = self.tree.nodes.get(path).map(|n| n.kind.clone_shallow());
            match kind {
                Some(Shallow::Inode) => {
                    let Some(links) = self.linkers.remove(path) else {
                        continue;
                    };
                    let mut survivors = links.into_iter().filter(|l| !doomed.contains(l));
                    let Some(heir) = survivors.next() else {
                        continue;
                    };
                    // The doomed node goes below; its inode (file data,
                    // symlink target, device...) moves to the heir.
                    let Some(inode) = self
                        .tree
                        .nodes
                        .get_mut(path)
                        .map(|n| std::mem::replace(&mut n.kind, NodeKind::Dir))
                    else {
                        continue;
                    };
                    if let Some(n) = self.tree.nodes.get_mut(&heir) {
                        n.kind = inode;
                    }
                    let rest: BTreeSet<String> = survivors.collect();
                    for l in &rest {
                        if let Some(n) = self.tree.nodes.get_mut(l) {
                            n.kind = NodeKind::HardLink(heir.clone());
                        }
                    }
                    if !rest.is_empty() {
                        self.linkers.insert(heir, rest);
                    }
                }
                Some(Shallow::Link(target)) => {
                    if let Some(set) = self.linkers.get_mut(&target) {
                        set.remove(path);
                        if set.is_empty() {
                            self.linkers.remove(&target);
                        }
                    }
                }
                _ => {}
            }
        }
        for path in &doomed {
            self.tree.nodes.remove(path);
        }
    }
}

// Tree reads archives through a flattener, so the method lives here and
// tree.rs does not depend on this module.
impl Tree {
    /// Reads a tar archive (plain, gzip or zstd, detected from its first
    /// bytes), by the same rules as an image layer (see [`crate::flatten`])
    /// except that `.wh.` names are plain files.
    pub fn from_archive(path: &Path) -> Result<Tree, RootfsError> {
        let what = format!("rootfs {}", path.display());
        let file = std::fs::File::open(path).map_err(io_err(what.clone()))?;
        let reader = decompress(std::io::BufReader::with_capacity(1 << 20, file))
            .map_err(io_err(what.clone()))?;
        let mut flat = Flattener::plain(&what);
        flat.apply_layer(reader, "1")?;
        Ok(flat.finish())
    }
}

/// A node kind without its data, so removal can look without cloning files.
enum Shallow {
    /// Anything hard links can name: not a directory, not a link.
    Inode,
    Link(String),
    Dir,
}

trait ShallowKind {
    fn clone_shallow(&self) -> Shallow;
}

impl ShallowKind for NodeKind {
    fn clone_shallow(&self) -> Shallow {
        match self {
            NodeKind::HardLink(t) => Shallow::Link(t.clone()),
            NodeKind::Dir => Shallow::Dir,
            _ => Shallow::Inode,
        }
    }
}

/// The header's mtime: octal, or GNU's base-256 (first byte's top bit
/// set), which is how the gnu format stores a time before 1970 (two's
/// complement, first byte 0xff). Blank means 0.
fn header_mtime(h: &tar::Header) -> Result<i64, String> {
    let field = &h.as_old().mtime;
    if field[0] & 0x80 == 0 {
        let t = h.mtime().unwrap_or(0);
        return i64::try_from(t).map_err(|_| format!("mtime {t} is out of range"));
    }
    let negative = field[0] & 0x40 != 0;
    let mut v: i128 = if negative { -1 } else { 0 };
    for (i, b) in field.iter().enumerate() {
        let b = if i == 0 && !negative { b & 0x7f } else { *b };
        v = v.checked_mul(256).ok_or("base-256 mtime is out of range")? | i128::from(b);
    }
    i64::try_from(v).map_err(|_| format!("base-256 mtime {v} is out of range"))
}

fn join(dir: &str, name: &str) -> String {
    if dir.is_empty() {
        name.to_string()
    } else {
        format!("{dir}/{name}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::*;

    fn apply(layers: &[Vec<u8>]) -> Result<Tree, RootfsError> {
        let mut f = Flattener::new("test image");
        for (i, l) in layers.iter().enumerate() {
            f.apply_layer(&l[..], &format!("{}", i + 1))?;
        }
        Ok(f.finish())
    }

    fn keys(t: &Tree) -> Vec<&str> {
        t.nodes.keys().map(String::as_str).collect()
    }

    fn data<'a>(t: &'a Tree, p: &str) -> &'a [u8] {
        match &t.nodes[p].kind {
            NodeKind::File(FileData::Inline(d)) => d,
            other => panic!("{p}: {other:?}"),
        }
    }

    #[test]
    fn whiteouts_remove_lower_files_and_directories() {
        let t = apply(&[
            tar(&[
                dir("etc"),
                file("etc/a", b"1"),
                file("etc/b", b"2"),
                dir("opt"),
                file("opt/x/y", b"3"),
            ]),
            tar(&[file("etc/.wh.a", b""), file(".wh.opt", b"")]),
        ])
        .unwrap();
        assert_eq!(keys(&t), vec!["etc", "etc/b"]);
    }

    #[test]
    fn opaque_dir_hides_lower_but_keeps_same_layer_entries() {
        let t = apply(&[
            tar(&[
                dir("d"),
                file("d/old", b"o"),
                dir("d/sub"),
                file("d/sub/deep", b"x"),
                file("keep", b"k"),
            ]),
            // `-new` sorts before the marker: written first, must survive it.
            tar(&[
                dir("d"),
                file("d/-new", b"n"),
                file("d/.wh..wh..opq", b""),
                file("d/z", b"z"),
            ]),
        ])
        .unwrap();
        assert_eq!(keys(&t), vec!["d", "d/-new", "d/z", "keep"]);
    }

    #[test]
    fn directory_over_directory_merges_and_file_over_directory_replaces() {
        let t = apply(&[
            tar(&[dir("a"), file("a/1", b""), dir("b"), file("b/1", b"")]),
            tar(&[with_mode(dir("a"), 0o700), file("b", b"now a file")]),
        ])
        .unwrap();
        assert_eq!(keys(&t), vec!["a", "a/1", "b"]);
        assert_eq!(t.nodes["a"].mode, 0o700);
    }

    #[test]
    fn hard_links_across_layers_and_copy_up_on_delete_and_replace() {
        let t = apply(&[
            tar(&[file("bin/busybox", b"BB"), file("bin/other", b"O")]),
            tar(&[
                hardlink("bin/sh", "bin/busybox"),
                hardlink("bin/ls", "bin/busybox"),
            ]),
        ])
        .unwrap();
        assert_eq!(
            t.nodes["bin/sh"].kind,
            NodeKind::HardLink("bin/busybox".into())
        );
        // Deleting the file the others link to: the first link inherits the data.
        let t = apply(&[
            tar(&[file("bin/busybox", b"BB")]),
            tar(&[
                hardlink("bin/sh", "bin/busybox"),
                hardlink("bin/ls", "bin/busybox"),
            ]),
            tar(&[file("bin/.wh.busybox", b"")]),
        ])
        .unwrap();
        assert_eq!(keys(&t), vec!["bin", "bin/ls", "bin/sh"]);
        assert_eq!(data(&t, "bin/ls"), b"BB");
        assert_eq!(t.nodes["bin/sh"].kind, NodeKind::HardLink("bin/ls".into()));
        // Replacing it: links keep the old content, the path gets the new.
        let t = apply(&[
            tar(&[file("a", b"old"), hardlink("b", "a")]),
            tar(&[file("a", b"new")]),
        ])
        .unwrap();
        assert_eq!(data(&t, "a"), b"new");
        assert_eq!(data(&t, "b"), b"old");
        // A link to something that is not there is an error naming both.
        let e = apply(&[tar(&[hardlink("x", "../../etc/shadow")])])
            .unwrap_err()
            .to_string();
        assert!(e.contains("..") && e.contains("\"x\""), "{e}");
        let e = apply(&[tar(&[hardlink("x", "/etc/shadow")])])
            .unwrap_err()
            .to_string();
        assert!(e.contains("not in this or an earlier layer"), "{e}");
        // The result packs: the surviving link took over the data and the
        // image writer accepts the tree.
        let t = apply(&[
            tar(&[file("bin/busybox", b"BB")]),
            tar(&[hardlink("bin/sh", "bin/busybox")]),
            tar(&[file("bin/.wh.busybox", b"")]),
        ])
        .unwrap();
        assert_eq!(data(&t, "bin/sh"), b"BB");
        crate::erofs::write_image(&t, std::io::sink(), &Default::default(), &|_| {}).unwrap();
    }

    #[test]
    fn symlinks_outside_the_root_are_kept_and_never_followed() {
        let t = apply(&[
            tar(&[
                symlink("escape", "../../../../etc"),
                symlink("abs", "/etc"),
                dir("etc"),
                symlink("lib", "usr/lib"),
                dir("usr/lib"),
            ]),
            // Writes through symlinks land inside the tree: `escape/x`
            // resolves to `etc/x` (`..` stops at the root).
            tar(&[
                file("escape/passwd", b"p"),
                file("abs/group", b"g"),
                file("lib/libc.so", b"c"),
            ]),
        ])
        .unwrap();
        assert_eq!(
            t.nodes["escape"].kind,
            NodeKind::Symlink("../../../../etc".into())
        );
        assert_eq!(t.nodes["abs"].kind, NodeKind::Symlink("/etc".into()));
        assert_eq!(data(&t, "etc/passwd"), b"p");
        assert_eq!(data(&t, "etc/group"), b"g");
        assert_eq!(data(&t, "usr/lib/libc.so"), b"c");
        assert!(!t
            .nodes
            .keys()
            .any(|k| k.starts_with("escape/") || k.starts_with("lib/")));
        // A symlink loop is an error, not a hang.
        let e = apply(&[
            tar(&[symlink("a", "b"), symlink("b", "a")]),
            tar(&[file("a/x", b"")]),
        ])
        .unwrap_err()
        .to_string();
        assert!(e.contains("symbolic links"), "{e}");
        // A directory entry over a symlink replaces the symlink.
        let t = apply(&[tar(&[symlink("d", "/etc")]), tar(&[dir("d")])]).unwrap();
        assert_eq!(t.nodes["d"].kind, NodeKind::Dir);
    }

    #[test]
    fn device_nodes_fifos_and_owners_are_entries() {
        let t = apply(&[tar(&[
            device("dev/null", tar::EntryType::Char, 1, 3),
            device("dev/sda", tar::EntryType::Block, 8, 0),
            device("run/fifo", tar::EntryType::Fifo, 0, 0),
            owned(file("home/u/f", b"x"), 1000, 1000, 0o600),
        ])])
        .unwrap();
        assert_eq!(
            t.nodes["dev/null"].kind,
            NodeKind::Char { major: 1, minor: 3 }
        );
        assert_eq!(
            t.nodes["dev/sda"].kind,
            NodeKind::Block { major: 8, minor: 0 }
        );
        assert_eq!(t.nodes["run/fifo"].kind, NodeKind::Fifo);
        let f = &t.nodes["home/u/f"];
        assert_eq!((f.uid, f.gid, f.mode), (1000, 1000, 0o600));
        // Implicit parents exist as plain directories.
        assert_eq!(t.nodes["home/u"].kind, NodeKind::Dir);
    }

    /// The root's own entry (`./`) sets the image root's attributes, the
    /// last layer's winning; an opaque marker at the root never removes it.
    #[test]
    fn the_root_entry_gives_the_root_its_attributes() {
        let t = apply(&[
            tar(&[owned(dir("."), 1000, 1000, 0o700), file("a", b"")]),
            tar(&[file(".wh..wh..opq", b""), file("b", b"")]),
        ])
        .unwrap();
        assert_eq!(keys(&t), vec!["", "b"]);
        let root = &t.nodes[""];
        assert_eq!((root.uid, root.gid, root.mode), (1000, 1000, 0o700));
        let t = apply(&[
            tar(&[owned(dir("."), 1000, 1000, 0o700)]),
            tar(&[with_mode(dir("."), 0o755)]),
        ])
        .unwrap();
        assert_eq!((t.nodes[""].uid, t.nodes[""].mode), (0, 0o755));
        let e = apply(&[tar(&[file(".", b"")])]).unwrap_err().to_string();
        assert!(e.contains("not a directory"), "{e}");
    }

    #[test]
    fn dotdot_paths_are_rejected() {
        let e = apply(&[raw_name_tar(b"../escape")])
            .unwrap_err()
            .to_string();
        assert!(e.contains(".."), "{e}");
    }

    #[test]
    fn file_parent_is_an_error() {
        let e = apply(&[tar(&[file("a", b"")]), tar(&[file("a/b", b"")])])
            .unwrap_err()
            .to_string();
        assert!(e.contains("not a directory"), "{e}");
    }

    /// Contents over the spool threshold go to disk (zero runs as holes),
    /// read back the same, and the spool goes away with the tree.
    #[test]
    fn large_files_are_spooled_to_disk_not_held_in_memory() {
        use std::os::unix::fs::MetadataExt;
        let len = 8 * usize::try_from(SPOOL_FILE_ABOVE).unwrap();
        let mut big = vec![0u8; len];
        big[len / 2..len / 2 + 5].copy_from_slice(b"hello");
        big[len - 1] = b'!';
        let t = apply(&[tar(&[
            file("small", b"tiny"),
            file("big", &big),
            hardlink("big-link", "big"),
        ])])
        .unwrap();
        assert_eq!(data(&t, "small"), b"tiny");
        let NodeKind::File(FileData::Host { path, len: l }) = &t.nodes["big"].kind else {
            panic!("not spooled");
        };
        assert_eq!(*l, len as u64);
        let meta = std::fs::metadata(path).unwrap();
        assert_eq!(meta.len(), len as u64);
        assert!(
            meta.blocks() * 512 < len as u64 / 4,
            "zero runs are holes: {} blocks",
            meta.blocks()
        );
        assert_eq!(t.read_file("big-link", u64::MAX).unwrap().unwrap(), big);
        let spool_dir = path.parent().unwrap().to_path_buf();
        drop(t);
        assert!(!spool_dir.exists(), "the spool is removed with the tree");
    }

    #[test]
    fn a_spooled_entry_cut_short_by_the_archive_end_is_an_error() {
        let spool_above = usize::try_from(SPOOL_FILE_ABOVE).unwrap();
        let whole = tar(&[file("big", &vec![7u8; 2 * spool_above])]);
        // Header (512) plus half the data: the entry promises more than follows.
        let cut = &whole[..512 + spool_above];
        let e = apply(&[cut.to_vec()]).unwrap_err();
        assert!(matches!(e, RootfsError::Io { .. }), "{e}");
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
            matches!(err, RootfsError::Entry { .. }) && err.to_string().contains(".."),
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

//! Where an image's files are: a directory (OCI layout, blob cache) or an
//! uncompressed tar (docker save, OCI archive) indexed once and then read
//! by offset. Every blob read through [`read_json_blob`], and every layer
//! (with [`check_blob`]), is checked against its digest and declared size.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::Read;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use super::digest::{Digest, HashingReader};
use super::spec::MAX_JSON_BLOB;
use super::{io_err, ImageError};

/// Largest blob we read: the format's rootfs cap bounds any one layer too.
pub const MAX_BLOB: u64 = smolvm_format::manifest::MAX_ROOTFS_SIZE;

/// Members an image tar may hold: a few per layer, so this is generous.
const MAX_ARCHIVE_MEMBERS: usize = 100_000;

/// Symlink hops followed inside an archive before giving up (Linux's MAXSYMLINKS).
const MAX_LINK_HOPS: usize = 40;

pub trait Store {
    /// Names the store in messages ("OCI layout ./img").
    fn describe(&self) -> &str;
    /// Opens a member by relative path (`index.json`, `blobs/sha256/<hex>`);
    /// `None` when it is not there.
    fn open(&self, name: &str) -> Result<Option<Box<dyn Read + '_>>, ImageError>;
}

/// A directory: an OCI layout or the blob cache.
pub struct DirStore {
    root: PathBuf,
    what: String,
}

impl DirStore {
    pub fn new(root: PathBuf) -> DirStore {
        let what = format!("OCI layout {}", root.display());
        DirStore { root, what }
    }

    pub fn with_description(root: PathBuf, what: String) -> DirStore {
        DirStore { root, what }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }
}

impl Store for DirStore {
    fn describe(&self) -> &str {
        &self.what
    }

    fn open(&self, name: &str) -> Result<Option<Box<dyn Read + '_>>, ImageError> {
        let path = self.root.join(name);
        match File::open(&path) {
            Ok(f) => Ok(Some(Box::new(std::io::BufReader::with_capacity(
                1 << 20,
                f,
            )))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io_err(path.display().to_string())(e)),
        }
    }
}

#[derive(Debug, Clone)]
enum Member {
    File {
        offset: u64,
        size: u64,
    },
    /// Normalised archive path of the target.
    Link(String),
}

/// An uncompressed tar whose members are read in place.
pub struct TarStore {
    file: File,
    what: String,
    members: BTreeMap<String, Member>,
}

impl TarStore {
    /// Indexes `path` (headers only; data is skipped by seeking).
    pub fn open(path: &Path, what: &str) -> Result<TarStore, ImageError> {
        let file = File::open(path).map_err(io_err(what))?;
        let mut members = BTreeMap::new();
        {
            let mut archive = tar::Archive::new(&file);
            for entry in archive.entries_with_seek().map_err(io_err(what))? {
                if members.len() >= MAX_ARCHIVE_MEMBERS {
                    return Err(ImageError::Invalid {
                        what: what.into(),
                        fault: format!(
                            "more than {MAX_ARCHIVE_MEMBERS} members; image archives have a few per layer"
                        ),
                    });
                }
                let entry = entry.map_err(io_err(what))?;
                let raw = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
                let Ok(Some(name)) = smolvm_rootfs::tree::normalise(&raw) else {
                    continue;
                };
                let link = || {
                    entry
                        .link_name_bytes()
                        .map(|l| String::from_utf8_lossy(&l).into_owned())
                        .unwrap_or_default()
                };
                let member = match entry.header().entry_type() {
                    tar::EntryType::Regular | tar::EntryType::Continuous => Member::File {
                        offset: entry.raw_file_position(),
                        size: entry.size(),
                    },
                    tar::EntryType::Symlink => {
                        // Relative to the link's own directory.
                        let dir = name.rsplit_once('/').map_or("", |(d, _)| d);
                        let target = link();
                        let joined = if target.starts_with('/') {
                            target
                        } else {
                            format!("{dir}/{target}")
                        };
                        match lexical_normalise(&joined) {
                            Some(t) => Member::Link(t),
                            None => continue, // points outside the archive: not a member
                        }
                    }
                    tar::EntryType::Link => match lexical_normalise(&link()) {
                        Some(t) => Member::Link(t),
                        None => continue,
                    },
                    _ => continue,
                };
                members.insert(name, member);
            }
        }
        Ok(TarStore {
            file,
            what: what.to_string(),
            members,
        })
    }

    /// Member names (for messages).
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.members.keys().map(String::as_str)
    }

    fn resolve(&self, name: &str) -> Option<(u64, u64)> {
        let mut name = name.to_string();
        for _ in 0..MAX_LINK_HOPS {
            match self.members.get(&name)? {
                Member::File { offset, size } => return Some((*offset, *size)),
                Member::Link(t) => name = t.clone(),
            }
        }
        None
    }
}

impl Store for TarStore {
    fn describe(&self) -> &str {
        &self.what
    }

    fn open(&self, name: &str) -> Result<Option<Box<dyn Read + '_>>, ImageError> {
        let Some(name) = lexical_normalise(name) else {
            return Ok(None);
        };
        Ok(self.resolve(&name).map(|(offset, size)| {
            Box::new(std::io::BufReader::with_capacity(
                1 << 20,
                MemberReader {
                    file: &self.file,
                    pos: offset,
                    end: offset.saturating_add(size),
                },
            )) as Box<dyn Read + '_>
        }))
    }
}

/// Reads `[pos, end)` of a file by offset, so readers never share a cursor.
struct MemberReader<'a> {
    file: &'a File,
    pos: u64,
    end: u64,
}

impl Read for MemberReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let left = self.end.saturating_sub(self.pos);
        if left == 0 {
            return Ok(0);
        }
        let want = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
        let n = self.file.read_at(&mut buf[..want], self.pos)?;
        if n == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "archive member runs past the end of the file",
            ));
        }
        self.pos += n as u64;
        Ok(n)
    }
}

/// Resolves `.` and `..` lexically; `None` when `..` would leave the root.
fn lexical_normalise(p: &str) -> Option<String> {
    let mut out: Vec<&str> = Vec::new();
    for c in p.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                out.pop()?;
            }
            c => out.push(c),
        }
    }
    (!out.is_empty()).then(|| out.join("/"))
}

fn mismatch(what: &str, expected: &Digest, actual: &Digest, store: &dyn Store) -> ImageError {
    ImageError::DigestMismatch {
        what: what.to_string(),
        expected: expected.to_string(),
        actual: actual.to_string(),
        hint: format!(
            "the blob in {} is corrupt or was changed after the image was written; re-create or re-pull the image",
            store.describe()
        ),
    }
}

fn missing(store: &dyn Store, what: &str, name: &str) -> ImageError {
    ImageError::Invalid {
        what: store.describe().to_string(),
        fault: format!("{what} {name} is missing"),
    }
}

/// Reads a small JSON blob (`size` known, `digest` checked).
pub fn read_json_blob(
    store: &dyn Store,
    digest: &Digest,
    size: Option<u64>,
    what: &str,
) -> Result<Vec<u8>, ImageError> {
    read_named_blob(store, &digest.blob_path(), Some(digest), size, what)
}

/// Reads a small JSON member by name; checks `digest` and `size` when given.
pub fn read_named_blob(
    store: &dyn Store,
    name: &str,
    digest: Option<&Digest>,
    size: Option<u64>,
    what: &str,
) -> Result<Vec<u8>, ImageError> {
    if let Some(s) = size.filter(|s| *s > MAX_JSON_BLOB) {
        return Err(ImageError::Invalid {
            what: what.to_string(),
            fault: format!(
                "declared size {s} is over the {MAX_JSON_BLOB}-byte limit for JSON documents"
            ),
        });
    }
    let reader = store
        .open(name)?
        .ok_or_else(|| missing(store, what, name))?;
    let mut bytes = Vec::new();
    reader
        .take(MAX_JSON_BLOB + 1)
        .read_to_end(&mut bytes)
        .map_err(io_err(format!("{}: {name}", store.describe())))?;
    if bytes.len() as u64 > MAX_JSON_BLOB {
        return Err(ImageError::Invalid {
            what: what.to_string(),
            fault: format!("{name} is over the {MAX_JSON_BLOB}-byte limit for JSON documents"),
        });
    }
    if let Some(d) = digest {
        let actual = Digest::of(&bytes);
        if &actual != d {
            return Err(mismatch(what, d, &actual, store));
        }
    }
    if let Some(s) = size.filter(|s| *s != bytes.len() as u64) {
        return Err(ImageError::Invalid {
            what: what.to_string(),
            fault: format!(
                "{name} is {} bytes, but its descriptor says {s}",
                bytes.len()
            ),
        });
    }
    Ok(bytes)
}

/// Finishes `hashing` (a blob opened as `name` and read through a
/// [`HashingReader`] limited to `size`, else [`MAX_BLOB`]) and checks what
/// it read against the blob's digest, when known, and declared size.
pub fn check_blob<R: Read>(
    store: &dyn Store,
    name: &str,
    digest: Option<&Digest>,
    size: Option<u64>,
    what: &str,
    hashing: HashingReader<R>,
) -> Result<(), ImageError> {
    let (actual, len) = match hashing.finish() {
        Ok(r) => r,
        Err(e) if e.kind() == std::io::ErrorKind::InvalidData => {
            return Err(ImageError::Invalid {
                what: what.to_string(),
                fault: format!(
                    "{name} is larger than the {} bytes its descriptor says",
                    size.unwrap_or(MAX_BLOB)
                ),
            })
        }
        Err(e) => return Err(io_err(format!("{}: {name}", store.describe()))(e)),
    };
    if let Some(digest) = digest.filter(|d| **d != actual) {
        return Err(mismatch(what, digest, &actual, store));
    }
    if let Some(s) = size.filter(|s| *s != len) {
        return Err(ImageError::Invalid {
            what: what.to_string(),
            fault: format!("{name} is {len} bytes, but its descriptor says {s}"),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lexical_normalise_stays_inside() {
        assert_eq!(lexical_normalise("a/./b/../c").as_deref(), Some("a/c"));
        assert_eq!(lexical_normalise("../x"), None);
        assert_eq!(lexical_normalise("/a//b").as_deref(), Some("a/b"));
    }

    #[test]
    fn tar_store_reads_members_and_follows_links_inside() {
        use super::super::testutil::{file, symlink, tar};
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.tar");
        std::fs::write(
            &p,
            tar(&[
                file("x/layer.tar", b"data"),
                symlink("y/layer.tar", "../x/layer.tar"),
                symlink("z", "../../etc/passwd"),
            ]),
        )
        .unwrap();
        let s = TarStore::open(&p, "archive a.tar").unwrap();
        let mut out = String::new();
        s.open("y/layer.tar")
            .unwrap()
            .unwrap()
            .read_to_string(&mut out)
            .unwrap();
        assert_eq!(out, "data");
        assert!(s.open("z").unwrap().is_none());
        assert!(s.open("../x/layer.tar").unwrap().is_none());
    }
}

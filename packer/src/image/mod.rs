//! Container images as the root filesystem of a machine.
//!
//! `pack create --image REF` (or `image = "REF"` in a Smolfile) takes an
//! image from wherever it is kept, checks every blob against its digest,
//! flattens its layers into a [`Tree`] and hands back the image's runtime
//! config (Entrypoint, Cmd, Env, WorkingDir, User) for the machine config.
//!
//! ```text
//!   REF ──reference::parse──► Source
//!     -                          Stdin ─────────┐ spooled to a temp file
//!     docker-archive:F[:TAG]     ImageArchive ──┤ sniffed: docker save / OCI tar
//!     oci:DIR[:TAG|@DIGEST]      OciLayout      │
//!     dir:DIR, DIR, FILE.tar     Rootfs*  ──────┼──────────────► Tree (no config)
//!     NAME[:TAG][@DIGEST]        Registry ──registry::pull──► blob cache
//!                                               ▼
//!                     store::Store (a directory or an indexed tar)
//!                                               ▼
//!          spec: index → platform → manifest → config  (every blob digest-checked)
//!                                               ▼
//!          flatten::Flattener: layers in order, whiteouts, links ──► Tree
//! ```
//!
//! Nothing from an image is ever created on the host: layers become tree
//! nodes, device nodes stay entries, symlinks are resolved only inside the
//! tree and never past its root.

pub mod config;
pub mod digest;
pub mod docker_archive;
pub mod flatten;
pub mod oci_layout;
pub mod reference;
pub mod registry;
pub mod spec;
pub mod store;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};

use thiserror::Error;

pub use config::ImageRuntimeConfig;
use digest::Digest;
pub use reference::{RegistryRef, Selector, Source};
use smolvm_rootfs::compress::decompress;
use smolvm_rootfs::tree::Tree;
use smolvm_rootfs::RootfsError;
pub use spec::Platform;

#[derive(Debug, Error)]
pub enum ImageError {
    #[error("{what}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("image reference {reference:?}: {fault}")]
    Reference { reference: String, fault: String },
    #[error("{what} is not a container image: {fault}")]
    NotAnImage { what: String, fault: String },
    #[error("{what} has no image tagged {tag:?}; it has {}; pick one with {fix}", list_or_none(.available))]
    TagNotFound {
        what: String,
        tag: String,
        available: Vec<String>,
        fix: String,
    },
    #[error("{what} holds {count} images; choose one with {fix} (tags: {})", list_or_none(.available))]
    Ambiguous {
        what: String,
        count: usize,
        available: Vec<String>,
        fix: String,
    },
    #[error("{what}: digest mismatch: expected {expected}, got {actual}; {hint}")]
    DigestMismatch {
        what: String,
        expected: String,
        actual: String,
        hint: String,
    },
    #[error("{what} has no {wanted} image (the artifact boots {wanted}); it has: {}", list_or_none(.available))]
    Platform {
        what: String,
        wanted: String,
        available: Vec<String>,
    },
    #[error("{what}: {fault}")]
    Invalid { what: String, fault: String },
    #[error("registry {registry}: {fault}")]
    Registry { registry: String, fault: String },
    #[error(transparent)]
    Rootfs(#[from] RootfsError),
}

fn list_or_none(v: &[String]) -> String {
    if v.is_empty() {
        "none".into()
    } else {
        v.join(", ")
    }
}

pub(crate) fn io_err(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> ImageError {
    let what = what.into();
    move |source| ImageError::Io { what, source }
}

/// How to fetch and which image to take.
#[derive(Debug, Clone)]
pub struct ImageOptions {
    /// The platform the artifact boots; picked from multi-platform images.
    pub platform: Platform,
    /// Allow plain HTTP to registries that are not on this machine.
    pub insecure: bool,
    /// Where pulled blobs are kept (`<dir>/blobs/sha256/<hex>`); `None`
    /// means the per-user cache (see [`default_cache_dir`]).
    pub cache_dir: Option<PathBuf>,
    /// Directory against which relative local paths in the reference resolve
    /// (the Smolfile's directory for `image = "..."` in a Smolfile).
    pub base_dir: Option<PathBuf>,
    /// Registry timeouts and credentials.
    pub registry: registry::RegistryOptions,
}

impl Default for ImageOptions {
    fn default() -> Self {
        ImageOptions {
            platform: Platform::linux("amd64"),
            insecure: false,
            cache_dir: None,
            base_dir: None,
            registry: registry::RegistryOptions::default(),
        }
    }
}

/// An image, flattened.
#[derive(Debug)]
pub struct LoadedImage {
    pub tree: Tree,
    /// The image's runtime config; `None` for a plain root filesystem.
    pub config: Option<ImageRuntimeConfig>,
    /// Digest of the image manifest (for docker-save archives without an
    /// OCI index: the image ID, i.e. the config digest).
    pub digest: Option<Digest>,
}

/// The per-user cache directory: `SMOLVM_CACHE_DIR`, else
/// `$XDG_CACHE_HOME/smolvm`, else `~/.cache/smolvm` (shared with the runtime).
pub fn default_cache_dir() -> Result<PathBuf, ImageError> {
    smolvm_runtime::cache::default_cache_dir().map_err(|e| ImageError::Invalid {
        what: "image cache".into(),
        fault: e.to_string(),
    })
}

/// Resolves `reference`, reads the image and flattens it.
pub fn load(reference: &str, opts: &ImageOptions) -> Result<LoadedImage, ImageError> {
    let source = reference::parse(reference, opts.base_dir.as_deref())?;
    load_source(&source, opts)
}

/// Reads and flattens an already-parsed source.
pub fn load_source(source: &Source, opts: &ImageOptions) -> Result<LoadedImage, ImageError> {
    match source {
        Source::RootfsDir(dir) => Ok(rootfs_only(Tree::from_dir(dir)?)),
        Source::RootfsArchive(file) => Ok(rootfs_only(Tree::from_archive(file)?)),
        Source::Stdin => {
            let spool = spool_stdin(opts)?;
            load_archive(
                "the image archive on stdin",
                spool.path(),
                ArchiveHint::Image,
                None,
                opts,
            )
        }
        Source::LocalFile { file, selector } => load_archive(
            &file.display().to_string(),
            file,
            ArchiveHint::Any,
            selector.as_ref(),
            opts,
        ),
        Source::ImageArchive { file, selector } => load_archive(
            &format!("image archive {}", file.display()),
            file,
            ArchiveHint::Image,
            selector.as_ref(),
            opts,
        ),
        Source::OciLayout { dir, selector } => {
            let store = store::DirStore::new(dir.clone());
            let what = format!("OCI layout {}", dir.display());
            oci_layout::load(&store, &what, selector.as_ref(), &opts.platform)
        }
        Source::Registry(r) => registry::load(r, opts),
    }
}

fn rootfs_only(tree: Tree) -> LoadedImage {
    LoadedImage {
        tree,
        config: None,
        digest: None,
    }
}

/// What a tar archive may be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ArchiveHint {
    /// Must be an image archive (`docker-archive:`, stdin).
    Image,
    /// An image archive, else a plain root filesystem tarball.
    Any,
}

/// What sniffing found in a tar archive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArchiveKind {
    /// `docker save` output: `manifest.json` and layer tars.
    DockerSave,
    /// An OCI image layout in a tar: `oci-layout`, `index.json`, `blobs/`.
    OciArchive,
    /// Anything else: a root filesystem tarball.
    Rootfs,
}

/// Entries a sniff looks at before deciding: image archives have a handful
/// of top-level entries per layer, so this is far more than any real one.
const MAX_SNIFF_ENTRIES: usize = 100_000;

/// Decides what a (possibly compressed) tar archive holds, reading only
/// headers. Stops at the first entry that cannot be part of an image archive.
/// Returns the kind, the first unexpected entry (for messages) and whether
/// the file is compressed.
pub fn sniff_archive(path: &Path) -> Result<(ArchiveKind, Option<String>, bool), ImageError> {
    let what = path.display().to_string();
    let file = std::fs::File::open(path).map_err(io_err(what.clone()))?;
    let mut buffered = BufReader::new(file);
    let compressed = is_compressed(buffered.fill_buf().map_err(io_err(what.clone()))?);
    let reader = decompress(buffered).map_err(io_err(what.clone()))?;
    let mut archive = tar::Archive::new(reader);
    let (mut manifest, mut index, mut layout) = (false, false, false);
    let entries = archive.entries().map_err(io_err(what.clone()))?;
    for (n, entry) in entries.enumerate() {
        if n >= MAX_SNIFF_ENTRIES {
            break;
        }
        let entry = match entry {
            Ok(e) => e,
            // Not a tar at all: let the caller's reader report it properly.
            Err(_) if n == 0 => return Ok((ArchiveKind::Rootfs, None, compressed)),
            Err(e) => return Err(io_err(what)(e)),
        };
        let raw = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        let Ok(Some(name)) = smolvm_rootfs::tree::normalise(&raw) else {
            continue;
        };
        match name.as_str() {
            "manifest.json" => manifest = true,
            "index.json" => index = true,
            "oci-layout" => layout = true,
            n if is_image_archive_member(n) => {}
            _ => return Ok((ArchiveKind::Rootfs, Some(name), compressed)),
        }
    }
    let kind = if manifest {
        ArchiveKind::DockerSave
    } else if index && layout {
        ArchiveKind::OciArchive
    } else {
        ArchiveKind::Rootfs
    };
    Ok((kind, None, compressed))
}

/// Names that occur in `docker save` and OCI-layout tars.
fn is_image_archive_member(name: &str) -> bool {
    let hex64 = |s: &str| s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit());
    let mut parts = name.split('/');
    let first = parts.next().unwrap_or_default();
    let rest: Vec<&str> = parts.collect();
    match first {
        "repositories" | "manifest.json" | "index.json" | "oci-layout" => rest.is_empty(),
        "blobs" => rest.len() <= 2,
        f if hex64(f) => {
            rest.len() <= 1
                && rest
                    .first()
                    .is_none_or(|r| matches!(*r, "VERSION" | "json" | "layer.tar"))
        }
        // skopeo and newer docker write layers as `<hex>.tar` at the top.
        f => {
            rest.is_empty()
                && (f.strip_suffix(".json").is_some_and(hex64)
                    || f.strip_suffix(".tar").is_some_and(hex64))
        }
    }
}

fn is_compressed(magic: &[u8]) -> bool {
    magic.starts_with(&[0x1f, 0x8b]) || magic.starts_with(&[0x28, 0xb5, 0x2f, 0xfd])
}

/// A temporary directory for spooling, in the cache (on disk) when there is one.
fn spool_dir(opts: &ImageOptions) -> PathBuf {
    let dir = opts
        .cache_dir
        .clone()
        .or_else(|| default_cache_dir().ok())
        .map(|d| d.join("tmp"));
    match dir {
        Some(d) if std::fs::create_dir_all(&d).is_ok() => d,
        _ => std::env::temp_dir(),
    }
}

/// Copies stdin (decompressed) into a temporary file: archives need random access.
fn spool_stdin(opts: &ImageOptions) -> Result<tempfile::NamedTempFile, ImageError> {
    let what = "reading the image archive from stdin";
    let mut tmp = tempfile::Builder::new()
        .prefix(".smolvm-stdin-")
        .tempfile_in(spool_dir(opts))
        .map_err(io_err(what))?;
    let stdin = std::io::stdin().lock();
    let mut reader = decompress(BufReader::with_capacity(1 << 20, stdin)).map_err(io_err(what))?;
    let n = std::io::copy(&mut reader, tmp.as_file_mut()).map_err(io_err(what))?;
    if n == 0 {
        return Err(ImageError::NotAnImage {
            what: "stdin".into(),
            fault: "it is empty; pipe a `docker save` archive into `--image -`".into(),
        });
    }
    Ok(tmp)
}

fn load_archive(
    what: &str,
    path: &Path,
    hint: ArchiveHint,
    selector: Option<&Selector>,
    opts: &ImageOptions,
) -> Result<LoadedImage, ImageError> {
    let (kind, stray, compressed) = sniff_archive(path)?;
    if kind == ArchiveKind::Rootfs {
        if hint == ArchiveHint::Any && selector.is_none() {
            return Ok(rootfs_only(Tree::from_archive(path)?));
        }
        let fault = match stray {
            Some(entry) => format!(
                "it has no manifest.json (docker save) or oci-layout + index.json (OCI), and holds {entry:?}"
            ),
            None => "it has no manifest.json (docker save) or oci-layout + index.json (OCI)".into(),
        };
        return Err(ImageError::NotAnImage {
            what: what.into(),
            fault: format!(
                "{fault}; to pack a plain root filesystem tarball pass it as --rootfs FILE or --image FILE without a tag"
            ),
        });
    }
    // Compressed archives are spooled once so blobs can be read by offset.
    let spool;
    let tar_path = if compressed {
        let mut tmp = tempfile::Builder::new()
            .prefix(".smolvm-archive-")
            .tempfile_in(spool_dir(opts))
            .map_err(io_err(what))?;
        let file = std::fs::File::open(path).map_err(io_err(what))?;
        let mut reader =
            decompress(BufReader::with_capacity(1 << 20, file)).map_err(io_err(what))?;
        std::io::copy(&mut reader, tmp.as_file_mut()).map_err(io_err(what))?;
        spool = tmp;
        spool.path()
    } else {
        path
    };
    let store = store::TarStore::open(tar_path, what)?;
    match kind {
        ArchiveKind::DockerSave => docker_archive::load(&store, what, selector, &opts.platform),
        _ => oci_layout::load(&store, what, selector, &opts.platform),
    }
}

#[cfg(test)]
pub(crate) mod testutil;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_archive_member_names() {
        let h = "a".repeat(64);
        for ok in [
            "manifest.json".to_string(),
            "repositories".into(),
            "blobs".into(),
            format!("blobs/sha256/{h}"),
            h.clone(),
            format!("{h}/layer.tar"),
            format!("{h}/json"),
            format!("{h}.json"),
            format!("{h}.tar"),
        ] {
            assert!(is_image_archive_member(&ok), "{ok}");
        }
        for bad in [
            "bin",
            "etc/passwd",
            "manifest.json/x",
            "abc.json",
            "abc.tar",
            "usr/lib/x",
        ] {
            assert!(!is_image_archive_member(bad), "{bad}");
        }
    }

    #[test]
    fn sniff_tells_rootfs_from_images() {
        let dir = tempfile::tempdir().unwrap();
        let rootfs = dir.path().join("root.tar");
        std::fs::write(
            &rootfs,
            testutil::tar(&[testutil::file("etc/hostname", b"x")]),
        )
        .unwrap();
        let (kind, stray, compressed) = sniff_archive(&rootfs).unwrap();
        assert_eq!(kind, ArchiveKind::Rootfs);
        assert_eq!(stray.as_deref(), Some("etc/hostname"));
        assert!(!compressed);
    }

    #[test]
    fn archive_that_is_not_an_image_is_named_with_the_fix() {
        let dir = tempfile::tempdir().unwrap();
        let rootfs = dir.path().join("root.tar");
        std::fs::write(&rootfs, testutil::tar(&[testutil::file("bin/sh", b"x")])).unwrap();
        let err = load(
            &format!("docker-archive:{}", rootfs.display()),
            &ImageOptions::default(),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("root.tar"), "{err}");
        assert!(err.contains("not a container image"), "{err}");
        assert!(err.contains("manifest.json"), "{err}");
        assert!(err.contains("--rootfs"), "{err}");
        // Without the prefix the same file is a plain root filesystem.
        let img = load(&rootfs.display().to_string(), &ImageOptions::default()).unwrap();
        assert!(img.tree.nodes.contains_key("bin/sh"));
        assert!(img.config.is_none());
    }
}

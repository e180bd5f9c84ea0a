//! Artifacts in OCI registries: `smolvm pack push FILE REF`, `pack pull REF
//! -o OUT`, and `pack inspect/verify REF` reading a remote artifact with
//! ranged reads.
//!
//! ```text
//!   manifest  application/vnd.oci.image.manifest.v1+json
//!     artifactType  application/vnd.smolmachine.artifact.v2
//!     config        application/vnd.oci.empty.v1+json   "{}"
//!     layers[0]     application/vnd.smolmachine.payload.v2     a bare payload, or
//!                   application/vnd.smolmachine.executable.v2  a packed executable
//!                   (the file pushed, byte for byte)
//!     annotations   dev.smolmachine.name / .version / .key-id (copies of
//!                   the signed manifest's, for listings; never trusted)
//! ```
//!
//! The file is stored as it is, so what is pulled is what was signed: a
//! bare payload's manifest says it has no stub and a packed executable's
//! names its stub's hash, and neither can be turned into the other without
//! a new signature. `pull -o NAME` therefore wants an executable in the
//! registry and `-o NAME.smolmachine` a bare payload (push the form users
//! should get).
//!
//! Remote `inspect`/`verify` need no format change: a payload is found
//! from its end (the 64-byte trailer), and the header, manifest and
//! signature follow each other, with the config section first in the data
//! area. They read those through HTTP `Range` requests of
//! [`RemoteArtifact::BLOCK`] bytes: three or four requests, well under a
//! MiB, whatever the size of the root filesystem.
//!
//! A pull downloads into `.smolvm-pull-<hex of the blob digest>.part` in
//! the output's directory (0600, never through a symlink), holding an
//! exclusive `flock` on it: a second pull of the same artifact into the
//! same directory fails at once rather than write into the same file. When
//! the transfer breaks (a reset, a timeout, a 5xx) the part file stays,
//! and the next pull re-hashes it and asks for the rest with
//! `Range: bytes=N-` (a registry that ignores the range sends it all
//! again). Bytes that fail their check (a digest mismatch, more than the
//! stated size) are deleted, never resumed from; after the checks and
//! `verify_artifact`, the part file is renamed to the output.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::io::{Read, Seek};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use smolvm_format::{Artifact, FileSource, FormatError, ReadAt};
use smolvm_runtime::exit::{ExitStatus, INVALID, USAGE_OR_IO};
use smolvm_runtime::{
    check_signature, verify_artifact, SignatureState, VerifyError, VerifyOptions,
};
use smolvm_signing::{KeyId, PublicKey};
use thiserror::Error;

use crate::image::digest::Digest;
use crate::image::reference::{parse_registry, RegistryRef};
use crate::image::registry::{Connection, RegistryOptions, Resume, Session};
use crate::image::spec::OCI_MANIFEST;
use crate::image::ImageError;

/// The manifest's `artifactType`: what tools listing a registry show.
pub const ARTIFACT_TYPE: &str = "application/vnd.smolmachine.artifact.v2";
/// The layer holding a bare `.smolmachine` payload.
pub const PAYLOAD_MEDIA_TYPE: &str = "application/vnd.smolmachine.payload.v2";
/// The layer holding a packed executable (stub and payload).
pub const EXECUTABLE_MEDIA_TYPE: &str = "application/vnd.smolmachine.executable.v2";
/// OCI's empty config (image-spec 1.1), for artifacts that need none.
const EMPTY_CONFIG_TYPE: &str = "application/vnd.oci.empty.v1+json";
const EMPTY_CONFIG: &[u8] = b"{}";
pub const ANNOTATION_NAME: &str = "dev.smolmachine.name";
pub const ANNOTATION_VERSION: &str = "dev.smolmachine.version";
pub const ANNOTATION_KEY_ID: &str = "dev.smolmachine.key-id";
const ANNOTATION_TITLE: &str = "org.opencontainers.image.title";

#[derive(Debug, Error)]
pub enum RemoteError {
    #[error(transparent)]
    Registry(#[from] ImageError),
    #[error("{what}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{what}")]
    Format {
        what: String,
        #[source]
        source: FormatError,
    },
    #[error("{what}")]
    Verify {
        what: String,
        #[source]
        source: VerifyError,
    },
    #[error("{reference} is not a smolmachine artifact: {fault}")]
    NotAnArtifact { reference: String, fault: String },
    /// Another pull holds the partial download's lock.
    #[error("{part} is locked by another `smolvm pack pull` of the same artifact into this directory; this pull does not wait: run it again once that one has finished")]
    PullInProgress { part: String },
    /// The transfer broke; what arrived is kept for the next pull.
    #[error("the download stopped at {kept} of {size} bytes, which are kept in {part}; the next `smolvm pack pull` of this artifact into the same directory resumes there")]
    Interrupted {
        kept: u64,
        size: u64,
        part: String,
        #[source]
        source: Box<ImageError>,
    },
    /// The request cannot be met as asked (output naming, a reference).
    #[error("{0}")]
    Usage(String),
}

impl ExitStatus for RemoteError {
    fn exit_code(&self) -> u8 {
        match self {
            // packer::exit maps the ImageError inside.
            RemoteError::Registry(_) => USAGE_OR_IO,
            RemoteError::Io { .. } | RemoteError::Usage(_) => USAGE_OR_IO,
            // Only transport failures are kept to resume (see `pull`).
            RemoteError::PullInProgress { .. } | RemoteError::Interrupted { .. } => USAGE_OR_IO,
            RemoteError::Format { source, .. } => source.exit_code(),
            RemoteError::Verify { source, .. } => source.exit_code(),
            RemoteError::NotAnArtifact { .. } => INVALID,
        }
    }
}

/// Which form of artifact a file or a registry layer holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Form {
    Payload,
    Executable,
}

impl Form {
    fn media_type(self) -> &'static str {
        match self {
            Form::Payload => PAYLOAD_MEDIA_TYPE,
            Form::Executable => EXECUTABLE_MEDIA_TYPE,
        }
    }

    /// What `-o NAME` asks for: `NAME.smolmachine` a payload, else an executable.
    pub fn of_output(path: &Path) -> Form {
        if path.extension().is_some_and(|e| e == "smolmachine") {
            Form::Payload
        } else {
            Form::Executable
        }
    }

    pub fn describe(self) -> &'static str {
        match self {
            Form::Payload => "bare payload",
            Form::Executable => "packed executable",
        }
    }
}

/// How to reach registries.
#[derive(Debug, Clone, Default)]
pub struct RemoteOptions {
    pub registry: RegistryOptions,
    /// Allow plain HTTP to registries not on this machine.
    pub insecure: bool,
    /// The per-user cache (manifests are kept in its blob store); `None`
    /// means the default.
    pub cache_dir: Option<PathBuf>,
}

/// A registry reference, when `arg` is one and not a local file: it must
/// name its registry (`localhost:5000/app:1`, `ghcr.io/o/app:1`,
/// `docker.io/o/app:1`), so that a mistyped file name is not looked up on
/// Docker Hub.
pub fn remote_reference(arg: &Path) -> Option<RegistryRef> {
    if arg.exists() {
        return None;
    }
    let s = arg.to_str()?;
    let first = s.split('/').next()?;
    let names_registry = s.contains('/')
        && (first.contains('.')
            || first.contains(':')
            || first == "localhost"
            || first.starts_with('['));
    names_registry.then(|| parse_registry(s).ok()).flatten()
}

/// The OCI manifest of an artifact, as written and as read.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ArtifactManifest {
    schema_version: u32,
    media_type: String,
    #[serde(default)]
    artifact_type: Option<String>,
    config: Descriptor,
    layers: Vec<Descriptor>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    annotations: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Descriptor {
    media_type: String,
    digest: String,
    size: u64,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    annotations: BTreeMap<String, String>,
}

/// What a push did.
#[derive(Debug)]
pub struct PushReport {
    pub form: Form,
    pub size: u64,
    pub payload_digest: Digest,
    pub manifest_digest: Digest,
    /// False when the registry already had the file's blob.
    pub uploaded: bool,
}

/// Stores `file` (a packed executable or a bare payload) in the registry
/// as `r`'s tag. The file must parse and its signature (if any) verify
/// with the key it carries; sections are not hashed here (pull does).
pub fn push(file: &Path, r: &RegistryRef, opts: &RemoteOptions) -> Result<PushReport, RemoteError> {
    let shown = file.display().to_string();
    if r.digest.is_some() {
        return Err(RemoteError::Usage(format!(
            "push needs a tag, not a digest ({r}): the digest of what is pushed is known only after; use REGISTRY/REPOSITORY:TAG"
        )));
    }
    let tag = r.tag.clone().unwrap_or_else(|| "latest".into());
    let f = std::fs::File::open(file).map_err(|source| RemoteError::Io {
        what: shown.clone(),
        source,
    })?;
    let src = FileSource::new(f).map_err(|source| RemoteError::Io {
        what: shown.clone(),
        source,
    })?;
    let art = Artifact::parse(&src).map_err(|source| RemoteError::Format {
        what: shown.clone(),
        source,
    })?;
    let state = check_signature(&art, &[]).map_err(|source| RemoteError::Verify {
        what: shown.clone(),
        source,
    })?;
    let form = if art.trailer.payload_offset == 0 {
        Form::Payload
    } else {
        Form::Executable
    };
    let size = src.size();
    let payload_digest = hash_file(src.file(), &shown)?;

    let mut annotations = BTreeMap::new();
    annotations.insert(ANNOTATION_NAME.to_string(), art.manifest.name.clone());
    annotations.insert(ANNOTATION_VERSION.to_string(), art.manifest.version.clone());
    if let SignatureState::SelfConsistent { key_id } | SignatureState::Trusted { key_id } = &state {
        annotations.insert(ANNOTATION_KEY_ID.to_string(), key_id.to_string());
    }
    let title = match form {
        Form::Payload => format!("{}.smolmachine", art.manifest.name),
        Form::Executable => art.manifest.name.clone(),
    };
    let manifest = ArtifactManifest {
        schema_version: 2,
        media_type: OCI_MANIFEST.into(),
        artifact_type: Some(ARTIFACT_TYPE.into()),
        config: Descriptor {
            media_type: EMPTY_CONFIG_TYPE.into(),
            digest: Digest::of(EMPTY_CONFIG).to_string(),
            size: EMPTY_CONFIG.len() as u64,
            annotations: BTreeMap::new(),
        },
        layers: vec![Descriptor {
            media_type: form.media_type().into(),
            digest: payload_digest.to_string(),
            size,
            annotations: [(ANNOTATION_TITLE.to_string(), title)].into(),
        }],
        annotations,
    };
    let manifest_bytes = serde_json::to_vec(&manifest).expect("serializable");

    let conn = Connection::open(
        r,
        opts.registry.clone(),
        opts.insecure,
        opts.cache_dir.clone(),
        true,
    )?;
    let session = conn.session()?;
    let empty = Digest::of(EMPTY_CONFIG);
    if !session.has_blob(&empty)? {
        session.upload_blob(
            &empty,
            EMPTY_CONFIG.len() as u64,
            EMPTY_CONFIG,
            "the empty config",
        )?;
    }
    let uploaded = !session.has_blob(&payload_digest)?;
    if uploaded {
        let mut f = src.file();
        f.rewind().map_err(|source| RemoteError::Io {
            what: shown.clone(),
            source,
        })?;
        session.upload_blob(&payload_digest, size, std::io::BufReader::new(f), &shown)?;
    }
    let manifest_digest = session.put_manifest(&tag, OCI_MANIFEST, &manifest_bytes)?;
    Ok(PushReport {
        form,
        size,
        payload_digest,
        manifest_digest,
        uploaded,
    })
}

fn hash_file(f: &std::fs::File, shown: &str) -> Result<Digest, RemoteError> {
    let mut f = f;
    f.rewind().map_err(|source| RemoteError::Io {
        what: shown.to_string(),
        source,
    })?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).map_err(|source| RemoteError::Io {
            what: shown.to_string(),
            source,
        })?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(Digest::parse(&format!("sha256:{}", hex::encode(hasher.finalize()))).expect("hex digest"))
}

/// The one layer of a pushed artifact, from its registry manifest.
struct Layer {
    form: Form,
    digest: Digest,
    size: u64,
    annotations: BTreeMap<String, String>,
    manifest_digest: Digest,
}

/// The artifact layer `r` names: its manifest is fetched and checked.
fn artifact_layer(session: &Session<'_>, r: &RegistryRef) -> Result<Layer, RemoteError> {
    let reference = match (&r.digest, &r.tag) {
        (Some(d), _) => d.to_string(),
        (None, t) => t.clone().unwrap_or_else(|| "latest".into()),
    };
    let (bytes, manifest_digest) = session.manifest(&reference)?;
    let not_ours = |fault: String| RemoteError::NotAnArtifact {
        reference: r.to_string(),
        fault,
    };
    let m: ArtifactManifest = serde_json::from_slice(&bytes)
        .map_err(|e| not_ours(format!("its manifest is not an OCI image manifest ({e})")))?;
    if m.artifact_type.as_deref() != Some(ARTIFACT_TYPE) {
        return Err(not_ours(format!(
            "its artifactType is {:?}, not {ARTIFACT_TYPE:?} (a container image is packed with `smolvm pack create --image`)",
            m.artifact_type.as_deref().unwrap_or("absent")
        )));
    }
    let [layer] = m.layers.as_slice() else {
        return Err(not_ours(format!("it has {} layers, not 1", m.layers.len())));
    };
    let form = match layer.media_type.as_str() {
        PAYLOAD_MEDIA_TYPE => Form::Payload,
        EXECUTABLE_MEDIA_TYPE => Form::Executable,
        other => return Err(not_ours(format!("its layer's media type is {other:?}"))),
    };
    let digest = Digest::parse(&layer.digest)
        .map_err(|e| not_ours(format!("its layer digest {:?}: {e}", layer.digest)))?;
    Ok(Layer {
        form,
        digest,
        size: layer.size,
        annotations: m.annotations,
        manifest_digest,
    })
}

/// What a pull did.
#[derive(Debug)]
pub struct PullReport {
    pub form: Form,
    pub size: u64,
    pub payload_digest: Digest,
    pub manifest_digest: Digest,
    pub key_id: Option<KeyId>,
}

/// Fetches the artifact `r` names into `output`: digest-checked while it
/// arrives, then verified as `pack verify` would (every hash; the signer
/// one of `trusted` when any are given) before it is renamed into place.
/// It arrives in a part file beside `output` that a broken transfer
/// leaves for the next pull to resume (see the module documentation).
pub fn pull(
    r: &RegistryRef,
    output: &Path,
    trusted: &[PublicKey],
    opts: &RemoteOptions,
) -> Result<PullReport, RemoteError> {
    let conn = Connection::open(
        r,
        opts.registry.clone(),
        opts.insecure,
        opts.cache_dir.clone(),
        false,
    )?;
    let session = conn.session()?;
    let Layer {
        form,
        digest,
        size,
        manifest_digest,
        ..
    } = artifact_layer(&session, r)?;
    check_form(r, form, output)?;
    let dir = match output.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let shown = output.display().to_string();
    let part = PartFile::open(&dir.join(format!(".smolvm-pull-{}.part", digest.hex())))?;
    let part = download_into(&session, &digest, size, part)?;
    let (part, key_id) = verify_part(part, r, trusted, &shown)?;
    place(part, form, output, &shown)?;
    Ok(PullReport {
        form,
        size,
        payload_digest: digest,
        manifest_digest,
        key_id,
    })
}

/// The registry holds the form (packed executable or bare payload) that
/// `output`'s name asks for: a signed artifact's form cannot change.
fn check_form(r: &RegistryRef, form: Form, output: &Path) -> Result<(), RemoteError> {
    let wanted = Form::of_output(output);
    if form != wanted {
        let fix = match form {
            Form::Payload => "write it as NAME.smolmachine and boot it with `smolvm pack run`, or push the packed executable",
            Form::Executable => "write it as NAME (without .smolmachine)",
        };
        return Err(RemoteError::Usage(format!(
            "{r} holds a {} (signed as such; its stub cannot be added or removed without a new signature), but {} names a {}: {fix}",
            form.describe(),
            output.display(),
            wanted.describe()
        )));
    }
    Ok(())
}

/// Downloads the blob into `part`, resuming from what an interrupted pull
/// left there; on failure the part file is kept only when it holds a
/// prefix a next pull can resume from.
fn download_into(
    session: &Session<'_>,
    digest: &Digest,
    size: u64,
    mut part: PartFile,
) -> Result<PartFile, RemoteError> {
    let part_shown = part.path.display().to_string();
    let part_io = |source| RemoteError::Io {
        what: part_shown.clone(),
        source,
    };
    let kept = part.file.metadata().map_err(part_io)?.len();
    let resume = if kept > 0 && kept < size {
        Some(Resume::from_prefix(&mut part.file, kept).map_err(part_io)?)
    } else {
        // Nothing, or no shorter than the blob: not a prefix of it.
        part.file.set_len(0).map_err(part_io)?;
        None
    };
    if let Err(e) = session.download(digest, size, &mut part.file, &part.path, resume) {
        let kept = part.file.metadata().map_or(0, |m| m.len());
        return Err(match e {
            // Bad bytes are never resumed from.
            ImageError::DigestMismatch { .. } | ImageError::Invalid { .. } => {
                part.discard();
                e.into()
            }
            _ if kept == 0 => {
                part.discard();
                e.into()
            }
            _ => RemoteError::Interrupted {
                kept,
                size,
                part: part_shown,
                source: Box::new(e),
            },
        });
    }
    Ok(part)
}

/// Verifies the downloaded artifact as `pack verify` would; a refused one
/// is removed. Returns the signer's key id, if signed.
fn verify_part(
    part: PartFile,
    r: &RegistryRef,
    trusted: &[PublicKey],
    shown: &str,
) -> Result<(PartFile, Option<KeyId>), RemoteError> {
    let part_shown = part.path.display().to_string();
    let part_io = |source| RemoteError::Io {
        what: part_shown.clone(),
        source,
    };
    let file = part.file.try_clone().map_err(part_io)?;
    let src = FileSource::new(file).map_err(part_io)?;
    let verified = verify_artifact(
        &src,
        &VerifyOptions {
            trusted,
            require_signature: !trusted.is_empty(),
            integrity: true,
        },
    )
    .map(|(_, state)| state);
    let state = match verified {
        Ok(state) => state,
        Err(source) => {
            // Whole and as the registry holds it, but refused: the next
            // pull's check is the same, so nothing is kept for it.
            part.discard();
            return Err(RemoteError::Verify {
                what: format!("{r} (pulled, not written to {shown})"),
                source,
            });
        }
    };
    let key_id = match state {
        SignatureState::Unsigned => None,
        SignatureState::SelfConsistent { key_id } | SignatureState::Trusted { key_id } => {
            Some(key_id)
        }
    };
    Ok((part, key_id))
}

/// Gives the verified artifact its mode and its name, durably; on failure
/// nothing is left.
fn place(part: PartFile, form: Form, output: &Path, shown: &str) -> Result<(), RemoteError> {
    let part_shown = part.path.display().to_string();
    let part_io = |source| RemoteError::Io {
        what: part_shown.clone(),
        source,
    };
    let mode = match form {
        Form::Executable => 0o755,
        Form::Payload => 0o644,
    };
    let placed = part
        .file
        .set_permissions(std::fs::Permissions::from_mode(mode))
        .and_then(|()| part.file.sync_all())
        .map_err(part_io)
        .and_then(|()| {
            std::fs::rename(&part.path, output).map_err(|source| RemoteError::Io {
                what: format!("writing {shown}"),
                source,
            })
        });
    if let Err(e) = placed {
        part.discard();
        return Err(e);
    }
    Ok(())
}

/// A pull's partial download, open and exclusively `flock`ed for as long
/// as this lives.
struct PartFile {
    file: std::fs::File,
    path: PathBuf,
}

impl PartFile {
    /// A pull that ends removes its part file, and one may end between
    /// this open and this lock; a lock on a file the name no longer
    /// names is no lock, so the open is retried, this many times.
    const OPEN_TRIES: usize = 4;

    /// Opens (creating, 0600) and locks `path`: a regular file of this
    /// user's, reached without following a symlink; a lock held elsewhere
    /// is [`RemoteError::PullInProgress`].
    fn open(path: &Path) -> Result<PartFile, RemoteError> {
        let shown = path.display().to_string();
        let io = |source| RemoteError::Io {
            what: shown.clone(),
            source,
        };
        // SAFETY: geteuid has no preconditions and cannot fail.
        let euid = unsafe { libc::geteuid() };
        for _ in 0..Self::OPEN_TRIES {
            let file = std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .mode(0o600)
                .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
                .open(path)
                .map_err(io)?;
            let meta = file.metadata().map_err(io)?;
            if !meta.is_file() || meta.uid() != euid {
                return Err(RemoteError::Usage(format!(
                    "{shown} is where pulls of this artifact download to, but it is not a regular file of this user's (uid {}); remove it",
                    meta.uid()
                )));
            }
            if !smolvm_runtime::cache::flock(&file, libc::LOCK_EX | libc::LOCK_NB).map_err(io)? {
                return Err(RemoteError::PullInProgress { part: shown });
            }
            match std::fs::symlink_metadata(path) {
                Ok(now) if now.dev() == meta.dev() && now.ino() == meta.ino() => {
                    return Ok(PartFile {
                        file,
                        path: path.to_path_buf(),
                    })
                }
                Ok(_) => continue,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(io(e)),
            }
        }
        Err(RemoteError::PullInProgress { part: shown })
    }

    /// Removes the file, still locked, so that no other pull opens it in
    /// between.
    fn discard(self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// A pushed artifact read in place: [`ReadAt`] over ranged GETs of its
/// blob, each at least [`RemoteArtifact::BLOCK`] bytes and kept, so that
/// parsing it costs a few requests.
pub struct RemoteArtifact<'c> {
    session: Session<'c>,
    pub digest: Digest,
    pub manifest_digest: Digest,
    pub form: Form,
    /// The registry manifest's annotations (unsigned; compared, not trusted).
    pub annotations: BTreeMap<String, String>,
    size: u64,
    blocks: Mutex<Vec<(u64, Vec<u8>)>>,
    fetched: AtomicU64,
}

impl<'c> RemoteArtifact<'c> {
    /// The smallest ranged read.
    pub const BLOCK: u64 = 64 << 10;

    /// Looks `r` up (its manifest only).
    pub fn open(conn: &'c Connection, r: &RegistryRef) -> Result<Self, RemoteError> {
        let session = conn.session()?;
        let layer = artifact_layer(&session, r)?;
        Ok(RemoteArtifact {
            session,
            digest: layer.digest,
            manifest_digest: layer.manifest_digest,
            form: layer.form,
            annotations: layer.annotations,
            size: layer.size,
            blocks: Mutex::new(Vec::new()),
            fetched: AtomicU64::new(0),
        })
    }

    /// Bytes of the blob fetched so far.
    pub fn fetched(&self) -> u64 {
        self.fetched.load(Ordering::Relaxed)
    }

    /// Fails when an annotation disagrees with the signed manifest: they
    /// are copies for listings, and a differing one is a forgery or a
    /// mix-up that someone reading the registry would be misled by.
    pub fn check_annotations<R: ReadAt + ?Sized>(
        &self,
        art: &Artifact<'_, R>,
    ) -> Result<(), String> {
        let signed_key = art.manifest.signer.as_ref().map(|s| s.key_id.to_string());
        for (name, signed) in [
            (ANNOTATION_NAME, Some(art.manifest.name.as_str())),
            (ANNOTATION_VERSION, Some(art.manifest.version.as_str())),
            (ANNOTATION_KEY_ID, signed_key.as_deref()),
        ] {
            let shown = self.annotations.get(name).map(String::as_str);
            if shown.is_some() && shown != signed {
                return Err(format!(
                    "the registry annotation {name}={:?} differs from the signed manifest's {:?}",
                    shown.unwrap_or_default(),
                    signed.unwrap_or("none")
                ));
            }
        }
        Ok(())
    }
}

impl ReadAt for RemoteArtifact<'_> {
    fn size(&self) -> u64 {
        self.size
    }

    fn read_bytes_at(&self, offset: u64, len: u64) -> smolvm_format::Result<Cow<'_, [u8]>> {
        let end = offset
            .checked_add(len)
            .ok_or_else(|| FormatError::Overflow {
                what: "remote read".into(),
                offset,
                len,
            })?;
        if end > self.size {
            return Err(FormatError::OutOfBounds {
                what: "remote read".into(),
                offset,
                len,
                file_len: self.size,
            });
        }
        let mut blocks = self.blocks.lock().expect("not poisoned");
        let slice = |start: u64, bytes: &[u8]| -> Vec<u8> {
            let from = usize::try_from(offset - start).expect("inside a block");
            let to = usize::try_from(end - start).expect("inside a block");
            bytes[from..to].to_vec()
        };
        for (start, bytes) in blocks.iter() {
            if *start <= offset && end <= start + bytes.len() as u64 {
                return Ok(Cow::Owned(slice(*start, bytes)));
            }
        }
        let start = offset - offset % Self::BLOCK;
        let stop = end.max(start.saturating_add(Self::BLOCK)).min(self.size);
        let bytes = self
            .session
            .read_range(&self.digest, start, stop - start)
            .map_err(|e| FormatError::Io {
                what: "remote artifact",
                source: std::io::Error::other(smolvm_runtime::exit::chain(&e).to_string()),
            })?;
        self.fetched
            .fetch_add(bytes.len() as u64, Ordering::Relaxed);
        let out = slice(start, &bytes);
        blocks.push((start, bytes));
        Ok(Cow::Owned(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_part_file_is_created_0600_and_locked_against_a_second_pull() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(".smolvm-pull-x.part");
        let first = PartFile::open(&path).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o077, 0, "mode {mode:o}");
        // flock conflicts between open file descriptions, in one process too.
        match PartFile::open(&path) {
            Err(e @ RemoteError::PullInProgress { .. }) => {
                assert!(e.to_string().contains("does not wait"), "{e}");
                assert_eq!(e.exit_code(), USAGE_OR_IO);
            }
            other => panic!("a second open while locked: {:?}", other.map(|p| p.path)),
        }
        first.discard();
        assert!(!path.exists());
        let again = PartFile::open(&path).unwrap();
        drop(again);
        assert!(PartFile::open(&path).is_ok(), "the lock outlived its file");
    }

    #[test]
    fn a_part_file_name_that_is_a_symlink_is_not_followed() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("elsewhere");
        std::fs::write(&target, b"keep").unwrap();
        let path = dir.path().join(".smolvm-pull-x.part");
        std::os::unix::fs::symlink(&target, &path).unwrap();
        match PartFile::open(&path) {
            Err(RemoteError::Io { source, .. }) => {
                assert_eq!(source.raw_os_error(), Some(libc::ELOOP), "{source}");
            }
            other => panic!("opened through a symlink: {:?}", other.map(|p| p.path)),
        }
        assert_eq!(std::fs::read(&target).unwrap(), b"keep");
    }

    #[test]
    fn an_interrupted_pull_says_it_resumes_without_repeating_its_source() {
        let e = RemoteError::Interrupted {
            kept: 5,
            size: 9,
            part: "dir/.smolvm-pull-x.part".into(),
            source: Box::new(ImageError::Registry {
                registry: "r".into(),
                fault: "connection reset".into(),
            }),
        };
        let text = e.to_string();
        assert!(
            text.contains("5 of 9 bytes") && text.contains("resumes"),
            "{text}"
        );
        assert!(
            !text.contains("connection reset"),
            "repeats its source: {text}"
        );
        assert_eq!(e.exit_code(), USAGE_OR_IO);
    }
}

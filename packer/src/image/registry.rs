//! Pulling from a registry, through `oci-client` on a current-thread tokio
//! runtime that lives only for the pull.
//!
//! ```text
//!   <cache>/blobs/sha256/<hex>     manifests, configs and layers, by digest
//!   <cache>/blobs/sha256/.tmp-*    downloads in progress (renamed once checked)
//! ```
//!
//! Every blob is hashed as it arrives and renamed into the cache only when
//! its digest and size match; cached blobs are hashed again before use (a
//! corrupt one is deleted and fetched anew), so the cache is never trusted
//! blindly. A second pack of the same image downloads no blob; a reference
//! by digest whose blobs are all cached does not touch the network at all.
//!
//! Plain HTTP is used for registries on this machine (localhost, 127/8,
//! ::1) and, with `--insecure`, for any; HTTPS otherwise. Credentials come
//! from the docker config (`$DOCKER_CONFIG/config.json`, else
//! `~/.docker/config.json`): `auths` entries and credential helpers.

use std::io::{Read, Write};
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use base64::Engine;
use futures_util::StreamExt;
use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::errors::{DigestError, OciDistributionError, OciErrorCode};
use oci_client::manifest::OciDescriptor;
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference};
use sha2::{Digest as _, Sha256};

use super::digest::{Digest, HashingReader};
use super::oci_layout::{image_from_manifest, resolve_manifest};
use super::reference::RegistryRef;
use super::spec::{
    parse_manifest, select_platform, Descriptor, ImageManifest, ManifestDoc, DOCKER_LIST,
    DOCKER_MANIFEST, MAX_JSON_BLOB, OCI_INDEX, OCI_MANIFEST,
};
use super::store::{DirStore, MAX_BLOB};
use super::{default_cache_dir, io_err, ImageError, ImageOptions, LoadedImage};

/// How long to wait for a TCP (and TLS) connection.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(15);
/// How long one read may stall before the pull gives up.
pub const DEFAULT_READ_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a credential helper may take.
const HELPER_TIMEOUT: Duration = Duration::from_secs(30);
/// Tags listed in a "no such tag" message.
const MAX_TAGS_SHOWN: usize = 20;

/// Network behaviour of a pull.
#[derive(Debug, Clone)]
pub struct RegistryOptions {
    pub connect_timeout: Duration,
    pub read_timeout: Duration,
    /// The docker config to read credentials from; `None` means
    /// `$DOCKER_CONFIG/config.json`, else `~/.docker/config.json`.
    pub docker_config: Option<PathBuf>,
    /// Report each blob downloaded on stderr.
    pub progress: bool,
}

impl Default for RegistryOptions {
    /// `SMOLVM_REGISTRY_TIMEOUT` (seconds) overrides both timeouts.
    fn default() -> Self {
        let from_env = std::env::var("SMOLVM_REGISTRY_TIMEOUT")
            .ok()
            .and_then(|v| v.trim().parse::<u64>().ok())
            .filter(|s| *s > 0)
            .map(Duration::from_secs);
        RegistryOptions {
            connect_timeout: from_env.unwrap_or(DEFAULT_CONNECT_TIMEOUT),
            read_timeout: from_env.unwrap_or(DEFAULT_READ_TIMEOUT),
            docker_config: None,
            progress: false,
        }
    }
}

/// Pulls `r` into the blob cache (what is not there yet) and flattens it.
pub fn load(r: &RegistryRef, opts: &ImageOptions) -> Result<LoadedImage, ImageError> {
    let root = match &opts.cache_dir {
        Some(d) => d.clone(),
        None => default_cache_dir()?,
    };
    let cache = BlobCache::open(&root)?;
    let what = format!("image {r}");
    let (digest, manifest) = match offline(&cache, r, opts, &what)? {
        Some(found) => found,
        None => pull(&cache, r, opts, &what)?,
    };
    let store =
        DirStore::with_description(root.clone(), format!("the image cache {}", root.display()));
    image_from_manifest(&store, &what, digest, &manifest, &opts.platform)
}

/// A reference by digest whose manifest, config and layers are all cached
/// needs no network.
fn offline(
    cache: &BlobCache,
    r: &RegistryRef,
    opts: &ImageOptions,
    what: &str,
) -> Result<Option<(Digest, ImageManifest)>, ImageError> {
    let Some(d) = &r.digest else {
        return Ok(None);
    };
    let store = DirStore::with_description(cache.root.clone(), "the image cache".into());
    let mut desc = Descriptor {
        media_type: String::new(),
        digest: d.to_string(),
        size: -1,
        annotations: Default::default(),
        platform: None,
    };
    // Walk down the index chain only through cached, intact blobs.
    for _ in 0..4 {
        let dd = desc.digest(what)?;
        if !cache.has_valid(&dd, desc.known_size())? {
            return Ok(None);
        }
        let bytes = cache.read_small(&dd, what)?;
        match parse_manifest(&bytes, what)? {
            ManifestDoc::Index(i) => {
                desc = select_platform(&i.manifests, &opts.platform, what)?.clone()
            }
            ManifestDoc::Image(m) => {
                let mut all = vec![(m.config.digest(what)?, m.config.known_size())];
                for l in &m.layers {
                    all.push((l.digest(what)?, l.known_size()));
                }
                for (blob, size) in &all {
                    if !cache.has_valid(blob, *size)? {
                        return Ok(None);
                    }
                }
                let (digest, manifest) = resolve_manifest(&store, &desc, &opts.platform, what)?;
                return Ok(Some((digest, manifest)));
            }
        }
    }
    Ok(None)
}

/// The scheme a registry is spoken to with.
pub fn protocol_for(r: &RegistryRef, insecure: bool) -> ClientProtocol {
    if insecure {
        ClientProtocol::Http
    } else if r.is_local() {
        ClientProtocol::HttpsExcept(vec![r.registry.clone()])
    } else {
        ClientProtocol::Https
    }
}

fn scheme(r: &RegistryRef, insecure: bool) -> &'static str {
    if insecure || r.is_local() {
        "http"
    } else {
        "https"
    }
}

fn pull(
    cache: &BlobCache,
    r: &RegistryRef,
    opts: &ImageOptions,
    what: &str,
) -> Result<(Digest, ImageManifest), ImageError> {
    // reqwest is built without a default TLS provider: install ring's once.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(io_err("starting the registry client"))?;
    let auth = credentials(&r.registry, opts.registry.docker_config.as_deref())?;
    let client = Client::new(ClientConfig {
        protocol: protocol_for(r, opts.insecure),
        connect_timeout: Some(opts.registry.connect_timeout),
        read_timeout: Some(opts.registry.read_timeout),
        platform_resolver: None,
        ..ClientConfig::default()
    });
    let puller = Puller {
        client,
        auth,
        r,
        opts,
        cache,
        what,
    };
    runtime.block_on(puller.run())
}

struct Puller<'a> {
    client: Client,
    auth: RegistryAuth,
    r: &'a RegistryRef,
    opts: &'a ImageOptions,
    cache: &'a BlobCache,
    what: &'a str,
}

const MANIFEST_TYPES: &[&str] = &[OCI_MANIFEST, OCI_INDEX, DOCKER_MANIFEST, DOCKER_LIST];

impl Puller<'_> {
    fn reference(&self) -> Reference {
        match (&self.r.digest, &self.r.tag) {
            (Some(d), _) => Reference::with_digest(
                self.r.registry.clone(),
                self.r.repository.clone(),
                d.to_string(),
            ),
            (None, tag) => Reference::with_tag(
                self.r.registry.clone(),
                self.r.repository.clone(),
                tag.clone().unwrap_or_else(|| "latest".into()),
            ),
        }
    }

    /// A whole request (connect, headers, body) for small documents.
    fn request_timeout(&self) -> Duration {
        self.opts.registry.connect_timeout + self.opts.registry.read_timeout
    }

    async fn run(&self) -> Result<(Digest, ImageManifest), ImageError> {
        let top = self.reference();
        let (bytes, digest) = self.fetch_manifest(&top).await?;
        let mut doc = parse_manifest(&bytes, self.what)?;
        let mut digest = digest;
        for _ in 0..4 {
            match doc {
                ManifestDoc::Image(m) => {
                    self.fetch_blobs(&m).await?;
                    return Ok((digest, m));
                }
                ManifestDoc::Index(i) => {
                    let desc = select_platform(&i.manifests, &self.opts.platform, self.what)?;
                    let d = desc.digest(self.what)?;
                    let bytes = if self.cache.has_valid(&d, desc.known_size())? {
                        self.cache.read_small(&d, self.what)?
                    } else {
                        self.fetch_manifest(&top.clone_with_digest(d.to_string()))
                            .await?
                            .0
                    };
                    doc = parse_manifest(&bytes, self.what)?;
                    digest = d;
                }
            }
        }
        Err(ImageError::Invalid {
            what: self.what.to_string(),
            fault: "image indexes nest more than 4 deep".into(),
        })
    }

    /// Fetches a manifest, checks its digest and caches it.
    async fn fetch_manifest(&self, reference: &Reference) -> Result<(Vec<u8>, Digest), ImageError> {
        let fut = self
            .client
            .pull_manifest_raw(reference, &self.auth, MANIFEST_TYPES);
        let (bytes, digest) = match tokio::time::timeout(self.request_timeout(), fut).await {
            Err(_) => return Err(self.timed_out()),
            Ok(Err(e)) => return Err(self.map_error(e, reference).await),
            Ok(Ok(v)) => v,
        };
        if bytes.len() as u64 > MAX_JSON_BLOB {
            return Err(ImageError::Invalid {
                what: self.what.to_string(),
                fault: format!("manifest is over the {MAX_JSON_BLOB}-byte limit"),
            });
        }
        let actual = Digest::of(&bytes);
        let stated = Digest::parse(&digest).map_err(|fault| ImageError::Invalid {
            what: self.what.to_string(),
            fault,
        })?;
        let expected = reference
            .digest()
            .and_then(|d| Digest::parse(d).ok())
            .unwrap_or(stated);
        if actual != expected {
            return Err(self.mismatch(&format!("manifest {expected}"), &expected, &actual));
        }
        self.cache.put(&actual, &bytes)?;
        Ok((bytes.to_vec(), actual))
    }

    async fn fetch_blobs(&self, m: &ImageManifest) -> Result<(), ImageError> {
        let mut wanted = vec![(m.config.clone(), "config".to_string())];
        let n = m.layers.len();
        for (i, l) in m.layers.iter().enumerate() {
            wanted.push((l.clone(), format!("layer {}/{n}", i + 1)));
        }
        for (desc, label) in wanted {
            let d = desc.digest(self.what)?;
            let size = desc.known_size();
            if self.cache.has_valid(&d, size)? {
                continue;
            }
            if self.opts.registry.progress {
                eprintln!(
                    "pulling {} {label} {d} ({})",
                    self.r,
                    size.map_or_else(|| "size unknown".into(), human_size)
                );
            }
            self.fetch_blob(&d, size, &label).await?;
        }
        Ok(())
    }

    /// Streams one blob into a temporary file in the cache, hashing it, and
    /// renames it into place only if digest and size match.
    async fn fetch_blob(
        &self,
        d: &Digest,
        size: Option<u64>,
        label: &str,
    ) -> Result<(), ImageError> {
        let reference = self.reference();
        // Only digest and size: `urls` would send us to other hosts.
        let desc = OciDescriptor {
            digest: d.to_string(),
            size: size.and_then(|s| i64::try_from(s).ok()).unwrap_or(-1),
            ..OciDescriptor::default()
        };
        let started = tokio::time::timeout(
            self.request_timeout(),
            self.client.pull_blob_stream(&reference, &desc),
        )
        .await;
        let mut stream = match started {
            Err(_) => return Err(self.timed_out()),
            Ok(Err(e)) => return Err(self.map_error(e, &reference).await),
            Ok(Ok(s)) => s,
        };
        let blob_what = format!("{}: {label} {d}", self.what);
        let mut tmp = self.cache.temp()?;
        let mut hasher = Sha256::new();
        let mut count: u64 = 0;
        let limit = size.unwrap_or(MAX_BLOB);
        loop {
            let next = tokio::time::timeout(self.opts.registry.read_timeout, stream.next()).await;
            let chunk = match next {
                Err(_) => return Err(self.timed_out()),
                Ok(None) => break,
                Ok(Some(Ok(c))) => c,
                Ok(Some(Err(e))) => {
                    if e.get_ref().is_some_and(|i| i.is::<DigestError>()) {
                        let actual =
                            Digest::parse(&format!("sha256:{}", hex::encode(hasher.finalize())))
                                .expect("hex digest");
                        return Err(self.mismatch(&format!("{label} {d}"), d, &actual));
                    }
                    return Err(
                        self.registry_fault(format!("downloading {label} {d}: {}", chain(&e)))
                    );
                }
            };
            count += chunk.len() as u64;
            if count > limit {
                return Err(ImageError::Invalid {
                    what: blob_what,
                    fault: format!(
                        "the registry sent more than the {limit} bytes the manifest states"
                    ),
                });
            }
            hasher.update(&chunk);
            tmp.write_all(&chunk)
                .map_err(io_err(format!("writing {}", tmp.path().display())))?;
        }
        let actual = Digest::parse(&format!("sha256:{}", hex::encode(hasher.finalize())))
            .expect("hex digest");
        if &actual != d {
            return Err(self.mismatch(&format!("{label} {d}"), d, &actual));
        }
        if let Some(s) = size.filter(|s| *s != count) {
            return Err(ImageError::Invalid {
                what: blob_what,
                fault: format!("the registry sent {count} bytes; the manifest states {s}"),
            });
        }
        self.cache.commit(tmp, d)
    }

    fn mismatch(&self, what: &str, expected: &Digest, actual: &Digest) -> ImageError {
        ImageError::DigestMismatch {
            what: format!("{}: {what}", self.what),
            expected: expected.to_string(),
            actual: actual.to_string(),
            hint: format!(
                "registry {} served different bytes than the digest names (the blob changed on the registry, or something between altered it); nothing was cached",
                self.r.registry
            ),
        }
    }

    fn timed_out(&self) -> ImageError {
        self.registry_fault(format!(
            "no answer within {}s from {}://{}; check that the registry is up and reachable (SMOLVM_REGISTRY_TIMEOUT sets the limit in seconds)",
            self.request_timeout().as_secs(),
            scheme(self.r, self.opts.insecure),
            self.r.registry
        ))
    }

    fn registry_fault(&self, fault: String) -> ImageError {
        ImageError::Registry {
            registry: self.r.registry.clone(),
            fault,
        }
    }

    /// Turns a client error into a message that says what to do.
    async fn map_error(&self, e: OciDistributionError, reference: &Reference) -> ImageError {
        let base = format!(
            "{}://{}",
            scheme(self.r, self.opts.insecure),
            self.r.registry
        );
        let not_found = match &e {
            OciDistributionError::ImageManifestNotFoundError(_) => true,
            OciDistributionError::ServerError { code: 404, .. } => true,
            OciDistributionError::RegistryError { envelope, .. } => {
                envelope.errors.iter().any(|x| {
                    matches!(
                        x.code,
                        OciErrorCode::ManifestUnknown
                            | OciErrorCode::NameUnknown
                            | OciErrorCode::NotFound
                            | OciErrorCode::BlobUnknown
                    )
                })
            }
            _ => false,
        };
        let denied = match &e {
            OciDistributionError::UnauthorizedError { .. }
            | OciDistributionError::AuthenticationFailure(_) => true,
            OciDistributionError::ServerError { code, .. } => *code == 401 || *code == 403,
            OciDistributionError::RegistryError { envelope, .. } => envelope
                .errors
                .iter()
                .any(|x| matches!(x.code, OciErrorCode::Unauthorized | OciErrorCode::Denied)),
            _ => false,
        };
        if not_found {
            let name = match reference.digest() {
                Some(d) => format!("{}@{d}", self.r.repository),
                None => format!(
                    "{}:{}",
                    self.r.repository,
                    reference.tag().unwrap_or("latest")
                ),
            };
            let tags = if reference.digest().is_none() {
                self.tags(reference).await
            } else {
                None
            };
            let fault = match tags {
                Some(t) if !t.is_empty() => format!(
                    "has no {name}; the tags of {} are: {}; pick one with {}/{}:TAG",
                    self.r.repository,
                    t.join(", "),
                    self.r.registry,
                    self.r.repository
                ),
                _ => format!(
                    "has no {name} (manifest unknown); check the repository name and the tag or digest"
                ),
            };
            return self.registry_fault(fault);
        }
        if denied {
            let how = match &self.auth {
                RegistryAuth::Anonymous => format!(
                    "no credentials were found for {}; run `docker login {}` (credentials are read from {})",
                    self.r.registry,
                    self.r.registry,
                    docker_config_path(self.opts.registry.docker_config.as_deref())
                        .map_or_else(|| "~/.docker/config.json".into(), |p| p.display().to_string())
                ),
                _ => "the credentials from the docker config were refused; log in again with `docker login`".into(),
            };
            return self.registry_fault(format!("access to {} denied: {how}", self.r.repository));
        }
        match e {
            OciDistributionError::DigestError(DigestError::VerificationError {
                expected,
                actual,
            }) => ImageError::DigestMismatch {
                what: format!("{}: manifest", self.what),
                expected,
                actual,
                hint: format!(
                    "registry {} served a manifest that does not match its digest",
                    self.r.registry
                ),
            },
            OciDistributionError::RequestError(re) => {
                let detail = chain(&re);
                let fault = if re.is_timeout() {
                    format!(
                        "no answer from {base} within the time limit ({detail}); check that the registry is up and reachable"
                    )
                } else if re.is_connect() {
                    let tls_hint = if scheme(self.r, self.opts.insecure) == "https"
                        && looks_like_tls_failure(&detail)
                    {
                        "; if it is a plain-HTTP registry, pass --insecure"
                    } else {
                        ""
                    };
                    format!(
                        "cannot connect to {base}: {detail}; check the address and that the registry is running{tls_hint}"
                    )
                } else {
                    format!("request to {base} failed: {detail}")
                };
                self.registry_fault(fault)
            }
            other => self.registry_fault(format!("{base}: {}", chain(&other))),
        }
    }

    /// The repository's tags, for a "no such tag" message; best effort.
    async fn tags(&self, reference: &Reference) -> Option<Vec<String>> {
        let fut = self
            .client
            .list_tags(reference, &self.auth, Some(1000), None);
        let resp = tokio::time::timeout(self.request_timeout(), fut)
            .await
            .ok()?
            .ok()?;
        let mut tags = resp.tags;
        tags.sort();
        if tags.len() > MAX_TAGS_SHOWN {
            let more = tags.len() - MAX_TAGS_SHOWN;
            tags.truncate(MAX_TAGS_SHOWN);
            tags.push(format!("... ({more} more)"));
        }
        Some(tags)
    }
}

fn looks_like_tls_failure(detail: &str) -> bool {
    let d = detail.to_ascii_lowercase();
    [
        "tls",
        "certificate",
        "handshake",
        "corrupt message",
        "invalidcontenttype",
    ]
    .iter()
    .any(|k| d.contains(k))
}

/// An error and its sources, joined: reqwest's own message is only "error
/// sending request".
fn chain(e: &dyn std::error::Error) -> String {
    let mut parts = vec![e.to_string()];
    let mut cur = e.source();
    while let Some(s) = cur {
        let text = s.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        cur = s.source();
    }
    parts.join(": ")
}

fn human_size(n: u64) -> String {
    #[allow(clippy::cast_precision_loss)] // a display value
    let mib = n as f64 / (1024.0 * 1024.0);
    format!("{mib:.1} MiB")
}

/// The content-addressed blob cache.
pub struct BlobCache {
    root: PathBuf,
    dir: PathBuf,
}

impl BlobCache {
    /// Opens `<root>/blobs/sha256`, creating it (mode 0700) if needed.
    pub fn open(root: &Path) -> Result<BlobCache, ImageError> {
        let dir = root.join("blobs/sha256");
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&dir)
            .map_err(io_err(format!(
                "creating the image cache {}",
                dir.display()
            )))?;
        Ok(BlobCache {
            root: root.to_path_buf(),
            dir,
        })
    }

    pub fn path(&self, d: &Digest) -> PathBuf {
        self.dir.join(d.hex())
    }

    /// True when the blob is cached and intact; a corrupt one is deleted.
    pub fn has_valid(&self, d: &Digest, size: Option<u64>) -> Result<bool, ImageError> {
        let path = self.path(d);
        let file = match std::fs::File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(io_err(path.display().to_string())(e)),
        };
        let hashing =
            HashingReader::new(std::io::BufReader::with_capacity(1 << 20, file), MAX_BLOB);
        let ok = match hashing.finish() {
            Ok((actual, len)) => &actual == d && size.is_none_or(|s| s == len),
            Err(e) if e.kind() == std::io::ErrorKind::InvalidData => false,
            Err(e) => return Err(io_err(path.display().to_string())(e)),
        };
        if !ok {
            let _ = std::fs::remove_file(&path);
        }
        Ok(ok)
    }

    /// Reads a small cached blob (a manifest) after checking it.
    fn read_small(&self, d: &Digest, what: &str) -> Result<Vec<u8>, ImageError> {
        let path = self.path(d);
        let mut bytes = Vec::new();
        std::fs::File::open(&path)
            .and_then(|f| f.take(MAX_JSON_BLOB + 1).read_to_end(&mut bytes))
            .map_err(io_err(path.display().to_string()))?;
        let actual = Digest::of(&bytes);
        if &actual != d {
            let _ = std::fs::remove_file(&path);
            return Err(ImageError::DigestMismatch {
                what: format!("{what}: cached {d}"),
                expected: d.to_string(),
                actual: actual.to_string(),
                hint: "the cache entry changed while in use; it was removed, run again".into(),
            });
        }
        Ok(bytes)
    }

    fn temp(&self) -> Result<tempfile::NamedTempFile, ImageError> {
        tempfile::Builder::new()
            .prefix(".tmp-")
            .tempfile_in(&self.dir)
            .map_err(io_err(format!("creating a file in {}", self.dir.display())))
    }

    fn commit(&self, tmp: tempfile::NamedTempFile, d: &Digest) -> Result<(), ImageError> {
        let path = self.path(d);
        tmp.persist(&path)
            .map_err(|e| io_err(format!("writing {}", path.display()))(e.error))?;
        Ok(())
    }

    /// Stores `bytes` under `d` after checking they hash to it.
    pub fn put(&self, d: &Digest, bytes: &[u8]) -> Result<(), ImageError> {
        let actual = Digest::of(bytes);
        if &actual != d {
            return Err(ImageError::DigestMismatch {
                what: "image cache".into(),
                expected: d.to_string(),
                actual: actual.to_string(),
                hint: "refusing to cache it".into(),
            });
        }
        if self.path(d).is_file() {
            return Ok(());
        }
        let mut tmp = self.temp()?;
        tmp.write_all(bytes)
            .map_err(io_err(format!("writing {}", tmp.path().display())))?;
        self.commit(tmp, d)
    }
}

/// `$DOCKER_CONFIG/config.json`, else `~/.docker/config.json`.
fn docker_config_path(explicit: Option<&Path>) -> Option<PathBuf> {
    if let Some(p) = explicit {
        return Some(p.to_path_buf());
    }
    if let Some(d) = std::env::var_os("DOCKER_CONFIG").filter(|d| !d.is_empty()) {
        return Some(PathBuf::from(d).join("config.json"));
    }
    std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".docker/config.json"))
}

/// The registry a docker config key names: keys are hosts, or URLs such as
/// `https://index.docker.io/v1/`.
fn config_key_registry(key: &str) -> String {
    let k = key
        .strip_prefix("https://")
        .or_else(|| key.strip_prefix("http://"))
        .unwrap_or(key);
    let host = k.split('/').next().unwrap_or(k).to_ascii_lowercase();
    match host.as_str() {
        "index.docker.io" | "registry-1.docker.io" => "docker.io".into(),
        _ => host,
    }
}

/// Credentials for `registry` from the docker config: an `auths` entry,
/// else a credential helper (`credHelpers`, `credsStore`); anonymous when
/// there are none.
pub fn credentials(registry: &str, config: Option<&Path>) -> Result<RegistryAuth, ImageError> {
    let Some(path) = docker_config_path(config) else {
        return Ok(RegistryAuth::Anonymous);
    };
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(RegistryAuth::Anonymous),
        Err(e) => return Err(io_err(path.display().to_string())(e)),
    };
    let bad = |fault: String| ImageError::Invalid {
        what: format!("docker config {}", path.display()),
        fault: format!("{fault}; fix it or move it away to pull anonymously"),
    };
    let v: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| bad(format!("not valid JSON: {e}")))?;
    if let Some(auths) = v.get("auths").and_then(|a| a.as_object()) {
        for (key, entry) in auths {
            if config_key_registry(key) != registry {
                continue;
            }
            if let Some(b64) = entry
                .get("auth")
                .and_then(|a| a.as_str())
                .filter(|a| !a.is_empty())
            {
                let raw = base64::engine::general_purpose::STANDARD
                    .decode(b64.trim())
                    .map_err(|e| bad(format!("auths.{key}.auth is not base64: {e}")))?;
                let pair = String::from_utf8(raw)
                    .map_err(|_| bad(format!("auths.{key}.auth is not UTF-8")))?;
                let (user, pass) = pair.split_once(':').ok_or_else(|| {
                    bad(format!("auths.{key}.auth is not base64 of user:password"))
                })?;
                return Ok(RegistryAuth::Basic(user.into(), pass.into()));
            }
            if let (Some(u), Some(p)) = (
                entry.get("username").and_then(|u| u.as_str()),
                entry.get("password").and_then(|p| p.as_str()),
            ) {
                return Ok(RegistryAuth::Basic(u.into(), p.into()));
            }
        }
    }
    let helper = v
        .get("credHelpers")
        .and_then(|h| h.as_object())
        .and_then(|h| {
            h.iter()
                .find(|(k, _)| config_key_registry(k) == registry)
                .and_then(|(_, v)| v.as_str())
        })
        .or_else(|| v.get("credsStore").and_then(|s| s.as_str()))
        .filter(|h| !h.is_empty());
    match helper {
        Some(h) => Ok(from_helper(h, registry).unwrap_or(RegistryAuth::Anonymous)),
        None => Ok(RegistryAuth::Anonymous),
    }
}

/// Asks `docker-credential-<helper> get`; `None` if it has nothing or fails.
fn from_helper(helper: &str, registry: &str) -> Option<RegistryAuth> {
    if !helper
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
    {
        return None;
    }
    let server = if registry == "docker.io" {
        "https://index.docker.io/v1/".to_string()
    } else {
        registry.to_string()
    };
    let mut child = std::process::Command::new(format!("docker-credential-{helper}"))
        .arg("get")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .ok()?;
    child.stdin.take()?.write_all(server.as_bytes()).ok()?;
    let deadline = std::time::Instant::now() + HELPER_TIMEOUT;
    loop {
        match child.try_wait().ok()? {
            Some(status) if status.success() => break,
            Some(_) => return None,
            None if std::time::Instant::now() > deadline => {
                let _ = child.kill();
                let _ = child.wait();
                return None;
            }
            None => std::thread::sleep(Duration::from_millis(20)),
        }
    }
    let mut out = String::new();
    child.stdout.take()?.read_to_string(&mut out).ok()?;
    let v: serde_json::Value = serde_json::from_str(&out).ok()?;
    let user = v.get("Username")?.as_str()?;
    let secret = v.get("Secret")?.as_str()?;
    // `<token>` means an identity token, which needs an OAuth exchange we
    // do not do; pulling anonymously is the better fallback.
    (user != "<token>").then(|| RegistryAuth::Basic(user.into(), secret.into()))
}

#[cfg(test)]
mod tests;

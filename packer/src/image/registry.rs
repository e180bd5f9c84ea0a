//! Pulling from a registry: the distribution API's GETs over reqwest, on a
//! current-thread tokio runtime that lives only for the pull.
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
//! Nothing a registry sends is read into memory unbounded: manifests and
//! indexes (8 MiB), token responses and tag lists (1 MiB) and error bodies
//! (64 KiB, the rest unread) are read chunk by chunk and refused past their
//! cap; blobs go to disk, no further than the size the manifest states.
//!
//! Plain HTTP is used for registries on this machine (localhost, 127/8,
//! ::1) and, with `--insecure`, for any; HTTPS otherwise. Credentials come
//! from the docker config (`$DOCKER_CONFIG/config.json`, else
//! `~/.docker/config.json`): `auths` entries and credential helpers.

use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use base64::Engine;
use sha2::{Digest as _, Sha256};
use smolvm_runtime::exit::chain;
use smolvm_runtime::units::human_size;

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

/// Credentials for a registry, from the docker config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RegistryAuth {
    Anonymous,
    /// User and password (or token) for HTTP basic authentication, also
    /// sent to the token service a registry's challenge names.
    Basic(String, String),
}

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

/// The scheme a registry is spoken to with: plain HTTP only for this machine
/// or with `--insecure`.
pub fn scheme(r: &RegistryRef, insecure: bool) -> &'static str {
    if insecure || r.is_local() {
        "http"
    } else {
        "https"
    }
}

/// The host the distribution API of `registry` answers on.
fn api_host(registry: &str) -> &str {
    match registry {
        "docker.io" => "registry-1.docker.io",
        other => other,
    }
}

fn pull(
    cache: &BlobCache,
    r: &RegistryRef,
    opts: &ImageOptions,
    what: &str,
) -> Result<(Digest, ImageManifest), ImageError> {
    let runtime = client_runtime()?;
    let puller = Puller::new(r, opts, cache, what, Scope::Pull)?;
    runtime.block_on(puller.run())
}

/// The current-thread runtime a registry conversation runs on.
fn client_runtime() -> Result<tokio::runtime::Runtime, ImageError> {
    // reqwest is built without a default TLS provider: install ring's once.
    let _ = rustls::crypto::ring::default_provider().install_default();
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(io_err("starting the registry client"))
}

/// What a token is asked for: pulls need `pull`, pushes `pull,push`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scope {
    Pull,
    Push,
}

struct Puller<'a> {
    client: reqwest::Client,
    /// `SCHEME://HOST/v2/REPOSITORY`.
    base: String,
    auth: RegistryAuth,
    /// The `Authorization` value the registry's challenge asked for, once known.
    authorization: std::sync::Mutex<Option<String>>,
    r: &'a RegistryRef,
    opts: &'a ImageOptions,
    cache: &'a BlobCache,
    what: &'a str,
    scope: Scope,
}

const MANIFEST_TYPES: &[&str] = &[OCI_MANIFEST, OCI_INDEX, DOCKER_MANIFEST, DOCKER_LIST];
/// A token endpoint's answer: a JSON object with a token of a few KiB.
const MAX_TOKEN_RESPONSE: u64 = 1 << 20;
/// A tag list (`n=1000` asked for; names are at most 128 bytes).
const MAX_TAG_LIST: u64 = 1 << 20;
/// What is read of an error response's body, for its OCI error codes; the
/// rest is not read.
const MAX_ERROR_BODY: u64 = 64 << 10;

/// A registry answer that is not a success, with the start of its body.
struct Refused {
    status: u16,
    body: Vec<u8>,
}

impl Refused {
    /// The OCI error codes in the body (`{"errors":[{"code":...}]}`).
    fn codes(&self) -> Vec<String> {
        serde_json::from_slice::<serde_json::Value>(&self.body)
            .ok()
            .and_then(|v| {
                v.get("errors")?.as_array().map(|errors| {
                    errors
                        .iter()
                        .filter_map(|e| e.get("code")?.as_str().map(str::to_string))
                        .collect()
                })
            })
            .unwrap_or_default()
    }
}

/// What a request came to.
enum Failure {
    Refused(Refused),
    Fatal(ImageError),
}

impl From<ImageError> for Failure {
    fn from(e: ImageError) -> Self {
        Failure::Fatal(e)
    }
}

impl<'a> Puller<'a> {
    fn new(
        r: &'a RegistryRef,
        opts: &'a ImageOptions,
        cache: &'a BlobCache,
        what: &'a str,
        scope: Scope,
    ) -> Result<Self, ImageError> {
        let auth = credentials(&r.registry, opts.registry.docker_config.as_deref())?;
        let client = reqwest::Client::builder()
            .connect_timeout(opts.registry.connect_timeout)
            .read_timeout(opts.registry.read_timeout)
            .user_agent(concat!("smolvm/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| ImageError::Registry {
                registry: r.registry.clone(),
                fault: format!("cannot start the HTTP client: {}", chain(&e)),
            })?;
        Ok(Puller {
            client,
            base: format!(
                "{}://{}/v2/{}",
                scheme(r, opts.insecure),
                api_host(&r.registry),
                r.repository
            ),
            auth,
            authorization: std::sync::Mutex::new(None),
            r,
            opts,
            cache,
            what,
            scope,
        })
    }

    /// The manifest reference asked for first: the digest, else the tag.
    fn top_reference(&self) -> String {
        match (&self.r.digest, &self.r.tag) {
            (Some(d), _) => d.to_string(),
            (None, tag) => tag.clone().unwrap_or_else(|| "latest".into()),
        }
    }

    /// A whole request (connect, headers, body) for small documents.
    fn request_timeout(&self) -> Duration {
        self.opts.registry.connect_timeout + self.opts.registry.read_timeout
    }

    async fn run(&self) -> Result<(Digest, ImageManifest), ImageError> {
        let top = self.top_reference();
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
                        self.fetch_manifest(&d.to_string()).await?.0
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

    /// GET `url` with the authorization the registry asked for; a 401 with
    /// a challenge is answered once (a bearer token from the realm it
    /// names, or basic credentials) and the request sent again. A refusal
    /// comes back with at most [`MAX_ERROR_BODY`] bytes of its body.
    async fn get(&self, url: &str, accept: &[&str]) -> Result<reqwest::Response, Failure> {
        self.send(reqwest::Method::GET, url, accept, &[], None)
            .await
    }

    /// [`Puller::get`] for any method, with extra headers and a body (sent
    /// again if the registry's challenge has to be answered first).
    async fn send(
        &self,
        method: reqwest::Method,
        url: &str,
        accept: &[&str],
        headers: &[(&str, String)],
        body: Option<&[u8]>,
    ) -> Result<reqwest::Response, Failure> {
        let mut answered = false;
        loop {
            let mut req = self.client.request(method.clone(), url);
            for (name, value) in headers {
                req = req.header(*name, value);
            }
            if let Some(b) = body {
                req = req.body(b.to_vec());
            }
            if !accept.is_empty() {
                req = req.header(reqwest::header::ACCEPT, accept.join(", "));
            }
            let current = self.authorization.lock().expect("not poisoned").clone();
            if let Some(a) = current {
                req = req.header(reqwest::header::AUTHORIZATION, a);
            }
            let resp = match tokio::time::timeout(self.request_timeout(), req.send()).await {
                Err(_) => return Err(self.timed_out().into()),
                Ok(Err(e)) => return Err(self.request_error(&e).into()),
                Ok(Ok(resp)) => resp,
            };
            let status = resp.status().as_u16();
            if status == 401 && !answered {
                if let Some(challenge) = resp
                    .headers()
                    .get(reqwest::header::WWW_AUTHENTICATE)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_string)
                {
                    answered = true;
                    if self.answer(&challenge).await? {
                        continue;
                    }
                }
            }
            if resp.status().is_success() {
                return Ok(resp);
            }
            let body = self
                .read_capped(resp, MAX_ERROR_BODY, "an error response", false)
                .await?;
            return Err(Failure::Refused(Refused { status, body }));
        }
    }

    /// Answers a `WWW-Authenticate` challenge; false when there is nothing
    /// to answer it with (the 401 then stands).
    async fn answer(&self, challenge: &str) -> Result<bool, ImageError> {
        let (kind, params) = parse_challenge(challenge);
        let basic = match &self.auth {
            RegistryAuth::Basic(u, p) => Some(format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(format!("{u}:{p}"))
            )),
            RegistryAuth::Anonymous => None,
        };
        if kind.eq_ignore_ascii_case("basic") {
            let known = basic.is_some();
            *self.authorization.lock().expect("not poisoned") = basic;
            return Ok(known);
        }
        if !kind.eq_ignore_ascii_case("bearer") {
            return Ok(false);
        }
        let Some(realm) = params.get("realm") else {
            return Ok(false);
        };
        let mut query = vec![(
            "scope".to_string(),
            format!(
                "repository:{}:{}",
                self.r.repository,
                match self.scope {
                    Scope::Pull => "pull",
                    Scope::Push => "pull,push",
                }
            ),
        )];
        if let Some(service) = params.get("service") {
            query.push(("service".into(), service.clone()));
        }
        let url = reqwest::Url::parse_with_params(realm, &query).map_err(|e| {
            self.registry_fault(format!(
                "the token realm {realm:?} it names is not a URL: {e}"
            ))
        })?;
        let plain_ok = scheme(self.r, self.opts.insecure) == "http";
        if url.scheme() != "https" && !(plain_ok && url.scheme() == "http") {
            return Err(self.registry_fault(format!(
                "refusing the token realm {realm:?}: credentials and tokens go over HTTPS only"
            )));
        }
        let mut req = self.client.get(url);
        if let Some(b) = basic {
            req = req.header(reqwest::header::AUTHORIZATION, b);
        }
        let resp = match tokio::time::timeout(self.request_timeout(), req.send()).await {
            Err(_) => return Err(self.timed_out()),
            Ok(Err(e)) => return Err(self.request_error(&e)),
            Ok(Ok(resp)) => resp,
        };
        let status = resp.status();
        let body = self
            .read_capped(resp, MAX_TOKEN_RESPONSE, "the token response", true)
            .await?;
        if !status.is_success() {
            return Ok(false);
        }
        let token = serde_json::from_slice::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| {
                v.get("token")
                    .or_else(|| v.get("access_token"))?
                    .as_str()
                    .map(str::to_string)
            })
            .filter(|t| !t.is_empty())
            .ok_or_else(|| {
                self.registry_fault(format!(
                    "the token service at {realm} answered without a token"
                ))
            })?;
        *self.authorization.lock().expect("not poisoned") = Some(format!("Bearer {token}"));
        Ok(true)
    }

    /// Reads a response body into memory, chunk by chunk, never past
    /// `cap`: over it, an error when `strict`, else the first `cap` bytes.
    async fn read_capped(
        &self,
        mut resp: reqwest::Response,
        cap: u64,
        what: &str,
        strict: bool,
    ) -> Result<Vec<u8>, ImageError> {
        let too_big = |read: u64| {
            self.registry_fault(format!(
                "{what} is larger than the {cap}-byte limit (stopped after reading {read} bytes); refusing it"
            ))
        };
        if strict {
            if let Some(len) = resp.content_length().filter(|l| *l > cap) {
                return Err(self.registry_fault(format!(
                    "{what} is {len} bytes, over the {cap}-byte limit; refusing it"
                )));
            }
        }
        let mut out = Vec::new();
        loop {
            let next = tokio::time::timeout(self.opts.registry.read_timeout, resp.chunk()).await;
            let chunk = match next {
                Err(_) => return Err(self.timed_out()),
                Ok(Err(e)) => return Err(self.request_error(&e)),
                Ok(Ok(None)) => return Ok(out),
                Ok(Ok(Some(c))) => c,
            };
            let room = usize::try_from(cap).unwrap_or(usize::MAX) - out.len();
            if chunk.len() > room {
                if strict {
                    return Err(too_big(out.len() as u64 + chunk.len() as u64));
                }
                out.extend_from_slice(&chunk[..room]);
                return Ok(out);
            }
            out.extend_from_slice(&chunk);
        }
    }

    /// Fetches a manifest (at most [`MAX_JSON_BLOB`] bytes, read as it
    /// arrives), checks its digest and caches it.
    async fn fetch_manifest(&self, reference: &str) -> Result<(Vec<u8>, Digest), ImageError> {
        let url = format!("{}/manifests/{reference}", self.base);
        let resp = match self.get(&url, MANIFEST_TYPES).await {
            Ok(resp) => resp,
            Err(Failure::Fatal(e)) => return Err(e),
            Err(Failure::Refused(r)) => return Err(self.refused(r, Some(reference)).await),
        };
        let header_digest = resp
            .headers()
            .get("docker-content-digest")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let what = format!("the manifest {}:{reference}", self.r.repository);
        let bytes = self.read_capped(resp, MAX_JSON_BLOB, &what, true).await?;
        let actual = Digest::of(&bytes);
        let expected = match Digest::parse(reference) {
            Ok(d) => d,
            Err(_) => match header_digest {
                Some(h) => Digest::parse(&h).map_err(|fault| ImageError::Invalid {
                    what: self.what.to_string(),
                    fault: format!("Docker-Content-Digest header: {fault}"),
                })?,
                None => actual.clone(),
            },
        };
        if actual != expected {
            return Err(self.mismatch(&format!("manifest {expected}"), &expected, &actual));
        }
        self.cache.put(&actual, &bytes)?;
        Ok((bytes, actual))
    }

    async fn fetch_blobs(&self, m: &ImageManifest) -> Result<(), ImageError> {
        let mut wanted = vec![(m.config.clone(), "config".to_string(), true)];
        let n = m.layers.len();
        for (i, l) in m.layers.iter().enumerate() {
            wanted.push((l.clone(), format!("layer {}/{n}", i + 1), false));
        }
        for (desc, label, json) in wanted {
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
            // The config is a JSON document read into memory later: no
            // more than the JSON cap is downloaded for it either.
            let cap = if json { MAX_JSON_BLOB } else { MAX_BLOB };
            if let Some(s) = size.filter(|s| *s > cap) {
                return Err(ImageError::Invalid {
                    what: format!("{}: {label} {d}", self.what),
                    fault: format!("the manifest states {s} bytes, over the {cap}-byte limit"),
                });
            }
            self.fetch_blob(&d, size.unwrap_or(cap), size.is_some(), &label)
                .await?;
        }
        Ok(())
    }

    /// Streams one blob into a temporary file in the cache, hashing it, and
    /// renames it into place only if digest and size match.
    async fn fetch_blob(
        &self,
        d: &Digest,
        limit: u64,
        exact: bool,
        label: &str,
    ) -> Result<(), ImageError> {
        let mut tmp = self.cache.temp()?;
        let path = tmp.path().to_path_buf();
        self.receive_blob(d, limit, exact, label, tmp.as_file_mut(), &path, None)
            .await?;
        self.cache.commit(tmp, d)
    }

    /// Streams blob `d` into `out` (at `path`), hashing it; an error unless
    /// it hashes to `d` and is no longer than `limit` (exactly `limit` when
    /// `exact`). With `resume`, `out` holds what an earlier download left:
    /// the rest is asked for with `Range: bytes=N-` and appended (206), or,
    /// when the registry ignores the range (200), the whole blob is written
    /// over it from byte 0.
    #[allow(clippy::too_many_arguments)] // private; two callers: the cache and Session::download
    async fn receive_blob(
        &self,
        d: &Digest,
        limit: u64,
        exact: bool,
        label: &str,
        out: &mut std::fs::File,
        path: &Path,
        resume: Option<Resume>,
    ) -> Result<(), ImageError> {
        let url = format!("{}/blobs/{d}", self.base);
        let blob_what = format!("{}: {label} {d}", self.what);
        let offset = resume.as_ref().map_or(0, |r| r.offset);
        let range = (offset > 0).then(|| ("Range", format!("bytes={offset}-")));
        let mut resp = match self
            .send(reqwest::Method::GET, &url, &[], range.as_slice(), None)
            .await
        {
            Ok(resp) => resp,
            Err(Failure::Fatal(e)) => return Err(e),
            // The blob is shorter than the bytes kept: they cannot be its.
            Err(Failure::Refused(r)) if r.status == 416 && offset > 0 => {
                return Err(ImageError::Invalid {
                    what: blob_what,
                    fault: format!(
                        "the registry has no bytes from offset {offset} on (HTTP 416), though the manifest states {limit}"
                    ),
                })
            }
            Err(Failure::Refused(r)) => return Err(self.refused(r, None).await),
        };
        let written = io_err(format!("writing {}", path.display()));
        let (mut hasher, mut count) = match resume {
            Some(r) if resp.status().as_u16() == 206 => {
                let content_range = resp
                    .headers()
                    .get(reqwest::header::CONTENT_RANGE)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("");
                if range_start(content_range) != Some(r.offset) {
                    return Err(ImageError::Invalid {
                        what: blob_what,
                        fault: format!(
                            "the registry answered a request for bytes {}- with Content-Range {content_range:?}",
                            r.offset
                        ),
                    });
                }
                out.seek(SeekFrom::Start(r.offset)).map_err(written)?;
                (r.hasher, r.offset)
            }
            _ => {
                if offset > 0 && self.opts.registry.progress {
                    eprintln!(
                        "registry {} ignored the range request; downloading {label} from its start",
                        self.r.registry
                    );
                }
                out.set_len(0)
                    .and_then(|()| out.seek(SeekFrom::Start(0)))
                    .map_err(written)?;
                (Sha256::new(), 0)
            }
        };
        let resumed = count > 0;
        loop {
            let next = tokio::time::timeout(self.opts.registry.read_timeout, resp.chunk()).await;
            let chunk = match next {
                Err(_) => return Err(self.timed_out()),
                Ok(Ok(None)) => break,
                Ok(Err(e)) => {
                    return Err(
                        self.registry_fault(format!("downloading {label} {d}: {}", chain(&e)))
                    )
                }
                Ok(Ok(Some(c))) => c,
            };
            count += chunk.len() as u64;
            if count > limit {
                return Err(ImageError::Invalid {
                    what: blob_what,
                    fault: if exact {
                        format!("the registry sent more than the {limit} bytes the manifest states")
                    } else {
                        format!("the registry sent more than the {limit}-byte limit")
                    },
                });
            }
            hasher.update(&chunk);
            out.write_all(&chunk)
                .map_err(io_err(format!("writing {}", path.display())))?;
        }
        let actual = Digest::parse(&format!("sha256:{}", hex::encode(hasher.finalize())))
            .expect("hex digest");
        if &actual != d {
            let mut e = self.mismatch(&format!("{label} {d}"), d, &actual);
            if let (true, ImageError::DigestMismatch { hint, .. }) = (resumed, &mut e) {
                *hint = format!(
                    "the {offset} bytes kept from an earlier download, or the rest that registry {} sent, are not the blob's; they are deleted, and the next pull starts from the beginning",
                    self.r.registry
                );
            }
            return Err(e);
        }
        if exact && count != limit {
            return Err(ImageError::Invalid {
                what: blob_what,
                fault: format!("the registry sent {count} bytes; the manifest states {limit}"),
            });
        }
        Ok(())
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

    /// A transport failure, with what to do about it.
    fn request_error(&self, re: &reqwest::Error) -> ImageError {
        let base = format!(
            "{}://{}",
            scheme(self.r, self.opts.insecure),
            self.r.registry
        );
        let detail = chain(re).to_string();
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

    /// Turns a refusal into a message that says what to do. `manifest` is
    /// the manifest reference asked for (`None` for a blob).
    async fn refused(&self, r: Refused, manifest: Option<&str>) -> ImageError {
        let codes = r.codes();
        let has = |c: &[&str]| codes.iter().any(|x| c.contains(&x.as_str()));
        let not_found = r.status == 404
            || has(&[
                "MANIFEST_UNKNOWN",
                "NAME_UNKNOWN",
                "NOT_FOUND",
                "BLOB_UNKNOWN",
            ]);
        let denied = r.status == 401 || r.status == 403 || has(&["UNAUTHORIZED", "DENIED"]);
        if not_found {
            let by_digest = manifest.is_none_or(|m| Digest::parse(m).is_ok());
            let name = match manifest {
                Some(m) if by_digest => format!("{}@{m}", self.r.repository),
                Some(m) => format!("{}:{m}", self.r.repository),
                None => format!("blob of {}", self.r.repository),
            };
            let tags = if by_digest { None } else { self.tags().await };
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
        let detail = String::from_utf8_lossy(&r.body[..r.body.len().min(200)]).into_owned();
        self.registry_fault(format!(
            "{}://{} answered HTTP {}: {detail:?}",
            scheme(self.r, self.opts.insecure),
            self.r.registry,
            r.status
        ))
    }

    /// The repository's tags, for a "no such tag" message; best effort,
    /// and the list is read no further than [`MAX_TAG_LIST`] bytes.
    async fn tags(&self) -> Option<Vec<String>> {
        let url = format!("{}/tags/list?n=1000", self.base);
        let resp = self.get(&url, &[]).await.ok()?;
        let body = self
            .read_capped(resp, MAX_TAG_LIST, "the tag list", true)
            .await
            .ok()?;
        let v: serde_json::Value = serde_json::from_slice(&body).ok()?;
        let mut tags: Vec<String> = v
            .get("tags")?
            .as_array()?
            .iter()
            .filter_map(|t| t.as_str().map(str::to_string))
            .collect();
        tags.sort();
        if tags.len() > MAX_TAGS_SHOWN {
            let more = tags.len() - MAX_TAGS_SHOWN;
            tags.truncate(MAX_TAGS_SHOWN);
            tags.push(format!("... ({more} more)"));
        }
        Some(tags)
    }
}

/// `Bearer realm="...",service="..."` -> ("Bearer", {realm, service}).
fn parse_challenge(header: &str) -> (String, std::collections::HashMap<String, String>) {
    let header = header.trim();
    let (kind, rest) = header.split_once(' ').unwrap_or((header, ""));
    let mut params = std::collections::HashMap::new();
    let mut rest = rest.trim();
    while !rest.is_empty() {
        let Some((key, after)) = rest.split_once('=') else {
            break;
        };
        let key = key
            .trim()
            .trim_start_matches(',')
            .trim()
            .to_ascii_lowercase();
        let after = after.trim_start();
        let (value, remaining) = if let Some(quoted) = after.strip_prefix('"') {
            match quoted.find('"') {
                Some(end) => (&quoted[..end], &quoted[end + 1..]),
                None => (quoted, ""),
            }
        } else {
            match after.find(',') {
                Some(end) => (&after[..end], &after[end..]),
                None => (after, ""),
            }
        };
        params.insert(key, value.to_string());
        rest = remaining.trim_start().trim_start_matches(',').trim_start();
    }
    (kind.to_string(), params)
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

/// Where a download picks up: the first `offset` bytes of the blob are on
/// disk already, and `hasher` has seen them.
pub struct Resume {
    offset: u64,
    hasher: Sha256,
}

impl Resume {
    /// Hashes the first `len` bytes of `file`, the part an earlier download
    /// of the blob left. They are read again rather than trusted: what is
    /// on disk is what the final digest has to cover.
    pub fn from_prefix(file: &mut std::fs::File, len: u64) -> std::io::Result<Resume> {
        file.seek(SeekFrom::Start(0))?;
        let mut hasher = Sha256::new();
        let read = std::io::copy(&mut Read::take(&mut *file, len), &mut hasher)?;
        if read != len {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                format!("{read} bytes where {len} were"),
            ));
        }
        Ok(Resume {
            offset: len,
            hasher,
        })
    }

    /// The bytes already there.
    pub fn offset(&self) -> u64 {
        self.offset
    }
}

/// The first byte a `Content-Range: bytes FIRST-LAST/SIZE` answer holds.
fn range_start(content_range: &str) -> Option<u64> {
    let (first, _) = content_range
        .trim()
        .strip_prefix("bytes ")?
        .split_once('-')?;
    first.trim().parse().ok()
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

mod session;
pub use session::{Connection, Session};

#[cfg(test)]
mod tests;

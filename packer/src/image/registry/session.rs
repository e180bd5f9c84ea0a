//! The registry client for artifacts (`smolvm pack push/pull`, remote
//! `inspect`/`verify`): the same connection, credentials, challenge
//! answering, caps and messages as image pulls, plus what those do not
//! need: uploads (POST, PATCH chunks, PUT with the digest), manifest PUTs,
//! HEAD of a blob and ranged reads of one.

use std::io::Read;
use std::path::{Path, PathBuf};

use smolvm_runtime::units::human_size;

use super::{client_runtime, Failure, Puller, Scope};
use crate::image::digest::Digest;
use crate::image::reference::RegistryRef;
use crate::image::spec::Platform;
use crate::image::{default_cache_dir, io_err, ImageError, ImageOptions};

use super::{BlobCache, RegistryOptions, Resume};

/// Bytes sent per upload request: a PATCH per chunk, the last chunk with
/// the closing PUT. Large enough that requests cost little beside the
/// data, small enough to hold in memory (twice: read buffer and body).
pub const UPLOAD_CHUNK: usize = 16 << 20;
/// The most one ranged read returns into memory (remote inspect reads the
/// manifest, a few KiB, and the config section, at most a few MiB).
pub const MAX_RANGE: u64 = 64 << 20;

/// What a registry conversation needs, owned: the reference, options, the
/// blob cache manifests are kept in, and the runtime it runs on.
pub struct Connection {
    runtime: tokio::runtime::Runtime,
    r: RegistryRef,
    opts: ImageOptions,
    cache: BlobCache,
    what: String,
    scope: Scope,
}

impl Connection {
    /// A connection to `r`'s registry; `push` asks tokens for `pull,push`.
    pub fn open(
        r: &RegistryRef,
        registry: RegistryOptions,
        insecure: bool,
        cache_dir: Option<PathBuf>,
        push: bool,
    ) -> Result<Connection, ImageError> {
        let root = match &cache_dir {
            Some(d) => d.clone(),
            None => default_cache_dir()?,
        };
        let cache = BlobCache::open(&root)?;
        Ok(Connection {
            runtime: client_runtime()?,
            r: r.clone(),
            opts: ImageOptions {
                platform: Platform::linux("amd64"),
                insecure,
                cache_dir,
                base_dir: None,
                registry,
            },
            cache,
            what: format!("artifact {r}"),
            scope: if push { Scope::Push } else { Scope::Pull },
        })
    }

    /// One session: the registry's challenge is answered once and its
    /// token reused for every request made through it.
    pub fn session(&self) -> Result<Session<'_>, ImageError> {
        Ok(Session {
            puller: Puller::new(&self.r, &self.opts, &self.cache, &self.what, self.scope)?,
            runtime: &self.runtime,
        })
    }
}

/// Requests to one repository, made one at a time.
pub struct Session<'a> {
    puller: Puller<'a>,
    runtime: &'a tokio::runtime::Runtime,
}

impl Session<'_> {
    /// The manifest `reference` (tag or digest) names, digest-checked, with
    /// its digest.
    pub fn manifest(&self, reference: &str) -> Result<(Vec<u8>, Digest), ImageError> {
        self.runtime.block_on(self.puller.fetch_manifest(reference))
    }

    /// Whether the repository has blob `d` (HEAD).
    pub fn has_blob(&self, d: &Digest) -> Result<bool, ImageError> {
        let p = &self.puller;
        let url = format!("{}/blobs/{d}", p.base);
        self.runtime.block_on(async {
            match p.send(reqwest::Method::HEAD, &url, &[], &[], None).await {
                Ok(_) => Ok(true),
                Err(Failure::Refused(r)) if r.status == 404 => Ok(false),
                Err(Failure::Refused(r)) => Err(p.refused(r, None).await),
                Err(Failure::Fatal(e)) => Err(e),
            }
        })
    }

    /// Uploads `size` bytes from `data` as blob `d`: one POST, a PATCH per
    /// `UPLOAD_CHUNK` (16 MiB) but the last, which goes with the closing PUT. The
    /// registry checks the digest; a mismatch is its refusal.
    pub fn upload_blob(
        &self,
        d: &Digest,
        size: u64,
        mut data: impl Read,
        label: &str,
    ) -> Result<(), ImageError> {
        let p = &self.puller;
        self.runtime.block_on(async {
            let start = format!("{}/blobs/uploads/", p.base);
            let resp = p
                .send(reqwest::Method::POST, &start, &[], &[], Some(&[]))
                .await;
            let mut location = self.location(resp, &start).await?;
            let mut sent: u64 = 0;
            let mut chunk = vec![0u8; UPLOAD_CHUNK];
            loop {
                let want = usize::try_from((size - sent).min(UPLOAD_CHUNK as u64))
                    .expect("at most UPLOAD_CHUNK");
                data.read_exact(&mut chunk[..want])
                    .map_err(io_err(format!("reading {label}")))?;
                let body = &chunk[..want];
                let last = sent + want as u64 == size;
                let mut headers = vec![("Content-Type", "application/octet-stream".to_string())];
                if last {
                    let mut url = reqwest::Url::parse(&location).map_err(|e| {
                        p.registry_fault(format!("upload location {location:?}: {e}"))
                    })?;
                    url.query_pairs_mut().append_pair("digest", &d.to_string());
                    let resp = p
                        .send(
                            reqwest::Method::PUT,
                            url.as_str(),
                            &[],
                            &headers,
                            Some(body),
                        )
                        .await;
                    return match resp {
                        Ok(_) => Ok(()),
                        Err(Failure::Fatal(e)) => Err(e),
                        Err(Failure::Refused(r)) => Err(self.upload_refused(r, label)),
                    };
                }
                headers.push((
                    "Content-Range",
                    format!("{sent}-{}", sent + want as u64 - 1),
                ));
                let resp = p
                    .send(reqwest::Method::PATCH, &location, &[], &headers, Some(body))
                    .await;
                location = self.location(resp, &location).await?;
                sent += want as u64;
            }
        })
    }

    /// The upload URL an answer's `Location` names (relative to `base`).
    async fn location(
        &self,
        resp: Result<reqwest::Response, Failure>,
        base: &str,
    ) -> Result<String, ImageError> {
        let p = &self.puller;
        let resp = match resp {
            Ok(r) => r,
            Err(Failure::Fatal(e)) => return Err(e),
            Err(Failure::Refused(r)) => return Err(p.refused(r, None).await),
        };
        let location = resp
            .headers()
            .get(reqwest::header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| p.registry_fault("an upload answer has no Location header".into()))?;
        reqwest::Url::parse(base)
            .and_then(|b| b.join(location))
            .map(|u| u.to_string())
            .map_err(|e| p.registry_fault(format!("upload location {location:?}: {e}")))
    }

    fn upload_refused(&self, r: super::Refused, label: &str) -> ImageError {
        let detail = String::from_utf8_lossy(&r.body[..r.body.len().min(200)]).into_owned();
        self.puller.registry_fault(format!(
            "refused the upload of {label} (HTTP {}): {detail:?}",
            r.status
        ))
    }

    /// Stores `bytes` (of `media_type`) as the manifest `reference`; the
    /// digest the registry answers with must be that of `bytes`.
    pub fn put_manifest(
        &self,
        reference: &str,
        media_type: &str,
        bytes: &[u8],
    ) -> Result<Digest, ImageError> {
        let p = &self.puller;
        let url = format!("{}/manifests/{reference}", p.base);
        let ours = Digest::of(bytes);
        self.runtime.block_on(async {
            let headers = [("Content-Type", media_type.to_string())];
            match p
                .send(reqwest::Method::PUT, &url, &[], &headers, Some(bytes))
                .await
            {
                Ok(resp) => {
                    let theirs = resp
                        .headers()
                        .get("docker-content-digest")
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| Digest::parse(v).ok());
                    match theirs {
                        Some(t) if t != ours => Err(p.mismatch("the stored manifest", &ours, &t)),
                        _ => Ok(ours),
                    }
                }
                Err(Failure::Fatal(e)) => Err(e),
                Err(Failure::Refused(r)) => Err(self.upload_refused(r, "the manifest")),
            }
        })
    }

    /// `len` bytes of blob `d` from `offset` (a `Range` request; a registry
    /// that ignores it is read up to the end of the range, the rest unread).
    pub fn read_range(&self, d: &Digest, offset: u64, len: u64) -> Result<Vec<u8>, ImageError> {
        let p = &self.puller;
        if len == 0 {
            return Ok(Vec::new());
        }
        if len > MAX_RANGE {
            return Err(p.registry_fault(format!(
                "a read of {len} bytes of {d} is over the {MAX_RANGE}-byte limit"
            )));
        }
        let end = offset
            .checked_add(len - 1)
            .ok_or_else(|| p.registry_fault(format!("range {offset}+{len} overflows")))?;
        let url = format!("{}/blobs/{d}", p.base);
        self.runtime.block_on(async {
            let headers = [("Range", format!("bytes={offset}-{end}"))];
            let mut resp = match p
                .send(reqwest::Method::GET, &url, &[], &headers, None)
                .await
            {
                Ok(r) => r,
                Err(Failure::Fatal(e)) => return Err(e),
                Err(Failure::Refused(r)) => return Err(p.refused(r, None).await),
            };
            // 206: the range itself; 200: the whole blob from its start.
            let mut skip = if resp.status().as_u16() == 206 {
                0
            } else {
                offset
            };
            let want = usize::try_from(len).expect("at most MAX_RANGE");
            let mut out = Vec::with_capacity(want);
            while out.len() < want {
                let next = tokio::time::timeout(p.opts.registry.read_timeout, resp.chunk()).await;
                let chunk = match next {
                    Err(_) => return Err(p.timed_out()),
                    Ok(Err(e)) => return Err(p.request_error(&e)),
                    Ok(Ok(None)) => break,
                    Ok(Ok(Some(c))) => c,
                };
                let mut c = &chunk[..];
                let dropped = usize::try_from(skip.min(c.len() as u64)).expect("bounded");
                c = &c[dropped..];
                skip -= dropped as u64;
                let room = want - out.len();
                out.extend_from_slice(&c[..c.len().min(room)]);
            }
            if out.len() != want {
                return Err(p.registry_fault(format!(
                    "blob {d} ended before bytes {offset}..={end} (got {} of {len})",
                    out.len()
                )));
            }
            Ok(out)
        })
    }

    /// Downloads blob `d` of `size` bytes into `out` (at `path`): an error
    /// unless it hashes to `d` and is exactly `size` bytes. With `resume`,
    /// `out` holds the blob's first [`Resume::offset`] bytes and only the
    /// rest is asked for (see [`Resume`]).
    pub fn download(
        &self,
        d: &Digest,
        size: u64,
        out: &mut std::fs::File,
        path: &Path,
        resume: Option<Resume>,
    ) -> Result<(), ImageError> {
        if self.puller.opts.registry.progress {
            let resuming = resume
                .as_ref()
                .map(|r| format!(", resuming at {} of {size} bytes", r.offset()))
                .unwrap_or_default();
            eprintln!(
                "pulling {} {d} ({}{resuming})",
                self.puller.r,
                human_size(size)
            );
        }
        self.runtime.block_on(
            self.puller
                .receive_blob(d, size, true, "payload", out, path, resume),
        )
    }
}

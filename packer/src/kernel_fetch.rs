//! `smolvm pack kernel fetch`: the guest kernel for an installed `smolvm`
//! (no repository, no `scripts/fetch-kernel.sh`), verified against pinned
//! hashes and put in the per-user cache, where `pack create` looks first
//! after `$SMOLVM_KERNEL`.
//!
//! ```text
//! GET MIRROR/pool/main/libk/libkrunfw/libkrunfw5_VERSION_amd64.deb   (plain HTTP is fine:
//!     sha256 of the .deb must equal PINNED.deb_sha256                  the hash is pinned)
//! .deb = ar archive: debian-binary, control.tar.*, data.tar.xz
//! data.tar.xz → ./usr/lib/x86_64-linux-gnu/libkrunfw.so.5.*, sha256 = PINNED.library_sha256
//! → CACHE/kernel/libkrunfw.so.5 (written beside, then renamed; mode 0644)
//! ```
//!
//! Both hashes are checked: the .deb's before it is parsed (so the ar and
//! xz readers only ever see the bytes we pinned), the library's before it
//! is installed. A newer libkrunfw needs a new pin in this file, after
//! checking it against Debian's signed Release → Packages chain (what
//! `scripts/fetch-kernel.sh` does with apt).

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use sha2::{Digest, Sha256};
use smolvm_runtime::exit::UsageError;

/// The libkrunfw release this smolvm packs with by default.
pub struct Pinned {
    pub version: &'static str,
    /// Under the mirror's root.
    pub pool_path: &'static str,
    pub deb_sha256: &'static str,
    pub deb_len: u64,
    /// The library inside `data.tar.xz`.
    pub member: &'static str,
    pub library_sha256: &'static str,
}

/// Debian's libkrunfw5 5.5.0+ds-1 (amd64): the kernel `scripts/fetch-kernel.sh`
/// fetched and the boot tests run (its `.source` file records the library
/// hash; the .deb hash was taken from the same download).
pub const PINNED: Pinned = Pinned {
    version: "5.5.0+ds-1",
    pool_path: "pool/main/libk/libkrunfw/libkrunfw5_5.5.0+ds-1_amd64.deb",
    deb_sha256: "20c37f213b618690422dd6c16e7c0a605e568c1e89447e2c7e9e6e44563f1fde",
    deb_len: 6_625_300,
    member: "./usr/lib/x86_64-linux-gnu/libkrunfw.so.5.5.0",
    library_sha256: "6942d3ed31c2ed75ab95158bbb289eaf0db9efd97838bb84c4c78a5d2be82b0e",
};

/// The default Debian mirror; `SMOLVM_DEBIAN_MIRROR` replaces it.
pub const DEFAULT_MIRROR: &str = "http://deb.debian.org/debian";

/// A libkrunfw is tens of MiB; the .deb is read whole into memory.
const MAX_DEB_LEN: u64 = 256 << 20;
const MAX_LIBRARY_LEN: u64 = 512 << 20;

/// What `pack kernel fetch` did.
#[derive(Debug)]
pub struct Fetched {
    pub path: PathBuf,
    /// False when a verified copy was already there.
    pub downloaded: bool,
}

/// Where the fetched kernel goes: `CACHE/kernel/libkrunfw.so.5`.
pub fn cache_path() -> Result<PathBuf> {
    let cache = smolvm_runtime::dirs::cache().ok_or_else(|| {
        UsageError(
            "no per-user cache directory: set SMOLVM_CACHE_DIR, XDG_CACHE_HOME or HOME".into(),
        )
    })?;
    Ok(cache.join("kernel/libkrunfw.so.5"))
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Fetches (or takes `deb`, a local copy of the pinned .deb) and installs
/// the kernel at `dest`, unless a copy with the pinned hash is there and
/// not `force`.
pub fn fetch(dest: &Path, deb: Option<&Path>, mirror: &str, force: bool) -> Result<Fetched> {
    if !force {
        if let Ok(existing) = read_capped(std::fs::File::open(dest), MAX_LIBRARY_LEN) {
            if sha256_hex(&existing) == PINNED.library_sha256 {
                return Ok(Fetched {
                    path: dest.to_owned(),
                    downloaded: false,
                });
            }
        }
    }
    let deb_bytes = match deb {
        Some(p) => read_capped(std::fs::File::open(p), MAX_DEB_LEN)
            .with_context(|| format!("reading {}", p.display()))?,
        None => download(&format!(
            "{}/{}",
            mirror.trim_end_matches('/'),
            PINNED.pool_path
        ))?,
    };
    let got = sha256_hex(&deb_bytes);
    if got != PINNED.deb_sha256 {
        bail!(KernelFetchError::Mismatch {
            what: format!("libkrunfw5 {} .deb", PINNED.version),
            expected: PINNED.deb_sha256,
            got,
        });
    }
    let library = library_from_deb(&deb_bytes)?;
    let got = sha256_hex(&library);
    if got != PINNED.library_sha256 {
        bail!(KernelFetchError::Mismatch {
            what: format!("{} in the .deb", PINNED.member),
            expected: PINNED.library_sha256,
            got,
        });
    }
    install(dest, &library)?;
    Ok(Fetched {
        path: dest.to_owned(),
        downloaded: true,
    })
}

/// A pinned hash did not match.
#[derive(thiserror::Error, Debug)]
pub enum KernelFetchError {
    #[error(
        "{what}: sha256 {got}, expected the pinned {expected}; the download was altered or is \
         another build, nothing was installed"
    )]
    Mismatch {
        what: String,
        expected: &'static str,
        got: String,
    },
}

fn read_capped(file: std::io::Result<std::fs::File>, cap: u64) -> std::io::Result<Vec<u8>> {
    let mut out = Vec::new();
    file?.take(cap + 1).read_to_end(&mut out)?;
    if out.len() as u64 > cap {
        return Err(std::io::Error::other(format!("larger than {cap} bytes")));
    }
    Ok(out)
}

fn download(url: &str) -> Result<Vec<u8>> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the HTTP client")?;
    let timeout = Duration::from_secs(
        std::env::var("SMOLVM_REGISTRY_TIMEOUT")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(60),
    );
    runtime
        .block_on(async {
            let client = reqwest::Client::builder()
                .connect_timeout(timeout)
                .read_timeout(timeout)
                .user_agent(concat!("smolvm/", env!("CARGO_PKG_VERSION")))
                .build()?;
            let mut resp = client.get(url).send().await?.error_for_status()?;
            let mut out = Vec::with_capacity(usize::try_from(PINNED.deb_len).unwrap_or(0));
            while let Some(chunk) = resp.chunk().await? {
                if out.len() as u64 + chunk.len() as u64 > MAX_DEB_LEN {
                    anyhow::bail!("more than {MAX_DEB_LEN} bytes");
                }
                out.extend_from_slice(&chunk);
            }
            Ok(out)
        })
        .with_context(|| {
            format!(
                "downloading {url} (a mirror without it: set SMOLVM_DEBIAN_MIRROR, or pass \
                 --deb FILE with the pinned .deb)"
            )
        })
}

/// The pinned member of the .deb's `data.tar.xz`.
fn library_from_deb(deb: &[u8]) -> Result<Vec<u8>> {
    let data = ar_member(deb, "data.tar.xz")?;
    let mut tar_bytes = Vec::new();
    lzma_rs::xz_decompress(&mut std::io::BufReader::new(data), &mut tar_bytes)
        .map_err(|e| anyhow::anyhow!("data.tar.xz: {e}"))?;
    let mut archive = tar::Archive::new(tar_bytes.as_slice());
    for entry in archive.entries()? {
        let mut entry = entry?;
        if entry.path_bytes().as_ref() == PINNED.member.as_bytes() {
            return Ok(read_capped_reader(&mut entry, MAX_LIBRARY_LEN)?);
        }
    }
    bail!("the .deb has no {}", PINNED.member)
}

fn read_capped_reader(r: &mut dyn Read, cap: u64) -> std::io::Result<Vec<u8>> {
    let mut out = Vec::new();
    r.take(cap + 1).read_to_end(&mut out)?;
    if out.len() as u64 > cap {
        return Err(std::io::Error::other(format!("larger than {cap} bytes")));
    }
    Ok(out)
}

/// A member of a `!<arch>` archive (the .deb container).
fn ar_member<'a>(ar: &'a [u8], name: &str) -> Result<&'a [u8]> {
    let mut at = 8usize;
    if !ar.starts_with(b"!<arch>\n") {
        bail!("not a .deb (no ar magic)");
    }
    while at + 60 <= ar.len() {
        let header = &ar[at..at + 60];
        let member = std::str::from_utf8(&header[..16]).unwrap_or("").trim_end();
        let member = member.trim_end_matches('/');
        let size: usize = std::str::from_utf8(&header[48..58])
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .ok_or_else(|| anyhow::anyhow!(".deb member header at {at}: bad size"))?;
        let start = at + 60;
        let end = start
            .checked_add(size)
            .filter(|&e| e <= ar.len())
            .ok_or_else(|| anyhow::anyhow!(".deb member {member:?} runs past the end"))?;
        if member == name {
            return Ok(&ar[start..end]);
        }
        at = end + (size % 2);
    }
    bail!("the .deb has no {name}")
}

/// Writes beside `dest` and renames: a crash leaves the old file or the
/// new one.
fn install(dest: &Path, library: &[u8]) -> Result<()> {
    let dir = dest.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut tmp = tempfile::Builder::new()
        .prefix(".libkrunfw-")
        .tempfile_in(dir)
        .with_context(|| format!("creating a temporary file in {}", dir.display()))?;
    tmp.write_all(library)?;
    tmp.as_file().sync_all()?;
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o644))?;
    }
    tmp.persist(dest)
        .with_context(|| format!("writing {}", dest.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ar_members_are_bounds_checked() {
        let mut ar = b"!<arch>\n".to_vec();
        let mut header = format!(
            "{:<16}{:<12}{:<6}{:<6}{:<8}{:<10}`\n",
            "a/", 0, 0, 0, 644, 3
        );
        ar.extend_from_slice(header.as_bytes());
        ar.extend_from_slice(b"xyz\n");
        assert_eq!(ar_member(&ar, "a").unwrap(), b"xyz");
        assert!(ar_member(&ar, "b").is_err());
        header = format!(
            "{:<16}{:<12}{:<6}{:<6}{:<8}{:<10}`\n",
            "c", 0, 0, 0, 644, 99999
        );
        ar.extend_from_slice(header.as_bytes());
        assert!(ar_member(&ar, "c").is_err());
        assert!(ar_member(b"garbage", "a").is_err());
    }

    #[test]
    fn a_deb_with_another_hash_is_refused_before_it_is_parsed() {
        let dir = tempfile::tempdir().unwrap();
        let deb = dir.path().join("x.deb");
        std::fs::write(&deb, b"!<arch>\nnot the pinned package").unwrap();
        let dest = dir.path().join("kernel/libkrunfw.so.5");
        let e = fetch(&dest, Some(&deb), DEFAULT_MIRROR, false).unwrap_err();
        assert!(format!("{e:#}").contains("expected the pinned"), "{e:#}");
        assert!(!dest.exists());
    }
}

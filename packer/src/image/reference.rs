//! What `--image REF` names, decided before anything is read.
//!
//! ```text
//!   -                            docker-save (or OCI) archive on stdin
//!   oci:PATH[:TAG|@DIGEST]       OCI image layout directory (or OCI tar)
//!   docker-archive:FILE[:REF]    `docker save` archive (REF picks one of its RepoTags)
//!   oci-archive:FILE[:TAG]       OCI image layout in a tar
//!   dir:DIR                      root filesystem directory
//!   docker://NAME                registry reference
//!   PATH[:TAG|@DIGEST]           an existing path: a directory with `oci-layout`
//!                                is an OCI layout, another directory a root
//!                                filesystem; a file is sniffed (docker save,
//!                                OCI tar, else a rootfs tarball)
//!   NAME[:TAG][@DIGEST]          anything else: a registry reference,
//!                                `alpine` meaning docker.io/library/alpine:latest
//! ```

use std::path::{Path, PathBuf};

use super::digest::Digest;
use super::ImageError;

/// Where an image comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// An image archive read from standard input.
    Stdin,
    /// A root filesystem directory (no image config).
    RootfsDir(PathBuf),
    /// A root filesystem tarball (no image config).
    RootfsArchive(PathBuf),
    /// A local file of unknown kind: sniffed when read.
    LocalFile {
        file: PathBuf,
        selector: Option<Selector>,
    },
    /// A tar that must be an image archive (docker save or OCI).
    ImageArchive {
        file: PathBuf,
        selector: Option<Selector>,
    },
    /// An OCI image layout directory.
    OciLayout {
        dir: PathBuf,
        selector: Option<Selector>,
    },
    Registry(RegistryRef),
}

/// Which image of a layout or archive: `:TAG` or `@DIGEST` after the path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selector {
    Tag(String),
    Digest(Digest),
}

impl std::fmt::Display for Selector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Selector::Tag(t) => write!(f, ":{t}"),
            Selector::Digest(d) => write!(f, "@{d}"),
        }
    }
}

/// A normalised registry reference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistryRef {
    /// `docker.io`, `ghcr.io`, `localhost:5000`, ...
    pub registry: String,
    /// `library/alpine`, `owner/repo`, ...
    pub repository: String,
    /// `latest` when neither a tag nor a digest was given.
    pub tag: Option<String>,
    /// When set, the manifest is fetched by digest and the tag is ignored.
    pub digest: Option<Digest>,
}

impl std::fmt::Display for RegistryRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.registry, self.repository)?;
        if let Some(t) = &self.tag {
            write!(f, ":{t}")?;
        }
        if let Some(d) = &self.digest {
            write!(f, "@{d}")?;
        }
        Ok(())
    }
}

impl RegistryRef {
    /// The host part of the registry, without port or brackets.
    pub fn host(&self) -> &str {
        host_of(&self.registry)
    }

    /// True for registries on this machine, which may speak plain HTTP.
    pub fn is_local(&self) -> bool {
        let host = self.host();
        host == "localhost"
            || host.ends_with(".localhost")
            || host
                .parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.is_loopback())
    }
}

fn host_of(registry: &str) -> &str {
    if let Some(rest) = registry.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    match registry.rsplit_once(':') {
        Some((h, port)) if port.bytes().all(|b| b.is_ascii_digit()) => h,
        _ => registry,
    }
}

const DOCKER_HUB: &str = "docker.io";

/// Parses a `--image` argument. `base` is the directory relative local
/// paths resolve against (a Smolfile's directory); `None` means the
/// current directory.
pub fn parse(spec: &str, base: Option<&Path>) -> Result<Source, ImageError> {
    let err = |fault: String| ImageError::Reference {
        reference: spec.to_string(),
        fault,
    };
    if spec.is_empty() {
        return Err(err("empty image reference".into()));
    }
    if spec == "-" {
        return Ok(Source::Stdin);
    }
    let resolve = |p: &str| -> PathBuf {
        let p = PathBuf::from(p);
        match base {
            Some(b) if p.is_relative() => b.join(p),
            _ => p,
        }
    };
    let local = |rest: &str, what: &str| -> Result<(PathBuf, Option<Selector>), ImageError> {
        match split_local(rest, &resolve) {
            Some((path, sel)) => Ok((path, sel.map(parse_selector).transpose().map_err(err)?)),
            None => Err(err(format!(
                "{what} {} does not exist",
                resolve(rest).display()
            ))),
        }
    };
    if let Some(rest) = spec.strip_prefix("docker://") {
        return parse_registry(rest).map(Source::Registry).map_err(err);
    }
    if let Some(rest) = spec.strip_prefix("oci:") {
        let (path, selector) = local(rest, "OCI layout")?;
        return Ok(if path.is_dir() {
            Source::OciLayout {
                dir: path,
                selector,
            }
        } else {
            Source::ImageArchive {
                file: path,
                selector,
            }
        });
    }
    for prefix in ["docker-archive:", "oci-archive:"] {
        if let Some(rest) = spec.strip_prefix(prefix) {
            let (path, selector) = local(rest, "archive")?;
            if path.is_dir() {
                return Err(err(format!(
                    "{} is a directory, not an archive; for an OCI layout directory use oci:{rest}",
                    path.display()
                )));
            }
            return Ok(Source::ImageArchive {
                file: path,
                selector,
            });
        }
    }
    if let Some(rest) = spec.strip_prefix("dir:") {
        let path = resolve(rest);
        return if path.is_dir() {
            Ok(Source::RootfsDir(path))
        } else if path.exists() {
            Err(err(format!(
                "{} is not a directory; pass an archive without the dir: prefix",
                path.display()
            )))
        } else {
            Err(err(format!("directory {} does not exist", path.display())))
        };
    }
    if let Some((path, selector)) = split_local(spec, &resolve) {
        let selector = selector.map(parse_selector).transpose().map_err(err)?;
        if path.is_dir() {
            if path.join("oci-layout").is_file() {
                return Ok(Source::OciLayout {
                    dir: path,
                    selector,
                });
            }
            if let Some(sel) = selector {
                return Err(err(format!(
                    "{} is a root filesystem directory (it has no oci-layout file), so {sel} selects nothing",
                    path.display()
                )));
            }
            return Ok(Source::RootfsDir(path));
        }
        return Ok(Source::LocalFile {
            file: path,
            selector,
        });
    }
    if looks_like_path(spec) {
        return Err(err(format!(
            "no such file or directory: {}",
            resolve(spec).display()
        )));
    }
    parse_registry(spec).map(Source::Registry).map_err(|fault| {
        err(format!(
            "{fault} (it is not an existing path either, so it was read as a registry reference)"
        ))
    })
}

/// Finds the longest prefix of `spec` that exists as a path, cut at a `:`
/// or `@`; returns it and the selector text after the cut (with its leading
/// separator).
fn split_local<'a>(
    spec: &'a str,
    resolve: &dyn Fn(&str) -> PathBuf,
) -> Option<(PathBuf, Option<&'a str>)> {
    let whole = resolve(spec);
    if std::fs::symlink_metadata(&whole).is_ok() {
        return Some((whole, None));
    }
    let cuts: Vec<usize> = spec
        .char_indices()
        .filter(|&(i, c)| (c == ':' || c == '@') && i > 0)
        .map(|(i, _)| i)
        .collect();
    for &i in cuts.iter().rev() {
        let path = resolve(&spec[..i]);
        if std::fs::symlink_metadata(&path).is_ok() {
            return Some((path, Some(&spec[i..])));
        }
    }
    None
}

/// `:TAG` or `@sha256:...`.
fn parse_selector(s: &str) -> Result<Selector, String> {
    if let Some(d) = s.strip_prefix('@') {
        return Digest::parse(d).map(Selector::Digest);
    }
    let tag = s.strip_prefix(':').unwrap_or(s);
    if tag.is_empty() {
        return Err("empty tag after `:`".into());
    }
    Ok(Selector::Tag(tag.to_string()))
}

fn looks_like_path(s: &str) -> bool {
    s.starts_with('/')
        || s.starts_with("./")
        || s.starts_with("../")
        || s.starts_with('~')
        || s == "."
        || s == ".."
        || [".tar", ".tgz", ".tar.gz", ".tar.zst", ".tzst"]
            .iter()
            .any(|ext| s.ends_with(ext))
}

/// Parses and normalises `[REGISTRY/]REPOSITORY[:TAG][@DIGEST]` the way
/// docker does: a first component with `.` or `:` (or `localhost`) is a
/// registry, else the image is on docker.io, where one-component names live
/// under `library/`.
pub fn parse_registry(s: &str) -> Result<RegistryRef, String> {
    let (name_tag, digest) = match s.split_once('@') {
        Some((n, d)) => (n, Some(Digest::parse(d)?)),
        None => (s, None),
    };
    let (name, tag) = match name_tag.rfind(':') {
        Some(i) if !name_tag[i + 1..].contains('/') => {
            (&name_tag[..i], Some(name_tag[i + 1..].to_string()))
        }
        _ => (name_tag, None),
    };
    let (registry, repository) = match name.split_once('/') {
        Some((first, rest))
            if first.contains('.')
                || first.contains(':')
                || first == "localhost"
                || first.starts_with('[') =>
        {
            (first.to_ascii_lowercase(), rest.to_string())
        }
        _ => (DOCKER_HUB.to_string(), name.to_string()),
    };
    let registry = match registry.as_str() {
        "index.docker.io" | "registry-1.docker.io" => DOCKER_HUB.to_string(),
        _ => registry,
    };
    if !registry
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b".-:[]".contains(&b))
    {
        return Err(format!("registry {registry:?} is not a host[:port]"));
    }
    let repository = if registry == DOCKER_HUB && !repository.contains('/') {
        format!("library/{repository}")
    } else {
        repository
    };
    if repository.is_empty() {
        return Err("no repository name".into());
    }
    for component in repository.split('/') {
        if component.bytes().any(|b| b.is_ascii_uppercase()) {
            return Err(format!(
                "repository {repository:?} has upper-case letters; repository names are lower case"
            ));
        }
        if !valid_path_component(component) {
            return Err(format!(
                "repository {repository:?}: {component:?} is not a valid name component (lower-case letters, digits, and . _ - between them)"
            ));
        }
    }
    if let Some(t) = &tag {
        let ok = !t.is_empty()
            && t.len() <= 128
            && t.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b))
            && !t.starts_with(['.', '-']);
        if !ok {
            return Err(format!(
                "tag {t:?} is not valid (1-128 of A-Z a-z 0-9 _ . -, not starting with . or -)"
            ));
        }
    }
    let tag = if tag.is_none() && digest.is_none() {
        Some("latest".to_string())
    } else {
        tag
    };
    Ok(RegistryRef {
        registry,
        repository,
        tag,
        digest,
    })
}

/// `[a-z0-9]+(?:(?:[._]|__|[-]*)[a-z0-9]+)*`
fn valid_path_component(c: &str) -> bool {
    let b = c.as_bytes();
    if b.is_empty() || !b[0].is_ascii_alphanumeric() || !b[b.len() - 1].is_ascii_alphanumeric() {
        return false;
    }
    let mut i = 0;
    while i < b.len() {
        let ch = b[i];
        if ch.is_ascii_lowercase() || ch.is_ascii_digit() {
            i += 1;
            continue;
        }
        // A separator run: `.`, `_`, `__`, or any number of `-`.
        let start = i;
        while i < b.len() && !(b[i].is_ascii_lowercase() || b[i].is_ascii_digit()) {
            i += 1;
        }
        let sep = &c[start..i];
        if !(sep == "." || sep == "_" || sep == "__" || sep.bytes().all(|s| s == b'-')) {
            return false;
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reg(s: &str) -> String {
        parse_registry(s).unwrap().to_string()
    }

    #[test]
    fn docker_hub_short_names_normalise() {
        assert_eq!(reg("alpine"), "docker.io/library/alpine:latest");
        assert_eq!(reg("alpine:3.20"), "docker.io/library/alpine:3.20");
        assert_eq!(reg("user/app"), "docker.io/user/app:latest");
        assert_eq!(
            reg("index.docker.io/library/alpine:3.20"),
            "docker.io/library/alpine:3.20"
        );
        assert_eq!(
            reg("docker.io/alpine:3.20"),
            "docker.io/library/alpine:3.20"
        );
    }

    #[test]
    fn registries_ports_and_digests() {
        let d = format!("sha256:{}", "ab".repeat(32));
        let r = parse_registry(&format!("localhost:5000/x@{d}")).unwrap();
        assert_eq!(r.registry, "localhost:5000");
        assert_eq!(r.repository, "x");
        assert_eq!(r.tag, None);
        assert_eq!(r.digest.as_ref().unwrap().to_string(), d);
        assert!(r.is_local());
        let r = parse_registry("localhost:5000/team/app:v1").unwrap();
        assert_eq!(
            (r.repository.as_str(), r.tag.as_deref()),
            ("team/app", Some("v1"))
        );
        let r = parse_registry("ghcr.io/owner/repo/sub:v1.2").unwrap();
        assert_eq!(r.registry, "ghcr.io");
        assert_eq!(r.repository, "owner/repo/sub");
        assert!(!r.is_local());
        assert!(parse_registry("127.0.0.1:5000/x").unwrap().is_local());
        assert!(parse_registry("[::1]:5000/x").unwrap().is_local());
        assert_eq!(parse_registry("[::1]:5000/x").unwrap().host(), "::1");
        assert!(!parse_registry("example.com:5000/x").unwrap().is_local());
        let r = parse_registry(&format!("alpine:3.20@{d}")).unwrap();
        assert_eq!(r.tag.as_deref(), Some("3.20"));
        assert!(r.digest.is_some());
    }

    #[test]
    fn bad_references_say_why() {
        let e = parse_registry("Alpine").unwrap_err();
        assert!(e.contains("lower case"), "{e}");
        assert!(parse_registry("alpine:").unwrap_err().contains("tag"));
        assert!(parse_registry("alpine@sha256:abc")
            .unwrap_err()
            .contains("64"));
        assert!(parse_registry("a//b").is_err());
        assert!(parse_registry("a--b").is_ok());
        assert!(parse_registry("a..b").is_err());
    }

    #[test]
    fn prefixes_and_stdin() {
        assert_eq!(parse("-", None).unwrap(), Source::Stdin);
        match parse("docker://alpine:3.20", None).unwrap() {
            Source::Registry(r) => assert_eq!(r.to_string(), "docker.io/library/alpine:3.20"),
            other => panic!("{other:?}"),
        }
        match parse("localhost:5000/smoke:v1", None).unwrap() {
            Source::Registry(r) => assert!(r.is_local()),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn local_paths_with_selectors() {
        let dir = tempfile::tempdir().unwrap();
        let layout = dir.path().join("layout");
        std::fs::create_dir(&layout).unwrap();
        std::fs::write(layout.join("oci-layout"), "{}").unwrap();
        let root = dir.path().join("root");
        std::fs::create_dir(&root).unwrap();
        let tarball = dir.path().join("img.tar");
        std::fs::write(&tarball, b"").unwrap();
        let l = layout.display().to_string();
        assert_eq!(
            parse(&l, None).unwrap(),
            Source::OciLayout {
                dir: layout.clone(),
                selector: None
            }
        );
        assert_eq!(
            parse(&format!("{l}:v1"), None).unwrap(),
            Source::OciLayout {
                dir: layout.clone(),
                selector: Some(Selector::Tag("v1".into()))
            }
        );
        let d = format!("sha256:{}", "cd".repeat(32));
        assert_eq!(
            parse(&format!("oci:{l}@{d}"), None).unwrap(),
            Source::OciLayout {
                dir: layout.clone(),
                selector: Some(Selector::Digest(Digest::parse(&d).unwrap()))
            }
        );
        assert_eq!(
            parse(&root.display().to_string(), None).unwrap(),
            Source::RootfsDir(root.clone())
        );
        assert_eq!(
            parse(&format!("dir:{}", root.display()), None).unwrap(),
            Source::RootfsDir(root.clone())
        );
        assert_eq!(
            parse(
                &format!("docker-archive:{}:alpine:3.20", tarball.display()),
                None
            )
            .unwrap(),
            Source::ImageArchive {
                file: tarball.clone(),
                selector: Some(Selector::Tag("alpine:3.20".into()))
            }
        );
        assert_eq!(
            parse("img.tar", Some(dir.path())).unwrap(),
            Source::LocalFile {
                file: tarball.clone(),
                selector: None
            }
        );
        let e = parse(&format!("{}:v1", root.display()), None)
            .unwrap_err()
            .to_string();
        assert!(e.contains("oci-layout"), "{e}");
        let e = parse("./missing.tar", None).unwrap_err().to_string();
        assert!(e.contains("no such file"), "{e}");
        let e = parse(&format!("oci:{}/nope", dir.path().display()), None)
            .unwrap_err()
            .to_string();
        assert!(e.contains("does not exist"), "{e}");
    }
}

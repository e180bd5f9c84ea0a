//! The OCI image JSON documents we read (index, manifest, config) and the
//! choice of one platform from a multi-platform index. Docker's v2 schema 2
//! manifest and manifest list have the same shape and are accepted too.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::digest::Digest;
use super::ImageError;

pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const DOCKER_SCHEMA1: &str = "application/vnd.docker.distribution.manifest.v1+json";
pub const DOCKER_SCHEMA1_SIGNED: &str = "application/vnd.docker.distribution.manifest.v1+prettyjws";
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
/// The annotation an OCI layout uses to tag a manifest.
pub const REF_NAME: &str = "org.opencontainers.image.ref.name";

/// Manifests, indexes and configs are small JSON documents; anything
/// bigger is not one, and we refuse before reading it into memory.
pub const MAX_JSON_BLOB: u64 = 8 << 20;

#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    #[serde(default)]
    pub media_type: String,
    pub digest: String,
    pub size: i64,
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
    pub platform: Option<PlatformSpec>,
}

impl Descriptor {
    pub fn digest(&self, what: &str) -> Result<Digest, ImageError> {
        Digest::parse(&self.digest).map_err(|fault| ImageError::Invalid {
            what: what.to_string(),
            fault,
        })
    }

    /// The declared size; `None` when the descriptor was made up locally
    /// (a digest given on the command line) and no size is known.
    pub fn known_size(&self) -> Option<u64> {
        u64::try_from(self.size).ok()
    }

    pub fn is_index(&self) -> bool {
        self.media_type == OCI_INDEX || self.media_type == DOCKER_LIST
    }

    /// Attestations and other non-runnable entries of an index.
    fn is_runnable(&self) -> bool {
        let p = self.platform.as_ref();
        !(self
            .annotations
            .get("vnd.docker.reference.type")
            .is_some_and(|t| t == "attestation-manifest")
            || p.is_some_and(|p| p.os == "unknown" || p.architecture == "unknown"))
    }
}

#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct PlatformSpec {
    #[serde(default)]
    pub architecture: String,
    #[serde(default)]
    pub os: String,
    #[serde(default)]
    pub variant: Option<String>,
}

impl std::fmt::Display for PlatformSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(v) = self.variant.as_deref().filter(|v| !v.is_empty()) {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}

/// The platform an artifact boots, in OCI terms.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Platform {
    pub os: String,
    pub architecture: String,
    pub variant: Option<String>,
}

impl Platform {
    pub fn linux(architecture: &str) -> Platform {
        Platform {
            os: "linux".into(),
            architecture: architecture.into(),
            variant: None,
        }
    }

    /// From an artifact target (`linux`, `x86_64`): Go's names for arches.
    pub fn for_target(os: &str, arch: &str) -> Platform {
        let (architecture, variant) = match arch {
            "x86_64" => ("amd64", None),
            "aarch64" => ("arm64", Some("v8")),
            "riscv64" => ("riscv64", None),
            "s390x" => ("s390x", None),
            "powerpc64le" | "ppc64le" => ("ppc64le", None),
            other => (other, None),
        };
        Platform {
            os: os.into(),
            architecture: architecture.into(),
            variant: variant.map(str::to_string),
        }
    }

    /// True when an image built for `p` runs here. A missing variant on
    /// either side matches (arm64 images rarely say v8).
    pub fn matches(&self, p: &PlatformSpec) -> bool {
        p.os == self.os
            && p.architecture == self.architecture
            && match (
                &self.variant,
                p.variant.as_deref().filter(|v| !v.is_empty()),
            ) {
                (Some(want), Some(have)) => want == have,
                _ => true,
            }
    }
}

impl std::fmt::Display for Platform {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(v) = &self.variant {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Index {
    #[serde(default)]
    pub manifests: Vec<Descriptor>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ImageManifest {
    #[serde(default)]
    pub media_type: Option<String>,
    pub config: Descriptor,
    #[serde(default)]
    pub layers: Vec<Descriptor>,
}

/// The image config file; only what packing uses.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct ConfigFile {
    #[serde(default)]
    pub architecture: String,
    #[serde(default)]
    pub os: String,
    #[serde(default)]
    pub variant: Option<String>,
    #[serde(default)]
    pub config: Option<RuntimeConfig>,
    #[serde(default)]
    pub rootfs: Option<RootFs>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
pub struct RuntimeConfig {
    #[serde(rename = "Entrypoint", default)]
    pub entrypoint: Option<Vec<String>>,
    #[serde(rename = "Cmd", default)]
    pub cmd: Option<Vec<String>>,
    #[serde(rename = "Env", default)]
    pub env: Option<Vec<String>>,
    #[serde(rename = "WorkingDir", default)]
    pub working_dir: Option<String>,
    #[serde(rename = "User", default)]
    pub user: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct RootFs {
    #[serde(default)]
    pub diff_ids: Vec<String>,
}

/// A manifest or an index, told apart by media type or by shape.
#[derive(Debug, Clone)]
pub enum ManifestDoc {
    Index(Index),
    Image(ImageManifest),
}

/// Parses manifest bytes. `what` names the document in errors.
pub fn parse_manifest(bytes: &[u8], what: &str) -> Result<ManifestDoc, ImageError> {
    let invalid = |fault: String| ImageError::Invalid {
        what: what.to_string(),
        fault,
    };
    let value: serde_json::Value =
        serde_json::from_slice(bytes).map_err(|e| invalid(format!("manifest is not JSON: {e}")))?;
    let media_type = value
        .get("mediaType")
        .and_then(|m| m.as_str())
        .unwrap_or_default()
        .to_string();
    if media_type == DOCKER_SCHEMA1
        || media_type == DOCKER_SCHEMA1_SIGNED
        || value.get("schemaVersion").and_then(|v| v.as_u64()) == Some(1)
    {
        return Err(invalid(
            "docker schema 1 manifests are not supported; re-push the image with a current docker or skopeo".into(),
        ));
    }
    let is_index = media_type == OCI_INDEX
        || media_type == DOCKER_LIST
        || (media_type.is_empty() && value.get("manifests").is_some());
    if is_index {
        return serde_json::from_value(value)
            .map(ManifestDoc::Index)
            .map_err(|e| invalid(format!("bad image index: {e}")));
    }
    if !media_type.is_empty() && media_type != OCI_MANIFEST && media_type != DOCKER_MANIFEST {
        return Err(ImageError::NotAnImage {
            what: what.to_string(),
            fault: format!("its manifest has media type {media_type:?}"),
        });
    }
    let m: ImageManifest =
        serde_json::from_value(value).map_err(|e| invalid(format!("bad image manifest: {e}")))?;
    let config_type = m.config.media_type.as_str();
    if config_type != OCI_CONFIG && config_type != DOCKER_CONFIG {
        return Err(ImageError::NotAnImage {
            what: what.to_string(),
            fault: format!(
                "its config has media type {config_type:?} (an OCI artifact, not a runnable image)"
            ),
        });
    }
    Ok(ManifestDoc::Image(m))
}

/// Parses an image config and checks it was built for `platform`.
pub fn parse_config(
    bytes: &[u8],
    what: &str,
    platform: &Platform,
) -> Result<ConfigFile, ImageError> {
    let config: ConfigFile = serde_json::from_slice(bytes).map_err(|e| ImageError::Invalid {
        what: what.to_string(),
        fault: format!("image config is not valid JSON: {e}"),
    })?;
    let have = PlatformSpec {
        os: config.os.clone(),
        architecture: config.architecture.clone(),
        variant: config.variant.clone(),
    };
    // Some builders leave these blank; only a stated mismatch is an error.
    if !config.os.is_empty() && !config.architecture.is_empty() && !platform.matches(&have) {
        return Err(ImageError::Platform {
            what: what.to_string(),
            wanted: platform.to_string(),
            available: vec![have.to_string()],
        });
    }
    Ok(config)
}

/// Picks the entry of an index that runs on `platform`; the error lists
/// the platforms there are.
pub fn select_platform<'a>(
    entries: &'a [Descriptor],
    platform: &Platform,
    what: &str,
) -> Result<&'a Descriptor, ImageError> {
    let runnable: Vec<&Descriptor> = entries.iter().filter(|d| d.is_runnable()).collect();
    let exact = runnable.iter().find(|d| {
        d.platform.as_ref().is_some_and(|p| {
            platform.matches(p)
                && p.variant.as_deref().filter(|v| !v.is_empty()) == platform.variant.as_deref()
        })
    });
    let loose = runnable
        .iter()
        .find(|d| d.platform.as_ref().is_some_and(|p| platform.matches(p)));
    if let Some(d) = exact.or(loose) {
        return Ok(d);
    }
    // An index entry without a platform is an image of unstated platform:
    // take it if it is the only candidate; its config is checked later.
    if runnable.len() == 1 && runnable[0].platform.is_none() {
        return Ok(runnable[0]);
    }
    let mut available: Vec<String> = runnable
        .iter()
        .map(|d| {
            d.platform
                .as_ref()
                .map_or_else(|| "unstated".to_string(), ToString::to_string)
        })
        .collect();
    available.dedup();
    Err(ImageError::Platform {
        what: what.to_string(),
        wanted: platform.to_string(),
        available,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(os: &str, arch: &str, variant: Option<&str>) -> Descriptor {
        Descriptor {
            media_type: OCI_MANIFEST.into(),
            digest: format!(
                "sha256:{}",
                hex::encode([u8::try_from(arch.len()).unwrap(); 32])
            ),
            size: 1,
            annotations: BTreeMap::new(),
            platform: Some(PlatformSpec {
                os: os.into(),
                architecture: arch.into(),
                variant: variant.map(str::to_string),
            }),
        }
    }

    #[test]
    fn picks_amd64_and_lists_what_exists() {
        let entries = vec![
            entry("linux", "arm64", Some("v8")),
            entry("linux", "amd64", None),
            entry("unknown", "unknown", None),
        ];
        let want = Platform::for_target("linux", "x86_64");
        assert_eq!(
            select_platform(&entries, &want, "img")
                .unwrap()
                .platform
                .as_ref()
                .unwrap()
                .architecture,
            "amd64"
        );
        let err = select_platform(&entries[..1], &want, "img")
            .unwrap_err()
            .to_string();
        assert!(err.contains("linux/amd64"), "{err}");
        assert!(err.contains("linux/arm64/v8"), "{err}");
        let arm = Platform::for_target("linux", "aarch64");
        assert!(select_platform(&entries, &arm, "img").is_ok());
    }

    #[test]
    fn artifacts_and_schema1_are_refused() {
        let schema1 = br#"{"schemaVersion":1,"name":"x"}"#;
        let e = parse_manifest(schema1, "m").unwrap_err().to_string();
        assert!(e.contains("schema 1"), "{e}");
        let artifact = br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json",
            "config":{"mediaType":"application/vnd.cncf.helm.config.v1+json","digest":"sha256:00","size":1},"layers":[]}"#;
        let e = parse_manifest(artifact, "m").unwrap_err().to_string();
        assert!(e.contains("not a container image"), "{e}");
    }

    #[test]
    fn config_for_another_platform_is_refused() {
        let cfg = br#"{"os":"linux","architecture":"arm64","config":{}}"#;
        let e = parse_config(cfg, "img", &Platform::linux("amd64"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("linux/arm64"), "{e}");
        assert!(e.contains("linux/amd64"), "{e}");
    }
}

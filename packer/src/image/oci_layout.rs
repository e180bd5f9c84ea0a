//! OCI image layouts (`oci-layout`, `index.json`, `blobs/sha256/...`), in a
//! directory or a tar, and the image assembly shared with the registry
//! path (whose blob cache has the same shape).
//!
//! A tag is the `org.opencontainers.image.ref.name` annotation of an
//! `index.json` entry; a digest selects an entry, or any manifest blob.

use std::collections::BTreeSet;

use super::config::ImageRuntimeConfig;
use super::digest::Digest;
use super::flatten::{flatten_layers, LayerBlob};
use super::spec::{
    parse_config, parse_manifest, select_platform, Descriptor, ImageManifest, Index, ManifestDoc,
    Platform, REF_NAME,
};
use super::store::{read_json_blob, read_named_blob, Store};
use super::{ImageError, LoadedImage, Selector};

/// Indexes nest (an index.json entry that is itself a multi-platform
/// index); real ones go two deep.
const MAX_INDEX_DEPTH: usize = 4;

/// Reads the image `selector` picks from the layout in `store`.
pub fn load(
    store: &dyn Store,
    what: &str,
    selector: Option<&Selector>,
    platform: &Platform,
) -> Result<LoadedImage, ImageError> {
    let layout = match store.open("oci-layout")? {
        Some(_) => read_named_blob(store, "oci-layout", None, None, what)?,
        None => {
            return Err(ImageError::NotAnImage {
                what: what.to_string(),
                fault: "it has no oci-layout file (an OCI image layout has oci-layout, index.json and blobs/)".into(),
            })
        }
    };
    let version = serde_json::from_slice::<serde_json::Value>(&layout)
        .ok()
        .and_then(|v| v.get("imageLayoutVersion")?.as_str().map(str::to_string))
        .unwrap_or_default();
    if !version.starts_with("1.") {
        return Err(ImageError::Invalid {
            what: what.to_string(),
            fault: format!("oci-layout has imageLayoutVersion {version:?}; only 1.x is understood"),
        });
    }
    let index_bytes = read_named_blob(store, "index.json", None, None, what)?;
    let index: Index = serde_json::from_slice(&index_bytes).map_err(|e| ImageError::Invalid {
        what: format!("{what}: index.json"),
        fault: e.to_string(),
    })?;
    let desc = select(&index, selector, what, platform, store)?;
    let (digest, manifest) = resolve_manifest(store, &desc, platform, what)?;
    image_from_manifest(store, what, digest, &manifest, platform)
}

/// The tag of an index entry, if it has one.
fn tag_of(d: &Descriptor) -> Option<&str> {
    d.annotations.get(REF_NAME).map(String::as_str)
}

/// `docker.io/library/alpine:3.20` style names tools put beside the tag.
fn full_name_of(d: &Descriptor) -> Option<&str> {
    d.annotations
        .get("io.containerd.image.name")
        .map(String::as_str)
}

fn select(
    index: &Index,
    selector: Option<&Selector>,
    what: &str,
    platform: &Platform,
    store: &dyn Store,
) -> Result<Descriptor, ImageError> {
    let tags: Vec<String> = index
        .manifests
        .iter()
        .filter_map(tag_of)
        .map(str::to_string)
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let fix = format!("{what}:TAG or {what}@sha256:DIGEST");
    match selector {
        None => match index.manifests.as_slice() {
            [] => Err(ImageError::NotAnImage {
                what: what.to_string(),
                fault: "its index.json lists no manifests".into(),
            }),
            [one] => Ok(one.clone()),
            many if tags.len() <= 1 && many.iter().all(|d| d.platform.is_some()) => {
                // One image in several platforms, listed flat.
                select_platform(many, platform, what).cloned()
            }
            many => Err(ImageError::Ambiguous {
                what: what.to_string(),
                count: many.len(),
                available: tags,
                fix,
            }),
        },
        Some(Selector::Tag(t)) => {
            let hits: Vec<Descriptor> = index
                .manifests
                .iter()
                .filter(|d| {
                    tag_of(d) == Some(t.as_str())
                        || full_name_of(d).is_some_and(|n| {
                            n == t || n.rsplit_once(':').is_some_and(|(_, tag)| tag == t)
                        })
                })
                .cloned()
                .collect();
            match hits.as_slice() {
                [] => Err(ImageError::TagNotFound {
                    what: what.to_string(),
                    tag: t.clone(),
                    available: tags,
                    fix,
                }),
                [one] => Ok(one.clone()),
                many => select_platform(many, platform, what).cloned(),
            }
        }
        Some(Selector::Digest(d)) => {
            let wanted = d.to_string();
            if let Some(hit) = index.manifests.iter().find(|m| m.digest == wanted) {
                return Ok(hit.clone());
            }
            if store.open(&d.blob_path())?.is_some() {
                // Not listed, but present (a platform manifest of a listed index).
                return Ok(Descriptor {
                    media_type: String::new(),
                    digest: wanted,
                    size: -1,
                    annotations: Default::default(),
                    platform: None,
                });
            }
            Err(ImageError::Invalid {
                what: what.to_string(),
                fault: format!(
                    "no manifest with digest {d}; it lists {}",
                    index
                        .manifests
                        .iter()
                        .map(|m| m.digest.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            })
        }
    }
}

/// Follows indexes down to the image manifest for `platform`.
pub(crate) fn resolve_manifest(
    store: &dyn Store,
    desc: &Descriptor,
    platform: &Platform,
    what: &str,
) -> Result<(Digest, ImageManifest), ImageError> {
    let mut desc = desc.clone();
    for _ in 0..MAX_INDEX_DEPTH {
        let d = desc.digest(what)?;
        let doc_what = format!("{what}: manifest {d}");
        let bytes = read_json_blob(store, &d, desc.known_size(), &doc_what)?;
        match parse_manifest(&bytes, what)? {
            ManifestDoc::Image(m) => return Ok((d, m)),
            ManifestDoc::Index(i) => desc = select_platform(&i.manifests, platform, what)?.clone(),
        }
    }
    Err(ImageError::Invalid {
        what: what.to_string(),
        fault: format!("image indexes nest more than {MAX_INDEX_DEPTH} deep"),
    })
}

fn is_layer_type(media_type: &str) -> bool {
    media_type.is_empty()
        || media_type.starts_with("application/vnd.oci.image.layer.")
        || media_type.starts_with("application/vnd.docker.image.rootfs.diff.tar")
}

/// Reads the config, verifies and flattens the layers of `manifest`.
pub(crate) fn image_from_manifest(
    store: &dyn Store,
    what: &str,
    digest: Digest,
    manifest: &ImageManifest,
    platform: &Platform,
) -> Result<LoadedImage, ImageError> {
    let config_digest = manifest.config.digest(what)?;
    let config_bytes = read_json_blob(
        store,
        &config_digest,
        manifest.config.known_size(),
        &format!("{what}: config {config_digest}"),
    )?;
    let config = parse_config(&config_bytes, what, platform)?;
    let diff_ids = diff_ids(&config, manifest.layers.len(), what)?;
    let mut layers = Vec::with_capacity(manifest.layers.len());
    for (i, l) in manifest.layers.iter().enumerate() {
        if !is_layer_type(&l.media_type) {
            return Err(ImageError::NotAnImage {
                what: what.to_string(),
                fault: format!(
                    "layer {} has media type {:?}, which is not a filesystem layer",
                    i + 1,
                    l.media_type
                ),
            });
        }
        let d = l.digest(what)?;
        layers.push(LayerBlob {
            name: d.blob_path(),
            digest: Some(d),
            size: l.known_size(),
            diff_id: diff_ids.get(i).cloned(),
        });
    }
    let tree = flatten_layers(store, &layers, what)?;
    Ok(LoadedImage {
        tree,
        config: Some(ImageRuntimeConfig::from_spec(
            config.config.unwrap_or_default(),
        )),
        digest: Some(digest),
    })
}

/// The config's `rootfs.diff_ids`, one per layer.
pub(crate) fn diff_ids(
    config: &super::spec::ConfigFile,
    layers: usize,
    what: &str,
) -> Result<Vec<Digest>, ImageError> {
    let ids = config
        .rootfs
        .as_ref()
        .map(|r| r.diff_ids.as_slice())
        .unwrap_or_default();
    if ids.len() != layers {
        return Err(ImageError::Invalid {
            what: what.to_string(),
            fault: format!(
                "the config lists {} layer diff_ids but the manifest has {layers} layers",
                ids.len()
            ),
        });
    }
    ids.iter()
        .map(|d| {
            Digest::parse(d).map_err(|fault| ImageError::Invalid {
                what: format!("{what}: config rootfs.diff_ids"),
                fault,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::super::store::DirStore;
    use super::super::testutil::*;
    use super::*;
    use serde_json::json;

    fn image(marker: &str) -> BuiltImage {
        build_image(
            &[
                tar(&[dir("etc"), file("etc/os-release", marker.as_bytes())]),
                tar(&[
                    file("etc/.wh.os-release", b""),
                    file("etc/id", marker.as_bytes()),
                ]),
            ],
            json!({"Entrypoint": ["/bin/sh"], "Cmd": ["-c", marker], "Env": ["A=1"], "WorkingDir": "/srv", "User": "1000"}),
            "amd64",
            true,
        )
    }

    fn load_dir(
        dir: &std::path::Path,
        selector: Option<Selector>,
    ) -> Result<LoadedImage, ImageError> {
        let store = DirStore::new(dir.to_path_buf());
        load(
            &store,
            &format!("OCI layout {}", dir.display()),
            selector.as_ref(),
            &Platform::linux("amd64"),
        )
    }

    fn id_of(img: &LoadedImage) -> Vec<u8> {
        match &img.tree.nodes["etc/id"].kind {
            smolvm_rootfs::tree::NodeKind::File(smolvm_rootfs::tree::FileData::Inline(d)) => {
                d.clone()
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn tag_and_digest_select_images() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (image("A"), image("B"));
        write_oci_layout(dir.path(), &[(&a, Some("v1")), (&b, Some("v2"))]);
        let img = load_dir(dir.path(), Some(Selector::Tag("v2".into()))).unwrap();
        assert_eq!(id_of(&img), b"B");
        assert_eq!(img.digest.as_ref().unwrap().to_string(), b.digest());
        assert!(!img.tree.nodes.contains_key("etc/os-release"));
        let cfg = img.config.unwrap();
        assert_eq!(
            cfg.cmd.as_deref(),
            Some(&["-c".to_string(), "B".to_string()][..])
        );
        let by_digest = load_dir(
            dir.path(),
            Some(Selector::Digest(Digest::parse(&a.digest()).unwrap())),
        )
        .unwrap();
        assert_eq!(id_of(&by_digest), b"A");
    }

    #[test]
    fn missing_tag_lists_the_tags_there_are() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (image("A"), image("B"));
        write_oci_layout(dir.path(), &[(&a, Some("v1")), (&b, Some("v2"))]);
        let e = load_dir(dir.path(), Some(Selector::Tag("v3".into())))
            .unwrap_err()
            .to_string();
        assert!(e.contains("\"v3\""), "{e}");
        assert!(e.contains("v1, v2"), "{e}");
        assert!(e.contains(&dir.path().display().to_string()), "{e}");
        // Two images and no tag: ambiguous, with the same list.
        let e = load_dir(dir.path(), None).unwrap_err().to_string();
        assert!(e.contains("holds 2 images") && e.contains("v1, v2"), "{e}");
    }

    #[test]
    fn single_untagged_image_needs_no_selector() {
        let dir = tempfile::tempdir().unwrap();
        let a = image("A");
        write_oci_layout(dir.path(), &[(&a, None)]);
        assert_eq!(id_of(&load_dir(dir.path(), None).unwrap()), b"A");
    }

    #[test]
    fn multi_platform_index_picks_amd64() {
        let dir = tempfile::tempdir().unwrap();
        let amd = image("amd");
        let arm = build_image(&[tar(&[file("etc/id", b"arm")])], json!({}), "arm64", false);
        for img in [&amd, &arm] {
            for b in img.blobs() {
                write_blob(dir.path(), b);
            }
        }
        let list = index(&[
            (
                arm.digest(),
                arm.manifest.len(),
                super::super::spec::OCI_MANIFEST,
                None,
                Some("arm64"),
            ),
            (
                amd.digest(),
                amd.manifest.len(),
                super::super::spec::OCI_MANIFEST,
                None,
                Some("amd64"),
            ),
        ]);
        let list_digest = write_blob(dir.path(), &list);
        std::fs::write(
            dir.path().join("oci-layout"),
            br#"{"imageLayoutVersion":"1.0.0"}"#,
        )
        .unwrap();
        std::fs::write(
            dir.path().join("index.json"),
            index(&[(
                list_digest,
                list.len(),
                super::super::spec::OCI_INDEX,
                Some("latest"),
                None,
            )]),
        )
        .unwrap();
        let img = load_dir(dir.path(), Some(Selector::Tag("latest".into()))).unwrap();
        assert_eq!(id_of(&img), b"amd");
        assert_eq!(img.digest.unwrap().to_string(), amd.digest());
        // Only arm64 there: the error lists it.
        std::fs::write(
            dir.path().join("index.json"),
            index(&[(
                arm.digest(),
                arm.manifest.len(),
                super::super::spec::OCI_MANIFEST,
                None,
                Some("arm64"),
            )]),
        )
        .unwrap();
        let e = load_dir(dir.path(), None).unwrap_err().to_string();
        assert!(
            e.contains("linux/amd64") && e.contains("linux/arm64"),
            "{e}"
        );
    }

    #[test]
    fn corrupt_blobs_are_digest_mismatches() {
        let dir = tempfile::tempdir().unwrap();
        let a = image("A");
        write_oci_layout(dir.path(), &[(&a, Some("v1"))]);
        // Flip one byte of the second layer.
        let layer = digest(&a.layers[1]);
        let path = dir
            .path()
            .join("blobs/sha256")
            .join(layer.trim_start_matches("sha256:"));
        let mut bytes = std::fs::read(&path).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        std::fs::write(&path, &bytes).unwrap();
        let e = load_dir(dir.path(), Some(Selector::Tag("v1".into())))
            .unwrap_err()
            .to_string();
        assert!(e.contains("digest mismatch"), "{e}");
        assert!(e.contains(&layer), "{e}");
        assert!(e.contains("layer 2"), "{e}");
        // A changed config is caught the same way.
        let cfg = digest(&a.config);
        std::fs::write(
            dir.path()
                .join("blobs/sha256")
                .join(cfg.trim_start_matches("sha256:")),
            br#"{"os":"linux","architecture":"amd64"}"#,
        )
        .unwrap();
        let e = load_dir(dir.path(), Some(Selector::Tag("v1".into())))
            .unwrap_err()
            .to_string();
        assert!(e.contains("digest mismatch") && e.contains("config"), "{e}");
    }

    #[test]
    fn layer_with_wrong_diff_id_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let mut a = image("A");
        // Re-write the config with a wrong diff_id, and the manifest to match.
        let mut cfg: serde_json::Value = serde_json::from_slice(&a.config).unwrap();
        cfg["rootfs"]["diff_ids"][0] = json!(digest(b"something else"));
        a.config = serde_json::to_vec(&cfg).unwrap();
        let mut m: serde_json::Value = serde_json::from_slice(&a.manifest).unwrap();
        m["config"]["digest"] = json!(digest(&a.config));
        m["config"]["size"] = json!(a.config.len());
        a.manifest = serde_json::to_vec(&m).unwrap();
        write_oci_layout(dir.path(), &[(&a, None)]);
        let e = load_dir(dir.path(), None).unwrap_err().to_string();
        assert!(e.contains("diff_ids"), "{e}");
    }

    #[test]
    fn not_a_layout() {
        let dir = tempfile::tempdir().unwrap();
        let e = load_dir(dir.path(), None).unwrap_err().to_string();
        assert!(
            e.contains("not a container image") && e.contains("oci-layout"),
            "{e}"
        );
    }
}

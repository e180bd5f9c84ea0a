//! `docker save` archives: `manifest.json` names each image's config and
//! layer tars. Both layouts docker has written are read: the classic one
//! (`<id>/layer.tar`, `<hex>.json`) and the OCI-shaped one of docker 25+
//! (`blobs/sha256/<hex>`, plus `index.json`).
//!
//! What is checked: the config against the digest its file name states,
//! each layer blob against its name where that is a digest, and every
//! layer's uncompressed content against the config's `rootfs.diff_ids`.

use serde::Deserialize;

use super::config::ImageRuntimeConfig;
use super::digest::Digest;
use super::flatten::{flatten_layers, LayerBlob};
use super::oci_layout::diff_ids;
use super::reference::parse_registry;
use super::spec::{parse_config, parse_manifest, Index, ManifestDoc, Platform};
use super::store::{read_json_blob, read_named_blob, Store};
use super::{ImageError, LoadedImage, Selector};

#[derive(Debug, Deserialize)]
struct ManifestEntry {
    #[serde(rename = "Config")]
    config: String,
    #[serde(rename = "RepoTags", default)]
    repo_tags: Option<Vec<String>>,
    #[serde(rename = "Layers", default)]
    layers: Vec<String>,
}

/// The digest a member's name states: `blobs/sha256/<hex>` or `<hex>.json`.
fn digest_from_name(name: &str) -> Option<Digest> {
    let hex = name
        .strip_prefix("blobs/sha256/")
        .or_else(|| name.strip_suffix(".json"))?;
    Digest::parse(&format!("sha256:{hex}")).ok()
}

/// Normalised `registry/repo:tag`, so `alpine:3.20` matches what docker wrote.
fn normalised_tag(t: &str) -> String {
    parse_registry(t).map_or_else(|_| t.to_string(), |r| r.to_string())
}

pub fn load(
    store: &dyn Store,
    what: &str,
    selector: Option<&Selector>,
    platform: &Platform,
) -> Result<LoadedImage, ImageError> {
    let bytes = read_named_blob(store, "manifest.json", None, None, what)?;
    let entries: Vec<ManifestEntry> =
        serde_json::from_slice(&bytes).map_err(|e| ImageError::Invalid {
            what: format!("{what}: manifest.json"),
            fault: format!("not a docker save manifest: {e}"),
        })?;
    let all_tags: Vec<String> = entries
        .iter()
        .flat_map(|e| e.repo_tags.iter().flatten().cloned())
        .collect();
    let fix = "docker-archive:FILE:REPO:TAG".to_string();
    let entry = match selector {
        None => match entries.as_slice() {
            [] => {
                return Err(ImageError::NotAnImage {
                    what: what.to_string(),
                    fault: "its manifest.json lists no images".into(),
                })
            }
            [one] => one,
            many => {
                return Err(ImageError::Ambiguous {
                    what: what.to_string(),
                    count: many.len(),
                    available: all_tags,
                    fix,
                })
            }
        },
        Some(Selector::Tag(t)) => {
            let want = normalised_tag(t);
            entries
                .iter()
                .find(|e| {
                    e.repo_tags
                        .iter()
                        .flatten()
                        .any(|rt| rt == t || normalised_tag(rt) == want)
                })
                .ok_or_else(|| ImageError::TagNotFound {
                    what: what.to_string(),
                    tag: t.clone(),
                    available: all_tags.clone(),
                    fix: fix.clone(),
                })?
        }
        Some(Selector::Digest(d)) => entries
            .iter()
            .find(|e| digest_from_name(&e.config).as_ref() == Some(d))
            .ok_or_else(|| ImageError::Invalid {
                what: what.to_string(),
                fault: format!("no image with ID {d}"),
            })?,
    };

    let config_digest = digest_from_name(&entry.config);
    let config_bytes = read_named_blob(
        store,
        &entry.config,
        config_digest.as_ref(),
        None,
        &format!("{what}: config {}", entry.config),
    )?;
    let config = parse_config(&config_bytes, what, platform)?;
    let diff_ids = diff_ids(&config, entry.layers.len(), what)?;
    let layers: Vec<LayerBlob> = entry
        .layers
        .iter()
        .zip(diff_ids)
        .map(|(name, diff_id)| LayerBlob {
            name: name.clone(),
            digest: digest_from_name(name),
            size: None,
            diff_id: Some(diff_id),
        })
        .collect();
    let tree = flatten_layers(store, &layers, what)?;
    let config_digest = config_digest.unwrap_or_else(|| Digest::of(&config_bytes));
    let digest = manifest_digest_for(store, &config_digest, platform).unwrap_or(config_digest);
    Ok(LoadedImage {
        tree,
        config: Some(ImageRuntimeConfig::from_spec(
            config.config.unwrap_or_default(),
        )),
        digest: Some(digest),
    })
}

/// Docker 25+ also writes an OCI `index.json`: the manifest there whose
/// config is ours gives the digest a registry would show. Best effort.
fn manifest_digest_for(store: &dyn Store, config: &Digest, platform: &Platform) -> Option<Digest> {
    let bytes = read_named_blob(store, "index.json", None, None, "index.json").ok()?;
    let index: Index = serde_json::from_slice(&bytes).ok()?;
    let mut queue: Vec<_> = index.manifests;
    let mut seen = 0;
    while let Some(desc) = queue.pop() {
        seen += 1;
        if seen > 64 {
            return None;
        }
        let d = Digest::parse(&desc.digest).ok()?;
        let Ok(bytes) = read_json_blob(store, &d, desc.known_size(), "manifest") else {
            continue;
        };
        match parse_manifest(&bytes, "manifest") {
            Ok(ManifestDoc::Image(m)) if m.config.digest == config.to_string() => return Some(d),
            Ok(ManifestDoc::Index(i)) => queue.extend(
                i.manifests
                    .into_iter()
                    .filter(|m| m.platform.as_ref().is_none_or(|p| platform.matches(p))),
            ),
            _ => {}
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::super::store::TarStore;
    use super::super::testutil::*;
    use super::super::{load as load_ref, ImageOptions};
    use super::*;
    use serde_json::json;

    fn layers() -> Vec<Vec<u8>> {
        vec![
            tar(&[
                dir("bin"),
                file("bin/busybox", b"BB"),
                device("dev/console", tar::EntryType::Char, 5, 1),
            ]),
            tar(&[hardlink("bin/sh", "bin/busybox"), file("etc/motd", b"hi")]),
        ]
    }

    #[test]
    fn docker_save_archive_loads_with_config_and_links() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("img.tar");
        let l = layers();
        std::fs::write(
            &p,
            docker_save(&[(
                &l,
                json!({"Cmd": ["/bin/sh"], "Env": ["X=1"]}),
                "example/app:v1",
            )]),
        )
        .unwrap();
        // Found by sniffing a plain path, and by the explicit prefix with a tag.
        for spec in [
            p.display().to_string(),
            format!("docker-archive:{}", p.display()),
            format!("docker-archive:{}:example/app:v1", p.display()),
            format!("docker-archive:{}:docker.io/example/app:v1", p.display()),
        ] {
            let img = load_ref(&spec, &ImageOptions::default()).unwrap();
            assert_eq!(
                img.tree.nodes["bin/sh"].kind,
                smolvm_rootfs::tree::NodeKind::HardLink("bin/busybox".into()),
                "{spec}"
            );
            assert_eq!(
                img.tree.nodes["dev/console"].kind,
                smolvm_rootfs::tree::NodeKind::Char { major: 5, minor: 1 }
            );
            let cfg = img.config.unwrap();
            assert_eq!(cfg.cmd, Some(vec!["/bin/sh".to_string()]));
            assert_eq!(cfg.env, vec!["X=1"]);
            assert!(img.digest.is_some());
        }
        let e = load_ref(
            &format!("docker-archive:{}:example/app:v2", p.display()),
            &ImageOptions::default(),
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("example/app:v1") && e.contains("\"example/app:v2\""),
            "{e}"
        );
    }

    #[test]
    fn gzipped_docker_save_is_spooled_and_read() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("img.tar.gz");
        let l = layers();
        std::fs::write(&p, gzip(&docker_save(&[(&l, json!({}), "a:b")]))).unwrap();
        let opts = ImageOptions {
            cache_dir: Some(dir.path().join("cache")),
            ..ImageOptions::default()
        };
        let img = load_ref(&format!("docker-archive:{}", p.display()), &opts).unwrap();
        assert!(img.tree.nodes.contains_key("etc/motd"));
    }

    #[test]
    fn corrupt_layer_in_archive_fails_its_diff_id() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("img.tar");
        let mut l = layers();
        let bytes = docker_save(&[(&l, json!({}), "a:b")]);
        // Same archive shape, but the second layer's content differs from
        // what the config's diff_ids vouch for.
        let good_id = digest(&l[1]);
        l[1] = tar(&[file("etc/motd", b"evil")]);
        let mut bad = docker_save(&[(&l, json!({}), "a:b")]);
        // Put the original config (with the original diff_ids) back in.
        let cfg_good = find_member(&bytes, ".json");
        let cfg_bad_name = find_name(&bad, ".json");
        bad = replace_member(&bad, &cfg_bad_name, &cfg_good.1, &cfg_good.0);
        std::fs::write(&p, bad).unwrap();
        let store = TarStore::open(&p, "docker archive img.tar").unwrap();
        let e = load(
            &store,
            "docker archive img.tar",
            None,
            &Platform::linux("amd64"),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("digest mismatch") && e.contains(&good_id), "{e}");
        assert!(e.contains("img.tar"), "{e}");
    }

    #[test]
    fn several_images_need_a_tag() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("two.tar");
        let l = layers();
        std::fs::write(
            &p,
            docker_save(&[(&l, json!({}), "a:1"), (&l[..1], json!({}), "b:2")]),
        )
        .unwrap();
        let e = load_ref(&p.display().to_string(), &ImageOptions::default())
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("holds 2 images") && e.contains("a:1, b:2"),
            "{e}"
        );
        let img = load_ref(&format!("{}:b:2", p.display()), &ImageOptions::default()).unwrap();
        assert!(!img.tree.nodes.contains_key("etc/motd"));
    }

    /// (name, data) of the first top-level member ending in `suffix`
    /// (other than manifest.json).
    fn find_member(archive: &[u8], suffix: &str) -> (String, Vec<u8>) {
        use std::io::Read;
        let mut a = tar::Archive::new(archive);
        for e in a.entries().unwrap() {
            let mut e = e.unwrap();
            let name = e.path().unwrap().display().to_string();
            if name.ends_with(suffix) && name != "manifest.json" {
                let mut d = Vec::new();
                e.read_to_end(&mut d).unwrap();
                return (name, d);
            }
        }
        panic!("no {suffix}");
    }

    fn find_name(archive: &[u8], suffix: &str) -> String {
        find_member(archive, suffix).0
    }

    /// Rebuilds `archive` with member `old` replaced by `new_name` = `data`,
    /// and manifest.json rewritten to name it.
    fn replace_member(archive: &[u8], old: &str, data: &[u8], new_name: &str) -> Vec<u8> {
        use std::io::Read;
        let mut out = tar::Builder::new(Vec::new());
        let mut a = tar::Archive::new(archive);
        for e in a.entries().unwrap() {
            let mut e = e.unwrap();
            let name = e.path().unwrap().display().to_string();
            let mut d = Vec::new();
            e.read_to_end(&mut d).unwrap();
            let mut h = e.header().clone();
            let (name, d) = if name == old {
                (new_name.to_string(), data.to_vec())
            } else if name == "manifest.json" {
                (
                    name,
                    String::from_utf8(d)
                        .unwrap()
                        .replace(old, new_name)
                        .into_bytes(),
                )
            } else {
                (name, d)
            };
            h.set_size(d.len() as u64);
            out.append_data(&mut h, &name, &d[..]).unwrap();
        }
        out.into_inner().unwrap()
    }
}

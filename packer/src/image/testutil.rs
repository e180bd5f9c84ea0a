//! Builders for layer tars, OCI layouts and docker-save archives, made by
//! hand in tests (no fixtures: every byte is written here).

use std::path::Path;

use serde_json::json;

use super::digest::Digest;
use super::spec::{OCI_CONFIG, OCI_INDEX, OCI_MANIFEST, REF_NAME};
pub use smolvm_rootfs::testutil::*;

pub fn digest(bytes: &[u8]) -> String {
    Digest::of(bytes).to_string()
}

/// An image: its manifest, config and stored layer blobs.
pub struct BuiltImage {
    pub manifest: Vec<u8>,
    pub config: Vec<u8>,
    /// As stored (gzip-compressed when built so).
    pub layers: Vec<Vec<u8>>,
}

impl BuiltImage {
    pub fn digest(&self) -> String {
        digest(&self.manifest)
    }

    pub fn blobs(&self) -> Vec<&[u8]> {
        let mut v: Vec<&[u8]> = vec![&self.manifest, &self.config];
        v.extend(self.layers.iter().map(Vec::as_slice));
        v
    }
}

/// Builds an image from uncompressed layer tars and a runtime config
/// (`{"Entrypoint": [...], ...}`), for `linux/<arch>`.
pub fn build_image(
    layers: &[Vec<u8>],
    runtime: serde_json::Value,
    arch: &str,
    gzip_layers: bool,
) -> BuiltImage {
    let config = serde_json::to_vec(&json!({
        "architecture": arch,
        "os": "linux",
        "config": runtime,
        "rootfs": {"type": "layers", "diff_ids": layers.iter().map(|l| digest(l)).collect::<Vec<_>>()},
    }))
    .unwrap();
    let stored: Vec<Vec<u8>> = layers
        .iter()
        .map(|l| if gzip_layers { gzip(l) } else { l.clone() })
        .collect();
    let layer_type = if gzip_layers {
        "application/vnd.oci.image.layer.v1.tar+gzip"
    } else {
        "application/vnd.oci.image.layer.v1.tar"
    };
    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, "digest": digest(&config), "size": config.len()},
        "layers": stored.iter().map(|l| json!({
            "mediaType": layer_type, "digest": digest(l), "size": l.len()
        })).collect::<Vec<_>>(),
    }))
    .unwrap();
    BuiltImage {
        manifest,
        config,
        layers: stored,
    }
}

/// One index entry: `(digest, size, media type, tag, arch)`.
pub type IndexEntry<'a> = (String, usize, &'a str, Option<&'a str>, Option<&'a str>);

/// An index over manifests.
pub fn index(entries: &[IndexEntry<'_>]) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": entries.iter().map(|(d, size, mt, tag, arch)| {
            let mut e = json!({"mediaType": mt, "digest": d, "size": size});
            if let Some(t) = tag {
                e["annotations"] = json!({ REF_NAME: t });
            }
            if let Some(a) = arch {
                e["platform"] = json!({"os": "linux", "architecture": a});
            }
            e
        }).collect::<Vec<_>>(),
    }))
    .unwrap()
}

pub fn write_blob(layout: &Path, bytes: &[u8]) -> String {
    let d = digest(bytes);
    let dir = layout.join("blobs/sha256");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join(d.trim_start_matches("sha256:")), bytes).unwrap();
    d
}

/// Writes an OCI layout holding `images`, each tagged (or not) in index.json.
pub fn write_oci_layout(layout: &Path, images: &[(&BuiltImage, Option<&str>)]) {
    std::fs::create_dir_all(layout).unwrap();
    std::fs::write(
        layout.join("oci-layout"),
        br#"{"imageLayoutVersion":"1.0.0"}"#,
    )
    .unwrap();
    let mut entries = Vec::new();
    for (img, tag) in images {
        for b in img.blobs() {
            write_blob(layout, b);
        }
        entries.push((img.digest(), img.manifest.len(), OCI_MANIFEST, *tag, None));
    }
    std::fs::write(layout.join("index.json"), index(&entries)).unwrap();
}

/// A `docker save` archive in the classic layout (`<id>/layer.tar`,
/// `<config hex>.json`, `manifest.json`) with uncompressed layers.
pub fn docker_save(images: &[(&[Vec<u8>], serde_json::Value, &str)]) -> Vec<u8> {
    let mut entries = Vec::new();
    let mut manifest = Vec::new();
    for (layers, runtime, tag) in images {
        let config = serde_json::to_vec(&json!({
            "architecture": "amd64",
            "os": "linux",
            "config": runtime,
            "rootfs": {"type": "layers", "diff_ids": layers.iter().map(|l| digest(l)).collect::<Vec<_>>()},
        }))
        .unwrap();
        let config_name = format!("{}.json", Digest::of(&config).hex());
        let mut layer_names = Vec::new();
        for l in layers.iter() {
            // Layer directory ids are opaque; docker derives them from chains.
            let id = Digest::of(&[l.as_slice(), b"id"].concat())
                .hex()
                .to_string();
            entries.push(dir(&id));
            entries.push(file(&format!("{id}/VERSION"), b"1.0"));
            entries.push(file(&format!("{id}/layer.tar"), l));
            layer_names.push(format!("{id}/layer.tar"));
        }
        entries.push(file(&config_name, &config));
        manifest.push(json!({"Config": config_name, "RepoTags": [tag], "Layers": layer_names}));
    }
    entries.push(file(
        "manifest.json",
        &serde_json::to_vec(&manifest).unwrap(),
    ));
    tar(&entries)
}

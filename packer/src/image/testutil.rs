//! Builders for layer tars, OCI layouts and docker-save archives, made by
//! hand in tests (no fixtures: every byte is written here).

use std::path::Path;

use serde_json::json;

use super::digest::Digest;
use super::spec::{OCI_CONFIG, OCI_INDEX, OCI_MANIFEST, REF_NAME};

pub struct Entry {
    path: String,
    kind: tar::EntryType,
    data: Vec<u8>,
    link: Option<String>,
    mode: u32,
    uid: u64,
    gid: u64,
    dev: (u32, u32),
}

fn entry(path: &str, kind: tar::EntryType) -> Entry {
    Entry {
        path: path.into(),
        kind,
        data: Vec::new(),
        link: None,
        mode: 0o644,
        uid: 0,
        gid: 0,
        dev: (0, 0),
    }
}

pub fn file(path: &str, data: &[u8]) -> Entry {
    Entry {
        data: data.to_vec(),
        ..entry(path, tar::EntryType::Regular)
    }
}

pub fn dir(path: &str) -> Entry {
    Entry {
        mode: 0o755,
        ..entry(path, tar::EntryType::Directory)
    }
}

pub fn symlink(path: &str, target: &str) -> Entry {
    Entry {
        link: Some(target.into()),
        mode: 0o777,
        ..entry(path, tar::EntryType::Symlink)
    }
}

pub fn hardlink(path: &str, target: &str) -> Entry {
    Entry {
        link: Some(target.into()),
        ..entry(path, tar::EntryType::Link)
    }
}

pub fn device(path: &str, kind: tar::EntryType, major: u32, minor: u32) -> Entry {
    Entry {
        dev: (major, minor),
        mode: 0o666,
        ..entry(path, kind)
    }
}

pub fn with_mode(e: Entry, mode: u32) -> Entry {
    Entry { mode, ..e }
}

pub fn owned(e: Entry, uid: u64, gid: u64, mode: u32) -> Entry {
    Entry {
        uid,
        gid,
        mode,
        ..e
    }
}

/// A tar of `entries`, in the order given. Names and link targets are
/// written into the header bytes directly, so `..` and absolute paths go in
/// unchanged (the tar crate's setters would refuse them).
pub fn tar(entries: &[Entry]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for e in entries {
        let mut h = tar::Header::new_ustar();
        h.set_entry_type(e.kind);
        h.set_mode(e.mode);
        h.set_uid(e.uid);
        h.set_gid(e.gid);
        h.set_mtime(1);
        h.set_size(e.data.len() as u64);
        if matches!(e.kind, tar::EntryType::Char | tar::EntryType::Block) {
            h.set_device_major(e.dev.0).unwrap();
            h.set_device_minor(e.dev.1).unwrap();
        }
        let name = if e.kind == tar::EntryType::Directory {
            format!("{}/", e.path)
        } else {
            e.path.clone()
        };
        let raw = h.as_old_mut();
        assert!(name.len() < 100, "test names fit the old header");
        raw.name.fill(0);
        raw.name[..name.len()].copy_from_slice(name.as_bytes());
        if let Some(l) = &e.link {
            raw.linkname.fill(0);
            raw.linkname[..l.len()].copy_from_slice(l.as_bytes());
        }
        h.set_cksum();
        b.append(&h, &e.data[..]).unwrap();
    }
    b.into_inner().unwrap()
}

/// A one-entry tar whose name is exactly `name`.
pub fn raw_name_tar(name: &[u8]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_size(1);
    h.set_entry_type(tar::EntryType::Regular);
    h.as_old_mut().name[..name.len()].copy_from_slice(name);
    h.set_cksum();
    b.append(&h, &b"x"[..]).unwrap();
    b.into_inner().unwrap()
}

pub fn gzip(bytes: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

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

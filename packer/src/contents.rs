//! What is inside an artifact, for release review: `pack inspect --files`
//! (every entry of the root filesystem image, with its sha256) and `pack
//! diff A B` (identity, config, kernel and files that differ).
//!
//! Both read the artifact without trusting it: the EROFS image is parsed
//! by the bounds-checked reader in `smolvm_rootfs::erofs::read`.

use std::collections::BTreeMap;

use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use smolvm_format::{Artifact, ReadAt, SectionKind};
use smolvm_rootfs::erofs::read::{EntryKind, ImageReader};
use smolvm_rootfs::tree::{display_name, name_from_bytes};

/// One entry of the root filesystem.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileRecord {
    /// Absolute in the guest (`/etc/hostname`); the root is `/`.
    pub path: String,
    /// `file`, `dir`, `symlink`, `char`, `block`, `fifo`, `socket`.
    pub kind: &'static str,
    /// Permission bits.
    pub mode: u16,
    pub uid: u32,
    pub gid: u32,
    pub size: u64,
    /// Regular files: hex SHA-256 of the contents.
    pub sha256: Option<String>,
    /// Symlinks: the target; devices: `major:minor`.
    pub target: Option<String>,
}

impl FileRecord {
    pub fn to_json(&self) -> Value {
        json!({
            "path": self.path,
            "type": self.kind,
            "mode": format!("{:04o}", self.mode),
            "uid": self.uid,
            "gid": self.gid,
            "size": self.size,
            "sha256": self.sha256,
            "target": self.target,
        })
    }

    /// `TYPE MODE UID:GID SIZE SHA256 PATH [-> TARGET]`, one line.
    pub fn to_line(&self) -> String {
        let mut line = format!(
            "{:<7} {:04o} {:>5}:{:<5} {:>10} {:<64} {}",
            self.kind,
            self.mode,
            self.uid,
            self.gid,
            self.size,
            self.sha256.as_deref().unwrap_or("-"),
            self.path
        );
        if let Some(t) = &self.target {
            line.push_str(" -> ");
            line.push_str(t);
        }
        line
    }
}

/// Linux `new_decode_dev`.
fn decode_dev(rdev: u32) -> String {
    let major = (rdev & 0xfff00) >> 8;
    let minor = (rdev & 0xff) | ((rdev >> 12) & 0xfff00);
    format!("{major}:{minor}")
}

/// Every entry of the artifact's root filesystem, in path order.
pub fn files<R: ReadAt + ?Sized>(art: &Artifact<'_, R>) -> anyhow::Result<Vec<FileRecord>> {
    let image = art.read_section(SectionKind::Rootfs)?;
    let reader = ImageReader::new(&image)?;
    let mut out = Vec::new();
    for e in reader.entries()? {
        let (sha256, target) = match &e.kind {
            EntryKind::File => (
                Some(hex::encode(Sha256::digest(reader.file_contents(&e)?))),
                None,
            ),
            EntryKind::Symlink { target } => (None, Some(display_name(&name_from_bytes(target)))),
            EntryKind::CharDevice { rdev } | EntryKind::BlockDevice { rdev } => {
                (None, Some(decode_dev(*rdev)))
            }
            _ => (None, None),
        };
        out.push(FileRecord {
            // Names are bytes: shown escaped (`\xff`, `\n`), one line each.
            path: format!("/{}", display_name(&e.path)),
            kind: e.kind.name(),
            mode: e.perm,
            uid: e.uid,
            gid: e.gid,
            // A directory's size is the writer's layout, not content.
            size: if e.kind == EntryKind::Dir { 0 } else { e.size },
            sha256,
            target,
        });
    }
    Ok(out)
}

/// What differs between two artifacts.
#[derive(Debug, Default)]
pub struct Diff {
    /// name, version: (field, a, b).
    pub identity: Vec<(String, Value, Value)>,
    /// Config fields (dotted paths) whose values differ.
    pub config: Vec<(String, Value, Value)>,
    /// The kernels' SHA-256 (of the uncompressed kernel) when they differ.
    pub kernel: Option<(String, String)>,
    pub added: Vec<FileRecord>,
    pub removed: Vec<FileRecord>,
    /// Path, what changed ("content", "mode", "owner", "type", "target"),
    /// before and after.
    pub changed: Vec<(String, Vec<&'static str>, FileRecord, FileRecord)>,
}

impl Diff {
    pub fn is_empty(&self) -> bool {
        self.identity.is_empty()
            && self.config.is_empty()
            && self.kernel.is_none()
            && self.added.is_empty()
            && self.removed.is_empty()
            && self.changed.is_empty()
    }

    pub fn to_json(&self) -> Value {
        let fields = |v: &[(String, Value, Value)]| -> Vec<Value> {
            v.iter()
                .map(|(f, a, b)| json!({"field": f, "a": a, "b": b}))
                .collect()
        };
        json!({
            "identical": self.is_empty(),
            "identity": fields(&self.identity),
            "config": fields(&self.config),
            "kernel": self.kernel.as_ref().map(|(a, b)| json!({"a": a, "b": b})),
            "files": {
                "added": self.added.iter().map(FileRecord::to_json).collect::<Vec<_>>(),
                "removed": self.removed.iter().map(FileRecord::to_json).collect::<Vec<_>>(),
                "changed": self.changed.iter().map(|(p, what, a, b)| json!({
                    "path": p, "what": what, "a": a.to_json(), "b": b.to_json(),
                })).collect::<Vec<_>>(),
            },
        })
    }

    pub fn to_human(&self) -> String {
        if self.is_empty() {
            return "identical: same identity, config, kernel and files\n".into();
        }
        let mut s = String::new();
        let value = |v: &Value| v.to_string();
        for (f, a, b) in &self.identity {
            s += &format!("artifact {f}: {} -> {}\n", value(a), value(b));
        }
        for (f, a, b) in &self.config {
            s += &format!("config {f}: {} -> {}\n", value(a), value(b));
        }
        if let Some((a, b)) = &self.kernel {
            s += &format!("kernel: sha256 {a} -> {b}\n");
        }
        for r in &self.added {
            s += &format!("+ {} ({} {:04o})\n", r.path, r.kind, r.mode);
        }
        for r in &self.removed {
            s += &format!("- {} ({} {:04o})\n", r.path, r.kind, r.mode);
        }
        for (p, what, _, _) in &self.changed {
            s += &format!("~ {p}: {}\n", what.join(", "));
        }
        s
    }
}

/// The uncompressed kernel's SHA-256: the stored hash changes with the
/// compression level, the kernel does not.
fn kernel_sha256<R: ReadAt + ?Sized>(art: &Artifact<'_, R>) -> anyhow::Result<String> {
    Ok(hex::encode(Sha256::digest(
        art.read_section(SectionKind::Kernel)?,
    )))
}

/// Leaves of a JSON value as dotted paths.
fn flatten(prefix: &str, v: &Value, out: &mut BTreeMap<String, Value>) {
    match v {
        Value::Object(map) => {
            for (k, child) in map {
                let p = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                flatten(&p, child, out);
            }
        }
        other => {
            out.insert(prefix.to_owned(), other.clone());
        }
    }
}

fn field_diff(a: &Value, b: &Value) -> Vec<(String, Value, Value)> {
    let (mut fa, mut fb) = (BTreeMap::new(), BTreeMap::new());
    flatten("", a, &mut fa);
    flatten("", b, &mut fb);
    let keys: std::collections::BTreeSet<&String> = fa.keys().chain(fb.keys()).collect();
    keys.into_iter()
        .filter_map(|k| {
            let va = fa.get(k).cloned().unwrap_or(Value::Null);
            let vb = fb.get(k).cloned().unwrap_or(Value::Null);
            (va != vb).then(|| (k.clone(), va, vb))
        })
        .collect()
}

/// Compares two artifacts.
pub fn diff<A: ReadAt + ?Sized, B: ReadAt + ?Sized>(
    a: &Artifact<'_, A>,
    b: &Artifact<'_, B>,
) -> anyhow::Result<Diff> {
    let mut d = Diff {
        identity: field_diff(
            &json!({"name": a.manifest.name, "version": a.manifest.version}),
            &json!({"name": b.manifest.name, "version": b.manifest.version}),
        ),
        ..Diff::default()
    };
    let ca: Value = serde_json::from_slice(&a.manifest.config.to_canonical_json())?;
    let cb: Value = serde_json::from_slice(&b.manifest.config.to_canonical_json())?;
    d.config = field_diff(&ca, &cb);
    let (ka, kb) = (kernel_sha256(a)?, kernel_sha256(b)?);
    if ka != kb {
        d.kernel = Some((ka, kb));
    }
    let fa: BTreeMap<String, FileRecord> =
        files(a)?.into_iter().map(|r| (r.path.clone(), r)).collect();
    let fb: BTreeMap<String, FileRecord> =
        files(b)?.into_iter().map(|r| (r.path.clone(), r)).collect();
    for (path, ra) in &fa {
        match fb.get(path) {
            None => d.removed.push(ra.clone()),
            Some(rb) => {
                let mut what = Vec::new();
                if ra.kind != rb.kind {
                    what.push("type");
                }
                if ra.sha256 != rb.sha256 || (ra.kind != "dir" && ra.size != rb.size) {
                    what.push("content");
                }
                if ra.target != rb.target {
                    what.push("target");
                }
                if ra.mode != rb.mode {
                    what.push("mode");
                }
                if (ra.uid, ra.gid) != (rb.uid, rb.gid) {
                    what.push("owner");
                }
                if !what.is_empty() {
                    d.changed.push((path.clone(), what, ra.clone(), rb.clone()));
                }
            }
        }
    }
    d.added = fb
        .iter()
        .filter(|(p, _)| !fa.contains_key(*p))
        .map(|(_, r)| r.clone())
        .collect();
    Ok(d)
}

/// The JSON of an attestation section (`sbom`, `provenance`); an error
/// (exit 1) when the artifact has none.
pub fn attestation<R: ReadAt + ?Sized>(
    art: &Artifact<'_, R>,
    kind: SectionKind,
) -> anyhow::Result<Value> {
    if art.manifest.section(kind).is_none() {
        anyhow::bail!(
            "the artifact has no {kind} section (it was packed without one, or by an older smolvm)"
        );
    }
    let bytes = art.read_section(kind)?;
    serde_json::from_slice(&bytes)
        .map_err(|e| anyhow::anyhow!("the {kind} section is not JSON: {e}"))
}

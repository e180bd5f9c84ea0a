//! The manifest: what an artifact contains, in a canonical JSON encoding.
//!
//! Canonical means: `serde_json::to_vec` of these structs (fields in
//! declaration order, no whitespace, every field present). A reader decodes,
//! re-encodes and requires identical bytes, so one manifest has exactly one
//! byte form and the signature can be over bytes rather than over a parse.

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer, Serialize};

use crate::error::{FormatError, Result};
use crate::fixed_hex::{Ed25519Signature, ImageDigest, Sha256Digest, SignerKeyId, SignerPublicKey};
use crate::frames::{FrameSpan, Frames};
use crate::layout::{check_version, MAX_MANIFEST_LEN};

pub use crate::section_kind::{
    SectionKind, MAX_ATTESTATION_SIZE, MAX_CONFIG_SIZE, MAX_ICON_SIZE, MAX_KERNEL_SIZE,
    MAX_ROOTFS_SIZE,
};

/// At most this many sections: six are defined, the rest is headroom for
/// later versions; a cap keeps a hostile manifest from making us loop long.
pub const MAX_SECTIONS: usize = 16;
/// Most links in a signer's rotation record: each is a key that signed
/// for the name before; eight rotations is far more than a project makes.
pub const MAX_ROTATION_LINKS: usize = 8;
/// Longest accepted artifact name.
pub const MAX_NAME_LEN: usize = 128;

/// How a section's stored bytes relate to its content.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    None,
    Zstd,
}

/// One row of the section table.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct SectionEntry {
    pub kind: SectionKind,
    pub compression: Compression,
    /// Offset of the stored bytes from the start of the data area
    /// (`Header::data_offset`); a multiple of 4096.
    pub offset: u64,
    /// Length of the stored (possibly compressed) bytes.
    pub stored_len: u64,
    /// Length after decompression (equal to `stored_len` when uncompressed).
    pub size: u64,
    /// SHA-256 of the stored bytes.
    pub sha256: Sha256Digest,
    /// The frame table of a framed zstd section; `null` for a section that
    /// is one frame or uncompressed. See [`crate::frames`].
    pub frames: Option<Frames>,
}

impl SectionEntry {
    /// Where each frame of the section lies: one span covering everything
    /// for an unframed section, else the checked frame table.
    pub fn frame_spans(&self) -> Result<Vec<FrameSpan>> {
        match &self.frames {
            None => Ok(vec![FrameSpan {
                index: 0,
                stored_offset: 0,
                stored_len: self.stored_len,
                offset: 0,
                size: self.size,
            }]),
            Some(frames) => {
                frames
                    .spans(self.stored_len, self.size)
                    .map_err(|fault| FormatError::Section {
                        kind: self.kind,
                        fault,
                    })
            }
        }
    }
}

/// A [`SectionEntry`] as it arrives, hash not yet decoded: decoding it in
/// [`deserialize_sections`] rather than in the entry lets the error name the entry's index.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SectionEntryWire {
    kind: SectionKind,
    compression: Compression,
    offset: u64,
    stored_len: u64,
    size: u64,
    sha256: String,
    frames: Option<Frames>,
}

fn deserialize_sections<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<SectionEntry>, D::Error> {
    Vec::<SectionEntryWire>::deserialize(d)?
        .into_iter()
        .enumerate()
        .map(|(i, w)| {
            let sha256 = w.sha256.parse().map_err(|e| {
                serde::de::Error::custom(format_args!("field `sections[{i}].sha256`: {e}"))
            })?;
            Ok(SectionEntry {
                kind: w.kind,
                compression: w.compression,
                offset: w.offset,
                stored_len: w.stored_len,
                size: w.size,
                sha256,
                frames: w.frames,
            })
        })
        .collect()
}

/// Who signed the artifact. Present exactly when the payload has a signature block.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Signer {
    /// "ed25519"; no other algorithm is defined.
    pub algorithm: String,
    /// Derived from `public_key` (SPEC.md 7.3); the verifier checks that.
    #[serde(deserialize_with = "signer_key_id")]
    pub key_id: SignerKeyId,
    /// The ed25519 public key.
    #[serde(deserialize_with = "signer_public_key")]
    pub public_key: SignerPublicKey,
    /// Version 5: the keys that signed this name before, oldest first, each
    /// endorsing the next one (the last endorses `public_key`). Lets a
    /// runtime that remembered an older key accept this one (SPEC.md "Key
    /// rotation"). Absent when empty, so manifests without it keep their bytes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rotated_from: Vec<RotationLink>,
}

/// One link of a rotation record: `public_key` signed, with
/// [`crate::layout::rotation_input`], the artifact's name and the next key
/// of the record (or the signer's key, for the last link).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct RotationLink {
    /// Derived from `public_key`; the verifier checks that.
    #[serde(deserialize_with = "link_key_id")]
    pub key_id: SignerKeyId,
    /// The older ed25519 public key.
    #[serde(deserialize_with = "link_public_key")]
    pub public_key: SignerPublicKey,
    /// Its ed25519 signature over the rotation statement.
    #[serde(deserialize_with = "link_signature")]
    pub signature: Ed25519Signature,
}

fn link_key_id<'de, D: Deserializer<'de>>(d: D) -> Result<SignerKeyId, D::Error> {
    SignerKeyId::deserialize_field(d, "signer.rotated_from[].key_id")
}

fn link_public_key<'de, D: Deserializer<'de>>(d: D) -> Result<SignerPublicKey, D::Error> {
    SignerPublicKey::deserialize_field(d, "signer.rotated_from[].public_key")
}

fn link_signature<'de, D: Deserializer<'de>>(d: D) -> Result<Ed25519Signature, D::Error> {
    Ed25519Signature::deserialize_field(d, "signer.rotated_from[].signature")
}

fn signer_key_id<'de, D: Deserializer<'de>>(d: D) -> Result<SignerKeyId, D::Error> {
    SignerKeyId::deserialize_field(d, "signer.key_id")
}

fn signer_public_key<'de, D: Deserializer<'de>>(d: D) -> Result<SignerPublicKey, D::Error> {
    SignerPublicKey::deserialize_field(d, "signer.public_key")
}

/// The executable the payload is appended to, pinned so that a modified
/// stub fails verification.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct StubRecord {
    /// Bytes before the payload; equals the trailer's `payload_offset`.
    pub length: u64,
    /// SHA-256 of those bytes.
    #[serde(deserialize_with = "stub_sha256")]
    pub sha256: Sha256Digest,
}

fn stub_sha256<'de, D: Deserializer<'de>>(d: D) -> Result<Sha256Digest, D::Error> {
    Sha256Digest::deserialize_field(d, "stub.sha256")
}

/// Platform the artifact is built for.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Target {
    pub os: String,
    pub arch: String,
}

/// Network policy of the guest. Carried even where the runtime does not
/// enforce it yet, so nothing a Smolfile says is dropped.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
#[serde(deny_unknown_fields)]
pub struct NetworkPolicy {
    pub allow_hosts: Vec<String>,
    pub allow_cidrs: Vec<String>,
}

/// The resolved machine configuration: what the runtime boots.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct MachineConfig {
    /// Source image reference, if the rootfs came from one.
    pub image: Option<String>,
    /// Digest of the source image (manifest digest), if known.
    pub image_digest: Option<ImageDigest>,
    pub entrypoint: Vec<String>,
    pub cmd: Vec<String>,
    /// `KEY=VALUE` entries, in order.
    pub env: Vec<String>,
    pub workdir: Option<String>,
    /// As written (`name`, `uid`, `name:group`, `uid:gid`), for display.
    pub user: Option<String>,
    /// `user` resolved at pack time in the packed tree's /etc/passwd and
    /// /etc/group: what the guest init switches to. Both set iff `user` is.
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    /// The groups the workload runs with (`setgroups`): `gid` first, then
    /// every group of the packed tree's /etc/group that lists the user's
    /// name. Non-empty exactly when `user` is set (absent otherwise).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<u32>,
    /// The user's home directory from the packed tree's /etc/passwd (`/`
    /// when it has no entry, as Docker does): the workload's `HOME` unless
    /// `env` sets one. Set exactly when `user` is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub home: Option<String>,
    pub cpus: u8,
    pub memory_mib: u32,
    pub net: bool,
    pub network: NetworkPolicy,
    /// `HOST:GUEST` port mappings (carried; not yet enforced by the runtime).
    pub ports: Vec<String>,
    /// `HOST:GUEST[:ro]` volume mounts (carried; not yet enforced by the runtime).
    pub volumes: Vec<String>,
    /// Storage disk size in GiB, if set (carried; not yet used by the runtime).
    pub storage_gib: Option<u32>,
    /// Overlay disk size in GiB, if set (carried; not yet used by the runtime).
    pub overlay_gib: Option<u32>,
    /// Commands run before the workload on every start (carried; not yet run by the runtime).
    pub init: Vec<String>,
    /// Forward the host's SSH agent into the guest (carried; not yet implemented).
    pub ssh_agent: bool,
    /// Share the user's current directory (read-write) at `/cwd` and start
    /// the workload there (Smolfile `share_cwd`). Absent when false, so
    /// manifests that do not use it keep their bytes.
    #[serde(default, skip_serializing_if = "is_false")]
    pub share_cwd: bool,
    /// Where each value came from: field name -> "smolfile" | "image" | "default" | "cli".
    pub provenance: BTreeMap<String, String>,
}

/// The largest uid or gid a workload may run as: `(uid_t)-1` means "no
/// change" to `setuid`/`setgid`, so it is never an id.
pub const MAX_ID: u32 = u32::MAX - 1;

/// The most groups a workload runs with (the guest init's limit).
pub const MAX_GROUPS: usize = 256;

/// `uid`, `gid`, `groups` and `home` together: ids in range, groups led by
/// `gid`, an absolute home without control characters.
fn validate_account(c: &MachineConfig) -> Result<(), String> {
    for (field, id) in [("uid", c.uid), ("gid", c.gid)] {
        if id.is_some_and(|id| id > MAX_ID) {
            return Err(format!(
                "field `config.{field}`: ids go up to {MAX_ID} ((uid_t)-1 is not an id)"
            ));
        }
    }
    if c.user.is_some() {
        if c.groups.first() != c.gid.as_ref() {
            return Err("field `config.groups`: must start with `config.gid`".into());
        }
        if c.home.is_none() {
            return Err("field `config.home` must be set when `config.user` is".into());
        }
    } else if !c.groups.is_empty() || c.home.is_some() {
        return Err(
            "fields `config.groups` and `config.home` must be absent without `config.user`".into(),
        );
    }
    if c.groups.len() > MAX_GROUPS {
        return Err(format!(
            "field `config.groups`: {} groups; at most {MAX_GROUPS}",
            c.groups.len()
        ));
    }
    if c.groups.iter().any(|&g| g > MAX_ID) {
        return Err(format!("field `config.groups`: ids go up to {MAX_ID}"));
    }
    if let Some(home) = &c.home {
        if !home.starts_with('/') || home.chars().any(char::is_control) || home.len() > 4096 {
            return Err(format!(
                "field `config.home` {home:?}: must be an absolute path without control characters"
            ));
        }
    }
    Ok(())
}

fn is_false(b: &bool) -> bool {
    !*b
}

impl Default for MachineConfig {
    fn default() -> Self {
        MachineConfig {
            image: None,
            image_digest: None,
            entrypoint: Vec::new(),
            cmd: Vec::new(),
            env: Vec::new(),
            workdir: None,
            user: None,
            uid: None,
            gid: None,
            groups: Vec::new(),
            home: None,
            cpus: 1,
            memory_mib: 512,
            net: false,
            network: NetworkPolicy::default(),
            ports: Vec::new(),
            volumes: Vec::new(),
            storage_gib: None,
            overlay_gib: None,
            init: Vec::new(),
            ssh_agent: false,
            share_cwd: false,
            provenance: BTreeMap::new(),
        }
    }
}

impl MachineConfig {
    /// Canonical bytes of the config, as stored in the `config` section.
    pub fn to_canonical_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("config serialises")
    }
}

/// The manifest: everything the signature vouches for.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// Equals the header's version; repeated here so it is signed.
    pub format_version: u32,
    pub name: String,
    pub version: String,
    /// Creation time, seconds since the Unix epoch (SOURCE_DATE_EPOCH when set).
    pub created: u64,
    pub target: Target,
    pub signer: Option<Signer>,
    pub stub: Option<StubRecord>,
    /// Sorted by offset; the layout is fully determined, see SPEC.md.
    #[serde(deserialize_with = "deserialize_sections")]
    pub sections: Vec<SectionEntry>,
    pub config: MachineConfig,
}

fn bad(msg: impl Into<String>) -> FormatError {
    FormatError::Manifest(msg.into())
}

impl Manifest {
    /// The canonical byte form.
    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("manifest serialises")
    }

    /// Decodes canonical bytes and checks every field that needs no file context.
    pub fn decode(bytes: &[u8]) -> Result<Self> {
        if bytes.len() as u64 > MAX_MANIFEST_LEN {
            return Err(bad(format!(
                "{} bytes exceeds the {MAX_MANIFEST_LEN} byte cap",
                bytes.len()
            )));
        }
        let manifest: Manifest =
            serde_json::from_slice(bytes).map_err(|e| bad(format!("JSON: {e}")))?;
        if manifest.encode() != bytes {
            return Err(FormatError::NonCanonicalManifest);
        }
        manifest.validate()?;
        Ok(manifest)
    }

    /// Field checks shared by reader and writer.
    pub fn validate(&self) -> Result<()> {
        check_version("manifest", self.format_version)?;
        validate_name(&self.name).map_err(bad)?;
        if self.version.is_empty()
            || self.version.len() > 64
            || self.version.chars().any(char::is_control)
        {
            return Err(bad(format!(
                "field `version` {:?}: must be 1-64 printable characters",
                self.version
            )));
        }
        if self.target.os != "linux" {
            return Err(bad(format!(
                "field `target.os` {:?}: only \"linux\" is defined",
                self.target.os
            )));
        }
        if !matches!(self.target.arch.as_str(), "x86_64" | "aarch64") {
            return Err(bad(format!(
                "field `target.arch` {:?}: expected \"x86_64\" or \"aarch64\"",
                self.target.arch
            )));
        }
        let c = &self.config;
        if c.uid.is_some() != c.user.is_some() || c.gid.is_some() != c.user.is_some() {
            return Err(bad(
                "fields `config.uid` and `config.gid` must be set exactly when `config.user` is",
            ));
        }
        validate_account(c).map_err(bad)?;
        if let Some(signer) = &self.signer {
            if signer.algorithm != "ed25519" {
                return Err(bad(format!(
                    "field `signer.algorithm` {:?}: only \"ed25519\" is defined",
                    signer.algorithm
                )));
            }
            validate_rotation(signer, self.format_version).map_err(bad)?;
        }
        if let Some(stub) = &self.stub {
            if stub.length == 0 {
                return Err(bad(
                    "field `stub.length`: 0; an artifact without a stub has `stub: null`",
                ));
            }
        }
        self.validate_sections()?;
        if self.config.cpus == 0 {
            return Err(bad("field `config.cpus`: must be at least 1"));
        }
        if self.config.memory_mib < 64 {
            return Err(bad(format!(
                "field `config.memory_mib`: {} MiB is below the 64 MiB minimum",
                self.config.memory_mib
            )));
        }
        Ok(())
    }

    /// The section table: count, no duplicates, each kind known to the
    /// format version, sizes within their caps, frames only on zstd
    /// sections, and the three sections a machine needs to boot.
    fn validate_sections(&self) -> Result<()> {
        if self.sections.is_empty() || self.sections.len() > MAX_SECTIONS {
            return Err(bad(format!(
                "field `sections`: {} entries, expected 1 ..= {MAX_SECTIONS}",
                self.sections.len()
            )));
        }
        let mut seen = Vec::new();
        for (i, s) in self.sections.iter().enumerate() {
            if seen.contains(&s.kind) {
                return Err(bad(format!(
                    "field `sections[{i}].kind`: duplicate section `{}`",
                    s.kind
                )));
            }
            seen.push(s.kind);
            if s.kind.since_version() > self.format_version {
                return Err(bad(format!(
                    "field `sections[{i}].kind`: section `{}` is defined from format version {} on; this manifest says {}",
                    s.kind,
                    s.kind.since_version(),
                    self.format_version
                )));
            }
            if s.kind == SectionKind::Icon && s.compression != Compression::None {
                return Err(bad(format!(
                    "field `sections[{i}].compression`: the icon is stored as is (\"none\"), so installs copy it without decompressing"
                )));
            }
            if s.size > s.kind.max_size() {
                return Err(bad(format!(
                    "field `sections[{i}].size`: {} bytes exceeds the {} cap of {} bytes",
                    s.size,
                    s.kind,
                    s.kind.max_size()
                )));
            }
            if let Some(frames) = &s.frames {
                if s.compression != Compression::Zstd {
                    return Err(bad(format!(
                        "field `sections[{i}].frames`: only a zstd section has a frame table"
                    )));
                }
                frames
                    .spans(s.stored_len, s.size)
                    .map_err(|e| bad(format!("field `sections[{i}]`: {e}")))?;
            }
            if s.compression == Compression::None && s.size != s.stored_len {
                return Err(bad(format!(
                    "field `sections[{i}].size`: {} differs from stored_len {} of an uncompressed section",
                    s.size, s.stored_len
                )));
            }
        }
        for required in [
            SectionKind::Kernel,
            SectionKind::Rootfs,
            SectionKind::Config,
        ] {
            if !seen.contains(&required) {
                return Err(bad(format!(
                    "field `sections`: required section `{required}` is missing"
                )));
            }
        }
        Ok(())
    }

    pub fn section(&self, kind: SectionKind) -> Option<&SectionEntry> {
        self.sections.iter().find(|s| s.kind == kind)
    }
}

/// The shape of a rotation record (its signatures are the verifier's):
/// version 5 or later, at most [`MAX_ROTATION_LINKS`] links, and no key
/// twice, the signer's included (a record goes from older keys to the
/// signer; a key that comes back is a loop).
fn validate_rotation(signer: &Signer, format_version: u32) -> Result<(), String> {
    let links = &signer.rotated_from;
    if links.is_empty() {
        return Ok(());
    }
    if format_version < 5 {
        return Err(format!(
            "field `signer.rotated_from`: defined from format version 5 on; this manifest says {format_version}"
        ));
    }
    if links.len() > MAX_ROTATION_LINKS {
        return Err(format!(
            "field `signer.rotated_from`: {} links; at most {MAX_ROTATION_LINKS}",
            links.len()
        ));
    }
    let mut keys = vec![&signer.public_key];
    for (i, link) in links.iter().enumerate() {
        if keys.contains(&&link.public_key) {
            return Err(format!(
                "field `signer.rotated_from[{i}].public_key`: key {} appears twice in the record (or is the signer's own)",
                link.key_id
            ));
        }
        keys.push(&link.public_key);
    }
    Ok(())
}

/// Artifact names end up in file names and cache paths: keep them tame.
pub fn validate_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= MAX_NAME_LEN
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-+".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "field `name` {name:?}: must be 1-{MAX_NAME_LEN} characters of [A-Za-z0-9._+-], not starting with '.'"
        ))
    }
}

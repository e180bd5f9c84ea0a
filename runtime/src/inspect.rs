//! `pack inspect` and `pack verify` output, for people and for pipelines.

use crate::units::human_size;
use std::fmt::Write as _;

use crate::verify::SignatureState;
use serde_json::json;
use smolvm_format::{Artifact, ReadAt};

pub use crate::escape::escape_untrusted;

fn ratio(stored: u64, size: u64) -> f64 {
    if size == 0 {
        1.0
    } else {
        stored as f64 / size as f64
    }
}

fn created(secs: u64) -> String {
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs);
    humantime::format_rfc3339_seconds(t).to_string()
}

/// One line describing the signature state.
pub fn signature_line(state: &Result<SignatureState, String>) -> String {
    match state {
        Ok(SignatureState::Unsigned) => "unsigned (not valid; packed with --no-sign)".into(),
        Ok(SignatureState::SelfConsistent { key_id }) => format!(
            "ed25519 by key {key_id}: signature matches the key the artifact carries (check the signer with `smolvm pack verify --key PUB`)"
        ),
        Ok(SignatureState::Trusted { key_id }) => format!("ed25519 by key {key_id}: valid, trusted key"),
        Err(e) => format!("INVALID: {}", escape_untrusted(e)),
    }
}

fn form(art_offset: u64) -> &'static str {
    if art_offset == 0 {
        "bare payload"
    } else {
        "packed executable"
    }
}

/// The human-readable table of `pack inspect` (checked by a golden file).
pub fn render_human<R: ReadAt + ?Sized>(
    art: &Artifact<'_, R>,
    sig: &Result<SignatureState, String>,
) -> String {
    render_human_with(art, sig, &art.manifest.config, &[], None)
}

/// [`render_human`] with the config a start would use (`config`: the
/// manifest's with run-time settings applied, values marked
/// [`crate::settings::RUN_TIME`]) and the run-time volumes: what
/// `--smolvm-info` shows; `pinned`: the first signer remembered here for
/// this name (crate::known_signers), shown when there is one.
pub fn render_human_with<R: ReadAt + ?Sized>(
    art: &Artifact<'_, R>,
    sig: &Result<SignatureState, String>,
    config: &smolvm_format::MachineConfig,
    volumes: &[crate::settings::Volume],
    pinned: Option<crate::known_signers::Pin>,
) -> String {
    let mut o = String::new();
    write_identity(&mut o, art, sig, pinned);
    write_sections(&mut o, &art.manifest);
    write_workload(&mut o, config);
    write_network(&mut o, config);
    write_shares_and_state(&mut o, config, volumes);
    o
}

/// Name, version, form, target, creation time, signature and the signer
/// first seen here for this name.
fn write_identity<R: ReadAt + ?Sized>(
    o: &mut String,
    art: &Artifact<'_, R>,
    sig: &Result<SignatureState, String>,
    pinned: Option<crate::known_signers::Pin>,
) {
    let m = &art.manifest;
    let _ = writeln!(
        o,
        "{} {}",
        escape_untrusted(&m.name),
        escape_untrusted(&m.version)
    );
    let _ = writeln!(
        o,
        "  form        {} (format version {}{})",
        form(art.trailer.payload_offset),
        m.format_version,
        m.stub
            .as_ref()
            .map(|s| format!(", stub {} sha256 {:.16}", human_size(s.length), s.sha256))
            .unwrap_or_default()
    );
    let _ = writeln!(
        o,
        "  target      {}/{}",
        escape_untrusted(&m.target.os),
        escape_untrusted(&m.target.arch)
    );
    let _ = writeln!(o, "  created     {} ({})", created(m.created), m.created);
    let _ = writeln!(o, "  signature   {}", signature_line(sig));
    // A valid signature includes a verified rotation record (crate::verify).
    let lineage = sig
        .as_ref()
        .ok()
        .and_then(|_| crate::rotation::lineage(m).ok().flatten());
    if let Some(signer) = m.signer.as_ref().filter(|s| !s.rotated_from.is_empty()) {
        let keys: Vec<String> = signer
            .rotated_from
            .iter()
            .map(|l| l.key_id.to_string())
            .chain([signer.key_id.to_string()])
            .collect();
        let _ = writeln!(
            o,
            "  rotated     {} (each key endorsed the next for this name: {})",
            keys.join(" -> "),
            if lineage.is_some() {
                "verified"
            } else {
                "NOT verified"
            }
        );
    }
    if let Some(pin) = pinned {
        // The key, not its id, is what a pin compares.
        let signer = sig
            .as_ref()
            .ok()
            .and_then(SignatureState::key_id)
            .and(m.signer.as_ref())
            .and_then(|s| smolvm_signing::PublicKey::from_bytes(s.public_key.as_bytes()).ok());
        let _ = writeln!(
            o,
            "  first seen  {}",
            crate::known_signers::describe(
                &escape_untrusted(&m.name),
                pin,
                signer.as_ref(),
                lineage.as_ref()
            )
        );
    }
}

/// One row per section: kind, codec, sizes, ratio, hash.
fn write_sections(o: &mut String, m: &smolvm_format::Manifest) {
    let _ = writeln!(
        o,
        "sections (hashes not checked here; `smolvm pack verify` checks them)"
    );
    let _ = writeln!(
        o,
        "  {:<10} {:<6} {:>10} {:>10} {:>6}  sha256",
        "kind", "codec", "stored", "size", "ratio"
    );
    for s in &m.sections {
        let _ = writeln!(
            o,
            "  {:<10} {:<6} {:>10} {:>10} {:>6.3}  {}",
            s.kind.name(),
            match s.compression {
                smolvm_format::Compression::None => "none",
                smolvm_format::Compression::Zstd => "zstd",
            },
            human_size(s.stored_len),
            human_size(s.size),
            ratio(s.stored_len, s.size),
            s.sha256
        );
    }
}

/// The config's image and what the workload runs as, with where each
/// value came from.
fn write_workload(o: &mut String, c: &smolvm_format::MachineConfig) {
    let _ = writeln!(o, "config");
    if let Some(image) = &c.image {
        let _ = writeln!(
            o,
            "  image       {}{}",
            escape_untrusted(image),
            c.image_digest
                .as_ref()
                .map(|d| format!(" @ {d}"))
                .unwrap_or_default()
        );
    }
    let _ = writeln!(
        o,
        "  entrypoint  {}{}",
        json_list(&c.entrypoint),
        provenance_note(c, "entrypoint")
    );
    let _ = writeln!(
        o,
        "  cmd         {}{}",
        json_list(&c.cmd),
        provenance_note(c, "cmd")
    );
    let _ = writeln!(
        o,
        "  env         {}{}",
        json_list(&c.env),
        provenance_note(c, "env")
    );
    let _ = writeln!(
        o,
        "  workdir     {}{}",
        or_dash(&c.workdir),
        provenance_note(c, "workdir")
    );
    let ids = match (c.uid, c.gid) {
        (Some(u), Some(g)) if c.user.as_deref() != Some(&format!("{u}:{g}")) => {
            format!(" = {u}:{g}")
        }
        _ => String::new(),
    };
    let _ = writeln!(
        o,
        "  user        {}{ids}{}",
        or_dash(&c.user),
        provenance_note(c, "user")
    );
    let _ = writeln!(o, "  cpus        {}{}", c.cpus, provenance_note(c, "cpus"));
    let _ = writeln!(
        o,
        "  memory      {} MiB{}",
        c.memory_mib,
        provenance_note(c, "memory_mib")
    );
}

/// The network device and the egress policy it runs under.
fn write_network(o: &mut String, c: &smolvm_format::MachineConfig) {
    let _ = writeln!(
        o,
        "  net         {}{}",
        if c.net { "on" } else { "off" },
        provenance_note(c, "net")
    );
    match crate::net::Policy::from_config(c, &[]) {
        Ok(p) => {
            for line in crate::net::describe(&p) {
                let _ = writeln!(o, "    {}", escape_untrusted(&line));
            }
        }
        Err(e) => {
            let _ = writeln!(
                o,
                "    INVALID network settings ({}): the machine refuses to start",
                escape_untrusted(&e.to_string())
            );
        }
    }
}

/// What the machine may share with the host and keep: the current
/// directory, run-time volumes, persistent state, disks, init steps and
/// the SSH agent.
fn write_shares_and_state(
    o: &mut String,
    c: &smolvm_format::MachineConfig,
    volumes: &[crate::settings::Volume],
) {
    if c.share_cwd {
        let _ = writeln!(
            o,
            "  share_cwd   asks for your current directory, at {} (read-write, the workload starts there), shared only with your consent (--smolvm-share-cwd, or your answer on a terminal)",
            crate::settings::CWD_GUEST_PATH
        );
    }
    for v in volumes {
        let _ = writeln!(
            o,
            "  volume      {} -> {} ({})  ({})",
            escape_untrusted(&v.host.to_string_lossy()),
            escape_untrusted(&v.guest),
            if v.read_only {
                "read-only"
            } else {
                "read-write"
            },
            crate::settings::RUN_TIME
        );
    }
    if !c.volumes.is_empty() {
        let _ = writeln!(
            o,
            "  state       {} (persistent state)",
            json_list(&c.volumes)
        );
    }
    if let Some(g) = c.storage_gib {
        let _ = writeln!(o, "  storage     {g} GiB");
    }
    if let Some(g) = c.overlay_gib {
        let _ = writeln!(o, "  overlay     {g} GiB");
    }
    if !c.init.is_empty() {
        let _ = writeln!(
            o,
            "  init        {} (run in order as root before the workload)",
            json_list(&c.init)
        );
    }
    if c.ssh_agent {
        let _ = writeln!(
            o,
            "  ssh_agent   requested: forwarded only when the user allows it (--smolvm-ssh-agent)"
        );
    }
}

/// A string list as JSON, escaped for the terminal.
fn json_list(v: &[String]) -> String {
    escape_untrusted(&serde_json::to_string(v).expect("strings serialise")).into_owned()
}

/// An optional value, escaped, or `-`.
fn or_dash(v: &Option<String>) -> String {
    v.as_deref()
        .map_or_else(|| "-".into(), |s| escape_untrusted(s).into_owned())
}

/// `  (layer)`: the layer a config field came from, when recorded.
fn provenance_note(c: &smolvm_format::MachineConfig, field: &str) -> String {
    c.provenance
        .get(field)
        .map(|p| format!("  ({})", escape_untrusted(p)))
        .unwrap_or_default()
}

/// The `--json` form of `pack inspect`.
pub fn render_json<R: ReadAt + ?Sized>(
    art: &Artifact<'_, R>,
    sig: &Result<SignatureState, String>,
) -> serde_json::Value {
    let m = &art.manifest;
    let (state, key_id, error) = match sig {
        Ok(SignatureState::Unsigned) => ("unsigned", None, None),
        Ok(SignatureState::SelfConsistent { key_id }) => {
            ("self-consistent", Some(key_id.to_string()), None)
        }
        Ok(SignatureState::Trusted { key_id }) => ("trusted", Some(key_id.to_string()), None),
        Err(e) => ("invalid", None, Some(e.clone())),
    };
    json!({
        "form": if art.trailer.payload_offset == 0 { "bare" } else { "executable" },
        "file_size": art.source().size(),
        "payload_offset": art.trailer.payload_offset,
        "format_version": m.format_version,
        "name": m.name,
        "version": m.version,
        "created": m.created,
        "target": m.target,
        "signature": {
            "state": state,
            "key_id": key_id,
            "signer": m.signer,
            // Key ids oldest first, ending with the signer's, when the
            // signer carries a rotation record that verified.
            "rotation": sig.as_ref().ok().and_then(|_| crate::rotation::lineage(m).ok().flatten())
                .filter(crate::rotation::Lineage::rotated)
                .map(|l| l.key_ids().iter().map(ToString::to_string).collect::<Vec<_>>()),
            "error": error,
        },
        "stub": m.stub,
        "sections": m.sections.iter().map(|s| json!({
            "kind": s.kind,
            "compression": s.compression,
            "offset": art.section_file_offset(s),
            "stored_len": s.stored_len,
            "size": s.size,
            "ratio": ratio(s.stored_len, s.size),
            "sha256": s.sha256,
        })).collect::<Vec<_>>(),
        "config": m.config,
        "network_policy": network_policy(&m.config),
    })
}

/// What the runtime does with the config's network settings; the JSON twin
/// of the human `net` lines.
fn network_policy(c: &smolvm_format::MachineConfig) -> serde_json::Value {
    match crate::net::Policy::from_config(c, &[]) {
        Ok(p) => json!({
            "network": p.net,
            "allow_lists": p.has_allow_lists(),
            "enforced": true,
            "boots": true,
            "allow_hosts": p.hosts.iter().map(|h| h.to_string()).collect::<Vec<_>>(),
            "allow_cidrs": p.cidrs.iter().map(|n| n.to_string()).collect::<Vec<_>>(),
            "denied_by_default": if p.net {
                vec![
                    "loopback",
                    "link-local",
                    "host-addresses",
                    "multicast",
                    "local-networks",
                ]
            } else {
                Vec::new()
            },
            "published_ports": p.publish.iter().map(|q| json!({
                "address": q.addr.to_string(),
                "host": q.host,
                "guest": q.guest,
            })).collect::<Vec<_>>(),
            "ssh_agent_requested": c.ssh_agent,
        }),
        Err(e) => json!({
            "network": c.net,
            "allow_lists": !c.network.allow_hosts.is_empty() || !c.network.allow_cidrs.is_empty(),
            "enforced": false,
            "boots": false,
            "error": e.to_string(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::escape_untrusted;

    #[test]
    fn escape_untrusted_shows_every_control_character() {
        assert!(matches!(
            escape_untrusted("/srv/app ünï"),
            std::borrow::Cow::Borrowed(_)
        ));
        assert_eq!(
            escape_untrusted("a\x1b[2K\r\n\t\x7f\u{85}\u{9b}\u{202e}\u{2066}b"),
            "a\\u{1b}[2K\\u{d}\\u{a}\\u{9}\\u{7f}\\u{85}\\u{9b}\\u{202e}\\u{2066}b"
        );
        assert_eq!(escape_untrusted("\0"), "\\u{0}");
    }
}

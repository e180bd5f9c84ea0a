//! The Smolfile: a TOML description of a machine.
//!
//! The schema is smolvm's (image, entrypoint, cmd, env, workdir, cpus, memory,
//! net, ports, volumes, storage, overlay, init, `[network]`, `[auth]`) plus
//! `rootfs` and `kernel` for packing, `share_cwd`, `[artifact]` for the
//! artifact's identity and `[pack]` for packing options. Unknown keys are
//! errors; relative paths resolve against the Smolfile's directory.
//!
//! A Smolfile written for smolvm packs as well ([`Smolfile::parse`] says what
//! happens to each of its keys): `[artifact]`'s (or `[pack]`'s) `cpus`,
//! `memory`, `entrypoint`, `cmd` win over the top-level ones, as smolvm's
//! `pack create` does; `oci_platform` must be the platform we pack; `[dev]`
//! is ignored with a note (it is for smolvm's local runs); `[restart]`
//! `policy = "never"` is what a packed machine does; the rest of smolvm's
//! run-time machinery (`[health]`, `[service]`, `[secrets]`, `[fork]`, other
//! restart policies, `gpu`, `cuda`, ...) is refused with a line that says so.

use std::path::{Path, PathBuf};

use serde::Deserialize;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum SmolfileError {
    #[error("Smolfile {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// toml's message already names the line, the column and the key.
    #[error("Smolfile {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("Smolfile {path}: field `{field}`: {fault}")]
    Invalid {
        path: PathBuf,
        field: &'static str,
        fault: String,
    },
}

#[derive(Debug, Default, Deserialize, Clone, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct NetworkSection {
    #[serde(default)]
    pub allow_hosts: Vec<String>,
    #[serde(default)]
    pub allow_cidrs: Vec<String>,
}

#[derive(Debug, Default, Deserialize, Clone, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct AuthSection {
    #[serde(default)]
    pub ssh_agent: bool,
}

/// Identity of the artifact, and smolvm's artifact overrides.
#[derive(Debug, Default, Deserialize, Clone, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ArtifactSection {
    pub name: Option<String>,
    pub version: Option<String>,
    /// smolvm: vCPUs of the packed artifact (wins over the top-level `cpus`).
    pub cpus: Option<u8>,
    /// smolvm: memory (MiB) of the packed artifact.
    pub memory: Option<u32>,
    /// smolvm: entrypoint of the packed artifact.
    pub entrypoint: Option<Vec<String>>,
    /// smolvm: cmd of the packed artifact.
    pub cmd: Option<Vec<String>>,
    /// smolvm: the image platform to pack (`linux/amd64`).
    pub oci_platform: Option<String>,
    /// The application icon, a square PNG (crate::icon); relative to the
    /// Smolfile. `--smolvm-install` puts it in the person's icon theme.
    pub icon: Option<PathBuf>,
}

/// How the root filesystem image stores file data
/// (`--rootfs-compression`, `[pack] rootfs_compression`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RootfsCompression {
    /// LZ4 inside the image, decompressed by the guest kernel on read:
    /// the image a first start writes to the user's disk is about 37%
    /// smaller (Debian: 74 vs 117 MB) and written that much faster; the
    /// download grows by about 15% (zstd cannot shrink LZ4 data as far as
    /// raw data) and pack create takes about a quarter longer.
    Lz4,
    /// File data as is (the default): the smallest download, the fastest
    /// pack, the guest reads without decompressing; the largest image in
    /// the user's cache.
    #[default]
    None,
}

impl From<RootfsCompression> for smolvm_rootfs::erofs::Compression {
    fn from(c: RootfsCompression) -> Self {
        match c {
            RootfsCompression::Lz4 => smolvm_rootfs::erofs::Compression::Lz4,
            RootfsCompression::None => smolvm_rootfs::erofs::Compression::None,
        }
    }
}

/// Packing options; command-line flags override them. smolvm reads
/// `[pack]` as another name for `[artifact]`: its keys are taken here too.
#[derive(Debug, Default, Deserialize, Clone, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct PackSection {
    /// zstd level, 1..=22.
    pub level: Option<i32>,
    /// `"none"` (default) or `"lz4"`: see `pack create --help`.
    pub rootfs_compression: Option<RootfsCompression>,
    /// Secret key file to sign with, or a key source (`env:NAME`,
    /// `ssh-agent[:WHICH]`, `pkcs11:URI`; see [`crate::signer::KeySpec`]).
    pub key: Option<PathBuf>,
    /// Stub executable to append the payload to.
    pub stub: Option<PathBuf>,
    pub cpus: Option<u8>,
    pub memory: Option<u32>,
    pub entrypoint: Option<Vec<String>>,
    pub cmd: Option<Vec<String>>,
    pub oci_platform: Option<String>,
}

/// smolvm's `[dev]`: settings for its local development runs, which a
/// packed artifact never carries (smolvm leaves them out of artifacts too).
/// Parsed, so that a misspelt key is still an error, and ignored.
#[derive(Debug, Default, Deserialize, Clone, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct DevSection {
    #[serde(default)]
    pub volumes: Vec<String>,
    #[serde(default)]
    pub env: Vec<String>,
    #[serde(default)]
    pub init: Vec<String>,
    pub workdir: Option<String>,
    #[serde(default)]
    pub ports: Vec<String>,
}

/// smolvm's `[restart]`. A packed executable runs its workload once, in the
/// foreground: `policy = "never"` says exactly that; any other is refused.
#[derive(Debug, Default, Deserialize, Clone, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RestartSection {
    pub policy: Option<String>,
    pub max_retries: Option<u32>,
    pub max_backoff: Option<String>,
}

/// The platform `pack create` packs for (the artifact's target); smolvm's
/// `oci_platform` must name it.
pub const PACKED_PLATFORM: &str = "linux/amd64";

#[derive(Debug, Default, Deserialize, Clone, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Smolfile {
    /// OCI image reference (packing from images comes with a later issue).
    pub image: Option<String>,
    /// Root filesystem: a directory or a tar archive (.tar, .tar.gz, .tar.zst).
    pub rootfs: Option<PathBuf>,
    /// Guest kernel: an ELF vmlinux or a libkrunfw.so.
    pub kernel: Option<PathBuf>,
    pub entrypoint: Option<Vec<String>>,
    pub cmd: Option<Vec<String>>,
    pub env: Option<Vec<String>>,
    pub workdir: Option<String>,
    pub user: Option<String>,
    pub cpus: Option<u8>,
    /// MiB.
    pub memory: Option<u32>,
    pub net: Option<bool>,
    pub ports: Option<Vec<String>>,
    pub volumes: Option<Vec<String>>,
    /// GiB.
    pub storage: Option<u32>,
    /// GiB.
    pub overlay: Option<u32>,
    pub init: Option<Vec<String>>,
    /// Share the user's current directory (read-write) at `/cwd` and start
    /// the workload there: the tool case (`./tool notes.txt`).
    pub share_cwd: Option<bool>,
    pub network: Option<NetworkSection>,
    pub auth: Option<AuthSection>,
    pub artifact: Option<ArtifactSection>,
    pub pack: Option<PackSection>,
    /// smolvm's; ignored with a note.
    pub dev: Option<DevSection>,
    /// smolvm's; only `policy = "never"` is accepted.
    pub restart: Option<RestartSection>,
    // smolvm's keys for what a packed machine cannot do: parsed as any TOML
    // so the refusal names them ([`Smolfile::check_smolvm_only`]).
    pub health: Option<toml::Value>,
    pub service: Option<toml::Value>,
    pub secrets: Option<toml::Value>,
    pub fork: Option<toml::Value>,
    pub gpu: Option<toml::Value>,
    pub gpu_vram: Option<toml::Value>,
    pub rosetta: Option<toml::Value>,
    pub cuda: Option<toml::Value>,
    pub auto_graph: Option<toml::Value>,
    pub docker_socket: Option<toml::Value>,
    /// What parsing decided to pass over, for the user to read (`[dev]`).
    #[serde(skip)]
    pub notes: Vec<String>,
}

impl Smolfile {
    /// Reads, parses and checks a Smolfile; relative paths in it are made
    /// relative to its directory.
    pub fn load(path: &Path) -> Result<Smolfile, SmolfileError> {
        let text = std::fs::read_to_string(path).map_err(|source| SmolfileError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let mut smolfile = Smolfile::parse(&text, path)?;
        let base = path.parent().unwrap_or(Path::new("."));
        let resolve = |p: &mut PathBuf| {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        };
        smolfile.rootfs.as_mut().map(resolve);
        smolfile.kernel.as_mut().map(resolve);
        if let Some(icon) = smolfile.artifact.as_mut().and_then(|a| a.icon.as_mut()) {
            resolve(icon);
        }
        if let Some(pack) = smolfile.pack.as_mut() {
            // Key sources that are not files (`env:NAME`, `ssh-agent`,
            // `pkcs11:…`) are not paths to resolve.
            if let Some(key) = pack.key.as_mut() {
                if crate::signer::KeySpec::parse(key.as_os_str()).is_ok_and(|k| k.is_file()) {
                    resolve(key);
                }
            }
            pack.stub.as_mut().map(resolve);
        }
        Ok(smolfile)
    }

    /// Parses Smolfile text; `path` is only used in messages. smolvm's
    /// artifact overrides are applied (they win over the top-level values),
    /// so the result reads like one of ours.
    pub fn parse(text: &str, path: &Path) -> Result<Smolfile, SmolfileError> {
        let mut smolfile: Smolfile = toml::from_str(text).map_err(|e| SmolfileError::Parse {
            path: path.to_path_buf(),
            message: e.to_string().trim_end().to_string(),
        })?;
        smolfile.check_smolvm_only(path)?;
        smolfile.apply_artifact_overrides(path)?;
        smolfile.check(path)?;
        Ok(smolfile)
    }

    /// Refuses smolvm's keys for what a packed machine cannot do, and notes
    /// the `[dev]` section it ignores.
    fn check_smolvm_only(&mut self, path: &Path) -> Result<(), SmolfileError> {
        let refuse = |field: &'static str, fault: &str| {
            Err(SmolfileError::Invalid {
                path: path.to_path_buf(),
                field,
                fault: fault.to_string(),
            })
        };
        let truthy =
            |v: &Option<toml::Value>| v.as_ref().is_some_and(|v| v.as_bool() != Some(false));
        if truthy(&self.gpu) {
            return refuse("gpu", "a packed machine has no GPU device (smolvm's virtio-gpu is not in the packed runtime); remove `gpu`");
        }
        if self.gpu_vram.is_some() {
            return refuse(
                "gpu_vram",
                "a packed machine has no GPU device; remove `gpu_vram`",
            );
        }
        for (field, v) in [
            ("cuda", &self.cuda),
            ("auto_graph", &self.auto_graph),
            ("rosetta", &self.rosetta),
            ("docker_socket", &self.docker_socket),
        ] {
            if truthy(v) {
                return refuse(
                    field,
                    "is smolvm's, and not supported in a packed machine; remove it",
                );
            }
        }
        if self.health.is_some() {
            return refuse("health", "health checks are not supported in a packed machine: it runs its workload once, in the foreground, and its exit code is the program's; remove [health]");
        }
        if self.service.is_some() {
            return refuse("service", "deployment metadata is not supported in a packed machine; publish ports with `ports` (and `net = true`) or --smolvm-publish, and remove [service]");
        }
        if self.secrets.is_some() {
            return refuse("secrets", "secret references are not supported in a packed machine; pass values at run time (--smolvm-env=NAME=value) and remove [secrets]");
        }
        if self.fork.is_some() {
            return refuse(
                "fork",
                "forkable launch is not supported in a packed machine; remove [fork]",
            );
        }
        if let Some(r) = &self.restart {
            match r.policy.as_deref() {
                None | Some("never") if r.max_retries.is_none() && r.max_backoff.is_none() => {}
                _ => {
                    return refuse("restart", "a packed machine runs its workload once and exits with its code: only policy = \"never\" is supported; restart it from your own supervisor (systemd, a shell loop)")
                }
            }
        }
        if self.dev.is_some() {
            self.notes.push(format!(
                "{}: [dev] is ignored: it holds smolvm's local development settings, which a packed artifact never carries",
                path.display()
            ));
        }
        Ok(())
    }

    /// smolvm's `[artifact]` (or `[pack]`) `cpus`, `memory`, `entrypoint`,
    /// `cmd` replace the top-level values; `oci_platform` must be ours.
    fn apply_artifact_overrides(&mut self, path: &Path) -> Result<(), SmolfileError> {
        let a = self.artifact.clone().unwrap_or_default();
        let p = self.pack.clone().unwrap_or_default();
        for platform in [&a.oci_platform, &p.oci_platform].into_iter().flatten() {
            if platform != PACKED_PLATFORM {
                return Err(SmolfileError::Invalid {
                    path: path.to_path_buf(),
                    field: "artifact.oci_platform",
                    fault: format!(
                        "{platform:?}: this packer builds {PACKED_PLATFORM} machines only; write oci_platform = \"{PACKED_PLATFORM}\" or remove it"
                    ),
                });
            }
        }
        // [artifact] wins over [pack], as the section smolvm documents.
        if let Some(v) = a.cpus.or(p.cpus) {
            self.cpus = Some(v);
        }
        if let Some(v) = a.memory.or(p.memory) {
            self.memory = Some(v);
        }
        if let Some(v) = a.entrypoint.or(p.entrypoint) {
            self.entrypoint = Some(v);
        }
        if let Some(v) = a.cmd.or(p.cmd) {
            self.cmd = Some(v);
        }
        Ok(())
    }

    fn check(&self, path: &Path) -> Result<(), SmolfileError> {
        let invalid = |field: &'static str, fault: String| SmolfileError::Invalid {
            path: path.to_path_buf(),
            field,
            fault,
        };
        self.check_characters(path)?;
        if let Some(env) = &self.env {
            for e in env {
                match e.split_once('=') {
                    Some((k, _)) if !k.is_empty() && !k.contains('\0') => {}
                    _ => {
                        return Err(invalid(
                            "env",
                            format!("entry {e:?} is not KEY=VALUE (write it as \"NAME=value\")"),
                        ))
                    }
                }
            }
        }
        if self.cpus == Some(0) {
            return Err(invalid("cpus", "must be at least 1".into()));
        }
        if let Some(m) = self.memory {
            if m < 64 {
                return Err(invalid(
                    "memory",
                    format!("{m} MiB is below the 64 MiB minimum"),
                ));
            }
        }
        if let Some(level) = self.pack.as_ref().and_then(|p| p.level) {
            if !(1..=22).contains(&level) {
                return Err(invalid("pack.level", format!("{level} is outside 1..=22")));
            }
        }
        if let Some(w) = &self.workdir {
            if !w.starts_with('/') {
                return Err(invalid(
                    "workdir",
                    format!("{w:?} must be an absolute path in the guest"),
                ));
            }
        }
        self.check_volumes(path)?;
        self.check_disks(path)?;
        if self.share_cwd == Some(true) && self.workdir.is_some() {
            return Err(invalid(
                "share_cwd",
                format!(
                    "the workload starts in the shared directory {}; remove `workdir` (or `share_cwd`)",
                    smolvm_runtime::settings::CWD_GUEST_PATH
                ),
            ));
        }
        if let Some(name) = self.artifact.as_ref().and_then(|a| a.name.as_ref()) {
            smolvm_format::manifest::validate_name(name)
                .map_err(|e| invalid("artifact.name", e))?;
        }
        self.check_network(path)
    }

    /// `volumes` in a Smolfile name guest paths only: the artifact's
    /// persistent state. A host path would travel with the artifact to
    /// machines where it means something else, or nothing.
    fn check_volumes(&self, path: &Path) -> Result<(), SmolfileError> {
        let invalid = |fault: String| SmolfileError::Invalid {
            path: path.to_path_buf(),
            field: "volumes",
            fault,
        };
        let mut seen: Vec<String> = Vec::new();
        for v in self.volumes.iter().flatten() {
            if v.contains(':') {
                return Err(invalid(format!(
                    "{v:?} names a host path; a distributed artifact never carries host paths. Write only the guest path (volumes = [\"/data\"]) for persistent state kept per artifact, share a host directory at run time (--smolvm-volume=HOST:GUEST, pack run -v), or share the user's current directory with share_cwd = true"
                )));
            }
            let guest = smolvm_runtime::settings::check_guest_path("guest path", v)
                .map_err(|e| invalid(e.0))?;
            if guest == smolvm_runtime::settings::CWD_GUEST_PATH && self.share_cwd == Some(true) {
                return Err(invalid(format!(
                    "{v:?} is where share_cwd puts the current directory; choose another path"
                )));
            }
            if seen.contains(&guest) {
                return Err(invalid(format!("{v:?} is listed twice")));
            }
            seen.push(guest);
        }
        Ok(())
    }

    /// Storage and overlay sizes and volumes through the runtime's own
    /// check: a machine every start would refuse is refused here instead.
    fn check_disks(&self, path: &Path) -> Result<(), SmolfileError> {
        use smolvm_runtime::disk::{check_disk_config, DiskError, MAX_GIB};
        let config = smolvm_format::MachineConfig {
            storage_gib: self.storage,
            overlay_gib: self.overlay,
            volumes: self.volumes.clone().unwrap_or_default(),
            ..Default::default()
        };
        check_disk_config(&config).map_err(|e| {
            let (field, fault) = match e {
                DiskError::Size { field, gib } => (
                    field,
                    format!(
                        "{gib} GiB is outside 1..={MAX_GIB}; write a size in GiB within that range"
                    ),
                ),
                DiskError::Volume { entry, why } => ("volumes", format!("{entry:?}: {why}")),
                other => ("volumes", other.to_string()),
            };
            SmolfileError::Invalid {
                path: path.to_path_buf(),
                field,
                fault,
            }
        })
    }

    /// The lists and ports as the runtime will read them: a machine that
    /// would refuse to start is refused at pack time instead.
    fn check_network(&self, path: &Path) -> Result<(), SmolfileError> {
        use smolvm_runtime::net::{NetError, Policy};
        let mut config = smolvm_format::MachineConfig {
            net: self.net == Some(true),
            ports: self.ports.clone().unwrap_or_default(),
            ..Default::default()
        };
        if let Some(n) = &self.network {
            config.network.allow_cidrs = n.allow_cidrs.clone();
            config.network.allow_hosts = n.allow_hosts.clone();
        }
        Policy::from_config(&config, &[]).map(drop).map_err(|e| {
            let field = match e {
                NetError::Cidr { .. } => "network.allow_cidrs",
                NetError::Host { .. } => "network.allow_hosts",
                NetError::Port { .. }
                | NetError::DuplicatePort { .. }
                | NetError::PortsWithoutNet => "ports",
            };
            SmolfileError::Invalid {
                path: path.to_path_buf(),
                field,
                fault: e.to_string(),
            }
        })
    }

    /// Control characters (C0 including ESC and NUL, DEL, C1) end up in
    /// `inspect` output and in the guest's run spec: no config string may
    /// carry one. Command lines and the environment may keep tab and
    /// newline, which shell scripts in `cmd = ["sh", "-c", "..."]` need;
    /// `inspect` shows those escaped.
    fn check_characters(&self, path: &Path) -> Result<(), SmolfileError> {
        let one_line = |field: &'static str, v: &str| check_no_controls(path, field, v, false);
        let each = |field: &'static str, v: &Option<Vec<String>>, allow_lines: bool| {
            v.iter()
                .flatten()
                .try_for_each(|x| check_no_controls(path, field, x, allow_lines))
        };
        for (field, v) in [
            ("image", &self.image),
            ("workdir", &self.workdir),
            ("user", &self.user),
        ] {
            v.as_deref().map_or(Ok(()), |v| one_line(field, v))?;
        }
        each("entrypoint", &self.entrypoint, true)?;
        each("cmd", &self.cmd, true)?;
        each("env", &self.env, true)?;
        each("init", &self.init, true)?;
        each("ports", &self.ports, false)?;
        each("volumes", &self.volumes, false)?;
        if let Some(n) = &self.network {
            n.allow_hosts
                .iter()
                .try_for_each(|h| one_line("network.allow_hosts", h))?;
            n.allow_cidrs
                .iter()
                .try_for_each(|c| one_line("network.allow_cidrs", c))?;
        }
        if let Some(a) = &self.artifact {
            a.name
                .as_deref()
                .map_or(Ok(()), |v| one_line("artifact.name", v))?;
            a.version
                .as_deref()
                .map_or(Ok(()), |v| one_line("artifact.version", v))?;
        }
        Ok(())
    }
}

/// Refuses a control character in `value`, naming it and its position.
fn check_no_controls(
    path: &Path,
    field: &'static str,
    value: &str,
    allow_lines: bool,
) -> Result<(), SmolfileError> {
    let bad = value
        .char_indices()
        .find(|&(_, c)| c.is_control() && !(allow_lines && matches!(c, '\t' | '\n')));
    match bad {
        None => Ok(()),
        Some((at, c)) => Err(SmolfileError::Invalid {
            path: path.to_path_buf(),
            field,
            fault: format!(
                "control character {} at byte {at} of {:?}; control characters (ESC, NUL, DEL, C1) are not allowed in config strings, remove it{}",
                c.escape_unicode(),
                value,
                if allow_lines { "" } else { " (this field is one line: no tabs or newlines either)" }
            ),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn network_lists_and_ports_are_checked_at_pack_time() {
        for (text, field) in [
            (
                "net = true\n[network]\nallow_cidrs = [\"10.0.0.0/33\"]\n",
                "network.allow_cidrs",
            ),
            (
                "net = true\n[network]\nallow_hosts = [\"a b\"]\n",
                "network.allow_hosts",
            ),
            ("net = true\nports = [\"80\"]\n", "ports"),
            ("net = true\nports = [\"8080:80\", \"8080:81\"]\n", "ports"),
            ("ports = [\"8080:80\"]\n", "ports"),
        ] {
            let err = Smolfile::parse(text, Path::new("S"))
                .unwrap_err()
                .to_string();
            assert!(err.contains(field), "{text}: {err}");
        }
        Smolfile::parse(
            "net = true\nports = [\"0.0.0.0:8080:80\"]\n[network]\nallow_hosts = [\"*.example.com\"]\nallow_cidrs = [\"10.0.0.0/8\", \"192.0.2.1\"]\n",
            Path::new("S"),
        )
        .unwrap();
    }

    /// Values every start would refuse are refused when packing, naming
    /// the Smolfile field and the range (issue 22: `storage = 0` packed,
    /// signed, and then never started).
    #[test]
    fn disk_sizes_and_volumes_every_start_refuses_are_refused_at_pack_time() {
        for (text, field, want) in [
            ("storage = 0\n", "storage", "0 GiB is outside 1..=2048"),
            (
                "volumes = [\"/data\"]\nstorage = 4096\n",
                "storage",
                "4096 GiB",
            ),
            ("overlay = 3000\n", "overlay", "3000 GiB"),
            ("overlay = 0\n", "overlay", "0 GiB"),
            ("volumes = [\"/.smolvm\"]\n", "volumes", "/.smolvm"),
        ] {
            let err = Smolfile::parse(text, Path::new("S"))
                .unwrap_err()
                .to_string();
            assert!(
                err.contains(&format!("field `{field}`")) && err.contains(want),
                "{text}: {err}"
            );
        }
        Smolfile::parse(
            "storage = 1\noverlay = 2048\nvolumes = [\"/data\"]\n",
            Path::new("S"),
        )
        .unwrap();
    }

    #[test]
    fn unknown_key_names_key_and_line() {
        let err = Smolfile::parse("cpus = 1\nmemroy = 512\n", Path::new("Smolfile")).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("memroy"), "{msg}");
        assert!(msg.contains("line 2"), "{msg}");
    }

    #[test]
    fn unknown_key_in_table_is_an_error() {
        let err = Smolfile::parse("[network]\nallow_host = []\n", Path::new("S")).unwrap_err();
        assert!(err.to_string().contains("allow_host"), "{err}");
    }

    #[test]
    fn full_schema_parses() {
        let s = Smolfile::parse(
            r#"
image = "alpine:3.20"
rootfs = "root"
kernel = "vmlinux"
entrypoint = ["/bin/sh", "-c"]
cmd = ["echo hi"]
env = ["A=1", "B="]
workdir = "/srv"
user = "1000:1000"
cpus = 2
memory = 1024
net = true
ports = ["8080:80"]
volumes = ["/data"]
storage = 20
overlay = 2
init = ["true"]
[network]
allow_hosts = ["example.com"]
allow_cidrs = ["10.0.0.0/8"]
[auth]
ssh_agent = true
[artifact]
name = "demo"
version = "1.2.3"
[pack]
level = 9
"#,
            Path::new("S"),
        )
        .unwrap();
        assert_eq!(s.cpus, Some(2));
        assert_eq!(s.network.unwrap().allow_cidrs, vec!["10.0.0.0/8"]);
        assert!(s.auth.unwrap().ssh_agent);
    }

    fn refusal(text: &str) -> String {
        Smolfile::parse(text, Path::new("S"))
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn host_paths_in_volumes_are_refused_and_guest_paths_are_state() {
        for text in [
            "volumes = [\"./data:/data\"]",
            "volumes = [\"/srv/data:/data:ro\"]",
        ] {
            let e = refusal(text);
            assert!(
                e.contains("`volumes`")
                    && e.contains("never carries host paths")
                    && e.contains("--smolvm-volume"),
                "{text}: {e}"
            );
        }
        for (text, says) in [
            ("volumes = [\"state\"]", "absolute"),
            ("volumes = [\"/\"]", "whole root"),
            ("volumes = [\"/proc/x\"]", "/proc"),
            ("volumes = [\"/a/../b\"]", ".."),
            ("volumes = [\"/a\", \"/a/\"]", "twice"),
            ("share_cwd = true\nvolumes = [\"/cwd\"]", "share_cwd"),
        ] {
            let e = refusal(text);
            assert!(e.contains(says), "{text}: {e}");
        }
        let s =
            Smolfile::parse("volumes = [\"/state\", \"/var/lib/app\"]", Path::new("S")).unwrap();
        assert_eq!(s.volumes.unwrap(), vec!["/state", "/var/lib/app"]);
    }

    #[test]
    fn share_cwd_owns_the_working_directory() {
        let e = refusal("share_cwd = true\nworkdir = \"/srv\"");
        assert!(
            e.contains("`share_cwd`") && e.contains("remove `workdir`"),
            "{e}"
        );
        let s =
            Smolfile::parse("share_cwd = true\ncmd = [\"wc\", \"-l\"]", Path::new("S")).unwrap();
        assert_eq!(s.share_cwd, Some(true));
    }

    /// smolvm's own example Smolfile (its documented schema), minus what a
    /// packed machine refuses.
    const SMOLVM_EXAMPLE: &str = r#"
image = "ghcr.io/acme/api:1.2.3"
entrypoint = ["/app/api"]
cmd = ["serve"]
workdir = "/app"
env = ["PORT=8080"]

cpus = 2
memory = 1024
net = true

[dev]
volumes = ["./src:/app"]
init = ["cargo build"]
ports = ["8080:8080"]
env = ["DEBUG=1"]
workdir = "/src"

[artifact]
cpus = 4
memory = 2048
cmd = ["serve", "--prod"]
oci_platform = "linux/amd64"

[network]
allow_hosts = ["pypi.org"]
allow_cidrs = ["10.0.0.0/8"]

[restart]
policy = "never"

[auth]
ssh_agent = true
"#;

    #[test]
    fn a_smolvm_smolfile_packs_with_its_artifact_values() {
        let s = Smolfile::parse(SMOLVM_EXAMPLE, Path::new("Smolfile")).unwrap();
        assert_eq!((s.cpus, s.memory), (Some(4), Some(2048)));
        assert_eq!(
            s.cmd.as_deref(),
            Some(&["serve".to_string(), "--prod".to_string()][..])
        );
        assert_eq!(s.entrypoint.as_deref(), Some(&["/app/api".to_string()][..]));
        assert_eq!(s.workdir.as_deref(), Some("/app"));
        assert_eq!(s.env.as_deref(), Some(&["PORT=8080".to_string()][..]));
        // [dev] is ignored, with a note naming it.
        assert_eq!(s.notes.len(), 1);
        assert!(s.notes[0].contains("[dev] is ignored"), "{:?}", s.notes);
        // smolvm's [pack] is another name for [artifact].
        let s = Smolfile::parse("cpus = 1\n[pack]\ncpus = 3\nlevel = 5\n", Path::new("S")).unwrap();
        assert_eq!(s.cpus, Some(3));
        // gpu = false asks for nothing we lack.
        Smolfile::parse("gpu = false\ncuda = false\n", Path::new("S")).unwrap();
    }

    #[test]
    fn smolvm_features_a_packed_machine_lacks_are_refused_by_name() {
        for (text, field, says) in [
            ("gpu = true", "`gpu`", "no GPU"),
            ("gpu_vram = 4096", "`gpu_vram`", "no GPU"),
            ("cuda = true", "`cuda`", "not supported in a packed machine"),
            (
                "rosetta = true",
                "`rosetta`",
                "not supported in a packed machine",
            ),
            (
                "[health]\nexec = [\"curl\", \"-f\", \"http://localhost/\"]\ninterval = \"10s\"",
                "`health`",
                "not supported in a packed machine",
            ),
            (
                "[restart]\npolicy = \"on-failure\"\nmax_retries = 5",
                "`restart`",
                "only policy = \"never\"",
            ),
            (
                "[restart]\npolicy = \"always\"",
                "`restart`",
                "runs its workload once",
            ),
            (
                "[service]\nport = 8080\nprotocol = \"http\"",
                "`service`",
                "not supported in a packed machine",
            ),
            (
                "[secrets]\nDB = { from_env = \"PGPASSWORD\" }",
                "`secrets`",
                "--smolvm-env",
            ),
            (
                "[fork]\nenabled = true",
                "`fork`",
                "not supported in a packed machine",
            ),
            (
                "[artifact]\noci_platform = \"linux/arm64\"",
                "`artifact.oci_platform`",
                "linux/amd64",
            ),
        ] {
            let e = refusal(text);
            assert!(e.contains(field) && e.contains(says), "{text}: {e}");
        }
        // Unknown keys stay errors, in smolvm's sections as in ours.
        for text in [
            "[dev]\nvolume = []",
            "[artifact]\ncpu = 2",
            "[restart]\npolicy2 = \"never\"",
            "gpus = true",
        ] {
            let e = refusal(text);
            assert!(e.contains("unknown field"), "{text}: {e}");
        }
    }

    #[test]
    fn bad_env_names_the_fix() {
        let err = Smolfile::parse("env = [\"NOEQUALS\"]", Path::new("S")).unwrap_err();
        assert!(err.to_string().contains("KEY=VALUE"), "{err}");
    }

    #[test]
    fn relative_paths_resolve_against_the_smolfile() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("Smolfile");
        std::fs::write(&p, "rootfs = \"root\"\n[pack]\nkey = \"k/smolvm.key\"\n").unwrap();
        let s = Smolfile::load(&p).unwrap();
        assert_eq!(s.rootfs.unwrap(), dir.path().join("root"));
        assert_eq!(
            s.pack.unwrap().key.unwrap(),
            dir.path().join("k/smolvm.key")
        );
    }

    #[test]
    fn control_characters_in_config_strings_are_refused() {
        let err = Smolfile::parse("workdir = \"/srv\\u001b[2K\"\n", Path::new("S")).unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("`workdir`") && msg.contains("\\u{1b}") && msg.contains("remove it"),
            "{msg}"
        );
        assert!(
            !msg.contains('\x1b'),
            "the message itself is safe to print: {msg:?}"
        );
        for text in [
            "user = \"root\\u009b\"",
            "image = \"alpine\\u007f\"",
            "workdir = \"/srv\\n\"",
            "cmd = [\"a\\u0000b\"]",
            "env = [\"A=\\u001b]0;title\\u0007\"]",
            "ports = [\"80\\t:80\"]",
            "[network]\nallow_hosts = [\"a\\rb\"]",
            "[artifact]\nversion = \"1\\u0085\"",
        ] {
            let err = Smolfile::parse(text, Path::new("S")).unwrap_err();
            assert!(
                err.to_string().contains("control character"),
                "{text}: {err}"
            );
        }
        // Scripts keep their newlines and tabs.
        Smolfile::parse(
            "cmd = [\"sh\", \"-c\", \"echo a\\n\\techo b\"]\nenv = [\"X=a\\tb\"]",
            Path::new("S"),
        )
        .unwrap();
    }
}

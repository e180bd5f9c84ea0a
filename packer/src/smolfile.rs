//! The Smolfile: a TOML description of a machine.
//!
//! The schema is smolvm's (image, entrypoint, cmd, env, workdir, cpus, memory,
//! net, ports, volumes, storage, overlay, init, `[network]`, `[auth]`) plus
//! `rootfs` and `kernel` for packing, `[artifact]` for the artifact's identity
//! and `[pack]` for packing options. Unknown keys are errors; relative paths
//! resolve against the Smolfile's directory.

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

/// Identity of the artifact.
#[derive(Debug, Default, Deserialize, Clone, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ArtifactSection {
    pub name: Option<String>,
    pub version: Option<String>,
}

/// Packing options; command-line flags override them.
#[derive(Debug, Default, Deserialize, Clone, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct PackSection {
    /// zstd level, 1..=22.
    pub level: Option<i32>,
    /// Secret key file to sign with.
    pub key: Option<PathBuf>,
    /// Stub executable to append the payload to.
    pub stub: Option<PathBuf>,
}

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
    pub network: Option<NetworkSection>,
    pub auth: Option<AuthSection>,
    pub artifact: Option<ArtifactSection>,
    pub pack: Option<PackSection>,
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
        if let Some(pack) = smolfile.pack.as_mut() {
            pack.key.as_mut().map(resolve);
            pack.stub.as_mut().map(resolve);
        }
        Ok(smolfile)
    }

    /// Parses Smolfile text; `path` is only used in messages.
    pub fn parse(text: &str, path: &Path) -> Result<Smolfile, SmolfileError> {
        let smolfile: Smolfile = toml::from_str(text).map_err(|e| SmolfileError::Parse {
            path: path.to_path_buf(),
            message: e.to_string().trim_end().to_string(),
        })?;
        smolfile.check(path)?;
        Ok(smolfile)
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
        if let Some(name) = self.artifact.as_ref().and_then(|a| a.name.as_ref()) {
            smolvm_format::manifest::validate_name(name)
                .map_err(|e| invalid("artifact.name", e))?;
        }
        self.check_network(path)
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
volumes = ["./data:/data:ro"]
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

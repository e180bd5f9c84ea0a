//! Run-time settings: what the person starting a machine may change
//! (`--smolvm-env=`, `--smolvm-cpus=`, `--smolvm-memory=`, `--smolvm-workdir=`,
//! `--smolvm-volume=` on a packed executable; `-e --cpus --mem --workdir -v`
//! on `smolvm pack run`).
//!
//! They are the top layer of the config (README, "Run-time settings"):
//!
//! ```text
//!   default  <  image  <  Smolfile  <  run time
//! ```
//!
//! Each value is checked here, before anything boots, so a bad flag is one
//! line and exit 2 ([`UsageError`]), never a guest that fails to start.
//! Pure except for [`parse_volume`] (the host path must exist) and the host
//! limits ([`host_cpus`], [`host_memory_mib`]).

use std::path::{Path, PathBuf};

use smolvm_format::MachineConfig;

use crate::exit::UsageError;

/// Where the user's current directory appears in the guest of a machine
/// packed with `share_cwd = true`; the workload starts there.
pub const CWD_GUEST_PATH: &str = "/cwd";
/// Run-time volumes a machine takes (each is a virtio-fs device; the share
/// of the current directory counts): as many as the guest init mounts.
pub const MAX_VOLUMES: usize = crate::guest_abi::VOLUMES as usize;
/// Longest working directory the guest takes.
const MAX_WORKDIR_LEN: usize = crate::guest_abi::WORKDIR_LEN as usize;
/// The smallest guest memory the kernel and init start in (as `memory` in a
/// Smolfile).
pub const MIN_MEMORY_MIB: u32 = 64;
/// The provenance run-time values carry in the effective config that
/// `--smolvm-info` shows (never written into a manifest).
pub const RUN_TIME: &str = "run-time";

/// A host directory shared into the guest (virtio-fs).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Volume {
    /// Absolute, canonical (no symlinks): the directory libkrun serves.
    pub host: PathBuf,
    /// Absolute guest path, normalised (no `.`, `..`, empty components).
    pub guest: String,
    pub read_only: bool,
}

/// The run-time layer.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RunSettings {
    /// `KEY=VALUE` entries; each replaces the config's entry of that name.
    pub env: Vec<String>,
    pub cpus: Option<u8>,
    pub memory_mib: Option<u32>,
    pub workdir: Option<String>,
    pub volumes: Vec<Volume>,
}

fn usage(msg: String) -> UsageError {
    UsageError(msg)
}

fn control_char(v: &str, allow_lines: bool) -> Option<char> {
    v.chars()
        .find(|&c| c.is_control() && !(allow_lines && matches!(c, '\t' | '\n')))
}

/// `KEY=VALUE`: KEY is a shell name (`[A-Za-z_][A-Za-z0-9_]*`); VALUE may be
/// empty and may hold tabs and newlines, no other control character.
pub fn parse_env(entry: &str) -> Result<String, UsageError> {
    let Some((key, value)) = entry.split_once('=') else {
        return Err(usage(format!(
            "environment entry {entry:?} is not KEY=VALUE (write it as NAME=value)"
        )));
    };
    let name_ok = key
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !name_ok {
        return Err(usage(format!(
            "environment name {key:?} is not a variable name: use letters, digits and '_', not starting with a digit"
        )));
    }
    if let Some(c) = control_char(value, true) {
        return Err(usage(format!(
            "the value of {key} contains control character {}; remove it",
            c.escape_unicode()
        )));
    }
    Ok(entry.to_string())
}

/// The CPUs this host has (at least 1).
pub fn host_cpus() -> u32 {
    std::thread::available_parallelism().map_or(1, |n| u32::try_from(n.get()).unwrap_or(u32::MAX))
}

/// `N` vCPUs: 1 up to the CPUs this host has (`host`), and at most 255
/// (libkrun's limit).
pub fn parse_cpus(value: &str, host: u32) -> Result<u8, UsageError> {
    let max = host.clamp(1, u32::from(u8::MAX));
    match value.parse::<u32>() {
        Ok(n) if (1..=max).contains(&n) => Ok(u8::try_from(n).expect("at most 255")),
        _ => Err(usage(format!(
            "cpus {value:?} must be a whole number from 1 to {max} (the CPUs this host has)"
        ))),
    }
}

/// The host's memory in MiB (`MemTotal` of /proc/meminfo), if it can be read.
pub fn host_memory_mib() -> Option<u32> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(u32::try_from(kib / 1024).unwrap_or(u32::MAX))
}

/// `MIB` of guest memory: at least [`MIN_MEMORY_MIB`], at most what the host
/// has (`host`, when known).
pub fn parse_memory(value: &str, host: Option<u32>) -> Result<u32, UsageError> {
    let max = host.unwrap_or(u32::MAX).max(MIN_MEMORY_MIB);
    match value.parse::<u32>() {
        Ok(n) if (MIN_MEMORY_MIB..=max).contains(&n) => Ok(n),
        _ => Err(usage(format!(
            "memory {value:?} must be a whole number of MiB from {MIN_MEMORY_MIB} to {max}{}",
            if host.is_some() {
                " (this host's memory)"
            } else {
                ""
            }
        ))),
    }
}

/// A guest path: absolute, one line, no `:` (the volume separator), not `/`
/// itself, not in the guest's system directories (`/dev`, `/proc`, `/sys`)
/// or the runtime's own (`/.smolvm`). Returned normalised (`.`, empty
/// components dropped; `..` refused).
pub fn check_guest_path(what: &str, path: &str) -> Result<String, UsageError> {
    if let Some(c) = control_char(path, false) {
        return Err(usage(format!(
            "{what} {path:?} contains control character {}; remove it",
            c.escape_unicode()
        )));
    }
    if !path.starts_with('/') {
        return Err(usage(format!(
            "{what} {path:?} is not an absolute guest path; start it with '/'"
        )));
    }
    if path.contains(':') {
        return Err(usage(format!(
            "{what} {path:?} contains ':'; a guest path cannot hold one"
        )));
    }
    let mut parts = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                return Err(usage(format!(
                    "{what} {path:?} contains '..'; write the path without it"
                )))
            }
            p => parts.push(p),
        }
    }
    let normal = format!("/{}", parts.join("/"));
    if parts.is_empty() || matches!(parts[0], "dev" | "proc" | "sys" | ".smolvm") {
        return Err(usage(format!(
            "{what} {path:?} would hide {}; choose another directory",
            if parts.is_empty() {
                "the whole root filesystem".to_string()
            } else {
                format!("the guest's /{}", parts[0])
            }
        )));
    }
    if normal.len() > MAX_WORKDIR_LEN {
        return Err(usage(format!(
            "{what} is {} bytes; the guest's limit (PATH_MAX) is {}",
            normal.len(),
            MAX_WORKDIR_LEN
        )));
    }
    Ok(normal)
}

/// `HOST:GUEST[:ro|:rw]`. The host path must be an existing directory (it is
/// made absolute and canonical); the guest path follows [`check_guest_path`].
/// The split is at the last `:` before an optional `ro`/`rw`, so a host path
/// may hold `:`; a guest path may not.
pub fn parse_volume(value: &str) -> Result<Volume, UsageError> {
    let (rest, read_only) = match value.rsplit_once(':') {
        Some((rest, "ro")) => (rest, true),
        Some((rest, "rw")) => (rest, false),
        _ => (value, false),
    };
    let Some((host, guest)) = rest.rsplit_once(':').filter(|(h, _)| !h.is_empty()) else {
        return Err(usage(format!(
            "volume {value:?} is not HOST:GUEST[:ro] (a host directory and the guest path to mount it at, like ./data:/data:ro)"
        )));
    };
    let guest = check_guest_path("volume guest path", guest)?;
    let host_path = Path::new(host);
    let host = std::fs::canonicalize(host_path).map_err(|e| {
        usage(format!(
            "volume {value:?}: host path {}: {e}; a volume shares an existing host directory",
            host_path.display()
        ))
    })?;
    if !host.is_dir() {
        return Err(usage(format!(
            "volume {value:?}: host path {} is not a directory; a volume shares a directory (share the file's directory instead)",
            host.display()
        )));
    }
    Ok(Volume {
        host,
        guest,
        read_only,
    })
}

/// A run-time working directory: absolute, one line.
pub fn parse_workdir(value: &str) -> Result<String, UsageError> {
    if let Some(c) = control_char(value, false) {
        return Err(usage(format!(
            "workdir {value:?} contains control character {}; remove it",
            c.escape_unicode()
        )));
    }
    if !value.starts_with('/') {
        return Err(usage(format!(
            "workdir {value:?} is not an absolute guest path; start it with '/'"
        )));
    }
    if value.len() > MAX_WORKDIR_LEN {
        return Err(usage(format!(
            "workdir is {} bytes; the guest's limit (PATH_MAX) is {}",
            value.len(),
            MAX_WORKDIR_LEN
        )));
    }
    Ok(value.to_string())
}

/// The current directory (`cwd`, read at the edge), canonical: what a
/// machine packed with `share_cwd` would be shared, and what the person is
/// asked about.
pub fn canonical_cwd(cwd: Option<&Path>) -> Result<PathBuf, UsageError> {
    let dir = cwd.ok_or_else(|| {
        usage(
            "this machine shares the current directory, and it cannot be read (was it deleted?); cd to a directory and start again".into(),
        )
    })?;
    std::fs::canonicalize(dir).map_err(|e| {
        usage(format!(
            "the current directory {}: {e}; this machine shares it",
            dir.display()
        ))
    })
}

impl RunSettings {
    /// The volumes a start mounts: the current directory at
    /// [`CWD_GUEST_PATH`] when the machine shares it (`cwd` is the host's
    /// current directory), then the run-time ones. Two at one guest path,
    /// or more than [`MAX_VOLUMES`], are refused.
    /// Every volume of a start: the current directory when the machine
    /// shares it (the caller has the person's consent, crate::consent), then
    /// the run-time volumes.
    pub fn volumes_for(
        &self,
        config: &MachineConfig,
        cwd: Option<&Path>,
    ) -> Result<Vec<Volume>, UsageError> {
        let mut all = Vec::with_capacity(self.volumes.len() + 1);
        if config.share_cwd {
            all.push(Volume {
                host: canonical_cwd(cwd)?,
                guest: CWD_GUEST_PATH.into(),
                read_only: false,
            });
        }
        for v in &self.volumes {
            if all.iter().any(|o: &Volume| o.guest == v.guest) {
                return Err(usage(format!(
                    "two volumes at guest path {}{}; give each its own path",
                    v.guest,
                    if v.guest == CWD_GUEST_PATH && config.share_cwd {
                        " (this machine shares the current directory there)"
                    } else {
                        ""
                    }
                )));
            }
            all.push(v.clone());
        }
        if all.len() > MAX_VOLUMES {
            return Err(usage(format!(
                "{} volumes; a machine takes at most {MAX_VOLUMES}",
                all.len()
            )));
        }
        // Parents before what is mounted inside them (`/data` before
        // `/data/logs`), else the later mount would hide the earlier one.
        all.sort_by_key(|v| v.guest.matches('/').count());
        Ok(all)
    }

    /// `config` with the run-time values on top; each value set here gets
    /// the provenance [`RUN_TIME`]. `env` entries replace the config's entry
    /// of the same name in place, or are appended.
    pub fn apply(&self, config: &MachineConfig) -> MachineConfig {
        let mut c = config.clone();
        let mut mark = |field: &str| {
            c.provenance.insert(field.to_string(), RUN_TIME.to_string());
        };
        if self.cpus.is_some() {
            mark("cpus");
        }
        if self.memory_mib.is_some() {
            mark("memory_mib");
        }
        if self.workdir.is_some() {
            mark("workdir");
        }
        if !self.env.is_empty() {
            mark("env");
        }
        let key = |e: &str| e.split_once('=').map_or(e, |(k, _)| k).to_string();
        for e in &self.env {
            match c.env.iter_mut().find(|o| key(o) == key(e)) {
                Some(o) => o.clone_from(e),
                None => c.env.push(e.clone()),
            }
        }
        if let Some(n) = self.cpus {
            c.cpus = n;
        }
        if let Some(m) = self.memory_mib {
            c.memory_mib = m;
        }
        if let Some(w) = &self.workdir {
            c.workdir = Some(w.clone());
        }
        c
    }
}

/// A host directory shared into the guest, opened once (crate::run opens
/// it, crate::launch attaches it): libkrun is given this descriptor (as
/// `/proc/self/fd/N/.`), never the path again, so a rename or symlink swap
/// after the check cannot change what is served. Here, not in launch, so
/// that a build without the VMM (the fuzz targets) still has it.
pub struct Share {
    pub volume: Volume,
    /// `O_PATH | O_DIRECTORY | O_NOFOLLOW` on the canonical path.
    pub dir: std::os::fd::OwnedFd,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_entries_are_names_with_values() {
        assert_eq!(parse_env("A_1=x y").unwrap(), "A_1=x y");
        assert_eq!(parse_env("_=").unwrap(), "_=");
        parse_env("MULTI=a\nb\tc").unwrap();
        for bad in [
            "NOEQUALS",
            "=v",
            "1A=v",
            "A-B=v",
            "A B=v",
            "A=\u{1b}[2K",
            "A=\0",
        ] {
            let e = parse_env(bad).unwrap_err().to_string();
            assert!(!e.contains('\u{1b}') && !e.contains('\0'), "{e:?}");
        }
    }

    #[test]
    fn cpus_and_memory_are_bounded() {
        assert_eq!(parse_cpus("2", 4).unwrap(), 2);
        assert_eq!(parse_cpus("1", 1).unwrap(), 1);
        for bad in ["0", "5", "-1", "two", "", "1.5"] {
            let e = parse_cpus(bad, 4).unwrap_err().to_string();
            assert!(e.contains("from 1 to 4"), "{e}");
        }
        assert_eq!(parse_cpus("255", 1000).unwrap(), 255);
        assert!(parse_cpus("256", 1000).is_err());
        assert_eq!(parse_memory("64", Some(2048)).unwrap(), 64);
        assert_eq!(parse_memory("2048", Some(2048)).unwrap(), 2048);
        for bad in ["63", "2049", "1G", ""] {
            let e = parse_memory(bad, Some(2048)).unwrap_err().to_string();
            assert!(e.contains("from 64 to 2048"), "{e}");
        }
        assert_eq!(parse_memory("100000", None).unwrap(), 100_000);
    }

    #[test]
    fn guest_paths_are_absolute_normal_and_not_system_directories() {
        assert_eq!(check_guest_path("g", "/data//x/./").unwrap(), "/data/x");
        for (bad, says) in [
            ("data", "absolute"),
            ("/", "whole root"),
            ("/./", "whole root"),
            ("/a/../etc", ".."),
            ("/proc/x", "/proc"),
            ("/dev", "/dev"),
            ("/.smolvm", "/.smolvm"),
            ("/a:b", "':'"),
            ("/a\nb", "control"),
        ] {
            let e = check_guest_path("g", bad).unwrap_err().to_string();
            assert!(e.contains(says), "{bad:?}: {e}");
        }
    }

    #[test]
    fn volumes_need_an_existing_host_directory() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().canonicalize().unwrap();
        std::fs::write(d.join("file"), "x").unwrap();
        let v = parse_volume(&format!("{}:/data:ro", d.display())).unwrap();
        assert_eq!(
            (v.host.as_path(), v.guest.as_str(), v.read_only),
            (d.as_path(), "/data", true)
        );
        let v = parse_volume(&format!("{}:/data/", d.display())).unwrap();
        assert!(!v.read_only);
        assert_eq!(v.guest, "/data");
        assert!(
            !parse_volume(&format!("{}:/d:rw", d.display()))
                .unwrap()
                .read_only
        );
        // A host path with ':' splits at the last one.
        let colon = d.join("a:b");
        std::fs::create_dir(&colon).unwrap();
        assert_eq!(
            parse_volume(&format!("{}:/x", colon.display()))
                .unwrap()
                .host,
            colon
        );
        for (bad, says) in [
            (format!("{}", d.display()), "HOST:GUEST"),
            (":/data".to_string(), "HOST:GUEST"),
            (format!("{}/missing:/data", d.display()), "No such file"),
            (format!("{}/file:/data", d.display()), "not a directory"),
            (format!("{}:data", d.display()), "absolute"),
            (format!("{}:/", d.display()), "whole root"),
        ] {
            let e = parse_volume(&bad).unwrap_err().to_string();
            assert!(e.contains(says), "{bad}: {e}");
        }
    }

    #[test]
    fn run_time_values_win_and_say_so() {
        let mut base = MachineConfig {
            env: vec!["A=1".into(), "B=2".into()],
            cpus: 2,
            ..MachineConfig::default()
        };
        base.provenance.insert("cpus".into(), "smolfile".into());
        let s = RunSettings {
            env: vec!["B=run".into(), "C=3".into()],
            memory_mib: Some(256),
            workdir: Some("/w".into()),
            ..RunSettings::default()
        };
        let c = s.apply(&base);
        assert_eq!(c.env, vec!["A=1", "B=run", "C=3"]);
        assert_eq!((c.cpus, c.memory_mib), (2, 256));
        assert_eq!(c.workdir.as_deref(), Some("/w"));
        assert_eq!(c.provenance["cpus"], "smolfile");
        for f in ["env", "memory_mib", "workdir"] {
            assert_eq!(c.provenance[f], RUN_TIME, "{f}");
        }
        // Nothing set: nothing changes.
        assert_eq!(RunSettings::default().apply(&base), base);
    }

    #[test]
    fn the_shared_current_directory_comes_first_and_keeps_its_path() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().canonicalize().unwrap();
        let config = MachineConfig {
            share_cwd: true,
            ..MachineConfig::default()
        };
        let mut s = RunSettings::default();
        let v = s.volumes_for(&config, Some(&d)).unwrap();
        assert_eq!(
            v,
            vec![Volume {
                host: d.clone(),
                guest: CWD_GUEST_PATH.into(),
                read_only: false
            }]
        );
        assert!(s.volumes_for(&config, None).is_err());
        s.volumes.push(Volume {
            host: d.clone(),
            guest: CWD_GUEST_PATH.into(),
            read_only: true,
        });
        let e = s.volumes_for(&config, Some(&d)).unwrap_err().to_string();
        assert!(e.contains("shares the current directory"), "{e}");
        // A share inside another is mounted after it, whatever the order given.
        let inner = Volume {
            guest: "/cwd/logs".into(),
            ..s.volumes[0].clone()
        };
        s.volumes.insert(0, inner);
        s.volumes[1].guest = "/other".into();
        let order: Vec<String> = s
            .volumes_for(&config, Some(&d))
            .unwrap()
            .into_iter()
            .map(|v| v.guest)
            .collect();
        assert_eq!(order, vec!["/cwd", "/other", "/cwd/logs"]);
        s.volumes.remove(0);
        s.volumes[0].guest = CWD_GUEST_PATH.into();
        // Without share_cwd, /cwd is an ordinary guest path.
        assert_eq!(
            s.volumes_for(&MachineConfig::default(), Some(&d))
                .unwrap()
                .len(),
            1
        );
        s.volumes = vec![s.volumes[0].clone(); MAX_VOLUMES];
        for (i, v) in s.volumes.iter_mut().enumerate() {
            v.guest = format!("/v{i}");
        }
        assert!(s.volumes_for(&MachineConfig::default(), Some(&d)).is_ok());
        assert!(s
            .volumes_for(&config, Some(&d))
            .unwrap_err()
            .to_string()
            .contains("at most"));
    }
}

//! The machine config as a merge of layers, lowest first:
//!
//! ```text
//!   default  <  image  <  Smolfile  <  command line / run time
//! ```
//!
//! Each layer sets some workload values and leaves the rest unset; a value
//! comes from the highest layer that sets it, and that layer is its
//! provenance. Two rules follow docker's: a layer's `entrypoint` discards
//! the `cmd` of the layers below it (their arguments were written for their
//! entrypoint), and `env` merges, lower entries first, a higher layer's
//! entry replacing the one with the same name.
//!
//! Pure: no file or network access, so every rule is unit-tested here.
//! Today the top layer sets only where the image came from (`--image`);
//! the runtime has no run-time overrides yet, and when it gets them they
//! are one more layer on top.

use smolvm_format::{MachineConfig, NetworkPolicy};

use crate::image::ImageRuntimeConfig;
use crate::smolfile::Smolfile;

/// Where a config value came from: written as `config.provenance` values
/// (SPEC.md section "config").
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Provenance {
    /// Nobody set it; the format's default.
    Default,
    /// The image's config (`Entrypoint`, `Cmd`, `Env`, `WorkingDir`, `User`).
    Image,
    /// The Smolfile.
    Smolfile,
    /// `env` entries from the image and from the Smolfile, merged by name.
    ImageAndSmolfile,
    /// A command-line flag of `pack create`.
    Cli,
}

impl Provenance {
    /// The string the manifest carries.
    pub fn as_str(self) -> &'static str {
        match self {
            Provenance::Default => "default",
            Provenance::Image => "image",
            Provenance::Smolfile => "smolfile",
            Provenance::ImageAndSmolfile => "image+smolfile",
            Provenance::Cli => "cli",
        }
    }

    /// The provenance of `env` entries merged from `self` and then `upper`.
    fn merged_with(self, upper: Provenance) -> Provenance {
        match (self, upper) {
            (Provenance::Default, p) => p,
            (Provenance::Image, Provenance::Smolfile) => Provenance::ImageAndSmolfile,
            // Only image and Smolfile carry env today; a new layer with env
            // needs a provenance of its own, not a silent pick.
            (lower, upper) => unreachable!("env merged from {lower:?} and {upper:?}"),
        }
    }
}

impl std::fmt::Display for Provenance {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The workload values one layer sets; `None` leaves a value to the layers below.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ConfigLayer {
    pub provenance: Option<Provenance>,
    pub entrypoint: Option<Vec<String>>,
    pub cmd: Option<Vec<String>>,
    pub env: Option<Vec<String>>,
    pub workdir: Option<String>,
    pub user: Option<String>,
    pub cpus: Option<u8>,
    pub memory_mib: Option<u32>,
    pub net: Option<bool>,
}

impl ConfigLayer {
    /// What an image's config says; empty values were already dropped by
    /// [`ImageRuntimeConfig::from_spec`], and an empty `Env` sets nothing.
    pub fn from_image(image: &ImageRuntimeConfig) -> ConfigLayer {
        ConfigLayer {
            provenance: Some(Provenance::Image),
            entrypoint: image.entrypoint.clone(),
            cmd: image.cmd.clone(),
            env: (!image.env.is_empty()).then(|| image.env.clone()),
            workdir: image.working_dir.clone(),
            user: image.user.clone(),
            ..ConfigLayer::default()
        }
    }

    /// What a Smolfile says about the workload.
    pub fn from_smolfile(s: &Smolfile) -> ConfigLayer {
        ConfigLayer {
            provenance: Some(Provenance::Smolfile),
            entrypoint: s.entrypoint.clone(),
            cmd: s.cmd.clone(),
            env: s.env.clone(),
            workdir: s.workdir.clone(),
            user: s.user.clone(),
            cpus: s.cpus,
            memory_mib: s.memory,
            net: s.net,
        }
    }
}

/// A value and the layer it came from.
struct Sourced<T> {
    value: T,
    from: Provenance,
}

impl<T> Sourced<T> {
    fn default(value: T) -> Self {
        Sourced {
            value,
            from: Provenance::Default,
        }
    }

    fn set(&mut self, value: Option<&T>, from: Provenance)
    where
        T: Clone,
    {
        if let Some(v) = value {
            self.value = v.clone();
            self.from = from;
        }
    }
}

fn env_key(entry: &str) -> &str {
    entry.split_once('=').map_or(entry, |(k, _)| k)
}

/// `lower` with `upper`'s entries replacing those of the same name in
/// place, and the rest of `upper` appended in order.
fn merge_env(lower: &[String], upper: &[String]) -> Vec<String> {
    let mut merged: Vec<String> = lower
        .iter()
        .map(|e| {
            upper
                .iter()
                .find(|o| env_key(o) == env_key(e))
                .unwrap_or(e)
                .clone()
        })
        .collect();
    for o in upper {
        if !lower.iter().any(|e| env_key(e) == env_key(o)) {
            merged.push(o.clone());
        }
    }
    merged
}

/// Merges `layers` (lowest first) over the defaults into the workload part
/// of a config, with a provenance for each workload field.
pub fn merge_layers(layers: &[ConfigLayer]) -> MachineConfig {
    let d = MachineConfig::default();
    let mut entrypoint = Sourced::default(d.entrypoint.clone());
    let mut cmd = Sourced::default(d.cmd.clone());
    let mut env = Sourced::default(d.env.clone());
    let mut workdir = Sourced::default(d.workdir.clone());
    let mut user = Sourced::default(d.user.clone());
    let mut cpus = Sourced::default(d.cpus);
    let mut memory_mib = Sourced::default(d.memory_mib);
    let mut net = Sourced::default(d.net);
    for layer in layers {
        let from = layer.provenance.unwrap_or(Provenance::Default);
        if layer.entrypoint.is_some() {
            // Arguments below were written for an entrypoint this replaces.
            cmd = Sourced::default(d.cmd.clone());
        }
        entrypoint.set(layer.entrypoint.as_ref(), from);
        cmd.set(layer.cmd.as_ref(), from);
        match &layer.env {
            // The first layer with env, even an empty list, owns it.
            Some(e) if env.from == Provenance::Default => env.set(Some(e), from),
            // An empty list adds nothing to entries from below.
            Some(e) if e.is_empty() => {}
            Some(e) => {
                env.value = merge_env(&env.value, e);
                env.from = env.from.merged_with(from);
            }
            None => {}
        }
        workdir.set(layer.workdir.clone().map(Some).as_ref(), from);
        user.set(layer.user.clone().map(Some).as_ref(), from);
        cpus.set(layer.cpus.as_ref(), from);
        memory_mib.set(layer.memory_mib.as_ref(), from);
        net.set(layer.net.as_ref(), from);
    }
    let mut c = MachineConfig::default();
    let mut record = |field: &str, from: Provenance| {
        c.provenance
            .insert(field.to_string(), from.as_str().to_string());
    };
    record("entrypoint", entrypoint.from);
    record("cmd", cmd.from);
    record("env", env.from);
    record("workdir", workdir.from);
    record("user", user.from);
    record("cpus", cpus.from);
    record("memory_mib", memory_mib.from);
    record("net", net.from);
    c.entrypoint = entrypoint.value;
    c.cmd = cmd.value;
    c.env = env.value;
    c.workdir = workdir.value;
    c.user = user.value;
    c.cpus = cpus.value;
    c.memory_mib = memory_mib.value;
    c.net = net.value;
    c
}

/// The image a root came from, as the config records it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImageSource {
    pub reference: String,
    /// Who named the image: [`Provenance::Cli`] or [`Provenance::Smolfile`].
    pub named_by: Provenance,
    /// The manifest digest, when the source knows it.
    pub digest: Option<smolvm_format::ImageDigest>,
    /// The image's runtime config, when it has one.
    pub config: Option<ImageRuntimeConfig>,
}

/// The machine config of an artifact: the layers' workload values, the
/// image's identity, and what only the Smolfile sets (network, disks, ...).
pub fn machine_config(smolfile: &Smolfile, image: Option<&ImageSource>) -> MachineConfig {
    let mut layers = Vec::with_capacity(2);
    if let Some(ic) = image.and_then(|i| i.config.as_ref()) {
        layers.push(ConfigLayer::from_image(ic));
    }
    layers.push(ConfigLayer::from_smolfile(smolfile));
    let mut c = merge_layers(&layers);
    if let Some(i) = image {
        c.image = Some(i.reference.clone());
        c.image_digest = i.digest;
        c.provenance
            .insert("image".into(), i.named_by.as_str().to_string());
    }
    if let Some(n) = &smolfile.network {
        c.network = NetworkPolicy {
            allow_hosts: n.allow_hosts.clone(),
            allow_cidrs: n.allow_cidrs.clone(),
        };
    }
    c.ports = smolfile.ports.clone().unwrap_or_default();
    // Guest paths only (the Smolfile refused host paths), normalised.
    c.volumes = smolfile
        .volumes
        .iter()
        .flatten()
        .map(|v| {
            smolvm_runtime::settings::check_guest_path("guest path", v)
                .unwrap_or_else(|_| v.clone())
        })
        .collect();
    if smolfile.share_cwd == Some(true) {
        // The Smolfile sets no workdir with share_cwd (it refuses both).
        c.share_cwd = true;
        c.workdir = Some(smolvm_runtime::settings::CWD_GUEST_PATH.into());
        c.provenance
            .insert("workdir".into(), Provenance::Smolfile.as_str().into());
    }
    c.storage_gib = smolfile.storage;
    c.overlay_gib = smolfile.overlay;
    c.init = smolfile.init.clone().unwrap_or_default();
    c.ssh_agent = smolfile.auth.as_ref().is_some_and(|a| a.ssh_agent);
    c
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn smolfile(text: &str) -> Smolfile {
        Smolfile::parse(text, Path::new("Smolfile")).unwrap()
    }

    fn nginx() -> ImageSource {
        ImageSource {
            reference: "nginx:1.27".into(),
            named_by: Provenance::Cli,
            digest: Some(format!("sha256:{}", "ab".repeat(32)).parse().unwrap()),
            config: Some(ImageRuntimeConfig {
                entrypoint: Some(vec!["/docker-entrypoint.sh".into()]),
                cmd: Some(vec!["nginx".into(), "-g".into(), "daemon off;".into()]),
                env: vec!["PATH=/usr/bin".into(), "NGINX_VERSION=1.27".into()],
                working_dir: None,
                user: Some("101".into()),
            }),
        }
    }

    fn merged(text: &str) -> MachineConfig {
        machine_config(&smolfile(text), Some(&nginx()))
    }

    fn provenance(c: &MachineConfig, field: &str) -> String {
        c.provenance[field].clone()
    }

    #[test]
    fn without_image_or_smolfile_values_everything_is_default() {
        let c = machine_config(&Smolfile::default(), None);
        let d = MachineConfig::default();
        assert_eq!((c.cpus, c.memory_mib, c.net), (d.cpus, d.memory_mib, d.net));
        assert_eq!(c.image, None);
        assert_eq!(c.provenance.len(), 8, "{:?}", c.provenance);
        assert!(c.provenance.values().all(|p| p == "default"));
    }

    #[test]
    fn smolfile_values_carry_smolfile_provenance() {
        let c = machine_config(
            &smolfile("cmd = [\"/bin/hello\"]\ncpus = 2\nmemory = 256\nnet = true\nenv = []\n"),
            None,
        );
        assert_eq!(c.cmd, vec!["/bin/hello"]);
        assert_eq!((c.cpus, c.memory_mib, c.net), (2, 256, true));
        for f in ["cmd", "cpus", "memory_mib", "net", "env"] {
            assert_eq!(provenance(&c, f), "smolfile", "{f}");
        }
        assert_eq!(provenance(&c, "entrypoint"), "default");
        assert!(!c.provenance.contains_key("image"));
    }

    #[test]
    fn image_fills_what_the_smolfile_leaves_unset() {
        let c = merged("");
        assert_eq!(c.entrypoint, vec!["/docker-entrypoint.sh"]);
        assert_eq!(c.cmd, vec!["nginx", "-g", "daemon off;"]);
        assert_eq!(c.env, vec!["PATH=/usr/bin", "NGINX_VERSION=1.27"]);
        assert_eq!(c.user.as_deref(), Some("101"));
        assert_eq!(c.workdir, None);
        for f in ["entrypoint", "cmd", "env", "user"] {
            assert_eq!(provenance(&c, f), "image", "{f}");
        }
        assert_eq!(provenance(&c, "workdir"), "default");
        assert_eq!(provenance(&c, "cpus"), "default");
        assert_eq!(c.image.as_deref(), Some("nginx:1.27"));
        assert_eq!(c.image_digest, nginx().digest);
        assert_eq!(provenance(&c, "image"), "cli");
    }

    #[test]
    fn smolfile_overrides_and_env_merges_by_key() {
        let c = merged(
            "cmd = [\"nginx\", \"-T\"]\nworkdir = \"/srv\"\nuser = \"0\"\nenv = [\"NGINX_VERSION=custom\", \"EXTRA=1\"]\n",
        );
        assert_eq!(c.entrypoint, vec!["/docker-entrypoint.sh"]);
        assert_eq!(provenance(&c, "entrypoint"), "image");
        assert_eq!(c.cmd, vec!["nginx", "-T"]);
        assert_eq!(provenance(&c, "cmd"), "smolfile");
        assert_eq!(c.workdir.as_deref(), Some("/srv"));
        assert_eq!(provenance(&c, "workdir"), "smolfile");
        assert_eq!(c.user.as_deref(), Some("0"));
        assert_eq!(provenance(&c, "user"), "smolfile");
        assert_eq!(
            c.env,
            vec!["PATH=/usr/bin", "NGINX_VERSION=custom", "EXTRA=1"]
        );
        assert_eq!(provenance(&c, "env"), "image+smolfile");
    }

    #[test]
    fn an_empty_smolfile_env_leaves_the_image_env_and_its_provenance() {
        let c = merged("env = []\n");
        assert_eq!(c.env, vec!["PATH=/usr/bin", "NGINX_VERSION=1.27"]);
        assert_eq!(provenance(&c, "env"), "image");
    }

    #[test]
    fn smolfile_entrypoint_drops_the_image_cmd() {
        let c = merged("entrypoint = [\"/bin/sh\", \"-c\"]\n");
        assert_eq!(c.entrypoint, vec!["/bin/sh", "-c"]);
        assert!(c.cmd.is_empty());
        assert_eq!(provenance(&c, "cmd"), "default");
    }

    #[test]
    fn an_image_named_by_the_smolfile_says_so() {
        let image = ImageSource {
            named_by: Provenance::Smolfile,
            config: None,
            ..nginx()
        };
        let c = machine_config(&Smolfile::default(), Some(&image));
        assert_eq!(provenance(&c, "image"), "smolfile");
        assert_eq!(provenance(&c, "cmd"), "default");
    }

    #[test]
    fn share_cwd_starts_the_workload_in_the_shared_directory() {
        let c = merged("share_cwd = true\nvolumes = [\"/state/\"]\n");
        assert!(c.share_cwd);
        assert_eq!(c.workdir.as_deref(), Some("/cwd"));
        assert_eq!(provenance(&c, "workdir"), "smolfile");
        assert_eq!(c.volumes, vec!["/state"]);
        let c = merged("");
        assert!(!c.share_cwd);
    }

    #[test]
    fn smolvm_artifact_values_win_over_top_level_ones() {
        let c = machine_config(
            &smolfile(
                "cpus = 1\nmemory = 256\ncmd = [\"dev\"]\n[artifact]\ncpus = 2\nmemory = 1024\ncmd = [\"serve\"]\noci_platform = \"linux/amd64\"\n",
            ),
            Some(&nginx()),
        );
        assert_eq!((c.cpus, c.memory_mib), (2, 1024));
        assert_eq!(c.cmd, vec!["serve"]);
        assert_eq!(c.entrypoint, vec!["/docker-entrypoint.sh"]);
        assert_eq!(provenance(&c, "cmd"), "smolfile");
    }

    #[test]
    fn every_provenance_spelling_is_one_the_spec_lists() {
        let spec = std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../format-spec/SPEC.md"),
        )
        .unwrap();
        let row = spec
            .lines()
            .find(|l| l.starts_with("| `provenance`"))
            .expect("SPEC.md has a provenance row");
        for p in [
            Provenance::Default,
            Provenance::Image,
            Provenance::Smolfile,
            Provenance::ImageAndSmolfile,
            Provenance::Cli,
        ] {
            assert!(
                row.contains(&format!("`\"{p}\"`")),
                "SPEC.md lacks {p}: {row}"
            );
        }
    }
}

//! The image's runtime config, merged under the Smolfile's.
//!
//! The Smolfile wins field by field; the image fills what it leaves unset,
//! and `provenance` records which one each value came from. Two rules
//! follow docker's: a Smolfile `entrypoint` discards the image's `Cmd`
//! (the image's arguments were written for the image's entrypoint), and
//! `env` merges, the image's entries first and the Smolfile's replacing
//! those with the same name.

use smolvm_format::MachineConfig;

use super::spec::RuntimeConfig;
use crate::smolfile::Smolfile;

/// Provenance of a value merged from the image and the Smolfile.
pub const IMAGE_AND_SMOLFILE: &str = "image+smolfile";

/// What an image says about how to run it; empty values count as unset.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImageRuntimeConfig {
    pub entrypoint: Option<Vec<String>>,
    pub cmd: Option<Vec<String>>,
    pub env: Vec<String>,
    pub working_dir: Option<String>,
    pub user: Option<String>,
}

impl ImageRuntimeConfig {
    pub fn from_spec(r: RuntimeConfig) -> ImageRuntimeConfig {
        ImageRuntimeConfig {
            entrypoint: r.entrypoint.filter(|v| !v.is_empty()),
            cmd: r.cmd.filter(|v| !v.is_empty()),
            env: r.env.unwrap_or_default(),
            working_dir: r.working_dir.filter(|w| !w.is_empty()),
            user: r.user.filter(|u| !u.is_empty()),
        }
    }
}

fn key(entry: &str) -> &str {
    entry.split_once('=').map_or(entry, |(k, _)| k)
}

/// Fills `c` (already resolved from the Smolfile `s`) from the image config.
pub fn apply_image_config(c: &mut MachineConfig, s: &Smolfile, image: &ImageRuntimeConfig) {
    let mut from_image = |field: &str| {
        c.provenance.insert(field.to_string(), "image".to_string());
    };
    if s.entrypoint.is_none() {
        if let Some(e) = &image.entrypoint {
            c.entrypoint = e.clone();
            from_image("entrypoint");
        }
    }
    if s.cmd.is_none() && s.entrypoint.is_none() {
        if let Some(cmd) = &image.cmd {
            c.cmd = cmd.clone();
            from_image("cmd");
        }
    }
    if s.workdir.is_none() {
        if let Some(w) = &image.working_dir {
            c.workdir = Some(w.clone());
            from_image("workdir");
        }
    }
    if s.user.is_none() {
        if let Some(u) = &image.user {
            c.user = Some(u.clone());
            from_image("user");
        }
    }
    if !image.env.is_empty() {
        let smolfile_env = s.env.clone().unwrap_or_default();
        let mut merged: Vec<String> = image
            .env
            .iter()
            .map(|e| {
                smolfile_env
                    .iter()
                    .find(|o| key(o) == key(e))
                    .unwrap_or(e)
                    .clone()
            })
            .collect();
        for o in &smolfile_env {
            if !image.env.iter().any(|e| key(e) == key(o)) {
                merged.push(o.clone());
            }
        }
        c.env = merged;
        c.provenance.insert(
            "env".to_string(),
            if smolfile_env.is_empty() {
                "image".to_string()
            } else {
                IMAGE_AND_SMOLFILE.to_string()
            },
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::create::machine_config;
    use std::path::Path;

    fn image() -> ImageRuntimeConfig {
        ImageRuntimeConfig::from_spec(RuntimeConfig {
            entrypoint: Some(vec!["/docker-entrypoint.sh".into()]),
            cmd: Some(vec!["nginx".into(), "-g".into(), "daemon off;".into()]),
            env: Some(vec!["PATH=/usr/bin".into(), "NGINX_VERSION=1.27".into()]),
            working_dir: Some(String::new()),
            user: Some("101".into()),
        })
    }

    fn merged(smolfile: &str) -> MachineConfig {
        let s = Smolfile::parse(smolfile, Path::new("Smolfile")).unwrap();
        let mut c = machine_config(&s);
        apply_image_config(&mut c, &s, &image());
        c
    }

    #[test]
    fn image_fills_what_the_smolfile_leaves_unset() {
        let c = merged("");
        assert_eq!(c.entrypoint, vec!["/docker-entrypoint.sh"]);
        assert_eq!(c.cmd, vec!["nginx", "-g", "daemon off;"]);
        assert_eq!(c.env, vec!["PATH=/usr/bin", "NGINX_VERSION=1.27"]);
        assert_eq!(c.user.as_deref(), Some("101"));
        // An empty WorkingDir is no value.
        assert_eq!(c.workdir, None);
        for f in ["entrypoint", "cmd", "env", "user"] {
            assert_eq!(c.provenance[f], "image", "{f}");
        }
        assert_eq!(c.provenance["workdir"], "default");
        assert_eq!(c.provenance["cpus"], "default");
    }

    #[test]
    fn smolfile_overrides_and_env_merges_by_key() {
        let c = merged(
            "cmd = [\"nginx\", \"-T\"]\nworkdir = \"/srv\"\nuser = \"0\"\nenv = [\"NGINX_VERSION=custom\", \"EXTRA=1\"]\n",
        );
        assert_eq!(c.entrypoint, vec!["/docker-entrypoint.sh"]);
        assert_eq!(c.provenance["entrypoint"], "image");
        assert_eq!(c.cmd, vec!["nginx", "-T"]);
        assert_eq!(c.provenance["cmd"], "smolfile");
        assert_eq!(c.workdir.as_deref(), Some("/srv"));
        assert_eq!(c.provenance["workdir"], "smolfile");
        assert_eq!(c.user.as_deref(), Some("0"));
        assert_eq!(c.provenance["user"], "smolfile");
        assert_eq!(
            c.env,
            vec!["PATH=/usr/bin", "NGINX_VERSION=custom", "EXTRA=1"]
        );
        assert_eq!(c.provenance["env"], IMAGE_AND_SMOLFILE);
    }

    #[test]
    fn smolfile_entrypoint_drops_the_image_cmd() {
        let c = merged("entrypoint = [\"/bin/sh\", \"-c\"]\n");
        assert_eq!(c.entrypoint, vec!["/bin/sh", "-c"]);
        assert!(c.cmd.is_empty());
        assert_eq!(c.provenance["cmd"], "default");
    }
}

//! What an image's config says about how to run it. How it merges with the
//! Smolfile's values is [`crate::config`]'s business, not the image's.

use super::spec::RuntimeConfig;

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_values_count_as_unset() {
        let c = ImageRuntimeConfig::from_spec(RuntimeConfig {
            entrypoint: Some(vec![]),
            cmd: Some(vec![]),
            env: None,
            working_dir: Some(String::new()),
            user: Some(String::new()),
        });
        assert_eq!(c, ImageRuntimeConfig::default());
    }
}

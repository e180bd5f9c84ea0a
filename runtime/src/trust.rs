//! Whom a start trusts, and which versions it still accepts.
//!
//! Keys, first match wins (SPEC.md, "Threat model"):
//! 1. keys named for this start: `--smolvm-key` / `pack run --key` and
//!    `SMOLVM_TRUSTED_KEYS`;
//! 2. else the `*.pub` files of the user's trusted-keys directory
//!    (`$XDG_CONFIG_HOME/smolvm/trusted-keys`, default
//!    `~/.config/smolvm/trusted-keys`) together with the system's
//!    (`/etc/smolvm/trusted-keys`), when either holds one;
//! 3. else none: the artifact's own key (integrity, not authenticity).
//!
//! Rollback: an explicit minimum version, and per signer and artifact name
//! the highest version that started with a trusted key, remembered in
//! `$XDG_STATE_HOME/smolvm/min-versions.json` (default
//! `~/.local/state/smolvm/`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use smolvm_signing::{KeyId, PublicKey, SigningError};
use thiserror::Error;

/// The system-wide trusted-keys directory.
pub const SYSTEM_KEY_DIR: &str = "/etc/smolvm/trusted-keys";

#[derive(Debug, Error)]
pub enum TrustError {
    /// A key file that was named or found cannot be used.
    #[error(transparent)]
    Key(#[from] SigningError),
    #[error("trusted keys directory {}: cannot list it", path.display())]
    KeyDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("version state {}: cannot {action} it", path.display())]
    State {
        path: PathBuf,
        action: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("version state {}: {fault}; remove the file to forget every remembered minimum version", path.display())]
    StateSyntax { path: PathBuf, fault: String },
    /// Trust on first use (crate::known_signers): another signer for a name
    /// first started here with a different key.
    #[error("{name} is signed by key {signer}, but {name} first started here signed by key {pinned} (remembered in {}); refusing another signer for the same name. If you trust the new signer: for one run, give its public key with --smolvm-key=NEW.pub (smolvm pack run: --key NEW.pub); for good, run `smolvm pack trust forget {name}` and start it again", path.display())]
    SignerChanged {
        name: String,
        signer: KeyId,
        pinned: KeyId,
        path: PathBuf,
    },
    #[error(transparent)]
    KnownSigners(#[from] crate::state_file::StateError),
}

/// Where the trusted keys of a start came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySource {
    /// Named for this start (flag or environment).
    Given,
    /// Found in trusted-keys directories.
    Directories(Vec<PathBuf>),
    /// None: the artifact's own key is checked, nothing more.
    None,
}

/// The keys a start trusts.
pub struct TrustedKeys {
    pub keys: Vec<PublicKey>,
    pub source: KeySource,
}

/// The user's trusted-keys directory: `$XDG_CONFIG_HOME/smolvm/trusted-keys`,
/// else `$HOME/.config/smolvm/trusted-keys` (`None` without either).
pub fn user_key_dir() -> Option<PathBuf> {
    crate::dirs::config().map(|d| d.join("trusted-keys"))
}

/// The remembered minimum versions: `$XDG_STATE_HOME/smolvm/min-versions.json`,
/// else under `$HOME/.local/state`.
pub fn default_state_file() -> Option<PathBuf> {
    crate::dirs::state().map(|d| d.join("min-versions.json"))
}

/// The key files named by `SMOLVM_TRUSTED_KEYS` (colon-separated).
pub fn env_key_files() -> Vec<PathBuf> {
    std::env::var_os("SMOLVM_TRUSTED_KEYS")
        .map(|v| {
            std::env::split_paths(&v)
                .filter(|p| !p.as_os_str().is_empty())
                .collect()
        })
        .unwrap_or_default()
}

/// The default directories, user's first.
pub fn default_key_dirs() -> Vec<PathBuf> {
    user_key_dir()
        .into_iter()
        .chain([PathBuf::from(SYSTEM_KEY_DIR)])
        .collect()
}

/// Resolves the trusted keys: the `given` key files if any, else every
/// `*.pub` in `dirs` (a missing directory holds none; one that cannot be
/// listed, or a key file that cannot be read, is an error naming it: a
/// start never quietly trusts less or more than the user set up).
pub fn resolve_trusted(given: &[PathBuf], dirs: &[PathBuf]) -> Result<TrustedKeys, TrustError> {
    if !given.is_empty() {
        let keys = given
            .iter()
            .map(|k| PublicKey::read_file(k))
            .collect::<Result<_, _>>()?;
        return Ok(TrustedKeys {
            keys,
            source: KeySource::Given,
        });
    }
    let mut keys = Vec::new();
    let mut used = Vec::new();
    for dir in dirs {
        let entries = match std::fs::read_dir(dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(source) => {
                return Err(TrustError::KeyDir {
                    path: dir.clone(),
                    source,
                })
            }
        };
        let mut files = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|source| TrustError::KeyDir {
                path: dir.clone(),
                source,
            })?;
            let path = entry.path();
            if path.extension().is_some_and(|e| e == "pub") {
                files.push(path);
            }
        }
        files.sort();
        if files.is_empty() {
            continue;
        }
        for f in &files {
            keys.push(PublicKey::read_file(f)?);
        }
        used.push(dir.clone());
    }
    let source = if used.is_empty() {
        KeySource::None
    } else {
        KeySource::Directories(used)
    };
    Ok(TrustedKeys { keys, source })
}

/// Orders versions as SemVer 2.0.0 precedence does, tolerating what
/// artifacts carry in practice: build metadata (`+...`) is ignored; the
/// release is the dotted part before the first `-`, compared part by part
/// (numbers as numbers, `1.10` above `1.9`; missing parts count as 0, so
/// `1.2` is `1.2.0`; a part that is not a number sorts above numbers, as
/// text); a pre-release (`-rc1`, `-beta.2`) sorts **below** its release
/// (`1.1.0-rc1` < `1.1.0`), and two pre-releases compare identifier by
/// identifier (numeric ones as numbers and below alphanumeric ones; a
/// shorter list below a longer one it begins).
pub fn compare_versions(a: &str, b: &str) -> std::cmp::Ordering {
    use std::cmp::Ordering;
    #[derive(PartialEq, Eq, PartialOrd, Ord)]
    enum Part<'a> {
        Num(u64),
        Text(&'a str),
    }
    fn part(p: &str) -> Part<'_> {
        match p.parse() {
            Ok(n) if !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) => Part::Num(n),
            _ => Part::Text(p),
        }
    }
    fn split(v: &str) -> (Vec<Part<'_>>, Option<Vec<Part<'_>>>) {
        let v = v.split_once('+').map_or(v, |(v, _)| v);
        let (release, pre) = match v.split_once('-') {
            Some((r, p)) => (r, Some(p)),
            None => (v, None),
        };
        let mut release: Vec<Part<'_>> = release.split('.').map(part).collect();
        while release.len() > 1 && release.last() == Some(&Part::Num(0)) {
            release.pop();
        }
        (release, pre.map(|p| p.split('.').map(part).collect()))
    }
    let (ra, pa) = split(a);
    let (rb, pb) = split(b);
    match ra.cmp(&rb) {
        Ordering::Equal => match (pa, pb) {
            (None, None) => Ordering::Equal,
            (None, Some(_)) => Ordering::Greater,
            (Some(_), None) => Ordering::Less,
            (Some(x), Some(y)) => x.cmp(&y),
        },
        o => o,
    }
}

/// Whether `have` is at least `min` ([`compare_versions`]).
pub fn version_at_least(have: &str, min: &str) -> bool {
    compare_versions(have, min) != std::cmp::Ordering::Less
}

/// The highest version per signer key id and artifact name that started
/// with a trusted key.
pub struct VersionState {
    path: PathBuf,
    seen: BTreeMap<String, String>,
}

fn state_key(key_id: KeyId, name: &str) -> String {
    format!("{key_id} {name}")
}

/// What the minimum-version state is called in messages, and how to get
/// past a file that is not ours.
const VERSION_STATE: &str = "version state";
const VERSION_STATE_FIX: &str = "remove the file to forget every remembered minimum version";

/// The shared state-file errors in this module's words (crate::state_file
/// reads and writes; the variants and messages stay this module's).
fn state_error(e: crate::state_file::StateError) -> TrustError {
    use crate::state_file::StateError;
    match e {
        StateError::Io {
            path,
            action,
            source,
            ..
        } => TrustError::State {
            path,
            action,
            source,
        },
        StateError::Syntax { path, fault, .. } => TrustError::StateSyntax { path, fault },
    }
}

impl VersionState {
    /// Reads the state at `path` (none yet: empty).
    pub fn load(path: &Path) -> Result<VersionState, TrustError> {
        let seen =
            crate::state_file::load(path, VERSION_STATE, VERSION_STATE_FIX).map_err(state_error)?;
        Ok(VersionState {
            path: path.to_path_buf(),
            seen,
        })
    }

    /// The remembered minimum for this signer and name.
    pub fn minimum(&self, key_id: KeyId, name: &str) -> Option<&str> {
        self.seen.get(&state_key(key_id, name)).map(String::as_str)
    }

    /// Raises the remembered minimum to `version` and writes the state
    /// atomically (temporary file, fsync, rename) when it changed; read
    /// again under the file's lock, so what another start remembered
    /// meanwhile is kept (and a higher minimum it wrote stays).
    pub fn remember(&mut self, key_id: KeyId, name: &str, version: &str) -> Result<(), TrustError> {
        let key = state_key(key_id, name);
        self.seen = crate::state_file::update(
            &self.path,
            VERSION_STATE,
            VERSION_STATE_FIX,
            |seen: &mut BTreeMap<String, String>| {
                if seen.get(&key).is_some_and(|m| version_at_least(m, version)) {
                    return false;
                }
                seen.insert(key.clone(), version.to_string());
                true
            },
        )
        .map_err(state_error)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key_file(dir: &Path, name: &str, seed: u8) -> String {
        std::fs::create_dir_all(dir).unwrap();
        let pk = smolvm_signing::SecretKey::from_seed(&[seed; 32]).public_key();
        std::fs::write(dir.join(format!("{name}.pub")), pk.to_file_string()).unwrap();
        pk.key_id().to_string()
    }

    fn ids(t: &TrustedKeys) -> Vec<String> {
        t.keys.iter().map(|k| k.key_id().to_string()).collect()
    }

    #[test]
    fn given_keys_win_over_directories() {
        let t = tempfile::tempdir().unwrap();
        let (user, system) = (t.path().join("user"), t.path().join("system"));
        let a = key_file(&user, "a", 1);
        let b = key_file(&t.path().join("given"), "b", 2);
        let given = [t.path().join("given/b.pub")];
        let r = resolve_trusted(&given, &[user.clone(), system.clone()]).unwrap();
        assert_eq!(r.source, KeySource::Given);
        assert_eq!(ids(&r), vec![b]);
        // Without given keys: the directories, user's and system's together.
        let c = key_file(&system, "c", 3);
        let r = resolve_trusted(&[], &[user.clone(), system.clone()]).unwrap();
        assert_eq!(r.source, KeySource::Directories(vec![user.clone(), system]));
        assert_eq!(ids(&r), vec![a, c]);
    }

    #[test]
    fn empty_or_missing_directories_mean_no_trusted_keys() {
        let t = tempfile::tempdir().unwrap();
        let empty = t.path().join("empty");
        std::fs::create_dir_all(&empty).unwrap();
        std::fs::write(empty.join("README"), "not a key").unwrap();
        let r = resolve_trusted(&[], &[empty, t.path().join("missing")]).unwrap();
        assert_eq!(r.source, KeySource::None);
        assert!(r.keys.is_empty());
    }

    #[test]
    fn a_bad_key_file_or_directory_is_an_error_naming_it() {
        let t = tempfile::tempdir().unwrap();
        let dir = t.path().join("keys");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("broken.pub"), "nonsense\n").unwrap();
        let e = resolve_trusted(&[], std::slice::from_ref(&dir))
            .err()
            .unwrap();
        assert!(
            crate::exit::chain(&e).to_string().contains("broken.pub"),
            "{e}"
        );
        // A file where the directory should be cannot be listed.
        let file = t.path().join("file");
        std::fs::write(&file, "").unwrap();
        let e = resolve_trusted(&[], std::slice::from_ref(&file))
            .err()
            .unwrap();
        assert!(matches!(e, TrustError::KeyDir { .. }), "{e}");
        assert_eq!(crate::error::exit_code(&e), crate::exit::USAGE_OR_IO);
    }

    #[test]
    fn remembered_minimum_only_rises_and_survives_reload() {
        let t = tempfile::tempdir().unwrap();
        let path = t.path().join("state/min-versions.json");
        let (k, other) = (KeyId::from_bytes([1; 8]), KeyId::from_bytes([2; 8]));
        let mut s = VersionState::load(&path).unwrap();
        assert_eq!(s.minimum(k, "app"), None);
        s.remember(k, "app", "1.10.0").unwrap();
        s.remember(k, "app", "1.9.0").unwrap();
        let s = VersionState::load(&path).unwrap();
        assert_eq!(s.minimum(k, "app"), Some("1.10.0"));
        assert_eq!(s.minimum(other, "app"), None, "per signer");
        // The state file is keyed by the key id's text, as before it was typed.
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.contains("\"0101010101010101 app\""), "{text}");
        std::fs::write(&path, "[1,2]").unwrap();
        let e = VersionState::load(&path).err().unwrap();
        assert!(matches!(e, TrustError::StateSyntax { .. }), "{e}");
    }

    #[test]
    fn versions_compare_numerically() {
        assert!(version_at_least("1.10.0", "1.9"));
        assert!(version_at_least("2.0.0", "2.0.0"));
        assert!(!version_at_least("1.2.3", "1.3"));
    }

    #[test]
    fn pre_releases_sort_below_their_release() {
        use std::cmp::Ordering::*;
        // After a trusted rc run, the final release must still start.
        assert!(version_at_least("1.1.0", "1.1.0-rc1"));
        assert!(!version_at_least("1.1.0-rc1", "1.1.0"));
        // SemVer 2.0.0 section 11's example, in order.
        let ordered = [
            "1.0.0-alpha",
            "1.0.0-alpha.1",
            "1.0.0-alpha.beta",
            "1.0.0-beta",
            "1.0.0-beta.2",
            "1.0.0-beta.11",
            "1.0.0-rc.1",
            "1.0.0",
            "1.0.1",
            "1.10.0",
        ];
        for w in ordered.windows(2) {
            assert_eq!(compare_versions(w[0], w[1]), Less, "{} < {}", w[0], w[1]);
            assert_eq!(compare_versions(w[1], w[0]), Greater, "{} > {}", w[1], w[0]);
        }
        assert_eq!(compare_versions("1.2", "1.2.0"), Equal);
        assert_eq!(compare_versions("1.2.0+build.5", "1.2.0"), Equal);
        assert_eq!(compare_versions("2.0.0-rc1", "1.9.9"), Greater);
    }
}

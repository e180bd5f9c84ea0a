//! Every per-user directory the runtime and the packer use, resolved by one
//! rule: an XDG base directory (`XDG_CACHE_HOME`, `XDG_CONFIG_HOME`,
//! `XDG_STATE_HOME`, `XDG_DATA_HOME`) counts only when it is an absolute
//! path, as the XDG Base Directory specification says; otherwise
//! `$HOME/<default>`, again only when `HOME` is absolute.
//!
//! Why it matters: a relative value would be resolved against whatever
//! directory a tool happens to be started in (a downloads folder, a
//! repository), and the cache there is what a start trusts and boots from.
//!
//! ```text
//! cache   $SMOLVM_CACHE_DIR, else $XDG_CACHE_HOME/smolvm, else ~/.cache/smolvm
//! config  $XDG_CONFIG_HOME/smolvm, else ~/.config/smolvm   (trusted-keys/)
//! state   $XDG_STATE_HOME/smolvm, else ~/.local/state/smolvm (min-versions.json)
//! data    $XDG_DATA_HOME/smolvm, else ~/.local/share/smolvm (storage/)
//! menu    $XDG_DATA_HOME/applications, else ~/.local/share/applications
//! bin     ~/.local/bin (the specification's place for a person's programs)
//! ```
//!
//! `SMOLVM_CACHE_DIR` is the person's explicit choice and is taken as given
//! (a relative one is made absolute against the current directory once, here).

use std::ffi::OsString;
use std::path::PathBuf;

fn absolute(v: OsString) -> Option<PathBuf> {
    Some(PathBuf::from(v)).filter(|p| p.is_absolute())
}

/// `$VAR` when it is absolute, else `$HOME/<under_home>`.
fn xdg(var: &str, under_home: &str) -> Option<PathBuf> {
    std::env::var_os(var)
        .and_then(absolute)
        .or_else(|| home().map(|h| h.join(under_home)))
}

fn home() -> Option<PathBuf> {
    std::env::var_os("HOME").and_then(absolute)
}

/// `$VAR/smolvm` when `VAR` is absolute, else `$HOME/<under_home>/smolvm`.
fn base(var: &str, under_home: &str) -> Option<PathBuf> {
    xdg(var, under_home).map(|d| d.join("smolvm"))
}

/// The cache: `SMOLVM_CACHE_DIR`, else `$XDG_CACHE_HOME/smolvm`, else
/// `~/.cache/smolvm`.
pub fn cache() -> Option<PathBuf> {
    if let Some(d) = std::env::var_os("SMOLVM_CACHE_DIR").filter(|d| !d.is_empty()) {
        let d = PathBuf::from(d);
        return Some(if d.is_absolute() {
            d
        } else {
            std::env::current_dir().ok()?.join(d)
        });
    }
    base("XDG_CACHE_HOME", ".cache")
}

/// The person's configuration (`trusted-keys/`).
pub fn config() -> Option<PathBuf> {
    base("XDG_CONFIG_HOME", ".config")
}

/// What the runtime remembers between starts (`min-versions.json`).
pub fn state() -> Option<PathBuf> {
    base("XDG_STATE_HOME", ".local/state")
}

/// The person's data (`storage/`).
pub fn data() -> Option<PathBuf> {
    base("XDG_DATA_HOME", ".local/share")
}

/// Where desktop menu entries of the person go (`applications/` in the
/// data directory, crate::install).
pub fn applications() -> Option<PathBuf> {
    xdg("XDG_DATA_HOME", ".local/share").map(|d| d.join("applications"))
}

/// The person's hicolor icon theme (`icons/hicolor/` in the data
/// directory), where `--smolvm-install` puts a tool's icon (crate::install).
pub fn hicolor_icons() -> Option<PathBuf> {
    xdg("XDG_DATA_HOME", ".local/share").map(|d| d.join("icons/hicolor"))
}

/// `~/.local/bin`, where `--smolvm-install` copies a tool (crate::install).
pub fn user_bin() -> Option<PathBuf> {
    home().map(|h| h.join(".local/bin"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_xdg_values_are_ignored() {
        assert_eq!(absolute("rel/dir".into()), None);
        assert_eq!(absolute("".into()), None);
        assert_eq!(absolute("/abs".into()), Some(PathBuf::from("/abs")));
    }
}

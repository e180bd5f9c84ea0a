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
//! sockets $XDG_RUNTIME_DIR, else /dev/shm, else the temporary directory
//!         (each start's private control-socket directory, crate::control)
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

/// Where a start makes its private directory for the control socket: a
/// memory file system when there is one, because making a directory and
/// binding a socket there costs ~25 µs against ~560 µs on this project's
/// ext4 `/tmp` (measured 2026-12-07; every start pays it before the VMM
/// forks).
///
/// `$XDG_RUNTIME_DIR` when it is absolute and what the XDG specification
/// promises (a directory of this user's, mode 0700; anything else is
/// ignored, as a relative value is); else `/dev/shm` when it is a tmpfs
/// with the sticky bit (the per-start directory is 0700 and randomly
/// named, and the sticky bit stops others from removing it); else the
/// temporary directory (`$TMPDIR`, `/tmp`).
pub fn sockets() -> PathBuf {
    let runtime = std::env::var_os("XDG_RUNTIME_DIR")
        .and_then(absolute)
        .filter(|d| private_dir(d));
    runtime
        .or_else(|| Some(PathBuf::from("/dev/shm")).filter(|d| sticky_tmpfs(d)))
        .unwrap_or_else(std::env::temp_dir)
}

/// A directory owned by this user that no one else may enter.
fn private_dir(d: &std::path::Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    // SAFETY: geteuid has no preconditions and cannot fail.
    let me = unsafe { libc::geteuid() };
    std::fs::symlink_metadata(d).is_ok_and(|m| m.is_dir() && m.uid() == me && m.mode() & 0o077 == 0)
}

/// A tmpfs directory with the sticky bit (as `/dev/shm` is everywhere).
fn sticky_tmpfs(d: &std::path::Path) -> bool {
    use std::os::unix::ffi::OsStrExt;
    use std::os::unix::fs::MetadataExt;
    let Ok(m) = std::fs::symlink_metadata(d) else {
        return false;
    };
    if !m.is_dir() || m.mode() & 0o1000 == 0 {
        return false;
    }
    let Ok(c) = std::ffi::CString::new(d.as_os_str().as_bytes()) else {
        return false;
    };
    // SAFETY: an all-zero statfs is a valid value for the kernel to fill.
    let mut fs: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: `c` is a NUL-terminated path and `fs` a writable statfs.
    let r = unsafe { libc::statfs(c.as_ptr(), &mut fs) };
    // f_type's integer type differs between C libraries and architectures.
    #[allow(clippy::unnecessary_cast)]
    let tmpfs = fs.f_type as i64 == libc::TMPFS_MAGIC as i64;
    r == 0 && tmpfs
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

    #[test]
    fn only_private_runtime_directories_count() {
        use std::os::unix::fs::PermissionsExt;
        let d = tempfile::tempdir().unwrap();
        std::fs::set_permissions(d.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
        assert!(private_dir(d.path()));
        std::fs::set_permissions(d.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        assert!(!private_dir(d.path()), "a directory others may enter");
        let f = d.path().join("file");
        std::fs::write(&f, b"").unwrap();
        assert!(!private_dir(&f), "not a directory");
        assert!(!sticky_tmpfs(d.path()), "not sticky");
    }
}

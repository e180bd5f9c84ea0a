//! Creating a new key pair on disk.

use std::fs::{self, DirBuilder, File, OpenOptions, Permissions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use rand_core::{OsRng, RngCore};

use crate::error::SigningError;
use crate::keys::{PublicKey, SecretKey};

/// File name extension of a secret key written by [`write_keypair`].
pub const SECRET_KEY_EXTENSION: &str = "key";
/// File name extension of a public key written by [`write_keypair`].
pub const PUBLIC_KEY_EXTENSION: &str = "pub";

/// Only the owner may read a secret key.
const SECRET_MODE: u32 = 0o600;
/// A public key is for everyone to read.
const PUBLIC_MODE: u32 = 0o644;
/// A key directory we create is private: it holds the secret key.
const DIR_MODE: u32 = 0o700;

/// Generates a key pair and writes `DIR/NAME.key` (mode 0600) and
/// `DIR/NAME.pub` (mode 0644), creating `dir` (mode 0700) if missing.
///
/// Unless `force`, an existing `NAME.key` or `NAME.pub` is an error and the
/// secret key file is created exclusively (`O_EXCL`), so a key is never
/// replaced by accident, not even by a concurrent run. With `force` each file
/// is written to a temporary name and renamed over the old one, so a crash
/// leaves the old or the new file, never half of one.
///
/// Returns the secret key path, the public key path and the public key.
pub fn write_keypair(
    dir: &Path,
    name: &str,
    force: bool,
) -> Result<(PathBuf, PathBuf, PublicKey), SigningError> {
    check_key_name(name)?;
    DirBuilder::new()
        .recursive(true)
        .mode(DIR_MODE)
        .create(dir)
        .map_err(|source| SigningError::Io {
            action: "create key directory",
            path: dir.to_owned(),
            source,
        })?;
    let secret_path = dir.join(format!("{name}.{SECRET_KEY_EXTENSION}"));
    let public_path = dir.join(format!("{name}.{PUBLIC_KEY_EXTENSION}"));
    if !force {
        // The exclusive create below is what guarantees no overwrite; these
        // checks give the clearer error and keep a stale .pub from being
        // silently paired with a new secret.
        for path in [&secret_path, &public_path] {
            if fs::symlink_metadata(path).is_ok() {
                return Err(SigningError::KeyExists { path: path.clone() });
            }
        }
    }

    let secret = SecretKey::generate();
    let public = secret.public_key();
    let secret_text = zeroize::Zeroizing::new(secret.to_file_string());
    if force {
        replace_file(&secret_path, secret_text.as_bytes(), SECRET_MODE)?;
    } else {
        create_exclusive(&secret_path, secret_text.as_bytes(), SECRET_MODE).map_err(
            |e| match e {
                SigningError::Io { source, .. }
                    if source.kind() == io::ErrorKind::AlreadyExists =>
                {
                    SigningError::KeyExists {
                        path: secret_path.clone(),
                    }
                }
                other => other,
            },
        )?;
    }
    replace_file(
        &public_path,
        public.to_file_string().as_bytes(),
        PUBLIC_MODE,
    )?;
    sync_dir(dir)?;
    Ok((secret_path, public_path, public))
}

/// Key names become file names: keep them to a portable set, and refuse a
/// leading '.' so that names like `..` cannot climb out of `dir`.
fn check_key_name(name: &str) -> Result<(), SigningError> {
    let portable = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.');
    if name.is_empty() || name.starts_with('.') || !name.chars().all(portable) {
        return Err(SigningError::InvalidKeyName {
            name: name.to_owned(),
        });
    }
    Ok(())
}

/// Creates `path`, failing if it exists, and writes `contents` durably. A
/// partly written file is removed: it is ours, and a truncated key is worse
/// than none.
fn create_exclusive(path: &Path, contents: &[u8], mode: u32) -> Result<(), SigningError> {
    let io_error = |action, source| SigningError::Io {
        action,
        path: path.to_owned(),
        source,
    };
    let file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .map_err(|e| io_error("create key file", e))?;
    if let Err(e) = write_durably(file, contents, mode) {
        let _ = fs::remove_file(path);
        return Err(io_error("write key file", e));
    }
    Ok(())
}

/// Writes `contents` to a fresh temporary file beside `path` and renames it
/// over `path`. The temporary file is created with `mode`, so the secret is
/// never readable by others, whatever the old file's mode was.
fn replace_file(path: &Path, contents: &[u8], mode: u32) -> Result<(), SigningError> {
    let file_name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let temp_path = path.with_file_name(format!(".{file_name}.tmp-{:016x}", OsRng.next_u64()));
    create_exclusive(&temp_path, contents, mode)?;
    fs::rename(&temp_path, path).map_err(|source| {
        let _ = fs::remove_file(&temp_path);
        SigningError::Io {
            action: "replace key file",
            path: path.to_owned(),
            source,
        }
    })
}

fn write_durably(mut file: File, contents: &[u8], mode: u32) -> io::Result<()> {
    // The umask may have cleared bits of `mode` at create time (0644 would
    // become 0600 under umask 077); state the mode exactly.
    file.set_permissions(Permissions::from_mode(mode))?;
    file.write_all(contents)?;
    file.sync_all()
}

/// Makes the new directory entries durable.
fn sync_dir(dir: &Path) -> Result<(), SigningError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|source| SigningError::Io {
            action: "sync key directory",
            path: dir.to_owned(),
            source,
        })
}

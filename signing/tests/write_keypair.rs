//! `write_keypair`: file modes, no accidental overwrite, forced replacement.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use smolvm_signing::{write_keypair, PublicKey, SecretKey, SigningError};

fn mode(path: &Path) -> u32 {
    fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[test]
fn writes_pair_with_modes_into_new_directory() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("nested/keys");
    let (secret_path, public_path, public) = write_keypair(&dir, "smolvm", false).unwrap();
    assert_eq!(secret_path, dir.join("smolvm.key"));
    assert_eq!(public_path, dir.join("smolvm.pub"));
    assert_eq!(mode(&secret_path), 0o600);
    assert_eq!(mode(&public_path), 0o644);
    assert_eq!(mode(&dir), 0o700);
    let secret = SecretKey::read_file(&secret_path).unwrap();
    assert_eq!(secret.public_key(), public);
    assert_eq!(PublicKey::read_file(&public_path).unwrap(), public);
    // No temporary files are left behind.
    assert_eq!(fs::read_dir(&dir).unwrap().count(), 2);
}

#[test]
fn refuses_to_overwrite_existing_key() {
    let dir = tempfile::tempdir().unwrap();
    let (secret_path, public_path, _) = write_keypair(dir.path(), "smolvm", false).unwrap();
    let secret_before = fs::read(&secret_path).unwrap();
    let public_before = fs::read(&public_path).unwrap();
    match write_keypair(dir.path(), "smolvm", false) {
        Err(SigningError::KeyExists { path }) => assert_eq!(path, secret_path),
        other => panic!("expected KeyExists, got {other:?}"),
    }
    assert_eq!(fs::read(&secret_path).unwrap(), secret_before);
    assert_eq!(fs::read(&public_path).unwrap(), public_before);
}

#[test]
fn refuses_when_only_the_public_key_exists() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join("smolvm.pub"), "old").unwrap();
    match write_keypair(dir.path(), "smolvm", false) {
        Err(SigningError::KeyExists { path }) => assert_eq!(path, dir.path().join("smolvm.pub")),
        other => panic!("expected KeyExists, got {other:?}"),
    }
    assert!(!dir.path().join("smolvm.key").exists());
}

#[test]
fn force_replaces_and_tightens_mode() {
    let dir = tempfile::tempdir().unwrap();
    let (secret_path, _, first) = write_keypair(dir.path(), "smolvm", false).unwrap();
    // A loosened old file must not lend its mode to the new secret.
    fs::set_permissions(&secret_path, fs::Permissions::from_mode(0o644)).unwrap();
    let (_, public_path, second) = write_keypair(dir.path(), "smolvm", true).unwrap();
    assert_ne!(first, second);
    assert_eq!(mode(&secret_path), 0o600);
    assert_eq!(
        SecretKey::read_file(&secret_path).unwrap().public_key(),
        second
    );
    assert_eq!(PublicKey::read_file(&public_path).unwrap(), second);
    assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 2);
}

#[test]
fn rejects_names_that_are_not_plain_file_names() {
    let dir = tempfile::tempdir().unwrap();
    for name in [
        "",
        ".",
        "..",
        ".hidden",
        "a/b",
        "../escape",
        "sp ace",
        "nul\0",
    ] {
        assert!(
            matches!(
                write_keypair(dir.path(), name, false),
                Err(SigningError::InvalidKeyName { .. })
            ),
            "{name:?} accepted"
        );
    }
    assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 0);
}

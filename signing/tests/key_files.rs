//! Key file formats: the smolvm formats (golden files and malformed inputs)
//! and OpenSSH keys (committed fixtures and, when ssh-keygen is installed,
//! freshly generated ones).

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use smolvm_signing::{PublicKey, SecretKey, SigningError};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

/// Writes `contents` to a file in `dir` and returns its path.
fn write(dir: &tempfile::TempDir, name: &str, contents: &str) -> PathBuf {
    let path = dir.path().join(name);
    fs::write(&path, contents).unwrap();
    path
}

fn syntax_reason(result: Result<impl std::fmt::Debug, SigningError>) -> String {
    match result {
        Err(SigningError::KeyFileSyntax { reason, .. }) => reason,
        other => panic!("expected KeyFileSyntax, got {other:?}"),
    }
}

const RFC_SECRET_LINE: &str =
    "smolvm-ed25519-secret-v1 nWGxne/9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A=";
const RFC_PUBLIC_LINE: &str =
    "smolvm-ed25519-public-v1 11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo= 3c09b807520d5931";

#[test]
fn golden_files_match_writer_output() {
    let secret = SecretKey::read_file(&fixture("rfc8032_test1.key")).unwrap();
    let public = PublicKey::read_file(&fixture("rfc8032_test1.pub")).unwrap();
    assert_eq!(secret.public_key(), public);
    assert_eq!(
        secret.to_file_string(),
        fs::read_to_string(fixture("rfc8032_test1.key")).unwrap()
    );
    assert_eq!(
        public.to_file_string(),
        fs::read_to_string(fixture("rfc8032_test1.pub")).unwrap()
    );
    assert_eq!(public.to_file_string(), format!("{RFC_PUBLIC_LINE}\n"));
}

#[test]
fn generated_key_files_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let secret = SecretKey::generate();
    let secret_path = write(&dir, "k.key", &secret.to_file_string());
    let public_path = write(&dir, "k.pub", &secret.public_key().to_file_string());
    let reread = SecretKey::read_file(&secret_path).unwrap();
    assert_eq!(reread.public_key(), secret.public_key());
    assert_eq!(reread.sign(b"m"), secret.sign(b"m"));
    assert_eq!(
        PublicKey::read_file(&public_path).unwrap(),
        secret.public_key()
    );
}

#[test]
fn comments_and_blank_lines_before_the_key_are_allowed() {
    let dir = tempfile::tempdir().unwrap();
    let secret = write(
        &dir,
        "k",
        &format!("# made by hand\n\n#\n{RFC_SECRET_LINE}\n"),
    );
    let public = write(&dir, "p", &format!("# ci key\n{RFC_PUBLIC_LINE}"));
    assert_eq!(
        SecretKey::read_file(&secret).unwrap().public_key(),
        PublicKey::read_file(&public).unwrap()
    );
}

#[test]
fn malformed_secret_files_are_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        ("empty", String::new(), "no key line"),
        ("comments only", "# nothing\n".into(), "no key line"),
        (
            "31 bytes",
            "smolvm-ed25519-secret-v1 AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA==\n".into(),
            "decodes to 31 bytes",
        ),
        (
            "33 bytes",
            "smolvm-ed25519-secret-v1 AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\n".into(),
            "decodes to 33 bytes",
        ),
        (
            "bad base64",
            "smolvm-ed25519-secret-v1 nWGxne/9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A!\n".into(),
            "base64",
        ),
        (
            "missing padding",
            "smolvm-ed25519-secret-v1 nWGxne/9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A\n".into(),
            "base64",
        ),
        (
            "non-zero trailing bits",
            "smolvm-ed25519-secret-v1 nWGxne/9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2B=\n".into(),
            "base64",
        ),
        (
            "trailing line",
            format!("{RFC_SECRET_LINE}\n# late comment\n"),
            "after the key line",
        ),
        (
            "trailing blank line",
            format!("{RFC_SECRET_LINE}\n\n"),
            "after the key line",
        ),
        (
            "extra field",
            format!("{RFC_SECRET_LINE} extra\n"),
            "after the base64",
        ),
        (
            "trailing space",
            format!("{RFC_SECRET_LINE} \n"),
            "single spaces",
        ),
        ("crlf", format!("{RFC_SECRET_LINE}\r\n"), "carriage return"),
        (
            "wrong version",
            RFC_SECRET_LINE.replace("-v1", "-v2"),
            "not a smolvm or OpenSSH ed25519 secret key",
        ),
        ("public key", RFC_PUBLIC_LINE.into(), "is a public key"),
        (
            "pkcs8",
            "-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIA==\n-----END PRIVATE KEY-----\n"
                .into(),
            "not an OpenSSH private key",
        ),
    ];
    for (name, contents, expected) in cases {
        let path = write(&dir, "bad.key", &contents);
        let reason = syntax_reason(SecretKey::read_file(&path));
        assert!(reason.contains(expected), "{name}: {reason}");
        // Secret key errors never quote the file.
        assert!(
            !reason.contains("nWGxne"),
            "{name} quotes the secret: {reason}"
        );
    }
}

#[test]
fn malformed_public_files_are_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        (
            "31 bytes",
            "smolvm-ed25519-public-v1 AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA== 3c09b807520d5931",
            "decodes to 31 bytes",
        ),
        (
            "bad base64",
            "smolvm-ed25519-public-v1 11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo 3c09b807520d5931",
            "base64",
        ),
        (
            "missing key id",
            "smolvm-ed25519-public-v1 11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=",
            "three fields",
        ),
        (
            "extra field",
            "smolvm-ed25519-public-v1 11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo= 3c09b807520d5931 x",
            "three fields",
        ),
        (
            "uppercase key id",
            "smolvm-ed25519-public-v1 11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo= 3C09B807520D5931",
            "16 lowercase hex",
        ),
        (
            "double space",
            "smolvm-ed25519-public-v1  11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo= 3c09b807520d5931",
            "single spaces",
        ),
        (
            "small-order key",
            "smolvm-ed25519-public-v1 AQAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA= bb180932ba0ffe33",
            "small-order",
        ),
        ("secret key", RFC_SECRET_LINE, "secret key"),
        ("garbage", "hello world", "not a smolvm or OpenSSH ed25519 public key"),
    ];
    for (name, contents, expected) in cases {
        let path = write(&dir, "bad.pub", contents);
        let reason = syntax_reason(PublicKey::read_file(&path));
        assert!(reason.contains(expected), "{name}: {reason}");
    }
}

#[test]
fn public_file_with_wrong_key_id_is_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(
        &dir,
        "k.pub",
        &RFC_PUBLIC_LINE.replace("3c09b807520d5931", "3c09b807520d5930"),
    );
    match PublicKey::read_file(&path) {
        Err(SigningError::KeyIdMismatch {
            stated, computed, ..
        }) => {
            assert_eq!(stated.to_string(), "3c09b807520d5930");
            assert_eq!(computed.to_string(), "3c09b807520d5931");
        }
        other => panic!("expected KeyIdMismatch, got {other:?}"),
    }
}

#[test]
fn errors_name_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(&dir, "named.key", "junk\n");
    let message = SecretKey::read_file(&path).unwrap_err().to_string();
    assert!(message.contains(&path.display().to_string()), "{message}");
    let missing = dir.path().join("missing.pub");
    match PublicKey::read_file(&missing) {
        Err(err @ SigningError::Io { .. }) => {
            assert!(err.to_string().contains("missing.pub"), "{err}")
        }
        other => panic!("expected Io, got {other:?}"),
    }
}

#[test]
fn oversized_file_is_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(&dir, "big.key", &"#".repeat(100_000));
    assert!(syntax_reason(SecretKey::read_file(&path)).contains("too big"));
}

/// Key id of the committed OpenSSH fixture, computed with Python from the
/// `.pub` file (see tests/fixtures/README.md).
const OPENSSH_FIXTURE_KEY_ID: &str = "27269f504bb11463";

#[test]
fn openssh_fixture_pair_reads() {
    let secret = SecretKey::read_file(&fixture("openssh_ed25519")).unwrap();
    let public = PublicKey::read_file(&fixture("openssh_ed25519.pub")).unwrap();
    assert_eq!(secret.public_key(), public);
    assert_eq!(public.key_id().to_string(), OPENSSH_FIXTURE_KEY_ID);
    public.verify(b"m", &secret.sign(b"m")).unwrap();
}

#[test]
fn encrypted_openssh_key_says_to_decrypt_it() {
    let path = fixture("openssh_ed25519_encrypted");
    let err = SecretKey::read_file(&path).unwrap_err();
    assert!(
        matches!(err, SigningError::EncryptedOpenSshKey { .. }),
        "{err:?}"
    );
    let message = err.to_string();
    assert!(message.contains("ssh-keygen -p -N \"\""), "{message}");
    assert!(message.contains("openssh_ed25519_encrypted"), "{message}");
    // Its public half is ordinary and readable.
    PublicKey::read_file(&fixture("openssh_ed25519_encrypted.pub")).unwrap();
}

#[test]
fn openssh_rsa_keys_are_unsupported() {
    for (result, name) in [
        (
            PublicKey::read_file(&fixture("openssh_rsa.pub")).map(drop),
            "public",
        ),
        (
            SecretKey::read_file(&fixture("openssh_rsa")).map(drop),
            "secret",
        ),
    ] {
        match result {
            Err(SigningError::UnsupportedOpenSshKey { algorithm, .. }) => {
                assert_eq!(algorithm, "ssh-rsa", "{name}")
            }
            other => panic!("{name}: expected UnsupportedOpenSshKey, got {other:?}"),
        }
    }
}

#[test]
fn corrupted_openssh_public_key_is_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let line = fs::read_to_string(fixture("openssh_ed25519.pub")).unwrap();
    let path = write(&dir, "k.pub", &line.replacen("AAAAC3", "AAAAC4", 1));
    assert!(matches!(
        PublicKey::read_file(&path),
        Err(SigningError::OpenSsh { .. })
    ));
}

/// Generates a fresh pair with the system's ssh-keygen, which the committed
/// fixtures cannot keep up with if OpenSSH's output ever changes.
#[test]
fn ssh_keygen_pair_reads() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("id_ed25519");
    let status = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", "smolvm test", "-f"])
        .arg(&key)
        .status();
    match status {
        Ok(status) => assert!(status.success(), "ssh-keygen failed: {status}"),
        Err(e) => {
            eprintln!("skipping: ssh-keygen not runnable ({e}); install openssh-client");
            return;
        }
    }
    let secret = SecretKey::read_file(&key).unwrap();
    let public = PublicKey::read_file(&key.with_extension("pub")).unwrap();
    assert_eq!(secret.public_key(), public);
}

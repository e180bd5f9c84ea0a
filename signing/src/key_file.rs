//! Reading and writing key files: the smolvm text formats, and OpenSSH ed25519
//! keys through the `ssh-key` crate. `KEYS.md` is the specification.
//!
//! ```text
//! # comment lines and empty lines, only before the key line
//! smolvm-ed25519-secret-v1 <base64, 32-byte seed>\n
//! smolvm-ed25519-public-v1 <base64, 32-byte key> <key id, 16 lowercase hex>\n
//! ```

use std::fs::File;
use std::io::Read;
use std::path::Path;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use zeroize::Zeroizing;

use crate::error::SigningError;
use crate::key_id::KeyId;
use crate::keys::{PublicKey, SecretKey, KEY_LEN};

/// First field of a smolvm secret key line.
pub const SECRET_TAG: &str = "smolvm-ed25519-secret-v1";
/// First field of a smolvm public key line.
pub const PUBLIC_TAG: &str = "smolvm-ed25519-public-v1";
/// First line of an OpenSSH private key file.
const OPENSSH_PRIVATE_BEGIN: &str = "-----BEGIN OPENSSH PRIVATE KEY-----";
/// Algorithm field of an OpenSSH ed25519 public key line.
const OPENSSH_ED25519: &str = "ssh-ed25519";

/// Largest key file we read. A 16384-bit OpenSSH RSA private key, the largest
/// key ssh-keygen makes, is about 12 KiB; anything much bigger is not a key,
/// and reading it whole would let a wrong path eat memory.
const MAX_KEY_FILE_LEN: u64 = 64 * 1024;

/// Longest piece of a public key file quoted back in an error message.
const QUOTE_LEN: usize = 40;

// The file methods of the key types live here, beside the formats they
// read and write, so that keys.rs knows nothing of files.
impl PublicKey {
    /// Reads a public key file: the smolvm format or an OpenSSH
    /// `ssh-ed25519 AAAA… comment` line (as in `id_ed25519.pub`).
    pub fn read_file(path: &Path) -> Result<Self, SigningError> {
        read_public(path)
    }

    /// The key in the smolvm public key file format, ending in a newline.
    pub fn to_file_string(&self) -> String {
        format_public(self)
    }
}

impl SecretKey {
    /// Reads a secret key file: the smolvm format or an unencrypted OpenSSH
    /// ed25519 private key (`-----BEGIN OPENSSH PRIVATE KEY-----`).
    pub fn read_file(path: &Path) -> Result<Self, SigningError> {
        read_secret(path)
    }

    /// Reads a secret key in the key file formats from `reader` (standard
    /// input, a pipe), so that it never touches the disk. `origin` names
    /// the source in messages (`-`, `env:NAME`); the text is never quoted.
    pub fn read_from(reader: impl std::io::Read, origin: &str) -> Result<Self, SigningError> {
        read_secret_from(reader, Path::new(origin))
    }

    /// Parses a secret key held in memory (an environment variable) in the
    /// key file formats. `origin` names the source in messages.
    pub fn from_key_text(text: &str, origin: &str) -> Result<Self, SigningError> {
        parse_secret(text, Path::new(origin))
    }

    /// The key in the smolvm secret key file format, ending in a newline.
    /// The string holds the secret; write it to a 0600 file and drop it.
    pub fn to_file_string(&self) -> String {
        format_secret(self)
    }
}

fn format_secret(secret: &SecretKey) -> String {
    let seed = Zeroizing::new(secret.seed());
    format!("{SECRET_TAG} {}\n", *Zeroizing::new(BASE64.encode(*seed)))
}

fn format_public(public: &PublicKey) -> String {
    format!(
        "{PUBLIC_TAG} {} {}\n",
        BASE64.encode(public.to_bytes()),
        public.key_id()
    )
}

fn read_secret(path: &Path) -> Result<SecretKey, SigningError> {
    let file = File::open(path).map_err(|source| SigningError::Io {
        action: "read key file",
        path: path.to_owned(),
        source,
    })?;
    read_secret_from(file, path)
}

/// Reads a secret key in the key file formats from `reader` (standard
/// input, say), refusing more than a key file can hold. `origin` names the
/// source in error messages, which never quote the text.
fn read_secret_from(reader: impl Read, origin: &Path) -> Result<SecretKey, SigningError> {
    let text = read_capped(reader, origin)?;
    parse_secret(&text, origin)
}

/// Parses the text of a secret key file; `path` names its source in
/// messages.
fn parse_secret(text: &str, path: &Path) -> Result<SecretKey, SigningError> {
    if text.trim_start().starts_with(OPENSSH_PRIVATE_BEGIN) {
        return read_openssh_secret(path, text);
    }
    let syntax = |reason: String| SigningError::KeyFileSyntax {
        path: path.to_owned(),
        reason,
    };
    // Error messages never quote a secret key file: its text may be a
    // secret in a format we do not know.
    let key_line = key_line(text).map_err(syntax)?;
    let (line_no, line) = (key_line.number, key_line.text);
    let Some(encoded) = line
        .strip_prefix(SECRET_TAG)
        .and_then(|r| r.strip_prefix(' '))
    else {
        let reason = if line.starts_with(PUBLIC_TAG) || line.starts_with(OPENSSH_ED25519) {
            format!("line {line_no} is a public key; signing needs the secret key file")
        } else if line.starts_with("-----BEGIN") {
            format!(
                "line {line_no} starts a PEM block that is not an OpenSSH private key; only \
                 `{OPENSSH_PRIVATE_BEGIN}` ed25519 keys are read (ssh-keygen -t ed25519)"
            )
        } else {
            format!(
                "not a smolvm or OpenSSH ed25519 secret key (line {line_no} starts with neither \
                 `{SECRET_TAG} ` nor `{OPENSSH_PRIVATE_BEGIN}`)"
            )
        };
        return Err(syntax(reason));
    };
    key_line.ensure_last().map_err(syntax)?;
    check_single_spaces(line_no, line).map_err(syntax)?;
    if encoded.contains(' ') {
        return Err(syntax(format!(
            "line {line_no}: unexpected text after the base64 secret key"
        )));
    }
    let seed = decode_key_bytes(encoded)
        .map_err(|fault| syntax(format!("line {line_no}: secret key {fault}")))?;
    Ok(SecretKey::from_seed(&seed))
}

fn read_public(path: &Path) -> Result<PublicKey, SigningError> {
    let text = read_key_file(path)?;
    let syntax = |reason: String| SigningError::KeyFileSyntax {
        path: path.to_owned(),
        reason,
    };
    let key_line = key_line(&text).map_err(syntax)?;
    let (line_no, line) = (key_line.number, key_line.text);
    let first_field = line.split(' ').next().unwrap_or_default();
    if first_field == OPENSSH_ED25519 {
        key_line.ensure_last().map_err(syntax)?;
        return read_openssh_public(path, line);
    }
    if first_field != PUBLIC_TAG {
        let reason = if first_field == SECRET_TAG || line.contains("PRIVATE KEY-----") {
            format!(
                "line {line_no} starts a secret key; give the public key file (.pub) instead, \
                 and keep this one private"
            )
        } else if first_field.starts_with("ssh-")
            || first_field.starts_with("ecdsa-")
            || first_field.starts_with("sk-")
        {
            return Err(SigningError::UnsupportedOpenSshKey {
                path: path.to_owned(),
                algorithm: quote(first_field),
            });
        } else {
            format!(
                "not a smolvm or OpenSSH ed25519 public key (line {line_no} starts with {:?}, \
                 expected `{PUBLIC_TAG}` or `{OPENSSH_ED25519}`)",
                quote(first_field)
            )
        };
        return Err(syntax(reason));
    }
    key_line.ensure_last().map_err(syntax)?;
    check_single_spaces(line_no, line).map_err(syntax)?;
    let mut fields = line.split(' ').skip(1);
    let (Some(encoded), Some(stated_id), None) = (fields.next(), fields.next(), fields.next())
    else {
        return Err(syntax(format!(
            "line {line_no}: expected `{PUBLIC_TAG} <base64 key> <key id>`, three fields \
             separated by single spaces"
        )));
    };
    let bytes = decode_key_bytes(encoded)
        .map_err(|fault| syntax(format!("line {line_no}: public key {fault}")))?;
    let stated: KeyId = stated_id.parse().map_err(|_| {
        syntax(format!(
            "line {line_no}: key id {:?} is not 16 lowercase hex digits",
            quote(stated_id)
        ))
    })?;
    let key = PublicKey::from_bytes(&bytes).map_err(|e| syntax(format!("line {line_no}: {e}")))?;
    if key.key_id() != stated {
        return Err(SigningError::KeyIdMismatch {
            path: path.to_owned(),
            stated,
            computed: key.key_id(),
        });
    }
    Ok(key)
}

fn read_openssh_public(path: &Path, line: &str) -> Result<PublicKey, SigningError> {
    let parsed =
        ssh_key::PublicKey::from_openssh(line).map_err(|source| SigningError::OpenSsh {
            path: path.to_owned(),
            source,
        })?;
    let Some(ed25519) = parsed.key_data().ed25519() else {
        return Err(SigningError::UnsupportedOpenSshKey {
            path: path.to_owned(),
            algorithm: parsed.algorithm().to_string(),
        });
    };
    PublicKey::from_bytes(&ed25519.0).map_err(|e| SigningError::KeyFileSyntax {
        path: path.to_owned(),
        reason: e.to_string(),
    })
}

fn read_openssh_secret(path: &Path, text: &str) -> Result<SecretKey, SigningError> {
    let parsed =
        ssh_key::PrivateKey::from_openssh(text).map_err(|source| SigningError::OpenSsh {
            path: path.to_owned(),
            source,
        })?;
    if parsed.is_encrypted() {
        return Err(SigningError::EncryptedOpenSshKey {
            path: path.to_owned(),
        });
    }
    let Some(keypair) = parsed.key_data().ed25519() else {
        return Err(SigningError::UnsupportedOpenSshKey {
            path: path.to_owned(),
            algorithm: parsed.algorithm().to_string(),
        });
    };
    // ssh-key has already checked that the stored public key belongs to the
    // seed, so only the seed is kept.
    let seed = Zeroizing::new(keypair.private.to_bytes());
    Ok(SecretKey::from_seed(&seed))
}

/// Reads the whole file, refusing anything larger than a key file can be.
fn read_key_file(path: &Path) -> Result<Zeroizing<String>, SigningError> {
    let file = File::open(path).map_err(|source| SigningError::Io {
        action: "read key file",
        path: path.to_owned(),
        source,
    })?;
    read_capped(file, path)
}

/// Reads `reader` to its end as UTF-8 text, refusing anything larger than a
/// key file can be; `path` names the source in messages.
fn read_capped(reader: impl Read, path: &Path) -> Result<Zeroizing<String>, SigningError> {
    let io_error = |source| SigningError::Io {
        action: "read key file",
        path: path.to_owned(),
        source,
    };
    let mut bytes = Zeroizing::new(Vec::new());
    reader
        .take(MAX_KEY_FILE_LEN + 1)
        .read_to_end(&mut bytes)
        .map_err(io_error)?;
    let syntax = |reason: String| SigningError::KeyFileSyntax {
        path: path.to_owned(),
        reason,
    };
    if u64::try_from(bytes.len()).map_or(true, |len| len > MAX_KEY_FILE_LEN) {
        return Err(syntax(format!(
            "larger than {MAX_KEY_FILE_LEN} bytes, too big to be a key file"
        )));
    }
    let text = std::str::from_utf8(&bytes)
        .map_err(|e| syntax(format!("not UTF-8 text (byte {})", e.valid_up_to())))?;
    Ok(Zeroizing::new(text.to_owned()))
}

/// The key line of a key file: the first line that is neither empty nor a
/// `#` comment.
struct KeyLine<'a> {
    /// 1-based line number.
    number: usize,
    /// The line without its newline.
    text: &'a str,
    /// 1-based number of the line after the key line, if there is one.
    next_line: Option<usize>,
}

impl KeyLine<'_> {
    /// Nothing may follow the key line but its newline. Checked after the
    /// line is recognised, so that a file of another kind gets an error
    /// naming that kind rather than this one.
    fn ensure_last(&self) -> Result<(), String> {
        match self.next_line {
            None => Ok(()),
            Some(next) => Err(format!(
                "line {next}: unexpected text after the key line {}; a key file holds one key \
                 and comments only before it",
                self.number
            )),
        }
    }
}

fn key_line(text: &str) -> Result<KeyLine<'_>, String> {
    if let Some(pos) = text.find('\r') {
        let line_no = text[..pos].matches('\n').count() + 1;
        return Err(format!(
            "line {line_no} contains a carriage return; key files use LF line endings \
             (convert with dos2unix)"
        ));
    }
    let mut lines = text.split_inclusive('\n').enumerate();
    for (index, raw) in lines.by_ref() {
        let line = raw.strip_suffix('\n').unwrap_or(raw);
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        return Ok(KeyLine {
            number: index + 1,
            text: line,
            next_line: lines.next().map(|(next_index, _)| next_index + 1),
        });
    }
    Err("no key line: the file is empty or holds only comments".to_owned())
}

/// Our key lines separate fields by exactly one space, so that each key has
/// exactly one spelling.
fn check_single_spaces(line_no: usize, line: &str) -> Result<(), String> {
    if line.ends_with(' ') || line.contains("  ") || line.contains('\t') {
        return Err(format!(
            "line {line_no}: fields must be separated by single spaces, with no trailing white \
             space"
        ));
    }
    Ok(())
}

/// Decodes the base64 field of a key line into exactly 32 bytes. The error
/// says what is wrong without quoting the field, which may be secret.
fn decode_key_bytes(encoded: &str) -> Result<Zeroizing<[u8; KEY_LEN]>, String> {
    // The decoder's error quotes an offending byte; not repeated, as the
    // field may be secret.
    let decoded = Zeroizing::new(BASE64.decode(encoded).map_err(|_| {
        "is not canonical standard base64 (alphabet A-Z a-z 0-9 + /, '=' padding)".to_owned()
    })?);
    let mut bytes = Zeroizing::new([0u8; KEY_LEN]);
    if decoded.len() != KEY_LEN {
        return Err(format!(
            "decodes to {} bytes, expected {KEY_LEN}",
            decoded.len()
        ));
    }
    bytes.copy_from_slice(&decoded);
    Ok(bytes)
}

/// A piece of a public key file, cut short for an error message.
fn quote(text: &str) -> String {
    match text.char_indices().nth(QUOTE_LEN) {
        Some((end, _)) => format!("{}…", &text[..end]),
        None => text.to_owned(),
    }
}

//! Where `pack create` gets its signature from: a key file, or a key that
//! never touches the disk (an environment variable, standard input, an
//! ssh-agent, a PKCS#11 token).
//!
//! ```text
//! --key PATH                   a key file (smolvm .key or OpenSSH id_ed25519)
//! --key env:NAME               the same text in environment variable NAME
//! --key -                      the same text on standard input
//! --key ssh-agent[:WHICH]      an ed25519 key held by the agent at $SSH_AUTH_SOCK
//! --key pkcs11:URI             an ed25519 key in a token (RFC 7512 URI, CKM_EDDSA)
//! ```
//!
//! Ed25519 signatures are deterministic (RFC 8032), so every source gives
//! the same signature, key id and artifact bytes for the same key. A
//! signature made elsewhere (agent, token) is checked against the public
//! key before it is used: a device that answers with another key's
//! signature, or garbage, fails here, not at a user's first start.

mod agent;
mod pkcs11;

use std::ffi::OsStr;
use std::path::PathBuf;

use smolvm_runtime::exit::{ExitStatus, INVALID, USAGE_OR_IO};
use smolvm_signing::{PublicKey, SecretKey, SigningError, SIGNATURE_LEN};

pub use agent::AgentError;
pub use pkcs11::{Pkcs11Error, Pkcs11Uri};

/// What `--key` (or the Smolfile's `[pack] key`) names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KeySpec {
    /// A secret key file.
    File(PathBuf),
    /// `env:NAME`: the key file's text in an environment variable.
    Env(String),
    /// `-`: the key file's text on standard input.
    Stdin,
    /// `ssh-agent[:WHICH]`: a key held by an ssh-agent; `WHICH` selects one
    /// by fingerprint (`SHA256:…`), smolvm key id or comment.
    SshAgent(Option<String>),
    /// `pkcs11:…`: a key in a PKCS#11 token.
    Pkcs11(Pkcs11Uri),
}

impl KeySpec {
    /// Reads a `--key` value. Anything that is not one of the prefixed
    /// forms is a file path; a file literally named `-` or `env:X` is
    /// given as `./-` or `./env:X`.
    pub fn parse(value: &OsStr) -> Result<KeySpec, SignerError> {
        let Some(text) = value.to_str() else {
            return Ok(KeySpec::File(PathBuf::from(value)));
        };
        if text == "-" {
            return Ok(KeySpec::Stdin);
        }
        if let Some(name) = text.strip_prefix("env:") {
            if name.is_empty() || name.contains('=') || name.contains('\0') {
                return Err(SignerError::Spec(format!(
                    "--key {text:?}: expected env:NAME with NAME an environment variable name"
                )));
            }
            return Ok(KeySpec::Env(name.to_owned()));
        }
        if text == "ssh-agent" {
            return Ok(KeySpec::SshAgent(None));
        }
        if let Some(which) = text.strip_prefix("ssh-agent:") {
            if which.is_empty() {
                return Err(SignerError::Spec(
                    "--key ssh-agent: expected a key after the colon (SHA256:… fingerprint, key id \
                     or comment), or plain ssh-agent for the agent's only ed25519 key"
                        .into(),
                ));
            }
            return Ok(KeySpec::SshAgent(Some(which.to_owned())));
        }
        if text.starts_with("pkcs11:") {
            return Ok(KeySpec::Pkcs11(Pkcs11Uri::parse(text)?));
        }
        Ok(KeySpec::File(PathBuf::from(text)))
    }

    /// True for a key file path (which a Smolfile resolves against its
    /// own directory).
    pub fn is_file(&self) -> bool {
        matches!(self, KeySpec::File(_))
    }

    /// Opens the key: reads it into memory, or connects to the agent or
    /// token and finds it there.
    pub fn open(&self) -> Result<Signer, SignerError> {
        Ok(match self {
            KeySpec::File(path) => Signer::Local(SecretKey::read_file(path)?),
            KeySpec::Env(name) => {
                let origin = format!("env:{name}");
                let value = std::env::var_os(name).ok_or_else(|| {
                    SignerError::Spec(format!(
                        "--key {origin}: environment variable {name} is not set"
                    ))
                })?;
                let text = zeroize::Zeroizing::new(value.into_string().map_err(|_| {
                    SignerError::Spec(format!(
                        "--key {origin}: environment variable {name} is not UTF-8 text"
                    ))
                })?);
                Signer::Local(SecretKey::from_key_text(&text, &origin)?)
            }
            KeySpec::Stdin => Signer::Local(SecretKey::read_from(std::io::stdin().lock(), "-")?),
            KeySpec::SshAgent(which) => Signer::Agent(agent::AgentKey::open(which.as_deref())?),
            KeySpec::Pkcs11(uri) => Signer::Pkcs11(pkcs11::TokenKey::open(uri)?),
        })
    }
}

/// An opened signing key.
pub enum Signer {
    /// The secret key in this process's memory.
    Local(SecretKey),
    /// A key held by an ssh-agent.
    Agent(agent::AgentKey),
    /// A key in a PKCS#11 token.
    Pkcs11(pkcs11::TokenKey),
}

impl Signer {
    /// The public key that the artifact names as its signer.
    pub fn public_key(&self) -> PublicKey {
        match self {
            Signer::Local(key) => key.public_key(),
            Signer::Agent(key) => key.public_key(),
            Signer::Pkcs11(key) => key.public_key(),
        }
    }

    /// Signs `msg` (pure Ed25519) and checks the signature under the
    /// public key before returning it.
    pub fn sign(&self, msg: &[u8]) -> Result<[u8; SIGNATURE_LEN], SignerError> {
        let signature = match self {
            Signer::Local(key) => return Ok(key.sign(msg)),
            Signer::Agent(key) => key.sign(msg)?,
            Signer::Pkcs11(key) => key.sign(msg)?,
        };
        let public = self.public_key();
        public
            .verify(msg, &signature)
            .map_err(|_| SignerError::WrongSignature {
                source_name: match self {
                    Signer::Agent(_) => "the ssh-agent",
                    _ => "the PKCS#11 token",
                },
                key_id: public.key_id().to_string(),
            })?;
        Ok(signature)
    }
}

/// Why a signing key could not be opened or used.
#[derive(thiserror::Error, Debug)]
#[non_exhaustive]
pub enum SignerError {
    /// A `--key` value that names no usable key source.
    #[error("{0}")]
    Spec(String),
    /// Reading or parsing the key text failed.
    #[error(transparent)]
    Key(#[from] SigningError),
    /// The ssh-agent could not be reached or refused.
    #[error(transparent)]
    Agent(#[from] AgentError),
    /// The PKCS#11 module, token or key could not be used.
    #[error(transparent)]
    Pkcs11(#[from] Pkcs11Error),
    /// An external signer answered with a signature that does not verify.
    #[error(
        "{source_name} returned a signature that does not verify under key {key_id}; the device \
         signed with another key or with another algorithm (smolvm needs pure Ed25519)"
    )]
    WrongSignature {
        /// "the ssh-agent" or "the PKCS#11 token".
        source_name: &'static str,
        /// The key id of the public key the signature was checked against.
        key_id: String,
    },
}

impl ExitStatus for SignerError {
    fn exit_code(&self) -> u8 {
        match self {
            SignerError::Key(e) => match e {
                SigningError::Io { .. } => USAGE_OR_IO,
                _ => INVALID,
            },
            SignerError::WrongSignature { .. } => INVALID,
            _ => USAGE_OR_IO,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<KeySpec, SignerError> {
        KeySpec::parse(OsStr::new(s))
    }

    #[test]
    fn key_values_name_their_source() {
        assert_eq!(parse("k.key").unwrap(), KeySpec::File("k.key".into()));
        assert_eq!(parse("./-").unwrap(), KeySpec::File("./-".into()));
        assert_eq!(parse("./env:X").unwrap(), KeySpec::File("./env:X".into()));
        assert_eq!(parse("-").unwrap(), KeySpec::Stdin);
        assert_eq!(
            parse("env:SIGNING_KEY").unwrap(),
            KeySpec::Env("SIGNING_KEY".into())
        );
        assert_eq!(parse("ssh-agent").unwrap(), KeySpec::SshAgent(None));
        assert_eq!(
            parse("ssh-agent:SHA256:abc").unwrap(),
            KeySpec::SshAgent(Some("SHA256:abc".into()))
        );
        assert!(matches!(
            parse("pkcs11:token=t;object=k?module-path=/m.so").unwrap(),
            KeySpec::Pkcs11(_)
        ));
        for bad in ["env:", "env:A=B", "ssh-agent:"] {
            assert!(
                matches!(parse(bad), Err(SignerError::Spec(_))),
                "{bad} accepted"
            );
        }
    }

    #[test]
    fn an_unset_variable_is_named_and_no_value_is_quoted() {
        let name = "SMOLVM_TEST_SURELY_UNSET_KEY_VARIABLE";
        let e = KeySpec::Env(name.into()).open().err().unwrap();
        assert!(e.to_string().contains(name), "{e}");
        assert_eq!(e.exit_code(), USAGE_OR_IO);
    }
}

//! Signing with an ed25519 key held by an ssh-agent (OpenSSH's agent, a
//! hardware token's agent, a CI's forwarded agent).
//!
//! The agent protocol (draft-miller-ssh-agent) is four messages here, so it
//! is spoken directly; the ssh-agent client crates pull in every OpenSSH
//! key algorithm, RSA included (with its open timing advisory), for keys
//! smolvm never signs with. Key blobs are parsed by `ssh-key`.
//!
//! ```text
//! message  = uint32 length || byte type || contents      (length counts type + contents)
//! string   = uint32 length || bytes
//! 11 REQUEST_IDENTITIES  →  12 IDENTITIES_ANSWER: uint32 n, n × (string key blob, string comment)
//! 13 SIGN_REQUEST: string key blob, string data, uint32 flags=0
//!                        →  14 SIGN_RESPONSE: string (string "ssh-ed25519", string sig[64])
//!                        or  5 FAILURE
//! ```

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::time::Duration;

use smolvm_signing::{PublicKey, SIGNATURE_LEN};
use ssh_key::HashAlg;

const SSH_AGENT_FAILURE: u8 = 5;
const SSH_AGENTC_REQUEST_IDENTITIES: u8 = 11;
const SSH_AGENT_IDENTITIES_ANSWER: u8 = 12;
const SSH_AGENTC_SIGN_REQUEST: u8 = 13;
const SSH_AGENT_SIGN_RESPONSE: u8 = 14;

/// OpenSSH's agent refuses messages over 256 KiB (AGENT_MAX_LEN); we refuse
/// to read larger answers, and say so before sending a larger request.
const MAX_MESSAGE_LEN: usize = 256 * 1024;

/// An agent that does not answer (a hardware token waiting for a touch
/// nobody gives) fails the pack instead of hanging a CI job forever.
const AGENT_TIMEOUT: Duration = Duration::from_secs(120);

/// Why the agent could not sign.
#[derive(thiserror::Error, Debug)]
#[non_exhaustive]
pub enum AgentError {
    /// `SSH_AUTH_SOCK` is unset.
    #[error(
        "--key ssh-agent: SSH_AUTH_SOCK is not set, so there is no agent to ask; start one \
         (eval $(ssh-agent); ssh-add KEY) or give a key file"
    )]
    NoSocket,
    /// Connecting or talking to the agent failed.
    #[error("--key ssh-agent: cannot {action} the agent at {}", socket.display())]
    Io {
        /// What we were doing.
        action: &'static str,
        /// `$SSH_AUTH_SOCK`.
        socket: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The agent answered something the protocol does not allow.
    #[error("--key ssh-agent: the agent's answer is malformed: {0}")]
    Protocol(String),
    /// No ed25519 key, or none matching the selector.
    #[error("--key ssh-agent{}: {reason}", which.as_deref().map(|w| format!(":{w}")).unwrap_or_default())]
    NoKey {
        /// The selector given after `ssh-agent:`.
        which: Option<String>,
        /// What the agent holds, and what to do.
        reason: String,
    },
    /// The agent refused to sign.
    #[error(
        "--key ssh-agent: the agent refused to sign with key {key} (a confirmation denied, a \
         token not touched, or the key was removed)"
    )]
    Refused {
        /// The key's SHA256 fingerprint.
        key: String,
    },
    /// The signing input does not fit in one agent message.
    #[error(
        "--key ssh-agent: the data to sign is {len} bytes, more than an agent accepts in one \
         message ({MAX_MESSAGE_LEN}); sign with a key file or a PKCS#11 token"
    )]
    TooLarge {
        /// Bytes to sign.
        len: usize,
    },
}

/// An ed25519 key in the agent, found by [`AgentKey::open`].
pub struct AgentKey {
    socket: PathBuf,
    /// The key blob the agent listed (sent back to name the key).
    blob: Vec<u8>,
    fingerprint: String,
    public: PublicKey,
}

impl AgentKey {
    /// Connects to `$SSH_AUTH_SOCK` and finds the ed25519 key `which`
    /// names (fingerprint, smolvm key id, or comment), or the only one.
    pub fn open(which: Option<&str>) -> Result<AgentKey, AgentError> {
        let socket = std::env::var_os("SSH_AUTH_SOCK")
            .filter(|s| !s.is_empty())
            .map(PathBuf::from)
            .ok_or(AgentError::NoSocket)?;
        let answer = exchange(&socket, SSH_AGENTC_REQUEST_IDENTITIES, &[])?;
        let answer = expect_type(answer, SSH_AGENT_IDENTITIES_ANSWER, "identities")?;
        let mut r = WireReader(&answer);
        let count = r.u32()?;
        let mut found = Vec::new();
        let mut others = Vec::new();
        for _ in 0..count {
            let blob = r.string()?.to_vec();
            let comment = String::from_utf8_lossy(r.string()?).into_owned();
            let Ok(key) = ssh_key::PublicKey::from_bytes(&blob) else {
                continue;
            };
            let fingerprint = key.fingerprint(HashAlg::Sha256).to_string();
            let Some(ed) = key.key_data().ed25519() else {
                others.push(format!("{fingerprint} {} ({comment})", key.algorithm()));
                continue;
            };
            let Ok(public) = PublicKey::from_bytes(&ed.0) else {
                continue;
            };
            found.push((blob, fingerprint, comment, public));
        }
        r.end()?;
        let no_key = |reason: String| AgentError::NoKey {
            which: which.map(str::to_owned),
            reason,
        };
        let listing = |keys: &[(Vec<u8>, String, String, PublicKey)]| {
            keys.iter()
                .map(|(_, fp, comment, pk)| format!("{fp} key id {} ({comment})", pk.key_id()))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let chosen: Vec<_> = match which {
            None => found.iter().collect(),
            Some(w) => found
                .iter()
                .filter(|(_, fp, comment, pk)| {
                    fp == w || pk.key_id().to_string() == w || comment == w
                })
                .collect(),
        };
        match chosen.as_slice() {
            [one] => {
                let (blob, fingerprint, _, public) = (*one).clone();
                Ok(AgentKey {
                    socket,
                    blob,
                    fingerprint,
                    public,
                })
            }
            [] if found.is_empty() => Err(no_key(format!(
                "the agent holds no ed25519 key{}; add one with ssh-add (ssh-keygen -t ed25519 \
                 makes one)",
                if others.is_empty() {
                    String::new()
                } else {
                    format!(" (it holds {})", others.join(", "))
                }
            ))),
            [] => Err(no_key(format!(
                "no ed25519 key in the agent has that fingerprint, key id or comment; it holds {}",
                listing(&found)
            ))),
            _ => Err(no_key(format!(
                "the agent holds several ed25519 keys ({}); choose one with \
                 --key ssh-agent:SHA256:… (ssh-add -l lists them)",
                listing(&found)
            ))),
        }
    }

    pub fn public_key(&self) -> PublicKey {
        self.public
    }

    /// Asks the agent for a signature over `msg`.
    pub fn sign(&self, msg: &[u8]) -> Result<[u8; SIGNATURE_LEN], AgentError> {
        let mut body = Vec::with_capacity(msg.len() + self.blob.len() + 16);
        put_string(&mut body, &self.blob)?;
        put_string(&mut body, msg).map_err(|_| AgentError::TooLarge { len: msg.len() })?;
        body.extend_from_slice(&0u32.to_be_bytes());
        if body.len() + 1 > MAX_MESSAGE_LEN {
            return Err(AgentError::TooLarge { len: msg.len() });
        }
        let answer = exchange(&self.socket, SSH_AGENTC_SIGN_REQUEST, &body)?;
        if answer.first() == Some(&SSH_AGENT_FAILURE) {
            return Err(AgentError::Refused {
                key: self.fingerprint.clone(),
            });
        }
        let answer = expect_type(answer, SSH_AGENT_SIGN_RESPONSE, "signature")?;
        let mut outer = WireReader(&answer);
        let mut sig = WireReader(outer.string()?);
        outer.end()?;
        let algorithm = sig.string()?;
        if algorithm != b"ssh-ed25519" {
            return Err(AgentError::Protocol(format!(
                "signature algorithm {:?}, expected ssh-ed25519",
                String::from_utf8_lossy(algorithm)
            )));
        }
        let bytes = sig.string()?;
        sig.end()?;
        bytes.try_into().map_err(|_| {
            AgentError::Protocol(format!(
                "ed25519 signature of {} bytes, expected {SIGNATURE_LEN}",
                bytes.len()
            ))
        })
    }
}

/// One request and its answer (type byte and contents), on a fresh
/// connection.
fn exchange(socket: &PathBuf, kind: u8, body: &[u8]) -> Result<Vec<u8>, AgentError> {
    let io = |action| {
        move |source| AgentError::Io {
            action,
            socket: socket.clone(),
            source,
        }
    };
    let mut stream = UnixStream::connect(socket).map_err(io("connect to"))?;
    stream
        .set_read_timeout(Some(AGENT_TIMEOUT))
        .and_then(|()| stream.set_write_timeout(Some(AGENT_TIMEOUT)))
        .map_err(io("set a timeout on"))?;
    let len =
        u32::try_from(body.len() + 1).map_err(|_| AgentError::TooLarge { len: body.len() })?;
    let mut message = Vec::with_capacity(body.len() + 5);
    message.extend_from_slice(&len.to_be_bytes());
    message.push(kind);
    message.extend_from_slice(body);
    stream.write_all(&message).map_err(io("write to"))?;
    let mut len = [0u8; 4];
    stream.read_exact(&mut len).map_err(io("read from"))?;
    let len = u32::from_be_bytes(len) as usize;
    if len == 0 || len > MAX_MESSAGE_LEN {
        return Err(AgentError::Protocol(format!(
            "answer length {len} is outside 1..={MAX_MESSAGE_LEN}"
        )));
    }
    let mut answer = vec![0u8; len];
    stream.read_exact(&mut answer).map_err(io("read from"))?;
    Ok(answer)
}

fn expect_type(mut answer: Vec<u8>, want: u8, what: &str) -> Result<Vec<u8>, AgentError> {
    match answer.first() {
        Some(&t) if t == want => {
            answer.remove(0);
            Ok(answer)
        }
        Some(&SSH_AGENT_FAILURE) => Err(AgentError::Protocol(format!(
            "the agent refused the {what} request"
        ))),
        other => Err(AgentError::Protocol(format!(
            "message type {other:?} where the {what} answer (type {want}) was expected"
        ))),
    }
}

fn put_string(out: &mut Vec<u8>, bytes: &[u8]) -> Result<(), AgentError> {
    let len = u32::try_from(bytes.len()).map_err(|_| AgentError::TooLarge { len: bytes.len() })?;
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(bytes);
    Ok(())
}

/// Bounds-checked reads of the agent's wire types.
struct WireReader<'a>(&'a [u8]);

impl<'a> WireReader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], AgentError> {
        if n > self.0.len() {
            return Err(AgentError::Protocol(format!(
                "a field of {n} bytes runs past the end of the message ({} bytes left)",
                self.0.len()
            )));
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }

    fn u32(&mut self) -> Result<u32, AgentError> {
        let b = self.take(4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn string(&mut self) -> Result<&'a [u8], AgentError> {
        let len = self.u32()? as usize;
        self.take(len)
    }

    fn end(&self) -> Result<(), AgentError> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(AgentError::Protocol(format!(
                "{} unexpected bytes after the last field",
                self.0.len()
            )))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_reader_refuses_lengths_past_the_end() {
        let mut r = WireReader(&[0, 0, 0, 9, 1, 2]);
        assert!(matches!(r.string(), Err(AgentError::Protocol(_))));
        let mut r = WireReader(&[0xff, 0xff, 0xff, 0xff]);
        assert!(matches!(r.string(), Err(AgentError::Protocol(_))));
        let r = WireReader(&[1]);
        assert!(r.end().is_err());
    }
}

//! Signing with an ed25519 key in a PKCS#11 token (an HSM, a smart card, a
//! cloud KMS's PKCS#11 module, SoftHSM), named by an RFC 7512 URI, with
//! `CKM_EDDSA` (pure Ed25519: no parameters).
//!
//! ```text
//! pkcs11:token=ci;object=smolvm?module-path=/usr/lib/softhsm/libsofthsm2.so&pin-source=file:/run/pin
//! path (';'):  token manufacturer serial model slot-id object id type   (each narrows the search)
//! query ('&'): module-path  pin-value  pin-source=file:PATH             (values %-encoded)
//! ```
//!
//! The module may instead come from `SMOLVM_PKCS11_MODULE` and the PIN from
//! `SMOLVM_PKCS11_PIN`, so a pipeline keeps both out of its command line.
//! The public key is read from the token's public key object with the same
//! `CKA_ID` (or label): `CKA_EC_POINT`, a DER OCTET STRING of 32 bytes.

use std::path::PathBuf;

use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::mechanism::eddsa::{EddsaParams, EddsaSignatureScheme};
use cryptoki::mechanism::Mechanism;
use cryptoki::object::{Attribute, AttributeType, KeyType, ObjectClass, ObjectHandle};
use cryptoki::session::{Session, UserType};
use cryptoki::types::AuthPin;
use smolvm_signing::{PublicKey, SIGNATURE_LEN};
use zeroize::Zeroizing;

/// Path attributes of RFC 7512 that select a token or an object.
const PATH_ATTRIBUTES: &[&str] = &[
    "token",
    "manufacturer",
    "serial",
    "model",
    "slot-id",
    "object",
    "id",
    "type",
];
/// Query attributes we act on.
const QUERY_ATTRIBUTES: &[&str] = &["module-path", "pin-value", "pin-source"];

/// A PIN file is a few bytes; a cap keeps a wrong path from eating memory.
const MAX_PIN_FILE_LEN: u64 = 4096;

/// Why a PKCS#11 key could not be used.
#[derive(thiserror::Error, Debug)]
#[non_exhaustive]
pub enum Pkcs11Error {
    /// The URI breaks RFC 7512 or names what we do not support.
    #[error("--key {uri}: {reason}")]
    Uri {
        /// The URI with any `pin-value` hidden.
        uri: String,
        /// What is wrong, and the fix.
        reason: String,
    },
    /// The module could not be loaded or initialised.
    #[error("--key pkcs11: cannot load PKCS#11 module {}", module.display())]
    Module {
        /// The module path.
        module: PathBuf,
        /// cryptoki's error.
        #[source]
        source: cryptoki::error::Error,
    },
    /// A token call failed.
    #[error("--key pkcs11: {action} failed")]
    Token {
        /// What we asked the token for.
        action: String,
        /// cryptoki's error.
        #[source]
        source: cryptoki::error::Error,
    },
    /// No key, or more than one, matched the URI; or the key is unusable.
    #[error("--key {uri}: {reason}")]
    Key {
        /// The URI with any `pin-value` hidden.
        uri: String,
        /// What was found, and what to do.
        reason: String,
    },
    /// Reading `pin-source` failed.
    #[error("--key pkcs11: cannot read the PIN file {}", path.display())]
    PinFile {
        /// The PIN file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
}

/// A parsed RFC 7512 URI (the attributes we use, decoded).
#[derive(Clone, PartialEq, Eq)]
pub struct Pkcs11Uri {
    /// The URI as given, with any `pin-value` replaced, for messages.
    shown: String,
    path: Vec<(String, Vec<u8>)>,
    query: Vec<(String, Vec<u8>)>,
}

impl std::fmt::Debug for Pkcs11Uri {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.shown)
    }
}

impl Pkcs11Uri {
    /// Parses `pkcs11:PATH[?QUERY]`.
    pub fn parse(text: &str) -> Result<Pkcs11Uri, Pkcs11Error> {
        let shown = hide_pin(text);
        let bad = |reason: String| Pkcs11Error::Uri {
            uri: shown.clone(),
            reason,
        };
        let rest = text
            .strip_prefix("pkcs11:")
            .ok_or_else(|| bad("a PKCS#11 URI starts with pkcs11:".into()))?;
        let (path_part, query_part) = match rest.split_once('?') {
            Some((p, q)) => (p, q),
            None => (rest, ""),
        };
        let parse_list = |part: &str, sep: char, known: &[&str]| {
            let mut out: Vec<(String, Vec<u8>)> = Vec::new();
            for item in part.split(sep).filter(|s| !s.is_empty()) {
                let (name, value) = item
                    .split_once('=')
                    .ok_or_else(|| bad(format!("attribute {item:?} has no '=' and value")))?;
                if !known.contains(&name) {
                    return Err(bad(format!(
                        "attribute {name:?} is not one smolvm understands ({}); a narrower \
                         search cannot be ignored safely",
                        known.join(", ")
                    )));
                }
                if out.iter().any(|(n, _)| n == name) {
                    return Err(bad(format!("attribute {name:?} appears twice")));
                }
                let value = percent_decode(value).map_err(&bad)?;
                out.push((name.to_owned(), value));
            }
            Ok(out)
        };
        let path = parse_list(path_part, ';', PATH_ATTRIBUTES)?;
        let query = parse_list(query_part, '&', QUERY_ATTRIBUTES)?;
        let uri = Pkcs11Uri { shown, path, query };
        if let Some(t) = uri.path_text("type")? {
            if t != "private" {
                return Err(uri.uri_error(format!(
                    "type={t} names no signing key; use type=private or leave it out"
                )));
            }
        }
        Ok(uri)
    }

    fn uri_error(&self, reason: String) -> Pkcs11Error {
        Pkcs11Error::Uri {
            uri: self.shown.clone(),
            reason,
        }
    }

    fn get<'a>(list: &'a [(String, Vec<u8>)], name: &str) -> Option<&'a [u8]> {
        list.iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_slice())
    }

    fn path_bytes(&self, name: &str) -> Option<&[u8]> {
        Self::get(&self.path, name)
    }

    fn path_text(&self, name: &str) -> Result<Option<&str>, Pkcs11Error> {
        self.path_bytes(name)
            .map(|v| {
                std::str::from_utf8(v)
                    .map_err(|_| self.uri_error(format!("attribute {name} is not UTF-8 text")))
            })
            .transpose()
    }

    fn query_text(&self, name: &str) -> Result<Option<&str>, Pkcs11Error> {
        Self::get(&self.query, name)
            .map(|v| {
                std::str::from_utf8(v)
                    .map_err(|_| self.uri_error(format!("attribute {name} is not UTF-8 text")))
            })
            .transpose()
    }

    fn module(&self) -> Result<PathBuf, Pkcs11Error> {
        if let Some(p) = self.query_text("module-path")? {
            return Ok(PathBuf::from(p));
        }
        match std::env::var_os("SMOLVM_PKCS11_MODULE") {
            Some(p) if !p.is_empty() => Ok(PathBuf::from(p)),
            _ => Err(self.uri_error(
                "no PKCS#11 module: add ?module-path=/path/to/module.so to the URI or set \
                 SMOLVM_PKCS11_MODULE"
                    .into(),
            )),
        }
    }

    /// The PIN: `pin-value`, else the file `pin-source` names, else
    /// `SMOLVM_PKCS11_PIN`; `None` when none is given.
    fn pin(&self) -> Result<Option<Zeroizing<String>>, Pkcs11Error> {
        if let Some(v) = self.query_text("pin-value")? {
            return Ok(Some(Zeroizing::new(v.to_owned())));
        }
        if let Some(source) = self.query_text("pin-source")? {
            let path = PathBuf::from(source.strip_prefix("file:").unwrap_or(source));
            let read = || -> std::io::Result<Zeroizing<String>> {
                use std::io::Read;
                let mut text = Zeroizing::new(String::new());
                std::fs::File::open(&path)?
                    .take(MAX_PIN_FILE_LEN)
                    .read_to_string(&mut text)?;
                Ok(Zeroizing::new(
                    text.trim_end_matches(['\n', '\r']).to_owned(),
                ))
            };
            return read()
                .map(Some)
                .map_err(|source| Pkcs11Error::PinFile { path, source });
        }
        Ok(std::env::var("SMOLVM_PKCS11_PIN").ok().map(Zeroizing::new))
    }
}

/// `pin-value=…` replaced by `pin-value=…hidden…`, for messages.
fn hide_pin(text: &str) -> String {
    let Some((head, query)) = text.split_once('?') else {
        return text.to_owned();
    };
    let query: Vec<String> = query
        .split('&')
        .map(|item| {
            if item.starts_with("pin-value=") {
                "pin-value=(hidden)".to_owned()
            } else {
                item.to_owned()
            }
        })
        .collect();
    format!("{head}?{}", query.join("&"))
}

fn percent_decode(value: &str) -> Result<Vec<u8>, String> {
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| {
                    format!("{value:?} has a '%' not followed by two hex digits (RFC 3986 escape)")
                })?;
            out.push(hex);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    Ok(out)
}

/// An ed25519 private key found in a token, with its logged-in session.
pub struct TokenKey {
    session: Session,
    key: ObjectHandle,
    public: PublicKey,
    // Dropped after the session: the module stays loaded while it is used.
    _context: Pkcs11,
}

impl TokenKey {
    /// Loads the module, finds the one token and the one ed25519 private
    /// key the URI names, logs in, and reads the matching public key.
    pub fn open(uri: &Pkcs11Uri) -> Result<TokenKey, Pkcs11Error> {
        let module = uri.module()?;
        let context = Pkcs11::new(&module).map_err(|source| Pkcs11Error::Module {
            module: module.clone(),
            source,
        })?;
        context
            .initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK))
            .map_err(|source| Pkcs11Error::Module {
                module: module.clone(),
                source,
            })?;
        let token_err = |action: &str| {
            let action = action.to_owned();
            move |source| Pkcs11Error::Token { action, source }
        };
        let key_err = |reason: String| Pkcs11Error::Key {
            uri: uri.shown.clone(),
            reason,
        };
        let mut tokens = Vec::new();
        let mut seen = Vec::new();
        for slot in context
            .get_slots_with_token()
            .map_err(token_err("listing the slots"))?
        {
            let info = context
                .get_token_info(slot)
                .map_err(token_err("reading a token's information"))?;
            seen.push(format!("{:?}", info.label().trim_end()));
            let matches = |name: &str, actual: &str| -> Result<bool, Pkcs11Error> {
                Ok(uri
                    .path_text(name)?
                    .is_none_or(|want| want == actual.trim_end()))
            };
            if matches("token", info.label())?
                && matches("manufacturer", info.manufacturer_id())?
                && matches("serial", info.serial_number())?
                && matches("model", info.model())?
                && matches("slot-id", &slot.id().to_string())?
            {
                tokens.push((slot, info.login_required()));
            }
        }
        let (slot, login_required) = match tokens.as_slice() {
            [one] => *one,
            [] => {
                return Err(key_err(format!(
                    "no token matches (tokens present: {}); name one with token=LABEL",
                    if seen.is_empty() {
                        "none".to_owned()
                    } else {
                        seen.join(", ")
                    }
                )))
            }
            _ => {
                return Err(key_err(format!(
                    "{} tokens match ({}); name one with token=LABEL or serial=…",
                    tokens.len(),
                    seen.join(", ")
                )))
            }
        };
        let session = context
            .open_ro_session(slot)
            .map_err(token_err("opening a session"))?;
        match uri.pin()? {
            Some(pin) => {
                let pin = AuthPin::new(pin.as_str().into());
                session
                    .login(UserType::User, Some(&pin))
                    .map_err(token_err("logging in to the token (wrong PIN?)"))?;
            }
            None if login_required => {
                return Err(key_err(
                    "the token needs a PIN: set SMOLVM_PKCS11_PIN, or add pin-source=file:PATH \
                     to the URI"
                        .into(),
                ))
            }
            None => {}
        }
        let mut template = vec![
            Attribute::Class(ObjectClass::PRIVATE_KEY),
            Attribute::KeyType(KeyType::EC_EDWARDS),
        ];
        if let Some(label) = uri.path_bytes("object") {
            template.push(Attribute::Label(label.to_vec()));
        }
        if let Some(id) = uri.path_bytes("id") {
            template.push(Attribute::Id(id.to_vec()));
        }
        let keys = session
            .find_objects(&template)
            .map_err(token_err("searching the token for ed25519 private keys"))?;
        let key = match keys.as_slice() {
            [one] => *one,
            [] => {
                return Err(key_err(
                    "no ed25519 (CKK_EC_EDWARDS) private key matches in the token; list its \
                     keys with pkcs11-tool --list-objects --login"
                        .into(),
                ))
            }
            more => {
                return Err(key_err(format!(
                    "{} ed25519 private keys match; name one with object=LABEL or id=%…",
                    more.len()
                )))
            }
        };
        let public = public_key_of(&session, key).map_err(key_err)?;
        Ok(TokenKey {
            session,
            key,
            public,
            _context: context,
        })
    }

    pub fn public_key(&self) -> PublicKey {
        self.public
    }

    /// `CKM_EDDSA` with no parameters: pure Ed25519.
    pub fn sign(&self, msg: &[u8]) -> Result<[u8; SIGNATURE_LEN], Pkcs11Error> {
        let signature = self
            .session
            .sign(
                &Mechanism::Eddsa(EddsaParams::new(EddsaSignatureScheme::Pure)),
                self.key,
                msg,
            )
            .map_err(|source| Pkcs11Error::Token {
                action: "signing with CKM_EDDSA".into(),
                source,
            })?;
        let len = signature.len();
        signature.try_into().map_err(|_| Pkcs11Error::Token {
            action: format!("signing with CKM_EDDSA (a {len}-byte signature, not {SIGNATURE_LEN})"),
            source: cryptoki::error::Error::InvalidValue,
        })
    }
}

/// The public key of `private`: the public key object with its `CKA_ID`
/// (or, without one, its label).
fn public_key_of(session: &Session, private: ObjectHandle) -> Result<PublicKey, String> {
    let attrs = session
        .get_attributes(private, &[AttributeType::Id, AttributeType::Label])
        .map_err(|e| format!("reading the private key's CKA_ID and CKA_LABEL: {e}"))?;
    let mut template = vec![
        Attribute::Class(ObjectClass::PUBLIC_KEY),
        Attribute::KeyType(KeyType::EC_EDWARDS),
    ];
    for a in attrs {
        match a {
            Attribute::Id(id) if !id.is_empty() => template.push(Attribute::Id(id)),
            Attribute::Label(l) if !l.is_empty() && template.len() == 2 => {
                template.push(Attribute::Label(l));
            }
            _ => {}
        }
    }
    let found = session
        .find_objects(&template)
        .map_err(|e| format!("searching for the matching public key: {e}"))?;
    let [public] = found.as_slice() else {
        return Err(format!(
            "{} ed25519 public key objects share the private key's CKA_ID; smolvm needs exactly \
             one to name the signer (import the public key with the same id)",
            found.len()
        ));
    };
    let point = session
        .get_attributes(*public, &[AttributeType::EcPoint])
        .map_err(|e| format!("reading the public key's CKA_EC_POINT: {e}"))?;
    let Some(Attribute::EcPoint(point)) = point.into_iter().next() else {
        return Err("the public key object has no CKA_EC_POINT".into());
    };
    // PKCS#11 3.0: DER OCTET STRING; some modules store the raw 32 bytes.
    let raw: &[u8] = match point.as_slice() {
        [0x04, 0x20, rest @ ..] if rest.len() == 32 => rest,
        raw if raw.len() == 32 => raw,
        other => {
            return Err(format!(
                "the public key's CKA_EC_POINT is {} bytes, not an Ed25519 point (32 bytes, or a \
                 34-byte DER OCTET STRING); is it an Ed448 key?",
                other.len()
            ))
        }
    };
    let bytes: [u8; 32] = raw.try_into().expect("length checked");
    PublicKey::from_bytes(&bytes).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uri_attributes_are_decoded_and_the_pin_is_never_shown() {
        let uri = Pkcs11Uri::parse(
            "pkcs11:token=my%20token;id=%01%02;object=k?module-path=/m.so&pin-value=1234",
        )
        .unwrap();
        assert_eq!(uri.path_text("token").unwrap(), Some("my token"));
        assert_eq!(uri.path_bytes("id"), Some(&[1u8, 2][..]));
        assert_eq!(uri.module().unwrap(), PathBuf::from("/m.so"));
        assert_eq!(uri.pin().unwrap().unwrap().as_str(), "1234");
        assert!(!format!("{uri:?}").contains("1234"));
    }

    #[test]
    fn unknown_duplicate_and_malformed_attributes_are_refused() {
        for bad in [
            "pkcs11:tokn=x",
            "pkcs11:token=a;token=b",
            "pkcs11:token",
            "pkcs11:id=%zz",
            "pkcs11:type=public",
            "pkcs11:object=k?pin-valu=1",
        ] {
            let e = Pkcs11Uri::parse(bad)
                .err()
                .unwrap_or_else(|| panic!("{bad}"));
            assert!(matches!(e, Pkcs11Error::Uri { .. }), "{bad}: {e}");
        }
        let e = Pkcs11Uri::parse("pkcs11:a=b?pin-value=secret")
            .err()
            .unwrap();
        assert!(!e.to_string().contains("secret"), "{e}");
    }
}

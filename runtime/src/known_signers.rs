//! Trust on first use (SECURITY-CHECKLIST item 23), as SSH's known_hosts:
//! with no trusted keys configured (crate::trust, source
//! [`crate::trust::KeySource::None`]), the first start of a name remembers
//! its signer's public key, and a later artifact of that name signed by
//! another key is refused (exit 1) until the person says otherwise:
//!
//! * for one run: `--smolvm-key=NEW.pub` (`pack run --key`), which makes
//!   the start a trusted one, where pins are neither checked nor changed;
//! * for good: `smolvm pack trust forget NAME`, after which the next start
//!   pins the new signer.
//!
//! A new signer endorsed by the pinned key through the artifact's rotation
//! record (crate::rotation) is accepted and pinned in its place, with one
//! line on stderr.
//!
//! Stored in `$XDG_STATE_HOME/smolvm/known-signers.json` as
//! `{"NAME": "PUBLIC_KEY"}` (64 hex digits). A pin compares whole keys, not
//! key ids: a key id is 64 bits of a hash, and a key made to share one
//! (about 2^64 tries, within reach of a determined attacker) must not pass
//! as the pinned signer. Files written before pins held keys have key ids
//! (16 hex digits); such a pin matches by id, and the start it lets through
//! replaces it with that signer's key.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use smolvm_signing::{KeyId, PublicKey, KEY_LEN};

use crate::state_file::{self, StateError};

const WHAT: &str = "known signers";
const FIX: &str =
    "`smolvm pack trust forget NAME` forgets one name, removing the file forgets them all";

/// `$XDG_STATE_HOME/smolvm/known-signers.json`, else under `$HOME/.local/state`.
pub fn default_known_signers_file() -> Option<PathBuf> {
    crate::dirs::state().map(|d| d.join("known-signers.json"))
}

/// The first signer seen per name.
pub struct KnownSigners {
    path: PathBuf,
    pins: BTreeMap<String, Pin>,
}

/// A remembered signer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pin {
    /// The signer's whole public key (every pin written now), as bytes:
    /// a pin is only compared, so loading the file decodes no curve point
    /// (one per pin, on every start).
    Key([u8; KEY_LEN]),
    /// Only its key id: a file written before pins held keys.
    KeyId(KeyId),
}

impl Pin {
    pub fn key_id(&self) -> KeyId {
        match self {
            Pin::Key(k) => KeyId::derive(k),
            Pin::KeyId(id) => *id,
        }
    }

    /// Whether `key` is the remembered signer.
    pub fn matches(&self, key: &PublicKey) -> bool {
        match self {
            Pin::Key(k) => *k == key.to_bytes(),
            Pin::KeyId(id) => *id == key.key_id(),
        }
    }

    /// Whether the remembered signer is in a verified rotation record
    /// (it endorsed the artifact's signer, directly or through later keys).
    pub fn in_lineage(&self, lineage: &crate::rotation::Lineage) -> bool {
        lineage.0.iter().any(|k| self.matches(k))
    }

    /// The file's form: the key, or the old file's key id.
    fn text(&self) -> String {
        match self {
            Pin::Key(k) => hex::encode(k),
            Pin::KeyId(id) => id.to_string(),
        }
    }

    fn parse(text: &str) -> Option<Pin> {
        if text.len() == 2 * KEY_LEN {
            let mut bytes = [0u8; KEY_LEN];
            hex::decode_to_slice(text, &mut bytes).ok()?;
            return Some(Pin::Key(bytes));
        }
        text.parse().ok().map(Pin::KeyId)
    }
}

/// What the pin says about a start.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PinCheck {
    /// The name was never started here: pin this signer.
    First,
    /// Signed by the pinned key.
    Same,
    /// Signed by the key whose id an old file pinned: pin the key itself.
    SameId { pinned: Pin },
    /// Signed by another key than the pinned one.
    Changed { pinned: Pin },
}

impl KnownSigners {
    pub fn load(path: &Path) -> Result<KnownSigners, StateError> {
        let text: BTreeMap<String, String> = state_file::load(path, WHAT, FIX)?;
        Ok(KnownSigners {
            path: path.to_path_buf(),
            pins: parse(path, text)?,
        })
    }

    /// Changes the file under its lock (crate::state_file::update) and
    /// takes what it then holds.
    fn update(
        &mut self,
        change: impl FnOnce(&mut BTreeMap<String, String>) -> bool,
    ) -> Result<(), StateError> {
        let text = state_file::update(
            &self.path,
            WHAT,
            FIX,
            |text: &mut BTreeMap<String, String>| {
                // Never write a file this would not read back.
                parse(&self.path, text.clone()).is_ok() && change(text)
            },
        )?;
        self.pins = parse(&self.path, text)?;
        Ok(())
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The signer first seen for `name`.
    pub fn pinned(&self, name: &str) -> Option<Pin> {
        self.pins.get(name).copied()
    }

    pub fn check(&self, name: &str, signer: &PublicKey) -> PinCheck {
        match self.pinned(name) {
            None => PinCheck::First,
            Some(Pin::Key(k)) if k == signer.to_bytes() => PinCheck::Same,
            Some(pinned @ Pin::KeyId(_)) if pinned.matches(signer) => PinCheck::SameId { pinned },
            Some(pinned) => PinCheck::Changed { pinned },
        }
    }

    /// Every pin, by name.
    pub fn list(&self) -> impl Iterator<Item = (&str, Pin)> {
        self.pins.iter().map(|(n, k)| (n.as_str(), *k))
    }

    /// Pins `signer` for `name` (when none is) and writes the file. The
    /// file is read again under its lock: a pin another start wrote since
    /// [`load`] is kept, and wins over this one.
    ///
    /// [`load`]: KnownSigners::load
    pub fn remember(&mut self, name: &str, signer: &PublicKey) -> Result<(), StateError> {
        self.update(|text| {
            if text.contains_key(name) {
                return false;
            }
            text.insert(name.to_string(), Pin::Key(signer.to_bytes()).text());
            true
        })
    }

    /// Moves the pin of `name` from `from` to `to`: a rotation the pinned
    /// key endorsed, or an old file's key id replaced by its key. Read
    /// again under the file's lock: a pin that another start changed or
    /// removed meanwhile is left as it is.
    pub fn rotate(&mut self, name: &str, from: Pin, to: &PublicKey) -> Result<(), StateError> {
        self.update(|text| {
            if text.get(name) != Some(&from.text()) {
                return false;
            }
            text.insert(name.to_string(), Pin::Key(to.to_bytes()).text());
            true
        })
    }

    /// Forgets the pin of `name`; returns what it was.
    pub fn forget(&mut self, name: &str) -> Result<Option<Pin>, StateError> {
        let mut old = None;
        self.update(|text| {
            old = text.remove(name);
            old.is_some()
        })?;
        Ok(old.as_deref().and_then(Pin::parse))
    }
}

/// The pins in the file's text form, checked.
fn parse(path: &Path, text: BTreeMap<String, String>) -> Result<BTreeMap<String, Pin>, StateError> {
    let mut pins = BTreeMap::new();
    for (name, value) in text {
        let pin = Pin::parse(&value).ok_or_else(|| StateError::Syntax {
            what: WHAT,
            path: path.to_path_buf(),
            fault: format!(
                "{name:?} has {value:?}, not a public key (64 hex digits) or key id (16)"
            ),
            fix: FIX,
        })?;
        pins.insert(name, pin);
    }
    Ok(pins)
}

/// The `--smolvm-info` / `pack inspect` line for a pin of `name` (`signer`:
/// this artifact's key, when signed).
///
/// `lineage`: the artifact's verified rotation record, if it has one.
pub fn describe(
    name: &str,
    pinned: Pin,
    signer: Option<&PublicKey>,
    lineage: Option<&crate::rotation::Lineage>,
) -> String {
    let verdict = match signer.map(|k| (k, k.key_id())) {
        Some((k, _)) if pinned.matches(k) => "this artifact's signer".to_string(),
        Some((_, s)) if lineage.is_some_and(|l| pinned.in_lineage(l)) => format!(
            "NOT this artifact's signer ({s}), but it endorsed that key (rotation record): a start accepts it and remembers {s}"
        ),
        Some((_, s)) => format!(
            "NOT this artifact's signer ({s}): a start without trusted keys is refused (docs/running.md)"
        ),
        None => "this artifact is unsigned".to_string(),
    };
    format!(
        "key {}, the first signer of {name} started here: {verdict}",
        pinned.key_id()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    use smolvm_signing::SecretKey;

    fn key(seed: u8) -> PublicKey {
        SecretKey::from_seed(&[seed; 32]).public_key()
    }

    #[test]
    fn the_first_signer_is_pinned_until_forgotten() {
        let t = tempfile::tempdir().unwrap();
        let path = t.path().join("state/known-signers.json");
        let (a, b) = (key(1), key(2));
        let mut k = KnownSigners::load(&path).unwrap();
        assert_eq!(k.check("notes", &a), PinCheck::First);
        k.remember("notes", &a).unwrap();
        // A second remember does not move the pin.
        k.remember("notes", &b).unwrap();
        let mut k = KnownSigners::load(&path).unwrap();
        assert_eq!(k.check("notes", &a), PinCheck::Same);
        let pa = Pin::Key(a.to_bytes());
        assert_eq!(k.check("notes", &b), PinCheck::Changed { pinned: pa });
        assert_eq!(k.check("other", &b), PinCheck::First, "per name");
        assert_eq!(k.list().collect::<Vec<_>>(), [("notes", pa)]);
        // A rotation moves the pin only from the key it names.
        let c = key(3);
        k.rotate("notes", Pin::Key(b.to_bytes()), &c).unwrap();
        assert_eq!(k.pinned("notes"), Some(pa));
        k.rotate("notes", pa, &b).unwrap();
        assert_eq!(
            KnownSigners::load(&path).unwrap().pinned("notes"),
            Some(Pin::Key(b.to_bytes()))
        );
        k.rotate("notes", Pin::Key(b.to_bytes()), &a).unwrap();
        assert_eq!(k.forget("notes").unwrap(), Some(pa));
        assert_eq!(k.forget("notes").unwrap(), None);
        let k = KnownSigners::load(&path).unwrap();
        assert_eq!(k.check("notes", &b), PinCheck::First);
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text.trim(), "{}");
    }

    /// A key made to share the pinned key's id (64 bits of a hash) is
    /// another signer: the pin holds the whole key.
    #[test]
    fn a_key_sharing_the_pinned_key_id_is_another_signer() {
        let t = tempfile::tempdir().unwrap();
        let path = t.path().join("known-signers.json");
        let a = key(1);
        let mut k = KnownSigners::load(&path).unwrap();
        k.remember("notes", &a).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.contains(&hex::encode(a.to_bytes())), "{text}");
        // No second key with the same id can be made here, so the check is
        // shown on the comparison the pin makes: whole keys, not ids.
        let pin = KnownSigners::load(&path).unwrap().pinned("notes").unwrap();
        assert_eq!(pin, Pin::Key(a.to_bytes()));
        assert!(pin.matches(&a) && !pin.matches(&key(2)));
        assert_eq!(pin.key_id(), a.key_id());
    }

    /// A file written when pins held key ids still works: the id matches
    /// its key once, and that start pins the key itself.
    #[test]
    fn an_old_key_id_pin_is_replaced_by_its_key() {
        let t = tempfile::tempdir().unwrap();
        let path = t.path().join("known-signers.json");
        let (a, b) = (key(1), key(2));
        std::fs::write(&path, format!(r#"{{"notes": "{}"}}"#, a.key_id())).unwrap();
        let mut k = KnownSigners::load(&path).unwrap();
        let old = Pin::KeyId(a.key_id());
        assert_eq!(k.check("notes", &a), PinCheck::SameId { pinned: old });
        assert_eq!(k.check("notes", &b), PinCheck::Changed { pinned: old });
        k.rotate("notes", old, &a).unwrap();
        assert_eq!(k.check("notes", &a), PinCheck::Same);
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.contains(&hex::encode(a.to_bytes())), "{text}");
    }

    #[test]
    fn a_file_that_is_not_ours_is_an_error_naming_the_fix() {
        let t = tempfile::tempdir().unwrap();
        let path = t.path().join("known-signers.json");
        std::fs::write(&path, r#"{"notes": "zz"}"#).unwrap();
        let e = KnownSigners::load(&path).err().unwrap().to_string();
        assert!(
            e.contains("not a public key") && e.contains("pack trust forget"),
            "{e}"
        );
    }

    #[test]
    fn the_info_line_says_whether_the_pin_matches() {
        let (a, b) = (key(1), key(2));
        let pa = Pin::Key(a.to_bytes());
        assert!(describe("n", pa, Some(&a), None).ends_with("this artifact's signer"));
        assert!(describe("n", pa, Some(&b), None)
            .contains(&format!("NOT this artifact's signer ({})", b.key_id())));
        let rotated = crate::rotation::Lineage(vec![a, b]);
        assert!(describe("n", pa, Some(&b), Some(&rotated)).contains("it endorsed that key"));
        let unrelated = crate::rotation::Lineage(vec![key(3), b]);
        assert!(describe("n", pa, Some(&b), Some(&unrelated)).contains("refused"));
        // An old file's key id pin reads the same.
        let old = Pin::KeyId(a.key_id());
        assert!(describe("n", old, Some(&a), None).ends_with("this artifact's signer"));
    }
}

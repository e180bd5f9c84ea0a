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
//! A pin compares whole keys, not key ids: a key id is 64 bits of a hash,
//! and a key made to share one (about 2^64 tries, within reach of a
//! determined attacker) must not pass as the pinned signer. Two files in
//! `$XDG_STATE_HOME/smolvm/`, both changed under their locks
//! (crate::state_file):
//!
//! * `known-signers.json`, `{"NAME": "KEY_ID"}`: which signer each name
//!   has, in the form every smolvm reads. Packed executables carry their
//!   own runtime, so older ones share this file with newer ones, and must
//!   keep reading it;
//! * `known-signers.keys.json`, `{"NAME": "PUBLIC_KEY"}` (64 hex digits):
//!   the whole key of that signer. It counts only while its key id is the
//!   one `known-signers.json` names: an older smolvm that forgets or moves
//!   a pin leaves the key behind, and the pin is then compared by id until
//!   the next start by its signer records the key again (as for a pin made
//!   before keys were kept).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use smolvm_signing::{KeyId, PublicKey, KEY_LEN};

use crate::state_file::{self, StateError};

const WHAT: &str = "known signers";
const KEYS_WHAT: &str = "known signers' keys";
const FIX: &str =
    "`smolvm pack trust forget NAME` forgets one name, removing the file forgets them all";

/// `$XDG_STATE_HOME/smolvm/known-signers.json`, else under `$HOME/.local/state`.
pub fn default_known_signers_file() -> Option<PathBuf> {
    crate::dirs::state().map(|d| d.join("known-signers.json"))
}

/// The file of whole keys beside the known-signers file `path`.
pub fn keys_file(path: &Path) -> PathBuf {
    path.with_extension("keys.json")
}

/// The first signer seen per name.
pub struct KnownSigners {
    path: PathBuf,
    ids: BTreeMap<String, KeyId>,
    keys: BTreeMap<String, [u8; KEY_LEN]>,
}

/// A remembered signer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pin {
    /// The signer's whole public key (every pin written now), as bytes:
    /// a pin is only compared, so loading the file decodes no curve point
    /// (one per pin, on every start).
    Key([u8; KEY_LEN]),
    /// Only its key id: a pin an older smolvm made or moved.
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
}

/// What the pin says about a start.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PinCheck {
    /// The name was never started here: pin this signer.
    First,
    /// Signed by the pinned key.
    Same,
    /// Signed by the key whose id is pinned, whose key is not recorded:
    /// record it.
    SameId { pinned: Pin },
    /// Signed by another key than the pinned one.
    Changed { pinned: Pin },
}

impl KnownSigners {
    pub fn load(path: &Path) -> Result<KnownSigners, StateError> {
        Ok(KnownSigners {
            path: path.to_path_buf(),
            ids: IDS.load(path)?,
            keys: KEYS.load(&keys_file(path))?,
        })
    }

    /// Records `signer`'s key for `name` when the id file names it.
    fn record_key(&mut self, name: &str, signer: &PublicKey) -> Result<(), StateError> {
        if self.ids.get(name) != Some(&signer.key_id()) {
            return Ok(());
        }
        let key = hex::encode(signer.to_bytes());
        self.keys = KEYS.update(&keys_file(&self.path), |text| {
            if text.get(name) == Some(&key) {
                return false;
            }
            text.insert(name.to_string(), key);
            true
        })?;
        Ok(())
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The signer first seen for `name`.
    pub fn pinned(&self, name: &str) -> Option<Pin> {
        let id = *self.ids.get(name)?;
        Some(match self.keys.get(name) {
            Some(k) if KeyId::derive(k) == id => Pin::Key(*k),
            _ => Pin::KeyId(id),
        })
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
        self.ids
            .keys()
            .filter_map(|n| Some((n.as_str(), self.pinned(n)?)))
    }

    /// Pins `signer` for `name` (when none is) and writes the files, or
    /// records the key of a pinned id that is `signer`'s. The files are read
    /// again under their locks: a pin another start wrote since [`load`] is
    /// kept, and wins over this one.
    ///
    /// [`load`]: KnownSigners::load
    pub fn remember(&mut self, name: &str, signer: &PublicKey) -> Result<(), StateError> {
        self.ids = IDS.update(&self.path, |text| {
            if text.contains_key(name) {
                return false;
            }
            text.insert(name.to_string(), signer.key_id().to_string());
            true
        })?;
        self.record_key(name, signer)
    }

    /// Moves the pin of `name` from `from` to `to` (a rotation the pinned
    /// key endorsed). Read again under the files' locks: a pin that another
    /// start changed or removed meanwhile is left as it is.
    pub fn rotate(&mut self, name: &str, from: Pin, to: &PublicKey) -> Result<(), StateError> {
        let (from, to_id) = (from.key_id().to_string(), to.key_id().to_string());
        self.ids = IDS.update(&self.path, |text| {
            if text.get(name) != Some(&from) {
                return false;
            }
            text.insert(name.to_string(), to_id);
            true
        })?;
        self.record_key(name, to)
    }

    /// Forgets the pin of `name`; returns what it was.
    pub fn forget(&mut self, name: &str) -> Result<Option<Pin>, StateError> {
        let old = self.pinned(name);
        let mut removed = false;
        self.ids = IDS.update(&self.path, |text| {
            removed = text.remove(name).is_some();
            removed
        })?;
        self.keys = KEYS.update(&keys_file(&self.path), |text| text.remove(name).is_some())?;
        Ok(old.filter(|_| removed))
    }
}

/// One of the two files: `{"NAME": "VALUE"}`, each value checked.
struct PinFile<V> {
    what: &'static str,
    /// Names what a value must be, in a syntax error.
    expected: &'static str,
    value: fn(&str) -> Option<V>,
}

/// `known-signers.json`: each name's key id.
const IDS: PinFile<KeyId> = PinFile {
    what: WHAT,
    expected: "a key id",
    value: |v| v.parse().ok(),
};

/// `known-signers.keys.json`: each name's whole key.
const KEYS: PinFile<[u8; KEY_LEN]> = PinFile {
    what: KEYS_WHAT,
    expected: "a public key (64 hex digits)",
    value: |v| {
        let mut key = [0u8; KEY_LEN];
        hex::decode_to_slice(v, &mut key).ok().map(|()| key)
    },
};

impl<V> PinFile<V> {
    fn load(&self, path: &Path) -> Result<BTreeMap<String, V>, StateError> {
        self.parse(path, state_file::load(path, self.what, FIX)?)
    }

    /// Changes the file under its lock (crate::state_file::update) and
    /// returns what it then holds.
    fn update(
        &self,
        path: &Path,
        change: impl FnOnce(&mut BTreeMap<String, String>) -> bool,
    ) -> Result<BTreeMap<String, V>, StateError> {
        let text = state_file::update(
            path,
            self.what,
            FIX,
            |text: &mut BTreeMap<String, String>| {
                // Never write a file this would not read back.
                self.parse(path, text.clone()).is_ok() && change(text)
            },
        )?;
        self.parse(path, text)
    }

    fn parse(
        &self,
        path: &Path,
        text: BTreeMap<String, String>,
    ) -> Result<BTreeMap<String, V>, StateError> {
        let mut out = BTreeMap::new();
        for (name, value) in text {
            let v = (self.value)(&value).ok_or_else(|| StateError::Syntax {
                what: self.what,
                path: path.to_path_buf(),
                fault: format!("{name:?} has {value:?}, not {}", self.expected),
                fix: FIX,
            })?;
            out.insert(name, v);
        }
        Ok(out)
    }
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
        let keys = std::fs::read_to_string(keys_file(&path)).unwrap();
        assert_eq!(keys.trim(), "{}");
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
        let keys = std::fs::read_to_string(keys_file(&path)).unwrap();
        assert!(keys.contains(&hex::encode(a.to_bytes())), "{keys}");
        // No second key with the same id can be made here, so the check is
        // shown on the comparison the pin makes: whole keys, not ids.
        let pin = KnownSigners::load(&path).unwrap().pinned("notes").unwrap();
        assert_eq!(pin, Pin::Key(a.to_bytes()));
        assert!(pin.matches(&a) && !pin.matches(&key(2)));
        assert_eq!(pin.key_id(), a.key_id());
    }

    /// Packed executables carry their own runtime, so an older one reads
    /// the id file a newer one wrote: it stays `{"NAME": "KEY_ID"}`.
    #[test]
    fn the_id_file_stays_in_the_form_older_runtimes_read() {
        let t = tempfile::tempdir().unwrap();
        let path = t.path().join("known-signers.json");
        let (a, b) = (key(1), key(2));
        let mut k = KnownSigners::load(&path).unwrap();
        k.remember("notes", &a).unwrap();
        k.remember("todo", &b).unwrap();
        let ids: BTreeMap<String, String> =
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        assert_eq!(
            ids,
            BTreeMap::from([
                ("notes".to_string(), a.key_id().to_string()),
                ("todo".to_string(), b.key_id().to_string()),
            ])
        );
    }

    /// A pin with no recorded key (made before keys were kept, or by an
    /// older smolvm) matches by id once, and that start records the key.
    #[test]
    fn a_pin_without_its_key_gets_it_from_its_signer() {
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
        let keys = std::fs::read_to_string(keys_file(&path)).unwrap();
        assert!(keys.contains(&hex::encode(a.to_bytes())), "{keys}");
        // An older smolvm moves the pin to b (it writes the id file only):
        // a's key no longer counts, b is compared by id until its key is
        // recorded.
        std::fs::write(&path, format!(r#"{{"notes": "{}"}}"#, b.key_id())).unwrap();
        let k = KnownSigners::load(&path).unwrap();
        assert_eq!(k.pinned("notes"), Some(Pin::KeyId(b.key_id())));
        assert_eq!(
            k.check("notes", &a),
            PinCheck::Changed {
                pinned: Pin::KeyId(b.key_id())
            }
        );
    }

    #[test]
    fn a_file_that_is_not_ours_is_an_error_naming_the_fix() {
        let t = tempfile::tempdir().unwrap();
        let path = t.path().join("known-signers.json");
        std::fs::write(&path, r#"{"notes": "zz"}"#).unwrap();
        let e = KnownSigners::load(&path).err().unwrap().to_string();
        assert!(
            e.contains("not a key id") && e.contains("pack trust forget"),
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

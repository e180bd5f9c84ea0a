//! Trust on first use (SECURITY-CHECKLIST item 23), as SSH's known_hosts:
//! with no trusted keys configured (crate::trust, source
//! [`crate::trust::KeySource::None`]), the first start of a name remembers
//! its signer's key id, and a later artifact of that name signed by another
//! key is refused (exit 1) until the person says otherwise:
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
//! `{"NAME": "KEY_ID"}`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use smolvm_signing::KeyId;

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
    pins: BTreeMap<String, KeyId>,
}

/// What the pin says about a start.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PinCheck {
    /// The name was never started here: pin this signer.
    First,
    /// Signed by the pinned key.
    Same,
    /// Signed by another key than the pinned one.
    Changed { pinned: KeyId },
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

    /// The key id first seen for `name`.
    pub fn pinned(&self, name: &str) -> Option<KeyId> {
        self.pins.get(name).copied()
    }

    pub fn check(&self, name: &str, signer: KeyId) -> PinCheck {
        match self.pinned(name) {
            None => PinCheck::First,
            Some(k) if k == signer => PinCheck::Same,
            Some(pinned) => PinCheck::Changed { pinned },
        }
    }

    /// Every pin, by name.
    pub fn list(&self) -> impl Iterator<Item = (&str, KeyId)> {
        self.pins.iter().map(|(n, k)| (n.as_str(), *k))
    }

    /// Pins `signer` for `name` (when none is) and writes the file. The
    /// file is read again under its lock: a pin another start wrote since
    /// [`load`] is kept, and wins over this one.
    ///
    /// [`load`]: KnownSigners::load
    pub fn remember(&mut self, name: &str, signer: KeyId) -> Result<(), StateError> {
        self.update(|text| {
            if text.contains_key(name) {
                return false;
            }
            text.insert(name.to_string(), signer.to_string());
            true
        })
    }

    /// Moves the pin of `name` from `from` to `to` (a rotation the pinned
    /// key endorsed). Read again under the file's lock: a pin that another
    /// start changed or removed meanwhile is left as it is.
    pub fn rotate(&mut self, name: &str, from: KeyId, to: KeyId) -> Result<(), StateError> {
        self.update(|text| {
            if text.get(name) != Some(&from.to_string()) {
                return false;
            }
            text.insert(name.to_string(), to.to_string());
            true
        })
    }

    /// Forgets the pin of `name`; returns the key id it had.
    pub fn forget(&mut self, name: &str) -> Result<Option<KeyId>, StateError> {
        let mut old = None;
        self.update(|text| {
            old = text.remove(name);
            old.is_some()
        })?;
        Ok(old.and_then(|id| id.parse().ok()))
    }
}

/// The pins in the file's text form, checked.
fn parse(
    path: &Path,
    text: BTreeMap<String, String>,
) -> Result<BTreeMap<String, KeyId>, StateError> {
    let mut pins = BTreeMap::new();
    for (name, id) in text {
        let key_id = id.parse().map_err(|_| StateError::Syntax {
            what: WHAT,
            path: path.to_path_buf(),
            fault: format!("{name:?} has {id:?}, not a key id"),
            fix: FIX,
        })?;
        pins.insert(name, key_id);
    }
    Ok(pins)
}

/// The `--smolvm-info` / `pack inspect` line for a pin of `name` (`signer`:
/// this artifact's key id, when signed).
///
/// `lineage`: the artifact's verified rotation record, if it has one.
pub fn describe(
    name: &str,
    pinned: KeyId,
    signer: Option<KeyId>,
    lineage: Option<&crate::rotation::Lineage>,
) -> String {
    let verdict = match signer {
        Some(s) if s == pinned => "this artifact's signer".to_string(),
        Some(s) if lineage.is_some_and(|l| l.endorses(pinned)) => format!(
            "NOT this artifact's signer ({s}), but it endorsed that key (rotation record): a start accepts it and remembers {s}"
        ),
        Some(s) => format!(
            "NOT this artifact's signer ({s}): a start without trusted keys is refused (docs/running.md)"
        ),
        None => "this artifact is unsigned".to_string(),
    };
    format!("key {pinned}, the first signer of {name} started here: {verdict}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_signer_is_pinned_until_forgotten() {
        let t = tempfile::tempdir().unwrap();
        let path = t.path().join("state/known-signers.json");
        let (a, b) = (KeyId::from_bytes([1; 8]), KeyId::from_bytes([2; 8]));
        let mut k = KnownSigners::load(&path).unwrap();
        assert_eq!(k.check("notes", a), PinCheck::First);
        k.remember("notes", a).unwrap();
        // A second remember does not move the pin.
        k.remember("notes", b).unwrap();
        let mut k = KnownSigners::load(&path).unwrap();
        assert_eq!(k.check("notes", a), PinCheck::Same);
        assert_eq!(k.check("notes", b), PinCheck::Changed { pinned: a });
        assert_eq!(k.check("other", b), PinCheck::First, "per name");
        assert_eq!(k.list().collect::<Vec<_>>(), [("notes", a)]);
        // A rotation moves the pin only from the key it names.
        let c = KeyId::from_bytes([3; 8]);
        k.rotate("notes", b, c).unwrap();
        assert_eq!(k.pinned("notes"), Some(a));
        k.rotate("notes", a, b).unwrap();
        assert_eq!(KnownSigners::load(&path).unwrap().pinned("notes"), Some(b));
        k.rotate("notes", b, a).unwrap();
        assert_eq!(k.forget("notes").unwrap(), Some(a));
        assert_eq!(k.forget("notes").unwrap(), None);
        let k = KnownSigners::load(&path).unwrap();
        assert_eq!(k.check("notes", b), PinCheck::First);
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text.trim(), "{}");
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
        let (a, b) = (KeyId::from_bytes([1; 8]), KeyId::from_bytes([2; 8]));
        assert!(describe("n", a, Some(a), None).ends_with("this artifact's signer"));
        assert!(describe("n", a, Some(b), None)
            .contains("NOT this artifact's signer (0202020202020202)"));
        let rotated = crate::rotation::Lineage(vec![a, b]);
        assert!(describe("n", a, Some(b), Some(&rotated)).contains("it endorsed that key"));
        let unrelated = crate::rotation::Lineage(vec![KeyId::from_bytes([3; 8]), b]);
        assert!(describe("n", a, Some(b), Some(&unrelated)).contains("refused"));
    }
}

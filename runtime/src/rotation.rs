//! Key rotation (SECURITY-CHECKLIST item 23, as APK signature scheme v3's
//! proof of rotation): a signer's record of the keys that signed its name
//! before, each endorsing the next.
//!
//! ```text
//! signer.rotated_from = [A, B]     signer.public_key = C
//!   A signs rotation_input(name, B)
//!   B signs rotation_input(name, C)
//! ```
//!
//! [`lineage`] checks every link (a record that does not verify makes the
//! artifact invalid, whatever pins the person has); trust on first use
//! (crate::run) then accepts a signer whose lineage holds the pinned key and
//! pins the signer instead. Only the keys' own signatures count: the record
//! is inside the manifest the new key signs, but that signature says nothing
//! about the old key.

use smolvm_format::layout::rotation_input;
use smolvm_format::{Manifest, RotationLink};
use smolvm_signing::{KeyId, PublicKey};

/// A rotation record that does not verify; what is wrong, naming the link
/// (crate::verify wraps it as its `Rotation` error).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct RotationError(pub String);

/// The keys of a verified rotation record, oldest first, ending with the
/// signer's own.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Lineage(pub Vec<PublicKey>);

impl Lineage {
    /// The signer's key id (the last key).
    pub fn signer(&self) -> KeyId {
        self.0
            .last()
            .expect("a lineage ends with the signer")
            .key_id()
    }

    /// The key ids, oldest first.
    pub fn key_ids(&self) -> Vec<KeyId> {
        self.0.iter().map(PublicKey::key_id).collect()
    }

    /// Whether the record has any older key.
    pub fn rotated(&self) -> bool {
        self.0.len() > 1
    }

    /// `A -> B -> C` (key ids).
    pub fn describe(&self) -> String {
        self.0
            .iter()
            .map(|k| k.key_id().to_string())
            .collect::<Vec<_>>()
            .join(" -> ")
    }
}

fn link_key(i: usize, link: &RotationLink) -> Result<PublicKey, RotationError> {
    let key = PublicKey::from_bytes(link.public_key.as_bytes())
        .map_err(|e| RotationError(format!("signer.rotated_from[{i}].public_key: {e}")))?;
    if key.key_id().to_bytes() != link.key_id.to_bytes() {
        return Err(RotationError(format!(
            "signer.rotated_from[{i}]: key id {} does not belong to its public key (it derives {})",
            link.key_id,
            key.key_id()
        )));
    }
    Ok(key)
}

/// Checks the rotation record of a signed manifest: every link's key is
/// valid, its key id derives from it, and its signature over (name, next
/// key) verifies strictly. `None` for an unsigned manifest.
pub fn lineage(manifest: &Manifest) -> Result<Option<Lineage>, RotationError> {
    let Some(signer) = &manifest.signer else {
        return Ok(None);
    };
    let links = &signer.rotated_from;
    let mut keys = Vec::with_capacity(links.len() + 1);
    for (i, link) in links.iter().enumerate() {
        let key = link_key(i, link)?;
        let next = links
            .get(i + 1)
            .map_or(&signer.public_key, |l| &l.public_key);
        let next_id = links.get(i + 1).map_or(signer.key_id, |l| l.key_id);
        key.verify(
            &rotation_input(&manifest.name, next.as_bytes()),
            link.signature.as_bytes(),
        )
        .map_err(|_| {
            RotationError(format!(
                "signer.rotated_from[{i}]: key {} did not sign \"{} may be signed by key {next_id}\" (a record made for another name or key, or altered)",
                link.key_id,
                crate::escape::escape_untrusted(&manifest.name),
            ))
        })?;
        keys.push(key);
    }
    // The signer's key is checked against its key id and signature by
    // crate::verify before anyone asks for a lineage.
    let signer_key = PublicKey::from_bytes(signer.public_key.as_bytes())
        .map_err(|e| RotationError(format!("signer.public_key: {e}")))?;
    keys.push(signer_key);
    Ok(Some(Lineage(keys)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use smolvm_format::{Ed25519Signature, SignerKeyId, SignerPublicKey};
    use smolvm_signing::SecretKey;

    fn manifest_signed_by(name: &str, signer: &SecretKey, from: &[&SecretKey]) -> Manifest {
        let mut signer_rec = crate::seal::signer_record(&signer.public_key());
        let mut chain: Vec<&SecretKey> = from.to_vec();
        chain.push(signer);
        signer_rec.rotated_from = chain
            .windows(2)
            .map(|w| crate::seal::rotation_link(name, w[0], &w[1].public_key()))
            .collect();
        let mut m = crate::seal::tests::minimal_manifest(name);
        m.signer = Some(signer_rec);
        m
    }

    #[test]
    fn a_chain_of_endorsements_verifies_and_names_every_key() {
        let (a, b, c) = (
            SecretKey::from_seed(&[1; 32]),
            SecretKey::from_seed(&[2; 32]),
            SecretKey::from_seed(&[3; 32]),
        );
        let m = manifest_signed_by("notes", &c, &[&a, &b]);
        let l = lineage(&m).unwrap().unwrap();
        assert_eq!(l.0, [a.public_key(), b.public_key(), c.public_key()]);
        assert_eq!(
            l.key_ids(),
            [a.public_key(), b.public_key(), c.public_key()].map(|k| k.key_id())
        );
        assert!(l.rotated());
        assert_eq!(l.signer(), c.public_key().key_id());
        // No record: the lineage is the signer alone.
        let l = lineage(&manifest_signed_by("notes", &c, &[]))
            .unwrap()
            .unwrap();
        assert!(!l.rotated());
    }

    #[test]
    fn a_link_for_another_name_or_key_or_altered_is_refused() {
        let (a, b) = (
            SecretKey::from_seed(&[1; 32]),
            SecretKey::from_seed(&[2; 32]),
        );
        // Made for another name.
        let mut m = manifest_signed_by("other", &b, &[&a]);
        m.name = "notes".into();
        let e = lineage(&m).unwrap_err().to_string();
        assert!(e.contains("rotated_from[0]") && e.contains("notes"), "{e}");
        // Endorsing another key than the signer's.
        let c = SecretKey::from_seed(&[3; 32]);
        let mut m = manifest_signed_by("notes", &b, &[&a]);
        let s = m.signer.as_mut().unwrap();
        s.rotated_from[0] = crate::seal::rotation_link("notes", &a, &c.public_key());
        assert!(lineage(&m).is_err());
        // A flipped signature bit.
        let mut m = manifest_signed_by("notes", &b, &[&a]);
        let link = &mut m.signer.as_mut().unwrap().rotated_from[0];
        let mut sig = link.signature.to_bytes();
        sig[5] ^= 1;
        link.signature = Ed25519Signature::from_bytes(sig);
        assert!(lineage(&m).is_err());
        // A key id that is not its key's.
        let mut m = manifest_signed_by("notes", &b, &[&a]);
        m.signer.as_mut().unwrap().rotated_from[0].key_id = SignerKeyId::from_bytes([9; 8]);
        let e = lineage(&m).unwrap_err().to_string();
        assert!(e.contains("does not belong"), "{e}");
        // Signed by a third key that claims to be A.
        let mut m = manifest_signed_by("notes", &b, &[&c]);
        let link = &mut m.signer.as_mut().unwrap().rotated_from[0];
        link.public_key = SignerPublicKey::from_bytes(a.public_key().to_bytes());
        link.key_id = SignerKeyId::from_bytes(a.public_key().key_id().to_bytes());
        assert!(lineage(&m).is_err());
    }
}

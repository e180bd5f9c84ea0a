//! Sealing: what a signed artifact says about its signer, and the signature
//! over its header and manifest. The inverse of [`crate::verify`]'s
//! signature check, kept beside it so the two cannot drift; the packer and
//! the tests' in-memory builder both seal through here.

use smolvm_format::{
    Ed25519Signature, PayloadWriter, RotationLink, SignatureBlock, Signer, SignerKeyId,
    SignerPublicKey, ALGORITHM_TAG_ED25519,
};
use smolvm_signing::{PublicKey, SecretKey, ALGORITHM_ED25519, SIGNATURE_LEN};

/// The manifest's record of the key that signs it: what
/// [`crate::check_signature`] decodes and checks the key id of.
pub fn signer_record(key: &PublicKey) -> Signer {
    Signer {
        algorithm: ALGORITHM_ED25519.into(),
        key_id: SignerKeyId::from_bytes(key.key_id().to_bytes()),
        public_key: SignerPublicKey::from_bytes(key.to_bytes()),
        rotated_from: Vec::new(),
    }
}

/// A rotation link in which `old` says that `name` may be signed by `next`
/// (crate::rotation; SPEC.md "Key rotation").
pub fn rotation_link(name: &str, old: &SecretKey, next: &PublicKey) -> RotationLink {
    rotation_link_record(&old.public_key(), old.sign(&rotation_statement(name, next)))
}

/// The bytes an old key signs to endorse `next` for `name`.
pub fn rotation_statement(name: &str, next: &PublicKey) -> Vec<u8> {
    smolvm_format::layout::rotation_input(name, &next.to_bytes())
}

/// The link for `signature`, made elsewhere (an ssh-agent, a PKCS#11
/// token) by `old` over [`rotation_statement`].
pub fn rotation_link_record(old: &PublicKey, signature: [u8; SIGNATURE_LEN]) -> RotationLink {
    RotationLink {
        key_id: SignerKeyId::from_bytes(old.key_id().to_bytes()),
        public_key: SignerPublicKey::from_bytes(old.to_bytes()),
        signature: Ed25519Signature::from_bytes(signature),
    }
}

/// The signature block for a payload whose manifest names `key`'s public
/// key as its signer (see [`signer_record`]): ed25519 over the writer's
/// signing input (SPEC.md "Signing input").
pub fn seal(writer: &PayloadWriter, key: &SecretKey) -> SignatureBlock {
    sign_input(&writer.signing_input(), key)
}

/// The signature block over a signing input already assembled
/// (`smolvm_format::layout::signing_input`); [`seal`] is this for a
/// writer's payload. Tests use it to sign manifests a writer would refuse.
pub fn sign_input(signing_input: &[u8], key: &SecretKey) -> SignatureBlock {
    signature_block(&key.public_key(), key.sign(signing_input))
}

/// The signature block for `signature`, made elsewhere (an ssh-agent, a
/// PKCS#11 token) under `key` over the signing input.
pub fn signature_block(key: &PublicKey, signature: [u8; SIGNATURE_LEN]) -> SignatureBlock {
    SignatureBlock {
        algorithm: ALGORITHM_TAG_ED25519,
        key_id: key.key_id().to_bytes(),
        signature,
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use smolvm_format::{
        plan_sections, Artifact, Compression, MachineConfig, Manifest, SectionData, SectionKind,
        Target, FORMAT_VERSION,
    };

    /// An unsigned manifest with the required sections (not laid out).
    pub(crate) fn minimal_manifest(name: &str) -> Manifest {
        let sections: Vec<SectionData> = [
            (
                SectionKind::Config,
                MachineConfig::default().to_canonical_json(),
            ),
            (SectionKind::Kernel, vec![0x7f; 10]),
            (SectionKind::Rootfs, vec![0; 1024]),
        ]
        .into_iter()
        .map(|(kind, stored)| SectionData {
            kind,
            compression: Compression::None,
            size: stored.len() as u64,
            stored,
        })
        .collect();
        Manifest {
            format_version: FORMAT_VERSION,
            name: name.into(),
            version: "1".into(),
            created: 0,
            target: Target {
                os: "linux".into(),
                arch: "x86_64".into(),
            },
            signer: None,
            stub: None,
            sections: plan_sections(&sections).unwrap(),
            config: MachineConfig::default(),
        }
    }

    /// A sealed payload passes the signature check the runtime applies,
    /// trusted by the sealing key and refused by another.
    #[test]
    fn a_sealed_payload_verifies_under_its_key_only() {
        let key = SecretKey::from_seed(&[7; 32]);
        let config = MachineConfig::default().to_canonical_json();
        let sections: Vec<SectionData> = [
            (SectionKind::Config, config),
            (SectionKind::Kernel, vec![0x7f; 10]),
            (SectionKind::Rootfs, vec![0; 1024]),
        ]
        .into_iter()
        .map(|(kind, stored)| SectionData {
            kind,
            compression: Compression::None,
            size: stored.len() as u64,
            stored,
        })
        .collect();
        let manifest = Manifest {
            format_version: FORMAT_VERSION,
            name: "sealed".into(),
            version: "1".into(),
            created: 0,
            target: Target {
                os: "linux".into(),
                arch: "x86_64".into(),
            },
            signer: Some(signer_record(&key.public_key())),
            stub: None,
            sections: plan_sections(&sections).unwrap(),
            config: MachineConfig::default(),
        };
        let writer = PayloadWriter::new(&manifest).unwrap();
        let block = seal(&writer, &key);
        let mut bytes = Vec::new();
        writer
            .write(&mut bytes, &[], &sections, Some(&block))
            .unwrap();
        let art = Artifact::parse(bytes.as_slice()).unwrap();
        let own = [key.public_key()];
        assert!(crate::check_signature(&art, &own).is_ok());
        let other = [SecretKey::from_seed(&[8; 32]).public_key()];
        assert!(crate::check_signature(&art, &other).is_err());
    }
}

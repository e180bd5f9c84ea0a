//! Hashes, key ids and public keys are decoded when the manifest is: every
//! spelling but lowercase hex of the exact length is refused by
//! `Manifest::decode`, naming the member, and a valid one round-trips.

use smolvm_format::manifest::{Manifest, SectionEntry};
use smolvm_format::{
    Compression, MachineConfig, SectionKind, Sha256Digest, Signer, SignerKeyId, SignerPublicKey,
    StubRecord, Target, FORMAT_VERSION,
};

fn manifest() -> Manifest {
    let entry = |kind, offset, fill| SectionEntry {
        kind,
        compression: Compression::None,
        offset,
        stored_len: 10,
        size: 10,
        sha256: Sha256Digest::from_bytes([fill; 32]),
        frames: None,
    };
    Manifest {
        format_version: FORMAT_VERSION,
        name: "demo".into(),
        version: "1.0".into(),
        created: 0,
        target: Target {
            os: "linux".into(),
            arch: "x86_64".into(),
        },
        signer: Some(Signer {
            algorithm: "ed25519".into(),
            key_id: SignerKeyId::from_bytes([0x5c; 8]),
            public_key: SignerPublicKey::from_bytes([0x4b; 32]),
            rotated_from: Vec::new(),
        }),
        stub: Some(StubRecord {
            length: 4096,
            sha256: Sha256Digest::from_bytes([0x3a; 32]),
        }),
        sections: vec![
            entry(SectionKind::Config, 0, 0xc0),
            entry(SectionKind::Kernel, 4096, 0xd1),
            entry(SectionKind::Rootfs, 8192, 0xe2),
        ],
        config: MachineConfig::default(),
    }
}

/// `Manifest::decode`'s error for the manifest with `old` (once in the
/// encoding, as a JSON string) spelled `new`.
fn decode_error(old: &str, new: &str) -> String {
    let text = String::from_utf8(manifest().encode()).unwrap();
    let old = format!("\"{old}\"");
    assert_eq!(text.matches(&old).count(), 1, "{old} in {text}");
    let bytes = text.replace(&old, &format!("\"{new}\""));
    match Manifest::decode(bytes.as_bytes()) {
        Ok(_) => panic!("{new:?} in place of {old} was accepted"),
        Err(e) => e.to_string(),
    }
}

/// Uppercase, one character short and long, a non-hex character, empty.
fn bad_spellings(good: &str) -> Vec<String> {
    vec![
        good.to_uppercase(),
        good[1..].to_string(),
        format!("{good}0"),
        format!("{}g", &good[1..]),
        String::new(),
    ]
}

#[test]
fn a_valid_manifest_round_trips_byte_for_byte() {
    let m = manifest();
    let bytes = m.encode();
    let decoded = Manifest::decode(&bytes).unwrap();
    assert_eq!(decoded, m);
    assert_eq!(decoded.encode(), bytes);
    // The hex text is the bytes', lowercase: what file names and listings show.
    let text = String::from_utf8(bytes).unwrap();
    assert!(text.contains(&format!("\"sha256\":\"{}\"", "d1".repeat(32))));
    assert!(text.contains(&format!("\"key_id\":\"{}\"", "5c".repeat(8))));
    assert!(text.contains(&format!("\"public_key\":\"{}\"", "4b".repeat(32))));
}

#[test]
fn section_hashes_other_than_lowercase_hex_are_refused_naming_the_entry() {
    for (i, fill) in ["c0", "d1", "e2"].into_iter().enumerate() {
        let good = fill.repeat(32);
        for bad in bad_spellings(&good) {
            let e = decode_error(&good, &bad);
            let field =
                format!("field `sections[{i}].sha256`: expected 64 lowercase hex characters");
            assert!(e.contains(&field), "{bad:?}: {e}");
        }
    }
}

#[test]
fn a_stub_hash_other_than_lowercase_hex_is_refused_naming_the_field() {
    let good = "3a".repeat(32);
    for bad in bad_spellings(&good) {
        let e = decode_error(&good, &bad);
        assert!(
            e.contains("field `stub.sha256`: expected 64 lowercase hex characters"),
            "{bad:?}: {e}"
        );
    }
}

#[test]
fn signer_key_id_and_public_key_other_than_lowercase_hex_are_refused_naming_the_field() {
    let good = "5c".repeat(8);
    for bad in bad_spellings(&good) {
        let e = decode_error(&good, &bad);
        assert!(
            e.contains("field `signer.key_id`: expected 16 lowercase hex characters"),
            "{bad:?}: {e}"
        );
    }
    let good = "4b".repeat(32);
    for bad in bad_spellings(&good) {
        let e = decode_error(&good, &bad);
        assert!(
            e.contains("field `signer.public_key`: expected 64 lowercase hex characters"),
            "{bad:?}: {e}"
        );
    }
}

#[test]
fn a_hash_of_the_wrong_type_is_refused() {
    let text = String::from_utf8(manifest().encode()).unwrap();
    let bytes = text.replace(&format!("\"{}\"", "3a".repeat(32)), "7");
    let e = Manifest::decode(bytes.as_bytes()).unwrap_err().to_string();
    assert!(e.contains("64 lowercase hex characters"), "{e}");
}

/// A rotation record's shape is the format's: version 5, at most
/// `MAX_ROTATION_LINKS` links, no key twice (the signer's included), hex
/// of the exact lengths; whether its signatures verify is the verifier's.
#[test]
fn a_rotation_record_is_checked_for_shape_and_version() {
    use smolvm_format::manifest::MAX_ROTATION_LINKS;
    use smolvm_format::{Ed25519Signature, RotationLink};
    let link = |fill: u8| RotationLink {
        key_id: SignerKeyId::from_bytes([fill; 8]),
        public_key: SignerPublicKey::from_bytes([fill; 32]),
        signature: Ed25519Signature::from_bytes([fill; 64]),
    };
    let with = |links: Vec<RotationLink>, version: u32| {
        let mut m = manifest();
        m.format_version = version;
        m.signer.as_mut().unwrap().rotated_from = links;
        m.validate().map_err(|e| e.to_string())
    };
    // Round-trips, and without links the member is absent.
    let mut m = manifest();
    m.signer.as_mut().unwrap().rotated_from = vec![link(1), link(2)];
    let bytes = m.encode();
    assert_eq!(Manifest::decode(&bytes).unwrap(), m);
    assert!(String::from_utf8(bytes)
        .unwrap()
        .contains("\"rotated_from\":[{\"key_id\":\"0101"));
    assert!(!String::from_utf8(manifest().encode())
        .unwrap()
        .contains("rotated_from"));
    for (links, version, needle) in [
        (vec![link(1)], 4, "format version 5"),
        (vec![link(1), link(1)], 5, "appears twice"),
        (vec![link(0x4b)], 5, "appears twice"), // the signer's own key
        (
            (1..=u8::try_from(MAX_ROTATION_LINKS).unwrap() + 1)
                .map(link)
                .collect(),
            5,
            "at most 8",
        ),
    ] {
        let e = with(links, version).unwrap_err();
        assert!(e.contains(needle), "{needle:?} not in {e}");
    }
    // A short signature is refused naming the member.
    let text = String::from_utf8(m.encode()).unwrap();
    let sig = "01".repeat(64);
    let e = Manifest::decode(text.replacen(&sig, &"01".repeat(63), 1).as_bytes())
        .unwrap_err()
        .to_string();
    assert!(e.contains("signer.rotated_from[].signature"), "{e}");
}

/// The icon is stored as is (version 5): installs copy it without a
/// decompressor, so a compressed icon section is refused.
#[test]
fn an_icon_section_is_stored_uncompressed() {
    let mut m = manifest();
    let mut entry = m.sections[0].clone();
    entry.kind = SectionKind::Icon;
    entry.offset = 12288;
    m.sections.push(entry);
    let icon = m.sections.len() - 1;
    m.validate().unwrap_or_else(|e| panic!("{e}"));
    m.sections[icon].compression = Compression::Zstd;
    let e = m.validate().unwrap_err().to_string();
    assert!(e.contains("the icon is stored as is"), "{e}");
}

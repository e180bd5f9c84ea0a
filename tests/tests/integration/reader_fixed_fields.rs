//! One negative test per field of the fixed-size structures (trailer,
//! header, signature block), run in process on artifacts built in memory.
//! "Rejected" means `smolvm_tests::full_check` fails: `Artifact::parse`, the
//! runtime's `verify_artifact` (signature required, integrity on) and
//! reading every section.

use smolvm_runtime::SignatureState;
use smolvm_tests::{
    assemble, assert_rejected, build, full_check, idx, layout_of, other_key, patched, signed_bare,
    signed_packed, test_key, trusted, ArtifactSpec, Built,
};

// ---------------------------------------------------------------- baseline

#[test]
fn test_valid_artifacts_pass_in_both_forms_signed_and_stored() {
    for spec in [
        ArtifactSpec::default(),
        ArtifactSpec::packed(),
        ArtifactSpec {
            compress: false,
            ..ArtifactSpec::packed()
        },
    ] {
        let b = build(&spec);
        assert_eq!(
            full_check(&b.bytes, &trusted()).unwrap(),
            SignatureState::Trusted {
                key_id: "3c09b807520d5931".parse().unwrap()
            }
        );
        // Without trusted keys the best result is "self-consistent".
        assert!(matches!(
            full_check(&b.bytes, &[]).unwrap(),
            SignatureState::SelfConsistent { .. }
        ));
    }
}

#[test]
fn test_raw_assembler_matches_the_writer() {
    // The negative tests below rely on `assemble` laying out exactly as the
    // writer does, so that only the changed field differs.
    for b in [signed_bare(), signed_packed()] {
        assert_eq!(b.with_manifest(|_| {}), b.bytes);
    }
}

#[test]
fn test_spec_test_vector_layout() {
    // SPEC.md section 13: an uncompressed signed bare payload of a 10-byte
    // kernel and a 1024-byte rootfs is 12 659 bytes with its trailer at 12 595.
    let b = build(&ArtifactSpec {
        compress: false,
        kernel: vec![0x7f; 10],
        rootfs: vec![0; 1024],
        ..Default::default()
    });
    assert_eq!(b.manifest.encode().len(), 1097);
    // Our build orders config first; the spec's vector orders kernel first.
    let reordered = {
        let stored = vec![
            b.stored[1].clone(),
            b.stored[2].clone(),
            b.stored[0].clone(),
        ];
        let mut m = b.manifest.clone();
        m.sections = vec![
            m.sections[1].clone(),
            m.sections[2].clone(),
            m.sections[0].clone(),
        ];
        let mut off = 0;
        for s in &mut m.sections {
            s.offset = off;
            off = smolvm_format::layout::align_up(off + s.stored_len).unwrap();
        }
        assemble(&[], &m.encode(), &stored, Some(&test_key()))
    };
    assert_eq!(reordered.len(), 12_659);
    let l = layout_of(&reordered).unwrap();
    assert_eq!(l.trailer.start, 12_595);
    assert_eq!(
        l.sections.iter().map(|s| s.1.start).collect::<Vec<_>>(),
        [4096, 8192, 12288]
    );
    use sha2::Digest;
    assert_eq!(
        hex::encode(sha2::Sha256::digest(&reordered)),
        "5b44d1e29e9cf8c02305c4b44b751747731dcd0d082f5ef4eab4628872cc4ebf"
    );
    full_check(&reordered, &trusted()).unwrap();
}

// ---------------------------------------------------------------- trailer

fn trailer_at(b: &Built, field: u64) -> u64 {
    b.layout.trailer.start + field
}

#[test]
fn test_trailer_bad_magic() {
    let b = signed_packed();
    assert_rejected(
        &patched(&b.bytes, trailer_at(&b, 0), b"SMOLTAIX"),
        &["trailer", "magic"],
    );
}

#[test]
fn test_trailer_bad_version_names_supported_version() {
    let b = signed_packed();
    // Versions 1 and 2 (1: rootfs as a host-extracted tar) are refused by
    // name, as is anything newer.
    for v in [0u32, 1, 2, 6, u32::MAX] {
        assert_rejected(
            &patched(&b.bytes, trailer_at(&b, 8), &v.to_le_bytes()),
            &[
                "trailer",
                &format!("version {v}"),
                "supports versions 3 to 5",
            ],
        );
    }
    // A readable version that is not the header's: parts of two artifacts.
    for v in [3u32, 4] {
        assert_rejected(
            &patched(&b.bytes, trailer_at(&b, 8), &v.to_le_bytes()),
            &["header", "format version 5 differs from the trailer's"],
        );
    }
}

#[test]
fn test_trailer_bad_trailer_len() {
    let b = signed_packed();
    for v in [0u32, 63, 65, 128, u32::MAX] {
        assert_rejected(
            &patched(&b.bytes, trailer_at(&b, 12), &v.to_le_bytes()),
            &["trailer", "trailer_len"],
        );
    }
}

#[test]
fn test_trailer_bad_payload_offset() {
    let b = signed_packed();
    let p = b.layout.payload_offset;
    for v in [0, p - 4096, p + 4096, p + 1, 1, u64::MAX] {
        assert_rejected(
            &patched(&b.bytes, trailer_at(&b, 16), &v.to_le_bytes()),
            &["trailer"],
        );
    }
    // Moved together with payload_len, so the sum still matches: the
    // alignment rule and the stub record catch it.
    let len = b.layout.file_len;
    for v in [p - 1, p + 1, p - 4096] {
        let bytes = patched(&b.bytes, trailer_at(&b, 16), &v.to_le_bytes());
        assert_rejected(
            &patched(&bytes, trailer_at(&b, 24), &(len - v).to_le_bytes()),
            &[],
        );
    }
    let bytes = patched(&b.bytes, trailer_at(&b, 16), &(p + 1).to_le_bytes());
    assert_rejected(
        &patched(&bytes, trailer_at(&b, 24), &(len - p - 1).to_le_bytes()),
        &["payload_offset", "multiple of 4096"],
    );
}

#[test]
fn test_trailer_bad_payload_len() {
    let b = signed_packed();
    let len = b.layout.file_len - b.layout.payload_offset;
    for v in [0, 64, 127, 128, len - 1, len + 1] {
        assert_rejected(
            &patched(&b.bytes, trailer_at(&b, 24), &v.to_le_bytes()),
            &["trailer", "payload_len"],
        );
    }
    assert_rejected(
        &patched(&b.bytes, trailer_at(&b, 24), &u64::MAX.to_le_bytes()),
        &["trailer", "overflows"],
    );
}

#[test]
fn test_trailer_reserved_must_be_zero() {
    let b = signed_packed();
    for at in 32..64 {
        assert_rejected(
            &patched(&b.bytes, trailer_at(&b, at), &[0x01]),
            &["trailer", "reserved"],
        );
    }
}

// ---------------------------------------------------------------- header

fn header_at(b: &Built, field: u64) -> u64 {
    b.layout.header.start + field
}

#[test]
fn test_header_bad_magic() {
    let b = signed_packed();
    assert_rejected(
        &patched(&b.bytes, header_at(&b, 0), b"SMOLMACX"),
        &["header", "magic"],
    );
}

#[test]
fn test_header_bad_version_names_supported_version() {
    let b = signed_bare();
    for v in [0u32, 1, 2, 6, u32::MAX] {
        assert_rejected(
            &patched(&b.bytes, header_at(&b, 8), &v.to_le_bytes()),
            &["header", "supports versions 3 to 5"],
        );
    }
    for v in [3u32, 4] {
        assert_rejected(
            &patched(&b.bytes, header_at(&b, 8), &v.to_le_bytes()),
            &[
                "header",
                &format!("format version {v} differs from the trailer's 5"),
            ],
        );
    }
}

#[test]
fn test_header_bad_header_len() {
    let b = signed_bare();
    assert_rejected(
        &patched(&b.bytes, header_at(&b, 12), &65u32.to_le_bytes()),
        &["header", "header_len"],
    );
}

#[test]
fn test_header_bad_manifest_len() {
    let b = signed_bare();
    let m = u32::try_from(b.layout.manifest.end - b.layout.manifest.start).unwrap();
    for v in [0u32, 1, m - 1, m + 1, m + 96, (1 << 20) + 1, u32::MAX] {
        assert_rejected(&patched(&b.bytes, header_at(&b, 16), &v.to_le_bytes()), &[]);
    }
    for v in [0u32, (1 << 20) + 1, u32::MAX] {
        assert_rejected(
            &patched(&b.bytes, header_at(&b, 16), &v.to_le_bytes()),
            &["header", "manifest_len"],
        );
    }
}

#[test]
fn test_header_bad_signature_len() {
    let b = signed_bare();
    for v in [1u32, 64, 95, 97, u32::MAX] {
        assert_rejected(
            &patched(&b.bytes, header_at(&b, 20), &v.to_le_bytes()),
            &["header", "signature_len"],
        );
    }
    // Signature stripped by declaring it absent.
    assert_rejected(
        &patched(&b.bytes, header_at(&b, 20), &0u32.to_le_bytes()),
        &[],
    );
}

#[test]
fn test_header_flags_must_be_zero() {
    let b = signed_bare();
    for bit in 0..32 {
        assert_rejected(
            &patched(&b.bytes, header_at(&b, 24), &(1u32 << bit).to_le_bytes()),
            &["header", "flags"],
        );
    }
}

#[test]
fn test_header_reserved_must_be_zero() {
    let b = signed_bare();
    for at in 28..64 {
        assert_rejected(
            &patched(&b.bytes, header_at(&b, at), &[0x80]),
            &["header", "reserved"],
        );
    }
}

// ---------------------------------------------------------------- signature block

fn sig_at(b: &Built, field: u64) -> u64 {
    b.layout.signature.as_ref().unwrap().start + field
}

#[test]
fn test_signature_block_bad_algorithm() {
    let b = signed_bare();
    for v in [0u16, 2, 0x100, u16::MAX] {
        assert_rejected(
            &patched(&b.bytes, sig_at(&b, 0), &v.to_le_bytes()),
            &["signature block", "algorithm"],
        );
    }
}

#[test]
fn test_signature_block_reserved_must_be_zero() {
    let b = signed_bare();
    for at in (2..4).chain(12..32) {
        assert_rejected(
            &patched(&b.bytes, sig_at(&b, at), &[0x01]),
            &["signature block", "reserved"],
        );
    }
}

#[test]
fn test_signature_block_key_id_must_match_signer() {
    let b = signed_bare();
    let other = other_key().public_key().key_id().to_bytes();
    assert_rejected(
        &patched(&b.bytes, sig_at(&b, 4), &other),
        &["key id", "does not match"],
    );
}

#[test]
fn test_signature_bad_bytes() {
    let b = signed_bare();
    // Zero signature, a flipped R, a flipped S, and S + L (non-canonical:
    // the strict rules refuse a second encoding of the same signature).
    let sig = b.layout.signature.clone().unwrap().start + 32;
    let original: [u8; 64] = b.bytes[idx(sig)..idx(sig) + 64].try_into().unwrap();
    let mut s_plus_l = original;
    add_group_order(&mut s_plus_l[32..]);
    for bad in [[0u8; 64], flip(original, 0), flip(original, 40), s_plus_l] {
        assert_rejected(&patched(&b.bytes, sig, &bad), &["signature"]);
    }
}

fn flip(mut sig: [u8; 64], at: usize) -> [u8; 64] {
    sig[at] ^= 0x01;
    sig
}

/// Adds the ed25519 group order L to a little-endian scalar in place.
fn add_group_order(s: &mut [u8]) {
    const L: [u8; 32] = [
        0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7, 0xa2, 0xde, 0xf9, 0xde,
        0x14, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10,
    ];
    let mut carry = 0u16;
    for (a, l) in s.iter_mut().zip(L) {
        let sum = u16::from(*a) + u16::from(l) + carry;
        *a = sum.to_le_bytes()[0];
        carry = sum >> 8;
    }
}

#[test]
fn test_signature_from_another_artifact_is_refused() {
    // A signature block spliced in from another artifact of the same signer.
    let a = signed_bare();
    let other = build(&ArtifactSpec {
        rootfs: b"another root".to_vec(),
        ..Default::default()
    });
    let block = &other.bytes[idx(other.layout.signature.clone().unwrap().start)
        ..idx(other.layout.signature.clone().unwrap().end)];
    assert_rejected(
        &patched(&a.bytes, a.layout.signature.clone().unwrap().start, block),
        &["signature"],
    );
}

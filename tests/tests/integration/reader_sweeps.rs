//! Sweeps over damaged artifacts: a bit flipped in every structural byte
//! and in sampled stub, padding and section bytes, truncation at every
//! structural boundary (from either end), appended, inserted and prepended
//! bytes, u64::MAX offsets and lengths, overlapping sections, and wrong
//! keys. Every mutation must be rejected, and none may panic the reader.

use smolvm_format::layout::TRAILER_LEN;
use smolvm_format::{Artifact, SectionEntry};
use smolvm_runtime::SignatureState;
use smolvm_tests::{
    assemble, assert_rejected, build, full_check, idx, must_reject, other_key, patched,
    signed_bare, signed_packed, signer_record, test_key, trusted, ArtifactSpec,
};

// ---------------------------------------------------------------- sweeps

#[test]
fn test_bit_flip_in_every_structural_byte_is_rejected() {
    for b in [signed_bare(), signed_packed()] {
        let l = &b.layout;
        let sig = l.signature.clone().unwrap();
        // Every bit of the fixed-size structures; one bit (rotating) of every
        // manifest byte.
        let mut flips: Vec<(u64, u8)> = Vec::new();
        for range in [l.trailer.clone(), l.header.clone(), sig.clone()] {
            for at in range {
                flips.extend((0..8).map(|bit| (at, 1u8 << bit)));
            }
        }
        for at in l.manifest.clone() {
            flips.push((at, 1u8 << (at % 8)));
        }
        for (at, mask) in flips {
            let mut bytes = b.bytes.clone();
            bytes[idx(at)] ^= mask;
            must_reject(&bytes, &|| {
                format!(
                    "flip {mask:#04x} at {at:#x} (payload at {:#x})",
                    l.payload_offset
                )
            });
        }
    }
}

#[test]
fn test_bit_flip_in_sampled_data_bytes_is_rejected() {
    let b = signed_packed();
    let l = &b.layout;
    let mut spots: Vec<u64> = Vec::new();
    // Stub: first, last and a stride through it.
    spots.extend((0..l.payload_offset).step_by(509));
    spots.push(l.payload_offset - 1);
    // Padding after the signature block: a stride.
    spots.extend(l.header_padding.clone().step_by(97));
    // Each section: first, last, and a stride; padding between sections.
    for (_, r) in &l.sections {
        spots.extend(r.clone().step_by(211));
        spots.push(r.end - 1);
        if r.end % 4096 != 0 && r.end < l.trailer.start {
            spots.push(r.end);
            spots.push(smolvm_format::layout::align_up(r.end).unwrap() - 1);
        }
    }
    assert!(spots.len() > 150, "sample is {} bytes", spots.len());
    for at in spots {
        let mut bytes = b.bytes.clone();
        bytes[idx(at)] ^= 1 << (at % 8);
        must_reject(&bytes, &|| format!("flip at {at:#x}"));
    }
}

#[test]
fn test_truncation_at_every_structural_boundary_is_rejected() {
    for b in [signed_bare(), signed_packed()] {
        let l = &b.layout;
        let mut cuts = vec![0u64, 1, 63, 64, 127, 128, 4095, 4096];
        let mut marks = vec![
            l.payload_offset,
            l.header.end,
            l.manifest.end,
            l.header_padding.start,
            l.data_start,
            l.trailer.start,
            l.file_len,
        ];
        for (_, r) in &l.sections {
            marks.push(r.start);
            marks.push(r.end);
        }
        for m in marks {
            cuts.extend([m.saturating_sub(1), m, m + 1]);
        }
        cuts.retain(|&c| c < l.file_len);
        cuts.sort_unstable();
        cuts.dedup();
        for keep in cuts {
            // Cut the end off, and cut the start off (a stub or payload prefix).
            must_reject(&b.bytes[..idx(keep)], &|| {
                format!("file cut to {keep} bytes")
            });
            if keep > 0 {
                must_reject(&b.bytes[idx(keep)..], &|| format!("first {keep} bytes cut"));
            }
        }
    }
}

#[test]
fn test_appended_and_inserted_bytes_are_rejected() {
    for b in [signed_bare(), signed_packed()] {
        for garbage in [
            vec![0u8],
            vec![0u8; 64],
            vec![0u8; 4096],
            b"SMOLTAIL".to_vec(),
            b.bytes[b.bytes.len() - 64..].to_vec(),
        ] {
            let bytes = [&b.bytes[..], &garbage[..]].concat();
            must_reject(&bytes, &|| format!("{} bytes appended", garbage.len()));
            // Inserted before the trailer.
            let t = idx(b.layout.trailer.start);
            let bytes = [&b.bytes[..t], &garbage[..], &b.bytes[t..]].concat();
            must_reject(&bytes, &|| {
                format!("{} bytes before the trailer", garbage.len())
            });
            // Prepended (a stub that grew).
            let bytes = [&garbage[..], &b.bytes[..]].concat();
            must_reject(&bytes, &|| format!("{} bytes prepended", garbage.len()));
        }
        // A whole page prepended with the trailer adjusted: the payload is
        // found, but the stub record (bare: null; packed: its length and
        // hash) no longer matches.
        let mut bytes = [vec![0u8; 4096], b.bytes.clone()].concat();
        let t = bytes.len() - 64;
        let p = b.layout.payload_offset + 4096;
        bytes[t + 16..t + 24].copy_from_slice(&p.to_le_bytes());
        must_reject(&bytes, &|| "page prepended, trailer adjusted".into());
    }
}

#[test]
fn test_u64_max_offsets_and_lengths_are_rejected() {
    let b = signed_packed();
    let t = b.layout.trailer.start;
    for (off, len) in [
        (u64::MAX, u64::MAX),
        (u64::MAX, 0),
        (0, u64::MAX),
        (u64::MAX - 4095, 4096 + 64 + 1),
        (!4095u64, b.layout.file_len),
        (
            b.layout.payload_offset,
            u64::MAX - b.layout.payload_offset + 1,
        ),
    ] {
        let bytes = patched(&b.bytes, t + 16, &off.to_le_bytes());
        let bytes = patched(&bytes, t + 24, &len.to_le_bytes());
        must_reject(&bytes, &|| format!("trailer offset {off:#x} len {len:#x}"));
    }
    // The same in the (re-signed) section table.
    for i in 0..3 {
        for change in [
            &(|s: &mut SectionEntry| s.offset = u64::MAX) as &dyn Fn(&mut SectionEntry),
            &|s| s.offset = !4095u64,
            &|s| s.stored_len = u64::MAX,
            &|s| {
                s.stored_len = u64::MAX;
                s.size = u64::MAX;
            },
            &|s| s.size = u64::MAX,
            &|s| {
                s.offset = !4095u64;
                s.stored_len = 4096;
            },
        ] {
            must_reject(&b.with_manifest(|m| change(&mut m.sections[i])), &|| {
                format!("sections[{i}] with u64::MAX values")
            });
        }
    }
    assert_rejected(
        &b.with_manifest(|m| m.stub.as_mut().unwrap().length = u64::MAX),
        &["stub.length"],
    );
}

#[test]
fn test_overlapping_sections_are_rejected() {
    let b = signed_bare();
    // Two entries describing the same bytes, and one that reaches into the next.
    must_reject(&b.with_manifest(|m| m.sections[1].offset = 0), &|| {
        "sections[1] at offset 0".into()
    });
    must_reject(
        &b.with_manifest(|m| m.sections[2].offset = m.sections[1].offset),
        &|| "sections[2] over sections[1]".into(),
    );
    must_reject(
        &b.with_manifest(|m| m.sections[0].stored_len = m.sections[1].offset + 1),
        &|| "sections[0] running into sections[1]".into(),
    );
    // The table out of offset order.
    must_reject(&b.with_manifest(|m| m.sections.swap(1, 2)), &|| {
        "table out of order".into()
    });
}

// ---------------------------------------------------------------- keys

#[test]
fn test_wrong_key_is_untrusted_and_right_key_trusted() {
    let b = signed_packed();
    let other = vec![other_key().public_key()];
    let msg = full_check(&b.bytes, &other).unwrap_err();
    assert!(msg.contains("untrusted"), "{msg}");
    // Right key among several.
    let both = vec![other_key().public_key(), test_key().public_key()];
    assert!(matches!(
        full_check(&b.bytes, &both).unwrap(),
        SignatureState::Trusted { .. }
    ));
    // Re-signed by another key (an attacker's re-pack): intact, but untrusted.
    let mut m = b.manifest.clone();
    m.signer = Some(signer_record(&other_key().public_key()));
    let resigned = assemble(&b.padded_stub, &m.encode(), &b.stored, Some(&other_key()));
    assert!(matches!(
        full_check(&resigned, &[]).unwrap(),
        SignatureState::SelfConsistent { .. }
    ));
    let msg = full_check(&resigned, &trusted()).unwrap_err();
    assert!(msg.contains("untrusted"), "{msg}");
}

#[test]
fn test_unsigned_is_never_valid() {
    let b = build(&ArtifactSpec {
        signer: None,
        ..ArtifactSpec::packed()
    });
    let art = Artifact::parse(&b.bytes[..]).unwrap();
    art.verify_integrity().unwrap();
    assert_eq!(
        smolvm_runtime::check_signature(&art, &[]).unwrap(),
        SignatureState::Unsigned
    );
    for keys in [vec![], trusted()] {
        let msg = full_check(&b.bytes, &keys).unwrap_err();
        assert!(msg.contains("unsigned"), "{msg}");
    }
}

#[test]
fn test_too_short_files() {
    for len in [0usize, 1, 63, 64, 127] {
        let msg = full_check(&vec![0u8; len], &trusted()).unwrap_err();
        assert!(msg.contains("too short"), "{len}: {msg}");
    }
    // 128 bytes that are a trailer after a header: payload_len 128 but no
    // room for a manifest.
    let b = signed_bare();
    let mut tiny = b.bytes[..64].to_vec();
    tiny.extend_from_slice(&b.bytes[b.bytes.len() - 64..]);
    let t = tiny.len() - idx(TRAILER_LEN);
    tiny[t + 24..t + 32].copy_from_slice(&128u64.to_le_bytes());
    must_reject(&tiny, &|| "128-byte header + trailer".into());
}

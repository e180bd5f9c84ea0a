//! Property tests: the reader never panics, whatever the bytes. Inputs are
//! arbitrary byte strings (with and without a plausible trailer glued on)
//! and valid artifacts with random edits (byte overwrites, insertions,
//! deletions, truncation, a patched trailer or header field). Any outcome
//! but a panic is fine; a mutated artifact that still verifies must be
//! byte-identical to the original (the only way to pass is to change
//! nothing).

use std::sync::OnceLock;

use proptest::prelude::*;
use smolvm_format::layout::{Header, Trailer, FORMAT_VERSION};
use smolvm_tests::{build, exercise_reader, full_check, trusted, ArtifactSpec, Built};

/// Built once: building signs and compresses, and proptest runs hundreds of cases.
fn originals() -> &'static [Built; 3] {
    static ORIGINALS: OnceLock<[Built; 3]> = OnceLock::new();
    ORIGINALS.get_or_init(|| {
        [
            build(&ArtifactSpec::default()),
            build(&ArtifactSpec::packed()),
            build(&ArtifactSpec {
                compress: false,
                signer: None,
                ..ArtifactSpec::default()
            }),
        ]
    })
}

#[derive(Debug, Clone)]
enum Edit {
    /// Overwrite the byte at (position mod len).
    Set(usize, u8),
    /// XOR a byte near the end (trailer and last section), where it matters most.
    XorFromEnd(usize, u8),
    Insert(usize, Vec<u8>),
    Delete(usize, usize),
    Truncate(usize),
    /// Write a u64 into the trailer at one of its u64 fields.
    TrailerU64(bool, u64),
    /// Write a u32 into the header at one of its u32 fields.
    HeaderU32(usize, u32),
}

fn edit() -> impl Strategy<Value = Edit> {
    let interesting_u64 = prop_oneof![
        Just(0u64),
        Just(u64::MAX),
        Just(u64::MAX - 4095),
        Just(1u64 << 63),
        any::<u64>(),
        (0u64..1 << 20),
    ];
    let interesting_u32 = prop_oneof![
        Just(0u32),
        Just(u32::MAX),
        Just(96u32),
        Just(1u32 << 20),
        any::<u32>()
    ];
    prop_oneof![
        (any::<usize>(), any::<u8>()).prop_map(|(p, b)| Edit::Set(p, b)),
        (0usize..256, 1u8..=255).prop_map(|(p, b)| Edit::XorFromEnd(p, b)),
        (any::<usize>(), prop::collection::vec(any::<u8>(), 1..64))
            .prop_map(|(p, v)| Edit::Insert(p, v)),
        (any::<usize>(), 1usize..5000).prop_map(|(p, n)| Edit::Delete(p, n)),
        any::<usize>().prop_map(Edit::Truncate),
        (any::<bool>(), interesting_u64).prop_map(|(f, v)| Edit::TrailerU64(f, v)),
        (0usize..4, interesting_u32).prop_map(|(f, v)| Edit::HeaderU32(f, v)),
    ]
}

fn apply(bytes: &mut Vec<u8>, b: &Built, e: &Edit) {
    let len = bytes.len();
    match e {
        Edit::Set(p, v) if len > 0 => bytes[p % len] = *v,
        Edit::XorFromEnd(p, v) if *p < len => bytes[len - 1 - p] ^= v,
        Edit::Insert(p, v) => {
            let at = p % (len + 1);
            bytes.splice(at..at, v.iter().copied());
        }
        Edit::Delete(p, n) if len > 0 => {
            let at = p % len;
            bytes.drain(at..(at + n).min(len));
        }
        Edit::Truncate(n) => bytes.truncate(n % (len + 1)),
        Edit::TrailerU64(second, v) if len >= 64 => {
            let at = len - 64 + if *second { 24 } else { 16 };
            bytes[at..at + 8].copy_from_slice(&v.to_le_bytes());
        }
        Edit::HeaderU32(field, v) => {
            // 8: version, 12: header_len, 16: manifest_len, 20: signature_len.
            let at = smolvm_tests::idx(b.layout.payload_offset) + 8 + 4 * field;
            if at + 4 <= len {
                bytes[at..at + 4].copy_from_slice(&v.to_le_bytes());
            }
        }
        _ => {}
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..10_000)) {
        exercise_reader(&bytes);
    }

    #[test]
    fn arbitrary_bytes_with_a_plausible_trailer_never_panic(
        body in prop::collection::vec(any::<u8>(), 0..20_000),
        offset in prop_oneof![Just(0u64), (0u64..8).prop_map(|p| p * 4096), any::<u64>()],
        header in any::<bool>(),
        manifest_len in 0u32..20_000,
        signed in any::<bool>(),
    ) {
        // Get past the trailer checks more often than random bytes would.
        let mut bytes = body;
        if header {
            let h = Header { version: FORMAT_VERSION, manifest_len, signature_len: if signed { 96 } else { 0 } }.encode();
            let at = usize::try_from(offset).ok().filter(|&o| o + 64 <= bytes.len());
            if let Some(at) = at {
                bytes[at..at + 64].copy_from_slice(&h);
            }
        }
        let total = bytes.len() as u64 + 64;
        let t = Trailer { version: FORMAT_VERSION, payload_offset: offset, payload_len: total.wrapping_sub(offset) };
        bytes.extend_from_slice(&t.encode());
        exercise_reader(&bytes);
    }

    #[test]
    fn mutated_artifacts_never_panic_and_never_verify(
        which in 0usize..3,
        edits in prop::collection::vec(edit(), 1..4),
    ) {
        let b = &originals()[which];
        let mut bytes = b.bytes.clone();
        for e in &edits {
            apply(&mut bytes, b, e);
        }
        exercise_reader(&bytes);
        if full_check(&bytes, &trusted()).is_ok() {
            prop_assert_eq!(&bytes, &b.bytes, "a changed artifact verified");
        }
    }
}

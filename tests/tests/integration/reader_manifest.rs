//! One negative test per manifest field and canonical-encoding rule, plus
//! padding and zstd content rules. Each changed manifest is signed again
//! (`Built::with_manifest`), so the reader's field checks must catch it,
//! not the signature.

use smolvm_format::layout::HEADER_LEN;
use smolvm_format::manifest::{MAX_KERNEL_SIZE, MAX_NAME_LEN, MAX_SECTIONS};
use smolvm_format::{
    Compression, SectionEntry, SectionKind, Sha256Digest, SignerKeyId, SignerPublicKey, StubRecord,
};
use smolvm_tests::{
    assemble, assert_rejected, full_check, idx, other_key, signed_bare, signed_packed,
    signer_record, test_key, trusted,
};

// ---------------------------------------------------------------- manifest fields

#[test]
fn test_manifest_format_version() {
    let b = signed_bare();
    // smolvm_tests::assemble writes the manifest's version into header and
    // trailer; set both back to 5, so that the manifest's own check refuses.
    for v in [0, 1, 2, 6, u32::MAX] {
        let mut bytes = b.with_manifest(|m| m.format_version = v);
        let trailer_version = bytes.len() - 56;
        bytes[trailer_version..trailer_version + 4].copy_from_slice(&5u32.to_le_bytes());
        bytes[8..12].copy_from_slice(&5u32.to_le_bytes());
        assert_rejected(&bytes, &["manifest", "supports versions 3 to 5"]);
    }
    // 3 and 4 differ from 5 only in what they may hold: an artifact with
    // the three required sections reads as any of them.
    for v in [3, 4] {
        full_check(&b.with_manifest(|m| m.format_version = v), &trusted()).unwrap();
    }
}

/// What a version added is refused in an older one: a manifest that says
/// 4 cannot carry a rotation record or an icon, one that says 3 no SBOM.
#[test]
fn test_manifest_features_newer_than_its_version() {
    let b = signed_bare();
    let link = smolvm_runtime::seal::rotation_link("demo", &other_key(), &test_key().public_key());
    assert_rejected(
        &b.with_manifest(|m| {
            m.format_version = 4;
            m.signer.as_mut().unwrap().rotated_from = vec![link.clone()];
        }),
        &["signer.rotated_from", "format version 5"],
    );
    // The same record in a version 5 manifest verifies.
    full_check(
        &b.with_manifest(|m| m.signer.as_mut().unwrap().rotated_from = vec![link.clone()]),
        &trusted(),
    )
    .unwrap();
    for (kind, version) in [
        (smolvm_format::SectionKind::Icon, 4),
        (smolvm_format::SectionKind::Sbom, 3),
    ] {
        assert_rejected(
            &b.with_manifest(|m| {
                m.format_version = version;
                m.sections[2].kind = kind;
            }),
            &[&format!("section `{kind}` is defined from format version")],
        );
    }
}

#[test]
fn test_manifest_name() {
    let b = signed_bare();
    let long = "a".repeat(MAX_NAME_LEN + 1);
    for bad in [
        "",
        ".hidden",
        "..",
        "a/b",
        "a b",
        "ä",
        "x\u{0}",
        long.as_str(),
    ] {
        assert_rejected(&b.with_manifest(|m| m.name = bad.into()), &["`name`"]);
    }
    let max = "a".repeat(MAX_NAME_LEN);
    full_check(&b.with_manifest(|m| m.name = max), &trusted()).unwrap();
}

#[test]
fn test_manifest_version() {
    let b = signed_bare();
    let long = "1".repeat(65);
    for bad in ["", "1.0\n", "1.0\u{1b}[31m", "\u{7f}", long.as_str()] {
        assert_rejected(&b.with_manifest(|m| m.version = bad.into()), &["`version`"]);
    }
}

#[test]
fn test_manifest_created_is_signed() {
    // Informative, any value is allowed, but it is signed: changing it
    // without re-signing breaks the signature.
    let b = signed_bare();
    full_check(&b.with_manifest(|m| m.created = u64::MAX), &trusted()).unwrap();
    let changed = b.with_manifest(|m| m.created = 1);
    let mut spliced = b.bytes.clone();
    // Same length ("0" -> "1"), so only the manifest byte differs.
    let at = b.layout.manifest.start
        + u64::try_from(
            changed[idx(b.layout.manifest.start)..]
                .iter()
                .zip(&b.bytes[idx(b.layout.manifest.start)..])
                .position(|(x, y)| x != y)
                .unwrap(),
        )
        .unwrap();
    spliced[idx(at)] = changed[idx(at)];
    assert_rejected(&spliced, &["signature"]);
}

#[test]
fn test_manifest_target() {
    let b = signed_bare();
    for os in ["", "Linux", "windows"] {
        assert_rejected(
            &b.with_manifest(|m| m.target.os = os.into()),
            &["target.os"],
        );
    }
    for arch in ["", "x86-64", "arm64", "riscv64"] {
        assert_rejected(
            &b.with_manifest(|m| m.target.arch = arch.into()),
            &["target.arch"],
        );
    }
}

#[test]
fn test_manifest_signer() {
    let b = signed_bare();
    let s =
        |f: &dyn Fn(&mut smolvm_format::Signer)| b.with_manifest(|m| f(m.signer.as_mut().unwrap()));
    assert_rejected(&s(&|s| s.algorithm = "ed448".into()), &["signer.algorithm"]);
    let signer = b.manifest.signer.as_ref().unwrap();
    let (id, key) = (signer.key_id.to_string(), signer.public_key.to_string());
    for bad in [
        id.to_uppercase(),
        id[..15].into(),
        format!("{id}0"),
        format!("g{}", &id[1..]),
    ] {
        assert_rejected(
            &b.with_member_text("key_id", &id, &bad),
            &["signer.key_id", "16 lowercase hex"],
        );
    }
    for bad in [
        key.to_uppercase(),
        key[..63].into(),
        format!("{key}0"),
        format!("x{}", &key[1..]),
    ] {
        assert_rejected(
            &b.with_member_text("public_key", &key, &bad),
            &["signer.public_key", "64 lowercase hex"],
        );
    }
    // A key id that is not derived from the key (the block's id is changed
    // along, so only the derivation check can catch it).
    let fake_id = SignerKeyId::from_bytes([0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef]);
    let mut m = b.manifest.clone();
    m.signer.as_mut().unwrap().key_id = fake_id;
    let mut bytes = b.with_manifest_bytes(&m.encode());
    let l = bare_signature_offset(&m);
    bytes[idx(l) + 4..idx(l) + 12].copy_from_slice(fake_id.as_bytes());
    assert_rejected(&bytes, &["key id", "does not belong"]);
    // Small-order public key (the identity point), and a non-point.
    let mut identity = [0u8; 32];
    identity[0] = 1;
    for (key, needle) in [(identity, "signer"), ([0xff; 32], "")] {
        let mut m = b.manifest.clone();
        let kid = smolvm_signing::KeyId::derive(&key);
        *m.signer.as_mut().unwrap() = smolvm_format::Signer {
            algorithm: "ed25519".into(),
            key_id: SignerKeyId::from_bytes(kid.to_bytes()),
            public_key: SignerPublicKey::from_bytes(key),
            rotated_from: Vec::new(),
        };
        let mut bytes = b.with_manifest_bytes(&m.encode());
        let at = bare_signature_offset(&m);
        bytes[idx(at) + 4..idx(at) + 12].copy_from_slice(&kid.to_bytes());
        assert_rejected(&bytes, &[needle]);
    }
    // Signed by another key than the manifest names.
    let mut m = b.manifest.clone();
    m.signer = Some(signer_record(&other_key().public_key()));
    let mut bytes = assemble(&[], &m.encode(), &b.stored, Some(&test_key()));
    let at = bare_signature_offset(&m);
    bytes[idx(at) + 4..idx(at) + 12].copy_from_slice(&other_key().public_key().key_id().to_bytes());
    assert_rejected(&bytes, &["signature"]);
}

/// File offset of the signature block of a bare payload with manifest `m`.
fn bare_signature_offset(m: &smolvm_format::Manifest) -> u64 {
    HEADER_LEN + m.encode().len() as u64
}

#[test]
fn test_manifest_signer_presence_must_match_block() {
    let b = signed_bare();
    // Manifest says unsigned, block present.
    let m = {
        let mut m = b.manifest.clone();
        m.signer = None;
        m
    };
    assert_rejected(
        &assemble(&[], &m.encode(), &b.stored, Some(&test_key())),
        &["signature block", "no signer"],
    );
    // Manifest names a signer, no block (signature stripped).
    assert_rejected(
        &assemble(&[], &b.manifest.encode(), &b.stored, None),
        &["signature block", "stripped"],
    );
    // Both removed: a consistent unsigned artifact, which verify refuses.
    assert_rejected(&assemble(&[], &m.encode(), &b.stored, None), &["unsigned"]);
}

#[test]
fn test_manifest_stub_record() {
    let b = signed_packed();
    let len = b.padded_stub.len() as u64;
    assert_rejected(&b.with_manifest(|m| m.stub = None), &["`stub`", "null"]);
    for bad in [0, len - 4096, len + 4096, len - 1] {
        assert_rejected(
            &b.with_manifest(|m| m.stub.as_mut().unwrap().length = bad),
            &["stub.length"],
        );
    }
    let hash = b.manifest.stub.as_ref().unwrap().sha256.to_string();
    for bad in [
        hash.to_uppercase(),
        hash[..63].into(),
        format!("{hash}0"),
        format!("z{}", &hash[1..]),
    ] {
        assert_rejected(
            &b.with_member_text("sha256", &hash, &bad),
            &["stub.sha256", "64 lowercase hex"],
        );
    }
    assert_rejected(
        &b.with_manifest(|m| m.stub.as_mut().unwrap().sha256 = Sha256Digest::from_bytes([0; 32])),
        &["stub", "SHA-256"],
    );
    // A bare payload that claims a stub.
    let bare = signed_bare();
    assert_rejected(
        &bare.with_manifest(|m| {
            m.stub = Some(StubRecord {
                length: 4096,
                sha256: Sha256Digest::from_bytes([0; 32]),
            })
        }),
        &["stub.length"],
    );
}

fn section_mut(m: &mut smolvm_format::Manifest, kind: SectionKind) -> &mut SectionEntry {
    m.sections.iter_mut().find(|s| s.kind == kind).unwrap()
}

#[test]
fn test_manifest_section_table_shape() {
    let b = signed_bare();
    assert_rejected(&b.with_manifest(|m| m.sections.clear()), &["`sections`"]);
    assert_rejected(
        &b.with_manifest(|m| {
            let first = m.sections[0].clone();
            m.sections.resize(MAX_SECTIONS + 1, first);
        }),
        &["`sections`"],
    );
    assert_rejected(
        &b.with_manifest(|m| m.sections[2].kind = m.sections[1].kind),
        &["duplicate"],
    );
    for missing in [
        SectionKind::Kernel,
        SectionKind::Rootfs,
        SectionKind::Config,
    ] {
        let mut m = b.manifest.clone();
        let pos = m.sections.iter().position(|s| s.kind == missing).unwrap();
        m.sections.remove(pos);
        let mut stored = b.stored.clone();
        stored.remove(pos);
        let mut off = 0;
        for s in &mut m.sections {
            s.offset = off;
            off = smolvm_format::layout::align_up(off + s.stored_len).unwrap();
        }
        assert_rejected(
            &assemble(&[], &m.encode(), &stored, Some(&test_key())),
            &["required section", missing.name()],
        );
    }
}

#[test]
fn test_manifest_section_entry_fields() {
    let b = signed_bare();
    let k = SectionKind::Kernel;
    let i = b
        .manifest
        .sections
        .iter()
        .position(|s| s.kind == k)
        .unwrap();
    let hash = b.manifest.sections[i].sha256.to_string();
    let field = format!("sections[{i}].sha256");
    for bad in [
        hash.to_uppercase(),
        hash[..63].into(),
        format!("{hash}0"),
        format!("-{}", &hash[1..]),
    ] {
        assert_rejected(
            &b.with_member_text("sha256", &hash, &bad),
            &[&field, "64 lowercase hex"],
        );
    }
    assert_rejected(
        &b.with_manifest(|m| section_mut(m, k).sha256 = Sha256Digest::from_bytes([0xab; 32])),
        &["kernel", "SHA-256"],
    );
    assert_rejected(
        &b.with_manifest(|m| section_mut(m, k).size = MAX_KERNEL_SIZE + 1),
        &["size", "cap"],
    );
    assert_rejected(
        &b.with_manifest(|m| section_mut(m, SectionKind::Rootfs).size = (64 << 30) + 1),
        &["size", "cap"],
    );
    assert_rejected(
        &b.with_manifest(|m| section_mut(m, SectionKind::Config).size += 1),
        &["size", "stored_len"],
    );
    // Declared sizes that disagree with what the frame holds.
    for delta in [-1i64, 1] {
        assert_rejected(
            &b.with_manifest(|m| {
                let s = section_mut(m, k);
                s.size = s.size.checked_add_signed(delta).unwrap();
            }),
            &["kernel"],
        );
    }
    // Compression changed from zstd to none (size fixed up to match) is a
    // different, consistent artifact at the format layer: the kernel consumer
    // then sees a zstd frame where an ELF belongs and refuses it (4.3).
    let relabelled = b.with_manifest(|m| {
        let s = section_mut(m, k);
        s.compression = Compression::None;
        s.size = s.stored_len;
    });
    full_check(&relabelled, &trusted()).unwrap();
    // Offsets and stored lengths that leave the fixed layout.
    assert_rejected(
        &b.with_manifest(|m| m.sections[1].offset += 4096),
        &["offset", "overlap or gap"],
    );
    assert_rejected(
        &b.with_manifest(|m| m.sections[0].offset = 4096),
        &["offset"],
    );
    assert_rejected(&b.with_manifest(|m| m.sections[2].stored_len += 1), &[]);
    assert_rejected(&b.with_manifest(|m| m.sections[2].stored_len -= 1), &[]);
}

#[test]
fn test_manifest_stored_len_zero() {
    let b = signed_bare();
    let mut m = b.manifest.clone();
    let mut stored = b.stored.clone();
    // An empty config section, entry and bytes consistent.
    stored[0].clear();
    m.sections[0].stored_len = 0;
    m.sections[0].size = 0;
    assert_rejected(
        &assemble(&[], &m.encode(), &stored, Some(&test_key())),
        &["stored_len is 0"],
    );
}

#[test]
fn test_manifest_config_checks() {
    let b = signed_bare();
    assert_rejected(&b.with_manifest(|m| m.config.cpus = 0), &["config.cpus"]);
    assert_rejected(
        &b.with_manifest(|m| m.config.memory_mib = 63),
        &["config.memory_mib"],
    );
    // The manifest's config differs from the config section (both hashes
    // and sizes stay right: the section is untouched).
    assert_rejected(
        &b.with_manifest(|m| m.config.cmd = vec!["/bin/evil".into()]),
        &["config", "differs"],
    );
}

#[test]
fn test_manifest_must_be_canonical_json() {
    let b = signed_bare();
    let canon = b.manifest.encode();
    let text = String::from_utf8(canon.clone()).unwrap();
    let edits: Vec<(&str, Vec<u8>)> = vec![
        ("trailing newline", [&canon[..], b"\n"].concat()),
        ("leading space", [b" ", &canon[..]].concat()),
        ("BOM", [&b"\xef\xbb\xbf"[..], &canon[..]].concat()),
        (
            "space after colon",
            text.replacen("\"name\":", "\"name\": ", 1).into_bytes(),
        ),
        (
            "escaped solidus",
            text.replacen("\"1.0.0\"", "\"1.0\\/0\"", 1).into_bytes(),
        ),
        (
            "unicode escape",
            text.replacen("\"demo\"", "\"d\\u0065mo\"", 1).into_bytes(),
        ),
        (
            "members reordered",
            text.replacen(
                "\"name\":\"demo\",\"version\":\"1.0.0\"",
                "\"version\":\"1.0.0\",\"name\":\"demo\"",
                1,
            )
            .into_bytes(),
        ),
        (
            "number with exponent",
            text.replacen("\"created\":0", "\"created\":0e0", 1)
                .into_bytes(),
        ),
        (
            "leading zero",
            text.replacen("\"cpus\":1", "\"cpus\":01", 1).into_bytes(),
        ),
        (
            "provenance keys out of order",
            text.replacen(
                "\"provenance\":{}",
                "\"provenance\":{\"b\":\"x\",\"a\":\"y\"}",
                1,
            )
            .into_bytes(),
        ),
        (
            "duplicate provenance key",
            text.replacen(
                "\"provenance\":{}",
                "\"provenance\":{\"a\":\"x\",\"a\":\"y\"}",
                1,
            )
            .into_bytes(),
        ),
    ];
    for (what, bytes) in edits {
        assert_ne!(bytes, canon, "{what}: edit did not apply");
        let msg = full_check(&b.with_manifest_bytes(&bytes), &trusted()).unwrap_err();
        assert!(
            msg.contains("canonical") || msg.contains("JSON"),
            "{what}: {msg}"
        );
    }
}

#[test]
fn test_manifest_unknown_duplicate_and_mistyped_members() {
    let b = signed_bare();
    let text = String::from_utf8(b.manifest.encode()).unwrap();
    let cases = [
        (
            "unknown top-level member",
            text.replacen(
                "{\"format_version\":5,",
                "{\"format_version\":5,\"extra\":1,",
                1,
            ),
        ),
        (
            "unknown section member",
            text.replacen("\"kind\":\"kernel\",", "\"kind\":\"kernel\",\"x\":0,", 1),
        ),
        (
            "duplicate member",
            text.replacen(
                "\"name\":\"demo\",",
                "\"name\":\"demo\",\"name\":\"demo\",",
                1,
            ),
        ),
        ("missing member", text.replacen("\"created\":0,", "", 1)),
        (
            "unknown section kind",
            text.replacen("\"kind\":\"kernel\"", "\"kind\":\"initrd\"", 1),
        ),
        (
            "unknown compression",
            text.replacen("\"compression\":\"zstd\"", "\"compression\":\"lz4\"", 1),
        ),
        (
            "upper-case enumeration",
            text.replacen("\"kind\":\"kernel\"", "\"kind\":\"Kernel\"", 1),
        ),
        (
            "string for a number",
            text.replacen("\"created\":0", "\"created\":\"0\"", 1),
        ),
        (
            "negative",
            text.replacen("\"created\":0", "\"created\":-1", 1),
        ),
        (
            "u64 overflow",
            text.replacen("\"created\":0", "\"created\":18446744073709551616", 1),
        ),
        (
            "cpus over u8",
            text.replacen("\"cpus\":1", "\"cpus\":256", 1),
        ),
        ("not an object", "[]".to_string()),
        ("truncated JSON", text[..text.len() - 1].to_string()),
    ];
    for (what, edited) in cases {
        assert_ne!(edited, text, "{what}: edit did not apply");
        let msg = full_check(&b.with_manifest_bytes(edited.as_bytes()), &trusted()).unwrap_err();
        assert!(msg.contains("manifest"), "{what}: {msg}");
    }
    // Invalid UTF-8 inside a string.
    let mut bytes = text.into_bytes();
    let at = bytes.windows(4).position(|w| w == b"demo").unwrap();
    bytes[at] = 0xff;
    let msg = full_check(&b.with_manifest_bytes(&bytes), &trusted()).unwrap_err();
    assert!(msg.contains("manifest"), "{msg}");
}

// ---------------------------------------------------------------- padding and content

#[test]
fn test_nonzero_padding_is_rejected() {
    let b = signed_packed();
    let mut spots = vec![
        b.layout.header_padding.start,
        b.layout.header_padding.end - 1,
    ];
    for w in b.layout.sections.windows(2) {
        if w[0].1.end < w[1].1.start {
            spots.push(w[0].1.end);
            spots.push(w[1].1.start - 1);
        }
    }
    for at in spots {
        let mut bytes = b.bytes.clone();
        bytes[idx(at)] = 1;
        assert_rejected(&bytes, &["padding", "not zero"]);
    }
}

#[test]
fn test_zstd_content_rules() {
    let b = signed_bare();
    let k = b
        .manifest
        .sections
        .iter()
        .position(|s| s.kind == SectionKind::Kernel)
        .unwrap();
    let with_kernel_stored = |stored: Vec<u8>, size: u64| {
        let mut all = b.stored.clone();
        all[k] = stored;
        let mut m = b.manifest.clone();
        let entries = smolvm_format::plan_sections(
            &m.sections
                .iter()
                .zip(&all)
                .map(|(e, s)| smolvm_format::SectionData {
                    kind: e.kind,
                    compression: e.compression,
                    stored: s.clone(),
                    size: if e.kind == SectionKind::Kernel {
                        size
                    } else {
                        e.size
                    },
                })
                .collect::<Vec<_>>(),
        )
        .unwrap();
        m.sections = entries;
        assemble(&[], &m.encode(), &all, Some(&test_key()))
    };
    let kernel = smolvm_tests::fake_kernel();
    let frame = zstd::bulk::compress(&kernel, 3).unwrap();
    let size = kernel.len() as u64;
    // Sanity: the helper reproduces a good artifact.
    full_check(&with_kernel_stored(frame.clone(), size), &trusted()).unwrap();
    // Trailing bytes after the frame, a second frame, a skippable frame.
    let skippable = [0x50, 0x2a, 0x4d, 0x18, 0, 0, 0, 0];
    for (what, stored) in [
        ("trailing byte", [&frame[..], &[0]].concat()),
        ("second frame", [&frame[..], &frame[..]].concat()),
        ("skippable frame", [&frame[..], &skippable[..]].concat()),
        ("cut frame", frame[..frame.len() - 1].to_vec()),
        ("not zstd", kernel.clone()),
    ] {
        match full_check(&with_kernel_stored(stored, size), &trusted()) {
            Ok(_) => panic!("{what}: accepted"),
            Err(msg) => assert!(msg.contains("kernel"), "{what}: {msg}"),
        }
    }
    // A frame that asks for a 2^28 window (over MAX_ZSTD_WINDOW_LOG).
    let mut enc = zstd::stream::write::Encoder::new(Vec::new(), 3).unwrap();
    enc.set_parameter(zstd::zstd_safe::CParameter::WindowLog(28))
        .unwrap();
    enc.set_parameter(zstd::zstd_safe::CParameter::ContentSizeFlag(false))
        .unwrap();
    std::io::Write::write_all(&mut enc, &kernel).unwrap();
    let big_window = enc.finish().unwrap();
    let msg = full_check(&with_kernel_stored(big_window, size), &trusted()).unwrap_err();
    assert!(msg.contains("kernel"), "{msg}");
}

#[test]
fn test_manifest_user_ids_go_with_the_user() {
    // The guest switches to `uid`/`gid` (resolved at pack time); they must
    // be there exactly when `user` is, so no start guesses.
    let b = signed_bare();
    assert_rejected(
        &b.with_manifest(|m| m.config.uid = Some(1)),
        &["manifest", "config.uid"],
    );
    assert_rejected(
        &b.with_manifest(|m| {
            m.config.user = Some("app".into());
            m.config.uid = Some(1000);
        }),
        &["manifest", "config.gid"],
    );
}

/// Groups and home travel with the user, and no id is `(uid_t)-1`, which
/// `setuid` reads as "no change" (the workload would stay root).
#[test]
fn test_manifest_account_fields_are_consistent_and_in_range() {
    let b = signed_bare();
    let app = |m: &mut smolvm_format::Manifest| {
        m.config.user = Some("app".into());
        m.config.uid = Some(1000);
        m.config.gid = Some(1000);
        m.config.groups = vec![1000, 27];
        m.config.home = Some("/home/app".into());
    };
    // The consistent form verifies (config section and manifest agree).
    let mut good = smolvm_tests::signed_bare().manifest;
    app(&mut good);
    let ok = smolvm_tests::build(&smolvm_tests::ArtifactSpec {
        config: good.config,
        ..Default::default()
    });
    full_check(&ok.bytes, &trusted()).unwrap_or_else(|e| panic!("{e}"));
    type Change<'a> = &'a dyn Fn(&mut smolvm_format::Manifest);
    let cases: [(Change, &str); 7] = [
        (&|m| m.config.uid = Some(u32::MAX), "config.uid"),
        (&|m| m.config.gid = Some(u32::MAX), "config.gid"),
        (&|m| m.config.groups = vec![1000, u32::MAX], "config.groups"),
        (&|m| m.config.groups = vec![27, 1000], "config.groups"),
        (&|m| m.config.groups = vec![1000; 257], "config.groups"),
        (&|m| m.config.home = None, "config.home"),
        (&|m| m.config.home = Some("home/app".into()), "config.home"),
    ];
    for (change, field) in cases {
        let bytes = b.with_manifest(|m| {
            app(m);
            change(m);
        });
        assert_rejected(&bytes, &["manifest", field]);
    }
    // Without a user neither may appear.
    assert_rejected(
        &b.with_manifest(|m| m.config.groups = vec![0]),
        &["manifest", "config.groups"],
    );
    assert_rejected(
        &b.with_manifest(|m| m.config.home = Some("/".into())),
        &["manifest", "config.home"],
    );
}

/// Issue 10: the config's image digest is `sha256:` and 64 lowercase hex
/// characters, or null. It is decoded once when the manifest is parsed, so
/// nothing else (an escape sequence for a terminal included) can reach
/// `pack inspect` or `--smolvm-info` through it.
#[test]
fn test_manifest_config_image_digest() {
    let hex = "ab".repeat(32);
    let good = format!("sha256:{hex}");
    let b = smolvm_tests::build(&smolvm_tests::ArtifactSpec {
        config: smolvm_format::MachineConfig {
            image: Some("registry.example/app:1".into()),
            image_digest: Some(good.parse().unwrap()),
            ..smolvm_format::MachineConfig::default()
        },
        ..Default::default()
    });
    assert!(full_check(&b.bytes, &trusted()).is_ok());
    for bad in [
        hex.clone(),
        format!("sha512:{hex}"),
        format!("SHA256:{hex}"),
        format!("sha256:{}", hex.to_uppercase()),
        format!("sha256:{}", &hex[1..]),
        format!("sha256:{hex}0"),
        format!("sha256:{hex}\\u001b[2K"),
    ] {
        assert_rejected(
            &b.with_member_text("image_digest", &good, &bad),
            &["config.image_digest", "sha256:"],
        );
    }
}

//! Write → parse → verify round trips at the format level (no signing).

use smolvm_format::*;

fn sample(stub: &[u8]) -> Vec<u8> {
    let kernel = vec![0x7fu8; 10_000];
    let rootfs = b"pretend tar".repeat(1000);
    let config = MachineConfig::default().to_canonical_json();
    let sections = vec![
        SectionData {
            kind: SectionKind::Kernel,
            compression: Compression::Zstd,
            stored: zstd::encode_all(&kernel[..], 3).unwrap(),
            size: kernel.len() as u64,
        },
        SectionData {
            kind: SectionKind::Rootfs,
            compression: Compression::None,
            size: rootfs.len() as u64,
            stored: rootfs,
        },
        SectionData {
            kind: SectionKind::Config,
            compression: Compression::None,
            size: config.len() as u64,
            stored: config,
        },
    ];
    let stub = pad_stub(stub.to_vec());
    let manifest = Manifest {
        format_version: FORMAT_VERSION,
        name: "demo".into(),
        version: "1.0.0".into(),
        created: 0,
        target: Target {
            os: "linux".into(),
            arch: "x86_64".into(),
        },
        signer: None,
        stub: stub_record(&stub),
        sections: plan_sections(&sections).unwrap(),
        config: MachineConfig::default(),
    };
    let writer = PayloadWriter::new(&manifest).unwrap();
    let mut out = Vec::new();
    writer.write(&mut out, &stub, &sections, None).unwrap();
    out
}

#[test]
fn bare_payload_round_trips() {
    let bytes = sample(b"");
    let art = Artifact::parse(&bytes[..]).unwrap();
    assert_eq!(art.trailer.payload_offset, 0);
    art.verify_integrity().unwrap();
    let kernel = art.read_section(SectionKind::Kernel).unwrap();
    assert_eq!(kernel, vec![0x7fu8; 10_000]);
}

#[test]
fn stubbed_payload_round_trips_and_pins_the_stub() {
    let mut bytes = sample(b"\x7fELF pretend stub");
    let art = Artifact::parse(&bytes[..]).unwrap();
    assert_eq!(art.trailer.payload_offset, 4096);
    art.verify_integrity().unwrap();
    bytes[5] ^= 1;
    let art = Artifact::parse(&bytes[..]).unwrap();
    assert!(matches!(
        art.verify_integrity(),
        Err(FormatError::StubHashMismatch { .. })
    ));
}

#[test]
fn file_source_reads_like_a_slice() {
    let bytes = sample(b"stub");
    let mut f = tempfile_in_target();
    std::io::Write::write_all(&mut f.0, &bytes).unwrap();
    let src = FileSource::new(std::fs::File::open(&f.1).unwrap()).unwrap();
    let art = Artifact::parse(&src).unwrap();
    art.verify_integrity().unwrap();
    assert_eq!(
        art.read_section(SectionKind::Rootfs).unwrap(),
        b"pretend tar".repeat(1000)
    );
    std::fs::remove_file(&f.1).unwrap();
}

fn tempfile_in_target() -> (std::fs::File, std::path::PathBuf) {
    let p = std::env::temp_dir().join(format!("smolvm-format-test-{}", std::process::id()));
    (std::fs::File::create(&p).unwrap(), p)
}

#[test]
fn decompression_bomb_is_stopped_at_the_declared_size() {
    let bytes = sample(b"");
    let art = Artifact::parse(&bytes[..]).unwrap();
    let mut entry = art.manifest.section(SectionKind::Kernel).unwrap().clone();
    entry.size = 100; // declared much smaller than the real 10_000
    let mut s = art.open_section(&entry).unwrap();
    let mut out = Vec::new();
    let err = std::io::Read::read_to_end(&mut s, &mut out).unwrap_err();
    assert!(
        err.to_string().contains("exceeds the declared size"),
        "{err}"
    );
    assert!(out.len() <= 100);
}

//! Shared helpers for the cross-crate tests: fixed test keys, a tiny fake
//! kernel, stub and root, the `smolvm` binary, and artifacts built in memory
//! with the format crate's writer (or assembled raw, so a test can sign a
//! manifest the writer would refuse and see that the reader refuses it too);
//! for the real-boot tests, the results of an L1 run and the two users
//! (root and not) every scenario runs as.
//!
//! Fixture provenance: every input here is generated from constants in this
//! file, so nothing binary is committed except the golden text files and the
//! fuzz regression inputs (see `fuzz/README.md`).

pub mod fixture;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use smolvm_format::layout::{align_up, HEADER_LEN, SIGNATURE_BLOCK_LEN, TRAILER_LEN};
use smolvm_format::{
    pad_stub, plan_sections, stub_record, Artifact, Compression, FormatError, Header,
    MachineConfig, Manifest, PayloadWriter, SectionData, SectionKind, Signer, Target, Trailer,
    FORMAT_VERSION,
};
use smolvm_runtime::{verify_artifact, SignatureState, VerifyOptions};
use smolvm_signing::{PublicKey, SecretKey};

/// RFC 8032 test 1 seed: the key of SPEC.md section 9 and 13, so golden output
/// carries a key id a reader can check by hand (3c09b807520d5931).
pub const TEST_SEED: [u8; 32] =
    hex_32("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60");
/// RFC 8032 test 2 seed: a second, unrelated key for "wrong key" tests.
pub const OTHER_SEED: [u8; 32] =
    hex_32("4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb");

const fn hex_32(s: &str) -> [u8; 32] {
    const fn nibble(c: u8) -> u8 {
        match c {
            b'0'..=b'9' => c - b'0',
            b'a'..=b'f' => c - b'a' + 10,
            _ => panic!("not lowercase hex"),
        }
    }
    let b = s.as_bytes();
    assert!(b.len() == 64, "32 bytes of hex");
    let mut out = [0u8; 32];
    let mut i = 0;
    while i < 32 {
        out[i] = (nibble(b[2 * i]) << 4) | nibble(b[2 * i + 1]);
        i += 1;
    }
    out
}

/// `cmd.output()`, tried again while the program is busy (ETXTBSY): another
/// test thread may fork while a file we exec is still open for writing in
/// this process; that passes.
pub fn output_when_not_busy(cmd: &mut Command, what: &Path) -> std::process::Output {
    for _ in 0..50 {
        match cmd.output() {
            Err(e) if e.kind() == std::io::ErrorKind::ExecutableFileBusy => {
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            r => return r.unwrap(),
        }
    }
    panic!("{}: text file busy", what.display())
}

/// The repository root (the parent of this crate).
pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

/// The path in `$ENV` if it is set, else `default` under the repository root.
pub fn bin(env: &str, default: &str) -> PathBuf {
    std::env::var_os(env)
        .map(PathBuf::from)
        .unwrap_or_else(|| repo().join(default))
}

/// The stub a release build makes (`cargo build --release -p smolvm-stub`;
/// release is size-tuned): `SMOLVM_STUB`, else target/release/smolvm-stub.
pub fn stub_bin() -> PathBuf {
    bin("SMOLVM_STUB", "target/release/smolvm-stub")
}

pub fn test_key() -> SecretKey {
    SecretKey::from_seed(&TEST_SEED)
}

pub fn other_key() -> SecretKey {
    SecretKey::from_seed(&OTHER_SEED)
}

/// A grey `width`x`height` PNG (8-bit greyscale, not interlaced): an icon
/// for the Smolfile's `[artifact] icon`.
pub fn grey_png(width: u32, height: u32) -> Vec<u8> {
    use std::io::Write;
    let row = usize::try_from(width).expect("small") + 1;
    let mut raw = Vec::with_capacity(row * usize::try_from(height).expect("small"));
    for _ in 0..height {
        raw.push(0);
        raw.resize(raw.len() + row - 1, 0x80);
    }
    let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
    z.write_all(&raw).expect("in memory");
    let idat = z.finish().expect("in memory");
    let mut ihdr = Vec::new();
    ihdr.extend_from_slice(&width.to_be_bytes());
    ihdr.extend_from_slice(&height.to_be_bytes());
    ihdr.extend_from_slice(&[8, 0, 0, 0, 0]);
    let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
    for (kind, data) in [
        (b"IHDR", &ihdr[..]),
        (b"IDAT", &idat[..]),
        (b"IEND", &[][..]),
    ] {
        out.extend_from_slice(&u32::try_from(data.len()).expect("small").to_be_bytes());
        out.extend_from_slice(kind);
        out.extend_from_slice(data);
        let mut crc = flate2::Crc::new();
        crc.update(kind);
        crc.update(data);
        out.extend_from_slice(&crc.sum().to_be_bytes());
    }
    out
}

/// Writes `DIR/NAME.key` and `DIR/NAME.pub` for `key`; returns both paths.
pub fn write_key_files(dir: &Path, name: &str, key: &SecretKey) -> (PathBuf, PathBuf) {
    std::fs::create_dir_all(dir).expect("key dir");
    let secret = dir.join(format!("{name}.key"));
    let public = dir.join(format!("{name}.pub"));
    std::fs::write(&secret, key.to_file_string()).expect("write secret key");
    std::fs::write(&public, key.public_key().to_file_string()).expect("write public key");
    (secret, public)
}

/// A deterministic byte pattern (xorshift), so fixtures are not all zeros
/// and compress like data, not like nothing.
pub fn pattern(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x.to_le_bytes()[0]
        })
        .collect()
}

/// An x86_64 ELF executable with one PT_LOAD: all the packer checks of a
/// kernel. It does not boot; these tests never boot.
pub fn fake_kernel() -> Vec<u8> {
    let mut image = pattern(12 * 1024, 7);
    // Half of it compressible, like a real kernel.
    image[..6 * 1024].fill(0x90);
    smolvm_packer::kernel::wrap_flat_kernel(&image, 0x100_0000, 0x100_0123)
}

/// A stub: the packer only checks the ELF magic, and a fixed stub keeps the
/// stub hash in golden output the same on every machine.
pub fn fake_stub() -> Vec<u8> {
    let mut stub = b"\x7fELF\x02\x01\x01".to_vec();
    stub.extend(pattern(5000, 11));
    stub
}

/// A small root filesystem as a tar stream with fixed owners, modes and
/// mtimes, so packing it gives the same bytes for every user on every machine.
pub fn tiny_rootfs_tar() -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    let mut add = |path: &str, kind: tar::EntryType, mode: u32, data: &[u8], link: Option<&str>| {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(kind);
        h.set_mode(mode);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(1_600_000_000);
        h.set_size(u64::try_from(data.len()).expect("small"));
        if let Some(l) = link {
            h.set_link_name(l).expect("link name");
        }
        b.append_data(&mut h, path, data).expect("append tar entry");
    };
    add("bin", tar::EntryType::Directory, 0o755, b"", None);
    add("etc", tar::EntryType::Directory, 0o755, b"", None);
    add(
        "bin/hello",
        tar::EntryType::Regular,
        0o755,
        b"#!/bin/sh\necho hello from a smolmachine\n",
        None,
    );
    add(
        "etc/hostname",
        tar::EntryType::Regular,
        0o644,
        b"smol\n",
        None,
    );
    add(
        "etc/data.bin",
        tar::EntryType::Regular,
        0o644,
        &pattern(20_000, 3),
        None,
    );
    add("bin/sh", tar::EntryType::Symlink, 0o777, b"", Some("hello"));
    b.into_inner().expect("finish tar")
}

/// The `smolvm` binary: `SMOLVM_BIN` if set, else built once with cargo into
/// the target directory this test binary lives in (`<target>/<profile>/deps`).
/// Cargo only provides `CARGO_BIN_EXE_*` for a package's own binaries.
pub fn smolvm_bin() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        if let Some(p) = std::env::var_os("SMOLVM_BIN") {
            return PathBuf::from(p);
        }
        let exe = std::env::current_exe().expect("test executable path");
        let profile_dir = exe
            .parent()
            .and_then(Path::parent)
            .expect("test binary under <target>/<profile>/deps")
            .to_path_buf();
        let profile = profile_dir
            .file_name()
            .and_then(|p| p.to_str())
            .expect("profile directory name")
            .to_string();
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let mut cmd = Command::new(cargo);
        cmd.current_dir(repo()).args([
            "build",
            "--quiet",
            "-p",
            "smolvm-packer",
            "--bin",
            "smolvm",
        ]);
        match profile.as_str() {
            "debug" => {}
            "release" => {
                cmd.arg("--release");
            }
            other => {
                cmd.args(["--profile", other]);
            }
        }
        let status = cmd.status().expect("run cargo build");
        assert!(status.success(), "cargo build -p smolvm-packer failed");
        let bin = profile_dir.join("smolvm");
        assert!(bin.is_file(), "{} was not built", bin.display());
        bin
    })
}

/// A `smolvm` command with a clean, deterministic environment.
pub fn smolvm() -> assert_cmd::Command {
    let mut c = assert_cmd::Command::new(smolvm_bin());
    c.env_remove("SMOLVM_STUB")
        .env_remove("SMOLVM_KERNEL")
        .env_remove("SOURCE_DATE_EPOCH");
    // The provenance reads the CI from the environment: none, unless a
    // test fakes one.
    for ci in ["GITHUB_ACTIONS", "GITLAB_CI", "SMOLVM_SOURCE_REPO"] {
        c.env_remove(ci);
    }
    c
}

/// What to put in an in-memory artifact.
pub struct ArtifactSpec {
    /// Unpadded stub bytes; `None` for a bare payload.
    pub stub: Option<Vec<u8>>,
    /// Seed of the signing key; `None` for an unsigned artifact.
    pub signer: Option<[u8; 32]>,
    /// Compress kernel and rootfs with zstd (the config is always stored).
    pub compress: bool,
    pub kernel: Vec<u8>,
    pub rootfs: Vec<u8>,
    pub config: MachineConfig,
}

impl Default for ArtifactSpec {
    fn default() -> Self {
        ArtifactSpec {
            stub: None,
            signer: Some(TEST_SEED),
            compress: true,
            kernel: fake_kernel(),
            rootfs: tiny_rootfs_tar(),
            config: MachineConfig::default(),
        }
    }
}

impl ArtifactSpec {
    pub fn packed() -> Self {
        ArtifactSpec {
            stub: Some(fake_stub()),
            ..Default::default()
        }
    }
}

/// File ranges of an artifact's structures, for tests that aim at one of them.
#[derive(Clone, Debug)]
pub struct Layout {
    pub file_len: u64,
    pub payload_offset: u64,
    pub header: std::ops::Range<u64>,
    pub manifest: std::ops::Range<u64>,
    pub signature: Option<std::ops::Range<u64>>,
    /// From the end of the signature block (or manifest) to the data area.
    pub header_padding: std::ops::Range<u64>,
    pub data_start: u64,
    /// In table order.
    pub sections: Vec<(SectionKind, std::ops::Range<u64>)>,
    pub trailer: std::ops::Range<u64>,
}

/// An artifact and what it was made of, so it can be re-assembled with a
/// changed manifest.
pub struct Built {
    pub bytes: Vec<u8>,
    pub manifest: Manifest,
    pub padded_stub: Vec<u8>,
    /// Stored bytes of each section, in table order.
    pub stored: Vec<Vec<u8>>,
    pub signer: Option<[u8; 32]>,
    pub layout: Layout,
}

fn zstd_compress(data: &[u8]) -> Vec<u8> {
    zstd::bulk::compress(data, 3).expect("zstd compress")
}

/// Builds an artifact with the format crate's writer, in memory.
pub fn build(spec: &ArtifactSpec) -> Built {
    let padded_stub = spec.stub.clone().map(pad_stub).unwrap_or_default();
    let config_json = spec.config.to_canonical_json();
    let section = |kind, data: &[u8]| SectionData {
        kind,
        compression: if spec.compress {
            Compression::Zstd
        } else {
            Compression::None
        },
        stored: if spec.compress {
            zstd_compress(data)
        } else {
            data.to_vec()
        },
        size: data.len() as u64,
    };
    let sections = vec![
        SectionData {
            kind: SectionKind::Config,
            compression: Compression::None,
            size: config_json.len() as u64,
            stored: config_json,
        },
        section(SectionKind::Kernel, &spec.kernel),
        section(SectionKind::Rootfs, &spec.rootfs),
    ];
    let key = spec.signer.map(|s| SecretKey::from_seed(&s));
    let manifest = Manifest {
        format_version: FORMAT_VERSION,
        name: "demo".into(),
        version: "1.0.0".into(),
        created: 0,
        target: Target {
            os: "linux".into(),
            arch: "x86_64".into(),
        },
        signer: key.as_ref().map(|k| signer_record(&k.public_key())),
        stub: stub_record(&padded_stub),
        sections: plan_sections(&sections).expect("plan sections"),
        config: spec.config.clone(),
    };
    let writer = PayloadWriter::new(&manifest).expect("valid manifest");
    let signature = key.as_ref().map(|k| smolvm_runtime::seal::seal(&writer, k));
    let mut bytes = Vec::new();
    writer
        .write(&mut bytes, &padded_stub, &sections, signature.as_ref())
        .expect("write to memory");
    let layout = layout_of(&bytes).expect("the writer's output parses");
    Built {
        bytes,
        manifest,
        padded_stub,
        stored: sections.into_iter().map(|s| s.stored).collect(),
        signer: spec.signer,
        layout,
    }
}

/// The manifest's record of `key`, as the packer writes it.
pub fn signer_record(key: &PublicKey) -> Signer {
    smolvm_runtime::seal::signer_record(key)
}

/// Structure ranges of a parseable artifact.
pub fn layout_of(bytes: &[u8]) -> Result<Layout, FormatError> {
    let art = Artifact::parse(bytes)?;
    let p = art.trailer.payload_offset;
    let manifest_start = p + HEADER_LEN;
    let manifest_end = manifest_start + u64::from(art.header.manifest_len);
    let sig_end = manifest_end + u64::from(art.header.signature_len);
    let data_start = p + art.header.data_offset();
    let file_len = bytes.len() as u64;
    Ok(Layout {
        file_len,
        payload_offset: p,
        header: p..manifest_start,
        manifest: manifest_start..manifest_end,
        signature: (art.header.signature_len != 0).then_some(manifest_end..sig_end),
        header_padding: sig_end..data_start,
        data_start,
        sections: art
            .manifest
            .sections
            .iter()
            .map(|s| {
                let start = art.section_file_offset(s);
                (s.kind, start..start + s.stored_len)
            })
            .collect(),
        trailer: file_len - TRAILER_LEN..file_len,
    })
}

impl Built {
    /// Re-assembles with a changed manifest (encoded as is, not validated) and
    /// signs it again with the same key: the result has a sound signature, so
    /// only the reader's field checks can reject it.
    pub fn with_manifest(&self, change: impl FnOnce(&mut Manifest)) -> Vec<u8> {
        let mut m = self.manifest.clone();
        change(&mut m);
        self.with_manifest_bytes(&m.encode())
    }

    /// Re-assembles with the manifest member `"field":"old"` written as
    /// `"field":"new"` in the JSON text, signed again: how a test makes a
    /// hash or key spelling that the typed manifest cannot hold.
    ///
    /// # Panics
    /// Unless the member occurs exactly once.
    pub fn with_member_text(&self, field: &str, old: &str, new: &str) -> Vec<u8> {
        let text = String::from_utf8(self.manifest.encode()).expect("manifest is UTF-8");
        let (from, to) = (
            format!("\"{field}\":\"{old}\""),
            format!("\"{field}\":\"{new}\""),
        );
        assert_eq!(text.matches(&from).count(), 1, "{from} in {text}");
        self.with_manifest_bytes(text.replace(&from, &to).as_bytes())
    }

    /// Re-assembles around raw manifest bytes, signed with the same key.
    pub fn with_manifest_bytes(&self, manifest: &[u8]) -> Vec<u8> {
        let key = self.signer.map(|s| SecretKey::from_seed(&s));
        assemble(&self.padded_stub, manifest, &self.stored, key.as_ref())
    }
}

/// Lays out `stub || header || manifest || signature || sections || trailer`
/// by the rule of SPEC.md section 5, without validating anything, so tests
/// can produce well-signed artifacts with bad manifests. For a valid manifest
/// it produces exactly what [`PayloadWriter`] does (checked by a test).
pub fn assemble(
    padded_stub: &[u8],
    manifest: &[u8],
    stored: &[Vec<u8>],
    key: Option<&SecretKey>,
) -> Vec<u8> {
    // The version the manifest says (so an older artifact's parts agree),
    // else the current one.
    let version = manifest
        .strip_prefix(b"{\"format_version\":")
        .map(|rest| {
            rest.iter()
                .take_while(|b| b.is_ascii_digit())
                .fold(0u32, |v, &d| {
                    v.saturating_mul(10).saturating_add(u32::from(d - b'0'))
                })
        })
        .unwrap_or(FORMAT_VERSION);
    let header = Header {
        version,
        manifest_len: u32::try_from(manifest.len()).expect("manifest under 4 GiB"),
        signature_len: if key.is_some() {
            u32::try_from(SIGNATURE_BLOCK_LEN).expect("96")
        } else {
            0
        },
    };
    let header_bytes = header.encode();
    let mut out = padded_stub.to_vec();
    out.extend_from_slice(&header_bytes);
    out.extend_from_slice(manifest);
    if let Some(k) = key {
        let block = smolvm_runtime::seal::sign_input(
            &smolvm_format::layout::signing_input(&header_bytes, manifest),
            k,
        );
        out.extend_from_slice(&block.encode());
    }
    let pad_to_page = |out: &mut Vec<u8>| {
        let len = align_up(out.len() as u64).expect("small");
        out.resize(usize::try_from(len).expect("small"), 0);
    };
    pad_to_page(&mut out);
    for (i, s) in stored.iter().enumerate() {
        if i > 0 {
            pad_to_page(&mut out);
        }
        out.extend_from_slice(s);
    }
    let payload_offset = padded_stub.len() as u64;
    let trailer = Trailer {
        version,
        payload_offset,
        payload_len: out.len() as u64 + TRAILER_LEN - payload_offset,
    };
    out.extend_from_slice(&trailer.encode());
    out
}

/// Everything a consumer checks before using an artifact: the structure,
/// the signature (required; against `trusted` if any are given), every hash
/// and the padding (the runtime's `verify_artifact`), then the content of
/// every section (decompression within the declared size, one zstd frame,
/// config equal to the manifest's). Any rejection is an `Err` with the
/// reader's message.
pub fn full_check(bytes: &[u8], trusted: &[PublicKey]) -> Result<SignatureState, String> {
    let (art, state) = verify_artifact(
        bytes,
        &VerifyOptions {
            trusted,
            require_signature: true,
            integrity: true,
        },
    )
    .map_err(|e| e.to_string())?;
    for kind in [
        SectionKind::Config,
        SectionKind::Kernel,
        SectionKind::Rootfs,
    ] {
        art.read_section(kind).map_err(|e| e.to_string())?;
    }
    Ok(state)
}

/// How much of each section [`exercise_reader`] decompresses.
pub const EXERCISE_READ_CAP: u64 = 16 << 20;

/// Every reader entry point a hostile file can reach, for the property
/// tests and the fuzz target: parse, signature check, integrity, and the
/// content of every section. Never panics (that is what is being tested);
/// the result is ignored.
pub fn exercise_reader(bytes: &[u8]) {
    let Ok(art) = Artifact::parse(bytes) else {
        return;
    };
    let _ = smolvm_runtime::check_signature(&art, &[]);
    let _ = art.verify_integrity();
    for s in &art.manifest.sections {
        if let Ok(mut stream) = art.open_section(s) {
            // A hostile manifest may declare a 64 GiB rootfs whose frame
            // really expands that far; reading a bounded prefix still covers
            // the decoder, the size cap and `finish` on short output.
            let mut bounded = std::io::Read::take(&mut stream, EXERCISE_READ_CAP);
            if std::io::copy(&mut bounded, &mut std::io::sink()).is_ok() {
                let _ = stream.finish();
            }
        }
    }
}

// ---------------------------------------------------------------- assertions

/// The key the fixtures are signed with, as the one trusted key.
pub fn trusted() -> Vec<PublicKey> {
    vec![test_key().public_key()]
}

/// A signed bare payload with the default fixtures.
pub fn signed_bare() -> Built {
    build(&ArtifactSpec::default())
}

/// A signed packed executable with the default fixtures.
pub fn signed_packed() -> Built {
    build(&ArtifactSpec::packed())
}

/// Asserts that [`full_check`] under the test key rejects `bytes`, with a
/// message containing each of `needles` (so the message names the field).
#[track_caller]
pub fn assert_rejected(bytes: &[u8], needles: &[&str]) {
    match full_check(bytes, &trusted()) {
        Ok(state) => panic!("accepted ({state:?}); expected a rejection naming {needles:?}"),
        Err(msg) => {
            for n in needles {
                assert!(msg.contains(n), "message {msg:?} does not name {n:?}");
            }
        }
    }
}

/// Like [`assert_rejected`] for sweeps: names the mutation (built lazily)
/// if it was accepted or if the reader panicked.
pub fn must_reject(bytes: &[u8], what: &dyn Fn() -> String) {
    match std::panic::catch_unwind(|| full_check(bytes, &trusted())) {
        Err(_) => panic!("reader panicked on {}", what()),
        Ok(Ok(state)) => panic!("{} was accepted ({state:?})", what()),
        Ok(Err(_)) => {}
    }
}

/// `bytes` with `new` written at file offset `at`.
pub fn patched(bytes: &[u8], at: u64, new: &[u8]) -> Vec<u8> {
    let mut b = bytes.to_vec();
    let at = idx(at);
    b[at..at + new.len()].copy_from_slice(new);
    b
}

/// A file offset as a slice index (test artifacts are small).
pub fn idx(offset: u64) -> usize {
    usize::try_from(offset).expect("test artifacts fit in memory")
}

// ---------------------------------------------------------------- real boots

/// Most users are not root, so every real-boot scenario runs twice: as root,
/// and as a non-root user with a HOME and cache of its own. In the L1 harness
/// that is lib.sh's `both NAME CMD...`, whose user run is named `NAME@user`
/// (uid [`USER_UID`], see tests/harness/README.md); on this host it is
/// [`host_users`].
pub const USER_SUFFIX: &str = "@user";
/// The non-root user's ids, in L1 and on this host.
pub const USER_UID: u32 = 1000;
pub const USER_GID: u32 = 1000;

/// The scenario results of one L1 run (tests/harness/README.md, "Scenario
/// scripts and markers"), and the checks made on them. Checks do not stop at
/// the first failure: [`Scenarios::finish`] reports every run that failed,
/// root's and the user's, so one report says which of them differ.
pub struct Scenarios {
    runs: BTreeMap<String, (i32, String)>,
    console: String,
    verdicts: Vec<(String, Result<(), String>)>,
}

impl Scenarios {
    /// Parses the console: a scenario's output is the lines strictly between
    /// its BEGIN and END markers.
    pub fn parse(console: &str) -> Scenarios {
        let mut runs = BTreeMap::new();
        let mut current: Option<(String, String)> = None;
        for line in console.lines() {
            let line = line.strip_suffix('\r').unwrap_or(line);
            if let Some(name) = line
                .strip_prefix("@@SMOL-BEGIN ")
                .and_then(|l| l.strip_suffix("@@"))
            {
                current = Some((name.to_string(), String::new()));
            } else if let Some(rest) = line
                .strip_prefix("@@SMOL-END ")
                .and_then(|l| l.strip_suffix("@@"))
            {
                let (name, rc) = rest.rsplit_once(" rc=").expect("END marker has rc");
                if let Some((n, text)) = current.take() {
                    assert_eq!(n, name, "END for a scenario that did not BEGIN");
                    runs.insert(n, (rc.parse().expect("numeric rc"), text));
                }
            } else if let Some((_, text)) = current.as_mut() {
                text.push_str(line);
                text.push('\n');
            }
        }
        Scenarios {
            runs,
            console: console.to_string(),
            verdicts: Vec::new(),
        }
    }

    /// Exit code and output of the run `name`, if it ran to its END marker.
    pub fn get(&self, name: &str) -> Option<&(i32, String)> {
        self.runs.get(name)
    }

    /// Runs `check` (which asserts) on the run `name` and records the
    /// verdict; a missing run is a failure.
    pub fn check(&mut self, name: &str, check: impl FnOnce(i32, &str)) {
        let verdict = match self.runs.get(name) {
            None => Err("did not run to its END marker".to_string()),
            Some((rc, text)) => {
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| check(*rc, text)))
                    .map_err(|payload| panic_message(&*payload))
            }
        };
        self.verdicts.push((name.to_string(), verdict));
    }

    /// The same check on root's run `name` and the user's `name@user`.
    pub fn check_both(&mut self, name: &str, check: impl Fn(i32, &str)) {
        self.check(name, &check);
        self.check(&format!("{name}{USER_SUFFIX}"), &check);
    }

    /// Both runs of `name` exit with `rc` and print exactly `output`.
    pub fn expect_both(&mut self, name: &str, rc: i32, output: &str) {
        self.check_both(name, |got_rc, text| {
            assert_eq!((got_rc, text), (rc, output), "exit code and output");
        });
    }

    /// Records a failure that is not a run's (a fixture that could not be
    /// made, say), so [`Scenarios::finish`] reports it with the rest.
    pub fn fail(&mut self, what: &str, why: String) {
        self.verdicts.push((what.to_string(), Err(why)));
    }

    /// Prints one line per checked run and panics naming every failure.
    pub fn finish(self) {
        let mut failures = Vec::new();
        eprintln!("scenario results:");
        for (name, verdict) in &self.verdicts {
            match verdict {
                Ok(()) => eprintln!("  pass  {name}"),
                Err(why) => {
                    eprintln!("  FAIL  {name}");
                    failures.push(format!("{name}: {why}"));
                }
            }
        }
        assert!(
            failures.is_empty(),
            "{} of {} scenario runs failed:\n\n{}\n\nconsole:\n{}",
            failures.len(),
            self.verdicts.len(),
            failures.join("\n\n"),
            self.console
        );
    }
}

/// Who runs the stub in a test that runs it on this host rather than in L1:
/// root, with `SMOLVM_CACHE_DIR` in the test's scratch directory, and the user
/// (uid [`USER_UID`], no supplementary groups) with a HOME of its own that it
/// owns (0700), and no `SMOLVM_CACHE_DIR` or `XDG_CACHE_HOME`, so it uses
/// `~/.cache/smolvm`.
pub struct HostUser {
    /// "root", "user", or "uidN" when the tests do not run as root.
    pub label: String,
    /// Set for the user: the ids it runs as.
    ids: Option<(u32, u32)>,
    scratch: PathBuf,
}

/// The users to run a host-side scenario as: root and the user. A test that
/// does not run as root cannot switch users: it runs once, as itself, and
/// says so.
pub fn host_users(scratch: &Path) -> Vec<HostUser> {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    // /proc/self belongs to the effective uid; no libc needed.
    let euid = std::fs::metadata("/proc/self").expect("/proc/self").uid();
    // The user must reach the packed files and its home under `scratch`.
    std::fs::set_permissions(scratch, std::fs::Permissions::from_mode(0o755))
        .expect("chmod scratch dir");
    let user = |label: &str, ids| HostUser {
        label: label.into(),
        ids,
        scratch: scratch.to_path_buf(),
    };
    if euid != 0 {
        eprintln!("not running as root: host-side scenarios run only as uid {euid}");
        return vec![user(&format!("uid{euid}"), None)];
    }
    vec![user("root", None), user("user", Some((USER_UID, USER_GID)))]
}

/// Runs `scenario` as each of [`host_users`], all of them even if one fails,
/// then panics naming each user it failed for.
pub fn as_each_host_user(scratch: &Path, scenario: impl Fn(&HostUser)) {
    let mut failures = Vec::new();
    for user in host_users(scratch) {
        if let Err(payload) =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| scenario(&user)))
        {
            failures.push(format!("as {}: {}", user.label, panic_message(&*payload)));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_else(|| "panicked".into())
}

impl HostUser {
    /// Whether this is the non-root user of a root test run.
    pub fn is_switched(&self) -> bool {
        self.ids.is_some()
    }

    /// The user's HOME for cache `cache` (a fresh home per cache name).
    fn home(&self, cache: &str) -> PathBuf {
        self.scratch.join(format!("home-{}-{cache}", self.label))
    }

    /// Where the stub run by [`HostUser::command`] with this `cache` name keeps
    /// its cache.
    pub fn cache_dir(&self, cache: &str) -> PathBuf {
        match self.ids {
            Some(_) => self.home(cache).join(".cache/smolvm"),
            None => self.scratch.join(format!("cache-{}-{cache}", self.label)),
        }
    }

    /// `program` run as this user, with a cache of its own named `cache`
    /// (fresh the first time the name is used).
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>, cache: &str) -> Command {
        use std::os::unix::process::CommandExt;
        let mut c = Command::new(program);
        if let Some((uid, gid)) = self.ids {
            // As root, std drops the supplementary groups (setgroups(0))
            // before setgid and setuid.
            c.uid(uid).gid(gid);
        }
        self.environment(&mut c, cache);
        c
    }

    /// The HOME [`HostUser::command`] gives the user for `cache` (created,
    /// owned by the user, 0700); `None` for root, whose HOME is inherited.
    pub fn home_for(&self, cache: &str) -> Option<PathBuf> {
        self.ids.map(|_| self.home(cache))
    }

    /// Like [`HostUser::command`], and the user can open `/dev/kvm` even
    /// where it is root-only (as on the build machines): the program then
    /// starts through `unshare --mount`, which, in a mount namespace of its
    /// own, bind-mounts over `/dev/kvm` a node of the same device owned by
    /// the user (on a tmpfs mounted there), then drops to the user with
    /// `setpriv` and execs `program` (same pid: the program's parent is the
    /// test). Nothing changes on the host itself: no mode or ACL of the real
    /// `/dev/kvm`, which other tests running at the same time check.
    pub fn command_with_kvm(&self, program: impl AsRef<std::ffi::OsStr>, cache: &str) -> Command {
        use std::os::unix::fs::{FileTypeExt, MetadataExt};
        let Some((uid, gid)) = self.ids else {
            return self.command(program, cache);
        };
        let kvm = std::fs::metadata("/dev/kvm").expect("/dev/kvm");
        assert!(kvm.file_type().is_char_device(), "/dev/kvm is a device");
        if kvm.mode() & 0o006 == 0o006 {
            return self.command(program, cache);
        }
        let dev = kvm.rdev();
        let (major, minor) = (
            ((dev >> 8) & 0xfff) | ((dev >> 32) & !0xfff),
            (dev & 0xff) | ((dev >> 12) & !0xff),
        );
        let mount_point = self
            .scratch
            .join(format!("kvm-node-{}-{cache}", self.label));
        std::fs::create_dir_all(&mount_point).expect("mount point for the user's /dev/kvm");
        let mut c = Command::new("unshare");
        c.args(["--mount", "--propagation", "private", "--", "/bin/sh", "-c"])
            .arg(KVM_FOR_USER)
            .arg("kvm-for-user")
            .args([uid.to_string(), gid.to_string()])
            .arg(&mount_point)
            .args([major.to_string(), minor.to_string()])
            .arg(program);
        self.environment(&mut c, cache);
        c
    }

    fn environment(&self, c: &mut Command, cache: &str) {
        use std::os::unix::fs::PermissionsExt;
        match self.ids {
            None => {
                // What a start remembers (the first signer of each name,
                // runtime::known_signers) stays in the scratch directory too.
                c.env("SMOLVM_CACHE_DIR", self.cache_dir(cache)).env(
                    "XDG_STATE_HOME",
                    self.scratch.join(format!("state-{}-{cache}", self.label)),
                );
            }
            Some((uid, gid)) => {
                let home = self.home(cache);
                std::fs::create_dir_all(&home).expect("create the user's home");
                std::os::unix::fs::chown(&home, Some(uid), Some(gid)).expect("chown home");
                std::fs::set_permissions(&home, std::fs::Permissions::from_mode(0o700))
                    .expect("chmod home");
                c.env("HOME", &home)
                    .env("USER", "user")
                    .env("LOGNAME", "user")
                    .env_remove("SMOLVM_CACHE_DIR")
                    .env_remove("XDG_CACHE_HOME")
                    .env_remove("XDG_STATE_HOME");
            }
        }
    }
}

/// The shell of [`HostUser::command_with_kvm`], run by `unshare --mount`:
/// `$1 $2` uid and gid, `$3` an empty directory for the tmpfs, `$4 $5` the
/// device numbers of /dev/kvm, then the program and its arguments.
const KVM_FOR_USER: &str = r#"set -e
uid=$1 gid=$2 dir=$3 major=$4 minor=$5
shift 5
mount -t tmpfs -o size=16k,mode=0755 smol-kvm "$dir"
mknod -m 600 "$dir/kvm" c "$major" "$minor"
chown "$uid:$gid" "$dir/kvm"
mount --bind "$dir/kvm" /dev/kvm
exec setpriv --reuid="$uid" --regid="$gid" --clear-groups -- "$@"
"#;

// ------------------------------------------------------------------ real boots

/// A busybox root with every applet linked; directories and busybox 0755,
/// owned by whoever runs the test (root in CI).
pub fn busybox_root(dir: &Path) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let root = dir.join("root");
    std::fs::create_dir_all(root.join("bin")).unwrap();
    std::fs::copy("/bin/busybox", root.join("bin/busybox"))
        .expect("busybox-static at /bin/busybox");
    for p in [root.clone(), root.join("bin"), root.join("bin/busybox")] {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let list = Command::new("/bin/busybox").arg("--list").output().unwrap();
    for applet in String::from_utf8(list.stdout).unwrap().lines() {
        if applet != "busybox" {
            std::os::unix::fs::symlink("busybox", root.join("bin").join(applet)).unwrap();
        }
    }
    root
}

/// The start of every boot test: `None` (after `harness_available`'s
/// report) when the harness cannot run; else a fresh scratch directory
/// `dir`, its `dir/files` (what run-l1.sh copies into L1) and a key pair in
/// `dir/keys` for [`pack_signed`].
pub fn boot_dirs(name: &str) -> Option<(PathBuf, PathBuf)> {
    if !harness_available() {
        return None;
    }
    let dir = scratch_dir("boot", name);
    let files = dir.join("files");
    std::fs::create_dir_all(&files).unwrap();
    run_ok(
        Command::new(release_smolvm())
            .args(["pack", "keygen", "-o"])
            .arg(dir.join("keys")),
    );
    Some((dir, files))
}

/// Writes `dir/NAME.Smolfile` and packs it over `root` into `out/NAME`
/// with the release smolvm, the guest kernel, the size-tuned stub and the
/// key pair `dir/keys/smolvm.key` (from `smolvm pack keygen -o dir/keys`).
pub fn pack_signed(dir: &Path, root: &Path, out: &Path, name: &str, smolfile: &str) {
    let sf = dir.join(format!("{name}.Smolfile"));
    std::fs::write(&sf, smolfile).unwrap();
    run_ok(
        Command::new(release_smolvm())
            .args(["pack", "create", "--smolfile"])
            .arg(&sf)
            .arg("--rootfs")
            .arg(root)
            .arg("--kernel")
            .arg(guest_kernel())
            .arg("--key")
            .arg(dir.join("keys/smolvm.key"))
            .arg("--stub")
            .arg(stub_bin())
            .arg("-o")
            .arg(out.join(name)),
    );
}

/// Runs `script` in one L1 machine (tests/harness/run-l1.sh) with `files`
/// in /work, prints the console and how long it took, and returns the
/// scenario results; an L1 run that fails as a whole fails the test here.
pub fn run_l1(files: &Path, script: &Path, timeout_secs: u32) -> Scenarios {
    run_l1_with(files, script, timeout_secs, &[])
}

/// [`run_l1`] with more arguments for tests/harness/run-l1.sh (e.g.
/// `--append "lsm=..."` to boot L1 with another kernel command line).
pub fn run_l1_with(files: &Path, script: &Path, timeout_secs: u32, more: &[&str]) -> Scenarios {
    let started = std::time::Instant::now();
    let out = Command::new(repo().join("tests/harness/run-l1.sh"))
        .arg("--files")
        .arg(files)
        .arg("--script")
        .arg(script)
        .args(["--timeout", &timeout_secs.to_string()])
        .args(more)
        .output()
        .expect("run tests/harness/run-l1.sh");
    let console = String::from_utf8_lossy(&out.stdout).into_owned();
    println!("{console}");
    assert!(
        out.status.success(),
        "L1 run failed ({}):\n{console}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!("L1 run: {:.1} s", started.elapsed().as_secs_f64());
    Scenarios::parse(&console)
}

/// The release `smolvm` the boot tests pack with (`SMOLVM_BIN` overrides).
pub fn release_smolvm() -> PathBuf {
    bin("SMOLVM_BIN", "target/release/smolvm")
}

/// The guest kernel scripts/fetch-kernel.sh puts in the repo's cache.
pub fn guest_kernel() -> PathBuf {
    repo().join(".cache/kernel/libkrunfw.so.5")
}

/// A fresh scratch directory `smolvm-<prefix>-<name>-<pid>` under the temp
/// dir. It outlives the test (a failed boot leaves its files to look at);
/// the same directories of earlier runs whose process is gone are removed
/// here, so repeated test runs keep at most one each (they hold packed
/// artifacts: ~56 MB per directory, ~0.5 GB per suite run before this).
pub fn scratch_dir(prefix: &str, name: &str) -> PathBuf {
    let tmp = std::env::temp_dir();
    let stem = format!("smolvm-{prefix}-{name}-");
    for entry in std::fs::read_dir(&tmp).into_iter().flatten().flatten() {
        let file_name = entry.file_name();
        let Some(pid) = file_name.to_str().and_then(|n| n.strip_prefix(&stem)) else {
            continue;
        };
        let gone = !pid.is_empty()
            && pid.bytes().all(|b| b.is_ascii_digit())
            && !Path::new("/proc").join(pid).exists();
        if gone {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
    let d = tmp.join(format!("{stem}{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Whether the L1 harness can run the release binaries: true, or false with
/// the reason printed (a local skip), or a panic under
/// `SMOLVM_REQUIRE_BOOT=1` (scripts/test.sh, CI).
pub fn harness_available() -> bool {
    let required = std::env::var_os("SMOLVM_REQUIRE_BOOT").is_some_and(|v| v == "1");
    let mut missing = Vec::new();
    if Command::new("qemu-system-x86_64")
        .arg("--version")
        .output()
        .is_err()
    {
        missing.push("qemu-system-x86_64 (run scripts/setup-harness.sh)".to_string());
    }
    for p in [
        release_smolvm(),
        stub_bin(),
        guest_kernel(),
        repo().join(".cache/harness/vmlinux"),
    ] {
        if !p.exists() {
            missing.push(format!(
                "{} (run scripts/test.sh, which builds and fetches it)",
                p.display()
            ));
        }
    }
    if missing.is_empty() {
        return true;
    }
    assert!(
        !required,
        "real-boot harness cannot run: missing {}",
        missing.join(", ")
    );
    eprintln!("SKIPPING real boots: missing {}", missing.join(", "));
    false
}

/// Runs `cmd`, asserts it succeeded (showing its stderr), returns its stdout.
pub fn run_ok(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The directory of the running registry's config (its access logs are
/// there): that of the `docker-registry serve CONFIG` process serving
/// 127.0.0.1:5000, which another work tree may have started; else this
/// tree's .cache/registry.
pub fn registry_dir() -> PathBuf {
    let serving = std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .find_map(|e| {
            let cmdline = std::fs::read(e.path().join("cmdline")).ok()?;
            let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
            let config = match args.as_slice() {
                [exe, b"serve", config, ..] if exe.ends_with(b"docker-registry") => {
                    PathBuf::from(String::from_utf8_lossy(config).into_owned())
                }
                _ => return None,
            };
            let text = std::fs::read_to_string(&config).ok()?;
            text.contains("addr: 127.0.0.1:5000")
                .then(|| config.parent().map(Path::to_path_buf))
                .flatten()
        });
    serving.unwrap_or_else(|| repo().join(".cache/registry"))
}

// ------------------------------------------------- the attacker in the VMM

/// The attacks tests/harness/attack.c makes from inside the VMM once the
/// guest runs, and whether each must succeed: only the share (the positive
/// control: a sandbox that breaks volumes is no sandbox to ship).
pub const VMM_ATTACKS: [(&str, bool); 9] = [
    ("share-read-write", true),
    ("read-home-secret", false),
    ("read-etc-shadow", false),
    ("create-in-home", false),
    ("create-in-tmp", false),
    ("connect-unix", false),
    ("connect-tcp-loopback", false),
    ("ptrace-parent", false),
    ("exec", false),
];

/// Builds tests/harness/attack.c (an `LD_PRELOAD` library) into `dir` as
/// `attack.so`, mode 0755 so that any user's process can map it.
pub fn build_attack_library(dir: &Path) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let so = dir.join("attack.so");
    run_ok(
        Command::new("cc")
            .args(["-shared", "-fPIC", "-O2", "-Wall", "-Werror", "-o"])
            .arg(&so)
            .arg(repo().join("tests/harness/attack.c"))
            .arg("-ldl"),
    );
    std::fs::set_permissions(&so, std::fs::Permissions::from_mode(0o755)).unwrap();
    so
}

/// What attack.so reported (its `@@ATTACK...@@` lines, see attack.c).
#[derive(Debug, Default)]
pub struct AttackReport {
    /// Whether the `@@ATTACK-BEGIN` line came (the first KVM_RUN was reached).
    pub began: bool,
    /// Whether the `@@ATTACK-END` line came.
    pub ended: bool,
    /// Each attack's result fields (`result=refused stage=open errno=EACCES`).
    pub results: BTreeMap<String, BTreeMap<String, String>>,
    /// The attack tried last without a result: the process died in it.
    pub died_in: Option<String>,
    /// The fields of the `@@ATTACK-STATUS` line.
    pub status: Option<BTreeMap<String, String>>,
    /// Every `@@ATTACK` line, in order, for reports.
    pub lines: Vec<String>,
}

fn fields(s: &str) -> BTreeMap<String, String> {
    s.split_whitespace()
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

impl AttackReport {
    pub fn parse(text: &str) -> AttackReport {
        let mut r = AttackReport::default();
        let mut trying = None;
        for line in text.lines().map(str::trim) {
            let Some(body) = line
                .strip_prefix("@@ATTACK")
                .and_then(|l| l.strip_suffix("@@"))
            else {
                continue;
            };
            r.lines.push(line.to_string());
            if let Some(rest) = body.strip_prefix("-BEGIN ") {
                r.began = !rest.is_empty();
            } else if body == "-END" {
                r.ended = true;
            } else if let Some(rest) = body.strip_prefix("-STATUS ") {
                r.status = Some(fields(rest));
            } else if let Some(rest) = body.strip_prefix("-TRY ") {
                trying = fields(rest).remove("name");
            } else if let Some(rest) = body.strip_prefix(' ') {
                let mut f = fields(rest);
                if let Some(name) = f.remove("name") {
                    trying = None;
                    r.results.insert(name, f);
                }
            }
        }
        if !r.ended {
            r.died_in = trying;
        }
        r
    }

    /// Every way this report falls short of a confined VMM: an attack that
    /// succeeded or did not run, the share (positive control) refused, and
    /// a status other than no_new_privs, a seccomp filter and no effective
    /// capabilities. Empty when the VMM is confined.
    pub fn shortfalls(&self) -> Vec<String> {
        let mut out = Vec::new();
        if !self.began {
            out.push(
                "no @@ATTACK-BEGIN: the VMM never reached KVM_RUN with attack.so loaded".into(),
            );
            return out;
        }
        if let Some(name) = &self.died_in {
            out.push(format!(
                "the VMM died during {name} (a filter that kills instead of failing the call?): the attacks after it did not run"
            ));
        }
        for (name, must_succeed) in VMM_ATTACKS {
            let Some(f) = self.results.get(name) else {
                if self.died_in.as_deref() != Some(name) {
                    out.push(format!("{name}: no result"));
                }
                continue;
            };
            let result = f.get("result").map_or("none", String::as_str);
            let detail: String = f
                .iter()
                .filter(|(k, _)| *k != "result")
                .map(|(k, v)| format!(" {k}={v}"))
                .collect();
            match (must_succeed, result) {
                (true, "allowed") | (false, "refused") => {}
                (true, _) => out.push(format!(
                    "{name}: the share must stay usable, but it was {result}{detail}"
                )),
                (false, _) => out.push(format!("{name}: {result}{detail}, must be refused")),
            }
        }
        match &self.status {
            None => out.push("no @@ATTACK-STATUS line".into()),
            Some(s) => {
                for (key, want) in [
                    ("NoNewPrivs", "1"),
                    ("Seccomp", "2"),
                    ("CapEff", "0000000000000000"),
                ] {
                    let got = s.get(key).map_or("(missing)", String::as_str);
                    if got != want {
                        out.push(format!("status {key}={got}, must be {want}"));
                    }
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What a confined VMM reports (the shape attack.c prints), and
    /// what is left of a report when a filter kills the VMM mid-attack.
    #[test]
    fn attack_reports_name_every_shortfall() {
        let mut confined = String::from(
            "noise\n@@ATTACK-BEGIN pid=2 ppid=1 uid=0@@\n@@ATTACK-STATUS source=thread-self NoNewPrivs=1 Seccomp=2 CapEff=0000000000000000@@\n",
        );
        for (name, allowed) in VMM_ATTACKS {
            confined.push_str(&format!("@@ATTACK-TRY name={name}@@\n"));
            confined.push_str(&if allowed {
                format!("@@ATTACK name={name} result=allowed@@\n")
            } else {
                format!("@@ATTACK name={name} result=refused stage=open errno=EACCES@@\n")
            });
        }
        let ended = format!("{confined}@@ATTACK-END@@\n");
        assert_eq!(
            AttackReport::parse(&ended).shortfalls(),
            Vec::<String>::new()
        );

        let leaky = ended
            .replace(
                "name=exec result=refused stage=open errno=EACCES",
                "name=exec result=allowed",
            )
            .replace(
                "name=share-read-write result=allowed",
                "name=share-read-write result=refused stage=create errno=EACCES",
            )
            .replace("Seccomp=2", "Seccomp=0");
        assert_eq!(
            AttackReport::parse(&leaky).shortfalls(),
            [
                "share-read-write: the share must stay usable, but it was refused errno=EACCES stage=create",
                "exec: allowed, must be refused",
                "status Seccomp=0, must be 2",
            ]
        );

        let killed = confined
            .split("@@ATTACK name=ptrace-parent")
            .next()
            .unwrap()
            .to_string();
        let r = AttackReport::parse(&killed);
        assert_eq!(r.died_in.as_deref(), Some("ptrace-parent"));
        assert_eq!(
            r.shortfalls(),
            [
                "the VMM died during ptrace-parent (a filter that kills instead of failing the call?): the attacks after it did not run",
                "exec: no result",
            ]
        );
        assert_eq!(
            AttackReport::parse("no markers").shortfalls().len(),
            1,
            "a VMM that never reached KVM_RUN is one shortfall"
        );
    }

    #[test]
    fn scratch_dirs_of_finished_runs_are_removed_and_others_kept() {
        let tmp = std::env::temp_dir();
        // A process that has exited: its pid names a finished run.
        let mut child = Command::new("true").spawn().unwrap();
        let dead = child.id();
        child.wait().unwrap();
        let live = std::os::unix::process::parent_id();
        let name = format!("unit{}", std::process::id());
        let stale = tmp.join(format!("smolvm-scratch-{name}-{dead}"));
        let running = tmp.join(format!("smolvm-scratch-{name}-{live}"));
        let other = tmp.join(format!("smolvm-scratch-{name}x-{dead}"));
        for d in [&stale, &running, &other] {
            std::fs::create_dir_all(d.join("files")).unwrap();
        }
        let mine = scratch_dir("scratch", &name);
        assert!(mine.is_dir());
        assert!(!stale.exists(), "a finished run's directory stays");
        assert!(running.is_dir(), "a running process's directory went");
        assert!(other.is_dir(), "another test's directory went");
        for d in [&mine, &running, &other] {
            std::fs::remove_dir_all(d).unwrap();
        }
    }
}

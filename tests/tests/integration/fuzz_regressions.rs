//! Replays every input in `fuzz/regressions/<target>/` through what that
//! fuzz target runs, on stable Rust, so a fixed fuzz crash stays fixed: the
//! reader's entry points (`exercise_reader`) and the packer's inputs
//! (`fuzz/exercise.rs`, shared with the targets). Also keeps each target's
//! seed inputs in step with the fixtures: `SMOLVM_BLESS=1` rewrites them.

#[path = "../../../fuzz/exercise.rs"]
mod exercise;

use smolvm_rootfs::testutil::{dir, file, hardlink, symlink, tar};
use smolvm_tests::{build, exercise_reader, full_check, repo, trusted, ArtifactSpec};

/// Seed inputs: (file name, bytes).
type Seeds = Vec<(&'static str, Vec<u8>)>;

/// A fuzz target as the replay sees it.
struct Target {
    name: &'static str,
    run: fn(&[u8]),
    seeds: fn() -> Seeds,
}

const TARGETS: &[Target] = &[
    Target {
        name: "reader",
        run: exercise_reader,
        seeds: reader_seeds,
    },
    Target {
        name: "smolfile",
        run: exercise::smolfile,
        seeds: smolfile_seeds,
    },
    Target {
        name: "image_reference",
        run: exercise::image_reference,
        seeds: image_reference_seeds,
    },
    Target {
        name: "key_file",
        run: exercise::key_file,
        seeds: key_file_seeds,
    },
    Target {
        name: "flatten_layers",
        run: exercise::flatten_layers,
        seeds: flatten_seeds,
    },
    Target {
        name: "dns_query",
        run: exercise::dns_query,
        seeds: dns_query_seeds,
    },
    Target {
        name: "sockaddr",
        run: exercise::sockaddr,
        seeds: sockaddr_seeds,
    },
    Target {
        name: "control_channel",
        run: exercise::control_channel,
        seeds: control_channel_seeds,
    },
];

fn reader_seeds() -> Seeds {
    let small = || ArtifactSpec {
        compress: false,
        kernel: vec![0x7f; 10],
        rootfs: vec![0; 1024],
        ..ArtifactSpec::default()
    };
    vec![
        ("seed-bare-signed-stored", build(&small()).bytes),
        (
            "seed-packed-signed-zstd",
            build(&ArtifactSpec {
                stub: Some(b"\x7fELF".to_vec()),
                kernel: vec![0x90; 3000],
                rootfs: smolvm_tests::tiny_rootfs_tar()[..2048].to_vec(),
                ..ArtifactSpec::default()
            })
            .bytes,
        ),
        (
            "seed-bare-unsigned-stored",
            build(&ArtifactSpec {
                signer: None,
                ..small()
            })
            .bytes,
        ),
    ]
}

fn smolfile_seeds() -> Seeds {
    let full = r#"image = "docker.io/library/alpine:3.20"
kernel = "vmlinux"
entrypoint = ["/bin/sh", "-c"]
cmd = ["echo hi"]
env = ["A=1", "B="]
workdir = "/srv"
user = "1000:1000"
cpus = 2
memory = 256
net = true
ports = ["8080:80"]
volumes = ["/data"]
storage = 4
overlay = 2
init = ["mkdir -p /srv"]

[network]
allow_hosts = ["example.org"]
allow_cidrs = ["10.0.0.0/8"]

[auth]
ssh_agent = true

[artifact]
name = "demo"
version = "1.0.0"

[pack]
level = 19
key = "k.key"
stub = "stub"
"#;
    vec![
        ("seed-every-field", full.as_bytes().to_vec()),
        (
            "seed-rootfs",
            b"rootfs = \"root.tar\"\ncmd = [\"/bin/hello\"]\n".to_vec(),
        ),
    ]
}

fn image_reference_seeds() -> Seeds {
    [
        ("seed-docker-hub", "alpine:3.20"),
        (
            "seed-registry-port-digest",
            "docker://registry.example:5000/team/app:1.2@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
        ),
        ("seed-ipv6-registry", "[::1]:5000/a/b"),
        ("seed-oci-layout", "oci:./layout:latest"),
        ("seed-docker-archive", "docker-archive:img.tar:app:1"),
    ]
    .into_iter()
    .map(|(n, r)| (n, r.as_bytes().to_vec()))
    .collect()
}

fn key_file_seeds() -> Seeds {
    let key = smolvm_tests::test_key();
    vec![
        ("seed-secret", key.to_file_string().into_bytes()),
        ("seed-public", key.public_key().to_file_string().into_bytes()),
        (
            "seed-openssh-public",
            // RFC 8032 test 1's public key as an OpenSSH line.
            b"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAINdamAGCsQq31Uv+08lkBzoO4XLz2qYjJa8CGmj3B1Ea test\n"
                .to_vec(),
        ),
    ]
}

fn flatten_seeds() -> Seeds {
    let lower = tar(&[
        dir("etc/"),
        file("etc/passwd", b"root:x:0:0::/root:/bin/sh\n"),
        file("etc/gone", b"deleted above"),
        dir("opt/"),
        file("opt/old", b"hidden by an opaque marker"),
        symlink("bin", "usr/bin"),
        hardlink("etc/passwd.lnk", "etc/passwd"),
    ]);
    let upper = tar(&[
        file("etc/.wh.gone", b""),
        file("opt/.wh..wh..opq", b""),
        file("opt/new", b"new"),
        hardlink("opt/link", "etc/passwd"),
    ]);
    let mut layered = lower.clone();
    layered.extend_from_slice(exercise::LAYER_BREAK);
    layered.extend_from_slice(&upper);
    vec![
        ("seed-one-layer", lower),
        ("seed-two-layers-whiteouts-links", layered),
    ]
}

/// A one-question query as a stub resolver sends it (id 0xbeef, RD set),
/// then `tail` (addresses for the answer, see `exercise::dns_addresses`).
fn dns_query_bytes(name: &str, qtype: u16, tail: &[u8]) -> Vec<u8> {
    let mut m = vec![0xbe, 0xef, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
    for label in name.split('.').filter(|l| !l.is_empty()) {
        m.push(u8::try_from(label.len()).unwrap());
        m.extend_from_slice(label.as_bytes());
    }
    m.push(0);
    m.extend_from_slice(&qtype.to_be_bytes());
    m.extend_from_slice(&1u16.to_be_bytes());
    m.extend_from_slice(tail);
    m
}

fn dns_query_seeds() -> Seeds {
    let mut v6 = vec![1];
    v6.extend_from_slice(
        &"2001:db8::7"
            .parse::<std::net::Ipv6Addr>()
            .unwrap()
            .octets(),
    );
    vec![
        (
            "seed-a-two-addresses",
            dns_query_bytes(
                "Host.Example.com",
                1,
                &[0, 192, 0, 2, 7, 0, 198, 51, 100, 1],
            ),
        ),
        ("seed-aaaa", dns_query_bytes("h.test", 28, &v6)),
        ("seed-root-mx", dns_query_bytes("", 15, &[])),
    ]
}

/// A `struct sockaddr` as Linux lays it out on a little-endian host
/// (family in host order; AF_UNIX 1, AF_INET 2, AF_INET6 10).
fn sockaddr_bytes(family: u16, rest: &[u8]) -> Vec<u8> {
    let mut b = family.to_le_bytes().to_vec();
    b.extend_from_slice(rest);
    b
}

fn sockaddr_seeds() -> Seeds {
    let mut v4 = 53u16.to_be_bytes().to_vec();
    v4.extend_from_slice(&[10, 0, 2, 3]);
    v4.extend_from_slice(&[0; 8]);
    let mut v6 = 443u16.to_be_bytes().to_vec();
    v6.extend_from_slice(&[0; 4]);
    v6.extend_from_slice(
        &"::ffff:10.0.2.3"
            .parse::<std::net::Ipv6Addr>()
            .unwrap()
            .octets(),
    );
    v6.extend_from_slice(&[0; 4]);
    vec![
        ("seed-inet-guest-dns", sockaddr_bytes(2, &v4)),
        ("seed-inet6-mapped", sockaddr_bytes(10, &v6)),
        (
            "seed-unix-listed-peer",
            sockaddr_bytes(1, b"/run/smolvm/control.sock\0"),
        ),
        ("seed-unix-abstract", sockaddr_bytes(1, b"\0abstract")),
    ]
}

fn control_channel_seeds() -> Seeds {
    vec![
        ("seed-close", Vec::new()),
        (
            "seed-chatty-guest",
            b"\x02\x0f the guest init never writes here\n".to_vec(),
        ),
    ]
}

fn blessing() -> bool {
    std::env::var_os("SMOLVM_BLESS").is_some_and(|v| v == "1")
}

#[test]
fn seed_inputs_are_current() {
    for target in TARGETS {
        let dir = repo().join("fuzz/regressions").join(target.name);
        for (name, bytes) in (target.seeds)() {
            let path = dir.join(name);
            if blessing() {
                std::fs::create_dir_all(&dir).unwrap();
                std::fs::write(&path, &bytes).unwrap();
                continue;
            }
            let on_disk = std::fs::read(&path).unwrap_or_default();
            assert!(
                on_disk == bytes,
                "{} is stale or missing; SMOLVM_BLESS=1 cargo test -p smolvm-tests --test fuzz_regressions",
                path.display()
            );
            // Signed reader seeds are valid, so the fuzzer starts from deep inside the reader.
            if target.name == "reader" && !name.contains("unsigned") {
                full_check(&bytes, &trusted()).unwrap();
            }
        }
    }
}

/// The seeds reach past the first check of what they feed: a seed that
/// every parser refuses at once would teach the fuzzer nothing.
#[test]
fn packer_seeds_are_accepted_inputs() {
    let base = std::path::Path::new("/nonexistent/smolvm-fuzz");
    for (name, bytes) in smolfile_seeds() {
        let text = String::from_utf8(bytes).unwrap();
        smolvm_packer::smolfile::Smolfile::parse(&text, std::path::Path::new("Smolfile"))
            .unwrap_or_else(|e| panic!("{name}: {e}"));
    }
    for (name, bytes) in image_reference_seeds() {
        // Local sources are checked against the file system; these name none.
        if name.contains("oci") || name.contains("archive") {
            continue;
        }
        let text = String::from_utf8(bytes).unwrap();
        smolvm_packer::image::reference::parse(&text, Some(base))
            .unwrap_or_else(|e| panic!("{name}: {e}"));
    }
    let dir = tempfile::tempdir().unwrap();
    for (name, bytes) in key_file_seeds() {
        let path = dir.path().join(name);
        std::fs::write(&path, &bytes).unwrap();
        let parsed = if name == "seed-secret" {
            smolvm_signing::SecretKey::read_file(&path).map(|k| k.public_key())
        } else {
            smolvm_signing::PublicKey::read_file(&path)
        };
        assert_eq!(
            parsed.unwrap_or_else(|e| panic!("{name}: {e}")),
            smolvm_tests::test_key().public_key(),
            "{name}"
        );
    }
    for (name, bytes) in flatten_seeds() {
        let mut f = smolvm_rootfs::flatten::Flattener::new("seed");
        for (i, layer) in exercise::split_layers(&bytes).into_iter().enumerate() {
            f.apply_layer(layer, &i.to_string())
                .unwrap_or_else(|e| panic!("{name} layer {i}: {e}"));
        }
    }
}

/// The guest-byte seeds reach the code behind the first check: a query
/// the resolver parses, addresses of each kind the supervisor tells apart.
#[test]
fn guest_byte_seeds_are_accepted_inputs() {
    use smolvm_runtime::net::sockaddr::{parse, Addr};
    for (name, bytes) in dns_query_seeds() {
        assert!(
            smolvm_runtime::net::dns::parse_query(&bytes).is_some(),
            "{name}"
        );
    }
    let parsed: Vec<Option<Addr>> = sockaddr_seeds().iter().map(|(_, b)| parse(b)).collect();
    assert_eq!(
        parsed,
        [
            Some(Addr::Ip("10.0.2.3:53".parse().unwrap())),
            Some(Addr::Ip("[::ffff:10.0.2.3]:443".parse().unwrap())),
            Some(Addr::UnixPath(b"/run/smolvm/control.sock".to_vec())),
            Some(Addr::UnixOther),
        ]
    );
}

#[test]
fn every_regression_input_is_handled_without_panicking() {
    for target in TARGETS {
        let dir = repo().join("fuzz/regressions").join(target.name);
        let mut replayed = 0;
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "md") {
                continue;
            }
            let bytes = std::fs::read(&path).unwrap();
            if std::panic::catch_unwind(|| (target.run)(&bytes)).is_err() {
                panic!("fuzz target {} panicked on {}", target.name, path.display());
            }
            replayed += 1;
        }
        // While blessing, the seeds are being rewritten by the other test.
        let seeds = (target.seeds)().len();
        assert!(
            blessing() || replayed >= seeds,
            "only {replayed} inputs in {} (it has {seeds} seeds)",
            dir.display()
        );
    }
}

/// Artifacts of the two earlier format versions, as their releases wrote
/// them (the reader seeds of versions 3 and 4, kept beside the current
/// ones): they still verify fully against the key that signed them, and
/// `pack verify` / `pack inspect` take them, naming their version.
#[test]
fn artifacts_of_versions_3_and_4_still_verify() {
    let dir = repo().join("fuzz/regressions/reader");
    let keys = tempfile::tempdir().unwrap();
    let (_, public) = smolvm_tests::write_key_files(keys.path(), "test", &smolvm_tests::test_key());
    for version in [3, 4] {
        for seed in ["seed-bare-signed-stored", "seed-packed-signed-zstd"] {
            let path = dir.join(format!("v{version}-{seed}"));
            let bytes = std::fs::read(&path).unwrap();
            assert_eq!(bytes[bytes.len() - 56], version, "{}", path.display());
            full_check(&bytes, &trusted()).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            smolvm_tests::smolvm()
                .args(["pack", "verify", "--key"])
                .arg(&public)
                .arg(&path)
                .assert()
                .success();
            let out = smolvm_tests::smolvm()
                .args(["pack", "inspect", "--json"])
                .arg(&path)
                .output()
                .unwrap();
            let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
            assert_eq!(v["format_version"], version, "{v}");
        }
    }
}

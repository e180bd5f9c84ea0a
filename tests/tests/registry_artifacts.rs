//! Artifacts in OCI registries (issue 11): `smolvm pack push`, `pack pull`
//! and `pack inspect/verify REF`, against the loopback registries
//! scripts/setup-registry.sh runs (127.0.0.1:5000 open, 127.0.0.1:5001 with
//! a password). What is measured comes from the registry's own access log
//! (one line per request with the bytes it sent), not from smolvm's report.
//!
//! Without the registries these tests skip, unless SMOLVM_REQUIRE_BOOT=1
//! (scripts/test.sh), where that is a failure.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

use smolvm_tests::{
    fake_kernel, fake_stub, other_key, pattern, registry_dir, smolvm, test_key, write_key_files,
};

/// Status of `GET /v2/` on 127.0.0.1:PORT, if anything answers.
fn v2_status(port: u16) -> Option<u16> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(3))).ok()?;
    write!(s, "GET /v2/ HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\n\r\n").ok()?;
    let mut head = [0u8; 12];
    s.read_exact(&mut head).ok()?;
    std::str::from_utf8(&head[9..12]).ok()?.parse().ok()
}

/// True when the registry on `port` answers `want`; otherwise skips the
/// test, or fails it when real runs are required.
fn registry_ready(port: u16, want: u16) -> bool {
    if v2_status(port) == Some(want) {
        return true;
    }
    let why =
        format!("no registry answering {want} on 127.0.0.1:{port} (run scripts/setup-registry.sh)");
    assert!(
        std::env::var_os("SMOLVM_REQUIRE_BOOT").is_none_or(|v| v != "1"),
        "{why}"
    );
    eprintln!("SKIPPING: {why}");
    false
}

/// A repository of this test's own, so parallel tests' requests do not count.
fn repository(what: &str) -> String {
    format!("smolvm-test-artifacts-{what}-{}", std::process::id())
}

/// A scratch directory with the test keys, a fake kernel and stub, and a
/// root holding `root_bytes` of incompressible data.
struct Scratch {
    dir: tempfile::TempDir,
}

impl Scratch {
    fn new(root_bytes: usize) -> Scratch {
        let s = Scratch {
            dir: tempfile::tempdir().unwrap(),
        };
        write_key_files(&s.path("keys"), "test", &test_key());
        write_key_files(&s.path("keys"), "other", &other_key());
        std::fs::write(s.path("vmlinux"), fake_kernel()).unwrap();
        std::fs::write(s.path("stub"), fake_stub()).unwrap();
        let root = s.path("root");
        std::fs::create_dir_all(root.join("bin")).unwrap();
        std::fs::write(root.join("bin/hello"), "#!/bin/sh\necho hi\n").unwrap();
        std::fs::write(root.join("data"), pattern(root_bytes, 42)).unwrap();
        s
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// Packs the root as `out` (an executable unless it ends in .smolmachine),
    /// signed with the test key.
    fn pack(&self, out: &str) -> PathBuf {
        let out = self.path(out);
        smolvm()
            .args(["pack", "create", "--level", "1", "--rootfs"])
            .arg(self.path("root"))
            .arg("--kernel")
            .arg(self.path("vmlinux"))
            .arg("--stub")
            .arg(self.path("stub"))
            .arg("--key")
            .arg(self.path("keys/test.key"))
            .args(["--name", "hello", "--artifact-version", "1.2.3", "-o"])
            .arg(&out)
            .assert()
            .success();
        out
    }

    /// `smolvm ARGS` with a private cache and HOME, and the docker config
    /// directory `docker` (credentials) when given.
    fn smolvm(&self, args: &[&str], docker: Option<&Path>) -> Output {
        let mut c = smolvm();
        c.args(args)
            .env("HOME", self.path("home"))
            .env("SMOLVM_CACHE_DIR", self.path("cache"))
            .env("DOCKER_CONFIG", docker.unwrap_or(&self.path("no-docker")));
        c.output().unwrap()
    }
}

#[track_caller]
fn expect(out: &Output, code: i32, needles: &[&str]) -> String {
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.status.code(), Some(code), "{text}");
    for n in needles {
        assert!(text.contains(n), "{n:?} not in: {text}");
    }
    text
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// The round trip every release pipeline needs, for both forms, on the
/// open registry: push, pull, the same bytes, verify by key (the pulled
/// file and the reference), and the refusals: the other key, the other
/// form's output name.
#[test]
fn push_pull_verify_round_trip() {
    if !registry_ready(5000, 200) {
        return;
    }
    let sc = Scratch::new(64 << 10);
    let key = sc.path("keys/test.pub");
    let other = sc.path("keys/other.pub");
    for (file, form) in [("hello.smolmachine", "payload"), ("hello", "exe")] {
        let local = sc.pack(file);
        let reference = format!("localhost:5000/{}:1.2.3", repository(form));
        let out = sc.smolvm(&["pack", "push", s(&local), &reference], None);
        let text = expect(&out, 0, &["pushed"]);
        let pinned = String::from_utf8_lossy(&out.stdout).trim().to_string();
        assert!(pinned.contains("@sha256:"), "{text}");

        // By tag and by the digest push printed; the output name keeps the form.
        for (i, r) in [reference.as_str(), pinned.as_str()].iter().enumerate() {
            let pulled = sc.path(&format!("pulled-{i}-{file}"));
            let out = sc.smolvm(
                &["pack", "pull", r, "--key", s(&key), "-o", s(&pulled)],
                None,
            );
            expect(&out, 0, &["verified"]);
            assert_eq!(
                std::fs::read(&pulled).unwrap(),
                std::fs::read(&local).unwrap(),
                "{r}: pulled bytes differ from the pushed file"
            );
            let out = sc.smolvm(&["pack", "verify", "--key", s(&key), s(&pulled)], None);
            expect(&out, 0, &["valid"]);
        }
        let out = sc.smolvm(&["pack", "verify", "--key", s(&key), &reference], None);
        expect(&out, 0, &["valid", "hello 1.2.3", "in the registry"]);
        let out = sc.smolvm(&["pack", "verify", "--key", s(&other), &reference], None);
        expect(&out, 1, &["untrusted"]);

        // Pulls that must not write anything: another signer's key (checked
        // once the download is in), and the other form's output name.
        let (refused, wrong_name) = match form {
            "payload" => (sc.path("refused.smolmachine"), sc.path("as-executable")),
            _ => (sc.path("refused"), sc.path("as-payload.smolmachine")),
        };
        let out = sc.smolvm(
            &[
                "pack",
                "pull",
                &reference,
                "--key",
                s(&other),
                "-o",
                s(&refused),
            ],
            None,
        );
        expect(&out, 1, &["untrusted"]);
        let out = sc.smolvm(&["pack", "pull", &reference, "-o", s(&wrong_name)], None);
        expect(&out, 2, &["holds a", "names a"]);
        assert!(!refused.exists() && !wrong_name.exists());
        let leftovers: Vec<_> = std::fs::read_dir(sc.dir.path())
            .unwrap()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().starts_with(".smolvm-pull-"))
            .collect();
        assert!(leftovers.is_empty(), "temporary files left: {leftovers:?}");
    }
    // A repository that is not there: exit 2, naming it.
    let out = sc.smolvm(
        &[
            "pack",
            "inspect",
            "localhost:5000/no-such-repository-here:1",
        ],
        None,
    );
    expect(&out, 2, &["no-such-repository-here"]);
}

/// The password-protected registry: the docker config's credentials open
/// it for push (token scope pull,push) and pull; without them, push fails
/// with exit 2 and says how to log in.
#[test]
fn push_and_pull_with_credentials_from_the_docker_config() {
    if !registry_ready(5001, 401) {
        return;
    }
    let sc = Scratch::new(16 << 10);
    let password = std::fs::read_to_string(registry_dir().join("auth.password")).unwrap();
    let docker = sc.path("docker");
    std::fs::create_dir_all(&docker).unwrap();
    // `username`/`password` entries, as some tools write them beside `auth`.
    std::fs::write(
        docker.join("config.json"),
        format!(
            r#"{{"auths":{{"localhost:5001":{{"username":"smolvm-test","password":"{}"}}}}}}"#,
            password.trim()
        ),
    )
    .unwrap();
    let local = sc.pack("hello.smolmachine");
    let reference = format!("localhost:5001/{}:1.2.3", repository("auth"));
    let out = sc.smolvm(&["pack", "push", s(&local), &reference], None);
    expect(&out, 2, &["docker login"]);
    let out = sc.smolvm(&["pack", "push", s(&local), &reference], Some(&docker));
    expect(&out, 0, &["pushed"]);
    let pulled = sc.path("pulled.smolmachine");
    let key = sc.path("keys/test.pub");
    let out = sc.smolvm(
        &[
            "pack",
            "pull",
            &reference,
            "--key",
            s(&key),
            "-o",
            s(&pulled),
        ],
        Some(&docker),
    );
    expect(&out, 0, &["verified"]);
    assert_eq!(
        std::fs::read(&pulled).unwrap(),
        std::fs::read(&local).unwrap()
    );
    let out = sc.smolvm(
        &["pack", "verify", "--key", s(&key), &reference],
        Some(&docker),
    );
    expect(&out, 0, &["valid"]);
}

/// Remote `inspect` and `verify` of an artifact with a 40 MB root read the
/// trailer, header, manifest, signature and config section with ranged
/// GETs: under 1 MiB in all, counted from the registry's access log.
#[test]
fn remote_inspect_reads_under_a_mib_of_a_40_mb_artifact() {
    if !registry_ready(5000, 200) {
        return;
    }
    let sc = Scratch::new(40 << 20);
    let local = sc.pack("big.smolmachine");
    let size = std::fs::metadata(&local).unwrap().len();
    assert!(size > 40 << 20, "the artifact is {size} bytes");
    let name = repository("big");
    let reference = format!("localhost:5000/{name}:1");
    let out = sc.smolvm(&["pack", "push", s(&local), &reference], None);
    expect(&out, 0, &["pushed"]);

    let log = registry_dir().join("registry.log");
    let key = sc.path("keys/test.pub");
    for args in [
        vec!["pack", "inspect", reference.as_str()],
        vec!["pack", "inspect", "--json", reference.as_str()],
        vec!["pack", "verify", "--key", s(&key), reference.as_str()],
    ] {
        let before = std::fs::metadata(&log).map_or(0, |m| m.len());
        let out = sc.smolvm(&args, None);
        expect(&out, 0, &["hello"]);
        // The registry writes its log line after the response.
        std::thread::sleep(Duration::from_millis(300));
        let text = std::fs::read(&log).unwrap();
        let start = usize::try_from(before).unwrap().min(text.len());
        let new = String::from_utf8_lossy(&text[start..]);
        let (requests, bytes) = sent_for(&new, &name);
        eprintln!(
            "{}: {requests} requests, {bytes} bytes sent by the registry (artifact {size} bytes)",
            args.join(" ")
        );
        assert!(requests >= 2, "no requests of {name} in {}", log.display());
        assert!(bytes < 1 << 20, "{}: {bytes} bytes read", args.join(" "));
    }
}

/// Requests for `/v2/REPOSITORY/` in an access log and the bytes sent for them.
fn sent_for(log: &str, repository: &str) -> (usize, u64) {
    let needle = format!("/v2/{repository}/");
    let mut requests = 0;
    let mut bytes = 0;
    for line in log.lines().filter(|l| l.contains(&needle)) {
        // ... "GET /v2/... HTTP/1.1" 206 37166 "" "smolvm/0.1.0"
        let Some((_, after)) = line.split_once("HTTP/1.1\" ") else {
            continue;
        };
        let mut fields = after.split(' ');
        let _status = fields.next();
        requests += 1;
        bytes += fields
            .next()
            .and_then(|b| b.parse::<u64>().ok())
            .unwrap_or(0);
    }
    (requests, bytes)
}

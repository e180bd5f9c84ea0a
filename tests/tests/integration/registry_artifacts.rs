//! Artifacts in OCI registries (issue 11): `smolvm pack push`, `pack pull`
//! and `pack inspect/verify REF`, against the loopback registries
//! scripts/setup-registry.sh runs (127.0.0.1:5000 open, 127.0.0.1:5001 with
//! a password). What is measured comes from the registry's own access log
//! (one line per request with the bytes it sent), not from smolvm's report.
//!
//! Without the registries these tests skip, unless SMOLVM_REQUIRE_BOOT=1
//! (scripts/test.sh), where that is a failure.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use sha2::{Digest as _, Sha256};

use smolvm_tests::fixture::{self, v2_status};
use smolvm_tests::{fake_stub, pattern, registry_dir, smolvm};

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
struct Scratch(fixture::Scratch);

impl std::ops::Deref for Scratch {
    type Target = fixture::Scratch;
    fn deref(&self) -> &fixture::Scratch {
        &self.0
    }
}

impl Scratch {
    fn new(root_bytes: usize) -> Scratch {
        let s = Scratch(
            fixture::Scratch::new()
                .with_other_key()
                .with_stub(&fake_stub()),
        );
        let root = s.path("root");
        std::fs::create_dir_all(root.join("bin")).unwrap();
        std::fs::write(root.join("bin/hello"), "#!/bin/sh\necho hi\n").unwrap();
        std::fs::write(root.join("data"), pattern(root_bytes, 42)).unwrap();
        s
    }

    /// Packs the root as `out` (an executable unless it ends in .smolmachine),
    /// signed with the test key.
    fn pack(&self, out: &str) -> PathBuf {
        let out = self.path(out);
        self.pack_create()
            .args(["--level", "1", "--rootfs"])
            .arg(self.path("root"))
            .arg("--key")
            .arg(self.path("keys/test.key"))
            .args(["--name", "hello", "--artifact-version", "1.2.3", "-o"])
            .arg(&out)
            .assert()
            .success();
        out
    }

    /// Packs `out` and pushes it as `localhost:5000/<repository(what)>:1`;
    /// returns the local file and the repository with its tag (no registry).
    fn pushed(&self, out: &str, what: &str) -> (PathBuf, String) {
        let local = self.pack(out);
        let tagged = format!("{}:1", repository(what));
        let reference = format!("localhost:5000/{tagged}");
        let pushed = self.smolvm(&["pack", "push", s(&local), &reference], None);
        expect(&pushed, 0, &["pushed"]);
        (local, tagged)
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
        let leftovers: Vec<_> = std::fs::read_dir(sc.dir())
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
    let (local, tagged) = sc.pushed("big.smolmachine", "big");
    let size = std::fs::metadata(&local).unwrap().len();
    assert!(size > 40 << 20, "the artifact is {size} bytes");
    let reference = format!("localhost:5000/{tagged}");
    let name = tagged.strip_suffix(":1").unwrap();

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
        let (requests, bytes) = sent_for(&new, name);
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

/// A TCP proxy on 127.0.0.1 in front of the open registry (:5000): it
/// counts the bytes the registry sends through it and, with a cut, closes
/// each connection once that many have gone through, as a reset midway
/// would. Its threads live as long as the test process.
struct Proxy {
    port: u16,
    /// Bytes passed from the registry to smolvm, headers included.
    sent: Arc<AtomicU64>,
}

/// What a [`Proxy`] does besides passing bytes.
#[derive(Clone, Copy)]
enum Meddle {
    Nothing,
    /// Close each connection after this many bytes from the registry.
    CutAfter(u64),
    /// Rename `Range` request headers, as a registry that ignores them.
    HideRange,
}

impl Proxy {
    fn start(meddle: Meddle) -> Proxy {
        let cut = match meddle {
            Meddle::CutAfter(n) => Some(n),
            _ => None,
        };
        let hide_range = matches!(meddle, Meddle::HideRange);
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let sent = Arc::new(AtomicU64::new(0));
        let counter = Arc::clone(&sent);
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { return };
                let Ok(upstream) = TcpStream::connect(("127.0.0.1", 5000)) else {
                    continue;
                };
                let (mut requests, mut to_registry) =
                    (client.try_clone().unwrap(), upstream.try_clone().unwrap());
                std::thread::spawn(move || {
                    let mut buf = vec![0u8; 64 << 10];
                    while let Ok(n) = requests.read(&mut buf) {
                        if n == 0 {
                            break;
                        }
                        if hide_range {
                            // Same length, so nothing else shifts; a request
                            // head arrives in one read.
                            for at in 0..n.saturating_sub(8) {
                                if buf[at..at + 8].eq_ignore_ascii_case(b"\r\nrange:") {
                                    buf[at + 2..at + 7].copy_from_slice(b"xange");
                                }
                            }
                        }
                        if to_registry.write_all(&buf[..n]).is_err() {
                            break;
                        }
                    }
                    let _ = to_registry.shutdown(Shutdown::Write);
                });
                let counter = Arc::clone(&counter);
                std::thread::spawn(move || {
                    let (mut from, mut to) = (upstream, client);
                    let mut buf = vec![0u8; 64 << 10];
                    let mut passed: u64 = 0;
                    loop {
                        let mut n = match from.read(&mut buf) {
                            Ok(0) | Err(_) => break,
                            Ok(n) => n,
                        };
                        if let Some(c) = cut {
                            n = n.min(usize::try_from(c - passed).unwrap());
                        }
                        if to.write_all(&buf[..n]).is_err() {
                            break;
                        }
                        passed += n as u64;
                        counter.fetch_add(n as u64, Ordering::Relaxed);
                        if cut.is_some_and(|c| passed >= c) {
                            break;
                        }
                    }
                    let _ = to.shutdown(Shutdown::Both);
                    let _ = from.shutdown(Shutdown::Both);
                });
            }
        });
        Proxy { port, sent }
    }

    /// `reference`'s repository and tag, through this proxy.
    fn reference(&self, repository_and_tag: &str) -> String {
        format!("127.0.0.1:{}/{repository_and_tag}", self.port)
    }

    fn sent(&self) -> u64 {
        self.sent.load(Ordering::Relaxed)
    }
}

/// Where pulls of `local` (pushed) download to in `dir`.
fn part_file(dir: &Path, local: &Path) -> PathBuf {
    let hex = hex::encode(Sha256::digest(std::fs::read(local).unwrap()));
    dir.join(format!(".smolvm-pull-{hex}.part"))
}

/// A pull whose connection is cut after 1 MiB of a 4 MiB artifact fails
/// with exit 2 and keeps what arrived (0600); the next pull asks for the
/// rest only (counted at a second proxy: the registry sends less than the
/// blob minus what was kept, plus headers), and writes the pushed bytes
/// with no part file left. Through a proxy that hides the `Range` header,
/// a resumed pull gets the whole blob (200) and starts over.
#[test]
fn an_interrupted_pull_resumes_where_it_stopped() {
    if !registry_ready(5000, 200) {
        return;
    }
    let sc = Scratch::new(4 << 20);
    let (local, tagged) = sc.pushed("big.smolmachine", "resume");
    let size = std::fs::metadata(&local).unwrap().len();
    assert!(size > 4 << 20, "the artifact is {size} bytes");
    let dir = sc.path("out");
    std::fs::create_dir_all(&dir).unwrap();
    let pulled = dir.join("big.smolmachine");
    let part = part_file(&dir, &local);
    let key = sc.path("keys/test.pub");

    let cutting = Proxy::start(Meddle::CutAfter(1 << 20));
    let out = sc.smolvm(
        &[
            "pack",
            "pull",
            &cutting.reference(&tagged),
            "--key",
            s(&key),
            "-o",
            s(&pulled),
        ],
        None,
    );
    let text = expect(&out, 2, &["kept in", "resumes there"]);
    eprintln!("the cut pull said: {}", text.trim());
    assert!(!pulled.exists());
    let meta = std::fs::metadata(&part).expect("the part file is kept");
    let kept = meta.len();
    assert!(kept > 0 && kept < size, "{kept} of {size} bytes kept");
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);

    let counting = Proxy::start(Meddle::Nothing);
    let out = sc.smolvm(
        &[
            "pack",
            "pull",
            &counting.reference(&tagged),
            "--key",
            s(&key),
            "-o",
            s(&pulled),
        ],
        None,
    );
    expect(
        &out,
        0,
        &[&format!("resuming at {kept} of {size} bytes"), "verified"],
    );
    eprintln!(
        "first pull: {} bytes through the proxy before the cut, {kept} kept; resumed pull: {} bytes; blob {size} bytes",
        cutting.sent(),
        counting.sent()
    );
    assert_eq!(
        std::fs::read(&pulled).unwrap(),
        std::fs::read(&local).unwrap(),
        "the resumed pull's bytes differ from the pushed file"
    );
    assert!(!part.exists(), "{} left after success", part.display());
    assert!(
        counting.sent() < size - kept + (16 << 10),
        "the resumed pull carried {} bytes; the rest of the blob is {}",
        counting.sent(),
        size - kept
    );

    // A registry that ignores the range answers 200 with the whole blob:
    // the kept bytes are written over from byte 0.
    std::fs::remove_file(&pulled).unwrap();
    let out = sc.smolvm(
        &[
            "pack",
            "pull",
            &cutting.reference(&tagged),
            "-o",
            s(&pulled),
        ],
        None,
    );
    expect(&out, 2, &["resumes there"]);
    let ignoring = Proxy::start(Meddle::HideRange);
    let out = sc.smolvm(
        &[
            "pack",
            "pull",
            &ignoring.reference(&tagged),
            "-o",
            s(&pulled),
        ],
        None,
    );
    expect(
        &out,
        0,
        &["resuming at", "ignored the range request", "wrote"],
    );
    eprintln!(
        "range ignored: {} bytes for a blob of {size}",
        ignoring.sent()
    );
    assert!(ignoring.sent() > size);
    assert_eq!(
        std::fs::read(&pulled).unwrap(),
        std::fs::read(&local).unwrap()
    );
    assert!(!part.exists());
}

/// A part file with a flipped byte in its prefix is resumed from (nothing
/// can tell before the end), ends in a digest mismatch (exit 1) that
/// deletes it, and the next pull starts from byte 0 and succeeds.
#[test]
fn a_corrupt_part_file_is_a_digest_mismatch_and_deleted() {
    if !registry_ready(5000, 200) {
        return;
    }
    let sc = Scratch::new(2 << 20);
    let (local, tagged) = sc.pushed("hello.smolmachine", "corrupt-part");
    let reference = format!("localhost:5000/{tagged}");
    let dir = sc.path("out");
    std::fs::create_dir_all(&dir).unwrap();
    let pulled = dir.join("hello.smolmachine");
    let part = part_file(&dir, &local);
    let mut prefix = std::fs::read(&local).unwrap();
    prefix.truncate(1 << 20);
    prefix[1000] ^= 0x40;
    std::fs::write(&part, &prefix).unwrap();

    let out = sc.smolvm(&["pack", "pull", &reference, "-o", s(&pulled)], None);
    let text = expect(
        &out,
        1,
        &[
            &format!("resuming at {}", 1 << 20),
            "digest mismatch",
            "starts from the beginning",
        ],
    );
    eprintln!("the pull over a corrupt part file said: {}", text.trim());
    assert!(!part.exists(), "the corrupt part file was kept");
    assert!(!pulled.exists());

    let out = sc.smolvm(&["pack", "pull", &reference, "-o", s(&pulled)], None);
    let text = expect(&out, 0, &["wrote"]);
    assert!(!text.contains("resuming"), "{text}");
    assert_eq!(
        std::fs::read(&pulled).unwrap(),
        std::fs::read(&local).unwrap()
    );
    assert!(!part.exists());
}

//! Image sources for `pack create --image REF` and a full distribution root,
//! end to end.
//!
//! Fixtures come from the project's scripts (scripts/test.sh runs them):
//! scripts/setup-registry.sh (registry on 127.0.0.1:5000, storage and access
//! log under .cache/registry/), scripts/make-test-image.sh (the multi-layer
//! image smolvm-test:v1 as an OCI layout, a docker-save archive and in the
//! registry; see that script for what each layer holds) and
//! scripts/debian-root.sh (a Debian bookworm minbase root as a tarball).
//!
//! Booting happens once, in the QEMU harness (tests/harness/README.md): the
//! image packed by registry reference and the Debian root, each scenario as
//! root and as a non-root user with its own HOME and cache (lib.sh's `both`).
//! Everything else only packs and inspects. `SMOLVM_REQUIRE_BOOT=1`
//! (scripts/test.sh, so CI) turns a missing fixture into a failure; without
//! it these tests skip with the reason.

use smolvm_tests::fixture::v2_status;
use smolvm_tests::{bin, registry_dir, repo, stub_bin as stub, Scenarios};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

const IMAGE: &str = "localhost:5000/smolvm-test:v1";
/// What the image's /app/run.sh prints with the image's own Cmd: every line
/// is one fact that comes from the image (see scripts/make-test-image.sh).
const IMAGE_OUTPUT: &str = "image entrypoint ran: hello-from-image pwd=/app args=from-cmd
user: 1000:1000
whiteout: /bin/vi absent
opaque: c 
hardlink: one inode, 2 names
motd: motd from layer 3
";
/// Run by the image's user (app) with a shell entrypoint: owners of files the
/// layers give to root, and whether that user can write one of them. Goes
/// into a TOML string as is: no double quotes or backslashes.
const IMAGE_OWNERS_CMD: &str =
    "stat -c %u:%g:%n /app/run.sh /etc/motd; id -u; touch /etc/motd 2>/dev/null && echo motd writable || echo motd read-only";
const IMAGE_OWNERS_OUTPUT: &str = "0:0:/app/run.sh
0:0:/etc/motd
1000
motd read-only
";
/// Run in the Debian root; single-quoted in the scenario script. Its output
/// after the version line is [`DEBIAN_RELEASE_TAIL`]: owners and modes as the
/// distribution installed them (a file of group shadow, a directory of group
/// mail), whoever runs the stub.
const DEBIAN_RELEASE_CMD: &str =
    "cat /etc/debian_version; id -un; ls /usr/bin/apt-get; stat -c \"%u:%g %a %n\" /etc/shadow /var/mail";
const DEBIAN_RELEASE_TAIL: [&str; 4] = [
    "root",
    "/usr/bin/apt-get",
    "0:42 640 /etc/shadow",
    "0:8 2775 /var/mail",
];
/// One digest over the names and bytes of every regular file under the
/// current directory, in byte order of their names (relative, so where
/// the tree sits does not enter it).
const TREE_DIGEST: &str = "find . -type f -print0 | LC_ALL=C sort -z | xargs -0 md5sum | md5sum";

/// [`TREE_DIGEST`] over the Debian tarball's /usr, extracted under `dir`.
fn usr_digest_on_host(dir: &Path) -> String {
    let root = dir.join("debian-usr");
    std::fs::create_dir_all(&root).unwrap();
    let o = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "zstd -dc \"$1\" | tar -x -C \"$2\" ./usr && cd \"$2/usr\" && {TREE_DIGEST}"
        ))
        .args(["sh"])
        .arg(debian_root())
        .arg(&root)
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "digest of the tarball's /usr: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    let _ = std::fs::remove_dir_all(&root);
    String::from_utf8_lossy(&o.stdout)
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_string()
}

/// A pack that takes longer than this is hung (the image is 1 MB).
const PACK_LIMIT: Duration = Duration::from_secs(120);
/// A bad reference or a damaged image must be reported at least this fast.
const BAD_INPUT_LIMIT: Duration = Duration::from_secs(30);

fn smolvm() -> PathBuf {
    bin("SMOLVM_BIN", "target/release/smolvm")
}

fn kernel() -> PathBuf {
    repo().join(".cache/kernel/libkrunfw.so.5")
}

fn test_image() -> PathBuf {
    repo().join(".cache/test-image")
}

fn debian_root() -> PathBuf {
    bin("SMOL_DEBIAN_ROOT", ".cache/debian-minbase.tar.zst")
}

fn scratch(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("smolvm-img-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn required() -> bool {
    std::env::var_os("SMOLVM_REQUIRE_BOOT").is_some_and(|v| v == "1")
}

/// Whether something answers `GET /v2/` on 127.0.0.1:5000 with 200.
fn registry_answers() -> bool {
    let Ok(mut s) =
        TcpStream::connect_timeout(&"127.0.0.1:5000".parse().unwrap(), Duration::from_secs(2))
    else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(3)));
    if s.write_all(b"GET /v2/ HTTP/1.0\r\nHost: 127.0.0.1:5000\r\n\r\n")
        .is_err()
    {
        return false;
    }
    let mut head = [0u8; 12];
    s.read_exact(&mut head).is_ok() && head.ends_with(b" 200")
}

/// Returns true if everything named is there; otherwise panics when real
/// runs are required, or prints why it skips. `missing` lists what the
/// caller already found absent.
fn fixtures_present(
    what: &str,
    paths: &[PathBuf],
    need_registry: bool,
    mut missing: Vec<String>,
) -> bool {
    for p in [smolvm(), kernel()].iter().chain(paths) {
        if !p.exists() {
            missing.push(format!("{}", p.display()));
        }
    }
    if need_registry && !registry_answers() {
        missing.push("a registry on 127.0.0.1:5000 (scripts/setup-registry.sh)".into());
    }
    if missing.is_empty() {
        return true;
    }
    let msg = format!(
        "{what}: missing {} (scripts/test.sh builds, fetches and sets up all of it)",
        missing.join(", ")
    );
    assert!(!required(), "{msg}");
    eprintln!("SKIPPING {msg}");
    false
}

fn image_fixtures() -> Vec<PathBuf> {
    let t = test_image();
    vec![
        t.join("oci/index.json"),
        t.join("smolvm-test-v1.docker.tar"),
        t.join("v1.digest"),
        t.join("corrupt-layer.digest"),
    ]
}

struct Outcome {
    /// None: killed at the time limit.
    status: Option<ExitStatus>,
    stdout: String,
    stderr: String,
    secs: f64,
}

impl Outcome {
    fn ok(&self) -> bool {
        self.status.is_some_and(|s| s.success())
    }
}

/// Runs `cmd` with piped output, killing it after `limit`. The caller sets
/// stdin.
fn run_limited(cmd: &mut Command, limit: Duration) -> Outcome {
    let start = Instant::now();
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    let drain = |mut r: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut v = Vec::new();
            let _ = r.read_to_end(&mut v);
            String::from_utf8_lossy(&v).into_owned()
        })
    };
    let out = drain(Box::new(child.stdout.take().unwrap()));
    let err = drain(Box::new(child.stderr.take().unwrap()));
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break Some(st);
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Outcome {
        status,
        stdout: out.join().unwrap(),
        stderr: err.join().unwrap(),
        secs: start.elapsed().as_secs_f64(),
    }
}

/// `smolvm pack create --image SOURCE` into a bare unsigned payload (or
/// whatever `extra` and `out` say), reproducible, stdin closed.
fn pack_cmd(source: &str, out: &Path, extra: &[&str]) -> Command {
    let mut c = Command::new(smolvm());
    c.args(["pack", "create", "--image", source, "--kernel"])
        .arg(kernel())
        .args(extra)
        .arg("-o")
        .arg(out)
        .env("SOURCE_DATE_EPOCH", "1700000000")
        .stdin(Stdio::null());
    c
}

fn pack_ok(cmd: &mut Command) -> Outcome {
    let o = run_limited(cmd, PACK_LIMIT);
    assert!(o.ok(), "{cmd:?} failed ({:?}):\n{}", o.status, o.stderr);
    o
}

fn inspect(artifact: &Path) -> Json {
    let o = run_limited(
        Command::new(smolvm())
            .args(["pack", "inspect", "--json"])
            .arg(artifact)
            .stdin(Stdio::null()),
        Duration::from_secs(60),
    );
    assert!(
        o.ok(),
        "inspect {} failed: {}",
        artifact.display(),
        o.stderr
    );
    serde_json::from_str::<Json>(&o.stdout)
        .unwrap_or_else(|e| panic!("inspect --json output: {e}\n{}", o.stdout))
}

fn rootfs_sha256(j: &Json) -> String {
    j.get("sections")
        .and_then(Json::as_array)
        .and_then(|s| {
            s.iter()
                .find(|s| s.get("kind").and_then(Json::as_str) == Some("rootfs"))
        })
        .and_then(|s| s.get("sha256"))
        .and_then(Json::as_str)
        .unwrap_or_else(|| panic!("no rootfs section sha256 in {j:?}"))
        .to_string()
}

fn config_str<'a>(j: &'a Json, path: &[&str]) -> Option<&'a str> {
    let mut v = j.get("config")?;
    for k in path {
        v = v.get(k)?;
    }
    v.as_str()
}

fn config_list(j: &Json, key: &str) -> Vec<String> {
    j.get("config")
        .and_then(|c| c.get(key))
        .and_then(Json::as_array)
        .map(|v| {
            v.iter()
                .filter_map(|s| s.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

fn read_trimmed(p: &Path) -> String {
    std::fs::read_to_string(p)
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
        .trim()
        .to_string()
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let dest = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &dest);
        } else {
            std::fs::copy(e.path(), &dest).unwrap();
        }
    }
}

fn blob_path(layout: &Path, digest: &str) -> PathBuf {
    layout
        .join("blobs/sha256")
        .join(digest.strip_prefix("sha256:").expect("sha256 digest"))
}

/// A valid gzip tar (one file, /NAME with TEXT) other than any blob of the image.
fn other_gzip_layer(dir: &Path, name: &str, text: &str) -> Vec<u8> {
    let src = dir.join(format!("other-layer-{name}"));
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join(name), text).unwrap();
    let out = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "tar --owner=0 --group=0 --numeric-owner --mtime=@0 -C '{}' -cf - '{name}' | gzip -n",
            src.display()
        ))
        .output()
        .unwrap();
    assert!(out.status.success() && !out.stdout.is_empty());
    out.stdout
}

/// The failure a bad input must give: an exit within the time limit, non-zero,
/// no output file, and a message that contains one of `words`
/// (case-insensitive). Returns what is wrong, if anything.
fn bad_input_fails(what: &str, cmd: &mut Command, out: &Path, words: &[&str]) -> Option<String> {
    let o = run_limited(cmd, BAD_INPUT_LIMIT);
    eprintln!(
        "{what}: {:.2} s, {:?}: {}",
        o.secs,
        o.status,
        o.stderr.trim()
    );
    let left_output = out.exists();
    let _ = std::fs::remove_file(out);
    let err = o.stderr.to_lowercase();
    if o.status.is_none() {
        Some(format!("{what}: still running after {BAD_INPUT_LIMIT:?}"))
    } else if o.ok() {
        Some(format!("{what}: pack succeeded; stderr:\n{}", o.stderr))
    } else if left_output {
        Some(format!("{what}: a failed pack left {}", out.display()))
    } else if !words.iter().any(|w| err.contains(&w.to_lowercase())) {
        Some(format!(
            "{what}: the message names none of {words:?}:\n{}",
            o.stderr
        ))
    } else {
        None
    }
}

/// Every source form of the same image gives the same root filesystem, and
/// the config comes from the image where nothing else sets it.
#[test]
fn image_sources_give_the_same_rootfs() {
    if !fixtures_present("image sources", &image_fixtures(), true, vec![]) {
        return;
    }
    let dir = scratch("sources");
    let t = test_image();
    let oci = t.join("oci");
    let archive = t.join("smolvm-test-v1.docker.tar");
    let digest = read_trimmed(&t.join("v1.digest"));

    let registry = dir.join("registry.smolmachine");
    let o = pack_ok(&mut pack_cmd(IMAGE, &registry, &["--no-sign"]));
    eprintln!("pack {IMAGE}: {:.2} s", o.secs);
    let want = inspect(&registry);
    let want_rootfs = rootfs_sha256(&want);

    // Provenance: each runtime field the image config sets says "image".
    for field in ["entrypoint", "cmd", "env", "workdir", "user"] {
        assert_eq!(
            config_str(&want, &["provenance", field]),
            Some("image"),
            "provenance of {field}: {want:?}"
        );
    }
    assert_eq!(config_str(&want, &["image_digest"]), Some(digest.as_str()));
    assert_eq!(config_list(&want, "entrypoint"), ["/bin/sh", "/app/run.sh"]);
    assert_eq!(config_list(&want, "cmd"), ["from-cmd"]);
    assert!(
        config_list(&want, "env").contains(&"GREETING=hello-from-image".to_string()),
        "{want:?}"
    );
    assert_eq!(config_str(&want, &["workdir"]), Some("/app"));
    assert_eq!(config_str(&want, &["user"]), Some("app"));

    let mut sources: Vec<(String, Command)> = Vec::new();
    for (label, source) in [
        ("oci-tag", format!("oci:{}:v1", oci.display())),
        (
            "docker-archive",
            format!("docker-archive:{}", archive.display()),
        ),
        ("plain-archive", archive.display().to_string()),
    ] {
        let out = dir.join(format!("{label}.smolmachine"));
        sources.push((label.into(), pack_cmd(&source, &out, &["--no-sign"])));
    }
    let mut stdin = pack_cmd("-", &dir.join("stdin.smolmachine"), &["--no-sign"]);
    stdin.stdin(std::fs::File::open(&archive).unwrap());
    sources.push(("stdin".into(), stdin));

    let mut failures = Vec::new();
    for (label, mut cmd) in sources {
        let o = run_limited(&mut cmd, PACK_LIMIT);
        if !o.ok() {
            failures.push(format!("{label}: {:?}: {}", o.status, o.stderr.trim()));
            continue;
        }
        eprintln!("pack {label}: {:.2} s", o.secs);
        let j = inspect(&dir.join(format!("{label}.smolmachine")));
        if rootfs_sha256(&j) != want_rootfs {
            failures.push(format!(
                "{label}: rootfs {} differs from the registry pull's {want_rootfs}",
                rootfs_sha256(&j)
            ));
        }
        if config_list(&j, "entrypoint") != ["/bin/sh", "/app/run.sh"] {
            failures.push(format!("{label}: entrypoint not from the image: {j:?}"));
        }
        if label == "oci-tag" && config_str(&j, &["image_digest"]) != Some(digest.as_str()) {
            failures.push(format!("{label}: image_digest is not {digest}: {j:?}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));

    // The Smolfile wins over the image config for what it sets.
    std::fs::write(
        dir.join("Smolfile"),
        format!("image = \"{IMAGE}\"\ncmd = [\"from-smolfile\"]\n"),
    )
    .unwrap();
    let mixed = dir.join("mixed.smolmachine");
    let mut c = Command::new(smolvm());
    c.args(["pack", "create", "--no-sign", "--smolfile"])
        .arg(dir.join("Smolfile"))
        .arg("--kernel")
        .arg(kernel())
        .arg("-o")
        .arg(&mixed)
        .env("SOURCE_DATE_EPOCH", "1700000000")
        .stdin(Stdio::null());
    pack_ok(&mut c);
    let j = inspect(&mixed);
    assert_eq!(config_list(&j, "cmd"), ["from-smolfile"]);
    assert_eq!(config_str(&j, &["provenance", "cmd"]), Some("smolfile"));
    assert_eq!(config_str(&j, &["provenance", "entrypoint"]), Some("image"));
    assert_eq!(rootfs_sha256(&j), want_rootfs);
}

/// Count of access-log lines (status 200 or 206) that fetched a blob of `repo`.
fn blob_fetches(log: &str, repo: &str) -> usize {
    let needle = format!("\"GET /v2/{repo}/blobs/");
    log.lines()
        .filter(|l| l.contains(&needle) && (l.contains("\" 200 ") || l.contains("\" 206 ")))
        .count()
}

/// A second pack of the same registry image fetches no blob: the registry's
/// access log shows the first pack's fetches and none from the second.
#[test]
fn second_pull_of_an_image_fetches_no_blob() {
    if !fixtures_present("image cache", &image_fixtures(), true, vec![]) {
        return;
    }
    if Command::new("skopeo").arg("--version").output().is_err() {
        assert!(
            !required(),
            "skopeo missing (scripts/make-test-image.sh installs it)"
        );
        eprintln!("SKIPPING image cache: skopeo missing");
        return;
    }
    let dir = scratch("cache");
    let log = registry_dir().join("registry.log");
    // A repository of its own, so parallel tests' pulls do not count, and a
    // private cache, so the first pack really is the first.
    let name = format!("smolvm-test-cache-{}", std::process::id());
    let push = Command::new("skopeo")
        .args([
            "copy",
            "-q",
            "--preserve-digests",
            "--dest-tls-verify=false",
        ])
        .arg(format!("oci:{}:v1", test_image().join("oci").display()))
        .arg(format!("docker://127.0.0.1:5000/{name}:v1"))
        .output()
        .unwrap();
    assert!(
        push.status.success(),
        "skopeo push: {}",
        String::from_utf8_lossy(&push.stderr)
    );
    let source = format!("localhost:5000/{name}:v1");
    let private = |c: &mut Command| {
        c.env("HOME", dir.join("home"))
            .env("XDG_CACHE_HOME", dir.join("xdg-cache"))
            .env("SMOLVM_CACHE_DIR", dir.join("smolvm-cache"));
    };
    let read_log = || std::fs::read_to_string(&log).unwrap_or_default();

    let before = read_log();
    let mut first = pack_cmd(&source, &dir.join("first.smolmachine"), &["--no-sign"]);
    private(&mut first);
    let o1 = pack_ok(&mut first);
    let after_first = read_log();
    let fetched_first = blob_fetches(&after_first, &name) - blob_fetches(&before, &name);
    assert!(
        after_first.contains(&format!("/v2/{name}/manifests/")),
        "the pack left no trace in {}: is the registry on :5000 the one scripts/setup-registry.sh started?",
        log.display()
    );
    // Config + 3 layers.
    assert!(
        fetched_first >= 4,
        "first pack fetched {fetched_first} blobs of {name}; expected the config and 3 layers"
    );

    let mut second = pack_cmd(&source, &dir.join("second.smolmachine"), &["--no-sign"]);
    private(&mut second);
    let o2 = pack_ok(&mut second);
    let after_second = read_log();
    let fetched_second = blob_fetches(&after_second, &name) - blob_fetches(&after_first, &name);
    eprintln!(
        "first pack {:.2} s ({fetched_first} blobs), second {:.2} s ({fetched_second} blobs)",
        o1.secs, o2.secs
    );
    // The repository is this run's alone; its blobs stay (other tags share them).
    let _ = Command::new("skopeo")
        .args(["delete", "--tls-verify=false"])
        .arg(format!("docker://127.0.0.1:5000/{name}:v1"))
        .output();
    assert_eq!(fetched_second, 0, "the second pack fetched blobs again");
    assert_eq!(
        rootfs_sha256(&inspect(&dir.join("first.smolmachine"))),
        rootfs_sha256(&inspect(&dir.join("second.smolmachine")))
    );
}

/// The registry on 127.0.0.1:5001 (scripts/setup-registry.sh) wants a
/// password: the credentials `docker login` would have written to the docker
/// config are used; without them, or with a wrong password, the pack fails
/// and says how to log in.
#[test]
fn credentials_from_the_docker_config_open_a_private_registry() {
    if !fixtures_present("registry credentials", &image_fixtures(), true, vec![]) {
        return;
    }
    if v2_status(5001) != Some(401) {
        let why = "no password-protected registry on 127.0.0.1:5001 (scripts/setup-registry.sh)";
        assert!(!required(), "{why}");
        eprintln!("SKIPPING registry credentials: {why}");
        return;
    }
    let password = read_trimmed(&registry_dir().join("auth.password"));
    let dir = scratch("auth");
    let docker_config = |name: &str, password: &str| -> PathBuf {
        let d = dir.join(name);
        std::fs::create_dir_all(&d).unwrap();
        let out = Command::new("base64")
            .arg("-w0")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .and_then(|mut c| {
                c.stdin
                    .take()
                    .unwrap()
                    .write_all(format!("smolvm-test:{password}").as_bytes())?;
                c.wait_with_output()
            })
            .unwrap();
        let auth = String::from_utf8(out.stdout).unwrap();
        let config = serde_json::json!({"auths": {"localhost:5001": {"auth": auth}}});
        std::fs::write(d.join("config.json"), config.to_string()).unwrap();
        d
    };
    let private = |c: &mut Command, name: &str, config: &Path| {
        c.env("DOCKER_CONFIG", config)
            .env("HOME", dir.join(name).join("home"))
            .env("XDG_CACHE_HOME", dir.join(name).join("xdg"))
            .env("SMOLVM_CACHE_DIR", dir.join(name).join("cache"));
    };
    let source = "localhost:5001/smolvm-test:v1";

    let good = docker_config("good", &password);
    let out = dir.join("auth.smolmachine");
    let mut c = pack_cmd(source, &out, &["--no-sign"]);
    private(&mut c, "good", &good);
    pack_ok(&mut c);
    let open = dir.join("open.smolmachine");
    pack_ok(&mut pack_cmd(IMAGE, &open, &["--no-sign"]));
    assert_eq!(
        rootfs_sha256(&inspect(&out)),
        rootfs_sha256(&inspect(&open))
    );

    let mut failures = Vec::new();
    for (label, config) in [
        ("no credentials", dir.join("none")),
        ("wrong password", docker_config("wrong", "not-the-password")),
    ] {
        std::fs::create_dir_all(&config).unwrap();
        let mut c = pack_cmd(source, &dir.join("x.smolmachine"), &["--no-sign"]);
        private(&mut c, label, &config);
        failures.extend(bad_input_fails(
            label,
            &mut c,
            &dir.join("x.smolmachine"),
            &[
                "docker login",
                "credentials",
                "unauthorized",
                "authentication",
            ],
        ));
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

/// Bad references and damaged images fail in bounded time with a message
/// that names the problem, and leave no artifact.
#[test]
fn bad_image_inputs_fail_clearly() {
    if !fixtures_present("bad image inputs", &image_fixtures(), true, vec![]) {
        return;
    }
    let dir = scratch("bad");
    let out = dir.join("out.smolmachine");
    let mut failures = Vec::new();
    let mut check = |what: &str, source: &str, words: &[&str]| {
        failures.extend(bad_input_fails(
            what,
            &mut pack_cmd(source, &out, &["--no-sign"]),
            &out,
            words,
        ));
    };

    check(
        "missing tag",
        "localhost:5000/smolvm-test:no-such-tag",
        &["no-such-tag"],
    );
    check(
        "missing repository",
        "localhost:5000/no-such-repository:v1",
        &["no-such-repository"],
    );
    check(
        "unreachable registry",
        "localhost:5999/smolvm-test:v1",
        &["localhost:5999"],
    );

    // Not an image: a tar of one text file, as an archive, plain and on stdin.
    let not_image = dir.join("not-an-image.tar");
    std::fs::write(dir.join("readme.txt"), "just a file\n").unwrap();
    assert!(Command::new("tar")
        .arg("-C")
        .arg(&dir)
        .arg("-cf")
        .arg(&not_image)
        .arg("readme.txt")
        .status()
        .unwrap()
        .success());
    check(
        "docker-archive that is not an image",
        &format!("docker-archive:{}", not_image.display()),
        &["manifest.json", "not an image", "not a docker"],
    );
    check(
        "OCI layout that is not one",
        &format!("oci:{}", dir.join("readme.txt").display()),
        &["index.json", "oci-layout", "not an oci", "not a directory"],
    );

    // Damaged OCI layouts (copies): a config blob edited in place (same
    // size, still valid JSON, so only the digest can tell), and a layer blob
    // replaced by another valid gzip tar.
    let src = test_image().join("oci");
    let v1 = read_trimmed(&test_image().join("v1.digest"));
    let manifest =
        serde_json::from_str::<Json>(&std::fs::read_to_string(blob_path(&src, &v1)).unwrap())
            .unwrap();
    let config_digest = manifest
        .get("config")
        .and_then(|c| c.get("digest"))
        .and_then(Json::as_str)
        .unwrap()
        .to_string();
    let top_layer = manifest
        .get("layers")
        .and_then(Json::as_array)
        .and_then(|l| l.last())
        .and_then(|l| l.get("digest"))
        .and_then(Json::as_str)
        .unwrap()
        .to_string();

    let edited = dir.join("oci-config-edited");
    copy_dir(&src, &edited);
    let cfg = blob_path(&edited, &config_digest);
    let text = std::fs::read_to_string(&cfg).unwrap();
    assert!(text.contains("hello-from-image"));
    std::fs::write(&cfg, text.replace("hello-from-image", "jello-from-image")).unwrap();
    check(
        "OCI config blob edited",
        &format!("oci:{}:v1", edited.display()),
        &["digest", "sha256", "mismatch", "hash"],
    );

    let swapped = dir.join("oci-layer-swapped");
    copy_dir(&src, &swapped);
    std::fs::write(
        blob_path(&swapped, &top_layer),
        other_gzip_layer(&dir, "swapped", "not the layer the manifest names\n"),
    )
    .unwrap();
    check(
        "OCI layer blob swapped",
        &format!("oci:{}:v1", swapped.display()),
        &["digest", "sha256", "mismatch", "hash", "size"],
    );

    // The same in the registry: the corrupt tag's own layer (no other image
    // shares it) replaced in the registry's storage; the registry serves
    // whatever bytes are there.
    let layer = read_trimmed(&test_image().join("corrupt-layer.digest"));
    let hex = layer.strip_prefix("sha256:").unwrap();
    let stored = registry_dir()
        .join("data/docker/registry/v2/blobs/sha256")
        .join(&hex[..2])
        .join(hex)
        .join("data");
    if stored.exists() {
        std::fs::write(
            &stored,
            other_gzip_layer(&dir, "corrupt-me", "tampered in the registry's storage\n"),
        )
        .unwrap();
        check(
            "registry blob tampered",
            "localhost:5000/smolvm-test:corrupt",
            &["digest", "sha256", "mismatch", "hash", "size"],
        );
    } else {
        failures.push(format!(
            "registry blob tampered: {} does not exist: is the registry on :5000 the one scripts/setup-registry.sh started?",
            stored.display()
        ));
    }

    // A registry that accepts connections and never answers: the pack must
    // give up after its timeout (here 3 s) and say so, not hang.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let silent_addr = silent.local_addr().unwrap();
    let held = std::thread::spawn(move || {
        let mut open = Vec::new();
        while let Ok((conn, _)) = silent.accept() {
            open.push(conn);
            if open.len() >= 16 {
                break;
            }
        }
    });
    let silent_ref = format!("localhost:{}/smolvm-test:v1", silent_addr.port());
    let mut c = pack_cmd(&silent_ref, &out, &["--no-sign"]);
    c.env("SMOLVM_REGISTRY_TIMEOUT", "3");
    let started = Instant::now();
    failures.extend(bad_input_fails(
        "registry that never answers",
        &mut c,
        &out,
        &["no answer", "timed out", "timeout"],
    ));
    if started.elapsed() > Duration::from_secs(20) {
        failures.push(format!(
            "registry that never answers: gave up only after {:?} with a 3 s timeout",
            started.elapsed()
        ));
    }
    drop(held);

    let mut stdin = pack_cmd("-", &out, &["--no-sign"]);
    stdin.stdin(std::fs::File::open(&not_image).unwrap());
    failures.extend(bad_input_fails(
        "stdin that is not an image",
        &mut stdin,
        &out,
        &["manifest.json", "not an image", "not a docker"],
    ));

    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

// ------------------------------------------------------------------- real boots

/// Whether the real-boot harness can run; panics (CI) or returns false (local skip).
fn harness_available() -> bool {
    let mut missing = Vec::new();
    if Command::new("qemu-system-x86_64")
        .arg("--version")
        .output()
        .is_err()
    {
        missing.push("qemu-system-x86_64 (scripts/setup-harness.sh)".to_string());
    }
    let paths = [stub(), repo().join(".cache/harness/vmlinux"), debian_root()];
    fixtures_present("real boots of images", &paths, false, missing)
}

/// One L1 boot: the registry image runs its own entrypoint with its own
/// cmd, env, workdir and user over the merged layers; the Debian minbase
/// root runs dpkg. Every scenario as root and as the user `user`.
#[test]
fn images_and_a_debian_root_boot_for_real() {
    if !harness_available() {
        return;
    }
    let dir = scratch("boot");
    let files = dir.join("files");
    std::fs::create_dir_all(&files).unwrap();
    let keys = dir.join("keys");
    let o = run_limited(
        Command::new(smolvm())
            .args(["pack", "keygen", "-o"])
            .arg(&keys)
            .stdin(Stdio::null()),
        PACK_LIMIT,
    );
    assert!(o.ok(), "keygen: {}", o.stderr);
    let signed = |c: &mut Command| {
        c.arg("--key")
            .arg(keys.join("smolvm.key"))
            .arg("--stub")
            .arg(stub());
    };

    // The image half needs the registry. Whatever goes wrong with it, the
    // Debian half still boots, and the image half fails at the end.
    let image_problem = if !registry_answers() {
        let why = "no registry on 127.0.0.1:5000 (scripts/setup-registry.sh)".to_string();
        if !required() {
            eprintln!("SKIPPING the image boot: {why}");
        }
        required().then_some(why)
    } else {
        let mut c = pack_cmd(IMAGE, &files.join("img"), &[]);
        signed(&mut c);
        let o = run_limited(&mut c, PACK_LIMIT);
        eprintln!("pack {IMAGE}: {:.2} s", o.secs);
        // The same image with a shell entrypoint, to look at what its user
        // (app, 1000:1000) sees of files the layers give to root (0:0). The
        // root filesystem is the same, so the runs share its cache entry.
        std::fs::write(
            dir.join("Smolfile.img-owners"),
            format!(
                "image = \"{IMAGE}\"\nentrypoint = [\"/bin/sh\", \"-c\"]\ncmd = [\"{IMAGE_OWNERS_CMD}\"]\n"
            ),
        )
        .unwrap();
        let mut c2 = Command::new(smolvm());
        c2.args(["pack", "create", "--smolfile"])
            .arg(dir.join("Smolfile.img-owners"))
            .arg("--kernel")
            .arg(kernel())
            .arg("-o")
            .arg(files.join("img-owners"))
            .env("SOURCE_DATE_EPOCH", "1700000000")
            .stdin(Stdio::null());
        signed(&mut c2);
        let o2 = run_limited(&mut c2, PACK_LIMIT);
        match (o.ok(), o2.ok()) {
            (true, true) => None,
            (false, _) => Some(format!(
                "pack {IMAGE} failed ({:?}): {}",
                o.status, o.stderr
            )),
            (_, false) => Some(format!(
                "pack {IMAGE} with a shell entrypoint failed ({:?}): {}",
                o2.status, o2.stderr
            )),
        }
    };

    std::fs::write(
        dir.join("Smolfile.debian"),
        "entrypoint = [\"/bin/sh\", \"-c\"]\ncmd = [\"dpkg --version\"]\n[artifact]\nname = \"debian-minbase\"\nversion = \"12.0.0\"\n",
    )
    .unwrap();
    let mut c = Command::new(smolvm());
    c.args(["pack", "create", "--smolfile"])
        .arg(dir.join("Smolfile.debian"))
        .arg("--rootfs")
        .arg(debian_root())
        .arg("--kernel")
        .arg(kernel())
        // The other boots use the default (file data as is): this one
        // makes the guest kernel decompress every file it reads.
        .args(["--rootfs-compression", "lz4"])
        .arg("-o")
        .arg(files.join("debian"))
        .stdin(Stdio::null());
    signed(&mut c);
    let o = run_limited(&mut c, Duration::from_secs(600));
    assert!(o.ok(), "pack the Debian root: {:?}: {}", o.status, o.stderr);
    let size = std::fs::metadata(files.join("debian")).unwrap().len();
    eprintln!(
        "pack Debian minbase: {:.2} s, {:.1} MB",
        o.secs,
        size as f64 / 1e6
    );

    // `both` runs each scenario as root, then as `user` (uid 1000) with its
    // own cache in ~/.cache/smolvm.
    let mut script = String::from("export SMOLVM_CACHE_DIR=/tmp/smolcache\n");
    if files.join("img").exists() {
        script.push_str("both image-default ./img\n");
        script.push_str("both image-args ./img one 'two words'\n");
    }
    if files.join("img-owners").exists() {
        script.push_str("both image-owners ./img-owners\n");
    }
    script.push_str("both debian-dpkg ./debian\n");
    // Every byte of /usr as the guest reads it from the (LZ4-compressed)
    // image; the host side of the comparison is the tarball itself. The
    // content does not depend on the host user: root only.
    script.push_str(&format!(
        "scenario debian-usr-content ./debian 'cd /usr && {TREE_DIGEST}'\n"
    ));
    script.push_str(&format!(
        "both debian-release ./debian '{DEBIAN_RELEASE_CMD}'\n"
    ));
    std::fs::write(dir.join("scenarios.sh"), script).unwrap();

    let o = run_limited(
        Command::new(repo().join("tests/harness/run-l1.sh"))
            .arg("--files")
            .arg(&files)
            .arg("--script")
            .arg(dir.join("scenarios.sh"))
            .args(["--timeout", "900"])
            .stdin(Stdio::null()),
        Duration::from_secs(960),
    );
    println!("{}", o.stdout);
    assert!(
        o.ok(),
        "L1 run failed ({:?}) after {:.0} s:\n{}\n{}",
        o.status,
        o.secs,
        o.stdout,
        o.stderr
    );
    for line in o.stdout.lines().filter(|l| l.starts_with("@@SMOL-TIME")) {
        eprintln!("{line}");
    }
    eprintln!("L1 run: {:.1} s", o.secs);
    let mut s = Scenarios::parse(&o.stdout);

    s.check_both("debian-dpkg", |rc, text| {
        assert_eq!(rc, 0, "{text}");
        assert!(
            text.starts_with("Debian 'dpkg' package management program version 1.21."),
            "{text}"
        );
    });
    let want = usr_digest_on_host(&dir);
    s.check("debian-usr-content", |rc, text| {
        assert_eq!(rc, 0, "{text}");
        assert_eq!(
            text.split_whitespace().next(),
            Some(want.as_str()),
            "the guest reads /usr with other bytes than the tarball holds"
        );
    });
    s.check_both("debian-release", |rc, text| {
        assert_eq!(rc, 0, "{text}");
        let lines: Vec<&str> = text.lines().collect();
        assert!(
            lines.first().is_some_and(|l| l.starts_with("12.")),
            "{text}"
        );
        assert_eq!(lines.get(1..), Some(&DEBIAN_RELEASE_TAIL[..]), "{text}");
    });

    if let Some(p) = image_problem {
        s.fail("image fixtures", p);
    }
    if files.join("img").exists() {
        s.expect_both("image-default", 0, IMAGE_OUTPUT);
        s.check_both("image-args", |rc, text| {
            assert_eq!(rc, 0, "{text}");
            assert_eq!(
                text.lines().next(),
                Some("image entrypoint ran: hello-from-image pwd=/app args=one two words"),
                "arguments replace the image's Cmd, not its Entrypoint"
            );
        });
    }
    if files.join("img-owners").exists() {
        // The image's unprivileged user sees the layers' root-owned files as
        // root's and cannot write them, also when the host user is not root.
        s.expect_both("image-owners", 0, IMAGE_OWNERS_OUTPUT);
    }
    s.finish();
}

// ------------------------------------------------------------------- JSON

/// `pack inspect --json` output and OCI manifests.
type Json = serde_json::Value;

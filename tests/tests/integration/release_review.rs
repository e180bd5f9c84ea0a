//! Release review: `pack inspect --files` lists the root read back from the
//! artifact's EROFS image, and `pack diff A B` names exactly what changed
//! between two versions.

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use smolvm_tests::fixture::Scratch;
use smolvm_tests::smolvm;

struct Fixture(Scratch);

impl std::ops::Deref for Fixture {
    type Target = Scratch;
    fn deref(&self) -> &Scratch {
        &self.0
    }
}

impl Fixture {
    fn new() -> Self {
        let f = Fixture(Scratch::new().with_stub(&std::fs::read("/bin/true").unwrap()));
        let root = f.path("root");
        std::fs::create_dir_all(root.join("etc")).unwrap();
        std::fs::create_dir_all(root.join("bin")).unwrap();
        std::fs::write(root.join("etc/hostname"), "smol\n").unwrap();
        // Compressible, so that lz4 images store it compressed; a random
        // tail, so that its last extent is stored plain.
        let mut big = "a line of text\n".repeat(20_000).into_bytes();
        big.extend(smolvm_tests::pattern(10_000, 5));
        std::fs::write(root.join("etc/big"), big).unwrap();
        std::fs::write(root.join("bin/tool"), "#!/bin/sh\necho tool\n").unwrap();
        std::os::unix::fs::symlink("tool", root.join("bin/sh")).unwrap();
        f
    }

    /// Packs the root with a Smolfile setting `memory`, to `out`.
    fn pack(&self, memory: u32, out: &str, extra: &[&str]) -> PathBuf {
        let smolfile = self.path("Smolfile");
        std::fs::write(
            &smolfile,
            format!(
                "rootfs = \"root\"\nmemory = {memory}\n[artifact]\nname = \"app\"\nversion = \"1.0.0\"\n"
            ),
        )
        .unwrap();
        self.pack_create()
            .env("SOURCE_DATE_EPOCH", "1700000000")
            .arg("--smolfile")
            .arg(&smolfile)
            .arg("--key")
            .arg(self.path("keys/test.key"))
            .arg("-o")
            .arg(self.path(out))
            .args(extra)
            .assert()
            .code(0);
        self.path(out)
    }
}

fn json_of(cmd: &mut assert_cmd::Command, code: i32) -> serde_json::Value {
    let out = cmd.assert().code(code);
    serde_json::from_slice(&out.get_output().stdout).unwrap()
}

fn files_json(artifact: &Path) -> serde_json::Value {
    json_of(
        smolvm()
            .args(["pack", "inspect", "--files", "--json"])
            .arg(artifact),
        0,
    )
}

#[test]
fn inspect_files_lists_every_entry_with_its_hash_in_both_image_layouts() {
    let f = Fixture::new();
    for compression in ["none", "lz4"] {
        let art = f.pack(512, compression, &["--rootfs-compression", compression]);
        let files = files_json(&art);
        let entries = files.as_array().unwrap();
        let get = |p: &str| {
            entries
                .iter()
                .find(|e| e["path"] == p)
                .unwrap_or_else(|| panic!("{p} missing in {files:#}"))
        };
        let big = std::fs::read(f.path("root/etc/big")).unwrap();
        assert_eq!(get("/etc/big")["sha256"], hex::encode(Sha256::digest(&big)));
        assert_eq!(get("/etc/big")["size"], 310_000);
        assert_eq!(get("/etc/hostname")["type"], "file");
        assert_eq!(get("/bin/sh")["type"], "symlink");
        assert_eq!(get("/bin/sh")["target"], "tool");
        assert_eq!(get("/etc")["type"], "dir");
        assert_eq!(get("/")["type"], "dir");
        // The packer keeps the owner it reads from the host.
        let uid = std::os::unix::fs::MetadataExt::uid(
            &std::fs::metadata(f.path("root/etc/hostname")).unwrap(),
        );
        assert_eq!(get("/etc/hostname")["uid"], uid, "{compression}");
    }
}

#[test]
fn diff_names_exactly_the_changed_file_and_setting() {
    let f = Fixture::new();
    let a = f.pack(512, "app-1", &[]);
    std::fs::write(f.path("root/etc/hostname"), "smol2\n").unwrap();
    let b = f.pack(1024, "app-2", &[]);

    let d = json_of(smolvm().args(["pack", "diff", "--json"]).arg(&a).arg(&b), 1);
    assert_eq!(d["identical"], false);
    assert_eq!(d["identity"], serde_json::json!([]));
    assert_eq!(
        d["config"],
        serde_json::json!([{"field": "memory_mib", "a": 512, "b": 1024}]),
        "{d:#}"
    );
    assert_eq!(d["kernel"], serde_json::Value::Null);
    assert_eq!(d["files"]["added"], serde_json::json!([]));
    assert_eq!(d["files"]["removed"], serde_json::json!([]));
    let changed = d["files"]["changed"].as_array().unwrap();
    assert_eq!(changed.len(), 1, "{d:#}");
    assert_eq!(changed[0]["path"], "/etc/hostname");
    assert_eq!(changed[0]["what"], serde_json::json!(["content"]));

    let human = smolvm()
        .args(["pack", "diff"])
        .arg(&a)
        .arg(&b)
        .assert()
        .code(1);
    let text = String::from_utf8_lossy(&human.get_output().stdout).into_owned();
    assert_eq!(
        text,
        "config memory_mib: 512 -> 1024\n~ /etc/hostname: content\n"
    );

    // The same artifact: identical, exit 0. A missing one: exit 2.
    let same = smolvm()
        .args(["pack", "diff"])
        .arg(&a)
        .arg(&a)
        .assert()
        .code(0);
    assert!(String::from_utf8_lossy(&same.get_output().stdout).starts_with("identical"));
    smolvm()
        .args(["pack", "diff"])
        .arg(&a)
        .arg(f.path("nope"))
        .assert()
        .code(2);

    // Added and removed files, a mode change.
    std::fs::remove_file(f.path("root/bin/sh")).unwrap();
    std::fs::write(f.path("root/etc/new"), "n\n").unwrap();
    std::fs::set_permissions(
        f.path("root/bin/tool"),
        std::os::unix::fs::PermissionsExt::from_mode(0o700),
    )
    .unwrap();
    let c = f.pack(1024, "app-3", &[]);
    let d = json_of(smolvm().args(["pack", "diff", "--json"]).arg(&b).arg(&c), 1);
    let paths = |k: &str| -> Vec<String> {
        d["files"][k]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["path"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(paths("added"), ["/etc/new"]);
    assert_eq!(paths("removed"), ["/bin/sh"]);
    assert_eq!(paths("changed"), ["/bin/tool"]);
    assert_eq!(
        d["files"]["changed"][0]["what"],
        serde_json::json!(["mode"])
    );
}

/// The SBOM of the Debian test root (scripts/debian-root.sh, as
/// `SMOL_DEBIAN_ROOT`) lists exactly the packages `dpkg-query -W` lists for
/// that root, in a document with SPDX 2.3's required fields that the SPDX
/// project's validator (`SMOLVM_SPDX_VALIDATOR`, from
/// scripts/setup-spdx-validator.sh) accepts.
#[test]
fn sbom_of_the_debian_root_lists_what_dpkg_query_lists() {
    let Some(root) = std::env::var_os("SMOL_DEBIAN_ROOT").map(PathBuf::from) else {
        let why = "SMOL_DEBIAN_ROOT unset (scripts/debian-root.sh prints it)";
        assert!(
            std::env::var_os("SMOLVM_REQUIRE_BOOT").is_none_or(|v| v != "1"),
            "{why}"
        );
        eprintln!("SKIPPING: {why}");
        return;
    };
    let f = Fixture::new();
    // dpkg-query on that root's own database.
    let admin = f.path("admin");
    std::fs::create_dir_all(&admin).unwrap();
    let out = std::process::Command::new("tar")
        .args(["-I", "zstd", "-xf"])
        .arg(&root)
        .arg("-C")
        .arg(&admin)
        .arg("./var/lib/dpkg/status")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "tar: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = std::process::Command::new("dpkg-query")
        .arg(format!(
            "--admindir={}",
            admin.join("var/lib/dpkg").display()
        ))
        .args(["-W", "-f", "${Package}\\n"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let mut want: Vec<String> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect();
    want.sort();
    assert!(want.len() > 50, "a minbase root has ~90 packages: {want:?}");

    let art = f.path("debian.smolmachine");
    smolvm()
        .env("SOURCE_DATE_EPOCH", "1700000000")
        .args(["pack", "create", "--rootfs"])
        .arg(&root)
        .arg("--kernel")
        .arg(f.path("vmlinux"))
        .arg("--no-sign")
        .arg("-o")
        .arg(&art)
        .assert()
        .code(0);
    let doc = json_of(smolvm().args(["pack", "inspect", "--sbom"]).arg(&art), 0);
    spdx_validator_accepts(&f.path("sbom.json"), &doc);
    for field in [
        "spdxVersion",
        "dataLicense",
        "SPDXID",
        "name",
        "documentNamespace",
    ] {
        assert!(doc[field].is_string(), "{field} missing");
    }
    assert_eq!(doc["spdxVersion"], "SPDX-2.3");
    assert_eq!(doc["dataLicense"], "CC0-1.0");
    assert_eq!(doc["creationInfo"]["created"], "2023-11-14T22:13:20Z");
    assert!(doc["creationInfo"]["creators"][0]
        .as_str()
        .unwrap()
        .starts_with("Tool: smolvm-"));
    let packages = doc["packages"].as_array().unwrap();
    let mut ids = std::collections::HashSet::new();
    for p in packages {
        let id = p["SPDXID"].as_str().unwrap();
        assert!(
            id.starts_with("SPDXRef-") && ids.insert(id.to_owned()),
            "{id}"
        );
        assert!(id[8..]
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-'));
        for field in ["name", "downloadLocation"] {
            assert!(p[field].is_string(), "{id}: {field}");
        }
        assert!(p["filesAnalyzed"].is_boolean());
    }
    let mut got: Vec<String> = packages
        .iter()
        .filter(|p| {
            p["SPDXID"]
                .as_str()
                .unwrap()
                .starts_with("SPDXRef-Package-deb-")
        })
        .map(|p| p["name"].as_str().unwrap().to_owned())
        .collect();
    got.sort();
    assert_eq!(got, want);
    // Every package is related to the document's root.
    assert_eq!(
        doc["relationships"].as_array().unwrap().len(),
        packages.len()
    );
}

/// `pyspdxtools -i` (the SPDX project's parser and validator) on `doc`,
/// which must pass; and on a copy with one malformed SPDX id, which must
/// not (the validator really validates). Skipped without the validator,
/// except where the test run requires everything (`SMOLVM_REQUIRE_BOOT=1`).
fn spdx_validator_accepts(path: &Path, doc: &serde_json::Value) {
    let Some(tool) = std::env::var_os("SMOLVM_SPDX_VALIDATOR") else {
        let why = "SMOLVM_SPDX_VALIDATOR unset (scripts/setup-spdx-validator.sh prints it)";
        assert!(
            std::env::var_os("SMOLVM_REQUIRE_BOOT").is_none_or(|v| v != "1"),
            "{why}"
        );
        eprintln!("SKIPPING the SPDX validator: {why}");
        return;
    };
    let validate = |doc: &serde_json::Value| {
        std::fs::write(path, serde_json::to_vec_pretty(doc).unwrap()).unwrap();
        let out = std::process::Command::new(&tool)
            .arg("-i")
            .arg(path)
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (ok, why) = validate(doc);
    assert!(ok, "the SPDX validator refused the SBOM: {why}");
    let mut bad = doc.clone();
    bad["packages"][0]["SPDXID"] = "not an id".into();
    let (ok, _) = validate(&bad);
    assert!(!ok, "the SPDX validator accepted a malformed SPDX id");
}

/// Provenance from a faked GitHub Actions job: the statement names the
/// repository, commit, job and builder, its subjects are the artifact's
/// signed section hashes, and `pack verify --source` holds it to them.
#[test]
fn provenance_from_a_ci_job_and_verify_source() {
    let f = Fixture::new();
    let commit = "0123456789abcdef0123456789abcdef01234567";
    let gh = [
        ("GITHUB_ACTIONS", "true"),
        ("GITHUB_SERVER_URL", "https://github.com"),
        ("GITHUB_REPOSITORY", "me/app"),
        ("GITHUB_SHA", commit),
        ("GITHUB_REF", "refs/tags/v1.0.0"),
        ("GITHUB_RUN_ID", "4242"),
        ("GITHUB_RUN_ATTEMPT", "2"),
        (
            "GITHUB_WORKFLOW_REF",
            "me/app/.github/workflows/release.yml@refs/tags/v1.0.0",
        ),
        ("RUNNER_ENVIRONMENT", "github-hosted"),
    ];
    let smolfile = f.path("Smolfile");
    std::fs::write(&smolfile, "rootfs = \"root\"\n").unwrap();
    let create = |out: &str, env: &[(&str, &str)]| {
        let mut c = f.pack_create();
        for k in ["GITHUB_ACTIONS", "GITLAB_CI", "SMOLVM_SOURCE_REPO"] {
            c.env_remove(k);
        }
        c.envs(env.iter().copied())
            .env("SOURCE_DATE_EPOCH", "1700000000")
            .arg("--smolfile")
            .arg(&smolfile)
            .arg("--key")
            .arg(f.path("keys/test.key"))
            .arg("-o")
            .arg(f.path(out))
            .assert()
            .code(0);
        f.path(out)
    };
    let art = create("from-ci", &gh);
    let st = json_of(
        smolvm().args(["pack", "inspect", "--provenance"]).arg(&art),
        0,
    );
    assert_eq!(st["_type"], "https://in-toto.io/Statement/v1");
    assert_eq!(st["predicateType"], "https://slsa.dev/provenance/v1");
    let p = &st["predicate"];
    let deps = p["buildDefinition"]["resolvedDependencies"]
        .as_array()
        .unwrap();
    let dep = |name: &str| {
        deps.iter()
            .find(|d| d["name"] == name)
            .unwrap_or_else(|| panic!("{name} missing: {st:#}"))
    };
    assert_eq!(
        dep("source")["uri"],
        "git+https://github.com/me/app@refs/tags/v1.0.0"
    );
    assert_eq!(dep("source")["digest"]["gitCommit"], commit);
    let kernel = std::fs::read(f.path("vmlinux")).unwrap();
    assert_eq!(
        dep("kernel")["digest"]["sha256"],
        hex::encode(Sha256::digest(&kernel))
    );
    let sf = std::fs::read(&smolfile).unwrap();
    assert_eq!(
        dep("smolfile")["digest"]["sha256"],
        hex::encode(Sha256::digest(&sf))
    );
    assert!(dep("stub")["digest"]["sha256"].is_string());
    assert_eq!(
        p["runDetails"]["builder"]["id"],
        "https://github.com/actions/runner/github-hosted"
    );
    assert_eq!(
        p["runDetails"]["metadata"]["invocationId"],
        "https://github.com/me/app/actions/runs/4242/attempts/2"
    );
    assert_eq!(
        p["runDetails"]["metadata"]["startedOn"],
        "2023-11-14T22:13:20Z"
    );
    // The subjects are the signed hashes of the sections beside it.
    let inspect = json_of(smolvm().args(["pack", "inspect", "--json"]).arg(&art), 0);
    for s in st["subject"].as_array().unwrap() {
        let kind = s["name"].as_str().unwrap().rsplit('/').next().unwrap();
        let section = inspect["sections"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["kind"] == kind)
            .unwrap();
        assert_eq!(s["digest"]["sha256"], section["sha256"], "{kind}");
    }
    assert_eq!(st["subject"].as_array().unwrap().len(), 4);

    let verify = |file: &Path, source: &str| {
        let out = smolvm()
            .args(["pack", "verify", "--key"])
            .arg(f.path("keys/test.pub"))
            .args(["--source", source])
            .arg(file)
            .output()
            .unwrap();
        (
            out.status.code().unwrap(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    assert_eq!(verify(&art, "https://github.com/me/app").0, 0);
    assert_eq!(
        verify(&art, &format!("github.com/me/app@{}", &commit[..7])).0,
        0
    );
    let (code, err) = verify(&art, "github.com/me/fork");
    assert_eq!(code, 1);
    assert!(
        err.contains("wrong-source") && err.contains("github.com/me/app"),
        "{err}"
    );
    assert_eq!(verify(&art, "github.com/me/app@fedcba9").0, 1);
    assert_eq!(verify(&art, "github.com/me/app@nothex").0, 2);

    // Packed outside CI: no source to vouch for.
    let local = create("local", &[]);
    let (code, err) = verify(&local, "github.com/me/app");
    assert_eq!(code, 1);
    assert!(err.contains("names no source"), "{err}");
    // A GitLab job names its project.
    let gl = create(
        "from-gitlab",
        &[
            ("GITLAB_CI", "true"),
            ("CI_SERVER_URL", "https://gitlab.example"),
            ("CI_PROJECT_URL", "https://gitlab.example/grp/app"),
            ("CI_COMMIT_SHA", commit),
            ("CI_COMMIT_BRANCH", "main"),
            ("CI_JOB_URL", "https://gitlab.example/grp/app/-/jobs/7"),
        ],
    );
    assert_eq!(
        verify(&gl, &format!("gitlab.example/grp/app@{commit}")).0,
        0
    );
}

/// An installed smolvm gets its kernel by itself: `pack kernel fetch`
/// downloads Debian's pinned libkrunfw into the per-user cache, checks it,
/// and `pack create` without --kernel then packs it. Needs Debian's mirror
/// (SMOLVM_DEBIAN_MIRROR); skips without it unless real runs are required.
#[test]
fn kernel_fetch_fills_the_cache_that_pack_create_reads() {
    let f = Fixture::new();
    let cache = f.path("cache");
    let fetch = |extra: &[&str]| {
        smolvm()
            .env("SMOLVM_CACHE_DIR", &cache)
            .args(["pack", "kernel", "fetch"])
            .args(extra)
            .output()
            .unwrap()
    };
    let out = fetch(&[]);
    if out.status.code() == Some(2) {
        let why = format!(
            "no Debian mirror: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
        assert!(
            std::env::var_os("SMOLVM_REQUIRE_BOOT").is_none_or(|v| v != "1"),
            "{why}"
        );
        eprintln!("SKIPPING: {why}");
        return;
    }
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lib = cache.join("kernel/libkrunfw.so.5");
    assert_eq!(
        hex::encode(Sha256::digest(std::fs::read(&lib).unwrap())),
        smolvm_packer::kernel_fetch::PINNED.library_sha256
    );
    // A second run finds the verified copy.
    let again = fetch(&[]);
    assert!(String::from_utf8_lossy(&again.stdout).contains("already verified"));
    // A cached copy that was changed is replaced, not trusted.
    std::fs::write(&lib, b"not a kernel").unwrap();
    assert_eq!(fetch(&[]).status.code(), Some(0));
    assert_eq!(
        hex::encode(Sha256::digest(std::fs::read(&lib).unwrap())),
        smolvm_packer::kernel_fetch::PINNED.library_sha256
    );
    // A .deb that is not the pinned one: exit 1, the cache untouched.
    std::fs::write(f.path("other.deb"), b"!<arch>\nsomething else").unwrap();
    let bad = fetch(&["--force", "--deb", f.path("other.deb").to_str().unwrap()]);
    assert_eq!(bad.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("expected the pinned"));
    assert_eq!(
        hex::encode(Sha256::digest(std::fs::read(&lib).unwrap())),
        smolvm_packer::kernel_fetch::PINNED.library_sha256
    );

    let out = f.path("with-fetched-kernel.smolmachine");
    smolvm()
        .env("SMOLVM_CACHE_DIR", &cache)
        .current_dir(f.dir())
        .args(["pack", "create", "--rootfs", "root", "--no-sign", "-o"])
        .arg(&out)
        .assert()
        .code(0);
}

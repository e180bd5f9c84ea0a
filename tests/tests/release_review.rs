//! Release review: `pack inspect --files` lists the root read back from the
//! artifact's EROFS image, and `pack diff A B` names exactly what changed
//! between two versions.

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use smolvm_tests::{fake_kernel, smolvm, test_key, write_key_files};

struct Fixture {
    dir: tempfile::TempDir,
}

impl Fixture {
    fn new() -> Self {
        let f = Fixture {
            dir: tempfile::tempdir().unwrap(),
        };
        write_key_files(&f.path("keys"), "test", &test_key());
        std::fs::write(f.path("vmlinux"), fake_kernel()).unwrap();
        std::fs::copy("/bin/true", f.path("stub")).unwrap();
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

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
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
        smolvm()
            .env("SOURCE_DATE_EPOCH", "1700000000")
            .args(["pack", "create", "--smolfile"])
            .arg(&smolfile)
            .arg("--kernel")
            .arg(self.path("vmlinux"))
            .arg("--stub")
            .arg(self.path("stub"))
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

//! Key rotation (issue 21; SECURITY-CHECKLIST item 23): `pack create
//! --rotate-from OLD` records the old key endorsing the new one, and a
//! start whose remembered signer (trust on first use) is that old key
//! accepts the new signer and remembers it instead, with one line on
//! stderr. Any other signer stays refused. Run on the release stub with
//! `--smolvm-dry-run` (verify and prepare, no VM).

use std::ffi::OsStr;
use std::path::{Path, PathBuf};

use crate::common::{expect, Machine};
use smolvm_signing::{PublicKey, SecretKey};
use smolvm_tests::{layout_of, other_key, write_key_files};

/// A third key, beside `test` (A) and `other` (B).
fn third_key() -> SecretKey {
    SecretKey::from_seed(&[0x33; 32])
}

fn key_id(m: &Machine, name: &str) -> String {
    PublicKey::read_file(&m.pubkey(name))
        .unwrap()
        .key_id()
        .to_string()
}

/// Packs `name` signed by `key`, with `--rotate-from` each of `from`.
fn pack_rotated(m: &Machine, name: &str, key: &str, from: &[&str], tag: &str) -> PathBuf {
    let paths: Vec<PathBuf> = from
        .iter()
        .map(|k| m.path(&format!("keys/{k}.key")))
        .collect();
    let mut extra: Vec<&OsStr> = Vec::new();
    for p in &paths {
        extra.push(OsStr::new("--rotate-from"));
        extra.push(p.as_os_str());
    }
    m.pack_args(name, "1.0.0", key, "", &extra, tag)
}

/// The packed executable `exe` with its manifest text changed by `edit`,
/// signed again by `key`: a sound artifact signature over a record the
/// old key did not make.
fn resigned(exe: &Path, key: &SecretKey, edit: impl Fn(String) -> String, out: &Path) {
    let bytes = std::fs::read(exe).unwrap();
    let l = layout_of(&bytes).unwrap();
    let slice = |r: &std::ops::Range<u64>| {
        bytes[usize::try_from(r.start).unwrap()..usize::try_from(r.end).unwrap()].to_vec()
    };
    let manifest = edit(String::from_utf8(slice(&l.manifest)).unwrap());
    let stored: Vec<Vec<u8>> = l.sections.iter().map(|(_, r)| slice(r)).collect();
    let stub = &bytes[..usize::try_from(l.payload_offset).unwrap()];
    let fixed = smolvm_tests::assemble(stub, manifest.as_bytes(), &stored, Some(key));
    std::fs::write(out, fixed).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(out, std::fs::Permissions::from_mode(0o755)).unwrap();
}

/// Runs `cmd`, asserts its exit code and that stderr holds `needle`.
#[track_caller]
fn fails(cmd: &mut assert_cmd::Command, code: i32, needle: &str) {
    let out = cmd.output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(code), "{err}");
    assert!(err.contains(needle), "{needle:?} not in {err}");
}

fn pinned(m: &Machine) -> String {
    std::fs::read_to_string(m.path("state/smolvm/known-signers.json")).unwrap()
}

/// Whether `name` is pinned to the key whose id is `id`: the id in the
/// known-signers file, the whole key beside it.
fn pins(m: &Machine, name: &str, id: &str) -> bool {
    let key = ["test", "other", "third"]
        .into_iter()
        .map(|k| PublicKey::read_file(&m.pubkey(k)).unwrap())
        .find(|k| k.key_id().to_string() == id)
        .expect("one of the test keys");
    let keys = std::fs::read_to_string(m.path("state/smolvm/known-signers.keys.json")).unwrap();
    pinned(m).contains(&format!("\"{name}\": \"{id}\""))
        && keys.contains(&format!("\"{name}\": \"{}\"", hex::encode(key.to_bytes())))
}

#[test]
fn a_new_key_endorsed_by_the_pinned_one_is_accepted_and_pinned() {
    let Some(m) = Machine::new() else { return };
    write_key_files(&m.path("keys"), "third", &third_key());
    let (a, b, c) = (key_id(&m, "test"), key_id(&m, "other"), key_id(&m, "third"));
    let by_a = m.pack("notes", "1.0.0", "test");
    let by_b = m.pack("notes", "1.0.0", "other");
    let b_from_a = pack_rotated(&m, "notes", "other", &["test"], "-from-a");
    // A pins; B without a record is refused, naming both keys and the ways
    // to accept it.
    expect(&m.run(&by_a, &[]), 0, &[]);
    expect(
        &m.run(&by_b, &[]),
        1,
        &[&b, &a, "--smolvm-key=NEW.pub", "pack trust forget notes"],
    );
    // --smolvm-info shows that the pinned key endorsed the new one.
    let info = m.run(&b_from_a, &["--smolvm-info"]);
    let shown = String::from_utf8_lossy(&info.stdout);
    assert!(
        shown.contains(&format!("rotated     {a} -> {b}"))
            && shown.contains("it endorsed that key"),
        "{shown}"
    );
    // B with A's record: accepted, one line, and B is pinned from now on.
    let err = expect(&m.run(&b_from_a, &[]), 0, &[]);
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 1, "{err}");
    assert!(
        lines[0].contains(&format!("signer key {b} is endorsed by key {a}")),
        "{err}"
    );
    assert!(pins(&m, "notes", &b), "{}", pinned(&m));
    // Now plain B starts quietly; A's old artifact is another signer.
    let err = expect(&m.run(&by_b, &[]), 0, &[]);
    assert!(err.is_empty(), "{err}");
    expect(&m.run(&by_a, &[]), 1, &[&a, &b]);
    // A chain A -> B -> C: accepted with B pinned (and it would be with A).
    let c_from_ab = pack_rotated(&m, "notes", "third", &["test", "other"], "-from-ab");
    expect(&m.run(&c_from_ab, &[]), 0, &[]);
    assert!(pins(&m, "notes", &c), "{}", pinned(&m));
}

#[test]
fn a_record_from_another_key_name_or_altered_is_refused() {
    let Some(m) = Machine::new() else { return };
    write_key_files(&m.path("keys"), "third", &third_key());
    let (a, b) = (key_id(&m, "test"), key_id(&m, "other"));
    let by_a = m.pack("notes", "1.0.0", "test");
    expect(&m.run(&by_a, &[]), 0, &[]);
    // Endorsed by a third key, not the pinned one: a signer change.
    let b_from_third = pack_rotated(&m, "notes", "other", &["third"], "-from-third");
    expect(
        &m.run(&b_from_third, &[]),
        1,
        &[&b, &a, "pack trust forget"],
    );
    // A's record for another name, carried into a `notes` signed by B.
    let for_other = pack_rotated(&m, "notes2", "other", &["test"], "-from-a");
    let grafted = m.path("grafted");
    resigned(
        &for_other,
        &other_key(),
        |t| t.replace("\"name\":\"notes2\"", "\"name\":\"notes\""),
        &grafted,
    );
    expect(
        &m.run(&grafted, &[]),
        1,
        &["key rotation record", &format!("key {a} did not sign")],
    );
    // A's record with one signature character changed.
    let b_from_a = pack_rotated(&m, "notes", "other", &["test"], "-from-a");
    let tampered = m.path("tampered");
    resigned(
        &b_from_a,
        &other_key(),
        |t| {
            let at = t.find("\"signature\":\"").unwrap() + 13;
            let mut bytes = t.into_bytes();
            bytes[at] = if bytes[at] == b'0' { b'1' } else { b'0' };
            String::from_utf8(bytes).unwrap()
        },
        &tampered,
    );
    expect(&m.run(&tampered, &[]), 1, &["key rotation record"]);
    // pack verify calls both invalid too, with the signer's key trusted.
    for f in [&grafted, &tampered] {
        fails(
            smolvm_tests::smolvm()
                .args(["pack", "verify", "--key"])
                .arg(m.pubkey("other"))
                .arg(f),
            1,
            "invalid: key rotation record",
        );
    }
    // Nothing moved the pin.
    assert!(pins(&m, "notes", &a), "{}", pinned(&m));
}

#[test]
fn inspect_and_verify_show_the_record() {
    let Some(m) = Machine::new() else { return };
    let (a, b) = (key_id(&m, "test"), key_id(&m, "other"));
    let b_from_a = pack_rotated(&m, "notes", "other", &["test"], "-from-a");
    let out = smolvm_tests::smolvm()
        .args(["pack", "inspect"])
        .arg(&b_from_a)
        .env("XDG_STATE_HOME", m.path("state"))
        .output()
        .unwrap();
    let shown = String::from_utf8_lossy(&out.stdout);
    assert!(
        shown.contains(&format!(
            "rotated     {a} -> {b} (each key endorsed the next for this name: verified)"
        )),
        "{shown}"
    );
    let out = smolvm_tests::smolvm()
        .args(["pack", "inspect", "--json"])
        .arg(&b_from_a)
        .env("XDG_STATE_HOME", m.path("state"))
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["format_version"], 5);
    assert_eq!(v["signature"]["rotation"], serde_json::json!([a, b]), "{v}");
    assert_eq!(
        v["signature"]["signer"]["rotated_from"][0]["key_id"],
        a.as_str()
    );
    let out = smolvm_tests::smolvm()
        .args(["pack", "verify", "--json", "--key"])
        .arg(m.pubkey("other"))
        .arg(&b_from_a)
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["valid"], true, "{v}");
    assert_eq!(v["rotation"], serde_json::json!([a, b]), "{v}");
    let out = smolvm_tests::smolvm()
        .args(["pack", "verify", "--key"])
        .arg(m.pubkey("other"))
        .arg(&b_from_a)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains(&format!("key rotation record verified: {a} -> {b}")),
        "{text}"
    );
}

#[test]
fn pack_create_refuses_a_record_that_would_not_verify() {
    let Some(m) = Machine::new() else { return };
    let create = |extra: &[&OsStr]| {
        let mut c = smolvm_tests::smolvm();
        c.args(["pack", "create", "--rootfs"])
            .arg(m.path("root"))
            .arg("--kernel")
            .arg(m.path("vmlinux"))
            .arg("--stub")
            .arg(&m.stub)
            .args(extra)
            .arg("-o")
            .arg(m.path("out"));
        c
    };
    let a = m.path("keys/test.key");
    let b = m.path("keys/other.key");
    let flag = |s| OsStr::new(s);
    // The signing key endorsing itself, or a key given twice.
    fails(
        &mut create(&[
            flag("--key"),
            b.as_os_str(),
            flag("--rotate-from"),
            b.as_os_str(),
        ]),
        2,
        "is the signing key",
    );
    fails(
        &mut create(&[
            flag("--key"),
            b.as_os_str(),
            flag("--rotate-from"),
            a.as_os_str(),
            flag("--rotate-from"),
            a.as_os_str(),
        ]),
        2,
        "given twice",
    );
    // Unsigned, or both keys on standard input.
    fails(
        &mut create(&[flag("--no-sign"), flag("--rotate-from"), a.as_os_str()]),
        2,
        "--rotate-from",
    );
    fails(
        &mut create(&[flag("--key"), flag("-"), flag("--rotate-from"), flag("-")]),
        2,
        "one key",
    );
    assert!(!m.path("out").exists());
}

/// The data follows the key: after a start accepts B as endorsed by the
/// remembered A, A's storage disk of that name is B's (moved, one note
/// line beside the rotation line); B without the record would get none.
#[test]
fn the_storage_disk_follows_the_endorsed_key() {
    let Some(m) = Machine::new() else { return };
    let (a, b) = (key_id(&m, "test"), key_id(&m, "other"));
    let smolfile = "volumes = [\"/state\"]\nstorage = 1\n";
    let by_a = m.pack_with("notes", "1.0.0", "test", smolfile);
    let old = m.path("keys/test.key");
    let b_from_a = m.pack_args(
        "notes",
        "1.0.0",
        "other",
        smolfile,
        &[OsStr::new("--rotate-from"), old.as_os_str()],
        "-from-a",
    );
    expect(&m.run(&by_a, &[]), 0, &[]);
    let storage = |k: &str| m.path(&format!("data/smolvm/storage/{k}/notes.ext4"));
    assert!(storage(&a).exists());
    let err = expect(&m.run(&b_from_a, &[]), 0, &[]);
    assert!(err.contains(&format!("endorsed by key {a}")), "{err}");
    assert!(err.contains("with its signer's new key"), "{err}");
    assert_eq!(err.lines().count(), 2, "{err}");
    assert!(storage(&b).exists() && !storage(&a).exists());
    // The next start: nothing more to say.
    let err = expect(&m.run(&b_from_a, &[]), 0, &[]);
    assert!(err.is_empty(), "{err}");
}

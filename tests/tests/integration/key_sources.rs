//! `pack create --key` from sources that keep the secret off the disk: an
//! environment variable, standard input, an ssh-agent, a PKCS#11 token
//! (SoftHSM2). Ed25519 is deterministic, so each must give the very bytes
//! the same key gives from a file, and `pack verify --key PUB` must accept
//! them.
//!
//! Needs ssh-agent/ssh-add/ssh-keygen (openssh-client) and SoftHSM2 with
//! pkcs11-tool (`scripts/setup-signing-tokens.sh` installs them; the
//! PKCS#11 tests skip without them unless SMOLVM_REQUIRE_BOOT=1, as in CI).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::object::{Attribute, KeyType, ObjectClass};
use cryptoki::session::UserType;
use cryptoki::types::AuthPin;
use smolvm_tests::fixture::{stderr_text as stderr, Scratch};
use smolvm_tests::{smolvm, test_key, TEST_SEED};

const SOFTHSM_MODULE: &str = "/usr/lib/softhsm/libsofthsm2.so";
const PIN: &str = "1234";

/// A scratch directory with the test key, a kernel, a root and a stub.
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
        std::fs::write(root.join("etc/hostname"), "smol\n").unwrap();
        f
    }

    /// `pack create … --key KEY -o OUT` with fixed time, so equal keys
    /// give equal bytes.
    fn create(&self, key: &str, out: &str) -> assert_cmd::Command {
        let mut cmd = self.pack_create();
        cmd.env("SOURCE_DATE_EPOCH", "1700000000")
            .arg("--rootfs")
            .arg(self.path("root"))
            .arg("--name")
            .arg("signed")
            .arg("-o")
            .arg(self.path(out))
            .arg("--key")
            .arg(key);
        cmd
    }

    fn verify(&self, out: &str, public: &Path) {
        smolvm()
            .args(["pack", "verify", "--key"])
            .arg(public)
            .arg(self.path(out))
            .assert()
            .code(0);
    }

    fn bytes(&self, out: &str) -> Vec<u8> {
        std::fs::read(self.path(out)).unwrap()
    }
}

#[test]
fn env_and_stdin_keys_sign_the_bytes_the_key_file_signs() {
    let f = Fixture::new();
    let key_file = f.path("keys/test.key");
    f.create(key_file.to_str().unwrap(), "file")
        .assert()
        .code(0);
    let text = std::fs::read_to_string(&key_file).unwrap();

    f.create("env:SMOLVM_TEST_SIGNING_KEY", "env")
        .env("SMOLVM_TEST_SIGNING_KEY", text.trim_end())
        .assert()
        .code(0);
    f.create("-", "stdin")
        .write_stdin(text.clone())
        .assert()
        .code(0);
    for out in ["env", "stdin"] {
        f.verify(out, &f.path("keys/test.pub"));
        assert!(f.bytes(out) == f.bytes("file"), "{out} differs from file");
    }

    // Failures name the source and quote none of the value.
    let unset = f
        .create("env:SMOLVM_TEST_UNSET_KEY", "x")
        .env_remove("SMOLVM_TEST_UNSET_KEY")
        .assert()
        .code(2);
    assert!(
        stderr(&unset).contains("SMOLVM_TEST_UNSET_KEY is not set"),
        "{}",
        stderr(&unset)
    );
    let secretish = "not-a-key-but-maybe-a-secret";
    let bad = f
        .create("env:SMOLVM_TEST_SIGNING_KEY", "x")
        .env("SMOLVM_TEST_SIGNING_KEY", secretish)
        .assert()
        .code(1);
    assert!(
        stderr(&bad).contains("env:SMOLVM_TEST_SIGNING_KEY"),
        "{}",
        stderr(&bad)
    );
    assert!(!stderr(&bad).contains(secretish), "{}", stderr(&bad));
    assert!(!f.path("x").exists());
}

/// An ssh-agent of our own on a socket in the scratch directory, killed on
/// drop.
struct Agent {
    child: Child,
    socket: PathBuf,
}

impl Agent {
    fn start(dir: &Path) -> Agent {
        let socket = dir.join("agent.sock");
        let child = Command::new("ssh-agent")
            .arg("-D")
            .arg("-a")
            .arg(&socket)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("ssh-agent (openssh-client) runs");
        for _ in 0..200 {
            if socket.exists() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        assert!(socket.exists(), "ssh-agent made no socket");
        Agent { child, socket }
    }

    fn add(&self, key: &Path) {
        let out = Command::new("ssh-add")
            .arg(key)
            .env("SSH_AUTH_SOCK", &self.socket)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "ssh-add: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn ssh_keygen(path: &Path, comment: &str) {
    let out = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", comment, "-f"])
        .arg(path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "ssh-keygen: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn fingerprint(public: &Path) -> String {
    let out = Command::new("ssh-keygen")
        .arg("-lf")
        .arg(public)
        .output()
        .unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    text.split(' ')
        .nth(1)
        .expect("ssh-keygen -l: bits fingerprint comment")
        .to_owned()
}

#[test]
fn an_ssh_agent_key_signs_the_bytes_its_key_file_signs() {
    let f = Fixture::new();
    let id = f.path("id_ed25519");
    let other = f.path("id_other");
    ssh_keygen(&id, "release@ci");
    ssh_keygen(&other, "someone-else");
    let id_pub = f.path("id_ed25519.pub");
    f.create(id.to_str().unwrap(), "file").assert().code(0);

    let agent = Agent::start(f.dir());
    let with_agent = |key: &str, out: &str| {
        let mut c = f.create(key, out);
        c.env("SSH_AUTH_SOCK", &agent.socket);
        c
    };
    // An empty agent: nothing to sign with, said plainly.
    let empty = with_agent("ssh-agent", "x").assert().code(2);
    assert!(
        stderr(&empty).contains("holds no ed25519 key"),
        "{}",
        stderr(&empty)
    );

    agent.add(&id);
    with_agent("ssh-agent", "agent").assert().code(0);
    f.verify("agent", &id_pub);
    assert!(
        f.bytes("agent") == f.bytes("file"),
        "agent artifact differs"
    );

    // Two keys: the choice must be made, by fingerprint, key id or comment.
    agent.add(&other);
    let two = with_agent("ssh-agent", "x").assert().code(2);
    assert!(
        stderr(&two).contains("several ed25519 keys"),
        "{}",
        stderr(&two)
    );
    let fp = fingerprint(&id_pub);
    with_agent(&format!("ssh-agent:{fp}"), "by-fp")
        .assert()
        .code(0);
    with_agent("ssh-agent:release@ci", "by-comment")
        .assert()
        .code(0);
    for out in ["by-fp", "by-comment"] {
        assert!(f.bytes(out) == f.bytes("file"), "{out} differs");
    }
    let none = with_agent("ssh-agent:SHA256:nope", "x").assert().code(2);
    assert!(
        stderr(&none).contains(&fp),
        "lists what it holds: {}",
        stderr(&none)
    );

    let no_sock = f
        .create("ssh-agent", "x")
        .env_remove("SSH_AUTH_SOCK")
        .assert()
        .code(2);
    assert!(
        stderr(&no_sock).contains("SSH_AUTH_SOCK is not set"),
        "{}",
        stderr(&no_sock)
    );
}

/// True when SoftHSM2 and pkcs11-tool are here; otherwise skips, or fails
/// when real runs are required.
fn softhsm_ready() -> bool {
    let ok = Path::new(SOFTHSM_MODULE).is_file()
        && Command::new("softhsm2-util")
            .arg("--version")
            .output()
            .is_ok()
        && Command::new("pkcs11-tool").arg("--help").output().is_ok();
    if !ok {
        let why = "SoftHSM2 or pkcs11-tool missing (run scripts/setup-signing-tokens.sh)";
        assert!(
            std::env::var_os("SMOLVM_REQUIRE_BOOT").is_none_or(|v| v != "1"),
            "{why}"
        );
        eprintln!("SKIPPING: {why}");
    }
    ok
}

/// A SoftHSM2 token "ci" (user PIN 1234) whose files live in `dir`.
fn softhsm_token(dir: &Path) -> PathBuf {
    let tokens = dir.join("tokens");
    std::fs::create_dir_all(&tokens).unwrap();
    let conf = dir.join("softhsm2.conf");
    std::fs::write(
        &conf,
        format!(
            "directories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\n",
            tokens.display()
        ),
    )
    .unwrap();
    let out = Command::new("softhsm2-util")
        .env("SOFTHSM2_CONF", &conf)
        .args([
            "--init-token",
            "--free",
            "--label",
            "ci",
            "--so-pin",
            "0000",
            "--pin",
            PIN,
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "softhsm2-util: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    conf
}

/// `CKA_EC_PARAMS` of Ed25519 as SoftHSM2 and pkcs11-tool write it: the
/// PrintableString "edwards25519".
const EDWARDS25519_PARAMS: &[u8] = b"\x13\x0cedwards25519";

/// Imports the test key into the token as an ed25519 key pair (label
/// "smolvm", id 01), as an operator would move a key into an HSM.
fn import_test_key(conf: &Path) {
    // SoftHSM2 reads its configuration at C_Initialize, from this variable;
    // this test process holds no other PKCS#11 context.
    std::env::set_var("SOFTHSM2_CONF", conf);
    let pkcs11 = Pkcs11::new(SOFTHSM_MODULE).unwrap();
    pkcs11
        .initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK))
        .unwrap();
    let slot = pkcs11.get_slots_with_token().unwrap()[0];
    let session = pkcs11.open_rw_session(slot).unwrap();
    session
        .login(UserType::User, Some(&AuthPin::new(PIN.into())))
        .unwrap();
    let common = |class| {
        vec![
            Attribute::Class(class),
            Attribute::KeyType(KeyType::EC_EDWARDS),
            Attribute::Token(true),
            Attribute::Label(b"smolvm".to_vec()),
            Attribute::Id(vec![1]),
            Attribute::EcParams(EDWARDS25519_PARAMS.to_vec()),
        ]
    };
    let mut private = common(ObjectClass::PRIVATE_KEY);
    private.extend([
        Attribute::Private(true),
        Attribute::Sensitive(true),
        Attribute::Sign(true),
        Attribute::Value(TEST_SEED.to_vec()),
    ]);
    session.create_object(&private).unwrap();
    let mut point = vec![0x04, 0x20];
    point.extend(test_key().public_key().to_bytes());
    let mut public = common(ObjectClass::PUBLIC_KEY);
    public.extend([Attribute::Verify(true), Attribute::EcPoint(point)]);
    session.create_object(&public).unwrap();
}

#[test]
fn a_pkcs11_token_key_signs_the_bytes_its_key_file_signs() {
    if !softhsm_ready() {
        return;
    }
    let f = Fixture::new();
    let conf = softhsm_token(f.dir());
    import_test_key(&conf);
    f.create(f.path("keys/test.key").to_str().unwrap(), "file")
        .assert()
        .code(0);

    let uri = format!("pkcs11:token=ci;object=smolvm;type=private?module-path={SOFTHSM_MODULE}");
    let with_token = |key: &str, out: &str| {
        let mut c = f.create(key, out);
        c.env("SOFTHSM2_CONF", &conf).env("SMOLVM_PKCS11_PIN", PIN);
        c
    };
    let pubkey = smolvm()
        .env("SOFTHSM2_CONF", &conf)
        .env("SMOLVM_PKCS11_PIN", PIN)
        .args(["pack", "pubkey", "--key", &uri])
        .assert()
        .code(0);
    assert_eq!(
        String::from_utf8_lossy(&pubkey.get_output().stdout),
        test_key().public_key().to_file_string()
    );
    with_token(&uri, "token").assert().code(0);
    f.verify("token", &f.path("keys/test.pub"));
    assert!(
        f.bytes("token") == f.bytes("file"),
        "token artifact differs"
    );

    // By id, with the module and PIN from the environment only.
    let by_id = with_token("pkcs11:token=ci;id=%01", "by-id")
        .env("SMOLVM_PKCS11_MODULE", SOFTHSM_MODULE)
        .assert()
        .code(0);
    assert!(
        stderr(&by_id).contains("signed by key 3c09b807520d5931"),
        "{}",
        stderr(&by_id)
    );
    assert!(f.bytes("by-id") == f.bytes("file"));

    // A wrong PIN, no PIN, an unknown label: refused, naming the fault.
    let wrong = with_token(&uri, "x")
        .env("SMOLVM_PKCS11_PIN", "9999")
        .assert()
        .code(2);
    assert!(stderr(&wrong).contains("wrong PIN"), "{}", stderr(&wrong));
    let no_pin = with_token(&uri, "x")
        .env_remove("SMOLVM_PKCS11_PIN")
        .assert()
        .code(2);
    assert!(
        stderr(&no_pin).contains("needs a PIN"),
        "{}",
        stderr(&no_pin)
    );
    let missing = with_token(
        &format!("pkcs11:token=ci;object=nope?module-path={SOFTHSM_MODULE}"),
        "x",
    )
    .assert()
    .code(2);
    assert!(
        stderr(&missing).contains("no ed25519"),
        "{}",
        stderr(&missing)
    );
    assert!(!f.path("x").exists());
}

/// A key made inside the token by pkcs11-tool (never extractable): the
/// artifact names it as signer and verifies under its public key.
#[test]
fn a_key_generated_in_the_token_signs_verifiable_artifacts() {
    if !softhsm_ready() {
        return;
    }
    let f = Fixture::new();
    let conf = softhsm_token(f.dir());
    let out = Command::new("pkcs11-tool")
        .env("SOFTHSM2_CONF", &conf)
        .args([
            "--module",
            SOFTHSM_MODULE,
            "--token-label",
            "ci",
            "--login",
            "--pin",
            PIN,
        ])
        .args([
            "--keypairgen",
            "--key-type",
            "EC:edwards25519",
            "--label",
            "gen",
            "--id",
            "02",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "pkcs11-tool: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Its public key, as pkcs11-tool lists it ("EC_POINT: 0420<32 bytes>").
    let out = Command::new("pkcs11-tool")
        .env("SOFTHSM2_CONF", &conf)
        .args([
            "--module",
            SOFTHSM_MODULE,
            "--token-label",
            "ci",
            "--list-objects",
        ])
        .args(["--type", "pubkey", "--label", "gen"])
        .output()
        .unwrap();
    let listing = String::from_utf8_lossy(&out.stdout).into_owned();
    let point = listing
        .lines()
        .find_map(|l| l.trim().strip_prefix("EC_POINT:"))
        .unwrap_or_else(|| panic!("no EC_POINT in {listing}"));
    let point = hex::decode(point.trim()).unwrap();
    let key: [u8; 32] = point
        .strip_prefix(&[0x04, 0x20][..])
        .unwrap()
        .try_into()
        .unwrap();
    let public = smolvm_signing::PublicKey::from_bytes(&key).unwrap();
    std::fs::write(f.path("gen.pub"), public.to_file_string()).unwrap();

    f.create(
        &format!("pkcs11:token=ci;object=gen?module-path={SOFTHSM_MODULE}"),
        "gen",
    )
    .env("SOFTHSM2_CONF", &conf)
    .env("SMOLVM_PKCS11_PIN", PIN)
    .assert()
    .code(0);
    f.verify("gen", &f.path("gen.pub"));
    smolvm()
        .args(["pack", "verify", "--key"])
        .arg(f.path("keys/test.pub"))
        .arg(f.path("gen"))
        .assert()
        .code(1);
}

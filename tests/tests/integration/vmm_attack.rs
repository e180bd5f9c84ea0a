//! The VMM process once the guest runs, attacked from where a hostile
//! guest kernel stands (security checklist item 17), on this host.
//!
//! A `.smolmachine` carries its own guest kernel, so once the guest runs,
//! the VMM (libkrun inside the stub's child) must be treated as the
//! attacker's. tests/harness/attack.c, loaded with `LD_PRELOAD` (no hook in
//! the stub), runs the attacks on the VMM's first `KVM_RUN` (the guest is
//! about to run: a sandbox applied before `krun_start_enter` is in force)
//! and reports each one; `SMOL_ATTACK_EXIT=1` ends the VMM right after,
//! because the guest cannot run on this host's kvm-pvm anyway (real boots:
//! boot_attack.rs). Every attack must be refused, and the status must show
//! `no_new_privs`, a seccomp filter and no effective capabilities; reading
//! and writing a shared volume must still work.
//!
//! The machine: a busybox root, `net = false`, one read-write volume. The
//! targets: `~/.ssh/id_ed25519` and a new file in the runner's HOME (a
//! scratch HOME, for root too), `/etc/shadow`, a new file in /tmp,
//! `execve("/bin/true")` in a forked child, a TCP listener on the host's
//! loopback and a Unix socket (0777, in /tmp) the VM was not given, and
//! `PTRACE_ATTACH` of the supervisor (the VMM's parent). The listeners are
//! also checked from outside: no connection may have reached them.
//!
//! Run as root and as uid 1000 (`host_users`). `/dev/kvm` is root-only on
//! the build machines; the user gets a node of its own in a private mount
//! namespace (`HostUser::command_with_kvm`), so the host's `/dev/kvm`
//! stays as it is.
//!
//! Binaries: `SMOLVM_BIN` and `SMOLVM_STUB` (default target/release/smolvm
//! and smolvm-stub, from `cargo build --release -p smolvm-packer -p
//! smolvm-stub`) and the guest kernel of scripts/fetch-kernel.sh. Without
//! `/dev/kvm` or those the test skips, unless `SMOLVM_REQUIRE_BOOT=1`
//! (scripts/test.sh).

use std::collections::BTreeMap;
use std::io::ErrorKind;
use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixListener;
use std::path::Path;
use std::process::Command;

use smolvm_tests::{
    as_each_host_user, build_attack_library, busybox_root, guest_kernel, pack_signed,
    release_smolvm, run_ok, scratch_dir, stub_bin, AttackReport, HostUser, USER_GID, USER_UID,
    VMM_ATTACKS,
};

/// The machine: its workload never runs here (the VMM ends at KVM_RUN).
const SMOLFILE: &str =
    "entrypoint = [\"/bin/sh\", \"-c\"]\ncmd = [\"echo guest-ok; exit 3\"]\nnet = false\n";

/// Whether the prerequisites are there; a skip (with the reason) unless
/// `SMOLVM_REQUIRE_BOOT=1`, where a missing one is a failure.
fn prerequisites() -> bool {
    let mut missing = Vec::new();
    if !Path::new("/dev/kvm").exists() {
        missing.push("/dev/kvm".to_string());
    }
    // What attack.so tries to execute: it must exist, or a refusal says nothing.
    assert!(Path::new("/bin/true").is_file(), "/bin/true exists");
    for p in [release_smolvm(), stub_bin(), guest_kernel()] {
        if !p.exists() {
            missing.push(format!(
                "{} (cargo build --release -p smolvm-packer -p smolvm-stub; scripts/fetch-kernel.sh)",
                p.display()
            ));
        }
    }
    if missing.is_empty() {
        return true;
    }
    assert!(
        std::env::var_os("SMOLVM_REQUIRE_BOOT").is_none_or(|v| v != "1"),
        "cannot attack the VMM: missing {}",
        missing.join(", ")
    );
    eprintln!("SKIPPING the VMM attack: missing {}", missing.join(", "));
    false
}

/// Connections waiting on the listeners (they are non-blocking).
fn drain(tcp: &TcpListener, unix: &UnixListener) -> (usize, usize) {
    let count = |mut accept: Box<dyn FnMut() -> std::io::Result<()> + '_>| {
        let mut n = 0;
        loop {
            match accept() {
                Ok(()) => n += 1,
                Err(e) if e.kind() == ErrorKind::WouldBlock => return n,
                Err(e) => panic!("accept: {e}"),
            }
        }
    };
    (
        count(Box::new(|| tcp.accept().map(drop))),
        count(Box::new(|| unix.accept().map(drop))),
    )
}

/// A scratch directory (`attack/NAME`) with the machine packed in it and
/// attack.so built: (directory, machine, preload library).
fn packed_machine(name: &str) -> (std::path::PathBuf, std::path::PathBuf, std::path::PathBuf) {
    let dir = scratch_dir("attack", name);
    run_ok(
        Command::new(release_smolvm())
            .args(["pack", "keygen", "-o"])
            .arg(dir.join("keys")),
    );
    let root = busybox_root(&dir);
    pack_signed(&dir, &root, &dir, "m", SMOLFILE);
    let preload = build_attack_library(&dir);
    let machine = dir.join("m");
    (dir, machine, preload)
}

#[test]
fn the_vmm_cannot_reach_the_host_once_the_guest_runs() {
    if !prerequisites() {
        return;
    }
    let (dir, machine, preload) = packed_machine("native");

    let tcp = TcpListener::bind("127.0.0.1:0").unwrap();
    tcp.set_nonblocking(true).unwrap();
    let port = tcp.local_addr().unwrap().port();
    let unix_path = dir.join("not-for-the-vm.sock");
    let unix = UnixListener::bind(&unix_path).unwrap();
    unix.set_nonblocking(true).unwrap();
    // Anyone may connect: only a sandbox can make the VMM's attempt fail.
    std::fs::set_permissions(&unix_path, std::fs::Permissions::from_mode(0o777)).unwrap();

    as_each_host_user(&dir, |user| {
        let report = attack_as(user, &dir, &machine, &preload, port, &unix_path);
        // The listeners were up (a refusal was not the fixture's) and the
        // VMM's connections, if any, arrived.
        let reached = drain(&tcp, &unix);
        std::net::TcpStream::connect(("127.0.0.1", port)).expect("the TCP listener is up");
        std::os::unix::net::UnixStream::connect(&unix_path).expect("the Unix listener is up");
        assert_eq!(drain(&tcp, &unix), (1, 1), "the probes arrived");
        let mut short = report.shortfalls();
        if reached != (0, 0) {
            short.push(format!(
                "connections reached the host listeners (TCP, Unix): {reached:?}"
            ));
        }
        assert!(
            short.is_empty(),
            "the VMM is not confined once the guest runs:\n  {}\nreport:\n  {}",
            short.join("\n  "),
            report.lines.join("\n  ")
        );
    });
}

/// Runs the machine as `user` with attack.so until every attack has run: a
/// VMM killed during an attack (a seccomp filter that kills) counts as that
/// attack refused, and the machine runs again without it.
fn attack_as(
    user: &HostUser,
    dir: &Path,
    machine: &Path,
    preload: &Path,
    port: u16,
    unix_path: &Path,
) -> AttackReport {
    // A HOME of the runner's own with a secret in it; for root too (never
    // the real /root).
    let home = user
        .home_for("attack")
        .unwrap_or_else(|| dir.join("home-root"));
    let (uid, gid) = if user.is_switched() {
        (USER_UID, USER_GID)
    } else {
        (0, 0)
    };
    let share = home.join("share");
    let ssh = home.join(".ssh");
    let secret = ssh.join("id_ed25519");
    // The first command_with_kvm call makes the user's HOME.
    let _ = user.command_with_kvm("true", "attack");
    std::fs::create_dir_all(&share).unwrap();
    std::fs::create_dir_all(&ssh).unwrap();
    std::fs::write(
        &secret,
        "-----BEGIN OPENSSH PRIVATE KEY-----\nnot-a-real-key\n",
    )
    .unwrap();
    for (p, mode) in [(&share, 0o755), (&ssh, 0o700), (&secret, 0o600)] {
        std::os::unix::fs::chown(p, Some(uid), Some(gid)).unwrap();
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
    }

    let mut merged = AttackReport::default();
    let mut skip: Vec<String> = Vec::new();
    for _ in 0..=VMM_ATTACKS.len() {
        let mut c = user.command_with_kvm(machine, "attack");
        c.arg(format!("--smolvm-volume={}:/data", share.display()))
            .env("HOME", &home)
            .env("LD_PRELOAD", preload)
            .env("SMOLVM_SKIP_KVM_CHECK", "1")
            .env("SMOL_ATTACK_EXIT", "1")
            .env("SMOL_ATTACK_SECRET", &secret)
            .env("SMOL_ATTACK_OUTSIDE_DIR", &home)
            .env("SMOL_ATTACK_SHARE", &share)
            .env("SMOL_ATTACK_TCP", port.to_string())
            .env("SMOL_ATTACK_UNIX", unix_path)
            .env("SMOL_ATTACK_EXEC", "/bin/true")
            .env("SMOL_ATTACK_SKIP", skip.join(","));
        let out = c.output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        eprintln!(
            "as {} ({}), skipping [{}]:\n{stderr}",
            user.label,
            out.status,
            skip.join(",")
        );
        let r = AttackReport::parse(&stderr);
        merged.began |= r.began;
        merged.lines.extend(r.lines);
        merged.results.extend(r.results);
        if merged.status.is_none() {
            merged.status = r.status;
        }
        match r.died_in {
            Some(name) if r.began && !skip.contains(&name) => {
                merged.results.insert(
                    name.clone(),
                    BTreeMap::from([
                        ("result".into(), "refused".into()),
                        ("stage".into(), format!("vmm-killed({})", out.status)),
                    ]),
                );
                skip.push(name);
            }
            died_in => {
                merged.ended = r.ended;
                merged.died_in = died_in;
                break;
            }
        }
    }
    // Nothing the VMM tried to create outside the share is left (attack.c
    // names its files after the VMM's pid).
    let pids = merged.lines.iter().filter_map(|l| {
        l.strip_prefix("@@ATTACK-BEGIN pid=")?
            .split_whitespace()
            .next()
    });
    for pid in pids {
        for d in [home.as_path(), Path::new("/tmp")] {
            let left = d.join(format!("smol-attack-{pid}"));
            assert!(!left.exists(), "{} was left behind", left.display());
        }
    }
    merged
}

/// Issue 19, item 4: libkrun must never look a `libkrunfw.so.5` up through
/// the library search path, where an `LD_LIBRARY_PATH` with an empty entry
/// means the current directory (a downloads folder). Upstream libkrun
/// dlopens it by soname in `krun_create_ctx`; ours takes the kernel hand-off
/// linked in (vendor/patches/libkrun). A library with that soname, whose
/// constructor announces itself, waits in the current directory and in an
/// `LD_LIBRARY_PATH` entry while the machine starts up to its first
/// `KVM_RUN`; it must not be loaded. The control: a plain
/// `dlopen("libkrunfw.so.5")` with the same environment does load it.
#[test]
fn no_kernel_library_is_loaded_from_the_search_path() {
    if !prerequisites() {
        return;
    }
    let (dir, machine, preload) = packed_machine("krunfw-search");
    let lib_dir = dir.join("downloads");
    std::fs::create_dir_all(&lib_dir).unwrap();
    let marker = lib_dir.join("fake-krunfw-was-loaded");
    let src = lib_dir.join("fake.c");
    std::fs::write(
        &src,
        format!(
            "#include <fcntl.h>\n#include <unistd.h>\n\
             __attribute__((constructor)) static void loaded(void) {{\n\
             (void)!write(2, \"@@FAKE-KRUNFW-LOADED@@\\n\", 23);\n\
             close(open({:?}, O_CREAT | O_WRONLY, 0600));\n}}\n",
            marker.to_str().unwrap()
        ),
    )
    .unwrap();
    run_ok(
        Command::new("cc")
            .args(["-shared", "-fPIC", "-Wl,-soname,libkrunfw.so.5", "-o"])
            .arg(lib_dir.join("libkrunfw.so.5"))
            .arg(&src),
    );
    let search = format!("{}:", lib_dir.display());

    // The control: a plain dlopen by soname finds the library, which
    // announces itself.
    let loader = lib_dir.join("dlopen-by-soname");
    std::fs::write(
        lib_dir.join("loader.c"),
        "#include <dlfcn.h>\nint main(void) { return dlopen(\"libkrunfw.so.5\", RTLD_NOW) ? 0 : 1; }\n",
    )
    .unwrap();
    run_ok(
        Command::new("cc")
            .arg("-o")
            .arg(&loader)
            .arg(lib_dir.join("loader.c"))
            .arg("-ldl"),
    );
    let control = Command::new(&loader)
        .env("LD_LIBRARY_PATH", &search)
        .current_dir(&lib_dir)
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&control.stderr).contains("@@FAKE-KRUNFW-LOADED@@"),
        "the control load: {control:?}"
    );
    assert!(marker.exists(), "the control created the marker");
    std::fs::remove_file(&marker).unwrap();

    let all: Vec<&str> = VMM_ATTACKS.iter().map(|(name, _)| *name).collect();
    let out = Command::new(&machine)
        .env("LD_LIBRARY_PATH", &search)
        .env("LD_PRELOAD", &preload)
        .env("SMOLVM_SKIP_KVM_CHECK", "1")
        .env("SMOL_ATTACK_EXIT", "1")
        .env("SMOL_ATTACK_SKIP", all.join(","))
        .env("HOME", &dir)
        .current_dir(&lib_dir)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !stderr.contains("@@FAKE-KRUNFW-LOADED@@") && !marker.exists(),
        "a libkrunfw.so.5 from the search path was loaded into the host process: {stderr}"
    );
    assert!(
        AttackReport::parse(&stderr).began,
        "the start reached the first KVM_RUN: {stderr}"
    );
}

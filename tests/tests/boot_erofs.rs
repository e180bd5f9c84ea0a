//! The root filesystem is an EROFS image that the guest mounts from a
//! read-only disk (issue 7): what the image says about owners, modes,
//! setuid bits, xattrs, hard links and device nodes holds in the guest,
//! whoever runs the stub on the host. Every scenario runs as root and as a
//! non-root host user (lib.sh's `both`), in one L1 boot.
//!
//! The host side is checked in the same boot: after a first start the cache
//! holds the image file and nothing of the image's tree.

use std::path::{Path, PathBuf};
use std::process::Command;

use smolvm_tests::{boot_dirs, pack_signed, run_l1, run_ok};

/// A static helper for what busybox cannot show: the effective uid (busybox
/// drops setuid privileges) and an xattr's value (or, `xattrsum`, its
/// length and a checksum: [`xattr_sum`]).
const PROBE_C: &str = r#"
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <sys/xattr.h>
int main(int argc, char **argv) {
    if (argc == 2 && !strcmp(argv[1], "euid")) { printf("euid=%d uid=%d\n", (int)geteuid(), (int)getuid()); return 0; }
    if (argc == 4 && (!strcmp(argv[1], "xattr") || !strcmp(argv[1], "xattrsum"))) {
        static unsigned char v[65536];
        ssize_t n = lgetxattr(argv[2], argv[3], v, sizeof v);
        if (n < 0) { perror("lgetxattr"); return 1; }
        if (!strcmp(argv[1], "xattrsum")) {
            unsigned long sum = 0;
            for (ssize_t i = 0; i < n; i++) sum = sum * 31 + v[i];
            printf("%zd %lu\n", n, sum);
            return 0;
        }
        for (ssize_t i = 0; i < n; i++) printf("%02x", v[i]);
        printf("\n");
        return 0;
    }
    return 2;
}
"#;

/// 4 MiB and 5 bytes, zero but for `head` at 0, `mid` at 2 MiB + 1 and
/// `!` at the end.
fn sparse_content() -> Vec<u8> {
    let mut v = vec![0u8; (4 << 20) + 5];
    v[..4].copy_from_slice(b"head");
    v[(2 << 20) + 1..(2 << 20) + 4].copy_from_slice(b"mid");
    let last = v.len() - 1;
    v[last] = b'!';
    v
}

/// `security.capability` for cap_net_bind_service (bit 10), permitted and
/// effective: a VFS_CAP_REVISION_2 record as `setcap cap_net_bind_service+ep`
/// writes it.
fn capability_xattr() -> Vec<u8> {
    let mut v = Vec::new();
    v.extend_from_slice(&(0x0200_0000u32 | 1).to_le_bytes()); // revision 2, effective
    v.extend_from_slice(&(1u32 << 10).to_le_bytes()); // permitted[0]
    v.extend_from_slice(&0u32.to_le_bytes()); // inheritable[0]
    v.extend_from_slice(&0u32.to_le_bytes()); // permitted[1]
    v.extend_from_slice(&0u32.to_le_bytes()); // inheritable[1]
    v
}

/// A value too large to sit inline beside its inode: the image keeps it in
/// the shared xattr area (issue 22).
fn big_xattr() -> Vec<u8> {
    (0..60_000u32)
        .map(|i| u8::try_from(i * 7 % 251).unwrap())
        .collect()
}

/// What the probe's `xattrsum` prints for `v`.
fn xattr_sum(v: &[u8]) -> String {
    let sum = v
        .iter()
        .fold(0u64, |s, &b| s.wrapping_mul(31).wrapping_add(u64::from(b)));
    format!("{} {sum}", v.len())
}

struct Entry<'a> {
    path: &'a str,
    kind: tar::EntryType,
    mode: u32,
    owner: (u64, u64),
    data: Vec<u8>,
    link: Option<&'a str>,
    dev: (u32, u32),
    xattrs: Vec<(&'a str, Vec<u8>)>,
}

fn entry(path: &str, kind: tar::EntryType, mode: u32, owner: (u64, u64)) -> Entry<'_> {
    Entry {
        path,
        kind,
        mode,
        owner,
        data: Vec::new(),
        link: None,
        dev: (0, 0),
        xattrs: Vec::new(),
    }
}

/// The image under test as a root tarball: busybox, accounts, and one of
/// each thing a host-extracted root got wrong for non-root users.
fn image_tar(dir: &Path, probe: &Path) -> PathBuf {
    use tar::EntryType as T;
    let busybox = std::fs::read("/bin/busybox").expect("busybox-static at /bin/busybox");
    let mut entries = vec![
        entry("bin", T::Directory, 0o755, (0, 0)),
        Entry {
            data: busybox,
            ..entry("bin/busybox", T::Regular, 0o755, (0, 0))
        },
        entry("etc", T::Directory, 0o755, (0, 0)),
        Entry {
            data: b"root:x:0:0:root:/root:/bin/sh\nsvc:x:101:101:svc:/data:/bin/sh\n".to_vec(),
            ..entry("etc/passwd", T::Regular, 0o644, (0, 0))
        },
        Entry {
            data: b"root:x:0:\nsvc:x:101:\nstaff:x:50:bob,svc\nwheel:x:10:svc\naudio:x:29:bob\n"
                .to_vec(),
            ..entry("etc/group", T::Regular, 0o644, (0, 0))
        },
        // The service's private directory and files: 0700, owned 101:101.
        entry("data", T::Directory, 0o700, (101, 101)),
        Entry {
            data: b"svc-secret\n".to_vec(),
            ..entry("data/own.txt", T::Regular, 0o600, (101, 101))
        },
        // Mode 000: only root can read it (root bypasses DAC).
        Entry {
            data: b"root-only\n".to_vec(),
            ..entry("etc/mode000", T::Regular, 0o000, (0, 0))
        },
        entry("opt", T::Directory, 0o755, (0, 0)),
        // A setuid-root helper: euid 0 under a non-root user.
        Entry {
            data: std::fs::read(probe).unwrap(),
            ..entry("opt/probe-suid", T::Regular, 0o4755, (0, 0))
        },
        Entry {
            data: std::fs::read(probe).unwrap(),
            ..entry("opt/probe", T::Regular, 0o755, (0, 0))
        },
        Entry {
            data: b"cap\n".to_vec(),
            xattrs: vec![
                ("security.capability", capability_xattr()),
                ("user.smolvm", b"kept".to_vec()),
            ],
            ..entry("opt/capfile", T::Regular, 0o755, (0, 0))
        },
        // The same two xattrs again (now stored once, shared by both
        // files) and one of 60,000 bytes.
        Entry {
            data: b"cap2\n".to_vec(),
            xattrs: vec![
                ("security.capability", capability_xattr()),
                ("user.smolvm", b"kept".to_vec()),
                ("user.big", big_xattr()),
            ],
            ..entry("opt/capfile2", T::Regular, 0o755, (0, 0))
        },
        Entry {
            data: b"linked\n".to_vec(),
            ..entry("opt/link-a", T::Regular, 0o644, (0, 0))
        },
        Entry {
            link: Some("opt/link-a"),
            ..entry("opt/link-b", T::Link, 0o644, (0, 0))
        },
        Entry {
            dev: (1, 3),
            ..entry("opt/nulldev", T::Char, 0o666, (0, 0))
        },
        Entry {
            dev: (7, 42),
            ..entry("opt/blockdev", T::Block, 0o660, (0, 6))
        },
        // Mostly holes (issue 22): stored chunk-based, holes without
        // blocks; the guest kernel reads zeros there and the data around.
        Entry {
            data: sparse_content(),
            ..entry("opt/sparse", T::Regular, 0o644, (0, 0))
        },
        entry("opt/fifo", T::Fifo, 0o644, (0, 0)),
        entry("opt/sticky", T::Directory, 0o1777, (0, 0)),
        entry("opt/setgid", T::Directory, 0o2775, (0, 101)),
    ];
    let applets = Command::new("/bin/busybox").arg("--list").output().unwrap();
    let applets: Vec<String> = String::from_utf8(applets.stdout)
        .unwrap()
        .lines()
        .filter(|a| *a != "busybox")
        .map(|a| format!("bin/{a}"))
        .collect();
    for a in &applets {
        entries.push(Entry {
            link: Some("busybox"),
            ..entry(a, T::Symlink, 0o777, (0, 0))
        });
    }
    let mut b = tar::Builder::new(Vec::new());
    for e in &entries {
        if !e.xattrs.is_empty() {
            let keys: Vec<(String, &[u8])> = e
                .xattrs
                .iter()
                .map(|(k, v)| (format!("SCHILY.xattr.{k}"), v.as_slice()))
                .collect();
            b.append_pax_extensions(keys.iter().map(|(k, v)| (k.as_str(), *v)))
                .unwrap();
        }
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(e.kind);
        h.set_mode(e.mode);
        h.set_uid(e.owner.0);
        h.set_gid(e.owner.1);
        h.set_mtime(1_700_000_000);
        h.set_size(e.data.len() as u64);
        if matches!(e.kind, tar::EntryType::Char | tar::EntryType::Block) {
            h.set_device_major(e.dev.0).unwrap();
            h.set_device_minor(e.dev.1).unwrap();
        }
        match e.link {
            Some(l) => b.append_link(&mut h, e.path, l).unwrap(),
            None => b.append_data(&mut h, e.path, &e.data[..]).unwrap(),
        }
    }
    let path = dir.join("image.tar");
    std::fs::write(&path, b.into_inner().unwrap()).unwrap();
    path
}

#[test]
fn the_image_is_the_same_for_root_and_non_root_hosts() {
    let Some((dir, files)) = boot_dirs("erofs") else {
        return;
    };
    let src = dir.join("probe.c");
    std::fs::write(&src, PROBE_C).unwrap();
    let probe = dir.join("probe");
    run_ok(
        Command::new("cc")
            .args(["-static", "-O2", "-o"])
            .arg(&probe)
            .arg(&src),
    );
    let tar = image_tar(&dir, &probe);
    let pack = |name: &str, smolfile: &str| pack_signed(&dir, &tar, &files, name, smolfile);
    pack("asroot", "entrypoint = [\"/bin/sh\", \"-c\"]\n");
    pack(
        "assvc",
        "entrypoint = [\"/bin/sh\", \"-c\"]\nuser = \"svc\"\nworkdir = \"/data\"\n",
    );
    // Ids above the old guest limit (10^9) and up to the largest real id.
    pack(
        "asbig",
        "entrypoint = [\"/bin/sh\", \"-c\"]\nuser = \"4294967294:4000000000\"\n",
    );

    let script = dir.join("scenarios.sh");
    std::fs::write(
        &script,
        r#"export SMOLVM_CACHE_DIR=/tmp/erofs-cache
both svc-private ./assvc 'id -u; id -g; cat /data/own.txt; echo new > /data/new.txt && cat /data/new.txt; stat -c "%u:%g %a" /data'
both svc-account ./assvc 'id -G | tr " " "\n" | sort -n | tr "\n" " "; echo; echo "$HOME"'
both big-ids ./asbig 'id -u; id -g; id -G; echo "$HOME"'
both root-reads-mode000 ./asroot 'stat -c "%a %u:%g" /etc/mode000; cat /etc/mode000'
both svc-denied-mode000 ./assvc 'cat /etc/mode000 2>/dev/null || echo denied'
both setuid ./assvc 'stat -c "%a %u" /opt/probe-suid; /opt/probe-suid euid; /opt/probe euid'
both xattrs ./asroot '/opt/probe xattr /opt/capfile security.capability; /opt/probe xattr /opt/capfile user.smolvm; /opt/probe xattr /opt/capfile2 security.capability; /opt/probe xattr /opt/capfile2 user.smolvm; /opt/probe xattrsum /opt/capfile2 user.big'
both hardlinks ./asroot 'a=$(stat -c %i /opt/link-a); b=$(stat -c %i /opt/link-b); [ "$a" = "$b" ] && echo same-inode; stat -c %h /opt/link-a'
both devices ./asroot 'stat -c "%F %t:%T %a %u:%g" /opt/nulldev /opt/blockdev; stat -c "%F %a" /opt/fifo; stat -c "%a" /opt/sticky /opt/setgid'
both owners ./asroot 'stat -c "%u:%g %a %n" /bin /bin/busybox /etc/passwd'
both read-only-lower ./asroot 'echo x > /bin/new && cat /bin/new; grep "^overlay / " /proc/mounts | grep -o "lowerdir=[^,]*"; cat /sys/block/vda/ro'
both sparse ./asroot 'wc -c < /opt/sparse; tr -d "\\000" < /opt/sparse; echo; dd if=/opt/sparse bs=1 skip=2097153 count=3 2>/dev/null; echo'
both kernel-mapped sh -c 'o=$(mktemp); ./asroot "echo guest-up; sleep 6" >"$o" 2>&1 & i=0; while ! grep -qs guest-up "$o" && [ $i -lt 600 ]; do sleep 0.1; i=$((i+1)); done; for m in /proc/[0-9]*/maps; do grep -q "/kernel/[0-9a-f]*\.elf" "$m" 2>/dev/null || continue; echo kernel-file; grep -q "libkrunfw" "$m" && echo library; done; wait'
scenario cache-root sh -c 'cd /tmp/erofs-cache && find . -type f | sed "s/[0-9a-f]\{64\}/HASH/" | sort'
scenario cache-user as_user sh -c 'cd $HOME/.cache/smolvm && find . -type f | sed "s/[0-9a-f]\{64\}/HASH/" | sort'
"#,
    )
    .unwrap();
    let mut s = run_l1(&files, &script, 900);
    s.expect_both("svc-private", 0, "101\n101\nsvc-secret\nnew\n101:101 700\n");
    // Docker's user semantics: supplementary groups from /etc/group, HOME
    // from passwd ("/" for an id without an entry).
    s.expect_both("svc-account", 0, "10 50 101 \n/data\n");
    s.expect_both("big-ids", 0, "4294967294\n4000000000\n4000000000\n/\n");
    s.expect_both("root-reads-mode000", 0, "0 0:0\nroot-only\n");
    s.expect_both("svc-denied-mode000", 0, "denied\n");
    s.expect_both("setuid", 0, "4755 0\neuid=0 uid=101\neuid=101 uid=101\n");
    let cap: String = capability_xattr()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    s.expect_both(
        "xattrs",
        0,
        &format!(
            "{cap}\n6b657074\n{cap}\n6b657074\n{}\n",
            xattr_sum(&big_xattr())
        ),
    );
    s.expect_both("hardlinks", 0, "same-inode\n2\n");
    s.expect_both(
        "devices",
        0,
        "character special file 1:3 666 0:0\nblock special file 7:2a 660 0:6\nfifo 644\n1777\n2775\n",
    );
    s.expect_both(
        "owners",
        0,
        "0:0 755 /bin\n0:0 755 /bin/busybox\n0:0 644 /etc/passwd\n",
    );
    s.expect_both("sparse", 0, "4194309\nheadmid!\nmid\n");
    s.expect_both("read-only-lower", 0, "x\nlowerdir=/.smolvm/lower\n1\n");
    // The kernel reaches the guest as a mapping of the verified cache file
    // (runtime::kernel_map): the VMM has the file mapped, and no library
    // answering to libkrunfw (the hand-off is linked into the stub).
    s.expect_both("kernel-mapped", 0, "kernel-file\n");
    // The cache holds the image, its lock and the kernel: no file of the tree.
    for name in ["cache-root", "cache-user"] {
        s.check(name, |rc, text| {
            assert_eq!(rc, 0, "{text}");
            assert_eq!(
                text, "./kernel/HASH.elf\n./rootfs/HASH.erofs\n./rootfs/HASH.lock\n",
                "cache contents"
            );
        });
    }
    s.finish();
    let _ = std::fs::remove_dir_all(&dir);
}

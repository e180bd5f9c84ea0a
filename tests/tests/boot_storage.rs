//! Writable state on disks (issue 9), in real guests, as root and as a
//! non-root host user (lib.sh's `both`), in one L1 boot:
//!
//! * `overlay = 1`: the per-run writable layer is a sparse ext4 disk, so a
//!   machine with 128 MiB of RAM writes 200 MiB (the same machine without it
//!   runs out of its tmpfs), and nothing of it is left for the next run;
//! * `volumes = ["/state", "/srv/data"]`: persistent volumes on the
//!   machine's storage disk, kept across runs and across a new version of
//!   the same name, owned as the guest made them (the workload runs as uid
//!   101 whoever starts it), new ones taking the image's owner and mode;
//!   `--smolvm-reset-storage` starts over; a second run while one holds the
//!   disk is refused with one line and exit 2.
//!
//! It also prints the warm-start cost of the overlay disk (same L1 boot,
//! interleaved runs of `true`).

use std::path::{Path, PathBuf};
use std::process::Command;

use smolvm_tests::{boot_dirs, pack_signed, run_l1};

/// busybox, a service account (101) and a directory owned by another (102).
fn image_tar(dir: &Path) -> PathBuf {
    let mut b = tar::Builder::new(Vec::new());
    let mut add = |path: &str,
                   kind: tar::EntryType,
                   mode: u32,
                   owner: u64,
                   data: &[u8],
                   link: Option<&str>| {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(kind);
        h.set_mode(mode);
        h.set_uid(owner);
        h.set_gid(owner);
        h.set_mtime(1_700_000_000);
        h.set_size(data.len() as u64);
        match link {
            Some(l) => b.append_link(&mut h, path, l).unwrap(),
            None => b.append_data(&mut h, path, data).unwrap(),
        }
    };
    use tar::EntryType as T;
    add("bin", T::Directory, 0o755, 0, b"", None);
    let busybox = std::fs::read("/bin/busybox").expect("busybox-static at /bin/busybox");
    add("bin/busybox", T::Regular, 0o755, 0, &busybox, None);
    let applets = Command::new("/bin/busybox").arg("--list").output().unwrap();
    for a in String::from_utf8(applets.stdout).unwrap().lines() {
        if a != "busybox" {
            add(
                &format!("bin/{a}"),
                T::Symlink,
                0o777,
                0,
                b"",
                Some("busybox"),
            );
        }
    }
    add("etc", T::Directory, 0o755, 0, b"", None);
    add(
        "etc/passwd",
        T::Regular,
        0o644,
        0,
        b"root:x:0:0:root:/root:/bin/sh\nsvc:x:101:101:svc:/tmp:/bin/sh\n",
        None,
    );
    add(
        "etc/group",
        T::Regular,
        0o644,
        0,
        b"root:x:0:\nsvc:x:101:\n",
        None,
    );
    add("tmp", T::Directory, 0o1777, 0, b"", None);
    add("srv", T::Directory, 0o755, 0, b"", None);
    add("srv/data", T::Directory, 0o711, 102, b"", None);
    let path = dir.join("image.tar");
    std::fs::write(&path, b.into_inner().unwrap()).unwrap();
    path
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

#[test]
fn overlay_and_storage_disks() {
    let Some((dir, files)) = boot_dirs("storage") else {
        return;
    };
    let tar = image_tar(&dir);
    let pack = |file: &str, smolfile: &str| pack_signed(&dir, &tar, &files, file, smolfile);
    let sh = "entrypoint = [\"/bin/sh\", \"-c\"]\nmemory = 128\n";
    pack(
        "plain",
        &format!("{sh}[artifact]\nname = \"plain\"\nversion = \"1.0.0\"\n"),
    );
    pack(
        "overlay",
        &format!("{sh}overlay = 1\n[artifact]\nname = \"overlay\"\nversion = \"1.0.0\"\n"),
    );
    let state = format!(
        "{sh}user = \"svc\"\nvolumes = [\"/state\", \"/srv/data\"]\nstorage = 1\n[artifact]\nname = \"state\"\n"
    );
    pack("state", &format!("{state}version = \"1.0.0\"\n"));
    pack("state2", &format!("{state}version = \"2.0.0\"\n"));

    let script = dir.join("scenarios.sh");
    std::fs::write(
        &script,
        r#"export SMOLVM_CACHE_DIR=/tmp/storage-cache
both overlay-big ./overlay 'awk "/MemTotal/{print \$2}" /proc/meminfo; dd if=/dev/zero of=/big bs=1M count=200 2>/dev/null && wc -c < /big; cat /sys/block/vdb/serial; echo'
both overlay-discarded ./overlay '[ -e /big ] && echo kept || echo discarded'
both tmpfs-full ./plain 'dd if=/dev/zero of=/big bs=1M count=200 2>&1 | grep -o "No space left on device" | head -n 1'
both state-first ./state 'id -u; stat -c "%u:%g %a" /state /srv/data; echo one > /state/f && mkdir /state/d && echo made'
both state-kept ./state2 'cat /state/f; stat -c "%u:%g %n" /state/f /state/d; grep -c " /state " /proc/mounts'
both state-disk sh -c 'd=$HOME/.local/share/smolvm/storage; ls -A "$d"/*; stat -c "%u %a %s" "$d"/*/state.ext4'
both state-busy sh -c 'o=$(mktemp); ./state "echo guest-up; sleep 10" >"$o" 2>&1 & i=0; while ! grep -qs guest-up "$o" && [ $i -lt 600 ]; do sleep 0.1; i=$((i+1)); done; ./state "echo second"; echo rc=$?; wait $!; echo first=$?'
both state-reset ./state --smolvm-reset-storage 'ls -A /state; stat -c "%u:%g %a" /state; echo reset'
both state-after-reset ./state '[ -e /state/f ] && echo kept || echo empty'
scenario warm-figures sh -c 'up() { awk "{print \$1}" /proc/uptime; }; for i in 1 2 3; do
  a=$(up); ./plain true || exit 1; b=$(up); ./overlay true || exit 1; c=$(up)
  echo "$a $b $c" | awk "{printf \"plain %.2f overlay %.2f\\n\", \$2-\$1, \$3-\$2}"; done'
"#,
    )
    .unwrap();
    let mut s = run_l1(&files, &script, 2400);

    s.check_both("overlay-big", |rc, text| {
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!((rc, lines.len()), (0, 3), "{text}");
        let mem_kib: u64 = lines[0].parse().unwrap();
        assert!(
            mem_kib < 200 * 1024,
            "guest RAM {mem_kib} KiB is not below 200 MiB"
        );
        assert_eq!(&lines[1..], ["209715200", "smolvm-overlay"]);
    });
    s.expect_both("overlay-discarded", 0, "discarded\n");
    // The control: the same write into the default tmpfs layer fails.
    s.expect_both("tmpfs-full", 0, "No space left on device\n");
    s.expect_both("state-first", 0, "101\n101:101 755\n102:102 711\nmade\n");
    s.expect_both(
        "state-kept",
        0,
        "one\n101:101 /state/f\n101:101 /state/d\n1\n",
    );
    s.check("state-disk", |rc, text| {
        assert_eq!((rc, text), (0, "state.ext4\n0 600 1073741824\n"));
    });
    s.check("state-disk@user", |rc, text| {
        assert_eq!((rc, text), (0, "state.ext4\n1000 600 1073741824\n"));
    });
    s.check_both("state-busy", |rc, text| {
        assert_eq!(rc, 0, "{text}");
        let refused = text
            .lines()
            .find(|l| l.contains("is in use by another run of state"))
            .unwrap_or_else(|| panic!("second start not refused:\n{text}"));
        assert!(
            refused.starts_with("state: the storage of state ("),
            "{refused}"
        );
        assert!(!text.contains("second"), "{text}");
        assert!(text.ends_with("rc=2\nfirst=0\n"), "{text}");
    });
    s.expect_both("state-reset", 0, "101:101 755\nreset\n");
    s.expect_both("state-after-reset", 0, "empty\n");
    s.check("warm-figures", |rc, text| {
        assert_eq!(rc, 0, "{text}");
        let (mut plain, mut overlay) = (Vec::new(), Vec::new());
        for l in text.lines() {
            let f: Vec<&str> = l.split_whitespace().collect();
            plain.push(f[1].parse::<f64>().unwrap());
            overlay.push(f[3].parse::<f64>().unwrap());
        }
        let (p, o) = (median(plain), median(overlay));
        eprintln!(
            "warm start in L1 (TCG + nested SVM), median of {}: plain {p:.2} s, overlay disk {o:.2} s, added {:.0} ms",
            text.lines().count(),
            (o - p) * 1000.0
        );
    });
    s.finish();
    let _ = std::fs::remove_dir_all(&dir);
}

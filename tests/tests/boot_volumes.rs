//! The user's files and run-time settings in a real guest (issue 9): host
//! directories shared as volumes (read-write, read-only, owned by the host
//! user), the current-directory tool case (`./tool notes.txt`) and what
//! stays invisible outside a share, env/cpus/memory/workdir given at run
//! time, and `init` commands (order, root, environment, failure). Every
//! scenario runs as root and as uid 1000 (lib.sh `both`), in one L1 boot.
//!
//! The warm start with and without a volume is measured in the same boot
//! and printed (no target: the figure is reported, not asserted).

use std::process::Command;

use smolvm_tests::{boot_dirs, busybox_root, pack_signed, run_l1, run_ok, USER_SUFFIX, USER_UID};

/// `mstime N CMD [ARG...]`: runs CMD N times (output discarded) and prints
/// each run's wall time in ms, then the median; exits with CMD's last status.
const MSTIME_C: &str = r#"
#include <stdio.h>
#include <stdlib.h>
#include <fcntl.h>
#include <time.h>
#include <unistd.h>
#include <sys/wait.h>
static int cmp(const void *a, const void *b) { double x = *(double *)a, y = *(double *)b; return (x > y) - (x < y); }
int main(int argc, char **argv) {
    int n = atoi(argv[1]), st = 0;
    double t[64];
    if (n < 1 || n > 64) return 2;
    for (int i = 0; i < n; i++) {
        struct timespec a, b;
        clock_gettime(CLOCK_MONOTONIC, &a);
        pid_t p = fork();
        if (p == 0) {
            int fd = open("/dev/null", O_WRONLY);
            dup2(fd, 1); dup2(fd, 2);
            execvp(argv[2], argv + 2);
            _exit(127);
        }
        waitpid(p, &st, 0);
        clock_gettime(CLOCK_MONOTONIC, &b);
        t[i] = (b.tv_sec - a.tv_sec) * 1e3 + (b.tv_nsec - a.tv_nsec) / 1e6;
        printf("run %d: %.0f ms\n", i + 1, t[i]);
    }
    qsort(t, n, sizeof t[0], cmp);
    printf("median %.0f ms\n", t[n / 2]);
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128;
}
"#;

/// Host side of the volume scenarios: a fresh directory in the running
/// user's HOME with one file, the guest's script, then what the host sees.
const VOLUME_RW: &str = r#"d=$HOME/vol-rw; rm -rf "$d"; mkdir -p "$d"; echo from-host >"$d/in.txt"
./vol --smolvm-volume="$d:/data" 'cat /data/in.txt; echo from-guest >/data/out.txt; mkdir /data/made; echo guest-uid=$(id -u)'
rc=$?
echo "host-uid=$(id -u)"
stat -c '%u %n' "$d/out.txt" "$d/made" | sed "s|$d/||"
cat "$d/out.txt"
exit $rc
"#;

const VOLUME_RO: &str = r#"d=$HOME/vol-ro; rm -rf "$d"; mkdir -p "$d"; echo from-host >"$d/in.txt"
./vol --smolvm-volume="$d:/data:ro" 'cat /data/in.txt; if (echo x >/data/new) 2>/tmp/err; then echo WROTE; else echo "write refused: $(sed "s/.*: //" /tmp/err)"; fi; rm /data/in.txt 2>/dev/null && echo REMOVED; grep " /data " /proc/mounts | cut -d" " -f4 | cut -d, -f1'
rc=$?
ls "$d"
exit $rc
"#;

/// The tool case: a machine packed with `share_cwd = true` and
/// `entrypoint = ["wc", "-l"]`, run from the directory holding the file,
/// with the person's consent (`--smolvm-share-cwd`).
const TOOL: &str = r#"d=$HOME/proj; rm -rf "$d"; mkdir -p "$d"; printf 'one\ntwo\nthree\n' >"$d/notes.txt"
cd "$d" && /work/tool --smolvm-share-cwd notes.txt
"#;

/// The same without consent, and no terminal to ask on (the harness's
/// stdin is /dev/null): refused before anything boots.
const TOOL_NO_CONSENT: &str = r#"cd "$HOME/proj" && /work/tool notes.txt"#;

/// What is outside the share stays outside: a secret beside the shared
/// directory, reached by `..`, by a relative and an absolute symlink in the
/// share, and searched for everywhere in the guest.
const OUTSIDE: &str = r#"d=$HOME/proj2; rm -rf "$d"; mkdir -p "$d/sub"
secret=$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')
echo "$secret" >"$HOME/secret.txt"
echo "$secret" >"$d/needle"
ln -s ../secret.txt "$d/rel"; ln -s "$HOME/secret.txt" "$d/abs"
cd "$d" && /work/shcwd --smolvm-share-cwd 'echo "pwd=$(pwd)"
cat ../secret.txt rel abs 2>&1
echo "root: $(ls / | tr "\n" " ")"
echo "found in:"; for x in /*; do case $x in /proc|/sys|/dev) ;; *) grep -rlF -f /cwd/needle "$x" 2>/dev/null ;; esac; done; true'
rc=$?
rm -f "$HOME/secret.txt"
exit $rc
"#;

/// libkrun's virtio-fs server holds a descriptor per file the guest looks
/// up: 3000 files pass the usual soft limit of 1024 (the runtime raises it
/// to the hard limit, 4096 here). With a hard limit of 1024 the guest's
/// listing stops short without an error (923 of 3000 entries, measured).
const MANY_FILES: &str = r#"d=$HOME/many; rm -rf "$d"; mkdir -p "$d"
i=0; while [ $i -lt 3000 ]; do echo "$i" >"$d/f$i"; i=$((i+1)); done
ulimit -S -n 1024
./vol --smolvm-volume="$d:/data:ro" 'ls /data | wc -l; cat /data/* | wc -l'
"#;

const SETTINGS_GUEST: &str = r#"echo "cpus=$(nproc)"
echo "mem_mib=$(($(grep MemTotal /proc/meminfo | tr -s " " | cut -d" " -f2) / 1024))"
echo "pwd=$(pwd)"
echo "FROM=$FROM KEEP=$KEEP NEW=${NEW-unset}"
"#;

/// The scenarios, run in /work of L1 with lib.sh sourced.
const SCENARIOS: &str = r#"export SMOLVM_CACHE_DIR=/tmp/volcache
both volume-rw sh -c @VOLUME_RW@
both volume-ro sh -c @VOLUME_RO@
both volume-missing ./vol --smolvm-volume=/nonexistent:/data true
both tool sh -c @TOOL@
both tool-no-consent sh -c @TOOL_NO_CONSENT@
both outside sh -c @OUTSIDE@
both many-files sh -c @MANY_FILES@
both settings-packed ./settings @SETTINGS@
both settings-run-time ./settings --smolvm-env=FROM=run-time --smolvm-env=NEW=1 --smolvm-cpus=1 --smolvm-memory=256 --smolvm-workdir=/tmp/wd @SETTINGS@
both settings-cpus-too-many ./settings --smolvm-cpus=2 true
both settings-info ./settings --smolvm-info --smolvm-memory=256 --smolvm-env=FROM=run-time
both init ./init
both init-fails ./initfail
both warm-start sh -c 'd=$HOME/vol-bench; mkdir -p "$d"; ./vol true; echo "without a volume:"; ./mstime 7 ./vol true; echo "with a volume:"; ./mstime 7 ./vol --smolvm-volume="$d:/data" true'
"#;

fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// The lines of `text` after the line `title` up to the next line ending in ':'.
fn after<'a>(text: &'a str, title: &str) -> Vec<&'a str> {
    text.lines()
        .skip_while(|l| *l != title)
        .skip(1)
        .take_while(|l| !l.ends_with(':'))
        .collect()
}

fn median_ms(lines: &[&str]) -> f64 {
    lines
        .iter()
        .find_map(|l| l.strip_prefix("median ")?.strip_suffix(" ms")?.parse().ok())
        .expect("a median line")
}

/// With the zero-copy kernel hand-off (runtime::kernel_map) libkrun maps
/// the 21 MB kernel as a region of its own beside the configured RAM, so
/// the guest's MemTotal can exceed `memory` by up to that much (seen: 516
/// for 512, 265 for 256).
const KERNEL_REGION_MIB: u32 = 24;

#[test]
fn volumes_settings_and_init_commands_in_a_real_guest() {
    let Some((dir, files)) = boot_dirs("volumes") else {
        return;
    };
    let root = busybox_root(&dir);
    let sh = "entrypoint = [\"/bin/sh\", \"-c\"]\n";
    pack_signed(&dir, &root, &files, "vol", sh);
    pack_signed(
        &dir,
        &root,
        &files,
        "tool",
        "share_cwd = true\nentrypoint = [\"wc\", \"-l\"]\n",
    );
    pack_signed(
        &dir,
        &root,
        &files,
        "shcwd",
        &format!("share_cwd = true\n{sh}"),
    );
    // Two vCPUs packed, so that --smolvm-cpus=1 shows (L1 has one CPU).
    pack_signed(
        &dir,
        &root,
        &files,
        "settings",
        &format!("{sh}cpus = 2\nmemory = 512\nworkdir = \"/srv\"\nenv = [\"FROM=smolfile\", \"KEEP=yes\"]\n"),
    );
    let init = "init = [\"echo init-one $GREETING >>/tmp/order\", \"id -u >>/tmp/order; pwd >>/tmp/order\", \"mkdir -p /var/app && echo ready >/var/app/state\"]\n\
                env = [\"GREETING=hello\"]\nuser = \"1000:1000\"\nworkdir = \"/srv\"\n\
                entrypoint = [\"/bin/sh\", \"-c\"]\ncmd = [\"cat /tmp/order /var/app/state; echo workload-uid=$(id -u)\"]\n";
    pack_signed(&dir, &root, &files, "init", init);
    pack_signed(
        &dir,
        &root,
        &files,
        "initfail",
        "init = [\"echo first\", \"echo second-fails >&2; exit 3\", \"echo never-runs\"]\nentrypoint = [\"/bin/sh\", \"-c\"]\ncmd = [\"echo workload-ran\"]\n",
    );
    let src = dir.join("mstime.c");
    std::fs::write(&src, MSTIME_C).unwrap();
    run_ok(
        Command::new("cc")
            .args(["-static", "-O2", "-o"])
            .arg(files.join("mstime"))
            .arg(&src),
    );
    let script = dir.join("scenarios.sh");
    std::fs::write(
        &script,
        SCENARIOS
            .replace("@VOLUME_RW@", &quote(VOLUME_RW))
            .replace("@VOLUME_RO@", &quote(VOLUME_RO))
            .replace("@TOOL@", &quote(TOOL))
            .replace("@TOOL_NO_CONSENT@", &quote(TOOL_NO_CONSENT))
            .replace("@OUTSIDE@", &quote(OUTSIDE))
            .replace("@MANY_FILES@", &quote(MANY_FILES))
            .replace("@SETTINGS@", &quote(SETTINGS_GUEST)),
    )
    .unwrap();
    let mut s = run_l1(&files, &script, 1800);

    for (suffix, uid) in [("", 0), (USER_SUFFIX, USER_UID)] {
        s.check(&format!("volume-rw{suffix}"), |rc, t| {
            assert_eq!(
                (rc, t),
                (
                    0,
                    format!(
                        "from-host\nguest-uid=0\nhost-uid={uid}\n{uid} out.txt\n{uid} made\nfrom-guest\n"
                    )
                    .as_str()
                ),
                "the guest reads and writes the share; what it creates is the host user's"
            );
        });
    }
    s.expect_both(
        "volume-ro",
        0,
        "from-host\nwrite refused: Read-only file system\nro\nin.txt\n",
    );
    s.check_both("volume-missing", |rc, t| {
        assert_eq!(rc, 2, "{t}");
        assert!(
            t.contains("/nonexistent") && t.contains("existing host directory"),
            "{t}"
        );
    });
    s.expect_both("tool", 0, "3 notes.txt\n");
    s.check_both("tool-no-consent", |rc, t| {
        assert_eq!(rc, 2, "{t}");
        assert!(
            t.contains("no terminal") && t.contains("--smolvm-share-cwd"),
            "{t}"
        );
    });
    s.check_both("outside", |rc, t| {
        assert_eq!(rc, 0, "{t}");
        let mut lines = t.lines();
        assert_eq!(lines.next(), Some("pwd=/cwd"), "{t}");
        // `..` of /cwd is the guest's root; both symlinks resolve in the guest.
        for name in ["../secret.txt", "rel", "abs"] {
            assert!(
                t.contains(&format!("can't open '{name}': No such file or directory")),
                "{name}: {t}"
            );
        }
        assert_eq!(
            after(t, "found in:"),
            vec!["/cwd/needle"],
            "the secret is nowhere in the guest but in the share: {t}"
        );
    });
    s.expect_both("many-files", 0, "3000\n3000\n");
    let mem_mib = |t: &str| -> u32 {
        t.lines()
            .find_map(|l| l.strip_prefix("mem_mib=")?.parse().ok())
            .expect("mem_mib line")
    };
    s.check_both("settings-packed", |rc, t| {
        assert_eq!(rc, 0, "{t}");
        assert!(t.contains("cpus=2\n") && t.contains("pwd=/srv\n"), "{t}");
        assert!(t.contains("FROM=smolfile KEEP=yes NEW=unset\n"), "{t}");
        let mem = mem_mib(t);
        assert!(
            (400..=512 + KERNEL_REGION_MIB).contains(&mem),
            "512 MiB guest reports {mem}: {t}"
        );
    });
    s.check_both("settings-run-time", |rc, t| {
        assert_eq!(rc, 0, "{t}");
        let mem = mem_mib(t);
        assert!(
            (150..=256 + KERNEL_REGION_MIB).contains(&mem),
            "256 MiB guest reports {mem}: {t}"
        );
        assert!(t.contains("cpus=1\n") && t.contains("pwd=/tmp/wd\n"), "{t}");
        assert!(t.contains("FROM=run-time KEEP=yes NEW=1\n"), "{t}");
    });
    s.check_both("settings-cpus-too-many", |rc, t| {
        assert_eq!(rc, 2, "{t}");
        assert!(t.contains("from 1 to 1"), "{t}");
    });
    s.check_both("settings-info", |rc, t| {
        assert_eq!(rc, 0, "{t}");
        assert!(t.contains("memory      256 MiB  (run-time)"), "{t}");
        assert!(t.contains("cpus        2  (smolfile)"), "{t}");
        assert!(t.contains("FROM=run-time"), "{t}");
        assert!(t.contains("env") && t.contains("(run-time)"), "{t}");
    });
    s.expect_both(
        "init",
        0,
        "init-one hello\n0\n/srv\nready\nworkload-uid=1000\n",
    );
    s.check_both("init-fails", |rc, t| {
        assert_eq!(rc, 3, "{t}");
        // stdout and stderr are separate streams: each line, in any order.
        assert!(t.contains("first\n") && t.contains("second-fails\n"), "{t}");
        assert!(
            t.contains(
                "smolvm: init command 2 of 3 failed with exit code 3: echo second-fails >&2; exit 3"
            ),
            "{t}"
        );
        assert!(
            !t.contains("never-runs") && !t.contains("workload-ran"),
            "{t}"
        );
    });
    s.check_both("warm-start", |rc, t| {
        assert_eq!(rc, 0, "{t}");
        let without = median_ms(&after(t, "without a volume:"));
        let with = median_ms(&after(t, "with a volume:"));
        eprintln!(
            "warm start: {without:.0} ms without a volume, {with:.0} ms with one ({:+.0} ms)",
            with - without
        );
    });
    s.finish();
}

//! The VMM process once the guest really runs, attacked from where a
//! hostile guest kernel stands (security checklist item 17), in L1
//! (tests/harness/README.md), as root and as uid 1000 (lib.sh `both`).
//!
//! vmm_attack.rs makes the same attacks natively and ends the VMM at its
//! first `KVM_RUN`; here the guest boots: attack.so (tests/harness/attack.c,
//! loaded with `LD_PRELOAD`) attacks from the VMM's vCPU thread on its first
//! `KVM_RUN` and lets the guest go on, so the run also shows that a confined
//! VMM still boots, serves the volume, and passes the guest's output and
//! exit code through. A second scenario runs the machine without attack.so
//! and reads the running VMM's `/proc/PID/status` from outside:
//! `NoNewPrivs: 1`, `Seccomp: 2`, `CapEff: 0`.
//!
//! L1 fixtures: `lo` up (else every loopback connect fails with
//! ENETUNREACH whatever the sandbox does), an `/etc/shadow` only root can
//! read, and per run a HOME with `~/.ssh/id_ed25519`, a share, and a
//! `listener` (a static helper built here) on 127.0.0.1:[`PORT`] and on a
//! Unix socket (0777) in /tmp that the VM is not given. After the machine,
//! the scenario prints what reached the listener and probes that it was up.

use std::process::Command;

use smolvm_tests::{boot_dirs, build_attack_library, busybox_root, pack_signed, run_l1, run_ok};
use smolvm_tests::{AttackReport, USER_SUFFIX};

/// The loopback port of the L1 listener.
const PORT: u16 = 7711;

/// `listener serve PORT PATH`: listens on 127.0.0.1:PORT and on the Unix
/// socket PATH (0777), prints one line per accepted connection until
/// killed. `listener probe PORT PATH`: connects to both and prints
/// `probe tcp=ok unix=ok` (or the errno). With no arguments it exits 0:
/// it is also the program attack.so tries to execute.
const LISTENER_C: &str = r#"
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>
static struct sockaddr_in tcp_addr(const char *port) {
    struct sockaddr_in a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_port = htons((unsigned short)atoi(port));
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    return a;
}
static struct sockaddr_un unix_addr(const char *path) {
    struct sockaddr_un a;
    memset(&a, 0, sizeof a);
    a.sun_family = AF_UNIX;
    snprintf(a.sun_path, sizeof a.sun_path, "%s", path);
    return a;
}
int main(int argc, char **argv) {
    if (argc < 4) return 0;
    struct sockaddr_in t = tcp_addr(argv[2]);
    struct sockaddr_un u = unix_addr(argv[3]);
    int ts = socket(AF_INET, SOCK_STREAM, 0), us = socket(AF_UNIX, SOCK_STREAM, 0);
    if (strcmp(argv[1], "probe") == 0) {
        int tr = connect(ts, (struct sockaddr *)&t, sizeof t) == 0 ? 0 : errno;
        int ur = connect(us, (struct sockaddr *)&u, sizeof u) == 0 ? 0 : errno;
        printf("probe tcp=%s unix=%s\n", tr ? strerror(tr) : "ok", ur ? strerror(ur) : "ok");
        return tr || ur;
    }
    int one = 1;
    setsockopt(ts, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    unlink(argv[3]);
    if (bind(ts, (struct sockaddr *)&t, sizeof t) || listen(ts, 16) ||
        bind(us, (struct sockaddr *)&u, sizeof u) || listen(us, 16) || chmod(argv[3], 0777)) {
        perror("listener");
        return 1;
    }
    printf("listening\n");
    fflush(stdout);
    for (;;) {
        struct pollfd p[2] = {{ts, POLLIN, 0}, {us, POLLIN, 0}};
        if (poll(p, 2, -1) < 0) continue;
        for (int i = 0; i < 2; i++) {
            if (p[i].revents & POLLIN) {
                int c = accept(p[i].fd, NULL, NULL);
                if (c >= 0) close(c);
                printf("accepted %s\n", i == 0 ? "tcp" : "unix");
                fflush(stdout);
            }
        }
    }
}
"#;

/// One attacked run, as whichever user runs it: fixtures in $HOME, the
/// listener, the machine with attack.so, then what reached the listener and
/// whether it was up.
const ATTACK: &str = r#"h=$HOME; sock=/tmp/attack-$(id -u).sock
rm -rf "$h/share" "$h/.ssh"; mkdir -p "$h/share" "$h/.ssh"; chmod 700 "$h/.ssh"
{ echo '-----BEGIN OPENSSH PRIVATE KEY-----'; echo not-a-real-key; } >"$h/.ssh/id_ed25519"; chmod 600 "$h/.ssh/id_ed25519"
./listener serve @PORT@ "$sock" >"$h/listener.log" 2>&1 &
lp=$!
i=0; while ! grep -qs listening "$h/listener.log" && [ $i -lt 50 ]; do sleep 0.1; i=$((i+1)); done
LD_PRELOAD=/work/attack.so SMOL_ATTACK_SECRET="$h/.ssh/id_ed25519" SMOL_ATTACK_OUTSIDE_DIR="$h" \
    SMOL_ATTACK_SHARE="$h/share" SMOL_ATTACK_TCP=@PORT@ SMOL_ATTACK_UNIX="$sock" SMOL_ATTACK_EXEC=/work/listener \
    ./m --smolvm-volume="$h/share:/data" 'echo guest-ok; echo "share: $(ls /data | wc -l) files"; exit 3'
rc=$?
echo "listener-accepted tcp=$(grep -c 'accepted tcp' "$h/listener.log") unix=$(grep -c 'accepted unix' "$h/listener.log")"
./listener probe @PORT@ "$sock"
kill $lp; wait $lp 2>/dev/null
ls -d "$h"/smol-attack-* /tmp/smol-attack-* 2>/dev/null | sed 's/^/left behind: /'
exit $rc
"#;

/// The machine without attack.so, seen from outside while its guest runs:
/// the VMM is the stub's child.
const STATUS: &str = r#"out=$HOME/status-run.out
./m 'echo guest-running; sleep 4; echo guest-done' >"$out" 2>&1 &
sp=$!
i=0; while ! grep -qs guest-running "$out" && [ $i -lt 600 ]; do sleep 0.1; i=$((i+1)); done
vmm=
for s in /proc/[0-9]*/status; do
    [ "$(awk '/^PPid:/ {print $2}' "$s" 2>/dev/null)" = "$sp" ] && vmm=${s%/status} && vmm=${vmm#/proc/}
done
echo "vmm found: ${vmm:-no}"
[ -n "$vmm" ] && grep -E '^(Name|NoNewPrivs|Seccomp|CapEff):' "/proc/$vmm/status" | tr -s '\t ' ' '
wait $sp
echo "machine-rc=$?"
cat "$out"
"#;

const SCENARIOS: &str = r#"export SMOLVM_CACHE_DIR=/tmp/attackcache
ip link set lo up
printf 'root:*:19000:0:99999:7:::\nuser:*:19000:0:99999:7:::\n' >/etc/shadow; chmod 600 /etc/shadow
both attack sh -c @ATTACK@
both vmm-status sh -c @STATUS@
"#;

fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

#[test]
fn the_vmm_of_a_real_guest_cannot_reach_the_host() {
    let Some((dir, files)) = boot_dirs("attack") else {
        return;
    };
    let root = busybox_root(&dir);
    pack_signed(
        &dir,
        &root,
        &files,
        "m",
        "entrypoint = [\"/bin/sh\", \"-c\"]\ncmd = [\"echo guest-ok; exit 3\"]\nnet = false\n",
    );
    build_attack_library(&files);
    let src = dir.join("listener.c");
    std::fs::write(&src, LISTENER_C).unwrap();
    run_ok(
        Command::new("cc")
            .args(["-static", "-O2", "-o"])
            .arg(files.join("listener"))
            .arg(&src),
    );
    let script = dir.join("scenarios.sh");
    std::fs::write(
        &script,
        SCENARIOS
            .replace(
                "@ATTACK@",
                &quote(&ATTACK.replace("@PORT@", &PORT.to_string())),
            )
            .replace("@STATUS@", &quote(STATUS)),
    )
    .unwrap();
    let mut s = run_l1(&files, &script, 900);

    for suffix in ["", USER_SUFFIX] {
        s.check(&format!("attack{suffix}"), |rc, t| {
            let mut short = AttackReport::parse(t).shortfalls();
            if rc != 3 || !t.contains("guest-ok\n") || !t.contains("share: 0 files\n") {
                short.push(format!(
                    "the guest's output (guest-ok, an empty share) and exit code 3 must come through; rc={rc}"
                ));
            }
            if !t.contains("listener-accepted tcp=0 unix=0\n") {
                short.push("connections reached the host listeners".into());
            }
            if !t.contains("probe tcp=ok unix=ok\n") {
                short.push("the listener was not up: the connect results prove nothing".into());
            }
            if t.contains("left behind: ") {
                short.push("files the VMM created outside the share were left behind".into());
            }
            assert!(
                short.is_empty(),
                "the VMM is not confined once the guest runs:\n  {}\noutput:\n{t}",
                short.join("\n  ")
            );
        });
    }
    s.check_both("vmm-status", |rc, t| {
        assert_eq!(rc, 0, "{t}");
        assert!(
            t.contains("guest-running\n")
                && t.contains("guest-done\n")
                && t.contains("machine-rc=0\n"),
            "the machine ran to its end: {t}"
        );
        assert!(!t.contains("vmm found: no"), "the VMM was found: {t}");
        let missing: Vec<&str> = [
            "NoNewPrivs: 1\n",
            "Seccomp: 2\n",
            "CapEff: 0000000000000000\n",
        ]
        .into_iter()
        .filter(|want| !t.contains(want))
        .collect();
        assert!(
            missing.is_empty(),
            "the running VMM's status lacks {missing:?}: {t}"
        );
    });
    s.finish();
}

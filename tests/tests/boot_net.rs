//! The network policy in real boots (issue 8): what the Smolfile says about
//! the network is what the guest gets, enforced on the host by the egress
//! supervisor (docs/network.md). One L1 boot; every guest scenario runs as
//! root and as a non-root host user (lib.sh's `both`).
//!
//! The L1 machine plays the outside world, on addresses of its own:
//! - 127.0.0.1:8081 (loopback) and 192.0.2.1:8082 (an address of its `lo`:
//!   one of "the host's own addresses");
//! - 203.0.113.0/24 is routed to `lo` as a local route (AnyIP), not an
//!   interface address: "some other host" (httpd on 203.0.113.5:8083);
//! - a UDP listener on 192.0.2.1:53 records what reaches it: the machine
//!   whose allow_cidrs lists 192.0.2.1 must get there, the open machine
//!   (for which it is one of the host's own addresses) must not;
//! - 8.8.8.8 has no route in L1: reached by a policy that allows it, the
//!   guest sees "Network is unreachable"; refused by policy, "Connection
//!   refused".
//!
//! SSH agent forwarding runs in the same boot: a fresh ssh-agent with a
//! fresh key on the L1 host, the guest's ssh-add (copied into the image).
//! - /etc/hosts names: allowed.test -> 192.0.2.1, loopy.test -> 127.0.0.1,
//!   other.test -> 203.0.113.5 (the host's resolver, which ours asks).

use std::path::Path;
use std::process::Command;

use smolvm_tests::{boot_dirs, busybox_root, pack_signed, run_l1, run_ok};

const SETUP: &str = r#"export SMOLVM_CACHE_DIR=/tmp/netcache
ip link set lo up
ip addr add 192.0.2.1/32 dev lo
ip route add local 203.0.113.0/24 dev lo
cat >>/etc/hosts <<H
192.0.2.1 allowed.test
127.0.0.1 loopy.test
203.0.113.5 other.test
H
for d in allowed loopback other; do mkdir -p /tmp/www-$d; echo "$d-server" >/tmp/www-$d/index.html; done
httpd -p 127.0.0.1:8081 -h /tmp/www-loopback
httpd -p 192.0.2.1:8082 -h /tmp/www-allowed
httpd -p 203.0.113.5:8083 -h /tmp/www-other
# Records every datagram that reaches 192.0.2.1:53.
touch /tmp/udp.log
./udp-recorder 192.0.2.1 53 /tmp/udp.log &
# Bound before any guest sends (at most 60 s), not a fixed second later.
i=0; while ! netstat -lun | grep -q '192\.0\.2\.1:53 ' && [ $i -lt 600 ]; do sleep 0.1; i=$((i+1)); done
"#;

/// Appends every datagram reaching ADDR:PORT to FILE, one line each (the
/// L1 busybox has no UDP listener).
const UDP_RECORDER_C: &str = r#"
#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
int main(int argc, char **argv) {
    if (argc != 4) return 2;
    int s = socket(AF_INET, SOCK_DGRAM, 0);
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons(atoi(argv[2])) };
    inet_pton(AF_INET, argv[1], &a.sin_addr);
    if (bind(s, (struct sockaddr *)&a, sizeof a)) { perror("bind"); return 1; }
    char buf[2048];
    for (;;) {
        ssize_t n = recv(s, buf, sizeof buf, 0);
        if (n <= 0) continue;
        FILE *f = fopen(argv[3], "a");
        for (ssize_t i = 0; i < n; i++) fputc(buf[i] >= 32 && buf[i] < 127 ? buf[i] : '.', f);
        fputc('\n', f);
        fclose(f);
    }
}
"#;

/// Guest snippets. `t` prints how a connection attempt ended: the body, or
/// busybox wget's error with the errno text.
const GUEST_LISTS: &str = r#"t() { wget -q -O- "$1" 2>&1 | sed 's/^wget: //'; }
u() { nslookup -type=a "$1" "$2" 2>&1 | grep -o 'Connection refused\|Network is unreachable\|timed out' | head -1; }
echo "== allowed cidr"; t http://192.0.2.1:8082/
echo "== other address"; t http://203.0.113.5:8083/
echo "== loopback"; t http://127.0.0.1:8081/
echo "== metadata"; t http://169.254.169.254/
echo "== ipv6 loopback"; t 'http://[::1]:8081/'
echo "== ping"; ping -c 1 -W 2 203.0.113.5 >/dev/null 2>&1 && echo reached || echo unreachable
echo "== resolv.conf"; grep nameserver /etc/resolv.conf
echo "== dns allowed"; nslookup allowed.test 2>&1 | grep -E '^Address: |NXDOMAIN'
echo "== dns denied"; nslookup other.test 2>&1 | grep -E '^Address: |NXDOMAIN' | sort -u
echo "== name resolving to loopback"; t http://loopy.test:8081/
echo "== allowed by name"; t http://allowed.test:8082/
echo "== dns to another server"; u any.test 8.8.8.8
echo "== udp to a listed address"; nslookup -type=a lists-probe.test 192.0.2.1 >/dev/null 2>&1; echo sent
"#;

const GUEST_OPEN: &str = r#"t() { wget -q -O- "$1" 2>&1 | sed 's/^wget: //'; }
u() { nslookup -type=a "$1" "$2" 2>&1 | grep -o 'Connection refused\|Network is unreachable\|timed out' | head -1; }
echo "== other address"; t http://203.0.113.5:8083/
echo "== by name"; t http://other.test:8083/
echo "== loopback"; t http://127.0.0.1:8081/
echo "== host address"; t http://192.0.2.1:8082/
echo "== metadata"; t http://169.254.169.254/
echo "== dns to another server"; u any.test 8.8.8.8
echo "== udp to a host address"; u open-probe.test 192.0.2.1
"#;

/// Published and unpublished listeners: the guest serves on port 80
/// (published as 18080) for 15 s and tries port 9099 (not published); the
/// L1 host looks at what listens and fetches the published one.
const PORTS_SH: &str = r#"./ports 'mkdir -p /tmp/www && echo from-guest-80 >/tmp/www/index.html; httpd -p 9099 -h /tmp/www 2>/dev/null || echo "9099 refused"; httpd -p 80 -h /tmp/www && sleep 15' &
pid=$!
i=0
while [ $i -lt 120 ] && ! netstat -ltn | grep -q ':18080 '; do sleep 1; i=$((i+1)); done
echo "listening:"; netstat -ltn | awk '{print $4}' | grep -E ':(18080|9099|80)$' | sort
echo "fetch:"; wget -q -O- http://127.0.0.1:18080/
wait $pid
"#;

/// Runs "$@" with a fresh ssh-agent holding a fresh test key, as whoever
/// runs it (root, or the user with its own agent).
const WITH_AGENT_SH: &str = r#"eval "$(./ssh-agent -s)" >/dev/null
./ssh-keygen -q -t ed25519 -N '' -C smolvm-test-key -f "$HOME/testkey"
./ssh-add -q "$HOME/testkey" 2>/dev/null
# The workload gets one line of the private key as its last argument, to
# look for it in the guest.
"$@" "$(sed -n 2p "$HOME/testkey")"; rc=$?
kill "$SSH_AGENT_PID"; rm -f "$HOME/testkey" "$HOME/testkey.pub"
exit $rc
"#;

/// In the guest: what the agent lists, where the socket is, who owns its
/// directory, and that no file in the guest holds the private key ($0, a
/// line of it; /bin is busybox's applet links, /dev /proc /sys are not
/// files).
const GUEST_AGENT: &str = r#"id -u
ssh-add -l | cut -d' ' -f3
echo "sock=$SSH_AUTH_SOCK"
stat -c '%a %u' /run/smolvm
for d in /*; do case $d in /bin|/dev|/proc|/sys) ;; *) echo "$d" ;; esac; done | xargs grep -rlF -- "$0" 2>/dev/null | wc -l
"#;

/// Copies `bin` and the shared libraries it needs into `root`.
fn add_with_libs(root: &Path, bin: &str) {
    let copy = |from: &str| {
        let to = root.join(from.trim_start_matches('/'));
        std::fs::create_dir_all(to.parent().unwrap()).unwrap();
        std::fs::copy(from, &to).unwrap_or_else(|e| panic!("{from}: {e}"));
    };
    copy(bin);
    let ldd = run_ok(Command::new("ldd").arg(bin));
    for lib in ldd.split_whitespace().filter(|w| w.starts_with('/')) {
        copy(&std::fs::canonicalize(lib).unwrap().to_string_lossy());
        if !root.join(lib.trim_start_matches('/')).exists() {
            copy(lib);
        }
    }
}

/// The lines after `== title` up to the next title.
fn section<'a>(text: &'a str, title: &str) -> Vec<&'a str> {
    text.lines()
        .skip_while(|l| *l != format!("== {title}"))
        .skip(1)
        .take_while(|l| !l.starts_with("== "))
        .collect()
}

fn refused(lines: &[&str]) -> bool {
    lines.len() == 1 && lines[0].contains("Connection refused")
}

#[test]
fn the_network_policy_holds_in_a_real_guest() {
    let Some((dir, files)) = boot_dirs("net") else {
        return;
    };
    let root = busybox_root(&dir);
    let sh = "entrypoint = [\"/bin/sh\", \"-c\"]\nnet = true\n";
    pack_signed(
        &dir,
        &root,
        &files,
        "lists",
        &format!("{sh}[network]\nallow_cidrs = [\"192.0.2.1/32\"]\nallow_hosts = [\"allowed.test\", \"loopy.test\"]\n"),
    );
    pack_signed(&dir, &root, &files, "open", sh);
    pack_signed(
        &dir,
        &root,
        &files,
        "ports",
        &format!("{sh}ports = [\"18080:80\"]\n"),
    );
    std::fs::write(files.join("ports.sh"), PORTS_SH).unwrap();

    // SSH agent: the guest image gets ssh-add (and an `app` user), the L1
    // host an ssh-agent, ssh-keygen and ssh-add.
    let agent_root = dir.join("agent");
    std::fs::create_dir_all(&agent_root).unwrap();
    let agent_root = busybox_root(&agent_root);
    add_with_libs(&agent_root, "/usr/bin/ssh-add");
    std::fs::create_dir_all(agent_root.join("etc")).unwrap();
    std::fs::write(
        agent_root.join("etc/passwd"),
        "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000:app:/home/app:/bin/sh\n",
    )
    .unwrap();
    let agent = "entrypoint = [\"/bin/sh\", \"-c\"]\n[auth]\nssh_agent = true\n";
    pack_signed(&dir, &agent_root, &files, "agent", agent);
    pack_signed(
        &dir,
        &agent_root,
        &files,
        "agentapp",
        &format!("user = \"app\"\n{agent}"),
    );
    for tool in ["ssh-agent", "ssh-keygen", "ssh-add"] {
        std::fs::copy(format!("/usr/bin/{tool}"), files.join(tool)).unwrap();
    }
    std::fs::write(files.join("with-agent.sh"), WITH_AGENT_SH).unwrap();
    let src = dir.join("udp-recorder.c");
    std::fs::write(&src, UDP_RECORDER_C).unwrap();
    run_ok(
        Command::new("cc")
            .args(["-static", "-O2", "-o"])
            .arg(files.join("udp-recorder"))
            .arg(&src),
    );

    let quote = |s: &str| format!("'{}'", s.replace('\'', r"'\''"));
    let script = dir.join("scenarios.sh");
    std::fs::write(
        &script,
        format!(
            "{SETUP}{}",
            r#"both lists ./lists @LISTS@
both open ./open @OPEN@
scenario udp-received sh -c 'for p in open-probe lists-probe; do echo "$p $(grep -c "$p" /tmp/udp.log)"; done'
both ports sh ./ports.sh
both agent sh ./with-agent.sh ./agent --smolvm-ssh-agent @AGENT@
both agent-app sh ./with-agent.sh ./agentapp --smolvm-ssh-agent @AGENT@
both agent-env sh ./with-agent.sh env SMOLVM_SSH_AGENT=1 ./agent 'ssh-add -l | cut -d" " -f3'
both agent-no-consent sh ./with-agent.sh ./agent 'echo "sock=$SSH_AUTH_SOCK"; ls /run/smolvm 2>&1; true'
both agent-none env -u SSH_AUTH_SOCK ./agent --smolvm-ssh-agent 'echo "sock=$SSH_AUTH_SOCK"'
"#
            .replace("@LISTS@", &quote(GUEST_LISTS))
            .replace("@OPEN@", &quote(GUEST_OPEN))
            .replace("@AGENT@", &quote(GUEST_AGENT))
        ),
    )
    .unwrap();
    let mut s = run_l1(&files, &script, 1200);
    s.check_both("lists", |rc, t| {
        assert_eq!(rc, 0, "{t}");
        assert_eq!(section(t, "allowed cidr"), ["allowed-server"], "{t}");
        for denied in ["other address", "loopback", "metadata", "ipv6 loopback"] {
            assert!(refused(&section(t, denied)), "{denied} not refused:\n{t}");
        }
        // An allowed name resolving to loopback: the answer leaves the
        // refused address out (issue 20), so the name does not resolve at
        // all, and nothing is reached.
        assert_eq!(
            section(t, "name resolving to loopback"),
            ["bad address 'loopy.test:8081'"],
            "{t}"
        );
        assert_eq!(section(t, "ping"), ["unreachable"], "{t}");
        assert_eq!(section(t, "resolv.conf"), ["nameserver 10.0.2.3"], "{t}");
        assert_eq!(section(t, "dns allowed"), ["Address: 192.0.2.1"], "{t}");
        assert_eq!(
            section(t, "dns denied"),
            ["** server can't find other.test: NXDOMAIN"],
            "{t}"
        );
        assert_eq!(section(t, "allowed by name"), ["allowed-server"], "{t}");
        assert_eq!(
            section(t, "dns to another server"),
            ["Connection refused"],
            "{t}"
        );
        assert_eq!(section(t, "udp to a listed address"), ["sent"], "{t}");
    });
    s.check_both("open", |rc, t| {
        assert_eq!(rc, 0, "{t}");
        assert_eq!(section(t, "other address"), ["other-server"], "{t}");
        assert_eq!(section(t, "by name"), ["other-server"], "{t}");
        for denied in ["loopback", "host address", "metadata"] {
            assert!(refused(&section(t, denied)), "{denied} not refused:\n{t}");
        }
        // Allowed by policy: reaches the host, which has no route there.
        assert_eq!(
            section(t, "dns to another server"),
            ["Network is unreachable"],
            "{t}"
        );
        assert_eq!(
            section(t, "udp to a host address"),
            ["Connection refused"],
            "{t}"
        );
    });
    // UDP to 192.0.2.1:53: the lists machine (which lists it) got there,
    // root's run and the user's; the open machine (for which it is the
    // host's own address) never did.
    s.check("udp-received", |rc, t| {
        let count = |p: &str| -> u32 {
            t.lines()
                .find_map(|l| l.strip_prefix(p))
                .and_then(|n| n.trim().parse().ok())
                .unwrap_or_else(|| panic!("no count for {p}: {t}"))
        };
        assert_eq!(rc, 0, "{t}");
        assert!(count("lists-probe ") >= 2, "allowed datagrams arrive: {t}");
        assert_eq!(
            count("open-probe "),
            0,
            "a denied address gets nothing: {t}"
        );
    });
    s.check_both("ports", |rc, t| {
        assert_eq!(rc, 0, "{t}");
        assert_eq!(
            t, "9099 refused\nlistening:\n::ffff:127.0.0.1:18080\nfetch:\nfrom-guest-80\n",
            "published on loopback only, unpublished port not opened"
        );
    });
    s.check_both("agent", |rc, t| {
        assert_eq!(
            (rc, t),
            (
                0,
                "0\nsmolvm-test-key\nsock=/run/smolvm/ssh-agent.sock\n700 0\n0\n"
            ),
            "the key is listed through the socket; no key file in the guest"
        );
    });
    s.check_both("agent-app", |rc, t| {
        assert_eq!(
            (rc, t),
            (
                0,
                "1000\nsmolvm-test-key\nsock=/run/smolvm/ssh-agent.sock\n700 1000\n0\n"
            ),
            "a non-root workload gets its own socket directory"
        );
    });
    s.expect_both("agent-env", 0, "smolvm-test-key\n");
    s.expect_both(
        "agent-no-consent",
        0,
        "smolvm: SSH agent not forwarded: this machine asks for your SSH agent; allow it with --smolvm-ssh-agent (or SMOLVM_SSH_AGENT=1)\nsock=\nls: /run/smolvm: No such file or directory\n",
    );
    s.expect_both(
        "agent-none",
        0,
        "smolvm: SSH agent not forwarded: no SSH agent here (SSH_AUTH_SOCK is not set)\nsock=\n",
    );
    s.finish();
    let _ = std::fs::remove_dir_all(&dir);
}

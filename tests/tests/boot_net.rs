//! The network policy in real boots (issue 8): what the Smolfile says about
//! the network is what the guest gets, enforced on the host by the egress
//! supervisor (docs/network.md). One L1 boot; every guest scenario runs as
//! root and as a non-root host user (lib.sh's `both`).
//!
//! The L1 machine plays the outside world, on addresses of its own:
//! - 127.0.0.1:8081 (loopback) and 192.0.2.1:8082 (an address of its `lo`:
//!   one of "the host's own addresses");
//! - 203.0.113.0/24 is routed to `lo` as a local route (AnyIP), not an
//!   interface address: "some other host" (httpd on 203.0.113.5:8083, and a
//!   UDP listener on 203.0.113.5:53 that records what reaches it);
//! - /etc/hosts names: allowed.test -> 192.0.2.1, loopy.test -> 127.0.0.1,
//!   other.test -> 203.0.113.5 (the host's resolver, which ours asks).

use std::path::Path;
use std::process::Command;

use smolvm_tests::{
    busybox_root, guest_kernel as kernel, harness_available, release_smolvm as smolvm, repo,
    run_ok, scratch_dir, stub_bin as stub, Scenarios,
};

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
# Records every datagram that reaches 203.0.113.5:53.
./udp-recorder 203.0.113.5 53 /tmp/udp.log &
sleep 1
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
const GUEST_LISTS: &str = r#"t() { wget -q -T 5 -O- "$1" 2>&1 | sed 's/^wget: //'; }
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
echo "== dns to another server"; nslookup -type=a lists-probe.test 203.0.113.5 >/dev/null 2>&1 && echo answered || echo no-answer
"#;

const GUEST_OPEN: &str = r#"t() { wget -q -T 5 -O- "$1" 2>&1 | sed 's/^wget: //'; }
echo "== other address"; t http://203.0.113.5:8083/
echo "== by name"; t http://other.test:8083/
echo "== loopback"; t http://127.0.0.1:8081/
echo "== host address"; t http://192.0.2.1:8082/
echo "== metadata"; t http://169.254.169.254/
echo "== udp to another host"; nslookup -type=a open-probe.test 203.0.113.5 >/dev/null 2>&1; echo sent
"#;

/// Latency: 200 TCP connects to an allowed server, timed in the guest.
const GUEST_LATENCY: &str = r#"s=$(cut -d' ' -f1 /proc/uptime)
i=0; ok=0
while [ $i -lt 200 ]; do nc -w 2 "$1" "$2" </dev/null >/dev/null 2>&1 && ok=$((ok+1)); i=$((i+1)); done
e=$(cut -d' ' -f1 /proc/uptime)
echo "connects=$ok ms=$(awk -v a=$s -v b=$e 'BEGIN{printf "%d", (b-a)*1000}')"
"#;

/// Published and unpublished listeners: the guest serves one request on
/// port 80 (published as 18080) and tries port 9099 (not published); the
/// L1 host looks at what listens and fetches the published one.
const PORTS_SH: &str = r#"./ports 'nc -l -p 9099 </dev/null >/dev/null 2>&1 & printf "HTTP/1.0 200 OK\r\n\r\nfrom-guest-80\n" | nc -l -p 80 >/dev/null; echo guest-served' &
pid=$!
i=0
while [ $i -lt 120 ] && ! netstat -ltn | grep -q ':18080 '; do sleep 1; i=$((i+1)); done
echo "listening:"; netstat -ltn | awk '{print $4}' | grep -E ':(18080|9099|80)$' | sort
echo "fetch:"; wget -q -T 10 -O- http://127.0.0.1:18080/
wait $pid
"#;

fn pack(dir: &Path, root: &Path, files: &Path, name: &str, smolfile: &str) {
    let sf = dir.join(format!("{name}.Smolfile"));
    std::fs::write(&sf, smolfile).unwrap();
    run_ok(
        Command::new(smolvm())
            .args(["pack", "create", "--smolfile"])
            .arg(&sf)
            .arg("--rootfs")
            .arg(root)
            .arg("--kernel")
            .arg(kernel())
            .arg("--key")
            .arg(dir.join("keys/smolvm.key"))
            .arg("--stub")
            .arg(stub())
            .arg("-o")
            .arg(files.join(name)),
    );
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
    if !harness_available() {
        return;
    }
    let dir = scratch_dir("boot", "net");
    let root = busybox_root(&dir);
    let files = dir.join("files");
    std::fs::create_dir_all(&files).unwrap();
    run_ok(
        Command::new(smolvm())
            .args(["pack", "keygen", "-o"])
            .arg(dir.join("keys")),
    );
    let sh = "entrypoint = [\"/bin/sh\", \"-c\"]\nnet = true\n";
    pack(
        &dir,
        &root,
        &files,
        "lists",
        &format!("{sh}[network]\nallow_cidrs = [\"192.0.2.1/32\"]\nallow_hosts = [\"allowed.test\", \"loopy.test\"]\n"),
    );
    pack(&dir, &root, &files, "open", sh);
    pack(
        &dir,
        &root,
        &files,
        "ports",
        &format!("{sh}ports = [\"18080:80\"]\n"),
    );
    std::fs::write(files.join("ports.sh"), PORTS_SH).unwrap();
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
            r#"both lists ./lists LISTS
both open ./open OPEN
scenario udp-received sh -c 'for p in open-probe lists-probe; do echo "$p $(grep -c "$p" /tmp/udp.log)"; done'
both ports sh ./ports.sh
both latency-lists ./lists LATENCY sh 192.0.2.1 8082
both latency-open ./open LATENCY sh 203.0.113.5 8083
both no-supervisor env SMOLVM_TEST_NO_SECCOMP_NOTIFY=1 ./open true
"#
            .replace("LISTS", &quote(GUEST_LISTS))
            .replace("OPEN", &quote(GUEST_OPEN))
            .replace("LATENCY", &quote(GUEST_LATENCY))
        ),
    )
    .unwrap();
    let out = Command::new(repo().join("tests/harness/run-l1.sh"))
        .arg("--files")
        .arg(&files)
        .arg("--script")
        .arg(&script)
        .args(["--timeout", "1200"])
        .output()
        .unwrap();
    let console = String::from_utf8_lossy(&out.stdout).into_owned();
    println!("{console}");
    assert!(
        out.status.success(),
        "L1 run failed ({}):\n{console}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let mut s = Scenarios::parse(&console);
    s.check_both("lists", |rc, t| {
        assert_eq!(rc, 0, "{t}");
        assert_eq!(section(t, "allowed cidr"), ["allowed-server"], "{t}");
        for denied in [
            "other address",
            "loopback",
            "metadata",
            "ipv6 loopback",
            "name resolving to loopback",
        ] {
            assert!(refused(&section(t, denied)), "{denied} not refused:\n{t}");
        }
        assert_eq!(section(t, "ping"), ["unreachable"], "{t}");
        assert_eq!(section(t, "resolv.conf"), ["nameserver 10.0.2.3"], "{t}");
        assert_eq!(section(t, "dns allowed"), ["Address: 192.0.2.1"], "{t}");
        assert_eq!(
            section(t, "dns denied"),
            ["** server can't find other.test: NXDOMAIN"],
            "{t}"
        );
        assert_eq!(section(t, "allowed by name"), ["allowed-server"], "{t}");
        assert_eq!(section(t, "dns to another server"), ["no-answer"], "{t}");
    });
    s.check_both("open", |rc, t| {
        assert_eq!(rc, 0, "{t}");
        assert_eq!(section(t, "other address"), ["other-server"], "{t}");
        assert_eq!(section(t, "by name"), ["other-server"], "{t}");
        for denied in ["loopback", "host address", "metadata"] {
            assert!(refused(&section(t, denied)), "{denied} not refused:\n{t}");
        }
    });
    // UDP: the open machines' probes arrived (root's and the user's); the
    // lists machines' DNS queries to the same address never did.
    s.check("udp-received", |rc, t| {
        let count = |p: &str| -> u32 {
            t.lines()
                .find_map(|l| l.strip_prefix(p))
                .and_then(|n| n.trim().parse().ok())
                .unwrap_or_else(|| panic!("no count for {p}: {t}"))
        };
        assert_eq!(rc, 0, "{t}");
        assert!(
            count("open-probe ") >= 2,
            "the open machine's datagrams arrive: {t}"
        );
        assert_eq!(
            count("lists-probe "),
            0,
            "a denied address gets nothing: {t}"
        );
    });
    s.check_both("ports", |rc, t| {
        assert_eq!(rc, 0, "{t}");
        assert_eq!(
            t, "listening:\n::ffff:127.0.0.1:18080\nfetch:\nfrom-guest-80\nguest-served\n",
            "published on loopback only, unpublished port not opened"
        );
    });
    let mut figures = Vec::new();
    for name in [
        "latency-lists",
        "latency-open",
        "latency-lists@user",
        "latency-open@user",
    ] {
        s.check(name, |rc, t| {
            assert_eq!(rc, 0, "{t}");
            assert!(t.starts_with("connects=200 "), "{t}");
            figures.push(format!("{name}: {}", t.trim()));
        });
    }
    s.check_both("no-supervisor", |rc, t| {
        assert_eq!(rc, 2, "{t}");
        assert!(
            t.contains("cannot be enforced here") && t.contains("refusing to start"),
            "{t}"
        );
    });
    println!("connect latency, 200 connects from the guest (L1 nested, noisy):");
    for f in &figures {
        println!("  {f}");
    }
    s.finish();
    let _ = std::fs::remove_dir_all(&dir);
}

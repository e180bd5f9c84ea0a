//! Network containment in real boots (issue 20): nothing comes in, the LAN
//! stays closed, and the host sockets a guest can make the VMM hold are
//! bounded. One L1 boot; every scenario runs as root and as uid 1000
//! (lib.sh's `both`). The guest's workload is tests/harness/tsiprobe.c (a
//! hostile program in a stock guest: it speaks TSI itself over vsock
//! datagrams), the L1 host's helpers tests/harness/netpeer.c.
//!
//! What each scenario shows:
//! - `contain`: guest listeners (bind(0)+listen, listen without bind, an
//!   unpublished TCP port and an unpublished UDP port) and raw TSI LISTEN
//!   requests (port 0, an unpublished port, a `sockaddr_un` naming a host
//!   socket on an inet proxy and on a Unix proxy, an `addr_len` past the
//!   packet, every request cut short at every length): no TCP listener and
//!   no UDP socket appears in L1 (/proc/net/{tcp,udp}{,6} compared while the
//!   guest holds its sockets against a snapshot taken once the VMM ran), the
//!   host's Unix socket is still there and answers, the VMM keeps running
//!   (a fetch afterwards, the exit code comes through);
//! - `udp`: the guest sends one datagram to a peer in L1; strangers (other
//!   ports, other addresses) send to the VMM's datagram port before the peer
//!   answers: only the peer's answer reaches the guest;
//! - `lan-*`: 10.77.0.5 on an AnyIP local route of L1 (a private address
//!   that is not one of the host's own): refused by default, reachable when
//!   `allow_cidrs` lists it, and a listed name resolving to it (lan.test)
//!   opens nothing;
//! - `many`: 2000 TCP connections from the guest: at most 1024 reach the
//!   host (patch 0010), the rest fail with ENFILE at once, the VMM holds no
//!   more host sockets than that, the L1 host still serves, and once the
//!   guest closes them new connections work again.

use std::path::Path;
use std::process::Command;

use smolvm_tests::{boot_dirs, busybox_root, pack_signed, repo, run_l1, run_ok};

const SETUP: &str = r#"export SMOLVM_CACHE_DIR=/tmp/containcache
ip link set lo up
ip addr add 192.0.2.1/32 dev lo
ip route add local 10.77.0.0/24 dev lo
echo '10.77.0.5 lan.test' >>/etc/hosts
for d in allowed lan; do mkdir -p /tmp/www-$d; echo "$d-server" >/tmp/www-$d/index.html; done
httpd -p 192.0.2.1:8082 -h /tmp/www-allowed
httpd -p 10.77.0.5:8084 -h /tmp/www-lan
"#;

/// Shell functions for the snippets below: `waitfor WORD` (up to 120 s for
/// WORD in $out), `snap` (every TCP listener and every UDP socket of L1,
/// from /proc/net, one `file address` line each).
const FUNCS: &str = r#"waitfor() { i=0; while ! grep -qs "$1" "$out" && [ $i -lt 1200 ]; do sleep 0.1; i=$((i+1)); done; }
snap() { awk 'FNR > 1 && (FILENAME ~ /udp/ || $4 == "0A") { print FILENAME, $2 }' /proc/net/tcp /proc/net/tcp6 /proc/net/udp /proc/net/udp6 | sort; }
"#;

const CONTAIN: &str = r#"h=$HOME; out=$h/contain.out; victim=/tmp/victim-$(id -u).sock
rm -rf "$h/sync"; mkdir -p "$h/sync"
./netpeer unix-serve "$victim" >"$h/victim.log" 2>&1 &
vp=$!
./guard --smolvm-volume="$h/sync:/sync" "echo ready; while [ ! -e /sync/go ]; do sleep 0.1; done; tsiprobe contain /sync/done $victim; wget -q -O- http://192.0.2.1:8082/; exit 3" >"$out" 2>&1 &
mp=$!
waitfor ready; snap >"$h/before"; touch "$h/sync/go"
waitfor holding; snap >"$h/during"
echo "host sockets before: $(wc -l <"$h/before")"
echo "new host sockets: $(grep -vxFf "$h/before" "$h/during" | tr '\n' ' ')"
./netpeer unix-probe "$victim"
touch "$h/sync/done"
wait $mp; echo "machine-rc=$?"
kill $vp
cat "$out"
"#;

const UDP: &str = r#"h=$HOME
./netpeer udp-peer 192.0.2.1 9999 >"$h/peer.log" 2>&1 &
pp=$!
./guard 'tsiprobe udp 192.0.2.1 9999; echo "== lan by name"; wget -q -O- http://lan.test:8084/ 2>&1; echo "== lan by address"; wget -q -O- http://10.77.0.5:8084/ 2>&1; true'
wait $pp
echo "== peer"
cat "$h/peer.log"
"#;

const MANY: &str = r#"h=$HOME; out=$h/many.out; port=$((7000 + $(id -u)))
rm -rf "$h/sync"; mkdir -p "$h/sync"
./netpeer hold 192.0.2.1 $port >"$h/hold.log" 2>&1 &
hp=$!
./guard --smolvm-volume="$h/sync:/sync" "tsiprobe many 2000 192.0.2.1 $port /sync/done" >"$out" 2>&1 &
sp=$!
waitfor holding
vmm=
for s in /proc/[0-9]*/status; do
    [ "$(awk '/^PPid:/ {print $2}' "$s" 2>/dev/null)" = "$sp" ] && vmm=${s%/status} && vmm=${vmm#/proc/}
done
echo "vmm found: ${vmm:-no}"
[ -n "$vmm" ] && echo "vmm sockets: $(ls -l "/proc/$vmm/fd" | grep -c 'socket:')"
echo "host accepted: $(ls -l "/proc/$hp/fd" | grep -c 'socket:')"
echo "host serves: $(wget -q -O- http://192.0.2.1:8082/)"
touch "$h/sync/done"
wait $sp; echo "machine-rc=$?"
kill $hp
cat "$h/hold.log" "$out"
"#;

const SCENARIOS: &str = r#"both contain sh -c @CONTAIN@
both udp sh -c @UDP@
both lan-default ./open 'wget -q -O- http://10.77.0.5:8084/ 2>&1; true'
both lan-listed ./lan 'wget -q -O- http://10.77.0.5:8084/ 2>&1; true'
both many sh -c @MANY@
"#;

fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// `cc -static` of a harness C file into `out`.
fn build_static(src: &str, out: &Path) {
    run_ok(
        Command::new("cc")
            .args(["-static", "-O2", "-Wall", "-Werror", "-o"])
            .arg(out)
            .arg(repo().join("tests/harness").join(src)),
    );
}

/// The number after `prefix` on the line that starts with it.
fn number_after(t: &str, prefix: &str) -> Option<u32> {
    let rest = t.lines().find_map(|l| l.strip_prefix(prefix))?;
    rest.split(|c: char| !c.is_ascii_digit())
        .next()?
        .parse()
        .ok()
}

/// The lines after `== title` up to the next title.
fn section<'a>(text: &'a str, title: &str) -> Vec<&'a str> {
    text.lines()
        .skip_while(|l| *l != format!("== {title}"))
        .skip(1)
        .take_while(|l| !l.starts_with("== "))
        .collect()
}

#[test]
fn nothing_comes_in_the_lan_stays_closed_and_sockets_are_bounded() {
    let Some((dir, files)) = boot_dirs("netcontain") else {
        return;
    };
    let root = busybox_root(&dir);
    build_static("tsiprobe.c", &root.join("bin/tsiprobe"));
    build_static("netpeer.c", &files.join("netpeer"));
    let sh = "entrypoint = [\"/bin/sh\", \"-c\"]\nnet = true\n";
    pack_signed(
        &dir,
        &root,
        &files,
        "guard",
        &format!("{sh}[network]\nallow_cidrs = [\"192.0.2.1/32\"]\nallow_hosts = [\"lan.test\"]\n"),
    );
    pack_signed(&dir, &root, &files, "open", sh);
    pack_signed(
        &dir,
        &root,
        &files,
        "lan",
        &format!("{sh}[network]\nallow_cidrs = [\"10.77.0.0/24\"]\n"),
    );
    let script = dir.join("scenarios.sh");
    std::fs::write(
        &script,
        format!(
            "{SETUP}{}",
            SCENARIOS
                .replace("@CONTAIN@", &quote(&format!("{FUNCS}{CONTAIN}")))
                .replace("@UDP@", &quote(UDP))
                .replace("@MANY@", &quote(&format!("{FUNCS}{MANY}")))
        ),
    )
    .unwrap();
    let mut s = run_l1(&files, &script, 1800);

    s.check_both("contain", |rc, t| {
        assert_eq!(rc, 0, "{t}");
        assert!(
            t.contains("new host sockets: \n"),
            "a guest listener reached the host:\n{t}"
        );
        assert!(
            t.contains("victim: ok\n"),
            "the host's Unix socket is gone:\n{t}"
        );
        // The snapshot sees L1's own listeners (two httpd, the resolver).
        let before = number_after(t, "host sockets before: ").unwrap_or(0);
        assert!(before >= 3, "the snapshot of L1's sockets is empty:\n{t}");
        assert!(
            t.contains("holding\n")
                && t.contains("allowed-server\n")
                && t.contains("machine-rc=3\n"),
            "the machine ran to its end after the attempts:\n{t}"
        );
        // What the guest is told: its listens fail (EACCES from patch 0008
        // and the supervisor), a Unix address on an inet proxy is EINVAL
        // (patch 0007), an AF_UNIX proxy is never made (no HIJACK_UNIX).
        for refused in [
            "tcp bind 0: ok, listen: Permission denied\n",
            "tcp bind 9099: ok, listen: Permission denied\n",
            "raw listen sockaddr_un on a unix proxy: result -1 ",
            "short requests sent: 128\n",
            "raw listen 0.0.0.0:0: result -13 ",
            "raw listen 0.0.0.0:9099: result -13 ",
            "raw listen sockaddr_un on an inet proxy: result -22 ",
        ] {
            assert!(t.contains(refused), "expected `{refused}`:\n{t}");
        }
        assert!(!t.contains("result 0\n"), "a raw listen succeeded:\n{t}");
    });
    s.check_both("udp", |rc, t| {
        assert_eq!(rc, 0, "{t}");
        assert!(
            t.contains("strangers sent 3\n") && t.contains("peer replied\n"),
            "the peer saw the guest's datagram and the strangers sent theirs:\n{t}"
        );
        let got: Vec<&str> = t.lines().filter(|l| l.starts_with("got ")).collect();
        assert_eq!(
            got,
            ["got from-peer"],
            "only the peer's answer arrives:\n{t}"
        );
        assert_eq!(
            section(t, "lan by name"),
            ["wget: bad address 'lan.test:8084'"],
            "a listed name resolving to a private address resolves to nothing:\n{t}"
        );
        let by_addr = section(t, "lan by address");
        assert!(
            by_addr.len() == 1 && by_addr[0].contains("Connection refused"),
            "nor is its address reachable:\n{t}"
        );
    });
    s.check_both("lan-default", |rc, t| {
        assert_eq!(rc, 0, "{t}");
        assert!(
            t.contains("Connection refused"),
            "a private address is refused by default: {t}"
        );
    });
    s.check_both("lan-listed", |rc, t| {
        assert_eq!(
            (rc, t),
            (0, "lan-server\n"),
            "listed in allow_cidrs: reachable"
        );
    });
    s.check_both("many", |rc, t| {
        assert_eq!(rc, 0, "{t}");
        let connected =
            number_after(t, "opened 2000: connected ").unwrap_or_else(|| panic!("no count:\n{t}"));
        // The rest are refused at once, with ENFILE (patch 0010).
        let refused = number_after(
            t,
            &format!("opened 2000: connected {connected}, Too many open files in system "),
        );
        assert_eq!(refused, Some(2000 - connected), "{t}");
        assert!(
            (900..=1024).contains(&connected),
            "connections capped at 1024 ({connected}):\n{t}"
        );
        let vmm = number_after(t, "vmm sockets: ").unwrap_or_else(|| panic!("no VMM:\n{t}"));
        assert!(vmm <= 1024 + 16, "the VMM holds {vmm} sockets:\n{t}");
        assert!(
            t.contains("host serves: allowed-server\n"),
            "the L1 host serves:\n{t}"
        );
        assert!(
            t.contains("after closing: 5 of 5 connected\n") && t.contains("machine-rc=0\n"),
            "connections work again once the guest closed its own:\n{t}"
        );
    });
    s.finish();
    let _ = std::fs::remove_dir_all(&dir);
}

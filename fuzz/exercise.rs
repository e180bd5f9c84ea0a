//! What each fuzz target does with its input, in one place: the targets in
//! fuzz_targets/ call these under libFuzzer, and
//! tests/tests/integration/fuzz_regressions.rs calls them on stable for every file in
//! fuzz/regressions/<target>/ (`#[path]`-included by both). Nothing here
//! may panic, loop without bound or allocate without bound.

use std::io::Write as _;
use std::path::Path;

/// A Smolfile's text: parsing and its checks (paths, names, limits).
pub fn smolfile(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = smolvm_packer::smolfile::Smolfile::parse(text, Path::new("Smolfile"));
    }
}

/// An `--image` argument, and the registry reference grammar under it.
/// Local paths resolve under a directory that does not exist, so the
/// parser's file checks find nothing.
pub fn image_reference(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = smolvm_packer::image::reference::parse(
            text,
            Some(Path::new("/nonexistent/smolvm-fuzz")),
        );
        let _ = smolvm_packer::image::reference::parse_registry(text);
    }
}

/// A key file, read as a public and as a secret key (smolvm and OpenSSH
/// formats). Key files are read by path, so the bytes go through a file.
pub fn key_file(data: &[u8]) {
    let mut file = tempfile::NamedTempFile::new().expect("temporary key file");
    file.write_all(data).expect("write temporary key file");
    let _ = smolvm_signing::PublicKey::read_file(file.path());
    let _ = smolvm_signing::SecretKey::read_file(file.path());
}

/// Image layers as tars (whiteouts, opaque markers, hard and symbolic
/// links), applied in order to one tree, then the same bytes as one plain
/// root tarball. The input is split into layers at each `LAYER_BREAK`.
pub fn flatten_layers(data: &[u8]) {
    let mut image = smolvm_rootfs::flatten::Flattener::new("fuzz");
    for (i, layer) in split_layers(data).into_iter().enumerate() {
        if image.apply_layer(layer, &format!("{i}")).is_err() {
            break;
        }
    }
    let mut tree = image.finish();
    tree.ensure_mount_points();
    let _ = tree.content_len();
    let mut plain = smolvm_rootfs::flatten::Flattener::plain("fuzz");
    let _ = plain.apply_layer(data, "plain");
    let _ = plain.finish();
}

/// Separates layers in a flatten input (8 bytes no tar header begins with).
pub const LAYER_BREAK: &[u8] = b"\0LAYER\0\xff";

/// The layers of a flatten input.
pub fn split_layers(data: &[u8]) -> Vec<&[u8]> {
    let mut layers = Vec::new();
    let mut rest = data;
    while let Some(at) = rest
        .windows(LAYER_BREAK.len())
        .position(|w| w == LAYER_BREAK)
    {
        layers.push(&rest[..at]);
        rest = &rest[at + LAYER_BREAK.len()..];
    }
    layers.push(rest);
    layers
}

/// A datagram from the guest to the host's DNS resolver (`net::dns`).
/// Whatever the bytes, `respond` gives at most a 512-byte reply that echoes
/// the id and says it is a response; a query `parse_query` accepts is
/// answered (`answer`, with addresses taken from the input's tail) with a
/// well-formed message: its header, the question byte for byte, and one
/// record per address of the asked family while they fit. The policy names
/// no host, so no name reaches the host's resolver (no lookup, no network).
pub fn dns_query(data: &[u8]) {
    use smolvm_runtime::net::dns;
    static EGRESS: std::sync::OnceLock<std::sync::Arc<smolvm_runtime::net::Egress>> =
        std::sync::OnceLock::new();
    let egress = EGRESS.get_or_init(|| {
        let mut config = smolvm_format::MachineConfig {
            net: true,
            ..Default::default()
        };
        config.network.allow_cidrs = vec!["192.0.2.0/24".into()];
        let policy = smolvm_runtime::net::Policy::from_config(&config, &[]).expect("policy");
        assert!(policy.hosts.is_empty() && policy.has_allow_lists());
        smolvm_runtime::net::Egress::new(policy, Default::default())
    });
    if let Some(reply) = dns::respond(egress, data) {
        assert!(reply.len() >= 12 && reply.len() <= 512, "reply length");
        assert_eq!(reply[..2], data[..2], "reply id");
        assert_ne!(reply[2] & 0x80, 0, "reply QR");
    }
    let Some(query) = dns::parse_query(data) else {
        return;
    };
    assert!(query.name.len() <= 253, "name length");
    for label in query.name.split('.').filter(|_| !query.name.is_empty()) {
        assert!((1..=63).contains(&label.len()), "label {label:?}");
        assert!(label
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_'));
    }
    let question_len = dns_question_len(&query.name);
    let question = &data[12..12 + question_len];
    let ips = dns_addresses(&data[12 + question_len..]);
    for rcode in [0, 3] {
        let reply = dns::answer(data, &query, rcode, &ips);
        check_dns_answer(&reply, &query, question, rcode, &ips);
    }
}

/// Bytes of the question (name, type, class) a parsed query's name takes.
fn dns_question_len(name: &str) -> usize {
    let labels = if name.is_empty() {
        0
    } else {
        name.split('.').map(|l| 1 + l.len()).sum()
    };
    labels + 1 + 4
}

/// Addresses for an answer from the input's tail: a byte with its low bit
/// set, then 16 bytes of IPv6; clear, then 4 bytes of IPv4.
fn dns_addresses(mut tail: &[u8]) -> Vec<std::net::IpAddr> {
    let mut ips = Vec::new();
    while let Some((&kind, rest)) = tail.split_first() {
        if kind & 1 == 1 {
            let Some(b) = rest.get(..16) else { break };
            let b: [u8; 16] = b.try_into().expect("16 bytes");
            ips.push(std::net::Ipv6Addr::from(b).into());
            tail = &rest[16..];
        } else {
            let Some(b) = rest.get(..4) else { break };
            let b: [u8; 4] = b.try_into().expect("4 bytes");
            ips.push(std::net::Ipv4Addr::from(b).into());
            tail = &rest[4..];
        }
    }
    ips
}

fn be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

/// Reads `reply` back as RFC 1035 §4 lays it out and checks every field.
fn check_dns_answer(
    reply: &[u8],
    query: &smolvm_runtime::net::dns::Query,
    question: &[u8],
    rcode: u16,
    ips: &[std::net::IpAddr],
) {
    assert!(reply.len() <= 512, "answer length {}", reply.len());
    assert_eq!(be16(reply, 0), query.id, "answer id");
    let flags = be16(reply, 2);
    assert_ne!(flags & 0x8000, 0, "QR");
    assert_eq!(flags & 0x7800, 0, "opcode");
    assert_eq!(flags & 0x0100 != 0, query.rd, "RD echoed");
    assert_eq!(flags & 0x000f, rcode, "rcode");
    assert_eq!(be16(reply, 4), 1, "QDCOUNT");
    assert_eq!(
        (be16(reply, 8), be16(reply, 10)),
        (0, 0),
        "NSCOUNT, ARCOUNT"
    );
    assert_eq!(&reply[12..12 + question.len()], question, "question echoed");
    let (qtype, qclass) = (query.qtype, query.qclass);
    let wanted: Vec<Vec<u8>> = ips
        .iter()
        .filter_map(|ip| match (qtype, qclass, ip) {
            (1, 1, std::net::IpAddr::V4(a)) => Some(a.octets().to_vec()),
            (28, 1, std::net::IpAddr::V6(a)) => Some(a.octets().to_vec()),
            _ => None,
        })
        .collect();
    let records = usize::from(be16(reply, 6));
    assert!(records <= wanted.len(), "ANCOUNT {records}");
    let mut at = 12 + question.len();
    for rdata in &wanted[..records] {
        assert_eq!(
            reply[at..at + 2],
            [0xc0, 0x0c],
            "name points at the question"
        );
        assert_eq!(be16(reply, at + 2), qtype, "record type");
        assert_eq!(be16(reply, at + 4), 1, "record class");
        assert_eq!(usize::from(be16(reply, at + 10)), rdata.len(), "RDLENGTH");
        at += 12;
        assert_eq!(&reply[at..at + rdata.len()], &rdata[..], "RDATA");
        at += rdata.len();
    }
    assert_eq!(at, reply.len(), "nothing after the records");
    if let Some(next) = wanted.get(records) {
        assert!(
            at + 12 + next.len() > 512,
            "a record that fits was left out"
        );
    }
}

/// A socket address as the network supervisor reads it from the VMM's
/// memory (`net::sockaddr`). Screening agrees with parsing for every call
/// and peer list: only a listed Unix path (never for `bind`) or anything
/// under `UnixPeers::Any` passes unchecked, IP addresses always go to the
/// policy. An IPv4/IPv6 address rewritten (to itself, to addresses from the
/// input, v4 into v6 mapped) parses back to what was written, same length,
/// nothing else changed.
pub fn sockaddr(data: &[u8]) {
    use smolvm_runtime::net::sockaddr::{self, Addr, Call, Screened, UnixPeers};
    use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
    const LISTED: &[u8] = b"/run/smolvm/control.sock";
    let parsed = sockaddr::parse(data);
    if let Some(Addr::UnixPath(path)) = &parsed {
        assert!(!path.is_empty() && !path.contains(&0), "path up to its NUL");
        assert!(data[2..].starts_with(path));
    }
    let only = UnixPeers::Only(vec![LISTED.to_vec(), b"/tmp/agent".to_vec()]);
    for call in [Call::Connect, Call::Send, Call::Bind] {
        for peers in [&only, &UnixPeers::Any] {
            let screened = sockaddr::screen(call, data, peers);
            match (&parsed, &screened) {
                (None, Screened::Malformed) => {}
                (Some(Addr::Ip(a)), Screened::Ip(b)) => assert_eq!(a, b),
                (Some(Addr::Ip(_)), other) => panic!("an IP address screened as {other:?}"),
                (Some(_), Screened::Pass) => match (peers, &parsed) {
                    (UnixPeers::Any, _) => {}
                    (UnixPeers::Only(list), Some(Addr::UnixPath(p))) => {
                        assert!(call != Call::Bind && list.contains(p), "{p:?} passed")
                    }
                    (UnixPeers::Only(_), Some(Addr::Unspec)) => {
                        assert_eq!(call, Call::Connect, "AF_UNSPEC passed for {call:?}")
                    }
                    (UnixPeers::Only(_), addr) => panic!("{addr:?} passed for {call:?}"),
                },
                (Some(_), Screened::Refused(_)) => {
                    if let (Some(Addr::UnixPath(p)), UnixPeers::Only(list)) = (&parsed, peers) {
                        assert!(call == Call::Bind || !list.contains(p), "{p:?} refused");
                    }
                }
                (parsed, screened) => panic!("{parsed:?} screened as {screened:?}"),
            }
        }
    }
    let Some(Addr::Ip(orig)) = parsed else {
        return;
    };
    assert_eq!(
        sockaddr::rewrite(data, orig).as_deref(),
        Some(data),
        "rewriting an address to itself changes nothing"
    );
    let tail: Vec<u8> = data.iter().rev().take(18).copied().collect();
    let mut v6 = [0u8; 16];
    v6[..tail.len().min(16)].copy_from_slice(&tail[..tail.len().min(16)]);
    let port = u16::from_be_bytes([*tail.first().unwrap_or(&53), *tail.get(17).unwrap_or(&0)]);
    let targets = [
        SocketAddr::new(IpAddr::V4(Ipv4Addr::new(v6[0], v6[1], v6[2], v6[3])), port),
        SocketAddr::new(IpAddr::V6(Ipv6Addr::from(v6)), port),
        "127.0.0.1:5353".parse().expect("address"),
    ];
    for to in targets {
        let Some(new) = sockaddr::rewrite(data, to) else {
            assert!(orig.is_ipv4() && to.is_ipv6(), "{to} does not fit {orig}");
            continue;
        };
        assert_eq!(new.len(), data.len(), "rewrite keeps the length");
        let expected = match (orig.ip(), to.ip()) {
            (IpAddr::V6(_), IpAddr::V4(a)) => SocketAddr::new(a.to_ipv6_mapped().into(), to.port()),
            _ => to,
        };
        assert_eq!(
            sockaddr::parse(&new),
            Some(Addr::Ip(expected)),
            "{to} parses back"
        );
        let (addr_at, addr_len) = if orig.is_ipv4() { (4, 4) } else { (8, 16) };
        for (i, (a, b)) in data.iter().zip(&new).enumerate() {
            let rewritten = (2..4).contains(&i) || (addr_at..addr_at + addr_len).contains(&i);
            assert!(rewritten || a == b, "byte {i} changed");
        }
    }
}

/// What the supervisor reads from the guest on the control channel
/// (`control::guest_still_connected`): the guest init writes nothing there,
/// so the supervisor only reads to notice a close and drops the bytes. The
/// input is what a hostile guest sends, in reads of sizes its own bytes
/// choose, ending in end-of-file (even length) or a failed read (odd).
/// Each call takes at most 64 bytes, says "connected" exactly while bytes
/// come, and a stream ends after at most one call per byte, plus one.
pub fn control_channel(data: &[u8]) {
    struct Guest<'a> {
        rest: &'a [u8],
        sizes: std::iter::Cycle<std::slice::Iter<'a, u8>>,
        fail_at_end: bool,
        last: usize,
    }
    impl std::io::Read for Guest<'_> {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            if self.rest.is_empty() {
                self.last = 0;
                return if self.fail_at_end {
                    Err(std::io::ErrorKind::ConnectionReset.into())
                } else {
                    Ok(0)
                };
            }
            let size = 1 + usize::from(*self.sizes.next().unwrap_or(&0));
            let n = size.min(buf.len()).min(self.rest.len());
            buf[..n].copy_from_slice(&self.rest[..n]);
            self.rest = &self.rest[n..];
            self.last = n;
            Ok(n)
        }
    }
    let mut guest = Guest {
        rest: data,
        sizes: data.iter().cycle(),
        fail_at_end: data.len() % 2 == 1,
        last: 0,
    };
    let mut calls = 0;
    loop {
        let before = guest.rest.len();
        let connected = smolvm_runtime::control::guest_still_connected(&mut guest);
        calls += 1;
        assert!(
            before - guest.rest.len() <= 64,
            "one read takes at most 64 bytes"
        );
        assert_eq!(
            connected,
            guest.last > 0,
            "connected exactly while bytes come"
        );
        if !connected {
            break;
        }
        assert!(calls <= data.len(), "the stream ends");
    }
    assert!(guest.rest.is_empty(), "a close is told only at the end");
}

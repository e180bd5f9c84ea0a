//! The guest's network policy, and (with the `vmm` feature, on Linux) the
//! host-side pieces that enforce it: a seccomp user-notification supervisor
//! on the VMM's own `connect`/`bind`/`sendto`/`sendmsg` (supervisor.rs) and
//! the DNS resolver the guest is pointed at (dns.rs). docs/network.md has
//! the design and why it was chosen.
//!
//! What a guest may reach, in this order:
//! 1. an address inside an `allow_cidrs` entry: allowed (this is the only
//!    way to reach a default-denied address);
//! 2. default-denied: loopback, unspecified, link-local (incl. the cloud
//!    metadata address 169.254.169.254), multicast/broadcast, every address
//!    of the host's own interfaces, and local and reserved networks (RFC
//!    1918, CGNAT, ULA, site-local, benchmark, documentation, 0/8, 240/4);
//!    an IPv6 address that carries an IPv4 one (IPv4-compatible, mapped,
//!    NAT64 64:ff9b::/96, 6to4, Teredo) is also judged by that IPv4 address;
//! 3. with allow-lists: an address that an allowed host name resolved to
//!    (through our resolver or the host's periodic refresh), until that
//!    answer expires;
//! 4. without allow-lists (`net = true` alone): everything else, which is
//!    the internet.
//!
//! Listening: a guest listener opens a host port only when that port is
//! published (`ports` / `--smolvm-publish`), bound to 127.0.0.1 unless the
//! publication names another address.
//!
//! SSH agent forwarding (agent.rs) rides on vsock, not on the guest's
//! network, so it works with `net = false` too.

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use ipnet::IpNet;
use smolvm_format::MachineConfig;
use thiserror::Error;

pub mod agent;
// Without `vmm` too: the `dns_query` fuzz target drives its message handling.
#[cfg(target_os = "linux")]
pub mod dns;
pub mod sockaddr;
#[cfg(all(feature = "vmm", target_os = "linux"))]
pub mod supervisor;

/// The nameserver address written to the guest's /etc/resolv.conf. The
/// supervisor sends every datagram to it (port 53) to our resolver instead;
/// nothing on any network answers it otherwise.
pub const GUEST_DNS: Ipv4Addr = Ipv4Addr::new(10, 0, 2, 3);

#[derive(Debug, Error, PartialEq, Eq)]
pub enum NetError {
    #[error("network.allow_cidrs entry {entry:?} is not a CIDR (write it like 10.0.0.0/8 or 2001:db8::/32)")]
    Cidr { entry: String },
    #[error("network.allow_hosts entry {entry:?} is not a host name (write it like example.com or *.example.com)")]
    Host { entry: String },
    #[error("port {entry:?} is not HOST:GUEST or ADDRESS:HOST:GUEST with ports 1-65535 (e.g. 8080:80 or 0.0.0.0:8080:80)")]
    Port { entry: String },
    #[error("host port {port} is published twice")]
    DuplicatePort { port: u16 },
    #[error(
        "ports are published but the network is off (net = false); set net = true in the Smolfile"
    )]
    PortsWithoutNet,
}

/// An `allow_cidrs` entry: `10.0.0.0/8`, `2001:db8::/32`, or one address.
fn parse_cidr(s: &str) -> Result<IpNet, NetError> {
    s.parse::<IpNet>()
        .or_else(|_| s.parse::<IpAddr>().map(IpNet::from))
        .map_err(|_| NetError::Cidr { entry: s.into() })
}

/// A name pattern from `allow_hosts`: `example.com` (that name only) or
/// `*.example.com` (any name below example.com, not example.com itself).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostPattern {
    Exact(String),
    Below(String),
}

impl HostPattern {
    pub fn parse(s: &str) -> Result<HostPattern, NetError> {
        let bad = || NetError::Host { entry: s.into() };
        let (wild, name) = match s.strip_prefix("*.") {
            Some(rest) => (true, rest),
            None => (false, s),
        };
        let name = name.strip_suffix('.').unwrap_or(name).to_ascii_lowercase();
        let label_ok = |l: &str| {
            !l.is_empty()
                && l.len() <= 63
                && l.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        };
        if name.is_empty() || name.len() > 253 || !name.split('.').all(label_ok) {
            return Err(bad());
        }
        Ok(if wild {
            HostPattern::Below(name)
        } else {
            HostPattern::Exact(name)
        })
    }

    /// `name` is lower-case, without a trailing dot.
    pub fn matches(&self, name: &str) -> bool {
        match self {
            HostPattern::Exact(n) => name == n,
            HostPattern::Below(n) => name
                .strip_suffix(n.as_str())
                .is_some_and(|head| head.len() > 1 && head.ends_with('.')),
        }
    }
}

impl std::fmt::Display for HostPattern {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HostPattern::Exact(n) => f.write_str(n),
            HostPattern::Below(n) => write!(f, "*.{n}"),
        }
    }
}

/// A published port: guest listeners on `guest` appear on the host at
/// `addr:host`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Publish {
    pub addr: IpAddr,
    pub host: u16,
    pub guest: u16,
}

impl Publish {
    /// `HOST:GUEST`, `ADDRESS:HOST:GUEST` or `[V6]:HOST:GUEST`.
    pub fn parse(s: &str) -> Result<Publish, NetError> {
        let bad = || NetError::Port { entry: s.into() };
        let port = |p: &str| p.parse::<u16>().ok().filter(|p| *p != 0).ok_or_else(bad);
        let (addr, rest) = if let Some(v6) = s.strip_prefix('[') {
            let (a, rest) = v6.split_once("]:").ok_or_else(bad)?;
            (a.parse::<Ipv6Addr>().map_err(|_| bad())?.into(), rest)
        } else if s.matches(':').count() == 2 {
            let (a, rest) = s.split_once(':').expect("two colons");
            (a.parse::<Ipv4Addr>().map_err(|_| bad())?.into(), rest)
        } else {
            (IpAddr::V4(Ipv4Addr::LOCALHOST), s)
        };
        let (h, g) = rest.split_once(':').ok_or_else(bad)?;
        Ok(Publish {
            addr,
            host: port(h)?,
            guest: port(g)?,
        })
    }
}

impl std::fmt::Display for Publish {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.addr {
            IpAddr::V6(a) => write!(f, "[{a}]:{}->{}", self.host, self.guest),
            IpAddr::V4(a) => write!(f, "{a}:{}->{}", self.host, self.guest),
        }
    }
}

/// The effective policy of one run.
#[derive(Debug, Clone, Default)]
pub struct Policy {
    pub net: bool,
    pub cidrs: Vec<IpNet>,
    pub hosts: Vec<HostPattern>,
    pub publish: Vec<Publish>,
}

impl Policy {
    /// From the signed config plus run-time publications.
    pub fn from_config(c: &MachineConfig, run_publish: &[String]) -> Result<Policy, NetError> {
        let cidrs = c
            .network
            .allow_cidrs
            .iter()
            .map(|s| parse_cidr(s))
            .collect::<Result<Vec<_>, _>>()?;
        let hosts = c
            .network
            .allow_hosts
            .iter()
            .map(|s| HostPattern::parse(s))
            .collect::<Result<Vec<_>, _>>()?;
        let mut publish = c
            .ports
            .iter()
            .map(|s| Publish::parse(s))
            .collect::<Result<Vec<_>, _>>()?;
        for s in run_publish {
            // At run time a guest port can be moved to another host port.
            let p = Publish::parse(s)?;
            publish.retain(|q| q.guest != p.guest);
            publish.push(p);
        }
        for (i, p) in publish.iter().enumerate() {
            if publish[..i].iter().any(|q| q.host == p.host) {
                return Err(NetError::DuplicatePort { port: p.host });
            }
        }
        if !c.net && !publish.is_empty() {
            return Err(NetError::PortsWithoutNet);
        }
        Ok(Policy {
            net: c.net,
            cidrs,
            hosts,
            publish,
        })
    }

    pub fn has_allow_lists(&self) -> bool {
        !self.cidrs.is_empty() || !self.hosts.is_empty()
    }

    /// Whether the guest may look `name` up (lower-case, no trailing dot).
    pub fn name_allowed(&self, name: &str) -> bool {
        !self.has_allow_lists() || self.hosts.iter().any(|h| h.matches(name))
    }

    pub fn listed_cidr(&self, ip: IpAddr) -> bool {
        self.cidrs.iter().any(|n| n.contains(&ip))
    }
}

/// Why an address is denied, for messages and tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum Deny {
    #[error("loopback, link-local, multicast or unspecified address (list it in allow_cidrs to allow it)")]
    Special,
    #[error("an address of this host (list it in allow_cidrs to allow it)")]
    HostOwn,
    #[error("a local or reserved network (private, CGNAT, ULA, site-local, benchmark, documentation; list it in allow_cidrs to allow it)")]
    LocalNetwork,
    #[error("not in the machine's allow-lists")]
    NotListed,
}

/// Addresses never reached unless an `allow_cidrs` entry lists them.
pub fn is_special(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(a) => {
            a.is_loopback()
                || a.is_link_local()
                || a.is_unspecified()
                || a.is_multicast()
                || a.is_broadcast()
        }
        IpAddr::V6(a) => {
            a.is_loopback()
                || a.is_unspecified()
                || a.is_multicast()
                || (a.segments()[0] & 0xffc0) == 0xfe80
        }
    }
}

/// Local and reserved networks: on the LAN, the host's container bridges or
/// the provider's network rather than the internet, or never routed there.
/// Refused unless an `allow_cidrs` entry lists them. The documentation
/// ranges (192.0.2/24, 198.51.100/24, 203.0.113/24, 2001:db8::/32) are not
/// here: no network, local or not, routes them, so refusing them stops
/// nothing, and the real-boot tests use them as stand-ins for internet
/// addresses (an AnyIP route in the harness).
pub fn is_local_network(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(a) => {
            let [a0, a1, a2, _] = a.octets();
            a0 == 0 // "this network" (RFC 791)
                || a.is_private() // 10/8, 172.16/12, 192.168/16 (RFC 1918)
                || (a0 == 100 && (a1 & 0xc0) == 64) // CGNAT 100.64/10 (RFC 6598)
                || (a0 == 192 && a1 == 0 && a2 == 0) // IETF assignments (RFC 6890)
                || (a0 == 198 && (a1 & 0xfe) == 18) // benchmarking 198.18/15 (RFC 2544)
                || a0 >= 240 // reserved 240/4 (and broadcast)
        }
        IpAddr::V6(a) => {
            let s = a.segments();
            (s[0] & 0xfe00) == 0xfc00 // ULA fc00::/7 (RFC 4193)
                || (s[0] & 0xffc0) == 0xfec0 // site-local fec0::/10 (RFC 3879)
                || (s[0] == 0x0064 && s[1] == 0xff9b && s[2] == 1) // local-use NAT64 (RFC 8215)
        }
    }
}

/// The IPv4 addresses an IPv6 address carries, each of which a packet to it
/// may end up at: IPv4-compatible `::a.b.c.d` (not `::` or `::1`),
/// IPv4-translated `::ffff:0:a.b.c.d`, NAT64 `64:ff9b::/96`, 6to4
/// `2002::/16` and Teredo `2001::/32` (server and client). `::ffff:a.b.c.d` is handled by [`canonical`].
pub fn embedded_ipv4(a: Ipv6Addr) -> Vec<Ipv4Addr> {
    let s = a.segments();
    let v4 = |hi: u16, lo: u16| Ipv4Addr::from((u32::from(hi) << 16) | u32::from(lo));
    let compatible = s[..6] == [0; 6] && !(s[6] == 0 && s[7] <= 1);
    let translated = s[..6] == [0, 0, 0, 0, 0xffff, 0];
    let nat64 = s[..6] == [0x64, 0xff9b, 0, 0, 0, 0];
    if compatible || translated || nat64 {
        vec![v4(s[6], s[7])]
    } else if s[0] == 0x2002 {
        vec![v4(s[1], s[2])]
    } else if s[0] == 0x2001 && s[1] == 0 {
        vec![v4(s[2], s[3]), v4(!s[6], !s[7])]
    } else {
        Vec::new()
    }
}

/// `::ffff:a.b.c.d` is a.b.c.d (a v6 socket reaches v4 hosts that way).
pub fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(a) => a.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
        v4 => v4,
    }
}

/// Most addresses learned from DNS answers held at once: the guest chooses
/// which allowed names to look up (with a wildcard, names whose answers an
/// outsider controls), so the set is bounded; when it is full the entry that
/// expires first makes room.
pub const MAX_LEARNED: usize = 4096;
/// Longest a learned address stays allowed after the answer that named it,
/// whatever TTL is asked for.
pub const MAX_LEARN_TTL: Duration = Duration::from_secs(3600);

/// The live state the supervisor checks against: the policy, the host's
/// own addresses, and the addresses allowed host names resolved to, each
/// until its answer expires.
pub struct Egress {
    pub policy: Policy,
    host_own: HashSet<IpAddr>,
    resolved: RwLock<HashMap<IpAddr, Instant>>,
}

impl Egress {
    pub fn new(policy: Policy, host_own: HashSet<IpAddr>) -> Arc<Egress> {
        Arc::new(Egress {
            policy,
            host_own: host_own.into_iter().map(canonical).collect(),
            resolved: RwLock::new(HashMap::new()),
        })
    }

    /// Records addresses an allowed name resolved to, allowed for `ttl`
    /// (at most [`MAX_LEARN_TTL`]). Addresses the default policy refuses
    /// are not recorded: a name never opens what a CIDR list would not.
    pub fn learn(&self, ips: impl IntoIterator<Item = IpAddr>, ttl: Duration) {
        self.learn_at(ips, ttl, Instant::now());
    }

    fn learn_at(&self, ips: impl IntoIterator<Item = IpAddr>, ttl: Duration, now: Instant) {
        let until = now + ttl.min(MAX_LEARN_TTL);
        let mut set = self.resolved.write().unwrap_or_else(|e| e.into_inner());
        for ip in ips.into_iter().map(canonical) {
            if self.resolvable(ip) {
                Self::remember(&mut set, ip, until, now);
            }
        }
    }

    fn remember(set: &mut HashMap<IpAddr, Instant>, ip: IpAddr, until: Instant, now: Instant) {
        if let Some(old) = set.get_mut(&ip) {
            *old = (*old).max(until);
            return;
        }
        if set.len() >= MAX_LEARNED {
            set.retain(|_, t| *t > now);
        }
        if set.len() >= MAX_LEARNED {
            let first = set.iter().min_by_key(|(_, t)| **t).map(|(ip, _)| *ip);
            if let Some(first) = first {
                set.remove(&first);
            }
        }
        set.insert(ip, until);
    }

    /// How many learned addresses are held (expired ones included until
    /// they make room).
    pub fn learned_len(&self) -> usize {
        self.resolved
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .len()
    }

    /// The verdict before allow-lists: `Ok(true)` when an `allow_cidrs`
    /// entry lists the address, `Ok(false)` when nothing refuses it.
    fn default_verdict(&self, ip: IpAddr) -> Result<bool, Deny> {
        let ip = canonical(ip);
        if self.policy.listed_cidr(ip) {
            return Ok(true);
        }
        // An IPv6 address that carries IPv4 ones is judged as those: each
        // must be listed or not refused, and one listed lists the address.
        let mut listed = false;
        if let IpAddr::V6(a) = ip {
            for v4 in embedded_ipv4(a).into_iter().map(IpAddr::V4) {
                if self.policy.listed_cidr(v4) {
                    listed = true;
                } else {
                    self.refusal(v4)?;
                }
            }
        }
        if listed {
            return Ok(true);
        }
        self.refusal(ip)?;
        Ok(false)
    }

    fn refusal(&self, ip: IpAddr) -> Result<(), Deny> {
        if is_special(ip) {
            Err(Deny::Special)
        } else if self.host_own.contains(&ip) {
            Err(Deny::HostOwn)
        } else if is_local_network(ip) {
            Err(Deny::LocalNetwork)
        } else {
            Ok(())
        }
    }

    /// Whether our resolver may hand `ip` to the guest (and learn it): the
    /// same filter as connections, before allow-lists.
    pub fn resolvable(&self, ip: IpAddr) -> bool {
        self.default_verdict(ip).is_ok()
    }

    /// The verdict for an outbound connection or datagram to `ip`.
    pub fn check(&self, ip: IpAddr) -> Result<(), Deny> {
        self.check_at(ip, Instant::now())
    }

    fn check_at(&self, ip: IpAddr, now: Instant) -> Result<(), Deny> {
        if self.default_verdict(ip)? || !self.policy.has_allow_lists() {
            return Ok(());
        }
        let known = self
            .resolved
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(&canonical(ip))
            .is_some_and(|until| *until > now);
        if known {
            Ok(())
        } else {
            Err(Deny::NotListed)
        }
    }
}

/// Every address of the host's interfaces (getifaddrs).
pub fn host_addresses() -> std::io::Result<HashSet<IpAddr>> {
    let mut out = HashSet::new();
    let mut head: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs writes a list head we free below with freeifaddrs.
    if unsafe { libc::getifaddrs(&mut head) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    let mut cur = head;
    while !cur.is_null() {
        // SAFETY: cur is a node of the list getifaddrs returned, not yet freed.
        let ifa = unsafe { &*cur };
        if !ifa.ifa_addr.is_null() {
            // SAFETY: ifa_addr points at a sockaddr whose family says its
            // real type; we read only the matching struct.
            let family = i32::from(unsafe { (*ifa.ifa_addr).sa_family });
            if family == libc::AF_INET {
                // SAFETY: family AF_INET: the sockaddr is a sockaddr_in.
                let sin = unsafe { &*(ifa.ifa_addr as *const libc::sockaddr_in) };
                out.insert(IpAddr::V4(Ipv4Addr::from(u32::from_be(
                    sin.sin_addr.s_addr,
                ))));
            } else if family == libc::AF_INET6 {
                // SAFETY: family AF_INET6: the sockaddr is a sockaddr_in6.
                let sin6 = unsafe { &*(ifa.ifa_addr as *const libc::sockaddr_in6) };
                out.insert(IpAddr::V6(Ipv6Addr::from(sin6.sin6_addr.s6_addr)));
            }
        }
        cur = ifa.ifa_next;
    }
    // SAFETY: head came from getifaddrs and is freed once.
    unsafe { libc::freeifaddrs(head) };
    Ok(out)
}

/// Human lines describing the policy (inspect, --smolvm-info); the caller
/// escapes them for the terminal.
pub fn describe(p: &Policy) -> Vec<String> {
    let mut lines = Vec::new();
    if !p.net {
        lines.push("off: the guest has no network device".into());
        return lines;
    }
    if p.has_allow_lists() {
        let hosts: Vec<String> = p.hosts.iter().map(|h| h.to_string()).collect();
        let cidrs: Vec<String> = p.cidrs.iter().map(|c| c.to_string()).collect();
        lines.push(format!(
            "egress only to: hosts [{}] cidrs [{}] (enforced on the host; everything else refused)",
            hosts.join(", "),
            cidrs.join(", ")
        ));
        lines.push("dns: our resolver answers only the allowed host names, never with a refused address; answers expire".into());
    } else {
        lines.push("egress: the internet (any public address; no allow-lists)".into());
    }
    lines.push(
        "local networks: refused (private, CGNAT, ULA, site-local, and reserved ranges, IPv4-in-IPv6 forms included) unless listed in allow_cidrs"
            .into(),
    );
    lines.push(
        "denied unless listed in allow_cidrs: loopback, link-local (169.254.0.0/16 incl. cloud metadata), the host's own addresses, multicast"
            .into(),
    );
    if p.publish.is_empty() {
        lines.push("published ports: none (guest listeners open nothing on the host)".into());
    } else {
        let ports: Vec<String> = p.publish.iter().map(|q| q.to_string()).collect();
        lines.push(format!("published ports: {}", ports.join(", ")));
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(net: bool, hosts: &[&str], cidrs: &[&str], ports: &[&str]) -> MachineConfig {
        let mut c = MachineConfig {
            net,
            ..MachineConfig::default()
        };
        c.network.allow_hosts = hosts.iter().map(|s| s.to_string()).collect();
        c.network.allow_cidrs = cidrs.iter().map(|s| s.to_string()).collect();
        c.ports = ports.iter().map(|s| s.to_string()).collect();
        c
    }

    #[test]
    fn patterns_match_names_and_subdomains_only_as_written() {
        let e = HostPattern::parse("Example.COM.").unwrap();
        assert!(e.matches("example.com"));
        assert!(!e.matches("a.example.com"));
        let w = HostPattern::parse("*.example.com").unwrap();
        assert!(w.matches("a.example.com"));
        assert!(w.matches("a.b.example.com"));
        assert!(!w.matches("example.com"));
        assert!(!w.matches("badexample.com"));
        for bad in ["", "*.", "a..b", "a b", "*", "a.*.b", "x/y"] {
            assert!(HostPattern::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn ports_parse_with_loopback_default() {
        let p = Publish::parse("8080:80").unwrap();
        assert_eq!(p.addr, IpAddr::V4(Ipv4Addr::LOCALHOST));
        assert_eq!((p.host, p.guest), (8080, 80));
        let p = Publish::parse("0.0.0.0:8080:80").unwrap();
        assert_eq!(p.addr, IpAddr::V4(Ipv4Addr::UNSPECIFIED));
        let p = Publish::parse("[::1]:8080:80").unwrap();
        assert_eq!(p.addr, IpAddr::V6(Ipv6Addr::LOCALHOST));
        for bad in [
            "80",
            "0:80",
            "8080:0",
            "a:b",
            "1.2.3:8080:80",
            "70000:80",
            "::1:80:80",
        ] {
            assert!(Publish::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn run_time_ports_join_the_artifact_ports_and_need_the_network() {
        let c = config(true, &[], &[], &["8080:80"]);
        let p = Policy::from_config(&c, &["9000:90".into()]).unwrap();
        assert_eq!(p.publish.len(), 2);
        let p = Policy::from_config(&c, &["9000:80".into()]).unwrap();
        assert_eq!(p.publish.len(), 1);
        assert_eq!(p.publish[0].host, 9000);
        let err = Policy::from_config(&c, &["8080:81".into()]).unwrap_err();
        assert_eq!(err, NetError::DuplicatePort { port: 8080 });
        let off = config(false, &[], &[], &[]);
        assert_eq!(
            Policy::from_config(&off, &["1:2".into()]).unwrap_err(),
            NetError::PortsWithoutNet
        );
    }

    #[test]
    fn defaults_deny_loopback_link_local_and_host_addresses() {
        let own: HashSet<IpAddr> = ["192.0.2.1".parse().unwrap()].into();
        let open = Egress::new(
            Policy::from_config(&config(true, &[], &[], &[]), &[]).unwrap(),
            own.clone(),
        );
        assert_eq!(open.check("8.8.8.8".parse().unwrap()), Ok(()));
        for denied in [
            "127.0.0.1",
            "169.254.169.254",
            "0.0.0.0",
            "::1",
            "fe80::1",
            "::ffff:127.0.0.1",
            "224.0.0.1",
        ] {
            assert_eq!(
                open.check(denied.parse().unwrap()),
                Err(Deny::Special),
                "{denied}"
            );
        }
        assert_eq!(open.check("192.0.2.1".parse().unwrap()), Err(Deny::HostOwn));
        assert_eq!(
            open.check("::ffff:192.0.2.1".parse().unwrap()),
            Err(Deny::HostOwn)
        );

        let listed = Egress::new(
            Policy::from_config(
                &config(true, &["ok.test"], &["192.0.2.1/32", "127.0.0.1"], &[]),
                &[],
            )
            .unwrap(),
            own,
        );
        assert_eq!(listed.check("192.0.2.1".parse().unwrap()), Ok(()));
        assert_eq!(listed.check("127.0.0.1".parse().unwrap()), Ok(()));
        assert_eq!(
            listed.check("127.0.0.2".parse().unwrap()),
            Err(Deny::Special)
        );
        assert_eq!(
            listed.check("8.8.8.8".parse().unwrap()),
            Err(Deny::NotListed)
        );
        listed.learn(
            [
                "93.184.216.34".parse().unwrap(),
                "127.0.0.9".parse().unwrap(),
            ],
            Duration::from_secs(30),
        );
        assert_eq!(listed.check("93.184.216.34".parse().unwrap()), Ok(()));
        // A name resolving to a denied address does not open it.
        assert_eq!(
            listed.check("127.0.0.9".parse().unwrap()),
            Err(Deny::Special)
        );
        assert!(listed.policy.name_allowed("ok.test"));
        assert!(!listed.policy.name_allowed("other.test"));
    }

    fn egress(cidrs: &[&str]) -> Arc<Egress> {
        let hosts: &[&str] = if cidrs.is_empty() { &[] } else { &["ok.test"] };
        let c = config(true, hosts, cidrs, &[]);
        Egress::new(Policy::from_config(&c, &[]).unwrap(), HashSet::new())
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn local_networks_are_refused_by_default_and_allowed_when_listed() {
        let open = egress(&[]);
        // (address, a CIDR that lists it)
        let cases = [
            ("10.1.2.3", "10.0.0.0/8"),
            ("172.16.0.1", "172.16.0.0/12"),
            ("172.31.255.254", "172.16.0.0/12"),
            ("192.168.1.1", "192.168.0.0/16"),
            ("100.64.0.1", "100.64.0.0/10"),
            ("100.127.255.254", "100.64.0.0/10"),
            ("192.0.0.9", "192.0.0.0/24"),
            ("198.18.0.1", "198.18.0.0/15"),
            ("198.19.255.1", "198.18.0.0/15"),
            ("0.1.2.3", "0.0.0.0/8"),
            ("240.0.0.1", "240.0.0.0/4"),
            ("fd00::1", "fc00::/7"),
            ("fc12::1", "fc00::/7"),
            ("fec0::1", "fec0::/10"),
            ("64:ff9b:1::a00:1", "64:ff9b:1::/48"),
            // IPv4 carried in IPv6, judged as that IPv4 address
            ("::ffff:10.0.0.5", "10.0.0.0/8"),
            ("::10.0.0.5", "10.0.0.0/8"),
            ("::ffff:0:10.0.0.5", "10.0.0.0/8"),
            ("64:ff9b::10.0.0.5", "10.0.0.0/8"),
            ("64:ff9b::192.168.0.1", "64:ff9b::/96"),
            ("2002:a00:5::1", "10.0.0.0/8"),
            ("2002:c0a8:101::1", "2002::/16"),
            ("2001:0:a00:5::f7f7:f7f7", "10.0.0.0/8"),
            ("2001:0:808:808:0:0:f5ff:fffa", "10.0.0.0/8"),
        ];
        for (addr, cidr) in cases {
            assert_eq!(
                open.check(ip(addr)),
                Err(Deny::LocalNetwork),
                "{addr} open by default"
            );
            assert_eq!(
                egress(&[cidr]).check(ip(addr)),
                Ok(()),
                "{addr} listed by {cidr}"
            );
        }
        // IPv4-in-IPv6 forms of loopback and metadata stay special.
        for addr in [
            "::127.0.0.1",
            "::ffff:0:127.0.0.1",
            "64:ff9b::127.0.0.1",
            "64:ff9b::169.254.169.254",
            "2002:7f00:1::1",
            "2002:a9fe:a9fe::1",
        ] {
            assert_eq!(open.check(ip(addr)), Err(Deny::Special), "{addr}");
        }
    }

    #[test]
    fn the_internet_stays_open_without_lists() {
        let own: HashSet<IpAddr> = [ip("198.51.100.1"), ip("8.8.4.4")].into();
        let open = Egress::new(
            Policy::from_config(&config(true, &[], &[], &[]), &[]).unwrap(),
            own,
        );
        for addr in [
            "8.8.8.8",
            "1.1.1.1",
            "100.128.0.1",
            "172.32.0.1",
            "198.20.0.1",
            "2606:4700::1111",
            "64:ff9b::8.8.8.8",
            "2002:808:808::1",
            "::ffff:1.1.1.1",
        ] {
            assert_eq!(open.check(ip(addr)), Ok(()), "{addr}");
        }
        assert_eq!(open.check(ip("64:ff9b::8.8.4.4")), Err(Deny::HostOwn));
    }

    #[test]
    fn learned_addresses_expire_with_their_ttl() {
        let e = egress(&["10.0.0.0/8"]);
        let now = Instant::now();
        let a = ip("93.184.216.34");
        e.learn_at([a], Duration::from_secs(30), now);
        assert_eq!(e.check_at(a, now + Duration::from_secs(29)), Ok(()));
        assert_eq!(
            e.check_at(a, now + Duration::from_secs(31)),
            Err(Deny::NotListed)
        );
        // A TTL longer than the cap is cut to it.
        e.learn_at([a], Duration::from_secs(86_400), now);
        assert_eq!(
            e.check_at(a, now + MAX_LEARN_TTL - Duration::from_secs(1)),
            Ok(())
        );
        assert_eq!(
            e.check_at(a, now + MAX_LEARN_TTL + Duration::from_secs(1)),
            Err(Deny::NotListed)
        );
        // A refused address is never learned.
        let private = ip("192.168.7.7");
        e.learn_at([private], Duration::from_secs(30), now);
        assert_eq!(e.check_at(private, now), Err(Deny::LocalNetwork));
        assert_eq!(e.learned_len(), 1);
    }

    #[test]
    fn the_learned_set_is_bounded() {
        let e = egress(&["10.0.0.0/8"]);
        let now = Instant::now();
        let public = |i: u32| IpAddr::V4(Ipv4Addr::from(0x0100_0000 + i));
        let total = u32::try_from(MAX_LEARNED).unwrap() + 100;
        for i in 0..total {
            let at = now + Duration::from_millis(u64::from(i));
            e.learn_at([public(i)], Duration::from_secs(60), at);
        }
        assert_eq!(e.learned_len(), MAX_LEARNED);
        // The answers that expire first made room; the newest are kept.
        assert_eq!(e.check_at(public(0), now), Err(Deny::NotListed));
        assert_eq!(e.check_at(public(total - 1), now), Ok(()));
    }

    #[test]
    fn bad_lists_name_the_entry() {
        let c = config(true, &[], &["10.0.0.0/33"], &[]);
        let e = Policy::from_config(&c, &[]).unwrap_err().to_string();
        assert!(e.contains("10.0.0.0/33"), "{e}");
        let c = config(true, &["bad host"], &[], &[]);
        let e = Policy::from_config(&c, &[]).unwrap_err().to_string();
        assert!(e.contains("bad host"), "{e}");
    }
}

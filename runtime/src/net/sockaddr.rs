//! Socket addresses as the socket supervisor (supervisor.rs) reads them
//! from the VMM's memory, and what it makes of them before any policy:
//! which family, which IP destination, which Unix peer, and the rewritten
//! bytes when a destination is redirected.
//!
//! Pure (no system call, no `vmm` feature), so the `sockaddr` fuzz target
//! (fuzz/exercise.rs) drives exactly what the supervisor runs.
//!
//! The bytes are a `struct sockaddr` of up to `MAX_SOCKADDR` bytes, family
//! in host byte order, port and address in network order:
//!
//! ```text
//!   AF_INET   family:2 port:2 addr:4 zero:8
//!   AF_INET6  family:2 port:2 flowinfo:4 addr:16 scope_id:4
//!   AF_UNIX   family:2 path (up to its first NUL; a leading NUL: abstract)
//!   AF_UNSPEC family:2 ...
//! ```

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;

/// A socket address read from memory: family and, for IP, the address.
#[derive(Debug, PartialEq, Eq)]
pub enum Addr {
    Ip(SocketAddr),
    /// A pathname Unix socket: the path up to its first NUL.
    UnixPath(Vec<u8>),
    /// An abstract (leading NUL) or unnamed (no path) Unix address.
    UnixOther,
    /// AF_UNSPEC: `connect` with it dissolves a datagram socket's peer.
    Unspec,
    Other,
}

fn family(b: &[u8]) -> Option<i32> {
    Some(i32::from(u16::from_ne_bytes([*b.first()?, *b.get(1)?])))
}

/// What the bytes name; `None` when they are too short for their family.
pub fn parse(b: &[u8]) -> Option<Addr> {
    match family(b)? {
        libc::AF_INET => {
            let port = u16::from_be_bytes([*b.get(2)?, *b.get(3)?]);
            let ip: [u8; 4] = b.get(4..8)?.try_into().ok()?;
            Some(Addr::Ip(SocketAddr::new(Ipv4Addr::from(ip).into(), port)))
        }
        libc::AF_INET6 => {
            let port = u16::from_be_bytes([*b.get(2)?, *b.get(3)?]);
            let ip: [u8; 16] = b.get(8..24)?.try_into().ok()?;
            Some(Addr::Ip(SocketAddr::new(Ipv6Addr::from(ip).into(), port)))
        }
        libc::AF_UNIX => {
            let path = b.get(2..).unwrap_or_default();
            match path.first() {
                None | Some(0) => Some(Addr::UnixOther),
                Some(_) => Some(Addr::UnixPath(
                    path.split(|&c| c == 0).next().unwrap_or_default().to_vec(),
                )),
            }
        }
        libc::AF_UNSPEC => Some(Addr::Unspec),
        _ => Some(Addr::Other),
    }
}

/// `orig` (the bytes read) with the IP and port replaced, same family and
/// length; `None` when `to` does not fit the family (v6 into AF_INET) or
/// the bytes are too short.
pub fn rewrite(orig: &[u8], to: SocketAddr) -> Option<Vec<u8>> {
    let mut b = orig.to_vec();
    let family = family(&b)?;
    b.get_mut(2..4)?.copy_from_slice(&to.port().to_be_bytes());
    match (family, to.ip()) {
        (libc::AF_INET, IpAddr::V4(a)) => b.get_mut(4..8)?.copy_from_slice(&a.octets()),
        (libc::AF_INET6, IpAddr::V6(a)) => b.get_mut(8..24)?.copy_from_slice(&a.octets()),
        (libc::AF_INET6, IpAddr::V4(a)) => b
            .get_mut(8..24)?
            .copy_from_slice(&a.to_ipv6_mapped().octets()),
        _ => return None,
    }
    Some(b)
}

/// Which Unix socket addresses `connect`/`sendto`/`sendmsg` may name.
pub enum UnixPeers {
    /// Any (the original net-only supervisor; `bind` is not checked either).
    Any,
    /// Exactly these paths (compared byte for byte with the address up to
    /// its first NUL); abstract and unnamed addresses never, `bind` never.
    Only(Vec<Vec<u8>>),
}

impl UnixPeers {
    /// The paths as the supervisor compares them.
    pub fn only(paths: &[PathBuf]) -> UnixPeers {
        use std::os::unix::ffi::OsStrExt;
        UnixPeers::Only(
            paths
                .iter()
                .map(|p| p.as_os_str().as_bytes().to_vec())
                .collect(),
        )
    }
}

/// The call whose address is screened: Linux reads AF_UNSPEC differently
/// in each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Call {
    /// `connect`: AF_UNSPEC dissolves the socket's peer (reaches nobody).
    Connect,
    /// `sendto`, `sendmsg`, `sendmmsg`: an IPv4 UDP or raw socket sends to
    /// the address in an AF_UNSPEC sockaddr as if it were AF_INET
    /// (`udp_sendmsg`, `raw_sendmsg`).
    Send,
    /// `bind`: an IPv4 socket binds an AF_UNSPEC 0.0.0.0 as AF_INET
    /// (`__inet_bind`).
    Bind,
}

/// What the supervisor makes of an address before the network policy.
#[derive(Debug, PartialEq, Eq)]
pub enum Screened {
    /// An IP address: the network policy decides.
    Ip(SocketAddr),
    /// Not the guest's network (an allowed Unix peer, a disconnect, or
    /// anything under [`UnixPeers::Any`]): let it through.
    Pass,
    /// Too short for its family (EINVAL).
    Malformed,
    /// Not an allowed local peer, or AF_UNSPEC where the kernel would read
    /// it as IPv4; what it names, for the message.
    Refused(String),
}

/// Screens the address of `call` (read from memory) against `peers`.
pub fn screen(call: Call, bytes: &[u8], peers: &UnixPeers) -> Screened {
    let Some(addr) = parse(bytes) else {
        return Screened::Malformed;
    };
    if let Addr::Ip(to) = addr {
        return Screened::Ip(to);
    }
    // Refused rather than read as IPv4 like the kernel: no sender needs it,
    // and a second reading of the bytes is a second place to get wrong.
    if call != Call::Connect && addr == Addr::Unspec {
        return Screened::Refused("an AF_UNSPEC address (Linux reads it as IPv4 here)".into());
    }
    let UnixPeers::Only(peers) = peers else {
        // The original net-only supervisor: libkrun's own vsock-to-socket
        // ports, disconnects: not the guest's network.
        return Screened::Pass;
    };
    match (call, addr) {
        // A Unix socket bound by the VMM would be a host path (or an
        // abstract name) the guest made: never.
        (Call::Bind, _) => Screened::Refused("a Unix or other non-IP address".into()),
        (_, Addr::Unspec) => Screened::Pass,
        (_, Addr::UnixPath(path)) if peers.contains(&path) => Screened::Pass,
        (_, Addr::UnixPath(path)) => Screened::Refused(String::from_utf8_lossy(&path).into()),
        (_, Addr::UnixOther) => Screened::Refused("an abstract or unnamed Unix socket".into()),
        (_, Addr::Other | Addr::Ip(_)) => Screened::Refused("an address of another family".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::canonical;

    fn with_family(family: i32, len: usize) -> Vec<u8> {
        let mut b = vec![0u8; len];
        b[..2].copy_from_slice(&u16::try_from(family).unwrap().to_ne_bytes());
        b
    }

    #[test]
    fn rewrites_keep_the_family_and_map_v4_into_v6() {
        let v4 = with_family(libc::AF_INET, 16);
        let to: SocketAddr = "127.0.0.1:5353".parse().unwrap();
        let out = rewrite(&v4, to).unwrap();
        match parse(&out) {
            Some(Addr::Ip(a)) => assert_eq!(a, to),
            _ => panic!("not ip"),
        }
        let v6 = with_family(libc::AF_INET6, 28);
        let out = rewrite(&v6, to).unwrap();
        match parse(&out) {
            Some(Addr::Ip(a)) => assert_eq!(canonical(a.ip()), to.ip()),
            _ => panic!("not ip"),
        }
        assert!(parse(&[2]).is_none());
        let six: SocketAddr = "[2001:db8::1]:53".parse().unwrap();
        assert_eq!(rewrite(&v4, six), None, "v6 does not fit AF_INET");
    }

    #[test]
    fn unix_addresses_are_told_apart() {
        let un = |path: &[u8]| {
            let mut b = with_family(libc::AF_UNIX, 2);
            b.extend_from_slice(path);
            b
        };
        assert_eq!(
            parse(&un(b"/run/x.sock\0garbage")),
            Some(Addr::UnixPath(b"/run/x.sock".to_vec()))
        );
        assert_eq!(parse(&un(b"\0abstract")), Some(Addr::UnixOther));
        assert_eq!(parse(&un(b"")), Some(Addr::UnixOther));
        let unspec = u16::try_from(libc::AF_UNSPEC).unwrap().to_ne_bytes();
        assert_eq!(parse(&unspec), Some(Addr::Unspec));
    }

    #[test]
    fn only_the_listed_unix_peers_pass_and_nothing_unix_is_bound() {
        let peers = UnixPeers::only(&[PathBuf::from("/run/control.sock")]);
        let mut ok = with_family(libc::AF_UNIX, 2);
        ok.extend_from_slice(b"/run/control.sock\0");
        let mut other = with_family(libc::AF_UNIX, 2);
        other.extend_from_slice(b"/run/control.sock2");
        let mut abs = with_family(libc::AF_UNIX, 2);
        abs.extend_from_slice(b"\0/run/control.sock");
        assert_eq!(screen(Call::Connect, &ok, &peers), Screened::Pass);
        assert_eq!(screen(Call::Send, &ok, &peers), Screened::Pass);
        assert!(matches!(
            screen(Call::Bind, &ok, &peers),
            Screened::Refused(_)
        ));
        assert!(matches!(
            screen(Call::Connect, &other, &peers),
            Screened::Refused(_)
        ));
        assert!(matches!(
            screen(Call::Connect, &abs, &peers),
            Screened::Refused(_)
        ));
        let netlink = with_family(libc::AF_NETLINK, 12);
        assert!(matches!(
            screen(Call::Send, &netlink, &peers),
            Screened::Refused(_)
        ));
        assert_eq!(
            screen(Call::Send, &netlink, &UnixPeers::Any),
            Screened::Pass
        );
        assert_eq!(screen(Call::Send, &[2], &peers), Screened::Malformed);
    }

    /// Found by the `sockaddr` fuzz target (regressions/sockaddr/af-unspec-*)
    /// and shown on the real kernel by tests/net_supervisor.rs: a datagram
    /// addressed AF_UNSPEC passed unchecked, and Linux sent it to the IPv4
    /// address inside (127.0.0.1, denied by policy).
    #[test]
    fn af_unspec_passes_only_as_a_disconnect() {
        let mut unspec = with_family(libc::AF_UNSPEC, 16);
        unspec[2..4].copy_from_slice(&53u16.to_be_bytes());
        unspec[4..8].copy_from_slice(&[127, 0, 0, 1]);
        for peers in [UnixPeers::Any, UnixPeers::Only(vec![])] {
            assert_eq!(screen(Call::Connect, &unspec, &peers), Screened::Pass);
            assert!(matches!(
                screen(Call::Send, &unspec, &peers),
                Screened::Refused(_)
            ));
            assert!(matches!(
                screen(Call::Bind, &unspec, &peers),
                Screened::Refused(_)
            ));
        }
    }
}

//! The guest's DNS resolver: a UDP server on the host's loopback that the
//! supervisor points every guest datagram for `GUEST_DNS:53` at. It answers
//! A and AAAA questions for names the policy allows, looked up with the
//! host's own resolver (getaddrinfo), and records the answers as allowed
//! addresses for a while; other names get NXDOMAIN. Addresses the policy
//! refuses by default (loopback, local networks, ...) are left out of the
//! answer and never learned, so a listed name cannot open them (DNS
//! rebinding). Messages that are answers themselves (QR=1) are dropped, so
//! the resolver cannot be made to reflect. CNAME chains are followed by the
//! host's resolver inside getaddrinfo (glibc bounds them); our answers carry
//! no CNAME records.
//!
//! The message handling is the few dozen lines a one-question query and an
//! A/AAAA answer need (RFC 1035 §4): a DNS crate would be most of the stub's
//! remaining size budget for the same work.

use std::collections::HashSet;
use std::net::{IpAddr, SocketAddr, ToSocketAddrs, UdpSocket};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::Egress;

const TYPE_A: u16 = 1;
const TYPE_AAAA: u16 = 28;
const CLASS_IN: u16 = 1;
const RCODE_FORMERR: u16 = 1;
const RCODE_NXDOMAIN: u16 = 3;
/// Seconds the guest may cache an answer.
const ANSWER_TTL: u32 = 30;
/// Classic DNS over UDP: answers are cut to fit.
const MAX_UDP: usize = 512;
/// How often allowed host names are resolved again on the host.
const REFRESH: Duration = Duration::from_secs(60);
/// How long an answered address stays allowed. getaddrinfo gives no TTL;
/// the guest is told ANSWER_TTL, and the slack covers programs that keep an
/// address for minutes past its TTL (and the refresh interval above).
const LEARNED_FOR: Duration = Duration::from_secs(300);
const WORKERS: usize = 3;

/// A parsed one-question query.
#[derive(Debug, PartialEq, Eq)]
pub struct Query {
    pub id: u16,
    pub rd: bool,
    /// Lower-case, dot-separated, no trailing dot.
    pub name: String,
    pub qtype: u16,
    pub qclass: u16,
    /// Bytes of the header end through the question (echoed in the answer).
    question_end: usize,
}

fn be16(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes([
        *b.get(at)?,
        *b.get(at.checked_add(1)?)?,
    ]))
}

/// Parses a standard query with exactly one question. `None` for anything
/// else (answered FORMERR when at least the header is there).
pub fn parse_query(msg: &[u8]) -> Option<Query> {
    let id = be16(msg, 0)?;
    let flags = be16(msg, 2)?;
    let qr = flags & 0x8000 != 0;
    let opcode = (flags >> 11) & 0xf;
    if qr || opcode != 0 || be16(msg, 4)? != 1 {
        return None;
    }
    let mut at = 12usize;
    let mut name = String::new();
    loop {
        let len = usize::from(*msg.get(at)?);
        at += 1;
        if len == 0 {
            break;
        }
        // Compression pointers (0xC0) and extended labels have no place in
        // a question.
        if len > 63 {
            return None;
        }
        let label = msg.get(at..at.checked_add(len)?)?;
        if !name.is_empty() {
            name.push('.');
        }
        for &b in label {
            if !(b.is_ascii_alphanumeric() || b == b'-' || b == b'_') {
                return None;
            }
            name.push(char::from(b.to_ascii_lowercase()));
        }
        if name.len() > 253 {
            return None;
        }
        at += len;
    }
    let qtype = be16(msg, at)?;
    let qclass = be16(msg, at + 2)?;
    Some(Query {
        id,
        rd: flags & 0x0100 != 0,
        name,
        qtype,
        qclass,
        question_end: at + 4,
    })
}

/// The answer to `q` (taken from `msg`): `rcode`, and the addresses of
/// the asked family as records, as many as fit in 512 bytes.
pub fn answer(msg: &[u8], q: &Query, rcode: u16, ips: &[IpAddr]) -> Vec<u8> {
    let records: Vec<&IpAddr> = ips
        .iter()
        .filter(|ip| match (q.qtype, ip) {
            (TYPE_A, IpAddr::V4(_)) | (TYPE_AAAA, IpAddr::V6(_)) => q.qclass == CLASS_IN,
            _ => false,
        })
        .collect();
    let mut out = Vec::with_capacity(MAX_UDP);
    out.extend_from_slice(&q.id.to_be_bytes());
    let rd = if q.rd { 0x0100 } else { 0 };
    out.extend_from_slice(&(0x8000u16 | rd | 0x0080 | rcode).to_be_bytes());
    out.extend_from_slice(&1u16.to_be_bytes());
    let count_at = out.len();
    out.extend_from_slice(&[0; 6]);
    out.extend_from_slice(&msg[12..q.question_end]);
    let mut n = 0u16;
    for ip in records {
        let rdata: Vec<u8> = match ip {
            IpAddr::V4(a) => a.octets().to_vec(),
            IpAddr::V6(a) => a.octets().to_vec(),
        };
        if out.len() + 12 + rdata.len() > MAX_UDP {
            break;
        }
        out.extend_from_slice(&[0xc0, 0x0c]); // the question's name
        out.extend_from_slice(&q.qtype.to_be_bytes());
        out.extend_from_slice(&CLASS_IN.to_be_bytes());
        out.extend_from_slice(&ANSWER_TTL.to_be_bytes());
        out.extend_from_slice(&u16::try_from(rdata.len()).expect("4 or 16").to_be_bytes());
        out.extend_from_slice(&rdata);
        n += 1;
    }
    out[count_at..count_at + 2].copy_from_slice(&n.to_be_bytes());
    out
}

/// A FORMERR reply for a message with at least a header.
fn format_error(msg: &[u8]) -> Option<Vec<u8>> {
    let id = be16(msg, 0)?;
    let mut out = id.to_be_bytes().to_vec();
    out.extend_from_slice(&(0x8000u16 | 0x0080 | RCODE_FORMERR).to_be_bytes());
    out.extend_from_slice(&[0; 8]);
    Some(out)
}

/// Looks `name` up with the host's resolver.
fn lookup(name: &str) -> Option<Vec<IpAddr>> {
    let addrs = (name, 0u16).to_socket_addrs().ok()?;
    let mut seen = HashSet::new();
    Some(
        addrs
            .map(|a| a.ip())
            .filter(|ip| seen.insert(*ip))
            .collect(),
    )
}

/// The reply to one datagram, if any.
pub fn respond(egress: &Egress, msg: &[u8]) -> Option<Vec<u8>> {
    respond_using(egress, msg, lookup)
}

/// [`respond`] with the host lookup given (tests give their own).
fn respond_using(
    egress: &Egress,
    msg: &[u8],
    lookup: impl Fn(&str) -> Option<Vec<IpAddr>>,
) -> Option<Vec<u8>> {
    // An answer (QR=1) gets no reply: replying would let a forged source
    // address bounce our replies at a third party, or two resolvers at each
    // other.
    if be16(msg, 2).is_some_and(|flags| flags & 0x8000 != 0) {
        return None;
    }
    let Some(q) = parse_query(msg) else {
        return format_error(msg);
    };
    if !egress.policy.name_allowed(&q.name) {
        return Some(answer(msg, &q, RCODE_NXDOMAIN, &[]));
    }
    match lookup(&q.name) {
        Some(ips) => {
            let ips: Vec<IpAddr> = ips
                .into_iter()
                .filter(|ip| egress.resolvable(*ip))
                .collect();
            egress.learn(ips.iter().copied(), LEARNED_FOR);
            Some(answer(msg, &q, 0, &ips))
        }
        None => Some(answer(msg, &q, RCODE_NXDOMAIN, &[])),
    }
}

/// The running resolver: its address, and the ids of its threads (the
/// supervisor lets their own lookups through).
pub struct Resolver {
    pub addr: SocketAddr,
    pub tids: TrustedThreads,
}

/// The resolver's live threads. A thread leaves the set before it ends (its
/// `Member` guard), so a thread id the kernel hands out again later (to a
/// libkrun thread, say) is never trusted because a resolver thread once had it.
#[derive(Clone, Default, Debug)]
pub struct TrustedThreads(Arc<std::sync::RwLock<HashSet<i32>>>);

impl TrustedThreads {
    pub fn contains(&self, tid: i32) -> bool {
        self.0
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .contains(&tid)
    }

    /// Adds the calling thread until the guard is dropped.
    fn join(&self) -> Member {
        let tid = gettid();
        self.0
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(tid);
        Member {
            set: self.clone(),
            tid,
        }
    }
}

/// A resolver thread's membership in [`TrustedThreads`].
struct Member {
    set: TrustedThreads,
    tid: i32,
}

impl Drop for Member {
    fn drop(&mut self) {
        self.set
            .0
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&self.tid);
    }
}

fn gettid() -> i32 {
    // SAFETY: gettid has no arguments and cannot fail.
    let tid = unsafe { libc::syscall(libc::SYS_gettid) };
    i32::try_from(tid).expect("thread ids fit in pid_t")
}

type Job = (Vec<u8>, SocketAddr);

/// Starts the resolver threads; they live as long as the process.
pub fn start(egress: Arc<Egress>) -> std::io::Result<Resolver> {
    let sock = UdpSocket::bind(("127.0.0.1", 0))?;
    let addr = sock.local_addr()?;
    let trusted = TrustedThreads::default();
    // Each thread joins the trusted set, then says so: the set is complete
    // before the supervisor starts deciding.
    let (tid_tx, tid_rx) = sync_channel::<()>(WORKERS + 2);
    let (job_tx, job_rx): (SyncSender<Job>, Receiver<Job>) = sync_channel(64);
    let job_rx = Arc::new(Mutex::new(job_rx));
    for i in 0..WORKERS {
        let (sock, egress, jobs, tids, set) = (
            sock.try_clone()?,
            egress.clone(),
            job_rx.clone(),
            tid_tx.clone(),
            trusted.clone(),
        );
        std::thread::Builder::new()
            .name(format!("smolvm-dns-{i}"))
            .spawn(move || {
                let _member = set.join();
                let _ = tids.send(());
                loop {
                    let job = jobs.lock().unwrap_or_else(|e| e.into_inner()).recv();
                    let Ok((msg, from)) = job else { return };
                    if let Some(reply) = respond(&egress, &msg) {
                        let _ = sock.send_to(&reply, from);
                    }
                }
            })?;
    }
    {
        let (tids, set) = (tid_tx.clone(), trusted.clone());
        std::thread::Builder::new()
            .name("smolvm-dns".into())
            .spawn(move || {
                let _member = set.join();
                let _ = tids.send(());
                let mut buf = [0u8; 1500];
                loop {
                    match sock.recv_from(&mut buf) {
                        // A full queue drops the query, like a busy server.
                        Ok((n, from)) => {
                            let _ = job_tx.try_send((buf[..n].to_vec(), from));
                        }
                        Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                        Err(_) => return,
                    }
                }
            })?;
    }
    {
        let (tids, set) = (tid_tx, trusted.clone());
        std::thread::Builder::new()
            .name("smolvm-dns-refresh".into())
            .spawn(move || {
                let _member = set.join();
                let _ = tids.send(());
                let names: Vec<String> = egress
                    .policy
                    .hosts
                    .iter()
                    .filter_map(|h| match h {
                        super::HostPattern::Exact(n) => Some(n.clone()),
                        super::HostPattern::Below(_) => None,
                    })
                    .collect();
                if names.is_empty() {
                    return;
                }
                loop {
                    for n in &names {
                        if let Some(ips) = lookup(n) {
                            egress.learn(ips, LEARNED_FOR);
                        }
                    }
                    std::thread::sleep(REFRESH);
                }
            })?;
    }
    for _ in 0..WORKERS + 2 {
        tid_rx
            .recv()
            .map_err(|_| std::io::Error::other("a DNS resolver thread ended before it started"))?;
    }
    Ok(Resolver {
        addr,
        tids: trusted,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::Policy;
    use std::net::Ipv4Addr;

    fn query(name: &str, qtype: u16) -> Vec<u8> {
        let mut m = vec![0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
        for l in name.split('.') {
            m.push(u8::try_from(l.len()).unwrap());
            m.extend_from_slice(l.as_bytes());
        }
        m.push(0);
        m.extend_from_slice(&qtype.to_be_bytes());
        m.extend_from_slice(&CLASS_IN.to_be_bytes());
        m
    }

    #[test]
    fn parses_one_question_and_answers_with_records_of_its_type() {
        let m = query("Host.Example.com", TYPE_A);
        let q = parse_query(&m).unwrap();
        assert_eq!(
            (q.id, q.rd, q.name.as_str(), q.qtype),
            (0x1234, true, "host.example.com", TYPE_A)
        );
        let ips = [
            IpAddr::V4(Ipv4Addr::new(192, 0, 2, 7)),
            "2001:db8::1".parse().unwrap(),
        ];
        let a = answer(&m, &q, 0, &ips);
        assert_eq!(&a[0..2], &[0x12, 0x34]);
        assert_eq!(a[3] & 0x0f, 0, "rcode");
        assert_eq!(be16(&a, 6), Some(1), "one A record");
        assert_eq!(&a[a.len() - 4..], &[192, 0, 2, 7]);
        let m6 = query("h.test", TYPE_AAAA);
        let a6 = answer(&m6, &parse_query(&m6).unwrap(), 0, &ips);
        assert_eq!(be16(&a6, 6), Some(1), "one AAAA record");
    }

    #[test]
    fn answers_stay_within_512_bytes() {
        let m = query("many.test", TYPE_A);
        let ips: Vec<IpAddr> = (0..200u8)
            .map(|i| IpAddr::V4(Ipv4Addr::new(10, 0, 0, i)))
            .collect();
        let a = answer(&m, &parse_query(&m).unwrap(), 0, &ips);
        assert!(a.len() <= MAX_UDP);
        assert!(be16(&a, 6).unwrap() > 20);
    }

    #[test]
    fn rejects_what_is_not_a_plain_query() {
        assert!(parse_query(&[]).is_none());
        let mut m = query("a.test", TYPE_A);
        m[2] |= 0x80; // a response
        assert!(parse_query(&m).is_none());
        let mut m = query("a.test", TYPE_A);
        m[12] = 0xc0; // a compression pointer in the question
        assert!(parse_query(&m).is_none());
        let m = query("a.test", TYPE_A);
        assert!(parse_query(&m[..m.len() - 1]).is_none(), "truncated");
        // Every truncation of a valid query is refused, never a panic.
        for n in 0..m.len() {
            let _ = parse_query(&m[..n]);
        }
    }

    fn egress(hosts: &[&str], cidrs: &[&str]) -> Arc<Egress> {
        let mut c = smolvm_format::MachineConfig {
            net: true,
            ..Default::default()
        };
        c.network.allow_hosts = hosts.iter().map(|s| s.to_string()).collect();
        c.network.allow_cidrs = cidrs.iter().map(|s| s.to_string()).collect();
        Egress::new(Policy::from_config(&c, &[]).unwrap(), HashSet::new())
    }

    /// The A records of an answer, in order.
    fn a_records(a: &[u8], question_end: usize) -> Vec<Ipv4Addr> {
        let n = usize::from(be16(a, 6).unwrap());
        (0..n)
            .map(|i| {
                let at = question_end + i * 16 + 12;
                Ipv4Addr::new(a[at], a[at + 1], a[at + 2], a[at + 3])
            })
            .collect()
    }

    #[test]
    fn an_allowed_name_resolving_to_a_local_address_opens_nothing() {
        let public: IpAddr = "93.184.216.34".parse().unwrap();
        let private: IpAddr = "10.0.0.5".parse().unwrap();
        let lookup = |_: &str| Some(vec![private, public, "127.0.0.1".parse().unwrap()]);
        let m = query("allowed.test", TYPE_A);
        let end = parse_query(&m).unwrap().question_end;

        let e = egress(&["allowed.test"], &[]);
        let r = respond_using(&e, &m, lookup).unwrap();
        assert_eq!(a_records(&r, end), vec![Ipv4Addr::new(93, 184, 216, 34)]);
        assert_eq!(e.check(public), Ok(()));
        assert_eq!(e.check(private), Err(crate::net::Deny::LocalNetwork));
        assert_eq!(e.learned_len(), 1);

        // Only the private address: an empty answer, still refused.
        let r = respond_using(&e, &m, |_| Some(vec![private])).unwrap();
        assert_eq!(a_records(&r, end), Vec::<Ipv4Addr>::new());
        assert_eq!(e.check(private), Err(crate::net::Deny::LocalNetwork));

        // Listed as a CIDR, the private address is answered and reachable.
        let e = egress(&["allowed.test"], &["10.0.0.0/8"]);
        let r = respond_using(&e, &m, lookup).unwrap();
        assert_eq!(
            a_records(&r, end),
            vec![Ipv4Addr::new(10, 0, 0, 5), Ipv4Addr::new(93, 184, 216, 34)]
        );
        assert_eq!(e.check(private), Ok(()));
    }

    #[test]
    fn answers_sent_to_the_resolver_get_no_reply() {
        let e = egress(&[], &[]);
        let mut m = query("a.test", TYPE_A);
        m[2] |= 0x80; // QR: this is an answer
        assert_eq!(respond_using(&e, &m, |_| panic!("looked up")), None);
        let mut bare = vec![0xab, 0xcd, 0x80, 0];
        assert_eq!(respond_using(&e, &bare, |_| panic!("looked up")), None);
        bare[2] = 0;
        assert!(
            respond_using(&e, &bare, |_| panic!("looked up")).is_some(),
            "formerr"
        );
    }

    #[test]
    fn names_outside_the_policy_get_nxdomain_without_a_lookup() {
        let mut c = smolvm_format::MachineConfig {
            net: true,
            ..Default::default()
        };
        c.network.allow_hosts = vec!["allowed.test".into()];
        let egress = Egress::new(Policy::from_config(&c, &[]).unwrap(), HashSet::new());
        let r = respond(&egress, &query("denied.test", TYPE_A)).unwrap();
        assert_eq!(r[3] & 0x0f, 3);
        let r = respond(&egress, &[0xab, 0xcd, 0, 0]).unwrap();
        assert_eq!(r[3] & 0x0f, 1, "formerr");
    }
}

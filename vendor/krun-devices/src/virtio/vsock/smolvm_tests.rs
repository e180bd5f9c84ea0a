// smolmachine: tests of the TSI patches in vendor/patches/ (0006-0010), driven the
// way a hostile guest drives the muxer: TSI requests written byte by byte into
// guest memory, a TX descriptor over them, `VsockPacket::from_tx_virtq_head` and
// `VsockMuxer::send_dgram_pkt`, and the replies read back from RX buffers in
// guest memory. The muxer's threads are not started; where the muxer thread
// would react to a socket event, the test calls the proxy's `process_event`.
//
// Every host path a test names lies in its own scratch directory. Run with
// `cargo test -p krun-devices --lib smolvm_` (scripts/test.sh does). Each test
// fails without the patch it names.

use std::collections::HashMap;
use std::fs;
use std::net::{Ipv4Addr, SocketAddrV4, TcpListener, TcpStream, UdpSocket};
use std::os::unix::fs::FileTypeExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use utils::epoll::EventSet;
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

use super::super::queue::tests::VirtQueue;
use super::super::queue::{VIRTQ_DESC_F_NEXT, VIRTQ_DESC_F_WRITE};
use super::super::Queue;
use super::defs::{self, uapi};
use super::muxer::{VsockMuxer, MAX_TSI_PROXIES};
use super::packet::{VsockPacket, VSOCK_PKT_HDR_SIZE};
use super::TsiFlags;

const GUEST_CID: u64 = 3;
const CONTROL_PORT: u32 = 5000;
const RX_CHAINS: u16 = 16;
const RX_HDRS_AT: u64 = 0x10000;
const RX_DATA_LEN: u32 = 0x800;
const TX_PKT_AT: u64 = 0x80000;

// The listener tests count the process's inet listeners; they take turns.
static LISTENER_TESTS: Mutex<()> = Mutex::new(());

fn one_at_a_time() -> MutexGuard<'static, ()> {
    LISTENER_TESTS.lock().unwrap_or_else(|e| e.into_inner())
}

/// A packet the host sent the guest, as read back from an RX buffer.
struct RxPkt {
    src_port: u32,
    data: Vec<u8>,
}

impl RxPkt {
    fn result(&self) -> i32 {
        i32::from_le_bytes(self.data[0..4].try_into().unwrap())
    }
}

/// Guest memory with an RX and a TX queue, and a muxer attached to them.
struct Guest {
    mem: &'static GuestMemoryMmap,
    rx: VirtQueue<'static>,
    tx: VirtQueue<'static>,
    tx_queue: Queue,
    tx_sent: u16,
    rx_seen: u16,
    rx_posted: u16,
    muxer: VsockMuxer,
}

impl Guest {
    fn new(port_map: Option<HashMap<u16, u16>>) -> Guest {
        let mem: &'static GuestMemoryMmap = Box::leak(Box::new(
            GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 1 << 20)]).unwrap(),
        ));
        let rx = VirtQueue::new(GuestAddress(0), mem, 2 * RX_CHAINS);
        for i in 0..RX_CHAINS {
            let hdr = RX_HDRS_AT + u64::from(i) * 0x1000;
            let (head, data) = (2 * i, 2 * i + 1);
            rx.dtable[head as usize].set(
                hdr,
                VSOCK_PKT_HDR_SIZE as u32,
                VIRTQ_DESC_F_WRITE | VIRTQ_DESC_F_NEXT,
                data,
            );
            rx.dtable[data as usize].set(hdr + 0x100, RX_DATA_LEN, VIRTQ_DESC_F_WRITE, 0);
            rx.avail.ring[i as usize].set(head);
        }
        rx.avail.idx.set(RX_CHAINS);
        let tx = VirtQueue::new(GuestAddress(0x4000), mem, 4);
        let tx_queue = tx.create_queue();
        let mut muxer = VsockMuxer::new(GUEST_CID, port_map, None, TsiFlags::HIJACK_INET);
        muxer.smolvm_attach(mem.clone(), Arc::new(Mutex::new(rx.create_queue())));
        Guest {
            mem,
            rx,
            tx,
            tx_queue,
            tx_sent: 0,
            rx_seen: 0,
            rx_posted: RX_CHAINS,
            muxer,
        }
    }

    /// Sends one TSI datagram (header and `payload` in one descriptor).
    fn send(&mut self, src_port: u32, dst_port: u32, payload: &[u8]) {
        let mut hdr = [0u8; VSOCK_PKT_HDR_SIZE];
        hdr[0..8].copy_from_slice(&GUEST_CID.to_le_bytes());
        hdr[8..16].copy_from_slice(&uapi::VSOCK_HOST_CID.to_le_bytes());
        hdr[16..20].copy_from_slice(&src_port.to_le_bytes());
        hdr[20..24].copy_from_slice(&dst_port.to_le_bytes());
        hdr[24..28].copy_from_slice(&(payload.len() as u32).to_le_bytes());
        hdr[28..30].copy_from_slice(&uapi::VSOCK_TYPE_DGRAM.to_le_bytes());
        hdr[30..32].copy_from_slice(&uapi::VSOCK_OP_RW.to_le_bytes());
        hdr[36..40].copy_from_slice(&(64u32 << 10).to_le_bytes());
        self.mem.write_slice(&hdr, GuestAddress(TX_PKT_AT)).unwrap();
        self.mem
            .write_slice(payload, GuestAddress(TX_PKT_AT + VSOCK_PKT_HDR_SIZE as u64))
            .unwrap();
        let len = (VSOCK_PKT_HDR_SIZE + payload.len()) as u32;
        self.tx.dtable[0].set(TX_PKT_AT, len, 0, 0);
        self.tx.avail.ring[usize::from(self.tx_sent % 4)].set(0);
        self.tx_sent = self.tx_sent.wrapping_add(1);
        self.tx.avail.idx.set(self.tx_sent);
        let head = self.tx_queue.pop(self.mem).expect("a TX descriptor");
        if let Ok(pkt) = VsockPacket::from_tx_virtq_head(&head) {
            self.muxer.send_dgram_pkt(&pkt).unwrap();
        }
        self.tx_queue.add_used(self.mem, head.index, 0).unwrap();
    }

    /// The packets the host put in RX buffers since the last call.
    fn received(&mut self) -> Vec<RxPkt> {
        let mut out = Vec::new();
        let used = self.rx.used.idx.get();
        while self.rx_seen != used {
            let elem = self.rx.used.ring[usize::from(self.rx_seen % (2 * RX_CHAINS))].get();
            self.rx_seen = self.rx_seen.wrapping_add(1);
            let hdr_at = RX_HDRS_AT + u64::from(elem.id / 2) * 0x1000;
            let mut hdr = [0u8; VSOCK_PKT_HDR_SIZE];
            self.mem.read_slice(&mut hdr, GuestAddress(hdr_at)).unwrap();
            let len = u32::from_le_bytes(hdr[24..28].try_into().unwrap()).min(RX_DATA_LEN);
            let mut data = vec![0u8; len as usize];
            self.mem
                .read_slice(&mut data, GuestAddress(hdr_at + 0x100))
                .unwrap();
            out.push(RxPkt {
                src_port: u32::from_le_bytes(hdr[16..20].try_into().unwrap()),
                data,
            });
            // Hand the buffer back to the device, as a guest driver does.
            let slot = usize::from(self.rx_posted % (2 * RX_CHAINS));
            self.rx.avail.ring[slot].set(elem.id as u16);
            self.rx_posted = self.rx_posted.wrapping_add(1);
            self.rx.avail.idx.set(self.rx_posted);
        }
        out
    }

    /// Sends a request whose replies do not matter, and drops them.
    fn poke(&mut self, dst_port: u32, payload: &[u8]) {
        self.send(CONTROL_PORT, dst_port, payload);
        self.received();
    }

    /// The result of the one reply from TSI port `port` since the last call.
    fn reply_from(&mut self, port: u32) -> Option<i32> {
        let replies: Vec<i32> = self
            .received()
            .iter()
            .filter(|p| p.src_port == port)
            .map(RxPkt::result)
            .collect();
        assert!(replies.len() <= 1, "more than one reply: {replies:?}");
        replies.first().copied()
    }

    fn proxy_create(&mut self, peer_port: u32, family: u16, type_: u16) {
        let mut req = peer_port.to_le_bytes().to_vec();
        req.extend_from_slice(&family.to_le_bytes());
        req.extend_from_slice(&type_.to_le_bytes());
        self.send(CONTROL_PORT, defs::TSI_PROXY_CREATE, &req);
    }

    fn listen(&mut self, peer_port: u32, addr: &[u8]) -> Option<i32> {
        let req = listen_req(peer_port, addr, addr.len() as u32);
        self.send(CONTROL_PORT, defs::TSI_LISTEN, &req);
        self.reply_from(defs::TSI_LISTEN)
    }
}

fn listen_req(peer_port: u32, addr: &[u8], addr_len: u32) -> Vec<u8> {
    let mut req = Vec::new();
    for v in [peer_port, peer_port, 16, addr_len] {
        req.extend_from_slice(&v.to_le_bytes());
    }
    req.extend_from_slice(addr);
    req
}

fn sockaddr_in(addr: SocketAddrV4) -> Vec<u8> {
    let mut sa = defs::LINUX_AF_INET.to_le_bytes().to_vec();
    sa.extend_from_slice(&addr.port().to_be_bytes());
    sa.extend_from_slice(&addr.ip().octets());
    sa.extend_from_slice(&[0; 8]);
    sa
}

fn sockaddr_un(path: &Path) -> Vec<u8> {
    let mut sa = defs::LINUX_AF_UNIX.to_le_bytes().to_vec();
    sa.extend_from_slice(path.as_os_str().as_encoded_bytes());
    sa.push(0);
    sa
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("smolvm-tsi-{}-{name}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).unwrap();
    dir
}

/// Listening AF_INET/AF_INET6 sockets this process holds.
fn inet_listeners() -> usize {
    let opt = |fd: i32, name: i32| {
        let mut v: libc::c_int = 0;
        let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
        // SAFETY: v and len are valid for writes of their sizes; a descriptor
        // that is not a socket (or was closed meanwhile) only makes this fail.
        let r = unsafe {
            libc::getsockopt(fd, libc::SOL_SOCKET, name, (&raw mut v).cast(), &mut len)
        };
        (r == 0).then_some(v)
    };
    fs::read_dir("/proc/self/fd")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|&fd| {
            matches!(opt(fd, libc::SO_DOMAIN), Some(libc::AF_INET | libc::AF_INET6))
                && opt(fd, libc::SO_ACCEPTCONN) == Some(1)
        })
        .count()
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

// Patch 0007: a LISTEN with a sockaddr_un on an AF_INET proxy used to unlink the
// named socket before bind() failed. Now nothing is unlinked or bound.
#[test]
fn smolvm_listen_with_sockaddr_un_unlinks_and_binds_nothing() {
    let passwd = fs::read("/etc/passwd").ok();
    let dir = scratch("unix-listen");
    let agent = dir.join("agent.sock");
    let _keeper = UnixListener::bind(&agent).unwrap();
    let fresh = dir.join("fresh.sock");

    let mut guest = Guest::new(Some(HashMap::new()));
    for (peer_port, family) in [(10, defs::LINUX_AF_INET), (11, defs::LINUX_AF_INET6)] {
        guest.proxy_create(peer_port, family, defs::SOCK_STREAM);
        let reply = guest.listen(peer_port, &sockaddr_un(&agent));
        assert!(reply.is_some_and(|r| r < 0), "listen on {agent:?}: {reply:?}");
        guest.proxy_create(peer_port + 10, family, defs::SOCK_STREAM);
        let reply = guest.listen(peer_port + 10, &sockaddr_un(&fresh));
        assert!(reply.is_some_and(|r| r < 0), "listen on {fresh:?}: {reply:?}");
    }
    // An AF_UNIX proxy is not even created without HIJACK_UNIX.
    guest.proxy_create(30, defs::LINUX_AF_UNIX, defs::SOCK_STREAM);
    assert!(guest.listen(30, &sockaddr_un(&agent)).is_some_and(|r| r < 0));

    assert!(fs::metadata(&agent).unwrap().file_type().is_socket());
    UnixStream::connect(&agent).expect("the person's socket still answers");
    assert!(!fresh.exists(), "{fresh:?} was created");
    assert_eq!(fs::read("/etc/passwd").ok(), passwd);
    drop(guest);
    fs::remove_dir_all(&dir).unwrap();
}

// Patch 0008: port 0 and unpublished ports open no host listener; a published
// port does (on its host port), which shows the harness sees a listener.
#[test]
fn smolvm_listen_port_zero_and_unpublished_refused() {
    let _turn = one_at_a_time();
    let host_port = free_port();
    let mut guest = Guest::new(Some(HashMap::from([(80, host_port)])));
    let before = inet_listeners();

    for (peer_port, at) in [
        (1, SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0)),
        (2, SocketAddrV4::new(Ipv4Addr::LOCALHOST, 0)),
        (3, SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 81)),
    ] {
        guest.proxy_create(peer_port, defs::LINUX_AF_INET, defs::SOCK_STREAM);
        assert_eq!(guest.listen(peer_port, &sockaddr_in(at)), Some(-libc::EACCES), "{at}");
        assert_eq!(inet_listeners(), before, "a host listener for {at}");
    }

    guest.proxy_create(4, defs::LINUX_AF_INET, defs::SOCK_STREAM);
    let published = SocketAddrV4::new(Ipv4Addr::LOCALHOST, 80);
    assert_eq!(guest.listen(4, &sockaddr_in(published)), Some(0));
    assert_eq!(inet_listeners(), before + 1);
    TcpStream::connect(("127.0.0.1", host_port)).expect("the published port listens");
}

// Patch 0006: requests shorter than their fields, and addresses whose addr_len
// runs past the packet, are dropped without a panic; the muxer keeps answering.
#[test]
fn smolvm_short_and_overlong_requests_are_refused_without_panic() {
    let _turn = one_at_a_time();
    let host_port = free_port();
    let mut guest = Guest::new(Some(HashMap::from([(80, host_port)])));
    guest.proxy_create(1, defs::LINUX_AF_INET, defs::SOCK_STREAM);
    guest.proxy_create(2, defs::LINUX_AF_INET, defs::SOCK_DGRAM);
    let published = sockaddr_in(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 80));
    let before = inet_listeners();

    // A LISTEN whose addr_len reaches 64 bytes past the end of the packet: the
    // bytes there are not the guest's request.
    let overlong = listen_req(1, &published, published.len() as u32 + 64);
    guest.send(CONTROL_PORT, defs::TSI_LISTEN, &overlong);
    assert_eq!(guest.reply_from(defs::TSI_LISTEN), None);
    assert_eq!(inet_listeners(), before);

    let valid = listen_req(1, &published, published.len() as u32);
    let mut connect = 2u32.to_le_bytes().to_vec();
    connect.extend_from_slice(&(published.len() as u32).to_le_bytes());
    connect.extend_from_slice(&published);
    for port in defs::TSI_PROXY_CREATE..=defs::TSI_PROXY_RELEASE {
        for len in 0..valid.len() {
            for prefix in [&valid, &connect] {
                guest.poke(port, &prefix[..len.min(prefix.len())]);
            }
            guest.poke(port, &vec![0xff; len]);
        }
        for addr_len in [0, 1, 15, 129, u32::MAX] {
            guest.poke(port, &listen_req(1, &published, addr_len));
        }
    }
    assert_eq!(inet_listeners(), before);

    // Still serving: a well-formed LISTEN for the published port is answered.
    guest.proxy_create(3, defs::LINUX_AF_INET, defs::SOCK_STREAM);
    assert_eq!(guest.listen(3, &published), Some(0));
}

// Patch 0009: a datagram from an address the guest never sent to is dropped; one
// from the peer it sent to is delivered.
#[test]
fn smolvm_datagram_from_a_stranger_is_not_delivered() {
    let friend = UdpSocket::bind("127.0.0.1:0").unwrap();
    let stranger = UdpSocket::bind("127.0.0.1:0").unwrap();
    friend
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let friend_at = match friend.local_addr().unwrap() {
        std::net::SocketAddr::V4(a) => a,
        other => panic!("{other}"),
    };

    let mut guest = Guest::new(Some(HashMap::new()));
    let peer_port = 7u32;
    guest.proxy_create(peer_port, defs::LINUX_AF_INET, defs::SOCK_DGRAM);
    let mut sendto = peer_port.to_le_bytes().to_vec();
    let sa = sockaddr_in(friend_at);
    sendto.extend_from_slice(&(sa.len() as u32).to_le_bytes());
    sendto.extend_from_slice(&sa);
    guest.send(CONTROL_PORT, defs::TSI_SENDTO_ADDR, &sendto);
    guest.send(peer_port, defs::TSI_SENDTO_DATA, b"ping");

    let mut buf = [0u8; 16];
    let (n, vmm_at) = friend.recv_from(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"ping");
    stranger.send_to(b"forged", vmm_at).unwrap();
    friend.send_to(b"pong", vmm_at).unwrap();
    // Both datagrams are queued on the VMM's socket once send_to returns (loopback).

    let id = (u64::from(peer_port) << 32) | u64::from(defs::TSI_PROXY_PORT);
    let proxies = guest.muxer.smolvm_proxies();
    proxies.read().unwrap()[&id]
        .lock()
        .unwrap()
        .process_event(EventSet::IN);
    let delivered: Vec<Vec<u8>> = guest.received().into_iter().map(|p| p.data).collect();
    assert_eq!(delivered, vec![b"pong".to_vec()]);
}

// Patch 0010: no more than MAX_TSI_PROXIES host sockets per VM; past that the
// guest's connect is told ENFILE.
#[test]
fn smolvm_host_sockets_are_capped() {
    let mut guest = Guest::new(Some(HashMap::new()));
    let proxies = guest.muxer.smolvm_proxies();
    let over = MAX_TSI_PROXIES as u32 + 5;
    for peer_port in 1..=over {
        let type_ = if peer_port % 2 == 0 {
            defs::SOCK_STREAM
        } else {
            defs::SOCK_DGRAM
        };
        guest.proxy_create(peer_port, defs::LINUX_AF_INET, type_);
    }
    assert_eq!(proxies.read().unwrap().len(), MAX_TSI_PROXIES);

    let mut connect = over.to_le_bytes().to_vec();
    let sa = sockaddr_in(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 9));
    connect.extend_from_slice(&(sa.len() as u32).to_le_bytes());
    connect.extend_from_slice(&sa);
    guest.send(CONTROL_PORT, defs::TSI_CONNECT, &connect);
    assert_eq!(guest.reply_from(defs::TSI_CONNECT), Some(-libc::ENFILE));
}

//! What the socket supervisor costs a TCP connect (issue 20's target: the
//! median through the policy within 1.2x of an unfiltered one).
//!
//! ```text
//! connect_latency [ROUNDS] [CONNECTS]     (defaults: 10 rounds of 300)
//! ```
//!
//! The parent listens on 127.0.0.2 (and drains every connection on a
//! thread of its own) and runs ROUNDS rounds; each round starts three child
//! processes of this same binary one after the other, in rotating order:
//! - `without`: no filter;
//! - `with`: the supervisor as the VMM installs it (net on, 127.0.0.2/32
//!   listed, our resolver running);
//! - `floor`: a filter that sends `connect` to a thread that answers
//!   "continue" at once without looking: what the kernel's seccomp user
//!   notification costs by itself, the least any supervisor of this design
//!   can cost.
//!
//! A filter lasts for the life of a process, so the sides cannot share one;
//! rotating the order spreads the machine's load over all. Each child times
//! every connect (socket + connect + close, as libkrun's TSI proxy does per
//! guest connection) after 20 untimed ones and reports them; the parent
//! prints the 10th percentile, median and 90th percentile of each side and
//! the ratios of the medians and of the 10th percentiles (the least
//! disturbed by other load) to `without`:
//!
//! ```text
//! without: p10 24.2 us, median 33.5, p90 50.3
//! with:    p10 38.5 us, median 42.7, p90 80.9   ratio median 1.27, p10 1.59
//! floor:   p10 37.5 us, median 39.8, p90 61.0   ratio median 1.19, p10 1.55
//! ```
//!
//! Build and run: `cargo run --release -p smolvm-runtime --example connect_latency`.

#[cfg(all(target_os = "linux", feature = "vmm"))]
fn main() -> std::process::ExitCode {
    bench::main()
}

#[cfg(not(all(target_os = "linux", feature = "vmm")))]
fn main() -> std::process::ExitCode {
    eprintln!("connect_latency: needs Linux and the runtime's `vmm` feature");
    std::process::ExitCode::from(2)
}

#[cfg(all(target_os = "linux", feature = "vmm"))]
mod bench {
    use std::net::{SocketAddr, TcpListener, TcpStream};
    use std::process::{Command, ExitCode};
    use std::time::Instant;

    use smolvm_format::MachineConfig;
    use smolvm_runtime::net::{dns, supervisor, Egress, Policy};

    const WARM_UP: u32 = 20;

    pub fn main() -> ExitCode {
        let args: Vec<String> = std::env::args().skip(1).collect();
        if args.first().map(String::as_str) == Some("child") {
            return child(&args[1..]);
        }
        let rounds: u32 = args.first().and_then(|a| a.parse().ok()).unwrap_or(10);
        let connects: u32 = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(300);
        if let Err(why) = supervisor::available() {
            eprintln!("connect_latency: {why}");
            return ExitCode::from(2);
        }
        let server = TcpListener::bind("127.0.0.2:0").expect("listen on 127.0.0.2");
        let at = server.local_addr().expect("listener address");
        std::thread::spawn(move || {
            for c in server.incoming() {
                drop(c);
            }
        });
        let modes = ["without", "with", "floor"];
        let mut samples: [Vec<f64>; 3] = Default::default();
        for round in 0..rounds {
            for k in 0..modes.len() {
                let m = (k + round as usize) % modes.len();
                let out = Command::new(std::env::current_exe().expect("own path"))
                    .args(["child", &at.to_string(), &connects.to_string(), modes[m]])
                    .output()
                    .expect("start a child");
                assert!(
                    out.status.success(),
                    "child failed: {}",
                    String::from_utf8_lossy(&out.stderr)
                );
                samples[m].extend(
                    String::from_utf8_lossy(&out.stdout)
                        .split_whitespace()
                        .map(|n| n.parse::<f64>().expect("a number of nanoseconds")),
                );
            }
        }
        let base = summary(&mut samples[0]);
        for (m, s) in modes.iter().zip(samples.iter_mut()) {
            let [p10, med, p90] = summary(s);
            print!(
                "{:8} p10 {p10:.1} us, median {med:.1}, p90 {p90:.1}",
                format!("{m}:")
            );
            if *m != "without" {
                print!(
                    "   ratio median {:.2}, p10 {:.2}",
                    med / base[1],
                    p10 / base[0]
                );
            }
            println!();
        }
        println!("({} connects each)", samples[0].len());
        ExitCode::SUCCESS
    }

    /// p10, median and p90 in microseconds.
    fn summary(ns: &mut [f64]) -> [f64; 3] {
        ns.sort_by(f64::total_cmp);
        let at = |q: usize| ns.get(ns.len() * q / 100).copied().unwrap_or(f64::NAN) / 1000.0;
        [at(10), at(50), at(90)]
    }

    /// A filter that notifies `connect` and a thread that lets every one
    /// through unread: the kernel's own cost of a notification round trip.
    fn floor_supervisor() {
        let mut prog = [
            // nr; connect -> USER_NOTIF, anything else -> ALLOW
            libc::sock_filter {
                code: 0x20,
                jt: 0,
                jf: 0,
                k: 0,
            },
            libc::sock_filter {
                code: 0x15,
                jt: 0,
                jf: 1,
                k: u32::try_from(libc::SYS_connect).expect("small"),
            },
            libc::sock_filter {
                code: 0x06,
                jt: 0,
                jf: 0,
                k: libc::SECCOMP_RET_USER_NOTIF,
            },
            libc::sock_filter {
                code: 0x06,
                jt: 0,
                jf: 0,
                k: libc::SECCOMP_RET_ALLOW,
            },
        ];
        let fprog = libc::sock_fprog {
            len: 4,
            filter: prog.as_mut_ptr(),
        };
        // SAFETY: plain prctl, then seccomp(2) with a valid program the
        // kernel copies; the result is a new listener descriptor we own.
        let fd = unsafe {
            libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0);
            libc::syscall(
                libc::SYS_seccomp,
                libc::SECCOMP_SET_MODE_FILTER,
                libc::SECCOMP_FILTER_FLAG_NEW_LISTENER,
                &fprog as *const libc::sock_fprog,
            )
        };
        let fd = i32::try_from(fd).expect("a descriptor");
        assert!(fd >= 0, "seccomp: {}", std::io::Error::last_os_error());
        std::thread::spawn(move || loop {
            // SAFETY: zeroed plain-data structs of the kernel's layout
            // (this kernel's sizes match libc's for these two).
            let mut req: libc::seccomp_notif = unsafe { std::mem::zeroed() };
            // SAFETY: RECV fills `req`.
            if unsafe { libc::ioctl(fd, libc::SECCOMP_IOCTL_NOTIF_RECV, &mut req) } != 0 {
                continue;
            }
            // SAFETY: as above.
            let mut resp: libc::seccomp_notif_resp = unsafe { std::mem::zeroed() };
            resp.id = req.id;
            resp.flags = 1; // SECCOMP_USER_NOTIF_FLAG_CONTINUE
                            // SAFETY: SEND reads `resp`.
            unsafe { libc::ioctl(fd, libc::SECCOMP_IOCTL_NOTIF_SEND, &mut resp) };
        });
    }

    fn child(args: &[String]) -> ExitCode {
        let (Some(at), Some(n), Some(mode)) = (args.first(), args.get(1), args.get(2)) else {
            return ExitCode::from(2);
        };
        let at: SocketAddr = at.parse().expect("address");
        let n: u32 = n.parse().expect("count");
        if mode == "floor" {
            floor_supervisor();
        } else if mode == "with" {
            let mut c = MachineConfig {
                net: true,
                ..MachineConfig::default()
            };
            c.network.allow_cidrs = vec!["127.0.0.2/32".into()];
            let policy = Policy::from_config(&c, &[]).expect("policy");
            let host = smolvm_runtime::net::host_addresses().expect("host addresses");
            let egress = Egress::new(policy, host);
            let resolver = dns::start(egress.clone()).expect("resolver");
            supervisor::install_rules(supervisor::Rules {
                net: Some(supervisor::NetRules {
                    egress,
                    dns: resolver.addr,
                    trusted: resolver.tids,
                }),
                unix_peers: supervisor::UnixPeers::Any,
            })
            .expect("install the supervisor");
        }
        let mut samples = String::new();
        for i in 0..WARM_UP + n {
            let t = Instant::now();
            drop(TcpStream::connect(at).expect("connect"));
            if i >= WARM_UP {
                samples.push_str(&format!("{} ", t.elapsed().as_nanos()));
            }
        }
        println!("{samples}");
        ExitCode::SUCCESS
    }
}

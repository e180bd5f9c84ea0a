//! Boots a prepared machine through libkrun (KVM on Linux).
//!
//! Platform seam: everything here is the VMM call sequence; what it needs is
//! a kernel file descriptor, the root filesystem image's descriptor, the
//! shares and disks as descriptors, and a run spec. A macOS/HVF backend
//! would implement the same `configure` and `enter` with its own kernel
//! hand-off.
//!
//! [`configure`] is a straight run of `attach_*` steps on one libkrun
//! context; [`Vmm::enter`] then puts the process in its sandbox and hands
//! it to the VM.
//!
//! No host directory is served that the person did not share: the root
//! virtio-fs device has no host directory behind it (libkrun's NullFs,
//! asked for with a NULL path), only the entries added here in memory: the
//! mount points libkrun's init needs, our guest init and its inputs.

use std::ffi::{CString, OsStr};
use std::fs::File;
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::Arc;

use thiserror::Error;

use crate::sandbox::{Policy, SandboxError};
use crate::spec::RunSpec;

/// The guest init, built from guest-init/init.c by build.rs.
pub static GUEST_INIT: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/smolvm-init"));

/// The virtio-fs tag libkrun's kernel command line mounts as the root.
const ROOT_TAG: &str = "/dev/root";

#[derive(Debug, Error)]
pub enum LaunchError {
    #[error("no usable KVM: {0}")]
    NoKvm(String),
    #[error("libkrun: {call} failed: {err}")]
    Krun {
        call: &'static str,
        err: std::io::Error,
    },
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    Network(String),
    #[error("setting up the machine's signal and terminal supervisor")]
    Control(#[source] std::io::Error),
    #[error("preparing the kernel hand-off")]
    Kernel(#[source] std::io::Error),
    #[error("confining the VMM")]
    Sandbox(#[from] crate::sandbox::SandboxError),
}

/// The disk the root filesystem image is attached as (`/dev/vda` in the guest).
const ROOT_DISK_ID: &str = "rootfs";

/// The one host file libkrun opens by name once the VMM is sandboxed (in
/// `krun_start_enter`): its mount namespace keeps it (crate::sandbox).
const KVM_DEVICE: &str = "/dev/kvm";

/// What the VM gets.
pub struct Machine<'a> {
    pub kernel: &'a File,
    /// The verified EROFS image, attached read-only; the guest init mounts it.
    pub root_image: &'a File,
    pub cpus: u8,
    pub memory_mib: u32,
    /// `None`: no network device at all. `Some`: TSI networking under the
    /// egress supervisor (crate::net).
    pub net: Option<Arc<crate::net::Egress>>,
    /// The host's SSH agent socket, when forwarding is on (crate::net::agent).
    pub ssh_agent: Option<&'a Path>,
    /// The overlay and storage disks (crate::disk), attached after the root.
    pub disks: &'a crate::disk::Disks,
    /// Host directories shared into the guest, in the order of the spec's
    /// `volume` records (the tags are [`crate::spec::volume_tag`]).
    pub shares: &'a [crate::settings::Share],
    pub spec: &'a RunSpec,
    /// Serve shares on a kernel without Landlock (crate::sandbox).
    pub allow_no_landlock: bool,
    pub host: &'a crate::host_env::HostEnv,
}

/// libkrun's virtio-fs server keeps one descriptor open per file or
/// directory the guest has looked up: a guest listing a share of a few
/// thousand files passes the usual soft limit of 1024 (EMFILE in the guest).
/// The soft limit is raised to a fixed budget (or the hard limit, if lower),
/// not to the hard limit, which can be a million: a guest must not be able
/// to make the VMM hold that many host descriptors.
const SHARE_FD_BUDGET: libc::rlim_t = 16384;

fn raise_open_file_limit() {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit read and write the one struct passed,
    // which lives for both calls.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 {
            let want = SHARE_FD_BUDGET.min(lim.rlim_max);
            if lim.rlim_cur < want {
                lim.rlim_cur = want;
                libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
            }
        }
    }
}

/// The guest's /etc/resolv.conf when the network is on (the guest init
/// copies it into the per-run layer): our resolver, reached through the
/// supervisor's rewrite of GUEST_DNS.
fn resolv_conf() -> Vec<u8> {
    format!(
        "# written by smolvm: the host answers names the machine's network policy allows\nnameserver {}\noptions edns0 trust-ad\n",
        crate::net::GUEST_DNS
    )
    .into_bytes()
}

/// Checks that this host can run a guest, naming the cause when it cannot.
/// `skip_pvm` (`SMOLVM_SKIP_KVM_CHECK=1`) skips the paravirtual-KVM heuristic.
pub fn check_kvm(skip_pvm: bool) -> Result<(), LaunchError> {
    match std::fs::OpenOptions::new().read(true).write(true).open("/dev/kvm") {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(LaunchError::NoKvm(
                "/dev/kvm does not exist (no hardware virtualisation here: enable VT-x/AMD-V, load kvm_intel/kvm_amd, or enable nested virtualisation for this VM)".into(),
            ))
        }
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
            return Err(LaunchError::NoKvm(
                "/dev/kvm: permission denied (add yourself to the `kvm` group: sudo usermod -aG kvm $USER, then log in again)".into(),
            ))
        }
        Err(e) => return Err(LaunchError::NoKvm(format!("/dev/kvm: {e}"))),
    }
    if Path::new("/sys/module/kvm_pvm").exists() && !skip_pvm {
        return Err(LaunchError::NoKvm(
            "/dev/kvm is kvm-pvm (paravirtual KVM), which cannot run a standard guest kernel; run on a host with hardware KVM (or set SMOLVM_SKIP_KVM_CHECK=1 to try anyway)".into(),
        ));
    }
    Ok(())
}

fn check(call: &'static str, ret: i32) -> Result<(), LaunchError> {
    if ret < 0 {
        Err(LaunchError::Krun {
            call,
            err: std::io::Error::from_raw_os_error(-ret),
        })
    } else {
        Ok(())
    }
}

fn cstr(s: impl AsRef<OsStr>) -> Result<CString, LaunchError> {
    CString::new(s.as_ref().as_bytes())
        .map_err(|_| LaunchError::Invalid("path contains a NUL byte".into()))
}

/// `/proc/self/fd/N`: how libkrun is given a file we hold open, so that it
/// opens the very file we checked, never a path again.
fn fd_path(fd: &impl AsRawFd) -> Result<CString, LaunchError> {
    cstr(format!("/proc/self/fd/{}", fd.as_raw_fd()))
}

/// A configured libkrun context, and the bytes its in-memory files point
/// into: libkrun keeps those pointers for the VM's lifetime, and this value
/// lives until [`Vmm::enter`] hands the process to the VM (which then ends
/// it), so they stay valid without leaking anything.
pub struct Vmm {
    ctx: u32,
    /// Heap buffers of the overlay files (moving a `Vec` keeps its buffer
    /// where it is).
    files: Vec<Vec<u8>>,
    /// The supervisor's control socket: one of the two Unix sockets the
    /// sandbox lets the VMM connect to.
    control: Option<std::path::PathBuf>,
}

/// Configures libkrun for `m`: one context, then each part of the machine
/// attached in turn. `control` is the supervisor's control socket (`None`
/// for a dry run, which stops here). Must run in the process that becomes
/// the VMM, before any other libkrun call in it.
pub fn configure(m: &Machine<'_>, control: Option<&Path>) -> Result<Vmm, LaunchError> {
    // The kernel libkrun's krunfw_get_kernel hands over at start
    // (crate::kernel_map), or the file for it to copy.
    let hand_off =
        crate::kernel_map::prepare(m.kernel, m.host.kernel_copy).map_err(LaunchError::Kernel)?;
    let mut vmm = Vmm::create(m)?;
    vmm.attach_root_image(m.root_image)?;
    vmm.attach_root(m.spec)?;
    vmm.attach_disks(m.disks)?;
    vmm.attach_network(m.net.as_deref())?;
    vmm.attach_shares(m.shares)?;
    vmm.attach_ssh_agent(m.ssh_agent)?;
    if let Some(sock) = control {
        vmm.attach_control(sock)?;
    }
    if hand_off == crate::kernel_map::HandOff::Copy {
        vmm.set_kernel_file(m.kernel)?;
    }
    Ok(vmm)
}

impl Vmm {
    fn create(m: &Machine<'_>) -> Result<Vmm, LaunchError> {
        let ctx = krun::krun_create_ctx();
        check("krun_create_ctx", ctx)?;
        let ctx = u32::try_from(ctx).expect("checked non-negative");
        check(
            "krun_set_vm_config",
            krun::krun_set_vm_config(ctx, m.cpus, m.memory_mib),
        )?;
        if split_irqchip(m.host.full_irqchip) {
            check("krun_split_irqchip", krun::krun_split_irqchip(ctx, true))?;
        }
        Ok(Vmm {
            ctx,
            files: Vec::new(),
            control: None,
        })
    }

    /// An in-memory file in the root device (`/.smolvm/...`).
    fn add_file(
        &mut self,
        call: &'static str,
        path: &str,
        data: Vec<u8>,
        mode: u32,
    ) -> Result<(), LaunchError> {
        let (tag, path) = (cstr(ROOT_TAG)?, cstr(path)?);
        // SAFETY: NUL-terminated strings that outlive the call (libkrun
        // copies them); the data's heap buffer is kept in `self.files`,
        // which lives as long as the VM (see [`Vmm`]).
        let ret = unsafe {
            krun::krun_fs_add_overlay_file(
                self.ctx,
                tag.as_ptr(),
                path.as_ptr(),
                data.as_ptr(),
                data.len(),
                mode,
                false,
            )
        };
        self.files.push(data);
        check(call, ret)
    }

    fn add_dir(&mut self, path: &str) -> Result<(), LaunchError> {
        let (tag, path) = (cstr(ROOT_TAG)?, cstr(path)?);
        // SAFETY: NUL-terminated strings that outlive the call.
        check("krun_fs_add_overlay_dir", unsafe {
            krun::krun_fs_add_overlay_dir(self.ctx, tag.as_ptr(), path.as_ptr(), 0o755)
        })
    }

    /// The root filesystem image as the first disk (`/dev/vda`),
    /// read-only: the image is shared by every run; the guest init layers a
    /// per-run tmpfs over it. libkrun opens it through /proc/self/fd: the
    /// very file we verified and hold open.
    fn attach_root_image(&mut self, image: &File) -> Result<(), LaunchError> {
        let (id, path) = (cstr(ROOT_DISK_ID)?, fd_path(image)?);
        // SAFETY: NUL-terminated strings that outlive the call.
        check("krun_add_disk", unsafe {
            krun::krun_add_disk(self.ctx, id.as_ptr(), path.as_ptr(), true)
        })
    }

    /// libkrun's init wants a virtio-fs root: one with no host directory
    /// behind it (NullFs: a NULL path), holding the mount points libkrun's
    /// init uses, our guest init, the run spec, and the workload call.
    fn attach_root(&mut self, spec: &RunSpec) -> Result<(), LaunchError> {
        let tag = cstr(ROOT_TAG)?;
        // SAFETY: a NUL-terminated tag that outlives the call; the NULL
        // path asks for libkrun's NullFs ("NULL path means NullFs").
        check("krun_add_virtiofs3(root)", unsafe {
            krun::krun_add_virtiofs3(self.ctx, tag.as_ptr(), std::ptr::null(), 0, true)
        })?;
        for dir in ["/dev", "/proc", "/sys", "/.smolvm"] {
            self.add_dir(dir)?;
        }
        self.add_file(
            "krun_fs_add_overlay_file(init)",
            crate::guest_abi::INIT,
            GUEST_INIT.to_vec(),
            0o555,
        )?;
        self.add_file(
            "krun_fs_add_overlay_file(spec)",
            crate::guest_abi::SPEC,
            spec.encode(),
            0o400,
        )?;
        // Arguments and environment travel in the spec file: an empty (not
        // NULL) envp, or libkrun would forward the host's environment.
        let exec = cstr(crate::guest_abi::INIT)?;
        let empty: [*const libc::c_char; 1] = [std::ptr::null()];
        // SAFETY: a NUL-terminated path and two NULL-terminated arrays that
        // outlive the call.
        check("krun_set_exec", unsafe {
            krun::krun_set_exec(self.ctx, exec.as_ptr(), empty.as_ptr(), empty.as_ptr())
        })
    }

    /// Without a network: no implicit vsock, so no TSI, so no network at
    /// all; a vsock device without TSI still carries the control channel
    /// (and the SSH agent's). With one: TSI, the published ports, and our
    /// resolver as the guest's.
    fn attach_network(&mut self, net: Option<&crate::net::Egress>) -> Result<(), LaunchError> {
        let Some(egress) = net else {
            check(
                "krun_disable_implicit_vsock",
                krun::krun_disable_implicit_vsock(self.ctx),
            )?;
            return check("krun_add_vsock", krun::krun_add_vsock(self.ctx, 0));
        };
        let map: Vec<CString> = egress
            .policy
            .publish
            .iter()
            .map(|p| cstr(format!("{}:{}", p.host, p.guest)))
            .collect::<Result<_, _>>()?;
        let mut ptrs: Vec<*const libc::c_char> = map.iter().map(|c| c.as_ptr()).collect();
        ptrs.push(std::ptr::null());
        // SAFETY: a NULL-terminated array of NUL-terminated strings, all
        // outliving the call.
        check("krun_set_port_map", unsafe {
            krun::krun_set_port_map(self.ctx, ptrs.as_ptr())
        })?;
        self.add_file(
            "krun_fs_add_overlay_file(resolv.conf)",
            crate::guest_abi::RESOLV_CONF,
            resolv_conf(),
            0o444,
        )
    }

    /// The person's shares, each a virtio-fs device serving the directory
    /// we opened (`/proc/self/fd/N/.`: the trailing `.` makes libkrun's
    /// `O_NOFOLLOW` open resolve the descriptor's directory, not the
    /// /proc link itself). Read-only ones are read-only here too: the host
    /// refuses writes even if the guest's read-only mount were undone.
    fn attach_shares(&mut self, shares: &[crate::settings::Share]) -> Result<(), LaunchError> {
        if !shares.is_empty() {
            raise_open_file_limit();
        }
        for (i, share) in shares.iter().enumerate() {
            let tag = cstr(crate::spec::volume_tag(i))?;
            let dir = cstr(format!("/proc/self/fd/{}/.", share.dir.as_raw_fd()))?;
            // SAFETY: NUL-terminated strings that outlive the call.
            check("krun_add_virtiofs3(volume)", unsafe {
                krun::krun_add_virtiofs3(
                    self.ctx,
                    tag.as_ptr(),
                    dir.as_ptr(),
                    0,
                    share.volume.read_only,
                )
            })?;
        }
        Ok(())
    }

    /// The host's SSH agent on its vsock port; the guest init starts its
    /// forwarder when `/.smolvm/ssh-agent` exists.
    fn attach_ssh_agent(&mut self, agent: Option<&Path>) -> Result<(), LaunchError> {
        use crate::guest_abi::{AGENT_PORT, SSH_AGENT};
        let Some(agent) = agent else { return Ok(()) };
        let sock = cstr(agent)?;
        // SAFETY: a NUL-terminated path that outlives the call.
        check("krun_add_vsock_port2", unsafe {
            krun::krun_add_vsock_port2(self.ctx, AGENT_PORT, sock.as_ptr(), false)
        })?;
        self.add_file(
            "krun_fs_add_overlay_file(ssh-agent)",
            SSH_AGENT,
            AGENT_PORT.to_string().into_bytes(),
            0o444,
        )
    }

    /// The supervisor's control socket, which the guest init connects to
    /// (guest-init/init.c, CONTROL_PORT).
    fn attach_control(&mut self, path: &Path) -> Result<(), LaunchError> {
        self.control = Some(path.to_path_buf());
        let sock = cstr(path)?;
        // SAFETY: a NUL-terminated path that outlives the call.
        check("krun_add_vsock_port2(control)", unsafe {
            krun::krun_add_vsock_port2(
                self.ctx,
                crate::guest_abi::CONTROL_PORT,
                sock.as_ptr(),
                false,
            )
        })
    }

    /// The copying kernel path: libkrun reads the ELF from our descriptor.
    fn set_kernel_file(&mut self, kernel: &File) -> Result<(), LaunchError> {
        let path = fd_path(kernel)?;
        // SAFETY: a NUL-terminated path that outlives the call; NULL
        // initramfs and command line ask for libkrun's defaults.
        check("krun_set_kernel", unsafe {
            krun::krun_set_kernel(
                self.ctx,
                path.as_ptr(),
                1,
                std::ptr::null(),
                std::ptr::null(),
            )
        })
    }

    /// Confines this process (crate::sandbox) and hands it to the VM: on
    /// success the process exits with the guest's status, so this returns
    /// only the reason it could not.
    pub fn enter(self, m: &Machine<'_>, trace: &crate::trace::Trace) -> LaunchError {
        if let Err(e) = self
            .sandbox_policy(m)
            .and_then(|policy| crate::sandbox::enter(policy, trace))
        {
            return e.into();
        }
        // The overlay data the context points into is `self.files`, alive
        // for the rest of the process (on success it never returns).
        let ret = krun::krun_start_enter(self.ctx);
        match check("krun_start_enter", ret) {
            Err(e) => e,
            Ok(()) => {
                LaunchError::Invalid("krun_start_enter returned without starting the VM".into())
            }
        }
    }

    /// What the VMM keeps once the guest runs: the files libkrun opens in
    /// `krun_start_enter` (through `/proc/self/fd`, so the rules are on the
    /// open files), `/dev/kvm`, the person's shares, and the two Unix
    /// sockets it may connect to (the control channel, the SSH agent).
    fn sandbox_policy(&self, m: &Machine<'_>) -> Result<Policy, SandboxError> {
        use crate::sandbox::{Access, Grant, NetGrant};
        let mut grants = vec![
            Grant::of_file(m.kernel, Access::ReadFile, "the kernel")?,
            Grant::of_file(m.root_image, Access::ReadFile, "the root filesystem image")?,
            Grant::open(Path::new(KVM_DEVICE), Access::ReadWriteFile, false)?,
        ];
        if let Some(f) = &m.disks.overlay {
            grants.push(Grant::of_file(
                f,
                Access::ReadWriteFile,
                "the overlay disk",
            )?);
        }
        if let Some(s) = &m.disks.storage {
            grants.push(Grant::of_file(
                &s.file,
                Access::ReadWriteFile,
                "the storage disk",
            )?);
        }
        for share in m.shares {
            let what = share.volume.host.display().to_string();
            let fd = share
                .dir
                .try_clone()
                .map_err(|source| SandboxError::Grant {
                    what: what.clone(),
                    source,
                })?;
            let access = if share.volume.read_only {
                Access::ReadDir
            } else {
                Access::ReadWriteDir
            };
            grants.push(Grant {
                fd,
                access,
                what: format!("the share {what}"),
                share: true,
            });
        }
        let unix_peers = self
            .control
            .iter()
            .cloned()
            .chain(m.ssh_agent.map(Path::to_path_buf))
            .collect();
        Ok(Policy {
            grants,
            // libkrun opens it in krun_start_enter; everything else it was
            // handed as /proc/self/fd/N or a Unix peer.
            by_name: vec![KVM_DEVICE.into()],
            net: m.net.clone().map(|egress| NetGrant { egress }),
            unix_peers,
            allow_without_landlock: m.allow_no_landlock,
        })
    }

    /// The writable disks as raw virtio-blk devices the guest init finds
    /// by serial, and the list of them it reads (`/.smolvm/disks`).
    fn attach_disks(&mut self, disks: &crate::disk::Disks) -> Result<(), LaunchError> {
        use crate::guest_abi::{DISKS, OVERLAY_SERIAL, STORAGE_SERIAL};
        let Some(manifest) = disks.guest_manifest() else {
            return Ok(());
        };
        // Flushes of the throw-away overlay need not reach the host's disk
        // (sync mode 0, "none"); the storage's do (2, "full").
        let attached = [
            (disks.overlay.as_ref(), OVERLAY_SERIAL, 0),
            (disks.storage.as_ref().map(|s| &s.file), STORAGE_SERIAL, 2),
        ];
        for (file, serial, sync_mode) in attached {
            let Some(file) = file else { continue };
            let (path, id) = (fd_path(file)?, cstr(serial)?);
            // SAFETY: NUL-terminated strings that outlive the call (libkrun
            // copies them); ctx is libkrun's id. Format 0 is raw.
            check("krun_add_disk3", unsafe {
                krun::krun_add_disk3(
                    self.ctx,
                    id.as_ptr(),
                    path.as_ptr(),
                    0,
                    false,
                    false,
                    sync_mode,
                )
            })?;
        }
        self.add_file("krun_fs_add_overlay_file(disks)", DISKS, manifest, 0o444)
    }
}

/// Whether the VM gets KVM's split interrupt controller (local APICs in the
/// kernel, the IOAPIC in libkrun, no PIT) instead of the full in-kernel one.
/// On x86_64 it is the default because of what the full one costs at every
/// start: libkrun turns the in-kernel PIT's tick reinjection off
/// (`KVM_REINJECT_CONTROL`), and the kernel's side of that waits for two
/// SRCU grace periods of the new VM, 15-20 ms of the 19 ms from exec to the
/// guest's first instruction measured here (scripts/bench-kvm-run.sh).
/// Nothing the guest needs is lost: its timer is the local APIC's (TSC
/// deadline), and virtio interrupts still reach it through irqfds and MSI
/// routes inside the kernel; only the guest's few IOAPIC register writes at
/// boot go to libkrun. `SMOLVM_FULL_IRQCHIP=1` restores the in-kernel one
/// (for comparing).
fn split_irqchip(full: bool) -> bool {
    cfg!(target_arch = "x86_64") && !full
}

//! Boots a prepared machine through libkrun (KVM on Linux).
//!
//! Platform seam: everything here is the VMM call sequence; what it needs is
//! a kernel file descriptor, the root filesystem image's descriptor, a tiny
//! fixed root directory and a run spec. A macOS/HVF backend would implement
//! the same `boot` with its own kernel hand-off.

use std::ffi::{CString, OsStr};
use std::fs::File;
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use thiserror::Error;

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
}

/// The disk the root filesystem image is attached as (`/dev/vda` in the guest).
const ROOT_DISK_ID: &str = "rootfs";

/// What the VM gets.
pub struct Machine<'a> {
    pub kernel: &'a File,
    /// The verified EROFS image, attached read-only; the guest init mounts it.
    pub root_image: &'a File,
    /// libkrun's init wants a virtio-fs root: a fixed directory holding only
    /// the mount points it needs (see `Cache::boot_dir`).
    pub root: &'a Path,
    pub cpus: u8,
    pub memory_mib: u32,
    /// Stop the machine after this long (crate::control: SIGTERM to the
    /// workload, forced down after a grace period, exit 124).
    pub timeout: Option<std::time::Duration>,
    /// `None`: no network device at all. `Some`: TSI networking under the
    /// egress supervisor (crate::net).
    pub net: Option<std::sync::Arc<crate::net::Egress>>,
    /// The host's SSH agent socket, when forwarding is on (crate::net::agent).
    pub ssh_agent: Option<&'a Path>,
    /// The overlay and storage disks (crate::disk), attached after the root.
    pub disks: &'a crate::disk::Disks,
    /// Host directories shared into the guest, in the order of the spec's
    /// `volume` records (the tags are [`crate::spec::volume_tag`]).
    pub volumes: &'a [crate::settings::Volume],
    pub spec: &'a RunSpec,
}

/// libkrun's virtio-fs server keeps one descriptor open per file or
/// directory the guest has looked up: a guest listing a share of a few
/// thousand files passes the usual soft limit of 1024 (EMFILE in the guest).
/// The hard limit is ours to take.
fn raise_open_file_limit() {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit read and write the one struct passed,
    // which lives for both calls.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 && lim.rlim_cur < lim.rlim_max {
            lim.rlim_cur = lim.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        }
    }
}

/// The guest's /etc/resolv.conf when the network is on (the guest init
/// copies it into the per-run layer): our resolver, reached through the
/// supervisor's rewrite of GUEST_DNS.
fn resolv_conf() -> &'static [u8] {
    let text = format!(
        "# written by smolvm: the host answers names the machine's network policy allows\nnameserver {}\noptions edns0 trust-ad\n",
        crate::net::GUEST_DNS
    );
    Box::leak(text.into_bytes().into_boxed_slice())
}

/// Checks that this host can run a guest, naming the cause when it cannot.
/// `SMOLVM_SKIP_KVM_CHECK=1` skips the paravirtual-KVM heuristic.
pub fn check_kvm() -> Result<(), LaunchError> {
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
    if Path::new("/sys/module/kvm_pvm").exists()
        && std::env::var_os("SMOLVM_SKIP_KVM_CHECK").is_none()
    {
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

/// Starts the guest's resolver and puts this process's network calls under
/// the egress supervisor. Fails closed: an error here means no boot.
fn enforce(egress: std::sync::Arc<crate::net::Egress>) -> Result<(), LaunchError> {
    #[cfg(target_os = "linux")]
    {
        let fail = |what: &str, e: std::io::Error| {
            LaunchError::Network(format!(
                "{what}: {e}; refusing to start with an unenforced network"
            ))
        };
        let resolver = crate::net::dns::start(egress.clone())
            .map_err(|e| fail("starting the DNS resolver", e))?;
        crate::net::supervisor::install(egress, resolver.addr, resolver.tids)
            .map_err(|e| fail("installing the network policy (seccomp)", e))
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = egress;
        Err(LaunchError::Network(
            "network policy enforcement is not implemented on this platform".into(),
        ))
    }
}

/// Configures libkrun for `m`. With `enter`, hands the process to the VM
/// (returns only on failure; on success the process exits with the guest's
/// status). Without, stops right before `krun_start_enter` (for benchmarks).
///
/// A first start's image still to be published (`publish`) is published by
/// the supervising parent while the child starts the VM from it.
pub fn boot(
    m: &Machine<'_>,
    enter: bool,
    publish: Option<crate::rootfs_image::Publish>,
) -> Result<(), LaunchError> {
    // Entering: from here on this is the VMM process, a child of the one
    // the user started, which passes signals on and restores the terminal.
    let control = if enter {
        let in_parent = move || {
            if let Some(Err(e)) = publish.map(crate::rootfs_image::Publish::finish) {
                eprintln!(
                    "warning: the root filesystem image was not saved in the cache ({}); the next start writes it again",
                    crate::exit::chain(&e)
                );
            }
        };
        Some(crate::control::split(m.timeout, in_parent).map_err(LaunchError::Control)?)
    } else {
        debug_assert!(publish.is_none(), "a dry run publishes the image itself");
        None
    };
    let kernel_path = cstr(format!("/proc/self/fd/{}", m.kernel.as_raw_fd()))?;
    let image_path = cstr(format!("/proc/self/fd/{}", m.root_image.as_raw_fd()))?;
    let disk_id = cstr(ROOT_DISK_ID)?;
    let root = cstr(m.root)?;
    let tag = cstr(ROOT_TAG)?;
    // libkrun keeps pointers to overlay file data for the VM's lifetime.
    let spec: &'static [u8] = Box::leak(m.spec.encode().into_boxed_slice());
    let exec = cstr("/.smolvm/init")?;
    let empty: [*const libc::c_char; 1] = [std::ptr::null()];

    // The kernel reaches the guest as a mapping of the verified file when it
    // can (crate::kernel_map); otherwise libkrun copies it (krun_set_kernel).
    // A failure to map is not an error: the copying path boots the same bytes.
    let kernel_mapped = crate::kernel_map::hand_off(m.kernel).unwrap_or(false);

    // SAFETY: every pointer passed below is a valid NUL-terminated string or
    // a NULL-terminated array that outlives the call; libkrun copies strings
    // it keeps, and the overlay data is 'static. ctx is the id libkrun
    // returned.
    unsafe {
        let ctx = krun::krun_create_ctx();
        crate::kernel_map::context_created();
        check("krun_create_ctx", ctx)?;
        let ctx = u32::try_from(ctx).expect("checked non-negative");
        check(
            "krun_set_vm_config",
            krun::krun_set_vm_config(ctx, m.cpus, m.memory_mib),
        )?;
        if split_irqchip() {
            check("krun_split_irqchip", krun::krun_split_irqchip(ctx, true))?;
        }
        // Read-only: the image is shared by every run; the guest init layers
        // a per-run tmpfs over it. libkrun opens the path itself: through
        // /proc/self/fd it is the very file we verified and hold open.
        check(
            "krun_add_disk",
            krun::krun_add_disk(ctx, disk_id.as_ptr(), image_path.as_ptr(), true),
        )?;
        check(
            "krun_add_virtiofs3",
            krun::krun_add_virtiofs3(ctx, tag.as_ptr(), root.as_ptr(), 0, true),
        )?;
        let dir = cstr("/.smolvm")?;
        check(
            "krun_fs_add_overlay_dir",
            krun::krun_fs_add_overlay_dir(ctx, tag.as_ptr(), dir.as_ptr(), 0o755),
        )?;
        attach_disks(ctx, &tag, m.disks)?;
        let init = cstr("/.smolvm/init")?;
        check(
            "krun_fs_add_overlay_file(init)",
            krun::krun_fs_add_overlay_file(
                ctx,
                tag.as_ptr(),
                init.as_ptr(),
                GUEST_INIT.as_ptr(),
                GUEST_INIT.len(),
                0o555,
                false,
            ),
        )?;
        let spec_path = cstr("/.smolvm/spec")?;
        check(
            "krun_fs_add_overlay_file(spec)",
            krun::krun_fs_add_overlay_file(
                ctx,
                tag.as_ptr(),
                spec_path.as_ptr(),
                spec.as_ptr(),
                spec.len(),
                0o400,
                false,
            ),
        )?;
        // Arguments and environment travel in the spec file: an empty (not
        // NULL) envp, or libkrun would forward the host's environment.
        check(
            "krun_set_exec",
            krun::krun_set_exec(ctx, exec.as_ptr(), empty.as_ptr(), empty.as_ptr()),
        )?;
        match &m.net {
            None => {
                // No implicit vsock means no TSI: the guest has no network
                // at all. A vsock device without TSI still carries the
                // control channel (and the SSH agent's).
                check(
                    "krun_disable_implicit_vsock",
                    krun::krun_disable_implicit_vsock(ctx),
                )?;
                check("krun_add_vsock", krun::krun_add_vsock(ctx, 0))?;
            }
            Some(egress) => {
                let map: Vec<CString> = egress
                    .policy
                    .publish
                    .iter()
                    .map(|p| cstr(format!("{}:{}", p.host, p.guest)))
                    .collect::<Result<_, _>>()?;
                let mut ptrs: Vec<*const libc::c_char> = map.iter().map(|c| c.as_ptr()).collect();
                ptrs.push(std::ptr::null());
                check(
                    "krun_set_port_map",
                    krun::krun_set_port_map(ctx, ptrs.as_ptr()),
                )?;
                let resolv = resolv_conf();
                let path = cstr("/.smolvm/resolv.conf")?;
                check(
                    "krun_fs_add_overlay_file(resolv.conf)",
                    krun::krun_fs_add_overlay_file(
                        ctx,
                        tag.as_ptr(),
                        path.as_ptr(),
                        resolv.as_ptr(),
                        resolv.len(),
                        0o444,
                        false,
                    ),
                )?;
            }
        }
        if !m.volumes.is_empty() {
            raise_open_file_limit();
        }
        for (i, v) in m.volumes.iter().enumerate() {
            let vtag = cstr(crate::spec::volume_tag(i))?;
            let host = cstr(&v.host)?;
            // Read-only here too: the host refuses writes even if the
            // guest's read-only mount were undone.
            check(
                "krun_add_virtiofs3(volume)",
                krun::krun_add_virtiofs3(ctx, vtag.as_ptr(), host.as_ptr(), 0, v.read_only),
            )?;
        }
        if let Some(agent) = m.ssh_agent {
            use crate::net::agent::VSOCK_PORT;
            let sock = cstr(agent)?;
            check(
                "krun_add_vsock_port2",
                krun::krun_add_vsock_port2(ctx, VSOCK_PORT, sock.as_ptr(), false),
            )?;
            // The guest init starts its forwarder when this file exists.
            let port: &'static [u8] =
                Box::leak(VSOCK_PORT.to_string().into_bytes().into_boxed_slice());
            let path = cstr("/.smolvm/ssh-agent")?;
            check(
                "krun_fs_add_overlay_file(ssh-agent)",
                krun::krun_fs_add_overlay_file(
                    ctx,
                    tag.as_ptr(),
                    path.as_ptr(),
                    port.as_ptr(),
                    port.len(),
                    0o444,
                    false,
                ),
            )?;
        }
        if let Some(sock) = &control {
            // The guest init connects here (guest-init/init.c, CONTROL_PORT).
            let sock = cstr(sock)?;
            check(
                "krun_add_vsock_port2(control)",
                krun::krun_add_vsock_port2(ctx, crate::control::VSOCK_PORT, sock.as_ptr(), false),
            )?;
        }
        if !kernel_mapped {
            check(
                "krun_set_kernel",
                krun::krun_set_kernel(
                    ctx,
                    kernel_path.as_ptr(),
                    1,
                    std::ptr::null(),
                    std::ptr::null(),
                ),
            )?;
        }
        if !enter {
            return Ok(());
        }
        if let Some(egress) = &m.net {
            enforce(egress.clone())?;
        }
        check("krun_start_enter", krun::krun_start_enter(ctx))?;
    }
    Err(LaunchError::Invalid(
        "krun_start_enter returned without starting the VM".into(),
    ))
}

/// Attaches the writable disks as raw virtio-blk devices the guest init
/// finds by serial, and tells it which there are (`/.smolvm/disks`).
fn attach_disks(ctx: u32, tag: &CString, disks: &crate::disk::Disks) -> Result<(), LaunchError> {
    use crate::disk::{OVERLAY_SERIAL, STORAGE_SERIAL};
    let Some(manifest) = disks.guest_manifest() else {
        return Ok(());
    };
    // libkrun keeps pointers to overlay file data for the VM's lifetime.
    let manifest: &'static [u8] = Box::leak(manifest.into_boxed_slice());
    // Flushes of the throw-away overlay need not reach the host's disk
    // (sync mode 0, "none"); the storage's do (2, "full").
    let attached = [
        (disks.overlay.as_ref(), OVERLAY_SERIAL, 0),
        (disks.storage.as_ref().map(|s| &s.file), STORAGE_SERIAL, 2),
    ];
    for (file, serial, sync_mode) in attached {
        let Some(file) = file else { continue };
        let path = cstr(format!("/proc/self/fd/{}", file.as_raw_fd()))?;
        let id = cstr(serial)?;
        // SAFETY: NUL-terminated strings that outlive the call (libkrun
        // copies them); ctx is libkrun's id. Format 0 is raw.
        let ret = unsafe {
            krun::krun_add_disk3(ctx, id.as_ptr(), path.as_ptr(), 0, false, false, sync_mode)
        };
        check("krun_add_disk3", ret)?;
    }
    let path = cstr("/.smolvm/disks")?;
    // SAFETY: as above; the file data is 'static.
    let ret = unsafe {
        krun::krun_fs_add_overlay_file(
            ctx,
            tag.as_ptr(),
            path.as_ptr(),
            manifest.as_ptr(),
            manifest.len(),
            0o444,
            false,
        )
    };
    check("krun_fs_add_overlay_file(disks)", ret)
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
fn split_irqchip() -> bool {
    cfg!(target_arch = "x86_64") && std::env::var_os("SMOLVM_FULL_IRQCHIP").is_none_or(|v| v != "1")
}

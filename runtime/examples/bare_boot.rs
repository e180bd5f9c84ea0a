//! The baseline for scripts/bench-boot.sh: a plain libkrun boot with nothing
//! of smolvm around it (no artifact, no signature, no cache, no guest init of
//! ours), so the packed executable's boot time can be compared with the
//! least libkrun needs to run the same kernel, root and command.
//!
//! ```text
//! bare_boot [--mem MIB] [--cpus N] KERNEL_ELF ROOT_DIR -- CMD [ARG...]
//! ```
//!
//! KERNEL_ELF is an ELF kernel (e.g. the decompressed one a packed executable
//! caches as `$SMOLVM_CACHE_DIR/kernel/<sha256>.elf`), ROOT_DIR the guest
//! root (e.g. `$SMOLVM_CACHE_DIR/rootfs/<sha256>/`). The call sequence is
//! krun_create_ctx, krun_set_vm_config, krun_set_root, krun_set_kernel (ELF,
//! default command line), krun_disable_implicit_vsock, krun_set_exec (empty
//! envp) and krun_start_enter, which on success does not return: the process
//! exits with the workload's status.
//!
//! With `--sandbox`, the process enters smolvm's VMM sandbox
//! (runtime::sandbox: Landlock on the kernel file, the root directory and
//! /dev/kvm; no capabilities; the socket supervisor; the seccomp
//! allow-list) right before krun_start_enter, as the packed executable's VMM
//! does: a way to see libkrun start under it, and (under `strace -f`) which
//! of its calls the sandbox refuses (`= -1 EPERM`).
//!
//! Build: `cargo build --release -p smolvm-runtime --example bare_boot`
//! (needs the default `vmm` feature; without it this prints why and exits 2).

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::process::ExitCode;

const USAGE: &str =
    "usage: bare_boot [--mem MIB] [--cpus N] [--sandbox] KERNEL_ELF ROOT_DIR -- CMD [ARG...]";

#[cfg_attr(not(feature = "vmm"), allow(dead_code))]
struct Args {
    cpus: u8,
    mem_mib: u32,
    sandbox: bool,
    kernel: CString,
    root: CString,
    exec: CString,
    argv: Vec<CString>,
}

fn cstring(a: &std::ffi::OsStr) -> Result<CString, String> {
    CString::new(a.as_bytes()).map_err(|_| format!("argument {a:?} contains a NUL byte"))
}

fn parse() -> Result<Args, String> {
    let mut it = std::env::args_os().skip(1);
    let (mut cpus, mut mem_mib, mut sandbox) = (1u8, 256u32, false);
    let mut positional = Vec::new();
    while let Some(a) = it.next() {
        match a.as_bytes() {
            b"--" => break,
            b"-h" | b"--help" => return Err(String::new()),
            b"--sandbox" => sandbox = true,
            b"--mem" | b"--cpus" => {
                let v = it
                    .next()
                    .and_then(|v| v.to_str().map(str::to_owned))
                    .ok_or_else(|| format!("{} needs a number", a.to_string_lossy()))?;
                if a.as_bytes() == b"--mem" {
                    mem_mib = v
                        .parse()
                        .map_err(|_| format!("--mem {v:?}: not a number"))?;
                } else {
                    cpus = v
                        .parse()
                        .map_err(|_| format!("--cpus {v:?}: not a number"))?;
                }
            }
            _ => positional.push(a),
        }
    }
    let cmd: Vec<_> = it.collect();
    let [kernel, root] = <[_; 2]>::try_from(positional)
        .map_err(|_| "expected KERNEL_ELF and ROOT_DIR before --".to_string())?;
    let (exec, rest) = cmd.split_first().ok_or("expected a command after --")?;
    Ok(Args {
        cpus,
        mem_mib,
        sandbox,
        kernel: cstring(&kernel)?,
        root: cstring(&root)?,
        exec: cstring(exec)?,
        argv: rest.iter().map(|a| cstring(a)).collect::<Result<_, _>>()?,
    })
}

#[cfg(feature = "vmm")]
fn boot(a: &Args) -> Result<(), String> {
    fn check(call: &str, ret: i32) -> Result<(), String> {
        if ret < 0 {
            Err(format!(
                "{call} failed: {}",
                std::io::Error::from_raw_os_error(-ret)
            ))
        } else {
            Ok(())
        }
    }
    // argv without argv[0], NULL-terminated; envp empty (NULL would pass our
    // environment into the guest).
    let mut argv: Vec<*const libc::c_char> = a.argv.iter().map(|s| s.as_ptr()).collect();
    argv.push(std::ptr::null());
    let envp: [*const libc::c_char; 1] = [std::ptr::null()];
    // SAFETY: every pointer is a NUL-terminated string or a NULL-terminated
    // array owned by `a`, `argv` or `envp`, all alive across the calls (and
    // krun_start_enter does not return on success); ctx is the id libkrun
    // returned.
    unsafe {
        let ctx = krun::krun_create_ctx();
        check("krun_create_ctx", ctx)?;
        let ctx = u32::try_from(ctx).expect("checked non-negative");
        check(
            "krun_set_vm_config",
            krun::krun_set_vm_config(ctx, a.cpus, a.mem_mib),
        )?;
        check("krun_set_root", krun::krun_set_root(ctx, a.root.as_ptr()))?;
        check(
            "krun_set_kernel",
            krun::krun_set_kernel(
                ctx,
                a.kernel.as_ptr(),
                1,
                std::ptr::null(),
                std::ptr::null(),
            ),
        )?;
        check(
            "krun_disable_implicit_vsock",
            krun::krun_disable_implicit_vsock(ctx),
        )?;
        check(
            "krun_set_exec",
            krun::krun_set_exec(ctx, a.exec.as_ptr(), argv.as_ptr(), envp.as_ptr()),
        )?;
        if a.sandbox {
            enter_sandbox(a)?;
        }
        check("krun_start_enter", krun::krun_start_enter(ctx))?;
    }
    Err("krun_start_enter returned without starting the VM".into())
}

/// What libkrun opens once it starts: the kernel, the root it serves, KVM.
#[cfg(feature = "vmm")]
fn enter_sandbox(a: &Args) -> Result<(), String> {
    use smolvm_runtime::sandbox::{self, Access, Grant, Policy};
    use std::ffi::OsStr;
    use std::path::Path;
    let path = |c: &CString| Path::new(OsStr::from_bytes(c.as_bytes())).to_path_buf();
    let grants = [
        (path(&a.kernel), Access::ReadFile, false),
        (path(&a.root), Access::ReadWriteDir, true),
        ("/dev/kvm".into(), Access::ReadWriteFile, false),
    ]
    .into_iter()
    .map(|(p, access, share)| Grant::open(&p, access, share))
    .collect::<Result<Vec<_>, _>>()
    .map_err(|e| smolvm_runtime::exit::chain(&e).to_string())?;
    sandbox::enter(
        Policy {
            grants,
            // libkrun opens all three by name here (no descriptors).
            by_name: vec![path(&a.kernel), path(&a.root), "/dev/kvm".into()],
            net: None,
            unix_peers: Vec::new(),
            allow_without_landlock: false,
        },
        &smolvm_runtime::trace::Trace::new(),
    )
    .map(drop)
    .map_err(|e| smolvm_runtime::exit::chain(&e).to_string())
}

#[cfg(not(feature = "vmm"))]
fn boot(_: &Args) -> Result<(), String> {
    Err("built without the `vmm` feature: no libkrun to boot with".into())
}

fn main() -> ExitCode {
    let args = match parse() {
        Ok(a) => a,
        Err(e) if e.is_empty() => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("bare_boot: {e}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    match boot(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bare_boot: {e}");
            ExitCode::from(2)
        }
    }
}

//! The stub: the executable every packed smolmachine starts as.
//!
//! It finds the payload appended to its own file, verifies it (fail closed),
//! and boots the machine; the guest workload's stdio and exit status become
//! this process's. Arguments starting with `--smolvm-` are the stub's own;
//! all others go to the workload.
//!
//! Exit codes: the guest's own; 1 if the artifact fails verification; 2 for
//! I/O and environment errors (no KVM, unreadable file, bad --smolvm- flag).

use std::ffi::OsString;
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;
use std::process::ExitCode;

use smolvm_format::{Artifact, FileSource};
use smolvm_runtime::{check_signature, inspect, run_artifact, RunOptions, Trace};
use smolvm_signing::PublicKey;

const HELP: &str = "\
This program is a smolmachine: a Linux workload packed with its own kernel
and root filesystem. Running it boots the workload in a hardware-isolated
microVM (KVM); its output, input and exit code are this program's.

Arguments are passed to the workload, except these, which the runtime keeps:
  --smolvm-help          this text
  --smolvm-info          show what is inside: name, version, signer, sections, config
  --smolvm-key=PUB       refuse to run unless signed by this public key (repeatable)
  --smolvm-dry-run       verify and prepare everything, but do not start the VM
  --smolvm-publish=[ADDR:]HOST:GUEST
                         publish guest TCP port GUEST on the host's port HOST,
                         bound to ADDR (default 127.0.0.1); needs net = true
                         (repeatable; adds to the ports the machine declares)

Environment:
  SMOLVM_TRUSTED_KEYS=PUB[:PUB...]  like --smolvm-key
  SMOLVM_CACHE_DIR=DIR              where kernels and root filesystems are cached
                                    (default $XDG_CACHE_HOME/smolvm or ~/.cache/smolvm)
  SMOLVM_TRACE=1                    print start-up phase timings to stderr
";

fn program_name() -> String {
    std::env::args_os()
        .next()
        .map(PathBuf::from)
        .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .unwrap_or_else(|| "smolmachine".into())
}

fn fail(code: u8, msg: impl std::fmt::Display) -> ExitCode {
    eprintln!("{}: {msg}", program_name());
    ExitCode::from(code)
}

fn main() -> ExitCode {
    let trace = Trace::new();
    let mut args: Vec<OsString> = Vec::new();
    let mut publish: Vec<String> = Vec::new();
    let mut key_files: Vec<PathBuf> = std::env::var_os("SMOLVM_TRUSTED_KEYS")
        .map(|v| {
            std::env::split_paths(&v)
                .filter(|p| !p.as_os_str().is_empty())
                .collect()
        })
        .unwrap_or_default();
    let (mut info, mut dry_run) = (
        false,
        std::env::var_os("SMOLVM_DRY_RUN").is_some_and(|v| v == "1"),
    );
    for a in std::env::args_os().skip(1) {
        let bytes = a.as_bytes();
        if !bytes.starts_with(b"--smolvm-") {
            args.push(a);
            continue;
        }
        match bytes {
            b"--smolvm-help" => {
                print!("{HELP}");
                return ExitCode::SUCCESS;
            }
            b"--smolvm-info" => info = true,
            b"--smolvm-dry-run" => dry_run = true,
            _ if bytes.starts_with(b"--smolvm-publish=") => {
                match std::str::from_utf8(&bytes[17..]) {
                    Ok(p) => publish.push(p.to_string()),
                    Err(_) => return fail(2, format_args!("{a:?}: not UTF-8")),
                }
            }
            _ if bytes.starts_with(b"--smolvm-key=") => {
                key_files.push(PathBuf::from(std::ffi::OsStr::from_bytes(&bytes[13..])));
            }
            _ => {
                return fail(
                    2,
                    format_args!("unknown runtime option {:?} (see --smolvm-help)", a),
                )
            }
        }
    }
    let trusted = match key_files
        .iter()
        .map(|k| PublicKey::read_file(k))
        .collect::<Result<Vec<_>, _>>()
    {
        Ok(t) => t,
        Err(e) => return fail(2, e),
    };
    // Our own file, opened once: everything below reads through this
    // descriptor, so a rename or replace of the path cannot swap what we verify.
    let exe = match std::fs::File::open("/proc/self/exe") {
        Ok(f) => f,
        Err(e) => return fail(2, format_args!("cannot open /proc/self/exe: {e}")),
    };
    trace.mark("stub started");
    if info {
        let src = match FileSource::new(exe) {
            Ok(s) => s,
            Err(e) => return fail(2, e),
        };
        return match Artifact::parse(&src) {
            Ok(art) => {
                let sig = check_signature(&art, &trusted).map_err(|e| e.to_string());
                print!("{}", inspect::render_human(&art, &sig));
                ExitCode::from(if sig.is_ok() { 0 } else { 1 })
            }
            Err(e) => fail(1, e),
        };
    }
    match run_artifact(
        exe,
        &RunOptions {
            trusted,
            args,
            dry_run,
            publish,
        },
        &trace,
    ) {
        Ok(()) => {
            trace.mark("dry run done");
            ExitCode::SUCCESS
        }
        Err(e) => fail(e.exit_code(), e),
    }
}

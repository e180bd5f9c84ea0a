//! The stub: the executable every packed smolmachine starts as.
//!
//! It finds the payload appended to its own file, verifies it (fail closed),
//! and boots the machine; the guest workload's stdio and exit status become
//! this process's. Leading arguments starting with `--smolvm-` are the
//! stub's own (runtime::flags); the first other argument, or `--`, ends them.
//!
//! Exit codes (`smolvm_runtime::exit`): the guest's own; 1 if the artifact
//! fails verification or validation; 2 for usage, I/O and environment errors
//! (no KVM, unreadable file or key, bad --smolvm- flag).

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};

use smolvm_format::{Artifact, FileSource, SectionKind};
use smolvm_runtime::consent;
use smolvm_runtime::double_click::{self, Start};
use smolvm_runtime::exit::{self, USAGE_OR_IO};
use smolvm_runtime::flags::{self, Command, StubFlags};
use smolvm_runtime::host_env::HostEnv;
use smolvm_runtime::install;
use smolvm_runtime::known_signers::{default_known_signers_file, KnownSigners};
use smolvm_runtime::trust::{default_key_dirs, default_state_file, env_key_files, resolve_trusted};
use smolvm_runtime::{check_signature, inspect, run_artifact, RunOptions, Trace};

const HELP: &str = "\
This program is a smolmachine: a Linux workload packed with its own kernel
and root filesystem. Running it boots the workload in a hardware-isolated
microVM (KVM); its output, input and exit code are this program's.

Arguments are passed to the workload, except these, which the runtime keeps
when they come first (the first other argument ends them; `--` ends them and
is dropped, so `./tool -- --smolvm-x` gives the workload `--smolvm-x`):
  --smolvm-help          this text
  --smolvm-info          show what is inside: name, version, signer, sections, config
  --smolvm-key=PUB       refuse to run unless signed by this public key (repeatable;
                         replaces the trusted-keys directories)
  --smolvm-min-version=V refuse to run a version older than V
  --smolvm-dry-run       verify and prepare everything, but do not start the VM
  --smolvm-install       verify, then copy this program to ~/.local/bin and add it
                         to your desktop's menu ($XDG_DATA_HOME/applications/
                         smolvm-NAME.desktop, opened in a terminal); refused when
                         another program on your PATH has its name
  --smolvm-uninstall     remove what --smolvm-install put in place
  --smolvm-publish=[ADDR:]HOST:GUEST
                         publish guest TCP port GUEST on the host's port HOST,
                         bound to ADDR (default 127.0.0.1); needs net = true
                         (repeatable; adds to the ports the machine declares)
  --smolvm-ssh-agent     let the workload use your SSH agent ($SSH_AUTH_SOCK), if
                         the machine asks for it; keys never enter the guest
  --smolvm-share-cwd     share your current directory with a machine that asks for
                         it (packed with share_cwd = true), without being asked
  --smolvm-reset-storage start the machine's persistent storage over, empty (the
                         guest-only volumes it keeps, one disk per signer and
                         machine name, in $XDG_DATA_HOME/smolvm/storage/KEYID,
                         default ~/.local/share/smolvm/storage/KEYID)
  --smolvm-allow-no-landlock
                         serve your shares (volumes, the current directory) even on a
                         kernel without Landlock (Linux < 5.13 or Landlock disabled),
                         where the VMM could then reach every file you can; without
                         shares a machine starts there anyway
  --smolvm-timeout=SECS  stop the machine after SECS seconds (2.5 is fine): the
                         workload gets SIGTERM, is forced down 3 s later if still
                         running, and this program exits with 124

Signals: SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGUSR1 and SIGUSR2 sent to this
program reach the workload's process group, and this program exits with the
workload's code; a second SIGINT forces the machine down (exit 130). Run in a
terminal, the workload gets one (its size, job control; Ctrl-C interrupts its
foreground job), and your terminal's settings come back however it ends.

Run-time settings (each wins over the machine's own; repeatable ones add up):
  --smolvm-volume=HOST:GUEST[:ro]
                         share the existing host directory HOST at GUEST in the
                         guest (read-only with :ro); files the workload creates
                         there belong to you on the host (repeatable)
  --smolvm-env=KEY=VALUE set a variable for the workload (repeatable)
  --smolvm-cpus=N        vCPUs, 1 up to this host's CPUs
  --smolvm-memory=MIB    guest memory in MiB, 64 up to this host's memory
  --smolvm-workdir=DIR   the workload's working directory (absolute guest path)
Precedence: these flags > the machine's Smolfile > its image > defaults;
--smolvm-info shows each value and where it came from.

Your current directory: a machine packed with share_cwd = true asks for it
(at /cwd, read-write, where the workload starts, so ./tool notes.txt names
your file); nothing else of this host is visible to it. It is shared only
with --smolvm-share-cwd or SMOLVM_SHARE_CWD=1, or when you answer the
question asked on your terminal naming the directory, the tool and its
signer: [y]es once, [a]lways for this directory (remembered per signer, name
and directory in $XDG_STATE_HOME/smolvm/consent.json; never for your home
directory or /), [N]o. With no terminal and no flag it does not start (exit 2).

Trust: without --smolvm-key or SMOLVM_TRUSTED_KEYS, the *.pub keys in
$XDG_CONFIG_HOME/smolvm/trusted-keys (default ~/.config/smolvm/trusted-keys)
and /etc/smolvm/trusted-keys are required when either holds one; with no
trusted key anywhere, the key the program carries is checked, and the first
start of each name remembers that key (in $XDG_STATE_HOME/smolvm/
known-signers.json): a program of the same name signed by another key is
refused (exit 1). To accept the new signer for one run, give its public key
(--smolvm-key=NEW.pub); for good, run `smolvm pack trust forget NAME`.
After a start with a trusted key, older versions of the same name and signer
are refused (remembered in $XDG_STATE_HOME/smolvm/min-versions.json, default
~/.local/state/smolvm; remove it to allow them again).

Double-click: started with no arguments, no terminal on stdin, stdout or
stderr, and a desktop session (WAYLAND_DISPLAY or DISPLAY), as from a file
manager, this program reopens itself in your terminal emulator ($TERMINAL,
x-terminal-emulator, xdg-terminal-exec, then gnome-terminal, konsole,
xfce4-terminal, mate-terminal, kitty, alacritty, foot, wezterm, terminator,
urxvt, st, xterm); the window shows the exit code and closes on Enter. With
no terminal emulator, it says so (and its own errors) with notify-send,
zenity or kdialog, and starts without one.

Environment:
  SMOLVM_TRUSTED_KEYS=PUB[:PUB...]  like --smolvm-key
  SMOLVM_CACHE_DIR=DIR              where kernels and root filesystems are cached
                                    (default $XDG_CACHE_HOME/smolvm or ~/.cache/smolvm)
  SMOLVM_TRACE=1                    print start-up phase timings to stderr
  SMOLVM_SSH_AGENT=1                like --smolvm-ssh-agent
  SMOLVM_SHARE_CWD=1                like --smolvm-share-cwd
  SMOLVM_NO_TERMINAL=1              never reopen in a terminal window (see Double-click)
  SMOLVM_NET_LOG=1                  print each connection the network policy refuses
                                    (2: also each one it lets through)
";

fn program_name() -> String {
    std::env::args_os()
        .next()
        .map(PathBuf::from)
        .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .unwrap_or_else(|| "smolmachine".into())
}

/// Set when a double-click found no terminal emulator: nobody reads stderr.
static NOTIFY_ERRORS: AtomicBool = AtomicBool::new(false);

fn fail(code: u8, msg: impl std::fmt::Display) -> ExitCode {
    let name = program_name();
    if NOTIFY_ERRORS.load(Ordering::Relaxed) {
        double_click::notify(&name, &format!("{name}: {msg}"));
    } else {
        eprintln!("{name}: {msg}");
    }
    ExitCode::from(code)
}

/// One line with the whole chain, and the code the error means.
fn fail_with(e: &(dyn std::error::Error + 'static)) -> ExitCode {
    fail(smolvm_runtime::exit_code(e), exit::chain(e))
}

fn main() -> ExitCode {
    let trace = Trace::new();
    // Double-clicked in a file manager: reopen in a terminal window
    // (runtime::double_click), before anything can fail unseen.
    match double_click::on_start(&program_name()) {
        Start::Here => {}
        Start::HereNotifyingErrors => NOTIFY_ERRORS.store(true, Ordering::Relaxed),
        Start::Reopened(code) => return ExitCode::from(code),
    }
    // The edge: arguments and environment are read here, once.
    let command = match flags::parse(std::env::args_os().skip(1)) {
        Ok(c) => c,
        Err(e) => return fail_with(&e),
    };
    let (mode, mut f) = match command {
        Command::Help => {
            print!("{HELP}");
            return ExitCode::SUCCESS;
        }
        Command::Uninstall => return uninstall(),
        Command::Info(f) => (Mode::Info, f),
        Command::Install(f) => (Mode::Install, f),
        Command::Run(f) => (Mode::Run, f),
    };
    f.dry_run |= std::env::var_os("SMOLVM_DRY_RUN").is_some_and(|v| v == "1");
    let mut key_files = env_key_files();
    key_files.append(&mut f.keys);
    let trusted = match resolve_trusted(&key_files, &default_key_dirs()) {
        Ok(t) => t.keys,
        Err(e) => return fail_with(&e),
    };
    // Our own file, opened once: everything below reads through this
    // descriptor, so a rename or replace of the path cannot swap what we verify.
    let exe = match std::fs::File::open("/proc/self/exe") {
        Ok(f) => f,
        Err(e) => return fail(USAGE_OR_IO, format_args!("cannot open /proc/self/exe: {e}")),
    };
    trace.mark("stub started");
    match mode {
        Mode::Info => return show_info(exe, &trusted, &f),
        Mode::Install => return install(exe, &trusted),
        Mode::Run => {}
    }
    let opts = RunOptions {
        trusted,
        args: f.args,
        dry_run: f.dry_run,
        timeout: f.timeout,
        publish: f.publish,
        ssh_agent: f.ssh_agent,
        share_cwd: f.share_cwd,
        consent_file: consent::default_consent_file(),
        known_signers: default_known_signers_file(),
        ask_consent: consent::ask_on_tty,
        min_version: f.min_version,
        version_state: default_state_file(),
        reset_storage: f.reset_storage,
        allow_no_landlock: f.allow_no_landlock,
        settings: f.settings,
        host: HostEnv::read(),
    };
    match run_artifact(exe, &opts, &trace) {
        Ok(()) => {
            trace.mark("dry run done");
            ExitCode::SUCCESS
        }
        Err(e) => fail_with(&e),
    }
}

/// What a start does, once its flags are read.
enum Mode {
    Run,
    Info,
    Install,
}

/// `--smolvm-install`: verified like a start (every byte, the trusted keys
/// if any), then copied to ~/.local/bin with a menu entry (runtime::install).
fn install(exe: std::fs::File, trusted: &[smolvm_signing::PublicKey]) -> ExitCode {
    let mut copy_from = match exe.try_clone() {
        Ok(f) => f,
        Err(e) => return fail(USAGE_OR_IO, format_args!("reading /proc/self/exe: {e}")),
    };
    let src = match FileSource::new(exe) {
        Ok(s) => s,
        Err(e) => return fail(USAGE_OR_IO, format_args!("reading /proc/self/exe: {e}")),
    };
    let opts = smolvm_runtime::VerifyOptions {
        trusted,
        require_signature: false,
        integrity: true,
    };
    let (art, state) = match smolvm_runtime::verify_artifact(&src, &opts) {
        Ok(v) => v,
        Err(e) => return fail_with(&e),
    };
    // Stored as is (format version 5), at most 512 KiB; read again and
    // hashed again here, so that a file changed since the check above
    // cannot put other bytes in the person's icon theme.
    let icon = match art.manifest.section(SectionKind::Icon) {
        Some(entry) => match art.section_bytes(entry) {
            Ok(png) if smolvm_format::Sha256Digest::of(&png) == entry.sha256 => Some(png),
            Ok(_) => {
                return fail(
                    exit::INVALID,
                    format_args!(
                        "the icon section changed after it was verified; was the file replaced?"
                    ),
                )
            }
            Err(e) => return fail_with(&e),
        },
        None => None,
    };
    let info = install::EntryInfo {
        name: &art.manifest.name,
        version: &art.manifest.version,
        signer: state.key_id().map(|k| k.to_string()),
        icon: icon.as_deref(),
    };
    let places = match install::Places::from_env() {
        Ok(p) => p,
        Err(e) => return fail_with(&e),
    };
    let path = std::env::var_os("PATH");
    match install::install(&mut copy_from, &info, &places, path.as_deref()) {
        Ok(done) => {
            println!(
                "{} {} {} as {}\nmenu entry: {}{}",
                if done.replaced {
                    "updated"
                } else {
                    "installed"
                },
                info.name,
                info.version,
                done.program.display(),
                done.entry.display(),
                done.icon
                    .map(|i| format!("\nicon: {}", i.display()))
                    .unwrap_or_default()
            );
            let on_path = path.is_some_and(|p| std::env::split_paths(&p).any(|d| d == places.bin));
            if !on_path {
                println!(
                    "note: {} is not on your PATH; add it to run {} by name",
                    places.bin.display(),
                    info.name
                );
            }
            ExitCode::SUCCESS
        }
        Err(e) => fail_with(&e),
    }
}

/// `--smolvm-uninstall`: removes the copy and the menu entry of this
/// program's name.
fn uninstall() -> ExitCode {
    let exe = match std::fs::File::open("/proc/self/exe").and_then(FileSource::new) {
        Ok(s) => s,
        Err(e) => return fail(USAGE_OR_IO, format_args!("reading /proc/self/exe: {e}")),
    };
    let art = match Artifact::parse(&exe) {
        Ok(a) => a,
        Err(e) => return fail_with(&e),
    };
    let name = &art.manifest.name;
    let removed = install::Places::from_env().and_then(|p| install::uninstall(name, &p));
    match removed {
        Ok(paths) if paths.is_empty() => {
            println!("{name} was not installed");
            ExitCode::SUCCESS
        }
        Ok(paths) => {
            for p in paths {
                println!("removed {}", p.display());
            }
            ExitCode::SUCCESS
        }
        Err(e) => fail_with(&e),
    }
}

/// `--smolvm-info`: what is inside, with the run-time settings applied.
fn show_info(exe: std::fs::File, trusted: &[smolvm_signing::PublicKey], f: &StubFlags) -> ExitCode {
    let src = match FileSource::new(exe) {
        Ok(s) => s,
        Err(e) => return fail(USAGE_OR_IO, format_args!("reading /proc/self/exe: {e}")),
    };
    let art = match Artifact::parse(&src) {
        Ok(a) => a,
        Err(e) => return fail_with(&e),
    };
    let sig = check_signature(&art, trusted);
    let shown = sig
        .as_ref()
        .cloned()
        .map_err(|e| exit::chain(e).to_string());
    let effective = f.settings.apply(&art.manifest.config);
    let pinned = match pinned_signer(&art.manifest.name) {
        Ok(p) => p,
        Err(e) => return fail_with(&e),
    };
    print!(
        "{}",
        inspect::render_human_with(&art, &shown, &effective, &f.settings.volumes, pinned)
    );
    match sig {
        Ok(_) => ExitCode::SUCCESS,
        Err(e) => ExitCode::from(smolvm_runtime::exit_code(&e)),
    }
}

/// The first signer remembered here for `name` (trust on first use).
fn pinned_signer(
    name: &str,
) -> Result<Option<smolvm_runtime::known_signers::Pin>, smolvm_runtime::state_file::StateError> {
    let Some(path) = default_known_signers_file() else {
        return Ok(None);
    };
    Ok(KnownSigners::load(&path)?.pinned(name))
}

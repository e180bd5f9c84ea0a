//! What the start path takes from the process environment, read once at the
//! edge (the stub's `main`, `smolvm pack run`) into one value, so that
//! nothing below reads `std::env` on its own. (Per-user directories have
//! their own home, crate::dirs.)

use std::ffi::OsString;
use std::path::PathBuf;

/// The environment of a start.
#[derive(Clone, Debug, Default)]
pub struct HostEnv {
    /// The current directory (a machine packed with `share_cwd` shares it).
    pub cwd: Option<PathBuf>,
    /// `TERM`: the guest gets it unless the machine sets its own.
    pub term: Option<OsString>,
    /// `SSH_AUTH_SOCK`: the agent to forward when the machine asks and the
    /// person allows.
    pub ssh_auth_sock: Option<OsString>,
    /// `SMOLVM_SSH_AGENT=1`: like `--smolvm-ssh-agent`.
    pub ssh_agent: bool,
    /// `SMOLVM_SHARE_CWD=1`: like `--smolvm-share-cwd` (crate::consent).
    pub share_cwd: bool,
    /// Stdin and stderr are terminals: the person can be asked
    /// (crate::consent) on `/dev/tty`.
    pub terminal: bool,
    /// `HOME`, when absolute: consent to share it is never remembered.
    pub home: Option<PathBuf>,
    /// `SMOLVM_NET_LOG`: 1 prints each connection the policy refuses, 2 also
    /// each one it lets through.
    pub net_log: u8,
    /// `SMOLVM_KERNEL_COPY=1`: boot through libkrun's copying kernel path
    /// (for comparing; crate::kernel_map).
    pub kernel_copy: bool,
    /// `SMOLVM_FULL_IRQCHIP=1`: KVM's full in-kernel irqchip (for comparing;
    /// crate::launch).
    pub full_irqchip: bool,
    /// `SMOLVM_SKIP_KVM_CHECK=1`: try a paravirtual KVM anyway.
    pub skip_kvm_check: bool,
    /// Behave as on a kernel without seccomp user notification (the
    /// networked-machine refusal is tested with it). Never read from the
    /// environment here: only `smolvm pack run` sets it, from
    /// `SMOLVM_TEST_NO_SECCOMP_NOTIFY=1`, so the stub ships no test hook.
    pub simulate_no_seccomp_notify: bool,
}

/// Whether `var` is set to `1`.
pub fn is_one(var: &str) -> bool {
    std::env::var_os(var).is_some_and(|v| v == "1")
}

impl HostEnv {
    /// Reads it from this process.
    pub fn read() -> HostEnv {
        HostEnv {
            cwd: std::env::current_dir().ok(),
            term: std::env::var_os("TERM"),
            ssh_auth_sock: std::env::var_os("SSH_AUTH_SOCK").filter(|s| !s.is_empty()),
            ssh_agent: is_one("SMOLVM_SSH_AGENT"),
            share_cwd: is_one("SMOLVM_SHARE_CWD"),
            terminal: {
                use std::io::IsTerminal;
                std::io::stdin().is_terminal() && std::io::stderr().is_terminal()
            },
            home: std::env::var_os("HOME")
                .map(PathBuf::from)
                .filter(|h| h.is_absolute()),
            net_log: std::env::var("SMOLVM_NET_LOG")
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(0),
            kernel_copy: is_one("SMOLVM_KERNEL_COPY"),
            full_irqchip: is_one("SMOLVM_FULL_IRQCHIP"),
            skip_kvm_check: std::env::var_os("SMOLVM_SKIP_KVM_CHECK").is_some(),
            simulate_no_seccomp_notify: false,
        }
    }
}

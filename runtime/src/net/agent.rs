//! SSH agent forwarding: the workload talks to the host's agent through a
//! socket inside the guest; the keys stay on the host (only the agent
//! protocol crosses, over vsock).
//!
//! Both sides must want it: the artifact asks (`[auth] ssh_agent = true`)
//! and the user allows it at run time (`--smolvm-ssh-agent`,
//! `SMOLVM_SSH_AGENT=1`, `pack run --ssh-agent`): the artifact's author is
//! not the user, and an agent signs for whoever can reach it.

use std::ffi::OsStr;
use std::os::unix::fs::FileTypeExt;
use std::path::PathBuf;

/// The socket the workload sees (its `SSH_AUTH_SOCK`), served by the guest
/// init's forwarder (guest-init/init.c).
pub const GUEST_SOCKET: &str = "/run/smolvm/ssh-agent.sock";

/// The host agent socket to forward, if the machine asks, the user allows
/// and there is an agent; otherwise says why not in one line on stderr
/// (only when the machine asked or the user allowed).
/// `allowed` covers `SMOLVM_SSH_AGENT=1`; `sock` is `SSH_AUTH_SOCK`
/// (crate::host_env).
pub fn decide(requested: bool, allowed: bool, sock: Option<&OsStr>) -> Option<PathBuf> {
    let note = |why: &str| eprintln!("smolvm: SSH agent not forwarded: {why}");
    match (requested, allowed) {
        (false, false) => None,
        (false, true) => {
            note("this machine does not ask for it ([auth] ssh_agent)");
            None
        }
        (true, false) => {
            note("this machine asks for your SSH agent; allow it with --smolvm-ssh-agent (or SMOLVM_SSH_AGENT=1)");
            None
        }
        (true, true) => {
            let Some(sock) = sock.filter(|s| !s.is_empty()) else {
                note("no SSH agent here (SSH_AUTH_SOCK is not set)");
                return None;
            };
            let path = PathBuf::from(sock);
            match std::fs::metadata(&path) {
                Ok(m) if m.file_type().is_socket() => Some(path),
                Ok(_) => {
                    note(&format!("SSH_AUTH_SOCK={} is not a socket", path.display()));
                    None
                }
                Err(e) => {
                    note(&format!("SSH_AUTH_SOCK={}: {e}", path.display()));
                    None
                }
            }
        }
    }
}

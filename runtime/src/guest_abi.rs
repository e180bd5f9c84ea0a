// The guest ABI: the names and numbers that the host runtime and the guest
// init (guest-init/init.c) must agree on, in one place. build.rs includes
// this file and writes every entry of `FOR_C` as a `#define` into
// $OUT_DIR/guest_abi.h, which init.c includes: a change here reaches both
// sides, and a name init.c uses that is not here does not compile.
// (Plain comments, not `//!`: build.rs `include!`s the file.)

/// The guest vsock port of the control channel ("SC"): the supervisor's
/// socket (crate::control), which the guest init connects to.
pub const CONTROL_PORT: u32 = 0x5343;
/// The guest vsock port libkrun connects to the host's SSH agent ("SH").
pub const AGENT_PORT: u32 = 0x5348;

/// The run spec (crate::spec): argv, env, user, volumes.
pub const SPEC: &str = "/.smolvm/spec";
/// The first field of the spec: its format and version.
pub const SPEC_VERSION: &str = "smolvm-spec-2";
/// The guest init itself.
pub const INIT: &str = "/.smolvm/init";
/// With the network on: the resolver the guest uses, copied to
/// /etc/resolv.conf.
pub const RESOLV_CONF: &str = "/.smolvm/resolv.conf";
/// With SSH agent forwarding: holds [`AGENT_PORT`] in decimal.
pub const SSH_AGENT: &str = "/.smolvm/ssh-agent";
/// The disks manifest (crate::disk): overlay and storage, persistent
/// volumes.
pub const DISKS: &str = "/.smolvm/disks";
/// The first field of the disks manifest.
pub const DISKS_VERSION: &str = "smolvm-disks-1";
/// virtio-blk serials the guest init finds the disks by
/// (`/sys/block/vdX/serial`), not by probe order.
pub const OVERLAY_SERIAL: &str = "smolvm-overlay";
pub const STORAGE_SERIAL: &str = "smolvm-storage";

/// The guest init's buffer for the spec (it refuses a spec that reaches
/// one byte less).
pub const SPEC_BUFFER: u32 = 1 << 20;
/// Arguments, and separately environment entries, the guest init takes.
pub const SPEC_STRINGS: u32 = 8192;
/// Volumes the guest init mounts.
pub const VOLUMES: u32 = 16;
/// `init` commands the guest init runs.
pub const INIT_COMMANDS: u32 = 1024;
/// Supplementary groups the guest init sets (smolvm_format's MAX_GROUPS;
/// a test keeps them equal).
pub const GROUPS: u32 = 256;
/// Longest working directory chdir takes (the guest's `PATH_MAX`, counting
/// the NUL).
pub const WORKDIR_LEN: u32 = 4095;

/// One constant as C sees it.
pub enum CValue {
    Number(u32),
    Text(&'static str),
}

/// What build.rs writes into guest_abi.h, `SMOLVM_` + the name.
pub const FOR_C: &[(&str, CValue)] = &[
    ("CONTROL_PORT", CValue::Number(CONTROL_PORT)),
    ("AGENT_PORT", CValue::Number(AGENT_PORT)),
    ("SPEC", CValue::Text(SPEC)),
    ("SPEC_VERSION", CValue::Text(SPEC_VERSION)),
    ("INIT", CValue::Text(INIT)),
    ("RESOLV_CONF", CValue::Text(RESOLV_CONF)),
    ("SSH_AGENT", CValue::Text(SSH_AGENT)),
    ("DISKS", CValue::Text(DISKS)),
    ("DISKS_VERSION", CValue::Text(DISKS_VERSION)),
    ("OVERLAY_SERIAL", CValue::Text(OVERLAY_SERIAL)),
    ("STORAGE_SERIAL", CValue::Text(STORAGE_SERIAL)),
    ("SPEC_BUFFER", CValue::Number(SPEC_BUFFER)),
    ("SPEC_STRINGS", CValue::Number(SPEC_STRINGS)),
    ("VOLUMES", CValue::Number(VOLUMES)),
    ("INIT_COMMANDS", CValue::Number(INIT_COMMANDS)),
    ("GROUPS", CValue::Number(GROUPS)),
];

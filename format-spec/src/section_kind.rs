//! What a section holds and how large it may grow.
//!
//! A leaf module: errors and frame decoding name a section's kind, and
//! the manifest that lists sections is built on both, so the kind cannot
//! live in the manifest without a cycle.

use serde::{Deserialize, Serialize};

/// Uncompressed kernel cap: real kernels are 10-60 MiB.
pub const MAX_KERNEL_SIZE: u64 = 512 << 20;
/// Uncompressed rootfs (EROFS image) cap: 64 GiB bounds the disk a first
/// start writes.
pub const MAX_ROOTFS_SIZE: u64 = 64 << 30;
/// Uncompressed config cap: a config is a few KiB.
pub const MAX_CONFIG_SIZE: u64 = 1 << 20;
/// Uncompressed cap of an attestation (SBOM, provenance): JSON that lists
/// packages and inputs; a root of 10 000 packages makes about 5 MiB of SPDX.
pub const MAX_ATTESTATION_SIZE: u64 = 16 << 20;
/// Icon cap: application icons are PNGs of tens of KiB (256x256) to a few
/// hundred (1024x1024); every start hashes the section, so it stays small.
pub const MAX_ICON_SIZE: u64 = 512 << 10;

/// What a section holds.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[serde(rename_all = "lowercase")]
pub enum SectionKind {
    /// The guest kernel as an ELF executable.
    Kernel,
    /// The root filesystem as an EROFS image the guest mounts.
    Rootfs,
    /// The resolved machine configuration as canonical JSON
    /// ([`MachineConfig`](crate::manifest::MachineConfig)).
    Config,
    /// Optional: the packages in the root, as an SPDX 2.3 JSON document.
    /// Never needed to boot; signed like every section.
    Sbom,
    /// Optional: how the artifact was built, as an in-toto Statement with
    /// a SLSA v1 provenance predicate (JSON). Never needed to boot.
    Provenance,
    /// Optional (version 5): the application icon, a PNG that
    /// `--smolvm-install` puts in the person's icon theme. Never needed to boot.
    Icon,
}

impl SectionKind {
    pub fn name(self) -> &'static str {
        match self {
            SectionKind::Kernel => "kernel",
            SectionKind::Rootfs => "rootfs",
            SectionKind::Config => "config",
            SectionKind::Sbom => "sbom",
            SectionKind::Provenance => "provenance",
            SectionKind::Icon => "icon",
        }
    }

    /// Upper bound on the uncompressed size, enforced before and during decompression.
    pub fn max_size(self) -> u64 {
        match self {
            SectionKind::Kernel => MAX_KERNEL_SIZE,
            SectionKind::Rootfs => MAX_ROOTFS_SIZE,
            SectionKind::Config => MAX_CONFIG_SIZE,
            SectionKind::Sbom | SectionKind::Provenance => MAX_ATTESTATION_SIZE,
            SectionKind::Icon => MAX_ICON_SIZE,
        }
    }

    /// The first format version that defines this kind.
    pub fn since_version(self) -> u32 {
        match self {
            SectionKind::Kernel | SectionKind::Rootfs | SectionKind::Config => 3,
            SectionKind::Sbom | SectionKind::Provenance => 4,
            SectionKind::Icon => 5,
        }
    }
}

impl std::fmt::Display for SectionKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

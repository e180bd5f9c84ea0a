//! The packer: Smolfile, kernel and rootfs inputs, artifact assembly and the
//! human/JSON views used by the `smolvm` CLI.

pub mod config;
pub mod contents;
pub mod create;
pub mod exit;
pub mod icon;
pub mod image;
pub mod kernel;
pub mod kernel_fetch;
pub mod plan;
pub mod provenance;
pub mod prune;
pub mod remote;
pub mod rotation;
pub mod sbom;
pub mod sections;
pub mod signer;
pub mod smolfile;
pub mod user;

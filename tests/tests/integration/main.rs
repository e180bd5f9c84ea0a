//! Every cross-crate test that does not boot a real guest, in one binary
//! (one link instead of fourteen; ripgrep's tests/tests.rs does the same).
//! The real-boot tests stay binaries of their own (tests/tests/boot*.rs):
//! scripts/test.sh runs them in lanes, each inside the L1 harness.

mod cache_prune;
mod cli;
mod common;
mod consent;
mod desktop;
mod fuzz_regressions;
mod golden;
mod host_safety;
mod install;
mod key_rotation;
mod key_sources;
mod reader_fixed_fields;
mod reader_manifest;
mod reader_proptest;
mod reader_sweeps;
mod registry_artifacts;
mod release_review;
mod run_settings;
mod state_files;
mod stub_binary;
mod vmm_attack;

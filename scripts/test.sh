#!/usr/bin/env bash
# Runs every test, including the real boots in QEMU, on a fresh Debian
# bookworm machine: installs what is missing (apt packages, QEMU, the L1
# kernel), fetches the guest kernel, builds the release CLI and stub (release
# is size-tuned) the boot tests pack, then runs the whole workspace's tests.
#
# Usage: scripts/test.sh [NEXTEST ARGS...]
#   With no arguments: every test of the workspace, the real boots
#   (tests/tests/boot*.rs) included, with `cargo nextest run --workspace`
#   (scheduling in .config/nextest.toml: boots two at a time, longest
#   first), then the doc tests and the patched virtio-fs server's tests.
#   Non-zero exit if anything failed.
#   With arguments: `cargo nextest run --workspace ARGS` only (e.g. a test
#   name filter, or `-E 'binary(boot_net)'`).
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"

scripts/setup-harness.sh
scripts/fetch-kernel.sh
# Image-source and full-distribution tests (tests/tests/boot_images.rs): a
# local registry on 127.0.0.1:5000, the test image in it and on disk, and a
# Debian minbase root (debootstrap, cached; about 90 s the first time).
scripts/setup-registry.sh
scripts/make-test-image.sh
SMOL_DEBIAN_ROOT=$(scripts/debian-root.sh)
export SMOL_DEBIAN_ROOT
# PKCS#11 signing (tests/tests/integration/key_sources.rs): SoftHSM2 and pkcs11-tool.
scripts/setup-signing-tokens.sh >/dev/null
# The SBOM test checks its document with the SPDX project's own validator.
SMOLVM_SPDX_VALIDATOR=$(scripts/setup-spdx-validator.sh)
export SMOLVM_SPDX_VALIDATOR

# Release is size-tuned: this is the stub every artifact gets. Built on its
# own: in one build with the packer, cargo unifies the two's dependency
# features (the packer's tokio networking, flate2's zlib-rs) into it (+33 KB).
cargo build --release -p smolvm-packer
cargo build --release -p smolvm-stub
export SMOLVM_BIN="$repo/target/release/smolvm"
# Issue 10: packing a .tar.gz with a 4 GiB file stays under 300 MiB peak RSS
# (about 15 s).
scripts/bench-memory.sh
export SMOLVM_STUB="$repo/target/release/smolvm-stub"
# In CI and here, a real-boot harness that cannot run is a failure, not a skip.
export SMOLVM_REQUIRE_BOOT=1
# Likewise the desktop checks (Xvfb, xterm, desktop-file-validate:
# scripts/setup-desktop.sh, run by setup-harness.sh above).
export SMOLVM_REQUIRE_DESKTOP=1
# Every crate's unit tests, the tests crate's integration binary and the
# real boots, in one `cargo nextest run`: each test in its own process, the
# boots two at a time and longest first (.config/nextest.toml), every
# failure reported (not only the first).
rc=0
cargo nextest run --workspace "$@" || rc=$?
if [ $# -eq 0 ]; then
    # nextest runs no doc tests.
    cargo test --workspace --doc || rc=$?
    # The patched virtio-fs server (vendor/patches/), driven as a hostile
    # guest would; not a workspace member, so named here.
    cargo test -p krun-devices --lib smolvm_ || rc=$?
fi
exit "$rc"

#!/usr/bin/env bash
# Runs every test, including the real boots in QEMU, on a fresh Debian
# bookworm machine: installs what is missing (apt packages, QEMU, the L1
# kernel), fetches the guest kernel, builds the release CLI and stub (release
# is size-tuned) the boot tests pack, then runs the whole workspace's tests.
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

# Release is size-tuned: this is the stub every artifact gets.
cargo build --release -p smolvm-packer -p smolvm-stub
export SMOLVM_BIN="$repo/target/release/smolvm"
# Issue 10: packing a .tar.gz with a 4 GiB file stays under 300 MiB peak RSS
# (about 15 s).
scripts/bench-memory.sh
export SMOLVM_STUB="$repo/target/release/smolvm-stub"
# In CI and here, a real-boot harness that cannot run is a failure, not a skip.
export SMOLVM_REQUIRE_BOOT=1
cargo test --workspace "$@"

#!/usr/bin/env bash
# Runs every test, including the real boots in QEMU, on a fresh Debian
# bookworm machine: installs what is missing (apt packages, QEMU, the L1
# kernel), fetches the guest kernel, builds the release CLI and stub (release
# is size-tuned) the boot tests pack, then runs the whole workspace's tests.
#
# Usage: scripts/test.sh [CARGO TEST ARGS...]
#   With no arguments: every test binary but the real-boot ones
#   (tests/tests/boot*.rs) in one `cargo test`, then the boot binaries two at
#   a time (each boots one single-CPU L1 QEMU, so two use both cores of a
#   2-core machine; SMOL_BOOT_LANES=N changes that), longest first, each
#   one's output printed whole when it ends. Exit 1 if anything failed.
#   With arguments: `cargo test --workspace ARGS` (e.g. a test name filter).
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
if [ $# -gt 0 ]; then
    exec cargo test --workspace "$@"
fi

# Longest first (measured), so the two lanes end close together; a boot
# binary not named here runs last.
order=(boot_storage boot_signals boot_volumes boot_erofs boot_images boot_net boot_net_contain boot_attack boot_cache boot)
boots=()
for b in "${order[@]}"; do [ -f "tests/tests/$b.rs" ] && boots+=("$b"); done
for f in tests/tests/boot*.rs; do
    b=$(basename "$f" .rs)
    [[ " ${boots[*]} " == *" $b "* ]] || boots+=("$b")
done
# Everything else is one binary (tests/tests/integration/), plus any
# top-level test file that is not a boot.
others=(--test integration)
for f in tests/tests/*.rs; do
    b=$(basename "$f" .rs)
    [[ " ${boots[*]} " == *" $b "* ]] || others+=(--test "$b")
done

# Build everything first; the boot binaries are then run directly (not
# through cargo, which would hold the build directory's lock while one runs).
exes=$(cargo test --workspace --no-run --message-format=json -q \
    | grep -o '"executable":"[^"]*/deps/boot[a-z_]*-[0-9a-f]*"' | sed 's/^"executable":"//; s/"$//')
# Every crate's unit and doc tests, and the tests crate's non-boot binaries.
cargo test --workspace --exclude smolvm-tests
# The patched virtio-fs server (vendor/patches/), driven as a hostile guest
# would; not a workspace member, so named here.
cargo test -p krun-devices --lib smolvm_
cargo test -p smolvm-tests --lib "${others[@]}"
cargo test -p smolvm-tests --doc

logs=$repo/target/boot-logs
rm -rf "$logs"
mkdir -p "$logs"
run_boot() { # NAME: one boot binary (run as cargo would: cwd tests/), output in $logs/NAME.log
    local start=$SECONDS rc=0 exe
    exe=$(grep "/deps/$1-[0-9a-f]*\$" <<<"$exes" | head -n 1)
    if [ -z "$exe" ]; then
        echo "no test binary for $1" >"$logs/$1.log"
        rc=101
    else
        (cd "$repo/tests" && "$exe") >"$logs/$1.log" 2>&1 || rc=$?
    fi
    echo "$rc $((SECONDS - start))" >"$logs/$1.status"
    {
        echo "==== $1: exit $rc after $((SECONDS - start)) s"
        cat "$logs/$1.log"
    } | flock "$logs/.print" cat
}
export -f run_boot
export logs exes repo
lanes=${SMOL_BOOT_LANES:-2}
started=$SECONDS
# shellcheck disable=SC2016 # $1 is the inner shell's
printf '%s\n' "${boots[@]}" | xargs -P "$lanes" -I{} bash -c 'run_boot "$1"' _ {}
echo "==== real boots: ${#boots[@]} binaries in $lanes lanes, $((SECONDS - started)) s"
failed=()
for b in "${boots[@]}"; do
    read -r rc secs <"$logs/$b.status" || { failed+=("$b (no status)"); continue; }
    printf '  %-14s exit %s  %4s s\n' "$b" "$rc" "$secs"
    [ "$rc" = 0 ] || failed+=("$b")
done
if [ ${#failed[@]} -gt 0 ]; then
    echo "test.sh: real-boot binaries failed: ${failed[*]} (logs: $logs)" >&2
    exit 1
fi

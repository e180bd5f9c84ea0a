#!/usr/bin/env bash
# Host memory of an idle guest after it touched and freed 1 GiB, measured in
# the real-boot harness (L1 under QEMU, tests/harness/): a machine with
# memory = 2048 MiB writes 1 GiB into its RAM-backed writable layer, deletes
# it, and idles; the VMM process's VmRSS on the host (L1) is sampled every
# 0.5 s. libkrun attaches a virtio-balloon with free page reporting, which
# the guest kernel uses to hand freed pages back (MADV_DONTNEED).
# Goal (issue 11): RSS falls back to within 128 MiB of the idle figure
# within 10 s of the delete. Prints; never fails on a figure.
#
# Usage: scripts/bench-balloon.sh [--keep]
# Needs what the harness needs (scripts/setup-harness.sh installs it) and a
# release build (built here).
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"
keep=0
[ "${1:-}" = --keep ] && keep=1

scripts/setup-harness.sh >/dev/null
kernel=$(scripts/fetch-kernel.sh | sed -n 's/^libkrunfw.so.5: //p')
cargo build --release -q -p smolvm-packer -p smolvm-stub

scratch=$(mktemp -d "${TMPDIR:-/tmp}/smolvm-bench-balloon.XXXXXX")
if [ "$keep" = 1 ]; then echo "scratch: $scratch" >&2; else trap 'rm -rf "$scratch"' EXIT; fi
mkdir -p "$scratch/root/bin" "$scratch/root/etc" "$scratch/files"
cp /bin/busybox "$scratch/root/bin/busybox"
for a in sh dd rm sleep echo cat free sync; do ln -s busybox "$scratch/root/bin/$a"; done
printf 'root:x:0:0:root:/root:/bin/sh\n' >"$scratch/root/etc/passwd"
cat >"$scratch/Smolfile" <<'EOF'
memory = 2048
cpus = 1
entrypoint = ["/bin/sh", "-c"]
cmd = ["sleep 8; echo GUEST-FILL; dd if=/dev/zero of=/tmp/fill bs=1M count=1024 2>/dev/null; sync; echo GUEST-FILLED; rm /tmp/fill; echo GUEST-FREED; sleep 25; echo GUEST-DONE"]
EOF
target/release/smolvm pack keygen -o "$scratch/keys" >/dev/null
target/release/smolvm pack create --smolfile "$scratch/Smolfile" --rootfs "$scratch/root" \
    --kernel "$kernel" --key "$scratch/keys/smolvm.key" --stub target/release/smolvm-stub \
    -o "$scratch/files/machine" >/dev/null

# In L1: start the machine, find the VMM (the process libkrun renames
# "libkrun VM"), sample its VmRSS with the guest's own progress marks.
cat >"$scratch/scenarios.sh" <<'EOF'
export SMOLVM_CACHE_DIR=/tmp/balloon-cache
./machine --smolvm-dry-run >/dev/null 2>&1
run() {
    ./machine >/tmp/guest.out 2>&1 &
    t0=$(cut -d' ' -f1 /proc/uptime)
    while kill -0 $! 2>/dev/null; do
        # The VMM: the executable's child (the executable itself supervises
        # signals and the terminal; runtime/src/control.rs).
        pid=$(grep -l "^PPid:[[:space:]]*$!\$" /proc/[0-9]*/status 2>/dev/null | head -n 1 | cut -d/ -f3)
        [ -n "$pid" ] || pid=$!
        if [ -n "$pid" ]; then
            rss=$(awk '/^VmRSS/ {print $2}' /proc/"$pid"/status 2>/dev/null)
            now=$(cut -d' ' -f1 /proc/uptime)
            mark=$(tail -n 1 /tmp/guest.out 2>/dev/null)
            [ -n "$rss" ] && echo "sample $(awk -v a="$now" -v b="$t0" 'BEGIN {printf "%.1f", a - b}') ${rss} ${mark:-boot}"
        fi
        sleep 0.5
    done
    cat /tmp/guest.out
}
scenario balloon run
EOF
out=$(tests/harness/run-l1.sh --files "$scratch/files" --script "$scratch/scenarios.sh" --timeout 600 --mem 3072 2>&1 | tr -d '\r')
echo "$out" | grep -E '^sample ' >"$scratch/samples" || true
if [ ! -s "$scratch/samples" ]; then
    echo "bench-balloon: no samples; the harness said:" >&2
    echo "$out" | tail -n 40 >&2
    exit 0
fi
awk '
    { t = $2; rss = $3 / 1024; mark = $4 }
    mark == "boot" || (mark != "GUEST-FILL" && mark != "GUEST-FILLED" && mark != "GUEST-FREED" && mark != "GUEST-DONE") { idle = rss }
    mark == "GUEST-FILLED" || mark == "GUEST-FREED" { if (rss > peak) peak = rss }
    mark == "GUEST-FREED" && freed == "" { freed = t }
    freed != "" && t - freed <= 10.05 { at10 = rss; at10t = t - freed }
    { last = rss }
    END {
        printf "guest memory 2048 MiB; VMM VmRSS in L1 (MiB), sampled every 0.5 s\n"
        printf "  idle before the fill        %7.1f\n", idle
        printf "  peak with 1 GiB written     %7.1f\n", peak
        printf "  last sample <= 10 s after the delete (+%.1f s) %7.1f   (idle + %.1f; goal <= idle + 128: %s)\n", at10t, at10, at10 - idle, (at10 - idle <= 128 ? "met" : "MISSED")
        printf "  at the end (+25 s)          %7.1f\n", last
    }' "$scratch/samples"
echo "samples (seconds since start, RSS KiB, last guest line):"
awk '{printf "  %s %s %s\n", $2, $3, $4}' "$scratch/samples" | awk 'NR % 4 == 1'

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
# Usage: scripts/bench-balloon.sh [--keep] [--no-build] [--smoke]
#   --keep       keep the scratch directory (its path is printed)
#   --no-build   use the release smolvm and smolvm-stub as they are
#                (target/release, or $CARGO_TARGET_DIR/release)
#   --smoke      memory = 512 MiB, a 64 MiB fill, 2 s before and 3 s after
#                it (CI: scripts/bench-smoke.sh); not a measurement
# Needs what the harness needs (scripts/setup-harness.sh installs it) and a
# release build (built here).
set -euo pipefail
# shellcheck source=scripts/lib/bench.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib/bench.sh"
bench_init bench-balloon --no-build
while [ $# -gt 0 ]; do
    bench_common_arg "$1" && { shift; continue; }
    bench_unknown_arg "$1"
done
# Guest memory, the fill, the idle time before it and after the delete.
mem_mib=2048 fill_mib=1024 before_s=8 after_s=25
[ "$smoke" = 0 ] || { mem_mib=512 fill_mib=64 before_s=2 after_s=3; }

scripts/setup-harness.sh >/dev/null
kernel=$(scripts/fetch-kernel.sh | sed -n 's/^libkrunfw.so.5: //p')
bench_build smolvm-packer smolvm-stub

bench_scratch smolvm-bench-balloon
bench_busybox_root "$scratch/root" sh dd rm sleep echo cat free sync
mkdir -p "$scratch/files"
cat >"$scratch/Smolfile" <<EOF
memory = $mem_mib
cpus = 1
entrypoint = ["/bin/sh", "-c"]
cmd = ["sleep $before_s; echo GUEST-FILL; dd if=/dev/zero of=/tmp/fill bs=1M count=$fill_mib 2>/dev/null; sync; echo GUEST-FILLED; rm /tmp/fill; echo GUEST-FREED; sleep $after_s; echo GUEST-DONE"]
EOF
"$rel/smolvm" pack keygen -o "$scratch/keys" >/dev/null
"$rel/smolvm" pack create --smolfile "$scratch/Smolfile" --rootfs "$scratch/root" \
    --kernel "$kernel" --key "$scratch/keys/smolvm.key" --stub "$rel/smolvm-stub" \
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
    # A smoke run must see the bench work; a measurement prints and goes on.
    [ "$smoke" = 0 ] || die "no samples"
    exit 0
fi
awk -v mem="$mem_mib" -v fill="$fill_mib" -v after="$after_s" '
    { t = $2; rss = $3 / 1024; mark = $4 }
    mark == "boot" || (mark != "GUEST-FILL" && mark != "GUEST-FILLED" && mark != "GUEST-FREED" && mark != "GUEST-DONE") { idle = rss }
    mark == "GUEST-FILLED" || mark == "GUEST-FREED" { if (rss > peak) peak = rss }
    mark == "GUEST-FREED" && freed == "" { freed = t }
    freed != "" && t - freed <= 10.05 { at10 = rss; at10t = t - freed }
    { last = rss }
    END {
        printf "guest memory %d MiB; VMM VmRSS in L1 (MiB), sampled every 0.5 s\n", mem
        printf "  idle before the fill        %7.1f\n", idle
        printf "  peak with %-5s written     %7.1f\n", (fill == 1024 ? "1 GiB" : fill " MiB"), peak
        printf "  last sample <= 10 s after the delete (+%.1f s) %7.1f   (idle + %.1f; goal <= idle + 128: %s)\n", at10t, at10, at10 - idle, (at10 - idle <= 128 ? "met" : "MISSED")
        printf "  at the end (+%d s)          %7.1f\n", after, last
    }' "$scratch/samples"
echo "samples (seconds since start, RSS KiB, last guest line):"
awk '{printf "  %s %s %s\n", $2, $3, $4}' "$scratch/samples" | awk 'NR % 4 == 1'

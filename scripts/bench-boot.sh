#!/usr/bin/env bash
# Boot time of a packed executable vs a bare libkrun boot of the same kernel
# and the same root files, measured in the real-boot harness (L1 under QEMU
# TCG, see tests/harness/README.md): on these machines /dev/kvm (kvm-pvm)
# boots no guest natively, so both boot as L2 guests of L1's KVM (emulated
# SVM); the figures are TCG-scaled, the ratio is what counts. For the native
# exec -> first KVM_RUN see scripts/bench-kvm-run.sh. Prints per-run times,
# medians and the ratio; never fails on a figure (a run that fails, fails it).
#
# Usage: scripts/bench-boot.sh [--runs N] [--no-build] [--keep] [--smoke]
#   --runs N     interleaved runs of each (default 7, at least 5)
#   --no-build   use the release smolvm, smolvm-stub and examples/bare_boot
#                as they are (target/release, or $CARGO_TARGET_DIR/release)
#   --keep       keep the scratch directory (L1 console log inside)
#   --smoke      one run of each (CI: scripts/bench-smoke.sh); not a measurement
#
# In one L1 boot: `./hello true` once with an empty SMOLVM_CACHE_DIR (first
# start: fills the cache), then N times each, alternating which goes first:
#   packed: ./hello true                     (warm cache; workload /bin/sh -c true)
#   bare:   ./bare_boot KERNEL ROOT -- /bin/sh -c true
# where KERNEL is the kernel ELF the first start cached
# ($SMOLVM_CACHE_DIR/kernel/<sha256>.elf), so both boot the same kernel
# bytes, and ROOT the busybox tree that was packed, untarred in L1 (tar -c on
# the host, busybox tar -x in L1). The two reach the same files two ways:
# the packed executable boots its cached EROFS image ($SMOLVM_CACHE_DIR/
# rootfs/<sha256>.erofs) from a read-only virtio-blk disk with an overlay on
# top and smolvm's guest init; bare libkrun boots ROOT as a virtio-fs root
# (what the packed executable did before the EROFS switch, and what any
# libkrun user does). Since that switch the cache holds no root directory
# to copy, which is what broke this bench: it copied
# $SMOLVM_CACHE_DIR/rootfs/<sha256>/, which no longer exists, so bare
# libkrun was handed a root directory that did not exist, ran no workload
# (the 'exit 7' sanity run came back 0) and the bench stopped there.
# 1 vCPU, 256 MiB each. Times are wall clock in L1 around each process (GNU
# date +%s.%N). Target: packed/bare <= 1.05.
# Needs: scripts/setup-harness.sh (run here if anything is missing), the
# guest kernel (scripts/fetch-kernel.sh), busybox-static.
set -euo pipefail
# shellcheck source=scripts/lib/bench.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib/bench.sh"
bench_init bench-boot.sh --no-build

runs=7
while [ $# -gt 0 ]; do
    bench_common_arg "$1" && { shift; continue; }
    case $1 in
        --runs) runs=${2:?}; shift 2 ;;
        *) bench_unknown_arg "$1" ;;
    esac
done
if [ "$smoke" = 1 ]; then
    runs=1
else
    { [[ $runs =~ ^[0-9]+$ ]] && [ "$runs" -ge 5 ]; } || die "--runs must be an integer >= 5"
fi

scripts/setup-harness.sh >&2
scripts/fetch-kernel.sh >/dev/null
[ "$build" = 0 ] || log "building smolvm, the stub and the bare_boot example (release)"
bench_build smolvm-packer smolvm-stub example:smolvm-runtime:bare_boot
smolvm=$rel/smolvm
stub=$rel/smolvm-stub
bare=$rel/examples/bare_boot
kernel=$repo/.cache/kernel/libkrunfw.so.5
bench_files "$smolvm" "$stub" "$bare" "$kernel"

bench_scratch smolvm-bench-boot
tmp=$scratch

# --- what L1 gets ----------------------------------------------------------
files=$tmp/files root=$tmp/root
mkdir -p "$files"
bench_busybox_root "$root"
cat >"$tmp/Smolfile" <<'EOF'
entrypoint = ["/bin/sh", "-c"]
cmd = ["true"]
cpus = 1
memory = 256
[artifact]
name = "hello"
version = "1.0.0"
EOF
"$smolvm" pack keygen -o "$tmp/keys" >/dev/null
"$smolvm" pack create --smolfile "$tmp/Smolfile" --rootfs "$root" --kernel "$kernel" \
    --key "$tmp/keys/smolvm.key" --stub "$stub" -o "$files/hello" >/dev/null
cp "$bare" "$files/bare_boot"
# The packed tree, for bare libkrun's virtio-fs root.
tar --numeric-owner -C "$root" -cf "$files/root.tar" .
cp "$(command -v date)" "$files/date"   # GNU date: %N (busybox date has no sub-second)

cat >"$tmp/scenarios.sh" <<EOF
export SMOLVM_CACHE_DIR=/tmp/smolcache
runs=$runs
EOF
cat >>"$tmp/scenarios.sh" <<'EOF'
# timed LABEL I CMD...: one run, stdin /dev/null, output to a file (same for both).
timed() {
    label=$1 i=$2
    shift 2
    t0=$(./date +%s.%N)
    rc=0
    "$@" </dev/null >/tmp/bench.out 2>&1 || rc=$?
    t1=$(./date +%s.%N)
    printf '\n@@BENCH %s %s rc=%s t0=%s t1=%s@@\n' "$label" "$i" "$rc" "$t0" "$t1"
    if [ "$rc" != 0 ] && [ "$rc" != 7 ]; then
        echo "@@BENCH-OUTPUT-BEGIN@@"; cat /tmp/bench.out; echo "@@BENCH-OUTPUT-END@@"
    fi
}
timed cold 0 ./hello true
kernel=$(ls /tmp/smolcache/kernel/*.elf)
image=$(ls /tmp/smolcache/rootfs/*.erofs)
mkdir /tmp/bareroot
tar -x -f root.tar -C /tmp/bareroot
rm -f root.tar
printf '\n@@BENCH-FILES kernel=%s image=%s bare-root=/tmp/bareroot@@\n' "$kernel" "$image"
timed bare-warmup 0 ./bare_boot "$kernel" /tmp/bareroot -- /bin/sh -c true
# Both really run the workload: its exit status comes back (expected 7).
timed sanity-packed 0 ./hello 'exit 7'
timed sanity-bare 0 ./bare_boot "$kernel" /tmp/bareroot -- /bin/sh -c 'exit 7'
i=1
while [ "$i" -le "$runs" ]; do
    # Odd rounds: packed first; even: bare first.
    if [ $((i % 2)) = 1 ]; then
        timed packed "$i" ./hello true
        timed bare "$i" ./bare_boot "$kernel" /tmp/bareroot -- /bin/sh -c true
    else
        timed bare "$i" ./bare_boot "$kernel" /tmp/bareroot -- /bin/sh -c true
        timed packed "$i" ./hello true
    fi
    i=$((i + 1))
done
# Where the packed executable's own time goes before the VM (warm).
SMOLVM_TRACE=1 SMOLVM_DRY_RUN=1 ./hello true </dev/null >/tmp/trace.out 2>&1 || true
echo "@@BENCH-TRACE-BEGIN@@"; cat /tmp/trace.out; echo "@@BENCH-TRACE-END@@"
EOF

log "booting L1 ($runs runs each; a few minutes under TCG)"
rc=0
tests/harness/run-l1.sh --files "$files" --script "$tmp/scenarios.sh" \
    --timeout $((180 + runs * 2 * 40)) >"$tmp/console.log" 2>"$tmp/run-l1.err" || rc=$?
if [ "$rc" != 0 ]; then
    tail -n 40 "$tmp/console.log" >&2
    cat "$tmp/run-l1.err" >&2
    die "run-l1.sh exited $rc (console: $tmp/console.log$([ "$keep" = 1 ] || echo ', deleted; use --keep'))"
fi

# --- report --------------------------------------------------------------------
bench=$(grep '^@@BENCH [a-z-]* [0-9]* rc=' "$tmp/console.log" | sed 's/^@@BENCH //; s/@@$//' |
    awk '{ split($3, r, "="); split($4, a, "="); split($5, b, "="); printf "%s %s %s %.3f\n", $1, $2, r[2], b[2] - a[2] }')
[ -n "$bench" ] || { tail -n 40 "$tmp/console.log" >&2; die "no @@BENCH markers in the L1 console"; }
failed=$(awk '($1 ~ /^sanity-/) ? $3 != 7 : $3 != 0' <<<"$bench")
if [ -n "$failed" ]; then
    sed -n '/@@BENCH-OUTPUT-BEGIN@@/,/@@BENCH-OUTPUT-END@@/p' "$tmp/console.log" >&2
    die "runs failed (label i rc secs):"$'\n'"$failed"
fi
times_of() { awk -v l="$1" '$1 == l { print $4 }' <<<"$bench"; }
mp=$(times_of packed | median) mb=$(times_of bare | median)
ratio=$(awk -v a="$mp" -v b="$mb" 'BEGIN { printf "%.3f", a / b }')
diffs=$(paste <(times_of packed) <(times_of bare) | awk '{ printf "%.3f\n", $1 - $2 }')
cat <<EOF

== packed executable (EROFS disk) vs bare libkrun boot (virtio-fs root) (L1: QEMU TCG, $(sed 's/ .*//' .cache/harness/kernel-version); L2: 1 vCPU, 256 MiB; seconds) ==
first start (cold cache) ./hello true: $(times_of cold) s   bare_boot warm-up: $(times_of bare-warmup) s
workload exit status passes through ('exit 7'): packed rc=$(awk '$1 == "sanity-packed" { print $3 }' <<<"$bench"), bare rc=$(awk '$1 == "sanity-bare" { print $3 }' <<<"$bench")
run   packed   bare    packed-bare
$(paste <(seq 1 "$runs") <(times_of packed) <(times_of bare) <(echo "$diffs") | awk '{ printf "%3d   %6.3f   %6.3f   %+7.3f\n", $1, $2, $3, $4 }')
median packed $(printf '%.3f' "$mp") s   bare $(printf '%.3f' "$mb") s   median of differences $(printf '%+.3f' "$(median <<<"$diffs")") s
ratio packed/bare (medians) $ratio   target <= 1.05: $(awk -v x="$ratio" 'BEGIN { print (x <= 1.05) ? "met" : "MISSED" }')
fastest packed $(times_of packed | least) s   bare $(times_of bare | least) s   ratio $(awk -v a="$(times_of packed | least)" -v b="$(times_of bare | least)" 'BEGIN { printf "%.3f", a / b }')
packed warm start inside L1 before entering the VM (SMOLVM_TRACE=1 dry run):
$(sed -n '/@@BENCH-TRACE-BEGIN@@/,/@@BENCH-TRACE-END@@/p' "$tmp/console.log" | grep -v '@@BENCH-TRACE' | sed 's/^/  /')
EOF

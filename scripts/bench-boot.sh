#!/usr/bin/env bash
# Boot time of a packed executable vs a bare libkrun boot of the same kernel
# and root, measured in the real-boot harness (L1 under QEMU TCG, see
# tests/harness/README.md). Prints per-run times, medians and the ratio;
# never fails on a figure.
#
# Usage: scripts/bench-boot.sh [--runs N] [--no-build] [--keep]
#   --runs N     interleaved runs of each (default 7, at least 5)
#   --no-build   use target/release/smolvm, target/release/smolvm-stub and
#                target/release/examples/bare_boot as they are
#   --keep       keep the scratch directory (L1 console log inside)
#
# In one L1 boot: `./hello true` once with an empty SMOLVM_CACHE_DIR (first
# start: fills the cache), then N times each, alternating which goes first:
#   packed: ./hello true                     (warm cache; workload /bin/sh -c true)
#   bare:   ./bare_boot KERNEL ROOT -- /bin/sh -c true
# where KERNEL is the kernel ELF the first start cached
# ($SMOLVM_CACHE_DIR/kernel/<sha256>.elf) and ROOT a copy (cp -a, so bare
# libkrun cannot touch the cache) of the cached root ($SMOLVM_CACHE_DIR/rootfs/<sha256>/):
# both boot the same bytes. 1 vCPU, 256 MiB each. Times are wall clock in
# L1 around each process (GNU date +%s.%N). Target: packed/bare <= 1.05.
# Needs: scripts/setup-harness.sh (run here if anything is missing), the
# guest kernel (scripts/fetch-kernel.sh), busybox-static.
set -euo pipefail

usage() { sed -n '7,12s/^# \{0,1\}//p' "$0" >&2; exit "${1:-2}"; }
die() { echo "bench-boot.sh: error: $*" >&2; exit 1; }
log() { echo "bench-boot.sh: $*" >&2; }

runs=7 build=1 keep=0
while [ $# -gt 0 ]; do
    case $1 in
        --runs) runs=${2:?}; shift 2 ;;
        --no-build) build=0; shift ;;
        --keep) keep=1; shift ;;
        -h|--help) usage 0 ;;
        *) echo "bench-boot.sh: unknown argument '$1'" >&2; usage ;;
    esac
done
{ [[ $runs =~ ^[0-9]+$ ]] && [ "$runs" -ge 5 ]; } || die "--runs must be an integer >= 5"

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"

scripts/setup-harness.sh >&2
scripts/fetch-kernel.sh >/dev/null
[ -x /bin/busybox ] || die "/bin/busybox missing (busybox-static; scripts/setup-harness.sh installs it)"
if [ "$build" = 1 ]; then
    log "building smolvm, the stub and the bare_boot example (release)"
    cargo build --release -q -p smolvm-packer
    cargo build --release -q -p smolvm-stub
    cargo build --release -q -p smolvm-runtime --example bare_boot
fi
smolvm=$repo/target/release/smolvm
stub=$repo/target/release/smolvm-stub
bare=$repo/target/release/examples/bare_boot
kernel=$repo/.cache/kernel/libkrunfw.so.5
for f in "$smolvm" "$stub" "$bare" "$kernel"; do [ -f "$f" ] || die "missing $f"; done

tmp=$(mktemp -d "${TMPDIR:-/tmp}/smolvm-bench-boot.XXXXXX")
if [ "$keep" = 1 ]; then
    log "scratch directory kept: $tmp"
else
    trap 'rm -rf "$tmp"' EXIT
fi

# --- what L1 gets ----------------------------------------------------------
files=$tmp/files root=$tmp/root
mkdir -p "$files" "$root/bin" "$root/etc"
cp /bin/busybox "$root/bin/busybox"
for a in $(/bin/busybox --list); do [ "$a" = busybox ] || ln -sf busybox "$root/bin/$a"; done
printf 'root:x:0:0:root:/root:/bin/sh\n' >"$root/etc/passwd"
printf 'root:x:0:\n' >"$root/etc/group"
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
for d in /tmp/smolcache/rootfs/*/; do cached_root=${d%/}; done
cp -a "$cached_root" /tmp/bareroot
printf '\n@@BENCH-FILES kernel=%s root=%s@@\n' "$kernel" "$cached_root"
timed bare-warmup 0 ./bare_boot "$kernel" /tmp/bareroot -- /bin/sh -c true
# Both really run the workload: its exit status comes back (expected 7).
timed sanity-packed 0 ./hello 'exit 7'
timed sanity-bare 0 ./bare_boot "$kernel" /tmp/bareroot -- /bin/sh -c 'exit 7'
i=1
while [ "$i" -le "$runs" ]; do
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
median() { sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
times_of() { awk -v l="$1" '$1 == l { print $4 }' <<<"$bench"; }
mp=$(times_of packed | median) mb=$(times_of bare | median)
ratio=$(awk -v a="$mp" -v b="$mb" 'BEGIN { printf "%.3f", a / b }')
diffs=$(paste <(times_of packed) <(times_of bare) | awk '{ printf "%.3f\n", $1 - $2 }')
cat <<EOF

== packed executable vs bare libkrun boot (L1: QEMU TCG, $(sed 's/ .*//' .cache/harness/kernel-version); L2: 1 vCPU, 256 MiB; seconds) ==
first start (cold cache) ./hello true: $(times_of cold) s   bare_boot warm-up: $(times_of bare-warmup) s
workload exit status passes through ('exit 7'): packed rc=$(awk '$1 == "sanity-packed" { print $3 }' <<<"$bench"), bare rc=$(awk '$1 == "sanity-bare" { print $3 }' <<<"$bench")
run   packed   bare    packed-bare
$(paste <(seq 1 "$runs") <(times_of packed) <(times_of bare) <(echo "$diffs") | awk '{ printf "%3d   %6.3f   %6.3f   %+7.3f\n", $1, $2, $3, $4 }')
median packed $(printf '%.3f' "$mp") s   bare $(printf '%.3f' "$mb") s   median of differences $(printf '%+.3f' "$(median <<<"$diffs")") s
ratio packed/bare (medians) $ratio   target <= 1.05: $(awk -v x="$ratio" 'BEGIN { print (x <= 1.05) ? "met" : "MISSED" }')
fastest packed $(times_of packed | sort -g | head -n 1) s   bare $(times_of bare | sort -g | head -n 1) s   ratio $(awk -v a="$(times_of packed | sort -g | head -n 1)" -v b="$(times_of bare | sort -g | head -n 1)" 'BEGIN { printf "%.3f", a / b }')
packed warm start inside L1 before entering the VM (SMOLVM_TRACE=1 dry run):
$(sed -n '/@@BENCH-TRACE-BEGIN@@/,/@@BENCH-TRACE-END@@/p' "$tmp/console.log" | grep -v '@@BENCH-TRACE' | sed 's/^/  /')
EOF

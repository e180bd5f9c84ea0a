#!/usr/bin/env bash
# Exec -> the guest's first instruction (the first KVM_RUN ioctl) of a warm
# packed executable, measured natively, three ways interleaved, medians:
#   before   the path before issue 11: libkrun reads the 21 MB kernel ELF into
#            guest memory (SMOLVM_KERNEL_COPY=1) and the full in-kernel
#            irqchip (SMOLVM_FULL_IRQCHIP=1)
#   full     the zero-copy kernel hand-off (runtime/src/kernel_map.rs) with
#            the full in-kernel irqchip
#   default  zero-copy and KVM's split irqchip (runtime/src/launch.rs,
#            `split_irqchip`): what every start does now
# beside exec -> exit of /bin/true; with --baseline STUB also the same machine
# packed with another stub (e.g. one built before a change), interleaved, and
# the ratio against it.
# Prints; never fails on a figure.
#
# Usage: scripts/bench-kvm-run.sh [--runs N] [--pause S] [--no-build] [--keep]
#                                 [--baseline STUB] [--default-only] [--no-rt] [--smoke]
#   --runs N     runs per command (default 15), interleaved
#   --pause S    seconds between two starts (default 0.3): a start on a quiet
#                machine, as a user's is; back-to-back starts can hide the
#                kernel's SRCU wait that the split irqchip removes
#   --no-build   use the release smolvm and smolvm-stub as they are
#                (target/release, or $CARGO_TARGET_DIR/release)
#   --keep       keep the scratch directory (its path is printed)
#   --baseline STUB  also measure the machine packed with STUB ("baseline")
#   --default-only   measure only the default path (and the baseline): more
#                runs of what a change moves in the same time
#   --no-rt      run the starts at normal priority; by default (as root)
#                each start runs at real-time priority (chrt -f 10), so that
#                other work on the machine (a build) does not preempt it
#                and the figures are those of a quiet machine
#   --smoke      one run, no pause (CI: scripts/bench-smoke.sh); not a measurement
#
# How: an LD_PRELOAD library wraps ioctl(); on the first KVM_RUN (0xae80) it
# writes the nanoseconds since the launcher's clock reading right before
# fork+exec and ends the process tree's VMM at once (_exit), so no guest
# runs. This machine's /dev/kvm (kvm-pvm) cannot boot a normal guest, but
# everything up to KVM_RUN runs natively, as it would on any KVM host
# (SMOLVM_SKIP_KVM_CHECK=1 skips the pvm check). Needs root or access to
# /dev/kvm. Installs (apt) if missing: gcc libc6-dev busybox-static.
# Also prints the syscalls over 1 ms between exec and KVM_RUN (strace -T of
# one run each way) when strace is present.
set -euo pipefail
# shellcheck source=scripts/lib/bench.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib/bench.sh"
bench_init bench-kvm-run --no-build

runs=15 pause=0.3 baseline='' default_only=0 rt=1
while [ $# -gt 0 ]; do
    bench_common_arg "$1" && { shift; continue; }
    case "$1" in
        --runs) runs=${2:?}; shift 2 ;;
        --pause) pause=${2:?}; shift 2 ;;
        --baseline) baseline=$(realpath "$2"); shift 2 ;;
        --default-only) default_only=1; shift ;;
        --no-rt) rt=0; shift ;;
        *) bench_unknown_arg "$1" ;;
    esac
done
[ "$smoke" = 0 ] || { runs=1 pause=0; }
bench_posint --runs "$runs"
bench_private_state

bench_apt gcc libc6-dev busybox-static
if [ ! -w /dev/kvm ]; then
    echo "bench-kvm-run: /dev/kvm is not writable here; nothing to measure" >&2
    exit 0
fi

bench_scratch smolvm-bench-kvm

scripts/fetch-kernel.sh >/dev/null
[ "$build" = 0 ] || log "building smolvm and the stub (release)"
bench_build smolvm-packer smolvm-stub

# The preload library and the launcher.
cat >"$scratch/kvmrun.c" <<'EOF'
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <fcntl.h>
/* Opened at load, before the VMM's sandbox (which allows no new files). */
static int out_fd = -1;
__attribute__((constructor)) static void open_out(void)
{
    const char *out = getenv("BENCH_OUT");
    if (out)
        out_fd = open(out, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
}
int ioctl(int fd, unsigned long req, ...)
{
    static int (*real)(int, unsigned long, ...);
    va_list ap;
    va_start(ap, req);
    void *arg = va_arg(ap, void *);
    va_end(ap);
    if (req == 0xae80) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        long long now = ts.tv_sec * 1000000000LL + ts.tv_nsec;
        const char *t0 = getenv("BENCH_T0");
        if (t0 && out_fd >= 0) {
            char line[64];
            int n = snprintf(line, sizeof line, "%lld\n", now - atoll(t0));
            (void)!write(out_fd, line, n);
        }
        _exit(0);
    }
    if (!real)
        real = (int (*)(int, unsigned long, ...))dlsym(RTLD_NEXT, "ioctl");
    return real(fd, req, arg);
}
EOF
cat >"$scratch/launch.c" <<'EOF'
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>
#include <sys/wait.h>
/* launch PROG ARGS...: exec -> exit in ns on stdout; BENCH_T0 set for the preload. */
int main(int argc, char **argv)
{
    struct timespec a, b;
    char t0[32];
    (void)argc;
    clock_gettime(CLOCK_MONOTONIC, &a);
    snprintf(t0, sizeof t0, "%lld", a.tv_sec * 1000000000LL + a.tv_nsec);
    setenv("BENCH_T0", t0, 1);
    pid_t p = fork();
    if (p == 0) {
        execv(argv[1], argv + 1);
        _exit(127);
    }
    int st;
    waitpid(p, &st, 0);
    clock_gettime(CLOCK_MONOTONIC, &b);
    printf("%lld %d\n", (b.tv_sec - a.tv_sec) * 1000000000LL + (b.tv_nsec - a.tv_nsec), st);
    return 0;
}
EOF
gcc -O2 -shared -fPIC -o "$scratch/kvmrun.so" "$scratch/kvmrun.c" -ldl
gcc -O2 -o "$scratch/launch" "$scratch/launch.c"

# A small artifact (busybox root), warm: the first start publishes the cache.
bench_busybox_root "$scratch/root" sh
kernel=$(scripts/fetch-kernel.sh | sed -n 's/^libkrunfw.so.5: //p')
"$rel/smolvm" pack keygen -o "$scratch/keys" >/dev/null
"$rel/smolvm" pack create --rootfs "$scratch/root" --kernel "$kernel" \
    --key "$scratch/keys/smolvm.key" --stub "$rel/smolvm-stub" -o "$scratch/machine" >/dev/null
export SMOLVM_CACHE_DIR="$scratch/cache" SMOLVM_SKIP_KVM_CHECK=1
"$scratch/machine" --smolvm-dry-run >/dev/null
kinds="before full split true"
[ "$default_only" = 0 ] || kinds="split true"
if [ -n "$baseline" ]; then
    "$rel/smolvm" pack create --rootfs "$scratch/root" --kernel "$kernel" \
        --key "$scratch/keys/smolvm.key" --stub "$baseline" -o "$scratch/machine-base" >/dev/null
    "$scratch/machine-base" --smolvm-dry-run >/dev/null
    kinds="$kinds base"
fi

measure() { # LABEL ENV... -- PROG: appends one figure (ms) to $scratch/LABEL
    local label=$1 out="$scratch/$1.kvmrun"; shift
    rm -f "$out"
    local wall prio=()
    [ "$rt" = 0 ] || [ "$(id -u)" != 0 ] || prio=(chrt -f 10)
    wall=$("${prio[@]}" env BENCH_OUT="$out" "$@")
    if [ -s "$out" ]; then
        awk '{printf "%.3f\n", $1 / 1e6}' "$out" >>"$scratch/$label"
    else
        echo "$wall" | awk '{printf "%.3f\n", $1 / 1e6}' >>"$scratch/$label"
    fi
}
log "$runs interleaved runs each (load at start: $(cut -d' ' -f1-3 /proc/loadavg))"
for i in $(seq "$runs"); do
    # shellcheck disable=SC2086 # kinds: a word list
    for w in $(interleave $((i + 1)) $kinds); do
        sleep "$pause"
        case $w in
            true) measure true "$scratch/launch" /bin/true ;;
            base) measure base LD_PRELOAD="$scratch/kvmrun.so" "$scratch/launch" "$scratch/machine-base" ;;
            split) measure split LD_PRELOAD="$scratch/kvmrun.so" "$scratch/launch" "$scratch/machine" ;;
            full) measure full SMOLVM_FULL_IRQCHIP=1 LD_PRELOAD="$scratch/kvmrun.so" "$scratch/launch" "$scratch/machine" ;;
            before) measure before SMOLVM_KERNEL_COPY=1 SMOLVM_FULL_IRQCHIP=1 LD_PRELOAD="$scratch/kvmrun.so" "$scratch/launch" "$scratch/machine" ;;
        esac
    done
done
# The minimum (least) beside the median: on a loaded machine (other builds)
# the median moves with the load, the minimum much less.
row() { # LABEL KIND: median, minimum and every run of one kind
    printf '  %-45s %8.2f ms (min %6.2f)   runs: %s\n' "$1" "$(median <"$scratch/$2")" "$(least <"$scratch/$2")" "$(runs_list <"$scratch/$2")"
}
m_split=$(median <"$scratch/split")
echo
echo "exec -> first KVM_RUN, warm cache, busybox root + libkrunfw kernel, median of $runs, ${pause}s apart ($(nproc) cpus, load $(cut -d' ' -f1 /proc/loadavg))"
row "/bin/true (exec -> exit)" true
if [ "$default_only" = 0 ]; then
    row "before: kernel copy, full irqchip" before
    row "zero-copy kernel, full irqchip" full
fi
row "default: zero-copy kernel, split irqchip" split
if [ "$default_only" = 0 ]; then
    awk -v b="$(median <"$scratch/before")" -v s="$m_split" 'BEGIN {printf "  before/default %.2fx\n", b / s}'
fi
awk -v s="$m_split" 'BEGIN {printf "  budget: default <= 5 ms: %s\n", (s <= 5 ? "met" : "MISSED")}'
if [ -n "$baseline" ]; then
    row "baseline stub ($(basename "$baseline")), default path" base
    m_base=$(median <"$scratch/base")
    awk -v b="$m_base" -v s="$m_split" -v bm="$(least <"$scratch/base")" -v sm="$(least <"$scratch/split")" \
        'BEGIN {printf "  default/baseline %.2fx (%+.2f ms); minimums %.2fx (%+.2f ms)\n", s / b, s - b, sm / bm, sm - bm}'
fi

if command -v strace >/dev/null; then
    echo
    echo "syscalls over 1 ms between exec and KVM_RUN (strace -f -T, one run each):"
    for w in default before; do
        env_copy=(SMOLVM_TRACE=0)
        [ "$w" = before ] && env_copy=(SMOLVM_KERNEL_COPY=1 SMOLVM_FULL_IRQCHIP=1)
        env "${env_copy[@]}" BENCH_T0=0 BENCH_OUT=/dev/null LD_PRELOAD="$scratch/kvmrun.so" \
            strace -f -T -o "$scratch/strace.$w" "$scratch/machine" >/dev/null 2>&1 || true
        echo "  $w:"
        awk -F'<' '/<[0-9.]+>$/ {t=$NF; sub(/>$/, "", t); if (t + 0 > 0.001) {sub(/^[0-9]+ +/, "", $1); printf "    %7.2f ms  %.70s\n", t * 1000, $1}}' \
            "$scratch/strace.$w" | sort -rn | head -8
    done
fi

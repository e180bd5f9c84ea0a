#!/usr/bin/env bash
# Guest-side read of every file of a real root (Debian bookworm minbase):
# the packed executable's root (EROFS image on a read-only virtio-blk disk,
# overlay on top) vs the same tree as a plain virtio-fs root (the tar path's
# way, booted by runtime/examples/bare_boot.rs), timed inside the guest, in
# one L1 boot of the real-boot harness (tests/harness/README.md). Prints
# per-run times, medians and the ratio; never fails on a figure.
#
# Usage: scripts/bench-guest-read.sh [--runs N] [--mem MIB] [--no-build] [--keep] [--smoke]
#   --runs N     interleaved runs of each side (default 1: under TCG one
#                virtio-fs read of the tree takes ~5 min, one EROFS read ~1-3 min;
#                budget ~15 min per N)
#   --mem MIB    L1 memory (default 3072: the tree, the artifact, its cached
#                image and kernel, and a 512 MiB L2 guest all live in RAM)
#   --no-build   use the release smolvm, smolvm-stub and examples/bare_boot
#                as they are (target/release, or $CARGO_TARGET_DIR/release)
#   --keep       keep the scratch directory (L1 console log inside)
#   --smoke      one run of each side reading only /etc of a pruned tree
#                (CI: scripts/bench-smoke.sh); not a measurement
#
# Both guests run the same script, /usr/local/bin/smolbench-read, added to
# the tree before it is packed and copied (so both roots hold the very same
# files):
#   find / -xdev -type f -print0 | xargs -0 cat >/dev/null
# timed with the guest's GNU date, then counts the files and bytes it read.
#   erofs:    ./debian               (packed --rootfs-compression lz4; cache
#                                     warmed by a dry run first)
#   erofs-none: ./debian-none        (the same, --rootfs-compression none,
#                                     the default)
#   virtiofs: ./bare_boot KERNEL /tmp/debroot -- /bin/sh /usr/local/bin/smolbench-read
# Both run with RLIMIT_NOFILE 65536 in L1: at the default 1024 the virtio-fs
# side fails part-way (EMFILE, see the scenario script).
# KERNEL is the kernel ELF the packed executable cached, /tmp/debroot the
# tree unpacked in L1 (busybox tar as root: owners, modes, device nodes
# kept). Each boot is a fresh guest, so the guest page cache starts cold on
# both sides; on the L1 side both the image and the tree are in tmpfs (RAM).
# 1 vCPU, 512 MiB each. Nothing here has a target: the figure is the ratio.
# Needs: scripts/setup-harness.sh (run here if anything is missing), the
# guest kernel (scripts/fetch-kernel.sh), scripts/debian-root.sh, root.
# Scratch space: ~600 MB under ${TMPDIR:-/tmp}, removed at exit.
set -euo pipefail
# shellcheck source=scripts/lib/bench.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib/bench.sh"
bench_init bench-guest-read.sh --no-build

runs=1 mem=3072
while [ $# -gt 0 ]; do
    bench_common_arg "$1" && { shift; continue; }
    case $1 in
        --runs) runs=${2:?}; shift 2 ;;
        --mem) mem=${2:?}; shift 2 ;;
        *) bench_unknown_arg "$1" ;;
    esac
done
# What the guests read: every file of the root; a smoke run reads /etc of a
# root without /usr/share, /var, gconv and perl (a few hundred files).
read_dir=/
[ "$smoke" = 0 ] || { runs=1 read_dir=/etc; }
bench_posint --runs "$runs"
bench_posint --mem "$mem"
bench_need_root

scripts/setup-harness.sh >&2
scripts/fetch-kernel.sh >/dev/null
debian_tar=$(scripts/debian-root.sh)
[ "$build" = 0 ] || log "building smolvm, the stub and the bare_boot example (release)"
bench_build smolvm-packer smolvm-stub example:smolvm-runtime:bare_boot
smolvm=$rel/smolvm
stub=$rel/smolvm-stub
bare=$rel/examples/bare_boot
kernel=$repo/.cache/kernel/libkrunfw.so.5
bench_files "$smolvm" "$stub" "$bare" "$kernel" "$debian_tar"

bench_scratch smolvm-bench-guest-read
tmp=$scratch

# --- the tree, the artifact, what L1 gets ---------------------------------------
tree=$tmp/tree files=$tmp/files
mkdir -p "$tree" "$files"
zstd -dc "$debian_tar" | tar --numeric-owner --xattrs -C "$tree" -x
if [ "$smoke" = 1 ]; then
    rm -rf "${tree:?}/usr/share" "$tree/var/cache" "$tree/var/lib" "$tree/var/log" \
        "$tree/usr/lib/x86_64-linux-gnu/gconv" "$tree"/usr/lib/x86_64-linux-gnu/perl*
fi
mkdir -p "$tree/usr/local/bin"
cat >"$tree/usr/local/bin/smolbench-read" <<'EOF'
#!/bin/sh
# Read every regular file under DIR (default: this root) once; print the time taken.
PATH=/usr/sbin:/usr/bin:/sbin:/bin
export PATH
dir=${1:-/}
t0=$(date +%s%N)
find "$dir" -xdev -type f -print0 | xargs -0 cat >/dev/null
rc=$?
t1=$(date +%s%N)
files=$(find "$dir" -xdev -type f | wc -l)
bytes=$(find "$dir" -xdev -type f -printf '%s\n' | awk '{ s += $1 } END { print s }')
echo "@@READ ns=$((t1 - t0)) rc=$rc files=$files bytes=$bytes@@"
EOF
chmod 755 "$tree/usr/local/bin/smolbench-read"
cat >"$tmp/Smolfile" <<'EOF'
entrypoint = ["/bin/sh"]
cmd = ["/usr/local/bin/smolbench-read"]
cpus = 1
memory = 512
[artifact]
name = "debian-read"
version = "1.0.0"
EOF
"$smolvm" pack keygen -o "$tmp/keys" >/dev/null
"$smolvm" pack create --smolfile "$tmp/Smolfile" --rootfs "$tree" --kernel "$kernel" \
    --key "$tmp/keys/smolvm.key" --stub "$stub" --rootfs-compression lz4 \
    -o "$files/debian" >/dev/null
# The same with the image's file data as is (the default).
"$smolvm" pack create --smolfile "$tmp/Smolfile" --rootfs "$tree" --kernel "$kernel" \
    --key "$tmp/keys/smolvm.key" --stub "$stub" --rootfs-compression none \
    -o "$files/debian-none" >/dev/null
tar --numeric-owner --xattrs -C "$tree" -c . >"$files/debian.tar"
tree_bytes=$(du -sb "$tree" | cut -f1)
rm -rf "$tree"
cp "$bare" "$files/bare_boot"
cp "$(command -v date)" "$files/date"   # GNU date: %N (busybox date has no sub-second)

cat >"$tmp/scenarios.sh" <<EOF
export SMOLVM_CACHE_DIR=/tmp/smolcache
runs=$runs dir=$read_dir
EOF
cat >>"$tmp/scenarios.sh" <<'EOF'
# libkrun's virtio-fs passthrough holds an O_PATH descriptor for every inode
# the guest has looked up, and libkrun does not raise RLIMIT_NOFILE: at L1's
# default (1024 soft, 4096 hard) the guest's walk gets EMFILE ("Too many open
# files") after ~1000 entries and reads a third of the tree. The same limit
# is the usual soft default on hosts. Both sides run with a high limit, so
# the virtio-fs side reads the whole tree (the EROFS side needs none).
printf '\n@@BENCH-NOFILE default soft=%s hard=%s@@\n' "$(ulimit -Sn)" "$(ulimit -Hn)"
ulimit -n 65536
# timed LABEL I CMD...: one run, stdin /dev/null, output to a file; prints
# the wall time in L1 and the guest's @@READ line.
timed() {
    label=$1 i=$2
    shift 2
    t0=$(./date +%s.%N)
    rc=0
    "$@" </dev/null >/tmp/bench.out 2>&1 || rc=$?
    t1=$(./date +%s.%N)
    read_line=$(tr -d '\r' </tmp/bench.out | grep -o '@@READ [^@]*@@' | tail -n 1)
    printf '\n@@BENCH %s %s rc=%s t0=%s t1=%s %s@@\n' "$label" "$i" "$rc" "$t0" "$t1" "$(echo "$read_line" | sed 's/^@@READ //; s/@@$//')"
    if [ -z "$read_line" ]; then
        echo "@@BENCH-OUTPUT-BEGIN@@"; tail -n 30 /tmp/bench.out; echo "@@BENCH-OUTPUT-END@@"
    fi
}
mkdir -p /tmp/debroot
t0=$(./date +%s.%N)
tar -x -f debian.tar -C /tmp/debroot
rm -f debian.tar
t1=$(./date +%s.%N)
printf '\n@@BENCH-UNTAR t0=%s t1=%s@@\n' "$t0" "$t1"
# First start: writes the image into the cache (not a measured run).
t0=$(./date +%s.%N)
rc=0
SMOLVM_DRY_RUN=1 SMOLVM_TRACE=1 ./debian </dev/null >/tmp/first.out 2>&1 || rc=$?
SMOLVM_DRY_RUN=1 ./debian-none </dev/null >/dev/null 2>&1 || rc=$?
t1=$(./date +%s.%N)
printf '\n@@BENCH-FIRST rc=%s t0=%s t1=%s@@\n' "$rc" "$t0" "$t1"
cat /tmp/first.out
kernel=$(ls /tmp/smolcache/kernel/*.elf)
printf '\n@@BENCH-FILES kernel=%s@@\n' "$kernel"
free -m
i=1
while [ "$i" -le "$runs" ]; do
    if [ $((i % 2)) = 1 ]; then
        timed erofs "$i" ./debian /usr/local/bin/smolbench-read "$dir"
        timed erofs-none "$i" ./debian-none /usr/local/bin/smolbench-read "$dir"
        timed virtiofs "$i" ./bare_boot --mem 512 --cpus 1 "$kernel" /tmp/debroot -- /bin/sh /usr/local/bin/smolbench-read "$dir"
    else
        timed virtiofs "$i" ./bare_boot --mem 512 --cpus 1 "$kernel" /tmp/debroot -- /bin/sh /usr/local/bin/smolbench-read "$dir"
        timed erofs-none "$i" ./debian-none /usr/local/bin/smolbench-read "$dir"
        timed erofs "$i" ./debian /usr/local/bin/smolbench-read "$dir"
    fi
    i=$((i + 1))
done
free -m
EOF

load_start=$(cut -d' ' -f1-3 /proc/loadavg)
log "booting L1 ($runs runs of each side; TCG: several minutes)"
rc=0
tests/harness/run-l1.sh --files "$files" --script "$tmp/scenarios.sh" --mem "$mem" \
    --timeout $((300 + runs * 1200)) >"$tmp/console.log" 2>"$tmp/run-l1.err" || rc=$?
load_end=$(cut -d' ' -f1-3 /proc/loadavg)
partial=""
if [ "$rc" = 5 ] && grep -q '^@@BENCH [a-z-]* [0-9]* rc=' "$tmp/console.log"; then
    # Timed out part-way: the runs that finished are still figures.
    partial=" (PARTIAL: run-l1.sh timed out; only the runs that finished are shown)"
    log "run-l1.sh timed out; reporting the runs that finished"
elif [ "$rc" != 0 ]; then
    tail -n 40 "$tmp/console.log" >&2
    cat "$tmp/run-l1.err" >&2
    die "run-l1.sh exited $rc (console: $tmp/console.log$([ "$keep" = 1 ] || echo ', deleted; use --keep'))"
fi

# --- report --------------------------------------------------------------------
# label i rc wall_s read_s files bytes guest_rc (the guest's xargs status)
bench=$(grep '^@@BENCH [a-z-]* [0-9]* rc=' "$tmp/console.log" | sed 's/^@@BENCH //; s/@@$//' |
    awk '{ split($3, r, "="); split($4, a, "="); split($5, b, "="); ns = "nan"; f = "?"; by = "?"; g = "?"
           for (k = 6; k <= NF; k++) { split($k, kv, "=")
               if (kv[1] == "ns") ns = kv[2] / 1e9; if (kv[1] == "files" && kv[2] != "") f = kv[2]
               if (kv[1] == "bytes" && kv[2] != "") by = kv[2]; if (kv[1] == "rc") g = kv[2] }
           if (g != "0") ns = "nan"   # a read that failed part-way is no figure
           printf "%s %s %s %.2f %s %s %s %s\n", $1, $2, r[2], b[2] - a[2], ns, f, by, g }')
[ -n "$bench" ] || { tail -n 40 "$tmp/console.log" >&2; die "no @@BENCH markers in the L1 console"; }
if grep -q '@@BENCH-OUTPUT-BEGIN@@' "$tmp/console.log"; then
    log "some runs printed no @@READ line; their output:"
    sed -n '/@@BENCH-OUTPUT-BEGIN@@/,/@@BENCH-OUTPUT-END@@/p' "$tmp/console.log" >&2
fi
# A smoke run fails when a side did not read: the bench is broken then.
if [ "$smoke" = 1 ] && awk '$8 != "0" { bad = 1 } END { exit !bad }' <<<"$bench"; then
    printf '%s\n' "$bench" >&2
    die "smoke: a guest read failed (label i rc wall read files bytes guest-rc above)"
fi
col() { awk -v l="$1" -v c="$2" '$1 == l { print $c }' <<<"$bench"; }
me=$(col erofs 5 | median) mv=$(col virtiofs 5 | median) mn=$(col erofs-none 5 | median)
ratio=$(awk -v a="$me" -v b="$mv" 'BEGIN { if (a == "nan" || b == "nan") print "n/a"; else printf "%.2f", a / b }')
span() { awk -v s="$1" 'BEGIN { split(s, t, " "); printf "%.1f", t[2] - t[1] }'; }
untar=$(grep -o '@@BENCH-UNTAR [^@]*@@' "$tmp/console.log" | sed 's/.*t0=\([0-9.]*\) t1=\([0-9.]*\).*/\1 \2/')
first=$(grep -o '@@BENCH-FIRST [^@]*@@' "$tmp/console.log" | sed 's/.*t0=\([0-9.]*\) t1=\([0-9.]*\).*/\1 \2/')
counts_e=$(col erofs 6 | sort -u | tr '\n' ' ') counts_v=$(col virtiofs 6 | sort -u | tr '\n' ' ')
cat <<EOF

== guest read of every file under $read_dir: EROFS disk + overlay (packed) vs virtio-fs root (bare libkrun)$partial ==
L1: QEMU TCG, $(sed 's/ .*//' .cache/harness/kernel-version), $mem MiB; L2: 1 vCPU, 512 MiB; tree $(awk -v b="$tree_bytes" 'BEGIN { printf "%.1f", b / 1e6 }') MB
L1 set-up: untar of the tree $(span "${untar:-0 0}") s; first start of the packed executable (dry run, writes the image) $(span "${first:-0 0}") s
run  side       rc  boot+read (L1 wall, s)  read in guest (s)  files  bytes       guest xargs rc
$(awk '{ printf "%3s  %-9s %3s  %22s  %17s  %5s  %-10s  %s\n", $2, $1, $3, $4, ($5 == "nan") ? "failed" : sprintf("%.2f", $5), $6, $7, $8 }' <<<"$bench")
median read in guest (runs whose read succeeded): erofs (--rootfs-compression lz4) $(printf '%.2f' "$me") s   virtio-fs $(printf '%.2f' "$mv") s   ratio lz4/virtio-fs $ratio
  (below 1: the EROFS root reads faster)
erofs with --rootfs-compression none (the default): $(printf '%.2f' "$mn") s   ratio none/virtio-fs $(awk -v a="$mn" -v b="$mv" 'BEGIN { if (a == "nan" || b == "nan") print "n/a"; else printf "%.2f", a / b }')   ratio lz4/none $(awk -v a="$me" -v b="$mn" 'BEGIN { if (a == "nan" || b == "nan") print "n/a"; else printf "%.2f", a / b }')
  (under TCG the guest's LZ4 decompression is emulated too; on KVM it runs at native speed)
files read: erofs $counts_e  virtio-fs $counts_v$([ "$counts_e" = "$counts_v" ] || echo '  (DIFFER: the two roots do not show the same files)')
median boot+read wall in L1: erofs (lz4) $(printf '%.1f' "$(col erofs 4 | median)") s   virtio-fs $(printf '%.1f' "$(col virtiofs 4 | median)") s
L1 RLIMIT_NOFILE: $(grep -o '@@BENCH-NOFILE [^@]*@@' "$tmp/console.log" | sed 's/@@BENCH-NOFILE //; s/@@$//'), raised to 65536 for both sides
host load average (1/5/15 min): at start $load_start, at end $load_end
EOF

#!/usr/bin/env bash
# The EROFS root filesystem on a real root (Debian bookworm minbase), each
# figure beside the baseline of the tar path it replaced, with the ratio and
# the goal. Prints; never fails on a figure.
#
# Usage: scripts/bench-rootfs.sh [--runs N] [--no-build] [--keep] [--skip-pack] [--skip-stub] [--smoke]
#   --runs N      interleaved cold repetitions (default 5); also bench-pack.sh's
#                 --runs and bench-stub.sh's --cold-reps
#   --no-build    use target/release/smolvm and target/release/smolvm-stub as they are
#   --keep        keep the scratch directory (its path is printed)
#   --skip-pack   do not run scripts/bench-pack.sh (b)
#   --skip-stub   do not run scripts/bench-stub.sh (c)
#   --smoke       one repetition, 1 warm round of 2 runs, neither (b) nor (c)
#                 (CI: scripts/bench-smoke.sh smokes those on their own);
#                 not a measurement
#
# (a) first start of the Debian root, a cold `ARTIFACT --smolvm-dry-run`
#     whose cache holds only the kernel file (so it writes just the rootfs
#     image: zstd stream, SHA-256 checked while writing), vs what the tar
#     path did, as root: `zstd -d -c ROOT.tar.zst | tar -x -C EMPTY_DIR`
#     with ROOT.tar.zst made by `tar -c . | zstd -3` of the same tree.
#     Two stub figures: the wait before the VM starts (exec to the trace's
#     "entering the VM": a real start boots from the verified image while
#     its supervisor publishes it), and the dry run's whole wall time, which
#     also waits for the publish (fsync, rename).      goal: >= 2x faster
#     Also: MB/s of image written, the fsync share (strace -T, separate runs),
#     `zstd -d` of the very section to /dev/null (the decompression floor),
#     and the warm dry run of the same artifact vs /bin/true.
# (b) artifact size (goal <= 1.05x of tar | zstd -3) and pack create time
#     (goal <= 1.1x of tar | zstd -T0 -3): scripts/bench-pack.sh.
# (c) warm start <= 5 ms and flat in artifact size, first start of random
#     data vs zstd | tar: scripts/bench-stub.sh.
#
# Medians; repetitions alternate the order of the commands so drifting
# machine load hits all of them alike. Each cold run writes into a new
# directory after a `sync`, so no run pays for another's writeback; outputs
# are removed only at the end: on ext4 without a journal (these machines),
# inode allocation skips, one by one, inodes deleted in the last 60-360 s
# (ext4 `recently_deleted`), and extracting 6,675 files right after deleting
# the previous 6,675 took 5-10 s of system time instead of ~1 s. A run
# started within minutes of another (which deletes its scratch at exit) can
# still meet it: the baseline's system time is printed, with a warning when
# it is that. The load average seen during the runs is printed too: other
# work on the machine moves every figure. (c) runs before (b).
# Needs root (the tree has device nodes and root-owned files). Installs
# (apt) if missing: hyperfine zstd jq strace.
# Scratch space: ~0.5 GB + 0.36 GB per --runs under ${TMPDIR:-/tmp}, removed at exit.
set -euo pipefail
# shellcheck source=scripts/lib/bench.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib/bench.sh"
bench_init bench-rootfs.sh --no-build

runs=5 do_pack=1 do_stub=1
while [ $# -gt 0 ]; do
    bench_common_arg "$1" && { shift; continue; }
    case $1 in
        --runs) runs=${2:?}; shift 2 ;;
        --skip-pack) do_pack=0; shift ;;
        --skip-stub) do_stub=0; shift ;;
        *) bench_unknown_arg "$1" ;;
    esac
done
# Smoke: bench-stub.sh and bench-pack.sh are smoked on their own.
[ "$smoke" = 0 ] || { runs=1 do_pack=0 do_stub=0; }
bench_posint --runs "$runs"
bench_need_root
bench_private_state
bench_apt hyperfine zstd jq strace

scripts/fetch-kernel.sh >/dev/null
debian_tar=$(scripts/debian-root.sh)
[ "$build" = 0 ] || log "building smolvm and the stub (release)"
bench_build smolvm-packer smolvm-stub
smolvm=$rel/smolvm
stub=$rel/smolvm-stub
kernel=$repo/.cache/kernel/libkrunfw.so.5
bench_files "$smolvm" "$stub" "$kernel" "$debian_tar"

bench_scratch smolvm-bench-rootfs
tmp=$scratch

# --- helpers ---------------------------------------------------------------
elapsed() { awk -v a="$1" -v b="$2" 'BEGIN { print b - a }'; }
ms() { awk -v x="$1" 'BEGIN { if (x == "nan" || x == "") print "n/a"; else printf "%.0f", x * 1000 }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a == "nan" || b == "nan" || b == 0) print "n/a"; else printf "%.2f", a / b }'; }
mbps() { awk -v b="$1" -v t="$2" 'BEGIN { if (t == "nan" || t <= 0) print "n/a"; else printf "%.0f", b / t / 1e6 }'; }
mb() { awk -v b="$1" 'BEGIN { printf "%.1f", b / 1e6 }'; }
verdict() { awk -v x="$1" -v t="$2" -v op="$3" 'BEGIN { if (x == "n/a") { print "n/a"; exit } ok = (op == "le") ? x <= t : x >= t; print ok ? "met" : "MISSED" }'; }
loads=()
note_load() { local l1 _; read -r l1 _ </proc/loadavg; loads+=("$l1"); }
load_range() { printf '%s\n' "$@" | sort -g | awk 'NR == 1 { lo = $1 } { hi = $1 } END { printf "%s-%s", lo, hi }'; }
# SECONDS between two SMOLVM_TRACE marks (first line matching each pattern).
phase() {
    awk -v a="$2" -v b="$3" '
        $1 == "smolvm-trace:" { t = $2; $1 = $2 = $3 = ""; sub(/^ +/, "")
            if (ta == "" && index($0, a) == 1) ta = t
            if (tb == "" && index($0, b) == 1) tb = t }
        END { if (ta == "" || tb == "") print "nan"; else print (tb - ta) / 1000 }' "$1"
}

note_load
start_load=$(cat /proc/loadavg)

# --- inputs ------------------------------------------------------------------
log "extracting the Debian tree and packing it (scratch: $tmp)"
tree=$tmp/tree
mkdir -p "$tree"
zstd -dc "$debian_tar" | tar --numeric-owner --xattrs -C "$tree" -x
tree_bytes=$(du -sb "$tree" | cut -f1)
tree_entries=$(find "$tree" | wc -l)
"$smolvm" pack keygen -o "$tmp/keys" >/dev/null
"$smolvm" pack create --rootfs "$tree" --kernel "$kernel" --key "$tmp/keys/smolvm.key" \
    --stub "$stub" -o "$tmp/debian" >/dev/null
art=$tmp/debian
# The same tree with the file data LZ4-compressed in the image, for the side-by-side figure.
"$smolvm" pack create --rootfs "$tree" --kernel "$kernel" --key "$tmp/keys/smolvm.key" \
    --stub "$stub" --rootfs-compression lz4 -o "$tmp/debian-lz4" >/dev/null
art_lz4=$tmp/debian-lz4
lz4_size=$("$smolvm" pack inspect --json "$art_lz4" | jq -r '.sections[] | select(.kind == "rootfs") | .size')
"$smolvm" pack inspect --json "$art" >"$tmp/art.json"
sec() { jq -r --arg k "$1" ".sections[] | select(.kind == \$k) | .$2" "$tmp/art.json"; }
img_size=$(sec rootfs size) img_stored=$(sec rootfs stored_len) img_sha=$(sec rootfs sha256)
off=$(sec rootfs offset)
tail -c +$((off + 1)) "$art" | head -c "$img_stored" >"$tmp/section.zst"
[ "$(sha256sum <"$tmp/section.zst" | cut -d' ' -f1)" = "$img_sha" ] \
    || die "extracted rootfs section does not match its manifest hash (offset/stored_len wrong?)"
head -c 4 "$tmp/section.zst" | od -An -tx1 | grep -q '28 b5 2f fd' || die "the rootfs section is not zstd"
# The old path's input: the same tree as a tar, zstd level 3.
tar --numeric-owner --xattrs -C "$tree" -c . | zstd -q -3 -o "$tmp/root.tar.zst"
tar_bytes=$(zstd -dc "$tmp/root.tar.zst" | wc -c)
tar_zst_bytes=$(stat -c %s "$tmp/root.tar.zst")

# A cache holding only the kernel: each cold repetition starts from a copy.
SMOLVM_CACHE_DIR=$tmp/cache-prime "$art" --smolvm-dry-run
kfile=$tmp/cache-prime/kernel/$(sec kernel sha256).elf
[ -f "$kfile" ] || die "priming did not produce $kfile"
image_file() { echo "$1/rootfs/$img_sha.erofs"; }
[ "$(stat -c %s "$(image_file "$tmp/cache-prime")")" = "$img_size" ] \
    || die "the first start did not write a $img_size-byte image at $(image_file "$tmp/cache-prime")"
# Sanity: the image is EROFS (superblock magic 0xE0F5E1E2 at byte 1024).
[ "$(od -An -tx4 -j 1024 -N 4 "$(image_file "$tmp/cache-prime")" | tr -d ' ')" = e0f5e1e2 ] \
    || log "warning: the cached image has no EROFS superblock magic at byte 1024"

# --- (a) cold first start vs zstd -d | tar -x ---------------------------------
# A new cache directory per run, kept to the end (see the header on ext4).
ncache=0
fresh_cache() {
    ncache=$((ncache + 1))
    cold=$tmp/cold.$ncache
    mkdir -m 700 "$cold"
    mkdir "$cold/kernel"
    cp "$kfile" "$cold/kernel/"
    sync
}
cold_stub=() cold_enter=() cold_write=() cold_base=() cold_zstd=() fs_sync=()
cpu_stub=() cpu_base=() sys_base=()
# Wall, user and system seconds of a command (bash's `time`, children included).
TIMEFORMAT='%3R %3U %3S'
cpu_of() { awk '{ print $2 + $3 }' "$tmp/time.out"; }
sys_of() { awk '{ print $3 }' "$tmp/time.out"; }
run_stub() {
    fresh_cache
    { time SMOLVM_CACHE_DIR=$cold SMOLVM_TRACE=1 "$art" --smolvm-dry-run 2>"$tmp/cold-trace"; } 2>"$tmp/time.out"
    [ -f "$(image_file "$cold")" ] || die "the cold run wrote no image"
    cold_stub+=("$(cut -d' ' -f1 "$tmp/time.out")")
    cpu_stub+=("$(cpu_of)")
    cold_write+=("$(phase "$tmp/cold-trace" "kernel ready" "rootfs ready")")
    # The trace counts from the stub's start; exec itself is ~1 ms more.
    cold_enter+=("$(phase "$tmp/cold-trace" "stub started" "entering the VM")")
}
cold_lz4=() enter_lz4=()
run_stub_lz4() {
    fresh_cache
    { time SMOLVM_CACHE_DIR=$cold SMOLVM_TRACE=1 "$art_lz4" --smolvm-dry-run 2>"$tmp/cold-trace-lz4"; } 2>"$tmp/time.out"
    cold_lz4+=("$(cut -d' ' -f1 "$tmp/time.out")")
    enter_lz4+=("$(phase "$tmp/cold-trace-lz4" "stub started" "entering the VM")")
}
nbase=0
run_base() {
    nbase=$((nbase + 1))
    local base=$tmp/base.$nbase
    mkdir "$base"
    sync
    { time zstd -d -c "$tmp/root.tar.zst" | tar -x -C "$base"; } 2>"$tmp/time.out"
    cold_base+=("$(cut -d' ' -f1 "$tmp/time.out")")
    cpu_base+=("$(cpu_of)")
    sys_base+=("$(sys_of)")
}
run_zstd() {
    local t0 t1
    t0=$(now)
    zstd -d -q -c "$tmp/section.zst" >/dev/null
    t1=$(now)
    cold_zstd+=("$(elapsed "$t0" "$t1")")
}
# fsync's part, in runs of their own (strace stops the stub at each fsync only).
run_strace() {
    fresh_cache
    SMOLVM_CACHE_DIR=$cold SMOLVM_TRACE=1 strace -f --seccomp-bpf -T -e trace=fsync,fdatasync,syncfs \
        -o "$tmp/strace.out" "$art" --smolvm-dry-run 2>"$tmp/strace-trace"
    fs_sync+=("$(grep -o '<[0-9.]*>$' "$tmp/strace.out" | tr -d '<>' | awk '{ s += $1 } END { print s + 0 }')")
}
log "cold runs: $runs interleaved repetitions of stub / zstd|tar / zstd -d / stub under strace"
for r in $(seq 1 "$runs"); do
    for what in $(interleave "$r" run_stub run_base run_stub_lz4 run_zstd run_strace); do "$what"; done
    note_load
done
cs=$(printf '%s\n' "${cold_stub[@]}" | median)
ce=$(printf '%s\n' "${cold_enter[@]}" | median)
cn=$(printf '%s\n' "${cold_lz4[@]}" | median) en=$(printf '%s\n' "${enter_lz4[@]}" | median)
speedup_enter=$(ratio "$(printf '%s\n' "${cold_base[@]}" | median)" "$ce")
cw=$(printf '%s\n' "${cold_write[@]}" | median)
cb=$(printf '%s\n' "${cold_base[@]}" | median)
cz=$(printf '%s\n' "${cold_zstd[@]}" | median)
fsy=$(printf '%s\n' "${fs_sync[@]}" | median)
ucs=$(printf '%s\n' "${cpu_stub[@]}" | median) ucb=$(printf '%s\n' "${cpu_base[@]}" | median)
scb=$(printf '%s\n' "${sys_base[@]}" | median)
fs=$(printf '%s\n' "${cold_stub[@]}" | least) fb=$(printf '%s\n' "${cold_base[@]}" | least)
speedup=$(ratio "$cb" "$cs")
list_ms() { printf ' %s' "$(for x in "$@"; do ms "$x"; done | runs_list)"; }

# Warm: the same artifact, cache full, vs exec'ing /bin/true.
SMOLVM_CACHE_DIR=$tmp/cache-prime "$art" --smolvm-dry-run
warm_rounds=3 warm_runs=30
[ "$smoke" = 0 ] || warm_rounds=1 warm_runs=2
for r in $(seq "$warm_rounds"); do
    if [ $((r % 2)) = 1 ]; then set -- -n true /bin/true -n stub "$art --smolvm-dry-run"
    else set -- -n stub "$art --smolvm-dry-run" -n true /bin/true; fi
    SMOLVM_CACHE_DIR=$tmp/cache-prime hyperfine -N --style none --warmup 3 --runs "$warm_runs" \
        --export-json "$tmp/warm-$r.json" "$@" >/dev/null 2>&1 || log "warning: hyperfine failed (warm runs)"
done
warm_of() { jq -r --arg n "$1" '.results[] | select(.command == $n) | .times[]' "$tmp"/warm-*.json 2>/dev/null | median; }
wt=$(warm_of true) ws=$(warm_of stub)
note_load

# --- report (a) ------------------------------------------------------------------
cat <<EOF

== EROFS root filesystem, Debian bookworm minbase ($(nproc) cpus, $(uname -r); medians of $runs interleaved runs) ==
tree: $(mb "$tree_bytes") MB in $tree_entries entries; image $(mb "$img_size") MB, stored $(mb "$img_stored") MB (zstd);
tar $(mb "$tar_bytes") MB, tar.zst -3 $(mb "$tar_zst_bytes") MB

(a) first start: publish the rootfs image (cache holds the kernel only) vs extracting the tar.zst
    baseline zstd -d -c | tar -x (root)   $(ms "$cb") ms   $(mbps "$tar_bytes" "$cb") MB/s of tar   runs (ms):$(list_ms "${cold_base[@]}")
    stub cold, wait before the VM starts  $(ms "$ce") ms   $(mbps "$img_size" "$ce") MB/s of image  runs (ms):$(list_ms "${cold_enter[@]}")
    speed-up baseline/wait                $speedup_enter x   goal >= 2x: $(verdict "$speedup_enter" 2 ge)
    stub cold --smolvm-dry-run, whole     $(ms "$cs") ms   (also waits for the publish: fsync, rename)  runs (ms):$(list_ms "${cold_stub[@]}")
    speed-up baseline/whole dry run       $speedup x
    --rootfs-compression lz4 ($(mb "$lz4_size") MB image): wait $(ms "$en") ms ($(ratio "$cb" "$en") x), whole dry run $(ms "$cn") ms ($(ratio "$cb" "$cn") x)
      runs (ms), wait:$(list_ms "${enter_lz4[@]}"); whole:$(list_ms "${cold_lz4[@]}")
    fastest runs: baseline $(ms "$fb") ms, stub $(ms "$fs") ms, speed-up $(ratio "$fb" "$fs") x
    cpu time (user+sys, medians): baseline $(ms "$ucb") ms (of it system $(ms "$scb") ms), stub $(ms "$ucs") ms;
      the rest of each wall time is waiting (disk, other processes)$(awk -v s="$scb" 'BEGIN { if (s > 3) printf "\n      WARNING: the baseline spent %.1f s in the kernel: ext4 was skipping recently deleted inodes\n      (files deleted on this filesystem in the last minutes, e.g. by an earlier run): its figures are inflated", s }')
    stub phases: image write and verify (kernel ready -> rootfs ready) $(ms "$cw") ms = $(mbps "$img_size" "$cw") MB/s of image;
      the rest of the dry run (exec, verify, kernel check, publish, process exit) $(ms "$(awk -v a="$cs" -v b="$cw" 'BEGIN { print a - b }')") ms
    fsync of the publish (strace -T, $runs separate runs): $(ms "$fsy") ms; a real start's supervisor
      does it while the VM boots, the dry run waits for it (in its whole time above)
    decompression floor: zstd -d -c SECTION >/dev/null $(ms "$cz") ms ($(mbps "$img_size" "$cz") MB/s of image, one thread)
    last cold trace:
$(sed 's/^/      /' "$tmp/cold-trace")

    warm start, same artifact, cache full ($warm_rounds rounds x $warm_runs hyperfine runs):
      stub --smolvm-dry-run $(awk -v x="$ws" 'BEGIN { printf "%.2f", x * 1000 }') ms vs /bin/true $(awk -v x="$wt" 'BEGIN { printf "%.2f", x * 1000 }') ms: +$(awk -v a="$ws" -v b="$wt" 'BEGIN { printf "%.2f", (a - b) * 1000 }') ms   goal <= 5 ms: $(verdict "$(awk -v x="$ws" 'BEGIN { print x * 1000 }')" 5 le)

    load average (1 min) during (a): $(load_range "${loads[@]}") on $(nproc) cpus; at start: $start_load
EOF

# --- (c) and (b): the existing benchmarks ------------------------------------------
# (c) first: its timed extractions create files, and (a)'s outputs are only
# deleted at exit (see the header on ext4); bench-pack.sh times no file creation.
if [ "$do_stub" = 1 ]; then
    echo
    echo "(c) warm start and first start of random data: scripts/bench-stub.sh --no-build --cold-reps $runs (load at start: $(cut -d' ' -f1-3 /proc/loadavg))"
    scripts/bench-stub.sh --no-build --cold-reps "$runs" 2>&1 | sed 's/^/    /' \
        || echo "    bench-stub.sh failed (exit ${PIPESTATUS[0]})"
    echo "    (load at end: $(cut -d' ' -f1-3 /proc/loadavg))"
fi
if [ "$do_pack" = 1 ]; then
    echo
    echo "(b) artifact size and pack create time: scripts/bench-pack.sh --runs $runs (load at start: $(cut -d' ' -f1-3 /proc/loadavg))"
    SMOLVM_BIN=$smolvm scripts/bench-pack.sh --runs "$runs" 2>&1 | sed 's/^/    /' \
        || echo "    bench-pack.sh failed (exit ${PIPESTATUS[0]})"
    echo "    (load at end: $(cut -d' ' -f1-3 /proc/loadavg))"
fi

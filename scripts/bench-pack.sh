#!/usr/bin/env bash
# `smolvm pack create` and `pack verify` on a real root, each beside the
# baseline it must keep up with. Prints; exits 0 whatever the figures (the
# targets are printed with each ratio).
#
# Usage: scripts/bench-pack.sh [--runs N] [--keep] [--smoke]
#   --runs N   runs per measurement (default 5), interleaved with the
#              baseline's; medians are printed
#   --keep     keep the scratch directory (its path is printed)
#   --smoke    one run of each (CI: scripts/bench-smoke.sh); not a measurement
#
# Inputs: the Debian bookworm minbase tree (scripts/debian-root.sh) and the
# guest kernel (scripts/fetch-kernel.sh), both fetched if missing.
#   create  `smolvm pack create --rootfs TREE --kernel K --key KEY -o X.smolmachine`
#           vs `tar -c TREE K | zstd -T0 -3` (the same tree and the same
#           kernel file, zstd level 3 = the packer's default): wall time
#           (target: pack <= 1.1x) and output size (target: <= 1.05x), for
#           both image encodings side by side: the default
#           (--rootfs-compression none: file data as is) and
#           --rootfs-compression lz4 (LZ4-compressed inside the image).
#           The rootfs section is an
#           EROFS image (4 KiB blocks, so it carries some padding a tar does
#           not); the targets are issue 7's. verify runs on the default.
#   verify  `smolvm pack verify --key PUB X.smolmachine` vs `sha256sum` of the
#           same file (page cache warm for both): throughput in MB/s
#           (target: verify >= 0.9x of sha256sum).
# Needs: root (the tree has device nodes and root-owned files), zstd, tar,
#   sha256sum; the release CLI (SMOLVM_BIN, default target/release/smolvm
#   or $CARGO_TARGET_DIR/release/smolvm;
#   build: cargo build --release -p smolvm-packer).
# Scratch space: ~1 GB under ${TMPDIR:-/tmp}, removed at exit.
set -euo pipefail
# shellcheck source=scripts/lib/bench.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib/bench.sh"
bench_init bench-pack.sh

runs=5
while [ $# -gt 0 ]; do
    bench_common_arg "$1" && { shift; continue; }
    case $1 in
        --runs) runs=${2:?}; shift 2 ;;
        *) bench_unknown_arg "$1" ;;
    esac
done
[ "$smoke" = 0 ] || runs=1
bench_posint --runs "$runs"

smolvm=${SMOLVM_BIN:-$rel/smolvm}
[[ -x "$smolvm" ]] || die "$smolvm missing: cargo build --release -p smolvm-packer"
bench_need_root
bench_tools zstd tar sha256sum
scripts/fetch-kernel.sh >/dev/null
kernel=$repo/.cache/kernel/libkrunfw.so.5
debian_tar=$(scripts/debian-root.sh)

bench_scratch bench-pack

div() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", a / b }'; }
mb() { awk -v b="$1" 'BEGIN { printf "%.1f MB", b / 1e6 }'; }
# "ok" when $1 <op> $2 holds for the ratio $1 and the target $2.
verdict() { awk -v r="$1" -v t="$2" -v op="$3" 'BEGIN { ok = (op == "<=") ? r <= t : r >= t; print ok ? "ok" : "MISSED" }'; }

tree="$scratch/tree"
mkdir -p "$tree"
zstd -dc "$debian_tar" | tar --numeric-owner --xattrs -C "$tree" -x
tree_bytes=$(du -sb "$tree" | cut -f1)
"$smolvm" pack keygen -o "$scratch/keys" >/dev/null
art="$scratch/debian.smolmachine"
base="$scratch/debian.tar.zst"
log "tree: $(mb "$tree_bytes") in $(find "$tree" | wc -l) entries; kernel $(mb "$(stat -c %s "$kernel")"); $(nproc) cores; $runs runs each"

art_lz4="$scratch/debian-lz4.smolmachine"
pack() { # [lz4]: the image's file data LZ4-compressed
    local out=$art extra=()
    if [[ ${1:-} == lz4 ]]; then out=$art_lz4 extra=(--rootfs-compression lz4); fi
    "$smolvm" pack create --rootfs "$tree" --kernel "$kernel" --key "$scratch/keys/smolvm.key" \
        "${extra[@]}" -o "$out" >/dev/null 2>"$scratch/err" || { cat "$scratch/err" >&2; die "pack create failed"; }
}
baseline() {
    tar --numeric-owner --xattrs -c -C "$tree" . -C "$(dirname "$kernel")" "$(basename "$kernel")" \
        | zstd -q -f -T0 -3 -o "$base"
}

# Warm the page cache for the tree and the kernel.
pack
baseline

pack_times=() lz4_times=() base_times=()
for i in $(seq 1 "$runs"); do
    # Rotate the order so drifting load hits all alike.
    for what in $(rotate $((i - 1)) pack lz4 base); do
        rm -f "$art" "$art_lz4" "$base"
        t0=$(now)
        case $what in
            pack) pack; pack_times+=("$(since "$t0")") ;;
            lz4) pack lz4; lz4_times+=("$(since "$t0")") ;;
            base) baseline; base_times+=("$(since "$t0")") ;;
        esac
    done
done
pack lz4
pack
baseline
pack_med=$(printf '%s\n' "${pack_times[@]}" | median)
lz4_med=$(printf '%s\n' "${lz4_times[@]}" | median)
base_med=$(printf '%s\n' "${base_times[@]}" | median)
art_size=$(stat -c %s "$art")
lz4_size=$(stat -c %s "$art_lz4")
base_size=$(stat -c %s "$base")

verify_times=() sha_times=()
"$smolvm" pack verify --key "$scratch/keys/smolvm.pub" "$art" >/dev/null || die "pack verify of the benchmark artifact failed"
sha256sum "$art" >/dev/null
for i in $(seq 1 "$runs"); do
    for what in $(interleave "$i" verify sha); do
        t0=$(now)
        if [[ $what == verify ]]; then
            "$smolvm" pack verify --key "$scratch/keys/smolvm.pub" "$art" >/dev/null
            verify_times+=("$(since "$t0")")
        else
            sha256sum "$art" >/dev/null
            sha_times+=("$(since "$t0")")
        fi
    done
done
verify_med=$(printf '%s\n' "${verify_times[@]}" | median)
sha_med=$(printf '%s\n' "${sha_times[@]}" | median)
verify_tp=$(awk -v b="$art_size" -v t="$verify_med" 'BEGIN { printf "%.0f", b / t / 1e6 }')
sha_tp=$(awk -v b="$art_size" -v t="$sha_med" 'BEGIN { printf "%.0f", b / t / 1e6 }')

create_ratio=$(div "$pack_med" "$base_med")
size_ratio=$(div "$art_size" "$base_size")
lz4_create_ratio=$(div "$lz4_med" "$base_med")
lz4_size_ratio=$(div "$lz4_size" "$base_size")
verify_ratio=$(div "$verify_tp" "$sha_tp")

printf '\nDebian bookworm minbase (%s) + kernel, %s cores, median of %s interleaved runs\n\n' "$(mb "$tree_bytes")" "$(nproc)" "$runs"
printf '  %-8s %-44s %-28s %10s  %s\n' "" "smolvm" "baseline" "ratio" "target"
printf '  %-8s %-44s %-28s %9sx  <= 1.10x %s\n' "create" "pack create (signed, bare): ${pack_med}s" "tar | zstd -T0 -3: ${base_med}s" \
    "$create_ratio" "$(verdict "$create_ratio" 1.1 "<=")"
printf '  %-8s %-44s %-28s %9sx  <= 1.05x %s\n' "size" "artifact: $(mb "$art_size")" "tar.zst: $(mb "$base_size")" \
    "$size_ratio" "$(verdict "$size_ratio" 1.05 "<=")"
printf '  %-8s %-44s %-28s %9sx  <= 1.10x %s\n' "create" "  --rootfs-compression lz4: ${lz4_med}s" "tar | zstd -T0 -3: ${base_med}s" \
    "$lz4_create_ratio" "$(verdict "$lz4_create_ratio" 1.1 "<=")"
printf '  %-8s %-44s %-28s %9sx  <= 1.05x %s\n' "size" "  --rootfs-compression lz4: $(mb "$lz4_size")" "tar.zst: $(mb "$base_size")" \
    "$lz4_size_ratio" "$(verdict "$lz4_size_ratio" 1.05 "<=")"
printf '  %-8s %-44s %-28s %9sx  >= 0.90x %s\n' "verify" "pack verify: ${verify_med}s, ${verify_tp} MB/s" "sha256sum: ${sha_med}s, ${sha_tp} MB/s" \
    "$verify_ratio" "$(verdict "$verify_ratio" 0.9 ">=")"
printf '\n  (create includes reading the tree, compressing kernel and rootfs, hashing,\n   signing, writing, fsync and re-verifying the written file)\n'

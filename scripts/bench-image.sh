#!/usr/bin/env bash
# What packing a real distribution root and pulling images cost, each figure
# beside a baseline. Prints; never fails on a figure.
#
# Usage: scripts/bench-image.sh [--runs N] [--keep] [--smoke]
#   --runs N   runs per measurement (default 5); medians are printed
#   --keep     keep the scratch directory (its path is printed)
#   --smoke    one run of each, and (b) with the small image only (CI:
#              scripts/bench-smoke.sh); not a measurement
#
# (a) `smolvm pack create --rootfs DIR` of the Debian bookworm minbase tree
#     (scripts/debian-root.sh) into a bare unsigned payload: wall time,
#     artifact size and rootfs section size, vs `tar -c DIR | zstd -T0 -3`
#     of the same tree (zstd level 3 is the packer's default level).
# (b) `smolvm pack create --image REF` of an image in the local registry
#     (scripts/setup-registry.sh), each run with an empty private cache
#     (HOME, XDG_CACHE_HOME, SMOLVM_CACHE_DIR) and then again with the cache
#     the first pack filled: first pull vs cache hit. Two images: the Debian
#     root as a one-layer image (pushed here as smolvm-bench-debian:bookworm)
#     and the small smolvm-test:v1 (scripts/make-test-image.sh). Skipped with
#     a note while smolvm has no --image.
# Needs: target/release/smolvm and the kernel (scripts/test.sh builds and
#   fetches them), root (the tree has device nodes and root-owned files),
#   skopeo (scripts/make-test-image.sh installs it); apt-installs zstd and jq
#   if missing.
# Scratch space: ~600 MB under ${TMPDIR:-/tmp}, removed at exit.
set -euo pipefail
# shellcheck source=scripts/lib/bench.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib/bench.sh"
bench_init bench-image.sh

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
kernel=$repo/.cache/kernel/libkrunfw.so.5
[[ -x "$smolvm" ]] || die "$smolvm missing: cargo build --release -p smolvm-packer"
[[ -f "$kernel" ]] || die "$kernel missing: scripts/fetch-kernel.sh"
bench_need_root
bench_apt zstd jq

debian_tar=$(scripts/debian-root.sh)
bench_scratch bench-image

mb() { awk -v b="$1" 'BEGIN { printf "%.1f MB", b / 1e6 }'; }
# Size in bytes of the rootfs section of a payload.
rootfs_stored() {
    "$smolvm" pack inspect --json "$1" | jq '.sections[] | select(.kind == "rootfs") | .stored_len'
}
div() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", a / b }'; }

tree="$scratch/debian"
mkdir -p "$tree"
zstd -dc "$debian_tar" | tar --numeric-owner --xattrs -C "$tree" -x
tree_bytes=$(du -sb "$tree" | cut -f1)
log "Debian minbase tree: $(mb "$tree_bytes") in $(find "$tree" | wc -l) entries; $runs runs each"

# ------------------------------------------------------------------ (a)
pack_times=() tar_times=()
for i in $(seq 1 "$runs"); do
    # Alternate the order so drifting load hits both alike.
    for what in $(interleave "$i" pack tar); do
        if [[ $what == pack ]]; then rm -f "$scratch/debian.smolmachine"; else rm -f "$scratch/debian.tar.zst"; fi
        sync
        t0=$(now)
        if [[ $what == pack ]]; then
            "$smolvm" pack create --no-sign --rootfs "$tree" --kernel "$kernel" \
                -o "$scratch/debian.smolmachine" >/dev/null 2>&1 || die "pack create of the Debian tree failed"
            pack_times+=("$(since "$t0")")
        else
            tar --numeric-owner --xattrs -C "$tree" -c . | zstd -q -T0 -3 -o "$scratch/debian.tar.zst"
            tar_times+=("$(since "$t0")")
        fi
    done
done
pack_med=$(printf '%s\n' "${pack_times[@]}" | median)
tar_med=$(printf '%s\n' "${tar_times[@]}" | median)
art=$(stat -c %s "$scratch/debian.smolmachine")
rootfs=$(rootfs_stored "$scratch/debian.smolmachine")
tarzst=$(stat -c %s "$scratch/debian.tar.zst")

printf '\n(a) Debian bookworm minbase, %s on disk, median of %s runs\n' "$(mb "$tree_bytes")" "$runs"
printf '    %-34s %10s %12s\n' "" "wall" "size"
printf '    %-34s %9.2fs %12s   (rootfs section %s)\n' "smolvm pack create (bare, unsigned)" "$pack_med" "$(mb "$art")" "$(mb "$rootfs")"
printf '    %-34s %9.2fs %12s\n' "tar -c | zstd -T0 -3" "$tar_med" "$(mb "$tarzst")"
printf '    %-34s %9.2fx %11.3fx   (rootfs section / tar.zst)\n' "ratio pack / tar|zstd" \
    "$(div "$pack_med" "$tar_med")" "$(div "$rootfs" "$tarzst")"
printf '    (the pack also compresses the 21 MB kernel, hashes, writes the manifest and re-verifies)\n'

# ------------------------------------------------------------------ (b)
printf '\n(b) pack create --image: first pull (empty cache) vs second (cache filled by the first)\n'
if ! "$smolvm" pack create --help 2>&1 | grep -q -- '--image'; then
    printf '    n/a: %s has no --image yet\n' "$smolvm"
    exit 0
fi
command -v skopeo >/dev/null || die "skopeo missing (scripts/make-test-image.sh installs it)"
scripts/setup-registry.sh >/dev/null
small=$(scripts/make-test-image.sh)

# The Debian root as a one-layer OCI image, pushed once.
big=localhost:5000/smolvm-bench-debian:bookworm
if [ "$smoke" = 1 ]; then
    log "smoke: (b) with $small only"
elif ! skopeo inspect --tls-verify=false "docker://127.0.0.1:5000/smolvm-bench-debian:bookworm" >/dev/null 2>&1; then
    log "pushing the Debian root as $big"
    oci="$scratch/oci"
    mkdir -p "$oci/blobs/sha256"
    printf '{"imageLayoutVersion":"1.0.0"}' >"$oci/oci-layout"
    blob() { local h; h=$(sha256sum "$1" | cut -d' ' -f1); mv "$1" "$oci/blobs/sha256/$h"; echo "sha256:$h $(stat -c %s "$oci/blobs/sha256/$h")"; }
    zstd -dc "$debian_tar" >"$scratch/layer.tar"
    diff_id="sha256:$(sha256sum "$scratch/layer.tar" | cut -d' ' -f1)"
    gzip -n -6 <"$scratch/layer.tar" >"$scratch/layer.tar.gz"
    rm -f "$scratch/layer.tar"
    read -r ldigest lsize < <(blob "$scratch/layer.tar.gz")
    printf '%s' "{\"architecture\":\"amd64\",\"os\":\"linux\",\"config\":{\"Cmd\":[\"/bin/bash\"],\"Env\":[\"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin\"]},\"rootfs\":{\"type\":\"layers\",\"diff_ids\":[\"$diff_id\"]}}" >"$scratch/config.json"
    read -r cdigest csize < <(blob "$scratch/config.json")
    printf '%s' "{\"schemaVersion\":2,\"mediaType\":\"application/vnd.oci.image.manifest.v1+json\",\"config\":{\"mediaType\":\"application/vnd.oci.image.config.v1+json\",\"digest\":\"$cdigest\",\"size\":$csize},\"layers\":[{\"mediaType\":\"application/vnd.oci.image.layer.v1.tar+gzip\",\"digest\":\"$ldigest\",\"size\":$lsize}]}" >"$scratch/manifest.json"
    read -r mdigest msize < <(blob "$scratch/manifest.json")
    printf '%s' "{\"schemaVersion\":2,\"manifests\":[{\"mediaType\":\"application/vnd.oci.image.manifest.v1+json\",\"digest\":\"$mdigest\",\"size\":$msize,\"annotations\":{\"org.opencontainers.image.ref.name\":\"bookworm\"}}]}" >"$oci/index.json"
    skopeo copy -q --preserve-digests --dest-tls-verify=false "oci:$oci:bookworm" "docker://127.0.0.1:5000/smolvm-bench-debian:bookworm" >&2
    rm -rf "$oci"
fi

printf '    %-42s %10s %10s %8s\n' "image" "first" "second" "ratio"
refs=("$big" "$small")
[ "$smoke" = 0 ] || refs=("$small")
for ref in "${refs[@]}"; do
    first=() second=()
    for i in $(seq 1 "$runs"); do
        cache="$scratch/cache-$i"
        rm -rf "$cache"
        mkdir -p "$cache"
        for n in 1 2; do
            rm -f "$scratch/img.smolmachine"
            t0=$(now)
            HOME="$cache/home" XDG_CACHE_HOME="$cache/xdg" SMOLVM_CACHE_DIR="$cache/smolvm" \
                "$smolvm" pack create --no-sign --image "$ref" --kernel "$kernel" \
                -o "$scratch/img.smolmachine" >/dev/null 2>"$scratch/err" \
                || { cat "$scratch/err" >&2; die "pack create --image $ref failed"; }
            t=$(since "$t0")
            if [[ $n == 1 ]]; then first+=("$t"); else second+=("$t"); fi
        done
        rm -rf "$cache"
    done
    f=$(printf '%s\n' "${first[@]}" | median)
    s=$(printf '%s\n' "${second[@]}" | median)
    printf '    %-42s %9.2fs %9.2fs %7.2fx\n' "$ref" "$f" "$s" "$(div "$s" "$f")"
done

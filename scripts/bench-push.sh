#!/usr/bin/env bash
# `smolvm pack push` and `pack pull` of a Debian artifact against the local
# registry, each beside curl moving the same blob to and from the same
# registry. Prints medians; exits 0 whatever the figures.
#
# Usage: scripts/bench-push.sh [--runs N] [--keep] [--smoke]
#   --runs N   rounds (default 5); in each, push, curl upload, pull and curl
#              download run once, in an order that alternates between rounds
#   --keep     keep the scratch directory (its path is printed)
#   --smoke    one round (CI: scripts/bench-smoke.sh); not a measurement
#
# Measures (wall time, page cache warm for the local file):
#   push      `smolvm pack push X.smolmachine localhost:5000/REPO:1`, a fresh
#             repository each round, so the whole blob is uploaded
#             (16 MiB PATCH chunks, the last with the closing PUT), after
#             hashing the file for its digest
#   curl up   POST an upload, then one PUT of the whole file with its digest
#             (`curl -T`), to a fresh repository too: what any client must send
#   pull      `smolvm pack pull REF -o Y.smolmachine`: the download hashed
#             against its digest as it arrives, then verified like `pack
#             verify` (every section hash, the signature), fsynced, renamed
#   curl down GET of the blob to a file; and `curl | sha256sum`, the least a
#             digest-checked download must do
# Inputs: the Debian bookworm minbase root (scripts/debian-root.sh) and the
#   guest kernel (scripts/fetch-kernel.sh), fetched if missing; the registry
#   on 127.0.0.1:5000 (scripts/setup-registry.sh, started if not running).
# Needs: root (the Debian tree), curl, sha256sum; the release CLI (SMOLVM_BIN,
#   default target/release/smolvm; cargo build --release -p smolvm-packer).
# Registry storage grows by the artifact's size per round (repositories
#   named bench-push-PID-*; blobs are shared, so disk use is one copy).
set -euo pipefail
# shellcheck source=scripts/lib/bench.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib/bench.sh"
bench_init bench-push.sh

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
bench_tools curl sha256sum
scripts/fetch-kernel.sh >/dev/null
scripts/setup-registry.sh >/dev/null
kernel=$repo/.cache/kernel/libkrunfw.so.5
debian_tar=$(scripts/debian-root.sh)
registry=http://127.0.0.1:5000

bench_scratch bench-push
export SMOLVM_CACHE_DIR=$scratch/cache DOCKER_CONFIG=$scratch/docker

secs() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f\n", b - a }'; }

log "packing the Debian root ($(basename "$debian_tar"))"
"$smolvm" pack keygen -o "$scratch/keys" >/dev/null
art=$scratch/debian.smolmachine
"$smolvm" pack create --rootfs "$debian_tar" --kernel "$kernel" \
    --key "$scratch/keys/smolvm.key" --name debian -o "$art" 2>/dev/null
size=$(stat -c %s "$art")
digest=sha256:$(sha256sum "$art" | cut -d' ' -f1)
log "artifact: $size bytes, $digest"

t_push=() t_cup=() t_pull=() t_cdown=() t_chash=()
run_push() {
    local t0 t1
    t0=$(now)
    "$smolvm" pack push "$art" "localhost:5000/bench-push-$$-s$1:1" >/dev/null 2>&1 || die "push failed"
    t1=$(now); t_push+=("$(secs "$t0" "$t1")")
}
run_curl_up() {
    local t0 t1 location
    t0=$(now)
    location=$(curl -sSf -X POST -D - -o /dev/null "$registry/v2/bench-push-$$-c$1/blobs/uploads/" \
        | tr -d '\r' | awk -F': ' 'tolower($1) == "location" { print $2 }')
    [[ $location == http* ]] || location=$registry$location
    case $location in *\?*) location="$location&digest=$digest" ;; *) location="$location?digest=$digest" ;; esac
    curl -sSf -T "$art" -H 'Content-Type: application/octet-stream' -o /dev/null "$location" || die "curl upload failed"
    t1=$(now); t_cup+=("$(secs "$t0" "$t1")")
}
run_pull() {
    local t0 t1
    rm -f "$scratch/pulled.smolmachine"
    t0=$(now)
    "$smolvm" pack pull "localhost:5000/bench-push-$$-s1:1" --key "$scratch/keys/smolvm.pub" \
        -o "$scratch/pulled.smolmachine" >/dev/null 2>&1 || die "pull failed"
    t1=$(now); t_pull+=("$(secs "$t0" "$t1")")
    cmp -s "$art" "$scratch/pulled.smolmachine" || die "the pulled file differs"
}
run_curl_down() {
    local t0 t1
    rm -f "$scratch/curl.blob"
    t0=$(now)
    curl -sSf -o "$scratch/curl.blob" "$registry/v2/bench-push-$$-s1/blobs/$digest" || die "curl download failed"
    t1=$(now); t_cdown+=("$(secs "$t0" "$t1")")
    t0=$(now)
    curl -sSf "$registry/v2/bench-push-$$-s1/blobs/$digest" | sha256sum >/dev/null
    t1=$(now); t_chash+=("$(secs "$t0" "$t1")")
}

log "$runs rounds of push / curl upload / pull / curl download, order alternating"
run_push 1 # the repository pulls read from; not counted
t_push=()
for r in $(seq 1 "$runs"); do
    for what in $(interleave "$r" run_push run_curl_up run_pull run_curl_down); do
        case $what in
            run_push) run_push "$((r + 1))" ;;
            run_curl_up) run_curl_up "$r" ;;
            *) "$what" ;;
        esac
    done
done

mbs() { awk -v n="$size" -v t="$1" 'BEGIN { printf "%.0f", n / t / 1e6 }'; }
report() {
    local name=$1 m
    shift
    m=$(printf '%s\n' "$@" | median)
    printf '%-22s %8.3f s %6s MB/s\n' "$name" "$m" "$(mbs "$m")"
}
echo "artifact: Debian bookworm minbase, $size bytes; registry $registry (docker-registry, filesystem storage); medians of $runs"
report "smolvm pack push" "${t_push[@]}"
report "curl upload (PUT)" "${t_cup[@]}"
report "smolvm pack pull" "${t_pull[@]}"
report "curl download" "${t_cdown[@]}"
report "curl | sha256sum" "${t_chash[@]}"

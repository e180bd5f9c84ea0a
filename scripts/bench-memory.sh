#!/usr/bin/env bash
# Peak memory of `smolvm pack create` on a hostile root: a small .tar.gz
# holding one 4 GiB file of zeros (issue 10: file contents from archives were
# held in memory, 3.46 GiB RSS for a 3 GiB file). Fails (exit 1) when the
# peak RSS, as `/usr/bin/time -v` reports it, is at or over the limit.
#
# Usage: scripts/bench-memory.sh [--size GIB] [--limit-mib MIB] [--keep] [--smoke]
#   --size GIB       size of the zero-filled file (default 4)
#   --limit-mib MIB  the peak RSS that fails (default 300)
#   --keep           keep the scratch directory (its path is printed)
#   --smoke          --size 1 (CI: scripts/bench-smoke.sh); the limit still holds
#
# The archive is built without compressing GiBs: one gzip member holding the
# tar header, then the same gzip member of 64 MiB of zeros repeated, then one
# of the two end-of-archive blocks (the packer reads multi-member gzip whole,
# as `gzip -d` does). About 4 MiB for 4 GiB; built in a second.
# Packs with --no-sign and /bin/true as the stub: nothing here is about them.
# Needs: the release CLI (SMOLVM_BIN, default target/release/smolvm; build:
#   cargo build --release -p smolvm-packer), the guest kernel
#   (scripts/fetch-kernel.sh, fetched if missing), GNU time (/usr/bin/time,
#   apt-installed if missing), gzip, tar.
# Scratch: a few MiB under ${TMPDIR:-/tmp}, plus the output and the packer's
# spool (sparse: the zeros are holes). Takes about 15 s for 4 GiB.
set -euo pipefail
# shellcheck source=scripts/lib/bench.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib/bench.sh"
bench_init bench-memory.sh

size_gib=4 limit_mib=300
while [ $# -gt 0 ]; do
    bench_common_arg "$1" && { shift; continue; }
    case $1 in
        --size) size_gib=${2:?}; shift 2 ;;
        --limit-mib) limit_mib=${2:?}; shift 2 ;;
        *) bench_unknown_arg "$1" ;;
    esac
done
[ "$smoke" = 0 ] || size_gib=1
[[ "$size_gib" =~ ^[1-7]$ ]] || die "--size wants 1..7 GiB (a plain tar header holds up to 8 GiB)"
bench_posint --limit-mib "$limit_mib"

smolvm=${SMOLVM_BIN:-$rel/smolvm}
[[ -x "$smolvm" ]] || die "$smolvm missing: cargo build --release -p smolvm-packer"
bench_apt time
bench_tools gzip tar truncate
scripts/fetch-kernel.sh >/dev/null
kernel=$repo/.cache/kernel/libkrunfw.so.5

bench_scratch bench-memory

# The tar header of a sparse 4 GiB file named `zeros`: tar stops at the
# first 512 bytes when head closes the pipe.
mkdir "$scratch/src"
truncate -s "${size_gib}G" "$scratch/src/zeros"
(tar -C "$scratch/src" --owner=0 --group=0 -cf - zeros || true) | head -c 512 > "$scratch/header"
rm "$scratch/src/zeros"
[[ $(stat -c %s "$scratch/header") -eq 512 ]] || die "could not make the tar header"
head -c $((64 << 20)) /dev/zero | gzip -9 > "$scratch/chunk.gz"
archive=$scratch/root.tar.gz
{
    gzip -1 < "$scratch/header"
    for _ in $(seq $((size_gib * 16))); do cat "$scratch/chunk.gz"; done
    head -c 1024 /dev/zero | gzip -1
} > "$archive"
log "$(stat -c %s "$archive") byte .tar.gz holding one ${size_gib} GiB file of zeros"

set +e
/usr/bin/time -v -o "$scratch/time" "$smolvm" pack create --rootfs "$archive" --kernel "$kernel" \
    --no-sign --stub /bin/true -o "$scratch/out.smolmachine" 2> "$scratch/stderr"
rc=$?
set -e
[[ $rc -eq 0 ]] || { cat "$scratch/stderr" >&2; die "pack create exited $rc"; }
rss_kib=$(awk -F': ' '/Maximum resident set size/ { print $2 }' "$scratch/time")
wall=$(awk -F': ' '/Elapsed \(wall clock\)/ { print $2 }' "$scratch/time")
[[ -n "$rss_kib" ]] || die "no peak RSS in /usr/bin/time's output"
rss_mib=$((rss_kib / 1024))
echo "pack create, ${size_gib} GiB file of zeros in a .tar.gz: peak RSS ${rss_mib} MiB (limit ${limit_mib} MiB), wall ${wall}"
if [[ $rss_mib -ge $limit_mib ]]; then
    die "peak RSS ${rss_mib} MiB is at or over the ${limit_mib} MiB limit"
fi

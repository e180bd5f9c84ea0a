#!/usr/bin/env bash
# Build a Debian bookworm minbase root filesystem once and keep it as a
# tarball, for the real-boot test of a full distribution root
# (tests/tests/boot_images.rs) and for scripts/bench-image.sh.
#
# Usage: scripts/debian-root.sh [--force]
#   --force   rebuild even if the tarball exists
#
# Installs (apt, only if missing): debootstrap zstd
# Mirror: the first bookworm `deb` source of this machine's apt configuration
#   (so a local mirror or proxy is used), else http://deb.debian.org/debian;
#   SMOL_DEBIAN_MIRROR overrides.
# Produces: <repo>/.cache/debian-minbase.tar.zst (numeric owners, apt lists
#   and package cache removed) and prints its absolute path on stdout.
#   SMOL_DEBIAN_ROOT overrides the path (e.g. a location outside the work
#   tree that survives fresh clones).
set -euo pipefail

die() { echo "debian-root.sh: error: $*" >&2; exit 1; }
log() { echo "debian-root.sh: $*" >&2; }

force=0
case "${1:-}" in
    "") ;;
    --force) force=1 ;;
    -h|--help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit 0 ;;
    *) die "unknown argument '$1' (usage: scripts/debian-root.sh [--force])" ;;
esac

repo_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
out=${SMOL_DEBIAN_ROOT:-$repo_root/.cache/debian-minbase.tar.zst}

if [[ $force -eq 0 && -s "$out" ]]; then
    echo "$out"
    exit 0
fi

[[ $(id -u) -eq 0 ]] || die "debootstrap needs root (chroot, mknod, ownership): run as root"

missing=()
for p in debootstrap zstd; do
    [[ "$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)" == "install ok installed" ]] || missing+=("$p")
done
if [[ ${#missing[@]} -gt 0 ]]; then
    log "apt-get install ${missing[*]}"
    if ! DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}" >&2; then
        apt-get update -q >&2 || die "apt-get update failed"
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}" >&2 \
            || die "apt-get install ${missing[*]} failed"
    fi
fi

# The machine's own bookworm mirror: deb822 stanzas (URIs:/Suites:) and
# one-line `deb URI SUITE ...` entries, first match wins.
find_mirror() {
    local f
    for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources; do
        [[ -r "$f" ]] || continue
        case "$f" in
            *.sources)
                awk '
                    function flush() { if (deb && suite && uri != "") { print uri; found = 1; exit } deb = 0; suite = 0; uri = "" }
                    /^[[:space:]]*$/ { flush(); next }
                    /^[[:space:]]*#/ { next }
                    tolower($1) == "types:" { for (i = 2; i <= NF; i++) if ($i == "deb") deb = 1 }
                    tolower($1) == "uris:" { uri = $2 }
                    tolower($1) == "suites:" { for (i = 2; i <= NF; i++) if ($i == "bookworm") suite = 1 }
                    END { if (!found) flush() }
                ' "$f" ;;
            *)
                awk '$1 == "deb" { i = 2; if ($i ~ /^\[/) { while ($i !~ /\]$/) i++; i++ }
                                   if ($(i + 1) == "bookworm") { print $i; exit } }' "$f" ;;
        esac
    done | head -n 1
}
mirror=${SMOL_DEBIAN_MIRROR:-$(find_mirror)}
mirror=${mirror:-http://deb.debian.org/debian}

mkdir -p "$(dirname "$out")"
work=$(mktemp -d "$(dirname "$out")/debian-root.XXXXXX")
cleanup() {
    # debootstrap mounts proc/sys inside the target; never leave them behind.
    local m
    while read -r m; do
        umount -l "$m" 2>/dev/null || true
    done < <(awk -v w="$work" 'index($2, w) == 1 { print $2 }' /proc/mounts | sort -r)
    rm -rf "$work"
}
trap cleanup EXIT

log "debootstrap --variant=minbase bookworm from $mirror (about a minute)"
start=$(date +%s)
if ! debootstrap --variant=minbase bookworm "$work/root" "$mirror" >"$work/debootstrap.log" 2>&1; then
    tail -n 30 "$work/debootstrap.log" >&2
    [[ -f "$work/root/debootstrap/debootstrap.log" ]] && tail -n 30 "$work/root/debootstrap/debootstrap.log" >&2
    die "debootstrap failed (log above)"
fi
log "debootstrap took $(( $(date +%s) - start )) s"

# What a container image of the same distribution also drops: downloaded
# package lists and archives, which apt recreates on demand.
rm -rf "$work/root/var/lib/apt/lists/"* "$work/root/var/cache/apt/"*.bin \
       "$work/root/var/cache/apt/archives/"*.deb "$work/root/debootstrap"

tar --numeric-owner --xattrs --sort=name -C "$work/root" -c . | zstd -q -T0 -10 -o "$work/root.tar.zst"
mv -f "$work/root.tar.zst" "$out"
log "$(du -h "$out" | cut -f1) $(basename "$out")"
echo "$out"

#!/usr/bin/env bash
# Fetch the libkrun guest kernel library (libkrunfw.so.5) from Debian sid's
# `libkrunfw5` package without touching the system's apt configuration.
#
# Usage: scripts/fetch-kernel.sh [DEST_DIR]
#   DEST_DIR defaults to <repo>/.cache/kernel. The result is
#   DEST_DIR/libkrunfw.so.5 (a regular file, not a symlink).
# Needs: apt-get, dpkg (Debian/Ubuntu host), network access to deb.debian.org.
# Env:   SMOL_SID_MIRROR (default http://deb.debian.org/debian)
#        SMOL_LIBKRUNFW_VERSION (e.g. 5.5.0+ds-1: fail unless sid has exactly
#        this version; default: whatever sid currently has)
# Also writes DEST_DIR/libkrunfw.so.5.source: "<deb file> <library file> <sha256>".
set -euo pipefail

die() { echo "fetch-kernel.sh: error: $*" >&2; exit 1; }

script_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo_root=$(cd "$script_dir/.." && pwd)

dest=${1:-$repo_root/.cache/kernel}
mkdir -p "$dest" || die "cannot create $dest"
dest=$(cd "$dest" && pwd)
out="$dest/libkrunfw.so.5"

# Quick path: already fetched (and of the pinned version, if one is asked for).
cached_ok=0
if [[ -f "$out" && ! -L "$out" && -s "$out" ]]; then
    cached_ok=1
    if [[ -n "${SMOL_LIBKRUNFW_VERSION:-}" ]] \
        && ! grep -qF "libkrunfw5_${SMOL_LIBKRUNFW_VERSION}_" "$dest/libkrunfw.so.5.source" 2>/dev/null; then
        cached_ok=0
    fi
fi
if [[ $cached_ok -eq 1 ]]; then
    echo "libkrunfw.so.5: $out"
    exit 0
fi

command -v apt-get >/dev/null || die "apt-get not found (this script needs a Debian-based host)"
command -v dpkg >/dev/null || die "dpkg not found"

mirror=${SMOL_SID_MIRROR:-http://deb.debian.org/debian}
work="$dest/.apt-sid"
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/lists/partial" "$work/cache/archives/partial" "$work/pkg"
arch=$(dpkg --print-architecture)
# Only the Packages index (no DEP-11/appstream metadata): ~11 MB instead of ~17 MB.
printf 'deb [arch=%s target-=DEP-11,DEP-11-icons-small,DEP-11-icons,DEP-11-icons-hidpi,DEP-11-icons-large,DEP-11-icons-large-hidpi] %s sid main\n' \
    "$arch" "$mirror" >"$work/sources.list"

# Private apt state: the system's sources, lists and cache are left untouched.
apt_opts=(
    -o "Dir::Etc::SourceList=$work/sources.list"
    -o "Dir::Etc::SourceParts=/dev/null"
    -o "Dir::State::Lists=$work/lists"
    -o "Dir::Cache=$work/cache"
    -o "Dir::Cache::pkgcache="
    -o "Dir::Cache::srcpkgcache="
    -o "Acquire::Languages=none"
    -o "APT::Sandbox::User=$(id -un)"
)

echo "fetch-kernel.sh: updating private sid package list ($mirror)" >&2
update_log="$work/update.log"
if ! apt-get -q "${apt_opts[@]}" update 2>&1 | tee "$update_log" >&2 || grep -q '^E: ' "$update_log"; then
    if grep -q 'is expired\|is not valid yet' "$update_log"; then
        # Machines whose clock runs ahead of the mirror (snapshots, CI images)
        # see sid's Release as expired. The signature is still verified.
        echo "fetch-kernel.sh: warning: sid Release file outside its validity window; retrying with Acquire::Check-Valid-Until=false" >&2
        apt_opts+=(-o "Acquire::Check-Valid-Until=false" -o "Acquire::Check-Date=false")
        apt-get -q "${apt_opts[@]}" update >&2 || die "apt-get update for sid failed (mirror $mirror)"
    else
        die "apt-get update for sid failed (network? mirror $mirror)"
    fi
fi

echo "fetch-kernel.sh: downloading libkrunfw5" >&2
rm -f "$work/pkg"/libkrunfw5_*.deb
pkgspec=libkrunfw5${SMOL_LIBKRUNFW_VERSION:+=$SMOL_LIBKRUNFW_VERSION}
(cd "$work/pkg" && apt-get -q "${apt_opts[@]}" download "$pkgspec" >&2) \
    || die "apt-get download $pkgspec failed (sid only carries its current version)"

deb=$(find "$work/pkg" -maxdepth 1 -name 'libkrunfw5_*.deb' | head -n1)
[[ -n "$deb" ]] || die "libkrunfw5 .deb not found after download"

extract="$work/extract"
rm -rf "$extract"
mkdir -p "$extract"
dpkg -x "$deb" "$extract" || die "dpkg -x $deb failed"

lib=$(find "$extract" -name 'libkrunfw.so.5' | head -n1)
[[ -n "$lib" ]] || die "libkrunfw.so.5 not found in $deb"
real=$(readlink -f "$lib")
[[ -f "$real" ]] || die "libkrunfw.so.5 symlink points to missing file $real"

cp "$real" "$out.tmp"
mv -f "$out.tmp" "$out"
printf '%s %s %s\n' "$(basename "$deb")" "$(basename "$real")" "$(sha256sum "$out" | cut -d' ' -f1)" \
    >"$dest/libkrunfw.so.5.source"
echo "fetch-kernel.sh: from $(basename "$deb") ($(basename "$real"))" >&2
echo "libkrunfw.so.5: $out"

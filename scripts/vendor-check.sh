#!/usr/bin/env bash
# Checks that vendor/krun-devices is exactly the crates.io release of
# krun-devices plus the patches listed in vendor/patches/series, nothing more:
# unpacks the registry's .crate (its SHA-256 pinned below, the one Cargo.lock
# recorded before the crate was vendored) in a temporary directory, applies the
# series with `patch -p1`, and compares the result with the committed tree.
#
# Usage: scripts/vendor-check.sh
# Exit codes: 0 the tree matches; 1 it differs, a patch does not apply, or a
# patch file is missing from the series; 2 the pristine crate cannot be had.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"

crate=krun-devices
version=0.1.0-1.19.7
sha256=d0d32b958d40bd6175faaef5911f471ddb317602e3236ce04da7a67f72c589f1
vendored=vendor/$crate
patches=vendor/patches

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

find_crate() {
    local f
    for f in "${CARGO_HOME:-$HOME/.cargo}"/registry/cache/*/"$crate-$version.crate"; do
        [ -f "$f" ] && { echo "$f"; return 0; }
    done
    return 1
}

if ! archive=$(find_crate); then
    # Not downloaded yet (the workspace's [patch] means cargo never needs it):
    # let cargo fetch it for a throwaway manifest that asks for that version.
    mkdir -p "$tmp/fetch/src"
    printf '[package]\nname = "fetch"\nversion = "0.0.0"\nedition = "2021"\n\n[dependencies]\n%s = "=%s"\n' \
        "$crate" "$version" >"$tmp/fetch/Cargo.toml"
    : >"$tmp/fetch/src/lib.rs"
    cargo fetch --quiet --manifest-path "$tmp/fetch/Cargo.toml" >&2 || true
    archive=$(find_crate) || {
        echo "vendor-check: $crate $version is not in the cargo registry cache and cargo fetch could not get it" >&2
        exit 2
    }
fi

actual=$(sha256sum "$archive" | cut -d' ' -f1)
if [ "$actual" != "$sha256" ]; then
    echo "vendor-check: $archive has SHA-256 $actual, expected $sha256" >&2
    exit 2
fi

tar -xzf "$archive" -C "$tmp"
rebuilt=$tmp/$crate-$version

status=0
series=()
while read -r name _; do
    case $name in '' | '#'*) continue ;; esac
    series+=("$name")
    if ! patch -p1 --quiet --forward --no-backup-if-mismatch -d "$rebuilt" <"$patches/$name"; then
        echo "vendor-check: $patches/$name does not apply" >&2
        status=1
    fi
done <"$patches/series"

for f in "$patches"/*.patch; do
    name=$(basename "$f")
    if [[ " ${series[*]} " != *" $name "* ]]; then
        echo "vendor-check: $f is not listed in $patches/series" >&2
        status=1
    fi
done

if ! diff -r -u "$rebuilt" "$vendored"; then
    echo "vendor-check: $vendored differs from $crate $version + $patches/series (diff above)" >&2
    status=1
fi
[ "$status" = 0 ] && echo "vendor-check: $vendored is $crate $version + ${#series[@]} patches"
exit "$status"

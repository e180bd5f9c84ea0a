#!/usr/bin/env bash
# Checks that each vendored crate is exactly its crates.io release plus the
# patches listed in its series, nothing more: vendor/krun-devices with
# vendor/patches/series, vendor/tar with vendor/patches/tar/series, vendor/libkrun
# with vendor/patches/libkrun/series. For each,
# unpacks the registry's .crate (its SHA-256 pinned below, the one Cargo.lock
# recorded before the crate was vendored) in a temporary directory, applies the
# series with `patch -p1`, and compares the result with the committed tree.
#
# Usage: scripts/vendor-check.sh
# Exit codes: 0 every tree matches; 1 one differs, a patch does not apply, or a
# patch file is missing from a series; 2 a pristine crate cannot be had.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"

# crate version sha256-of-the-.crate patch-directory
vendored_crates=(
    "krun-devices 0.1.0-1.19.7 d0d32b958d40bd6175faaef5911f471ddb317602e3236ce04da7a67f72c589f1 vendor/patches"
    "tar 0.4.46 3f6221d9a6003c78398e3b239969f352578258df48c8eb051caadae0015bc840 vendor/patches/tar"
    "libkrun 1.19.7 1610d0669ba96a8de6aee2b3ca1e7436933c77836aca6a2920930907046f4aaa vendor/patches/libkrun"
)

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

find_crate() {
    local f
    for f in "${CARGO_HOME:-$HOME/.cargo}"/registry/cache/*/"$1-$2.crate"; do
        [ -f "$f" ] && { echo "$f"; return 0; }
    done
    return 1
}

# check_crate CRATE VERSION SHA256 PATCHES: returns 0, 1 or 2 as above.
check_crate() {
    local crate=$1 version=$2 sha256=$3 patches=$4
    local vendored=vendor/$crate work=$tmp/$crate archive actual
    mkdir -p "$work"
    if ! archive=$(find_crate "$crate" "$version"); then
        # Not downloaded yet (the workspace's [patch] means cargo never needs
        # it): let cargo fetch it for a throwaway manifest that asks for it.
        mkdir -p "$work/fetch/src"
        printf '[package]\nname = "fetch"\nversion = "0.0.0"\nedition = "2021"\n\n[dependencies]\n%s = "=%s"\n' \
            "$crate" "$version" >"$work/fetch/Cargo.toml"
        : >"$work/fetch/src/lib.rs"
        cargo fetch --quiet --manifest-path "$work/fetch/Cargo.toml" >&2 || true
        archive=$(find_crate "$crate" "$version") || {
            echo "vendor-check: $crate $version is not in the cargo registry cache and cargo fetch could not get it" >&2
            return 2
        }
    fi

    actual=$(sha256sum "$archive" | cut -d' ' -f1)
    if [ "$actual" != "$sha256" ]; then
        echo "vendor-check: $archive has SHA-256 $actual, expected $sha256" >&2
        return 2
    fi

    tar -xzf "$archive" -C "$work"
    local rebuilt=$work/$crate-$version status=0 series=() name f
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
    return "$status"
}

worst=0
for entry in "${vendored_crates[@]}"; do
    read -r crate version sha256 patches <<<"$entry"
    rc=0
    check_crate "$crate" "$version" "$sha256" "$patches" || rc=$?
    [ "$rc" -gt "$worst" ] && worst=$rc
done
exit "$worst"

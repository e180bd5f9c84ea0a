#!/usr/bin/env bash
# Install what the real-boot harness (tests/harness/run-l1.sh) needs on a
# Debian bookworm machine, and fetch the L1 kernel + KVM modules.
#
# Usage: scripts/setup-harness.sh [--force]
#   --force   re-download the L1 kernel even if .cache/harness is complete
#
# Installs (apt, only if missing): qemu-system-x86 busybox-static cpio zstd
#   gcc g++ libc6-dev musl-tools xz-utils binutils openssh-client erofs-utils
#   attr shellcheck e2fsprogs
#   (g++: the fuzz targets link libFuzzer, which .ci/run builds; musl-tools:
#   libkrun's guest init in the stub is built against musl, scripts/krun-init-cc;
#   e2fsprogs: e2fsck and debugfs check the runtime's ext4 formatter's output)
# and .ci/run's other tools: cargo-deny and cargo-nextest (cargo install,
# from crates.io, when missing) and
# the Rust toolchain named by rust-version in Cargo.toml (rustup).
# Produces (under <repo>/.cache/harness/):
#   vmlinuz                     L1 kernel (bookworm linux-image-6.1.*-amd64)
#   vmlinux                     the same kernel decompressed (ELF with a PVH
#                               entry note): QEMU boots it ~2.5 s faster under
#                               TCG. If it cannot be extracted, vmlinux.none
#                               is written instead and run-l1.sh uses vmlinuz.
#   modules/*.ko                irqbypass ccp kvm kvm-amd (uncompressed)
#   modules/load-order          module file names, dependencies first
#   kernel-version              e.g. "linux-image-6.1.0-56-amd64 6.1.192-2"
set -euo pipefail

die() { echo "setup-harness.sh: error: $*" >&2; exit 1; }
log() { echo "setup-harness.sh: $*" >&2; }

force=0
case "${1:-}" in
    "") ;;
    --force) force=1 ;;
    -h|--help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit 0 ;;
    *) die "unknown argument '$1' (usage: scripts/setup-harness.sh [--force])" ;;
esac

script_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo_root=$(cd "$script_dir/.." && pwd)
cache="$repo_root/.cache/harness"

command -v apt-get >/dev/null || die "apt-get not found (this script targets Debian bookworm)"
command -v dpkg-query >/dev/null || die "dpkg-query not found"

SUDO=()
if [[ $(id -u) -ne 0 ]]; then
    command -v sudo >/dev/null || die "not root and sudo is missing: run as root"
    SUDO=(sudo)
fi

# ---------------------------------------------------------------- apt packages
# openssh-client: the signing tests generate real OpenSSH keys with ssh-keygen.
# erofs-utils, attr: the EROFS writer's tests check images with fsck.erofs/dump.erofs (getfattr for by-hand checks).
# (shellcheck: .ci/run checks every script with it.)
packages=(qemu-system-x86 busybox-static cpio zstd gcc g++ libc6-dev musl-tools xz-utils binutils openssh-client erofs-utils attr shellcheck e2fsprogs)
# tmux: tests/tests/boot_signals.rs drives an interactive guest shell in a tmux pane in L1.
packages+=(tmux)
# tar, python3: rootfs/tests/tar_fidelity.rs packs archives made by GNU tar and Python's tarfile.
packages+=(tar python3)
missing=()
for p in "${packages[@]}"; do
    status=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
    [[ "$status" == "install ok installed" ]] || missing+=("$p")
done

apt_updated=0
apt_update() {
    if [[ $apt_updated -eq 0 ]]; then
        log "apt-get update"
        "${SUDO[@]}" apt-get update -q >&2 || die "apt-get update failed"
        apt_updated=1
    fi
}

if [[ ${#missing[@]} -gt 0 ]]; then
    log "installing: ${missing[*]}"
    # Update the package lists only if installing from the current ones fails.
    if ! "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive \
            apt-get install -y -q --no-install-recommends "${missing[@]}" >&2; then
        apt_update
        "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive \
            apt-get install -y -q --no-install-recommends "${missing[@]}" >&2 \
            || die "apt-get install ${missing[*]} failed"
    fi
else
    log "apt packages present: ${packages[*]}"
fi

for tool in qemu-system-x86_64 busybox cpio zstd gcc xz gzip shellcheck; do
    command -v "$tool" >/dev/null || die "$tool still missing after install"
done
# The desktop tests' X server, terminal and validator (tests/tests/desktop.rs).
"$script_dir/setup-desktop.sh" >&2

# ------------------------------------------------------------- CI tools
# cargo-deny for .ci/run's licence, duplicate and source gate.
if ! command -v cargo-deny >/dev/null; then
    log "installing cargo-deny (cargo install --locked; a few minutes)"
    cargo install --locked cargo-deny >&2 || die "cargo install cargo-deny failed"
fi
# cargo-nextest: scripts/test.sh runs the suite with it (the boots'
# scheduling is in .config/nextest.toml). Debian bookworm machines of this
# kind carry it; elsewhere it is built from crates.io.
if ! cargo nextest --version >/dev/null 2>&1; then
    log "installing cargo-nextest (cargo install --locked; a few minutes)"
    cargo install --locked cargo-nextest >&2 || die "cargo install cargo-nextest failed"
fi
# The MSRV toolchain, for .ci/run's `cargo +MSRV check`.
msrv=$(sed -n 's/^rust-version = "\(.*\)"$/\1/p' "$repo_root/Cargo.toml")
[[ -n $msrv ]] || die "no rust-version in $repo_root/Cargo.toml"
if ! rustup run "$msrv" rustc --version >/dev/null 2>&1; then
    command -v rustup >/dev/null || die "rustup not found: install Rust $msrv (the MSRV) as toolchain '$msrv'"
    log "installing Rust $msrv (the workspace's rust-version) with rustup"
    rustup toolchain install "$msrv" --profile minimal >&2 || die "rustup toolchain install $msrv failed"
fi

# ------------------------------------------------------------- L1 kernel
want_modules=(irqbypass ccp kvm kvm-amd)

cache_complete() {
    [[ -s "$cache/vmlinuz" && -s "$cache/kernel-version" && -s "$cache/modules/load-order" ]] || return 1
    [[ -s "$cache/vmlinux" || -e "$cache/vmlinux.none" ]] || return 1
    local m
    for m in "${want_modules[@]}"; do
        [[ -s "$cache/modules/$m.ko" ]] || return 1
    done
}

if [[ $force -eq 0 ]] && cache_complete; then
    log "L1 kernel present: $(cat "$cache/kernel-version")"
    echo "harness cache: $cache"
    exit 0
fi

find_kernel_pkg() {
    apt-cache depends linux-image-amd64 2>/dev/null \
        | awk '$1 == "Depends:" && $2 ~ /^linux-image-6\.1\.[0-9]+-[0-9]+-amd64$/ { print $2; exit }'
}

pkg=$(find_kernel_pkg || true)
if [[ -z "$pkg" ]]; then
    apt_update
    pkg=$(find_kernel_pkg || true)
fi
[[ -n "$pkg" ]] || die "cannot resolve linux-image-amd64 to a linux-image-6.1.*-amd64 package (is this bookworm?)"

mkdir -p "$cache"
tmp=$(mktemp -d "$cache/.setup.XXXXXX")
trap 'rm -rf "$tmp"' EXIT

log "downloading $pkg"
if ! (cd "$tmp" && apt-get download -q -o "APT::Sandbox::User=$(id -un)" "$pkg" >&2); then
    apt_update
    (cd "$tmp" && apt-get download -q -o "APT::Sandbox::User=$(id -un)" "$pkg" >&2) \
        || die "apt-get download $pkg failed"
fi
deb=$(find "$tmp" -maxdepth 1 -name "${pkg}_*.deb" | head -n1)
[[ -n "$deb" ]] || die "downloaded .deb for $pkg not found"
version=$(dpkg-deb -f "$deb" Version)

log "extracting $(basename "$deb")"
dpkg -x "$deb" "$tmp/x" || die "dpkg -x $deb failed"

kver=${pkg#linux-image-}
vmlinuz="$tmp/x/boot/vmlinuz-$kver"
[[ -f "$vmlinuz" ]] || die "$pkg has no boot/vmlinuz-$kver"
moddir="$tmp/x/lib/modules/$kver"
[[ -d "$moddir" ]] || die "$pkg has no lib/modules/$kver"

# Dependency closure of the wanted modules, from modules.dep (if shipped) so a
# kernel whose kvm-amd needs more than the usual four still works.
declare -A path_of=()
for m in "${want_modules[@]}"; do
    f=$(find "$moddir/kernel" -name "$m.ko" -o -name "$m.ko.xz" -o -name "$m.ko.zst" -o -name "$m.ko.gz" | head -n1)
    [[ -n "$f" ]] || die "module $m not found in $pkg"
    path_of[$m]=$f
done

order=()
declare -A seen=()
add_with_deps() {  # $1: module path relative to $moddir
    local rel=$1 dep name
    name=$(basename "$rel"); name=${name%%.ko*}
    [[ -n "${seen[$name]:-}" ]] && return 0
    seen[$name]=1
    if [[ -f "$moddir/modules.dep" ]]; then
        local deps=()
        read -ra deps <<<"$(awk -v r="$rel:" '$1 == r { $1 = ""; print; exit }' "$moddir/modules.dep")"
        for dep in "${deps[@]}"; do
            add_with_deps "$dep"
        done
    fi
    path_of[$name]="$moddir/$rel"
    order+=("$name")
}
for m in "${want_modules[@]}"; do
    add_with_deps "${path_of[$m]#"$moddir/"}"
done

mkdir -p "$tmp/out/modules"
for name in "${order[@]}"; do
    src=${path_of[$name]}
    dst="$tmp/out/modules/$name.ko"
    # busybox insmod cannot be relied on for compressed modules: decompress here.
    case "$src" in
        *.ko.xz)  xz -dc "$src" >"$dst" ;;
        *.ko.zst) zstd -q -dc "$src" >"$dst" ;;
        *.ko.gz)  gzip -dc "$src" >"$dst" ;;
        *.ko)     cp "$src" "$dst" ;;
        *) die "unexpected module file $src" ;;
    esac
    echo "$name.ko" >>"$tmp/out/modules/load-order"
done
cp "$vmlinuz" "$tmp/out/vmlinuz"

# Decompressed kernel for QEMU's PVH boot (skips the in-guest decompression,
# which is slow under TCG). Like the kernel's scripts/extract-vmlinux.
extract_vmlinux() {  # $1 bzImage, $2 output
    local magic cmd off
    for magic in xz zstd gzip; do
        case $magic in
            xz)   off=$(LC_ALL=C grep -obUaP '\xfd7zXZ\x00' "$1" | head -n1 | cut -d: -f1); cmd=(xz -dc --single-stream) ;;
            zstd) off=$(LC_ALL=C grep -obUaP '\x28\xb5\x2f\xfd' "$1" | head -n1 | cut -d: -f1); cmd=(zstd -q -dc) ;;
            gzip) off=$(LC_ALL=C grep -obUaP '\x1f\x8b\x08' "$1" | head -n1 | cut -d: -f1); cmd=(gzip -dc) ;;
        esac
        [[ -n "$off" ]] || continue
        tail -c +"$((off + 1))" "$1" | "${cmd[@]}" >"$2" 2>/dev/null || true
        if [[ "$(head -c 4 "$2" | od -An -c | tr -d ' ')" == '177ELF' ]]; then
            # PVH entry: Xen ELF note type 0x12 (XEN_ELFNOTE_PHYS32_ENTRY).
            if readelf -nW "$2" 2>/dev/null | grep -q 'Xen.*(0x00000012)'; then
                return 0
            fi
            log "decompressed kernel has no PVH entry note; QEMU will boot vmlinuz"
            return 1
        fi
    done
    return 1
}
if command -v readelf >/dev/null && extract_vmlinux "$vmlinuz" "$tmp/out/vmlinux"; then
    vmlinux_file=vmlinux
else
    rm -f "$tmp/out/vmlinux"
    echo "no PVH-bootable vmlinux could be extracted from $(basename "$vmlinuz")" >"$tmp/out/vmlinux.none"
    vmlinux_file=vmlinux.none
fi
echo "$pkg $version" >"$tmp/out/kernel-version"

rm -rf "$cache/modules" "$cache/vmlinuz" "$cache/vmlinux" "$cache/vmlinux.none" "$cache/kernel-version"
mv "$tmp/out/modules" "$tmp/out/vmlinuz" "$tmp/out/$vmlinux_file" "$cache/"
mv "$tmp/out/kernel-version" "$cache/"
log "L1 kernel: $pkg $version ($vmlinux_file); modules: ${order[*]}"
echo "harness cache: $cache"

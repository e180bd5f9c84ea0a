#!/usr/bin/env bash
# Runs the main job on the embedded default example (examples/hello):
# fetch the guest kernel if needed, build smolvm and its stub, build the
# busybox root filesystem, pack it into a signed executable, verify it and
# print its inspect table. Idempotent; safe to re-run.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"

# gcc builds libkrun's and our guest init (libkrun's against musl:
# scripts/krun-init-cc); busybox-static is the example's userland.
need_pkgs=()
for p in gcc libc6-dev musl-tools busybox-static; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || need_pkgs+=("$p")
done
if [ ${#need_pkgs[@]} -gt 0 ]; then
    echo "example: installing ${need_pkgs[*]}" >&2
    apt-get install -y -q "${need_pkgs[@]}" >&2 || { apt-get update -q >&2 && apt-get install -y -q "${need_pkgs[@]}" >&2; }
fi

scripts/fetch-kernel.sh >&2
cargo build --release -q -p smolvm-packer
# The stub on its own (docs/releases.md: built with the packer it is bigger).
cargo build --release -q -p smolvm-stub
smolvm=target/release/smolvm

out=.cache/example
root=$out/root
if [ ! -x "$root/bin/busybox" ]; then
    rm -rf "$root.tmp"
    mkdir -p "$root.tmp/bin" "$root.tmp/etc"
    cp /bin/busybox "$root.tmp/bin/busybox"
    for applet in $(/bin/busybox --list); do
        [ "$applet" = busybox ] || ln -s busybox "$root.tmp/bin/$applet"
    done
    printf 'root:x:0:0:root:/root:/bin/sh\n' >"$root.tmp/etc/passwd"
    printf 'root:x:0:\n' >"$root.tmp/etc/group"
    rm -rf "$root" && mv "$root.tmp" "$root"
fi
[ -f "$out/keys/smolvm.key" ] || "$smolvm" pack keygen -o "$out/keys" >&2

SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-1764288000} \
    "$smolvm" pack create --smolfile examples/hello/Smolfile --key "$out/keys/smolvm.key" \
    --stub target/release/smolvm-stub -o "$out/hello"
"$smolvm" pack verify "$out/hello" --key "$out/keys/smolvm.pub"
"$smolvm" pack inspect "$out/hello"
echo
echo "Packed executable: $out/hello  (run it on a host with KVM: ./$out/hello)"

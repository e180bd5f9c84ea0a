#!/usr/bin/env bash
# Build the small multi-layer OCI test image without Docker, push it to the
# local registry and export it as a docker-save archive, for the image-source
# tests (tests/tests/boot_images.rs).
#
# Usage: scripts/make-test-image.sh
#
# Needs: the registry of scripts/setup-registry.sh (started if it does not
#   answer). Installs (apt, only if missing): skopeo busybox-static.
# Image smolvm-test:v1, every layer a gzip tar with fixed owners and mtimes
#   (the same bytes, so the same digests, on every machine with the same
#   busybox-static):
#   layer 1  /bin/busybox + a symlink per applet (/bin/sh, /bin/vi, ...),
#            /opt/old/{a,b}, /etc/motd ("motd from layer 1")
#   layer 2  /app/run.sh and its hard link /app/run-link.sh; a whiteout of
#            /bin/vi; an opaque whiteout of /opt/old plus a new /opt/old/c
#   layer 3  /etc/motd ("motd from layer 3"), /etc/passwd and /etc/group with
#            user app (1000:1000)
#   config   Entrypoint ["/bin/sh","/app/run.sh"], Cmd ["from-cmd"],
#            Env [PATH=..., GREETING=hello-from-image], WorkingDir /app,
#            User app
# run.sh prints one line per fact the tests check (entrypoint/cmd/env/workdir,
#   user, whiteouts, hard link, layer order).
# Image smolvm-test:corrupt: one layer of its own (/corrupt-me), for the tests
#   that damage a blob (its layer shares no blob with v1).
# Produces under <repo>/.cache/test-image/:
#   oci/                       OCI image layout, tags v1 and corrupt
#   smolvm-test-v1.docker.tar  docker-save archive of v1 (skopeo docker-archive:)
#   v1.digest                  manifest digest of v1 (sha256:...), as pushed
#   corrupt-layer.digest       digest of the corrupt image's layer blob
# and pushes 127.0.0.1:5000/smolvm-test:{v1,corrupt} (digests preserved).
# Prints the registry reference of v1. Idempotent: unchanged outputs are kept,
# tags already in the registry with the same digest are not pushed again.
set -euo pipefail

die() { echo "make-test-image.sh: error: $*" >&2; exit 1; }
log() { echo "make-test-image.sh: $*" >&2; }

case "${1:-}" in
    "") ;;
    -h|--help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit 0 ;;
    *) die "unknown argument '$1' (usage: scripts/make-test-image.sh)" ;;
esac

repo_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
out="$repo_root/.cache/test-image"
registry=127.0.0.1:5000
name=smolvm-test

missing=()
for p in skopeo busybox-static; do
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
busybox=/bin/busybox
"$busybox" --list >/dev/null 2>&1 || die "$busybox (busybox-static) does not run"

"$repo_root/scripts/setup-registry.sh" >/dev/null

mkdir -p "$out"
work=$(mktemp -d "$out/build.XXXXXX")
trap 'rm -rf "$work"' EXIT
umask 022
layout="$work/oci"
mkdir -p "$layout/blobs/sha256"
printf '{"imageLayoutVersion":"1.0.0"}' >"$layout/oci-layout"

# Stores stdin as a blob; prints "sha256:HEX SIZE".
put_blob() {
    local tmp="$layout/blobs/tmp"
    cat >"$tmp"
    local hex size
    hex=$(sha256sum "$tmp" | cut -d' ' -f1)
    size=$(stat -c %s "$tmp")
    mv -f "$tmp" "$layout/blobs/sha256/$hex"
    echo "sha256:$hex $size"
}

# Writes a deterministic tar of directory $1's contents to stdout.
layer_tar() {
    (cd "$1" && find . -mindepth 1 -printf '%P\n' | LC_ALL=C sort |
        tar --format=gnu --numeric-owner --owner=0 --group=0 --mtime=@1700000000 \
            --no-recursion -T - -cf -)
}

# Layer: tar of directory $1, gzip -n; sets layer_desc (JSON) and diff_id.
layers_json=""
diff_ids_json=""
add_layer() {
    layer_tar "$1" >"$work/layer.tar"
    diff_id="sha256:$(sha256sum "$work/layer.tar" | cut -d' ' -f1)"
    local digest size
    read -r digest size < <(gzip -9 -n <"$work/layer.tar" | put_blob)
    layers_json+="${layers_json:+,}{\"mediaType\":\"application/vnd.oci.image.layer.v1.tar+gzip\",\"digest\":\"$digest\",\"size\":$size}"
    diff_ids_json+="${diff_ids_json:+,}\"$diff_id\""
    last_layer_digest=$digest
}

# Config + manifest for the layers added so far; $1 = config's "config"
# object, $2 = tag. Appends to index_json and resets the layer lists.
index_json=""
finish_image() {
    local cdigest csize mdigest msize
    read -r cdigest csize < <(printf '%s' "{\"architecture\":\"amd64\",\"os\":\"linux\",\"created\":\"2023-11-14T22:13:20Z\",\"config\":$1,\"rootfs\":{\"type\":\"layers\",\"diff_ids\":[$diff_ids_json]}}" | put_blob)
    read -r mdigest msize < <(printf '%s' "{\"schemaVersion\":2,\"mediaType\":\"application/vnd.oci.image.manifest.v1+json\",\"config\":{\"mediaType\":\"application/vnd.oci.image.config.v1+json\",\"digest\":\"$cdigest\",\"size\":$csize},\"layers\":[$layers_json]}" | put_blob)
    index_json+="${index_json:+,}{\"mediaType\":\"application/vnd.oci.image.manifest.v1+json\",\"digest\":\"$mdigest\",\"size\":$msize,\"annotations\":{\"org.opencontainers.image.ref.name\":\"$2\"}}"
    echo "$mdigest" >"$work/$2.digest"
    layers_json=""
    diff_ids_json=""
}

# ---------------------------------------------------------------- smolvm-test:v1
l1="$work/l1"
mkdir -p "$l1/bin" "$l1/opt/old" "$l1/etc"
cp "$busybox" "$l1/bin/busybox"
chmod 0755 "$l1/bin/busybox"
for applet in $("$busybox" --list); do
    [[ "$applet" == busybox ]] || ln -s busybox "$l1/bin/$applet"
done
[[ -L "$l1/bin/vi" && -L "$l1/bin/sh" ]] || die "busybox has no sh or vi applet"
echo a >"$l1/opt/old/a"
echo b >"$l1/opt/old/b"
echo "motd from layer 1" >"$l1/etc/motd"
add_layer "$l1"

l2="$work/l2"
mkdir -p "$l2/app" "$l2/bin" "$l2/opt/old"
cat >"$l2/app/run.sh" <<'EOF'
#!/bin/sh
echo "image entrypoint ran: $GREETING pwd=$(pwd) args=$*"
echo "user: $(id -u):$(id -g)"
if [ -e /bin/vi ] || [ -L /bin/vi ]; then echo "whiteout: /bin/vi present"; else echo "whiteout: /bin/vi absent"; fi
echo "opaque: $(ls /opt/old | tr '\n' ' ')"
a=$(stat -c %i /app/run.sh) b=$(stat -c %i /app/run-link.sh)
if [ "$a" = "$b" ]; then echo "hardlink: one inode, $(stat -c %h /app/run.sh) names"; else echo "hardlink: two inodes"; fi
echo "motd: $(cat /etc/motd)"
EOF
chmod 0755 "$l2/app/run.sh"
ln "$l2/app/run.sh" "$l2/app/run-link.sh"
: >"$l2/bin/.wh.vi"
: >"$l2/opt/old/.wh..wh..opq"
echo c >"$l2/opt/old/c"
add_layer "$l2"

l3="$work/l3"
mkdir -p "$l3/etc"
echo "motd from layer 3" >"$l3/etc/motd"
printf 'root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000:app:/app:/bin/sh\n' >"$l3/etc/passwd"
printf 'root:x:0:\napp:x:1000:\n' >"$l3/etc/group"
add_layer "$l3"

finish_image '{"User":"app","Env":["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin","GREETING=hello-from-image"],"Entrypoint":["/bin/sh","/app/run.sh"],"Cmd":["from-cmd"],"WorkingDir":"/app"}' v1

# ---------------------------------------------------------------- smolvm-test:corrupt
lc="$work/lc"
mkdir -p "$lc"
echo "this layer exists to be corrupted by tests/tests/boot_images.rs" >"$lc/corrupt-me"
add_layer "$lc"
echo "$last_layer_digest" >"$work/corrupt-layer.digest"
finish_image '{"Cmd":["/corrupt-me"]}' corrupt

printf '%s' "{\"schemaVersion\":2,\"mediaType\":\"application/vnd.oci.image.index.v1+json\",\"manifests\":[$index_json]}" >"$layout/index.json"

# ---------------------------------------------------------------- outputs
if [[ -f "$out/oci/index.json" ]] && cmp -s "$out/oci/index.json" "$layout/index.json" \
    && [[ -s "$out/v1.digest" && -s "$out/corrupt-layer.digest" ]]; then
    log "image unchanged ($(cat "$out/v1.digest"))"
else
    rm -rf "$out/oci" "$out/smolvm-test-v1.docker.tar"
    mv "$layout" "$out/oci"
    cp "$work/v1.digest" "$work/corrupt.digest" "$work/corrupt-layer.digest" "$out/"
    log "built $out/oci ($(cat "$out/v1.digest"))"
fi

if [[ ! -s "$out/smolvm-test-v1.docker.tar" ]]; then
    rm -f "$work/v1.docker.tar"
    skopeo copy -q "oci:$out/oci:v1" "docker-archive:$work/v1.docker.tar:$name:v1" >&2
    mv "$work/v1.docker.tar" "$out/smolvm-test-v1.docker.tar"
fi

for tag in v1 corrupt; do
    want=$(cat "$out/$tag.digest")
    have=$({ skopeo inspect --tls-verify=false --raw "docker://$registry/$name:$tag" 2>/dev/null || true; } | sha256sum | cut -d' ' -f1)
    if [[ "sha256:$have" != "$want" ]]; then
        log "push $registry/$name:$tag"
        skopeo copy -q --preserve-digests --dest-tls-verify=false "oci:$out/oci:$tag" "docker://$registry/$name:$tag" >&2
    fi
done
echo "localhost:5000/$name:v1"

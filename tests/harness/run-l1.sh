#!/usr/bin/env bash
# Boot an L1 Linux machine under QEMU (TCG, emulated AMD CPU with SVM+NPT) whose
# own KVM can run libkrun guests (L2), and run a scenario script inside it.
#
# Usage:
#   tests/harness/run-l1.sh --files DIR --script SCENARIOS.sh
#                           [--timeout SECS] [--mem MIB] [--log FILE]
#                           [--kmsg] [--append "KERNEL ARGS"] [--keep-initrd FILE]
#
#   --files DIR       copied to /work in L1 (cwd of the script); dynamic
#                     libraries of every ELF file in DIR are added (host ldd)
#   --script FILE     shell script run in L1 with /harness/lib.sh sourced
#                     (`scenario NAME CMD...`, see lib.sh for the markers)
#   --timeout SECS    hard limit for the whole QEMU run (default 300)
#   --mem MIB         L1 memory (default 2048)
#   --log FILE        also write the (CR-stripped) serial output to FILE
#   --kmsg            leave L1 kernel messages on the console during scenarios
#   --append ARGS     extra L1 kernel command line arguments
#   --keep-initrd F   copy the built initramfs to F (debugging)
#
# stdout: L1's serial console, with the "\r" of each "\r\n" removed.
# stderr: this script's own messages (prefixed "run-l1.sh:") and QEMU's.
# Exit status:
#   0  L1 ran SCENARIOS.sh to the end (@@SMOL-DONE rc=N@@ seen; N is the
#      script's own status, individual results are in the markers)
#   2  usage error            3  prerequisites missing (run scripts/setup-harness.sh)
#   4  L1 has no /dev/kvm     5  timeout
#   6  QEMU ended without @@SMOL-DONE@@ (L1 crash, panic, QEMU error)
#
# Env: SMOL_HARNESS_CACHE (default <repo>/.cache/harness), SMOL_QEMU
#      (default qemu-system-x86_64), SMOL_BUSYBOX (a static busybox),
#      SMOL_INITRD_COMPRESS (none|gzip, default none: an uncompressed cpio
#      boots ~1 s faster under TCG than gzip, and skips ~1 s of host gzip),
#      SMOL_L1_KERNEL (kernel to boot; default <cache>/vmlinux, a PVH-bootable
#      ELF, else <cache>/vmlinuz), SMOL_L1_CPU (default EPYC,+svm,+npt).
set -euo pipefail

me=run-l1.sh
say() { echo "$me: $*" >&2; }
usage_error() { say "error: $*"; say "usage: tests/harness/run-l1.sh --files DIR --script SCENARIOS.sh [--timeout SECS] [--mem MIB] [--log FILE] [--kmsg] [--append ARGS] [--keep-initrd FILE]"; exit 2; }
prereq_error() { say "error: $*"; exit 3; }

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo_root=$(cd "$here/../.." && pwd)
cache=${SMOL_HARNESS_CACHE:-$repo_root/.cache/harness}
qemu=${SMOL_QEMU:-qemu-system-x86_64}
compress=${SMOL_INITRD_COMPRESS:-none}

files="" script="" timeout_secs=300 mem=2048 log="" kmsg=0 extra_append="" keep_initrd=""
while [[ $# -gt 0 ]]; do
    case "$1" in
        --files) [[ $# -ge 2 ]] || usage_error "--files needs a value"; files=$2; shift 2 ;;
        --script) [[ $# -ge 2 ]] || usage_error "--script needs a value"; script=$2; shift 2 ;;
        --timeout) [[ $# -ge 2 ]] || usage_error "--timeout needs a value"; timeout_secs=$2; shift 2 ;;
        --mem) [[ $# -ge 2 ]] || usage_error "--mem needs a value"; mem=$2; shift 2 ;;
        --log) [[ $# -ge 2 ]] || usage_error "--log needs a value"; log=$2; shift 2 ;;
        --append) [[ $# -ge 2 ]] || usage_error "--append needs a value"; extra_append=$2; shift 2 ;;
        --keep-initrd) [[ $# -ge 2 ]] || usage_error "--keep-initrd needs a value"; keep_initrd=$2; shift 2 ;;
        --kmsg) kmsg=1; shift ;;
        -h|--help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit 0 ;;
        *) usage_error "unknown argument '$1'" ;;
    esac
done
[[ -n "$files" ]] || usage_error "--files DIR is required"
[[ -n "$script" ]] || usage_error "--script SCENARIOS.sh is required"
[[ -d "$files" ]] || usage_error "--files: '$files' is not a directory"
[[ -f "$script" ]] || usage_error "--script: '$script' is not a file"
[[ "$timeout_secs" =~ ^[1-9][0-9]*$ ]] || usage_error "--timeout must be a positive integer (seconds)"
[[ "$mem" =~ ^[1-9][0-9]*$ ]] || usage_error "--mem must be a positive integer (MiB)"
case "$compress" in gzip|none) ;; *) usage_error "SMOL_INITRD_COMPRESS must be gzip or none" ;; esac

# ---------------------------------------------------------------- prerequisites
hint="run scripts/setup-harness.sh"
command -v "$qemu" >/dev/null || prereq_error "QEMU ($qemu) not found; $hint"
for tool in cpio gzip timeout ldd find sed cc sha256sum; do
    command -v "$tool" >/dev/null || prereq_error "$tool not found; $hint"
done
kernel=${SMOL_L1_KERNEL:-}
if [[ -z "$kernel" ]]; then
    if [[ -s "$cache/vmlinux" ]]; then kernel=$cache/vmlinux; else kernel=$cache/vmlinuz; fi
fi
[[ -s "$kernel" ]] || prereq_error "L1 kernel $kernel missing; $hint"
[[ -s "$cache/modules/load-order" ]] || prereq_error "$cache/modules/load-order missing; $hint"
while read -r m; do
    [[ -z "$m" || -s "$cache/modules/$m" ]] || prereq_error "module $cache/modules/$m missing; $hint"
done <"$cache/modules/load-order"

busybox=${SMOL_BUSYBOX:-}
if [[ -z "$busybox" ]]; then
    for c in /bin/busybox /usr/bin/busybox; do
        [[ -x "$c" ]] && { busybox=$c; break; }
    done
fi
[[ -n "$busybox" && -x "$busybox" ]] || prereq_error "busybox not found (package busybox-static); $hint"
if ldd "$busybox" >/dev/null 2>&1; then
    prereq_error "$busybox is dynamically linked; install busybox-static ($hint)"
fi

# ---------------------------------------------------------------- initramfs
tmp=$(mktemp -d "${TMPDIR:-/tmp}/smol-l1.XXXXXX")
trap 'rm -rf "$tmp"' EXIT

# /harness/runas UID:GID PROG [ARG...] drops root for the non-root runs of
# lib.sh (`both`, `as_user`). busybox-static has no chpst, its setpriv cannot
# change ids, and its `su -c 'exec "$@"'` runs an applet named in "$@" (such
# as `sh -c ...`) inside the same shell with the wrong positional parameters;
# a direct exec has no such surprises. Built once per source version into the
# harness cache (~0.2 s).
runas_src=$(cat <<'RUNAS_C'
/* runas UID:GID PROG [ARG...]: setgroups({GID}), setgid, setuid, exec PROG.
 * Built by tests/harness/run-l1.sh with cc -static for the L1 initramfs. */
#include <errno.h>
#include <grp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int main(int argc, char **argv) {
    char *end;
    unsigned long uid, gid;
    gid_t groups[1];
    if (argc < 3) {
        fprintf(stderr, "usage: runas UID:GID PROG [ARG...]\n");
        return 2;
    }
    uid = strtoul(argv[1], &end, 10);
    if (end == argv[1] || *end != ':') {
        fprintf(stderr, "runas: bad UID:GID '%s'\n", argv[1]);
        return 2;
    }
    gid = strtoul(end + 1, &end, 10);
    if (*end != '\0') {
        fprintf(stderr, "runas: bad UID:GID '%s'\n", argv[1]);
        return 2;
    }
    groups[0] = (gid_t)gid;
    /* Groups, then gid, then uid: after setuid nothing else can change. */
    if (setgroups(1, groups) != 0 || setgid((gid_t)gid) != 0 || setuid((uid_t)uid) != 0) {
        fprintf(stderr, "runas: switching to %lu:%lu: %s\n", uid, gid, strerror(errno));
        return 126;
    }
    if (getuid() != uid || geteuid() != uid || getgid() != gid || getegid() != gid
        || (uid != 0 && setuid(0) == 0)) {
        fprintf(stderr, "runas: root was not dropped for good\n");
        return 126;
    }
    execvp(argv[2], argv + 2);
    fprintf(stderr, "runas: %s: %s\n", argv[2], strerror(errno));
    return errno == ENOENT ? 127 : 126;
}
RUNAS_C
)
runas=$cache/runas-$(printf '%s\n' "$runas_src" | sha256sum | cut -c1-16)
if [[ ! -x "$runas" ]]; then
    printf '%s\n' "$runas_src" >"$tmp/runas.c"
    cc -static -Os -s -o "$tmp/runas" "$tmp/runas.c" \
        || prereq_error "cc -static failed for the runas helper (needs gcc and libc6-dev); $hint"
    mv -f "$tmp/runas" "$runas"
fi
root="$tmp/root"
mkdir -p "$root"/{bin,sbin,usr/bin,usr/sbin,proc,sys,dev,tmp,run,root,etc,work,lib64,harness/modules}

cp "$busybox" "$root/bin/busybox"
chmod 755 "$root/bin/busybox"
# Equivalent of `busybox --install -s`, done on the host.
while read -r applet; do
    [[ -n "$applet" && "$applet" != bin/busybox ]] || continue
    [[ -e "$root/$applet" || -L "$root/$applet" ]] || ln -s /bin/busybox "$root/$applet"
done < <("$busybox" --list-full)

while read -r m; do
    [[ -n "$m" ]] && cp "$cache/modules/$m" "$root/harness/modules/$m"
done <"$cache/modules/load-order"
cp "$cache/modules/load-order" "$root/harness/modules/load-order"
cp "$here/lib.sh" "$root/harness/lib.sh"
cp "$script" "$root/harness/scenarios.sh"
cp "$here/l1-init.sh" "$root/init"
chmod 755 "$root/init"
cp "$runas" "$root/harness/runas"
chmod 755 "$root/harness/runas"
echo "$kmsg" >"$root/harness/kmsg"
# `user` (1000:1000) is the non-root host user of lib.sh's `both` and
# `as_user`; l1-init.sh gives it its HOME and /dev/kvm.
printf 'root:x:0:0:root:/root:/bin/sh\nuser:x:1000:1000:user:/home/user:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n' >"$root/etc/passwd"
printf 'root:x:0:\nuser:x:1000:\nnogroup:x:65534:\n' >"$root/etc/group"
printf '127.0.0.1 localhost smol-l1\n' >"$root/etc/hosts"

cp -a "$files/." "$root/work/"

# Shared libraries of every ELF file in DIR, at the paths the host resolves
# them to (no ld.so.cache in L1: glibc's built-in search path covers them).
declare -A libs=()
libs[/lib64/ld-linux-x86-64.so.2]=1
while IFS= read -r -d '' f; do
    [[ "$(head -c 4 "$f" | od -An -c | tr -d ' ')" == '177ELF' ]] || continue
    out=$(ldd "$f" 2>/dev/null) || continue   # static or not loadable here
    while read -r line; do
        lib=""
        if [[ "$line" =~ =\>\ (/[^ ]+)\ \( ]]; then
            lib=${BASH_REMATCH[1]}
        elif [[ "$line" =~ ^(/[^ ]+)\ \( ]]; then
            lib=${BASH_REMATCH[1]}
        elif [[ "$line" == *"=> not found"* ]]; then
            say "warning: $f: ${line%% *} not found on the host"
        fi
        [[ -n "$lib" ]] && libs[$lib]=1
    done <<<"$out"
done < <(find "$files" -type f -print0)
for lib in "${!libs[@]}"; do
    [[ -e "$lib" ]] || { say "warning: library $lib missing on the host"; continue; }
    mkdir -p "$root$(dirname "$lib")"
    cp -L "$lib" "$root$lib"
done

initrd="$tmp/initrd.img"
(
    cd "$root"
    if [[ "$compress" == gzip ]]; then
        find . -mindepth 1 | LC_ALL=C sort | cpio --quiet -o -H newc -R 0:0 | gzip -1 >"$initrd"
    else
        find . -mindepth 1 | LC_ALL=C sort | cpio --quiet -o -H newc -R 0:0 >"$initrd"
    fi
) || prereq_error "building the initramfs failed"
[[ -z "$keep_initrd" ]] || cp "$initrd" "$keep_initrd"
say "initramfs $(du -k "$initrd" | cut -f1) KiB ($compress); booting L1 $(basename "$kernel") ($(cat "$cache/kernel-version" 2>/dev/null || echo '?'), ${mem} MiB, timeout ${timeout_secs}s)"

# ---------------------------------------------------------------- boot
serial="$tmp/serial.log"
# Emulated AMD CPU with SVM + nested paging, so L1 gets kvm-amd.
cpu=${SMOL_L1_CPU:-EPYC,+svm,+npt}
append="console=ttyS0 quiet panic=-1${extra_append:+ $extra_append}"
qemu_args=(
    -accel tcg -cpu "$cpu" -smp 1 -m "$mem"
    -nodefaults -display none -serial stdio -monitor none -no-reboot
    -kernel "$kernel" -initrd "$initrd" -append "$append"
)
start=$(date +%s.%N)
set +e
# QEMU's stdin must not be a terminal; its stderr loses the TCG CPUID noise.
timeout -k 10 "$timeout_secs" "$qemu" "${qemu_args[@]}" </dev/null \
    2> >(grep -v --line-buffered "TCG doesn't support requested feature" >&2) \
    | sed -u 's/\r$//' | tee "$serial" ${log:+"$log"}
status=("${PIPESTATUS[@]}")
wait $! 2>/dev/null
set -e
end=$(date +%s.%N)
elapsed=$(awk -v a="$start" -v b="$end" 'BEGIN { printf "%.1f", b - a }')
qrc=${status[0]}

if grep -q '^@@SMOL-DONE rc=' "$serial"; then
    done_line=$(grep -m1 '^@@SMOL-DONE rc=' "$serial")
    say "L1 finished in ${elapsed}s: ${done_line}"
    exit 0
fi
if grep -q '@@SMOL-NO-KVM' "$serial"; then
    say "error: L1 has no /dev/kvm (see @@SMOL-NO-KVM@@ above); ${elapsed}s"
    exit 4
fi
if [[ $qrc -eq 124 || $qrc -eq 137 ]]; then
    say "error: timeout after ${timeout_secs}s: L1 did not finish the scenario script (no @@SMOL-DONE@@)"
    exit 5
fi
if grep -q '@@SMOL-L1-ERROR' "$serial"; then
    say "error: L1 set-up failed: $(grep -m1 '@@SMOL-L1-ERROR' "$serial")"
    exit 6
fi
say "error: QEMU exited with status $qrc after ${elapsed}s without @@SMOL-DONE@@ (L1 crash or panic? see output above)"
exit 6

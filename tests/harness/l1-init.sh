#!/bin/busybox sh
# shellcheck shell=sh
# /init of the L1 initramfs built by run-l1.sh (PID 1 inside QEMU).
# Markers (each on its own line):
#   @@SMOL-L1-UP t=SECS@@            init started (t = /proc/uptime)
#   @@SMOL-L1-ERROR MESSAGE@@        something in L1 set-up failed
#   @@SMOL-NO-KVM MESSAGE@@          /dev/kvm missing after insmod: powers off
#   @@SMOL-KVM-READY t=SECS@@        /dev/kvm present (mode 666 for `user`), scenarios start
#   @@SMOL-DMESG-BEGIN@@ .. @@SMOL-DMESG-END@@   L1 kernel warnings (if any)
#   @@SMOL-DONE rc=N t=SECS@@        SCENARIOS.sh finished with status N
/bin/busybox mount -t devtmpfs devtmpfs /dev 2>/dev/null
# The initramfs may lack /dev/console: take the console explicitly.
exec </dev/console >/dev/console 2>&1

export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export HOME=/root TERM=dumb

up() { read -r u _ </proc/uptime; echo "$u"; }
fail() {
    printf '\n@@SMOL-L1-ERROR %s@@\n' "$*"
    poweroff -f
    sleep 5
}

mount -t proc proc /proc || fail "mount proc"
mount -t sysfs sysfs /sys || fail "mount sysfs"
mount -t tmpfs -o mode=1777 tmpfs /tmp || fail "mount tmpfs /tmp"
mkdir -p /dev/pts /dev/shm
mount -t devpts devpts /dev/pts 2>/dev/null
mount -t tmpfs -o mode=1777 tmpfs /dev/shm 2>/dev/null
hostname smol-l1 2>/dev/null

printf '\n@@SMOL-L1-UP t=%s@@\n' "$(up)"

while read -r m; do
    [ -n "$m" ] || continue
    insmod "/harness/modules/$m" || printf '\n@@SMOL-L1-ERROR insmod %s failed@@\n' "$m"
done </harness/modules/load-order

# devtmpfs creates the node asynchronously; wait for it (at most 30 s:
# a loaded TCG machine can take more than the 2 s this once allowed).
i=0
while [ ! -c /dev/kvm ] && [ $i -lt 300 ]; do
    sleep 0.1
    i=$((i + 1))
done
if [ ! -c /dev/kvm ]; then
    printf '\n@@SMOL-NO-KVM /dev/kvm missing in L1 after loading kvm modules (does the QEMU CPU model have svm and npt?)@@\n'
    dmesg | tail -n 20
    poweroff -f
    sleep 5
fi

# The non-root host user of lib.sh's `both`/`as_user` (uid 1000, in
# /etc/passwd from run-l1.sh): a HOME of its own on a real tmpfs (its cache,
# ~/.cache/smolvm, is what libkrun's virtio-fs serves to the guest), /dev/kvm
# (root-only by default, as on most hosts without a kvm group), and every
# file under /work readable, directories and executables also searchable.
{ mkdir -p /home && mount -t tmpfs -o mode=755 tmpfs /home; } || fail "mount tmpfs /home"
{ mkdir -m 700 /home/user && chown 1000:1000 /home/user; } || fail "create /home/user"
chmod 666 /dev/kvm || fail "chmod /dev/kvm"
chmod -R a+rX /work || fail "chmod /work"

# Keep kernel chatter out of scenario output unless asked (see --kmsg).
if [ "$(cat /harness/kmsg 2>/dev/null)" != 1 ]; then
    dmesg -n 1 2>/dev/null
fi
dmesg -c >/dev/null 2>&1

printf '\n@@SMOL-KVM-READY t=%s@@\n' "$(up)"

cd /work || fail "cd /work"
sh -c '. /harness/lib.sh && . /harness/scenarios.sh'
rc=$?

if [ "$(cat /harness/kmsg 2>/dev/null)" != 1 ]; then
    # Warnings and worse (levels 0-4) that the quiet console held back.
    warn=$(dmesg -r 2>/dev/null | grep '^<[0-4]>' || true)
    if [ -n "$warn" ]; then
        printf '\n@@SMOL-DMESG-BEGIN@@\n%s\n@@SMOL-DMESG-END@@\n' "$warn"
    fi
fi
printf '\n@@SMOL-DONE rc=%s t=%s@@\n' "$rc" "$(up)"
poweroff -f
sleep 5

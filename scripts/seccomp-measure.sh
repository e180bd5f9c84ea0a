#!/usr/bin/env bash
# Measures what the VMM really calls, against the sandbox's allow-list
# (runtime/src/sandbox/seccomp.rs).
#
# Usage: scripts/seccomp-measure.sh COMMAND [ARG...]
#   e.g. SMOLVM_SKIP_KVM_CHECK=1 scripts/seccomp-measure.sh ./hello
#        scripts/seccomp-measure.sh target/release/examples/bare_boot --sandbox KERNEL ROOT -- /bin/true
#
# Runs COMMAND natively under `strace -f` for MEASURE_SECONDS (default 20;
# on kvm-pvm machines the guest never finishes: libkrun reaches KVM_RUN and
# the guest dies of an internal error after ~10 s) and prints, for the VMM
# (the process that renames itself "libkrun VM" in krun_start_enter, from
# that call on, with every thread it starts):
#   - every system call it made that the allow-list does not name;
#   - every call that failed with EPERM (what a sandbox refused; under
#     `bare_boot --sandbox` these are the allow-list's and Landlock's refusals).
# The trace itself is kept in MEASURE_OUT (default: a fresh temp dir).
#
# Scenarios measured for the list (the artifact's Smolfile or flags):
# net = false; net = true; a volume (--smolvm-volume); a storage disk; the
# SSH agent (--smolvm-ssh-agent with SSH_AUTH_SOCK set).
set -euo pipefail

die() { echo "seccomp-measure.sh: error: $*" >&2; exit 2; }
[ $# -ge 1 ] || die "usage: scripts/seccomp-measure.sh COMMAND [ARG...]"
command -v strace >/dev/null || die "strace not found (apt-get install strace)"

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
table="$repo/runtime/src/sandbox/seccomp.rs"
out=${MEASURE_OUT:-$(mktemp -d)}
mkdir -p "$out"

tr '\n' ' ' <"$table" | grep -oE 'sys!\(\s*SYS_[a-z0-9_]+' | sed -E 's/.*SYS_//' | sort -u >"$out/allowed"
[ -s "$out/allowed" ] || die "no sys!(SYS_...) entries found in $table"

timeout -s KILL "${MEASURE_SECONDS:-20}" \
    strace -f -qq -s 32 -o "$out/trace" "$@" </dev/null >"$out/stdout" 2>"$out/stderr" || true

# Keep the VMM's lines: from its PR_SET_NAME on, its pid and the threads it
# (and they) start.
awk '
    function result(line,   m) { if (match(line, /= [0-9]+$/)) return substr(line, RSTART + 2); return "" }
    {
        pid = $1
        if (!started && $0 ~ /prctl\(PR_SET_NAME, "(libkrun VM|VM:)/) { started = 1; vmm[pid] = 1 }
        if (!started || !(pid in vmm)) next
        print
        if ($0 ~ /clone3?\(|<\.\.\. clone3? resumed>/) { t = result($0); if (t != "") vmm[t] = 1 }
    }
' "$out/trace" >"$out/vmm"
[ -s "$out/vmm" ] || die "the trace has no VMM (no prctl(PR_SET_NAME, \"libkrun VM\")); see $out/stderr"

sed -nE 's/^[0-9]+ +([a-z0-9_]+)\(.*/\1/p' "$out/vmm" | sort -u >"$out/used"
echo "VMM calls ($(wc -l <"$out/used")): $(tr '\n' ' ' <"$out/used")"
echo
missing=$(comm -23 "$out/used" "$out/allowed")
if [ -n "$missing" ]; then
    echo "NOT in the allow-list: $(echo "$missing" | tr '\n' ' ')"
else
    echo "every VMM call is in the allow-list"
fi
eperm=$(grep -E '= -1 EPERM' "$out/vmm" | sed -nE 's/^[0-9]+ +([a-z0-9_]+)\(.*/\1/p' | sort | uniq -c || true)
if [ -n "$eperm" ]; then
    echo "refused with EPERM (count, call):"
    echo "$eperm"
fi
echo "trace: $out/trace"

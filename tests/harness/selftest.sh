#!/usr/bin/env bash
# Smoke test of the L1 harness (no libkrun involved): boots L1, checks that
# /dev/kvm appears and that scenario markers and exit codes come back.
# Usage: tests/harness/selftest.sh     (after scripts/setup-harness.sh)
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
mkdir "$tmp/files"
printf 'payload\n' >"$tmp/files/data.txt"
cat >"$tmp/scenarios.sh" <<'SCEN'
scenario seven sh -c 'echo printed-before-exit; printf no-newline; exit 7'
scenario kvm test -c /dev/kvm
scenario data cat data.txt
exit 3
SCEN
"$here/run-l1.sh" --files "$tmp/files" --script "$tmp/scenarios.sh" --timeout 120 >"$tmp/out"
fail=0
for want in '@@SMOL-BEGIN seven@@' 'printed-before-exit' 'no-newline' '@@SMOL-END seven rc=7@@' \
    '@@SMOL-END kvm rc=0@@' 'payload' '@@SMOL-END data rc=0@@'; do
    grep -qxF "$want" "$tmp/out" || { echo "selftest: missing line: $want" >&2; fail=1; }
done
grep -q '^@@SMOL-DONE rc=3 ' "$tmp/out" || { echo "selftest: missing @@SMOL-DONE rc=3@@" >&2; fail=1; }
if [[ $fail -ne 0 ]]; then
    cat "$tmp/out" >&2
    exit 1
fi
echo "selftest: ok"

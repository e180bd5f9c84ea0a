#!/usr/bin/env bash
# Every benchmark once, in its --smoke mode (one run, smallest inputs, still
# printing its figures), so that a bench that broke fails CI instead of
# rotting until someone needs it. Smoke figures are not measurements.
#
# Usage: scripts/bench-smoke.sh [--no-build] [BENCH...]
#   BENCH       run only these (e.g. `boot stub`: scripts/bench-boot.sh and
#               scripts/bench-stub.sh); default every scripts/bench-*.sh
#   --no-build  pass --no-build to the benches that build
#
# Prints each bench's output as it ends, then one line per bench with its
# exit status and wall time; exits 1 if any bench failed, 2 on a usage error.
# Needs what the benches need: root (the Debian tree), the real-boot harness
# (scripts/setup-harness.sh), the local registry (scripts/setup-registry.sh);
# scripts/test.sh sets all of them up, and CI (.ci/run) runs this after it.
# Takes a few minutes (most of it the three L1 boots under QEMU TCG).
set -euo pipefail
cd "$(dirname "$0")/.."

no_build=0 only=()
while [ $# -gt 0 ]; do
    case $1 in
        --no-build) no_build=1 ;;
        -h|--help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit 0 ;;
        -*) echo "bench-smoke.sh: unknown option '$1' (see --help)" >&2; exit 2 ;;
        *) only+=("$1") ;;
    esac
    shift
done
benches=()
if [ ${#only[@]} -gt 0 ]; then
    for b in "${only[@]}"; do
        f=scripts/bench-${b#bench-}
        f=${f%.sh}.sh
        [ -x "$f" ] || { echo "bench-smoke.sh: no benchmark $f" >&2; exit 2; }
        benches+=("$f")
    done
else
    for f in scripts/bench-*.sh; do
        [ "$f" = scripts/bench-smoke.sh ] || benches+=("$f")
    done
fi

log=$(mktemp -d "${TMPDIR:-/tmp}/bench-smoke.XXXXXX")
trap 'rm -rf "$log"' EXIT
summary=() failed=0 t_all=$EPOCHREALTIME
for f in "${benches[@]}"; do
    args=(--smoke)
    if [ "$no_build" = 1 ] && grep -q -- '--no-build' "$f"; then args+=(--no-build); fi
    name=$(basename "$f" .sh)
    echo "=== $f ${args[*]}"
    t0=$EPOCHREALTIME
    rc=0
    # A bench that hangs fails too (the L1 ones bound their QEMU run themselves).
    timeout 900 "$f" "${args[@]}" >"$log/$name" 2>&1 </dev/null || rc=$?
    secs=$(awk -v a="$t0" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.0f", b - a }')
    cat "$log/$name"
    if [ "$rc" = 0 ]; then
        summary+=("$(printf '  ok      %-22s %5s s' "$name" "$secs")")
    else
        failed=1
        summary+=("$(printf '  FAILED  %-22s %5s s  (exit %s)' "$name" "$secs" "$rc")")
    fi
done
echo
echo "bench smoke ($(awk -v a="$t_all" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.0f", b - a }') s):"
printf '%s\n' "${summary[@]}"
if [ "$failed" = 1 ]; then
    echo "bench-smoke.sh: a benchmark failed (its output is above)" >&2
    exit 1
fi

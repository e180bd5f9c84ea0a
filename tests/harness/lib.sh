# shellcheck shell=sh
# /harness/lib.sh: helpers for scenario scripts run inside the L1 machine.
# Sourced automatically before SCENARIOS.sh runs (run-l1.sh wraps it), and can
# be sourced again harmlessly: `. /harness/lib.sh`.
#
#   scenario NAME CMD [ARG...]
#
# prints on the console (QEMU serial, so lines end in \r\n on the host side):
#
#   @@SMOL-BEGIN NAME@@
#   ...CMD's stdout and stderr, merged, in order...
#   @@SMOL-END NAME rc=N@@
#   @@SMOL-TIME NAME secs=S.SS@@
#
# Each marker starts on a line of its own (a newline is added before END if the
# output did not end with one). NAME must match [A-Za-z0-9._-]+. CMD runs with
# stdin from /dev/null and stdout/stderr on a pipe (not the terminal), cwd
# unchanged (/work by default). N is CMD's exit status (128+SIG if killed).
# If SMOL_SCENARIO_TIMEOUT is set (seconds) and CMD is a program (not a shell
# function), CMD is killed with SIGTERM after that long (rc=143).
# scenario returns CMD's exit status, so `set -e` scripts stop at a failure.

if [ -z "${SMOL_LIB_SOURCED:-}" ]; then
SMOL_LIB_SOURCED=1

_smol_uptime() {
    read -r _smol_up _smol_idle </proc/uptime
    echo "$_smol_up"
}

scenario() {
    if [ $# -lt 2 ]; then
        printf '\n@@SMOL-ERROR scenario: usage: scenario NAME CMD [ARG...]@@\n'
        return 2
    fi
    _smol_name=$1
    shift
    case $_smol_name in
        '' | *[!A-Za-z0-9._-]*)
            printf '\n@@SMOL-ERROR scenario: invalid name (allowed: A-Za-z0-9._-)@@\n'
            return 2
            ;;
    esac
    _smol_out=/tmp/.smol-out.$$
    _smol_rcf=/tmp/.smol-rc.$$
    rm -f "$_smol_out" "$_smol_rcf"
    _smol_t0=$(_smol_uptime)
    printf '\n@@SMOL-BEGIN %s@@\n' "$_smol_name"
    # `|| _smol_rc=$?` keeps a `set -e` caller from dying before the rc is saved.
    if [ -n "${SMOL_SCENARIO_TIMEOUT:-}" ]; then
        { _smol_rc=0; timeout "$SMOL_SCENARIO_TIMEOUT" "$@" </dev/null 2>&1 || _smol_rc=$?; echo "$_smol_rc" >"$_smol_rcf"; } | tee "$_smol_out"
    else
        { _smol_rc=0; "$@" </dev/null 2>&1 || _smol_rc=$?; echo "$_smol_rc" >"$_smol_rcf"; } | tee "$_smol_out"
    fi
    _smol_rc=$(cat "$_smol_rcf" 2>/dev/null || echo 255)
    [ -n "$_smol_rc" ] || _smol_rc=255
    # Newline before END only if the output did not end with one.
    if [ -s "$_smol_out" ] && [ "$(tail -c 1 "$_smol_out" | od -An -c | tr -d ' ')" != '\n' ]; then
        printf '\n'
    fi
    _smol_t1=$(_smol_uptime)
    printf '@@SMOL-END %s rc=%s@@\n' "$_smol_name" "$_smol_rc"
    printf '@@SMOL-TIME %s secs=%s@@\n' "$_smol_name" \
        "$(awk -v a="$_smol_t0" -v b="$_smol_t1" 'BEGIN { printf "%.2f", b - a }')"
    rm -f "$_smol_out" "$_smol_rcf"
    return "$_smol_rc"
}

fi

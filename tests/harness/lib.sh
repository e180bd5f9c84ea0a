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
#
# Every real-boot scenario runs twice, as root and as a non-root user, because
# most users are not root:
#
#   both NAME CMD [ARG...]
#
# is `scenario NAME CMD...` (as root) followed by `scenario NAME@user CMD...`
# run as `user` (uid 1000, gid 1000, groups 1000, HOME=/home/user which it
# owns, /dev/kvm mode 666; see l1-init.sh). The user run keeps PATH and the
# working directory but not SMOLVM_CACHE_DIR or XDG_CACHE_HOME, so it uses its
# own cache, ~/.cache/smolvm; a scenario that needs another cache of its own
# says `SMOLVM_CACHE_DIR=$HOME/...` inside `sh -c '...'` ($HOME is /root for
# root). CMD must be a program (not a shell function); for a snippet use
# `sh -c 'SNIPPET' ARG0 ARG...`. Both runs always happen; `both` returns the
# root run's status if it failed, else the user run's.
#
#   as_user CMD [ARG...]        runs the program CMD as that user (same
#                               environment rules), output and status as is
#   user_sh SNIPPET [ARG0 ARG...]   `as_user /bin/sh -c SNIPPET ARG0 ARG...`:
#                               background jobs, kill -9, concurrency as the user

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
        '' | *[!A-Za-z0-9._@-]*)
            printf '\n@@SMOL-ERROR scenario: invalid name (allowed: A-Za-z0-9._@-)@@\n'
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

# The user of /etc/passwd (run-l1.sh) and how to become it: a plain word list,
# split on purpose, so `timeout` (SMOL_SCENARIO_TIMEOUT) can run it.
SMOL_USER=user
SMOL_USER_HOME=/home/user
SMOL_AS_USER="env -u SMOLVM_CACHE_DIR -u XDG_CACHE_HOME HOME=$SMOL_USER_HOME USER=$SMOL_USER LOGNAME=$SMOL_USER /harness/runas 1000:1000"

as_user() {
    # shellcheck disable=SC2086 # word list, see SMOL_AS_USER
    $SMOL_AS_USER "$@"
}

user_sh() {
    as_user /bin/sh -c "$@"
}

both() {
    if [ $# -lt 2 ]; then
        printf '\n@@SMOL-ERROR both: usage: both NAME CMD [ARG...]@@\n'
        return 2
    fi
    _smol_both=$1
    shift
    _smol_both_rc=0
    scenario "$_smol_both" "$@" || _smol_both_rc=$?
    # shellcheck disable=SC2086 # word list, see SMOL_AS_USER
    scenario "$_smol_both@$SMOL_USER" $SMOL_AS_USER "$@" || {
        _smol_user_rc=$?
        [ "$_smol_both_rc" -ne 0 ] || _smol_both_rc=$_smol_user_rc
    }
    return "$_smol_both_rc"
}

fi

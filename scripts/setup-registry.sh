#!/usr/bin/env bash
# Start a local OCI registry on 127.0.0.1:5000 for the image tests
# (scripts/make-test-image.sh pushes to it, tests/tests/boot_images.rs pulls).
#
# Usage: scripts/setup-registry.sh [--stop]
#   --stop    stop the registry this script started (by its pid file)
#
# Installs (apt, only if missing): docker-registry (the CNCF distribution
#   registry). The package's own service (0.0.0.0:5000) is kept from starting
#   (policy-rc.d during the install; stopped and disabled if it runs anyway).
# Runs: docker-registry serve <repo>/.cache/registry/config.yml in the
#   background: plain HTTP, no auth, bound to 127.0.0.1:5000 only, storage in
#   .cache/registry/data, access log in .cache/registry/registry.log (one line
#   per request; the tests read it to see what a pull fetched), pid in
#   .cache/registry/registry.pid.
# Also runs a second registry over the same storage on 127.0.0.1:5001 that
#   wants credentials (htpasswd, user smolvm-test, password in
#   .cache/registry/auth.password; apache2-utils makes the bcrypt entry), for
#   the credential-auth test; pid in .cache/registry/registry-auth.pid.
# Idempotent: registries this checkout started that already answer (200 on
#   :5000, 401 on :5001) are left alone. Test registries another checkout's
#   copy of this script started are stopped (the tests read this checkout's
#   storage, log and password) and this checkout's own started; anything else
#   on those ports is an error. Prints the open registry's URL on stdout once
#   both answer.
set -euo pipefail

die() { echo "setup-registry.sh: error: $*" >&2; exit 1; }
log() { echo "setup-registry.sh: $*" >&2; }

repo_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
dir="$repo_root/.cache/registry"
host=127.0.0.1
port=5000
url="http://$host:$port"

# HTTP status of GET /v2/ (empty if nothing answers); bash's /dev/tcp, so no
# curl is needed.
probe() {
    local p=${1:-$port}
    (
        exec 3<>"/dev/tcp/$host/$p" || exit 0
        printf 'GET /v2/ HTTP/1.0\r\nHost: %s:%s\r\n\r\n' "$host" "$p" >&3
        IFS=' ' read -r -t 3 _ status _ <&3
        echo "$status"
    ) 2>/dev/null || true
}

case "${1:-}" in
    "") ;;
    --stop)
        for pidfile in "$dir/registry.pid" "$dir/registry-auth.pid"; do
            if [[ -s "$pidfile" ]] && kill "$(cat "$pidfile")" 2>/dev/null; then
                log "stopped pid $(cat "$pidfile")"
            fi
            rm -f "$pidfile"
        done
        exit 0 ;;
    -h|--help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit 0 ;;
    *) die "unknown argument '$1' (usage: scripts/setup-registry.sh [--stop])" ;;
esac

# Whether pid file $1 names a live docker-registry serving config $2 of
# this checkout (a killed one that is not reaped yet has no command line).
serves_ours() {
    local pid
    pid=$(cat "$1" 2>/dev/null) || return 1
    [[ -n "$pid" && -r /proc/$pid/cmdline ]] || return 1
    tr '\0' ' ' </proc/"$pid"/cmdline | grep -qF "docker-registry serve $2"
}
# The pids of test registries (config <a checkout>/.cache/registry/
# config[-auth].yml) that this checkout's pid files do not name: another
# checkout's, or an earlier checkout's at this same path.
foreign_registries() {
    local c pid line
    for c in /proc/[0-9]*/cmdline; do
        line=$(tr '\0' ' ' <"$c" 2>/dev/null) || continue
        [[ "$line" =~ ^docker-registry\ serve\ (.*/\.cache/registry/config(-auth)?\.yml)\ $ ]] || continue
        pid=${c#/proc/}
        pid=${pid%/cmdline}
        # Ours: the pid this checkout's pid file names. The same config path
        # without it is a registry of an earlier checkout at this path.
        [[ "$pid" == "$(cat "$dir/registry.pid" 2>/dev/null)" \
            || "$pid" == "$(cat "$dir/registry-auth.pid" 2>/dev/null)" ]] && continue
        echo "$pid"
    done
}

auth_port=5001
# The tests read this checkout's storage, access log and password: a test
# registry another checkout started answers, but is not that one. It is
# stopped (it is that checkout's loopback test registry; its data stays),
# and this checkout's own are started below.
stopped=0
for pid in $(foreign_registries); do
    log "stopping pid $pid ($(tr '\0' ' ' <"/proc/$pid/cmdline")): another checkout's test registry holds the ports"
    kill "$pid" 2>/dev/null && stopped=1
done
if [[ $stopped == 1 ]]; then
    for _ in $(seq 1 50); do
        [[ -z "$(probe)" && -z "$(probe $auth_port)" ]] && break
        sleep 0.1
    done
fi
open_status=$(probe) auth_status=$(probe $auth_port)
if [[ "$open_status" == 200 ]] && ! serves_ours "$dir/registry.pid" "$dir/config.yml" \
    || { [[ "$auth_status" == 401 ]] && ! serves_ours "$dir/registry-auth.pid" "$dir/config-auth.yml"; }; then
    die "ports $port/$auth_port answer, but not with the registries this checkout started (the tests read $dir): stop what listens there and run this again"
fi
if [[ "$open_status" == 200 && "$auth_status" == 401 ]]; then
    echo "$url"
    exit 0
fi

apt_install() {
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "$@" >&2 \
        || { apt-get update -q >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "$@" >&2; }
}
if ! command -v htpasswd >/dev/null; then
    [[ $(id -u) -eq 0 ]] || die "htpasswd (apache2-utils) is not installed and this is not root: run as root"
    log "apt-get install apache2-utils"
    apt_install apache2-utils || die "apt-get install apache2-utils failed"
fi

if ! command -v docker-registry >/dev/null; then
    [[ $(id -u) -eq 0 ]] || die "docker-registry is not installed and this is not root: run as root"
    # Keep the package's postinst from starting its own service on 0.0.0.0:5000.
    own_policy=0
    if [[ ! -e /usr/sbin/policy-rc.d ]]; then
        printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
        chmod 0755 /usr/sbin/policy-rc.d
        own_policy=1
    fi
    log "apt-get install docker-registry"
    ok=1
    apt_install docker-registry || ok=0
    [[ $own_policy -eq 1 ]] && rm -f /usr/sbin/policy-rc.d
    [[ $ok -eq 1 ]] || die "apt-get install docker-registry failed"
    # The package enables its unit; on a machine with systemd it would start
    # on 0.0.0.0:5000 at the next boot.
    if command -v systemctl >/dev/null; then
        systemctl disable --now docker-registry >/dev/null 2>&1 || true
    fi
fi
mkdir -p "$dir/data"
cat >"$dir/config.yml" <<EOF
# Written by scripts/setup-registry.sh: the test registry, local only.
version: 0.1
log:
  level: warn
  accesslog:
    disabled: false
storage:
  filesystem:
    rootdirectory: $dir/data
  delete:
    enabled: true
http:
  addr: $host:$port
  secret: smolvm-test-registry-local-only
EOF

if [[ "$(probe)" == 200 ]]; then
    :
elif serves_ours "$dir/registry.pid" "$dir/config.yml"; then
    log "pid $(cat "$dir/registry.pid") is running but does not answer yet"
else
    log "starting docker-registry on $host:$port (storage $dir/data)"
    setsid nohup docker-registry serve "$dir/config.yml" >>"$dir/registry.log" 2>&1 </dev/null &
    echo $! >"$dir/registry.pid"
fi

# The credential-auth registry: the same storage, htpasswd auth.
[[ -s "$dir/auth.password" ]] || head -c 18 /dev/urandom | base64 | tr -d '/+=' >"$dir/auth.password"
htpasswd -Bbn smolvm-test "$(cat "$dir/auth.password")" >"$dir/htpasswd"
sed -e "s|addr: $host:$port|addr: $host:$auth_port|" "$dir/config.yml" >"$dir/config-auth.yml"
cat >>"$dir/config-auth.yml" <<EOF
auth:
  htpasswd:
    realm: smolvm-test
    path: $dir/htpasswd
EOF
if [[ "$(probe $auth_port)" != 401 ]]; then
    if serves_ours "$dir/registry-auth.pid" "$dir/config-auth.yml"; then
        log "pid $(cat "$dir/registry-auth.pid") is running but does not answer yet"
    else
        log "starting the credential-auth registry on $host:$auth_port"
        setsid nohup docker-registry serve "$dir/config-auth.yml" >>"$dir/registry-auth.log" 2>&1 </dev/null &
        echo $! >"$dir/registry-auth.pid"
    fi
fi

for _ in $(seq 1 100); do
    if [[ "$(probe)" == 200 && "$(probe $auth_port)" == 401 ]]; then
        echo "$url"
        exit 0
    fi
    serves_ours "$dir/registry.pid" "$dir/config.yml" || break
    serves_ours "$dir/registry-auth.pid" "$dir/config-auth.yml" || break
    sleep 0.2
done
tail -n 20 "$dir/registry.log" "$dir/registry-auth.log" >&2 || true
die "the registries do not answer: $url/v2/ should give 200 and :$auth_port/v2/ 401 (logs above, $dir/registry*.log)"

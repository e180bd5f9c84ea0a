#!/usr/bin/env bash
# Install what the key-source tests (tests/tests/integration/key_sources.rs) need on a
# Debian bookworm machine: SoftHSM2 (a PKCS#11 token in files, for
# `pack create --key pkcs11:…`) and OpenSC's pkcs11-tool (which makes an
# ed25519 key inside the token the way an operator would). ssh-agent and
# ssh-add come with openssh-client (scripts/setup-harness.sh).
#
# Usage: scripts/setup-signing-tokens.sh
#   Installs (apt, only if missing): softhsm2 opensc
#   Prints the SoftHSM2 module path on stdout.
set -euo pipefail

die() { echo "setup-signing-tokens.sh: error: $*" >&2; exit 1; }
log() { echo "setup-signing-tokens.sh: $*" >&2; }

case "${1:-}" in
    "") ;;
    -h|--help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit 0 ;;
    *) die "unknown argument '$1' (usage: scripts/setup-signing-tokens.sh)" ;;
esac

command -v apt-get >/dev/null || die "apt-get not found (this script targets Debian bookworm)"
SUDO=()
if [[ $(id -u) -ne 0 ]]; then
    command -v sudo >/dev/null || die "not root and sudo is missing: run as root"
    SUDO=(sudo)
fi

packages=(softhsm2 opensc)
missing=()
for p in "${packages[@]}"; do
    status=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
    [[ "$status" == "install ok installed" ]] || missing+=("$p")
done
if [[ ${#missing[@]} -gt 0 ]]; then
    log "installing: ${missing[*]}"
    if ! "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive \
            apt-get install -y -q --no-install-recommends "${missing[@]}" >&2; then
        "${SUDO[@]}" apt-get update -q >&2 || die "apt-get update failed"
        "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive \
            apt-get install -y -q --no-install-recommends "${missing[@]}" >&2 \
            || die "apt-get install ${missing[*]} failed"
    fi
fi

module=/usr/lib/softhsm/libsofthsm2.so
[[ -f "$module" ]] || die "$module missing after installing softhsm2"
command -v softhsm2-util >/dev/null || die "softhsm2-util missing after installing softhsm2"
command -v pkcs11-tool >/dev/null || die "pkcs11-tool missing after installing opensc"
echo "$module"

#!/usr/bin/env bash
# Install what the desktop tests need on a Debian bookworm machine
# (tests/tests/desktop.rs: a double-click under a real X server, the
# installed .desktop entry checked by the freedesktop validator).
#
# Usage: scripts/setup-desktop.sh
#
# Installs (apt, only if missing, never removing anything):
#   xvfb                 a headless X server (Xvfb) to double-click on
#   xterm                a real terminal emulator the tool reopens itself in
#   x11-utils            xwininfo: which windows are open
#   x11-apps             xwd: a screenshot of the window, kept in the test log
#   xdotool              presses Enter in the window that waits for it
#   desktop-file-utils   desktop-file-validate, for --smolvm-install's entry
# Called by scripts/setup-harness.sh, so CI has them.
set -euo pipefail

die() { echo "setup-desktop.sh: error: $*" >&2; exit 1; }
log() { echo "setup-desktop.sh: $*" >&2; }

case "${1:-}" in
    "") ;;
    -h|--help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit 0 ;;
    *) die "unknown argument '$1' (usage: scripts/setup-desktop.sh)" ;;
esac

command -v apt-get >/dev/null || die "apt-get not found (this script targets Debian bookworm)"
command -v dpkg-query >/dev/null || die "dpkg-query not found"

SUDO=()
if [[ $(id -u) -ne 0 ]]; then
    command -v sudo >/dev/null || die "not root and sudo is missing: run as root"
    SUDO=(sudo)
fi

packages=(xvfb xterm x11-utils x11-apps xdotool desktop-file-utils)
missing=()
for p in "${packages[@]}"; do
    status=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
    [[ "$status" == "install ok installed" ]] || missing+=("$p")
done
if [[ ${#missing[@]} -eq 0 ]]; then
    log "apt packages present: ${packages[*]}"
    exit 0
fi
log "installing: ${missing[*]}"
install() {
    "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive \
        apt-get install -y -q --no-install-recommends "${missing[@]}" >&2
}
# Update the package lists only if installing from the current ones fails.
if ! install; then
    log "apt-get update"
    "${SUDO[@]}" apt-get update -q >&2 || die "apt-get update failed"
    install || die "apt-get install ${missing[*]} failed"
fi
for tool in Xvfb xterm xwininfo xwd xdotool desktop-file-validate; do
    command -v "$tool" >/dev/null || die "$tool still missing after install"
done

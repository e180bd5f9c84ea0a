#!/usr/bin/env bash
# Install the SPDX project's own validator (spdx-tools on PyPI, pinned) in a
# virtual environment under .cache/, for the SBOM test
# (tests/tests/integration/release_review.rs): `pyspdxtools -i FILE` parses
# an SPDX 2.3 JSON document and checks it against the specification, exit 0
# only when it is valid.
#
# Usage: scripts/setup-spdx-validator.sh
#   Installs (apt, only if missing): python3-venv
#   Prints the validator's path on stdout.
set -euo pipefail

die() { echo "setup-spdx-validator.sh: error: $*" >&2; exit 1; }
log() { echo "setup-spdx-validator.sh: $*" >&2; }
[ $# -eq 0 ] || die "no arguments expected (usage: scripts/setup-spdx-validator.sh)"

repo=$(cd "$(dirname "$0")/.." && pwd)
version=0.8.5
venv=$repo/.cache/spdx-tools-$version
tool=$venv/bin/pyspdxtools
if [ ! -x "$tool" ]; then
    if ! python3 -c 'import ensurepip' 2>/dev/null; then
        log "apt-get install python3-venv"
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends python3-venv >&2 \
            || { apt-get update -q >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends python3-venv >&2; } \
            || die "apt-get install python3-venv failed"
    fi
    rm -rf "$venv"
    python3 -m venv "$venv" || die "python3 -m venv $venv failed"
    log "pip install spdx-tools==$version"
    "$venv/bin/pip" install -q "spdx-tools==$version" >&2 || die "pip install spdx-tools==$version failed"
fi
"$tool" --help >/dev/null || die "$tool does not run"
echo "$tool"

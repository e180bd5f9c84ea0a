#!/usr/bin/env bash
# RustSec advisories for the locked dependency graph: `cargo deny check
# advisories` against a clone of the RustSec advisory database.
#
# Usage: scripts/audit.sh [--db DIR] [--require]
#   --db DIR    an existing clone (work tree or bare mirror) of github.com/rustsec/advisory-db
#               to check against, offline; default: $SMOLVM_ADVISORY_DB, else
#               clone it from github.com into .cache/advisory-db (refreshed on
#               every run)
#   --require   exit 1 when no database can be had (default: say so and exit 0,
#               because the build machines cannot reach github.com)
#
# Exit: 0 no advisory hits the graph (or no database, without --require);
#       1 an advisory hits it (cargo deny prints which and the way out);
#       2 usage error.
# The database's newest commit date is printed: a check is only as fresh as it.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"

db=${SMOLVM_ADVISORY_DB:-} require=0
while [ $# -gt 0 ]; do
    case "$1" in
        --db) db=$2; shift 2 ;;
        --require) require=1; shift ;;
        -h|--help) sed -n '2,17p' "$0"; exit 0 ;;
        *) echo "audit.sh: unknown argument '$1' (see --help)" >&2; exit 2 ;;
    esac
done

url=https://github.com/rustsec/advisory-db
dbs=$repo/.cache/advisory-dbs
# cargo-deny keeps each database at <db-path>/advisory-db-<hash of its URL>;
# the name is found from a first (failing, offline) run below.
mkdir -p "$dbs"
config=$dbs/deny-advisories.toml
cat >"$config" <<EOF
[advisories]
db-path = "$dbs"
db-urls = ["$url"]
EOF

if [ -z "$db" ]; then
    fresh=$dbs/fetch
    rm -rf "$fresh"
    if git clone -q --depth 1 "$url" "$fresh" 2>/dev/null; then
        db=$fresh
    else
        msg="audit.sh: advisories NOT checked: $url is not reachable (give a clone with --db DIR or SMOLVM_ADVISORY_DB)"
        echo "$msg" >&2
        [ "$require" = 1 ] && exit 1
        exit 0
    fi
fi
if [ ! -d "$db/crates" ] && git -C "$db" rev-parse --git-dir >/dev/null 2>&1; then
    # A bare repository (a mirror): check out its newest commit.
    rm -rf "$dbs/checkout"
    git clone -q "$db" "$dbs/checkout"
    db=$dbs/checkout
fi
[ -d "$db/crates" ] || { echo "audit.sh: $db is not an advisory database (no crates/ directory)" >&2; exit 2; }

# Where cargo-deny looks for this URL's database: ask it (offline, so it
# only names the directory it wanted).
name=$(cargo deny --offline --log-level error --config "$config" check advisories 2>&1 \
    | grep -o 'advisory-db-[0-9a-f]\{16\}' | head -n 1 || true)
if [ -z "$name" ]; then
    name=$(find "$dbs" -maxdepth 1 -name 'advisory-db-*' -printf '%f\n' | head -n 1)
fi
[ -n "$name" ] || { echo "audit.sh: cannot tell where cargo-deny keeps the database" >&2; exit 2; }
if [ "$(cd "$db" && pwd)" != "$dbs/$name" ]; then
    rm -rf "${dbs:?}/$name"
    cp -r "$db" "$dbs/$name"
fi
rm -rf "$dbs/checkout" "$dbs/fetch"
when=$(git -C "$dbs/$name" log -1 --format=%cs 2>/dev/null || echo "unknown date")
echo "audit.sh: RustSec advisory database as of $when" >&2
cargo deny --offline --log-level warn --config "$config" check advisories

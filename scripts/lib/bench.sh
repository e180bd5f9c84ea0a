# shellcheck shell=bash
# Shared by scripts/bench-*.sh: the preamble every benchmark had copied (repo
# root, logging, tools apt-installed when missing, a scratch directory removed
# at exit unless --keep, a private XDG_STATE_HOME, argument checks, --smoke),
# the statistics (median, minimum), the interleaving of runs and the printing
# of "runs:" lists.
#
# Use: at the top of a bench, after `set -euo pipefail`:
#   . "$(dirname "${BASH_SOURCE[0]}")/lib/bench.sh"
#   bench_init bench-foo.sh          # name used in messages; cd to the repo
# then parse arguments with bench_common_arg for --keep / --smoke / --no-build
# / -h, and call bench_scratch PREFIX once the inputs are checked.
#
# Variables set: repo (the repository root, also the cwd), rel (the release
# directory: $CARGO_TARGET_DIR/release, else $repo/target/release), keep=0,
# smoke=0, build=1, scratch (after bench_scratch).
#
# --smoke (every bench): one run with the smallest inputs, still printing its
# figures, so that scripts/bench-smoke.sh (CI) notices a bench that broke.
# Smoke figures are not measurements.

# bench_init NAME [--no-build]: messages say NAME; cwd becomes the repository
# root; with --no-build the bench accepts that option (it builds otherwise).
bench_init() {
    bench_name=$1
    bench_has_build=0
    [ "${2:-}" != --no-build ] || bench_has_build=1
    repo=$(cd "$(dirname "${BASH_SOURCE[1]}")/.." && pwd)
    cd "$repo" || exit 2
    rel=${CARGO_TARGET_DIR:-$repo/target}/release
    # A relative CARGO_TARGET_DIR is relative to the repository (cargo's cwd).
    case $rel in /*) ;; *) rel=$repo/$rel ;; esac
    # shellcheck disable=SC2034 # read by the benches
    keep=0 smoke=0 build=1
    bench_cleanups=()
}

log() { echo "$bench_name: $*" >&2; }
die() { echo "$bench_name: error: $*" >&2; exit 1; }
# The header comment of the calling script (from line 2 to the first line
# that is not a comment), as --help prints it.
bench_help() {
    awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"
    exit 0
}

# bench_common_arg ARG: handles the options every bench spells alike
# (--keep, --smoke, --no-build, -h/--help); returns 1 for anything else, so
# a bench's own `case` can go on: `bench_common_arg "$1" && { shift; continue; }`.
# --no-build is accepted only where bench_init was given it.
bench_common_arg() {
    # shellcheck disable=SC2034 # smoke is read by the benches
    case $1 in
        --keep) keep=1 ;;
        --smoke) smoke=1 ;;
        --no-build) [ "$bench_has_build" = 1 ] || return 1; build=0 ;;
        -h|--help) bench_help ;;
        *) return 1 ;;
    esac
}
bench_unknown_arg() { echo "$bench_name: error: unknown argument '$1' (see $0 --help)" >&2; exit 2; }
# bench_posint NAME VALUE: VALUE must be a positive integer.
bench_posint() { [[ $2 =~ ^[1-9][0-9]*$ ]] || { echo "$bench_name: error: $1 wants a positive integer (got '$2')" >&2; exit 2; }; }
bench_need_root() { [ "$(id -u)" = 0 ] || die "run as root (the Debian tree has device nodes and root-owned files)"; }

# bench_apt PACKAGE...: apt-get install the Debian packages that are not
# installed (an apt-get update first only if the install fails).
bench_apt() {
    local need=() p
    for p in "$@"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || need+=("$p")
    done
    [ ${#need[@]} -gt 0 ] || return 0
    log "installing ${need[*]}"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${need[@]}" >&2 \
        || { apt-get update -q >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${need[@]}" >&2; } \
        || die "apt-get install ${need[*]} failed"
}
# bench_tools TOOL...: each command must exist.
bench_tools() {
    local t
    for t in "$@"; do command -v "$t" >/dev/null || die "$t missing (apt-get install $t)"; done
}

# bench_build PACKAGE... : cargo build --release -q -p each (unless --no-build).
# An `example:PKG:NAME` builds example NAME of PKG. smolvm-stub is built on
# its own, as releases build it (docs/releases.md: cargo unifies features
# across the packages of one build).
bench_build() {
    [ "$build" = 1 ] || return 0
    local a args=() stub=0
    for a in "$@"; do
        case $a in
            example:*) a=${a#example:}; cargo build --release -q -p "${a%%:*}" --example "${a#*:}" ;;
            smolvm-stub) stub=1 ;;
            *) args+=(-p "$a") ;;
        esac
    done
    [ ${#args[@]} = 0 ] || cargo build --release -q "${args[@]}"
    [ "$stub" = 0 ] || cargo build --release -q -p smolvm-stub
}
# bench_files FILE...: each must exist.
bench_files() { local f; for f in "$@"; do [ -f "$f" ] || die "missing $f"; done; }

# bench_on_exit CMD: run CMD (a string for eval) at exit, before the scratch
# directory goes.
bench_on_exit() { bench_cleanups+=("$1"); }
bench_exit() {
    local c
    for c in "${bench_cleanups[@]}"; do eval "$c" || true; done
    if [ "$keep" = 0 ] && [ -n "${scratch:-}" ]; then
        chmod -R u+w "$scratch" 2>/dev/null || true
        rm -rf "$scratch"
    fi
    if [ -n "${bench_state:-}" ]; then rm -rf "$bench_state"; fi
}
trap bench_exit EXIT

# bench_scratch PREFIX: a new scratch directory in $scratch (removed at exit
# unless --keep, then its path is printed).
bench_scratch() {
    scratch=$(mktemp -d "${TMPDIR:-/tmp}/$1.XXXXXX")
    if [ "$keep" = 1 ]; then log "scratch directory kept: $scratch"; fi
}
# bench_private_state: the machines packed here carry fresh keys each run: a
# start with no trusted keys pins a name's first signer (trust on first use)
# in XDG_STATE_HOME, so the benchmark keeps its own state instead of the
# person's (removed at exit).
bench_private_state() {
    bench_state=$(mktemp -d "${TMPDIR:-/tmp}/smolvm-bench-state.XXXXXX")
    XDG_STATE_HOME=$bench_state
    export XDG_STATE_HOME
}

# bench_busybox_root DIR [APPLET...]: busybox-static as DIR/bin/busybox with
# the APPLETs linked to it (every applet when none are named), a root
# /etc/passwd and /etc/group.
bench_busybox_root() {
    local dir=$1 a applets
    shift
    [ -x /bin/busybox ] || die "/bin/busybox missing (busybox-static; scripts/setup-harness.sh installs it)"
    mkdir -p "$dir/bin" "$dir/etc"
    cp /bin/busybox "$dir/bin/busybox"
    if [ $# = 0 ]; then mapfile -t applets < <(/bin/busybox --list); set -- "${applets[@]}"; fi
    for a in "$@"; do [ "$a" = busybox ] || ln -sf busybox "$dir/bin/$a"; done
    printf 'root:x:0:0:root:/root:/bin/sh\n' >"$dir/etc/passwd"
    printf 'root:x:0:\n' >"$dir/etc/group"
}

# --- time and statistics -------------------------------------------------------
now() { echo "$EPOCHREALTIME"; }   # bash 5: no fork
# since T0: seconds from T0 (a `now`) to now, 4 decimals.
since() { awk -v a="$EPOCHREALTIME" -v b="$1" 'BEGIN { printf "%.4f", a - b }'; }
# Median of the numbers on stdin, one a line; "nan" lines and empty lines are
# skipped; prints nan when none is left.
median() {
    grep -v -e '^nan$' -e '^$' | sort -g \
        | awk '{ v[NR] = $1 } END { if (NR == 0) { print "nan"; exit } print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}
# The smallest of the numbers on stdin: on a loaded machine the median moves
# with the load, the minimum much less.
least() { grep -v -e '^nan$' -e '^$' | sort -g | head -n 1; }
# runs_list: stdin's lines (one value each) on one line, space separated, as
# the "runs:" lists print them.
runs_list() { paste -sd' ' -; }
# interleave I ITEM...: the ITEMs in order for an odd round I, reversed for an
# even one, so drifting machine load hits all of them alike.
interleave() {
    local i=$1
    shift
    if [ $((i % 2)) = 1 ]; then printf '%s\n' "$@"; else printf '%s\n' "$@" | tac; fi | paste -sd' ' -
}
# rotate I ITEM...: the ITEMs rotated left by I (round I starts with item I mod N).
rotate() {
    local _i=$1 _k _items _rot=()
    shift
    _items=("$@")
    for ((_k = 0; _k < $#; _k++)); do _rot+=("${_items[(_k + _i) % $#]}"); done
    echo "${_rot[*]}"
}

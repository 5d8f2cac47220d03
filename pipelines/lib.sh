# shellcheck shell=sh
# pipelines/lib.sh: shell helpers shared by pipelines/adapt, predict, sweep and demo.
# Sourced, not run. POSIX sh; the caller sets PROG (its name, for messages) and has
# `set -eu` on.
#
#   dp_die MSG...          "PROG: MSG" on stderr, exit 1
#   dp_usage MSG...        "PROG: MSG" and a hint on stderr, exit 2
#   dp_warn MSG...         "PROG: MSG" on stderr
#   dp_info MSG...         like dp_warn, unless DP_QUIET=1
#   dp_find_bin            sets DP_BIN to the folder holding the filters and puts it first
#                          on PATH: $DAPIPE_BIN, else ../bin next to pipelines/, else PATH
#   dp_int OPT VALUE MIN MAX     check an integer option (exit 2 with a message)
#   dp_num OPT VALUE MIN MAX     check a decimal option (exit 2 with a message)
#   dp_abs PATH            absolute form of PATH (the file need not exist)
#   dp_q WORD              WORD quoted for sh (single quotes)
#   dp_log_init FILE       start a runnable commands file (commands.sh)
#   dp_do STAGE CMDLINE    append CMDLINE to the commands file, run it with eval, and die
#                          naming STAGE if it fails
#   dp_try CMDLINE         run CMDLINE with eval; log it only when it succeeds; its status
#   dp_json_num FILE KEY   the first number stored under "KEY" in a JSON file (empty if none)
#   dp_csv_col FILE NAME   1-based index of column NAME in a CSV header (empty if absent)
#   dp_term                the gnuplot PNG terminal (pngcairo when available, else png)

DP_HERE=$(cd "$(dirname "$0")" && pwd)
DP_QUIET=${DP_QUIET:-0}
DP_LOG=""

dp_die() {
	echo "$PROG: $*" >&2
	exit 1
}

dp_usage() {
	echo "$PROG: $*" >&2
	echo "Try '$PROG --help' for more information." >&2
	exit 2
}

dp_warn() {
	echo "$PROG: $*" >&2
}

dp_info() {
	[ "$DP_QUIET" = 1 ] || echo "$PROG: $*" >&2
}

# A folder that holds the filters (all of them; normalize stands for the set).
dp_has_filters() {
	[ -n "$1" ] && [ -x "$1/normalize" ] && [ -x "$1/train-step" ]
}

dp_find_bin() {
	DP_BIN=""
	if [ -n "${DAPIPE_BIN:-}" ]; then
		dp_has_filters "$DAPIPE_BIN" || dp_die "DAPIPE_BIN=$DAPIPE_BIN: no dapipe filters there (build them with make)"
		DP_BIN=$(cd "$DAPIPE_BIN" && pwd)
	elif dp_has_filters "$DP_HERE/../bin"; then
		DP_BIN=$(cd "$DP_HERE/../bin" && pwd)
	else
		p=$(command -v normalize 2>/dev/null || true)
		[ -n "$p" ] || dp_die "cannot find the dapipe filters: build them with make, or set DAPIPE_BIN"
		DP_BIN=$(cd "$(dirname "$p")" && pwd)
	fi
	PATH="$DP_BIN:$PATH"
	export PATH
}

dp_int() {
	case "$2" in
	'' | *[!0-9-]* | ?*-*) dp_usage "$1: $2: not an integer" ;;
	esac
	[ "$2" -ge "$3" ] || dp_usage "$1: $2: must be at least $3"
	[ "$2" -le "$4" ] || dp_usage "$1: $2: must be at most $4"
}

dp_num() {
	ok=$(awk -v s="$2" 'BEGIN { print (s ~ /^[-+]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][-+]?[0-9]+)?$/) ? 1 : 0 }')
	[ "$ok" = 1 ] || dp_usage "$1: $2: not a number"
	awk -v v="$2" -v m="$3" 'BEGIN { exit !(v + 0 >= m + 0) }' || dp_usage "$1: $2: must be at least $3"
	awk -v v="$2" -v m="$4" 'BEGIN { exit !(v + 0 <= m + 0) }' || dp_usage "$1: $2: must be at most $4"
}

dp_abs() {
	case "$1" in
	/*) printf '%s\n' "$1" ;;
	*) printf '%s\n' "$PWD/$1" ;;
	esac
}

dp_q() {
	case "$1" in
	'' | *[!A-Za-z0-9_./:=,+@%-]*) printf "'%s'" "$(printf '%s' "$1" | sed "s/'/'\\\\''/g")" ;;
	*) printf '%s' "$1" ;;
	esac
}

dp_log_init() {
	DP_LOG=$1
	{
		echo "#!/bin/sh"
		echo "# The commands $PROG ran, in order; run this file to run them again"
		echo "# (edit a line to swap one stage)."
		echo "set -eu"
		echo "PATH=$(dp_q "$DP_BIN"):\$PATH"
		echo "export PATH"
	} >"$DP_LOG"
}

dp_do() {
	stage=$1
	shift
	[ -z "$DP_LOG" ] || printf '%s\n' "$1" >>"$DP_LOG"
	[ "${DP_VERBOSE:-0}" = 0 ] || echo "+ $1" >&2
	eval "$1" || dp_die "$stage failed (exit $?): $1"
}

dp_try() {
	[ "${DP_VERBOSE:-0}" = 0 ] || echo "+ $1" >&2
	if eval "$1"; then
		[ -z "$DP_LOG" ] || printf '%s\n' "$1" >>"$DP_LOG"
		return 0
	fi
	return 1
}

dp_json_num() {
	awk -v k="\"$2\"" '{ s = s $0 " " }
	END {
		i = index(s, k)
		if (!i) exit
		s = substr(s, i + length(k))
		sub(/^[ \t]*:[ \t]*/, "", s)
		if (match(s, /^[-+]?[0-9.]+([eE][-+]?[0-9]+)?/)) print substr(s, 1, RLENGTH)
	}' "$1"
}

dp_csv_col() {
	head -n 1 "$1" | tr -d '\r' | awk -F, -v n="$2" '{ for (i = 1; i <= NF; i++) if ($i == n) { print i; exit } }'
}

dp_term() {
	if gnuplot -e 'set terminal' 2>&1 | grep -q pngcairo; then
		echo pngcairo
	else
		echo png
	fi
}

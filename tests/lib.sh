# tests/lib.sh: helpers for CLI tests (sourced by tests/cli/*.sh).
# Each check prints "PASS name" or "FAIL name: why"; tests/run.sh counts them.
#   run NAME RC CMD...      run CMD, stdout in $OUT, stderr in $ERR; check the exit code
#   err_is TEXT             the whole stderr equals TEXT (one line)
#   err_has TEXT            stderr contains TEXT
#   out_has TEXT            stdout contains TEXT
#   ok NAME CMD...          a check that passes when CMD succeeds
# $BIN holds the filters; $TMP is a scratch folder removed at exit.
set -u
: "${BIN:?BIN must be set}"
PATH="$BIN:$PATH"
TMP=$(mktemp -d "${TMPDIR:-/tmp}/dapipe-test.XXXXXX")
trap 'rm -rf "$TMP"' EXIT
OUT="$TMP/.out"
ERR="$TMP/.err"
LAST=""
ROOT=$(cd "$(dirname "$0")/../.." && pwd)

pass() { echo "PASS $1"; }
fail() { echo "FAIL $1: $2"; }

run() {
	LAST=$1; want=$2; shift 2
	"$@" >"$OUT" 2>"$ERR" </dev/null
	rc=$?
	if [ "$rc" -gt 128 ]; then
		fail "$LAST" "killed by signal $((rc - 128)); stderr: $(head -c 300 "$ERR")"
	elif [ "$rc" -ne "$want" ]; then
		fail "$LAST" "exit $rc, expected $want; stderr: $(head -c 300 "$ERR")"
	else
		pass "$LAST"
	fi
}

# like run, but stdin from a file
run_in() {
	LAST=$1; want=$2; in=$3; shift 3
	"$@" >"$OUT" 2>"$ERR" <"$in"
	rc=$?
	if [ "$rc" -gt 128 ]; then
		fail "$LAST" "killed by signal $((rc - 128)); stderr: $(head -c 300 "$ERR")"
	elif [ "$rc" -ne "$want" ]; then
		fail "$LAST" "exit $rc, expected $want; stderr: $(head -c 300 "$ERR")"
	else
		pass "$LAST"
	fi
}

err_is() {
	got=$(cat "$ERR")
	if [ "$got" = "$1" ]; then pass "$LAST (message)"; else fail "$LAST (message)" "stderr is '$got', expected '$1'"; fi
}

err_has() {
	if grep -qF -- "$1" "$ERR"; then pass "$LAST (message)"; else fail "$LAST (message)" "stderr lacks '$1': $(head -c 300 "$ERR")"; fi
}

out_has() {
	if grep -qF -- "$1" "$OUT"; then pass "$LAST (output)"; else fail "$LAST (output)" "stdout lacks '$1': $(head -c 300 "$OUT")"; fi
}

ok() {
	name=$1; shift
	if "$@" >"$TMP/.ok" 2>&1; then pass "$name"; else fail "$name" "$(head -c 300 "$TMP/.ok")"; fi
}

#!/bin/sh
# tests/run.sh: run every unit test (C, in $UNITS) and CLI test (tests/cli/*.sh);
# count PASS/FAIL lines; end with "N passed, N failed".
# A test program that dies or exits non-zero without a FAIL line counts as a failure.
# TESTS="pattern" runs only tests whose name contains pattern.
set -u
: "${BIN:?}" "${UNITS:?}"
export BIN
here=$(cd "$(dirname "$0")" && pwd)
log=$(mktemp "${TMPDIR:-/tmp}/dapipe-log.XXXXXX")
passed=0
failed=0
count() {
	name=$1
	shift
	start=$(date +%s)
	"$@" >"$log" 2>&1
	rc=$?
	p=$(grep -c '^PASS ' "$log")
	f=$(grep -c '^FAIL ' "$log")
	grep '^FAIL ' "$log" | sed "s|^|  $name: |"
	# what a test skipped for want of a package or tool says so on a "# ... skipped" line
	grep '^# .*skipped' "$log" | sed "s|^|  $name: |"
	if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then
		echo "  $name: FAIL exit $rc"
		tail -n 5 "$log" | sed 's/^/    /'
		f=1
	fi
	passed=$((passed + p))
	failed=$((failed + f))
	printf '%-28s %4d passed %3d failed  %3ss\n' "$name" "$p" "$f" "$(( $(date +%s) - start ))"
}
for t in "$UNITS"/*; do
	[ -x "$t" ] || continue
	n=$(basename "$t")
	case "$n" in *"${TESTS:-}"*) ;; *) continue ;; esac
	count "$n" "$t"
done
for t in "$here"/cli/*.sh; do
	[ -f "$t" ] || continue
	n=$(basename "$t" .sh)
	case "$n" in *"${TESTS:-}"*) ;; *) continue ;; esac
	if [ -n "${SANITIZE:-}" ]; then
		# Under the sanitizers a leak report on an error path (exit 1) depends on what a
		# register or stack slot happens to hold; a file that fails is run once more, and
		# its first failures are shown.
		if ! sh "$t" >"$log.1" 2>&1 || grep -q '^FAIL ' "$log.1"; then
			echo "  $n: failed once under the sanitizers, run again; the first run said:"
			grep '^FAIL ' "$log.1" | head -n 5 | sed 's/^/    /'
		else
			count "$n" cat "$log.1"
			continue
		fi
	fi
	count "$n" sh "$t"
done
rm -f "$log" "$log.1"
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]

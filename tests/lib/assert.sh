# shellcheck shell=bash
# PASS/FAIL bookkeeping of the shell tests (tests/e2e.sh, tests/package.sh),
# sourced, never run. Each check prints "PASS: what" or "FAIL: what", then
# its evidence, indented; a test's last line is "N passed, M failed".
#
#   record PASS|FAIL DESCRIPTION EVIDENCE
#   assert TIMEOUT DESCRIPTION EVIDENCE... -- CONDITION...
#                  waits up to TIMEOUT seconds for the condition (a command),
#                  then records it with the evidence: the output of the
#                  evidence command, run after the wait
#   check DESCRIPTION EVIDENCE... -- CONDITION...   (assert 0: tried once)
#   summary        prints "N passed, M failed"
#   indent         indents its stdin by four spaces
#
# PASSED and FAILED count the checks; the caller exits non-zero when FAILED
# is not 0.

[ -z "${F2B_ASSERT_SH:-}" ] || return 0
F2B_ASSERT_SH=1

# shellcheck source=tests/lib/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

PASSED=0
FAILED=0

summary() { echo "$PASSED passed, $FAILED failed"; }
indent() { sed 's/^/    /'; }
record() { # PASS|FAIL description evidence
	echo "$1: $2"
	[ -z "$3" ] || printf '%s\n' "$3" | indent
	if [ "$1" = PASS ]; then PASSED=$((PASSED + 1)); else FAILED=$((FAILED + 1)); fi
}
assert() {
	local timeout=$1 desc=$2 verdict=PASS evidence=()
	shift 2
	while [ $# -gt 0 ] && [ "$1" != -- ]; do evidence+=("$1"); shift; done
	[ $# -gt 1 ] || { record FAIL "$desc" "assert: no '--' and condition after the evidence"; return; }
	[ "${#evidence[@]}" -gt 0 ] || evidence=(true)
	shift
	wait_for "$timeout" "$@" || verdict=FAIL
	record "$verdict" "$desc" "$("${evidence[@]}" 2>&1)"
}
check() { assert 0 "$@"; }

# The frame of the end-to-end tests on the lab (tests/e2e.sh,
# tests/plugin.sh; they source tests/lib/topology.sh too): on exit the lab
# goes down (daemons by PID, namespaces removed) and the script fails if a
# check did; an interrupt ends it.
lab_test_frame() {
	trap _lab_test_exit EXIT
	trap 'echo "interrupted"; exit 130' INT TERM
}
_lab_test_exit() {
	local rc=$?
	topo_down
	[ "$rc" = 0 ] && [ "$FAILED" = 0 ] || exit 1
}
# A set-up step that had to work, or nothing after it means anything:
# recorded as a failure with the last lines of the daemons' logs, then the
# summary, then exit 1.
lab_fatal() { # description [evidence]
	local log
	record FAIL "$1" "${2:-}"
	for log in "${TOPO_DIR:-/nonexistent}"/*/*.out "${TOPO_DIR:-/nonexistent}"/*/*.log \
		"${TOPO_DIR:-/nonexistent}"/loghost/*/*.log; do
		[ -s "$log" ] && { echo "--- $log"; tail -n 15 "$log"; }
	done
	summary
	exit 1
}

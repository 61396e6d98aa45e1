#!/bin/bash
# `f2b-route reconcile` against a real fail2ban (issue 9): its socket while
# it runs, and the sqlite database it wrote once it is stopped.
#
# One network namespace (lo only) holds everything: a private
# fail2ban-server (config, socket, database and log under a temp dir) with
# two jails whose action is the repository's action.d/f2b-route.conf, and
# f2b-route with a private config and state dir. Witnesses: the kernel
# (`ip -j route show table all`), fail2ban-client's own answers, fail2ban's
# log, exit codes; never only f2b-route's word.
#
# Usage: sudo tests/reconcile.sh     (after cargo build --release --locked)
#   F2B_ROUTE=path   the binary to test (default: the release build)
#   KEEP=1           keep the temp dir
#
# Needs root, fail2ban, iproute2 and jq (missing: a failure, never a skip).
# Documentation addresses only; every daemon is stopped by PID; the
# namespace is removed. The last line is "N passed, M failed".

set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
# shellcheck source=tests/lib/common.sh
source tests/lib/common.sh
# shellcheck source=tests/lib/assert.sh
source tests/lib/assert.sh

BIN=$(f2b_route_bin)
RC=none
NS=f2brc-$$
T=$(mktemp -d /tmp/f2b-reconcile.XXXXXX) || exit 1
NS_MADE=

cleanup() {
	daemon_stop_all 10
	[ -z "$NS_MADE" ] || ip netns del "$NS" 2>/dev/null
	if [ -n "${KEEP:-}" ]; then echo "kept $T" >&2; else rm -rf "$T"; fi
}
trap 'cleanup' EXIT
trap 'echo interrupted; exit 130' INT TERM

fatal() {
	record FAIL "$1" "${2:-}"
	[ -s "$T/f2b.log" ] && { echo "--- fail2ban log"; tail -n 20 "$T/f2b.log"; }
	summary
	exit 1
}

missing=$(missing_commands fail2ban-server fail2ban-client ip jq)
[ -z "$missing" ] || fatal "preconditions: commands $missing"
[ "$(id -u)" = 0 ] || fatal "preconditions: root"
[ -x "$BIN" ] || fatal "preconditions: $BIN (cargo build --release --locked)"
ip netns add "$NS" || fatal "ip netns add $NS"
NS_MADE=1
ip -n "$NS" link set lo up

# --- the set-up -----------------------------------------------------------

F2B=(ip netns exec "$NS" "$BIN" --config "$T/f2b-route.toml" --state-dir "$T/state")
echo "# tests/reconcile.sh: namespace $NS, temp dir $T" >&2
: >"$T/f2b-route.toml"
mkdir -m 0700 "$T/state"
C=$T/etc
cp -a /etc/fail2ban "$C"
rm -rf "$C"/jail.d/* "$C"/fail2ban.d/*
find "$C" -name '*.local' -delete
cp action.d/f2b-route.conf "$C/action.d/f2b-route.conf"
: >"$T/empty.log"
write_f2b_conf() { # dbfile
	cat >"$C/fail2ban.local" <<EOF
[Definition]
loglevel = INFO
logtarget = $T/f2b.log
socket = $T/fail2ban.sock
pidfile = $T/fail2ban.pid
dbfile = $1
EOF
	cat >"$C/action.d/f2b-route.local" <<EOF
[Init]
f2b_route = ${F2B[*]:4}
dbfile = $1
EOF
}
write_f2b_conf "$T/fail2ban.sqlite3"
cat >"$C/jail.d/test.conf" <<EOF
[DEFAULT]
backend  = polling
logpath  = $T/empty.log
filter   = sshd
bantime  = 3600
action   = f2b-route

[alpha]
enabled  = true

[beta]
enabled  = true
EOF
f2b() { fail2ban-client -c "$C" "$@"; }
start_f2b() {
	rm -f "$T/fail2ban.sock"
	daemon_start fail2ban "$T/server.out" ip netns exec "$NS" fail2ban-server -c "$C" -f -x ||
		fatal "fail2ban-server start"
	wait_for 20 f2b ping >/dev/null || fatal "fail2ban-server does not answer" "$(tail -n 5 "$T/server.out")"
	wait_for 20 jails_up || fatal "fail2ban's jails did not start"
}
jails_up() { [ "$(f2b status | sed -n 's/.*Jail list:[[:space:]]*//p')" = "alpha, beta" ]; }
stop_f2b() { # graceful|kill9
	case $1 in
	graceful) f2b stop >/dev/null ;;
	kill9) daemon_signal KILL fail2ban ;;
	esac
	wait_for 20 daemon_gone fail2ban || fatal "fail2ban-server did not stop"
}

# --- witnesses --------------------------------------------------------------

# The routes with f2b-route's marker, one address a line, sorted.
ours() {
	{
		ip -n "$NS" -j -4 route show proto 252
		ip -n "$NS" -j -6 route show proto 252
	} | jq -r '.[] | select(.metric == 666) | .dst' | sort
}
# Every address fail2ban bans in any jail, sorted.
banned() {
	local j
	for j in alpha beta; do f2b get "$j" banned | tr -d "[]',\"" | tr ' ' '\n'; done | grep . | sort -u
}
routes_are_bans() { [ "$(ours)" = "$(banned)" ]; }
kernel_bytes() { ip -n "$NS" -j route show table all; ip -n "$NS" -j -6 route show table all; }
state_bytes() { find "$T/state" -printf '%P %y %m %s %T@\n' | sort; find "$T/state" -type f -exec sha256sum {} + | sort; }
jails_of() { "${F2B[@]}" list --json | jq -r --arg a "$1" 'select(.address == $a) | .jails | join(",")'; }
reconcile() { # args... (stdout in $T/out, stderr in $T/err, exit in RC)
	"${F2B[@]}" reconcile "$@" >"$T/out" 2>"$T/err"
	RC=$?
}
run_evidence() { echo "exit $RC"; echo "stdout:"; cat "$T/out"; echo "stderr:"; cat "$T/err"; echo "kernel: $(ours | tr '\n' ' ')"; echo "fail2ban: $(banned | tr '\n' ' ')"; }
out_is() { [ "$(sort "$T/out")" = "$(printf '%s\n' "$@" | sort)" ]; }

# --- with fail2ban running: its socket ----------------------------------------

start_f2b
f2b set alpha banip 198.51.100.1 198.51.100.2 2001:db8::1 >/dev/null
f2b set beta banip 198.51.100.2 203.0.113.9 >/dev/null
assert 15 "fail2ban bans 4 addresses in two jails through the action: routes equal bans" \
	run_evidence -- routes_are_bans

reconcile --socket "$T/fail2ban.sock"
quiet_in_step() { [ "$RC" = 0 ] && [ ! -s "$T/out" ] && [ ! -s "$T/err" ] && routes_are_bans; }
check "socket, in step: exit 0, prints nothing, changes nothing" \
	run_evidence -- quiet_in_step

# Drift: routes deleted behind fail2ban's back, an orphan route of ours, a
# hold of a jail fail2ban does not have, and foreign routes with the
# prefixes of a ban and of the orphan.
ip -n "$NS" route del blackhole 198.51.100.1 proto 252 metric 666
ip -n "$NS" -6 route del blackhole 2001:db8::1 proto 252 metric 666
ip -n "$NS" route add blackhole 198.51.100.50 proto 252 metric 666
"${F2B[@]}" -q add --jail gamma 198.51.100.60
ip -n "$NS" route add blackhole 198.51.100.1 proto 252 metric 5
ip -n "$NS" route add unreachable 198.51.100.50 metric 10
foreign() { ip -n "$NS" route show 198.51.100.1; ip -n "$NS" route show 198.51.100.50; }
foreign_before=$(foreign)
kernel_before=$(kernel_bytes)
state_before=$(state_bytes)
reconcile --socket "$T/fail2ban.sock" --dry-run
DRIFT=("route 198.51.100.1" "route 2001:db8::1" "release 198.51.100.60 gamma" "remove 198.51.100.50" "remove 198.51.100.60")
dry_run_ok() { [ "$RC" = 0 ] && out_is "${DRIFT[@]}" && [ "$(kernel_bytes)" = "$kernel_before" ] && [ "$(state_bytes)" = "$state_before" ]; }
check "socket, --dry-run: prints the changes, and the kernel (ip -j route show table all) and the state dir are byte for byte unchanged" \
	run_evidence -- dry_run_ok
reconcile --socket "$T/fail2ban.sock"
drift_mended() { [ "$RC" = 0 ] && out_is "${DRIFT[@]}" && routes_are_bans; }
check "socket: deleted routes re-added, the orphan route and the orphan hold removed, routes equal bans" \
	run_evidence -- drift_mended
foreign_evidence() { echo "before:"; echo "$foreign_before"; echo "after:"; foreign; }
not_ours() { grep -v "proto 252 metric 666"; }
foreign_same() { [ "$(foreign | not_ours)" = "$(not_ours <<<"$foreign_before")" ] && [[ $(foreign) == *"proto 252 metric 5 "* ]]; }
check "socket: foreign routes with the same prefixes untouched" \
	foreign_evidence -- foreign_same
both_hold() { [ "$(jails_of 198.51.100.2)" = alpha,beta ]; }
check "socket: the shared ban is held by both jails" \
	jails_of 198.51.100.2 -- both_hold

# A hold of a jail fail2ban has, on an address that jail does not ban.
"${F2B[@]}" -q add --jail beta 198.51.100.70
reconcile --socket "$T/fail2ban.sock" --json
JSON_WANT='{"change":"release","jail":"beta","address":"198.51.100.70","reason":null}
{"change":"remove","jail":null,"address":"198.51.100.70","reason":null}'
json_ok() { [ "$RC" = 0 ] && [ "$(jq -c . "$T/out")" = "$JSON_WANT" ] && routes_are_bans; }
check "socket, --json: a hold fail2ban's jail does not have is released and its route removed" \
	run_evidence -- json_ok

# --- fail2ban stopped: the database it wrote -------------------------------------

bans_before=$(banned)
stop_f2b kill9
rm -f "$T/fail2ban.sock"
ip -n "$NS" route del blackhole 198.51.100.2 proto 252 metric 666
reconcile --socket "$T/fail2ban.sock"
not_running_ok() { [ "$RC" = 7 ] && grep -q "not running" "$T/err" && ! grep -qx 198.51.100.2 <<<"$(ours)"; }
check "a stopped fail2ban: --socket says it is not running, exit 7, nothing changed" \
	run_evidence -- not_running_ok
reconcile --db "$T/fail2ban.sqlite3"
db_evidence() { run_evidence; echo "database bips: $(python3 -c 'import sqlite3,sys; print(sqlite3.connect(sys.argv[1]).execute("select group_concat(jail||\" \"||ip, \", \") from bips").fetchone()[0])' "$T/fail2ban.sqlite3")"; }
db_ok() { [ "$RC" = 0 ] && out_is "route 198.51.100.2" && [ "$(ours)" = "$bans_before" ]; }
check "a stopped fail2ban, --db on the database it wrote: the deleted route is back, routes equal its bans" \
	db_evidence -- db_ok

# Its restart: actionstart reconciles against the same database.
start_f2b
check "fail2ban restarted: routes equal bans" \
	run_evidence -- routes_are_bans

# A schema too old for f2b-route: version 3 (fail2ban 0.10).
cp "$T/fail2ban.sqlite3" "$T/old.sqlite3"
python3 -c 'import sqlite3,sys; c=sqlite3.connect(sys.argv[1]); c.execute("update fail2banDb set version=3"); c.commit()' "$T/old.sqlite3"
kernel_before=$(kernel_bytes)
reconcile --db "$T/old.sqlite3"
schema_ok() { [ "$RC" = 8 ] && [ "$(wc -l <"$T/err")" = 1 ] && grep -q "schema version 3" "$T/err" && [ "$(kernel_bytes)" = "$kernel_before" ]; }
check "schema version 3 refused: exit 8, one line naming the version, nothing changed" \
	run_evidence -- schema_ok

# --- dbfile = :memory: --------------------------------------------------------------

stop_f2b graceful
no_routes() { [ -z "$(ours)" ]; }
check "graceful stop: every route withdrawn" run_evidence -- no_routes
write_f2b_conf :memory:
start_f2b
f2b set alpha banip 198.51.100.7 >/dev/null
only_7() { [ "$(ours)" = 198.51.100.7 ]; }
assert 10 "dbfile :memory:: fail2ban starts (actionstart falls back to the flush) and bans" \
	run_evidence -- only_7
reconcile --db :memory:
memory_ok() { [ "$RC" = 7 ] && grep -q "nothing to read" "$T/err" && only_7; }
check "reconcile --db :memory:: nothing to read, exit 7, nothing changed" \
	run_evidence -- memory_ok
stop_f2b graceful

errors() { grep -E ' (ERROR|CRITICAL) |Traceback' "$T/f2b.log"; }
no_errors() { [ -z "$(errors)" ]; }
check "fail2ban's log: no ERROR, CRITICAL or Traceback" \
	errors -- no_errors

cleanup
trap - EXIT
left=$(ip netns list | awk '{ print $1 }' | grep -xF "$NS" || true)
verdict=PASS
[ -z "$left$(daemon_left)" ] || verdict=FAIL
record "$verdict" "tear-down: every daemon stopped by PID, the namespace removed" "namespace left: ${left:-none}; daemons left: $(daemon_left)"
summary
[ "$FAILED" = 0 ]

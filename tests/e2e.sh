#!/bin/bash
# End-to-end test of the whole pipeline with the real daemons (issue 3):
#
#   attacker ─ssh─► triton (sshd :2222) ─syslog/UDP─► log host (rsyslog →
#   remote/triton.log → fail2ban [triton], banaction = route → f2b-route →
#   kernel blackhole) ─FRR eBGP─► firewall (OpenBGPD, RIB "blackhole")
#
# in network namespaces (tests/lib/topology.sh, shared with lab/run and
# bench/pipeline). Each assertion prints PASS or FAIL with its evidence, taken
# from an independent witness: the log file rsyslog wrote, fail2ban's own log,
# the kernel (`ip -j route show proto 252`), the firewall's RIB
# (`bgpctl show rib table blackhole detail`), never only f2b-route's `list`.
#
# Usage: sudo tests/e2e.sh          (after cargo build --release --locked)
#   F2B_ROUTE=path   the binary to test (default: the release build,
#                    target/<host triple>/release/f2b-route; tests/lib/common.sh)
#   KEEP=1           keep the temp dir (configs, daemon logs) for inspection
#   TOPO_INSTALLED=1 test the installed Debian package instead of the
#                    repository's files (with F2B_ROUTE=/usr/sbin/f2b-route;
#                    tests/package.sh does): the binary, the fail2ban action,
#                    and route.local and the jail from its examples
#                    (tests/lib/topology.sh)
#
# Needs root and the Debian packages fail2ban, frr, openbgpd, rsyslog,
# openssh-server, openssh-client, iproute2, jq: anything missing is a
# failure, never a skip. Documentation addresses only; the host's own
# routing table and firewall are never touched; every daemon has private
# paths and is stopped by PID, also when an assertion fails; every namespace
# is removed. Exits non-zero on any failure; the last line is
# "N passed, M failed".

set -uo pipefail

cd "$(dirname "$0")/.." || exit 1
TOPO_TAG=f2be
TOPO_RECIDIVE=1
TOPO_KEEP=${KEEP:-}
# shellcheck source=tests/lib/topology.sh
source tests/lib/topology.sh
# shellcheck source=tests/lib/assert.sh
source tests/lib/assert.sh
# shellcheck source=tests/lib/witness.sh
source tests/lib/witness.sh
TOPO_BIN=$(f2b_route_bin)

START=$SECONDS

lab_test_frame
# record, assert TIMEOUT DESCRIPTION EVIDENCE... -- CONDITION..., check,
# summary and lab_fatal: tests/lib/assert.sh.
fatal() { lab_fatal "$@"; }

# --- witnesses and conditions --------------------------------------------

# The marker routes in the log host's kernel are exactly these addresses
# (the protected ones added by hand aside).
kernel_is() { [ "$(topo_kernel_routes | grep -vxF -f <(printf '%s\n' "${HAND_PROTECTED[@]}"))" = "$(lines "$@")" ]; }
lh_show() { if [[ $1 == *:* ]]; then ip -n "$TOPO_NS_LH" -6 route show "$1"; else ip -n "$TOPO_NS_LH" route show "$1"; fi; }
remote_log_count() { grep -cF -- "$1" "$TOPO_REMOTE_LOG" || true; }
remote_log_at_least() { [ "$(remote_log_count "$2")" -ge "$1" ]; } # count text
# Routes equal bans, and fail2ban bans N addresses.
routes_equal_n_bans() { routes_equal_bans && [ "$(topo_banned | wc -l)" = "$1" ]; }
errors_in_f2b_log() { grep -E ' (ERROR|CRITICAL) |Traceback' "$TOPO_F2B_LOG"; }
no_errors_in_f2b_log() { ! errors_in_f2b_log >/dev/null; }

AT4=$TOPO_AT4
AT6=$TOPO_AT6

# --- preconditions and set-up ---------------------------------------------

echo "# f2b-route end-to-end test ($(date -u +%FT%TZ))"
msg=$(topo_require_tools 2>&1) || fatal "preconditions" "$msg"
record PASS "preconditions: root, tools, f2b-route binary${TOPO_INSTALLED:+ and files of the installed package}" \
	"$("$TOPO_BIN" --version 2>&1)
$(topo_sources_evidence)"

topo_init
echo "# namespaces $TOPO_TAG-$TOPO_ID-*, temp dir $TOPO_DIR"
topo_net_up || fatal "network namespaces and links"

# The unban window across a restart: topo_gap_* (tests/lib/topology.sh).
gap_watch_start() { topo_gap_watch_start "$1" || fatal "RIB poller and ip monitor route"; }
gap_watch_stop() { topo_gap_watch_stop "$1"; }
gap_evidence() { topo_gap_evidence "$@"; }
no_gap() { topo_no_gap "$@"; }

SETUP_ERR=$TOPO_DIR/setup.err
topo_configure 2>"$SETUP_ERR" || fatal "configuration (render, sshd, rsyslog, fail2ban -t, bgpd -n)" "$(cat "$SETUP_ERR")"

# fail2ban runs the shipped files: the action and route.local byte for
# byte, the jail with its logpath line changed and nothing else, and
# route.local's f2b_route option names the binary under test.
shipped_evidence() {
	topo_sources_evidence
	echo "diff jail.d/triton.conf (shipped, lab):"
	diff "$TOPO_SRC_JAIL" "$TOPO_F2B_CONF/jail.d/triton.conf"
	echo "route.d/lab.local: $(grep '^f2b_route' "$TOPO_F2B_CONF/action.d/route.d/lab.local")"
}
runs_shipped_files() {
	cmp -s "$TOPO_SRC_ACTION" "$TOPO_F2B_CONF/action.d/f2b-route.conf" &&
		cmp -s "$TOPO_SRC_ROUTE_LOCAL" "$TOPO_F2B_CONF/action.d/route.local" &&
		[ "$(diff "$TOPO_SRC_JAIL" "$TOPO_F2B_CONF/jail.d/triton.conf" | grep -c '^[<>] ')" = 2 ] &&
		grep -qxF "f2b_route = $TOPO_BIN --config $TOPO_TOML --state-dir $TOPO_STATE" \
			"$TOPO_F2B_CONF/action.d/route.d/lab.local"
}
check "fail2ban: its private config holds the shipped action, route.local and jail, and runs $TOPO_BIN" \
	shipped_evidence -- runs_shipped_files

# The full OpenBGPD template (with `set pftable`): Linux portable must refuse
# it for pftable support only, never for its syntax.
full=$(bgpd -n -f "$TOPO_FW/bgpd-full.rendered" 2>&1)
rc=$?
verdict=FAIL
if [ "$rc" != 0 ] && grep -q 'pftable not supported' <<<"$full" && ! grep -qi 'syntax error' <<<"$full"; then
	verdict=PASS
fi
record "$verdict" "openbgpd: the full template fails bgpd -n on pftable support only" "exit $rc: $full"
record PASS "openbgpd: the --no-pftable config passes bgpd -n" "$(cat "$TOPO_FW/check.out")"

topo_start_all 2>>"$SETUP_ERR" || fatal "daemons start (OpenBGPD, zebra, bgpd, rsyslog x2, sshd, fail2ban)" "$(cat "$SETUP_ERR")"
assert 30 "bgp: session log host (FRR) <-> firewall (OpenBGPD) established" \
	neighbor_evidence -- topo_bgp_established

# Routes that are not f2b-route's, in the log host's kernel: never advertised.
LF=${TOPO_IF}lf
HAND_PROTECTED=(198.51.100.77 2001:db8:1:ff::77)
FOREIGN=(203.0.113.200/32 203.0.113.201/32 203.0.113.202/32 203.0.113.203/32
	2001:db8:f::1/128 2001:db8:f::2/128 2001:db8:f::3/128)
lh_route() { ip -n "$TOPO_NS_LH" route add "$@" || fatal "ip route add $*"; }
lh_route 203.0.113.200/32 dev "$LF"                          # someone's unicast /32
lh_route blackhole 203.0.113.201/32                           # someone's blackhole
lh_route blackhole 203.0.113.202/32 proto 252 metric 5        # our protocol, other metric
lh_route 203.0.113.203/32 dev "$LF" proto 252 metric 666      # unicast with our marker
lh_route 2001:db8:f::1/128 dev "$LF"
lh_route blackhole 2001:db8:f::2/128
lh_route blackhole 2001:db8:f::3/128 proto 252 metric 5
lh_route blackhole 198.51.100.77/32 proto 252 metric 666      # protected, by hand
lh_route blackhole 2001:db8:1:ff::77/128 proto 252 metric 666 # protected, by hand
sleep 2
foreign_evidence() {
	echo "log host kernel:"
	ip -n "$TOPO_NS_LH" route show 203.0.113.192/26
	ip -n "$TOPO_NS_LH" route show 198.51.100.77
	ip -n "$TOPO_NS_LH" -6 route show 2001:db8:f::/48
	ip -n "$TOPO_NS_LH" -6 route show 2001:db8:1:ff::/64
	rib_evidence
}
assert 0 "bgp: foreign and protected routes in the log host's kernel are not advertised" \
	foreign_evidence -- rib_is

# --- a legitimate client --------------------------------------------------

banner=$(topo_ssh_banner "$TOPO_NS_CL" "$TOPO_CL4")
verdict=FAIL; [[ $banner == SSH-2.0-OpenSSH* ]] && verdict=PASS
record "$verdict" "client $TOPO_CL4 reaches triton's sshd through the firewall" "banner: $banner"
# Its connect-and-close is one failure for mode=aggressive: it shows the
# syslog path works (and wakes up fail2ban's pyinotify backend, which takes
# ~5 s to notice the first change of a log after it starts).
client_log_evidence() { log_lines "$TOPO_REMOTE_LOG" "$TOPO_CL4" 1; log_lines "$TOPO_F2B_LOG" "Found $TOPO_CL4" 1; }
assert 15 "syslog: triton's sshd line for the client reaches the log host and fail2ban" \
	client_log_evidence -- f2b_log_has "[triton] Found $TOPO_CL4"

# --- the attacker, IPv4 then IPv6 -----------------------------------------

found_ban_evidence() { grep -E "\[triton\] (Found|Ban) $1" "$TOPO_F2B_LOG" | tail -n 3; }
attack() { # address
	local a=$1 refused=0 i
	for i in 1 2 3; do topo_failed_login "$a" && refused=$((refused + 1)); done
	record "$([ "$refused" = 3 ] && echo PASS || echo FAIL)" \
		"attacker $a: 3 logins as invaliduser to triton (BatchMode) refused" "$refused of 3 refused (ssh exit 255)"
	assert 5 "syslog: the 3 attempts from $a are in the log host's remote/triton.log" \
		log_lines "$TOPO_REMOTE_LOG" "invalid user invaliduser $a " -- \
		remote_log_at_least 3 "Invalid user invaliduser from $a "
	assert 10 "fail2ban: [triton] bans $a" \
		found_ban_evidence "$a" -- f2b_log_has "[triton] Ban $a"
}

attack "$AT4"
assert 5 "kernel: blackhole $AT4/32 with f2b-route's marker (proto 252, metric 666) in the log host" \
	kernel_evidence -- kernel_is "$AT4"
assert 10 "firewall: $AT4/32 in the RIB, tagged BLACKHOLE NO_EXPORT, nothing else" \
	rib_evidence -- rib_is_tagged "$AT4"

attack "$AT6"
assert 5 "kernel: blackhole $AT6/128 with f2b-route's marker in the log host" \
	kernel_evidence -- kernel_is "$AT4" "$AT6"
assert 10 "firewall: $AT6/128 in the RIB too, tagged BLACKHOLE NO_EXPORT" \
	rib_evidence -- rib_is_tagged "$AT4" "$AT6"

banner=$(topo_ssh_banner "$TOPO_NS_CL" "$TOPO_CL6")
verdict=FAIL
if [[ $banner == SSH-2.0-OpenSSH* ]] && ! topo_banned | grep -qx -e "$TOPO_CL4" -e "$TOPO_CL6"; then
	verdict=PASS
fi
record "$verdict" "client: still served, never banned (below maxretry)" "banner over IPv6: $banner; $(banned_evidence)"

# --- a second jail holds the route ----------------------------------------

# [recidive] (stock filter on fail2ban's own log, maxretry 1) bans whatever
# [triton] bans; f2b-route records one hold per jail.
assert 10 "fail2ban: [recidive] bans $AT4 and $AT6 as well" \
	log_lines "$TOPO_F2B_LOG" "[recidive] Ban" -- all_held_by recidive,triton "$AT4" "$AT6"
topo_f2b set triton unbanip "$AT4" >/dev/null
wait_for 10 f2b_log_has "[triton] Unban $AT4"
wait_for 10 holds_are "$AT4" recidive
sleep 2
unban_evidence() { # address
	log_lines "$TOPO_F2B_LOG" "Unban $1"
	echo "f2b-route holds for $1: $(holds "$1")"
	kernel_evidence
	rib_evidence
}
assert 0 "second jail: [triton] unbans $AT4, [recidive] still bans it: route kept in kernel and firewall" \
	unban_evidence "$AT4" -- routes_are "$AT4" "$AT6"

# --- unban withdraws ------------------------------------------------------

log_kernel_rib_evidence() { log_lines "$TOPO_F2B_LOG" "$1" "${2:-1000}"; kernel_evidence; rib_evidence; } # text [n]
topo_f2b unban "$AT4" >/dev/null
assert 10 "fail2ban-client unban $AT4: gone from the log host's kernel and the firewall's RIB" \
	log_kernel_rib_evidence "Unban $AT4" -- routes_are "$AT6"
topo_f2b unban "$AT6" >/dev/null
assert 10 "fail2ban-client unban $AT6: withdrawn too, firewall RIB empty" \
	log_kernel_rib_evidence "Unban $AT6" -- routes_are

# --- restarts -------------------------------------------------------------

BANS=(203.0.113.50 2001:db8:a::50 203.0.113.51 2001:db8:a::51)
topo_f2b set triton banip "${BANS[@]}" >/dev/null
topo_f2b set recidive banip 203.0.113.52 >/dev/null
all_bans=("${BANS[@]}" 203.0.113.52)
assert 10 "fail2ban banip of ${#all_bans[@]} addresses (two jails): routes equal bans, in the firewall too" \
	bans_kernel_rib_evidence -- routes_equal_n_bans 5

# [recidive] bans in turn what [triton] banned (it reads fail2ban's log).
# Stopping fail2ban while that filter still reads the log would make
# fail2ban log "ERROR Unable to get failures" (a race of its own), so the
# stop waits until the log has settled too.
holds_evidence() { local a; for a; do echo "f2b-route holds for $a: $(holds "$a")"; done; }
assert 10 "fail2ban: [recidive] bans the ${#BANS[@]} addresses [triton] banned as well (two holds each)" \
	holds_evidence "${BANS[@]}" -- all_held_by recidive,triton "${BANS[@]}"
# fail2ban's log has not grown for a second: its filters have read it all.
f2b_log_settled() {
	local size
	size=$(stat -c %s "$TOPO_F2B_LOG")
	sleep 1
	[ "$(stat -c %s "$TOPO_F2B_LOG")" = "$size" ]
}
wait_for 15 f2b_log_settled || fatal "fail2ban's log keeps growing" "$(tail -n 5 "$TOPO_F2B_LOG")"
before=$(topo_banned)
mapfile -t before_list <<<"$before"
before_prefixes=()
for a in "${before_list[@]}"; do before_prefixes+=("$(topo_prefix "$a")"); done
gap_watch_start graceful
topo_stop_fail2ban graceful || fatal "fail2ban-client stop"
stop_evidence() { tail -n 4 "$TOPO_F2B_LOG"; kernel_evidence; rib_evidence; }
assert 10 "fail2ban graceful stop: every route withdrawn (kernel and firewall)" \
	stop_evidence -- routes_are
topo_start_fail2ban || fatal "fail2ban restart"
restore_evidence() { echo "Restore Ban lines: $(grep -c "Restore Ban" "$TOPO_F2B_LOG")"; bans_kernel_rib_evidence; }
assert 15 "fail2ban restart: bans restored, routes equal bans, no orphan" \
	restore_evidence -- routes_equal_these_bans "$before"
gap_watch_stop graceful
# A graceful stop withdraws every route (actionstop), so the window lasts
# from the stop until actionstart puts the database's bans back at once:
# measured, not asserted.
echo "# measured, graceful stop and start: $(gap_evidence graceful "${before_prefixes[@]}" | head -n 2 | tr '\n' ' ')"

gap_watch_start kill9

topo_stop_fail2ban kill9 || fatal "kill -9 fail2ban-server"
assert 0 "fail2ban kill -9: the routes stay (fail2ban could not withdraw them)" \
	kernel_evidence -- kernel_is "${before_list[@]}"
topo_start_fail2ban || fatal "fail2ban start after kill -9"
assert 15 "fail2ban start after kill -9: bans restored, routes equal bans, no orphan" \
	bans_kernel_rib_evidence -- routes_equal_these_bans "$before"
gap_watch_stop kill9
# Before reconcile, actionstart flushed the jail and the restore re-added
# each ban: the firewall let every banned address through until then.
assert 0 "no unban window: kill -9 and restart keep every ban in the firewall's RIB and every route in the kernel" \
	gap_evidence kill9 "${before_prefixes[@]}" -- no_gap kill9 "${before_prefixes[@]}"

# After the crash, one ban ends: the route goes (the stock action, whose
# re-ban failed with "File exists", would leave it for ever).
topo_f2b unban 203.0.113.50 >/dev/null
routes_equal_bans_without_prefix() { routes_equal_bans && not_in_rib "$1"; }
assert 10 "after kill -9 and restart, unban still withdraws" \
	log_kernel_rib_evidence "Unban 203.0.113.50" 2 -- routes_equal_bans_without_prefix 203.0.113.50/32

f2b_errors_evidence() {
	echo "$(grep -c " NOTICE " "$TOPO_F2B_LOG") NOTICE lines, errors: $(errors_in_f2b_log | wc -l)"
	errors_in_f2b_log | head -n 5
}
assert 0 "fail2ban log: no ERROR, CRITICAL or Traceback (bans, unbans, graceful and kill -9 restarts)" \
	f2b_errors_evidence -- no_errors_in_f2b_log

# A crash that loses fail2ban's database: fail2ban rescans its logs from
# the start and bans again what they still justify (the attacker, and through
# [recidive], whatever [triton] banned); a ban it cannot find again
# (203.0.113.52, banned by hand in [recidive] only) must not leave its route
# behind: actionstart releases the jail's holds first.
topo_stop_fail2ban kill9 || fatal "kill -9 fail2ban-server"
rm -f "$TOPO_F2B/fail2ban.sqlite3"
topo_start_fail2ban || fatal "fail2ban start without its database"
sleep 2
# The attacker's bans found again in the logs; none of 203.0.113.52.
bans_found_again() {
	local bans
	bans=$(topo_banned)
	grep -qxF "$AT4" <<<"$bans" && grep -qxF "$AT6" <<<"$bans" && ! grep -qxF 203.0.113.52 <<<"$bans"
}
routes_equal_bans_found_again() { bans_found_again && routes_equal_bans; }
assert 15 "fail2ban kill -9 and lost database: the attacker banned again, routes equal the bans, no orphan (203.0.113.52 gone)" \
	bans_kernel_rib_evidence -- routes_equal_bans_found_again
# Rescanning its own log while writing to it, [recidive] may log "ERROR
# Unable to get failures in .../fail2ban.log" (fail2ban's own reader); the
# actions must not fail.
action_errors() { grep -E ' (ERROR|CRITICAL) ' "$TOPO_F2B_LOG" | grep -v 'Unable to get failures in '; }
no_action_errors() { [ -z "$(action_errors)" ]; }
action_errors_evidence() {
	echo "$(action_errors | wc -l) errors"
	action_errors | head -n 5
	grep -E " ERROR " "$TOPO_F2B_LOG" | grep "Unable to get failures" | sed "s/^/not ours: /"
}
assert 0 "fail2ban log: no action error after the lost database either" \
	action_errors_evidence -- no_action_errors

# Still never advertised, after all of the above. (The protected routes
# added by hand carry f2b-route's marker without a hold: `f2b-route check
# --repair`, run when fail2ban starts, may remove them as orphans, so their
# presence in the kernel is not checked.)
not_ours=("${FOREIGN[@]}" 198.51.100.77/32 2001:db8:1:ff::77/128)
never_advertised() {
	local p
	! topo_rib | grep -qxF -f <(printf '%s\n' "${not_ours[@]}") || return 1
	for p in "${FOREIGN[@]}"; do [ -n "$(lh_show "$p")" ] || return 1; done
}
not_ours_evidence() {
	local p
	for p in "${not_ours[@]}"; do
		printf "%-22s firewall RIB: %s  kernel: %s\n" "$p" "$(topo_rib | grep -cxF "$p")" "$(lh_show "$p")"
	done
}
assert 0 "bgp: the foreign and protected routes were never advertised; the foreign ones are still in the kernel" \
	not_ours_evidence -- never_advertised
assert 0 "bgp: the session stayed up the whole run" \
	session_evidence -- session_never_dropped

# --- tear-down ------------------------------------------------------------

ns_list=$(printf '%s\n' "${TOPO_ALL_NS[@]}")
topo_down
left_ns=$(ip netns list | awk '{ print $1 }' | grep -xF "$ns_list" || true)
left_daemons=$(daemon_left)
verdict=PASS; [ -z "$left_ns$left_daemons" ] && [ "$(daemon_count)" -gt 0 ] || verdict=FAIL
record "$verdict" "tear-down: every daemon stopped by PID, every namespace removed" \
	"$(daemon_count) daemons tracked; namespaces left: ${left_ns:-none}; daemons left: ${left_daemons:-none}"

echo "# $((SECONDS - START)) s"
summary
[ "$FAILED" = 0 ]

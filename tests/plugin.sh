#!/bin/bash
# The fail2ban action plugin (action.d/f2b-route.py, which runs `f2b-route
# serve`) with the real fail2ban, in the lab's network namespaces
# (tests/lib/topology.sh with TOPO_PLUGIN=1: jails [triton] and [recidive]
# ban through the plugin), the whole pipeline once:
#
#   attacker ─ssh─► triton (sshd) ─syslog─► log host (rsyslog → fail2ban
#   [triton], action = f2b-route.py → f2b-route serve → kernel blackhole)
#   ─FRR eBGP─► firewall (OpenBGPD, RIB "blackhole")
#
# then: two jails holding one address, unbans, a guarded address (refused,
# logged, nothing else broken), the co-process killed under fail2ban (the
# next ban works, one log line), `reload`, a graceful restart and kill -9 +
# restart (restore), and no unexpected error in fail2ban's log. Witnesses:
# the kernel (`ip -j route show proto 252`), the firewall's RIB, fail2ban's
# own log and its ban lists; never only f2b-route's word.
#
# Usage: sudo tests/plugin.sh      (after cargo build --release --locked)
#   F2B_ROUTE=path   the binary to test (tests/lib/common.sh)
#   KEEP=1           keep the temp dir
#
# Needs root and the lab's Debian packages: anything missing is a failure,
# never a skip. Documentation addresses only; every daemon is stopped by
# PID, every namespace removed. The last line is "N passed, M failed".

set -uo pipefail

cd "$(dirname "$0")/.." || exit 1
TOPO_TAG=f2bp
TOPO_RECIDIVE=1
TOPO_PLUGIN=1
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

kernel_is() { [ "$(topo_kernel_routes)" = "$(lines "$@")" ]; }
f2b_log_count() { grep -cF -- "$1" "$TOPO_F2B_LOG" || true; }
log_kernel_rib_evidence() { log_lines "$TOPO_F2B_LOG" "$1" "${2:-1000}"; kernel_evidence; rib_evidence; }
f2b_log_settled() {
	local size
	size=$(stat -c %s "$TOPO_F2B_LOG")
	sleep 1
	[ "$(stat -c %s "$TOPO_F2B_LOG")" = "$size" ]
}

# The `f2b-route serve` processes in the log host: "PID JAIL" lines, sorted.
serve_procs() {
	local pid args
	while read -r pid; do
		args=$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null) || continue
		[[ $args == "$TOPO_BIN "*" serve --jail "* ]] || continue
		printf '%s %s\n' "$pid" "$(sed 's/.* serve --jail \([^ ]*\).*/\1/' <<<"$args")"
	done < <(ip netns pids "$TOPO_NS_LH" 2>/dev/null) | sort
}
serve_pid() { serve_procs | awk -v j="$1" '$2 == j { print $1 }'; }
serve_jails_are() { [ "$(serve_procs | awk '{ print $2 }' | sort | tr '\n' ' ')" = "$1" ]; }
serve_evidence() { echo "serve processes (PID jail):"; serve_procs; }

# fail2ban's ERROR, CRITICAL and Traceback lines, less the ones this test
# causes on purpose (the guarded address, each jail refusing it once).
GUARDED=198.51.100.99
# Protected only from the reload on (the config changed before it).
GUARDED_AFTER_RELOAD=203.0.113.44
# (A missing log is an error too: grep's exit 2 must not read as "none".)
errors_in_f2b_log() {
	[ -f "$TOPO_F2B_LOG" ] || { echo "no fail2ban log at $TOPO_F2B_LOG"; return; }
	grep -E ' (ERROR|CRITICAL) |Traceback' "$TOPO_F2B_LOG"
}
unexpected_errors() {
	errors_in_f2b_log | grep -vF -e "exit code 3: refused $GUARDED: " -e "exit code 3: refused $GUARDED_AFTER_RELOAD: " \
		-e "f2b-route: reloaded, but serve does not start: "
}
no_unexpected_errors() { [ -z "$(unexpected_errors)" ]; }
errors_evidence() {
	echo "$(errors_in_f2b_log | wc -l) error lines, unexpected: $(unexpected_errors | wc -l)"
	errors_in_f2b_log | head -n 6
}

AT4=$TOPO_AT4
AT6=$TOPO_AT6

# --- set-up ----------------------------------------------------------------

echo "# f2b-route fail2ban plugin test ($(date -u +%FT%TZ))"
msg=$(topo_require_tools 2>&1) || fatal "preconditions" "$msg"
record PASS "preconditions: root, tools, f2b-route binary" \
	"$("$TOPO_BIN" --version 2>&1)
$(topo_sources_evidence)
fail2ban $(fail2ban-server --version 2>&1 | head -n 1)"

topo_init
echo "# namespaces $TOPO_TAG-$TOPO_ID-*, temp dir $TOPO_DIR"
topo_net_up || fatal "network namespaces and links"
SETUP_ERR=$TOPO_DIR/setup.err
topo_configure 2>"$SETUP_ERR" || fatal "configuration (fail2ban -t with the plugin)" "$(cat "$SETUP_ERR")"
plugin_evidence() {
	echo "jail.d/zz-plugin.local:"
	indent <"$TOPO_F2B_CONF/jail.d/zz-plugin.local"
	cmp "$TOPO_SRC_PLUGIN" "$TOPO_F2B_CONF/action.d/f2b-route.py" && echo "action.d/f2b-route.py: the repository's, byte for byte"
}
runs_the_plugin() {
	cmp -s "$TOPO_SRC_PLUGIN" "$TOPO_F2B_CONF/action.d/f2b-route.py" &&
		grep -qxF "action = $TOPO_PLUGIN_ACTION" "$TOPO_F2B_CONF/jail.d/zz-plugin.local"
}
check "fail2ban: [triton] and [recidive] use the shipped action.d/f2b-route.py" \
	plugin_evidence -- runs_the_plugin

# The one-line form, `banaction = f2b-route.py` (the shipped jail with its
# banaction line changed): fail2ban hands the plugin its default action
# line's options (port, protocol, chain), which it takes and ignores. Read
# with fail2ban-client -d and instantiated as fail2ban does, not started (it
# would use the host's default config and state dir).
one_line_evidence() { cat "$TOPO_DIR/one-line.out"; }
one_line_form_works() {
	local c=$TOPO_DIR/one-line
	rm -rf "$c"
	cp -a "$TOPO_F2B_CONF" "$c" && rm -f "$c/jail.d/zz-plugin.local" "$c/jail.d/recidive.conf" &&
		sed -i 's/^banaction = route$/banaction = f2b-route.py/' "$c/jail.d/triton.conf" &&
		fail2ban-client -c "$c" -d 2>&1 | grep "'addaction'" >"$TOPO_DIR/one-line.dump" || return 1
	# fail2ban's own interpreter (its server's #! line), which has its modules.
	local py
	py=$(sed -n '1s/^#![[:space:]]*//p' "$(command -v fail2ban-server)")
	$py - "$TOPO_DIR/one-line.dump" >"$TOPO_DIR/one-line.out" 2>&1 <<'EOF_PY'
import ast, json, sys
from fail2ban.server.actions import Actions
line = ast.literal_eval(open(sys.argv[1]).read().strip())
print("fail2ban-client -d:", line)
_, jail, _, name, path, opts = line
assert (jail, name) == ("triton", "f2b-route") and path.endswith("/action.d/f2b-route.py"), line
action = Actions._load_python_module(path).Action(None, name, **json.loads(opts))
print("instantiated:", type(action).__module__, type(action).__name__, "options", sorted(json.loads(opts)))
EOF_PY
}
check "fail2ban: banaction = f2b-route.py alone resolves to the plugin, which takes fail2ban's default options" \
	one_line_evidence -- one_line_form_works

topo_start_all 2>>"$SETUP_ERR" || fatal "daemons start (OpenBGPD, zebra, bgpd, rsyslog x2, sshd, fail2ban)" "$(cat "$SETUP_ERR")"
assert 30 "bgp: session log host (FRR) <-> firewall (OpenBGPD) established" \
	neighbor_evidence -- topo_bgp_established
actions_evidence() {
	echo "fail2ban-client get triton actions: $(topo_f2b get triton actions | tail -n 1)"
	serve_evidence
}
actions_are_plugin() {
	topo_f2b get triton actions | grep -qx '.*f2b-route' && serve_jails_are "recidive triton "
}
assert 10 "fail2ban started the plugin: one f2b-route serve per jail" \
	actions_evidence -- actions_are_plugin

# --- the whole pipeline once -------------------------------------------------

topo_ssh_banner "$TOPO_NS_CL" "$TOPO_CL4" >/dev/null
assert 15 "syslog: triton's sshd lines reach fail2ban (a client's connection)" \
	log_lines "$TOPO_F2B_LOG" "Found $TOPO_CL4" 1 -- f2b_log_has "[triton] Found $TOPO_CL4"
attack() { # address
	local a=$1 refused=0 i
	for i in 1 2 3; do topo_failed_login "$a" && refused=$((refused + 1)); done
	record "$([ "$refused" = 3 ] && echo PASS || echo FAIL)" \
		"attacker $a: 3 failed logins to triton's sshd" "$refused of 3 refused (ssh exit 255)"
	assert 15 "fail2ban: [triton] bans $a" \
		log_lines "$TOPO_F2B_LOG" "Ban $a" -- f2b_log_has "[triton] Ban $a"
}
attack "$AT4"
assert 5 "kernel: blackhole $AT4/32 with f2b-route's marker, added through the plugin" \
	kernel_evidence -- kernel_is "$AT4"
assert 10 "firewall: $AT4/32 in the RIB, tagged BLACKHOLE NO_EXPORT (sshd -> rsyslog -> fail2ban -> plugin -> FRR -> OpenBGPD)" \
	rib_evidence -- rib_is_tagged "$AT4"
attack "$AT6"
assert 10 "firewall: $AT6/128 too (IPv6 through the plugin)" \
	rib_evidence -- rib_is_tagged "$AT4" "$AT6"

# --- two jails hold one address ------------------------------------------------

holds_evidence() { local a; for a; do echo "f2b-route holds for $a: $(holds "$a")"; done; }
assert 10 "two jails: [recidive] bans $AT4 and $AT6 too, each jail holds them" \
	holds_evidence "$AT4" "$AT6" -- all_held_by recidive,triton "$AT4" "$AT6"
topo_f2b set triton unbanip "$AT4" >/dev/null
wait_for 10 holds_are "$AT4" recidive
sleep 1
assert 0 "two jails: [triton] unbans $AT4, [recidive] still holds it: route kept in kernel and firewall" \
	log_kernel_rib_evidence "Unban $AT4" -- routes_are "$AT4" "$AT6"
topo_f2b unban "$AT4" "$AT6" >/dev/null
assert 10 "fail2ban-client unban: withdrawn from the kernel and the firewall's RIB" \
	log_kernel_rib_evidence "Unban" -- routes_are

# --- a guarded address ----------------------------------------------------------

topo_f2b set triton banip "$GUARDED" >/dev/null
refusal_logged() { f2b_log_has "action 'f2b-route'" && f2b_log_has "exit code 3: refused $GUARDED: "; }
assert 10 "guarded address $GUARDED (protect 198.51.100.0/24): refused, fail2ban logs the failure with f2b-route's reason" \
	log_lines "$TOPO_F2B_LOG" "$GUARDED" 4 -- refusal_logged
check "guarded address: no route for it, nothing else changed" \
	kernel_evidence -- kernel_is
topo_f2b set triton banip 203.0.113.40 >/dev/null
assert 10 "guarded address: the next ban works" \
	kernel_evidence -- kernel_is 203.0.113.40
# fail2ban counts the guarded address as banned: take it back (the unban
# of a route that never was is no error).
wait_for 10 f2b_log_has "[recidive] Ban 203.0.113.40"
topo_f2b unban "$GUARDED" >/dev/null
wait_for 10 f2b_log_has "Unban $GUARDED"

# --- the co-process killed under fail2ban ---------------------------------------

old_pid=$(serve_pid triton)
restart_line="f2b-route serve had ended"
restarts_before=$(f2b_log_count "$restart_line")
[ -n "$old_pid" ] && kill -KILL "$old_pid"
wait_for 5 process_gone "$old_pid"
topo_f2b set triton banip 203.0.113.41 >/dev/null
new_pid_differs() { local p; p=$(serve_pid triton); [ -n "$p" ] && [ "$p" != "$old_pid" ]; }
killed_evidence() {
	echo "killed serve PID $old_pid (triton)"
	serve_evidence
	log_lines "$TOPO_F2B_LOG" "$restart_line"
	kernel_evidence
}
restarted_once() {
	kernel_is 203.0.113.40 203.0.113.41 && new_pid_differs &&
		[ "$(f2b_log_count "$restart_line")" = $((restarts_before + 1)) ]
}
assert 10 "co-process killed (kill -9): the next ban works, a new serve runs, fail2ban's log says so in one line" \
	killed_evidence -- restarted_once
wait_for 10 all_held_by recidive,triton 203.0.113.40 203.0.113.41

# fail2ban asks its actions for a consistency check when an address it
# banned more than 3 s ago is banned again: the plugin's `ping` starts a
# co-process that died, before any ban needs it.
old_pid=$(serve_pid recidive)
restarts_before=$(f2b_log_count "$restart_line")
[ -n "$old_pid" ] && kill -KILL "$old_pid"
wait_for 5 process_gone "$old_pid"
sleep 3
topo_f2b set recidive banip 203.0.113.40 >/dev/null
checked_evidence() {
	echo "killed serve PID $old_pid (recidive)"
	serve_evidence
	log_lines "$TOPO_F2B_LOG" "203.0.113.40 already banned"
	log_lines "$TOPO_F2B_LOG" "$restart_line"
}
recidive_restarted() {
	local p
	p=$(serve_pid recidive)
	[ -n "$p" ] && [ "$p" != "$old_pid" ] && [ "$(f2b_log_count "$restart_line")" = $((restarts_before + 1)) ]
}
assert 10 "consistency check (banip of an address banned > 3 s ago): ping finds the co-process dead and starts it again, one log line" \
	checked_evidence -- recidive_restarted

# --- reload --------------------------------------------------------------------

wait_for 15 f2b_log_settled
pids_before=$(serve_procs)
before=$(topo_banned)
# The operator protects one more address, then reloads fail2ban: the
# plugin's serve reads f2b-route's config anew, as the shell action would.
sed -i "s|^protect = \[|protect = [\"$GUARDED_AFTER_RELOAD/32\", |" "$TOPO_TOML"
grep -qF "\"$GUARDED_AFTER_RELOAD/32\"" "$TOPO_TOML" || fatal "could not add $GUARDED_AFTER_RELOAD to protect in $TOPO_TOML"
topo_f2b reload >/dev/null
assert 15 "reload: fail2ban reloads" log_lines "$TOPO_F2B_LOG" "Reload" 4 -- f2b_log_has "Reload finished"
sleep 1
new_serves() {
	local before_pids
	before_pids=$(awk '{ print $1 }' <<<"$pids_before")
	serve_jails_are "recidive triton " && ! serve_procs | awk '{ print $1 }' | grep -qxF -f <(echo "$before_pids")
}
reload_kept() { routes_equal_these_bans "$before" && new_serves; }
reload_evidence() { bans_kernel_rib_evidence; echo "serve before: $pids_before"; serve_evidence; }
check "reload: bans and routes kept (kernel and firewall), a new serve per jail (it reads the config anew)" \
	reload_evidence -- reload_kept
topo_f2b set triton banip "$GUARDED_AFTER_RELOAD" >/dev/null
refused_after_reload() {
	f2b_log_has "refused $GUARDED_AFTER_RELOAD: " && ! topo_kernel_routes | grep -qxF "$GUARDED_AFTER_RELOAD"
}
assert 10 "reload: $GUARDED_AFTER_RELOAD, protected since the reload, is refused (the new config applies)" \
	log_lines "$TOPO_F2B_LOG" "refused $GUARDED_AFTER_RELOAD" 2 -- refused_after_reload
# fail2ban counts it as banned (in [recidive] too, which follows [triton]):
# take it back.
wait_for 10 f2b_log_has "[recidive] Ban $GUARDED_AFTER_RELOAD"
topo_f2b unban "$GUARDED_AFTER_RELOAD" >/dev/null
wait_for 10 f2b_log_has "[recidive] Unban $GUARDED_AFTER_RELOAD"
topo_f2b set triton banip 2001:db8:a::42 >/dev/null
assert 10 "reload: a ban after it works" \
	kernel_evidence -- kernel_is 203.0.113.40 203.0.113.41 2001:db8:a::42

# A reload while f2b-route's config is broken: serve cannot start, which the
# plugin says; fail2ban's reload must still finish (an exception from an
# action's reload would stop it half way). Mended and reloaded: serving.
# ([recidive] follows [triton]'s ban first: no ban is to come meanwhile.)
wait_for 10 all_held_by recidive,triton 2001:db8:a::42
wait_for 15 f2b_log_settled
cp "$TOPO_TOML" "$TOPO_DIR/f2b-route.toml.good"
echo 'protect = "not a list"' >>"$TOPO_TOML"
reloads=$(f2b_log_count "Reload finished")
topo_f2b reload >/dev/null
reload_finished() { [ "$(f2b_log_count "Reload finished")" -gt "$reloads" ]; }
broken_reload() { reload_finished && f2b_log_has "reloaded, but serve does not start" && serve_jails_are ""; }
assert 15 "reload with a broken f2b-route config: fail2ban's reload finishes, the plugin says serve does not start" \
	log_lines "$TOPO_F2B_LOG" "serve does not start" 2 -- broken_reload
cp "$TOPO_DIR/f2b-route.toml.good" "$TOPO_TOML"
reloads=$(f2b_log_count "Reload finished")
topo_f2b reload >/dev/null
mended() { reload_finished && serve_jails_are "recidive triton " && routes_equal_these_bans "$(lines 203.0.113.40 203.0.113.41 2001:db8:a::42)"; }
assert 15 "config mended, reloaded: a serve per jail again, the bans kept" \
	serve_evidence -- mended

# --- graceful restart, kill -9 and restart (restore) ----------------------------

topo_f2b set recidive banip 203.0.113.43 >/dev/null
assert 10 "before the restarts: 4 addresses banned, routes equal bans" \
	bans_kernel_rib_evidence -- routes_equal_these_bans "$(lines 203.0.113.40 203.0.113.41 2001:db8:a::42 203.0.113.43)"
wait_for 10 all_held_by recidive,triton 2001:db8:a::42
wait_for 15 f2b_log_settled
before=$(topo_banned)
topo_stop_fail2ban graceful || fatal "fail2ban-client stop"
stopped() { routes_are && serve_jails_are ""; }
assert 10 "graceful stop: every route withdrawn (kernel and firewall), no serve left" \
	bans_kernel_rib_evidence -- stopped
topo_start_fail2ban || fatal "fail2ban restart"
restore_evidence() { echo "Restore Ban lines: $(f2b_log_count "Restore Ban")"; bans_kernel_rib_evidence; serve_evidence; }
assert 15 "restart: bans restored through the plugin, routes equal bans (kernel and firewall)" \
	restore_evidence -- routes_equal_these_bans "$before"

wait_for 15 f2b_log_settled
mapfile -t before_prefixes < <(topo_rib)
topo_gap_watch_start kill9 || fatal "RIB poller and ip monitor route"
topo_stop_fail2ban kill9 || fatal "kill -9 fail2ban-server"
killed() { kernel_is 203.0.113.40 203.0.113.41 2001:db8:a::42 203.0.113.43 && serve_jails_are ""; }
assert 5 "fail2ban kill -9: the routes stay, the serve processes end (EOF on their stdin)" \
	serve_evidence kernel_evidence -- killed
topo_start_fail2ban || fatal "fail2ban start after kill -9"
assert 15 "start after kill -9: bans restored, routes equal bans, no orphan" \
	restore_evidence -- routes_equal_these_bans "$before"
topo_gap_watch_stop kill9
check "no unban window: kill -9 and restart keep every ban in the firewall's RIB and every route in the kernel (the plugin's start reconciles)" \
	topo_gap_evidence kill9 "${before_prefixes[@]}" -- topo_no_gap kill9 "${before_prefixes[@]}"
topo_f2b unban 203.0.113.41 >/dev/null
withdrawn() { routes_equal_bans && not_in_rib 203.0.113.41/32 && ! topo_kernel_routes | grep -qxF 203.0.113.41; }
assert 10 "after kill -9 and restart, unban still withdraws" \
	log_kernel_rib_evidence "Unban 203.0.113.41" 2 -- withdrawn

# An address the operator then puts into ignoreip, fail2ban restarted after
# a crash: fail2ban's restore skips it, and so does the plugin's start (it
# reads the bans to restore as fail2ban does), so its route goes.
wait_for 15 f2b_log_settled
topo_stop_fail2ban kill9 || fatal "kill -9 fail2ban-server"
printf '[DEFAULT]\nignoreip = 127.0.0.1/8 ::1 203.0.113.40\n' >"$TOPO_F2B_CONF/jail.d/zz-ignore.local"
topo_start_fail2ban || fatal "fail2ban start with 203.0.113.40 ignored"
ignored_and_gone() {
	! topo_banned | grep -qxF 203.0.113.40 && ! topo_kernel_routes | grep -qxF 203.0.113.40 &&
		! topo_rib | grep -qxF 203.0.113.40/32 && routes_equal_bans
}
assert 15 "ignoreip since the crash: fail2ban does not restore 203.0.113.40, and its route is gone (kernel and firewall), the other bans stay" \
	bans_kernel_rib_evidence -- ignored_and_gone
rm -f "$TOPO_F2B_CONF/jail.d/zz-ignore.local"

# --- fail2ban's log ------------------------------------------------------------

wait_for 15 f2b_log_settled
check "fail2ban log: no ERROR, CRITICAL or Traceback but the guarded address' refusals" \
	errors_evidence -- no_unexpected_errors
check "bgp: the session stayed up the whole run" session_evidence -- session_never_dropped

# --- tear-down -----------------------------------------------------------------

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

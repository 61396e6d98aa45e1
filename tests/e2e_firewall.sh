#!/bin/bash
# End-to-end test of the Linux firewall (issue 8), proven with packets:
#
#   attacker ─ssh─► triton ─syslog─► log host (fail2ban → f2b-route → kernel
#   → FRR) ─eBGP─► firewall: BIRD (render bird: kernel table 252) or FRR
#   (render frr-firewall: main table, discard next hop) → f2b-route mirror →
#   nftables set inet f2b-route → the attacker's packets dropped by source
#
# in the lab's network namespaces (tests/lib/topology.sh, TOPO_FIREWALL=bird
# and =frr). The witnesses are independent of f2b-route: TCP connections
# from the attacker's and the client's namespaces to triton:2222, an nft
# counter on triton of the SYNs that reach it, the counter of the firewall's
# drop rule, the firewall kernel's routes (`ip -j route`) and its nft set
# (`nft -j list set`).
#
# For each variant: connections before a ban; bans by real failed logins
# (IPv4 and IPv6): dropped at the firewall, triton sees no SYN, the client
# still gets through; unban: through again; the mirror stopped, killed -9
# and restarted with changes while it was away (the set stays, then equals
# the routes); the log host's bgpd and zebra restarted (graceful restart:
# no address leaves the set); 100,000 routes at once (the set equals the
# routes, nothing lost), then withdrawn.
#
# Usage: sudo tests/e2e_firewall.sh [bird|frr]...   (default: both; after
#   cargo build --release --locked)
#   F2B_ROUTE=path   the binary to test (default: the release build)
#   KEEP=1           keep the temp dirs for inspection
#
# Needs root and the Debian packages of tests/lib/topology.sh (bird2,
# nftables, frr, fail2ban, ...): anything missing is a failure, never a
# skip. Documentation addresses only (198.18.0.0/15 for the 100,000); the
# host's own routing table and firewall are never touched; every daemon is
# stopped by PID, every namespace removed. The last line is
# "N passed, M failed".

set -uo pipefail

cd "$(dirname "$0")/.." || exit 1
TOPO_TAG=f2bw
TOPO_KEEP=${KEEP:-}
# shellcheck source=tests/lib/topology.sh
source tests/lib/topology.sh
# shellcheck source=tests/lib/assert.sh
source tests/lib/assert.sh
TOPO_BIN=$(f2b_route_bin)
BIN=$TOPO_BIN

START=$SECONDS
SAMPLER=

on_exit() {
	local rc=$?
	[ -z "$SAMPLER" ] || kill "$SAMPLER" 2>/dev/null
	topo_down
	[ "$rc" = 0 ] && [ "$FAILED" = 0 ] || exit 1
}
trap on_exit EXIT
trap 'echo "interrupted"; exit 130' INT TERM

# A set-up step that must work, or nothing after it means anything: the
# variant ends here (its failure counted), the next one runs.
setup_failed() {
	record FAIL "$V: $1" "${2:-}"
	local log
	for log in "$TOPO_DIR"/*/*.out "$TOPO_DIR"/*/*.log "$TOPO_DIR"/*/*/*.log "$TOPO_DIR"/*/*/stderr; do
		[ -s "$log" ] && { echo "--- $log"; tail -n 15 "$log"; }
	done
	# The next variant reuses the namespaces' and daemons' names.
	topo_down
}

lines() { printf '%s\n' "$@" | grep . | sort; }
set_is() { [ "$(topo_fw_set)" = "$(lines "$@")" ]; }
fw_routes_are() { [ "$(topo_fw_routes)" = "$(lines "$@")" ]; }
set_equals_routes() { [ "$(topo_fw_set)" = "$(topo_fw_routes)" ]; }
set_is_and_routes() { set_is "$@" && fw_routes_are "$@"; }
fw_evidence() {
	echo "firewall kernel, the routes the mirror reads ($(topo_fw_routes | wc -l)): $(topo_fw_routes | head -n 6 | tr '\n' ' ')"
	echo "firewall nft set inet f2b-route ($(topo_fw_set_count)): $(topo_fw_set | head -n 6 | tr '\n' ' ')"
	echo "dropped by the mirror's rules: $(topo_fw_dropped) packets"
}
f2b_log_has() { grep -qF -- "$1" "$TOPO_F2B_LOG"; }
not_connects() { ! topo_tcp_connects "$@"; }

# Three failed logins from ADDRESS: fail2ban bans it.
attack() { # address
	local a=$1 i
	for i in 1 2 3; do topo_failed_login "$a"; done
	assert 15 "$V: fail2ban bans $a after 3 failed logins" \
		grep -E "\[triton\] (Found|Ban) $a" "$TOPO_F2B_LOG" -- f2b_log_has "[triton] Ban $a"
}

# The attacker at ADDRESS cannot open a connection: its SYNs die at the
# firewall (the drop counter rises, triton sees none of them), while the
# client still gets through.
blocked() { # address client-address
	local a=$1 c=$2 syn0 drop0 syn1 drop1 verdict=FAIL conn=opened cl=refused
	syn0=$(topo_syns "$a") drop0=$(topo_fw_dropped)
	topo_tcp_connects "$TOPO_NS_AT" "$a" || conn="timed out"
	syn1=$(topo_syns "$a") drop1=$(topo_fw_dropped)
	topo_tcp_connects "$TOPO_NS_CL" "$c" && cl=opened
	if [ "$conn" = "timed out" ] && [ "$drop1" -gt "$drop0" ] && [ "$syn1" = "$syn0" ] && [ "$cl" = opened ]; then
		verdict=PASS
	fi
	record "$verdict" "$V: $a is dropped at the firewall, $c still gets through" \
		"attacker's connect to triton:$TOPO_SSH_PORT: $conn; firewall drop counter $drop0 -> $drop1; SYNs from $a at triton $syn0 -> $syn1; client $c: $cl"
}
passes() { # address
	local a=$1 syn0 syn1 verdict=FAIL conn=failed
	syn0=$(topo_syns "$a")
	topo_tcp_connects "$TOPO_NS_AT" "$a" && conn=opened
	syn1=$(topo_syns "$a")
	[ "$conn" = opened ] && [ "$syn1" -gt "$syn0" ] && verdict=PASS
	record "$verdict" "$V: $a connects to triton:$TOPO_SSH_PORT ($3)" "connect: $conn; SYNs from $a at triton $syn0 -> $syn1"
}

# Samples the set's size every 50 ms into FILE until stopped (by PID).
sample_set() { # file
	while :; do
		printf '%s %s\n' "$EPOCHREALTIME" "$(topo_fw_set_count)"
		sleep 0.05
	done >"$1" 2>/dev/null
}
min_sample() { awk 'NR == 1 || $2 < m { m = $2 } END { print m + 0 }' "$1"; }

# Stops the log host's bgpd and zebra with SIGNAL and starts them again,
# the set's size sampled every 50 ms meanwhile: with graceful restart no
# address leaves it.
frr_restart() { # signal address...
	local how=$1 samples=$TOPO_DIR/restart-samples-$1
	shift
	sample_set "$samples" &
	SAMPLER=$!
	sleep 0.3
	if [ "$how" = TERM ]; then
		daemon_stop bgpd-frr && daemon_stop zebra
	else
		daemon_signal KILL bgpd-frr && daemon_signal KILL zebra
		wait_for 5 daemon_gone bgpd-frr && wait_for 5 daemon_gone zebra
		rm -f "$TOPO_FRR/zserv.api"
	fi
	topo_start_frr 2>>"$TOPO_DIR/setup.err" || return 1
	wait_for 60 topo_bgp_established
	sleep 3
	kill "$SAMPLER" 2>/dev/null
	wait "$SAMPLER" 2>/dev/null
	SAMPLER=
	restart_evidence() {
		echo "set size sampled every 50 ms during the restart: $(wc -l <"$samples") samples, min $(min_sample "$samples")"
		fw_evidence
	}
	no_gap() { [ "$(min_sample "$samples")" = "$#" ] && [ "$(wc -l <"$samples")" -gt 20 ] && set_is_and_routes "$@"; }
	check "$V: log host bgpd + zebra stopped by SIG$how and started: no address ever left the set (graceful restart)" \
		restart_evidence -- no_gap "$@"
}

variant() { # bird|frr
	V=$1
	# topo_init runs a copy of the binary in its temp dir, gone with the
	# previous variant's.
	TOPO_FIREWALL=$V TOPO_BIN=$BIN
	echo "# --- $V: firewall runs $([ "$V" = bird ] && echo "BIRD (render bird)" || echo "FRR (render frr-firewall)") + f2b-route mirror"
	topo_init || { setup_failed "topology init"; return; }
	echo "# namespaces $TOPO_TAG-$TOPO_ID-*, temp dir $TOPO_DIR"
	local err=$TOPO_DIR/setup.err
	topo_net_up 2>"$err" || { setup_failed "network namespaces and links" "$(cat "$err")"; return; }
	topo_configure 2>"$err" || { setup_failed "configuration (render, checkers)" "$(cat "$err")"; return; }
	topo_start_all 2>>"$err" || { setup_failed "daemons start" "$(cat "$err")"; return; }
	assert 40 "$V: BGP session log host (FRR) <-> firewall ($V) established" \
		fw_evidence -- topo_bgp_established
	check "$V: the mirror made its table; the sets are empty, nothing dropped yet" \
		fw_evidence -- set_is_and_routes
	topo_syn_witness "$TOPO_AT4" "$TOPO_AT6" "$TOPO_CL4" "$TOPO_CL6" 2>>"$err" ||
		{ setup_failed "triton's SYN counters" "$(cat "$err")"; return; }

	passes "$TOPO_AT4" "" "before any ban"
	passes "$TOPO_AT6" "" "before any ban"

	# --- bans by failed logins, IPv4 then IPv6 ---
	attack "$TOPO_AT4"
	assert 10 "$V: $TOPO_AT4 in the firewall's kernel (a blackhole) and in the mirror's set" \
		fw_evidence -- set_is_and_routes "$TOPO_AT4"
	blocked "$TOPO_AT4" "$TOPO_CL4"
	attack "$TOPO_AT6"
	assert 10 "$V: $TOPO_AT6 in the firewall's kernel and in the set" \
		fw_evidence -- set_is_and_routes "$TOPO_AT4" "$TOPO_AT6"
	blocked "$TOPO_AT6" "$TOPO_CL6"

	# --- unban ---
	topo_f2b unban "$TOPO_AT4" "$TOPO_AT6" >/dev/null
	assert 10 "$V: unban: both gone from the firewall's kernel and the set" \
		fw_evidence -- set_is_and_routes
	passes "$TOPO_AT4" "" "after the unban"
	passes "$TOPO_AT6" "" "after the unban"

	# --- the mirror stopped, killed, restarted ---
	local bans=(203.0.113.60 2001:db8:a::60 203.0.113.61)
	topo_f2b set triton banip "${bans[@]}" >/dev/null
	assert 10 "$V: fail2ban banip of ${#bans[@]}: in the set" fw_evidence -- set_is_and_routes "${bans[@]}"
	daemon_stop mirror
	topo_f2b set triton banip 203.0.113.62 >/dev/null
	assert 10 "$V: mirror stopped (SIGTERM): the set is left as it was (no unban)" \
		fw_evidence -- fw_routes_are "${bans[@]}" 203.0.113.62
	check "$V: ... and it still holds the ${#bans[@]} addresses, nothing more" fw_evidence -- set_is "${bans[@]}"
	topo_start_mirror 2>>"$err" || { setup_failed "mirror restart" "$(cat "$err")"; return; }
	assert 10 "$V: mirror restarted: its resync adds the ban made while it was away" \
		fw_evidence -- set_is_and_routes "${bans[@]}" 203.0.113.62
	daemon_signal KILL mirror
	wait_for 5 daemon_gone mirror
	topo_f2b set triton unbanip 203.0.113.62 >/dev/null
	assert 10 "$V: mirror killed -9, an unban meanwhile: the set stays as it was" \
		fw_evidence -- fw_routes_are "${bans[@]}"
	check "$V: ... still with 203.0.113.62 in it" fw_evidence -- set_is "${bans[@]}" 203.0.113.62
	topo_start_mirror 2>>"$err" || { setup_failed "mirror start after kill -9" "$(cat "$err")"; return; }
	assert 10 "$V: mirror started after kill -9: resync removes it, set equals routes" \
		fw_evidence -- set_is_and_routes "${bans[@]}"

	# --- FRR fails open without its discard route: the mirror says so ---
	if [ "$V" = frr ]; then
		local d4=$TOPO_FW_DISCARD4/32
		topo_fw_vtysh -c 'configure terminal' -c "no ip route $d4 blackhole" >/dev/null
		mirror_warned() { grep -q 'forward instead of dropping' "$TOPO_FW/mirror.out"; }
		failed_open() { mirror_warned && set_is 2001:db8:a::60; }
		open_evidence() {
			echo "firewall: $(ip -n "$TOPO_NS_FW" route show 203.0.113.60)"
			grep 'forward instead' "$TOPO_FW/mirror.out" | tail -n 1
			fw_evidence
		}
		assert 10 "frr: without the static route to the discard next hop the IPv4 bans forward (fail open): the mirror warns, they leave the set" \
			open_evidence -- failed_open
		topo_fw_vtysh -c 'configure terminal' -c "ip route $d4 blackhole" >/dev/null
		assert 10 "frr: the discard route back: blackholes again, in the set again" \
			fw_evidence -- set_is_and_routes "${bans[@]}"
	fi

	# --- the log host's FRR restarted: graceful restart keeps every ban ---
	local how
	for how in TERM KILL; do
		frr_restart "$how" "${bans[@]}" || { setup_failed "log host FRR restart ($how)" "$(cat "$err")"; return; }
	done

	# --- 100,000 routes at once ---
	local bulk=$TOPO_DIR/bulk
	seq 0 99999 | awk '{ printf "198.%d.%d.%d\n", 18 + int($1 / 65536), int($1 / 256) % 256, $1 % 256 }' >"$bulk"
	local t0 t1
	t0=$(now_us)
	topo_f2b_route --quiet add --jail bulk - <"$bulk" || record FAIL "$V: f2b-route add of 100,000" "exit $?"
	want_total=$((100000 + ${#bans[@]}))
	set_full() { [ "$(topo_fw_set_count)" = "$want_total" ]; }
	wait_for 180 set_full
	t1=$(now_us)
	bulk_evidence() {
		echo "100,000 added on the log host; $(topo_fw_set_count) in the firewall's set after $(((t1 - t0) / 1000)) ms"
		fw_evidence
	}
	full_and_equal() { set_full && set_equals_routes; }
	check "$V: 100,000 routes at once: all $want_total in the set, which equals the firewall's routes: nothing lost" \
		bulk_evidence -- full_and_equal
	topo_f2b_route --quiet flush --jail bulk || record FAIL "$V: f2b-route flush --jail bulk" "exit $?"
	assert 180 "$V: ... and withdrawn: the set is back to the ${#bans[@]} bans" \
		fw_evidence -- set_is_and_routes "${bans[@]}"
	mirror_errors() { grep -iE 'error|panic' "$TOPO_FW/mirror.out"; }
	no_mirror_errors() { ! mirror_errors >/dev/null; }
	check "$V: the mirror logged no error" \
		bash -c "tail -n 5 '$TOPO_FW/mirror.out'" -- no_mirror_errors

	local ns_list
	ns_list=$(printf '%s\n' "${TOPO_ALL_NS[@]}")
	topo_down
	local left_ns
	left_ns=$(ip netns list | awk '{ print $1 }' | grep -xF "$ns_list" || true)
	verdict=PASS; [ -z "$left_ns$(daemon_left)" ] || verdict=FAIL
	record "$verdict" "$V: tear-down: every daemon stopped by PID, every namespace removed" \
		"namespaces left: ${left_ns:-none}; daemons left: $(daemon_left | tr '\n' ' ')"
}

echo "# f2b-route end-to-end test of the Linux firewall ($(date -u +%FT%TZ))"
msg=$(topo_require_tools 2>&1) || { record FAIL "preconditions" "$msg"; summary; exit 1; }
record PASS "preconditions: root, tools, f2b-route binary" "$("$BIN" --version 2>&1)"

variants=("$@")
[ "${#variants[@]}" -gt 0 ] || variants=(bird frr)
for v in "${variants[@]}"; do
	case $v in
	bird | frr) variant "$v" ;;
	*) record FAIL "variant $v" "use bird or frr" ;;
	esac
done

echo "# $((SECONDS - START)) s"
summary
[ "$FAILED" = 0 ]

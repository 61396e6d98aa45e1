# shellcheck shell=bash
# The witnesses the end-to-end tests on the lab share (tests/e2e.sh,
# tests/plugin.sh): what the log host's kernel, the firewall's RIB, fail2ban
# and f2b-route's ledger say. Sourced after tests/lib/topology.sh and
# tests/lib/assert.sh, never run. A script defines its own kernel_is (which
# routes count: e2e.sh leaves out the protected ones it added by hand).

[ -z "${F2B_WITNESS_SH:-}" ] || return 0
F2B_WITNESS_SH=1

lines() { printf '%s\n' "$@" | grep . | sort; }
# The log host's kernel (the script's kernel_is) and the firewall's RIB
# hold exactly these addresses, as host routes.
routes_are() { kernel_is "$@" && rib_is "$@"; }
rib_is() {
	local want=() a
	for a; do want+=("$(topo_prefix "$a")"); done
	[ "$(topo_rib)" = "$(lines "${want[@]}")" ]
}
# Every prefix in the RIB carries BLACKHOLE and NO_EXPORT.
rib_tagged() {
	local n
	n=$(topo_rib_count)
	[ "$n" -gt 0 ] && [ "$(topo_rib_communities | grep -c ' BLACKHOLE NO_EXPORT$')" = "$n" ]
}
# The RIB holds exactly these addresses' prefixes, each tagged.
rib_is_tagged() { rib_is "$@" && rib_tagged; }
f2b_log_has() { grep -qF -- "$1" "$TOPO_F2B_LOG"; }
holds() { topo_f2b_route list --json | jq -r --arg a "$1" 'select(.address == $a) | .jails | join(",")'; }
holds_are() { [ "$(holds "$1")" = "$2" ]; }
all_held_by() { # jails address...
	local jails=$1 a
	shift
	for a; do holds_are "$a" "$jails" || return 1; done
}
kernel_evidence() {
	echo "log host kernel, ip -j route show proto 252:"
	{
		ip -n "$TOPO_NS_LH" -j -4 route show proto 252
		ip -n "$TOPO_NS_LH" -j -6 route show proto 252
	} | jq -c '.[] | {dst, type, metric}'
}
rib_evidence() {
	echo "firewall, bgpctl show rib table blackhole detail (prefix, communities):"
	topo_rib_communities
	[ "$(topo_rib_count)" != 0 ] || echo "(empty)"
}
banned_evidence() { echo "fail2ban, banned in any jail: $(topo_banned | tr '\n' ' ')"; }
bans_kernel_rib_evidence() { banned_evidence; kernel_evidence; rib_evidence; }
# The routes kernel_is counts are exactly the addresses fail2ban has
# banned; the firewall has exactly those.
routes_equal_bans() {
	local bans
	mapfile -t bans < <(topo_banned) || return 1
	routes_are "${bans[@]}"
}
# ... and the bans are exactly these lines (topo_banned's output).
routes_equal_these_bans() { routes_equal_bans && [ "$(topo_banned)" = "$1" ]; }
# Prints the lines of FILE with the fixed string TEXT, the last N of them.
log_lines() { grep -F -- "$2" "$1" | tail -n "${3:-1000}"; } # file text [n]
neighbor_evidence() { topo_bgpctl show neighbor "$TOPO_LH4" | grep -E "BGP state|Description"; }
not_in_rib() { ! topo_rib | grep -qxF "$1"; }
session_evidence() { grep -E "state change" "$TOPO_FW/bgpd.log" | cut -d" " -f3-; }
session_never_dropped() { ! grep -q "state change Established ->" "$TOPO_FW/bgpd.log"; }

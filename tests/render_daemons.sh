#!/bin/bash
# Renders every shipped template with `f2b-route render` and feeds it to the
# real daemon that will read it (Debian 12 packages fail2ban, frr, openbgpd):
#
#   openbgpd  `bgpd -n`: the --no-pftable config must pass; the full one must
#             fail only with "pftable not supported" (Linux portable), never
#             with a syntax error.
#   fail2ban  `fail2ban-client -t` on a private copy of /etc/fail2ban with our
#             action.d and jail.d; the commands fail2ban resolves for
#             `banaction = route` and for the named action, and that the two
#             resolve to the same commands (`fail2ban-client -d`, with the
#             default blocktype and with blocktype=unreachable); and the order in
#             which a private fail2ban-server runs them (start, ban, reload,
#             unban --all, stop, kill -9 and restart, a refused ban), with a
#             stand-in for f2b-route that records its arguments.
#   frr       `vtysh --dryrun`, then zebra + bgpd in a network namespace
#             peering with OpenBGPD in a second one: of a set of kernel routes
#             (ours, foreign metric, foreign unicast /32, unicast with our
#             metric, non-host, protected, peer), exactly ours reach the
#             firewall's RIB, tagged BLACKHOLE and NO_EXPORT.
#   pf        no pfctl on Linux: the rendered lines are checked by text only.
#
# Usage: sudo tests/render_daemons.sh   (after `cargo build --release --locked`)
#   F2B_ROUTE=path  the binary to use (default: the release build,
#                   target/<host triple>/release/f2b-route; tests/lib/common.sh)
#   KEEP=1          keep the temp dir for inspection
#
# Needs root (namespaces, daemons). Documentation addresses only; everything
# runs in namespaces this script creates and removes; daemons are stopped by
# PID, also on failure.

set -euo pipefail

cd "$(dirname "$0")/.."
# shellcheck source=tests/lib/common.sh
source tests/lib/common.sh
BIN=$(f2b_route_bin)

fail() { echo "FAIL: $*" >&2; exit 1; }
ok() { echo "ok: $*"; }

[ "$(id -u)" = 0 ] || fail "must run as root (network namespaces, daemons)"
[ -x "$BIN" ] || fail "no f2b-route binary at $BIN: run cargo build --release --locked first"
missing=$(missing_commands bgpd bgpctl vtysh /usr/lib/frr/zebra /usr/lib/frr/bgpd fail2ban-client fail2ban-server ip) ||
	fail "missing ${missing//$'\n'/ } (Debian packages openbgpd, frr, fail2ban, iproute2)"

TMP=$(mktemp -d /tmp/f2b-render.XXXXXX)
chmod 755 "$TMP"
NS_LH=f2brd-lh-$$
NS_FW=f2brd-fw-$$
VETH_LH=f2b$$a
VETH_FW=f2b$$b
MADE_RUN_OPENBGPD=

cleanup() {
	local rc=$?
	set +e
	# Every daemon by PID (tests/lib/common.sh), the last started first.
	daemon_stop_all 5
	ip netns del "$NS_LH" 2>/dev/null
	ip netns del "$NS_FW" 2>/dev/null
	[ -n "$MADE_RUN_OPENBGPD" ] && rmdir /run/openbgpd 2>/dev/null
	if [ "$rc" != 0 ]; then
		for log in "$TMP"/frr/*.log "$TMP"/obgpd/log "$TMP"/f2b/f2b.log; do
			[ -s "$log" ] && { echo "--- $log"; tail -n 30 "$log"; }
		done
	fi
	if [ -n "${KEEP:-}" ]; then echo "kept $TMP"; else rm -rf "$TMP"; fi
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# The config both ends agree on. A metric other than the default shows that
# render takes it from here.
METRIC=4242
cat >"$TMP/f2b-route.toml" <<EOF
protocol = 252
metric = $METRIC
protect = ["203.0.113.0/24", "2001:db8:1::/48"]
peers = ["198.51.100.2"]
state_dir = "$TMP/state"
EOF
render() { "$BIN" --config "$TMP/f2b-route.toml" render "$@"; }

render frr --local-as 64500 --peer-as 64501 --router-id 198.51.100.1 >"$TMP/frr.conf"
render openbgpd --local-as 64501 --peer-as 64500 --peer 198.51.100.1 --router-id 198.51.100.2 >"$TMP/bgpd-full.conf"
render openbgpd --local-as 64501 --peer-as 64500 --peer 198.51.100.1 --router-id 198.51.100.2 --no-pftable >"$TMP/bgpd.conf"
render pf --interface em0 >"$TMP/pf.conf"
render jail >"$TMP/jail.conf"
render frr-firewall --local-as 64501 --peer-as 64500 --peer 198.51.100.1 --discard 198.18.0.1 >"$TMP/frr-firewall.conf"
for f in frr.conf bgpd-full.conf bgpd.conf pf.conf jail.conf frr-firewall.conf; do
	if grep -nE '@[A-Z0-9_]+@' "$TMP/$f"; then fail "$f: placeholder left"; fi
done
ok "rendered frr, openbgpd (with and without pftable), pf, jail, frr-firewall; no placeholder left"

# --- OpenBGPD --------------------------------------------------------------
out=$(bgpd -n -f "$TMP/bgpd.conf" 2>&1) || fail "bgpd -n rejects the --no-pftable config: $out"
ok "openbgpd --no-pftable: bgpd -n: $out"
if out=$(bgpd -n -f "$TMP/bgpd-full.conf" 2>&1); then
	fail "bgpd -n accepts set pftable on Linux? $out"
fi
grep -q 'pftable not supported' <<<"$out" || fail "full openbgpd config: not the pftable error: $out"
if grep -qi 'syntax error' <<<"$out"; then fail "full openbgpd config: syntax error: $out"; fi
ok "openbgpd full: bgpd -n fails on pftable support only"

# --- pf (text only: no pfctl on Linux) -------------------------------------
grep -qx 'ext_if = "em0"' "$TMP/pf.conf" || fail "pf: interface macro"
grep -qx 'table <blackhole> persist' "$TMP/pf.conf" || fail "pf: table"
grep -qx 'block in quick log on $ext_if from <blackhole> to any' "$TMP/pf.conf" || fail "pf: block rule"
ok "pf: table and block rule rendered (not parsed: pfctl is OpenBSD's)"

# --- fail2ban --------------------------------------------------------------
F2B=$TMP/f2b
CONF=$F2B/etc
mkdir -p "$F2B"
cp -r /etc/fail2ban "$CONF"
# Hermetic: none of this machine's own jails or overrides.
rm -rf "$CONF"/jail.d/* "$CONF"/fail2ban.d/* "$CONF"/action.d/route.d "$CONF"/action.d/f2b-route.d
find "$CONF" -name '*.local' -delete
cp "$REPO"/action.d/route.local "$REPO"/action.d/f2b-route.conf "$CONF/action.d/"
# The stand-in for f2b-route: records its arguments (calls gets them joined
# by spaces, argv their count and each one in brackets) and succeeds, but
# refuses 198.51.100.66 and .67 (exit 3, as f2b-route refuses a protected
# address), `check` fails while check-fails exists, until a
# `check --repair` removes it, and `reconcile` says much.
cat >"$F2B/f2b-route" <<EOF
#!/bin/sh
echo "\$*" >>"$F2B/calls"
{ printf '%s:' "\$#"; printf ' [%s]' "\$@"; echo; } >>"$F2B/argv"
case " \$* " in
*" 198.51.100.66 "* | *" 198.51.100.67 "*) exit 3 ;;
" check ") [ ! -e "$F2B/check-fails" ] || exit 4 ;;
" check --repair ") rm -f "$F2B/check-fails" ;;
# reconcile prints a line per change: 10,000 at a restart with that many
# bans, more than a pipe holds (fail2ban reads its commands' output only
# once they end).
" reconcile "*) seq 10000 | sed 's/^/hold 198.18.0.0 triton /' ;;
esac
exit 0
EOF
chmod +x "$F2B/f2b-route"
touch "$F2B/triton.log" "$F2B/other.log" "$F2B/calls"
sed "s|^logpath  = .*|logpath  = $F2B/triton.log|" "$TMP/jail.conf" >"$CONF/jail.d/triton.conf"
grep -qx 'ignoreip = 127.0.0.1/8 ::1 198.51.100.2 203.0.113.0/24 2001:db8:1::/48' "$CONF/jail.d/triton.conf" \
	|| fail "jail: ignoreip from protect and peers"
cat >"$CONF/jail.d/named.conf" <<EOF
[named]
enabled  = true
port     = 2222
logpath  = $F2B/other.log
filter   = sshd
action   = f2b-route[blocktype=unreachable, f2b_route="$F2B/f2b-route --state-dir $F2B/state"]
EOF
# The same action, as the stock route with our route.local and as our named
# action, with the default blocktype and with another (for -d only).
for j in route:'banaction = route' named:'action = f2b-route' \
	route-unreachable:'banaction = route[blocktype=unreachable]' \
	named-unreachable:'action = f2b-route[blocktype=unreachable]'; do
	printf '[cmp-%s]\nenabled = true\nport = 2222\nlogpath = %s\nfilter = sshd\n%s\n\n' \
		"${j%%:*}" "$F2B/other.log" "${j#*:}"
done >"$CONF/jail.d/compare.conf"
cat >"$CONF/fail2ban.local" <<EOF
[Definition]
allowipv6 = auto
loglevel = INFO
logtarget = $F2B/f2b.log
socket = $F2B/sock
pidfile = $F2B/pid
dbfile = $F2B/db
EOF
out=$(fail2ban-client -c "$CONF" -t 2>&1) || fail "fail2ban-client -t: $out"
ok "fail2ban: configuration test ($out)"

fail2ban-client -c "$CONF" -d >"$F2B/dump" 2>&1 || fail "fail2ban-client -d: $(tail -n 5 "$F2B/dump")"
dump=$(<"$F2B/dump")
expect_cmd() { # jail, action, key, command
	grep -F "['multi-set', '$1', 'action', '$2'," <<<"$dump" | grep -qF "['$3', '$4']" \
		|| fail "fail2ban: $1/$2 $3 is not: $4"
}
expect_cmd triton route actionban 'f2b-route add --jail triton --type blackhole -- "<ip>"'
expect_cmd triton route actionunban 'f2b-route del --jail triton -- "<ip>"'
expect_cmd triton route actionflush 'f2b-route flush --jail triton'
expect_cmd triton route actionstop 'f2b-route flush --jail triton'
expect_cmd triton route actionstart 'f2b-route check --repair && f2b-route reconcile --jail triton --type blackhole --db "/var/lib/fail2ban/fail2ban.sqlite3" --min-left 60 --or-flush >/dev/null'
expect_cmd triton route actioncheck 'f2b-route check'
expect_cmd triton route actionrepair 'f2b-route check --repair'
expect_cmd named f2b-route actionban "$F2B/f2b-route --state-dir $F2B/state add --jail named --type unreachable -- \"<ip>\""
ok "fail2ban: banaction = route and action = f2b-route[...] resolve to f2b-route commands"

# What fail2ban resolved for JAIL's action, from the dump of -d: one
# "key<TAB>value" line per command and option, sorted, the jail's name
# written <name>. Left out: port, protocol and chain (the banaction form
# passes them, jail.conf's action_), actname (the action file's name) and
# name (the jail's).
resolved_action() { # jail
	python3 - "$F2B/dump" "$1" <<'PY' | sort
import ast, re, sys
dump, jail = sys.argv[1], sys.argv[2]
name = re.compile(r'(?<![\w-])' + re.escape(jail) + r'(?![\w-])')
for line in open(dump):
    line = line.strip()
    if not line.startswith("['multi-set', "):
        continue
    cmd = ast.literal_eval(line)
    if cmd[1] != jail or cmd[2] != 'action':
        continue
    for key, value in cmd[4]:
        if key not in ('port', 'protocol', 'chain', 'actname', 'name'):
            print('%s\t%s' % (key, name.sub('<name>', str(value))))
PY
}
same_action() { # jail-a jail-b blocktype
	local a b
	a=$(resolved_action "$1") b=$(resolved_action "$2")
	[ -n "$a" ] || fail "fail2ban -d: no action for [$1]"
	[ "$a" = "$b" ] || fail "fail2ban -d: [$1] and [$2] resolve differently:
$(diff <(printf '%s\n' "$a") <(printf '%s\n' "$b"))"
	grep -qxF "blocktype	$3" <<<"$a" || fail "fail2ban -d: [$1] blocktype is not $3:
$a"
	grep -q "^actionban	.* add --jail <name> --type $3 " <<<"$a" || fail "fail2ban -d: [$1] does not ban with --type $3:
$a"
	for key in actionstart actionstop actionflush actioncheck actionrepair actionban actionunban; do
		grep -q "^$key	.*f2b-route" <<<"$a" || fail "fail2ban -d: [$1] $key does not run f2b-route:
$a"
	done
}
same_action cmp-route cmp-named blackhole
same_action cmp-route-unreachable cmp-named-unreachable unreachable
ok "fail2ban -d: banaction = route (route.conf + route.local) and action = f2b-route resolve to the same $(resolved_action cmp-route | wc -l) commands and options, blocktype blackhole by default and unreachable when asked"
rm "$CONF/jail.d/compare.conf"

# The lifecycle, run by a private fail2ban-server through the stand-in
# (named in a drop-in, read after route.local).
mkdir -p "$CONF/action.d/route.d"
# The drop-in names fail2ban's dbfile too: actionstart reads it.
printf '[Init]\nf2b_route = %s\ndbfile = %s\n' "$F2B/f2b-route" "$F2B/db" >"$CONF/action.d/route.d/stand-in.local"
client() { fail2ban-client -c "$CONF" "$@" >/dev/null; }
start_f2b() {
	rm -f "$F2B/sock" "$F2B/pid"
	fail2ban-server -c "$CONF" -b -x >/dev/null 2>&1 || fail "fail2ban-server did not start"
	wait_for 15 fail2ban-client -c "$CONF" ping || fail "fail2ban-server does not answer"
	# -b: it forked and wrote its own PID file.
	daemon_track fail2ban "$F2B/pid" || fail "fail2ban-server: no PID"
}
# The calls for [triton]; [named] calls carry its `--state-dir` first.
triton_calls() { grep -v -- '^--state-dir' "$F2B/calls" || true; }
has_calls() { [ "$(triton_calls | wc -l)" -ge "$1" ]; }
# The calls since the last check are exactly the arguments, in order.
calls_are() {
	local want got
	want=$(printf '%s\n' "$@")
	[ $# = 0 ] || wait_for 10 has_calls $# || true
	got=$(triton_calls)
	: >"$F2B/calls"
	[ "$got" = "$want" ] || fail "fail2ban ran, in order:
$got
expected:
$want"
}
start_f2b
START_CALLS=('check --repair' "reconcile --jail triton --type blackhole --db $F2B/db --min-left 60 --or-flush")
calls_are "${START_CALLS[@]}"
client set triton banip 198.51.100.7 2001:db8:5::7
calls_are 'add --jail triton --type blackhole -- 198.51.100.7' 'add --jail triton --type blackhole -- 2001:db8:5::7'
client set triton unbanip 198.51.100.7
calls_are 'del --jail triton -- 198.51.100.7'
# Raw IDs (banip takes any string; so does a filter's <F-ID>): each reaches
# the command as one argument after --. fail2ban inlines 'a b' as it is and
# passes '*' (a shell special character) through a shell variable: unquoted,
# the first would be two addresses and the second every file in fail2ban's
# working directory.
: >"$F2B/argv"
client set triton banip 'a b' '*'
client set triton unbanip 'a b' '*'
calls_are 'add --jail triton --type blackhole -- a b' 'add --jail triton --type blackhole -- *' \
	'del --jail triton -- a b' 'del --jail triton -- *'
got=$(grep -v -- '\[--state-dir\]' "$F2B/argv")
want='7: [add] [--jail] [triton] [--type] [blackhole] [--] [a b]
7: [add] [--jail] [triton] [--type] [blackhole] [--] [*]
5: [del] [--jail] [triton] [--] [a b]
5: [del] [--jail] [triton] [--] [*]'
[ "$got" = "$want" ] || fail "raw IDs: the stand-in got
$got
expected
$want"
client reload
sleep 1
calls_are # a reload neither flushes nor re-adds
client unban --all
calls_are 'flush --jail triton'
client set triton banip 198.51.100.8
calls_are 'add --jail triton --type blackhole -- 198.51.100.8'
daemon_signal KILL fail2ban || fail "fail2ban-server is not running"
wait_for 10 daemon_gone fail2ban || fail "fail2ban-server survived SIGKILL"
start_f2b
calls_are "${START_CALLS[@]}" 'add --jail triton --type blackhole -- 198.51.100.8'
stop_f2b() {
	client stop
	wait_for 10 test ! -e "$F2B/sock" || fail "fail2ban-server did not stop"
	wait_for 10 daemon_gone fail2ban || fail "fail2ban-server $(daemon_pid fail2ban) did not exit"
}
stop_f2b
got=$(triton_calls | sort -u)
[ "$got" = 'flush --jail triton' ] || fail "fail2ban stop ran: $got"
: >"$F2B/calls"
if grep -E 'ERROR|CRITICAL' "$F2B/f2b.log"; then fail "errors in fail2ban's log"; fi
ok "fail2ban: start releases stale holds, ban/unban/unban --all/reload, raw IDs one argument each, kill -9 + restore, stop flushes; no error"

# A refused ban. fail2ban runs actioncheck after every failed ban, so a
# refusal f2b-route is meant to make runs `check`, the read-only preflight,
# and the ban once more; never the repair. Only when `check` fails too does
# fail2ban run actionrepair (`check --repair`), then `check` again.
log_mark=$(wc -l <"$F2B/f2b.log")
start_f2b
calls_are "${START_CALLS[@]}" 'add --jail triton --type blackhole -- 198.51.100.8'
client set triton banip 198.51.100.66
calls_are 'add --jail triton --type blackhole -- 198.51.100.66' 'check' 'add --jail triton --type blackhole -- 198.51.100.66'
: >"$F2B/check-fails"
client set triton banip 198.51.100.67
calls_are 'add --jail triton --type blackhole -- 198.51.100.67' 'check' 'check --repair' 'check' \
	'add --jail triton --type blackhole -- 198.51.100.67'
[ ! -e "$F2B/check-fails" ] || fail "fail2ban did not run actionrepair"
stop_f2b
calls_are 'flush --jail triton'
# fail2ban logs both refusals (that is what an operator sees); nothing else.
errors=$(tail -n "+$((log_mark + 1))" "$F2B/f2b.log" | grep -E 'ERROR|CRITICAL' || true)
grep -q "Failed to execute ban jail 'triton' action 'route' .*198\.51\.100\.66" <<<"$errors" ||
	fail "fail2ban did not log the refused ban of 198.51.100.66: $errors"
unexpected=$(grep -vE " ERROR +([0-9a-f]+ -- (exec: $F2B/f2b-route (add --jail triton --type blackhole -- \"198\.51\.100\.6[67]\"|check)\$|returned [34]\$)|Invariant check failed\. Trying to restore a sane environment\$|Failed to execute ban jail 'triton' action 'route' .*Error banning 198\.51\.100\.6[67]\$)" <<<"$errors" || true)
[ -z "$unexpected" ] || fail "fail2ban logged more than the refusals:
$unexpected"
ok "fail2ban: a refused ban runs check (read-only) and the ban once more; check --repair only after check fails"

# --- FRR + OpenBGPD in namespaces -----------------------------------------
out=$(vtysh --dryrun -f "$TMP/frr.conf" 2>&1) || fail "vtysh --dryrun: $out"
ok "frr: vtysh --dryrun"
# (frr-firewall is applied to a running FRR in tests/e2e_firewall.sh.)
out=$(vtysh --dryrun -f "$TMP/frr-firewall.conf" 2>&1) || fail "vtysh --dryrun frr-firewall: $out"
ok "frr-firewall: vtysh --dryrun"

ip netns add "$NS_LH"
ip netns add "$NS_FW"
# The veth pair is created inside the namespaces, never in the host's own.
ip -n "$NS_LH" link add "$VETH_LH" type veth peer name "$VETH_FW" netns "$NS_FW"
ip -n "$NS_LH" link set lo up
ip -n "$NS_FW" link set lo up
ip -n "$NS_LH" addr add 198.51.100.1/24 dev "$VETH_LH"
ip -n "$NS_FW" addr add 198.51.100.2/24 dev "$VETH_FW"
ip -n "$NS_LH" link set "$VETH_LH" up
ip -n "$NS_FW" link set "$VETH_FW" up

FRR=$TMP/frr
mkdir -p "$FRR"
printf 'hostname loghost\n' >"$FRR/zebra.conf"
cp "$TMP/frr.conf" "$FRR/bgpd.conf"
chown -R frr:frr "$FRR"
common=(-z "$FRR/zserv.api" --vty_socket "$FRR" -P 0 -u frr -g frr)
ip netns exec "$NS_LH" /usr/lib/frr/zebra -d -f "$FRR/zebra.conf" -i "$FRR/zebra.pid" "${common[@]}" \
	-s 90000000 --log "file:$FRR/zebra.log" 2>>"$FRR/zebra.stderr"
daemon_track zebra "$FRR/zebra.pid" || fail "zebra did not start"
wait_for 10 test -S "$FRR/zserv.api" || fail "zebra did not start"
# In the foreground, its stderr a file: bgpd tells the vty that reads its
# config file that graceful restart "changed", and daemonized (-d) that vty
# is a closed fd 2 ("write error on fd 2" in its log).
daemon_start bgpd-frr "$FRR/bgpd.stderr" ip netns exec "$NS_LH" /usr/lib/frr/bgpd -f "$FRR/bgpd.conf" \
	-i "$FRR/bgpd.pid" "${common[@]}" --log "file:$FRR/bgpd.log" || fail "bgpd did not start"
vty() { ip netns exec "$NS_LH" vtysh --vty_socket "$FRR" "$@"; }
wait_for 10 vty -c 'show bgp summary' || fail "bgpd does not answer vtysh"
running=$(vty -c 'show running-config')
for line in \
	"router bgp 64500" \
	" neighbor FIREWALLS peer-group" \
	" neighbor FIREWALLS remote-as 64501" \
	" neighbor 198.51.100.2 peer-group FIREWALLS" \
	"  redistribute kernel route-map F2B-ROUTE-REDIST-V4" \
	"  redistribute kernel route-map F2B-ROUTE-REDIST-V6" \
	"  neighbor FIREWALLS route-map F2B-ROUTE-OUT-V4 out" \
	"  neighbor FIREWALLS route-map F2B-ROUTE-OUT-V6 out" \
	"route-map F2B-ROUTE-REDIST-V4 permit 10" \
	" match metric $METRIC" \
	" match ip next-hop type blackhole" \
	" match ipv6 next-hop type blackhole" \
	" set community blackhole no-export" \
	"ip prefix-list F2B-ROUTE-V4 seq 5 deny 198.51.100.2/32 le 32" \
	"ip prefix-list F2B-ROUTE-V4 seq 10 deny 203.0.113.0/24 le 32" \
	"ipv6 prefix-list F2B-ROUTE-V6 seq 5 deny 2001:db8:1::/48 le 128"; do
	grep -qxF -- "$line" <<<"$running" || fail "frr running-config lacks: $line"
done
if grep -iE 'unknown command|error|warn' "$FRR/bgpd.log"; then fail "bgpd logged errors"; fi
ok "frr: zebra + bgpd run the rendered config (running-config has the route-maps, no error logged)"

OBG=$TMP/obgpd
mkdir -p "$OBG"
sed "s|^AS 64501$|AS 64501\nsocket \"$OBG/bgpd.sock\"|" "$TMP/bgpd.conf" >"$OBG/bgpd.conf"
if [ ! -d /run/openbgpd ]; then mkdir -p /run/openbgpd; MADE_RUN_OPENBGPD=1; fi
daemon_start openbgpd "$OBG/log" ip netns exec "$NS_FW" bgpd -d -f "$OBG/bgpd.conf" || fail "OpenBGPD did not start"
bgpctl() { command bgpctl -s "$OBG/bgpd.sock" "$@"; }
established() { bgpctl show neighbor 198.51.100.1 | grep -q 'BGP state = Established'; }
wait_for 30 established || fail "the BGP session does not come up"
ok "bgp session log host <-> firewall established"

lh() { ip -n "$NS_LH" route add "$@"; }
# Ours: the marker f2b-route sets (protocol 252, metric), the three types.
lh blackhole 198.51.100.7 proto 252 metric "$METRIC"
lh unreachable 198.51.100.10 proto 252 metric "$METRIC"
lh prohibit 198.51.100.11 proto 252 metric "$METRIC"
lh blackhole 2001:db8:5::7 proto 252 metric "$METRIC"
# Not ours, never advertised.
lh blackhole 198.51.100.8 proto 252 metric 5             # foreign metric
lh blackhole 198.51.100.9 proto static                   # someone's own blackhole
lh 198.51.100.20 dev "$VETH_LH"                          # foreign unicast /32
lh 198.51.100.12 dev "$VETH_LH" metric "$METRIC"         # unicast with our metric
lh blackhole 198.51.100.128/25 proto 252 metric "$METRIC" # not a host route
lh blackhole 203.0.113.5 proto 252 metric "$METRIC"      # protected, by hand
lh blackhole 2001:db8:5::8 proto 252 metric 5            # foreign metric
lh blackhole 2001:db8:1::5 proto 252 metric "$METRIC"    # protected, by hand
lh 2001:db8:5::12 dev "$VETH_LH" metric "$METRIC"        # unicast with our metric

want='198.51.100.10/32
198.51.100.11/32
198.51.100.7/32
2001:db8:5::7/128'
rib() { bgpctl show rib table blackhole | awk '$1 ~ /^\*/ { print $3 }' | sort; }
got_all() { [ "$(rib)" = "$want" ]; }
wait_for 20 got_all || fail "firewall RIB: got
$(rib)
want
$want"
# Give a late foreign route time to show up, then check again: exactly ours.
sleep 3
got_all || fail "firewall RIB changed to: $(rib)"
detail=$(bgpctl show rib table blackhole detail)
n=$(grep -c 'Communities: BLACKHOLE NO_EXPORT' <<<"$detail" || true)
[ "$n" = 4 ] || fail "expected 4 routes tagged BLACKHOLE NO_EXPORT, got $n:
$detail"
grep -q "metric $METRIC," <<<"$detail" || fail "MED is not the kernel metric"
loc=$(bgpctl show rib | awk '$1 ~ /^\*/' | wc -l)
[ "$loc" = 0 ] || fail "routes reached the firewall's Loc-RIB ($loc)"
ok "firewall RIB 'blackhole' holds exactly our 4 routes, tagged BLACKHOLE NO_EXPORT; Loc-RIB empty"

# A withdrawal reaches the firewall.
ip -n "$NS_LH" route del blackhole 198.51.100.7 proto 252 metric "$METRIC"
want='198.51.100.10/32
198.51.100.11/32
2001:db8:5::7/128'
wait_for 10 got_all || fail "withdrawal: RIB is $(rib)"
ok "withdrawal reaches the firewall"

echo "PASS"

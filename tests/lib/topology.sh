# shellcheck shell=bash
# The f2b-route lab topology, shared by tests/e2e.sh, lab/run and
# bench/pipeline (sourced, never run), so that the three cannot drift apart.
#
#   attacker 203.0.113.2/25, 2001:db8:a::2 ─┐
#   client 203.0.113.130/25, 2001:db8:c::2 ─┤
#                                           firewall (router, AS 64501; OpenBGPD,
#                                             or BIRD / FRR + f2b-route mirror)
#   triton 198.51.100.2/30, 2001:db8:1:1::2 ┤  sshd :2222, rsyslog ──UDP 514──┐
#   log host 198.51.100.6/30, 2001:db8:1:2::6 ┘ ◄────────────────────────────┘
#     rsyslog (imudp) → remote/triton.log → fail2ban [triton] banaction = route
#     → f2b-route → kernel blackhole /32, /128 → FRR zebra+bgpd (AS 64500)
#     → eBGP → firewall's RIB "blackhole"                 (TOPO_FIREWALL=openbgpd)
#     → eBGP → BIRD → kernel table 252 → f2b-route mirror → nft set (=bird)
#     → eBGP → FRR → main table, blackholes → f2b-route mirror → nft set (=frr)
#
# Documentation addresses only (198.51.100.0/24, 203.0.113.0/24,
# 2001:db8::/32); never 192.0.2.0/24, this machine's uplink. The site's own
# prefixes (198.51.100.0/24, 2001:db8:1::/48) are f2b-route's `protect` list.
# Every link is a veth pair created directly inside the namespaces: the host's
# own interfaces, routes and firewall are never touched. Every daemon runs
# with private paths under $TOPO_DIR, is tracked by PID and start time
# (tests/lib/common.sh, which this file sources) and is stopped by PID in
# topo_down, which the caller runs from an EXIT trap.
#
# Usage:
#   TOPO_TAG=f2be                                # 4 characters, names things
#   source tests/lib/topology.sh
#   TOPO_BIN=$(f2b_route_bin)                    # copied into $TOPO_DIR
#   trap topo_down EXIT
#   topo_require_tools && topo_init && topo_net_up && topo_configure &&
#     topo_start_all
# Run topo_configure and topo_start_* in the calling shell (not in $(...)):
# they set the variables topo_down needs.
#
# Optional, before topo_init:
#   TOPO_FIREWALL=...     what the firewall runs: openbgpd (the default;
#                         portable OpenBGPD, no pf on Linux, so its RIB is
#                         the witness), bird or frr (the Linux firewall:
#                         `render bird` or `render frr-firewall`, plus
#                         `f2b-route mirror` keeping nftables' set, which
#                         drops the attackers' packets)
#   TOPO_RECIDIVE=1       a second jail [recidive] (stock filter, reading
#                         fail2ban's log, maxretry 1, banaction = route)
#   TOPO_OBGPD_EXTRA=...  global lines added to the rendered OpenBGPD config
#   TOPO_FRR_EXTRA=...    lines inserted into the rendered FRR config
#   TOPO_F2B_EXTRA=...    a jail.d/zz-extra.local for fail2ban
#   TOPO_PLUGIN=1         the jails ban through the Python action plugin
#                         action.d/f2b-route.py (f2b-route serve) instead of
#                         banaction = route: a jail.d/zz-plugin.local sets
#                         their `action` to f2b-route.py[...] with the lab's
#                         binary, config and state dir
#   topo_hook_fail2ban    a function, called with fail2ban's private config
#                         dir before its config test
#   TOPO_KEEP=1           keep $TOPO_DIR after topo_down
#   TOPO_INSTALLED=1      the installed Debian package's files instead of the
#                         repository's (tests/package.sh): TOPO_BIN must be
#                         /usr/sbin/f2b-route, run in place (not copied),
#                         fail2ban gets /etc/fail2ban/action.d/f2b-route.conf
#                         and route.local and jail.d/triton.conf from
#                         /usr/share/doc/f2b-route/examples/, each checked
#                         to belong to the package f2b-route

# shellcheck source=tests/lib/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

# --- addresses ------------------------------------------------------------
TOPO_AS_LH=64500
TOPO_AS_FW=64501
TOPO_FW_TR4=198.51.100.1   TOPO_TR4=198.51.100.2
TOPO_FW_TR6=2001:db8:1:1::1 TOPO_TR6=2001:db8:1:1::2
TOPO_FW_LH4=198.51.100.5   TOPO_LH4=198.51.100.6
TOPO_FW_LH6=2001:db8:1:2::5 TOPO_LH6=2001:db8:1:2::6
TOPO_FW_AT4=203.0.113.1    TOPO_AT4=203.0.113.2
TOPO_FW_AT6=2001:db8:a::1  TOPO_AT6=2001:db8:a::2
TOPO_FW_CL4=203.0.113.129  TOPO_CL4=203.0.113.130
TOPO_FW_CL6=2001:db8:c::1  TOPO_CL6=2001:db8:c::2
TOPO_PROTECT4=198.51.100.0/24
TOPO_PROTECT6=2001:db8:1::/48
TOPO_SSH_PORT=2222
# FRR on the firewall: the discard next hop its blackholes resolve through
# (outside the protected prefixes, used by no host; inside the attacker's
# connected /25 on purpose, so that without its blackhole route it resolves
# there and the fail-open test sees forwarding routes); IPv6 keeps render's
# 100::1.
TOPO_FW_DISCARD4=203.0.113.126
# What mirror reads: BIRD's table of its own, or FRR's main table.
TOPO_MIRROR_BIRD=(--table 252 --protocol 12)
TOPO_MIRROR_FRR=(--table main --protocol 186)

# --- where the shipped files come from -------------------------------------

TOPO_INSTALLED_BIN=/usr/sbin/f2b-route
TOPO_INSTALLED_EXAMPLES=/usr/share/doc/f2b-route/examples

# Sets TOPO_SRC_ACTION (action.d/f2b-route.conf), TOPO_SRC_PLUGIN
# (action.d/f2b-route.py), TOPO_SRC_ROUTE_LOCAL (action.d/route.local) and
# TOPO_SRC_JAIL (jail.d/triton.conf): the repository's files, or with
# TOPO_INSTALLED the installed package's.
topo_sources() {
	if [ -n "${TOPO_INSTALLED:-}" ]; then
		TOPO_SRC_PLUGIN=/etc/fail2ban/action.d/f2b-route.py
		TOPO_SRC_ACTION=/etc/fail2ban/action.d/f2b-route.conf
		TOPO_SRC_ROUTE_LOCAL=$TOPO_INSTALLED_EXAMPLES/action.d/route.local
		TOPO_SRC_JAIL=$TOPO_INSTALLED_EXAMPLES/jail.d/triton.conf
	else
		TOPO_SRC_PLUGIN=$REPO/action.d/f2b-route.py
		TOPO_SRC_ACTION=$REPO/action.d/f2b-route.conf
		TOPO_SRC_ROUTE_LOCAL=$REPO/action.d/route.local
		TOPO_SRC_JAIL=$REPO/jail.d/triton.conf
	fi
}

# One line per shipped file the lab uses: "what: path".
topo_sources_evidence() {
	topo_sources
	printf 'f2b-route binary: %s\n' "$TOPO_BIN"
	printf 'fail2ban action: %s\n' "$TOPO_SRC_ACTION"
	[ -z "${TOPO_PLUGIN:-}" ] || printf 'fail2ban action plugin: %s\n' "$TOPO_SRC_PLUGIN"
	printf 'route.local: %s\n' "$TOPO_SRC_ROUTE_LOCAL"
	printf 'jail: %s\n' "$TOPO_SRC_JAIL"
}

# With TOPO_INSTALLED: the binary is the installed one and every file comes
# from the package f2b-route (dpkg -S), so that a stale copy elsewhere
# cannot stand in for it.
_topo_check_installed() {
	local f owner rc=0
	[ -n "${TOPO_INSTALLED:-}" ] || return 0
	if [ "${TOPO_BIN:-}" != "$TOPO_INSTALLED_BIN" ]; then
		echo "topology: TOPO_INSTALLED=1 tests the installed binary $TOPO_INSTALLED_BIN, not '${TOPO_BIN:-}' (F2B_ROUTE=$TOPO_INSTALLED_BIN)" >&2
		rc=1
	fi
	local files=("$TOPO_INSTALLED_BIN" "$TOPO_SRC_ACTION" "$TOPO_SRC_ROUTE_LOCAL" "$TOPO_SRC_JAIL")
	[ -z "${TOPO_PLUGIN:-}" ] || files+=("$TOPO_SRC_PLUGIN")
	for f in "${files[@]}"; do
		owner=$(dpkg-query -S "$f" 2>/dev/null | sed -n 's/: .*//p')
		if [ "$owner" != f2b-route ]; then
			echo "topology: TOPO_INSTALLED=1: $f is not a file of the installed package f2b-route (dpkg -S: '${owner:-none}')" >&2
			rc=1
		fi
	done
	return "$rc"
}

# --- small helpers --------------------------------------------------------

# The Debian packages providing what the topology runs (for install_packages).
TOPO_PACKAGES=(iproute2 util-linux procps openssh-server openssh-client rsyslog fail2ban frr openbgpd jq python3-pyinotify
	bird2 nftables)

# Events, as written by the watchers: "EPOCH TAG TEXT" lines. Prints the
# time of the first line of FILE after line FROM with TAG whose text
# contains PATTERN (fixed string); waits up to TIMEOUT seconds for it.
# With NTH, the time of the NTH such line.
topo_event_time() { # file from tag pattern timeout [nth]
	local file=$1 from=$2 tag=$3 pattern=$4 timeout=${5:-10} nth=${6:-1} t
	_topo_event() {
		t=$(tail -n "+$((from + 1))" "$file" | awk -v tag="$tag" -v pat="$pattern" -v nth="$nth" \
			'$2 == tag && index($0, pat) && ++n == nth { print $1; exit }')
		[ -n "$t" ]
	}
	wait_for "$timeout" _topo_event || return 1
	echo "$t"
}
topo_lines() { wc -l <"$1"; }

# Prints the missing tools, one per line; returns 1 if any.
topo_missing_tools() {
	local missing=0
	missing_commands ip unshare mount mknod sysctl awk jq ssh ssh-keygen /usr/sbin/sshd /usr/sbin/rsyslogd \
		fail2ban-server fail2ban-client /usr/lib/frr/zebra /usr/lib/frr/bgpd /usr/lib/frr/staticd vtysh bgpd bgpctl \
		bird birdc nft || missing=1
	getent passwd frr >/dev/null || { echo "user frr (package frr)"; missing=1; }
	return "$missing"
}

topo_require_tools() {
	local missing
	if [ "$(id -u)" != 0 ]; then
		echo "topology: must run as root (network namespaces, daemons)" >&2
		return 1
	fi
	if ! missing=$(topo_missing_tools); then
		echo "topology: missing tools: ${missing//$'\n'/ } (Debian packages: ${TOPO_PACKAGES[*]})" >&2
		return 1
	fi
	if [ ! -x "${TOPO_BIN:-}" ]; then
		echo "topology: no f2b-route binary at '${TOPO_BIN:-}' (cargo build --release --locked)" >&2
		return 1
	fi
	topo_sources
	_topo_check_installed
}

# --- set-up ---------------------------------------------------------------

topo_init() {
	: "${TOPO_TAG:=f2bt}"
	: "${TOPO_FIREWALL:=openbgpd}"
	case $TOPO_FIREWALL in
	openbgpd | bird | frr) ;;
	*) echo "topology: TOPO_FIREWALL=$TOPO_FIREWALL: use openbgpd, bird or frr" >&2; return 1 ;;
	esac
	TOPO_ID=$$
	local p=$TOPO_TAG-$TOPO_ID
	TOPO_NS_AT=$p-attacker TOPO_NS_CL=$p-client TOPO_NS_FW=$p-firewall
	TOPO_NS_TR=$p-triton TOPO_NS_LH=$p-loghost
	TOPO_ALL_NS=("$TOPO_NS_AT" "$TOPO_NS_CL" "$TOPO_NS_FW" "$TOPO_NS_TR" "$TOPO_NS_LH")
	# Interface names: at most 15 characters.
	TOPO_IF=${TOPO_TAG:0:4}$TOPO_ID
	TOPO_DIR=$(mktemp -d "/tmp/$TOPO_TAG.XXXXXX")
	chmod 755 "$TOPO_DIR"
	TOPO_TR=$TOPO_DIR/triton TOPO_LH=$TOPO_DIR/loghost TOPO_FW=$TOPO_DIR/firewall
	TOPO_F2B=$TOPO_LH/fail2ban TOPO_FRR=$TOPO_LH/frr
	TOPO_REMOTE_LOG=$TOPO_LH/remote/triton.log
	TOPO_F2B_LOG=$TOPO_F2B/fail2ban.log
	TOPO_TOML=$TOPO_LH/f2b-route.toml
	TOPO_STATE=$TOPO_LH/f2b-route-state
	TOPO_OBGPD_SOCK=$TOPO_FW/bgpd.sock
	TOPO_BIRD_SOCK=$TOPO_FW/bird.ctl TOPO_FW_FRR=$TOPO_FW/frr
	TOPO_FW_TOML=$TOPO_FW/f2b-route.toml
	TOPO_EVENTS=$TOPO_DIR/events
	topo_sources
	# A private copy of the binary: a rebuild during the run changes nothing.
	# The installed one runs in place, as fail2ban runs it on a log host.
	if [ -z "${TOPO_INSTALLED:-}" ]; then
		cp "$TOPO_BIN" "$TOPO_DIR/f2b-route"
		TOPO_BIN=$TOPO_DIR/f2b-route
	fi
	mkdir -p "$TOPO_TR" "$TOPO_LH/remote" "$TOPO_FW" "$TOPO_F2B" "$TOPO_FRR" "$TOPO_STATE" "$TOPO_FW_FRR"
	: >"$TOPO_EVENTS"
	TOPO_MADE_RUN_OPENBGPD=
	TOPO_UP=1
}

# A veth pair between two namespaces, created inside them.
_topo_link() { # ns_a if_a ns_b if_b
	ip -n "$1" link add "$2" type veth peer name "$4" netns "$3"
	ip -n "$1" link set "$2" up
	ip -n "$3" link set "$4" up
}
_topo_addr() { # ns if addr/len...
	local ns=$1 dev=$2 a; shift 2
	for a; do
		if [[ $a == *:* ]]; then
			ip -n "$ns" addr add "$a" dev "$dev" nodad
		else
			ip -n "$ns" addr add "$a" dev "$dev"
		fi
	done
}

topo_net_up() {
	local ns i=$TOPO_IF
	for ns in "${TOPO_ALL_NS[@]}"; do
		ip netns add "$ns"
		ip -n "$ns" link set lo up
	done
	_topo_link "$TOPO_NS_FW" "${i}ft" "$TOPO_NS_TR" "${i}tf"
	_topo_link "$TOPO_NS_FW" "${i}fl" "$TOPO_NS_LH" "${i}lf"
	_topo_link "$TOPO_NS_FW" "${i}fa" "$TOPO_NS_AT" "${i}af"
	_topo_link "$TOPO_NS_FW" "${i}fc" "$TOPO_NS_CL" "${i}cf"
	_topo_addr "$TOPO_NS_FW" "${i}ft" "$TOPO_FW_TR4/30" "$TOPO_FW_TR6/64"
	_topo_addr "$TOPO_NS_TR" "${i}tf" "$TOPO_TR4/30" "$TOPO_TR6/64"
	_topo_addr "$TOPO_NS_FW" "${i}fl" "$TOPO_FW_LH4/30" "$TOPO_FW_LH6/64"
	_topo_addr "$TOPO_NS_LH" "${i}lf" "$TOPO_LH4/30" "$TOPO_LH6/64"
	_topo_addr "$TOPO_NS_FW" "${i}fa" "$TOPO_FW_AT4/25" "$TOPO_FW_AT6/64"
	_topo_addr "$TOPO_NS_AT" "${i}af" "$TOPO_AT4/25" "$TOPO_AT6/64"
	_topo_addr "$TOPO_NS_FW" "${i}fc" "$TOPO_FW_CL4/25" "$TOPO_FW_CL6/64"
	_topo_addr "$TOPO_NS_CL" "${i}cf" "$TOPO_CL4/25" "$TOPO_CL6/64"
	ip -n "$TOPO_NS_TR" route add default via "$TOPO_FW_TR4"
	ip -n "$TOPO_NS_TR" -6 route add default via "$TOPO_FW_TR6"
	ip -n "$TOPO_NS_LH" route add default via "$TOPO_FW_LH4"
	ip -n "$TOPO_NS_LH" -6 route add default via "$TOPO_FW_LH6"
	ip -n "$TOPO_NS_AT" route add default via "$TOPO_FW_AT4"
	ip -n "$TOPO_NS_AT" -6 route add default via "$TOPO_FW_AT6"
	ip -n "$TOPO_NS_CL" route add default via "$TOPO_FW_CL4"
	ip -n "$TOPO_NS_CL" -6 route add default via "$TOPO_FW_CL6"
	ip netns exec "$TOPO_NS_FW" sysctl -qw net.ipv4.ip_forward=1 net.ipv6.conf.all.forwarding=1
}

# Extra source addresses for the attacker (bench: many attackers).
topo_attacker_addrs() { # addr...
	local a
	for a; do _topo_addr "$TOPO_NS_AT" "${TOPO_IF}af" "$a/25"; done
}

# --- configuration --------------------------------------------------------

topo_configure() {
	_topo_conf_f2b_route && _topo_conf_triton && _topo_conf_loghost_syslog &&
		_topo_conf_fail2ban && _topo_conf_frr && "_topo_conf_fw_$TOPO_FIREWALL"
}

_topo_conf_f2b_route() {
	cat >"$TOPO_TOML" <<EOF
# f2b-route config of the lab's log host: the site's own prefixes and the
# firewall (BGP peer) are never blackholed.
protect = ["$TOPO_PROTECT4", "$TOPO_PROTECT6"]
peers = ["$TOPO_FW_LH4"]
state_dir = "$TOPO_STATE"
EOF
	TOPO_F2B_ROUTE=("$TOPO_BIN" --config "$TOPO_TOML" --state-dir "$TOPO_STATE")
}

_topo_conf_triton() {
	ssh-keygen -q -t ed25519 -N '' -f "$TOPO_TR/hostkey" -C triton
	cat >"$TOPO_TR/sshd_config" <<EOF
Port $TOPO_SSH_PORT
HostKey $TOPO_TR/hostkey
PidFile $TOPO_TR/sshd.pid
UsePAM no
PasswordAuthentication yes
KbdInteractiveAuthentication no
SyslogFacility AUTH
LogLevel INFO
EOF
	mkdir -p "$TOPO_TR/spool"
	cat >"$TOPO_TR/rsyslog.conf" <<EOF
# triton: sshd's /dev/log lines, forwarded over UDP to the log host.
global(localHostName="triton" workDirectory="$TOPO_TR/spool")
module(load="imuxsock" SysSock.Name="/dev/log" SysSock.RateLimit.Interval="0")
*.* action(type="omfwd" target="$TOPO_LH4" port="514" protocol="udp"
           template="RSYSLOG_TraditionalForwardFormat")
EOF
	# Runs in triton's own mount and UTS namespaces: tmpfs over /run,
	# /var/log (sshd's btmp) and /dev (rsyslog's /dev/log), then rsyslogd,
	# then sshd in its place (same PID).
	cat >"$TOPO_TR/start" <<EOF
set -e
mount -t tmpfs -o mode=755 triton-run /run
mount -t tmpfs -o mode=755 triton-log /var/log
mount -t tmpfs -o mode=755 triton-dev /dev
mknod -m 666 /dev/null c 1 3
mknod -m 666 /dev/zero c 1 5
mknod -m 666 /dev/random c 1 8
mknod -m 666 /dev/urandom c 1 9
mknod -m 666 /dev/tty c 5 0
mkdir /dev/pts
mount -t devpts -o newinstance,ptmxmode=0666 devpts /dev/pts
ln -s pts/ptmx /dev/ptmx
mkdir -m 755 /run/sshd
hostname triton
/usr/sbin/sshd -t -f $TOPO_TR/sshd_config
/usr/sbin/rsyslogd -n -f $TOPO_TR/rsyslog.conf -i $TOPO_TR/rsyslog.pid >>$TOPO_TR/rsyslog.out 2>&1 &
for i in \$(seq 100); do [ -S /dev/log ] && break; sleep 0.05; done
[ -S /dev/log ] || { echo "triton: rsyslogd made no /dev/log" >&2; exit 1; }
exec /usr/sbin/sshd -D -f $TOPO_TR/sshd_config
EOF
}

_topo_conf_loghost_syslog() {
	mkdir -p "$TOPO_LH/spool"
	cat >"$TOPO_LH/rsyslog.conf" <<EOF
# Log host: UDP syslog only (no imuxsock, no imklog), one file per sender.
global(workDirectory="$TOPO_LH/spool")
module(load="imudp")
template(name="perhost" type="string" string="$TOPO_LH/remote/%HOSTNAME%.log")
ruleset(name="remote") {
	action(type="omfile" dynaFile="perhost" template="RSYSLOG_TraditionalFileFormat")
}
input(type="imudp" address="$TOPO_LH4" port="514" ruleset="remote")
EOF
	# fail2ban exits if its log does not exist yet.
	: >"$TOPO_REMOTE_LOG"
}

_topo_conf_fail2ban() {
	local c=$TOPO_F2B/etc
	cp -a /etc/fail2ban "$c"
	# Hermetic: none of this machine's own jails or overrides (Debian's
	# jail.d/defaults-debian.conf enables [sshd]).
	rm -rf "$c"/jail.d/* "$c"/fail2ban.d/*
	find "$c" -name '*.local' -delete
	cp "$TOPO_SRC_ROUTE_LOCAL" "$c/action.d/route.local"
	cp "$TOPO_SRC_ACTION" "$c/action.d/f2b-route.conf"
	# The jail as shipped (DESIGN.md's, verbatim), only logpath adjusted.
	sed "s|^logpath  = /var/log/remote/triton.log$|logpath  = $TOPO_REMOTE_LOG|" \
		"$TOPO_SRC_JAIL" >"$c/jail.d/triton.conf"
	grep -qxF "logpath  = $TOPO_REMOTE_LOG" "$c/jail.d/triton.conf" || {
		echo "topology: $TOPO_SRC_JAIL has no 'logpath  = /var/log/remote/triton.log' line" >&2
		return 1
	}
	# f2b-route with this lab's config, through route.local's f2b_route
	# option (a drop-in read after route.local), and fail2ban's private
	# database, which actionstart reads (fail2ban does not tell actions).
	mkdir -p "$c/action.d/route.d"
	cat >"$c/action.d/route.d/lab.local" <<EOF
[Init]
f2b_route = ${TOPO_F2B_ROUTE[*]}
dbfile = $TOPO_F2B/fail2ban.sqlite3
EOF
	if [ -n "${TOPO_RECIDIVE:-}" ]; then
		cat >"$c/jail.d/recidive.conf" <<EOF
[recidive]
enabled   = true
logpath   = $TOPO_F2B_LOG
banaction = route
maxretry  = 1
EOF
	fi
	if [ -n "${TOPO_PLUGIN:-}" ]; then
		cp "$TOPO_SRC_PLUGIN" "$c/action.d/f2b-route.py"
		TOPO_PLUGIN_ACTION="f2b-route.py[f2b_route=\"$TOPO_BIN\", config=\"$TOPO_TOML\", state_dir=\"$TOPO_STATE\"]"
		{
			printf '# The lab: the jails ban through the plugin (tests/lib/topology.sh, TOPO_PLUGIN).\n'
			printf '[triton]\naction = %s\n' "$TOPO_PLUGIN_ACTION"
			[ -z "${TOPO_RECIDIVE:-}" ] || printf '\n[recidive]\naction = %s\n' "$TOPO_PLUGIN_ACTION"
		} >"$c/jail.d/zz-plugin.local"
	fi
	if [ -n "${TOPO_F2B_EXTRA:-}" ]; then
		printf '%s\n' "$TOPO_F2B_EXTRA" >"$c/jail.d/zz-extra.local"
	fi
	if declare -F topo_hook_fail2ban >/dev/null; then topo_hook_fail2ban "$c" || return 1; fi
	cat >"$c/fail2ban.local" <<EOF
[Definition]
loglevel = INFO
logtarget = $TOPO_F2B_LOG
socket = $TOPO_F2B/fail2ban.sock
pidfile = $TOPO_F2B/fail2ban.pid
dbfile = $TOPO_F2B/fail2ban.sqlite3
allowipv6 = auto
EOF
	TOPO_F2B_CONF=$c
	: >"$TOPO_F2B_LOG"
	fail2ban-client -c "$c" -t >"$TOPO_F2B/config-test.out" 2>&1 || {
		cat "$TOPO_F2B/config-test.out" >&2
		return 1
	}
}

_topo_conf_frr() {
	"$TOPO_BIN" --config "$TOPO_TOML" render frr --local-as "$TOPO_AS_LH" --peer-as "$TOPO_AS_FW" \
		--peer "$TOPO_FW_LH4" --router-id "$TOPO_LH4" >"$TOPO_FRR/frr.rendered"
	if [ -n "${TOPO_FRR_EXTRA:-}" ]; then
		# Before `router bgp`, where route-map entries belong.
		awk -v extra="$TOPO_FRR_EXTRA" '/^router bgp / && !done { print extra; done = 1 } { print }' \
			"$TOPO_FRR/frr.rendered" >"$TOPO_FRR/bgpd.conf"
	else
		cp "$TOPO_FRR/frr.rendered" "$TOPO_FRR/bgpd.conf"
	fi
	# Logs to private files only (--log), not to the host's syslog.
	sed -i '/^log syslog/d' "$TOPO_FRR/bgpd.conf"
	printf 'hostname loghost\n' >"$TOPO_FRR/zebra.conf"
	chown -R frr:frr "$TOPO_FRR"
}

_topo_conf_fw_openbgpd() {
	"$TOPO_BIN" --config "$TOPO_TOML" render openbgpd --local-as "$TOPO_AS_FW" --peer-as "$TOPO_AS_LH" \
		--peer "$TOPO_LH4" --router-id "$TOPO_FW_LH4" --no-pftable >"$TOPO_FW/bgpd.rendered"
	"$TOPO_BIN" --config "$TOPO_TOML" render openbgpd --local-as "$TOPO_AS_FW" --peer-as "$TOPO_AS_LH" \
		--peer "$TOPO_LH4" --router-id "$TOPO_FW_LH4" >"$TOPO_FW/bgpd-full.rendered"
	# Global settings first: the control socket, then the extra lines.
	{
		printf 'socket "%s"\n' "$TOPO_OBGPD_SOCK"
		[ -z "${TOPO_OBGPD_EXTRA:-}" ] || printf '%s\n' "$TOPO_OBGPD_EXTRA"
		cat "$TOPO_FW/bgpd.rendered"
	} >"$TOPO_FW/bgpd.conf"
	bgpd -n -f "$TOPO_FW/bgpd.conf" >"$TOPO_FW/check.out" 2>&1 || {
		cat "$TOPO_FW/check.out" >&2
		return 1
	}
}

# BIRD on the firewall, as `render bird` makes it, logging to a file; the
# mirror with no table or protocol option (its defaults are BIRD's).
_topo_conf_fw_bird() {
	"$TOPO_BIN" --config "$TOPO_TOML" render bird --local-as "$TOPO_AS_FW" --peer-as "$TOPO_AS_LH" \
		--peer "$TOPO_LH4" --router-id "$TOPO_FW_LH4" >"$TOPO_FW/bird.rendered" || return 1
	{
		printf 'log "%s" { info, remote, warning, error, auth, fatal, bug };\n' "$TOPO_FW/bird.log"
		cat "$TOPO_FW/bird.rendered"
	} >"$TOPO_FW/bird.conf"
	bird -p -c "$TOPO_FW/bird.conf" >"$TOPO_FW/check.out" 2>&1 || {
		cat "$TOPO_FW/check.out" >&2
		return 1
	}
	_topo_conf_mirror
	TOPO_MIRROR_ARGS=()
}

# FRR on the firewall, as `render frr-firewall` makes it (zebra, staticd,
# bgpd; the config applied with vtysh once they run).
_topo_conf_fw_frr() {
	"$TOPO_BIN" --config "$TOPO_TOML" render frr-firewall --local-as "$TOPO_AS_FW" --peer-as "$TOPO_AS_LH" \
		--peer "$TOPO_LH4" --router-id "$TOPO_FW_LH4" --discard "$TOPO_FW_DISCARD4" \
		>"$TOPO_FW_FRR/frr.rendered" || return 1
	# Logs to private files only, not to the host's syslog.
	grep -v '^log syslog' "$TOPO_FW_FRR/frr.rendered" >"$TOPO_FW_FRR/frr.conf"
	local d
	for d in zebra staticd bgpd; do printf 'hostname firewall\n' >"$TOPO_FW_FRR/$d.conf"; done
	chown -R frr:frr "$TOPO_FW_FRR"
	_topo_conf_mirror
	TOPO_MIRROR_ARGS=("${TOPO_MIRROR_FRR[@]}")
}

# The firewall's f2b-route config: nothing but a state dir of its own.
_topo_conf_mirror() {
	mkdir -p "$TOPO_FW/state"
	printf 'state_dir = "%s"\n' "$TOPO_FW/state" >"$TOPO_FW_TOML"
}

# --- daemons --------------------------------------------------------------
# Each is tracked by tests/lib/common.sh (daemon_start, daemon_track) under
# its name, and stopped by PID in topo_down.

# The firewall's BGP daemon (TOPO_FIREWALL), and with BIRD or FRR the mirror.
topo_start_firewall() {
	case $TOPO_FIREWALL in
	openbgpd) _topo_start_fw_openbgpd ;;
	bird) _topo_start_fw_bird && topo_start_mirror ;;
	frr) _topo_start_fw_frr && topo_start_mirror ;;
	esac
}

_topo_start_fw_bird() {
	daemon_start bird "$TOPO_FW/bird.out" ip netns exec "$TOPO_NS_FW" \
		bird -f -c "$TOPO_FW/bird.conf" -s "$TOPO_BIRD_SOCK" -P "$TOPO_FW/bird.pid" || return 1
	wait_for 10 topo_birdc show status || { echo "topology: BIRD does not answer: $(cat "$TOPO_FW/bird.out")" >&2; return 1; }
}

# zebra, staticd and bgpd with private paths (zebra's names: zebra-fw...),
# then the rendered config applied through vtysh, as an operator would.
_topo_start_fw_frr() {
	local d=$TOPO_FW_FRR daemon
	local common=(-z "$d/zserv.api" --vty_socket "$d" -P 0 -u frr -g frr)
	ip netns exec "$TOPO_NS_FW" /usr/lib/frr/zebra -d -f "$d/zebra.conf" -i "$d/zebra.pid" \
		"${common[@]}" -s 90000000 --log "file:$d/zebra.log" >>"$d/stderr" 2>&1
	daemon_track zebra-fw "$d/zebra.pid" || return 1
	wait_for 10 test -S "$d/zserv.api" || { echo "topology: firewall zebra did not start" >&2; return 1; }
	for daemon in staticd bgpd; do
		ip netns exec "$TOPO_NS_FW" "/usr/lib/frr/$daemon" -d -f "$d/$daemon.conf" -i "$d/$daemon.pid" \
			"${common[@]}" --log "file:$d/$daemon.log" >>"$d/stderr" 2>&1
		daemon_track "$daemon-fw" "$d/$daemon.pid" || return 1
	done
	wait_for 10 topo_fw_vtysh -c 'show bgp summary' || { echo "topology: firewall bgpd does not answer" >&2; return 1; }
	topo_fw_vtysh -f "$d/frr.conf" >"$d/vtysh.out" 2>&1 || {
		echo "topology: vtysh -f frr-firewall.conf failed: $(cat "$d/vtysh.out")" >&2
		return 1
	}
}

# f2b-route mirror in the firewall (stopped by PID like the daemons).
topo_start_mirror() {
	daemon_start mirror "$TOPO_FW/mirror.out" ip netns exec "$TOPO_NS_FW" \
		"$TOPO_BIN" --config "$TOPO_FW_TOML" mirror "${TOPO_MIRROR_ARGS[@]}" || return 1
	wait_for 10 topo_fw_set_exists || { echo "topology: mirror made no nftables table: $(cat "$TOPO_FW/mirror.out")" >&2; return 1; }
}

_topo_start_fw_openbgpd() {
	if [ ! -d /run/openbgpd ]; then
		mkdir -p /run/openbgpd
		TOPO_MADE_RUN_OPENBGPD=1
	fi
	# Every line of bgpd's log stamped with the time it was written (the
	# stamper is outside bgpd's process tree: bgpd waits for its children).
	{
		ip netns exec "$TOPO_NS_FW" bgpd -d -f "$TOPO_FW/bgpd.conf" 2>&1 &
		echo $! >"$TOPO_FW/bgpd.pid"
		wait
	} | _topo_stamper obgpd >>"$TOPO_FW/bgpd.log" &
	disown $!
	daemon_track openbgpd "$TOPO_FW/bgpd.pid" 5 || return 1
	wait_for 10 test -S "$TOPO_OBGPD_SOCK" || { echo "topology: OpenBGPD did not start" >&2; return 1; }
}

topo_start_frr() {
	local common=(-z "$TOPO_FRR/zserv.api" --vty_socket "$TOPO_FRR" -P 0 -u frr -g frr)
	ip netns exec "$TOPO_NS_LH" /usr/lib/frr/zebra -d -f "$TOPO_FRR/zebra.conf" -i "$TOPO_FRR/zebra.pid" \
		"${common[@]}" -s 90000000 --log "file:$TOPO_FRR/zebra.log" >>"$TOPO_FRR/stderr" 2>&1
	daemon_track zebra "$TOPO_FRR/zebra.pid" || return 1
	wait_for 10 test -S "$TOPO_FRR/zserv.api" || { echo "topology: zebra did not start" >&2; return 1; }
	ip netns exec "$TOPO_NS_LH" /usr/lib/frr/bgpd -d -f "$TOPO_FRR/bgpd.conf" -i "$TOPO_FRR/bgpd.pid" \
		"${common[@]}" --log "file:$TOPO_FRR/bgpd.log" >>"$TOPO_FRR/stderr" 2>&1
	daemon_track bgpd-frr "$TOPO_FRR/bgpd.pid" || return 1
	wait_for 10 topo_vtysh -c 'show bgp summary' || { echo "topology: FRR bgpd does not answer" >&2; return 1; }
}

topo_start_loghost_syslog() {
	daemon_start rsyslog-loghost "$TOPO_LH/rsyslog.out" ip netns exec "$TOPO_NS_LH" \
		/usr/sbin/rsyslogd -n -f "$TOPO_LH/rsyslog.conf" -i "$TOPO_LH/rsyslog.pid" || return 1
	wait_for 10 test -s "$TOPO_LH/rsyslog.pid" || { echo "topology: log host rsyslogd did not start" >&2; return 1; }
}

topo_start_triton() {
	# sshd takes the place of the start script (exec: the same PID).
	daemon_start sshd "$TOPO_TR/start.out" ip netns exec "$TOPO_NS_TR" \
		unshare --mount --uts --propagation private bash "$TOPO_TR/start" || return 1
	wait_for 10 test -s "$TOPO_TR/sshd.pid" || {
		echo "topology: triton's sshd did not start: $(cat "$TOPO_TR/start.out")" >&2
		return 1
	}
	daemon_track rsyslog-triton "$TOPO_TR/rsyslog.pid" || return 1
}

topo_f2b() { fail2ban-client -c "$TOPO_F2B_CONF" "$@"; }

# Starts fail2ban-server in the log host, in the foreground (-f) as a
# background job, with the private config.
topo_start_fail2ban() {
	daemon_start fail2ban "$TOPO_F2B/server.out" ip netns exec "$TOPO_NS_LH" \
		fail2ban-server -c "$TOPO_F2B_CONF" -f -x || return 1
	wait_for 20 topo_f2b ping || { echo "topology: fail2ban-server does not answer" >&2; return 1; }
	# All jails started (actionstart run, bans restored).
	wait_for 20 _topo_f2b_jails_up || { echo "topology: fail2ban jails did not start" >&2; return 1; }
}
_topo_f2b_jails_up() {
	local want got
	want=$(sed -n 's/^\[\([A-Za-z0-9_-]*\)\]$/\1/p' "$TOPO_F2B_CONF"/jail.d/*.conf "$TOPO_F2B_CONF"/jail.d/*.local 2>/dev/null | grep -v -e DEFAULT -e INCLUDES | sort -u)
	got=$(topo_f2b status | sed -n 's/.*Jail list:[[:space:]]*//p' | tr -d ' ' | tr , '\n' | sort -u)
	[ "$want" = "$got" ]
}

# Stops fail2ban: `graceful` (fail2ban-client stop) or `kill9`.
topo_stop_fail2ban() {
	case $1 in
	graceful) topo_f2b stop >/dev/null ;;
	kill9) daemon_signal KILL fail2ban ;;
	esac
	wait_for 20 daemon_gone fail2ban || {
		echo "topology: fail2ban-server $(daemon_pid fail2ban) did not stop" >&2
		return 1
	}
	# The killed server's socket is left behind; a new server started with
	# -x removes it but logs "ERROR Fail2ban seems to be already running".
	# A service manager cleans its runtime directory (RuntimeDirectory=);
	# so do we.
	rm -f "$TOPO_F2B/fail2ban.sock"
}

topo_start_all() {
	topo_start_firewall && topo_start_frr && topo_start_loghost_syslog &&
		topo_start_triton && topo_start_fail2ban
}

topo_vtysh() { ip netns exec "$TOPO_NS_LH" vtysh --vty_socket "$TOPO_FRR" "$@"; }
topo_bgpctl() { bgpctl -s "$TOPO_OBGPD_SOCK" "$@"; }

topo_birdc() { ip netns exec "$TOPO_NS_FW" birdc -s "$TOPO_BIRD_SOCK" "$@"; }
topo_fw_vtysh() { ip netns exec "$TOPO_NS_FW" vtysh --vty_socket "$TOPO_FW_FRR" "$@"; }

# The firewall's session with the log host is up, whatever runs there.
topo_bgp_established() {
	case $TOPO_FIREWALL in
	openbgpd) topo_bgpctl show neighbor "$TOPO_LH4" 2>/dev/null | grep -q 'BGP state = Established' ;;
	bird) topo_birdc show protocols f2b_route_log_host0 2>/dev/null | grep -q 'Established' ;;
	frr)
		topo_fw_vtysh -c "show bgp neighbor $TOPO_LH4 json" 2>/dev/null |
			jq -e --arg n "$TOPO_LH4" '.[$n].bgpState == "Established"' >/dev/null
		;;
	esac
}

# --- watchers: every line of a stream, stamped with the time it was read ---

_topo_stamper() { # tag
	local line
	while IFS= read -r line; do
		printf '%s %s %s\n' "$EPOCHREALTIME" "$1" "$line"
	done
}

# Runs a command in a namespace (or "" for none), every output line stamped
# into $TOPO_EVENTS with tag. The command is tracked and stopped by PID.
topo_watch() { # tag ns cmd...
	local tag=$1 ns=$2; shift 2
	local pf=$TOPO_DIR/watch-$tag.pid
	if [ -n "$ns" ]; then set -- ip netns exec "$ns" "$@"; fi
	{ "$@" 2>&1 & echo $! >"$pf"; wait; } | _topo_stamper "$tag" >>"$TOPO_EVENTS" &
	disown $!
	daemon_track "watch-$tag" "$pf" 5
}

# --- witnesses ------------------------------------------------------------

# f2b-route in the log host, with the lab's config.
topo_f2b_route() { ip netns exec "$TOPO_NS_LH" "${TOPO_F2B_ROUTE[@]}" "$@"; }

# The log host's routes with f2b-route's marker (protocol 252, metric 666),
# one address per line, sorted: the kernel's own view, not f2b-route's.
topo_kernel_routes() {
	{
		ip -n "$TOPO_NS_LH" -j -4 route show proto 252 type "${1:-blackhole}"
		ip -n "$TOPO_NS_LH" -j -6 route show proto 252 type "${1:-blackhole}"
	} | jq -r '.[] | select(.metric == 666) | .dst' | sort
}

# The prefixes in the firewall's RIB "blackhole", one per line, sorted.
topo_rib() {
	topo_bgpctl show rib table blackhole 2>/dev/null | awk '$1 ~ /^\*/ { print $3 }' | sort
}
topo_rib_count() { topo_rib | grep -c . || true; }

# One line per prefix in the firewall's RIB: "PREFIX COMMUNITIES...".
topo_rib_communities() {
	topo_bgpctl show rib table blackhole detail 2>/dev/null | awk '
		/^BGP routing table entry for/ { p = $NF }
		/Communities:/ { sub(/^[[:space:]]*Communities:[[:space:]]*/, ""); print p, $0 }' | sort
}

# --- the unban window across a restart (TOPO_FIREWALL=openbgpd) -------------
# Watched at the firewall's RIB "blackhole" (polled every 50 ms: one line of
# prefixes per poll) and in the log host's kernel (ip monitor route), both
# stamped into $TOPO_EVENTS under TAG, between topo_gap_watch_start TAG and
# topo_gap_watch_stop TAG.

topo_gap_watch_start() { # tag
	cat >"$TOPO_DIR/rib-poll" <<'EOF'
#!/bin/bash
while :; do
	bgpctl -s "$1" show rib table blackhole 2>/dev/null | awk '$1 ~ /^\*/ { print $3 }' | sort | tr '\n' ' '
	echo
	sleep 0.05
done
EOF
	topo_watch "rib-$1" "" bash "$TOPO_DIR/rib-poll" "$TOPO_OBGPD_SOCK" || return 1
	topo_watch "kern-$1" "$TOPO_NS_LH" ip monitor route || return 1
	sleep 1
}
topo_gap_watch_stop() { # tag
	sleep 1
	daemon_stop "watch-rib-$1" 5
	daemon_stop "watch-kern-$1" 5
}
# "polls polls-missing-a-ban seconds-missing" for the RIB polls of TAG:
# a poll that lacks any of the prefixes counts until the next poll.
topo_gap_of() { # tag prefix...
	local tag=$1
	shift
	awk -v tag="rib-$tag" -v want="$*" '
		BEGIN { n = split(want, w, " ") }
		$2 == tag {
			miss = 0
			split("", have)
			for (i = 3; i <= NF; i++) have[$i] = 1
			for (i = 1; i <= n; i++) if (!(w[i] in have)) miss = 1
			if (polls && prev_miss) gap += $1 - prev_t
			if (miss) missed++
			prev_t = $1; prev_miss = miss; polls++
		}
		END { printf "%d %d %.3f\n", polls, missed, gap }' "$TOPO_EVENTS"
}
# The deletions of routes with f2b-route's marker the kernel reported.
topo_kernel_deletions() { awk -v tag="kern-$1" '$2 == tag && $3 == "Deleted" && / metric 666( |$)/' "$TOPO_EVENTS"; }
topo_gap_evidence() { # tag prefix...
	local g
	read -r -a g <<<"$(topo_gap_of "$@")"
	echo "firewall RIB, polled every 50 ms: ${g[0]} polls, ${g[1]} lacking a ban, gap ${g[2]} s"
	echo "log host kernel, ip monitor route: $(topo_kernel_deletions "$1" | wc -l) deletions of marked routes"
	topo_kernel_deletions "$1" | head -n 5
}
# No poll lacked a ban (at least 20 polls) and no marked route was deleted.
topo_no_gap() { # tag prefix...
	local g
	read -r -a g <<<"$(topo_gap_of "$@")"
	[ "${g[0]}" -ge 20 ] && [ "${g[1]}" = 0 ] && [ -z "$(topo_kernel_deletions "$1")" ]
}

# --- the Linux firewall's witnesses (TOPO_FIREWALL bird or frr) ------------

topo_fw_nft() { ip netns exec "$TOPO_NS_FW" nft "$@"; }
topo_fw_set_exists() { topo_fw_nft list set inet f2b-route ban6 >/dev/null 2>&1; }
# The addresses in the mirror's nftables sets, sorted, one per line.
topo_fw_set() {
	local set
	for set in ban4 ban6; do
		topo_fw_nft -j list set inet f2b-route "$set" | jq -r '.nftables[].set.elem // [] | .[]'
	done | sort
}
topo_fw_set_count() { topo_fw_set | grep -c . || true; }
# The firewall kernel's host routes the mirror reads (the BGP daemon's
# blackholes), addresses sorted, one per line.
topo_fw_routes() {
	local args=("${TOPO_MIRROR_BIRD[@]}")
	[ "$TOPO_FIREWALL" = frr ] && args=("${TOPO_MIRROR_FRR[@]}")
	{
		ip -n "$TOPO_NS_FW" -j -4 route show "${args[@]/--/}" type blackhole
		ip -n "$TOPO_NS_FW" -j -6 route show "${args[@]/--/}" type blackhole
	} | jq -r '.[] | .dst | sub("/(32|128)$"; "")' | sort
}
# Packets the mirror's rules dropped (both families).
topo_fw_dropped() {
	topo_fw_nft -j list chain inet f2b-route pre | jq '[.nftables[].rule.expr // [] | .[] | .counter.packets // empty] | add // 0'
}

# A witness on triton: an nft counter of the TCP SYNs to the SSH port that
# reach it, per source address.
topo_syn_witness() { # address...
	local a fam
	{
		echo "table inet f2b-witness {"
		echo "	chain input { type filter hook input priority 0; policy accept;"
		for a; do
			fam=ip; [[ $a == *:* ]] && fam=ip6
			echo "		$fam saddr $a tcp dport $TOPO_SSH_PORT tcp flags & (syn | ack) == syn counter"
		done
		echo "	}"
		echo "}"
	} | ip netns exec "$TOPO_NS_TR" nft -f -
}
# The SYNs from ADDRESS that reached triton.
topo_syns() { # address
	ip netns exec "$TOPO_NS_TR" nft -j list chain inet f2b-witness input |
		jq --arg a "$1" '[.nftables[].rule // empty | select(.expr[0].match.right == $a) | .expr[] | .counter.packets // empty] | add // 0'
}
# Does a TCP connection from namespace NS to triton's SSH port open within
# 2 s? (The firewall drops a banned source's SYN: the connect times out.)
topo_tcp_connects() { # ns address
	local dst=$TOPO_TR4
	[[ $2 == *:* ]] && dst=$TOPO_TR6
	ip netns exec "$1" timeout 2 bash -c "exec 3<>/dev/tcp/$dst/$TOPO_SSH_PORT" 2>/dev/null
}

# Every address banned by any jail, sorted, one per line.
topo_banned() {
	local j
	for j in $(topo_f2b status | sed -n 's/.*Jail list:[[:space:]]*//p' | tr ',' ' '); do
		topo_f2b get "$j" banned | tr -d "[]',\"" | tr ' ' '\n'
	done | grep . | sort -u
}

# Adds the /32 or /128 suffix: 203.0.113.2 -> 203.0.113.2/32.
topo_prefix() { if [[ $1 == *:* ]]; then echo "$1/128"; else echo "$1/32"; fi; }

# One failed login from the attacker (or $2 namespace) from source $1, as an
# invalid user with BatchMode (sshd[mode=aggressive] counts 2 failures).
topo_failed_login() { # src [ns]
	local src=$1 ns=${2:-$TOPO_NS_AT} dst=$TOPO_TR4
	[[ $src == *:* ]] && dst=$TOPO_TR6
	ip netns exec "$ns" ssh -F /dev/null -o BatchMode=yes -o StrictHostKeyChecking=no \
		-o UserKnownHostsFile=/dev/null -o IdentitiesOnly=yes -o IdentityFile=none \
		-o ConnectTimeout=5 -o LogLevel=ERROR -b "$src" -p "$TOPO_SSH_PORT" "invaliduser@$dst" true \
		>/dev/null 2>&1
	# ssh exits 255 on the refused login; anything else is unexpected.
	[ $? = 255 ]
}

# The SSH banner, as seen from a namespace and source address.
topo_ssh_banner() { # ns src
	local dst=$TOPO_TR4
	[[ $2 == *:* ]] && dst=$TOPO_TR6
	ip netns exec "$1" timeout 5 bash -c "exec 3<>/dev/tcp/$dst/$TOPO_SSH_PORT && head -n 1 <&3" 2>/dev/null |
		tr -d '\r'
}

# --- tear-down ------------------------------------------------------------

topo_down() {
	[ -n "${TOPO_UP:-}" ] || return 0
	TOPO_UP=
	# Every daemon by PID (and start time: a PID the kernel has reused since
	# is left alone), the last started first.
	daemon_stop_all 10
	# Anything still in our namespaces (sshd's children, FRR helpers...).
	local ns pid
	for ns in "${TOPO_ALL_NS[@]}"; do
		while read -r pid; do kill -KILL "$pid" 2>/dev/null; done < <(ip netns pids "$ns" 2>/dev/null)
	done
	for ns in "${TOPO_ALL_NS[@]}"; do
		ip netns del "$ns" 2>/dev/null
	done
	[ -z "$TOPO_MADE_RUN_OPENBGPD" ] || rmdir /run/openbgpd 2>/dev/null
	if [ -n "${TOPO_KEEP:-}" ]; then
		echo "topology: kept $TOPO_DIR" >&2
	else
		rm -rf "$TOPO_DIR"
	fi
	return 0
}

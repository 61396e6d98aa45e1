# shellcheck shell=bash
# The few things every shell script of f2b-route needs, in one place: sourced
# (never run) by tests/run, tests/e2e.sh, tests/render_daemons.sh, bench/cli,
# bench/pipeline, lab/run and tests/lib/topology.sh.
#
#   REPO                       the repository's top directory
#   f2b_route_bin              the f2b-route binary: $F2B_ROUTE, else the
#                              release build of this repository
#   missing_packages PKG...    the Debian packages among PKG not installed
#   install_packages PKG...    installs those, starting no service
#   missing_commands CMD...    the commands among CMD not found
#   pids_of_exe PATH...        the processes running one of these executables
#   wait_for SECONDS CMD...    polls until CMD succeeds, or gives up
#   daemon_start NAME LOG CMD...  starts CMD in the background, tracked by PID
#   daemon_track NAME PIDFILE [SECONDS]  tracks a PID another process wrote
#   daemon_signal SIGNAL NAME  signals a tracked daemon, if it still is ours
#   daemon_stop NAME           stops one (TERM, then KILL), by PID
#   daemon_stop_all            stops every tracked daemon, last started first
#   daemon_running NAME, daemon_pid NAME, daemon_left, process_gone PID
#
# A daemon is known by its PID and the start time the kernel gives that
# process (/proc/PID/stat): together they name one process for as long as
# the system runs. Before it signals a PID, this library checks that the
# start time is still the one it recorded, so a PID that the kernel has
# handed to another process since is never signalled. Nothing here kills
# anything by name.
#
# Functions return non-zero and say why on stderr; none of them exits: the
# caller decides what a failure means (all callers fail loudly).

[ -z "${F2B_COMMON_SH:-}" ] || return 0
F2B_COMMON_SH=1

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)

# --- the binary -----------------------------------------------------------

# The host's target triple. .cargo/config.toml names it as the build target
# (crt-static must not reach proc-macros and build scripts), so cargo puts
# the binary under target/<host triple>/, not target/.
host_triple() {
	local host
	host=$(rustc -vV 2>/dev/null | sed -n 's/^host: //p')
	[ -n "$host" ] || host=$(uname -m)-unknown-linux-gnu
	printf '%s\n' "$host"
}

# The f2b-route binary to test or run: $F2B_ROUTE if set, else where
# `cargo build --release --locked` puts it.
f2b_route_bin() {
	if [ -n "${F2B_ROUTE:-}" ]; then
		printf '%s\n' "$F2B_ROUTE"
	else
		printf '%s/target/%s/release/f2b-route\n' "$REPO" "$(host_triple)"
	fi
}

# --- Debian packages and commands -----------------------------------------

# The packages among the arguments that are not installed, one per line.
missing_packages() {
	local p
	for p; do
		dpkg-query -W -f='${db:Status-Status}\n' "$p" 2>/dev/null | grep -qx installed || printf '%s\n' "$p"
	done
}

# Installs the packages among the arguments that are missing: apt-get update,
# then apt-get install -y --no-install-recommends. Meanwhile a policy-rc.d
# that says no (exit 101) keeps their services from starting on this host
# (FRR, fail2ban, rsyslog and sshd would otherwise start in its root
# namespace); it is removed afterwards, also when the install fails or is
# interrupted. A policy-rc.d of the machine's own is left as it is.
install_packages() {
	local absent
	mapfile -t absent < <(missing_packages "$@")
	[ "${#absent[@]}" -gt 0 ] || return 0
	echo "installing Debian packages: ${absent[*]}"
	(
		policy=/usr/sbin/policy-rc.d
		mark='# f2b-route tests/lib/common.sh: no service starts while packages install'
		made=
		# Ours, if a run was killed before it could remove it.
		if [ -e "$policy" ] && grep -qxF "$mark" "$policy"; then made=1; fi
		trap '[ -z "$made" ] || rm -f "$policy"' EXIT
		trap 'exit 130' INT TERM
		if [ ! -e "$policy" ]; then
			made=1
			{ printf '#!/bin/sh\n%s\nexit 101\n' "$mark" >"$policy" && chmod 755 "$policy"; } || exit 1
		fi
		apt-get update &&
			DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${absent[@]}"
	) || { echo "apt-get could not install: ${absent[*]}" >&2; return 1; }
	mapfile -t absent < <(missing_packages "$@")
	[ "${#absent[@]}" = 0 ] || { echo "still not installed after apt-get: ${absent[*]}" >&2; return 1; }
}

# The commands among the arguments that are not found, one per line;
# returns 1 if any.
missing_commands() {
	local c rc=0
	for c; do
		command -v "$c" >/dev/null 2>&1 || { printf '%s\n' "$c"; rc=1; }
	done
	return "$rc"
}

# The PIDs of the processes whose executable is one of the PATHs (as
# /proc/PID/exe names it: the resolved path), one per line.
pids_of_exe() {
	local p e x
	for p in /proc/[0-9]*; do
		e=$(readlink "$p/exe" 2>/dev/null) || continue
		for x; do
			if [ "$e" = "$x" ]; then printf '%s\n' "${p#/proc/}"; fi
		done
	done
	return 0
}

# --- waiting --------------------------------------------------------------

# Microseconds since the epoch (bash's $EPOCHREALTIME, whatever the locale's
# decimal point).
now_us() { printf '%s\n' "${EPOCHREALTIME//[!0-9]/}"; }

# Seconds (whole or with up to 6 decimals) as microseconds: 1.5 -> 1500000.
seconds_us() {
	local int=${1%%.*} frac=
	[[ $1 == *.* ]] && frac=${1#*.}
	frac=${frac}000000
	printf '%s\n' "$((10#${int:-0} * 1000000 + 10#${frac:0:6}))"
}

# Waits up to $1 seconds (may be fractional; 0 tries once) for the command
# after it to succeed; polls every 50 ms. Its output is discarded.
wait_for() {
	local end
	end=$(($(now_us) + $(seconds_us "$1")))
	shift
	until "$@" >/dev/null 2>&1; do
		[ "$(now_us)" -lt "$end" ] || return 1
		sleep 0.05
	done
}

# --- daemons, by PID ------------------------------------------------------

DAEMON_NAMES=() DAEMON_PIDS=() DAEMON_STARTS=()

# Prints the fields of /proc/PID/stat from the third (the state) on: the
# second, the command name in parentheses, may contain spaces and ")".
_proc_stat() {
	local stat
	[[ $1 =~ ^[0-9]+$ ]] || return 1
	stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
	printf '%s\n' "${stat##*) }"
}

# The start time of process PID (clock ticks after boot, field 22).
proc_start_time() {
	local f
	read -ra f <<<"$(_proc_stat "$1")" || return 1
	[ -n "${f[19]:-}" ] || return 1
	printf '%s\n' "${f[19]}"
}

# Is process PID gone (no such process, or only its zombie left)?
process_gone() {
	local f
	read -ra f <<<"$(_proc_stat "$1")"
	[ -z "${f[0]:-}" ] || [ "${f[0]}" = Z ] || [ "${f[0]}" = X ]
}

# The index of daemon NAME in the arrays, in $DAEMON_I.
_daemon_index() {
	local i
	for i in "${!DAEMON_NAMES[@]}"; do
		if [ "${DAEMON_NAMES[i]}" = "$1" ]; then DAEMON_I=$i; return 0; fi
	done
	return 1
}

# Is the daemon at index $1 still the very process we tracked, and alive?
_daemon_alive() {
	local pid=${DAEMON_PIDS[$1]}
	[ "$(proc_start_time "$pid")" = "${DAEMON_STARTS[$1]}" ] && ! process_gone "$pid"
}

_daemon_record() { # name pid
	local start
	start=$(proc_start_time "$2") || { echo "daemon $1: process $2 is not running" >&2; return 1; }
	if _daemon_index "$1"; then
		if _daemon_alive "$DAEMON_I"; then
			echo "daemon $1: already running as PID ${DAEMON_PIDS[DAEMON_I]}" >&2
			return 1
		fi
		DAEMON_PIDS[DAEMON_I]=$2 DAEMON_STARTS[DAEMON_I]=$start
	else
		DAEMON_NAMES+=("$1") DAEMON_PIDS+=("$2") DAEMON_STARTS+=("$start")
	fi
}

# Starts CMD as a background job, its stdout and stderr appended to LOG, and
# tracks it as NAME. CMD must be the daemon itself or exec it (`ip netns
# exec`, `unshare` without --fork and `exec` in a script keep the PID).
daemon_start() { # name log cmd...
	local name=$1 log=$2 pid
	shift 2
	"$@" >>"$log" 2>&1 &
	pid=$!
	disown "$pid"
	_daemon_record "$name" "$pid"
}

# Tracks as NAME the process whose PID appears in PIDFILE within SECONDS
# (default 10): a daemon that forks and writes its own PID file, or a
# background job that wrote its $! there.
daemon_track() { # name pidfile [seconds]
	local pid
	wait_for "${3:-10}" test -s "$2" || { echo "daemon $1: no PID in $2 after ${3:-10} s" >&2; return 1; }
	pid=$(<"$2")
	pid=${pid//[[:space:]]/}
	[[ $pid =~ ^[0-9]+$ ]] || { echo "daemon $1: $2 holds no PID: '$pid'" >&2; return 1; }
	_daemon_record "$1" "$pid"
}

# The PID of daemon NAME (tracked, whether or not it still runs).
daemon_pid() {
	_daemon_index "$1" || { echo "daemon $1: not tracked" >&2; return 1; }
	printf '%s\n' "${DAEMON_PIDS[DAEMON_I]}"
}

# Is daemon NAME still running (the same process, not a reused PID)?
daemon_running() { _daemon_index "$1" && _daemon_alive "$DAEMON_I"; }

# Sends SIGNAL to daemon NAME if it still is the process we started.
daemon_signal() { # signal name
	daemon_running "$2" || return 1
	kill "-$1" "${DAEMON_PIDS[DAEMON_I]}" 2>/dev/null
}

# Stops daemon NAME: TERM, up to SECONDS (default 5) to go, then KILL.
# Returns 0 once it is gone (or was already).
daemon_stop() { # name [seconds]
	daemon_signal TERM "$1" || return 0
	_daemon_reap "$1" "${2:-5}"
}
daemon_gone() { ! daemon_running "$1"; }
# Waits up to SECONDS for daemon NAME to go, then KILLs it.
_daemon_reap() { # name seconds
	wait_for "$2" daemon_gone "$1" && return 0
	echo "daemon $1: still running $2 s after SIGTERM: SIGKILL" >&2
	daemon_signal KILL "$1"
	wait_for 5 daemon_gone "$1"
}

# Stops every tracked daemon: TERM to each, the last started first, then up
# to SECONDS (default 5) for each to go before KILL. Returns 1 if one is
# still there.
daemon_stop_all() { # [seconds]
	local i rc=0
	for ((i = ${#DAEMON_NAMES[@]} - 1; i >= 0; i--)); do
		daemon_signal TERM "${DAEMON_NAMES[i]}" || true
	done
	for ((i = ${#DAEMON_NAMES[@]} - 1; i >= 0; i--)); do
		_daemon_reap "${DAEMON_NAMES[i]}" "${1:-5}" || rc=1
	done
	return "$rc"
}

# The tracked daemons still running, one "NAME PID COMMAND" line each.
daemon_left() {
	local i
	for i in "${!DAEMON_NAMES[@]}"; do
		_daemon_alive "$i" || continue
		printf '%s %s %s\n' "${DAEMON_NAMES[i]}" "${DAEMON_PIDS[i]}" \
			"$(tr '\0' ' ' <"/proc/${DAEMON_PIDS[i]}/cmdline" 2>/dev/null)"
	done
}

# How many daemons were tracked (running or not).
daemon_count() { printf '%s\n' "${#DAEMON_NAMES[@]}"; }

#!/usr/bin/env bash
# The Debian package as an operator gets it (issue 7): builds it
# (debian/build), lints it (lintian: no E: line), installs it with dpkg -i on
# this machine and checks what it installed, and that installing started
# nothing and touched no route; runs the end-to-end test once against the
# installed files (TOPO_INSTALLED=1 tests/e2e.sh); exercises `metrics` and
# `stats` with the installed binary in a network namespace of its own
# (promtool checks the output); then purges the package and checks that
# nothing of it is left.
#
# Usage: sudo tests/package.sh            (tests/run runs it last)
#   KEEP=1   keep the temp dir (build log, lintian output, listings)
#
# Needs root; dpkg, lintian, promtool (Debian's prometheus), systemd-analyze
# and systemd-tmpfiles (systemd), man (man-db), readelf (binutils), jq,
# python3, `cargo deb`, and what tests/e2e.sh needs; and f2b-route not
# installed: the test installs and purges the package, so it never runs
# over an operator's installation. Anything missing is a failure, never a
# skip. Documentation addresses only; the host's routes and firewall are
# recorded and compared, never changed. Whatever happens (a failed check, an
# interrupt), the EXIT trap stops the end-to-end test by PID, purges the
# package, removes the namespace and what the test made: the machine is left
# as it was found. Exits non-zero on any failure; the last line is
# "N passed, M failed".

set -uo pipefail

cd "$(dirname "$0")/.." || exit 1
# shellcheck source=tests/lib/assert.sh
source tests/lib/assert.sh

PKG=f2b-route
BIN=/usr/sbin/f2b-route
EXAMPLES=/usr/share/doc/f2b-route/examples
TMPFILES=/usr/lib/tmpfiles.d/f2b-route.conf
STATE=/run/f2b-route
UNITS=(/lib/systemd/system/f2b-route-metrics.service /lib/systemd/system/f2b-route-metrics.timer
	/lib/systemd/system/f2b-route-mirror.service /lib/systemd/system/f2b-route-reconcile.service
	/lib/systemd/system/f2b-route-reconcile.timer)
CONFFILES=(/etc/f2b-route/f2b-route.toml /etc/fail2ban/action.d/f2b-route.conf
	/etc/fail2ban/action.d/f2b-route.py /etc/iproute2/rt_protos.d/f2b-route.conf)
# Where the metrics timer writes (node_exporter's textfile directory on
# Debian), and postrm removes on purge.
PROM_DIR=/var/lib/prometheus/node-exporter
PROM=$PROM_DIR/f2b-route.prom
# The shipped files that are the repository's own, byte for byte: repository
# path, installed path (Cargo.toml's [package.metadata.deb] assets).
SHIPPED=(
	etc/f2b-route/f2b-route.toml /etc/f2b-route/f2b-route.toml
	action.d/f2b-route.conf /etc/fail2ban/action.d/f2b-route.conf
	action.d/f2b-route.py /etc/fail2ban/action.d/f2b-route.py
	etc/iproute2/rt_protos.d/f2b-route.conf /etc/iproute2/rt_protos.d/f2b-route.conf
	debian/f2b-route.tmpfiles "$TMPFILES"
	debian/f2b-route-metrics.service "${UNITS[0]}"
	debian/f2b-route-metrics.timer "${UNITS[1]}"
	debian/f2b-route-mirror.service "${UNITS[2]}"
	debian/f2b-route-reconcile.service "${UNITS[3]}"
	debian/f2b-route-reconcile.timer "${UNITS[4]}"
	action.d/route.local "$EXAMPLES/action.d/route.local"
	jail.d/triton.conf "$EXAMPLES/jail.d/triton.conf"
	frr/frr.conf "$EXAMPLES/frr/frr.conf"
	frr/daemons "$EXAMPLES/frr/daemons"
	frr/frr-firewall.conf "$EXAMPLES/frr/frr-firewall.conf"
	openbgpd/bgpd.conf "$EXAMPLES/openbgpd/bgpd.conf"
	pf/pf.conf "$EXAMPLES/pf/pf.conf"
	bird/bird.conf "$EXAMPLES/bird/bird.conf"
	README.md /usr/share/doc/f2b-route/README.md
)

START=$SECONDS
TIMINGS=()
T0=$SECONDS
# Notes how long the part since the last lap took.
lap() { TIMINGS+=("$1: $((SECONDS - T0)) s"); T0=$SECONDS; }

# --- clean-up, whatever happens ---------------------------------------------

TMP='' NS='' INSTALLED='' E2E_PID='' MADE_STATE='' MADE_PROM='' MADE_PROM_DIRS=()
on_exit() {
	local rc=$? pid d
	trap - INT TERM
	if [ -n "$E2E_PID" ]; then
		# Our own child, not yet waited for: its PID cannot have been reused.
		kill -TERM "$E2E_PID" 2>/dev/null
		wait "$E2E_PID" 2>/dev/null
	fi
	if [ -n "$NS" ]; then
		while read -r pid; do kill -KILL "$pid" 2>/dev/null; done < <(ip netns pids "$NS" 2>/dev/null)
		ip netns del "$NS" 2>/dev/null
	fi
	if [ -n "$INSTALLED" ] && package_present; then
		echo "# clean-up: dpkg --purge $PKG"
		dpkg --purge "$PKG" >/dev/null 2>&1 || echo "clean-up: dpkg --purge $PKG failed" >&2
	fi
	[ -z "$MADE_PROM" ] || rm -f "$PROM"
	[ -z "$MADE_STATE" ] || rm -rf "$STATE"
	for d in "${MADE_PROM_DIRS[@]}"; do rmdir "$d" 2>/dev/null; done
	if [ -n "$TMP" ]; then
		if [ -n "${KEEP:-}" ]; then echo "# kept $TMP"; else rm -rf "$TMP"; fi
	fi
	[ "$rc" = 0 ] && [ "$FAILED" = 0 ] || exit 1
}
trap on_exit EXIT
trap 'echo "interrupted"; exit 130' INT TERM

# A set-up step that must work, or nothing after it means anything.
fatal() {
	record FAIL "$1" "${2:-}"
	summary
	exit 1
}

# --- witnesses --------------------------------------------------------------

# dpkg's state of the package: "installed", "config-files", ..., or
# "not-installed" (also when dpkg has never heard of it).
package_status() {
	local s
	s=$(dpkg-query -W -f='${db:Status-Status}' "$PKG" 2>/dev/null)
	printf '%s\n' "${s:-not-installed}"
}
package_present() { [ "$(package_status)" != not-installed ]; }
package_absent() { ! package_present; }

# The host's own routes, rules and firewall, as text: compared before and
# after, never changed. `ip -6 route`'s "expires" (a countdown the kernel
# keeps for routes learnt from router advertisements) is dropped: it is not
# a change.
host_net() {
	echo "# ip -j route"
	ip -j route 2>&1
	echo "# ip -6 -j route (without expires)"
	ip -6 -j route 2>&1 | jq -c 'map(del(.expires))' 2>&1
	echo "# ip -j rule; ip -6 -j rule"
	ip -j rule 2>&1
	ip -6 -j rule 2>&1
	if command -v nft >/dev/null; then
		echo "# nft list ruleset"
		nft list ruleset 2>&1
	else
		echo "# nft: not installed"
	fi
}
host_net_same() { host_net | cmp -s "$TMP/host-net.before" -; }
host_net_evidence() {
	if host_net_same; then
		echo "ip -j route, ip -6 -j route, ip rule, nft ruleset: identical to before the install ($(wc -c <"$TMP/host-net.before") bytes)"
		sed -n '2p;4p' "$TMP/host-net.before"
	else
		echo "the host's routes, rules or firewall changed:"
		host_net | diff "$TMP/host-net.before" -
	fi
}

# Processes running the installed binary, anywhere on this host.
bin_processes() {
	local pid
	while read -r pid; do
		printf '%s %s\n' "$pid" "$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null)"
	done < <(pids_of_exe "$BIN")
}
no_bin_process() { [ -z "$(bin_processes)" ]; }

# --- preconditions ----------------------------------------------------------

echo "# f2b-route Debian package test ($(date -u +%FT%TZ))"
[ "$(id -u)" = 0 ] || fatal "preconditions: root" "tests/package.sh installs a package: run it as root"
missing=$(missing_commands dpkg dpkg-deb dpkg-query lintian promtool systemd-analyze systemd-tmpfiles \
	man readelf jq python3 ip unshare cmp md5sum cargo)
[ -z "$missing" ] || fatal "preconditions: tools" "missing: ${missing//$'\n'/ } (tests/run installs them)"
cargo deb --version >/dev/null 2>&1 || fatal "preconditions: cargo deb" "cargo install --locked cargo-deb"
package_absent || fatal "preconditions: $PKG is not installed" \
	"dpkg says '$(package_status)': this test installs and purges the package; it does not run over an existing installation"
[ ! -e "$STATE" ] || fatal "preconditions: no $STATE yet" "$(ls -ld "$STATE"): the package's purge would remove it"
[ ! -e "$PROM" ] || fatal "preconditions: no $PROM yet" "the package's purge would remove it"
TMP=$(mktemp -d /tmp/f2bp.XXXXXX)
record PASS "preconditions: root, tools, $PKG not installed" \
	"$(cargo deb --version 2>&1); $(lintian --version 2>&1); $(promtool --version 2>&1 | head -n 1); $(systemd-analyze --version | head -n 1)"

# --- build --------------------------------------------------------------------

host=$(host_triple)
outdir=target/$host/debian
rm -f "$outdir"/"$PKG"_*.deb
echo "# bash debian/build (log: $TMP/build.log)"
if ! bash debian/build >"$TMP/build.log" 2>&1; then
	fatal "build: bash debian/build" "$(tail -n 30 "$TMP/build.log")"
fi
mapfile -t debs < <(compgen -G "$outdir/${PKG}_*.deb")
[ "${#debs[@]}" = 1 ] || fatal "build: exactly one .deb in $outdir" "found: ${debs[*]:-none}"
DEB=${debs[0]}
deb_field() { dpkg-deb -f "$DEB" "$1"; }
VERSION=$(deb_field Version)
deb_is_ours() {
	[ "$(deb_field Package)" = "$PKG" ] && [ "$(deb_field Architecture)" = "$(dpkg --print-architecture)" ] &&
		[ "$(basename "$DEB")" = "${PKG}_${VERSION}_$(deb_field Architecture).deb" ]
}
check "build: bash debian/build makes $DEB" \
	dpkg-deb -I "$DEB" -- deb_is_ours
lap build

# What the package would install must not be there yet: the purge check
# below would otherwise blame the package for a file that was not its.
dpkg-deb -c "$DEB" | awk '$1 !~ /^d/ { sub(/^\./, "", $6); print $6 }' >"$TMP/deb-files"
preexisting=$(while read -r f; do [ ! -e "$f" ] || echo "$f"; done <"$TMP/deb-files")
[ -z "$preexisting" ] || fatal "preconditions: none of the package's files exists before the install" "$preexisting"

# --- lintian ----------------------------------------------------------------

lintian "$DEB" >"$TMP/lintian.out" 2>&1
lintian_rc=$?
lintian_evidence() {
	echo "lintian $DEB: exit $lintian_rc, $(grep -c '^E: ' "$TMP/lintian.out") errors, $(grep -c '^W: ' "$TMP/lintian.out") warnings"
	grep -E '^[EW]: ' "$TMP/lintian.out"
}
lintian_clean() { [ "$lintian_rc" = 0 ] && ! grep -q '^E: ' "$TMP/lintian.out"; }
check "lintian: no error (E:) line; the warnings (W:) are listed" \
	lintian_evidence -- lintian_clean
lap lintian

# --- install ----------------------------------------------------------------

host_net >"$TMP/host-net.before"
# dpkg -i runs as the only child of PID 1 of a new PID namespace: whatever
# its maintainer scripts leave running (a daemon forks away and ends up
# under that PID 1, this shell) is listed before the namespace, and with it
# anything left, goes.
INSTALLED=1
# shellcheck disable=SC2016 # the inner script's expansions are its own
unshare --pid --fork --mount-proc bash -c '
	dpkg -i "$1"
	rc=$?
	for p in /proc/[0-9]*; do
		p=${p#/proc/}
		[ "$p" != 1 ] || continue
		read -r comm <"/proc/$p/comm" || continue
		echo "LEFT RUNNING: PID $p ($comm)"
	done
	exit "$rc"' dpkg-in-pidns "$DEB" >"$TMP/install.out" 2>&1
install_rc=$?
install_evidence() { echo "dpkg -i: exit $install_rc, status '$(package_status)'"; cat "$TMP/install.out"; }
installed_nothing_left() {
	[ "$install_rc" = 0 ] && [ "$(package_status)" = installed ] && ! grep -q '^LEFT RUNNING: ' "$TMP/install.out"
}
check "install: dpkg -i $(basename "$DEB"); its maintainer scripts left no process running" \
	install_evidence -- installed_nothing_left
[ "$(package_status)" = installed ] || fatal "install: the package is installed" "$(install_evidence)"
lap "dpkg -i"

enabled_units() { find /etc/systemd -name 'f2b-route*' 2>/dev/null; }
started_evidence() {
	echo "processes running $BIN: $(bin_processes | grep -c .)"
	bin_processes
	echo "links or files named f2b-route* under /etc/systemd: $(enabled_units | grep -c .)"
	enabled_units
	if [ -d /run/systemd/system ]; then
		echo "systemd: timer $(systemctl is-active f2b-route-metrics.timer 2>&1) / $(systemctl is-enabled f2b-route-metrics.timer 2>&1)"
	else
		echo "(systemd is not PID 1 here: no unit could start)"
	fi
}
nothing_started() {
	no_bin_process && [ -z "$(enabled_units)" ] || return 1
	[ ! -d /run/systemd/system ] || ! systemctl -q is-active f2b-route-metrics.timer f2b-route-metrics.service
}
check "install: starts nothing (no process runs $BIN; the metrics timer is neither enabled nor active)" \
	started_evidence -- nothing_started
check "install: the host's routes (ip -j route, ip -6 -j route), rules and nftables ruleset are byte for byte unchanged" \
	host_net_evidence -- host_net_same

# --- what it installed ------------------------------------------------------

# Every path dpkg installed ("/." aside).
dpkg -L "$PKG" | grep -vx '/\.' | sort >"$TMP/listed"
# The subcommands, from the installed binary's own help: each has a man page.
mapfile -t SUBCOMMANDS < <("$BIN" --help | awk '/^Commands:/ { f = 1; next } f && !NF { exit } f && $1 != "help" { print $1 }')
expected_files() {
	local c f
	echo "$BIN 755"
	echo "/usr/share/man/man8/f2b-route.8.gz 644"
	for c in "${SUBCOMMANDS[@]}"; do echo "/usr/share/man/man8/f2b-route-$c.8.gz 644"; done
	for f in /usr/share/bash-completion/completions/f2b-route /usr/share/zsh/vendor-completions/_f2b-route \
		/usr/share/fish/vendor_completions.d/f2b-route.fish "${CONFFILES[@]}" "$TMPFILES" "${UNITS[@]}" \
		"$EXAMPLES"/action.d/route.local "$EXAMPLES"/jail.d/triton.conf "$EXAMPLES"/frr/frr.conf \
		"$EXAMPLES"/frr/daemons "$EXAMPLES"/openbgpd/bgpd.conf "$EXAMPLES"/pf/pf.conf \
		"$EXAMPLES"/bird/bird.conf "$EXAMPLES"/frr/frr-firewall.conf \
		/usr/share/doc/f2b-route/README.md /usr/share/doc/f2b-route/copyright \
		/usr/share/doc/f2b-route/changelog.Debian.gz; do
		echo "$f 644"
	done
}
# Every file dpkg lists, with its mode, owner and type: "PATH MODE" for a
# regular file of root's, anything else spelt out.
listed_files() {
	local f
	while read -r f; do
		# Directories, and links to them (/lib on a merged /usr), aside.
		[ -d "$f" ] && continue
		if [ -f "$f" ] && [ ! -L "$f" ] && [ "$(stat -c %U:%G "$f")" = root:root ]; then
			echo "$f $(stat -c %a "$f")"
		else
			echo "$f $(stat -c '%a %U:%G %F' "$f" 2>&1)"
		fi
	done <"$TMP/listed" | sort
}
files_evidence() {
	echo "subcommands in --help: ${SUBCOMMANDS[*]}"
	if files_as_expected; then
		echo "$(listed_files | wc -l) files (dpkg -L, directories aside), each a regular file of root's with the expected mode:"
		listed_files
	else
		echo "diff expected installed:"
		diff <(expected_files | sort) <(listed_files)
	fi
}
files_as_expected() { [ "${#SUBCOMMANDS[@]}" -gt 0 ] && [ "$(expected_files | sort)" = "$(listed_files)" ]; }
check "files: exactly the expected ones (binary, man page per subcommand, completions, conffiles, tmpfiles, units, examples, docs), root's, with the right modes" \
	files_evidence -- files_as_expected

# The directories only this package owns: 0755 root's; the purge removes them.
own_dirs() {
	local d
	while read -r d; do
		[ -d "$d" ] && [ ! -L "$d" ] || continue
		[ "$(dpkg-query -S "$d" 2>/dev/null)" = "$PKG: $d" ] && echo "$d"
	done <"$TMP/listed"
}
own_dirs >"$TMP/own-dirs"
own_dirs_evidence() { while read -r d; do stat -c '%n %a %U:%G' "$d"; done <"$TMP/own-dirs"; }
own_dirs_ok() {
	[ -s "$TMP/own-dirs" ] || return 1
	while read -r d; do [ "$(stat -c '%a %U:%G' "$d")" = "755 root:root" ] || return 1; done <"$TMP/own-dirs"
}
check "files: the package's own directories are 0755 root's" own_dirs_evidence -- own_dirs_ok

shipped_evidence() {
	local i
	for ((i = 0; i < ${#SHIPPED[@]}; i += 2)); do
		if cmp -s "${SHIPPED[i]}" "${SHIPPED[i + 1]}"; then
			echo "same: ${SHIPPED[i]} = ${SHIPPED[i + 1]}"
		else
			echo "DIFFERS: ${SHIPPED[i]} vs ${SHIPPED[i + 1]}"
		fi
	done
}
shipped_same() { ! shipped_evidence | grep -q '^DIFFERS'; }
check "files: the shipped configs, units, examples and README are the repository's, byte for byte" \
	shipped_evidence -- shipped_same

elf_evidence() {
	echo "program headers: $(readelf -lW "$BIN" | awk '/^  [A-Z_]+ / && $1 != "Type" { print $1 }' | sort -u | tr '\n' ' ')"
	echo "symbol table sections: $(readelf -SW "$BIN" | grep -c ' \.symtab ')"
	echo "--version: $("$BIN" --version)  (package $VERSION)"
}
bin_static_stripped() {
	! readelf -lW "$BIN" | grep -q ' INTERP ' && ! readelf -SW "$BIN" | grep -q ' \.symtab ' &&
		[ "$("$BIN" --version)" = "f2b-route ${VERSION%-*}" ]
}
check "binary: $BIN is static (no INTERP), stripped (no .symtab), and its version is the package's" \
	elf_evidence -- bin_static_stripped

dpkg-query -W -f='${Conffiles}\n' "$PKG" | awk 'NF { print }' >"$TMP/conffiles"
conffiles_evidence() { echo "dpkg-query -W -f='\${Conffiles}' $PKG:"; cat "$TMP/conffiles"; }
conffiles_exact() {
	local path sum rest
	[ "$(awk '{ print $1 }' "$TMP/conffiles" | sort)" = "$(printf '%s\n' "${CONFFILES[@]}" | sort)" ] || return 1
	while read -r path sum rest; do
		[ -z "$rest" ] && [ "$(md5sum <"$path" | cut -d' ' -f1)" = "$sum" ] || return 1
	done <"$TMP/conffiles"
}
check "conffiles: exactly ${CONFFILES[*]}, as installed (md5sum)" \
	conffiles_evidence -- conffiles_exact

man_evidence() {
	local p
	for p in f2b-route f2b-route-check f2b-route-metrics; do echo "man -w $p: $(man -w "$p" 2>&1)"; done
}
man_resolves() {
	[ "$(man -w f2b-route 2>/dev/null)" = /usr/share/man/man8/f2b-route.8.gz ] &&
		[ "$(man -w f2b-route-check 2>/dev/null)" = /usr/share/man/man8/f2b-route-check.8.gz ] &&
		[ "$(man -w f2b-route-metrics 2>/dev/null)" = /usr/share/man/man8/f2b-route-metrics.8.gz ]
}
check "man: man -w finds f2b-route(8), f2b-route-check(8) and the units' f2b-route-metrics(8)" \
	man_evidence -- man_resolves

# The exit codes, "CODE NAME" lines, from --help's "Exit status:" table
# and from the installed man page's EXIT STATUS section.
help_exit_codes() { "$BIN" --help | awk '/^Exit status:/ { f = 1; next } f && !NF { exit } f { print $1, $2 }'; }
man_exit_codes() {
	MANWIDTH=200 man -P cat f2b-route 2>/dev/null |
		awk '/^EXIT STATUS/ { f = 1; next } f && /^[A-Z]/ { exit } f && $1 ~ /^[0-9]+$/ { gsub(/[()]/, "", $2); print $1, $2 }'
}
EXIT_TABLE='0 ok
1 failure
2 usage
3 refused
4 no-permission
5 conflict
6 config
7 fail2ban
8 schema'
exit_evidence() {
	echo "--help, Exit status: $(help_exit_codes | tr '\n' ',')"
	echo "man f2b-route, EXIT STATUS: $(man_exit_codes | tr '\n' ',')"
}
exit_tables_ok() { [ "$(help_exit_codes)" = "$EXIT_TABLE" ] && [ "$(man_exit_codes)" = "$EXIT_TABLE" ]; }
check "help and man page: $BIN --help and f2b-route(8) carry the exit status table (0 ok ... 8 schema)" \
	exit_evidence -- exit_tables_ok

systemd-analyze verify "${UNITS[@]}" >"$TMP/verify.out" 2>&1
verify_rc=$?
verify_evidence() { echo "systemd-analyze verify ${UNITS[*]}: exit $verify_rc"; cat "$TMP/verify.out"; }
verify_ok() { [ "$verify_rc" = 0 ] && [ ! -s "$TMP/verify.out" ]; }
check "units: systemd-analyze verify passes the installed service and timer, silently" \
	verify_evidence -- verify_ok

# The services' exposure, each at most 2.0 and OK or better.
security_check() { # unit
	local unit=$1 out rc score badge
	out=$(systemd-analyze security --offline=true "$unit" 2>&1)
	rc=$?
	score=$(sed -n 's/.*Overall exposure level for [^:]*: \([0-9.]*\) \([A-Z]*\).*/\1 \2/p' <<<"$out")
	badge=${score#* }
	score=${score% *}
	SECURITY_EVIDENCE="systemd-analyze security --offline=true $unit: exit $rc
$(grep '✗' <<<"$out")
$(grep 'Overall exposure' <<<"$out")"
	SECURITY="$score $badge"
	[ "$rc" = 0 ] && [[ $score =~ ^[0-9]+\.[0-9]$ ]] &&
		awk -v s="$score" 'BEGIN { exit !(s <= 2.0) }' &&
		[[ $badge =~ ^(OK|SAFE|PERFECT)$ ]]
}
security_evidence() { printf '%s\n' "$SECURITY_EVIDENCE"; }
for unit in "${UNITS[0]}" "${UNITS[2]}" "${UNITS[3]}"; do
	verdict=FAIL
	security_check "$unit" && verdict=PASS
	record "$verdict" "units: systemd-analyze security scores $(basename "$unit") ${SECURITY:-(no score)}: at most 2.0, OK or better" \
		"$(security_evidence)"
done
lap "installed files"

# --- metrics and stats, with the installed binary -----------------------------

# A namespace of our own (only lo, up) and a private state dir; the
# installed config (/etc/f2b-route/f2b-route.toml, every key at its default)
# is read as it is.
NS=f2bp-$$-metrics
ip netns add "$NS" && ip -n "$NS" link set lo up || fatal "metrics: network namespace $NS"
MSTATE=$TMP/state
m() { ip netns exec "$NS" "$BIN" --state-dir "$MSTATE" "$@"; }
check_evidence() { m check 2>&1; }
check "metrics: f2b-route check passes with the installed config, in namespace $NS" \
	check_evidence -- m check

BANS4=(198.51.100.10 198.51.100.11 203.0.113.12)
BANS6=(2001:db8::12)
m add --jail sshd -- "${BANS4[@]}" "${BANS6[@]}" 2>"$TMP/add.err" || fatal "metrics: add ${BANS4[*]} ${BANS6[*]}" "$(cat "$TMP/add.err")"
# A second jail's hold of an address already banned adds no route.
m add --jail recidive -- "${BANS4[0]}" 2>>"$TMP/add.err" || fatal "metrics: add --jail recidive ${BANS4[0]}" "$(cat "$TMP/add.err")"
kernel_count() { ip -n "$NS" -j "$1" route show proto 252 type "$2" | jq '[.[] | select(.metric == 666)] | length'; }

m metrics >"$TMP/metrics.txt" 2>"$TMP/metrics.err"
metrics_rc=$?
promtool check metrics <"$TMP/metrics.txt" >"$TMP/promtool.out" 2>&1
promtool_rc=$?
promtool_evidence() {
	echo "f2b-route metrics: exit $metrics_rc, $(grep -c '^f2b_route_' "$TMP/metrics.txt") samples; promtool check metrics: exit $promtool_rc"
	cat "$TMP/metrics.err" "$TMP/promtool.out"
}
promtool_ok() { [ "$metrics_rc" = 0 ] && [ "$promtool_rc" = 0 ] && grep -q '^f2b_route_' "$TMP/metrics.txt"; }
check "metrics: f2b-route metrics | promtool check metrics passes" \
	promtool_evidence -- promtool_ok

# The value of one sample: metric NAME with exactly these LABELS ("" for none).
sample() { # file name labels
	local key=$2
	[ -z "$3" ] || key="$2{$3}"
	awk -v key="$key" '$1 == key { print $2; n++ } END { exit n != 1 }' "$1"
}
values_evidence() {
	local f=$1
	echo "kernel (ip -j route show proto 252, metric 666): inet blackhole $(kernel_count -4 blackhole), inet6 blackhole $(kernel_count -6 blackhole)"
	grep -E '^f2b_route_(routes\{family="inet6?",type="blackhole"\}|bans_total|unbans_total|holds|held_addresses|guard_refusals_total|holds_without_routes)' "$f"
}
values_ok() {
	local f=$1
	[ "$(sample "$f" f2b_route_routes 'family="inet",type="blackhole"')" = "${#BANS4[@]}" ] &&
		[ "$(kernel_count -4 blackhole)" = "${#BANS4[@]}" ] &&
		[ "$(sample "$f" f2b_route_routes 'family="inet6",type="blackhole"')" = "${#BANS6[@]}" ] &&
		[ "$(sample "$f" f2b_route_bans_total "")" = "$((${#BANS4[@]} + ${#BANS6[@]}))" ] &&
		[ "$(sample "$f" f2b_route_unbans_total "")" = 0 ] &&
		[ "$(sample "$f" f2b_route_holds 'jail="sshd"')" = "$((${#BANS4[@]} + ${#BANS6[@]}))" ] &&
		[ "$(sample "$f" f2b_route_holds 'jail="recidive"')" = 1 ] &&
		[ "$(sample "$f" f2b_route_guard_refusals_total "")" = 0 ]
}
check "metrics: routes{inet,blackhole} = ${#BANS4[@]} IPv4 bans (as in the kernel), {inet6} = ${#BANS6[@]}, bans_total = $((${#BANS4[@]} + ${#BANS6[@]})) (a second jail's hold adds no ban), holds per jail" \
	values_evidence "$TMP/metrics.txt" -- values_ok "$TMP/metrics.txt"
if grep -Eq '^f2b_route_[a-z_]*\{[^}]*(198\.51\.100|203\.0\.113|2001:db8)' "$TMP/metrics.txt"; then
	record FAIL "metrics: no address in any label" "$(grep -E '(198\.51\.100|203\.0\.113|2001:db8)' "$TMP/metrics.txt")"
else
	record PASS "metrics: no address in any label" "$(grep -c '{' "$TMP/metrics.txt") labelled samples"
fi

refusals_before=$(sample "$TMP/metrics.txt" f2b_route_guard_refusals_total "")
m add --jail sshd -- 127.0.0.1 2>"$TMP/refused.err"
refused_rc=$?
m metrics >"$TMP/metrics2.txt" 2>&1
refusals_evidence() {
	echo "add 127.0.0.1: exit $refused_rc: $(cat "$TMP/refused.err")"
	echo "f2b_route_guard_refusals_total: $refusals_before -> $(sample "$TMP/metrics2.txt" f2b_route_guard_refusals_total "")"
}
refusals_rose() {
	[ "$refused_rc" = 3 ] && [ "$(sample "$TMP/metrics2.txt" f2b_route_guard_refusals_total "")" = "$((refusals_before + 1))" ] &&
		[ "$(sample "$TMP/metrics2.txt" f2b_route_bans_total "")" = "$((${#BANS4[@]} + ${#BANS6[@]}))" ]
}
check "metrics: a refused add 127.0.0.1 (exit 3) raises guard_refusals_total by one, bans_total not" \
	refusals_evidence -- refusals_rose

TEXTFILE=$TMP/textfile
mkdir -m 755 "$TEXTFILE"
m metrics --textfile "$TEXTFILE" >"$TMP/textfile.out" 2>&1
textfile_rc=$?
promtool check metrics <"$TEXTFILE/f2b-route.prom" >"$TMP/promtool-file.out" 2>&1
promtool_file_rc=$?
textfile_evidence() {
	echo "metrics --textfile $TEXTFILE: exit $textfile_rc $(cat "$TMP/textfile.out")"
	echo "directory: $(cd "$TEXTFILE" && find . -mindepth 1 -printf '%P %m %u:%g %y\n' | tr '\n' ' ')"
	echo "promtool check metrics < f2b-route.prom: exit $promtool_file_rc $(cat "$TMP/promtool-file.out")"
}
textfile_ok() {
	[ "$textfile_rc" = 0 ] && [ "$(cd "$TEXTFILE" && find . -mindepth 1 -printf '%P %m %u:%g %y\n')" = "f2b-route.prom 644 root:root f" ] &&
		[ "$promtool_file_rc" = 0 ] &&
		[ "$(sample "$TEXTFILE/f2b-route.prom" f2b_route_routes 'family="inet",type="blackhole"')" = "${#BANS4[@]}" ]
}
check "metrics --textfile DIR: only DIR/f2b-route.prom (0644 root's, no temp file left), promtool passes it, values right" \
	textfile_evidence -- textfile_ok

m stats --json >"$TMP/stats.json" 2>"$TMP/stats.err"
stats_rc=$?
stats_evidence() {
	echo "stats --json: exit $stats_rc $(cat "$TMP/stats.err")"
	python3 -m json.tool <"$TMP/stats.json" >/dev/null || echo "python3 -m json.tool: not JSON"
	jq -c . "$TMP/stats.json" 2>&1
}
stats_ok() { # routes agree
	[ "$stats_rc" = 0 ] && python3 -m json.tool <"$TMP/stats.json" >/dev/null &&
		jq -e --argjson n "$1" --argjson agree "$2" '.routes_total == $n and .agree == $agree' "$TMP/stats.json" >/dev/null
}
check "stats --json: valid JSON (python3 -m json.tool, jq), routes_total $((${#BANS4[@]} + ${#BANS6[@]})), agree true" \
	stats_evidence -- stats_ok "$((${#BANS4[@]} + ${#BANS6[@]}))" true

# A route removed behind f2b-route's back: the ledger and the kernel no
# longer agree, and both outputs say so.
ip -n "$NS" route del blackhole "${BANS4[1]}/32" proto 252 metric 666 || fatal "metrics: ip route del ${BANS4[1]} in $NS"
m stats --json >"$TMP/stats.json" 2>"$TMP/stats.err"
stats_rc=$?
m metrics >"$TMP/metrics3.txt" 2>&1
disagree_ok() {
	stats_ok "$((${#BANS4[@]} + ${#BANS6[@]} - 1))" false &&
		[ "$(jq '.holds_without_routes' "$TMP/stats.json")" = 1 ] &&
		[ "$(sample "$TMP/metrics3.txt" f2b_route_holds_without_routes "")" = 1 ]
}
disagree_evidence() {
	jq -c '{agree, routes_total, holds_without_routes}' "$TMP/stats.json" 2>&1
	grep '^f2b_route_holds_without_routes' "$TMP/metrics3.txt"
}
check "stats --json and metrics: a route deleted by hand makes agree false and holds_without_routes 1" \
	disagree_evidence -- disagree_ok

ip netns del "$NS" && NS=
check "metrics: the host's routes are unchanged" host_net_evidence -- host_net_same
lap "metrics"

# --- the end-to-end test against the installed files --------------------------

echo "# end to end against the installed package: F2B_ROUTE=$BIN TOPO_INSTALLED=1 tests/e2e.sh"
# In the background, so that an interrupt reaches the trap, which stops it
# by PID (TERM: it stops its daemons and removes its namespaces) before the
# purge.
F2B_ROUTE=$BIN TOPO_INSTALLED=1 bash tests/e2e.sh &
E2E_PID=$!
wait "$E2E_PID"
e2e_rc=$?
E2E_PID=
e2e_ok() { [ "$e2e_rc" = 0 ]; }
check "e2e: tests/e2e.sh passes with the installed binary, action, route.local and jail (exit $e2e_rc)" -- e2e_ok
check "e2e: the host's routes are unchanged" host_net_evidence -- host_net_same
lap "e2e"

# --- what a running system adds, then the purge -------------------------------

# At boot systemd-tmpfiles makes the state dir; every minute the timer
# writes the metrics file. Both belong to the package and must go with it.
systemd-tmpfiles --create "$TMPFILES" 2>"$TMP/tmpfiles.err"
tmpfiles_rc=$?
[ ! -d "$STATE" ] || MADE_STATE=1
tmpfiles_evidence() { echo "systemd-tmpfiles --create $TMPFILES: exit $tmpfiles_rc $(cat "$TMP/tmpfiles.err")"; ls -ld "$STATE" 2>&1; }
tmpfiles_ok() { [ "$tmpfiles_rc" = 0 ] && [ "$(stat -c '%a %U:%G %F' "$STATE" 2>/dev/null)" = "700 root:root directory" ]; }
check "tmpfiles: systemd-tmpfiles --create makes $STATE, 0700 root's" tmpfiles_evidence -- tmpfiles_ok
d=$PROM_DIR
while [ ! -d "$d" ]; do MADE_PROM_DIRS+=("$d"); d=$(dirname "$d"); done
mkdir -p "$PROM_DIR" && install -m 644 "$TEXTFILE/f2b-route.prom" "$PROM" && MADE_PROM=1 ||
	fatal "a metrics file at $PROM, as the timer writes it"

listed_after_install=$(wc -l <"$TMP/listed")
dpkg --purge "$PKG" >"$TMP/purge.out" 2>&1
purge_rc=$?
purge_evidence() { echo "dpkg --purge: exit $purge_rc, status now '$(package_status)'"; cat "$TMP/purge.out"; }
purge_ok() { [ "$purge_rc" = 0 ] && package_absent; }
check "purge: dpkg --purge $PKG" purge_evidence -- purge_ok
lap "purge"

# What dpkg listed and is still there: nothing, but the directories other
# packages own or that hold files of others.
leftovers() {
	local p
	while read -r p; do
		[ -e "$p" ] || [ -L "$p" ] || continue
		if [ -d "$p" ]; then
			dpkg-query -S "$p" >/dev/null 2>&1 && continue
			[ -n "$(ls -A "$p")" ] && continue
		fi
		echo "$p"
	done <"$TMP/listed"
}
kept_dirs() {
	local p owners
	while read -r p; do
		[ -d "$p" ] || continue
		if owners=$(dpkg-query -S "$p" 2>/dev/null); then
			owners=${owners%%: *}
			echo "$p (owned by $(awk -F', ' '{ print $1 (NF > 1 ? " and " NF - 1 " more" : "") }' <<<"$owners"))"
		else
			echo "$p (not empty: $(ls -A "$p" | head -n 3 | tr '\n' ' '))"
		fi
	done <"$TMP/listed"
}
left_evidence() {
	echo "$listed_after_install paths listed by dpkg -L before the purge; left that should not be: $(leftovers | grep -c .)"
	leftovers | sed 's/^/LEFT: /'
	echo "own directories gone: $(while read -r d; do [ -e "$d" ] || echo "$d"; done <"$TMP/own-dirs" | tr '\n' ' ')"
	echo "shared directories kept:"
	kept_dirs
}
nothing_left() { [ -z "$(leftovers)" ] && [ -s "$TMP/listed" ]; }
check "purge: every file dpkg listed is gone; only directories other packages own or that hold others' files stay" \
	left_evidence -- nothing_left

gone_paths() { printf '%s\n' "${CONFFILES[@]}" "$TMPFILES" "$STATE" "$PROM" "${UNITS[@]}" "$BIN"; }
gone_evidence() {
	local p
	while read -r p; do
		if [ -e "$p" ] || [ -L "$p" ]; then echo "STILL THERE: $(ls -ld "$p")"; else echo "gone: $p"; fi
	done < <(gone_paths)
	for p in "${CONFFILES[@]}"; do compgen -G "$p.dpkg-*" | sed 's/^/STILL THERE: /'; done
	echo "man -w f2b-route: $(man -w f2b-route 2>&1)"
}
all_gone() {
	local p
	while read -r p; do [ ! -e "$p" ] && [ ! -L "$p" ] || return 1; done < <(gone_paths)
	for p in "${CONFFILES[@]}"; do [ -z "$(compgen -G "$p.dpkg-*")" ] || return 1; done
	! man -w f2b-route >/dev/null 2>&1
}
check "purge: the conffiles (and no .dpkg-* copy), the tmpfiles entry, $STATE, $PROM and the man page are gone" \
	gone_evidence -- all_gone
check "purge: the host's routes, rules and nftables ruleset are byte for byte as before the install" \
	host_net_evidence -- host_net_same
check "purge: no process runs $BIN" bin_processes -- no_bin_process
[ -e "$PROM" ] || MADE_PROM=
[ -e "$STATE" ] || MADE_STATE=
INSTALLED=

echo "# timings: ${TIMINGS[*]/%/;} total $((SECONDS - START)) s"
summary
[ "$FAILED" = 0 ]

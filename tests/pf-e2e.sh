#!/bin/sh
# pfknock against the real pf: the nftables end-to-end cases, and what only
# a kernel can show (pf's rate estimate, its overload insert, what
# DIOCRCLRASTATS stamps, knock progress across an anchor reload, table
# requests by ioctl where FreeBSD 15 also speaks netlink), on FreeBSD 14
# and 15 and on OpenBSD.
#
# FreeBSD: two vnet jails joined by an epair(4). "srv" (198.18.0.1) has a
# pf of its own (pf is per vnet) with the main ruleset below, pfknock's
# anchor and daemon, and listeners on the protected ports; "cli"
# (198.18.0.2) knocks. The host's own interfaces and ruleset are not
# touched; the jails go on exit, also on failure.
#
# OpenBSD: pf is one for the whole host, so run it on a test machine. Two
# routing domains (11 and 12) joined by a pair(4) patch stand in for the
# jails, and processes run in them with route -T N exec. The script loads
# its own main ruleset (the host's traffic passes; the pair interface is
# the test's) and loads /etc/pf.conf back on exit.
#
# It has NOT been run by pfknock's authors (no BSD where it was written):
# it follows jail(8), jexec(8), epair(4), pair(4), route(8), ifconfig(8),
# pfctl(8) and nc(1). Run it as root with pf available and a release build:
#
#   cargo build --release && sh tests/pf-e2e.sh
#
# Exit status: 0 when every case holds, 1 on the first that does not. Each
# kernel fact is printed as it is found ("pf-e2e: kernel: ..."); one that
# differs from docs/pf-kernel.md fails the run.

set -eu

cd "$(dirname "$0")/.."
BIN=${PFKNOCK_BIN:-$PWD/target/release/pfknock}
OS=$(uname -s)
case "$OS" in
FreeBSD | OpenBSD) ;;
*)
	echo "pf-e2e: FreeBSD or OpenBSD only" >&2
	exit 2
	;;
esac
[ "$(id -u)" = 0 ] || { echo "pf-e2e: run as root" >&2; exit 2; }
[ -x "$BIN" ] || { echo "pf-e2e: build first: cargo build --release" >&2; exit 2; }
if [ "$OS" = FreeBSD ]; then kldload -n pf; fi

SRV=pfk_srv_$$
CLI=pfk_cli_$$
SRV_IP=198.18.0.1
CLI_IP=198.18.0.2
# OpenBSD: the routing domains, and the numbers of their lo and pair.
SRV_RT=11
CLI_RT=12
tmp=$(mktemp -d /tmp/pfknock-e2e.XXXXXX)
chmod 755 "$tmp"
epair=

cleanup() {
	if [ "$OS" = FreeBSD ]; then
		jail -r "$SRV" 2>/dev/null || true
		jail -r "$CLI" 2>/dev/null || true
		if [ -n "$epair" ]; then ifconfig "${epair}a" destroy 2>/dev/null || true; fi
	else
		if [ -f "$tmp/pid" ]; then kill "$(cat "$tmp/pid")" 2>/dev/null || true; fi
		pkill -T "$SRV_RT" nc 2>/dev/null || true
		pfctl -q -a pfknock -F all 2>/dev/null || true
		pfctl -q -a pfknock-e2e -F all 2>/dev/null || true
		for i in "pair$SRV_RT" "pair$CLI_RT" "lo$SRV_RT" "lo$CLI_RT"; do
			ifconfig "$i" destroy 2>/dev/null || true
		done
		pfctl -q -f /etc/pf.conf 2>/dev/null || true
	fi
	rm -rf "$tmp"
}
trap cleanup EXIT INT TERM

# A command on the server's side, or on the client's.
srv() {
	if [ "$OS" = FreeBSD ]; then jexec "$SRV" "$@"; else route -T "$SRV_RT" exec "$@"; fi
}
cli() {
	if [ "$OS" = FreeBSD ]; then jexec "$CLI" "$@"; else route -T "$CLI_RT" exec "$@"; fi
}

fail() {
	echo "pf-e2e: FAIL: $*" >&2
	srv pfctl -a pfknock -sr >&2 2>&1 || true
	srv pfctl -a pfknock -sT >&2 2>&1 || true
	exit 1
}
pass() { echo "pf-e2e: ok: $*"; }
fact() { echo "pf-e2e: kernel: $*"; }

# A TCP connect from the client to the server's port: 0 when it opens.
reach() { cli nc -z -w 2 "$SRV_IP" "$1" >/dev/null 2>&1; }
shut() { ! cli nc -z -w 1 "$SRV_IP" "$1" >/dev/null 2>&1; }
open_() { reach "$1" || fail "$2: port $1 should be open"; }
closed() { if reach "$1"; then fail "$2: port $1 should be closed"; fi; }
pfk_srv() { srv "$BIN" -c "$tmp/pfknock.toml" "$@"; }
pfk_cli() { cli "$BIN" -c "$tmp/pfknock.toml" "$@"; }
# Is the client in table $1 of the anchor?
has_cli() { srv pfctl -a pfknock -t "$1" -T show 2>/dev/null | grep -qw "$CLI_IP"; }
no_cli() { ! has_cli "$1"; }

# Wait up to $1 seconds for "$2 ..." to succeed.
within() {
	n=$(($1 * 4))
	shift
	while [ "$n" -gt 0 ]; do
		if "$@"; then return 0; fi
		sleep 0.25
		n=$((n - 1))
	done
	return 1
}

# --- the network -----------------------------------------------------------
if [ "$OS" = FreeBSD ]; then
	epair=$(ifconfig epair create)
	epair=${epair%a}
	jail -c name="$SRV" path=/ host.hostname=srv vnet persist \
		vnet.interface="${epair}a" allow.raw_sockets
	jail -c name="$CLI" path=/ host.hostname=cli vnet persist \
		vnet.interface="${epair}b"
	srv ifconfig lo0 up
	srv ifconfig "${epair}a" inet "$SRV_IP/24" up
	cli ifconfig lo0 up
	cli ifconfig "${epair}b" inet "$CLI_IP/24" up
else
	ifconfig "lo$SRV_RT" rdomain "$SRV_RT" inet 127.0.0.1/8 up
	ifconfig "lo$CLI_RT" rdomain "$CLI_RT" inet 127.0.0.1/8 up
	ifconfig "pair$SRV_RT" rdomain "$SRV_RT" inet "$SRV_IP/24" up
	ifconfig "pair$CLI_RT" rdomain "$CLI_RT" inet "$CLI_IP/24" up
	ifconfig "pair$SRV_RT" patch "pair$CLI_RT"
fi

# --- pf and pfknock on the server's side -----------------------------------
if [ "$OS" = FreeBSD ]; then
	cat >"$tmp/pf.conf" <<'EOF'
set skip on lo0
block drop
anchor "pfknock"
pass out all
EOF
else
	# The host's own traffic passes as before; the test's interface is
	# closed but for what the anchor lets in.
	cat >"$tmp/pf.conf" <<EOF
set skip on lo
pass
block drop on pair$SRV_RT
anchor "pfknock"
pass out on pair$SRV_RT
EOF
fi
cat >"$tmp/pfknock.toml" <<'EOF'
anchor = "pfknock"
poll = "1s"

[[service]]
name    = "ssh"
protect = [2222]
knock   = [1234]
close   = 1240
rate    = "2/10"
ttl     = "6s"

[[service]]
name    = "seq"
protect = [3333]
knock   = [7001, 7002]
rate    = "2/10"
window  = "10s"
ttl     = "30s"
EOF
chmod 600 "$tmp/pfknock.toml"
srv pfctl -q -e 2>/dev/null || true
srv pfctl -q -f "$tmp/pf.conf"
pfk_srv check >/dev/null
pfk_srv load
# Listeners on the protected ports (nc -k: keep listening).
srv sh -c "nc -lk $SRV_IP 2222 >/dev/null 2>&1 & nc -lk $SRV_IP 3333 >/dev/null 2>&1 &"
sleep 0.5

# --- the kernel ---------------------------------------------------------------
fact "$OS $(uname -r)"
# FreeBSD 15 has pf netlink commands for tables (netpfil/pf/pf_nl.h);
# pfknock keeps the DIOCR* ioctls on every release (docs/pf-kernel.md,
# FreeBSD's netlink): the load above and every case below go through them.
if [ -e /usr/include/netpfil/pf/pf_nl.h ]; then
	fact "pf_nl.h is here: this pf speaks netlink too; pfknock's table requests are ioctls"
fi

# What DIOCRCLRASTATS (pfctl -T zero ADDR) writes into an entry's time
# stamp: 0 on FreeBSD, the time on OpenBSD (docs/pf-kernel.md, Time
# stamps). A table of the test's own, in an anchor of its own.
srv pfctl -q -a pfknock-e2e -t probe -T add 198.18.0.9
sleep 2
if srv pfctl -q -a pfknock-e2e -t probe -T zero 198.18.0.9 2>/dev/null; then
	cleared=$(srv pfctl -a pfknock-e2e -t probe -T show -v | sed -n 's/.*Cleared: *//p')
	case "$cleared" in
	*1969* | *1970*) stamp=0 ;;
	*) stamp=now ;;
	esac
	fact "DIOCRCLRASTATS stamps $stamp ($cleared)"
	if [ "$OS" = FreeBSD ]; then want=0; else want=now; fi
	[ "$stamp" = "$want" ] ||
		fail "docs/pf-kernel.md says $OS's DIOCRCLRASTATS stamps $want"
else
	fact "this pfctl cannot zero one address (-T zero ADDR): stamp not read"
fi
srv pfctl -q -a pfknock-e2e -F all

# --- the cases --------------------------------------------------------------
closed 2222 "before any knock"
closed 3333 "before any knock"
pass "closed before a knock"

# Too few hits: rate 2/10 trips on the third connect; two do nothing.
pfk_cli knock -s ssh -n 2 "$SRV_IP" >/dev/null 2>&1 || true
closed 2222 "two connects (rate 2/10)"
pass "too few hits stay closed"

# pf's rate is an estimate that decays linearly over S (pf.c
# pf_add_threshold): three connects 4 s apart count 1000, 1600, 1960,
# never past 2000, so they do not trip 2/10 (pfknock(8), RATES).
pfk_cli knock -s ssh -d 4000 "$SRV_IP" >/dev/null 2>&1 || true
closed 2222 "three connects 4 s apart (rate 2/10)"
fact "three connects 4 s apart do not trip 2/10: a decaying estimate"
pass "a knock spread over the window stays closed"

# The connection that trips the rate is dropped (pf kills the overloading
# state); pfknock knock expects that and exits 0. The host goes into the
# table from a task a moment later on FreeBSD (pf_overload_task), at once on
# OpenBSD; --verify waits for either, so the port is open as it returns.
pfk_cli knock -s ssh --verify 2222 "$SRV_IP" >/dev/null ||
	fail "pfknock knock --verify should see 2222 open"
open_ 2222 "right after knock --verify returned"
closed 3333 "the other service's door after ssh's knock"
pass "open after pfknock knock --verify, only its own door"
# The knock landed in the intake, and no daemon runs to move it.
has_cli ssh_renew || fail "the knock should be in <ssh_renew>"
no_cli ssh || fail "nothing but the daemon puts a knock into <ssh>"
pass "a knock lands in the intake <ssh_renew>"

# The daemon moves it into <ssh> at its first poll, and expires the
# authorization after ttl (6 s, from the knock) + a poll.
pfk_srv run -p "$tmp/pid"
within 3 has_cli ssh || fail "the daemon should move the knock into <ssh>"
no_cli ssh_renew || fail "the daemon should empty <ssh_renew>"
open_ 2222 "after the move"
pass "the daemon moves a knock from the intake into <ssh>"
within 12 shut 2222 || fail "2222 still open after the ttl"
pass "closed after the ttl"

# Renewal: a knock while authorized gives a fresh ttl (the daemon renews
# from <ssh_renew>, by DIOCRCLRASTATS where it stamps the time, else by
# deleting and adding again): still open 8 s after the first knock, closed
# after the renewed 6 s.
pfk_cli knock -s ssh "$SRV_IP" >/dev/null
within 3 reach 2222 || fail "knock before the renewal"
sleep 4
pfk_cli knock -s ssh "$SRV_IP" >/dev/null
sleep 4
open_ 2222 "8 s after the first knock, 4 s after the second"
within 10 shut 2222 || fail "2222 still open after the renewed ttl"
pass "a second knock renews the ttl"

# Knock progress across a reload of the anchor: pf counts a source per rule
# (its source node), and a load makes the rules anew, so two connects, a
# SIGHUP, then one more do not open (pfknock(8), RATES). First let the
# estimate of the knocks above decay (S = 10 s).
sleep 11
pfk_cli knock -s ssh -n 2 "$SRV_IP" >/dev/null 2>&1 || true
kill -HUP "$(cat "$tmp/pid")"
sleep 1
pfk_cli knock -s ssh -n 1 "$SRV_IP" >/dev/null 2>&1 || true
sleep 1
if reach 2222; then
	fact "knock progress survives an anchor reload"
	fail "pfknock(8) says a reload restarts knock progress on pf"
fi
fact "knock progress starts over at an anchor reload"
pass "a reload between the hits of a knock restarts it"
sleep 11

# Wrong order: 7002 then 7001 opens nothing and holds the client in
# <seq_hold> for the rate's 10 s (knocks ignored, progress reset by the
# daemon); after the hold the right order opens.
pfk_cli knock -n 3 "$SRV_IP" 7002 7001 >/dev/null 2>&1 || true
closed 3333 "knocked 7002 before 7001"
within 3 has_cli seq_hold || fail "a wrong knock should put the client into <seq_hold>"
pfk_cli knock -s seq "$SRV_IP" >/dev/null 2>&1 || true
closed 3333 "the right order during the hold"
within 14 no_cli seq_hold || fail "the daemon should end the hold after 10 s"
pfk_cli knock -s seq "$SRV_IP" >/dev/null
within 3 reach 3333 || fail "the right order should open 3333"
pass "wrong order stays closed and holds, right order opens after the hold"

# Reload keeps authorizations: SIGHUP and pfknock load.
pfk_cli knock -s ssh "$SRV_IP" >/dev/null
within 3 reach 2222 || fail "knock before reload"
kill -HUP "$(cat "$tmp/pid")"
sleep 1
open_ 2222 "after SIGHUP"
pfk_srv load
open_ 2222 "after pfknock load"
pass "reload and load keep the authorization"

# Revoke.
pfk_srv revoke "$CLI_IP" ssh >/dev/null
closed 2222 "after revoke"
pass "revoke closes"

# Close knock: pf overloads the host into <ssh_close>, and the daemon takes
# it out of <ssh> within a poll and empties <ssh_close>.
pfk_cli knock -s ssh "$SRV_IP" >/dev/null
within 3 reach 2222 || fail "knock before the close knock"
pfk_cli knock -s ssh --close "$SRV_IP" >/dev/null
within 3 shut 2222 || fail "a close knock should close 2222"
within 3 no_cli ssh_close || fail "the daemon should empty <ssh_close>"
pass "a close knock closes"

# Self-heal: rc.d/pf's reload flushes everything and loads pf.conf again;
# the daemon puts its anchor back, and knocking works again.
srv pfctl -q -F all 2>/dev/null
srv pfctl -q -f "$tmp/pf.conf"
restored() { srv pfctl -a pfknock -sr 2>/dev/null | grep -q synproxy; }
within 5 restored || fail "the daemon did not restore its anchor after pfctl -F all"
closed 2222 "after the flush, without a knock"
pfk_cli knock -s ssh "$SRV_IP" >/dev/null
within 3 reach 2222 || fail "a knock after self-heal should open"
pass "self-heal after pfctl -F all"

kill "$(cat "$tmp/pid")"
echo "pf-e2e: all cases held"

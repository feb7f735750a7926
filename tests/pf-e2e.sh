#!/bin/sh
# pfknock against the real pf: the nftables end-to-end cases, on FreeBSD 14
# and 15.
#
# Two vnet jails joined by an epair(4): "srv" (198.18.0.1) runs pf with the
# main ruleset of examples/pf.conf, pfknock's anchor and daemon, and a
# listener on the protected port; "cli" (198.18.0.2) knocks. The host's own
# interfaces and ruleset are not touched: everything happens inside the
# jails, which are removed on exit, also on failure.
#
# It has NOT been run by pfknock's authors (no FreeBSD where it was
# written): it follows jail(8), jexec(8), epair(4), ifconfig(8), pfctl(8)
# and nc(1). Run it as root on a FreeBSD 14 or 15 host with pf available
# (kldload pf) and a release build:
#
#   cargo build --release && sh tests/pf-e2e.sh
#
# Exit status: 0 when every case holds, 1 on the first that does not.
set -eu

cd "$(dirname "$0")/.."
BIN=${PFKNOCK_BIN:-$PWD/target/release/pfknock}
[ "$(uname -s)" = FreeBSD ] || { echo "pf-e2e: FreeBSD only" >&2; exit 2; }
[ "$(id -u)" = 0 ] || { echo "pf-e2e: run as root" >&2; exit 2; }
[ -x "$BIN" ] || { echo "pf-e2e: build first: cargo build --release" >&2; exit 2; }
kldload -n pf

SRV=pfk_srv_$$
CLI=pfk_cli_$$
SRV_IP=198.18.0.1
CLI_IP=198.18.0.2
tmp=$(mktemp -d /tmp/pfknock-e2e.XXXXXX)
chmod 755 "$tmp"
epair=

cleanup() {
	jail -r "$SRV" 2>/dev/null || true
	jail -r "$CLI" 2>/dev/null || true
	if [ -n "$epair" ]; then ifconfig "${epair}a" destroy 2>/dev/null || true; fi
	rm -rf "$tmp"
}
trap cleanup EXIT INT TERM

fail() {
	echo "pf-e2e: FAIL: $*" >&2
	jexec "$SRV" pfctl -a pfknock -sr >&2 2>&1 || true
	jexec "$SRV" pfctl -a pfknock -sT >&2 2>&1 || true
	exit 1
}
pass() { echo "pf-e2e: ok: $*"; }

# A TCP connect from the client to the server's port: 0 when it opens.
reach() { jexec "$CLI" nc -z -w 2 "$SRV_IP" "$1" >/dev/null 2>&1; }
open_() { reach "$1" || fail "$2: port $1 should be open"; }
closed() { if reach "$1"; then fail "$2: port $1 should be closed"; fi; }
srv() { jexec "$SRV" "$@"; }
pfk_srv() { jexec "$SRV" "$BIN" -c "$tmp/pfknock.toml" "$@"; }
pfk_cli() { jexec "$CLI" "$BIN" -c "$tmp/pfknock.toml" "$@"; }

# Wait up to $1 seconds for "$2 ..." to succeed.
within() {
	n=$(( $1 * 4 ))
	shift
	while [ "$n" -gt 0 ]; do
		if "$@"; then return 0; fi
		sleep 0.25
		n=$(( n - 1 ))
	done
	return 1
}

# --- the network -----------------------------------------------------------
epair=$(ifconfig epair create)
epair=${epair%a}
jail -c name="$SRV" path=/ host.hostname=srv vnet persist \
	vnet.interface="${epair}a" allow.raw_sockets
jail -c name="$CLI" path=/ host.hostname=cli vnet persist \
	vnet.interface="${epair}b"
srv ifconfig lo0 up
srv ifconfig "${epair}a" inet "$SRV_IP/24" up
jexec "$CLI" ifconfig lo0 up
jexec "$CLI" ifconfig "${epair}b" inet "$CLI_IP/24" up

# --- pf and pfknock in the server jail -----------------------------------------
cat >"$tmp/pf.conf" <<'EOF'
set skip on lo0
block drop
anchor "pfknock"
pass out all
EOF
cat >"$tmp/pfknock.toml" <<'EOF'
anchor = "pfknock"
poll = "1s"

[[service]]
name    = "ssh"
protect = [2222]
knock   = [1234]
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
pass "a knock spread over the window stays closed"

pfk_cli knock -s ssh "$SRV_IP" >/dev/null
within 3 reach 2222 || fail "after pfknock knock: 2222 should open"
closed 3333 "the other service's door after ssh's knock"
pass "open after pfknock knock, only its own door"

# The daemon expires the authorization after ttl (6 s) + a poll.
pfk_srv run -p "$tmp/pid"
within 12 sh -c "! jexec $CLI nc -z -w 1 $SRV_IP 2222 >/dev/null 2>&1" ||
	fail "2222 still open after the ttl"
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
within 10 sh -c "! jexec $CLI nc -z -w 1 $SRV_IP 2222 >/dev/null 2>&1" ||
	fail "2222 still open after the renewed ttl"
pass "a second knock renews the ttl"

# Wrong order: 7002 then 7001 opens nothing and holds the client in
# <seq_hold> for the rate's 10 s (knocks ignored, progress reset by the
# daemon); after the hold the right order opens.
held() { srv pfctl -a pfknock -t seq_hold -T show 2>/dev/null | grep -qw "$CLI_IP"; }
pfk_cli knock -n 3 "$SRV_IP" 7002 7001 >/dev/null 2>&1 || true
closed 3333 "knocked 7002 before 7001"
within 3 held || fail "a wrong knock should put the client into <seq_hold>"
pfk_cli knock -s seq "$SRV_IP" >/dev/null 2>&1 || true
closed 3333 "the right order during the hold"
within 14 sh -c "! jexec $SRV pfctl -a pfknock -t seq_hold -T show 2>/dev/null | grep -qw $CLI_IP" ||
	fail "the daemon should end the hold after 10 s"
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

# Self-heal: rc.d/pf's reload flushes everything and loads pf.conf again;
# the daemon puts its anchor back, and knocking works again.
srv pfctl -q -F all 2>/dev/null
srv pfctl -q -f "$tmp/pf.conf"
within 5 sh -c "jexec $SRV pfctl -a pfknock -sr 2>/dev/null | grep -q synproxy" ||
	fail "the daemon did not restore its anchor after pfctl -F all"
closed 2222 "after the flush, without a knock"
pfk_cli knock -s ssh "$SRV_IP" >/dev/null
within 3 reach 2222 || fail "a knock after self-heal should open"
pass "self-heal after pfctl -F all"

kill "$(cat "$tmp/pid")"
echo "pf-e2e: all cases held"

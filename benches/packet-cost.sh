#!/bin/bash
# What pfknock's table costs a packet that is none of its business, at N
# services (each its own protected, knock and close port): the median and
# 90th percentile of 2,000 TCP connects from one namespace to a listener
# on an unprotected port of another, over a veth pair, each ended by a
# reset (no TIME_WAIT to run out of ports), for each build given in
# turn, next to the same with no table at all (the floor).
#
# Root only; needs iproute2, nft and python3. Nothing leaves the two
# namespaces:
#   cargo build --release && sudo bash benches/packet-cost.sh \
#       "1 250 1000" target/release/pfknock [OTHER-BUILD ...]
set -euo pipefail
cd "$(dirname "$0")/.."
SIZES=${1:-"1 250"}
shift || true
# shellcheck source=benches/common/ns.sh
. benches/common/ns.sh
bench_builds "$@"
S=pfkpc-s-$$
C=pfkpc-c-$$
bench_pair "$S" "$C" 198.18.203
ip netns exec "$S" python3 -c '
import socket
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", 5000))
s.listen(512)
while True:
    s.accept()[0].close()
' &
echo $! >"$tmp/pid"
connects() {
	ip netns exec "$C" python3 -c '
import socket, struct, time
t = []
for _ in range(2000):
    a = time.perf_counter()
    s = socket.create_connection(("198.18.203.1", 5000), timeout=2)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    s.close()
    t.append(time.perf_counter() - a)
t.sort()
print("median %.0f us, p90 %.0f us" % (t[1000] * 1e6, t[1800] * 1e6))
'
}
for _ in $(seq 50); do
	ip netns exec "$C" bash -c 'exec 3<>/dev/tcp/198.18.203.1/5000' 2>/dev/null && break
	sleep 0.1
done

printf '%-9s %-32s %s\n' services build "connect to an unprotected port"
printf '%-9s %-32s %s\n' - "no table (floor)" "$(connects)"
for n in $SIZES; do
	bench_services "$n" "$tmp/s.toml"
	for b in "${BINS[@]}"; do
		ip netns exec "$S" nft flush ruleset
		ip netns exec "$S" "$b" -c "$tmp/s.toml" -S "$tmp/ctl.sock" load >/dev/null
		printf '%-9s %-32s %s\n' "$n" "$b" "$(connects)"
	done
done

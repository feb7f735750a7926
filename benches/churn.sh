#!/bin/bash
# The Linux daemon's memory under churn: 500 new authorizations a second
# (through nft, which the daemon hears of as notifications), each expiring
# after 5 s, for SECONDS (default 3600); its resident memory every minute.
# Flat means nothing leaks in the map, the deadlines or the batches.
#
# Root only; needs iproute2, nft, python3 and a release build:
#   cargo build --release && sudo bash benches/churn.sh [SECONDS]
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=$PWD/target/release/pfknock
DUR=${1:-3600}
[ -x "$BIN" ] || { echo "build first: cargo build --release" >&2; exit 1; }
NS=pfkc-$$
tmp=$(mktemp -d)
cleanup() {
	if [ -s "$tmp/pid" ]; then kill "$(cat "$tmp/pid")" 2>/dev/null || true; fi
	ip netns del "$NS" 2>/dev/null || true
	rm -rf "$tmp"
}
trap cleanup EXIT
ip netns add "$NS"
ip -n "$NS" link set lo up
cat >"$tmp/pfknock.toml" <<EOT
[[service]]
name    = "ssh"
protect = [2222]
knock   = [1234]
ttl     = "5s"
size    = 1048576
EOT
chmod 600 "$tmp/pfknock.toml"
ip netns exec "$NS" "$BIN" -c "$tmp/pfknock.toml" run -p "$tmp/pid"
pid=$(cat "$tmp/pid")
rss() { awk '/^VmRSS/ {print $2}' /proc/"$pid"/status; }
echo "seconds  daemon RSS (kB)  authorizations"
start=$(date +%s)
i=0
while [ $(( $(date +%s) - start )) -lt "$DUR" ]; do
	python3 -c "
import sys
i = int(sys.argv[1])
print('add element inet pfknock ssh_4 { ' + ', '.join(
    '10.%d.%d.%d' % ((i + k) >> 16 & 255, (i + k) >> 8 & 255, (i + k) & 255)
    for k in range(500)) + ' }')" "$i" | ip netns exec "$NS" nft -f -
	i=$(( i + 500 ))
	t=$(( $(date +%s) - start ))
	if [ "$t" -ge "${next:-0}" ]; then
		next=$(( t + 60 ))
		n=$(ip netns exec "$NS" nft list set inet pfknock ssh_4 | grep -o 'expires' | wc -l)
		echo "$t  $(rss)  $n"
	fi
	sleep 1
done
echo "end  $(rss)"

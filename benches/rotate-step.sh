#!/bin/bash
# The cost of one step of a rotating service on nftables: what the daemon
# does at a boundary (read the secret, derive the ports, one terse listing,
# one nft -f transaction that replaces the rules and keeps the sets), here
# as `pfknock load`, with 0 and with 10,000 authorizations side by side.
# Also the pf side that runs here: rendering the anchor (pfctl -f itself
# needs a BSD kernel).
#
# Root only; needs iproute2, nft and a release build:
#   cargo build --release && sudo bash benches/rotate-step.sh
# Nothing leaves the namespace pfkr-$$; it is removed on exit.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=$PWD/target/release/pfknock
[ -x "$BIN" ] || { echo "build first: cargo build --release" >&2; exit 1; }
NS=pfkr-$$
# shellcheck source=benches/common/ns.sh
. benches/common/ns.sh
bench_ns "$NS"

"$BIN" keygen "$tmp/ssh.key" >/dev/null
cat >"$tmp/pfknock.toml" <<EOT
[[service]]
name    = "ssh"
protect = [22]
ttl     = "1h"
size    = 65536
rotate  = { secret = "$tmp/ssh.key", range = "40000-49999", ports = 2, step = "30s" }
EOT
chmod 600 "$tmp/pfknock.toml"
run() { ip netns exec "$NS" "$@"; }

# Median wall time of 20 runs of a command, in milliseconds.
median() {
	local t=()
	for _ in $(seq 20); do
		local a b
		a=$(date +%s%N)
		"$@" >/dev/null
		b=$(date +%s%N)
		t+=($(( (b - a) / 1000 )))
	done
	printf '%s\n' "${t[@]}" | sort -n | awk '{v[NR]=$1} END {printf "%.2f", v[int((NR+1)/2)]/1000}'
}

run "$BIN" -c "$tmp/pfknock.toml" -S "$tmp/ctl.sock" load
echo "authorizations  step (pfknock load, ms, median of 20)"
echo "0               $(median run "$BIN" -c "$tmp/pfknock.toml" -S "$tmp/ctl.sock" load)"
# 10,000 authorizations, in one transaction.
python3 -c '
print("add element inet pfknock ssh_4 { " + ", ".join(
    "198.18.%d.%d" % (i // 250, 1 + i % 250) for i in range(10000)) + " }")
' >"$tmp/add.nft"
run nft -f "$tmp/add.nft"
echo "10000           $(median run "$BIN" -c "$tmp/pfknock.toml" -S "$tmp/ctl.sock" load)"
left=$(run nft -j list set inet pfknock ssh_4 | python3 -c '
import json, sys
print(sum(len(s["set"].get("elem", [])) for s in json.load(sys.stdin)["nftables"] if "set" in s))')
echo "authorizations kept after 40 steps: $left of 10000"
echo "pf: render the anchor (process included): $(median "$BIN" -c "$tmp/pfknock.toml" -S "$tmp/ctl.sock" render) ms"

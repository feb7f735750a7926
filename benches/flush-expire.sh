#!/bin/bash
# `pfknock show` (time and peak memory, text and --json), `pfknock flush`
# and `pfknock expire` (a tenth of the set due) at large sets, next to
# their floor: one dump of the set (`nft list set`), `nft flush set`,
# and `nft flush set` with a listener of the table's events (as a running
# daemon is): the kernel then builds a notification for each element it
# removes, as it does for the echo `pfknock flush` asks for its audit
# lines (`nft -e` asks for none on a flush). Each binary given is timed
# on the same sets in turn, so two builds compare side by side in one
# run. SETTLE=0 measures them right
# after the set was filled instead (default: 5 s later).
#
# Root only; needs iproute2, nft and python3. Nothing leaves the
# namespace:
#   cargo build --release && sudo bash benches/flush-expire.sh \
#       "100000 1000000" target/release/pfknock [OTHER-BUILD ...]
set -euo pipefail
cd "$(dirname "$0")/.."
SIZES=${1:-100000}
shift || true
BINS=("${@:-target/release/pfknock}")
for b in "${BINS[@]}"; do
	[ -x "$b" ] || { echo "no binary $b: cargo build --release" >&2; exit 1; }
done
NS=pfkf-$$
# shellcheck source=benches/common/ns.sh
. benches/common/ns.sh
bench_ns "$NS"
run() { ip netns exec "$NS" "$@"; }
bench_conf 2097152
run "${BINS[0]}" -c "$tmp/pfknock.toml" -S "$tmp/ctl.sock" load
ms() { local a b; a=$(date +%s%N); "$@" >/dev/null 2>&1; b=$(date +%s%N); echo $(( (b - a) / 1000000 )); }

# n elements, the first tenth 1000 s old (timeout 1h, 2600 s left): due
# for `expire -o 600s` however long the run takes.
fill() {
	run nft flush set inet pfknock ssh_4
	python3 - "$1" >"$tmp/add.nft" <<'PY'
import sys
n = int(sys.argv[1])
old = n // 10
for start in range(0, n, 50000):
    xs = []
    for i in range(start, min(n, start + 50000)):
        a = "10.%d.%d.%d" % (i >> 16, (i >> 8) & 255, i & 255)
        xs.append(a + (" timeout 3600s expires 2600s" if i < old else ""))
    print("add element inet pfknock ssh_4 { %s }" % ", ".join(xs))
PY
	run nft -f "$tmp/add.nft"
	# Let the set's hash table finish growing: a dump taken meanwhile is
	# unreliable and pfknock takes it again (netlink::Lookup), which this
	# measures apart, as "just filled".
	sleep "${SETTLE:-5}"
}

# `nft flush set` with a listener in the table's events group
# (NFNLGRP_NFTABLES): its time, and what the listener heard in $tmp/heard.
heard() {
	rm -f "$tmp/ready"
	run python3 benches/common/listen.py "$tmp/ready" >"$tmp/heard" 2>&1 &
	local l=$!
	for _ in $(seq 100); do [ -e "$tmp/ready" ] && break; sleep 0.1; done
	ms run nft flush set inet pfknock ssh_4
	wait "$l"
}

printf '%-9s %-28s %-10s %-10s\n' entries binary "flush" "expire"
for n in $SIZES; do
	fill "$n"
	printf '%-9s %-28s %-10s %-10s\n' "$n" "floor: nft list / flush set" \
		"$(ms run nft list set inet pfknock ssh_4) ms" "-"
	fill "$n"
	printf '%-9s %-28s %-10s\n' "$n" "nft flush set" "$(ms run nft flush set inet pfknock ssh_4) ms"
	fill "$n"
	printf '%-9s %-28s %-10s %s\n' "$n" "nft flush set, heard" "$(heard) ms" "$(cat "$tmp/heard")"
	fill "$n"
	for b in "${BINS[@]}"; do
		for f in "" --json; do
			# shellcheck disable=SC2086 # $f is one word or none
			m=$(run /usr/bin/time -f '%e s, peak %M KB' "$b" -c "$tmp/pfknock.toml" -S "$tmp/ctl.sock" show $f \
				2>&1 >/dev/null | tail -1)
			printf '%-9s %-28s show %-7s %s\n' "$n" "$(basename "$b")" "${f:-(text)}" "$m"
		done
	done
	for b in "${BINS[@]}"; do
		fill "$n"
		e=$(ms run "$b" -c "$tmp/pfknock.toml" -S "$tmp/ctl.sock" expire -o 600s)
		left=$(run nft list set inet pfknock ssh_4 | grep -o '10\.[0-9.]*' | wc -l)
		f=$(ms run "$b" -c "$tmp/pfknock.toml" -S "$tmp/ctl.sock" flush)
		printf '%-9s %-28s %-10s %-10s (%s left after expire)\n' "$n" "$(basename "$b")" "${f} ms" "${e} ms" "$left"
	done
done

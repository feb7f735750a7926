#!/bin/bash
# `pfknock check` of a config of N services (each its own protected, knock
# and close port, all else default), next to its floor: `nft -c` of the
# table the first binary renders, which has the kernel make every set of it and then
# throws the transaction away; and `pfknock load` of it, first and again,
# next to `nft -f` of the same table. pfknock's own checks alone are
# `cargo bench --bench config_check`. Also the kernel memory the loaded
# table holds (Slab and vmalloc in /proc/meminfo, before and after one
# `nft -f`; other work on the machine makes this rough). Each binary given
# is timed in turn, so two builds compare side by side in one run.
#
# Root only; needs iproute2, nft and python3. Nothing leaves the
# namespace:
#   cargo build --release && sudo bash benches/check-services.sh \
#       "250 500 1000" target/release/pfknock [OTHER-BUILD ...]
set -euo pipefail
cd "$(dirname "$0")/.."
SIZES=${1:-"250 500"}
shift || true
NS=pfkk-$$
# shellcheck source=benches/common/ns.sh
. benches/common/ns.sh
bench_builds "$@"
bench_ns "$NS"
run() { ip netns exec "$NS" "$@"; }
ms() { local a b; a=$(date +%s%N); "$@" >/dev/null 2>&1; b=$(date +%s%N); echo $(( (b - a) / 1000000 )); }
kernel_kb() { awk '/^(Slab|VmallocUsed):/ { s += $2 } END { print s }' /proc/meminfo; }

printf '%-9s %-24s %-12s %s\n' services what time "kernel memory loaded"
for n in $SIZES; do
	bench_services "$n" "$tmp/s.toml"
	"${BINS[0]}" -c "$tmp/s.toml" render --nft >"$tmp/s.nft"
	for b in "${BINS[@]}"; do
		printf '%-9s %-24s %-12s\n' "$n" "$b check" \
			"$(ms run "$b" -c "$tmp/s.toml" -S "$tmp/ctl.sock" check) ms"
	done
	printf '%-9s %-24s %-12s\n' "$n" "floor: nft -c (first's)" "$(ms run nft -c -f "$tmp/s.nft") ms"
	# pfknock load into a namespace without its table, then again over it
	# (what SIGHUP and a rotation step do), beside nft -f below.
	for b in "${BINS[@]}"; do
		first=$(ms run "$b" -c "$tmp/s.toml" -S "$tmp/ctl.sock" load)
		again=$(ms run "$b" -c "$tmp/s.toml" -S "$tmp/ctl.sock" load)
		printf '%-9s %-24s %s\n' "$n" "$b load" "$first ms, again $again ms"
		run nft delete table inet pfknock
		run nft delete table inet pfknock_guard
		sleep 5
	done
	before=$(kernel_kb)
	t=$(ms run nft -f "$tmp/s.nft")
	after=$(kernel_kb)
	printf '%-9s %-24s %-12s %s\n' "$n" "nft -f (load)" "$t ms" \
		"$(( (after - before) / 1024 )) MB, $(( (after - before) / n )) KB a service"
	run nft delete table inet pfknock
	# The kernel frees a deleted table's sets after the call returns.
	sleep 5
done

#!/bin/bash
# The Linux daemon at rest, next to knockd, in one network namespace:
# CPU over a minute with nothing happening, resident memory, and the time
# of `pfknock show`, `pfknock expire` (nothing due) and `pfknock revoke`
# (one host), at 0, 10k, 65k, 100k and 1M authorizations (added straight
# to the set, ttl 1 h; SIZES="0 1000" for others). The window begins once
# the daemon's start has read them.
#
# Root only; needs iproute2, nft, python3, knockd and a release build:
#   cargo build --release && sudo bash benches/idle.sh [SECONDS]
# SECONDS is the CPU window (default 60). Nothing leaves the namespace.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=$PWD/target/release/pfknock
WIN=${1:-60}
SIZES=${SIZES:-"0 10000 65535 100000 1000000"}
[ -x "$BIN" ] || { echo "build first: cargo build --release" >&2; exit 1; }
command -v knockd >/dev/null || { echo "knockd not installed" >&2; exit 1; }
NS=pfki-$$
pids=()
bench_atexit() {
	kill "${pids[@]}" 2>/dev/null || true
	wait 2>/dev/null || true
}
# shellcheck source=benches/common/ns.sh
. benches/common/ns.sh
bench_ns "$NS"
ip -n "$NS" link add pkia type veth peer name pkib
ip -n "$NS" addr add 198.18.201.1/24 dev pkia
for d in pkia pkib; do ip -n "$NS" link set "$d" up; done
run() { ip netns exec "$NS" "$@"; }

bench_conf 1048576
cat >"$tmp/knockd.conf" <<EOT
[options]
	Interface = pkia
[ssh]
	sequence    = 7000,8000,9000
	seq_timeout = 5
	tcpflags    = syn
	command     = /bin/true
EOT
run "$BIN" -c "$tmp/pfknock.toml" -S "$tmp/ctl.sock" load

# CPU time of a process and all its threads, in nanoseconds.
cpu_ns() { cat /proc/"$1"/task/*/schedstat | awk '{s += $1} END {printf "%d\n", s}'; }
rss_kb() { awk '/^VmRSS/ {print $2}' /proc/"$1"/status; }
ms() { local a b; a=$(date +%s%N); "$@" >/dev/null 2>&1; b=$(date +%s%N); echo $(( (b - a) / 1000000 )); }
# Stop a process and wait (bounded) until it is gone.
stop() { kill "$1" 2>/dev/null || true; for _ in $(seq 100); do kill -0 "$1" 2>/dev/null || return 0; sleep 0.1; done; }

printf '%-9s %-22s %-12s %-22s %-9s %-9s %-9s\n' entries "pfknock CPU/min (ms)" "pfknock RSS" "knockd CPU/min (ms)" "show" "expire" "revoke"
for n in $SIZES; do
	run nft flush set inet pfknock ssh_4
	python3 - "$n" >"$tmp/add.nft" <<'PY'
import sys
n = int(sys.argv[1])
for start in range(0, n, 50000):
    xs = ", ".join("10.%d.%d.%d" % (i >> 16, (i >> 8) & 255, i & 255)
                   for i in range(start, min(n, start + 50000)))
    print("add element inet pfknock ssh_4 { %s }" % xs)
PY
	[ "$n" -gt 0 ] && run nft -f "$tmp/add.nft"
	# The start reads every set beside the loop (a minute or two at 1M):
	# the window begins once that reading has ended, as SIGUSR2 says.
	rm -f "$tmp/log.sock"
	python3 benches/common/pfk.py read-done "$tmp" &
	waiter=$!
	PFKNOCK_SYSLOG_SOCKET=$tmp/log.sock ip netns exec "$NS" "$BIN" -c "$tmp/pfknock.toml" \
		-S "$tmp/ctl.sock" run -f -p "$tmp/pid" 2>/dev/null &
	pids+=($!)
	ip netns exec "$NS" knockd -c "$tmp/knockd.conf" -i pkia >/dev/null 2>&1 &
	kdp=$!
	pids+=("$kdp")
	wait "$waiter"
	sleep 3
	pfp=$(cat "$tmp/pid")
	p0=$(cpu_ns "$pfp") k0=$(cpu_ns "$kdp")
	sleep "$WIN"
	p1=$(cpu_ns "$pfp") k1=$(cpu_ns "$kdp")
	rss=$(rss_kb "$pfp")
	show=$(ms run "$BIN" -c "$tmp/pfknock.toml" -S "$tmp/ctl.sock" show)
	exp=$(ms run "$BIN" -c "$tmp/pfknock.toml" -S "$tmp/ctl.sock" expire)
	rev=$(ms run "$BIN" -c "$tmp/pfknock.toml" -S "$tmp/ctl.sock" revoke 10.0.0.7)
	printf '%-9s %-22s %-12s %-22s %-9s %-9s %-9s\n' "$n" \
		"$(awk -v d=$((p1 - p0)) -v w="$WIN" 'BEGIN {printf "%.2f", d / 1e6 * 60 / w}')" \
		"$((rss / 1024)) MB" \
		"$(awk -v d=$((k1 - k0)) -v w="$WIN" 'BEGIN {printf "%.2f", d / 1e6 * 60 / w}')" \
		"${show} ms" "${exp} ms" "${rev} ms"
	stop "$pfp"
	stop "$kdp"
	rm -f "$tmp/pid"
done

# shellcheck shell=bash
# Sourced by the bench scripts that run pfknock in network namespaces of
# their own (Linux, root). After `. benches/common/ns.sh`:
#
#   bench_ns NAME    makes the namespace NAME with lo up, and $tmp, a
#                    temporary directory. At exit, however the script
#                    ends: the script's own `bench_atexit` runs if it
#                    defines one, the daemon whose pid is in $tmp/pid is
#                    killed, the namespace deleted and $tmp removed.
#   bench_pair S C NET
#                    as bench_ns S, and a second namespace C (lo up,
#                    deleted at exit too), joined to S by a veth pair:
#                    vs$$ in S at NET.1/24, vc$$ in C at NET.2/24 (NET:
#                    three octets, such as 198.18.200).
#   bench_conf SIZE [RATE]
#                    writes $tmp/pfknock.toml (mode 600): one service,
#                    ssh, protecting 2222 behind a knock on 1234, ttl 1h,
#                    size SIZE, and rate RATE if given.
#   bench_services N FILE
#                    writes FILE (mode 600): N services, service i
#                    protecting port 1+i behind a knock on 20000+i and a
#                    close port 40000+i, all else default.
#   bench_builds BINARY...
#                    sets BINS to the builds given (target/release/pfknock
#                    if none), each of which must be there.
#
# Nothing here leaves the namespace.

BENCH_NSES=()

bench_ns() {
	tmp=$(mktemp -d)
	trap bench_exit EXIT
	bench_netns "$1"
}

bench_netns() {
	BENCH_NSES+=("$1")
	ip netns add "$1"
	ip -n "$1" link set lo up
}

bench_pair() {
	bench_ns "$1"
	bench_netns "$2"
	ip link add "vs$$" netns "$1" type veth peer name "vc$$" netns "$2"
	ip -n "$1" addr add "$3.1/24" dev "vs$$"
	ip -n "$2" addr add "$3.2/24" dev "vc$$"
	ip -n "$1" link set "vs$$" up
	ip -n "$2" link set "vc$$" up
}

bench_exit() {
	if declare -F bench_atexit >/dev/null; then bench_atexit || true; fi
	if [ -s "$tmp/pid" ]; then kill "$(cat "$tmp/pid")" 2>/dev/null || true; fi
	for n in "${BENCH_NSES[@]}"; do ip netns del "$n" 2>/dev/null || true; done
	rm -rf "$tmp"
}

bench_conf() {
	cat >"$tmp/pfknock.toml" <<EOT
[[service]]
name    = "ssh"
protect = [2222]
knock   = [1234]
ttl     = "1h"
size    = $1
EOT
	if [ -n "${2:-}" ]; then echo "rate    = \"$2\"" >>"$tmp/pfknock.toml"; fi
	chmod 600 "$tmp/pfknock.toml"
}

bench_services() {
	python3 - "$1" >"$2" <<'PY'
import sys
for i in range(int(sys.argv[1])):
    print('[[service]]\nname = "s%d"\nprotect = [%d]\nknock = [%d]\nclose = %d\n'
          % (i, 1 + i, 20000 + i, 40000 + i))
PY
	chmod 600 "$2"
}

bench_builds() {
	BINS=("${@:-target/release/pfknock}")
	for b in "${BINS[@]}"; do
		[ -x "$b" ] || { echo "no binary $b: cargo build --release" >&2; exit 1; }
	done
}

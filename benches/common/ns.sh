# shellcheck shell=bash
# Sourced by the bench scripts that run pfknock in one network namespace
# of their own (Linux, root). After `. benches/common/ns.sh`:
#
#   bench_ns NAME    makes the namespace NAME with lo up, and $tmp, a
#                    temporary directory. At exit, however the script
#                    ends: the script's own `bench_atexit` runs if it
#                    defines one, the daemon whose pid is in $tmp/pid is
#                    killed, the namespace deleted and $tmp removed.
#   bench_conf SIZE  writes $tmp/pfknock.toml (mode 600): one service,
#                    ssh, protecting 2222 behind a knock on 1234, ttl 1h,
#                    size SIZE.
#
# Nothing here leaves the namespace.

bench_ns() {
	BENCH_NS=$1
	tmp=$(mktemp -d)
	trap bench_exit EXIT
	ip netns add "$BENCH_NS"
	ip -n "$BENCH_NS" link set lo up
}

bench_exit() {
	if declare -F bench_atexit >/dev/null; then bench_atexit || true; fi
	if [ -s "$tmp/pid" ]; then kill "$(cat "$tmp/pid")" 2>/dev/null || true; fi
	ip netns del "$BENCH_NS" 2>/dev/null || true
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
	chmod 600 "$tmp/pfknock.toml"
}

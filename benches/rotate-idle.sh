#!/bin/bash
# A rotating service at rest on nftables: the daemon's CPU per minute,
# nft(8) children included (a cgroup per run), with a 30 s step and
# nothing else happening, for each build given, one after the other.
#
# Root only; needs iproute2, nft and cgroups (v1 cpuacct or v2):
#   cargo build --release && sudo bash benches/rotate-idle.sh BINARY...
# MINUTES (default 5) is the window. Nothing leaves the namespace; the
# namespace and the cgroups are removed on exit.
set -euo pipefail
cd "$(dirname "$0")/.."
[ $# -ge 1 ] || { echo "usage: $0 BINARY [BINARY ...]" >&2; exit 2; }
MIN=${MINUTES:-5}
NS=pfkri-$$
if [ -d /sys/fs/cgroup/cpuacct ]; then
	CG=/sys/fs/cgroup/cpuacct/pfkri-$$
	usage_ns() { cat "$CG/cpuacct.usage"; }
else
	CG=/sys/fs/cgroup/pfkri-$$
	usage_ns() { awk '/^usage_usec/ {print $2 * 1000}' "$CG/cpu.stat"; }
fi
pid=
bench_atexit() {
	[ -n "$pid" ] && kill "$pid" 2>/dev/null
	wait 2>/dev/null || true
	rmdir "$CG" 2>/dev/null || true
}
# shellcheck source=benches/common/ns.sh
. benches/common/ns.sh
bench_ns "$NS"
mkdir "$CG"

printf '%-40s %s\n' build "CPU/min (ms, nft children included)"
for bin in "$@"; do
	"$bin" keygen "$tmp/ssh.key" >/dev/null 2>&1
	cat >"$tmp/pfknock.toml" <<EOT
[[service]]
name    = "ssh"
protect = [22]
ttl     = "1h"
rotate  = { secret = "$tmp/ssh.key", range = "40000-49999", ports = 2, step = "30s" }
EOT
	chmod 600 "$tmp/pfknock.toml"
	# The daemon joins the cgroup before it starts, so its nft(8)
	# children count too.
	sh -c 'echo $$ >"$1/cgroup.procs"; shift; exec "$@"' sh "$CG" \
		ip netns exec "$NS" "$bin" -c "$tmp/pfknock.toml" -S "$tmp/ctl.sock" run -f -p "$tmp/pid" \
		-S "$tmp/sock" 2>/dev/null &
	pid=$!
	for _ in $(seq 100); do [ -s "$tmp/pid" ] && break; sleep 0.1; done
	sleep 3
	a=$(usage_ns)
	sleep $((MIN * 60))
	b=$(usage_ns)
	kill "$pid"
	wait "$pid" 2>/dev/null || true
	pid=
	printf '%-40s %s\n' "$bin" \
		"$(awk -v d=$((b - a)) -v m="$MIN" 'BEGIN {printf "%.2f", d / 1e6 / m}')"
	rm -f "$tmp/pid" "$tmp/ssh.key"
	ip netns exec "$NS" nft delete table inet pfknock 2>/dev/null || true
done

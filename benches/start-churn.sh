#!/bin/bash
# A daemon's start with no record while the set's elements time out at a
# steady rate (Linux): in a network namespace of its own, N authorizations,
# element i timing out T0 + (i % S) seconds after its add (N/S a second
# once the first go: N=1000000 S=3600 is a million with ttl 1h in steady
# state). The kernel frees timed-out elements once a second, and each such
# freeing can make a dump pass over elements that stay in the set. Each
# build's daemon starts once the expiries run, is stopped once its reading
# is taken in, and the record it keeps is compared with what must be in
# the set then: how the set was read (its debug line), how long it took,
# the daemon's memory (RSS and high-water mark) once it is taken in, and
# how many elements that surely stayed the daemon did not know of.
#
# Root only; needs iproute2, nft and python3, and release builds:
#   cargo build --release && sudo bash benches/start-churn.sh \
#       target/release/pfknock [OTHER-BUILD ...]
# Environment: N (default 300000), T0 (default 20), S (default 100).
# Nothing leaves the namespace.
set -euo pipefail
cd "$(dirname "$0")/.."
[ $# -ge 1 ] || { echo "usage: $0 BINARY [BINARY ...]" >&2; exit 2; }
N=${N:-300000}; T0=${T0:-20}; S=${S:-100}
NS=pfkc-$$
# shellcheck source=benches/common/ns.sh
. benches/common/ns.sh
bench_ns "$NS"
bench_conf 1048576
python3 -c "
import sys
n, t0, s = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
print('add element inet pfknock ssh_4 { ' + ', '.join(
    '11.%d.%d.%d timeout %ds' % (i >> 16 & 255, i >> 8 & 255, i & 255, t0 + i % s)
    for i in range(n)) + ' }')" "$N" "$T0" "$S" >"$tmp/fill.nft"
for bin in "$@"; do
	[ -x "$bin" ] || { echo "$bin: not executable" >&2; exit 2; }
	ip netns exec "$NS" nft delete table inet pfknock 2>/dev/null || true
	rm -f "$tmp/log.sock" "$tmp/pid" "$tmp/pid.state"
	ip netns exec "$NS" "$bin" -c "$tmp/pfknock.toml" -S "$tmp/ctl.sock" load
	a0=$(date +%s.%N)
	ip netns exec "$NS" nft -f "$tmp/fill.nft"
	a1=$(date +%s.%N)
	sleep $((T0 + 2))
	python3 - "$tmp" "$bin" "$NS" "$a0" "$a1" "$N" "$T0" "$S" <<'EOP'
import os, socket, subprocess, sys, time, signal
tmp, binary, ns = sys.argv[1:4]
a0, a1 = float(sys.argv[4]), float(sys.argv[5])
n, t0, s = map(int, sys.argv[6:9])
sys.path.insert(0, "benches/common")
import pfk
daemon_log = pfk.Log(tmp)
log, env = daemon_log.sock, daemon_log.env
t_run = time.time()
subprocess.run(["ip", "netns", "exec", ns, binary, "-c", tmp + "/pfknock.toml",
                "-S", tmp + "/ctl.sock", "run", "-p", tmp + "/pid"], env=env, check=True)
pid = int(open(tmp + "/pid").read())
how = None
end = time.time() + 1200
log.settimeout(1)
while time.time() < end and how is None:
    try:
        l = log.recv(65536).decode(errors="replace")
    except socket.timeout:
        continue
    if "set ssh_4: read" in l:
        how = l
print(f"{binary}: " + (how.split(": ", 1)[1] if how else "no reading line") + f", taken {time.time() - t_run:.1f} s after the start")
time.sleep(1)
# Its memory: now, and the most it held (the reading's included).
status = dict(l.split(":", 1) for l in open(f"/proc/{pid}/status") if ":" in l)
print(f"  RSS {status['VmRSS'].strip()}, high-water {status['VmHWM'].strip()}")
t_stop = time.time()
os.kill(pid, signal.SIGTERM)
for _ in range(3000):  # its exit (5 minutes at most)
    if not os.path.exists(f"/proc/{pid}"):
        break
    time.sleep(0.1)
kept = set()
for line in open(tmp + "/pid.state"):
    t, addr, since = line.rstrip("\n").split("\t")
    kept.add(addr.split("/")[0])
sure_live = sure_gone = missed = extra = 0
for i in range(n):
    a = '11.%d.%d.%d' % (i >> 16 & 255, i >> 8 & 255, i & 255)
    d_early, d_late = a0 + t0 + i % s, a1 + t0 + i % s
    if d_early > t_stop + 3:
        sure_live += 1
        missed += a not in kept
    elif d_late < t_stop - 3:
        sure_gone += 1
        extra += a in kept
print(f"  record {len(kept)}; surely in the set at the stop {sure_live}, of them not in the record: {missed}; "
      f"surely gone {sure_gone}, of them in the record: {extra}")
EOP
	sleep 1
done

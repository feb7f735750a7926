#!/bin/bash
# What a restore costs (Linux): in a network namespace of its own, each
# build's daemon starts with N authorizations in the set (it reads them
# at start, without a line each); once it has read them, the table is
# deleted, and the time from the deletion to the daemon's "table restored"
# line is taken, with the authorizations it put back, next to the floor:
# one `nft -f` that adds the N elements again, alone and with a listener
# of the table's events (benches/common/listen.py), as the daemon is.
#
# Root only; needs iproute2, nft and python3, and release builds:
#   cargo build --release && sudo bash benches/restore.sh N \
#       target/release/pfknock [OTHER-BUILD ...]
# Nothing leaves the namespace.
set -euo pipefail
cd "$(dirname "$0")/.."
[ $# -ge 2 ] || { echo "usage: $0 N BINARY [BINARY ...]" >&2; exit 2; }
N=$1
shift
NS=pfkr-$$
# shellcheck source=benches/common/ns.sh
. benches/common/ns.sh
bench_ns "$NS"
bench_conf 4194304
python3 -c "
import sys
n = int(sys.argv[1])
print('add element inet pfknock ssh_4 { ' + ', '.join(
    '10.%d.%d.%d' % (k >> 16 & 255, k >> 8 & 255, k & 255) for k in range(n)) + ' }')" "$N" >"$tmp/fill.nft"
for bin in "$@"; do
	[ -x "$bin" ] || { echo "$bin: not executable" >&2; exit 2; }
	ip netns exec "$NS" nft delete table inet pfknock 2>/dev/null || true
	rm -f "$tmp/log.sock" "$tmp/pid" "$tmp/pid.state"
	python3 - "$tmp" "$bin" "$NS" "$N" <<'EOP'
import os, signal, subprocess, sys, time
tmp, binary, ns, n = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
sys.path.insert(0, "benches/common")
import pfk
log = pfk.Log(tmp)
env, until = log.env, log.until
# The floor first: the table loaded, the elements added by one nft -f.
subprocess.run(["ip", "netns", "exec", ns, binary, "-c", tmp + "/pfknock.toml", "-S", tmp + "/ctl.sock", "load"],
               env=env, check=True, stdout=subprocess.DEVNULL)
t0 = time.monotonic()
subprocess.run(["ip", "netns", "exec", ns, "nft", "-f", tmp + "/fill.nft"], check=True)
floor = time.monotonic() - t0
# Again with a listener of the table's events, as the daemon is one when
# it restores: the kernel then builds a notification for each element.
subprocess.run(["ip", "netns", "exec", ns, "nft", "flush", "set", "inet", "pfknock", "ssh_4"], check=True)
floor_heard, heard_said = pfk.heard(ns, tmp, lambda: subprocess.run(
    ["ip", "netns", "exec", ns, "nft", "-f", tmp + "/fill.nft"], check=True))
# The daemon starts with the N there (it reads them, without a line each).
subprocess.run(["ip", "netns", "exec", ns, binary, "-c", tmp + "/pfknock.toml",
                "-S", tmp + "/ctl.sock", "run", "-p", tmp + "/pid"], env=env, check=True)
pid = int(open(tmp + "/pid").read())
assert until("started", 10), "the daemon did not start"
# Until its reading of the set is done (a million take minutes).
pfk.read_done(pid, log, 600)
time.sleep(1)
t0 = time.monotonic()
subprocess.run(["ip", "netns", "exec", ns, "nft", "delete", "table", "inet", "pfknock"], check=True)
line = until("table restored", 600)
took = time.monotonic() - t0
os.kill(pid, signal.SIGTERM)
for _ in range(300):
    if not os.path.exists(f"/proc/{pid}"):
        break
    time.sleep(0.1)
said = line.split("restored ", 2)[-1].strip() if line else "no restore line"
print(f"{binary}: restore of {n}: {took * 1000:.0f} ms ({said}); "
      f"floor, nft -f of {n} elements: {floor * 1000:.0f} ms, "
      f"with a listener: {floor_heard * 1000:.0f} ms {heard_said}")
EOP
	sleep 1
done

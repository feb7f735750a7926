#!/bin/bash
# `pfknock expire` through a running daemon (Linux) at N authorizations,
# with nothing due and with a tenth due, next to its floor: deleting what
# is due (one `nft -f` of those deletes, which pfknock does too; alone and
# with a listener of the table's events, as the daemon is one) and one
# listing of the set (`nft list set`: the kernel's dump, which grows with
# the square of the set; a build that lists the set pays at least that).
# In a network namespace of its own, each build's daemon starts with the N
# in the set, aged so that a tenth is older than 10 minutes, and each
# expire is timed; then what the set holds is counted and checked.
#
# Root only; needs iproute2, nft and python3, and release builds:
#   cargo build --release && sudo bash benches/expire-daemon.sh N \
#       target/release/pfknock [OTHER-BUILD ...]
# The expires wait until the daemon's start has read the N (beside its
# loop, after `run` returned: at 1,000,000 a minute or two here). Nothing
# leaves the namespace.
set -euo pipefail
cd "$(dirname "$0")/.."
[ $# -ge 2 ] || { echo "usage: $0 N BINARY [BINARY ...]" >&2; exit 2; }
N=$1
shift
NS=pfkx-$$
# shellcheck source=benches/common/ns.sh
. benches/common/ns.sh
bench_ns "$NS"
bench_conf 4194304
# Every tenth address 20 minutes old, the rest 1 minute.
python3 -c "
import sys
n = int(sys.argv[1])
a = lambda k: '10.%d.%d.%d' % (k >> 16 & 255, k >> 8 & 255, k & 255)
for c in range(0, n, 100000):
    print('add element inet pfknock ssh_4 { ' + ', '.join(
        a(k) + (' timeout 1h expires 40m' if k % 10 == 0 else ' timeout 1h expires 59m')
        for k in range(c, min(n, c + 100000))) + ' }')
for c in range(0, n, 100000):
    print('delete element inet pfknock ssh_4 { ' + ', '.join(
        a(k) for k in range(c, min(n, c + 100000)) if k % 10 == 0) + ' }', file=sys.stderr)
" "$N" >"$tmp/fill.nft" 2>"$tmp/due.nft"
for bin in "$@"; do
	[ -x "$bin" ] || { echo "$bin: not executable" >&2; exit 2; }
	ip netns exec "$NS" nft delete table inet pfknock 2>/dev/null || true
	rm -f "$tmp/pid" "$tmp/pid.state" "$tmp/log.sock" "$tmp/ctl.sock"
	python3 - "$tmp" "$bin" "$NS" "$N" <<'EOP'
import os, signal, subprocess, sys, time
tmp, binary, ns, n = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
conf, ctl = tmp + "/pfknock.toml", tmp + "/ctl.sock"
sys.path.insert(0, "benches/common")
import pfk
log = pfk.Log(tmp)
env = log.env
def run(*args, **kw):
    return subprocess.run(["ip", "netns", "exec", ns] + list(args), **kw)
def cmd(*args):
    t0 = time.monotonic()
    r = run(binary, "-c", conf, "-S", ctl, *args, env=env, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    return time.monotonic() - t0, (r.stderr.strip().splitlines() or [""])[-1]
def count():
    t0 = time.monotonic()
    r = run("nft", "list", "set", "inet", "pfknock", "ssh_4", capture_output=True, text=True)
    return time.monotonic() - t0, r.stdout.count(" expires ")
cmd("load")
run("nft", "-f", tmp + "/fill.nft", check=True)
time.sleep(5)
run(binary, "-c", conf, "-S", ctl, "run", "-p", tmp + "/pid", env=env, check=True)
pid = int(open(tmp + "/pid").read())
assert log.until("started", 60), "the daemon did not start"
pfk.read_done(pid, log)
none, said0 = cmd("expire", "-o", "2h")
tenth, said1 = cmd("expire", "-o", "600s")
# A clean stop keeps what the daemon knows (a million entries take a
# while): wait for it, so the next build's commands do not reach this one.
os.kill(pid, signal.SIGTERM)
for _ in range(6000):
    if not os.path.exists(f"/proc/{pid}"):
        break
    time.sleep(0.1)
dump, left = count()
# The floor's delete: the same tenth, put back, then deleted by one nft -f.
run("nft", "-f", tmp + "/fill.nft", check=True)
time.sleep(5)
t0 = time.monotonic()
run("nft", "-f", tmp + "/due.nft", check=True)
delete = time.monotonic() - t0
# Again with a listener of the table's events, as the daemon is one when
# it deletes: the kernel then builds a notification for each element.
run("nft", "-f", tmp + "/fill.nft", check=True)
time.sleep(5)
delete_heard, heard_said = pfk.heard(ns, tmp, lambda: run("nft", "-f", tmp + "/due.nft", check=True))
print(f"{binary}: expire through the daemon at {n}: nothing due {none * 1000:.0f} ms "
      f"({said0}); a tenth due {tenth * 1000:.0f} ms ({said1}); {left} left. "
      f"Floor: nft -f deleting the tenth {delete * 1000:.0f} ms, with a listener "
      f"{delete_heard * 1000:.0f} ms {heard_said}; one nft list set {dump * 1000:.0f} ms")
EOP
	sleep 1
done

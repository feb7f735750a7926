#!/bin/bash
# How late a knock is logged while the daemon's start reads its sets
# (Linux): in two network namespaces of their own (server and client,
# joined by a veth pair), HELD authorizations are put in the set before
# each build's daemon starts with no record; from the moment `run`
# returns, a host of the client's side knocks once a second (KNOCKS
# hosts, each once, three connects from its own address), until the
# start's reading is over or every host has knocked. For each knock, the
# time from the end of the knock to its `authorized` line on the log
# socket, for the knocks that came while the reading ran (SIGUSR2 after
# the knock still said it read). Prints, per build, the median and the
# largest of those waits, side by side in one run; the floor is a knock
# after the start (last line). The third knock is followed by `pfknock
# revoke` of the first knocker, through the daemon: the time until the
# command returns. The fifth is followed by `nft add element` of another
# host by hand: the time from nft's return to the daemon's `authorized
# ... by nft[pid]` line (the floor: the same once the start is over).
# With TTL shorter than the reading, the knocks' authorizations expire
# during it: for each, the time from its deadline (the end of the knock
# and TTL) to its `expired` line. With UNLOAD=1 the sixth knock is
# followed by `pfknock unload` through the daemon, and the knocks stop:
# the time until the command returns, how long the reading ran on after
# it, and the count the daemon logged; the floor is the same unload with
# no daemon, of the same set (loaded and filled again after the daemon
# stopped).
#
# Root only; needs iproute2, nft, python3, and release builds:
#   cargo build --release && sudo bash benches/start-knocks.sh \
#       target/release/pfknock [OTHER-BUILD ...]
# Environment: HELD (default 300000; 1000000 makes a reading of a few
# minutes), KNOCKS (default 20), TTL (the service's, in seconds; default
# 3600), UNLOAD (default 0).
# Nothing leaves the namespaces.
set -euo pipefail
cd "$(dirname "$0")/.."
HELD=${HELD:-300000}
KNOCKS=${KNOCKS:-20}
TTL=${TTL:-3600}
UNLOAD=${UNLOAD:-0}
S=pfksk-s-$$ C=pfksk-c-$$
NET=198.18.202
# shellcheck source=benches/common/ns.sh
. benches/common/ns.sh
bench_builds "$@"
bench_pair "$S" "$C" "$NET"
bench_conf 2097152 "2/5"
sed -i "s/^ttl .*/ttl     = \"${TTL}s\"/" "$tmp/pfknock.toml"
for i in $(seq 10 $((9 + KNOCKS + 1))); do
	ip -n "$C" addr add "$NET.$i/24" dev "vc$$"
done
python3 -c "
import sys
n = int(sys.argv[1])
for lo in range(0, n, 100000):
    print('add element inet pfknock ssh_4 { ' + ', '.join(
        '10.%d.%d.%d timeout 1h' % (i >> 16 & 63, i >> 8 & 255, i & 255)
        for i in range(lo, min(n, lo + 100000))) + ' }')" "$HELD" >"$tmp/held.nft"
for bin in "${BINS[@]}"; do
	bin=$(realpath "$bin")
	ip netns exec "$S" nft delete table inet pfknock 2>/dev/null || true
	rm -f "$tmp/log.sock" "$tmp/pid" "$tmp/pid.state"
	ip netns exec "$S" "$bin" -c "$tmp/pfknock.toml" -S "$tmp/ctl.sock" load
	ip netns exec "$S" nft -f "$tmp/held.nft"
	python3 - "$tmp" "$bin" "$S" "$C" "$NET" "$KNOCKS" "$TTL" "$UNLOAD" <<'EOP'
import os, re, signal, socket, statistics, subprocess, sys, time
tmp, binary, srv, cli, net, knocks, ttl, unload = sys.argv[1:9]
knocks, ttl, unload = int(knocks), int(ttl), unload == "1"
sys.path.insert(0, "benches/common")
import pfk
log = pfk.Log(tmp)
said = {}      # host -> when its authorized line came
expired = {}   # host -> when its expired line came
reading = [True]
went = []      # what the daemon's unload line counts
def drain(until):
    """Log lines until `until` (monotonic)."""
    while True:
        left = until - time.monotonic()
        if left <= 0:
            return
        log.sock.settimeout(left)
        try:
            line = log.sock.recv(65536).decode(errors="replace")
        except socket.timeout:
            return
        m = re.search(r"authorized (\S+) ", line)
        if m and m.group(1) not in said:
            said[m.group(1)] = time.monotonic()
        m = re.search(r"expired (\S+) ", line)
        if m and m.group(1) not in expired:
            expired[m.group(1)] = time.monotonic()
        if "status <" in line and "reading" not in line:
            reading[0] = False
        m = re.search(r"unloaded by pfknock unload: (\S+) authorizations", line)
        if m:
            went.append(m.group(1))
KNOCK = """
import socket, sys, time
for _ in range(3):  # rate 2/5: the third connect knocks
    s = socket.socket()
    s.bind((sys.argv[1], 0))
    s.settimeout(1)
    try:
        s.connect((sys.argv[2], 1234))
    except OSError:
        pass
    s.close()
print(time.monotonic())
"""
def knock(host):
    """Three connects from `host` (a knock); when the last ended (the
    monotonic clock is the machine's, in every namespace)."""
    o = subprocess.run(["ip", "netns", "exec", cli, "python3", "-c", KNOCK, host, net + ".1"],
                       check=True, capture_output=True)
    return float(o.stdout)
subprocess.run(["ip", "netns", "exec", srv, binary, "-c", tmp + "/pfknock.toml", "-S",
                tmp + "/ctl.sock", "run", "-p", tmp + "/pid"], env=log.env, check=True)
pid = int(open(tmp + "/pid").read())
t0 = time.monotonic()
knocked, during = {}, set()
revoked = []  # [started, done, still reading when started]
def revoke(host):
    """`pfknock revoke host` through the daemon; when it returned."""
    subprocess.run(["ip", "netns", "exec", srv, binary, "-c", tmp + "/pfknock.toml", "-S",
                    tmp + "/ctl.sock", "revoke", host],
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    revoked.append(time.monotonic())
def add(host):
    """`nft add element` of `host` by hand; when nft returned."""
    subprocess.run(["ip", "netns", "exec", srv, "nft", "add element inet pfknock ssh_4 { "
                    + host + " timeout 10m }"], check=True)
    return time.monotonic()
by_hand, by_hand_after, added = net + ".200", net + ".201", []
unloaded = []  # [started, returned]
def ctl(*argv):
    """A pfknock command through the daemon's socket; when it returned."""
    subprocess.run(["ip", "netns", "exec", srv, binary, "-c", tmp + "/pfknock.toml", "-S",
                    tmp + "/ctl.sock", *argv],
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.monotonic()
for i in range(knocks):
    if not reading[0]:
        break
    host = "%s.%d" % (net, 10 + i)
    knocked[host] = knock(host)
    os.kill(pid, signal.SIGUSR2)
    drain(knocked[host] + 0.2)
    if reading[0]:
        during.add(host)
    if i == 4 and reading[0]:
        added.append(add(by_hand))
    if i == 2 and reading[0]:
        # The first knocker revoked, the command timed in a thread of
        # its own (it may wait for the reading).
        import threading
        revoked.append(time.monotonic())
        threading.Thread(target=revoke, args=("%s.10" % net,), daemon=True).start()
    if unload and i == 5 and reading[0]:
        unloaded = [time.monotonic()]
        unloaded.append(ctl("unload"))
        drain(unloaded[1] + 0.5)
        break
    drain(t0 + i + 1)
ended = None
for _ in range(3600):
    if not reading[0]:
        break
    os.kill(pid, signal.SIGUSR2)
    drain(time.monotonic() + 1)
ended = time.monotonic()
drain(ended + 2)
# The floor: a knock once the start is over.
after = "%s.%d" % (net, 10 + knocks)
if not unloaded:  # (an unloaded table takes no knock, nor an element)
    t_after = knock(after)
    drain(t_after + 2)
    t_by_hand = add(by_hand_after)
    drain(t_by_hand + 2)
waits = sorted((said[h] - knocked[h]) * 1000 for h in during if h in said)
name = os.path.basename(binary)
if waits:
    print(f"{name}: {len(during)} knocks during the start's reading ({ended - t0:.1f} s); "
          f"knock to line: median {statistics.median(waits):.1f} ms, "
          f"max {waits[-1]:.1f} ms; {len(during) - len(waits)} never said", flush=True)
else:
    print(f"{name}: no knock came during the start's reading ({ended - t0:.1f} s)", flush=True)
if len(revoked) == 2:
    print(f"{name}: pfknock revoke during the start's reading returned after "
          f"{(revoked[1] - revoked[0]) * 1000:.1f} ms", flush=True)
if added:
    line = f"{(said[by_hand] - added[0]) * 1000:.1f} ms" if by_hand in said else "never said"
    print(f"{name}: nft add element during the start's reading: {line}", flush=True)
if by_hand_after in said:
    print(f"{name}: nft add element after the start: "
          f"{(said[by_hand_after] - t_by_hand) * 1000:.1f} ms", flush=True)
# Knocks whose deadline came during the reading (the first knocker was
# revoked).
due = [h for h in during if h != "%s.10" % net and knocked[h] + ttl < ended]
lags = sorted((expired[h] - knocked[h] - ttl) * 1000 for h in due if h in expired)
if due:
    print(f"{name}: {len(due)} knocks due during the start's reading; deadline to "
          f"expired line: " + (f"median {statistics.median(lags):.1f} ms, max {lags[-1]:.1f} ms; "
                               if lags else "") + f"{len(due) - len(lags)} never said", flush=True)
if after in said:
    print(f"{name}: a knock after the start: {(said[after] - t_after) * 1000:.1f} ms", flush=True)
os.kill(pid, signal.SIGTERM)
time.sleep(1)
if len(unloaded) == 2:
    print(f"{name}: pfknock unload during the start's reading returned after "
          f"{(unloaded[1] - unloaded[0]) * 1000:.1f} ms; the reading ran {ended - unloaded[1]:.1f} s "
          f"more; logged: {went[0] if went else 'no line'} authorizations went", flush=True)
    # The floor: the same unload with no daemon, of the same set.
    ctl("load")
    subprocess.run(["ip", "netns", "exec", srv, "nft", "-f", tmp + "/held.nft"], check=True)
    t = time.monotonic()
    print(f"{name}: floor, pfknock unload with no daemon: {(ctl('unload') - t) * 1000:.1f} ms",
          flush=True)
EOP
	rm -f "$tmp/pid"
done

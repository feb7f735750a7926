#!/bin/bash
# The daemon stopped while many hosts knock, then continued (Linux): what
# it logs of them, and how SIGUSR2 is answered while it catches up. In two
# network namespaces of its own, each build's daemon starts with HELD
# authorizations in the set (default 1,000,000; it reads them beside its
# loop, and this waits until that reading is done); then it gets SIGSTOP,
# KNOCKERS forged sources of 198.19.0.0/16 (default 60,000) knock from the
# client's namespace, two completed handshakes each through the synproxy
# (rate 1/15), and it gets SIGCONT. With OVERRUN=1, while it is stopped
# 250,000 IPv6 elements also come and go in the kernel three times (1.5M
# notifications, past its 64 MB event socket): its notifications overrun,
# and it reads every set again beside its loop; with LATE=N (at most
# 50,000) N more are added to ssh_4 after that, from 198.18.0.0 on: the
# reading learns them late, one line each at debug past log_burst, and
# how many of those lines came is printed too. Printed per build: how
# many knocked (the kernel's count of the set, before and after); of the
# knockers, how many the daemon said `authorized` once, more than once,
# or not at all, how many of those lines say `learned late`, and how many
# `renewed` (none should be); lines about the held ones (none should
# be); overruns; the time from SIGCONT until the daemon's status line
# counts what the kernel does; and SIGUSR2, sent every 50 ms from SIGCONT
# until then: the wait for its line (median, 90th percentile, most), and
# when the line was sent, as the kernel stamped it.
#
# Root only; needs iproute2, nft and python3, and release builds:
#   cargo build --release && sudo bash benches/sigstop.sh \
#       target/release/pfknock [OTHER-BUILD ...]
# Traffic stays between the two namespaces (198.18.202.0/24, and the
# forged 198.19.0.0/16 routed back to the client's).
set -euo pipefail
cd "$(dirname "$0")/.."
[ $# -ge 1 ] || { echo "usage: $0 BINARY [BINARY ...]" >&2; exit 2; }
HELD=${HELD:-1000000}
KNOCKERS=${KNOCKERS:-60000}
[ "$KNOCKERS" -le 65000 ] || { echo "$0: KNOCKERS: at most 65000" >&2; exit 2; }
S=pfkss-s-$$ C=pfkss-c-$$
# shellcheck source=benches/common/ns.sh
. benches/common/ns.sh
bench_pair "$S" "$C" 198.18.202
ip -n "$S" route add 198.19.0.0/16 via 198.18.202.2
bench_conf 2097152 1/15
# The held ones, from 11.0.0.0 on.
python3 -c "
import sys
n = int(sys.argv[1])
print('add element inet pfknock ssh_4 { ' + ', '.join(
    '11.%d.%d.%d' % (i >> 16 & 255, i >> 8 & 255, i & 255)
    for i in range(n)) + ' }' if n else '')" "$HELD" >"$tmp/held.nft"
python3 -c "
six = ', '.join('fd00::5:%x:%x' % (i >> 16, i & 0xffff) for i in range(250000))
print('add element inet pfknock ssh_6 { %s }' % six)
print('delete element inet pfknock ssh_6 { %s }' % six)" >"$tmp/churn.nft"
LATE=${LATE:-0}
[ "$LATE" -le 50000 ] || { echo "$0: LATE: at most 50000" >&2; exit 2; }
python3 -c "
import sys
n = int(sys.argv[1])
print('add element inet pfknock ssh_4 { ' + ', '.join(
    '198.18.%d.%d' % (i >> 8, i & 255) for i in range(n)) + ' }' if n else '')" \
	"$LATE" >"$tmp/late.nft"
for bin in "$@"; do
	[ -x "$bin" ] || { echo "$bin: not executable" >&2; exit 2; }
	ip netns exec "$S" nft delete table inet pfknock 2>/dev/null || true
	rm -f "$tmp/log.sock" "$tmp/pid" "$tmp/pid.state"
	ip netns exec "$S" "$bin" -c "$tmp/pfknock.toml" -S "$tmp/ctl.sock" load
	ip netns exec "$S" nft -f "$tmp/held.nft"
	LATE="$LATE" python3 - "$tmp" "$bin" "$S" "$C" "vc$$" "$HELD" "$KNOCKERS" "${OVERRUN:-0}" <<'EOP'
import bisect, os, re, signal, socket, statistics, struct, subprocess, sys, threading, time
tmp, binary, srv, cli, dev = sys.argv[1:6]
held, knockers, overrun = int(sys.argv[6]), int(sys.argv[7]), sys.argv[8] == "1"
sys.path.insert(0, "benches/common")
import pfk
log = pfk.Log(tmp)
subprocess.run(["ip", "netns", "exec", srv, binary, "-c", tmp + "/pfknock.toml",
                "-S", tmp + "/ctl.sock", "run", "-p", tmp + "/pid"], env=log.env, check=True)
pid = int(open(tmp + "/pid").read())
assert log.until("started", 10), "the daemon did not start"
took = pfk.read_done(pid, log)
before = pfk.count(srv, "ssh_4")
print(f"{binary}: started over {held} held, read {took:.0f} s after; the kernel counts {before}")
os.kill(pid, signal.SIGSTOP)
try:
    if overrun:
        for _ in range(3):
            subprocess.run(["ip", "netns", "exec", srv, "nft", "-f", tmp + "/churn.nft"], check=True)
        subprocess.run(["ip", "netns", "exec", srv, "nft", "-f", tmp + "/late.nft"], check=True)
    subprocess.run(["ip", "netns", "exec", cli, "python3", "benches/common/handshakes.py",
                    dev, "198.18.202.1", "1234", "256", str(knockers), "2"], check=True)
    after = pfk.count(srv, "ssh_4")
except BaseException:
    os.kill(pid, signal.SIGCONT)
    raise
# Every line the daemon sends, as it comes, by a thread of its own that
# does nothing else (a reader that parsed each line as it came held the
# daemon's lines back: they wait in its queue while the socket is full),
# each with when the kernel stamped it as sent (SO_TIMESTAMPNS).
log.sock.setsockopt(socket.SOL_SOCKET, 35, 1)
lines, reading = [], [True]
def reader():
    log.sock.settimeout(0.2)
    while reading[0]:
        try:
            data, anc, _, _ = log.sock.recvmsg(4096, socket.CMSG_SPACE(16))
        except socket.timeout:
            continue
        at = 0.0
        for lvl, typ, d in anc:
            if lvl == socket.SOL_SOCKET and typ == 35:
                sec, nsec = struct.unpack("qq", d[:16])
                at = sec + nsec / 1e9
        lines.append((at, data))
t = threading.Thread(target=reader)
t.start()
t0 = time.monotonic()
try:
    os.kill(pid, signal.SIGCONT)
    # SIGUSR2 every 50 ms until a status line counts what the kernel does.
    signals, seen, looked = [], None, 0
    status = re.compile(rb"status <ssh> [^:]*: (\d+) entries")
    for _ in range(36000):  # bounded: 30 minutes of signals at most
        signals.append(time.time())
        os.kill(pid, signal.SIGUSR2)
        time.sleep(0.05)
        n = len(lines)
        for at, data in lines[looked:n]:
            m = status.search(data)
            if m:
                seen = int(m.group(1))
        looked = n
        if seen == after:
            break
    whole = time.monotonic() - t0
    time.sleep(2)  # what is left to say
finally:
    reading[0] = False
    t.join()
# Each signal is answered by the first status line sent after it (signals
# sent while one waits are answered together).
stamps = [at for at, data in lines if status.search(data)]
sent = []
for s in signals:
    i = bisect.bisect_left(stamps, s)
    sent.append(stamps[i] - s if i < len(stamps) else 600.0)
longest = sorted(zip(sent, signals), reverse=True)[:3]
lines = [data.decode(errors="replace") for _, data in lines]
said = {}
late = renewed = other = 0
added_late = set()
for line in lines:
    m = re.search(r"\b(authorized|renewed|expired|removed) (\d+\.\d+\.\d+\.\d+) ", line)
    if not m:
        continue
    verb, a = m.groups()
    if a.startswith("198.18.") and "learned late" in line:
        added_late.add(a)
    elif a.startswith("198.19."):
        if verb == "authorized":
            said[a] = said.get(a, 0) + 1
            late += "learned late" in line
        elif verb == "renewed":
            renewed += 1
    else:
        other += 1
knocked = after - before - (int(os.environ.get("LATE", "0")) if overrun else 0)
overruns = sum("dropped notifications: reading" in l for l in lines)
dropped = sum(int(m.group(1)) for l in lines
              for m in [re.search(r"(\d+) log line\(s\) dropped", l)] if m)
once = sum(1 for n in said.values() if n == 1)
more = sum(1 for n in said.values() if n > 1)
print(f"  knocked while stopped: {knocked} (the kernel's count {before} -> {after}); "
      f"said authorized once: {once}, more than once: {more}, not at all: {knocked - len(said)}; "
      f"of those lines learned late: {late}; renewed: {renewed}; "
      f"lines of held hosts: {other}; overrun lines: {overruns}; "
      f"log lines the daemon dropped: {dropped}")
if overrun:
    print(f"  of the {os.environ.get('LATE', '0')} added while stopped, "
          f"said learned late: {len(added_late)}")
sent.sort()
ms = lambda x: "%.1f" % (x * 1000)
print(f"  counted {seen} of {after} {whole:.1f} s after SIGCONT; {len(signals)} signals, "
      f"{len(stamps)} status lines; each signal's answer sent after it: "
      f"median {ms(statistics.median(sent))} ms, p90 {ms(sent[int(len(sent) * 0.9)])} ms, "
      f"max {ms(sent[-1])} ms")
print("  the three longest (sent after, when after SIGCONT): " + "; ".join(
    f"{ms(w)} ms at {at - signals[0]:.1f} s" for w, at in longest))
os.kill(pid, signal.SIGTERM)
for _ in range(30000):  # its exit (5 minutes at most: a stop writes its record)
    if not os.path.exists(f"/proc/{pid}"):
        break
    time.sleep(0.01)
EOP
	sleep 1
done

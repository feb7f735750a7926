#!/bin/bash
# How long SIGUSR2 waits behind a burst (Linux): in a network namespace
# of its own, each build's daemon watches a set while another process adds
# BATCH authorizations at a time, ROUNDS times (they are notifications the
# daemon works through); SIGUSR2 goes to the daemon every 50 ms meanwhile,
# and the time until its status line reaches the log is taken, and how
# often the kernel dropped notifications. The adds
# are made by a copy of nft named pfknock, whose commits the daemon follows
# without a line (as it does pfknock's own commands), so that the log
# carries the status lines and no queue of other lines in front of them. Prints the
# median, the 90th percentile and the largest wait per build, and how many
# signals were sent, for the builds side by side in one run; and the same
# for the moment each status line was sent, as the kernel stamped it on
# the log socket (the daemon's own part of the wait, without how late this
# script was scheduled to read it).
#
# Root only; needs iproute2, nft and python3, and release builds:
#   cargo build --release && sudo bash benches/signal-latency.sh \
#       target/release/pfknock [OTHER-BUILD ...]
# Environment: BATCH (default 20000), ROUNDS (default 10), PACE (seconds
# between the start of one round's adds and the next's; default 0: all at
# once; BATCH=100000 PACE=1 is 100k a second), SETTLE (seconds
# between the daemon's start and the burst, default 1: a burst during the
# start's own reading of the sets makes that reading repeat until it is
# whole, which is the start's cost, not the loop's), HELD (default 0:
# authorizations in the set before the daemon starts; SIGUSR2 goes every
# 50 ms during its start too, until its count is whole, and those waits
# are printed apart, next to the time of one nft list set of them),
# BY (nft: the adds are made by nft itself, so that the daemon logs a
# line for each, with who made it; printed: how many it said, how many
# lines it counted as dropped, and when the last came after the adds),
# CMD (1: a `pfknock revoke` of an address the set does not hold goes
# to the daemon every half second from the burst's start until its count
# is whole; printed: how many, and how long each took to return, median
# and largest: a command comes after the events before it, a
# transaction by others said first as syslog takes its lines),
# RESTORE (1: once the count is whole, the table is deleted with nft,
# and the time until the daemon's "table restored" line, that line's
# count, and SIGUSR2's count after it, are printed),
# RESTART (1: after the burst, the daemon is stopped and started again
# over the record it kept, and the same is printed for that start; for
# each start, the daemon's memory once its count is whole, and 2 s later,
# is printed too: RSS and high-water mark), SCHED
# (1: the scheduler's events are recorded meanwhile by perf sched, and
# for each time the daemon's loop waited more than 50 ms to run once
# woken, what ran on each CPU in that time for 10 ms or more: needs perf).
# Nothing leaves the namespace.
set -euo pipefail
cd "$(dirname "$0")/.."
[ $# -ge 1 ] || { echo "usage: $0 BINARY [BINARY ...]" >&2; exit 2; }
BATCH=${BATCH:-20000}
ROUNDS=${ROUNDS:-10}
NS=pfks-$$
bench_atexit() {
	if [ -s "$tmp/perf.pid" ]; then kill -INT "$(cat "$tmp/perf.pid")" 2>/dev/null || true; fi
}
# shellcheck source=benches/common/ns.sh
. benches/common/ns.sh
bench_ns "$NS"
bench_conf 1048576
mkdir "$tmp/bin"
cp "$(command -v nft)" "$tmp/bin/pfknock"
# What is there before the start: HELD addresses from 11.0.0.0 on.
HELD=${HELD:-0}
python3 -c "
import sys
n = int(sys.argv[1])
print('add element inet pfknock ssh_4 { ' + ', '.join(
    '11.%d.%d.%d' % (i >> 16 & 255, i >> 8 & 255, i & 255)
    for i in range(n)) + ' }' if n else '')" "$HELD" >"$tmp/held.nft"
# The fills: BATCH addresses a round, from 10.0.0.0 on, none twice.
for r in $(seq 1 "$ROUNDS"); do
	python3 -c "
import sys
r, n = int(sys.argv[1]), int(sys.argv[2])
print('add element inet pfknock ssh_4 { ' + ', '.join(
    '10.%d.%d.%d' % (i >> 16 & 255, i >> 8 & 255, i & 255)
    for i in range(r * n, r * n + n)) + ' }')" "$r" "$BATCH" >"$tmp/fill$r.nft"
done
# What kept the daemon's loop (thread PID) from running once woken, from
# perf sched's record FILE: each wait over 50 ms, and what ran meanwhile.
sched_waits() {
	perf sched timehist -i "$1" 2>/dev/null | python3 -c '
import re, sys
main = "pfknock[%s]" % sys.argv[1]
runs = []
for l in sys.stdin:
    p = l.split()
    if len(p) < 6 or not re.match(r"^[0-9]+[.][0-9]+$", p[0]):
        continue
    try:
        t, cpu = float(p[0]), p[1]
        delay, run = float(p[-2]), float(p[-1])
    except ValueError:
        continue
    runs.append((t, cpu, p[2], delay, run))
waits = [r for r in runs if r[2] == main and r[3] > 50]
mine = sum(r[2] == main for r in runs)
print(f"perf sched: the loop ran {mine} times; {len(waits)} waited over 50 ms to run")
for t, cpu, _, delay, run in waits:
    start, end = t - (run + delay) / 1000, t - run / 1000
    meanwhile = [f"{c} {task} {r:.0f} ms" for (e, c, task, _, r) in runs
                 if r >= 10 and task != main and e > start and e - r / 1000 < end]
    print(f"  {delay:.1f} ms on {cpu}; meanwhile: " + "; ".join(meanwhile))
' "$2"
}
for bin in "$@"; do
	[ -x "$bin" ] || { echo "$bin: not executable" >&2; exit 2; }
	ip netns exec "$NS" nft delete table inet pfknock 2>/dev/null || true
	rm -f "$tmp/log.sock" "$tmp/pid" "$tmp/pid.state"
	if [ "$HELD" -gt 0 ]; then
		# The table as the daemon's load makes it, then the held ones.
		ip netns exec "$NS" "$bin" -c "$tmp/pfknock.toml" -S "$tmp/ctl.sock" load
		ip netns exec "$NS" "$tmp/bin/pfknock" -f "$tmp/held.nft"
		# The floor of the start's reading: one listing of the set by nft.
		t0=$(date +%s%N)
		ip netns exec "$NS" nft list set inet pfknock ssh_4 >/dev/null
		echo "nft list set of the $HELD held: $((($(date +%s%N) - t0) / 1000000)) ms"
	fi
	if [ "${SCHED:-0}" = 1 ]; then
		perf sched record -o "$tmp/sched.data" >/dev/null 2>&1 &
		echo $! >"$tmp/perf.pid"
		sleep 1
	fi
	# The log: a socket of this script's, read by the measuring python.
	BY=${BY:-pfknock} python3 - "$tmp" "$bin" "$ROUNDS" "$NS" <<'EOP'
import os, re, signal, socket, statistics, struct, subprocess, sys, time
tmp, binary, rounds, ns = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
sys.path.insert(0, "benches/common")
import pfk
daemon_log = pfk.Log(tmp)
log, env = daemon_log.sock, daemon_log.env
t_run = time.monotonic()
subprocess.run(["ip", "netns", "exec", ns, binary, "-c", tmp + "/pfknock.toml",
                "-S", tmp + "/ctl.sock", "run", "-p", tmp + "/pid"], env=env, check=True)
pid = int(open(tmp + "/pid").read())
open(tmp + "/daemon.pid", "w").write(str(pid))
t_run = time.monotonic() - t_run
overruns = 0
# The kernel stamps each line as the daemon sends it (SO_TIMESTAMPNS, 35
# on Linux): the wait until the line reached the log is the daemon's own,
# apart from how late this script got to read it on a busy machine.
log.setsockopt(socket.SOL_SOCKET, 35, 1)
sent_at = [0.0]
# With BY=nft: the lines said of the adds, the last one's time, and the
# lines the daemon counted as dropped.
by_nft = [0, 0.0, 0]
def recv_stamped():
    data, anc, _, _ = log.recvmsg(65536, socket.CMSG_SPACE(16))
    for lvl, typ, d in anc:
        if lvl == socket.SOL_SOCKET and typ == 35:
            sec, ns = struct.unpack("qq", d[:16])
            sent_at[0] = sec + ns / 1e9
    line = data.decode(errors="replace")
    if " by nft[" in line:
        by_nft[0] += 1
        by_nft[1] = time.monotonic()
    m = re.search(r"(\d+) log line\(s\) dropped", line)
    if m:
        by_nft[2] += int(m.group(1))
    return line
last_line = [""]
def until(word, secs):
    global overruns
    end = time.monotonic() + secs
    while time.monotonic() < end:
        log.settimeout(max(0.001, end - time.monotonic()))
        try:
            line = recv_stamped()
            overruns += "dropped notifications: reading" in line
            if word in line:
                last_line[0] = line
                return True
        except socket.timeout:
            return False
    return False
def counted(secs, first):
    """The count of the status lines read within secs (the first one's
    if first, else the last's), or None."""
    global overruns
    end, seen = time.monotonic() + secs, None
    while time.monotonic() < end:
        log.settimeout(max(0.001, end - time.monotonic()))
        try:
            line = recv_stamped()
        except socket.timeout:
            break
        overruns += "dropped notifications: reading" in line
        m = re.search(r"status [^:]*: (\d+) entries", line)
        if m:
            seen = int(m.group(1))
            if first:
                break
    return seen
assert until("started", 10), "the daemon did not start"
held = int(os.environ.get("HELD", "0"))
def start_waits(held, what):
    """A signal every 50 ms from now until the status line counts held
    (bounded: 12,000 signals, 10 minutes and more); prints the waits."""
    t0, start_waits, seen, start_sent, when = time.monotonic(), [], -1, [], []
    for _ in range(12000):
        t1, w1 = time.monotonic(), time.time()
        os.kill(pid, signal.SIGUSR2)
        got = counted(10, True)
        seen = seen if got is None else got
        start_waits.append(10.0 if got is None else time.monotonic() - t1)
        start_sent.append(10.0 if got is None else sent_at[0] - w1)
        when.append((start_sent[-1], t1 - t0, seen))
        if seen == held:
            break
        time.sleep(0.05)
    took = time.monotonic() - t0
    when.sort(reverse=True)
    start_waits.sort()
    start_sent.sort()
    print(f"{what} with {held} held: 'run' returned after {t_run:.1f} s, "
          f"counted {seen} {took:.1f} s after; "
          f"{len(start_waits)} signals, wait median {statistics.median(start_waits) * 1000:.1f} ms, "
          f"p90 {start_waits[int(len(start_waits) * 0.9)] * 1000:.1f} ms, "
          f"max {start_waits[-1] * 1000:.1f} ms; the line sent after: "
          f"median {statistics.median(start_sent) * 1000:.1f} ms, "
          f"p90 {start_sent[int(len(start_sent) * 0.9)] * 1000:.1f} ms, "
          f"max {start_sent[-1] * 1000:.1f} ms")
    print("  the three longest (sent after, when into the start, the count "
          "said): " + "; ".join(f"{w * 1000:.1f} ms at {t:.1f} s, {c}"
                                for w, t, c in when[:3]))
    def memory():
        status = dict(l.split(":", 1) for l in open(f"/proc/{pid}/status") if ":" in l)
        return f"RSS {status['VmRSS'].strip()}, high-water {status['VmHWM'].strip()}"
    print(f"  its memory once counted: {memory()}", end="")
    # What followed the reading (a record's comparison) done by then.
    time.sleep(2)
    print(f"; 2 s later: {memory()}")
if held:
    # The start's reading and its taking in.
    start_waits(held, "start")
time.sleep(float(os.environ.get("SETTLE", "1")))
pace = float(os.environ.get("PACE", "0"))
t_fill = time.monotonic()
adder = "nft" if os.environ.get("BY") == "nft" else f"{tmp}/bin/pfknock"
fills = [subprocess.Popen(["sh", "-c", f"sleep {(r - 1) * pace}; exec ip netns exec {ns} "
                           f"{adder} -f {tmp}/fill{r}.nft"])
         for r in range(1, rounds + 1)]
waits, sent = [], []
busy = True
cmd_waits, counting = [], [True]
def commands():
    for _ in range(2000):  # bounded: 2,000 commands at most
        if not counting[0]:
            break
        t0 = time.monotonic()
        subprocess.run(["ip", "netns", "exec", ns, binary, "-c", tmp + "/pfknock.toml",
                        "-S", tmp + "/ctl.sock", "revoke", "12.0.0.1"], capture_output=True)
        cmd_waits.append(time.monotonic() - t0)
        time.sleep(0.5)
if os.environ.get("CMD") == "1":
    import threading
    cmd_thread = threading.Thread(target=commands)
    cmd_thread.start()
for _ in range(400):  # bounded: 400 signals at most
    t0, w0 = time.monotonic(), time.time()
    os.kill(pid, signal.SIGUSR2)
    if not until("status ", 10):
        waits.append(10.0)
        sent.append(10.0)
    else:
        waits.append(time.monotonic() - t0)
        sent.append(sent_at[0] - w0)
    busy = any(f.poll() is None for f in fills)
    if not busy and len(waits) >= 20:
        break
    time.sleep(0.05)
for f in fills:
    f.wait()
filled = time.monotonic() - t_fill
# Then until the daemon's status line counts every element (bounded: 10
# minutes), and how many it counts.
want = held + rounds * int(os.environ.get("BATCH", "20000"))
seen, t_end = -1, time.monotonic()
for _ in range(600):
    os.kill(pid, signal.SIGUSR2)
    got = counted(1, False)
    seen = seen if got is None else got
    if seen == want:
        break
print(f"adds took {filled:.1f} s; the daemon counted {seen} of {want} "
      f"{time.monotonic() - t_end:.1f} s after")
counting[0] = False
if os.environ.get("CMD") == "1":
    cmd_thread.join()
    cmd_waits.sort()
    print(f"commands: {len(cmd_waits)}, returned after median "
          f"{statistics.median(cmd_waits) * 1000:.0f} ms, max {cmd_waits[-1] * 1000:.0f} ms")
if adder == "nft":
    # What is still on its way to the log.
    log.settimeout(2)
    try:
        while True:
            recv_stamped()
    except socket.timeout:
        pass
    print(f"lines said of the adds: {by_nft[0]} of {want - held}, the last "
          f"{by_nft[1] - t_fill - filled:.1f} s after the adds ended; "
          f"log lines the daemon counted as dropped: {by_nft[2]}")
if os.environ.get("RESTORE") == "1":
    t0 = time.monotonic()
    subprocess.run(["ip", "netns", "exec", ns, "nft", "delete", "table", "inet", "pfknock"],
                   check=True)
    restored = until("table restored", 600)
    took = time.monotonic() - t0
    os.kill(pid, signal.SIGUSR2)
    after = counted(10, True)
    said = last_line[0].split("restored ", 2)[-1].strip() if restored else "no restore line"
    print(f"table deleted: restored {took:.1f} s after ({said}); "
          f"the daemon counts {after} of {want} after it")
def stop():
    t0 = time.monotonic()
    os.kill(pid, signal.SIGTERM)
    for _ in range(30000):  # its exit (5 minutes at most: a stop writes its record)
        if not os.path.exists(f"/proc/{pid}"):
            break
        time.sleep(0.01)
    print(f"SIGTERM: exited {time.monotonic() - t0:.2f} s after, its record kept")
stop()
if os.environ.get("RESTART") == "1":
    # Started again over what it kept at that clean stop.
    t_run = time.monotonic()
    subprocess.run(["ip", "netns", "exec", ns, binary, "-c", tmp + "/pfknock.toml",
                    "-S", tmp + "/ctl.sock", "run", "-p", tmp + "/pid"], env=env, check=True)
    pid = int(open(tmp + "/pid").read())
    t_run = time.monotonic() - t_run
    assert until("started", 10), "the daemon did not start again"
    start_waits(want, "restart with the record")
    stop()
print("waits in order:", " ".join("%.0f" % (w * 1000) for w in waits))
waits.sort()
sent.sort()
ms = lambda x: "%.1f" % (x * 1000)
print(f"{binary}: {len(waits)} signals, wait median {ms(statistics.median(waits))} ms, "
      f"p90 {ms(waits[int(len(waits) * 0.9)])} ms, max {ms(waits[-1])} ms; "
      f"the line sent after: median {ms(statistics.median(sent))} ms, "
      f"max {ms(sent[-1])} ms; {overruns} overrun(s)")
EOP
	if [ -s "$tmp/perf.pid" ]; then
		kill -INT "$(cat "$tmp/perf.pid")"
		wait "$(cat "$tmp/perf.pid")" 2>/dev/null || true
		rm -f "$tmp/perf.pid"
		sched_waits "$tmp/sched.data" "$(cat "$tmp/daemon.pid")"
	fi
	sleep 1
done

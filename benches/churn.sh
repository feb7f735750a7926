#!/bin/bash
# The Linux daemon's memory under churn: HELD authorizations, each with a
# ttl of TTL seconds, renewed by arrivals of HELD/TTL new ones a second
# (added by nft, which the daemon hears of as notifications) while as many
# expire, for SECONDS (default 3600). The set starts full, its elements'
# times spread over the ttl, so the churn is steady from the first
# second. Every minute: the daemon's resident memory and high-water mark,
# the authorizations it counts (its SIGUSR2 status line), its CPU so far
# and the kernel's notifications it was told it lost. Flat means nothing
# leaks in the book, the deadlines or the batches.
#
# Root only; needs iproute2, nft, python3 and a release build:
#   cargo build --release && sudo bash benches/churn.sh [SECONDS]
# Environment: HELD (default 2500), TTL (default 5); HELD=1000000
# TTL=1000 is a million held, a thousand new and a thousand expiring a
# second. FAMILY=6 churns IPv6 hosts (fd00::/8) in the IPv6 set instead.
# RESTART=1: once the start's reading is taken in (its "no record" line),
# the daemon is stopped (SIGTERM: it keeps its record) and started again
# as the churn goes on, so that the minutes after show a start over a
# record (its memory and high-water mark are the second process's).
# Nothing leaves the namespace.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-$PWD/target/release/pfknock}
DUR=${1:-3600}
HELD=${HELD:-2500}
TTL=${TTL:-5}
FAMILY=${FAMILY:-4}
RESTART=${RESTART:-0}
case $FAMILY in 4|6) ;; *) echo "FAMILY is 4 or 6" >&2; exit 2 ;; esac
[ -x "$BIN" ] || { echo "build first: cargo build --release" >&2; exit 1; }
NS=pfkc-$$
# shellcheck source=benches/common/ns.sh
. benches/common/ns.sh
bench_ns "$NS"
size=$(( HELD * 2 ))
[ "$size" -ge 65536 ] || size=65536
cat >"$tmp/pfknock.toml" <<EOT
log_burst = 100

[[service]]
name     = "ssh"
protect  = [2222]
knock    = [1234]
ttl      = "${TTL}s"
size     = $size
EOT
chmod 600 "$tmp/pfknock.toml"
python3 - "$tmp" "$BIN" "$NS" "$DUR" "$HELD" "$TTL" "$FAMILY" "$RESTART" <<'EOP'
import os, re, signal, socket, subprocess, sys, time
tmp, binary, ns, dur, held, ttl, family, restart = sys.argv[1:9]
restart = restart == "1"
dur, held, ttl = int(dur), int(held), int(ttl)
rate = max(1, held // ttl)
sys.path.insert(0, "benches/common")
import pfk
daemon_log = pfk.Log(tmp)
log, env = daemon_log.sock, daemon_log.env
def addr(i):
    i %= 1 << 22  # 4M addresses, never two alive at once
    if family == "6":
        return "fd00::%x:%x" % (i >> 16, i & 0xffff)
    return "10.%d.%d.%d" % (i >> 16 & 63, i >> 8 & 255, i & 255)
set_name = "ssh_" + family
def nft(text):
    subprocess.run(["ip", "netns", "exec", ns, "nft", "-f", "-"], input=text.encode(), check=True)
# The table, then the set full with times spread over the ttl.
ctl = ["-S", tmp + "/ctl.sock"]  # a control socket of its own
subprocess.run(["ip", "netns", "exec", ns, binary, "-c", tmp + "/pfknock.toml", *ctl, "load"],
               env=env, check=True, stdout=subprocess.DEVNULL)
for lo in range(0, held, 100000):
    hi = min(held, lo + 100000)
    nft("add element inet pfknock " + set_name + " { " + ", ".join(
        "%s timeout %dms" % (addr(i), 1000 + (ttl * 1000 - 1000) * (i + 1) // held)
        for i in range(lo, hi)) + " }\n")
def run():
    subprocess.run(["ip", "netns", "exec", ns, binary, "-c", tmp + "/pfknock.toml", *ctl,
                    "run", "-p", tmp + "/pid"], env=env, check=True)
    return int(open(tmp + "/pid").read())
t0 = time.monotonic()
pid = run()
print(f"held {held}, ttl {ttl}s, {rate} new a second; daemon started in "
      f"{time.monotonic() - t0:.1f} s", flush=True)
lost, read, restarted = 0, False, False
def take(timeout):
    """Log lines until `timeout`; the last status count."""
    global lost, read
    count, end = None, time.monotonic() + timeout
    while True:
        left = end - time.monotonic()
        if left <= 0:
            return count
        log.settimeout(left)
        try:
            l = log.recv(65536).decode(errors="replace")
        except socket.timeout:
            return count
        m = re.search(r"status [^:]*: (\d+) entries", l)
        if m:
            count = int(m.group(1))
        lost += "dropped notifications" in l
        read |= "no record of the last run" in l
def stat():
    s = open(f"/proc/{pid}/status").read()
    kb = lambda k: int(re.search(k + r":\s+(\d+)", s).group(1))
    f = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return kb("VmRSS"), kb("VmHWM"), (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")
print("minute  RSS kB  HWM kB  counted  CPU s  lost", flush=True)
start, i, nxt = time.monotonic(), held, 0.0
while time.monotonic() - start < dur:
    tick = time.monotonic()
    nft("add element inet pfknock " + set_name + " { " +
        ", ".join(addr(j) for j in range(i, i + rate)) + " }\n")
    i += rate
    if tick - start >= nxt:
        os.kill(pid, signal.SIGUSR2)
        c = take(0.5)
        rss, hwm, cpu = stat()
        print(f"{int((tick - start) // 60):6d}  {rss:6d}  {hwm:6d}  {c}  {cpu:6.1f}  {lost}",
              flush=True)
        nxt += 60
    if restart and read and not restarted:
        os.kill(pid, signal.SIGTERM)
        for _ in range(600):
            if not os.path.exists(f"/proc/{pid}"):
                break
            time.sleep(0.1)
        pid, restarted = run(), True
        print(f"restarted over its record at {(time.monotonic() - start) / 60:.1f} min",
              flush=True)
    take(max(0.0, 1 - (time.monotonic() - tick)))
rss, hwm, cpu = stat()
print(f"end     {rss:6d}  {hwm:6d}  added {i - held}, CPU {cpu:.1f} s", flush=True)
EOP

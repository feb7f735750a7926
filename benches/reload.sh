#!/bin/bash
# A reload that changes the ttl and the size of a set of N authorizations
# (Linux), with knocks arriving meanwhile. In two network namespaces of
# its own, each build's daemon starts with N authorizations in the set (it
# reads them at start, without a line each); 40 client addresses then
# knock, 3 connects each (rate 2/5), one address every 20 ms (50 a
# second), and one second in the config is changed (ttl 1h -> 2h, size
# up) and the daemon gets SIGHUP. Printed per build: the time from SIGHUP
# to the daemon's "reloaded" line; how many of the 40 knockers are in the
# set and how many were logged "authorized" (each must be 40: once each);
# the set's ttl and size after; how many of 10 elements from before got
# the new ttl, more than the old hour left (a set changed in place: none;
# made anew: all); and the
# daemon's CPU during the reload; and its memory after its start (RSS and
# the high-water mark of the start's reading). Next to it,
# the floor: nftables' own change of the set in place, one `nft add set`
# with the new timeout and size (what pfknock's load does for a million
# elements or for none), and a reload that changes nothing.
#
# Root only; needs iproute2, nft and python3, and release builds:
#   cargo build --release && sudo bash benches/reload.sh N \
#       target/release/pfknock [OTHER-BUILD ...]
# The SIGHUP waits until the daemon's start has read the N (beside its
# loop, after `run` returned: at 1,000,000 about as long as one `nft list
# set`, a minute or two here); DURING=1 sends it during that reading
# instead (a reload that keeps the sets being read, as this one does, is
# loaded at once; a build that held a SIGHUP until its reading ended shows
# how long it waited), and then also waits for the reading's end before
# it counts the knockers said, since their lines wait for it too.
# DROP=1 puts the N in a second service's set instead (old_4), and the
# SIGHUP's config also removes that service: its set is deleted with the
# N, and the line that says how many went with it is printed too (with
# DURING=1: a set deleted while it is read).
# Traffic stays between the two namespaces (198.18.201.0/24).
set -euo pipefail
cd "$(dirname "$0")/.."
[ $# -ge 2 ] || { echo "usage: $0 N BINARY [BINARY ...]" >&2; exit 2; }
N=$1
shift
S=pfkrl-s-$$ C=pfkrl-c-$$
# shellcheck source=benches/common/ns.sh
. benches/common/ns.sh
bench_pair "$S" "$C" 198.18.201
for h in $(seq 10 49); do ip -n "$C" addr add "198.18.201.$h/24" dev "vc$$"; done
conf() {
	cat <<EOT
[[service]]
name    = "ssh"
protect = [2222]
knock   = [1234]
rate    = "2/5"
ttl     = "$1"
size    = $2
EOT
	[ "${DROP:-}" != 1 ] || cat <<EOT

[[service]]
name    = "old"
protect = [2223]
knock   = [1240]
ttl     = "1h"
size    = $2
EOT
}
FILLED=ssh_4
[ "${DROP:-}" != 1 ] || FILLED=old_4
python3 -c "
import sys
n = int(sys.argv[1])
for c in range(0, n, 100000):
    print('add element inet pfknock ' + sys.argv[2] + ' { ' + ', '.join(
        '10.%d.%d.%d' % (k >> 16 & 255, k >> 8 & 255, k & 255)
        for k in range(c, min(n, c + 100000))) + ' }')" "$N" "$FILLED" >"$tmp/fill.nft"
for bin in "$@"; do
	[ -x "$bin" ] || { echo "$bin: not executable" >&2; exit 2; }
	ip netns exec "$S" nft delete table inet pfknock 2>/dev/null || true
	rm -f "$tmp/log.sock" "$tmp/pid" "$tmp/pid.state"
	conf 1h 2097152 >"$tmp/pfknock.toml"
	chmod 600 "$tmp/pfknock.toml"
	python3 - "$tmp" "$bin" "$S" "$C" "$N" <<'EOP'
import os, re, signal, subprocess, sys, time
tmp, binary, srv_ns, cli_ns, n = sys.argv[1:5] + [int(sys.argv[5])]
conf = tmp + "/pfknock.toml"
sys.path.insert(0, "benches/common")
import pfk
log = pfk.Log(tmp)
env = log.env
def srv(*args, **kw):
    return subprocess.run(["ip", "netns", "exec", srv_ns] + list(args), **kw)
# A control socket of its own: no other pfknock on this host talks to
# this daemon, nor this one to another's.
ctl = tmp + "/ctl.sock"
srv(binary, "-c", conf, "-S", ctl, "load", env=env, check=True, stdout=subprocess.DEVNULL)
srv("nft", "-f", tmp + "/fill.nft", check=True)
srv(binary, "-c", conf, "-S", ctl, "run", "-p", tmp + "/pid", env=env, check=True)
pid = int(open(tmp + "/pid").read())
said, until = log.said, log.until
assert until("started", 60), "the daemon did not start"
during = os.environ.get("DURING") == "1"
set_read = "old_4" if os.environ.get("DROP") == "1" else "ssh_4"
read = None if during else pfk.read_done(pid, log)
# Its memory after the start: resident now, and the high-water mark of
# the start's reading.
status = open(f"/proc/{pid}/status").read()
rss, hwm = (int(re.search(k + r":\s+(\d+)", status).group(1)) // 1024
            for k in ("VmRSS", "VmHWM"))
def cpu():
    f = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")
hosts = [f"198.18.201.{h}" for h in range(10, 50)]
knocker = "\n".join([
    "import socket, sys, time",
    "dst = sys.argv[1]",
    "for src in sys.argv[2:]:",
    "    for _ in range(3):",
    "        s = socket.socket(); s.bind((src, 0)); s.settimeout(1)",
    "        try: s.connect((dst, 1234))",
    "        except OSError: pass",
    "        s.close()",
    "    time.sleep(0.02)",
])
k = subprocess.Popen(["ip", "netns", "exec", cli_ns, "python3", "-c", knocker,
                      "198.18.201.1"] + hosts)
time.sleep(0.3)
text = open(conf).read()
drop = os.environ.get("DROP") == "1"
if drop:
    text = text.split("\n[[service]]\nname    = \"old\"")[0]
open(conf, "w").write(text.replace('"1h"', '"2h"').replace("2097152", "4194304"))
c0 = cpu()
t0 = time.monotonic()
os.kill(pid, signal.SIGHUP)
line = until("reloaded", 600)
took = time.monotonic() - t0
if not line:
    sys.exit(f"{binary}: no 'reloaded' line; the log said:\n" + "".join(l for _, l in said[-20:]))
c1 = cpu()
k.wait()
if during:
    pfk.read_done(pid, log)
    read = time.monotonic() - t0
    how = [l.split(": ", 1)[1].strip() for _, l in said if f"set {set_read}: read " in l]
until("no such line", 3)
# The terse ruleset: `list set` reads every element, even with -t.
head = srv("nft", "-t", "list", "ruleset", capture_output=True, text=True).stdout
head = head.split("set ssh_4 {", 1)[1].split("}", 1)[0]
ttl = re.search(r"timeout (\S+)", head).group(1)
size = re.search(r"size (\d+)", head).group(1)
# One look-up of 50 elements, not a listing (nft reads the set to answer
# it, a minute at a million; nft 1.0.6 crashes on a thousand at once):
# the 40 knockers, and 10 of the N that were there before.
sample = ["10.%d.%d.%d" % (k >> 16 & 255, k >> 8 & 255, k & 255)
          for k in range(0, n, max(1, n // 10))][:10] if not drop else []
r = srv("nft", "get", "element", "inet", "pfknock", "ssh_4",
        "{ " + ", ".join(hosts + sample) + " }", capture_output=True, text=True)
got = [e.strip() for e in r.stdout.split("elements = {", 1)[-1].split(",")]
fresh = sum(1 for e in got for a in sample
            if e.startswith(a + " ") and (" expires 1h" in e or " expires 2h" in e))
held = sum(1 for h in hosts if any(e.startswith(h + " ") for e in got))
logged = sum(1 for _, l in said for h in hosts if f"authorized {h} " in l)
# For reference: a reload that changes nothing.
t0 = time.monotonic()
os.kill(pid, signal.SIGHUP)
same = until("reloaded", 120)
unchanged = time.monotonic() - t0
os.kill(pid, signal.SIGTERM)
for _ in range(300):
    if not os.path.exists(f"/proc/{pid}"):
        break
    time.sleep(0.1)
# The floor: nftables' own in-place change, on the same set; with DROP,
# its deletion of a set of N and the rule that reads it, in a table of
# its own.
t0 = time.monotonic()
srv("nft", "add", "set", "inet", "pfknock", "ssh_4",
    "{ type ipv4_addr; size 8388608; flags dynamic, timeout; counter; timeout 3h; "
    "comment \"ssh: authorized\"; }", check=True)
floor = time.monotonic() - t0
if drop:
    srv("nft", "-f", "-", check=True, text=True, input=(
        "table inet floor {\n set s { type ipv4_addr; size 2097152; flags dynamic, timeout; "
        "counter; timeout 1h; }\n chain c { type filter hook input priority 0; "
        "ip saddr @s accept\n }\n}\n" + open(tmp + "/fill.nft").read().replace(
            "inet pfknock old_4", "inet floor s")))
    t0 = time.monotonic()
    srv("nft", "flush chain inet floor c; delete set inet floor s", check=True)
    floor = time.monotonic() - t0
    srv("nft", "delete", "table", "inet", "floor", check=True)
when = (f"during the start's reading (done {read:.0f} s after the SIGHUP)" if during
        else f"after the start's reading ({read:.0f} s)")
print(f"{binary}: {when} at {n}: RSS {rss} MB, high-water {hwm} MB; "
      f"reload: {took * 1000:.0f} ms to 'reloaded' "
      f"({c1 - c0:.2f} s CPU); knockers in the set {held}/40, logged {logged}/40; "
      f"set ttl {ttl} size {size}; of {len(sample)} elements from before, "
      f"{fresh} got the new ttl; an unchanged reload {unchanged * 1000:.0f} ms; "
      f"floor, nft {'deleting the set' if drop else 'add set in place'}: {floor * 1000:.0f} ms"
      + ("".join(f"; {h}" for h in how) if during else "")
      + "".join(f"; {l.split(': ', 1)[1].strip()}" for _, l in said if "went with it" in l)
      )
EOP
	sleep 1
done

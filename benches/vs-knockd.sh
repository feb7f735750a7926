#!/bin/bash
# pfknock (nftables) next to knockd, in the same two network namespaces:
#
# 1. time from the end of the knock to the first successful connect to the
#    protected port (median of 20);
# 2. CPU time used by each daemon (pfknock run, knockd) while 100k
#    unrelated UDP packets arrive at the server.
#
# Root only; needs iproute2, nft, python3, knockd (Debian package) and a
# release build: cargo build --release && sudo bash benches/vs-knockd.sh
# Traffic stays between the two namespaces (198.18.200.0/24).
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=$PWD/target/release/pfknock
[ -x "$BIN" ] || { echo "build first: cargo build --release" >&2; exit 1; }
command -v knockd >/dev/null || { echo "knockd not installed (apt-get install knockd)" >&2; exit 1; }

S=pkb-srv-$$ C=pkb-cli-$$
SRV=198.18.200.1
pids=()
bench_atexit() {
	kill "${pids[@]}" 2>/dev/null || true
	wait 2>/dev/null || true
}
# shellcheck source=benches/common/ns.sh
. benches/common/ns.sh
bench_pair "$S" "$C" 198.18.200

# pfknock: protected port 2222, knock 1234 (rate 2/5: three connects).
cat > "$tmp/pfknock.toml" <<CONF
[[service]]
name    = "ssh"
protect = [2222]
knock   = [1234]
rate    = "2/5"
ttl     = "2s"
CONF
chmod 600 "$tmp/pfknock.toml"
ip netns exec $S "$BIN" -S "$tmp/ctl.sock" run -f -c "$tmp/pfknock.toml" 2>/dev/null &
pids+=($!)
pf_pid=$!

# knockd: protected port 2223, sequence 7000 8000 9000, adding the host to
# a set of its own table with the same 2 s timeout.
ip netns exec $S nft -f - <<NFT
table inet kd {
	set allowed { type ipv4_addr; flags timeout; timeout 2s; }
	chain input {
		type filter hook input priority filter - 2; policy accept;
		tcp dport 2223 ip saddr @allowed accept
		tcp dport 2223 drop
	}
}
NFT
cat > "$tmp/knockd.conf" <<CONF
[options]
	Interface = vs$$
[ssh]
	sequence    = 7000,8000,9000
	seq_timeout = 5
	tcpflags    = syn
	command     = /usr/sbin/nft add element inet kd allowed { %IP% }
CONF
ip netns exec $S knockd -c "$tmp/knockd.conf" -i "vs$$" >/dev/null 2>&1 &
pids+=($!)
kd_pid=$!

# Listeners on both protected ports.
ip netns exec $S python3 - <<'PY' &
import socket, threading
def serve(port):
    s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("0.0.0.0", port)); s.listen(128)
    while True:
        c, _ = s.accept(); c.close()
for p in (2222, 2223):
    threading.Thread(target=serve, args=(p,), daemon=True).start()
threading.Event().wait()
PY
pids+=($!)
sleep 1.5

# 1. Knock-to-open latency, from the client namespace.
ip netns exec $C python3 - "$BIN" "$SRV" <<'PY'
import socket, statistics, subprocess, sys, time
bin, srv = sys.argv[1], sys.argv[2]
def until_open(port, limit=3.0):
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < limit:
        s = socket.socket(); s.settimeout(0.05)
        try:
            s.connect((srv, port)); s.close(); return time.perf_counter() - t0
        except OSError:
            s.close(); time.sleep(0.0005)
    return None
def run(name, cmd, port):
    out = []
    for _ in range(20):
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        t = until_open(port)
        if t is not None:
            out.append(t * 1000)
        time.sleep(2.5)   # let the 2 s authorization lapse
    med = statistics.median(out) if out else float("nan")
    print(f"{name:8} knock to open: median {med:7.2f} ms, max {max(out) if out else float('nan'):7.2f} ms, {len(out)}/20 opened")
run("pfknock", [bin, "knock", "-q", "-g", "0", "-n", "3", srv, "1234"], 2222)
run("knockd", ["knock", "-d", "0", srv, "7000", "8000", "9000"], 2223)
PY

# 2. CPU of each daemon, with the children it waited for (pfknock's nft
#    polls, knockd's nft commands), over 10 s in which 100k unrelated
#    packets arrive.
cpu() { awk '{print $14 + $15 + $16 + $17}' "/proc/$1/stat"; }
tick=$(getconf CLK_TCK)
p0=$(cpu $pf_pid) k0=$(cpu $kd_pid) t0=$(date +%s.%N)
ip netns exec $C python3 - "$SRV" <<'PY'
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
for i in range(100_000):
    s.sendto(b"x" * 64, (sys.argv[1], 9))
PY
while [ "$(echo "$(date +%s.%N) - $t0 < 10" | bc)" = 1 ]; do sleep 0.1; done
p1=$(cpu $pf_pid) k1=$(cpu $kd_pid) t1=$(date +%s.%N)
awk -v p=$((p1 - p0)) -v k=$((k1 - k0)) -v hz="$tick" -v w="$(echo "$t1 - $t0" | bc)" 'BEGIN {
	printf "CPU while 100k unrelated packets arrived (%.1f s window):\n", w
	printf "  pfknock run: %6.0f ms (it waits on kernel events; the kernel counts knocks)\n", p * 1000 / hz
	printf "  knockd:      %6.0f ms (libpcap, filtered in the kernel to its ports)\n", k * 1000 / hz
}'

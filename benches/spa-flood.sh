#!/bin/bash
# A flood the kernel's per-source limit does not stop: forged datagrams
# from random sources of 198.18.128.0/17 (each sends about once). KIND
# says what they are: "badsig" (the default), the service's key id, a
# stamp in the window and a wrong signature, so the listener must verify
# each; "unknown", signed by a key the server does not hold; "garbage",
# random bytes. For SECONDS_FLOOD (default 10)
# at the rate python can send; meanwhile a real signed knock with
# --verify every 2 s, and a port knock of another service beside it.
# Prints the datagrams that arrived, the listener's CPU and memory before
# and after, and how long each real knock took to open.
#
# Root only; needs iproute2, nft and python3:
#   cargo build --release && sudo bash benches/spa-flood.sh target/release/pfknock
# Two namespaces of its own (198.18.201.0/24 and the forged range routed
# through them); removed on exit. The listener runs as nobody.
set -euo pipefail
cd "$(dirname "$0")/.."
[ $# -eq 1 ] || { echo "usage: $0 BINARY" >&2; exit 2; }
bin=$(realpath "$1")
SECS=${SECONDS_FLOOD:-10}
KIND=${KIND:-badsig}
S=pfksf-s-$$
C=pfksf-c-$$
pids=()
bench_atexit() {
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	wait 2>/dev/null || true
}
# shellcheck source=benches/common/ns.sh
. benches/common/ns.sh
bench_pair "$S" "$C" 198.18.201
chmod 755 "$tmp"
# Replies to the forged range go back to the client's side.
ip -n "$S" route add 198.18.128.0/17 via 198.18.201.2
ip netns exec "$S" sysctl -qw net.ipv4.conf.all.rp_filter=0 net.ipv4.conf.vs$$.rp_filter=0

mkdir "$tmp/keys"
"$bin" keygen --spa "$tmp/alice" >/dev/null 2>&1
"$bin" keygen --spa "$tmp/mallory" >/dev/null 2>&1
cp "$tmp/alice.pub" "$tmp/keys/"
cat >"$tmp/pfknock.toml" <<EOT
spa_user = "nobody"

[[service]]
name    = "ssh"
protect = [2222]
spa     = { port = 62201, keys = "$tmp/keys", window = "1m" }

[[service]]
name    = "web"
protect = [2223]
knock   = [1234]
EOT
chmod 600 "$tmp/pfknock.toml"
ip netns exec "$S" python3 -c '
import socket
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", 2222)); s.listen(64)
t = socket.socket(); t.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
t.bind(("0.0.0.0", 2223)); t.listen(64)
import threading
threading.Thread(target=lambda: [t.accept()[0].close() for _ in iter(int, 1)], daemon=True).start()
while True:
    c, _ = s.accept(); c.close()
' &
pids+=($!)
ip netns exec "$S" nft 'table inet spaprobe { chain c { type filter hook prerouting priority -400; policy accept; udp dport 62201 counter; }; }'
ip netns exec "$S" "$bin" -c "$tmp/pfknock.toml" run -f -p "$tmp/pid" -S "$tmp/sock" 2>/dev/null &
pids+=($!)
for _ in $(seq 100); do [ -s "$tmp/pid" ] && break; sleep 0.1; done
sleep 62 # the first window after a start refuses every stamp
lpid=$(pgrep -f "$bin spa-listen" | while read -r p; do
	[ "$(ip netns identify "$p")" = "$S" ] && echo "$p"; done | head -1)
stat() { awk '{print $14 + $15}' "/proc/$lpid/stat"; }
rss() { awk '/VmRSS/ {print $2}' "/proc/$lpid/status"; }
cpu0=$(stat)
rss0=$(rss)

# The forged datagram: alice's key id, now, mallory's signature (the
# client's own datagram, its key id patched: the signature then fails).
alice_id=$(python3 -c '
import hashlib, sys
k = open(sys.argv[1]).read().split()[1]
print(hashlib.sha256(bytes.fromhex(k)).hexdigest()[:16])' "$tmp/alice.pub")
ip netns exec "$C" python3 - "$SECS" "$alice_id" "$tmp/mallory" "$bin" "$KIND" <<'EOT' &
import os, random, socket, struct, subprocess, sys, time
secs, kid, key, bin, kind = int(sys.argv[1]), bytes.fromhex(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5]
# One real datagram of mallory's, caught on a socket of our own, then
# given alice's key id: the layout and stamp are right, the signature not.
r = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); r.bind(("127.0.0.1", 0))
port = r.getsockname()[1]
subprocess.run([bin, "knock", "-q", "--spa", key, "-s", "ssh", "127.0.0.1", str(port)], check=True)
d = bytearray(r.recv(512))
if kind == "badsig":
    d[46:54] = kid
elif kind == "garbage":
    d = bytearray(os.urandom(len(d)))
raw = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
def csum(b):
    s = sum(struct.unpack("!%dH" % (len(b) // 2), b + b"\0" * (len(b) % 2)))
    s = (s >> 16) + (s & 0xffff); s += s >> 16
    return ~s & 0xffff
udp_len = 8 + len(d)
end = time.monotonic() + secs
n = 0
while time.monotonic() < end:
    src = bytes([198, 18, 128 + random.randrange(128), random.randrange(256)])
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + udp_len, 0, 0, 64, 17, 0, src, bytes([198, 18, 201, 1]))
    ip = ip[:10] + struct.pack("!H", csum(ip)) + ip[12:]
    udp = struct.pack("!HHHH", 40000 + n % 20000, 62201, udp_len, 0) + bytes(d)
    raw.sendto(ip + udp, ("198.18.201.1", 0))
    n += 1
print("forged sent", n)
EOT
fl=$!
for i in $(seq $((SECS / 2))); do
	sleep 1
	t0=$(date +%s%N)
	ip netns exec "$C" "$bin" knock -q --spa "$tmp/alice" -s ssh --verify 2222 198.18.201.1 62201 || echo "real knock $i: did not open"
	echo "real knock $i: open after $(( ($(date +%s%N) - t0) / 1000000 )) ms"
	t0=$(date +%s%N)
	ip netns exec "$C" "$bin" knock -q -n 6 --verify 2223 198.18.201.1 1234 || echo "port knock $i: did not open"
	echo "port knock $i: open after $(( ($(date +%s%N) - t0) / 1000000 )) ms"
	ip netns exec "$S" "$bin" -c "$tmp/pfknock.toml" -S "$tmp/sock" revoke 198.18.201.2 >/dev/null 2>&1
	sleep 1
done
wait "$fl"
echo "kind: $KIND"
echo "arrived at the port: $(ip netns exec "$S" nft list table inet spaprobe | grep -o 'packets [0-9]*')"
echo "listener CPU: $(( $(stat) - cpu0 )) ticks; RSS ${rss0} kB -> $(rss) kB"

#!/bin/bash
# Knock to open, and signed knock to open, side by side on nftables: the
# time from starting the client until the protected port accepts, for a
# rate knock (6 connections to one port) and a signed knock (one
# datagram), ROUNDS times each (default 20), alternating, with a revoke
# between rounds. Prints the median and the worst of each.
#
# Root only; needs iproute2, nft and python3:
#   cargo build --release && sudo bash benches/spa-open.sh target/release/pfknock
# Two namespaces of its own, 198.18.200.1 and .2; removed on exit. The
# listener runs as nobody.
set -euo pipefail
cd "$(dirname "$0")/.."
[ $# -eq 1 ] || { echo "usage: $0 BINARY" >&2; exit 2; }
bin=$(realpath "$1")
ROUNDS=${ROUNDS:-20}
S=pfkso-s-$$
C=pfkso-c-$$
pids=()
bench_atexit() {
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	wait 2>/dev/null || true
}
# shellcheck source=benches/common/ns.sh
. benches/common/ns.sh
bench_pair "$S" "$C" 198.18.200
chmod 755 "$tmp"

mkdir "$tmp/keys"
"$bin" keygen --spa "$tmp/alice" >/dev/null 2>&1
cp "$tmp/alice.pub" "$tmp/keys/"
cat >"$tmp/pfknock.toml" <<EOT
spa_user = "nobody"

[[service]]
name    = "knock"
protect = [2222]
knock   = [1234]

[[service]]
name    = "signed"
protect = [2223]
spa     = { port = 62201, keys = "$tmp/keys", window = "5s" }
EOT
chmod 600 "$tmp/pfknock.toml"
ip netns exec "$S" python3 -c '
import socket, threading
def serve(p):
    s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("0.0.0.0", p)); s.listen(64)
    while True:
        c, _ = s.accept(); c.close()
for p in (2222, 2223):
    threading.Thread(target=serve, args=(p,), daemon=True).start()
threading.Event().wait()
' &
pids+=($!)
ip netns exec "$S" "$bin" -c "$tmp/pfknock.toml" run -f -p "$tmp/pid" -S "$tmp/sock" 2>/dev/null &
pids+=($!)
for _ in $(seq 100); do [ -s "$tmp/pid" ] && break; sleep 0.1; done
sleep 7 # the first window after a start refuses every stamp

# One round: start the client, then try the port every millisecond (at
# most 5 s); the milliseconds from the start to the first accept.
ip netns exec "$C" python3 - "$bin" "$tmp/alice" "$ROUNDS" \
	"$tmp/pfknock.toml" "$tmp/sock" "$S" <<'EOT'
import socket, subprocess, sys, time
bin, key, rounds, conf, sock, srv = sys.argv[1:7]
def opens(port):
    s = socket.socket(); s.settimeout(0.002)
    try:
        s.connect(("198.18.200.1", port)); return True
    except OSError:
        return False
    finally:
        s.close()
kinds = {
    "knock (6 connections)": ([bin, "knock", "-q", "-n", "6", "198.18.200.1", "1234"], 2222, "knock"),
    "signed knock": ([bin, "knock", "-q", "--spa", key, "-s", "signed", "198.18.200.1", "62201"], 2223, "signed"),
}
took = {k: [] for k in kinds}
for _ in range(int(rounds)):
    for name, (cmd, port, svc) in kinds.items():
        t = time.monotonic()
        subprocess.run(cmd, check=True)
        while not opens(port):
            if time.monotonic() - t > 5:
                sys.exit(name + ": did not open within 5 s")
            time.sleep(0.001)
        took[name].append((time.monotonic() - t) * 1000)
        subprocess.run(["ip", "netns", "exec", srv, bin, "-c", conf, "-S", sock,
                        "revoke", "198.18.200.2", svc], check=True, capture_output=True)
        time.sleep(0.05)
print("%-24s %10s %10s" % ("client to open", "median ms", "worst ms"))
for name, v in took.items():
    v.sort()
    print("%-24s %10.1f %10.1f" % (name, v[len(v) // 2], v[-1]))
EOT

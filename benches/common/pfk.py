"""Shared by the Python parts of the bench scripts (Linux, root).

    sys.path.insert(0, "benches/common")   # the scripts run from the top
    import pfk
    log = pfk.Log(tmp)         # binds tmp/log.sock; log.env sends to it
    log.until("started", 10)   # the first line with that word, or None
    pfk.read_done(pid, log)    # after the start's reading of the sets
    took, said = pfk.heard(ns, tmp, lambda: ...)  # timed, with a listener
    pfk.count(ns, "ssh_4")     # the kernel's count of a set of table pfknock

From a shell, `python3 benches/common/pfk.py read-done DIR` binds
DIR/log.sock, waits for DIR/pid (the daemon must be started with
PFKNOCK_SYSLOG_SOCKET=DIR/log.sock) and returns once that daemon's reading
of the sets has ended; exit status 1 if it did not within 30 minutes.
"""
import os
import signal
import socket
import subprocess
import sys
import time


class Log:
    """The daemon's syslog: a datagram socket at DIR/log.sock, every line
    it got kept in `said` with when it came."""

    def __init__(self, tmp):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(tmp + "/log.sock")
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 24)
        self.env = dict(os.environ, PFKNOCK_SYSLOG_SOCKET=tmp + "/log.sock")
        self.said = []

    def until(self, word, secs):
        """The first line from now on that holds `word`, within `secs`."""
        end = time.monotonic() + secs
        while time.monotonic() < end:
            self.sock.settimeout(max(0.001, end - time.monotonic()))
            try:
                line = self.sock.recv(65536).decode(errors="replace")
            except socket.timeout:
                return None
            self.said.append((time.monotonic(), line))
            if word in line:
                return line
        return None


def read_done(pid, log, secs=1800):
    """Once the daemon `pid` has read its sets after its start (on
    nftables it does so beside its loop, after `run` returned: minutes at
    a million): SIGUSR2 each second until a table's status line no longer
    says it is reading. The time it took."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < secs:
        os.kill(pid, signal.SIGUSR2)
        line = log.until("status <", 1)
        if line and "reading" not in line:
            return time.monotonic() - t0
        time.sleep(1)
    raise SystemExit(f"pfk.py: daemon {pid}: its reading of the sets did not end in {secs} s")


def heard(ns, tmp, work):
    """`work()` timed with a listener of nf_tables' events in the network
    namespace `ns` (benches/common/listen.py), as a running daemon is one:
    the kernel then builds a notification for each element a transaction
    adds or removes. The time it took, and what the listener heard."""
    ready = tmp + "/ready"
    listener = subprocess.Popen(
        ["ip", "netns", "exec", ns, "python3", "benches/common/listen.py", ready],
        stdout=subprocess.PIPE, text=True)
    for _ in range(100):
        if os.path.exists(ready):
            break
        time.sleep(0.1)
    t0 = time.monotonic()
    work()
    took = time.monotonic() - t0
    said = listener.communicate()[0].strip()
    if os.path.exists(ready):
        os.remove(ready)
    return took, said


def count(ns, set_name, table="pfknock"):
    """How many elements the kernel counts in the set (NFTA_SET_COUNT of
    NFT_MSG_GETSET, one request; timed-out ones not yet collected
    included), in network namespace `ns`; None from a kernel that does
    not say."""
    py = r"""
import socket, struct, sys
def attr(t, v):
    v += b"\0"
    return struct.pack("HH", 4 + len(v), t) + v + b"\0" * (-len(v) % 4)
s = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 12)
p = struct.pack("BBH", 1, 0, 0) + attr(1, sys.argv[1].encode()) + attr(2, sys.argv[2].encode())
s.send(struct.pack("IHHII", 16 + len(p), (10 << 8) | 10, 1, 1, 0) + p)
d = s.recv(65536)
l, t = struct.unpack("IH", d[:6])
o, out = 20, "none"
while t == (10 << 8) | 9 and o + 4 <= l:
    al, at = struct.unpack("HH", d[o:o + 4])
    if at & 0x7fff == 20:
        out = str(struct.unpack(">I", d[o + 4:o + 8])[0])
    o += (al + 3) & ~3
print(out)
"""
    out = subprocess.run(["ip", "netns", "exec", ns, "python3", "-c", py, table, set_name],
                         capture_output=True, text=True, check=True).stdout.strip()
    return None if out == "none" else int(out)


def main(args):
    if len(args) != 2 or args[0] != "read-done":
        raise SystemExit("usage: pfk.py read-done DIR")
    tmp = args[1]
    log = Log(tmp)
    for _ in range(6000):
        if os.path.exists(tmp + "/pid") and os.path.getsize(tmp + "/pid"):
            break
        time.sleep(0.1)
    else:
        raise SystemExit(f"pfk.py: no daemon wrote {tmp}/pid")
    read_done(int(open(tmp + "/pid").read()), log)


if __name__ == "__main__":
    main(sys.argv[1:])

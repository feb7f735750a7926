"""Knocks from many forged sources, each a completed TCP handshake, for
the bench scripts (Linux, root; run inside the client's network namespace).

    python3 benches/common/handshakes.py DEV SERVER PORT FIRST COUNT ROUNDS

Sources FIRST to FIRST+COUNT-1 are taken as addresses of 198.19.0.0/16
(index i is 198.19.(i >> 8).(i & 255); the server must route that
network back through DEV). Each source completes ROUNDS handshakes with
SERVER:PORT, one source port a round, all of one round before the next:
a SYN by a raw socket, the server's SYN-ACK (a synproxy's cookie) taken
from DEV by a packet socket, and the ACK that completes it. A source
whose SYN-ACK does not come is sent its SYN again, three times at most.
Nothing is sent anywhere but SERVER. Prints how many sources completed
every round, and in how long.
"""
import socket
import struct
import sys
import time

ETH_P_IP = 0x0800
SYN, ACK = 0x02, 0x10


def addr(i):
    return bytes((198, 19, i >> 8 & 255, i & 255))


def csum(data):
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack("!%dH" % (len(data) // 2), data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def segment(src, dst, sport, dport, seq, ack, flags):
    """An IPv4 packet of one TCP segment without options or payload (the
    kernel fills in the IP header's checksum and id)."""
    tcp = struct.pack("!HHIIBBHHH", sport, dport, seq, ack, 5 << 4, flags, 65535, 0, 0)
    pseudo = src + dst + struct.pack("!BBH", 0, 6, len(tcp))
    tcp = tcp[:16] + struct.pack("!H", csum(pseudo + tcp)) + tcp[18:]
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(tcp), 0, 0x4000, 64, 6, 0, src, dst)
    return ip + tcp


def main():
    dev, server, port = sys.argv[1], socket.inet_aton(sys.argv[2]), int(sys.argv[3])
    first, count, rounds = int(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6])
    out = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
    out.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 22)
    inp = socket.socket(socket.AF_PACKET, socket.SOCK_DGRAM, socket.htons(ETH_P_IP))
    inp.bind((dev, ETH_P_IP))
    try:
        inp.setsockopt(socket.SOL_SOCKET, 33, 1 << 28)  # SO_RCVBUFFORCE
    except OSError:
        inp.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 26)
    inp.setblocking(False)
    sources = {addr(i): i for i in range(first, first + count)}
    dst = socket.inet_ntoa(server)
    t0 = time.monotonic()

    def answer(sport, done):
        """Each SYN-ACK read so far from a source of this round, answered
        with its ACK."""
        while True:
            try:
                p = inp.recv(128)
            except BlockingIOError:
                return
            if len(p) < 40 or p[9] != 6 or p[12:16] != server:
                continue
            ihl = (p[0] & 15) * 4
            sp, dp, seq, ack, _, flags = struct.unpack("!HHIIBB", p[ihl:ihl + 14])
            src = p[16:20]
            if sp != port or dp != sport or flags & (SYN | ACK) != SYN | ACK:
                continue
            if src not in sources or src in done:
                continue
            done.add(src)
            out.sendto(segment(src, server, sport, port, ack, seq + 1, ACK), (dst, 0))

    for r in range(rounds):
        sport = 20000 + r
        done = set()
        for _ in range(4):  # the first try and three more, at most
            todo = [s for s in sources if s not in done]
            if not todo:
                break
            for k, src in enumerate(todo):
                out.sendto(segment(src, server, sport, port, 1000, 0, SYN), (dst, 0))
                if k % 256 == 255:
                    answer(sport, done)
            end = time.monotonic() + 1.0
            while time.monotonic() < end and len(done) < len(sources):
                answer(sport, done)
                time.sleep(0.01)
        sources = {s: i for s, i in sources.items() if s in done}
    print(f"{len(sources)} of {count} sources completed {rounds} handshake(s) each "
          f"in {time.monotonic() - t0:.1f} s")


main()

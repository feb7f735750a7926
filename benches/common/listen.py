"""A listener of nf_tables' events (NFNLGRP_NFTABLES) in the network
namespace it runs in, as a running pfknock daemon is one: with it, the
kernel builds a notification for each element a transaction adds or
removes, which a floor taken without it would leave out.

    python3 benches/common/listen.py READY

It creates the file READY once it listens, counts what it hears until
nothing came for 3 s after the first datagram (the kernel tells a
transaction's changes once it is committed), and prints what it heard.
"""
import socket
import sys

s = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 12)  # NETLINK_NETFILTER
s.bind((0, 0))
s.setsockopt(270, 1, 7)  # NETLINK_ADD_MEMBERSHIP, NFNLGRP_NFTABLES
s.setsockopt(socket.SOL_SOCKET, 33, 256 << 20)  # SO_RCVBUFFORCE
s.settimeout(600)
open(sys.argv[1], "w").close()
n = b = lost = 0
while True:
    try:
        b += len(s.recv(1 << 20))
        n += 1
        s.settimeout(3)
    except socket.timeout:
        break
    except OSError:  # ENOBUFS: the buffer overran, some were not told
        lost += 1
print("(heard %d bytes in %d datagrams, %d overruns)" % (b, n, lost))

#!/usr/bin/env python3
"""An independent implementation of docs/rotation.md, sharing no code with
pfknock: the test suite checks `pfknock ports` against it.

usage: rotation_reference.py SECRET_HEX NAME LO HI COUNT STEP NOW...
prints one line per NOW: the ports, space-separated, in knock order.
"""
import hashlib
import hmac
import struct
import sys


def ports(secret, name, lo, hi, count, step, now):
    t = now // step
    par = t % 2
    n = (hi - lo - par) // 2 + 1
    taken = []
    for i in range(count):
        msg = b"pfknock rotate v1\x00" + name.encode() + b"\x00" + struct.pack(">qI", t, i)
        m = hmac.new(secret, msg, hashlib.sha256).digest()
        j = struct.unpack(">I", m[:4])[0] % n
        while j in taken:
            j = (j + 1) % n
        taken.append(j)
    return [lo + par + 2 * j for j in taken]


def main():
    secret = bytes.fromhex(sys.argv[1])
    name = sys.argv[2]
    lo, hi, count, step = (int(x) for x in sys.argv[3:7])
    for now in sys.argv[7:]:
        print(" ".join(str(p) for p in ports(secret, name, lo, hi, count, step, int(now))))


if __name__ == "__main__":
    main()

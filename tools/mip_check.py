#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""Independent check of the Mobile IPv4 registration code (mip/) against scapy and Python's hmac.

Usage: mip_check.py <path to mip_tool>

1. `mip_tool emit` prints a registration request and the HomeAgent's reply as hex; scapy's
   MobileIP/MobileIPRRQ/MobileIPRRP dissect them and the fields are compared with the expected
   values; the MHAE authenticators are recomputed with hmac (RFC 5944 s3.5.1 coverage).
2. The script builds its own request (NTP timestamp from its own clock, UDP Tunnel Request,
   MHAE by hmac.new(key, ..., 'md5')) and feeds it to `mip_tool process`, which runs the
   HomeAgent: the reply code must be 0; after flipping one byte it must be 131.
Prints "N passed, M failed" and exits non-zero on any failure.
"""
import hmac
import socket
import struct
import subprocess
import sys
import time

from scapy.layers.mobileip import MobileIP, MobileIPRRP, MobileIPRRQ

KEY = bytes.fromhex("00112233445566778899aabbccddeeff")
SPI = 256
HOME, HA, COA = "10.1.0.77", "10.1.0.1", "192.168.1.23"

passed = 0
failed = 0


def check(name, ok, detail=""):
    global passed, failed
    if ok:
        passed += 1
        print(f"ok   {name}")
    else:
        failed += 1
        print(f"FAIL {name} {detail}")


def run(tool, *args):
    out = subprocess.run([tool, *args], capture_output=True, text=True, timeout=30)
    if out.returncode != 0:
        raise RuntimeError(f"mip_tool {' '.join(args)} exited {out.returncode}: {out.stderr}")
    return dict(line.split(" ", 1) for line in out.stdout.strip().splitlines())


def mhae_ok(payload, offset):
    """The MHAE at `offset`: HMAC-MD5 over payload[:offset + 6] (Type, Length, SPI included)."""
    ext = payload[offset:offset + 22]
    if len(ext) != 22 or ext[0] != 32 or ext[1] != 20:
        return False
    spi = struct.unpack("!I", ext[2:6])[0]
    want = hmac.new(KEY, payload[:offset + 6], "md5").digest()
    return spi == SPI and hmac.compare_digest(want, ext[6:22])


def ntp_now():
    t = time.time() + 2208988800
    return (int(t) << 32) | int((t - int(t)) * (1 << 32))


def main():
    if len(sys.argv) != 2:
        print(__doc__)
        return 2
    tool = sys.argv[1]

    # 1. Dissect what the C++ side emits.
    emitted = run(tool, "emit")
    req = bytes.fromhex(emitted["request"])
    rep = bytes.fromhex(emitted["reply"])
    p = MobileIP(req)
    check("scapy sees a request", p.type == 1 and p.haslayer(MobileIPRRQ))
    q = p[MobileIPRRQ]
    check("request flags D,T", q.flags == 0x22, hex(q.flags))
    check("request lifetime", q.lifetime == 600, q.lifetime)
    check("request home address", q.homeaddr == HOME, q.homeaddr)
    check("request home agent", q.haaddr == HA, q.haaddr)
    check("request care-of address", q.coaddr == COA, q.coaddr)
    check("request identification", q.id == 0xE7A1B2C300000001, hex(q.id))
    ext = bytes(q.payload)
    check("request UDP Tunnel Request first", ext[:8] == bytes.fromhex("9006000000040000"), ext[:8].hex())
    check("request MHAE by hmac", mhae_ok(req, 24 + 8))
    check("request length", len(req) == 54, len(req))

    r = MobileIP(rep)
    check("scapy sees a reply", r.type == 3 and r.haslayer(MobileIPRRP))
    s = r[MobileIPRRP]
    check("reply code 0", s.code == 0, s.code)
    check("reply lifetime 600", s.lifetime == 600, s.lifetime)
    check("reply home address", s.homeaddr == HOME, s.homeaddr)
    check("reply home agent", s.haaddr == HA, s.haaddr)
    check("reply identification", s.id == 0xE7A1B2C300000001, hex(s.id))
    rext = bytes(s.payload)
    check("reply UDP Tunnel Reply assents (NAT seen)", rext[:4] == bytes.fromhex("2c060000"), rext[:8].hex())
    check("reply MHAE by hmac", mhae_ok(rep, 20 + 8))

    # 2. A request built here, judged by the C++ HomeAgent.
    fixed = struct.pack("!BBH4s4s4sQ", 1, 0x22, 600, socket.inet_aton(HOME), socket.inet_aton(HA),
                        socket.inet_aton(COA), ntp_now())
    body = fixed + bytes.fromhex("9006000000040000") + bytes([32, 20]) + struct.pack("!I", SPI)
    request = body + hmac.new(KEY, body, "md5").digest()
    res = run(tool, "process", KEY.hex(), str(SPI), HOME, HA, COA, request.hex())
    check("python-built request accepted (code 0)", res.get("code") == "0", res)
    if "reply" in res:
        reply = bytes.fromhex(res["reply"])
        rr = MobileIP(reply)[MobileIPRRP]
        check("reply echoes identification", rr.id == struct.unpack("!Q", request[16:24])[0])
        check("reply to python request authenticates", mhae_ok(reply, 20 + 8))

    tampered = bytearray(request)
    tampered[13] ^= 0x01  # one byte of the care-of address
    res = run(tool, "process", KEY.hex(), str(SPI), HOME, HA, COA, bytes(tampered).hex())
    check("tampered request rejected (code 131)", res.get("code") == "131", res)

    wrong_key = body + hmac.new(b"not the key", body, "md5").digest()
    res = run(tool, "process", KEY.hex(), str(SPI), HOME, HA, COA, wrong_key.hex())
    check("wrong key rejected (code 131)", res.get("code") == "131", res)

    print(f"{passed} passed, {failed} failed")
    return 0 if failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Checks tun::Segmenter against scapy: scapy builds TCP and UDP super-packets (with IP and
TCP options) and, independently, the packets a correct segmentation yields (identification
+1 per segment, sequence numbers advanced, FIN/PSH only on the last and CWR only on the first
segment, lengths and checksums computed by scapy); the segmenter's output must match byte for
byte. Usage: offload_scapy_test.py <offload_segment_dump>. Exit 77 (skipped) without scapy."""
import struct
import subprocess
import sys

try:
    from scapy.all import IP, TCP, UDP, Raw, IPOption_NOP, IPOption_EOL
    from scapy.utils import checksum
except ImportError:
    print("python3-scapy is not installed: skipped")
    sys.exit(77)

dump = sys.argv[1]
failures = []


def check(what, ok, detail=""):
    print(("ok   " if ok else "FAIL ") + what + ("" if ok else f": {detail}"))
    if not ok:
        failures.append(what)


def vnet(flags, gso_type, hdr_len, gso_size, csum_start, csum_offset):
    return struct.pack("=BBHHHH", flags, gso_type, hdr_len, gso_size, csum_start, csum_offset)


def partial(raw, ihl, proto):
    """The L4 checksum field as the kernel leaves it with NEEDS_CSUM: the folded, not
    complemented pseudo-header sum."""
    pseudo = raw[12:20] + struct.pack("!BBH", 0, proto, len(raw) - ihl)
    return (~checksum(pseudo)) & 0xFFFF


def segment(frame, mtu):
    out = subprocess.run([dump, str(mtu)], input=frame, capture_output=True, check=True).stdout.decode()
    return [bytes.fromhex(line) for line in out.split()] if not out.startswith("drop") else out.strip()


payload = bytes((i * 7 + 3) & 0xFF for i in range(5000))
ip_opts = [IPOption_NOP(), IPOption_NOP(), IPOption_NOP(), IPOption_EOL()]
tcp_opts = [("NOP", None), ("NOP", None), ("Timestamp", (1, 2))]


def tcp_pkt(seq, flags, data, ident):
    return IP(src="10.0.0.1", dst="10.0.0.2", id=ident, flags="DF", ttl=64, options=ip_opts) / TCP(
        sport=40000, dport=5201, seq=seq, ack=77, flags=flags, window=502, options=tcp_opts) / Raw(data)


# TCP: seq wraps inside the super-packet, all of FIN, PSH, CWR set on the original.
seq0 = 0xFFFFF000
sup = bytearray(bytes(tcp_pkt(seq0, "FPAC", payload, 0x1234)))
ihl = (sup[0] & 0x0F) * 4
thl = (sup[ihl + 12] >> 4) * 4
struct.pack_into("!H", sup, ihl + 16, partial(bytes(sup), ihl, 6))
for mtu in (1500, 1280, 576):
    gso = mtu - ihl - thl
    got = segment(vnet(1, 1, ihl + thl, gso, ihl, 16) + bytes(sup), mtu)
    want = []
    for i, off in enumerate(range(0, len(payload), gso)):
        last = off + gso >= len(payload)
        flags = "A" + ("C" if i == 0 else "") + ("FP" if last else "")
        want.append(bytes(tcp_pkt((seq0 + off) & 0xFFFFFFFF, flags, payload[off:off + gso], 0x1234 + i)))
    check(f"TCP mtu {mtu}: {len(want)} segments", isinstance(got, list) and len(got) == len(want),
          got if isinstance(got, str) else len(got))
    for i, (g, w) in enumerate(zip(got, want)):
        check(f"TCP mtu {mtu} segment {i} equals scapy's", g == w, f"\n got  {g[:80].hex()}\n want {w[:80].hex()}")
        parsed = IP(g)
        check(f"TCP mtu {mtu} segment {i} fits", len(g) <= mtu and parsed.len == len(g))

# UDP (USO): each segment its own UDP length and checksum.
udp_sup = bytearray(bytes(IP(src="10.0.0.1", dst="10.0.0.2", id=7) / UDP(sport=4500, dport=4500) / Raw(payload[:3000])))
struct.pack_into("!H", udp_sup, 20 + 6, partial(bytes(udp_sup), 20, 17))
got = segment(vnet(1, 5, 28, 1000, 20, 6) + bytes(udp_sup), 1028)
want = [bytes(IP(src="10.0.0.1", dst="10.0.0.2", id=7 + i) / UDP(sport=4500, dport=4500) / Raw(payload[off:off + 1000]))
        for i, off in enumerate(range(0, 3000, 1000))]
check("UDP segments equal scapy's", got == want, got if isinstance(got, str) else [g.hex()[:60] for g in got])

# Checksum offload only: the segmenter completes the partial checksum scapy left out.
small = bytearray(bytes(tcp_pkt(5, "PA", payload[:300], 1)))
full = bytes(small)
struct.pack_into("!H", small, ihl + 16, partial(full, ihl, 6))
got = segment(vnet(1, 0, 0, 0, ihl, 16) + bytes(small), 1500)
check("NEEDS_CSUM completed to scapy's checksum", got == [full], got)

# Inconsistent input is dropped with a reason, not segmented.
got = segment(vnet(1, 1, ihl + thl, 0, ihl, 16) + bytes(sup), 1500)
check("gso_size 0 dropped", got == "drop gso_size_invalid", got)
got = segment(vnet(1, 1, ihl + thl, 1000, ihl + 4, 16) + bytes(sup), 1500)
check("csum_start off the TCP header dropped", got == "drop gso_inconsistent", got)

sys.exit(1 if failures else 0)

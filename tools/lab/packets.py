# SPDX-License-Identifier: MIT
"""Crafted IPv4 packets for the lab's "packets" traffic kind: hostile, malformed or flooding
traffic from a host of the scenario, written straight to a raw socket (IP_HDRINCL), so a
packet's source may be spoofed and any of its fields wrong on purpose.

Run in the sending host's namespace as `python3 packets.py SPEC ACCOUNT`: SPEC is the traffic
element (scenario.py documents its keys), ACCOUNT a JSON file rewritten as the packets go:
{"sent": n, "done": bool, "heard": n, "first_heard_ms": t}. Every packet is built before the
first is sent ("variants" of each template, the random parts drawn again for each), then
they are sent round-robin at "rate" per second (0: as fast as the socket takes them) until
"count" packets or "duration_s" seconds. Standard library only: it runs in any namespace.
"""
from __future__ import annotations

import functools
import hashlib
import hmac
import ipaddress
import json
import os
import random
import socket
import struct
import sys
import time

NTP_EPOCH_OFFSET = 2208988800  # seconds from 1900 (NTP, RFC 5905 §6) to 1970


def checksum(data: bytes) -> int:
    """The Internet checksum (RFC 1071)."""
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def pick(v, rnd: random.Random):
    """A value or [low, high]: an integer drawn in that range (both ends included)."""
    return rnd.randint(v[0], v[1]) if isinstance(v, list) else v


def address(v, rnd: random.Random) -> bytes:
    """"a.b.c.d", or ["first", "last"]: an address drawn in that range."""
    if isinstance(v, list):
        lo, hi = (int(ipaddress.IPv4Address(x)) for x in v)
        return ipaddress.IPv4Address(rnd.randint(lo, hi)).packed
    return ipaddress.IPv4Address(v).packed


def payload(segments: list, rnd: random.Random, index: int) -> bytes:
    """The segments, concatenated (see scenario.py, "packets" traffic, for each kind)."""
    out = b""
    for s in segments:
        if isinstance(s, str):
            out += bytes.fromhex(s)
        elif "hex" in s:
            out += bytes.fromhex(s["hex"])
        elif "random" in s:
            out += bytes(rnd.getrandbits(8) for _ in range(pick(s["random"], rnd)))
        elif "address" in s:
            out += address(s["address"], rnd)
        elif "uint" in s:
            n = s.get("bytes", 4)
            out += (pick(s["uint"], rnd) % (1 << (8 * n))).to_bytes(n, "big")
        elif "ntp_time" in s:
            # An identification as RFC 5944 §5.4 builds it from the time (offset_s from now),
            # plus the variant's index, so each variant's is its own.
            t = time.time() + NTP_EPOCH_OFFSET + s["ntp_time"]
            out += (((int(t) << 32) | int((t % 1) * (1 << 32))) + index).to_bytes(8, "big")
        elif "hmac_md5" in s:
            # RFC 5944 §3.5.1: the authenticator covers everything before it in the payload.
            out += hmac.new(bytes.fromhex(s["hmac_md5"]), out, hashlib.md5).digest()
        elif "packet" in s:
            out += packet(s["packet"], s["packet"].get("destination"), rnd, index)
    return out


@functools.lru_cache(maxsize=64)
def own_source(dst: bytes) -> bytes:
    """The address this host sends from toward dst (what the kernel would put in the header):
    the UDP checksum covers it."""
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        s.connect((socket.inet_ntoa(dst), 9))
        return socket.inet_aton(s.getsockname()[0])
    except OSError:
        return bytes(4)
    finally:
        s.close()


def packet(t: dict, to: str, rnd: random.Random, index: int) -> bytes:
    """One IPv4 packet from a template: header, then UDP, ICMP or a raw protocol's payload."""
    dst = address(t.get("destination", to), rnd)
    src = address(t["source"], rnd) if "source" in t else own_source(dst)
    body = payload(t.get("payload", []), rnd, index)
    if "udp" in t:
        u = t["udp"]
        length = 8 + len(body)
        sport, dport = pick(u.get("source_port", u["port"]), rnd), pick(u["port"], rnd)
        csum = 0
        if u.get("checksum", "valid") != "none":
            pseudo = src + dst + struct.pack("!BBH", 0, 17, length)
            csum = checksum(pseudo + struct.pack("!HHHH", sport, dport, length, 0) + body) or 0xFFFF
            if u.get("checksum") == "bad":
                csum ^= 0x5A5A
        body, proto = struct.pack("!HHHH", sport, dport, length, csum) + body, 17
    elif "icmp" in t:
        i = t["icmp"]
        head = struct.pack("!BBH", pick(i["type"], rnd), pick(i.get("code", 0), rnd), 0)
        csum = checksum(head + body) ^ (0x5A5A if i.get("checksum") == "bad" else 0)
        body, proto = head[:2] + struct.pack("!H", csum) + body, 1
    else:
        proto = t["protocol"]
    # The kernel fills the source (when 0.0.0.0), the ID (when 0) and the header checksum.
    return struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(body), 0, 0x4000 if t.get("dont_fragment") else 0,
                       t.get("ttl", 64), proto, 0, src, dst) + body


def build(spec: dict) -> list[bytes]:
    """Every packet to send, templates interleaved: variant k of each template, then k + 1."""
    rnd = random.Random(spec.get("seed", 0))
    templates = spec["packets"]
    variants = spec.get("variants", 1)
    return [packet(t, spec["to"], rnd, k) for k in range(variants) for t in templates]


def listener(spec: dict):
    """A raw socket for what the sender waits to hear ("listen"), or None."""
    want = spec.get("listen")
    if not want:
        return None
    s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
    s.setblocking(False)
    return s


def heard(s, spec: dict) -> int:
    """How many of the packets waiting on the listener are the awaited kind."""
    n = 0
    while True:
        try:
            pkt = s.recv(65535)
        except BlockingIOError:
            return n
        ihl = (pkt[0] & 0x0F) * 4
        if len(pkt) > ihl and pkt[ihl] == spec["listen"]["icmp_type"]:
            n += 1


def main() -> int:
    spec_path, account_path = sys.argv[1], sys.argv[2]
    with open(spec_path) as f:
        spec = json.load(f)
    packets = build(spec)
    account = {"sent": 0, "done": False, "heard": 0, "send_errors": 0}

    def publish():
        tmp = account_path + ".tmp"
        with open(tmp, "w") as f:
            json.dump(account, f)
        os.replace(tmp, account_path)

    publish()
    listen = listener(spec)
    out = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
    out.setsockopt(socket.IPPROTO_IP, socket.IP_HDRINCL, 1)
    count = spec.get("count")
    rate = spec.get("rate", 0)
    t0 = time.monotonic()
    end = t0 + spec["duration_s"] if "duration_s" in spec else None
    # After the last packet, the listener keeps listening this long for the answer.
    linger = spec.get("listen", {}).get("wait_s", 0) if listen else 0
    last_publish = 0.0
    sent = 0
    finished_at = None
    while True:
        now = time.monotonic()
        if finished_at is None and ((count is not None and sent >= count) or (end is not None and now >= end)):
            finished_at = now
        if listen is not None:
            got = heard(listen, spec)
            if got and account["heard"] == 0:
                account["first_heard_ms"] = round((now - t0) * 1000)
            account["heard"] += got
        if finished_at is not None and (listen is None or account["heard"] or now >= finished_at + linger):
            break
        if finished_at is not None or (rate > 0 and sent >= (now - t0) * rate):
            time.sleep(0.005 if finished_at is not None else 0.0005)
        else:
            # Bursts of up to 64, never ahead of the pace.
            burst = 64 if rate <= 0 else max(1, min(64, int((now - t0) * rate) - sent + 1))
            if count is not None:
                burst = min(burst, count - sent)
            for _ in range(burst):
                p = packets[sent % len(packets)]
                try:
                    out.sendto(p, (socket.inet_ntoa(p[16:20]), 0))
                    sent += 1
                except OSError:
                    # A full socket buffer: counted, and the packet is sent again.
                    account["send_errors"] += 1
                    time.sleep(0.0005)
                    break
        if now - last_publish >= 0.05:
            account["sent"] = sent
            publish()
            last_publish = now
    account["sent"] = sent
    account["done"] = True
    account["seconds"] = round(time.monotonic() - t0, 3)
    publish()
    print(json.dumps(account), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

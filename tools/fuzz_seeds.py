#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Regenerates the fuzz seed corpora, tests/fuzz/corpus/<target>/, and the config dictionary.

Each seed is a small, well-formed input in the framing its target expects (see the comment at
the top of tests/fuzz/<target>_fuzz.cpp), so the fuzzer starts past the first length and
type checks. Bytes come from the published vectors in tests/vectors/ (ESP packets, the Mobile
IPv4 registration example) and from messages laid out here by the RFCs (ISAKMP, agent
advertisements, rtnetlink, UDP encapsulation); the configuration seeds are the shipped example
configs. Output is deterministic; run from anywhere:  python3 tools/fuzz_seeds.py
Crash reproducers kept as regression seeds are named crash-* and are left alone.
"""
import json
import re
import struct
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from lab.packets import checksum  # noqa: E402  (the Internet checksum, RFC 1071)

ROOT = Path(__file__).resolve().parent.parent
VECTORS = ROOT / "tests" / "vectors"
CORPUS = ROOT / "tests" / "fuzz" / "corpus"
DICT = ROOT / "tests" / "fuzz" / "dict"


def vector(name):
    return json.loads((VECTORS / name).read_text())


def h(text):
    return bytes.fromhex(text.replace(" ", ""))


def ip4(text):
    return bytes(int(x) for x in text.split("."))




def ipv4(src, dst, proto, payload, ttl=64, ident=1):
    hdr = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(payload), ident, 0, ttl, proto, 0, ip4(src), ip4(dst))
    return hdr[:10] + struct.pack("!H", checksum(hdr)) + hdr[12:] + payload


def udp(src, dst, sport, dport, payload):
    # Checksum 0 (none) is valid for IPv4 UDP (RFC 768) and what RFC 3948 §2.1 allows for ESP.
    return ipv4(src, dst, 17, struct.pack("!HHHH", sport, dport, 8 + len(payload), 0) + payload)


def icmp(type_, code, body):
    msg = struct.pack("!BBH", type_, code, 0) + body
    return msg[:2] + struct.pack("!H", checksum(msg)) + msg[4:]


# --- ISAKMP (RFC 2408 §3) ------------------------------------------------------------------

def chain(payloads):
    """[(type, body)] -> (first type, bytes) with generic payload headers."""
    out = b""
    for i, (_, body) in enumerate(payloads):
        nxt = payloads[i + 1][0] if i + 1 < len(payloads) else 0
        out += struct.pack("!BBH", nxt, 0, 4 + len(body)) + body
    return (payloads[0][0] if payloads else 0), out


def isakmp(exchange, payloads, flags=0, mid=0, icky=bytes(range(1, 9)), rcky=bytes(8)):
    first, body = chain(payloads)
    return icky + rcky + struct.pack("!BBBBII", first, 0x10, exchange, flags, mid, 28 + len(body)) + body


def tv(type_, value):
    return struct.pack("!HH", 0x8000 | type_, value)


def tlv(type_, value):
    return struct.pack("!HH", type_, len(value)) + value


def sa_payload(protocol=1, transform_id=1, attrs=None, spi=b""):
    attrs = attrs if attrs is not None else tv(1, 7) + tv(14, 128) + tv(2, 2) + tv(3, 1) + tv(4, 2) + tv(11, 1) + tv(12, 28800)
    transform = struct.pack("!BBH", 1, transform_id, 0) + attrs
    proposal = struct.pack("!BBBB", 1, protocol, len(spi), 1) + spi + struct.pack("!BBH", 0, 0, 4 + len(transform)) + transform
    return struct.pack("!II", 1, 1) + struct.pack("!BBH", 0, 0, 4 + len(proposal)) + proposal


VID_RFC3947 = h("4a131c81070358455c5728f20e95452f")
VID_DPD = h("afcad71368a1f1c96b8696fc77570100")


def attr_payload(cfg_type, identifier, attrs):
    return struct.pack("!BBH", cfg_type, 0, identifier) + b"".join(attrs)


def id_ipv4(addr, proto=17, port=500):
    return struct.pack("!BBH", 1, proto, port) + ip4(addr)


def ike_messages():
    mm1 = isakmp(2, [(1, sa_payload()), (13, VID_RFC3947), (13, VID_DPD)])
    mm2 = isakmp(2, [(1, sa_payload()), (13, VID_RFC3947)], rcky=bytes(range(9, 17)))
    mm3 = isakmp(2, [(4, bytes(range(128))), (10, bytes(16)), (20, bytes(20)), (20, bytes(range(20)))], rcky=bytes(range(9, 17)))
    mm5 = isakmp(2, [], flags=1, rcky=bytes(range(9, 17)))[:28] + bytes(range(48))
    mm5 = mm5[:24] + struct.pack("!I", len(mm5)) + mm5[28:]
    qm_sa = sa_payload(protocol=3, transform_id=12, attrs=tv(4, 1) + tv(5, 2) + tv(1, 1) + tv(2, 3600) + tv(6, 128), spi=h("c0ffee01"))
    qm = isakmp(32, [(8, bytes(20)), (1, qm_sa), (10, bytes(16)), (5, id_ipv4("10.99.100.1", 0, 0)), (5, struct.pack("!BBH", 4, 0, 0) + ip4("10.99.1.0") + ip4("255.255.255.0"))], mid=0x11223344)
    info_notify = isakmp(5, [(8, bytes(20)), (11, struct.pack("!IBBH", 1, 1, 16, 36136) + bytes(range(16)) + struct.pack("!I", 7))], mid=0x55667788)
    info_delete = isakmp(5, [(8, bytes(20)), (12, struct.pack("!IBBH", 1, 3, 4, 2) + h("c0ffee01c0ffee02"))], mid=0x55667789)
    cfg = isakmp(6, [(8, bytes(20)), (14, attr_payload(1, 0, [tlv(1, b""), tlv(2, b""), tlv(3, b"")]))], mid=0x0A0B0C0D)
    aggressive = isakmp(4, [(1, sa_payload()), (4, bytes(128)), (10, bytes(16)), (5, id_ipv4("192.0.2.10"))])
    nat_oa = isakmp(32, [(8, bytes(20)), (21, struct.pack("!BBH", 1, 0, 0) + ip4("192.168.1.23"))], mid=9)
    return {"mm1": mm1, "mm2": mm2, "mm3": mm3, "mm5-encrypted": mm5, "quick-mode": qm, "info-notify": info_notify,
            "info-delete": info_delete, "mode-config": cfg, "aggressive": aggressive, "nat-oa": nat_oa}


# --- targets -------------------------------------------------------------------------------

def seeds_ike_isakmp():
    out = dict(ike_messages())
    # Also read as a decrypted body: first byte = first payload type, then the chain.
    for name, payloads in [("body-qm", [(8, bytes(20)), (10, bytes(16)), (5, id_ipv4("10.0.0.1"))]),
                           ("body-attr", [(8, bytes(20)), (14, attr_payload(2, 7, [tlv(1, ip4("10.99.1.2")), tlv(3, ip4("10.99.0.53"))]))])]:
        first, body = chain(payloads)
        out[name] = bytes([first]) + body + bytes(3)  # CBC padding after the last payload
    return out


def seeds_ike_responder():
    msgs = ike_messages()
    out = {"raw-mm1": bytes([0, 1]) + msgs["mm1"], "raw-aggressive": bytes([0, 1]) + msgs["aggressive"]}
    out["mutate-mm1"] = bytes([1, 0, 2, 0x40, 0x01, 0x90, 0x80])
    # Mode 2: established cookies; exchange, message-id byte, next payload, flags, chain.
    for name, exch, payloads in [("plain-info", 5, [(8, bytes(20)), (11, struct.pack("!IBBH", 1, 1, 0, 36136))]),
                                 ("plain-qm", 32, [(8, bytes(20)), (10, bytes(16))]),
                                 ("plain-cfg", 6, [(8, bytes(20)), (14, attr_payload(2, 0, [tlv(1, ip4("10.99.100.9"))]))])]:
        first, body = chain(payloads)
        out[name] = bytes([2, 0, exch, 7, first, 0]) + body
    for i in range(4):
        out[f"recorded-{i}"] = bytes([3, 0, i, 0x10 * i + 1, 0x20, 0x01])
        out[f"recorded-{i}-fresh-id"] = bytes([3, 1, i | 2, 0x33, 0x02])
    return out


def seeds_ike_mode_config():
    # Byte 0: bit 0 gateway, 0x10 previous address / full pool; byte 1: first payload type.
    def c(flags, payloads):
        first, body = chain(payloads)
        return bytes([flags, first]) + body
    addr = tlv(1, ip4("10.99.1.5"))
    return {
        "client-reply": c(0, [(14, attr_payload(2, 0, [addr, tlv(2, ip4("255.255.255.0")), tlv(3, ip4("10.99.0.53"))]))]),
        "client-reply-previous": c(0x10, [(14, attr_payload(2, 0, [tlv(1, ip4("10.99.1.7"))]))]),
        "client-reply-tv": c(0, [(14, attr_payload(2, 0, [tv(5, 3600), addr]))]),
        "client-reply-empty": c(0, [(14, attr_payload(2, 0, [tlv(1, b"")]))]),
        "gateway-request": c(1, [(14, attr_payload(1, 0, [tlv(1, b""), tlv(2, b""), tlv(3, b"")]))]),
        "gateway-request-wanted": c(1, [(14, attr_payload(1, 3, [tlv(1, ip4("10.99.1.3"))]))]),
        "gateway-request-full-pool": c(0x11, [(14, attr_payload(1, 0, [tlv(1, b"")]))]),
        "gateway-set": c(1, [(14, attr_payload(3, 0, [tlv(1, ip4("10.99.1.2"))]))]),
        "gateway-notify-first": c(1, [(11, struct.pack("!IBBH", 1, 1, 0, 24576)), (14, attr_payload(1, 0, [tlv(1, b"")]))]),
        "wrong-hash": c(0x0F, [(14, attr_payload(1, 0, [tlv(1, b"")]))]),
    }


def seeds_ipsec_esp():
    out = {}
    cbc = vector("esp_aes_cbc_rfc3602.json")
    for p in cbc["esp_packets"]:
        out[f"rfc3602-case{p['case']}"] = b"\x00" + h(p["esp_packet_with_ip"])
    gcm = vector("esp_aes_gcm_draft_mcgrew_gcm_test_01.json")
    for c in gcm["cases"][:4]:
        out[f"gcm-case{c['case']}-esp"] = b"\x01" + h(c["esp_packet"])
    cc = vector("esp_chacha20poly1305_rfc7634.json")
    out["rfc7634"] = b"\x00" + h(cc["esp_packet_with_ip"])
    # Mode 1 with the configured SPI forced (first byte odd), both SAs (bit 2 of byte 0).
    for which in (0, 1):
        out[f"sa{which}-forced-spi"] = bytes([1 | which << 2]) + b"\x01" + bytes(3) + struct.pack("!I", 1) + bytes(range(64))
    # Mode 2: sealed with the real keys; next header, then the plaintext.
    inner = ipv4("10.0.0.5", "10.9.0.1", 17, struct.pack("!HHHH", 1000, 2000, 12, 0) + b"ping")
    for which in (0, 1):
        out[f"sa{which}-sealed-ipv4"] = bytes([2 | which << 2, 4]) + inner
        out[f"sa{which}-sealed-dummy"] = bytes([2 | which << 2, 59]) + bytes(16)
    out["sealed-outside-policy"] = bytes([2, 4]) + ipv4("172.16.0.1", "10.9.0.1", 1, icmp(8, 0, bytes(8)))
    return out


def seeds_ipsec_preopen():
    # [window size][highest accepted: 4 bytes], then records [control][length: 2 bytes][body].
    def header(window=2, highest=0):
        return bytes([window]) + struct.pack("!I", highest)

    def rec(control, body):
        return bytes([control]) + struct.pack("!H", len(body)) + body

    GCM, CHACHA, MODE_RAW, MODE_ESP, MODE_SEALED, MODE_REPLAY = 0, 4, 0, 1, 2, 3
    FORCE_SPI = FLIP = 0x08
    OTHER_ENCAP, OWN_TRAILER, OPTIONS, LINK_PADDING = 0x10, 0x20, 0x40, 0x80
    # The SAs are keyed as these vectors, so their packets authenticate.
    gcm = vector("esp_aes_gcm_draft_mcgrew_gcm_test_01.json")["cases"][1]  # SPI a5f8, seq 10
    chacha = h(vector("esp_chacha20poly1305_rfc7634.json")["esp_packet_with_ip"])  # plain ESP, seq 5
    gcm_esp = h(gcm["esp_packet"])
    inner = ipv4("10.0.0.5", "10.9.0.1", 17, struct.pack("!HHHH", 1000, 2000, 12, 0) + b"ping")

    def sealed(seq, next_header=4, plaintext=inner):
        return struct.pack("!I", seq) + bytes([next_header]) + plaintext

    def own_trailer(seq, plaintext):
        return struct.pack("!I", seq) + bytes(range(8)) + plaintext

    out = {
        "vector-gcm-in-udp": header() + rec(MODE_ESP | GCM, gcm_esp),
        "vector-chacha-plain": header() + rec(MODE_RAW, chacha),
        "vector-gcm-replayed": header() + rec(MODE_ESP | GCM, gcm_esp) + rec(MODE_REPLAY, b"\x00"),
        "vector-chacha-too-old": header(0, 100) + rec(MODE_RAW, chacha),
        "vector-gcm-plain-not-published": header() + rec(MODE_ESP | GCM | OTHER_ENCAP, gcm_esp),
        "forced-spi-gcm": header() + rec(MODE_ESP | GCM | FORCE_SPI, bytes(4) + struct.pack("!I", 1) + bytes(range(64))),
        "forced-spi-chacha-too-old": header(0, 1000) + rec(MODE_ESP | CHACHA | FORCE_SPI, bytes(4) + struct.pack("!I", 3) + bytes(range(64))),
        "sealed-dummy": header() + rec(MODE_SEALED | CHACHA, sealed(1, 59, bytes(16))),
        "sealed-flipped": header() + rec(MODE_SEALED | GCM | FLIP, struct.pack("!I", 7) + b"\x04" + struct.pack("!H", 300) + inner),
        "sealed-options-padding": header() + rec(MODE_SEALED | GCM | OPTIONS | LINK_PADDING, sealed(2)),
        "sealed-other-encap": header() + rec(MODE_SEALED | CHACHA | OTHER_ENCAP, sealed(2)),
        "own-trailer-good": header() + rec(MODE_SEALED | GCM | OWN_TRAILER, own_trailer(9, inner + bytes([1, 2, 2, 4]))),
        "own-trailer-bad-padding": header() + rec(MODE_SEALED | CHACHA | OWN_TRAILER, own_trailer(9, inner + bytes([1, 9, 2, 4]))),
        "own-trailer-pad-too-long": header() + rec(MODE_SEALED | GCM | OWN_TRAILER, own_trailer(9, bytes([200, 4]))),
        # One batch: out of order, a replay of the first, a jump that leaves seq 1 too old.
        "batch-window": header(0) + rec(MODE_SEALED | GCM, sealed(5)) + rec(MODE_SEALED | GCM, sealed(3)) + rec(MODE_REPLAY, b"\x00")
        + rec(MODE_SEALED | CHACHA, sealed(2000)) + rec(MODE_SEALED | GCM, sealed(2000)) + rec(MODE_SEALED | GCM, sealed(1))
        + rec(MODE_SEALED | CHACHA | FLIP, struct.pack("!I", 2001) + b"\x04" + struct.pack("!H", 999) + inner),
        "ike-marker-and-keepalive": header() + rec(MODE_RAW, udp("198.51.100.2", "192.0.2.1", 4500, 4500, bytes(4) + bytes(range(40))))
        + rec(MODE_RAW, udp("198.51.100.2", "192.0.2.1", 4500, 4500, b"\xff")),
    }
    return out


def seeds_nat_udp_encap():
    gw, mn = "198.51.100.1", "192.0.2.10"
    cc = vector("esp_chacha20poly1305_rfc7634.json")
    esp = h(cc["esp_packet_with_ip"])[20:]
    ike = ike_messages()["mm1"]
    return {
        "esp-in-udp": udp(gw, mn, 4500, 4500, esp),
        "ike-non-esp-marker": udp(gw, mn, 4500, 4500, bytes(4) + ike),
        "keepalive": udp(gw, mn, 4500, 4500, b"\xff"),
        "other-port": udp(gw, mn, 4500, 53, b"dns?"),
        "ike-port-500": udp(gw, mn, 500, 500, ike),
        "plain-esp": ipv4(gw, mn, 50, esp),
        "short-esp": udp(gw, mn, 4500, 4500, b"\x00\x00\x00\x01"),
    }


def seeds_ipsec_vpn_stages():
    # Byte 0: bit 0 = to the gateway; bits 1-2: 0 raw packet, 1 UDP 500 payload,
    # 2 UDP 4500 payload, 3 recorded packet (index, then position/xor pairs).
    msgs = ike_messages()
    esp = h(vector("esp_chacha20poly1305_rfc7634.json")["esp_packet_with_ip"])[20:]
    out = {}
    for gw_bit, side in ((1, "gw"), (0, "client")):
        out[f"{side}-raw-ike"] = bytes([gw_bit]) + udp("198.51.100.1", "198.51.100.2" if gw_bit else "10.0.0.2", 500, 500, msgs["mm1"])
        out[f"{side}-500-mm1"] = bytes([gw_bit | 2]) + msgs["mm1"]
        out[f"{side}-500-info"] = bytes([gw_bit | 2]) + msgs["info-delete"]
        out[f"{side}-4500-marker-ike"] = bytes([gw_bit | 4]) + bytes(4) + msgs["info-notify"]
        out[f"{side}-4500-keepalive"] = bytes([gw_bit | 4, 0xFF])
        out[f"{side}-4500-esp"] = bytes([gw_bit | 4]) + esp
        for i in range(3):
            out[f"{side}-recorded-{i}"] = bytes([gw_bit | 6, i, 0x40 * i + 8, 1 << i])
    return out


def seeds_mip_registration():
    v = vector("mipv4_registration_worked_example.json")
    req = h(v["registration_request"]["udp_payload"])
    rep = h(v["registration_reply"]["udp_payload"])
    out = {"request-udp-tunnel": req, "reply-udp-tunnel": rep,
           "tunnel-data": h(v["tunnel_data_message_example"]["udp_payload"])}
    # Without the UDP tunnel extension: request header then MHAE (type 32, SPI 256, 16 bytes).
    base = h(v["registration_request"]["authenticated_bytes"])[:24]
    out["request-plain"] = base + struct.pack("!BBI", 32, 20, 256) + bytes(16)
    # Deregistration (lifetime 0) and a Trusted Networks (RFC 5265 §5.2-style) extension shape.
    out["request-deregister"] = base[:2] + b"\x00\x00" + base[4:] + struct.pack("!BBI", 32, 20, 256) + bytes(16)
    out["reply-denied"] = rep[:1] + b"\x83" + rep[2:]
    return out


def advertisement(seq=1, flags=0x90, coas=("192.0.2.9",), prefix=True, lifetime=1800, pad=False):
    body = struct.pack("!BBH", 1, 2, lifetime) + ip4("192.0.2.9") + struct.pack("!I", 0)
    maae = struct.pack("!HHBB", seq, 600, flags, 0) + b"".join(ip4(a) for a in coas)
    ext = struct.pack("!BB", 16, len(maae)) + maae
    if prefix:
        ext += struct.pack("!BBB", 19, 1, 24)
    if pad:
        ext += b"\x00"  # one-byte padding extension (RFC 5944 §2.1.3)
    return icmp(9, 16 if flags & 0x80 else 0, body + ext)


def seeds_mip_advertisement():
    return {
        "fa-advertisement": advertisement(),
        "ha-advertisement": advertisement(flags=0x20, coas=(), prefix=False),
        "fa-two-coas-busy": advertisement(seq=300, flags=0x54, coas=("192.0.2.9", "192.0.2.10")),
        "reboot-seq": advertisement(seq=0),
        "padding": advertisement(pad=True),
        "solicitation": icmp(10, 0, bytes(4)),
    }


def seeds_mip_stages():
    home, ha, fa, coa, cn = "10.1.0.77", "203.0.113.1", "198.51.100.1", "192.0.2.9", "198.18.0.5"
    v = vector("mipv4_registration_worked_example.json")
    req = h(v["registration_request"]["udp_payload"])
    inner = ipv4(cn, home, 17, struct.pack("!HHHH", 5000, 6000, 12, 0) + b"data")
    out_inner = ipv4(home, cn, 17, struct.pack("!HHHH", 6000, 5000, 12, 0) + b"data")
    out = {}
    # Byte 0: stage (0 MN, 1 HA, 2 FA) + 0x04 inward; byte 1: clock step before the poll.
    for stage, name in enumerate(("mn", "ha", "fa")):
        out[f"{name}-out-udp"] = bytes([stage, 1]) + out_inner
        out[f"{name}-in-ipip"] = bytes([stage | 4, 2]) + ipv4(ha, coa, 4, inner)
        out[f"{name}-in-registration"] = bytes([stage | 4, 0]) + udp(coa, ha, 434, 434, req)
    out["ha-in-reverse-tunnel"] = bytes([5, 3]) + ipv4(coa, ha, 4, out_inner)
    out["ha-out-to-home"] = bytes([1, 0]) + inner
    out["mn-in-advertisement"] = bytes([4, 9]) + ipv4(fa, "255.255.255.255", 1, advertisement(), ttl=1)
    out["fa-in-solicitation"] = bytes([6, 0]) + ipv4("0.0.0.0", "255.255.255.255", 1, icmp(10, 0, bytes(4)), ttl=1)
    out["mn-in-udp-tunnel"] = bytes([0x84, 4]) + udp(ha, coa, 434, 434, h(v["tunnel_data_message_example"]["udp_payload"]))
    out["fa-in-gre"] = bytes([6, 0]) + ipv4(ha, fa, 47, struct.pack("!HH", 0, 0x0800) + inner)
    # Byte 1 bit 0x80: the FA asks its HA for RFC 3519 (forced), so its visitor 10.1.0.78 is in UDP.
    visitor = "10.1.0.78"
    to_visitor = ipv4(cn, visitor, 17, struct.pack("!HHHH", 5000, 6000, 12, 0) + b"data")
    out["fa-in-udp-tunnel"] = bytes([6, 0x82]) + udp(ha, fa, 434, 434, bytes([4, 4, 0, 0]) + to_visitor)
    out["fa-in-udp-keepalive-reply"] = bytes([6, 0x80]) + udp(ha, fa, 434, 434, bytes([4, 4, 0, 0]) + ipv4(ha, visitor, 1, icmp(0, 0, struct.pack("!HH", 434, 1))))
    out["fa-out-udp-visitor"] = bytes([2, 0x81]) + ipv4(visitor, cn, 17, struct.pack("!HHHH", 6000, 5000, 12, 0) + b"data")
    return out


def seeds_tap_impair():
    pkt = ipv4("10.0.0.1", "10.0.0.2", 17, bytes(20))
    ops = bytes([0, len(pkt)]) + pkt + bytes([1, len(pkt)]) + pkt + bytes([2, 50]) + bytes([0, 4]) + b"abcd" + bytes([2, 200])
    return {
        "clean": bytes(12) + ops,
        "lossy-both": bytes([7, 0, 128, 0, 0, 0, 0, 128, 0, 0, 0, 0]) + ops * 3,
        "burst-dup-reorder": bytes([1, 60, 3, 200, 100, 40, 33, 3, 90, 120, 60, 200]) + ops * 4,
        "delay-jitter-corrupt": bytes([2, 0, 5, 0, 0, 250, 0xFF, 0, 0, 0, 250, 0xE7]) + ops * 2,
    }


def nlmsg(type_, flags, payload, seq=1):
    return struct.pack("=IHHII", 16 + len(payload), type_, flags, seq, 0) + payload


def rta(type_, value):
    raw = struct.pack("=HH", 4 + len(value), type_) + value
    return raw + bytes(-len(raw) % 4)


def seeds_tun_netlink():
    ack = nlmsg(2, 0x100, struct.pack("=i", 0) + nlmsg(16, 5, b"")[:16])
    err = nlmsg(2, 0, struct.pack("=i", -17) + nlmsg(20, 0x605, b"")[:16])
    ifinfo = struct.pack("=BBHiII", 0, 0, 0xFFFE, 7, 0x1043, 0)
    link = nlmsg(16, 0, ifinfo + rta(3, b"mip0\0") + rta(4, struct.pack("=I", 1400)) + rta(16, b"\x06"))
    dellink = nlmsg(17, 0, ifinfo + rta(3, b"eth1\0"))
    ifaddr = struct.pack("=BBBBI", 2, 24, 0, 0, 7)
    addr = nlmsg(20, 0, ifaddr + rta(1, ip4("192.0.2.9")) + rta(2, ip4("192.0.2.9")) + rta(3, b"eth1\0"))
    deladdr = nlmsg(21, 0, ifaddr + rta(2, ip4("192.0.2.9")))
    rtm = struct.pack("=BBBBBBBBI", 2, 0, 0, 0, 254, 3, 0, 1, 0)
    route = nlmsg(24, 0, rtm + rta(15, struct.pack("=I", 254)) + rta(5, ip4("192.0.2.1")) + rta(4, struct.pack("=I", 7)))
    net_route = nlmsg(24, 0, struct.pack("=BBBBBBBBI", 2, 24, 0, 0, 254, 4, 0, 1, 0) + rta(1, ip4("10.1.0.0")) + rta(4, struct.pack("=I", 7)))
    done = nlmsg(3, 2, struct.pack("=i", 0))
    return {"ack": ack, "error-eexist": err, "newlink": link, "dellink": dellink, "newaddr": addr, "deladdr": deladdr,
            "newroute-default": route, "newroute-net": net_route, "dump-then-done": link + addr + done,
            "events-batch": link + addr + route + deladdr}


def seeds_shell_config():
    out = {}
    examples = sorted((ROOT / "tools" / "package" / "examples").glob("*.json"))
    configs = {p.stem: json.loads(p.read_text()) for p in examples}
    for name, cfg in configs.items():
        out[name] = cfg
    # Secrets from files (names inside the target's scratch directory).
    for name, cfg in configs.items():
        text = json.dumps(cfg)
        text = re.sub(r'"psk": "[^"]*"', '"psk_file": "psk"', text)
        text = re.sub(r'"key": "[0-9a-fA-F]{32}"', '"key_file": "key16"', text)
        if text != json.dumps(cfg):
            out[name + "-secret-files"] = json.loads(text)
    # Two nodes in one process.
    if len(configs) >= 2:
        nodes = [dict(c) for c in list(configs.values())[:2]]
        for n in nodes:
            n.pop("log_level", None)
            n.pop("control_socket", None)
        out["two-nodes"] = {"nodes": nodes, "log_level": "debug", "control_socket": "/run/mipsec/two.sock"}
    return {k: (json.dumps(v, indent=1) + "\n").encode() for k, v in out.items()}


def seeds_shell_prometheus():
    # A status answer captured from a running gateway (the renderer's own test sample), and
    # shapes another version or a hostile socket could send.
    sample = json.loads((ROOT / "tests" / "apps" / "status_sample.json").read_text())
    odd = json.loads(json.dumps(sample))
    node = odd["nodes"][0]
    node["name"] = 'gw"\\\n# TYPE x counter'
    node["uptime_s"] = "not a number"
    node.setdefault("pipeline", [{}])
    first = node["pipeline"][0] if isinstance(node["pipeline"], list) and node["pipeline"] else {}
    if isinstance(first, dict):
        first["type"] = "x.odd type"
        first["state"] = {"weird key-with spaces": 1, "nested": {"a b": True, "list": [1, "x", None]}, "s": "v\n",
                          "clients": [{"remote": 5, "child_sas": "none"}], "drops": [1, 2]}
    return {"status-sample": json.dumps(sample).encode(), "status-odd-shapes": json.dumps(odd).encode(),
            "empty-nodes": b'{"nodes": []}', "node-not-object": b'{"nodes": [1, "x", null]}'}


def config_dictionary():
    """Every key and stage type name the config reader knows, from the sources themselves."""
    words = set()
    for src in sorted((ROOT / "apps" / "shell").glob("*.cpp")):
        text = src.read_text()
        for call in re.findall(r"only\(\{([^}]*)\}", text):
            words.update(re.findall(r'"([^"\\]+)"', call))
        words.update(re.findall(r'\{"((?:mip|ipsec|nat|tap|ike)\.[a-z_]+)"', text))
        words.update(re.findall(r'(?:string|integer|integer_or|number_or|boolean_or|address|optional_address|prefix|endpoint|prefix_list|choice|choice_or|hex_bytes|secret_string|secret_hex_bytes|object|optional_object|objects|optional_string|raw|has)\("([a-z_0-9]+)"', text))
    words.update(["psk", "key16", "key20", "key36", "empty", "newline", "open", "dir", "nodes"])
    lines = [f'"\\"{w}\\""' for w in sorted(words)]
    lines += ['"true"', '"false"', '"null"', '"{"', '"}"', '"[]"', '"0.0.0.0"', '"10.1.0.0/24"', '"192.0.2.1:4500"']
    return "# Generated by tools/fuzz_seeds.py: keys and stage types of the config reader.\n" + "\n".join(lines) + "\n"


TARGETS = {
    "ike_isakmp": seeds_ike_isakmp,
    "ike_responder": seeds_ike_responder,
    "ike_mode_config": seeds_ike_mode_config,
    "ipsec_esp": seeds_ipsec_esp,
    "ipsec_preopen": seeds_ipsec_preopen,
    "ipsec_vpn_stages": seeds_ipsec_vpn_stages,
    "nat_udp_encap": seeds_nat_udp_encap,
    "mip_registration": seeds_mip_registration,
    "mip_advertisement": seeds_mip_advertisement,
    "mip_stages": seeds_mip_stages,
    "tap_impair": seeds_tap_impair,
    "tun_netlink": seeds_tun_netlink,
    "shell_config": seeds_shell_config,
    "shell_prometheus": seeds_shell_prometheus,
}


def main():
    total = 0
    for target, make in TARGETS.items():
        d = CORPUS / target
        d.mkdir(parents=True, exist_ok=True)
        for old in d.iterdir():
            if not old.name.startswith("crash-"):
                old.unlink()
        for name, data in sorted(make().items()):
            (d / name).write_bytes(data)
            total += len(data)
    DICT.mkdir(parents=True, exist_ok=True)
    (DICT / "shell_config.dict").write_text(config_dictionary())
    print(f"{len(TARGETS)} corpora, {total} bytes of seeds in {CORPUS.relative_to(ROOT)}", file=sys.stderr)


if __name__ == "__main__":
    main()

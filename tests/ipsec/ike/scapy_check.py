# SPDX-License-Identifier: MIT
"""Independent check of the ISAKMP emitter: scapy's ISAKMP dissector (scapy.layers.isakmp,
written from RFC 2408, not from our code) re-parses the messages ike_emit_tool writes and the
fields are compared with values written down here.

What scapy 2.5 can check: the header (cookies, next payload, version, exchange type, flags,
message ID, length), the SA payload (DOI, situation), Proposal (number, protocol, SPI size,
SPI, # transforms), Transform (number, ID and its TV/TLV attributes, decoded to integers),
KE / NONCE / HASH / Vendor ID bodies and the ID payload (type, protocol, port, data). It has
no classes for Notification, Delete, NAT-D/NAT-OA (20/21/130/131) or the Mode Config
Attribute payload (14): those are dissected as generic payloads, so only their next-payload
chaining, length and raw body are checked here (the body's inner fields are covered by the
fixed-byte unit tests). Its Proposal class also sizes the transform list as length - 8,
ignoring the SPI, so a phase-2 proposal is only dissected correctly when it is the last
bytes of the SA (true for the sample used).
"""
import subprocess
import sys

from scapy.layers.isakmp import (ISAKMP, ISAKMP_payload, ISAKMP_payload_Hash, ISAKMP_payload_ID,
                                 ISAKMP_payload_KE, ISAKMP_payload_Nonce, ISAKMP_payload_Proposal,
                                 ISAKMP_payload_SA, ISAKMP_payload_Transform,
                                 ISAKMP_payload_VendorID, ISAKMPAttributeTypes)
from scapy.packet import NoPayload, Raw

failures = []


def expect(name, got, want):
    if got != want:
        failures.append(f"{name}: got {got!r}, want {want!r}")


def pattern(n, start):
    return bytes((start + i) & 0xFF for i in range(n))


def numeric(attrs):
    """scapy names attribute types/values with the phase-1 table; map back to numbers."""
    out = []
    for typ, val in attrs:
        num, names, _ = ISAKMPAttributeTypes.get(typ, (typ, {}, 0))
        out.append((num, names.get(val, val)))
    return out


def chain(first):
    """Top-level payloads after the header, following scapy's .payload links."""
    out = []
    p = first
    while not isinstance(p, (NoPayload, Raw)):
        out.append(p)
        p = p.payload
    return out


def check_header(name, pkt, raw, next_payload, exch, msg_id, resp_cookie):
    expect(f"{name} init_cookie", pkt.init_cookie, bytes.fromhex("1122334455667788"))
    expect(f"{name} resp_cookie", pkt.resp_cookie, resp_cookie)
    expect(f"{name} next_payload", pkt.next_payload, next_payload)
    expect(f"{name} version", pkt.version, 0x10)
    expect(f"{name} exch_type", pkt.exch_type, exch)
    expect(f"{name} flags", int(pkt.flags), 0)
    expect(f"{name} id", pkt.id, msg_id)
    expect(f"{name} length", pkt.length, len(raw))


RESP = bytes.fromhex("99aabbccddeeff00")
NOCOOKIE = bytes(8)


def check_phase1_sa(name, sa, life):
    expect(f"{name} SA class", type(sa), ISAKMP_payload_SA)
    expect(f"{name} DOI", sa.DOI, 1)
    expect(f"{name} situation", sa.situation, 1)
    prop = sa.prop
    expect(f"{name} proposal class", type(prop), ISAKMP_payload_Proposal)
    expect(f"{name} proposal #", prop.proposal, 1)
    expect(f"{name} proposal proto", prop.proto, 1)
    expect(f"{name} SPI size", prop.SPIsize, 0)
    expect(f"{name} # transforms", prop.trans_nb, 1)
    t = prop.trans
    expect(f"{name} transform class", type(t), ISAKMP_payload_Transform)
    expect(f"{name} transform next", t.next_payload, 0)
    expect(f"{name} transform #", t.num, 1)
    expect(f"{name} transform id KEY_IKE", t.id, 1)
    expect(f"{name} attributes", numeric(t.transforms),
           [(1, 7), (14, 128), (2, 2), (4, 14), (3, 1), (11, 1), (12, life)])
    expect(f"{name} attributes named", t.transforms[0], ("Encryption", "AES-CBC"))


def main():
    tool = sys.argv[1]
    out = subprocess.run([tool], capture_output=True, text=True, check=True).stdout
    msgs = {k: bytes.fromhex(v) for k, v in (line.split() for line in out.splitlines())}

    # Main Mode 1 as strongSwan sends it.
    raw = msgs["mm1"]
    pkt = ISAKMP(raw)
    check_header("mm1", pkt, raw, 1, 2, 0, NOCOOKIE)
    payloads = chain(pkt.payload)
    expect("mm1 payload count", len(payloads), 6)
    check_phase1_sa("mm1", payloads[0], 15840)
    expect("mm1 SA next", payloads[0].next_payload, 13)
    vids = [bytes.fromhex(h) for h in ("09002689dfd6b712", "afcad71368a1f1c96b8696fc77570100",
                                       "4048b7d56ebce88525e7de7f00d6c2d380000000",
                                       "4a131c81070358455c5728f20e95452f",
                                       "90cb80913ebb696e086381b5ec427b1f")]
    for i, (p, want) in enumerate(zip(payloads[1:], vids)):
        expect(f"mm1 VID{i} class", type(p), ISAKMP_payload_VendorID)
        expect(f"mm1 VID{i}", p.load, want)
        expect(f"mm1 VID{i} length", p.length, 4 + len(want))
        expect(f"mm1 VID{i} next", p.next_payload, 13 if i < 4 else 0)

    # Life Duration 86400 does not fit TV: a TLV that scapy folds back to the integer.
    raw = msgs["sa_tlv"]
    pkt = ISAKMP(raw)
    check_header("sa_tlv", pkt, raw, 1, 2, 0, NOCOOKIE)
    check_phase1_sa("sa_tlv", pkt.payload, 86400)
    expect("sa_tlv SA length", pkt.payload.length, len(raw) - 28)

    # Main Mode 3: KE, NONCE and two RFC 3947 NAT-D payloads (generic to scapy).
    raw = msgs["mm3"]
    pkt = ISAKMP(raw)
    check_header("mm3", pkt, raw, 4, 2, 0, RESP)
    p = chain(pkt.payload)
    expect("mm3 payload count", len(p), 4)
    expect("mm3 KE class", type(p[0]), ISAKMP_payload_KE)
    expect("mm3 KE", p[0].load, pattern(256, 0))
    expect("mm3 KE length", p[0].length, 260)
    expect("mm3 KE next", p[0].next_payload, 10)
    expect("mm3 NONCE class", type(p[1]), ISAKMP_payload_Nonce)
    expect("mm3 NONCE", p[1].load, pattern(32, 0xa0))
    expect("mm3 NONCE next", p[1].next_payload, 20)
    expect("mm3 NAT-D 1 class", type(p[2]), ISAKMP_payload)
    expect("mm3 NAT-D 1", p[2].load, pattern(20, 0x10))
    expect("mm3 NAT-D 1 next", p[2].next_payload, 20)
    expect("mm3 NAT-D 2", p[3].load, pattern(20, 0x40))
    expect("mm3 NAT-D 2 next", p[3].next_payload, 0)

    # Main Mode 5 (plaintext form): ID_FQDN, HASH, N(INITIAL-CONTACT) (generic to scapy).
    raw = msgs["mm5"]
    pkt = ISAKMP(raw)
    check_header("mm5", pkt, raw, 5, 2, 0, RESP)
    p = chain(pkt.payload)
    expect("mm5 payload count", len(p), 3)
    expect("mm5 ID class", type(p[0]), ISAKMP_payload_ID)
    expect("mm5 ID type FQDN", p[0].IDtype, 2)
    expect("mm5 ID proto", p[0].ProtoID, 0)
    expect("mm5 ID port", p[0].Port, 0)
    expect("mm5 ID data", p[0].load, b"cli.lab.example")
    expect("mm5 HASH class", type(p[1]), ISAKMP_payload_Hash)
    expect("mm5 HASH", p[1].load, pattern(20, 0x60))
    expect("mm5 N next", p[1].next_payload, 11)
    expect("mm5 N body", p[2].load,
           bytes.fromhex("00000001 01 10 6002 1122334455667788 99aabbccddeeff00".replace(" ", "")))

    # Quick Mode 1 (plaintext form): HASH, SA(ESP), NONCE, IDci, IDcr.
    raw = msgs["qm1"]
    pkt = ISAKMP(raw)
    check_header("qm1", pkt, raw, 8, 32, 0x01020304, RESP)
    p = chain(pkt.payload)
    expect("qm1 payload count", len(p), 5)
    expect("qm1 HASH", p[0].load, pattern(20, 0x70))
    sa = p[1]
    expect("qm1 SA class", type(sa), ISAKMP_payload_SA)
    prop = sa.prop
    expect("qm1 proposal proto ESP", prop.proto, 3)
    expect("qm1 SPI size", prop.SPIsize, 4)
    expect("qm1 SPI", prop.SPI, bytes.fromhex("c0ffee01"))
    expect("qm1 # transforms", prop.trans_nb, 1)
    t = prop.trans
    expect("qm1 transform id AES-GCM-16", t.id, 20)
    expect("qm1 attributes", numeric(t.transforms), [(6, 128), (4, 3), (1, 1), (2, 3960)])
    expect("qm1 NONCE", p[2].load, pattern(32, 0x80))
    expect("qm1 IDci type", p[3].IDtype, 1)
    expect("qm1 IDci", p[3].load, bytes([10, 99, 200, 2]))
    expect("qm1 IDcr type", p[4].IDtype, 4)
    expect("qm1 IDcr", p[4].load, bytes([10, 99, 1, 0, 255, 255, 255, 0]))
    expect("qm1 IDcr next", p[4].next_payload, 0)

    # Informational Delete and Mode Config reply: generic bodies only.
    raw = msgs["delete"]
    pkt = ISAKMP(raw)
    check_header("delete", pkt, raw, 8, 5, 0xcafef00d, RESP)
    p = chain(pkt.payload)
    expect("delete HASH next", p[0].next_payload, 12)
    expect("delete D body", p[1].load, bytes.fromhex("0000000103040001c1c2c3c4"))

    raw = msgs["modecfg"]
    pkt = ISAKMP(raw)
    check_header("modecfg", pkt, raw, 8, 6, 0x0badcafe, RESP)
    p = chain(pkt.payload)
    expect("modecfg HASH next", p[0].next_payload, 14)
    expect("modecfg ATTR body", p[1].load, bytes.fromhex("0200000000010004" "0a636401"))

    for f in failures:
        print("FAIL", f)
    print(f"{len(msgs)} messages, {len(failures)} failures")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())

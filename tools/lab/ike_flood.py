# SPDX-License-Identifier: MIT
"""The "ike_flood" traffic kind: Main Mode first messages (RFC 2409 §5, Identity Protection)
each with a fresh initiator cookie, so a responder takes every one for a new half-open
negotiation, sent as fast as the host can from several source addresses for a while. This
file builds the message; "packets" traffic (packets.py) sends it."""
from __future__ import annotations

import ipaddress
import struct

# RFC 2409 appendix A attribute values.
CIPHERS = {"aes128": 128, "aes192": 192, "aes256": 256}  # AES-CBC (7) with a Key Length attribute
HASHES = {"sha1": 2, "sha256": 4, "sha384": 5, "sha512": 6}
GROUPS = {"modp1024": 2, "modp1536": 5, "modp2048": 14, "modp3072": 15, "modp4096": 16}


def payload(next_payload: int, body: bytes) -> bytes:
    """An ISAKMP generic payload header (RFC 2408 §3.2) in front of its body."""
    return struct.pack("!BBH", next_payload, 0, 4 + len(body)) + body


def main_mode_first(proposal: str, initiator_cookie: bytes = bytes(8)) -> bytes:
    """MM1: the ISAKMP header (RFC 2408 §3.1, Identity Protection, message ID 0) and one SA
    payload (DOI IPsec, SIT_IDENTITY_ONLY) holding one ISAKMP proposal with one KEY_IKE
    transform: AES-CBC, the hash, pre-shared key authentication, the group, 8 h lifetime."""
    cipher, hash_, group = proposal.split("-")
    attrs = b"".join(struct.pack("!HH", 0x8000 | t, v) for t, v in (
        (1, 7), (14, CIPHERS[cipher]), (2, HASHES[hash_]), (3, 1), (4, GROUPS[group]), (11, 1), (12, 28800)))
    transform = payload(0, struct.pack("!BBH", 1, 1, 0) + attrs)        # transform 1, KEY_IKE
    prop = payload(0, struct.pack("!BBBB", 1, 1, 0, 1) + transform)     # proposal 1, PROTO_ISAKMP, no SPI, 1 transform
    sa = payload(0, struct.pack("!II", 1, 1) + prop)                    # DOI IPsec, SIT_IDENTITY_ONLY
    header = initiator_cookie + bytes(8) + struct.pack("!BBBBII", 1, 0x10, 2, 0, 0, 28 + len(sa))
    return header + sa


def as_packets(spec: dict) -> dict:
    """The flood as "packets" traffic (packets.py sends it and keeps its account): one MM1
    template whose initiator cookie is drawn anew for each variant, from source addresses drawn
    in "source" .. "source" + "sources" - 1 and ephemeral ports, as fast as the socket takes
    them for "duration_s"; 25 variants per source address, so each address is used many times."""
    first = ipaddress.IPv4Address(spec["source"])
    n = spec.get("sources", 1)
    mm1 = main_mode_first(spec.get("proposal", "aes128-sha256-modp2048"))
    return {"kind": "packets", "from": spec["from"], "to": spec["to"], "duration_s": spec.get("duration_s", 1), "rate": 0,
            "variants": 25 * n,
            "packets": [{"source": [str(first), str(first + n - 1)], "udp": {"source_port": [1024, 65535], "port": spec.get("port", 500)},
                         "payload": [{"random": 8}, mm1[8:].hex()]}]}

# SPDX-License-Identifier: MIT
"""The "ike_flood" traffic kind: Main Mode first messages (RFC 2409 §5, Identity Protection)
each with a fresh initiator cookie, so a responder takes every one for a new half-open
negotiation, sent as fast as the host can from several source addresses for a while."""
from __future__ import annotations

import struct
import subprocess

from netns_lab import Host, Lab

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


SENDER = r"""
import os, socket, sys, time
mm1, to, port, duration = bytes.fromhex(sys.argv[1]), sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
socks = []
for a in sys.argv[5:]:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind((a, 0))
    socks.append(s)
sent = 0
end = time.monotonic() + duration
while time.monotonic() < end:
    for s in socks:
        try:
            s.sendto(os.urandom(8) + mm1[8:], (to, port))  # a fresh CKY-I: a new negotiation each
            sent += 1
        except OSError:
            pass
print("sent", sent, flush=True)
"""


class IkeFlood:
    """One flood from `host`: its source addresses are added (as /32) to the interface that
    routes toward `to`, then the sender runs for `duration_s`."""

    def __init__(self, lab: Lab, host: Host, name: str, to: str, port: int, sources: list[str], duration_s: float,
                 proposal: str):
        route = host.run(["ip", "-o", "-4", "route", "get", to]).stdout
        dev = route.split(" dev ")[1].split()[0]
        for a in sources:
            host.run(["ip", "addr", "add", f"{a}/32", "dev", dev])
        self.proc = host.spawn(["/usr/bin/python3", "-c", SENDER, main_mode_first(proposal).hex(), to, str(port), str(duration_s),
                                *sources], log_name=f"ike-flood-{name}")

    def account(self) -> dict:
        done = self.proc.poll() is not None
        sent = 0
        if done:
            try:
                with open(self.proc.log_path) as f:  # type: ignore[attr-defined]
                    words = f.read().split()
                sent = int(words[words.index("sent") + 1])
            except (OSError, ValueError, IndexError):
                pass
        return {"sent": sent, "done": done}

    def stop(self, lab: Lab) -> None:
        if self.proc.poll() is None:
            try:
                lab.stop(self.proc)
            except subprocess.SubprocessError:
                pass

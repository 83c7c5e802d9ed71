# SPDX-License-Identifier: MIT
"""A hostile host's traffic kind "forged_replies": it owns a home agent's address where it should
not (on its loopback) and answers every Mobile IPv4 registration request sent to that address
with a well-formed success reply authenticated with the wrong key, as an attacker posing as
the home agent would. With "trusted_networks" the reply also carries the Trusted Networks
Configured extension (RFC 5265 §5), the answer that would convince an RFC 5265 mobile node it is
inside. A mobile node must reject every such reply (its authenticator fails).

Run as `python3 forger.py ADDRESS KEY_HEX SPI TNC(0|1)` in the host's namespace; it prints
"forging" once bound and "forged reply to (addr, port)" per reply, the lines the runner counts.
"""
import hashlib
import hmac
import socket
import struct
import sys

REGISTRATION_REQUEST = 1
REGISTRATION_REPLY = 3
TNC_EXTENSION = 149  # RFC 5265 §5, a skippable extension without data
MHAE = 32  # RFC 5944 §3.5.2 Mobile-Home Authentication Extension


def reply(request: bytes, address: str, key: bytes, spi: int, tnc: bool) -> bytes:
    """RFC 5944 §3.4: code 0, lifetime 60, the request's home address and identification, the
    home agent's address; the MHAE's HMAC-MD5 covers everything before the authenticator."""
    home, ident = request[4:8], request[16:24]
    body = struct.pack("!BBH", REGISTRATION_REPLY, 0, 60) + home + socket.inet_aton(address) + ident
    if tnc:
        body += bytes([TNC_EXTENSION, 2, 0, 0])
    body += struct.pack("!BBI", MHAE, 20, spi)
    return body + hmac.new(key, body, hashlib.md5).digest()


def main() -> int:
    address, key, spi, tnc = sys.argv[1], bytes.fromhex(sys.argv[2]), int(sys.argv[3]), sys.argv[4] == "1"
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setsockopt(socket.IPPROTO_IP, socket.IP_TTL, 255)
    s.bind((address, 434))
    print("forging", flush=True)
    while True:
        request, peer = s.recvfrom(2048)
        if len(request) < 24 or request[0] != REGISTRATION_REQUEST:
            continue
        s.sendto(reply(request, address, key, spi, tnc), peer)
        print("forged reply to", peer, flush=True)


if __name__ == "__main__":
    sys.exit(main())

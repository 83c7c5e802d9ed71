#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""Independent interop check of ipsec.esp_tunnel (RFC 4303 tunnel mode).

Usage: esp_check.py PATH/TO/esp_vectors_tool

1. `esp_vectors_tool seal` prints tunnel packets mipsec sealed for every suite, ESN off and
   on (ESN runs start at 2^33-2 so the high half changes mid-run), as raw ESP and as
   UDP-encapsulated ESP (RFC 3948: UDP 4500, checksum 0, stacked nat.udp_encap). Each packet is opened
   here twice, by code that shares nothing with mipsec:
     - a small reference decoder on python `cryptography` (AESGCM, ChaCha20Poly1305, AES-CBC,
       hmac/hashlib), written from RFC 4303 / 4106 / 7634 / 3602 / 2404 / 4868, which also
       checks the outer IPv4 header, the padding bytes and Next Header 4;
     - scapy's SecurityAssociation (scapy.layers.ipsec), except for ESN with HMAC: scapy 2.5
       leaves the high sequence half out of the ESP ICV (its AuthAlgo.sign/verify only add it
       for AH), so it cannot open those correctly; the reference decoder covers them.
2. Python seals packets (scapy where it is right, the reference encoder for ESN+HMAC), plus
   one tampered and one replayed packet per SA; `esp_vectors_tool open` must return each
   inner packet unchanged, `auth_failed` for the tampered one and `replayed_sequence` for the
   replay.
Exits non-zero on any mismatch; the last line reads "N passed, M failed".
"""
import hashlib
import hmac
import json
import os
import struct
import subprocess
import sys

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM, ChaCha20Poly1305
from scapy.compat import raw
from scapy.layers.inet import IP, UDP
from scapy.layers.ipsec import ESP, SecurityAssociation
from scapy.packet import Raw

SUITES = {
    "aes128gcm16": dict(aead=AESGCM, enc=16, integ=0, icv=16, iv=8, scapy=("AES-GCM", None)),
    "aes256gcm16": dict(aead=AESGCM, enc=32, integ=0, icv=16, iv=8, scapy=("AES-GCM", None)),
    "chacha20poly1305": dict(aead=ChaCha20Poly1305, enc=32, integ=0, icv=16, iv=8,
                             scapy=("CHACHA20-POLY1305", None)),
    "aes128-sha1": dict(aead=None, enc=16, integ=20, icv=12, iv=16, hash=hashlib.sha1,
                        scapy=("AES-CBC", "HMAC-SHA1-96")),
    "aes256-sha1": dict(aead=None, enc=32, integ=20, icv=12, iv=16, hash=hashlib.sha1,
                        scapy=("AES-CBC", "HMAC-SHA1-96")),
    "aes128-sha256": dict(aead=None, enc=16, integ=32, icv=16, iv=16, hash=hashlib.sha256,
                          scapy=("AES-CBC", "SHA2-256-128")),
    "aes256-sha256": dict(aead=None, enc=32, integ=32, icv=16, iv=16, hash=hashlib.sha256,
                          scapy=("AES-CBC", "SHA2-256-128")),
}

passed = 0
failed = 0


def result(name, ok, detail=""):
    global passed, failed
    if ok:
        passed += 1
    else:
        failed += 1
        print(f"FAIL {name}: {detail}")


class Keys:
    """KEYMAT split as RFC 4301/IKE orders it: encryption key (|| 4-byte salt), then integrity key."""

    def __init__(self, suite, keymat):
        s = SUITES[suite]
        self.s = s
        enc_len = s["enc"] + (4 if s["aead"] else 0)
        self.enc_keymat = keymat[:enc_len]
        self.enc = keymat[:s["enc"]]
        self.salt = keymat[s["enc"]:enc_len] if s["aead"] else b""
        self.integ = keymat[enc_len:enc_len + s["integ"]]
        assert len(keymat) == enc_len + s["integ"], "KEYMAT length"


def aad(spi, seq, esn):
    # RFC 4106 §5 / RFC 7634 §3: SPI || seq (32-bit) or SPI || seq_hi || seq_lo (ESN).
    return struct.pack("!IQ", spi, seq) if esn else struct.pack("!II", spi, seq & 0xFFFFFFFF)


def ref_seal(keys, spi, seq, esn, iv, payload, nh):
    s = keys.s
    align = 4 if s["aead"] else 16
    pad = (-(len(payload) + 2)) % align
    plaintext = payload + bytes(range(1, pad + 1)) + bytes([pad, nh])
    head = struct.pack("!II", spi, seq & 0xFFFFFFFF) + iv
    if s["aead"]:
        sealed = s["aead"](keys.enc).encrypt(keys.salt + iv, plaintext, aad(spi, seq, esn))
        return head + sealed
    enc = Cipher(algorithms.AES(keys.enc), modes.CBC(iv)).encryptor()
    body = head + enc.update(plaintext) + enc.finalize()
    # RFC 4303 §2.2.1: with ESN the high half is appended for the ICV computation only.
    mac_input = body + (struct.pack("!I", seq >> 32) if esn else b"")
    return body + hmac.new(keys.integ, mac_input, s["hash"]).digest()[:s["icv"]]


def ref_open(keys, spi, seq, esn, esp):
    """Returns (next_header, payload) or raises ValueError."""
    s = keys.s
    if len(esp) < 8 + s["iv"] + s["icv"] + 2:
        raise ValueError("too short")
    got_spi, got_seq = struct.unpack("!II", esp[:8])
    if got_spi != spi or got_seq != seq & 0xFFFFFFFF:
        raise ValueError(f"header spi={got_spi:#x} seq={got_seq:#x}")
    iv = esp[8:8 + s["iv"]]
    if s["aead"]:
        plaintext = s["aead"](keys.enc).decrypt(keys.salt + iv, esp[8 + s["iv"]:], aad(spi, seq, esn))
        if len(esp[8 + s["iv"]:]) % 4 != 0:
            raise ValueError("ICV not 4-byte aligned")
    else:
        body, icv = esp[:-s["icv"]], esp[-s["icv"]:]
        mac_input = body + (struct.pack("!I", seq >> 32) if esn else b"")
        if not hmac.compare_digest(hmac.new(keys.integ, mac_input, s["hash"]).digest()[:s["icv"]], icv):
            raise ValueError("ICV mismatch")
        ciphertext = body[8 + s["iv"]:]
        if len(ciphertext) % 16 != 0:
            raise ValueError("ciphertext not whole blocks")
        dec = Cipher(algorithms.AES(keys.enc), modes.CBC(iv)).decryptor()
        plaintext = dec.update(ciphertext) + dec.finalize()
    pad, nh = plaintext[-2], plaintext[-1]
    payload = plaintext[:len(plaintext) - 2 - pad]
    if plaintext[len(payload):-2] != bytes(range(1, pad + 1)):
        raise ValueError("padding is not 1, 2, 3, ...")
    return nh, payload


def ipv4_checksum(header):
    total = sum(struct.unpack(f"!{len(header) // 2}H", header))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return total


def check_outer(wire, src, dst, udp=False):
    if wire[0] != 0x45:
        raise ValueError("outer header is not a 20-byte IPv4 header")
    if struct.unpack("!H", wire[2:4])[0] != len(wire):
        raise ValueError("outer Total Length")
    if wire[9] != (17 if udp else 50):
        raise ValueError(f"outer protocol {wire[9]}")
    if ipv4_checksum(wire[:20]) != 0xFFFF:
        raise ValueError("outer header checksum")
    if wire[12:16] != bytes(map(int, src.split("."))) or wire[16:20] != bytes(map(int, dst.split("."))):
        raise ValueError("outer addresses")
    if not udp:
        return wire[20:]
    # RFC 3948 §2.1: ports 4500, Length covers UDP header + ESP, checksum SHOULD be zero.
    sport, dport, length, checksum = struct.unpack("!HHHH", wire[20:28])
    if (sport, dport) != (4500, 4500) or length != len(wire) - 20 or checksum != 0:
        raise ValueError(f"UDP header {sport} {dport} {length} {checksum:#x}")
    if wire[28:32] == b"\0\0\0\0":
        raise ValueError("non-ESP marker in front of ESP")
    return wire[28:]


def scapy_sa(case, keys, seq):
    crypt, auth = SUITES[case["suite"]]["scapy"]
    # The sequence number goes in through seq_num: encrypt(seq_num=0) would fall back to the
    # SA's counter, because scapy tests it for truth (ESN low half 0 is a real value).
    return SecurityAssociation(ESP, spi=case["spi"], seq_num=seq & 0xFFFFFFFF, crypt_algo=crypt,
                               crypt_key=keys.enc_keymat,
                               auth_algo=auth, auth_key=keys.integ if auth else None,
                               tunnel_header=IP(src=case["src"], dst=case["dst"]),
                               nat_t_header=UDP(sport=4500, dport=4500) if case.get("udp") else None,
                               esn_en=case["esn"], esn=seq >> 32)


def scapy_can(case):
    # scapy 2.5 ESP + HMAC ignores the ESN high half (see the module docstring).
    return not (case["esn"] and SUITES[case["suite"]]["aead"] is None)


def check_mipsec_sealed(tool):
    out = subprocess.run([tool, "seal"], check=True, capture_output=True, text=True).stdout
    cases = json.loads(out)["cases"]
    result("seal: every suite with ESN off and on, raw and UDP-encapsulated", len(cases) == 4 * len(SUITES), f"{len(cases)} cases")
    for case in cases:
        keys = Keys(case["suite"], bytes.fromhex(case["keymat"]))
        for p in case["packets"]:
            name = f"mipsec->python {case['suite']} esn={case['esn']} udp={case['udp']} seq={p['seq']:#x}"
            wire, inner = bytes.fromhex(p["wire"]), bytes.fromhex(p["inner"])
            try:
                esp = check_outer(wire, case["src"], case["dst"], case["udp"])
                nh, payload = ref_open(keys, case["spi"], p["seq"], case["esn"], esp)
                ok = nh == 4 and payload == inner
                result(name + " [cryptography]", ok, f"nh={nh} payload={payload.hex()}")
            except Exception as e:  # noqa: BLE001 - every failure is a test failure
                result(name + " [cryptography]", False, repr(e))
            if not scapy_can(case):
                continue
            try:
                opened = scapy_sa(case, keys, p["seq"]).decrypt(IP(wire))
                result(name + " [scapy]", raw(opened) == inner, raw(opened).hex())
            except Exception as e:  # noqa: BLE001
                result(name + " [scapy]", False, repr(e))


def python_sealed_cases():
    cases = []
    spi = 0x2000
    for suite, s in SUITES.items():
      for udp in (False, True):
        for esn in (False, True):
            spi += 1
            keymat = os.urandom(s["enc"] + (4 if s["aead"] else 0) + s["integ"])
            initial = 0x1FFFFFFFE if esn else 0
            case = dict(suite=suite, esn=esn, udp=udp, spi=spi, keymat=keymat.hex(), initial_seq=initial,
                        src="203.0.113.7", dst="203.0.113.8", packets=[], expect=[])
            keys = Keys(suite, keymat)
            for i, size in enumerate((0, 7, 64, 300, 20)):
                seq = initial + 1 + i
                inner_pkt = IP(src="10.8.0.2", dst="10.9.0.1", tos=0x10, id=i + 1) / UDP(sport=4000 + i, dport=53) / Raw(os.urandom(size))
                inner = raw(inner_pkt)
                iv = os.urandom(s["iv"])
                if scapy_can(case):
                    wire = raw(scapy_sa(case, keys, seq).encrypt(IP(inner), iv=iv))
                    if udp:
                        # scapy 2.5 leaves the NAT-T UDP Length at 8 (computed before the ESP
                        # payload is attached); mipsec rightly calls that truncated. Fix only
                        # that field (and the UDP checksum stays 0, which RFC 3948 allows).
                        wire = wire[:24] + struct.pack("!H", len(wire) - 20) + wire[26:]
                else:
                    esp = ref_seal(keys, spi, seq, esn, iv, inner, 4)
                    if udp:
                        outer = IP(src=case["src"], dst=case["dst"]) / UDP(sport=4500, dport=4500, chksum=0) / Raw(esp)
                    else:
                        outer = IP(src=case["src"], dst=case["dst"], proto=50) / Raw(esp)
                    wire = raw(outer)
                case["packets"].append(dict(wire=wire.hex()))
                case["expect"].append(("pass", inner))
            # The last packet first arrives with a flipped ICV bit: refused, and the window
            # must not move, so the genuine copy still passes. Then a replay of the first.
            last = case["packets"].pop()
            last_expect = case["expect"].pop()
            tampered = bytearray(bytes.fromhex(last["wire"]))
            tampered[-1] ^= 0x01
            case["packets"].append(dict(wire=bytes(tampered).hex()))
            case["expect"].append(("auth_failed", b""))
            case["packets"].append(last)
            case["expect"].append(last_expect)
            case["packets"].append(dict(wire=case["packets"][0]["wire"]))
            case["expect"].append(("replayed_sequence", b""))
            cases.append(case)
    return cases


def check_python_sealed(tool):
    cases = python_sealed_cases()
    request = {"cases": [{k: v for k, v in c.items() if k != "expect"} for c in cases]}
    out = subprocess.run([tool, "open"], check=True, capture_output=True, text=True,
                         input=json.dumps(request)).stdout
    answers = json.loads(out)
    result("open: one answer per case", len(answers) == len(cases), f"{len(answers)}")
    for case, answer in zip(cases, answers):
        for i, ((verdict, inner), got) in enumerate(zip(case["expect"], answer["results"])):
            name = f"python->mipsec {case['suite']} esn={case['esn']} udp={case['udp']} packet {i} ({verdict})"
            ok = got["verdict"] == verdict and bytes.fromhex(got["inner"]) == inner
            result(name, ok, f"got {got['verdict']} {got['inner'][:40]}")


def main():
    if len(sys.argv) != 2:
        print(__doc__)
        return 2
    tool = sys.argv[1]
    check_mipsec_sealed(tool)
    check_python_sealed(tool)
    print(f"{passed} passed, {failed} failed")
    return 0 if failed == 0 and passed > 0 else 1


if __name__ == "__main__":
    sys.exit(main())

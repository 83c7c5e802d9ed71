# SPDX-License-Identifier: MIT
"""Per-link packet captures of a lab run, and what they hold, judged by an independent tool.

dumpcap (Wireshark's capture engine) records one network's bridge in the switch namespace
(the bridge is promiscuous while captured, so it sees every frame any port sends, forwarded or
not); tshark dissects the file afterwards and each frame is put in a class from tshark's own
protocol chain (frame.protocols, e.g. "eth:ethertype:ip:udp:mip:ip:esp") and header fields.
Nothing of mipsec's parses these packets.

On an outside link (RFC 5265 §1: anything outside the intranet) the node may send only what
its stack protects or what carries no user data:
  ike                 ISAKMP on UDP 500, or on 4500 after the non-ESP marker (RFC 3948 §2.2)
  esp                 ESP, plain (protocol 50) or in UDP 4500 (RFC 3948)
  nat-t keepalive     the one-byte 0xff on UDP 4500 (RFC 3948 §2.3)
  registration        Mobile IP registration requests and replies on UDP 434 (RFC 5944 §3)
  agent discovery     ICMP router advertisements and solicitations (RFC 5944 §2)
  mip-tunnelled ...   IP-in-IP (RFC 2003) or RFC 3519 tunnel data whose inner packet is ESP,
                      IKE or a NAT-T keepalive
  tunnel keepalive    RFC 3519 §3.6: an ICMP echo through the UDP tunnel to or from the tunnel's
                      home agent itself
  icmp error          an ICMP error quoting one of the above
  dhcp, link          DHCP (UDP 67/68), ARP, IGMP, IPv6 neighbour discovery and MLD (ICMPv6),
                      and an ICMP echo between two addresses of the captured link's own prefix
                      (a DHCP server probing an address before it offers it, RFC 2131 §4.4.1)
Anything else (a TCP segment, an ICMP echo between other hosts, UDP data) is "clear": a user
packet readable on that link.
"""
from __future__ import annotations

import ipaddress
import os
import shutil
import subprocess
import time
from typing import Optional

ALLOWED = ("ike", "esp", "nat-t keepalive", "registration", "agent discovery", "mip-tunnelled esp", "mip-tunnelled ike",
           "mip-tunnelled nat-t keepalive", "tunnel keepalive", "icmp error", "dhcp", "link")
CLEAR = "clear"
FIELDS = ("frame.number", "frame.time_epoch", "frame.protocols", "ip.src", "ip.dst", "icmp.type", "mip.type", "ip.len")
ICMP_ECHO = ("0", "8")
ICMP_AGENT = ("9", "10")
ICMP_ERRORS = ("3", "4", "5", "11", "12")


class Frame:
    """One frame as tshark saw it."""

    def __init__(self, line: str):
        parts = line.rstrip("\n").split("\t")
        parts += [""] * (len(FIELDS) - len(parts))
        self.number = int(parts[0] or 0)
        self.time = float(parts[1] or 0)
        self.layers = parts[2].split(":")
        self.src = [a for a in parts[3].split(",") if a]
        self.dst = [a for a in parts[4].split(",") if a]
        self.icmp = [t for t in parts[5].split(",") if t]
        self.mip = [t for t in parts[6].split(",") if t]
        self.ip_len = [int(n) for n in parts[7].split(",") if n.isdigit()]

    def describe(self) -> str:
        hops = " | ".join(f"{s} > {d}" for s, d in zip(self.src, self.dst))
        return f"frame {self.number} at {self.time:.3f}: {':'.join(self.layers)} ({hops})"


def classify(f: Frame, link: Optional[ipaddress.IPv4Network] = None) -> str:
    """The frame's class (see the module's docstring); `link` is the captured network's prefix."""
    layers = [x for x in f.layers if x not in ("eth", "ethertype", "vlan")]
    if not layers:
        return CLEAR
    if layers[0] == "arp":
        return "link"
    if layers[0] == "ipv6":
        return "link" if [x for x in layers[1:] if x != "ipv6.hopopts"][:1] == ["icmpv6"] else CLEAR
    if layers[0] != "ip":
        return CLEAR
    if layers[1:2] == ["igmp"]:
        return "link"
    if (link is not None and layers[1:2] == ["icmp"] and f.icmp[:1] and f.icmp[0] in ICMP_ECHO and f.src and f.dst
            and ipaddress.IPv4Address(f.src[0]) in link and ipaddress.IPv4Address(f.dst[0]) in link):
        return "link"
    return _after_ip(layers[1:], f, depth=0, icmp_at=0)


def _after_ip(rest: list, f: Frame, depth: int, icmp_at: int) -> str:
    """What follows the IP header number `depth` (0 = outermost); icmp_at counts the ICMP
    headers already passed, to read the matching icmp.type occurrence."""
    head = rest[0] if rest else ""
    if head == "esp":
        return "esp"
    if head == "udp":
        nxt = rest[1] if len(rest) > 1 else ""
        if nxt in ("dhcp", "bootp"):
            return "dhcp"
        if nxt == "isakmp":
            return "ike"
        if nxt == "udpencap":
            inner = rest[2] if len(rest) > 2 else ""
            return {"esp": "esp", "isakmp": "ike", "": "nat-t keepalive"}.get(inner, CLEAR)
        if nxt == "mip":
            if len(rest) == 2:
                return "registration"
            if rest[2] == "ip":  # RFC 3519 tunnel data
                return _tunnelled(rest[3:], f, depth + 1, icmp_at)
        return CLEAR
    if head == "ip":  # IP in IP (RFC 2003)
        return _tunnelled(rest[1:], f, depth + 1, icmp_at)
    if head == "icmp":
        kind = f.icmp[icmp_at] if icmp_at < len(f.icmp) else ""
        if kind in ICMP_AGENT:
            return "agent discovery"
        if kind in ICMP_ERRORS and rest[1:2] == ["ip"]:
            quoted = _after_ip(rest[2:], f, depth + 1, icmp_at + 1)
            return "icmp error" if quoted in ALLOWED else CLEAR
        return CLEAR
    return CLEAR


def _tunnelled(rest: list, f: Frame, depth: int, icmp_at: int) -> str:
    """The packet a Mobile IP tunnel carries, its IP header being number `depth`."""
    inner = _after_ip(rest, f, depth, icmp_at)
    if inner in ("esp", "ike", "nat-t keepalive"):
        return "mip-tunnelled " + inner
    # RFC 3519 §3.6: the keepalive is an echo from the home address to the home agent, the
    # tunnel's own end; a user's echo has an end of its own.
    if rest[:1] == ["icmp"] and icmp_at < len(f.icmp) and f.icmp[icmp_at] in ICMP_ECHO and depth < len(f.src):
        outer_ends = {f.src[depth - 1], f.dst[depth - 1]}
        if f.src[depth] in outer_ends or f.dst[depth] in outer_ends:
            return "tunnel keepalive"
    return CLEAR


PROBE_IP_LEN = 84  # the lab's probe: ping's default 56 data bytes + ICMP (8) + IPv4 (20)


def overhead(f: Frame, address: str, inner_len: int = PROBE_IP_LEN) -> Optional[int]:
    """The bytes the stack added to one probe packet: the outermost IP packet's length minus
    the innermost's, for a frame whose innermost packet is an ICMP echo of the probe's size
    to or from `address` (the probe's target) and every ICMP header in it an echo (not an
    error quoting one). None for any other frame (an RFC 3519 keepalive is an echo from the
    home address too, but a small one), and for ESP tshark could not decrypt (its inner packet
    is not dissected, so the innermost IP header is not the probe's)."""
    if "ip" not in f.layers:
        return None
    last_ip = len(f.layers) - 1 - f.layers[::-1].index("ip")
    if f.layers[last_ip + 1:last_ip + 2] != ["icmp"] or not f.icmp or any(t not in ICMP_ECHO for t in f.icmp):
        return None
    if not f.ip_len or f.ip_len[-1] != inner_len or not f.src or address not in (f.src[-1], f.dst[-1]):
        return None
    return f.ip_len[0] - f.ip_len[-1]


def decrypt_options(esp_sa: list[str], ikev1_decryption_table: list[str]) -> list[str]:
    """tshark options that decrypt ESP and IKEv1 with Wireshark's two key tables, one line per
    SA (the lines mipsec's key_log writes)."""
    if not esp_sa and not ikev1_decryption_table:
        return []
    opts = ["-o", "esp.enable_encryption_decode:TRUE"]
    for line in ikev1_decryption_table:
        opts += ["-o", f"uat:ikev1_decryption_table:{line}"]
    for line in esp_sa:
        opts += ["-o", f"uat:esp_sa:{line}"]
    return opts


def read(path: str, tshark: str = "tshark", options: Optional[list] = None) -> list[Frame]:
    """Every frame of a capture; `options` (decrypt_options) let tshark dissect inside ESP."""
    argv = [tshark, "-r", path, "-n", *(options or []), "-T", "fields", "-E", "occurrence=a", "-E", "aggregator=,", "-E", "separator=/t"]
    for name in FIELDS:
        argv += ["-e", name]
    r = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    if r.returncode != 0:
        raise RuntimeError(f"tshark -r {path}: exit {r.returncode}: {r.stderr.strip()[-500:]}")
    return [Frame(line) for line in r.stdout.splitlines() if line.strip()]


def problems(path: str, options: Optional[list] = None, tshark: str = "tshark") -> list[str]:
    """The frames tshark calls malformed or marks with an error-level expert item, one line each.
    ICMP errors aside: the packet one quotes is cut short (RFC 792: the start of the original
    datagram; RFC 1812 §4.3.2.3: as much as fits in 576 bytes), and tshark, dissecting the quote
    as far as it goes (an ESP trailer it cannot find), errs on what is missing. A repeated
    ISAKMP message aside too (isakmp_repeats)."""
    r = subprocess.run([tshark, "-r", path, "-n", *(options or []), "-Y",
                        "(_ws.malformed || _ws.expert.severity == error) && !(" + " || ".join(f"icmp.type == {t}" for t in ICMP_ERRORS) + ")"],
                       capture_output=True, text=True, timeout=120)
    if r.returncode != 0:
        raise RuntimeError(f"tshark -r {path}: exit {r.returncode}: {r.stderr.strip()[-500:]}")
    lines = [line.strip() for line in r.stdout.splitlines() if line.strip()]
    repeated = isakmp_repeats(path, tshark) if lines else set()
    return [line for line in lines if int(line.split()[0]) not in repeated]


def isakmp_repeats(path: str, tshark: str = "tshark") -> set[int]:
    """The ISAKMP frames whose UDP payload an earlier frame carried byte for byte: retransmissions
    (a lost answer makes the sender resend its message unchanged, as mipsec and charon do). tshark
    keeps one CBC chain per IKEv1 SA and takes an encrypted message with the previous one's
    message ID for the next of that exchange, its IV the last block of the previous (RFC 2409
    Appendix B), so it garbles a repeated copy of a message it read well ("Malformed Packet").
    The first copy is judged; the copy says nothing more."""
    r = subprocess.run([tshark, "-r", path, "-n", "-Y", "isakmp", "-T", "fields", "-e", "frame.number", "-e", "udp.payload"],
                       capture_output=True, text=True, timeout=120)
    if r.returncode != 0:
        raise RuntimeError(f"tshark -r {path}: exit {r.returncode}: {r.stderr.strip()[-500:]}")
    seen: set[str] = set()
    repeats: set[int] = set()
    for line in r.stdout.splitlines():
        number, _, payload = line.partition("\t")
        if payload and payload in seen:
            repeats.add(int(number))
        seen.add(payload)
    return repeats


class Capture:
    """dumpcap on one network's bridge, writing <lab dir>/capture-<network>.pcap."""

    def __init__(self, lab, switch, network: str, bridge: str, timeout: float = 10):
        if shutil.which("dumpcap") is None or shutil.which("tshark") is None:
            raise RuntimeError("captures need dumpcap and tshark (Debian: tshark)")
        self.lab = lab
        self.network = network
        self.path = os.path.join(lab.dir, f"capture-{network}.pcap")
        self.proc = switch.spawn(["dumpcap", "-q", "-P", "-i", bridge, "-w", self.path], log_name=f"dumpcap-{network}")
        deadline = time.monotonic() + timeout
        while "Capturing on" not in open(self.proc.log_path).read():  # type: ignore[attr-defined]
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"dumpcap on {bridge} did not start: " + open(self.proc.log_path).read()[-500:])  # type: ignore
            time.sleep(0.05)
        self.frames: Optional[list[Frame]] = None

    def stop(self) -> None:
        self.lab.stop(self.proc)

    def read(self, options: Optional[list] = None) -> list[Frame]:
        if self.frames is None:
            self.frames = read(self.path, options=options)
        return self.frames

# SPDX-License-Identifier: MIT
"""A hostile sender in the lab: while a live tunnel carries a paced probe and a TCP stream, a
separate attacker namespace sends crafted and random packets (scapy) at every port and protocol
mipsec listens on, and every one of them must be dropped *and counted*, with the tunnel and its
traffic unaffected and no node restarting.

    lan 10.99.1.2 --- gw (`mipsec run` ipsec.vpn_gateway, 198.18.5.2) --- inet --- x-ha (198.18.1.2)
    inet --- cafe router 198.18.2.2 (192.0.2.1/24, dnsmasq) --- mn (VPN client over a mobile node)
    inet --- evil 198.18.7.2, also on the cafe link as 192.0.2.66 (the attacker)

The mobile node stacks ipsec.vpn_client + nat.udp_encap on mip.mobile_node (as in
the lab scenario deploy-2-4-outside with the mipsec gateway): IKE and ESP run from its home address through
the home agent. The attacker's phases, each followed by a `mipsec status --json` snapshot:

  home agent   UDP 434: requests with a bad authenticator, an unknown home address, an unknown
               SPI, truncated, with garbage / unknown extensions, a bad UDP checksum, replays of
               an authentic request with a stale identification, other message types, tunnel
               data (type 4) from a stranger, random bytes; IP protocol 4 from a stranger
               (inner source bound and unbound, truncated inner).
  gateway      UDP 500 and 4500: random bytes, truncated ISAKMP headers, well-formed headers
               with unknown cookies and with the live IKE SA's cookies (read from the mobile
               node's capture) around garbage, non-ESP-marker tricks, NAT keepalives, ESP in UDP with an
               unknown SPI; IP protocol 50 with an unknown SPI and with the live SA's SPI but a
               bad ICV.
  mobile node  forged registration replies, IP-in-IP from a stranger, agent advertisements
               from beyond the link (the home agent's address spoofed: IP TTL is not 1) and on
               the link (garbage, bad checksum, a spoofed foreign agent), router solicitations.

For each phase the counter the packets must land in grows by exactly the number sent (the
legitimate traffic never touches those counters), and for the home agent and the gateway the
books balance over the whole attack: every packet their sockets received was passed, consumed,
dropped under a reason or left to the kernel (inbound_unclaimed). At the end: no probe lost, the TCP stream byte-exact, the same IKE session and SPIs, the same binding,
every process alive with its original PID and no sanitizer report in any log.
"""
import argparse
import json
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "tools"))
from netns_lab import Checks, Lab, pcap_packets, require_root  # noqa: E402
from roaming_lab import Roaming, Stream, node_status, stage_states, write_json  # noqa: E402

PSK = "lab-psk-0123456789"
X_HOME = "203.0.113.77"
X_HA = "198.18.1.2"
GW = "198.18.5.2"
LAN = "10.99.1.2"
EVIL = "198.18.7.2"
EVIL_LINK = "192.0.2.66"
MIP_KEY = "00112233445566778899aabbccddeeff"
MIP_SPI = 300
FWMARK = 0x6d69
N = 40  # packets per phase

# The attacker: reads one JSON command per line ({"phase": ..., parameters}), sends that phase's
# packets with scapy and answers with the number sent.
ATTACKER = r"""
import hashlib, hmac, json, os, random, struct, sys, time
from scapy.all import IP, UDP, ICMP, Raw, conf, send
from scapy.utils import checksum
conf.verb = 0
rnd = random.Random(0x5eed)

def rb(n):
    return bytes(rnd.getrandbits(8) for _ in range(n))

def ntp_now(offset_s=0):
    t = time.time() + 2208988800 + offset_s
    return (int(t) << 32) | int((t % 1) * (1 << 32))

def request(home, ha, coa, ident, spi, key=None, lifetime=120, flags=0, extra=b""):
    # RFC 5944 §3.3 Registration Request, then extensions, then the MHAE (RFC 5944 §3.5.2).
    body = struct.pack("!BBH4s4s4sQ", 1, flags, lifetime, bytes(map(int, home.split("."))),
                       bytes(map(int, ha.split("."))), bytes(map(int, coa.split("."))), ident) + extra
    head = body + struct.pack("!BBI", 32, 20, spi)
    auth = hmac.new(key, head, hashlib.md5).digest() if key else rb(16)
    return head + auth

def icmp_bytes(body, bad_checksum=False):
    # ICMP type, code, checksum over the message (RFC 792), built by hand: scapy's ICMP layer
    # adds its own router advertisement fields.
    c = checksum(body[:2] + b"\0\0" + body[4:])
    if bad_checksum:
        c ^= 0x5A5A
    return body[:2] + struct.pack("!H", c) + body[4:]

def advert(seq=1, flags=0x10, coas=(), lifetime=30, garbage=None, bad_checksum=False):
    # RFC 5944 §2.1: ICMP router advertisement (no router addresses) + type 16 extension.
    ext = struct.pack("!BBHHBB", 16, 6 + 4 * len(coas), seq, 1800, flags, 0) + b"".join(
        bytes(map(int, c.split("."))) for c in coas)
    if garbage is not None:
        ext = garbage
    return Raw(icmp_bytes(struct.pack("!BBHBBH", 9, 0, 0, 0, 2, lifetime) + ext, bad_checksum))

def phase(cmd):
    p, n = cmd["phase"], cmd["n"]
    a = cmd
    pk = []
    if p == "reg_bad_auth":
        pk = [IP(dst=a["ha"]) / UDP(sport=434, dport=434) / Raw(request(a["home"], a["ha"], "192.0.2.99", ntp_now(), a["spi"])) for _ in range(n)]
    elif p == "reg_unknown_home":
        pk = [IP(dst=a["ha"]) / UDP(sport=434, dport=434) / Raw(request("203.0.113.%d" % (100 + i % 100), a["ha"], "192.0.2.99", ntp_now(), a["spi"])) for i in range(n)]
    elif p == "reg_unknown_spi":
        pk = [IP(dst=a["ha"]) / UDP(sport=434, dport=434) / Raw(request(a["home"], a["ha"], "192.0.2.99", ntp_now(), 0x10000 + i)) for i in range(n)]
    elif p == "reg_truncated":
        pk = [IP(dst=a["ha"]) / UDP(sport=434, dport=434) / Raw(b"\x01" + rb(rnd.randrange(0, 23))) for _ in range(n)]
    elif p == "reg_bad_extensions":
        # An extension whose length runs past the end, then an unknown non-skippable type (< 128).
        half = n // 2
        pk = [IP(dst=a["ha"]) / UDP(sport=434, dport=434) / Raw(request(a["home"], a["ha"], "192.0.2.99", ntp_now(), a["spi"])[:24] + bytes([32, 200]) + rb(10)) for _ in range(half)]
        pk += [IP(dst=a["ha"]) / UDP(sport=434, dport=434) / Raw(request(a["home"], a["ha"], "192.0.2.99", ntp_now(), a["spi"], extra=bytes([77, 4]) + rb(4))) for _ in range(n - half)]
    elif p == "reg_bad_checksum":
        pk = [IP(dst=a["ha"]) / UDP(sport=434, dport=434, chksum=0x1234) / Raw(request(a["home"], a["ha"], "192.0.2.99", ntp_now(), a["spi"])) for _ in range(n)]
    elif p == "reg_replay":
        # Authentic (the attacker knows the key here) but stale: identification 10 minutes old.
        key = bytes.fromhex(a["key"])
        pk = [IP(dst=a["ha"]) / UDP(sport=434, dport=434) / Raw(request(a["home"], a["ha"], "192.0.2.99", ntp_now(-600) + i, a["spi"], key=key)) for i in range(n)]
    elif p == "udp434_other_types":
        pk = [IP(dst=a["ha"]) / UDP(sport=434, dport=434) / Raw(bytes([rnd.choice([0, 2, 3, 5, 7, 255])]) + rb(30)) for _ in range(n)]
    elif p == "udp434_tunnel_data":
        # RFC 3519 type 4 from a stranger, inner from the bound home address.
        pk = [IP(dst=a["ha"]) / UDP(sport=4344, dport=434) / Raw(bytes([4, 4, 0, 0]) + bytes(IP(src=a["home"], dst="10.99.1.2") / ICMP())) for _ in range(n)]
    elif p == "ipip_bound":
        pk = [IP(dst=a["ha"], proto=4) / IP(src=a["home"], dst="10.99.1.2") / ICMP() for _ in range(n)]
    elif p == "ipip_unbound":
        pk = [IP(dst=a["ha"], proto=4) / IP(src="203.0.113.%d" % (100 + i % 100), dst="10.99.1.2") / ICMP() for i in range(n)]
    elif p == "ipip_garbage":
        pk = [IP(dst=a["ha"], proto=4) / Raw(rb(rnd.randrange(1, 40))) for _ in range(n)]
    elif p == "udp500_random":
        pk = [IP(dst=a["gw"]) / UDP(sport=500, dport=500) / Raw(rb(rnd.randrange(1, 200))) for _ in range(n)]
    elif p == "udp500_truncated":
        pk = [IP(dst=a["gw"]) / UDP(sport=500, dport=500) / Raw(rb(8) + rb(rnd.randrange(0, 19))) for _ in range(n)]
    elif p == "udp500_unknown_cookies":
        # A well-formed ISAKMP header (RFC 2408 §3.1): both cookies set, version 1.0,
        # Informational (5), encrypted, the length matching; the SA does not exist.
        def isakmp():
            body = rb(48)
            return rb(8) + rb(8) + struct.pack("!BBBBII", 8, 0x10, 5, 1, rnd.getrandbits(32), 28 + len(body)) + body
        pk = [IP(dst=a["gw"]) / UDP(sport=500, dport=500) / Raw(isakmp()) for _ in range(n)]
    elif p == "udp500_live_cookies":
        # The live IKE SA's own cookies on an encrypted Informational with a garbage body, half
        # from the attacker, half from the client's (spoofed) address and port.
        cookies = bytes.fromhex(a["cookies"])
        def forged():
            body = rb(64)
            return cookies + struct.pack("!BBBBII", 8, 0x10, 5, 1, rnd.getrandbits(32), 28 + len(body)) + body
        half = n // 2
        pk = [IP(dst=a["gw"]) / UDP(sport=500, dport=500) / Raw(forged()) for _ in range(half)]
        pk += [IP(src=a["home"], dst=a["gw"]) / UDP(sport=500, dport=500) / Raw(forged()) for _ in range(n - half)]
    elif p == "udp4500_marker_garbage":
        # The non-ESP marker (RFC 3948 §2.2) in front of garbage, and a marker alone.
        pk = [IP(dst=a["gw"]) / UDP(sport=4500, dport=4500) / Raw(b"\0\0\0\0" + rb(rnd.randrange(0, 40))) for _ in range(n)]
    elif p == "udp4500_keepalive":
        pk = [IP(dst=a["gw"]) / UDP(sport=4500, dport=4500) / Raw(b"\xff") for _ in range(n)]
    elif p == "udp4500_esp_unknown_spi":
        pk = [IP(dst=a["gw"]) / UDP(sport=4500, dport=4500) / Raw(struct.pack("!II", 0x7e000000 + i, 1) + rb(48)) for i in range(n)]
    elif p == "esp_unknown_spi":
        pk = [IP(dst=a["gw"], proto=50) / Raw(struct.pack("!II", 0x7f000000 + i, 1) + rb(48)) for i in range(n)]
    elif p == "esp_bad_icv":
        # The live SA's SPI, from the client's own (spoofed) address, with a sequence number
        # ahead of the window and a made-up ICV. (From another address the gateway drops it
        # before the ICV as not_for_us.)
        pk = [IP(src=a["home"], dst=a["gw"], proto=50) / Raw(struct.pack("!II", a["spi_esp"], 10_000_000 + i) + rb(64)) for i in range(n)]
    elif p == "mn_forged_replies":
        # Registration replies (type 3) for the MN's home address, made-up identification and authenticator.
        pk = [IP(src=a["ha"], dst=a["coa"]) / UDP(sport=434, dport=434) / Raw(struct.pack("!BBH4s4sQ", 3, 0, 120, bytes(map(int, a["home"].split("."))), bytes(map(int, a["ha"].split("."))), rnd.getrandbits(64)) + struct.pack("!BBI", 32, 20, a["spi"]) + rb(16)) for _ in range(n)]
    elif p == "mn_ipip_stranger":
        pk = [IP(dst=a["coa"], proto=4) / IP(src="10.99.1.2", dst=a["home"]) / ICMP() for _ in range(n)]
    elif p == "mn_advert_offlink_home":
        # The home agent's address spoofed, H set: "you are home". From beyond the link.
        pk = [IP(src=a["ha"], dst=a["coa"], ttl=64, proto=1) / advert(seq=7, flags=0x20) for _ in range(n)]
    # On the link: to the mobile node's address with TTL 1 (the attacker's default route is
    # not the cafe link, so 224.0.0.1 would leave on the wrong interface).
    elif p == "mn_advert_onlink_garbage":
        half = n // 2
        pk = [IP(src=a["evil_link"], dst=a["coa"], ttl=1, proto=1) / advert(garbage=bytes([16, rnd.randrange(0, 40)]) + rb(rnd.randrange(0, 12))) for _ in range(half)]
        pk += [IP(src=a["evil_link"], dst=a["coa"], ttl=1, proto=1) / advert(coas=("192.0.2.66",), bad_checksum=True) for _ in range(n - half)]
    elif p == "mn_advert_onlink_fa":
        # A spoofed foreign agent offering a care-of address: a co-located MN must not follow it.
        pk = [IP(src=a["evil_link"], dst=a["coa"], ttl=1, proto=1) / advert(seq=rnd.randrange(0, 300), flags=0x10, coas=("192.0.2.66",)) for _ in range(n)]
    elif p == "mn_solicitations":
        pk = [IP(src=a["evil_link"], dst=a["coa"], ttl=1, proto=1) / Raw(icmp_bytes(bytes([10, 0, 0, 0, 0, 0, 0, 0]))) for _ in range(n)]
    else:
        raise SystemExit("unknown phase " + p)
    send(pk, inter=a.get("inter", 0.002))
    return len(pk)

print("ready", flush=True)
for line in sys.stdin:
    cmd = json.loads(line)
    print(json.dumps({"sent": phase(cmd)}), flush=True)
"""


# A paced probe through the tunnel: UDP, not ICMP, because the mobile node's raw ICMP socket
# (for agent advertisements) also sees every ICMP packet its kernel delivers from the TUN, and
# the probe must not blur the per-phase counts. The echo side answers each datagram; the
# sender sends one every 50 ms until the stop file appears and prints "sent N answered M lost [...]".
PROBE_ECHO = r"""
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind((sys.argv[1], int(sys.argv[2])))
print("listening", flush=True)
while True:
    data, peer = s.recvfrom(2048); s.sendto(data, peer)
"""
PROBE_SENDER = r"""
import os, socket, sys, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(0.01)
dst = (sys.argv[1], int(sys.argv[2])); stop = sys.argv[3]
answered = set(); seq = 0; next_at = time.monotonic(); stop_at = None
while True:
    now = time.monotonic()
    if stop_at is None and os.path.exists(stop):
        stop_at = now + 2  # the last ones may still be in flight
    if stop_at is not None and now >= stop_at:
        break
    if stop_at is None and now >= next_at:
        s.sendto(str(seq).encode(), dst); seq += 1; next_at += 0.05
        if seq % 20 == 0:
            print(f"progress {seq} {len(answered)}", flush=True)
    try:
        answered.add(int(s.recv(64)))
    except (socket.timeout, ValueError):
        pass
lost = sorted(set(range(seq)) - answered)
print(f"sent {seq} answered {len(answered)} lost {lost[:20]}", flush=True)
"""


class Attacker:
    def __init__(self, lab, host):
        log = open(os.path.join(lab.dir, "attacker.log"), "w")
        self.p = subprocess.Popen(["ip", "netns", "exec", host.ns, "/usr/bin/python3", "-c", ATTACKER],
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log, text=True, start_new_session=True)
        lab._processes.append(self.p)
        if self.p.stdout.readline().strip() != "ready":
            raise RuntimeError("the attacker did not start (scapy missing?)")

    def send(self, **cmd):
        self.p.stdin.write(json.dumps(cmd) + "\n")
        self.p.stdin.flush()
        return json.loads(self.p.stdout.readline())["sent"]


def kernel_udp_counter(host, name):
    """One of the kernel's UDP counters (/proc/net/snmp) in `host`'s namespace."""
    lines = [line.split() for line in host.run(["cat", "/proc/net/snmp"]).stdout.splitlines() if line.startswith("Udp:")]
    return int(dict(zip(lines[0][1:], lines[1][1:])).get(name, 0)) if len(lines) >= 2 else 0


def live_ike_cookies(pcap):
    """Initiator and responder cookies (16 bytes, hex) of the last IKE packet in a capture whose
    responder cookie is set: the live IKE SA's."""
    found = ""
    for pkt in pcap_packets(pcap):
        if len(pkt) < 20 or pkt[9] != 17:
            continue
        ihl = (pkt[0] & 0x0F) * 4
        ports = {int.from_bytes(pkt[ihl:ihl + 2], "big"), int.from_bytes(pkt[ihl + 2:ihl + 4], "big")}
        payload = pkt[ihl + 8:]
        if 4500 in ports and payload[:4] == b"\0\0\0\0":
            payload = payload[4:]
        elif 500 not in ports:
            continue
        if len(payload) >= 28 and payload[8:16] != b"\0" * 8:
            found = payload[:16].hex()
    return found


def socket_rx(node):
    return sum(s.get("rx_packets", 0) + s.get("rx_errors", 0) for s in node["transport"]["sockets"])


def books(node):
    """What became of every inbound packet, summed: (received by the sockets, accounted for)."""
    tun = node.get("tun") or node.get("link") or {}
    handled = sum(s["consumed"] + s["dropped"] for s in node["pipeline"])
    return socket_rx(node), handled + tun.get("tx_packets", 0) + tun.get("tx_errors", 0) + node["transport"]["inbound_unclaimed"]


def stage(node, kind, index=0):
    found = [s for s in node["pipeline"] if s["type"] == kind]
    return found[index] if len(found) > index else {}


def dig(d, *path):
    for p in path:
        d = d.get(p, {}) if isinstance(d, dict) else {}
    return d if isinstance(d, int) else 0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--mipsec", required=True)
    args = ap.parse_args()
    require_root("the hostile sender test")
    try:
        subprocess.run(["/usr/bin/python3", "-c", "import scapy.all"], check=True, capture_output=True, timeout=60)
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired):
        print("SKIPPED: scapy is not installed for /usr/bin/python3")
        return 77
    checks = Checks()

    with Lab("hostile") as lab:
        mn = lab.host("mn")
        net = Roaming(lab, mn)
        xha, gw, lan, evil = lab.host("xha"), lab.host("gw"), lab.host("lan"), lab.host("evil")
        for h in (xha, gw):
            h.sysctl("net.ipv4.ip_forward", "1")
        net.public(xha, 1, X_HA)
        net.inet.run(["ip", "route", "add", "203.0.113.0/24", "via", X_HA])
        net.public(gw, 5, GW)
        net.public(evil, 7, EVIL)
        # Spoofed sources must get through the Internet core, as they would on a real one.
        for key in ("all", "default"):
            net.inet.sysctl(f"net.ipv4.conf.{key}.rp_filter", "0")
        lab.link(gw, "10.99.1.1/24", lan, f"{LAN}/24")
        lan.run(["ip", "route", "add", "default", "via", "10.99.1.1"])
        net.access("cafe", 2, "192.0.2.1/24", ("192.0.2.100", "192.0.2.150"))
        net.attach(evil, f"{EVIL_LINK}/24", "cafe")
        net.move("cafe")

        gw_sock, ha_sock, mn_sock = (f"{lab.dir}/{n}.sock" for n in ("gw", "xha", "mn"))
        cfg_gw = write_json(lab, "gw", {
            "name": "gw", "control_socket": gw_sock, "log_level": "info",
            "tun": {"name": "vpn0", "routes": ["10.99.100.0/24"]},
            "transport": {"local": GW, "udp_ports": [500, 4500], "raw_protocols": [50]},
            "pipeline": [{"type": "ipsec.vpn_gateway", "local": GW, "psk": PSK, "local_id": "gw.lab.example",
                          "pool": "10.99.100.0/24", "local_ts": ["10.99.1.0/24"], "ike_proposals": ["aes128-sha256-modp2048"],
                          "esp_proposals": ["aes128gcm16"]}],
        })
        cfg_ha = write_json(lab, "xha", {
            "name": "xha", "control_socket": ha_sock, "log_level": "info",
            "tun": {"name": "xha0"},
            "transport": {"local": X_HA, "udp_ports": [434], "raw_protocols": [4]},
            "pipeline": [{"type": "mip.home_agent", "address": X_HA, "home_network": "203.0.113.0/24", "keepalive_s": 10,
                          "mobile_nodes": [{"home_address": X_HOME, "spi": MIP_SPI, "key": MIP_KEY}]}],
        })
        cfg_mn = write_json(lab, "mn", {
            "name": "mn", "control_socket": mn_sock, "log_level": "info",
            "tun": {"name": "vpn0", "routes": ["10.99.1.0/24"], "route_table": 100},
            "transport": {"local": "0.0.0.0", "udp_ports": [434], "raw_protocols": [1, 4, 255], "fwmark": FWMARK},
            "pipeline": [
                {"type": "ipsec.vpn_client", "local": X_HOME, "gateway": GW, "psk": PSK, "local_id": "mn.lab.example",
                 "remote_id": "gw.lab.example", "remote_ts": "10.99.1.0/24", "ike_proposals": ["aes128-sha256-modp2048"],
                 "esp_proposals": ["aes128gcm16"], "dpd_delay_s": 30},
                {"type": "nat.udp_encap", "keepalive_s": 20},
                {"type": "tap.pcap", "file": f"{lab.dir}/mn-ipsec.pcap"},  # for the live IKE SA's cookies
                {"type": "mip.mobile_node", "home_address": X_HOME, "home_agent": X_HA, "spi": MIP_SPI, "key": MIP_KEY,
                 "lifetime_s": 600, "care_of": "interface", "interface": "wlan0", "max_retransmit_s": 4},
            ],
        })
        procs = {
            "gw": gw.spawn([args.mipsec, "run", cfg_gw], log_name="mipsec-gw"),
            "xha": xha.spawn([args.mipsec, "run", cfg_ha], log_name="mipsec-xha"),
        }
        lab.wait_for(lambda: os.path.exists(gw_sock), what="the gateway's control socket")
        procs["mn"] = mn.spawn([args.mipsec, "run", cfg_mn], log_name="mipsec-mn")

        def st(host, sock):
            return node_status(host, args.mipsec, sock)

        def vpn():
            return (stage_states(st(mn, mn_sock), "ipsec.vpn_client") or [{}])[0]

        def mip():
            return (stage_states(st(mn, mn_sock), "mip.mobile_node") or [{}])[0]

        try:
            lab.wait_for(lambda: vpn().get("sa_installs", 0) >= 1 and vpn().get("inner_address", "none") != "none",
                         timeout=45, what="IKE over the Mobile IP tunnel")
        except TimeoutError as e:
            checks.check("the tunnel comes up", False, str(e) + " " + json.dumps(vpn()) + json.dumps(mip()))
            lab.dump_logs()
            return checks.finish()
        v, m = vpn(), mip()
        coa = m.get("care_of_address")
        vip = v["inner_address"].split("/")[0]
        child = (v.get("child_sas") or [{}])[0]
        checks.check("the tunnel is up: MN registered at the HA, IKE established with the mipsec gateway",
                     m.get("registered") and v.get("ike_state") == "established" and coa, json.dumps(m)[:300])
        before_sa = {"sessions": v.get("sessions_started"), "installs": v.get("sa_installs"),
                     "spi_in": child.get("spi_in"), "spi_out": child.get("spi_out"), "coa": coa,
                     "mip_requests": m.get("counters", {}).get("requests_sent")}

        # Traffic through the tunnel for the whole attack: a paced UDP probe (20/s, answered
        # by the mobile node) and a TCP stream from the mobile node.
        stream = Stream(lab, lan, mn, vip, LAN)
        echo = mn.spawn(["/usr/bin/python3", "-c", PROBE_ECHO, vip, "7001"], log_name="probe-echo")
        lab.wait_for(lambda: "listening" in open(echo.log_path).read(), what="the probe's echo server")
        probe_stop = f"{lab.dir}/probe.stop"
        probe = lan.spawn(["/usr/bin/python3", "-c", PROBE_SENDER, vip, "7001", probe_stop], log_name="probe")
        time.sleep(2)

        attacker = Attacker(lab, evil)
        cookies = live_ike_cookies(f"{lab.dir}/mn-ipsec.pcap")
        checks.check("the live IKE SA's cookies read from the mobile node's capture", len(cookies) == 32, cookies)
        common = {"cookies": cookies, "n": N, "ha": X_HA, "gw": GW, "home": X_HOME, "spi": MIP_SPI, "key": MIP_KEY, "coa": coa,
                  "evil_link": EVIL_LINK, "spi_esp": child.get("spi_out", 0), "src": EVIL}
        start = {name: st(h, s) for name, h, s in (("xha", xha, ha_sock), ("gw", gw, gw_sock), ("mn", mn, mn_sock))}

        def run_phase(host, sock, name, measure, **extra):
            """Sends one phase; returns (sent, how much `measure(node)` grew). If the two
            differ, prints where the node's counters moved instead."""
            n0 = st(host, sock)
            m0 = measure(n0)
            k0 = host.run(["cat", "/proc/net/snmp"]).stdout
            sent = attacker.send(phase=name, **{**common, **extra})
            time.sleep(0.5)  # let the node read everything
            n1 = st(host, sock)
            grew = measure(n1) - m0
            if grew != sent:
                k1 = host.run(["cat", "/proc/net/snmp"]).stdout
                print(f"  kernel before: {[l for l in k0.splitlines() if l.startswith('Udp:')][-1]}\n"
                      f"  kernel after:  {[l for l in k1.splitlines() if l.startswith('Udp:')][-1]}", flush=True)
                print(f"  {name}: sockets {[s['rx_packets'] for s in n1['transport']['sockets']]} "
                      f"(were {[s['rx_packets'] for s in n0['transport']['sockets']]}), unclaimed "
                      f"{n1['transport']['inbound_unclaimed'] - n0['transport']['inbound_unclaimed']}", flush=True)
                for a, b in zip(n0["pipeline"], n1["pipeline"]):
                    moved = {k: b[k] - a[k] for k in ("decapsulated", "not_mine", "consumed", "dropped") if b[k] != a[k]}
                    drops = {k: v - a["drops"].get(k, 0) for k, v in b["drops"].items() if v != a["drops"].get(k, 0)}
                    print(f"    {b['type']}: {moved} {drops}", flush=True)
            return sent, grew

        ha_state = lambda n: stage(n, "mip.home_agent").get("state", {})  # noqa: E731
        ha_drops = lambda n, r: stage(n, "mip.home_agent").get("drops", {}).get(r, 0)  # noqa: E731
        phases_ha = [
            ("reg_bad_auth", "a bad authenticator: one answered 131, the rest unanswered, binding untouched",
             lambda n: dig(ha_state(n), "counters", "rejected", "bad_authenticator")
             + dig(ha_state(n), "counters", "discarded", "bad_authenticator_unanswered")),
            ("reg_unknown_home", "discarded: unknown home address", lambda n: dig(ha_state(n), "counters", "discarded", "unknown_home_address")),
            ("reg_unknown_spi", "discarded: unknown SPI", lambda n: dig(ha_state(n), "counters", "discarded", "unknown_spi")),
            ("reg_truncated", "discarded: malformed", lambda n: dig(ha_state(n), "counters", "discarded", "malformed")),
            ("reg_bad_extensions", "discarded: malformed or unknown extension",
             lambda n: dig(ha_state(n), "counters", "discarded", "malformed") + dig(ha_state(n), "counters", "discarded", "unknown_extension")),
            # The UDP socket's kernel verifies checksums and drops bad ones before mipsec reads
            # anything: they are counted there (Udp InCsumErrors), and mipsec never sees them.
            ("reg_bad_checksum", "dropped by the kernel's UDP checksum check (InCsumErrors)",
             lambda n: kernel_udp_counter(xha, "InCsumErrors")),
            ("reg_replay", "authentic but stale: one answered 133, the rest discarded before their HMAC, nothing changed",
             lambda n: dig(ha_state(n), "counters", "rejected", "identification_mismatch")
             + dig(ha_state(n), "counters", "discarded", "identification_mismatch_unanswered")),
            ("udp434_other_types", "dropped: unknown message", lambda n: ha_drops(n, "unknown_message")),
            ("udp434_tunnel_data", "dropped: binding mismatch", lambda n: ha_drops(n, "binding_mismatch")),
            ("ipip_bound", "dropped: binding mismatch", lambda n: ha_drops(n, "binding_mismatch")),
            ("ipip_unbound", "dropped: no binding", lambda n: ha_drops(n, "no_binding")),
            ("ipip_garbage", "dropped (truncated or malformed)",
             lambda n: ha_drops(n, "truncated") + ha_drops(n, "malformed")),
        ]
        for name, what, measure in phases_ha:
            sent, grew = run_phase(xha, ha_sock, name, measure)
            checks.check(f"home agent, {name}: {sent} packets, each {what} ({grew} counted)", sent == N and grew == sent, f"{grew} != {sent}")

        gw_state = lambda n: stage(n, "ipsec.vpn_gateway").get("state", {})  # noqa: E731
        gw_drops = lambda n, r: stage(n, "ipsec.vpn_gateway").get("drops", {}).get(r, 0)  # noqa: E731
        # Dropped by the IKE responder (its own counters) or before it, by the stage, when the
        # datagram cannot even be an ISAKMP header (drops: malformed / truncated).
        ike_drops = lambda n: (gw_state(n).get("ike_dropped_malformed", 0) + gw_state(n).get("ike_dropped_unknown_sa", 0)  # noqa: E731
                               + gw_state(n).get("ike_dropped_half_open", 0) + gw_drops(n, "malformed") + gw_drops(n, "truncated"))
        phases_gw = [
            ("udp500_random", "dropped by IKE (malformed or unknown SA)", ike_drops),
            ("udp500_truncated", "dropped by IKE (malformed)", ike_drops),
            ("udp500_unknown_cookies", "dropped by IKE (unknown SA)", ike_drops),
            ("udp500_live_cookies", "the live IKE SA's cookies, garbage inside: dropped (IKE SA untouched)",
             lambda n: ike_drops(n) + sum(dig(c, "ike_counters", k) for c in gw_state(n).get("clients", [])
                                          for k in ("dropped_malformed", "dropped_auth", "dropped_replay"))),
            ("udp4500_marker_garbage", "dropped by IKE after the non-ESP marker", ike_drops),
            ("udp4500_keepalive", "counted as NAT keepalives", lambda n: gw_state(n).get("keepalives_received", 0)),
            ("udp4500_esp_unknown_spi", "dropped: unknown SPI", lambda n: gw_drops(n, "unknown_spi")),
            ("esp_unknown_spi", "dropped: unknown SPI", lambda n: gw_drops(n, "unknown_spi")),
            ("esp_bad_icv", "the live SA's SPI, bad ICV: dropped (authentication failed)", lambda n: gw_drops(n, "auth_failed")),
        ]
        for name, what, measure in phases_gw:
            sent, grew = run_phase(gw, gw_sock, name, measure)
            checks.check(f"gateway, {name}: {sent} packets, each {what} ({grew} counted)", sent == N and grew == sent, f"{grew} != {sent}")

        mn_mip = lambda n: stage(n, "mip.mobile_node")  # noqa: E731
        # What no layer of the mobile node wants ends as a drop somewhere in its pipeline (the
        # VPN client, innermost, drops what is neither IKE nor ESP: unexpected_protocol) or,
        # were nobody to claim it, as inbound_unclaimed. The legitimate traffic causes neither.
        mn_refused = lambda n: sum(s["dropped"] for s in n["pipeline"]) + n["transport"]["inbound_unclaimed"]  # noqa: E731
        phases_mn = [
            ("mn_forged_replies", "forged registration replies: ignored and counted",
             lambda n: dig(mn_mip(n), "state", "counters", "replies_received")),
            ("mn_ipip_stranger", "IP-in-IP from a stranger: not the home agent's tunnel, dropped", mn_refused),
            ("mn_advert_offlink_home", "an advertisement from beyond the link (TTL != 1) claiming to be the HA: dropped as not_on_link",
             lambda n: mn_mip(n).get("drops", {}).get("not_on_link", 0)),
            ("mn_advert_onlink_garbage", "garbage advertisements: dropped (bad checksum, unparsable) "
             "or, where the random bytes happen to parse, heard and ignored",
             lambda n: mn_refused(n) + dig(mn_mip(n), "state", "counters", "advertisements_received")),
            ("mn_advert_onlink_fa", "a spoofed foreign agent: heard, not followed (co-located care-of address)",
             lambda n: dig(mn_mip(n), "state", "counters", "advertisements_received")),
            ("mn_solicitations", "router solicitations (it is not an agent): dropped", mn_refused),
        ]
        for name, what, measure in phases_mn:
            sent, grew = run_phase(mn, mn_sock, name, measure)
            checks.check(f"mobile node, {name}: {sent} packets, {what} ({grew} counted)", sent == N and grew == sent, f"{grew} != {sent}")

        # The books of the home agent and the gateway over the whole attack.
        end = {name: st(h, s) for name, h, s in (("xha", xha, ha_sock), ("gw", gw, gw_sock), ("mn", mn, mn_sock))}
        for name in ("xha", "gw"):
            rx0, acc0 = books(start[name])
            rx1, acc1 = books(end[name])
            checks.check(f"{name}: every packet received during the attack is accounted for "
                         f"({rx1 - rx0} received, {acc1 - acc0} passed/consumed/dropped/unclaimed)",
                         rx1 - rx0 == acc1 - acc0 and rx1 - rx0 > 0, f"{rx1 - rx0} vs {acc1 - acc0}")

        time.sleep(1)
        ok, out = stream.finish()
        open(probe_stop, "w").close()
        probe.wait(10)
        result = open(probe.log_path).read().strip().splitlines()[-1].split()
        sent_probes, answered = int(result[1]), int(result[3])
        checks.check(f"the paced probe through the tunnel lost nothing during the attack ({sent_probes} sent, {answered} answered)",
                     sent_probes > 100 and answered == sent_probes, " ".join(result))
        checks.check("the TCP stream through the tunnel is byte-exact", ok, out)
        v, m = vpn(), mip()
        child = (v.get("child_sas") or [{}])[0]
        after_sa = {"sessions": v.get("sessions_started"), "installs": v.get("sa_installs"),
                    "spi_in": child.get("spi_in"), "spi_out": child.get("spi_out"), "coa": m.get("care_of_address"),
                    "mip_requests": m.get("counters", {}).get("requests_sent")}
        checks.check("the same IKE session, SAs and registration as before the attack (no re-registration, no rekey)",
                     after_sa == before_sa and m.get("registered"), f"{before_sa} -> {after_sa}")
        ha = ha_state(st(xha, ha_sock))
        binding = (ha.get("bindings") or [{}])[0]
        checks.check("the home agent still binds the home address to the real care-of address",
                     ha.get("binding_count") == 1 and binding.get("care_of_address") == coa, json.dumps(binding))
        for name, p in procs.items():
            alive = p.poll() is None
            text = open(p.log_path).read()
            bad = [w for w in ("AddressSanitizer", "UndefinedBehaviorSanitizer", "runtime error:", "LeakSanitizer", "terminate called")
                   if w in text]
            uptime = (st({"gw": gw, "xha": xha, "mn": mn}[name], {"gw": gw_sock, "xha": ha_sock, "mn": mn_sock}[name]) or {}).get("uptime_s", 0)
            checks.check(f"{name}: still running as the same process (up {uptime} s), no sanitizer report in its log",
                         alive and not bad, f"alive={alive} {bad}")
            warn_lines = sum(1 for line in text.splitlines() if "warn" in line.lower())
            print(f"{name}: {warn_lines} warning lines in the log over the attack", flush=True)
        if checks.failed:
            lab.dump_logs()
    return checks.finish()


if __name__ == "__main__":
    sys.exit(main())

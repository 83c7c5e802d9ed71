# SPDX-License-Identifier: MIT
"""The MTU follows the RFC 5265 access mode (RFC 5265 §5.2, RFC 1191): one `mipsec run` mobile
node with the four-stage stack (i-MIP with `detection` -> ipsec.vpn_client -> nat.udp_encap ->
x-MIP) on 1500-byte links. Its TUN is sized for the lightest stack it may use, mode f (user data
to an intranet foreign agent as it is: 1500). In the office (mode c) a 1500-byte ping with DF is
answered "fragmentation needed" with 1480 (i-MIP's 20 bytes) and a 1480-byte one gets through; in the cafe (cvc: i-MIP 20 + ESP AES-GCM 57 +
x-MIP 20) the same ping is answered by the node itself with ICMP "fragmentation needed"
carrying 1403, a 1403-byte one gets through, and a TCP stream from the intranet home address
keeps going across both moves (its segments shrink by path MTU discovery, no black hole);
back in the office the active MTU is 1480 again.

    lan (br_lan): gw (mipsec VPN gateway, 10.99.1.1 / 198.18.5.2), i-ha 10.99.1.5, cn 10.99.1.10,
        office router 10.99.1.2 (10.99.2.1/24 on br_office, dnsmasq)
    inet --- x-ha (198.18.1.2, home 203.0.113.0/24); inet --- cafe router (192.0.2.1/24, dnsmasq)
    mn (wlan0, moved between br_office and br_cafe)
"""
import argparse
import json
import re
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "tools"))
from netns_lab import Checks, Lab, require_root  # noqa: E402
from roaming_lab import Roaming, Stream, node_status, stage_states, write_json  # noqa: E402

PSK = "lab-psk-0123456789"
I_HOME = "10.99.1.77"
I_HA = "10.99.1.5"
CN = "10.99.1.10"
I_KEY = "ffeeddccbbaa99887766554433221100"
X_HOME = "203.0.113.77"
X_HA = "198.18.1.2"
GW = "198.18.5.2"
X_KEY = "00112233445566778899aabbccddeeff"
FWMARK = 0x6d69
# A DF datagram of the given payload length from the home address, and a sink printing sizes.
UDP_SEND = r"""
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.IPPROTO_IP, 10, 2)  # IP_MTU_DISCOVER = IP_PMTUDISC_DO: DF set, never fragmented here
s.bind((sys.argv[1], 0))
s.sendto(bytes(int(sys.argv[3])), (sys.argv[2], 9999))
"""
UDP_SINK = r"""
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind((sys.argv[1], 9999))
print("listening", flush=True)
while True:
    data, peer = s.recvfrom(65535)
    print("got", len(data), flush=True)
"""
TUN_MTU = 1500                     # mode f: to an intranet foreign agent unencapsulated
INSIDE_MTU = 1500 - 20             # mode c: i-MIP IP-in-IP
OUTSIDE_MTU = 1500 - 20 - 57 - 20  # cvc: i-MIP, ESP AES-GCM-16 at its worst padding, x-MIP IP-in-IP


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--mipsec", required=True)
    args = ap.parse_args()
    require_root("the per-mode MTU test")
    checks = Checks()

    with Lab("mtu-modes") as lab:
        mn = lab.host("mn")
        net = Roaming(lab, mn)
        xha, gw, iha, cn, sw, office = (lab.host(r) for r in ("xha", "gw", "iha", "cn", "sw", "office"))
        for h in (xha, gw, iha, office):
            h.sysctl("net.ipv4.ip_forward", "1")
        net.public(xha, 1, X_HA)
        net.inet.run(["ip", "route", "add", "203.0.113.0/24", "via", X_HA])
        net.public(gw, 5, GW)
        net.inet.run(["ip", "route", "add", "10.99.2.0/24", "via", GW])
        sw.run(["ip", "link", "add", "br_lan", "type", "bridge"])
        sw.run(["ip", "link", "set", "br_lan", "up"])
        lan_ifs = {}
        for host, addr in ((gw, "10.99.1.1/24"), (iha, f"{I_HA}/24"), (cn, f"{CN}/24"), (office, "10.99.1.2/24")):
            ifname, p = lab.link(host, addr, sw, "")
            sw.run(["ip", "link", "set", p, "master", "br_lan"])
            lan_ifs[host.role] = ifname
        for host in (iha, cn, office):
            host.run(["ip", "route", "add", "default", "via", "10.99.1.1"])
        for host in (iha, cn, gw):
            host.run(["ip", "route", "add", "10.99.2.0/24", "via", "10.99.1.2"])
        office_if = net.attach(office, "10.99.2.1/24", "office")
        office.spawn(["dnsmasq", "--no-daemon", "--conf-file=/dev/null", "--port=0", f"--interface={office_if}",
                      "--bind-interfaces", "--dhcp-range=10.99.2.100,10.99.2.150,255.255.255.0,10m", "--dhcp-option=3,10.99.2.1",
                      "--dhcp-authoritative", f"--dhcp-leasefile={lab.dir}/office.leases", "--pid-file="], log_name="dnsmasq-office")
        net.access("cafe", 2, "192.0.2.1/24", ("192.0.2.100", "192.0.2.150"))
        net.move("office")

        gw_sock = f"{lab.dir}/gw.sock"
        cfg_gw = write_json(lab, "gw", {
            "name": "gw", "control_socket": gw_sock, "log_level": "info",
            "tun": {"name": "vpn0", "routes": ["10.99.100.0/24"]},
            "transport": {"local": GW, "udp_ports": [500, 4500], "raw_protocols": [50]},
            "pipeline": [{"type": "ipsec.vpn_gateway", "local": GW, "psk": PSK, "local_id": "gw.lab.example",
                          "pool": "10.99.100.0/24", "local_ts": ["10.99.1.0/24"], "ike_proposals": ["aes128-sha256-modp2048"],
                          "esp_proposals": ["aes128gcm16"]}],
        })
        cfg_xha = write_json(lab, "xha", {
            "name": "xha", "control_socket": f"{lab.dir}/xha.sock", "log_level": "info",
            "tun": {"name": "xha0"},
            "transport": {"local": X_HA, "udp_ports": [434], "raw_protocols": [4]},
            "pipeline": [{"type": "mip.home_agent", "address": X_HA, "home_network": "203.0.113.0/24", "keepalive_s": 10,
                          "mobile_nodes": [{"home_address": X_HOME, "spi": 300, "key": X_KEY}]}],
        })
        cfg_iha = write_json(lab, "iha", {
            "name": "iha", "control_socket": f"{lab.dir}/iha.sock", "log_level": "info",
            "tun": {"name": "iha0"},
            "transport": {"local": I_HA, "udp_ports": [434], "raw_protocols": [4]},
            "pipeline": [{"type": "mip.home_agent", "address": I_HA, "home_network": "10.99.1.0/24",
                          "home_interface": lan_ifs["iha"], "udp_tunnelling": False,
                          "trusted_networks": ["10.99.2.0/24", "10.99.100.0/24"],
                          "mobile_nodes": [{"home_address": I_HOME, "spi": 400, "key": I_KEY}]}],
        })
        sock = f"{lab.dir}/mn.sock"
        cfg_mn = write_json(lab, "mn", {
            "name": "mn", "control_socket": sock, "log_level": "info",
            "tun": {"name": "mip0", "address": f"{I_HOME}/32", "routes": ["10.99.1.0/24"], "route_table": 100},
            "transport": {"local": "0.0.0.0", "udp_ports": [434], "raw_protocols": [4, 255], "fwmark": FWMARK},
            "pipeline": [
                {"type": "mip.mobile_node", "home_address": I_HOME, "home_agent": I_HA, "spi": 400, "key": I_KEY,
                 "lifetime_s": 300, "care_of": "inner_address", "udp_tunnelling": "off", "max_retransmit_s": 2,
                 "detection": {"interface": "wlan0", "external_home_agent": X_HA, "internal_retry_window_s": 4,
                               "detection_timeout_s": 20}},
                {"type": "ipsec.vpn_client", "local": X_HOME, "gateway": GW, "psk": PSK, "local_id": "mn.lab.example",
                 "remote_id": "gw.lab.example", "remote_ts": "10.99.1.0/24", "ike_proposals": ["aes128-sha256-modp2048"],
                 "esp_proposals": ["aes128gcm16"], "wait_for_access_mode": True},
                {"type": "nat.udp_encap", "keepalive_s": 20},
                {"type": "mip.mobile_node", "home_address": X_HOME, "home_agent": X_HA, "spi": 300, "key": X_KEY,
                 "lifetime_s": 120, "care_of": "interface", "interface": "wlan0", "max_retransmit_s": 2},
            ],
        })
        gw.spawn([args.mipsec, "run", cfg_gw], log_name="mipsec-gw")
        xha.spawn([args.mipsec, "run", cfg_xha], log_name="mipsec-xha")
        iha.spawn([args.mipsec, "run", cfg_iha], log_name="mipsec-iha")
        lab.wait_for(lambda: all(os.path.exists(f"{lab.dir}/{n}.sock") for n in ("gw", "xha", "iha")), what="the agents' sockets")
        mn.spawn([args.mipsec, "run", cfg_mn], log_name="mipsec-mn")

        def status():
            return node_status(mn, args.mipsec, sock) or {}

        def imip():
            found = stage_states(status(), "mip.mobile_node")
            return found[0] if len(found) == 2 else {}

        def vpn():
            return (stage_states(status(), "ipsec.vpn_client") or [{}])[0]

        def mode():
            return imip().get("detection", {}).get("mode")

        def wait(pred, timeout, what):
            try:
                lab.wait_for(pred, timeout=timeout, what=what)
                return True
            except TimeoutError:
                return False

        def ping(size, count=2):
            r = mn.run(["ping", "-c", str(count), "-i", "0.3", "-W", "2", "-M", "do", "-s", str(size - 28), "-I", I_HOME, CN],
                       check=False)
            return r.stdout + r.stderr

        # --- The office: mode c.
        inside = wait(lambda: mode() == "c" and imip().get("registered"), 30, "mode c in the office")
        checks.check("office: mode c", inside, json.dumps(imip().get("detection")))
        tun = status().get("tun", {})
        checks.check(f"the TUN MTU fits the lightest stack, mode f: {TUN_MTU}", tun.get("mtu") == TUN_MTU, json.dumps(tun))
        checks.check(f"office: the active stack's MTU is {INSIDE_MTU}",
                     wait(lambda: status().get("tun", {}).get("active_mtu") == INSIDE_MTU, 5, "active MTU"), json.dumps(status().get("tun")))
        out = ping(TUN_MTU)
        checks.check(f"office: a {TUN_MTU}-byte ping with DF is answered 'fragmentation needed' with mtu {INSIDE_MTU}",
                     f"mtu = {INSIDE_MTU}" in out or f"mtu={INSIDE_MTU}" in out, out[-400:])
        out = ping(INSIDE_MTU)
        checks.check(f"office: a {INSIDE_MTU}-byte ping with DF reaches the correspondent", " 0% packet loss" in out, out[-300:])
        stream = Stream(lab, cn, mn, I_HOME, CN)
        udp_sink = cn.spawn(["/usr/bin/python3", "-c", UDP_SINK, CN], log_name="udp-sink")
        lab.wait_for(lambda: "listening" in open(udp_sink.log_path).read(), what="the UDP sink")
        checks.check("office: a TCP stream from the intranet home address flows",
                     wait(lambda: stream.bytes() > 50_000, 20, "stream"), str(stream.bytes()))

        # --- The cafe: cvc.
        def outside_ready():
            v, im = vpn(), imip()
            vip = v.get("inner_address", "none").split("/")[0]
            return mode() == "cvc" and v.get("ike_state") == "established" and im.get("registered") and im.get("care_of_address") == vip
        # The stream's first full-size segment in the cafe, or the ping below, is answered; the
        # kernel then knows the path MTU and refuses the ping itself ("message too long, mtu=").
        sent_before = status().get("tun", {}).get("too_big", {}).get("icmp_frag_needed_sent", 0)
        net.move("cafe")
        checks.check("cafe: mode cvc, IKE established, i-MIP registered with the VPN inner address",
                     wait(outside_ready, 60, "cvc"), json.dumps(imip().get("detection")) + json.dumps(vpn())[:300])
        checks.check(f"cafe: the active stack's MTU is {OUTSIDE_MTU}",
                     wait(lambda: status().get("tun", {}).get("active_mtu") == OUTSIDE_MTU, 5, "active MTU"), json.dumps(status().get("tun")))
        out = ping(INSIDE_MTU)
        checks.check(f"cafe: a {INSIDE_MTU}-byte ping with DF is answered 'fragmentation needed' with mtu {OUTSIDE_MTU}",
                     f"mtu = {OUTSIDE_MTU}" in out or f"mtu={OUTSIDE_MTU}" in out, out[-400:])
        too_big = status().get("tun", {}).get("too_big", {})
        checks.check("cafe: the node counted the ICMP it sent and the packet it dropped",
                     too_big.get("icmp_frag_needed_sent", 0) > sent_before and too_big.get("dropped", 0) >= too_big.get("icmp_frag_needed_sent", 0),
                     json.dumps(too_big))
        # The same figures where operators look: the text view and the Prometheus exposition.
        text = mn.run([args.mipsec, "status", "--socket", sock], check=False).stdout
        prom = mn.run([args.mipsec, "status", "--socket", sock, "--format", "prometheus"], check=False).stdout
        checks.check(f"cafe: `mipsec status` shows the active stack's mtu {OUTSIDE_MTU} and the ICMP answers",
                     f"active stack: mtu {OUTSIDE_MTU} (adds {TUN_MTU - OUTSIDE_MTU} bytes)" in text
                     and f"too big: {too_big.get('icmp_frag_needed_sent')} answered" in text, text[:600])
        checks.check(f"cafe: Prometheus has mipsec_tun_active_mtu_bytes {OUTSIDE_MTU} and the ICMP answers counted",
                     re.search(rf'^mipsec_tun_active_mtu_bytes{{[^}}]*}} {OUTSIDE_MTU}$', prom, re.M) is not None
                     and re.search(rf'^mipsec_tun_too_big_icmp_sent_total{{[^}}]*}} {too_big.get("icmp_frag_needed_sent")}$', prom, re.M)
                     is not None, "\n".join(l for l in prom.splitlines() if "mipsec_tun_" in l))
        # One direction only: the replies come back through the gateway, whose own TUN MTU
        # limits them; this node's business is what it sends.
        answered = status().get("tun", {}).get("too_big", {}).get("icmp_frag_needed_sent", 0)
        mn.run(["/usr/bin/python3", "-c", UDP_SEND, I_HOME, CN, str(OUTSIDE_MTU - 28)], check=False)
        checks.check(f"cafe: a {OUTSIDE_MTU}-byte UDP datagram with DF reaches the correspondent, unanswered",
                     wait(lambda: f"got {OUTSIDE_MTU - 28}" in open(udp_sink.log_path).read(), 5, "the datagram")
                     and status().get("tun", {}).get("too_big", {}).get("icmp_frag_needed_sent", 0) == answered,
                     open(udp_sink.log_path).read()[-300:])
        moved = stream.bytes()
        checks.check("cafe: the TCP stream keeps going (no black hole)", wait(lambda: stream.bytes() > moved + 50_000, 30, "stream"),
                     f"{moved} -> {stream.bytes()}")

        # --- The office again: mode c, 1480 once more. The kernel keeps the path MTU it learned
        # for up to 10 minutes (RFC 1191 §6.3); forget it as a periodic increase would.
        net.move("office")
        checks.check("office again: mode c", wait(lambda: mode() == "c" and imip().get("registered"), 40, "mode c"),
                     json.dumps(imip().get("detection")))
        checks.check(f"office again: the active stack's MTU is {INSIDE_MTU}",
                     wait(lambda: status().get("tun", {}).get("active_mtu") == INSIDE_MTU, 5, "active MTU"), json.dumps(status().get("tun")))
        mn.run(["ip", "route", "flush", "cache"], check=False)
        out = ping(INSIDE_MTU)
        checks.check(f"office again: a {INSIDE_MTU}-byte ping with DF gets through", " 0% packet loss" in out, out[-300:])
        ok, out = stream.finish()
        checks.check("the TCP stream from the intranet home address survived both moves byte-exact", ok, out)
        print("\n$ mipsec status   (the mobile node)")
        print(mn.run([args.mipsec, "status", "--socket", sock], check=False).stdout)
        if checks.failed:
            lab.dump_logs()
    return checks.finish()


if __name__ == "__main__":
    sys.exit(main())

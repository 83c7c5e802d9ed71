# SPDX-License-Identifier: MIT
"""RFC 5265 inside/outside detection in one `mipsec run` mobile node: the four-stage stack
(i-MIP with a `detection` block -> ipsec.vpn_client with wait_for_access_mode -> nat.udp_encap
-> x-MIP) walks through all four access modes, deciding where it is from what it observes
(rtnetlink address and link changes, agent advertisements, registration replies) only.

    lan (br_lan): gw (mipsec VPN gateway, 10.99.1.1 / 198.18.5.2), i-ha 10.99.1.5
        (trusted_networks: the office subnet and the VPN pool), cn 10.99.1.10,
        office router 10.99.1.2 (10.99.2.1/24 on br_office, dnsmasq)
    inet --- x-ha (198.18.1.2, home 203.0.113.0/24); inet routes 10.99.2.0/24 to gw, so the
        x-HA is reachable from the office (x-MIP can deregister there); the rest of the
        intranet is not reachable from inet at all (RFC 5265 §4)
    lan --- intranet foreign agent ofa 10.99.1.3 (visitor link br_officefa, 10.99.3.1 = its
        care-of address, trusted by the i-HA; no DHCP there)
    inet --- cafe router 198.18.2.2 (192.0.2.1/24, dnsmasq); it also owns 10.99.1.5 and answers
        direct registrations to it with replies forged with the wrong key (an attacker)
    inet --- cafe foreign agent cfa 198.18.6.2 (visitor link br_cafefa, 198.51.100.1; no DHCP);
        it too owns 10.99.1.5, so the direct requests it relays get the same forged answers
    mn (wlan0, moved between the bridges in the "air" namespace)

Walk: office (mode c: i-MIP directly with the office address as care-of address, the VPN
dormant, no IKE at all) -> office FA (f: i-MIP through the intranet agent with its care-of
address) -> cafe (cvc: IKE over x-MIP, i-MIP registers the VPN inner address; the forged
i-HA replies are rejected and counted) -> cafe FA (fvc: only x-MIP moves, through the cafe
agent: zero IKE messages, no i-MIP registration; the forged replies it relays are rejected) ->
office (c again: x-MIP deregistered at its home agent). A correspondent pings the intranet home
address all along and a TCP stream from it keeps going and ends byte-exact. Printed per move:
the outage (longest gap between ping replies), the first reply after the link change and the
IKE messages the node sent and received.
"""
import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "tools"))
from netns_lab import Checks, Lab, require_root  # noqa: E402
from roaming_lab import Roaming, Stream, node_status, ping_times, stage_states, write_json  # noqa: E402

PSK = "lab-psk-0123456789"
I_HOME = "10.99.1.77"
I_HA = "10.99.1.5"
CN = "10.99.1.10"
I_KEY = "ffeeddccbbaa99887766554433221100"
X_HOME = "203.0.113.77"
X_HA = "198.18.1.2"
GW = "198.18.5.2"
X_KEY = "00112233445566778899aabbccddeeff"
OFA = "10.99.3.1"   # the intranet foreign agent's care-of address
CFA = "198.51.100.1"  # the cafe foreign agent's
FWMARK = 0x6d69

# Answers every registration request sent to the internal HA's address in the cafe with a
# well-formed reply (code 0, Trusted Networks Configured extension, RFC 5265 §5) authenticated
# with the wrong key: RFC 5944 §3.4 reply, MHAE (type 32) HMAC-MD5 over everything before the
# authenticator.
FORGER = r"""
import hashlib, hmac, socket, struct, sys
addr, key = sys.argv[1], bytes.fromhex(sys.argv[2])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.IPPROTO_IP, socket.IP_TTL, 255)
s.bind((addr, 434))
print("forging", flush=True)
while True:
    req, peer = s.recvfrom(2048)
    if len(req) < 24 or req[0] != 1:
        continue
    home, ident = req[4:8], req[16:24]
    spi = 400
    body = struct.pack("!BBH", 3, 0, 60) + home + socket.inet_aton(addr) + ident
    body += bytes([149, 2, 0, 0]) + struct.pack("!BBI", 32, 20, spi)
    body += hmac.new(key, body, hashlib.md5).digest()
    s.sendto(body, peer)
    print("forged reply to", peer, flush=True)
"""


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--mipsec", required=True)
    args = ap.parse_args()
    require_root("the RFC 5265 inside/outside test")
    checks = Checks()

    with Lab("inside-outside") as lab:
        mn = lab.host("mn")
        net = Roaming(lab, mn)
        xha, gw, iha, cn, sw, office, ofa, cfa = (lab.host(r) for r in ("xha", "gw", "iha", "cn", "sw", "office", "ofa", "cfa"))
        for h in (xha, gw, iha, office):
            h.sysctl("net.ipv4.ip_forward", "1")
        net.public(xha, 1, X_HA)
        net.inet.run(["ip", "route", "add", "203.0.113.0/24", "via", X_HA])  # the external home network
        net.public(gw, 5, GW)
        net.inet.run(["ip", "route", "add", "10.99.2.0/24", "via", GW])  # the office subnet's way out
        sw.run(["ip", "link", "add", "br_lan", "type", "bridge"])
        sw.run(["ip", "link", "set", "br_lan", "up"])
        lan_ifs = {}
        for host, addr in ((gw, "10.99.1.1/24"), (iha, f"{I_HA}/24"), (cn, f"{CN}/24"), (office, "10.99.1.2/24"),
                           (ofa, "10.99.1.3/24")):
            ifname, p = lab.link(host, addr, sw, "")
            sw.run(["ip", "link", "set", p, "master", "br_lan"])
            lan_ifs[host.role] = ifname
        for host in (iha, cn, office, ofa):
            host.run(["ip", "route", "add", "default", "via", "10.99.1.1"])
        for host in (iha, cn, gw):
            host.run(["ip", "route", "add", "10.99.2.0/24", "via", "10.99.1.2"])
            host.run(["ip", "route", "add", "10.99.3.0/24", "via", "10.99.1.3"])
        net.inet.run(["ip", "route", "add", "10.99.3.0/24", "via", GW])  # the intranet agent reaches the x-HA too
        # The intranet foreign agent: no DHCP on its link, so the node uses the agent.
        ofa_if = net.attach(ofa, f"{OFA}/24", "officefa")
        # The cafe foreign agent, on the Internet; it answers direct requests for the i-HA
        # with forged replies, as the cafe router does.
        net.public(cfa, 6, "198.18.6.2")
        cfa_if = net.attach(cfa, f"{CFA}/24", "cafefa")
        net.inet.run(["ip", "route", "add", "198.51.100.0/24", "via", "198.18.6.2"])
        cfa.run(["ip", "addr", "add", f"{I_HA}/32", "dev", "lo"])
        cfa_forger = cfa.spawn(["/usr/bin/python3", "-c", FORGER, I_HA, "0f" * 16], log_name="forger-cfa")
        lab.wait_for(lambda: "forging" in open(cfa_forger.log_path).read(), what="the cafe agent's forger")
        office_if = net.attach(office, "10.99.2.1/24", "office")
        office.spawn(["dnsmasq", "--no-daemon", "--conf-file=/dev/null", "--port=0", f"--interface={office_if}",
                      "--bind-interfaces", "--dhcp-range=10.99.2.100,10.99.2.150,255.255.255.0,10m", "--dhcp-option=3,10.99.2.1",
                      "--dhcp-authoritative", f"--dhcp-leasefile={lab.dir}/office.leases", "--pid-file="], log_name="dnsmasq-office")
        cafe = net.access("cafe", 2, "192.0.2.1/24", ("192.0.2.100", "192.0.2.150"))
        cafe.run(["ip", "addr", "add", f"{I_HA}/32", "dev", "lo"])
        forger = cafe.spawn(["/usr/bin/python3", "-c", FORGER, I_HA, "0f" * 16], log_name="forger")
        lab.wait_for(lambda: "forging" in open(forger.log_path).read(), what="the forger")
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
        xha_sock = f"{lab.dir}/xha.sock"
        cfg_xha = write_json(lab, "xha", {
            "name": "xha", "control_socket": xha_sock, "log_level": "info",
            "tun": {"name": "xha0"},
            "transport": {"local": X_HA, "udp_ports": [434], "raw_protocols": [4]},
            "pipeline": [{"type": "mip.home_agent", "address": X_HA, "home_network": "203.0.113.0/24", "keepalive_s": 10,
                          "mobile_nodes": [{"home_address": X_HOME, "spi": 300, "key": X_KEY}]}],
        })
        fa_cfgs = {}
        for host, addr, ifname in ((ofa, OFA, ofa_if), (cfa, CFA, cfa_if)):
            fa_cfgs[host.role] = write_json(lab, host.role, {
                "name": host.role, "control_socket": f"{lab.dir}/{host.role}.sock", "log_level": "info",
                "link": {"interface": ifname},
                "transport": {"local": addr, "udp_ports": [434], "raw_protocols": [4]},
                "pipeline": [{"type": "mip.foreign_agent", "link_address": addr, "advertisement_interval_s": 1,
                              "advertisement_lifetime_s": 9, "registration_lifetime_s": 600}],
            })
        iha_sock = f"{lab.dir}/iha.sock"
        cfg_iha = write_json(lab, "iha", {
            "name": "iha", "control_socket": iha_sock, "log_level": "info",
            "tun": {"name": "iha0"},
            "transport": {"local": I_HA, "udp_ports": [434], "raw_protocols": [4]},
            "pipeline": [{"type": "mip.home_agent", "address": I_HA, "home_network": "10.99.1.0/24",
                          "home_interface": lan_ifs["iha"], "udp_tunnelling": False,
                          "trusted_networks": ["10.99.2.0/24", "10.99.3.0/24", "10.99.100.0/24"],
                          "mobile_nodes": [{"home_address": I_HOME, "spi": 400, "key": I_KEY}]}],
        })
        cfg_mn = write_json(lab, "mn", {
            "name": "mn", "control_socket": f"{lab.dir}/mn.sock", "log_level": "info",
            "tun": {"name": "mip0", "address": f"{I_HOME}/32", "routes": ["10.99.1.0/24"], "route_table": 100},
            # fvc: through an external agent IKE and ESP reach the node as they are (the agent
            # took x-MIP's tunnel off), so it listens for them and for agent advertisements too.
            "transport": {"local": "0.0.0.0", "udp_ports": [434, 500, 4500], "raw_protocols": [1, 4, 50, 255], "fwmark": FWMARK},
            "pipeline": [
                {"type": "mip.mobile_node", "home_address": I_HOME, "home_agent": I_HA, "spi": 400, "key": I_KEY,
                 "lifetime_s": 300, "care_of": "inner_address", "udp_tunnelling": "off", "max_retransmit_s": 2,
                 "detection": {"interface": "wlan0", "external_home_agent": X_HA, "t_monitor_s": 60, "monitor_margin_s": 10,
                               "internal_retry_window_s": 4, "detection_timeout_s": 20,
                               "keep_sas_inside": False}},
                {"type": "ipsec.vpn_client", "local": X_HOME, "gateway": GW, "psk": PSK, "local_id": "mn.lab.example",
                 "remote_id": "gw.lab.example", "remote_ts": "10.99.1.0/24", "ike_proposals": ["aes128-sha256-modp2048"],
                 "esp_proposals": ["aes128gcm16"], "dpd_delay_s": 30, "wait_for_access_mode": True},
                {"type": "nat.udp_encap", "keepalive_s": 20},
                {"type": "mip.mobile_node", "home_address": X_HOME, "home_agent": X_HA, "spi": 300, "key": X_KEY,
                 "lifetime_s": 120, "care_of": "interface", "interface": "wlan0", "foreign_agents": True, "max_retransmit_s": 2},
            ],
        })
        # Through an agent the x-HoA is where ESP and IKE arrive: the node must own it.
        mn.run(["ip", "addr", "add", f"{X_HOME}/32", "dev", "lo"])
        for host, cfg in ((gw, cfg_gw), (xha, cfg_xha), (iha, cfg_iha), (mn, cfg_mn), (ofa, fa_cfgs["ofa"]), (cfa, fa_cfgs["cfa"])):
            checks.check(f"mipsec check accepts the {host.role} config", host.run([args.mipsec, "check", cfg], check=False).returncode == 0)
        gw.spawn([args.mipsec, "run", cfg_gw], log_name="mipsec-gw")
        xha.spawn([args.mipsec, "run", cfg_xha], log_name="mipsec-xha")
        iha.spawn([args.mipsec, "run", cfg_iha], log_name="mipsec-iha")
        ofa.spawn([args.mipsec, "run", fa_cfgs["ofa"]], log_name="mipsec-ofa")
        cfa.spawn([args.mipsec, "run", fa_cfgs["cfa"]], log_name="mipsec-cfa")
        lab.wait_for(lambda: all(os.path.exists(f"{lab.dir}/{n}.sock") for n in ("gw", "xha", "iha", "ofa", "cfa")),
                     what="the agents' sockets")
        mn.spawn([args.mipsec, "run", cfg_mn], log_name="mipsec-mn")
        sock = f"{lab.dir}/mn.sock"

        def stages(kind):
            return stage_states(node_status(mn, args.mipsec, sock), kind)

        def vpn():
            return (stages("ipsec.vpn_client") or [{}])[0]

        def imip():
            found = stages("mip.mobile_node")
            return found[0] if len(found) == 2 else {}

        def xmip():
            found = stages("mip.mobile_node")
            return found[-1] if len(found) == 2 else {}

        def mode():
            return imip().get("detection", {}).get("mode")

        def ike_messages():
            v = vpn()
            return v.get("ike_sent", 0) + v.get("ike_received", 0)

        def xha_bindings():
            return (stage_states(node_status(xha, args.mipsec, xha_sock), "mip.home_agent") or [{}])[0].get("binding_count")

        def xha_binding():
            st = (stage_states(node_status(xha, args.mipsec, xha_sock), "mip.home_agent") or [{}])[0]
            return next((b for b in st.get("bindings", []) if b.get("home_address") == X_HOME), {})

        def visitors(host):
            st = (stage_states(node_status(host, args.mipsec, f"{lab.dir}/{host.role}.sock"), "mip.foreign_agent") or [{}])[0]
            return [v.get("home_address") for v in st.get("visitors", [])]

        def iha_binding():
            st = (stage_states(node_status(iha, args.mipsec, iha_sock), "mip.home_agent") or [{}])[0]
            return next((b for b in st.get("bindings", []) if b.get("home_address") == I_HOME), {})

        def registered_directly(address):
            d = imip().get("detection", {})
            return (d.get("direct_state") == "registered" and d.get("interface_address") == address
                    and iha_binding().get("care_of_address") == address)

        def gateway_clients():
            st = (stage_states(node_status(gw, args.mipsec, gw_sock), "ipsec.vpn_gateway") or [{}])[0]
            return [c for c in st.get("clients", []) if c.get("ike_state") == "established"]

        def wait(pred, timeout, what):
            try:
                lab.wait_for(pred, timeout=timeout, what=what)
                return True
            except TimeoutError:
                return False

        # --- Start inside: the office subnet.
        inside = wait(lambda: mode() == "c" and imip().get("registered"), 20, "mode c in the office")
        im, v = imip(), vpn()
        checks.check("office: detection says inside (mode c), decided by the internal HA's TNC reply",
                     inside and im.get("detection", {}).get("cause") == "internal_ha_tnc_reply", json.dumps(im.get("detection")))
        office_addr = im.get("detection", {}).get("interface_address", "")
        checks.check(f"office: i-MIP registered directly; the internal HA's binding points at the office DHCP address {office_addr}",
                     wait(lambda: registered_directly(office_addr), 5, "the direct binding") and office_addr.startswith("10.99.2."),
                     json.dumps(imip().get("detection")) + json.dumps(iha_binding()))
        # Where the x-HA is reachable from the intranet too, its answer may come first and IKE
        # start before the i-HA's (RFC 5265 §3.3 allows both); keep_sas_inside false, so the
        # SAs are gone once inside, at the node and at the gateway.
        startup_ike = ike_messages()
        checks.check(f"office: the VPN client is dormant and holds no IKE SA, nor does the gateway ({startup_ike} IKE messages "
                     "in the start-up race)", wait(lambda: vpn().get("access") == "dormant" and vpn().get("ike_state") == "idle"
                                                   and not gateway_clients(), 5, "no SA"), json.dumps(vpn())[:400])
        r = cn.run(["ping", "-c", "3", "-i", "0.2", "-W", "2", I_HOME], check=False)
        checks.check("office: the intranet correspondent pings the intranet home address", " 0% packet loss" in r.stdout, r.stdout[-200:])
        stream = Stream(lab, cn, mn, I_HOME, CN)
        pinger = cn.spawn(["ping", "-D", "-n", "-i", "0.1", "-W", "1", I_HOME], log_name="ping")
        time.sleep(1)
        v = vpn()
        checks.check("office: user traffic passes the VPN layer in the clear (dormant), no IKE",
                     v.get("passed_dormant", 0) > 10 and ike_messages() == startup_ike, json.dumps(v)[:400])

        rows = []

        def walk(label, network, want_mode, settled, extra_timeout=40, agent=False):
            seen_before = len(ping_times(pinger.log_path))
            streamed_before = stream.bytes()
            ike_before = ike_messages()
            t0 = net.move(network, (lambda: None) if agent else None)
            ok = wait(lambda: mode() == want_mode and settled(), extra_timeout, f"{label}: mode {want_mode}")
            checks.check(f"{label}: detection says {want_mode}", ok, json.dumps(imip().get("detection")) + json.dumps(vpn())[:300])
            flowing = wait(lambda: len(ping_times(pinger.log_path)) > seen_before + 10 and stream.bytes() > streamed_before, 30,
                           f"{label}: traffic")
            checks.check(f"{label}: pings and the TCP stream reach the intranet home address again", flowing,
                         open(pinger.log_path).read()[-300:])
            time.sleep(0.5)
            times = [t for t in ping_times(pinger.log_path) if t > t0 - 1]
            gaps = [b - a for a, b in zip(times, times[1:])]
            first = min((t for t in times if t > t0), default=None)
            rows.append((label, max(gaps, default=float("nan")), None if first is None else first - t0, ike_messages() - ike_before))
            return t0

        def no_wlan_address():
            return mn.run(["ip", "-4", "-o", "addr", "show", "dev", "wlan0"], check=False).stdout.strip() == ""

        # --- Office -> intranet foreign agent: inside through the agent (mode f).
        def via_intranet_agent():
            im = imip()
            return (im.get("detection", {}).get("foreign_agent") == OFA and im.get("registered")
                    and im.get("care_of_address") == OFA and iha_binding().get("care_of_address") == OFA)
        walk("office -> office FA", "officefa", "f", via_intranet_agent, agent=True)
        im = imip()
        d = im.get("detection", {})
        checks.check("office FA: inside (mode f), decided by the internal HA's TNC reply relayed by the intranet agent",
                     d.get("mode") == "f" and d.get("cause") == "internal_ha_tnc_reply" and d.get("foreign_agent") == OFA
                     and im.get("care_of_source") == "foreign_agent" and im.get("mode") == "foreign_agent", json.dumps(im)[:600])
        checks.check(f"office FA: the internal HA binds the intranet home address to the agent's care-of address {OFA}; "
                     "the node is the agent's visitor and has no address of its own on the link",
                     iha_binding().get("care_of_address") == OFA and I_HOME in visitors(ofa) and no_wlan_address(),
                     json.dumps(iha_binding()) + json.dumps(visitors(ofa)))
        checks.check("office FA: the VPN and x-MIP dormant, no binding left at the external HA",
                     wait(lambda: vpn().get("access") == "dormant" and xmip().get("dormant") is True and xha_bindings() == 0
                          and not gateway_clients(), 10, "dormant layers"),
                     f"x-HA bindings {xha_bindings()}, gateway clients {json.dumps(gateway_clients())[:300]}, "
                     + json.dumps(vpn())[:300] + json.dumps(xmip())[:300])

        # --- Office FA -> cafe: outside, VPN up over x-MIP, i-MIP registers the VPN inner address.
        def outside_ready():
            v, im = vpn(), imip()
            vip = v.get("inner_address", "none").split("/")[0]
            return v.get("ike_state") == "established" and im.get("registered") and im.get("care_of_address") == vip
        walk("office FA -> cafe", "cafe", "cvc", outside_ready)
        v, im, xm = vpn(), imip(), xmip()
        vip = v.get("inner_address", "none").split("/")[0]
        checks.check("cafe: IKE established with the mipsec gateway, i-MIP registered with the VPN inner address",
                     v.get("ike_state") == "established" and v.get("access") == "awake" and im.get("care_of_address") == vip
                     and vip.startswith("10.99.100.") and len(gateway_clients()) == 1 and iha_binding().get("care_of_address") == vip,
                     json.dumps(v)[:400] + json.dumps(im)[:300] + json.dumps(iha_binding()))
        checks.check("cafe: x-MIP registered with the external HA from the cafe address",
                     xm.get("registered") and xm.get("care_of_address", "").startswith("192.0.2."), json.dumps(xm)[:400])
        replies = im.get("detection", {}).get("replies", {})
        forged = open(forger.log_path).read().count("forged reply")
        checks.check(f"cafe: the {forged} replies forged for the internal HA (wrong key) were rejected as bad_authenticator; "
                     "the node stayed outside", forged >= 1 and replies.get("bad_authenticator", 0) >= 1 and mode() == "cvc"
                     and im.get("counters", {}).get("direct_replies_rejected", 0) >= 1, json.dumps(replies))

        # --- Cafe -> cafe foreign agent: outside -> outside, only x-MIP moves (fvc).
        vip = vpn().get("inner_address", "none").split("/")[0]
        counters = imip().get("counters", {})
        inner_requests = counters.get("requests_sent", 0) - counters.get("direct_requests_sent", 0)
        bad_before = imip().get("detection", {}).get("replies", {}).get("bad_authenticator", 0)

        def via_cafe_agent():
            im = imip()
            return (im.get("detection", {}).get("foreign_agent") == CFA and xha_binding().get("care_of_address") == CFA
                    and im.get("registered") and im.get("care_of_address") == vip and vpn().get("ike_state") == "established")
        walk("cafe -> cafe FA", "cafefa", "fvc", via_cafe_agent, agent=True)
        im, v, xm = imip(), vpn(), xmip()
        d = im.get("detection", {})
        checks.check("cafe FA: outside (mode fvc) on the external HA's answer through the cafe agent",
                     d.get("mode") == "fvc" and d.get("cause") == "external_ha_reply" and d.get("foreign_agent") == CFA, json.dumps(d))
        checks.check(f"cafe FA: x-MIP registered through the agent (the external HA binds {X_HOME} to {CFA}); "
                     "no address of our own on the link", xha_binding().get("care_of_address") == CFA and xm.get("mode") == "foreign_agent"
                     and X_HOME in visitors(cfa) and no_wlan_address(), json.dumps(xha_binding()) + json.dumps(xm)[:300])
        counters = im.get("counters", {})
        checks.check(f"cafe -> cafe FA: zero IKE messages ({rows[-1][3]}), the same IKE SA, and no i-MIP registration "
                     f"(the internal HA still binds the VPN inner address {vip})",
                     rows[-1][3] == 0 and v.get("ike_state") == "established" and len(gateway_clients()) == 1
                     and counters.get("requests_sent", 0) - counters.get("direct_requests_sent", 0) == inner_requests
                     and iha_binding().get("care_of_address") == vip, json.dumps(counters) + json.dumps(iha_binding()))
        forged_cfa = open(cfa_forger.log_path).read().count("forged reply")
        bad = d.get("replies", {}).get("bad_authenticator", 0)
        checks.check(f"cafe FA: the {forged_cfa} forged replies the agent relayed for the internal HA were rejected "
                     "(bad_authenticator); the node stayed fvc", forged_cfa >= 1 and bad > bad_before and mode() == "fvc",
                     json.dumps(d.get("replies")))

        # --- Cafe FA -> office: inside again, x-MIP deregistered, VPN dormant.
        walk("cafe FA -> office", "office", "c",
             lambda: registered_directly(imip().get("detection", {}).get("interface_address")) and xha_bindings() == 0)
        v, im, xm = vpn(), imip(), xmip()
        office_addr = im.get("detection", {}).get("interface_address", "")
        checks.check(f"office again: i-MIP registered directly with the office address {office_addr} at the internal HA; "
                     "the VPN dormant, its SAs deleted (keep_sas_inside false)",
                     office_addr.startswith("10.99.2.") and registered_directly(office_addr) and v.get("access") == "dormant"
                     and wait(lambda: vpn().get("ike_state") == "idle" and not gateway_clients(), 5, "SAs deleted"),
                     json.dumps(v)[:400] + json.dumps(iha_binding()))
        checks.check("office again: x-MIP dormant and deregistered at the external HA (no binding left)",
                     xm.get("dormant") is True and xha_bindings() == 0, json.dumps(xm)[:400])

        ok, out = stream.finish()
        checks.check("the TCP stream from the intranet home address survived all four moves byte-exact", ok, out)
        lab.stop(pinger)
        print("\nmove                  longest ping gap   first reply after link change   IKE messages")
        for label, gap, first, ike in rows:
            print(f"{label:<21} {gap * 1000:>10.0f} ms   {'n/a' if first is None else f'{first * 1000:.0f} ms':>24}   {ike:>12}")
        print("\n$ mipsec status   (the mobile node: i-MIP with detection / VPN client / x-MIP)")
        print(mn.run([args.mipsec, "status", "--socket", sock], check=False).stdout)
        if checks.failed:
            lab.dump_logs()
    return checks.finish()


if __name__ == "__main__":
    sys.exit(main())

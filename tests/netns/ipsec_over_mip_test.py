# SPDX-License-Identifier: MIT
"""IKE and ESP over a Mobile IP lower layer (RFC 5265's external MIP under IPsec): one `mipsec
run` node stacks the VPN client (ipsec.vpn_client + nat.udp_encap) on top of a mobile node
(mip.mobile_node) whose home address is the VPN client's local address. An unmodified
strongSwan 5.9 gateway sees every IKE and ESP packet come from that home address, through a
`mipsec run` home agent. The mobile node then moves — cafe (DHCP, IP-in-IP) -> behind an
nftables NAT (DHCP, RFC 3519 IP-in-UDP) -> cafe — and the IKE SA and the IPsec SAs stay up
untouched: no new handshake on either side, the same SPIs, and pings through the VPN keep
being answered. Movement is learnt from rtnetlink only.

With --gateway mipsec the gateway is mipsec's own (ipsec.vpn_gateway). Nothing rewrites the
home address on its way to the gateway, so IKE finds no NAT and ESP stays plain (IP protocol
50) inside the x-MIP tunnel, also behind the NAT where that tunnel is RFC 3519 IP-in-UDP:
plain ESP inside a Mobile IP UDP tunnel through a NAT, checked on the captures between the
layers and on the wire.

    lan 10.99.1.2 --- gw (strongSwan, 198.18.5.2) --- inet --- x-ha (198.18.1.2, home 203.0.113.0/24)
    inet --- cafe router 198.18.2.2 (192.0.2.1/24, dnsmasq)
    inet --- nat box 198.18.3.2 (10.20.0.1/24, dnsmasq, masquerade)
    mn (wlan0, moved between br_cafe and br_nat in the "air" namespace)
"""
import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "tools"))
from netns_lab import Checks, Lab, pcap_packets, require_root  # noqa: E402
from roaming_lab import Roaming, ike_sa_ids, node_status, stage_states, write_json  # noqa: E402
from strongswan_lab import Charon, Child, Connection  # noqa: E402

PSK = "lab-psk-0123456789"
X_HOME = "203.0.113.77"
X_HA = "198.18.1.2"
GW = "198.18.5.2"
MIP_KEY = "00112233445566778899aabbccddeeff"
FWMARK = 0x6d69


class SwanGateway:
    """An unmodified strongSwan 5.9 gateway (charon + kernel-libipsec)."""

    def __init__(self, lab, gw):
        self.charon = Charon(lab, gw, Connection("rw", GW, "%any", "gw.lab.example", "mn.lab.example", PSK,
                                                 proposals="aes128-sha256-modp2048", pools="vpn", pool_addrs="10.99.100.0/24",
                                                 dpd_delay="30s",
                                                 children=[Child(local_ts="10.99.1.0/24", remote_ts="dynamic", esp_proposals="aes128gcm16")]))
        self.name = "strongSwan"

    def text(self):
        return self.charon.list_sas()

    def ike_ids(self):
        return ike_sa_ids(self.charon.list_sas())

    def sees_home_address(self):
        sas = self.charon.list_sas()
        return X_HOME in sas and "192.0.2." not in sas

    def established(self):
        return "ESTABLISHED" in self.charon.list_sas()

    def debug(self):
        print(self.charon.log_text()[-3000:])


class MipsecGateway:
    """mipsec's own VPN gateway (ipsec.vpn_gateway)."""

    def __init__(self, lab, gw, mipsec):
        self.host, self.mipsec, self.sock = gw, mipsec, f"{lab.dir}/gw.sock"
        cfg = write_json(lab, "gw", {
            "name": "gw", "control_socket": self.sock, "log_level": "info",
            "tun": {"name": "vpn0", "routes": ["10.99.100.0/24"]},
            "transport": {"local": GW, "udp_ports": [500, 4500], "raw_protocols": [50]},
            "pipeline": [{"type": "ipsec.vpn_gateway", "local": GW, "psk": PSK, "local_id": "gw.lab.example",
                          "pool": "10.99.100.0/24", "local_ts": ["10.99.1.0/24"], "ike_proposals": ["aes128-sha256-modp2048"],
                          "esp_proposals": ["aes128gcm16"]}],
        })
        gw.spawn([mipsec, "run", cfg], log_name="mipsec-gw")
        lab.wait_for(lambda: os.path.exists(self.sock), what="the gateway's control socket")
        self.name = "the mipsec gateway"

    def state(self):
        return (stage_states(node_status(self.host, self.mipsec, self.sock), "ipsec.vpn_gateway") or [{}])[0]

    def text(self):
        return json.dumps(self.state())

    def clients(self):
        return [c for c in self.state().get("clients", []) if c.get("ike_state") == "established"]

    def ike_ids(self):
        return sorted(str(c.get("session")) for c in self.clients())

    def sees_home_address(self):
        return any(c.get("ike_peer", "").startswith(X_HOME + ":") for c in self.clients())

    def established(self):
        return bool(self.clients())

    def debug(self):
        print(self.text()[-2000:])


def pcap_kinds(path):
    """Counts a LINKTYPE_RAW capture's packets: plain ESP, ESP in UDP 4500, RFC 3519 IP-in-UDP."""
    counts = {"esp": 0, "esp_in_udp": 0, "mip_udp_tunnel": 0}
    for pkt in pcap_packets(path):
        if len(pkt) < 28:
            continue
        ihl = (pkt[0] & 0x0F) * 4
        if pkt[9] == 50:
            counts["esp"] += 1
        elif pkt[9] == 17:
            sport, dport = int.from_bytes(pkt[ihl:ihl + 2], "big"), int.from_bytes(pkt[ihl + 2:ihl + 4], "big")
            payload = pkt[ihl + 8:]
            if 4500 in (sport, dport) and len(payload) > 4 and payload[:4] != b"\0\0\0\0":
                counts["esp_in_udp"] += 1
            # RFC 3519 §3.3: tunnel data is message type 4 on the registration port.
            elif 434 in (sport, dport) and payload[:1] == b"\x04":
                counts["mip_udp_tunnel"] += 1
    return counts


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--mipsec", required=True)
    ap.add_argument("--gateway", choices=["strongswan", "mipsec"], default="strongswan")
    args = ap.parse_args()
    require_root("the IPsec over Mobile IP test")
    checks = Checks()

    with Lab("ipsec-over-mip") as lab:
        mn = lab.host("mn")
        net = Roaming(lab, mn)
        xha, gw, lan = lab.host("xha"), lab.host("gw"), lab.host("lan")
        for h in (xha, gw):
            h.sysctl("net.ipv4.ip_forward", "1")
        net.public(xha, 1, X_HA)
        net.inet.run(["ip", "route", "add", "203.0.113.0/24", "via", X_HA])  # the external home network
        net.public(gw, 5, GW)
        lab.link(gw, "10.99.1.1/24", lan, "10.99.1.2/24")
        lan.run(["ip", "route", "add", "default", "via", "10.99.1.1"])
        net.access("cafe", 2, "192.0.2.1/24", ("192.0.2.100", "192.0.2.150"))
        net.access("natbox", 3, "10.20.0.1/24", ("10.20.0.100", "10.20.0.150"), nat=True)
        net.move("cafe")

        gateway = SwanGateway(lab, gw) if args.gateway == "strongswan" else MipsecGateway(lab, gw, args.mipsec)
        cfg_ha = write_json(lab, "xha", {
            "name": "xha", "control_socket": f"{lab.dir}/xha.sock", "log_level": "info",
            "tun": {"name": "xha0"},
            "transport": {"local": X_HA, "udp_ports": [434], "raw_protocols": [4]},
            "pipeline": [{"type": "mip.home_agent", "address": X_HA, "home_network": "203.0.113.0/24", "keepalive_s": 10,
                          "mobile_nodes": [{"home_address": X_HOME, "spi": 300, "key": MIP_KEY}]}],
        })
        cfg_mn = write_json(lab, "mn", {
            "name": "mn", "control_socket": f"{lab.dir}/mn.sock", "log_level": "info",
            "tun": {"name": "vpn0", "routes": ["10.99.1.0/24"], "route_table": 100},
            "transport": {"local": "0.0.0.0", "udp_ports": [434], "raw_protocols": [4, 255], "fwmark": FWMARK},
            "pipeline": [
                {"type": "ipsec.vpn_client", "local": X_HOME, "gateway": GW, "psk": PSK, "local_id": "mn.lab.example",
                 "remote_id": "gw.lab.example", "remote_ts": "10.99.1.0/24", "ike_proposals": ["aes128-sha256-modp2048"],
                 "esp_proposals": ["aes128gcm16"], "dpd_delay_s": 30},
                {"type": "nat.udp_encap", "keepalive_s": 20},
                {"type": "tap.pcap", "file": f"{lab.dir}/mn-ipsec.pcap"},
                {"type": "mip.mobile_node", "home_address": X_HOME, "home_agent": X_HA, "spi": 300, "key": MIP_KEY,
                 "lifetime_s": 120, "care_of": "interface", "interface": "wlan0", "max_retransmit_s": 4},
                {"type": "tap.pcap", "file": f"{lab.dir}/mn-wire.pcap"},
            ],
        })
        for host, cfg in ((xha, cfg_ha), (mn, cfg_mn)):
            checks.check(f"mipsec check accepts the {host.role} config", host.run([args.mipsec, "check", cfg], check=False).returncode == 0)
        xha.spawn([args.mipsec, "run", cfg_ha], log_name="mipsec-xha")
        mn_proc = mn.spawn([args.mipsec, "run", cfg_mn], log_name="mipsec-mn")
        sock = f"{lab.dir}/mn.sock"

        def vpn():
            return (stage_states(node_status(mn, args.mipsec, sock), "ipsec.vpn_client") or [{}])[0]

        def mip():
            return (stage_states(node_status(mn, args.mipsec, sock), "mip.mobile_node") or [{}])[0]

        try:
            lab.wait_for(lambda: vpn().get("sa_installs", 0) >= 1 and vpn().get("inner_address", "none") != "none",
                         timeout=45, what="IKE over the x-MIP tunnel")
        except TimeoutError as e:
            checks.check("IKE and ESP come up over the Mobile IP tunnel", False, str(e) + " " + json.dumps(vpn()) + json.dumps(mip()))
            gateway.debug()
            lab.dump_logs()
            return checks.finish()
        v, m = vpn(), mip()
        checks.check("cafe: the mobile node is registered with its external home agent (IP-in-IP)",
                     m.get("registered") and m.get("mode") == "ip_in_ip", json.dumps(m))
        checks.check(f"IKE (Main Mode, Mode Config, Quick Mode) with {gateway.name} over the x-MIP tunnel; ESP installed",
                     v.get("ike_state") == "established", json.dumps(v)[:400])
        checks.check(f"{gateway.name} sees the peer at the mobile node's home address, not its care-of address",
                     gateway.sees_home_address(), gateway.text()[-800:])
        if args.gateway == "mipsec":
            # Nothing between the home address and the gateway rewrites addresses: NAT-T off.
            child = (v.get("child_sas") or [{}])[0]
            checks.check("no NAT between the home address and the gateway: the CHILD_SA is plain ESP (no UDP encapsulation)",
                         v.get("nat_detected") is False and child.get("udp_encapsulation") is False, json.dumps(v)[:400])
        vip = v["inner_address"].split("/")[0]
        before = {"sessions": v.get("sessions_started"), "installs": v.get("sa_installs"),
                  "spi_in": (v.get("child_sas") or [{}])[0].get("spi_in")}
        ike_ids_before = gateway.ike_ids()
        checks.check(f"{gateway.name} has exactly one IKE SA with the mobile node", len(ike_ids_before) == 1, gateway.text()[-600:])
        r = lan.run(["ping", "-c", "3", "-i", "0.2", "-W", "2", vip], check=False)
        checks.check("cafe: the gateway's LAN host pings the VPN inner address", " 0% packet loss" in r.stdout, r.stdout[-200:])

        # Keep pinging while the mobile node moves twice.
        pinger = lan.spawn(["ping", "-D", "-n", "-i", "0.1", "-W", "1", vip], log_name="ping")
        for label, network, mode in (("cafe -> NAT", "natbox", "ip_in_udp"), ("NAT -> cafe", "cafe", "ip_in_ip")):
            seen_before = open(pinger.log_path).read().count("bytes from")
            t0 = net.move(network)
            try:
                lab.wait_for(lambda: (x := mip()).get("registered") and x.get("mode") == mode, timeout=30, what=f"{label} registration")
                reg_dt = time.time() - t0
            except TimeoutError:
                reg_dt = None
            checks.check(f"{label}: the mobile node re-registered ({mode})", reg_dt is not None, json.dumps(mip()))
            try:
                lab.wait_for(lambda: open(pinger.log_path).read().count("bytes from") > seen_before + 5, timeout=20,
                             what="pings through the VPN after the move")
                ok = True
            except TimeoutError:
                ok = False
            checks.check(f"{label}: pings through the VPN are answered again", ok, open(pinger.log_path).read()[-300:])
            v = vpn()
            after = {"sessions": v.get("sessions_started"), "installs": v.get("sa_installs"),
                     "spi_in": (v.get("child_sas") or [{}])[0].get("spi_in")}
            checks.check(f"{label}: the IKE and IPsec SAs stay up untouched (no new session, no new SA, same SPI)",
                         after == before and v.get("ike_state") == "established", f"{before} -> {after}")
            ike_ids = gateway.ike_ids()
            checks.check(f"{label}: {gateway.name} still has the same single IKE SA", ike_ids == ike_ids_before, f"{ike_ids_before} -> {ike_ids}")
            if args.gateway == "mipsec" and mode == "ip_in_udp":
                inner, wire = pcap_kinds(f"{lab.dir}/mn-ipsec.pcap"), pcap_kinds(f"{lab.dir}/mn-wire.pcap")
                checks.check(f"{label}: plain ESP inside the RFC 3519 UDP tunnel through the NAT (between the layers {inner}, "
                             f"on the wire {wire})",
                             inner["esp"] >= 10 and inner["esp_in_udp"] == 0 and wire["mip_udp_tunnel"] >= 10 and wire["esp"] == 0,
                             f"{inner} {wire}")
            print(f"timing {label}: link change -> x-MIP registered {'n/a' if reg_dt is None else f'{reg_dt * 1000:.0f} ms'} "
                  f"(DHCP included); no IKE exchange", flush=True)
        lab.stop(pinger)
        # Stopping the node while away: the VPN client deletes its SAs at strongSwan (through
        # the x-MIP tunnel), then the mobile node deregisters at its home agent.
        xha_sock = f"{lab.dir}/xha.sock"
        before = (stage_states(node_status(xha, args.mipsec, xha_sock), "mip.home_agent") or [{}])[0].get("binding_count")
        code = lab.stop(mn_proc)
        try:
            lab.wait_for(lambda: not gateway.established()
                         and (stage_states(node_status(xha, args.mipsec, xha_sock), "mip.home_agent") or [{}])[0].get("binding_count") == 0,
                         timeout=3, what="the SAs and the binding to go")
            gone = True
        except TimeoutError:
            gone = False
        checks.check(f"stopping the mobile node (exit {code}) deletes its SAs at {gateway.name} and its binding at the home agent "
                     f"({before} -> 0 bindings)", gone and code == 0 and before == 1, gateway.text()[-400:])
        if checks.failed:
            gateway.debug()
            lab.dump_logs()
    return checks.finish()


if __name__ == "__main__":
    sys.exit(main())

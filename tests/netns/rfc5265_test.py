# SPDX-License-Identifier: MIT
"""The whole RFC 5265 stack in one `mipsec run` node: internal Mobile IP (i-MIP) inside IPsec
inside external Mobile IP (x-MIP), against an unmodified strongSwan 5.9 VPN gateway.

    pipeline, inner first: mip.mobile_node (i-MIP: intranet home address 10.99.1.77, internal
    HA 10.99.1.5 behind the gateway, care-of address = the VPN inner address from Mode Config,
    reverse tunnelling) -> ipsec.vpn_client (local = the x-MIP home address) -> nat.udp_encap
    -> mip.mobile_node (x-MIP: external HA, care-of address from wlan0)

A correspondent on the intranet LAN talks to the mobile node's intranet home address (the
internal HA proxies ARP for it) over TCP while the node moves cafe (DHCP, IP-in-IP) -> behind
an nftables NAT (DHCP, RFC 3519) -> cafe. Each move costs one x-MIP registration only: no IKE
exchange, no i-MIP registration (its care-of address, the VPN inner address, never changes),
the same SAs on both sides; the TCP stream ends byte-exact.

    lan: cn 10.99.1.10, i-ha 10.99.1.5 --- gw (strongSwan, 10.99.1.1 / 198.18.5.2) --- inet
    inet --- x-ha (198.18.1.2, home 203.0.113.0/24)
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
from netns_lab import Checks, Lab, require_root  # noqa: E402
from roaming_lab import Roaming, Stream, ike_sa_ids, node_status, stage_states, write_json  # noqa: E402
from strongswan_lab import Charon, Child, Connection  # noqa: E402

PSK = "lab-psk-0123456789"
I_HOME = "10.99.1.77"
I_HA = "10.99.1.5"
CN = "10.99.1.10"
I_KEY = "ffeeddccbbaa99887766554433221100"
X_HOME = "203.0.113.77"
X_HA = "198.18.1.2"
GW = "198.18.5.2"
MIP_KEY = "00112233445566778899aabbccddeeff"
FWMARK = 0x6d69


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--mipsec", required=True)
    args = ap.parse_args()
    require_root("the RFC 5265 full-stack test")
    checks = Checks()

    with Lab("rfc5265") as lab:
        mn = lab.host("mn")
        net = Roaming(lab, mn)
        xha, gw, iha, cn, sw = (lab.host(r) for r in ("xha", "gw", "iha", "cn", "sw"))
        for h in (xha, gw, iha):
            h.sysctl("net.ipv4.ip_forward", "1")
        net.public(xha, 1, X_HA)
        net.inet.run(["ip", "route", "add", "203.0.113.0/24", "via", X_HA])  # the external home network
        net.public(gw, 5, GW)
        # The intranet LAN: a switch namespace with one bridge; gateway, internal HA and
        # correspondent on it.
        sw.run(["ip", "link", "add", "br_lan", "type", "bridge"])
        sw.run(["ip", "link", "set", "br_lan", "up"])
        lan_ifs = {}
        for host, addr in ((gw, "10.99.1.1/24"), (iha, f"{I_HA}/24"), (cn, f"{CN}/24")):
            ifname, p = lab.link(host, addr, sw, "")
            sw.run(["ip", "link", "set", p, "master", "br_lan"])
            lan_ifs[host.role] = ifname
        for host in (iha, cn):
            host.run(["ip", "route", "add", "default", "via", "10.99.1.1"])
        net.access("cafe", 2, "192.0.2.1/24", ("192.0.2.100", "192.0.2.150"))
        net.access("natbox", 3, "10.20.0.1/24", ("10.20.0.100", "10.20.0.150"), nat=True)
        net.move("cafe")

        charon = Charon(lab, gw, Connection("rw", GW, "%any", "gw.lab.example", "mn.lab.example", PSK,
                                            proposals="aes128-sha256-modp2048", pools="vpn", pool_addrs="10.99.100.0/24",
                                            dpd_delay="30s",
                                            children=[Child(local_ts="10.99.1.0/24", remote_ts="dynamic", esp_proposals="aes128gcm16")]))
        cfg_ha = write_json(lab, "xha", {
            "name": "xha", "control_socket": f"{lab.dir}/xha.sock", "log_level": "info",
            "tun": {"name": "xha0"},
            "transport": {"local": X_HA, "udp_ports": [434], "raw_protocols": [4]},
            "pipeline": [{"type": "mip.home_agent", "address": X_HA, "home_network": "203.0.113.0/24", "keepalive_s": 10,
                          "mobile_nodes": [{"home_address": X_HOME, "spi": 300, "key": MIP_KEY}]}],
        })
        cfg_iha = write_json(lab, "iha", {
            "name": "iha", "control_socket": f"{lab.dir}/iha.sock", "log_level": "info",
            "tun": {"name": "iha0"},
            "transport": {"local": I_HA, "udp_ports": [434], "raw_protocols": [4]},
            "pipeline": [{"type": "mip.home_agent", "address": I_HA, "home_network": "10.99.1.0/24",
                          "home_interface": lan_ifs["iha"], "udp_tunnelling": False,
                          "mobile_nodes": [{"home_address": I_HOME, "spi": 400, "key": I_KEY}]}],
        })
        cfg_mn = write_json(lab, "mn", {
            "name": "mn", "control_socket": f"{lab.dir}/mn.sock", "log_level": "info",
            "tun": {"name": "mip0", "address": f"{I_HOME}/32", "routes": ["10.99.1.0/24"], "route_table": 100},
            "transport": {"local": "0.0.0.0", "udp_ports": [434], "raw_protocols": [4, 255], "fwmark": FWMARK},
            "pipeline": [
                {"type": "tap.pcap", "file": f"{lab.dir}/mn-inner.pcap"},
                {"type": "mip.mobile_node", "home_address": I_HOME, "home_agent": I_HA, "spi": 400, "key": I_KEY,
                 "lifetime_s": 300, "care_of": "inner_address", "udp_tunnelling": "off", "max_retransmit_s": 4},
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
        for host, cfg in ((xha, cfg_ha), (iha, cfg_iha), (mn, cfg_mn)):
            checks.check(f"mipsec check accepts the {host.role} config", host.run([args.mipsec, "check", cfg], check=False).returncode == 0)
        xha.spawn([args.mipsec, "run", cfg_ha], log_name="mipsec-xha")
        iha.spawn([args.mipsec, "run", cfg_iha], log_name="mipsec-iha")
        mn.spawn([args.mipsec, "run", cfg_mn], log_name="mipsec-mn")
        sock = f"{lab.dir}/mn.sock"

        def stages(kind):
            return stage_states(node_status(mn, args.mipsec, sock), kind)

        def vpn():
            return (stages("ipsec.vpn_client") or [{}])[0]

        def mip():  # the x-MIP layer: the outer one
            found = stages("mip.mobile_node")
            return found[-1] if found else {}

        def imip():
            found = stages("mip.mobile_node")
            return found[0] if len(found) == 2 else {}

        try:
            lab.wait_for(lambda: vpn().get("sa_installs", 0) >= 1 and vpn().get("inner_address", "none") != "none",
                         timeout=45, what="IKE over the x-MIP tunnel")
        except TimeoutError as e:
            checks.check("IKE and ESP come up over the Mobile IP tunnel", False, str(e) + " " + json.dumps(vpn()) + json.dumps(mip()))
            print(charon.log_text()[-3000:])
            lab.dump_logs()
            return checks.finish()
        v, m = vpn(), mip()
        checks.check("cafe: the mobile node is registered with its external home agent (IP-in-IP)",
                     m.get("registered") and m.get("mode") == "ip_in_ip", json.dumps(m))
        checks.check("IKE (Main Mode, Mode Config, Quick Mode) with strongSwan over the x-MIP tunnel; ESP installed",
                     v.get("ike_state") == "established", json.dumps(v)[:400])
        sas = charon.list_sas()
        checks.check("strongSwan sees the peer at the mobile node's home address, not its care-of address",
                     X_HOME in sas and "192.0.2." not in sas, sas[-800:])
        vip = v["inner_address"].split("/")[0]
        try:
            lab.wait_for(lambda: imip().get("registered") and imip().get("care_of_address") == vip, timeout=30,
                         what="i-MIP registration through the VPN")
        except TimeoutError:
            pass
        im = imip()
        checks.check("i-MIP: registered with the internal HA through the VPN, care-of address = the VPN inner address "
                     "(RFC 5265 §4), reverse tunnelling", im.get("registered") and im.get("care_of_address") == vip
                     and im.get("reverse_tunnel"), json.dumps(im))
        before = {"sessions": v.get("sessions_started"), "installs": v.get("sa_installs"),
                  "spi_in": (v.get("child_sas") or [{}])[0].get("spi_in"), "i_mip_requests": im.get("counters", {}).get("requests_sent")}
        ike_ids_before = ike_sa_ids(sas)
        checks.check("strongSwan has exactly one IKE SA with the mobile node", len(ike_ids_before) == 1, sas[-600:])
        r = cn.run(["ping", "-c", "3", "-i", "0.2", "-W", "2", I_HOME], check=False)
        checks.check("the intranet correspondent pings the intranet home address (proxy ARP at the internal HA)",
                     " 0% packet loss" in r.stdout, r.stdout[-200:])

        # A TCP stream from the intranet home address to the correspondent, and pings back,
        # while the node moves twice.
        stream = Stream(lab, cn, mn, I_HOME, CN)
        pinger = cn.spawn(["ping", "-D", "-n", "-i", "0.1", "-W", "1", I_HOME], log_name="ping")
        time.sleep(1)
        for label, network, mode in (("cafe -> NAT", "natbox", "ip_in_udp"), ("NAT -> cafe", "cafe", "ip_in_ip")):
            seen_before = open(pinger.log_path).read().count("bytes from")
            streamed_before = stream.bytes()
            t0 = net.move(network)
            try:
                lab.wait_for(lambda: (x := mip()).get("registered") and x.get("mode") == mode, timeout=30, what=f"{label} registration")
                reg_dt = time.time() - t0
            except TimeoutError:
                reg_dt = None
            checks.check(f"{label}: x-MIP re-registered ({mode})", reg_dt is not None, json.dumps(mip()))
            try:
                lab.wait_for(lambda: open(pinger.log_path).read().count("bytes from") > seen_before + 5 and
                             stream.bytes() > streamed_before, timeout=40, what="traffic after the move")
                ok = True
            except TimeoutError:
                ok = False
            checks.check(f"{label}: pings and the TCP stream reach the intranet home address again", ok,
                         open(pinger.log_path).read()[-300:])
            v, im = vpn(), imip()
            after = {"sessions": v.get("sessions_started"), "installs": v.get("sa_installs"),
                     "spi_in": (v.get("child_sas") or [{}])[0].get("spi_in"), "i_mip_requests": im.get("counters", {}).get("requests_sent")}
            checks.check(f"{label}: no IKE exchange, no new IPsec SA, no i-MIP registration: only x-MIP moved",
                         after == before and v.get("ike_state") == "established" and im.get("registered"), f"{before} -> {after}")
            sas = charon.list_sas()
            checks.check(f"{label}: strongSwan still has the same single IKE SA", ike_sa_ids(sas) == ike_ids_before, sas[-400:])
            print(f"timing {label}: link change -> x-MIP registered {'n/a' if reg_dt is None else f'{reg_dt * 1000:.0f} ms'} "
                  f"(DHCP included); no IKE exchange, no i-MIP registration", flush=True)
        ok, out = stream.finish()
        checks.check("the TCP stream from the intranet home address survived both moves intact", ok, out)
        print("\n$ mipsec status   (the mobile node: i-MIP / VPN client / x-MIP)")
        print(mn.run([args.mipsec, "status", "--socket", sock], check=False).stdout)
        lab.stop(pinger)
        if checks.failed:
            print(charon.log_text()[-3000:])
            lab.dump_logs()
    return checks.finish()


if __name__ == "__main__":
    sys.exit(main())

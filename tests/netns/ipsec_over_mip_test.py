# SPDX-License-Identifier: MIT
"""IKE and ESP over a Mobile IP lower layer (RFC 5265's external MIP under IPsec): one `mipsec
run` node stacks the VPN client (ipsec.vpn_client + nat.udp_encap) on top of a mobile node
(mip.mobile_node) whose home address is the VPN client's local address. An unmodified
strongSwan 5.9 gateway sees every IKE and ESP packet come from that home address, through a
`mipsec run` home agent. The mobile node then moves — cafe (DHCP, IP-in-IP) -> behind an
nftables NAT (DHCP, RFC 3519 IP-in-UDP) -> cafe — and the IKE SA and the IPsec SAs stay up
untouched: no new handshake on either side, the same SPIs, and pings through the VPN keep
being answered. Movement is learnt from rtnetlink only.

    lan 10.99.1.2 --- gw (strongSwan, 198.18.5.2) --- inet --- x-ha (198.18.1.2, home 203.0.113.0/24)
    inet --- cafe router 198.18.2.2 (192.0.2.1/24, dnsmasq)
    inet --- nat box 198.18.3.2 (10.20.0.1/24, dnsmasq, masquerade)
    mn (wlan0, moved between br_cafe and br_nat in the "air" namespace)
"""
import argparse
import json
import os
import re
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "tools"))
from netns_lab import Checks, Lab, require_root  # noqa: E402
from strongswan_lab import Charon, Child, Connection  # noqa: E402

PSK = "lab-psk-0123456789"
X_HOME = "203.0.113.77"
X_HA = "198.18.1.2"
GW = "198.18.5.2"
MIP_KEY = "00112233445566778899aabbccddeeff"
FWMARK = 0x6d69

UDHCPC_SCRIPT = """#!/bin/sh
case "$1" in
  deconfig) ip -4 addr flush dev "$interface" ;;
  bound|renew)
    ip addr replace "$ip/$mask" dev "$interface"
    [ -n "$router" ] && ip route replace default via "${router%% *}" dev "$interface" ;;
esac
exit 0
"""


def write_json(lab, name, cfg):
    path = f"{lab.dir}/{name}.json"
    with open(path, "w") as f:
        json.dump(cfg, f, indent=2)
    return path


def status(host, mipsec, sock):
    r = host.run([mipsec, "status", "--socket", sock, "--json"], check=False)
    if r.returncode != 0:
        return None
    try:
        return json.loads(r.stdout)["nodes"][0]
    except (ValueError, KeyError, IndexError):
        return None


def stage_state(st, kind):
    if not st:
        return {}
    return next((s.get("state", {}) for s in st["pipeline"] if s["type"] == kind), {})


def ike_sa_ids(list_sas_text):
    """strongSwan's unique IKE SA ids and SPIs ("rw: #1, ESTABLISHED, IKEv1, 1a2b...i 3c4d...r")."""
    out = []
    for line in list_sas_text.splitlines():
        m = re.search(r"#(\d+), \w+, IKEv1, ([0-9a-f]+)_i\*? ([0-9a-f]+)_r", line)
        if m:
            out.append(m.groups())
    return out


def bridge_port(air, bridge):
    air.run(["ip", "link", "set", "ap", "down"])
    air.run(["ip", "link", "set", "ap", "nomaster"])
    air.run(["ip", "link", "set", "ap", "master", bridge])
    air.run(["ip", "link", "set", "ap", "up"])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--mipsec", required=True)
    args = ap.parse_args()
    require_root("the IPsec over Mobile IP test")
    checks = Checks()

    with Lab("ipsec-over-mip") as lab:
        air, xha, gw, lan, inet, cafe, natbox, mn = (lab.host(r) for r in ("air", "xha", "gw", "lan", "inet", "cafe", "natbox", "mn"))
        for h in (xha, gw, inet, cafe, natbox):
            h.sysctl("net.ipv4.ip_forward", "1")
        lab.link(inet, "198.18.1.1/24", xha, f"{X_HA}/24")
        lab.link(inet, "198.18.2.1/24", cafe, "198.18.2.2/24")
        out_if, _ = lab.link(natbox, "198.18.3.2/24", inet, "198.18.3.1/24")
        lab.link(inet, "198.18.5.1/24", gw, f"{GW}/24")
        for h, via in ((xha, "198.18.1.1"), (cafe, "198.18.2.1"), (natbox, "198.18.3.1"), (gw, "198.18.5.1")):
            h.run(["ip", "route", "add", "default", "via", via])
        inet.run(["ip", "route", "add", "192.0.2.0/24", "via", "198.18.2.2"])
        inet.run(["ip", "route", "add", "203.0.113.0/24", "via", X_HA])  # the external home network
        lab.link(gw, "10.99.1.1/24", lan, "10.99.1.2/24")
        lan.run(["ip", "route", "add", "default", "via", "10.99.1.1"])
        natbox.run(["nft", "-f", "-"], input=f"""
table ip nat {{
  chain postrouting {{
    type nat hook postrouting priority srcnat; policy accept;
    oifname "{out_if}" masquerade
  }}
}}
""")
        for br in ("br_cafe", "br_nat"):
            air.run(["ip", "link", "add", br, "type", "bridge"])
            air.run(["ip", "link", "set", br, "up"])
        cafe_lan, p = lab.link(cafe, "192.0.2.1/24", air, "")
        air.run(["ip", "link", "set", p, "master", "br_cafe"])
        nat_lan, p = lab.link(natbox, "10.20.0.1/24", air, "")
        air.run(["ip", "link", "set", p, "master", "br_nat"])
        wlan, p = lab.link(mn, "", air, "")
        mn.run(["ip", "link", "set", wlan, "name", "wlan0"])
        mn.run(["ip", "link", "set", "wlan0", "up"])
        air.run(["ip", "link", "set", p, "down"])
        air.run(["ip", "link", "set", p, "name", "ap"])
        for host, iface, lo, hi, router in ((cafe, cafe_lan, "192.0.2.100", "192.0.2.150", "192.0.2.1"),
                                            (natbox, nat_lan, "10.20.0.100", "10.20.0.150", "10.20.0.1")):
            host.spawn(["dnsmasq", "--no-daemon", "--conf-file=/dev/null", "--port=0", f"--interface={iface}",
                        "--bind-interfaces", f"--dhcp-range={lo},{hi},255.255.255.0,10m", f"--dhcp-option=3,{router}",
                        "--dhcp-authoritative", f"--dhcp-leasefile={lab.dir}/{host.role}.leases", "--pid-file="],
                       log_name=f"dnsmasq-{host.role}")
        script = f"{lab.dir}/udhcpc.sh"
        with open(script, "w") as f:
            f.write(UDHCPC_SCRIPT)
        os.chmod(script, 0o755)

        def dhcp():
            mn.run(["busybox", "udhcpc", "-i", "wlan0", "-f", "-q", "-n", "-B", "-t", "5", "-T", "1", "-s", script], timeout=30)

        def move(bridge):
            mn.run(["ip", "-4", "addr", "flush", "dev", "wlan0"])
            mn.run(["ip", "route", "flush", "dev", "wlan0"], check=False)
            t0 = time.time()
            bridge_port(air, bridge)
            dhcp()
            return t0

        move("br_cafe")

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
        mn.spawn([args.mipsec, "run", cfg_mn], log_name="mipsec-mn")
        sock = f"{lab.dir}/mn.sock"

        def vpn():
            return stage_state(status(mn, args.mipsec, sock), "ipsec.vpn_client")

        def mip():
            return stage_state(status(mn, args.mipsec, sock), "mip.mobile_node")

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
        before = {"sessions": v.get("sessions_started"), "installs": v.get("sa_installs"),
                  "spi_in": (v.get("child_sas") or [{}])[0].get("spi_in")}
        ike_ids_before = ike_sa_ids(sas)
        checks.check("strongSwan has exactly one IKE SA with the mobile node", len(ike_ids_before) == 1, sas[-600:])
        r = lan.run(["ping", "-c", "3", "-i", "0.2", "-W", "2", vip], check=False)
        checks.check("cafe: the gateway's LAN host pings the VPN inner address", " 0% packet loss" in r.stdout, r.stdout[-200:])

        # Keep pinging while the mobile node moves twice.
        pinger = lan.spawn(["ping", "-D", "-n", "-i", "0.1", "-W", "1", vip], log_name="ping")
        for label, bridge, mode in (("cafe -> NAT", "br_nat", "ip_in_udp"), ("NAT -> cafe", "br_cafe", "ip_in_ip")):
            seen_before = open(pinger.log_path).read().count("bytes from")
            t0 = move(bridge)
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
            sas = charon.list_sas()
            ike_ids = ike_sa_ids(sas)
            checks.check(f"{label}: strongSwan still has the same single IKE SA", ike_ids == ike_ids_before, f"{ike_ids_before} -> {ike_ids}")
            print(f"timing {label}: link change -> x-MIP registered {'n/a' if reg_dt is None else f'{reg_dt * 1000:.0f} ms'} "
                  f"(DHCP included); no IKE exchange", flush=True)
        lab.stop(pinger)
        if checks.failed:
            print(charon.log_text()[-3000:])
            lab.dump_logs()
    return checks.finish()


if __name__ == "__main__":
    sys.exit(main())

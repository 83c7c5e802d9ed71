# SPDX-License-Identifier: MIT
"""RFC 5265 detection on two interfaces at once: one `mipsec run` mobile node (i-MIP with
`detection.interfaces` -> ipsec.vpn_client -> nat.udp_encap -> x-MIP) has an office cable (eth0,
inside) and a cafe Wi-Fi (wlan0, outside) up together. Each interface is detected on its own;
user data uses the inside one. Pulling the cable moves it to the cafe link (x-MIP registers the
cafe address, the VPN wakes, i-MIP registers the VPN inner address); plugging it back, once the
office is proven inside again, brings it back. A TCP stream from the intranet home address to an
intranet host runs across both changes and must end byte-exact.

    lan (br_lan): gw (mipsec VPN gateway, 10.99.1.1 / 198.18.5.2), i-ha 10.99.1.5 (trusted: the
        office subnet and the VPN pool), cn 10.99.1.10, office router 10.99.1.2 / 10.99.2.1
    mn eth0 10.99.2.50 --- office router (a cable: static address, a route to the intranet)
    mn wlan0 --- cafe router 198.18.2.2 (192.0.2.1/24, DHCP) --- inet --- x-ha 198.18.1.2
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
OFFICE_ADDR = "10.99.2.50"
FWMARK = 0x6d69


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--mipsec", required=True)
    args = ap.parse_args()
    require_root("the RFC 5265 two-interface test")
    checks = Checks()
    started = time.time()

    with Lab("two-ifaces") as lab:
        mn = lab.host("mn")
        net = Roaming(lab, mn)
        xha, gw, iha, cn, sw, office = (lab.host(r) for r in ("xha", "gw", "iha", "cn", "sw", "office"))
        for h in (xha, gw, iha, office):
            h.sysctl("net.ipv4.ip_forward", "1")
        net.public(xha, 1, X_HA)
        net.inet.run(["ip", "route", "add", "203.0.113.0/24", "via", X_HA])
        net.public(gw, 5, GW)
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
        # The office cable: a second interface of the node, up at the same time as wlan0.
        eth, _ = lab.link(mn, "", office, "10.99.2.1/24")
        mn.run(["ip", "link", "set", eth, "down"])
        mn.run(["ip", "link", "set", eth, "name", "eth0"])
        mn.run(["ip", "addr", "add", f"{OFFICE_ADDR}/24", "dev", "eth0"])
        mn.run(["ip", "link", "set", "eth0", "up"])

        def office_route():
            mn.run(["ip", "route", "replace", "10.99.1.0/24", "via", "10.99.2.1", "dev", "eth0"])
        office_route()
        net.access("cafe", 2, "192.0.2.1/24", ("192.0.2.100", "192.0.2.150"))
        net.move("cafe")

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
        iha_sock = f"{lab.dir}/iha.sock"
        cfg_iha = write_json(lab, "iha", {
            "name": "iha", "control_socket": iha_sock, "log_level": "info",
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
            "transport": {"local": "0.0.0.0", "udp_ports": [434, 500, 4500], "raw_protocols": [4, 50], "fwmark": FWMARK},
            "pipeline": [
                {"type": "mip.mobile_node", "home_address": I_HOME, "home_agent": I_HA, "spi": 400, "key": I_KEY,
                 "lifetime_s": 300, "care_of": "inner_address", "udp_tunnelling": "off", "max_retransmit_s": 2,
                 "detection": {"interfaces": ["eth0", "wlan0"], "external_home_agent": X_HA, "t_monitor_s": 60,
                               "monitor_margin_s": 10, "internal_retry_window_s": 4, "detection_timeout_s": 20}},
                {"type": "ipsec.vpn_client", "local": X_HOME, "gateway": GW, "psk": PSK, "local_id": "mn.lab.example",
                 "remote_id": "gw.lab.example", "remote_ts": "10.99.1.0/24", "ike_proposals": ["aes128-sha256-modp2048"],
                 "esp_proposals": ["aes128gcm16"], "dpd_delay_s": 30, "wait_for_access_mode": True},
                {"type": "nat.udp_encap", "keepalive_s": 20},
                {"type": "mip.mobile_node", "home_address": X_HOME, "home_agent": X_HA, "spi": 300, "key": X_KEY,
                 "lifetime_s": 120, "care_of": "interface", "interface": "wlan0", "max_retransmit_s": 2},
            ],
        })
        for host, cfg in ((gw, cfg_gw), (xha, cfg_xha), (iha, cfg_iha), (mn, cfg_mn)):
            checks.check(f"mipsec check accepts the {host.role} config", host.run([args.mipsec, "check", cfg], check=False).returncode == 0)
        gw.spawn([args.mipsec, "run", cfg_gw], log_name="mipsec-gw")
        xha.spawn([args.mipsec, "run", cfg_xha], log_name="mipsec-xha")
        iha.spawn([args.mipsec, "run", cfg_iha], log_name="mipsec-iha")
        lab.wait_for(lambda: all(os.path.exists(f"{lab.dir}/{n}.sock") for n in ("gw", "xha", "iha")), what="the agents' sockets")
        mn.spawn([args.mipsec, "run", cfg_mn], log_name="mipsec-mn")

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

        def detection():
            return imip().get("detection", {})

        def per_interface():
            return {i.get("name"): i for i in detection().get("interfaces", [])}

        def iha_binding():
            st = (stage_states(node_status(iha, args.mipsec, iha_sock), "mip.home_agent") or [{}])[0]
            return next((b for b in st.get("bindings", []) if b.get("home_address") == I_HOME), {})

        def xha_binding():
            st = (stage_states(node_status(xha, args.mipsec, xha_sock), "mip.home_agent") or [{}])[0]
            return next((b for b in st.get("bindings", []) if b.get("home_address") == X_HOME), {})

        def wait(pred, timeout, what):
            try:
                lab.wait_for(pred, timeout=timeout, what=what)
                return True
            except TimeoutError:
                return False

        def in_office():
            d = detection()
            return (d.get("interface") == "eth0" and d.get("mode") == "c" and imip().get("registered")
                    and iha_binding().get("care_of_address") == OFFICE_ADDR)

        def in_cafe():
            d, v, im = detection(), vpn(), imip()
            vip = v.get("inner_address", "none").split("/")[0]
            return (d.get("interface") == "wlan0" and d.get("mode") == "cvc" and v.get("ike_state") == "established"
                    and im.get("registered") and im.get("care_of_address") == vip and iha_binding().get("care_of_address") == vip)

        # --- Both links up: the office one carries the data.
        ok = wait(in_office, 20, "mode c on eth0")
        checks.check("start: both links up, user data on the office cable (eth0, mode c, internal HA's TNC reply)", ok,
                     json.dumps(detection()))
        ifs = per_interface()
        checks.check("start: status shows each interface's own detection state (eth0 c, in use; wlan0 not in use)",
                     ifs.get("eth0", {}).get("mode") == "c" and ifs.get("eth0", {}).get("in_use") is True
                     and ifs.get("wlan0", {}).get("in_use") is False and "mode" in ifs.get("wlan0", {}), json.dumps(ifs))
        checks.check("start: the VPN and x-MIP are dormant", wait(lambda: vpn().get("access") == "dormant" and xmip().get("dormant") is True,
                                                                  10, "dormant layers"), json.dumps(vpn())[:300])
        stream = Stream(lab, cn, mn, I_HOME, CN)
        pinger = cn.spawn(["ping", "-D", "-n", "-i", "0.1", "-W", "1", I_HOME], log_name="ping")
        time.sleep(1)
        rows = []

        def change(label, action, settled, timeout=30):
            seen = len(ping_times(pinger.log_path))
            streamed = stream.bytes()
            t0 = time.time()
            action()
            ok = wait(settled, timeout, label)
            checks.check(f"{label}: settled", ok, json.dumps(detection()) + json.dumps(vpn())[:300])
            flowing = wait(lambda: len(ping_times(pinger.log_path)) > seen + 10 and stream.bytes() > streamed, 20, f"{label}: traffic")
            checks.check(f"{label}: pings and the TCP stream reach the intranet home address", flowing,
                         open(pinger.log_path).read()[-300:])
            times = [t for t in ping_times(pinger.log_path) if t > t0 - 1]
            gaps = [b - a for a, b in zip(times, times[1:])]
            rows.append((label, max(gaps, default=float("nan"))))

        # --- The cable is pulled: data moves to the cafe link.
        change("office cable pulled", lambda: mn.run(["ip", "link", "set", "eth0", "down"]), in_cafe)
        ifs = per_interface()
        checks.check("cable out: eth0 no service (detached), wlan0 cvc in use; x-MIP registered the cafe address",
                     ifs.get("eth0", {}).get("mode") == "no service" and ifs.get("wlan0", {}).get("in_use") is True
                     and xha_binding().get("care_of_address", "").startswith("192.0.2."), json.dumps(ifs) + json.dumps(xha_binding()))

        # --- The cable is back: once the office is proven inside again, data returns.
        def plug():
            mn.run(["ip", "link", "set", "eth0", "up"])
            office_route()
        change("office cable back", plug, lambda: in_office() and xmip().get("dormant") is True)
        checks.check("cable back: the VPN dormant again", vpn().get("access") == "dormant", json.dumps(vpn())[:300])

        ok, out = stream.finish()
        checks.check("the TCP stream from the intranet home address survived both changes byte-exact", ok, out)
        lab.stop(pinger)
        print("\nchange                 longest ping gap")
        for label, gap in rows:
            print(f"{label:<22} {gap * 1000:>10.0f} ms")
        print(f"wall time {time.time() - started:.0f} s")
        print(mn.run([args.mipsec, "status", "--socket", sock], check=False).stdout)
        if checks.failed:
            lab.dump_logs()
    return checks.finish()


if __name__ == "__main__":
    sys.exit(main())

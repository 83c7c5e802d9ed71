# SPDX-License-Identifier: MIT
"""End to end Mobile IPv4 roaming: one `mipsec run` mobile node, one `mipsec run` home agent.

The mobile node has one interface, wlan0, whose other end sits in an "air" namespace and is
moved between bridges, as a laptop moves between access points. It goes

    home (static 10.1.0.77/24)
      -> a foreign network with a `mipsec run` foreign agent and no address for us (FA care-of
         address, reverse tunnelling by the FA, RFC 3024)
      -> a cafe network with a co-located care-of address from dnsmasq (IP-in-IP, RFC 2003)
      -> a network behind an nftables NAT, address from dnsmasq (IP-in-UDP, RFC 3519)
      -> home again (deregistration)

while a TCP stream from the mobile node's home address to a correspondent on the home link
keeps going, and the correspondent pings the home address. While the mobile node is away the
home agent answers ARP for its home address (proxy ARP, announced with a gratuitous ARP); back
home, the mobile node reclaims it with its own gratuitous ARP (RFC 5944 §4.6). mipsec learns every move
from rtnetlink only (link down/up, address removed/added); the test never tells it. Each move
is its own set of assertions and prints the time from the link change to the registration, the
first echo reply and the first TCP bytes after it.

    home link 10.1.0.0/24: cn 10.1.0.10, ha 10.1.0.1 (public 198.18.1.2) --- inet 198.18.x.1
    inet --- cafe router 198.18.2.2 (192.0.2.1/24, dnsmasq)
    inet --- nat box 198.18.3.2 (10.20.0.1/24, dnsmasq, masquerade)
    inet --- fa 198.18.4.2 (visitor link 198.51.100.1/24; does not forward: visitors' traffic
             goes back through the reverse tunnel only)
    air: br_home (ha), br_fa (fa), br_cafe (cafe), br_nat (nat box), and the mobile node's "ap" port
"""
import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "tools"))
from netns_lab import Checks, Lab, require_root  # noqa: E402
from roaming_lab import Roaming, Stream, first_after, node_status, ping_times, stage_states, write_json  # noqa: E402

HOME_ADDRESS = "10.1.0.77"
HA_PUBLIC = "198.18.1.2"
CN = "10.1.0.10"
KEY = "00112233445566778899aabbccddeeff"
FWMARK = 0x6d69

def mn_config(lab):
    return write_json(lab, "mn", {
        "name": "mn",
        "control_socket": f"{lab.dir}/mn.sock",
        "log_level": "info",
        # The home address lives on the TUN; only traffic without the transport's mark is
        # routed into it, so the node's own outer packets follow the main table.
        "tun": {"name": "mip0", "address": f"{HOME_ADDRESS}/32", "routes": ["10.1.0.0/24"], "route_table": 100},
        "transport": {"local": "0.0.0.0", "udp_ports": [434], "raw_protocols": [1, 4, 255], "fwmark": FWMARK},
        "pipeline": [
            {"type": "tap.pcap", "file": f"{lab.dir}/mn-inner.pcap"},
            {"type": "mip.mobile_node", "home_address": HOME_ADDRESS, "home_agent": HA_PUBLIC, "spi": 256, "key": KEY,
             "lifetime_s": 120, "care_of": "interface", "interface": "wlan0", "foreign_agents": True,
             "max_retransmit_s": 4},
            {"type": "tap.pcap", "file": f"{lab.dir}/mn-outer.pcap"},
        ],
    })


def ha_config(lab, home_if):
    return write_json(lab, "ha", {
        "name": "ha",
        "control_socket": f"{lab.dir}/ha.sock",
        "log_level": "info",
        "tun": {"name": "ha0"},
        "transport": {"local": HA_PUBLIC, "udp_ports": [434], "raw_protocols": [4]},
        "pipeline": [
            {"type": "mip.home_agent", "address": HA_PUBLIC, "home_network": "10.1.0.0/24", "keepalive_s": 10,
             "home_interface": home_if,
             "mobile_nodes": [{"home_address": HOME_ADDRESS, "spi": 256, "key": KEY}]},
            {"type": "tap.pcap", "file": f"{lab.dir}/ha-outer.pcap"},
        ],
    })


def fa_config(lab, link_if):
    return write_json(lab, "fa", {
        "name": "fa",
        "control_socket": f"{lab.dir}/fa.sock",
        "log_level": "info",
        "link": {"interface": link_if},
        "transport": {"local": "198.51.100.1", "udp_ports": [434], "raw_protocols": [4]},
        "pipeline": [
            {"type": "tap.pcap", "file": f"{lab.dir}/fa-link.pcap"},
            {"type": "mip.foreign_agent", "link_address": "198.51.100.1", "advertisement_interval_s": 1,
             "advertisement_lifetime_s": 9, "registration_lifetime_s": 600},
            {"type": "tap.pcap", "file": f"{lab.dir}/fa-outer.pcap"},
        ],
    })


def stage_report(host, mipsec, sock, kind):
    return (stage_states(node_status(host, mipsec, sock), kind) or [{}])[0]


def mac_of(host, ifname):
    return open_json(host.run(["ip", "-j", "link", "show", ifname]).stdout)[0]["address"]


def neighbour_mac(host, address):
    entries = open_json(host.run(["ip", "-j", "neigh", "show", address]).stdout)
    return entries[0].get("lladdr") if entries else None


def open_json(text):
    return json.loads(text) if text.strip() else []


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--mipsec", required=True)
    args = ap.parse_args()
    require_root("the Mobile IP roaming test")
    checks = Checks()

    with Lab("mip-roaming") as lab:
        mn = lab.host("mn")
        net = Roaming(lab, mn)
        ha, cn, fa = lab.host("ha"), lab.host("cn"), lab.host("fa")
        ha.sysctl("net.ipv4.ip_forward", "1")
        net.public(ha, 1, HA_PUBLIC)
        # The home link: home agent and correspondent.
        ha_home = net.attach(ha, "10.1.0.1/24", "home")
        net.attach(cn, f"{CN}/24", "home")
        cn.run(["ip", "route", "add", "default", "via", "10.1.0.1"])
        # The foreign agent does not forward: visitors' packets leave only through the reverse tunnel.
        net.public(fa, 4, "198.18.4.2")
        fa_lan = net.attach(fa, "198.51.100.1/24", "fa")
        net.inet.run(["ip", "route", "add", "198.51.100.0/24", "via", "198.18.4.2"])
        net.access("cafe", 2, "192.0.2.1/24", ("192.0.2.100", "192.0.2.150"))
        net.access("natbox", 3, "10.20.0.1/24", ("10.20.0.100", "10.20.0.150"), nat=True)

        def static_home():
            mn.run(["ip", "addr", "add", f"{HOME_ADDRESS}/24", "dev", "wlan0"])
            # "dev": the home prefix is also routed into the TUN (table 100) for unmarked lookups,
            # so the gateway must be named on the link, as DHCP clients do.
            mn.run(["ip", "route", "replace", "default", "via", "10.1.0.1", "dev", "wlan0"])

        net.move("home", static_home)

        cfg_mn, cfg_ha, cfg_fa = mn_config(lab), ha_config(lab, ha_home), fa_config(lab, fa_lan)
        checks.check("mipsec check accepts the foreign agent config", fa.run([args.mipsec, "check", cfg_fa], check=False).returncode == 0)
        checks.check("mipsec check accepts the mobile node config", mn.run([args.mipsec, "check", cfg_mn], check=False).returncode == 0)
        checks.check("mipsec check accepts the home agent config", ha.run([args.mipsec, "check", cfg_ha], check=False).returncode == 0)
        pha = ha.spawn([args.mipsec, "run", cfg_ha], log_name="mipsec-ha")
        pmn = mn.spawn([args.mipsec, "run", cfg_mn], log_name="mipsec-mn")
        pfa = fa.spawn([args.mipsec, "run", cfg_fa], log_name="mipsec-fa")
        lab.wait_for(lambda: node_status(ha, args.mipsec, f"{lab.dir}/ha.sock") and node_status(mn, args.mipsec, f"{lab.dir}/mn.sock"),
                     what="both nodes up")

        def mn_report():
            return stage_report(mn, args.mipsec, f"{lab.dir}/mn.sock", "mip.mobile_node")

        def ha_report():
            return stage_report(ha, args.mipsec, f"{lab.dir}/ha.sock", "mip.home_agent")

        def fa_report():
            return stage_report(fa, args.mipsec, f"{lab.dir}/fa.sock", "mip.foreign_agent")

        checks.check("at home: the mobile node knows it is home, without registering",
                     lab.wait_for(lambda: mn_report().get("state") == "at_home", timeout=10, what="at_home"),
                     json.dumps(mn_report()))

        # Traffic for the whole run: a TCP stream from the home address, and pings to it.
        stream = Stream(lab, cn, mn, HOME_ADDRESS, CN)
        pinger = cn.spawn(["ping", "-D", "-n", "-i", "0.1", "-W", "1", HOME_ADDRESS], log_name="ping")
        time.sleep(1.0)
        checks.check("at home: stream and ping flow directly", bool(stream.times()) and bool(ping_times(pinger.log_path)))

        def move(label, network, configure, expect):
            """Moves to `network`, lets `configure` set the address, checks `expect(report)`,
            and prints the timings."""
            t0 = net.move(network, configure)
            addressed = time.time() - t0
            try:
                lab.wait_for(lambda: expect(mn_report()), timeout=30, what=f"{label}: registration")
                registered = time.time() - t0
            except TimeoutError:
                registered = None
            rep = mn_report()
            checks.check(f"{label}: mobile node state", registered is not None, json.dumps(rep))
            try:
                lab.wait_for(lambda: first_after(ping_times(pinger.log_path), t0) is not None, timeout=20, what="echo reply")
            except TimeoutError:
                pass
            try:
                lab.wait_for(lambda: first_after([t for t, _ in stream.times()], t0) is not None, timeout=40,
                             what="stream bytes")
            except TimeoutError:
                pass
            ping_dt = first_after(ping_times(pinger.log_path), t0)
            tcp_dt = first_after([t for t, _ in stream.times()], t0)
            checks.check(f"{label}: pings to the home address answered again", ping_dt is not None)
            checks.check(f"{label}: the TCP stream goes on", tcp_dt is not None)
            fmt = lambda v: "n/a" if v is None else f"{v * 1000:.0f} ms"  # noqa: E731
            print(f"timing {label}: link change -> address configured {fmt(addressed)}, registered {fmt(registered)}, "
                  f"first echo reply {fmt(ping_dt)}, first TCP bytes at the correspondent {fmt(tcp_dt)}", flush=True)
            return rep

        def coa_in(prefix, mode):
            return lambda r: r.get("registered") and str(r.get("care_of_address", "")).startswith(prefix) and r.get("mode") == mode

        rep = move("home -> foreign agent", "fa", lambda: None, coa_in("198.51.100.1", "foreign_agent"))
        visitors = fa_report()
        checks.check("FA: the mobile node is on the foreign agent's visitor list",
                     any(v.get("home_address") == HOME_ADDRESS for v in visitors.get("visitors", [])), json.dumps(visitors))
        binding = ha_report()
        checks.check("FA: the home agent binds the home address to the FA's care-of address",
                     any(b.get("care_of_address") == "198.51.100.1" for b in binding.get("bindings", [])), json.dumps(binding))
        ha_mac, mn_mac = mac_of(ha, ha_home), mac_of(mn, "wlan0")
        checks.check("FA: on the home link the correspondent reaches the home address at the HA's MAC (proxy + gratuitous ARP)",
                     neighbour_mac(cn, HOME_ADDRESS) == ha_mac, f"{neighbour_mac(cn, HOME_ADDRESS)} vs HA {ha_mac}")
        addrs = mn.run(["ip", "-4", "-o", "addr", "show", "dev", "wlan0"], check=False).stdout
        checks.check("FA: the mobile node has no address of its own on the foreign link", addrs.strip() == "", addrs)
        time.sleep(1.5)
        counters = visitors.get("counters", {})
        visitors = fa_report()
        checks.check("FA: the FA reverse-tunnels the visitor's traffic and delivers the tunnelled traffic",
                     visitors.get("counters", {}).get("reverse_tunnelled", 0) > counters.get("reverse_tunnelled", 0) and
                     visitors.get("counters", {}).get("delivered_to_visitors", 0) > 0, json.dumps(visitors.get("counters")))

        rep = move("foreign agent -> cafe (co-located, DHCP)", "cafe", net.dhcp, coa_in("192.0.2.", "ip_in_ip"))
        coa = rep.get("care_of_address", "")
        binding = ha_report()
        checks.check("cafe: the home agent binds the home address to the DHCP address, IP-in-IP",
                     any(b.get("care_of_address") == coa and b.get("mode") == "ip_in_ip" for b in binding.get("bindings", [])),
                     json.dumps(binding))
        route = ha.run(["ip", "route", "show", f"{HOME_ADDRESS}/32"], check=False).stdout
        checks.check("cafe: the home agent routes the home address into its TUN", "ha0" in route, route)

        rep = move("cafe -> behind NAT (RFC 3519)", "natbox", net.dhcp, coa_in("10.20.0.", "ip_in_udp"))
        binding = ha_report()
        checks.check("NAT: the home agent tunnels over UDP to the NAT's public address",
                     any(b.get("mode") == "ip_in_udp" and "198.18.3.2" in json.dumps(b) for b in binding.get("bindings", [])),
                     json.dumps(binding))
        before = mn_report().get("counters", {})
        time.sleep(1.0)
        after = mn_report().get("counters", {})
        checks.check("NAT: the mobile node's data goes both ways through the UDP tunnel",
                     after.get("tunnelled_out", 0) > before.get("tunnelled_out", 0) and
                     after.get("tunnelled_in", 0) > before.get("tunnelled_in", 0), f"{before} -> {after}")

        rep = move("NAT -> home (deregistration)", "home", static_home, lambda r: r.get("state") == "at_home")
        lab.wait_for(lambda: not ha_report().get("bindings"), timeout=10, what="binding removed") if ha_report() else None
        binding = ha_report()
        checks.check("home: the binding is gone at the home agent", not binding.get("bindings"), json.dumps(binding))
        route = ha.run(["ip", "route", "show", f"{HOME_ADDRESS}/32"], check=False).stdout
        checks.check("home: the host route into the TUN is gone", route.strip() == "", route)
        checks.check("home: the mobile node's gratuitous ARP points the correspondent back at its own MAC",
                     neighbour_mac(cn, HOME_ADDRESS) == mn_mac, f"{neighbour_mac(cn, HOME_ADDRESS)} vs MN {mn_mac}")

        # Finish the stream: every byte sent arrived, in order, once.
        ok, out = stream.finish()
        checks.check("the TCP stream survived all four moves intact", ok, out)
        lab.stop(pinger)
        for name, p in (("home agent", pha), ("mobile node", pmn), ("foreign agent", pfa)):
            c = lab.stop(p)
            checks.check(f"{name} exits 0 on SIGTERM", c == 0, f"exit {c}")
        if checks.failed:
            lab.dump_logs()
    return checks.finish()


if __name__ == "__main__":
    sys.exit(main())

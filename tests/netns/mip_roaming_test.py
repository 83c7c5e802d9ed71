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

HOME_ADDRESS = "10.1.0.77"
HA_PUBLIC = "198.18.1.2"
CN = "10.1.0.10"
KEY = "00112233445566778899aabbccddeeff"
FWMARK = 0x6d69

STREAM_SERVER = r"""
import hashlib, socket, sys, time
srv = socket.socket(); srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind((sys.argv[1], int(sys.argv[2]))); srv.listen(1)
print("listening", flush=True)
c, _ = srv.accept(); h = hashlib.sha256(); n = 0
log = open(sys.argv[3], "w")
while True:
    b = c.recv(65536)
    if not b: break
    h.update(b); n += len(b)
    print(f"{time.time():.6f} {n}", file=log, flush=True)
c.sendall(f"{n} {h.hexdigest()}".encode()); c.close()
"""

# Sends about 100 kB/s from the home address until the stop file appears, then checks the
# server's byte count and hash.
STREAM_CLIENT = r"""
import hashlib, os, socket, sys, time
s = socket.socket(); s.bind((sys.argv[1], 0)); s.settimeout(120)
s.connect((sys.argv[2], int(sys.argv[3])))
print("connected", flush=True)
h = hashlib.sha256(); n = 0
while not os.path.exists(sys.argv[4]):
    chunk = os.urandom(2048)
    s.sendall(chunk); h.update(chunk); n += len(chunk)
    time.sleep(0.02)
s.shutdown(socket.SHUT_WR)
reply = b""
while True:
    b = s.recv(4096)
    if not b: break
    reply += b
ok = reply.decode() == f"{n} {h.hexdigest()}"
print(f"{'match' if ok else 'MISMATCH'} {n} bytes; server said {reply.decode()!r}", flush=True)
sys.exit(0 if ok else 1)
"""

UDHCPC_SCRIPT = """#!/bin/sh
# udhcpc calls this with $1 = deconfig|bound|renew and the lease in the environment.
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


def status(host, mipsec, sock):
    r = host.run([mipsec, "status", "--socket", sock, "--json"], check=False)
    if r.returncode != 0:
        return None
    try:
        return json.loads(r.stdout)
    except ValueError:
        return None


def stage_report(st, name):
    """The report of the first stage called `name` in a node's status."""
    if not st:
        return None
    for node in st.get("nodes", []):
        for stage in node.get("pipeline", []):
            if stage.get("type") == name:
                return stage.get("state", {})
    return None


def bridge_port(air, bridge, port="ap"):
    """Moves the mobile node's access point port to `bridge`: wlan0 sees carrier down, then up."""
    air.run(["ip", "link", "set", port, "down"])
    air.run(["ip", "link", "set", port, "nomaster"])
    air.run(["ip", "link", "set", port, "master", bridge])
    air.run(["ip", "link", "set", port, "up"])


def mac_of(host, ifname):
    return open_json(host.run(["ip", "-j", "link", "show", ifname]).stdout)[0]["address"]


def neighbour_mac(host, address):
    entries = open_json(host.run(["ip", "-j", "neigh", "show", address]).stdout)
    return entries[0].get("lladdr") if entries else None


def open_json(text):
    return json.loads(text) if text.strip() else []


def first_after(times, t0):
    later = [t for t in times if t > t0]
    return min(later) - t0 if later else None


def ping_times(path):
    out = []
    try:
        with open(path) as f:
            for line in f:
                if line.startswith("[") and "bytes from" in line:
                    out.append(float(line[1:line.index("]")]))
    except OSError:
        pass
    return out


def stream_times(path):
    out = []
    try:
        with open(path) as f:
            for line in f:
                parts = line.split()
                if len(parts) == 2:
                    out.append((float(parts[0]), int(parts[1])))
    except OSError:
        pass
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--mipsec", required=True)
    args = ap.parse_args()
    require_root("the Mobile IP roaming test")
    checks = Checks()

    with Lab("mip-roaming") as lab:
        air, ha, cn, inet, cafe, mn, fa = (lab.host(r) for r in ("air", "ha", "cn", "inet", "cafe", "mn", "fa"))
        for h in (ha, inet, cafe):
            h.sysctl("net.ipv4.ip_forward", "1")
        # The internet core.
        lab.link(inet, "198.18.1.1/24", ha, f"{HA_PUBLIC}/24")
        lab.link(inet, "198.18.2.1/24", cafe, "198.18.2.2/24")
        ha.run(["ip", "route", "add", "default", "via", "198.18.1.1"])
        cafe.run(["ip", "route", "add", "default", "via", "198.18.2.1"])
        inet.run(["ip", "route", "add", "192.0.2.0/24", "via", "198.18.2.2"])
        lab.link(inet, "198.18.4.1/24", fa, "198.18.4.2/24")
        fa.run(["ip", "route", "add", "default", "via", "198.18.4.1"])
        inet.run(["ip", "route", "add", "198.51.100.0/24", "via", "198.18.4.2"])
        # The NAT box: inside 10.20.0.0/24 (on br_nat), outside on the internet.
        natbox = lab.host("natbox")
        natbox.sysctl("net.ipv4.ip_forward", "1")
        out_if, _ = lab.link(natbox, "198.18.3.2/24", inet, "198.18.3.1/24")
        natbox.run(["ip", "route", "add", "default", "via", "198.18.3.1"])
        natbox.run(["nft", "-f", "-"], input=f"""
table ip nat {{
  chain postrouting {{
    type nat hook postrouting priority srcnat; policy accept;
    oifname "{out_if}" masquerade
  }}
}}
""")
        # The radio: one bridge per network, routers' LAN ports on them.
        for br in ("br_home", "br_fa", "br_cafe", "br_nat"):
            air.run(["ip", "link", "add", br, "type", "bridge"])
            air.run(["ip", "link", "set", br, "up"])
        ha_home, p = lab.link(ha, "10.1.0.1/24", air, "")
        air.run(["ip", "link", "set", p, "master", "br_home"])
        _, p = lab.link(cn, f"{CN}/24", air, "")
        air.run(["ip", "link", "set", p, "master", "br_home"])
        cn.run(["ip", "route", "add", "default", "via", "10.1.0.1"])
        fa_lan, p = lab.link(fa, "198.51.100.1/24", air, "")
        air.run(["ip", "link", "set", p, "master", "br_fa"])
        cafe_lan, p = lab.link(cafe, "192.0.2.1/24", air, "")
        air.run(["ip", "link", "set", p, "master", "br_cafe"])
        nat_lan, p = lab.link(natbox, "10.20.0.1/24", air, "")
        air.run(["ip", "link", "set", p, "master", "br_nat"])
        wlan, p = lab.link(mn, "", air, "")
        mn.run(["ip", "link", "set", wlan, "name", "wlan0"])
        mn.run(["ip", "link", "set", "wlan0", "up"])
        air.run(["ip", "link", "set", p, "down"])
        air.run(["ip", "link", "set", p, "name", "ap"])
        bridge_port(air, "br_home")
        mn.run(["ip", "addr", "add", f"{HOME_ADDRESS}/24", "dev", "wlan0"])
        mn.run(["ip", "route", "add", "default", "via", "10.1.0.1", "dev", "wlan0"])

        # Real DHCP servers on the cafe and NAT networks.
        for host, lan, lo, hi, router in ((cafe, cafe_lan, "192.0.2.100", "192.0.2.150", "192.0.2.1"),
                                          (natbox, nat_lan, "10.20.0.100", "10.20.0.150", "10.20.0.1")):
            host.spawn(["dnsmasq", "--no-daemon", "--conf-file=/dev/null", "--port=0", f"--interface={lan}",
                        "--bind-interfaces", f"--dhcp-range={lo},{hi},255.255.255.0,10m", f"--dhcp-option=3,{router}",
                        "--dhcp-authoritative", f"--dhcp-leasefile={lab.dir}/{host.role}.leases", "--pid-file="],
                       log_name=f"dnsmasq-{host.role}")
        script = f"{lab.dir}/udhcpc.sh"
        with open(script, "w") as f:
            f.write(UDHCPC_SCRIPT)
        os.chmod(script, 0o755)

        cfg_mn, cfg_ha, cfg_fa = mn_config(lab), ha_config(lab, ha_home), fa_config(lab, fa_lan)
        checks.check("mipsec check accepts the foreign agent config", fa.run([args.mipsec, "check", cfg_fa], check=False).returncode == 0)
        checks.check("mipsec check accepts the mobile node config", mn.run([args.mipsec, "check", cfg_mn], check=False).returncode == 0)
        checks.check("mipsec check accepts the home agent config", ha.run([args.mipsec, "check", cfg_ha], check=False).returncode == 0)
        pha = ha.spawn([args.mipsec, "run", cfg_ha], log_name="mipsec-ha")
        pmn = mn.spawn([args.mipsec, "run", cfg_mn], log_name="mipsec-mn")
        pfa = fa.spawn([args.mipsec, "run", cfg_fa], log_name="mipsec-fa")
        lab.wait_for(lambda: status(ha, args.mipsec, f"{lab.dir}/ha.sock") and status(mn, args.mipsec, f"{lab.dir}/mn.sock"),
                     what="both nodes up")

        def mn_report():
            return stage_report(status(mn, args.mipsec, f"{lab.dir}/mn.sock"), "mip.mobile_node") or {}

        def ha_report():
            return stage_report(status(ha, args.mipsec, f"{lab.dir}/ha.sock"), "mip.home_agent") or {}

        checks.check("at home: the mobile node knows it is home, without registering",
                     lab.wait_for(lambda: mn_report().get("state") == "at_home", timeout=10, what="at_home"),
                     json.dumps(mn_report()))

        # Traffic for the whole run: a TCP stream from the home address, and pings to it.
        stream_log = f"{lab.dir}/stream.times"
        stop_file = f"{lab.dir}/stream.stop"
        srv = cn.spawn(["/usr/bin/python3", "-c", STREAM_SERVER, CN, "5001", stream_log], log_name="stream-server")
        lab.wait_for(lambda: "listening" in open(srv.log_path).read(), what="stream server")
        cli = mn.spawn(["/usr/bin/python3", "-c", STREAM_CLIENT, HOME_ADDRESS, CN, "5001", stop_file], log_name="stream-client")
        lab.wait_for(lambda: "connected" in open(cli.log_path).read(), what="stream connected at home")
        pinger = cn.spawn(["ping", "-D", "-n", "-i", "0.1", "-W", "1", HOME_ADDRESS], log_name="ping")
        time.sleep(1.0)
        checks.check("at home: stream and ping flow directly", bool(stream_times(stream_log)) and bool(ping_times(pinger.log_path)))

        def move(label, bridge, configure, expect):
            """Leaves the current network (DHCP release: addresses go), joins `bridge`, lets
            `configure` set the address, and checks `expect(report)`; prints the timings."""
            mn.run(["ip", "-4", "addr", "flush", "dev", "wlan0"])
            mn.run(["ip", "route", "flush", "dev", "wlan0"], check=False)
            t0 = time.time()
            bridge_port(air, bridge)
            configure()
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
                lab.wait_for(lambda: first_after([t for t, _ in stream_times(stream_log)], t0) is not None, timeout=40,
                             what="stream bytes")
            except TimeoutError:
                pass
            ping_dt = first_after(ping_times(pinger.log_path), t0)
            tcp_dt = first_after([t for t, _ in stream_times(stream_log)], t0)
            checks.check(f"{label}: pings to the home address answered again", ping_dt is not None)
            checks.check(f"{label}: the TCP stream goes on", tcp_dt is not None)
            fmt = lambda v: "n/a" if v is None else f"{v * 1000:.0f} ms"  # noqa: E731
            print(f"timing {label}: link change -> address configured {fmt(addressed)}, registered {fmt(registered)}, "
                  f"first echo reply {fmt(ping_dt)}, first TCP bytes at the correspondent {fmt(tcp_dt)}", flush=True)
            return rep

        def dhcp():
            mn.run(["busybox", "udhcpc", "-i", "wlan0", "-f", "-q", "-n", "-B", "-t", "5", "-T", "1", "-s", script], timeout=30)

        def static_home():
            mn.run(["ip", "addr", "add", f"{HOME_ADDRESS}/24", "dev", "wlan0"])
            # "dev": the home prefix is also routed into the TUN (table 100) for unmarked lookups,
            # so the gateway must be named on the link, as DHCP clients do.
            mn.run(["ip", "route", "replace", "default", "via", "10.1.0.1", "dev", "wlan0"])

        def coa_in(prefix, mode):
            return lambda r: r.get("registered") and str(r.get("care_of_address", "")).startswith(prefix) and r.get("mode") == mode

        def fa_report():
            return stage_report(status(fa, args.mipsec, f"{lab.dir}/fa.sock"), "mip.foreign_agent") or {}

        rep = move("home -> foreign agent", "br_fa", lambda: None, coa_in("198.51.100.1", "foreign_agent"))
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

        rep = move("foreign agent -> cafe (co-located, DHCP)", "br_cafe", dhcp, coa_in("192.0.2.", "ip_in_ip"))
        coa = rep.get("care_of_address", "")
        binding = ha_report()
        checks.check("cafe: the home agent binds the home address to the DHCP address, IP-in-IP",
                     any(b.get("care_of_address") == coa and b.get("mode") == "ip_in_ip" for b in binding.get("bindings", [])),
                     json.dumps(binding))
        route = ha.run(["ip", "route", "show", f"{HOME_ADDRESS}/32"], check=False).stdout
        checks.check("cafe: the home agent routes the home address into its TUN", "ha0" in route, route)

        rep = move("cafe -> behind NAT (RFC 3519)", "br_nat", dhcp, coa_in("10.20.0.", "ip_in_udp"))
        binding = ha_report()
        checks.check("NAT: the home agent tunnels over UDP to the NAT's public address",
                     any(b.get("mode") == "ip_in_udp" and "198.18.3.2" in json.dumps(b) for b in binding.get("bindings", [])),
                     json.dumps(binding))
        time.sleep(12)  # idle keepalives go out every 10 s (keepalive_s)
        rep = mn_report()
        checks.check("NAT: keepalives sent and answered", rep.get("counters", {}).get("keepalive_replies", 0) >= 1 or
                     rep.get("counters", {}).get("tunnelled_out", 0) > 0, json.dumps(rep.get("counters")))

        rep = move("NAT -> home (deregistration)", "br_home", static_home, lambda r: r.get("state") == "at_home")
        lab.wait_for(lambda: not ha_report().get("bindings"), timeout=10, what="binding removed") if ha_report() else None
        binding = ha_report()
        checks.check("home: the binding is gone at the home agent", not binding.get("bindings"), json.dumps(binding))
        route = ha.run(["ip", "route", "show", f"{HOME_ADDRESS}/32"], check=False).stdout
        checks.check("home: the host route into the TUN is gone", route.strip() == "", route)
        checks.check("home: the mobile node's gratuitous ARP points the correspondent back at its own MAC",
                     neighbour_mac(cn, HOME_ADDRESS) == mn_mac, f"{neighbour_mac(cn, HOME_ADDRESS)} vs MN {mn_mac}")

        # Finish the stream: every byte sent arrived, in order, once.
        open(stop_file, "w").close()
        code = cli.wait(60)
        out = open(cli.log_path).read()
        checks.check("the TCP stream survived all four moves intact", code == 0 and "match" in out, out.strip())
        lab.stop(pinger)
        for name, p in (("home agent", pha), ("mobile node", pmn), ("foreign agent", pfa)):
            c = lab.stop(p)
            checks.check(f"{name} exits 0 on SIGTERM", c == 0, f"exit {c}")
        if checks.failed:
            lab.dump_logs()
    return checks.finish()


if __name__ == "__main__":
    sys.exit(main())

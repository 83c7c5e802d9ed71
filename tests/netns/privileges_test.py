# SPDX-License-Identifier: MIT
"""Least privilege: `mipsec run` nodes that drop to an unprivileged user after setup keep
working, including what needs a capability after the drop.

1. VPN: a mipsec gateway ("user": "nobody" in its config) with a LAN behind it, and a mipsec
   client (`--user nobody`). Both carry ESP on raw sockets, which need no CAP_NET_RAW once
   open, so both keep CAP_NET_ADMIN alone; the client installs its Mode Config address on
   its TUN after the drop (CAP_NET_ADMIN), and pings the LAN through the tunnel.
2. Mobile IP: a home agent with a home link and a mobile node following its interface
   (both as nobody) keep CAP_NET_ADMIN and CAP_NET_RAW. The mobile node moves from home to a
   foreign network and back: the home agent adds and removes the host route for the binding
   and turns on proxy ARP (CAP_NET_ADMIN), and both send gratuitous ARP (CAP_NET_RAW), all
   after the drop; a correspondent on the home link pings the home address throughout.
3. Started as nobody with ambient capabilities (systemd's AmbientCapabilities=), a node trims
   them to what it needs; started as root with only the systemd unit's CapabilityBoundingSet=,
   a node binds UDP 434 and 500 and drops to its "user".
4. Fail closed: a drop that cannot be done (no CAP_SETUID in the bounding set) stops the node
   with a clear message and a non-zero exit, and its TUN device is gone.

For each running node: /proc/PID/status shows Uid/Gid 65534, no supplementary groups,
CapEff = CapPrm = CapBnd = exactly the expected set, CapInh = CapAmb = 0, NoNewPrivs 1, and
root's `mipsec status` still answers on the control socket.
"""
import argparse
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "tools"))
from netns_lab import Checks, Lab, require_root  # noqa: E402
from roaming_lab import Roaming, node_status, stage_states, write_json  # noqa: E402

NOBODY = 65534
CAP_NET_ADMIN = 1 << 12
CAP_NET_RAW = 1 << 13
PSK = "privileges test pre-shared key"
KEY = "00112233445566778899aabbccddeeff"


def proc_status(pid):
    fields = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            fields[key] = value.strip()
    return fields


def check_dropped(checks, label, process, expected_caps):
    """Asserts the process runs as nobody with exactly `expected_caps`."""
    if process.poll() is not None:
        checks.check(f"{label}: still running after setup", False, f"exited with {process.returncode}")
        return
    with open(f"/proc/{process.pid}/comm") as f:
        comm = f.read().strip()
    st = proc_status(process.pid)
    ids = lambda key: [int(x) for x in st[key].split()]  # noqa: E731
    cap = lambda key: int(st[key], 16)  # noqa: E731
    checks.check(f"{label}: /proc/PID is mipsec itself", comm == "mipsec", comm)
    checks.check(f"{label}: Uid is nobody (real, effective, saved, fs)", ids("Uid") == [NOBODY] * 4, st["Uid"])
    checks.check(f"{label}: Gid is nogroup", ids("Gid") == [NOBODY] * 4, st["Gid"])
    checks.check(f"{label}: no supplementary groups", st.get("Groups", "") == "", st.get("Groups"))
    for key in ("CapEff", "CapPrm", "CapBnd"):
        checks.check(f"{label}: {key} is exactly {expected_caps:#x}", cap(key) == expected_caps, st[key])
    checks.check(f"{label}: CapInh and CapAmb are empty", cap("CapInh") == 0 and cap("CapAmb") == 0, f"{st['CapInh']} {st['CapAmb']}")
    checks.check(f"{label}: NoNewPrivs 1", st.get("NoNewPrivs") == "1", st.get("NoNewPrivs"))


def wait_up(lab, host, mipsec, sock, what):
    return lab.wait_for(lambda: node_status(host, mipsec, sock) is not None, timeout=15, what=f"{what} control socket")


def log_text(process):
    with open(process.log_path) as f:
        return f.read()


def vpn(args, checks, lab):
    gw, cli, lan = lab.host("gw"), lab.host("cli"), lab.host("lan")
    lab.link(gw, "198.51.100.5/24", cli, "198.51.100.10/24")
    lab.link(gw, "10.99.1.1/24", lan, "10.99.1.10/24")
    gw.sysctl("net.ipv4.ip_forward", "1")
    lan.run(["ip", "route", "add", "default", "via", "10.99.1.1"])
    cfg_gw = write_json(lab, "gw", {
        "name": "gw", "control_socket": f"{lab.dir}/gw.sock", "user": "nobody",
        "tun": {"name": "vpn0", "routes": ["10.99.100.0/24"]},
        "transport": {"local": "198.51.100.5", "udp_ports": [500, 4500], "raw_protocols": [50]},
        "pipeline": [{"type": "ipsec.vpn_gateway", "local": "198.51.100.5", "psk": PSK, "pool": "10.99.100.0/24",
                      "local_ts": ["10.99.1.0/24"], "esp_proposals": ["aes128gcm16"]}],
    })
    cfg_cli = write_json(lab, "cli", {
        "name": "cli", "control_socket": f"{lab.dir}/cli.sock",
        "tun": {"name": "vpn0", "routes": ["10.99.1.0/24"]},
        "transport": {"local": "198.51.100.10", "udp_ports": [500, 4500], "raw_protocols": [50]},
        "pipeline": [{"type": "ipsec.vpn_client", "local": "198.51.100.10", "gateway": "198.51.100.5", "psk": PSK,
                      "remote_ts": "10.99.1.0/24", "esp_proposals": ["aes128gcm16"]}],
    })
    os.chmod(cfg_gw, 0o600)
    os.chmod(cfg_cli, 0o600)
    r = gw.run([args.mipsec, "check", cfg_gw], check=False)
    checks.check("check names the account and the capabilities kept", "after setup: user nobody, group nogroup, capabilities cap_net_admin" in r.stdout, r.stdout + r.stderr)

    pgw = gw.spawn([args.mipsec, "run", cfg_gw], log_name="mipsec-gw")
    wait_up(lab, gw, args.mipsec, f"{lab.dir}/gw.sock", "gateway")
    pcli = cli.spawn([args.mipsec, "run", "--user", "nobody", cfg_cli], log_name="mipsec-cli")
    wait_up(lab, cli, args.mipsec, f"{lab.dir}/cli.sock", "client")

    def inner_address():
        st = stage_states(node_status(cli, args.mipsec, f"{lab.dir}/cli.sock"), "ipsec.vpn_client")
        value = st[0].get("inner_address") if st else None
        return value.split("/")[0] if value and value not in ("none", "0.0.0.0") else None

    try:
        address = lab.wait_for(inner_address, timeout=20, what="Mode Config address")
    except Exception as e:  # noqa: BLE001
        address = None
        print(e)
    checks.check("VPN client got a Mode Config address", address is not None, str(address))
    check_dropped(checks, "VPN gateway (config \"user\")", pgw, CAP_NET_ADMIN)
    check_dropped(checks, "VPN client (--user)", pcli, CAP_NET_ADMIN)
    on_tun = cli.run(["ip", "-4", "-o", "addr", "show", "dev", "vpn0"]).stdout
    checks.check("the Mode Config address was installed on the TUN after the drop (CAP_NET_ADMIN)", bool(address) and f"{address}/32" in on_tun, on_tun)
    ping = cli.run(["ping", "-c", "3", "-i", "0.2", "-W", "2", "10.99.1.10"], check=False)
    checks.check("traffic through the tunnel: ESP on a raw socket without CAP_NET_RAW", ping.returncode == 0, ping.stdout[-200:])
    for host, sock, name in ((gw, "gw.sock", "gateway"), (cli, "cli.sock", "client")):
        r = host.run([args.mipsec, "status", "--socket", f"{lab.dir}/{sock}"], check=False)
        checks.check(f"root's `mipsec status` answers the {name} after the drop", r.returncode == 0 and "ESP in" in r.stdout, r.stdout + r.stderr)
        checks.check(f"the {name}'s control socket stays root's, mode 0600",
                     (lambda s: s.st_uid == 0 and (s.st_mode & 0o777) == 0o600)(os.stat(f"{lab.dir}/{sock}")))
    for p, name in ((pgw, "gateway"), (pcli, "client")):
        text = log_text(p)
        checks.check(f"the {name} logs the drop", "privileges dropped: uid 65534 gid 65534, capabilities cap_net_admin, no_new_privs" in text, text[-600:])
        checks.check(f"the {name} logged no failure", " E " not in text and "cannot" not in text, text[-600:])
    rc_cli, rc_gw = lab.stop(pcli), lab.stop(pgw)
    checks.check("both stop cleanly on SIGTERM as nobody", rc_cli == 0 and rc_gw == 0, f"client {rc_cli}, gateway {rc_gw}")


def mobile_ip(args, checks, lab):
    home_address, ha_public, cn_address = "10.1.0.77", "198.18.1.2", "10.1.0.10"
    mn = lab.host("mn")
    net = Roaming(lab, mn)
    ha, cn = lab.host("ha"), lab.host("cn")
    ha.sysctl("net.ipv4.ip_forward", "1")
    net.public(ha, 1, ha_public)
    ha_home = net.attach(ha, "10.1.0.1/24", "home")
    net.attach(cn, f"{cn_address}/24", "home")
    cn.run(["ip", "route", "add", "default", "via", "10.1.0.1"])
    net.access("cafe", 2, "192.0.2.1/24", ("192.0.2.100", "192.0.2.150"))

    def static_home():
        mn.run(["ip", "addr", "add", f"{home_address}/24", "dev", "wlan0"])
        mn.run(["ip", "route", "replace", "default", "via", "10.1.0.1", "dev", "wlan0"])

    net.move("home", static_home)
    cfg_ha = write_json(lab, "ha", {
        "name": "ha", "control_socket": f"{lab.dir}/ha.sock", "user": "nobody", "group": "nogroup",
        "tun": {"name": "ha0"},
        "transport": {"local": ha_public, "udp_ports": [434], "raw_protocols": [4]},
        "pipeline": [{"type": "mip.home_agent", "address": ha_public, "home_network": "10.1.0.0/24", "home_interface": ha_home,
                      "mobile_nodes": [{"home_address": home_address, "spi": 256, "key": KEY}]}],
    })
    cfg_mn = write_json(lab, "mn", {
        "name": "mn", "control_socket": f"{lab.dir}/mn.sock", "user": "nobody",
        "tun": {"name": "mip0", "address": f"{home_address}/32", "routes": ["10.1.0.0/24"], "route_table": 100},
        "transport": {"local": "0.0.0.0", "udp_ports": [434], "raw_protocols": [1, 4, 255], "fwmark": 0x6d69},
        "pipeline": [{"type": "mip.mobile_node", "home_address": home_address, "home_agent": ha_public, "spi": 256, "key": KEY,
                      "lifetime_s": 120, "care_of": "interface", "interface": "wlan0", "max_retransmit_s": 2}],
    })
    os.chmod(cfg_ha, 0o600)
    os.chmod(cfg_mn, 0o600)
    pha = ha.spawn([args.mipsec, "run", cfg_ha], log_name="mipsec-ha")
    wait_up(lab, ha, args.mipsec, f"{lab.dir}/ha.sock", "home agent")
    pmn = mn.spawn([args.mipsec, "run", cfg_mn], log_name="mipsec-mn")
    wait_up(lab, mn, args.mipsec, f"{lab.dir}/mn.sock", "mobile node")
    check_dropped(checks, "home agent", pha, CAP_NET_ADMIN | CAP_NET_RAW)
    check_dropped(checks, "mobile node", pmn, CAP_NET_ADMIN | CAP_NET_RAW)

    def ha_bindings():
        st = stage_states(node_status(ha, args.mipsec, f"{lab.dir}/ha.sock"), "mip.home_agent")
        return st[0].get("bindings", []) if st else []

    def binding_route():
        return f"{home_address} dev ha0" in ha.run(["ip", "route", "show", home_address]).stdout

    net.move("cafe")  # DHCP: a co-located care-of address
    try:
        lab.wait_for(lambda: binding_route() and ha_bindings(), timeout=20, what="binding and its host route")
    except Exception as e:  # noqa: BLE001
        print(e)
    checks.check("away: the home agent (as nobody) routed the home address into its TUN (CAP_NET_ADMIN)", binding_route(),
                 ha.run(["ip", "route"]).stdout)
    proxy = ha.run(["sysctl", "-n", f"net.ipv4.conf.{ha_home}.proxy_arp"]).stdout.strip()
    checks.check("away: proxy ARP turned on on the home link (a /proc/sys/net write under CAP_NET_ADMIN)", proxy == "1", proxy)
    ping = cn.run(["ping", "-c", "3", "-i", "0.3", "-W", "2", home_address], check=False)
    checks.check("away: the correspondent reaches the home address through the home agent", ping.returncode == 0, ping.stdout[-200:])

    net.move("home", static_home)
    try:
        lab.wait_for(lambda: not binding_route(), timeout=20, what="host route removed")
    except Exception as e:  # noqa: BLE001
        print(e)
    checks.check("home again: the home agent removed the host route (CAP_NET_ADMIN)", not binding_route(), ha.run(["ip", "route"]).stdout)
    ping = cn.run(["ping", "-c", "3", "-i", "0.3", "-W", "2", home_address], check=False)
    checks.check("home again: the correspondent reaches the mobile node on the link", ping.returncode == 0, ping.stdout[-200:])
    check_dropped(checks, "home agent after the moves", pha, CAP_NET_ADMIN | CAP_NET_RAW)
    for p, name in ((pha, "home agent"), (pmn, "mobile node")):
        text = log_text(p)
        checks.check(f"the {name} logged no failed gratuitous ARP, route or sysctl", "cannot" not in text, text[-800:])
    ra = ha.run([args.mipsec, "status", "--socket", f"{lab.dir}/ha.sock"], check=False)
    checks.check("root's `mipsec status` answers the home agent", ra.returncode == 0 and "mip.home_agent" in ra.stdout, ra.stdout + ra.stderr)
    lab.stop(pmn)
    lab.stop(pha)


def ambient_and_fail_closed(args, checks, lab):
    a, b = lab.host("amb"), lab.host("peer")
    lab.link(a, "192.0.2.1/24", b, "192.0.2.2/24")
    # A directory nobody owns, reachable through the lab's: config, control socket.
    own = f"{lab.dir}/nobody"
    os.makedirs(own)
    os.chown(own, NOBODY, NOBODY)
    os.chmod(lab.dir, 0o711)
    node = {
        "name": "amb", "control_socket": f"{own}/amb.sock",
        "tun": {"name": "ipip0", "address": "10.5.0.1/30"},
        "transport": {"local": "192.0.2.1", "raw_protocols": [4]},
        "pipeline": [{"type": "mip.ipip", "local": "192.0.2.1", "remote": "192.0.2.2"}],
    }
    cfg = f"{own}/amb.json"
    write_json(lab, "amb-src", node)
    os.rename(f"{lab.dir}/amb-src.json", cfg)
    os.chown(cfg, NOBODY, NOBODY)
    # systemd's User=nobody AmbientCapabilities=CAP_NET_ADMIN CAP_NET_RAW CAP_NET_BIND_SERVICE
    setpriv = ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups",
               "--inh-caps=+net_admin,+net_raw,+net_bind_service", "--ambient-caps=+net_admin,+net_raw,+net_bind_service"]
    p = a.spawn([*setpriv, args.mipsec, "run", cfg], log_name="mipsec-ambient")
    try:
        wait_up(lab, a, args.mipsec, f"{own}/amb.sock", "ambient node")
    except Exception as e:  # noqa: BLE001
        print(e)
    st = proc_status(p.pid) if p.poll() is None else {}
    checks.check("started as nobody with ambient capabilities: trimmed to CAP_NET_ADMIN, ambient cleared",
                 st and int(st["CapEff"], 16) == CAP_NET_ADMIN and int(st["CapPrm"], 16) == CAP_NET_ADMIN
                 and int(st["CapAmb"], 16) == 0 and int(st["CapInh"], 16) == 0 and st.get("NoNewPrivs") == "1",
                 str({k: st.get(k) for k in ("Uid", "CapEff", "CapPrm", "CapAmb", "NoNewPrivs")}))
    lab.stop(p)

    # The systemd unit's CapabilityBoundingSet= is enough to set up (UDP 434 and 500 need
    # CAP_NET_BIND_SERVICE even for root) and to drop to "user".
    unit = os.path.join(os.path.dirname(__file__), "..", "..", "tools", "package", "mipsec@.service")
    bounding = next(line.split("=", 1)[1].split() for line in open(unit) if line.startswith("CapabilityBoundingSet="))
    unit_node = dict(node, user="nobody", control_socket=f"{lab.dir}/unit.sock",
                     transport={"local": "192.0.2.1", "raw_protocols": [4], "udp_ports": [434, 500]})
    cfg_unit = write_json(lab, "unit", unit_node)
    os.chmod(cfg_unit, 0o600)
    caps = ",".join("+" + c.lower().removeprefix("cap_") for c in bounding)
    p = a.spawn(["setpriv", f"--bounding-set=-all,{caps}", args.mipsec, "run", cfg_unit], log_name="mipsec-unit-caps")
    try:
        wait_up(lab, a, args.mipsec, f"{lab.dir}/unit.sock", "node under the unit's bounding set")
    except Exception as e:  # noqa: BLE001
        print(e)
    st = proc_status(p.pid) if p.poll() is None else {}
    checks.check(f"under the unit's bounding set ({' '.join(bounding)}) a node binds UDP 434/500 and drops to nobody",
                 bool(st) and st["Uid"].split()[0] == str(NOBODY) and int(st["CapEff"], 16) == CAP_NET_ADMIN,
                 log_text(p)[-400:] + str({k: st.get(k) for k in ("Uid", "CapEff")}))
    lab.stop(p)

    # Fail closed: root without CAP_SETUID cannot become nobody; the node must not run on as root.
    node["user"] = "nobody"
    node["control_socket"] = f"{lab.dir}/fail.sock"
    cfg_fail = write_json(lab, "fail", node)
    os.chmod(cfg_fail, 0o600)
    r = a.run(["setpriv", "--bounding-set=-setuid", args.mipsec, "run", cfg_fail], check=False, timeout=20)
    checks.check("a drop that fails stops the node with exit 1", r.returncode == 1, f"exit {r.returncode}")
    checks.check("...saying why", "mipsec: cannot drop privileges, stopping: cannot switch to user nobody" in r.stderr, r.stderr[-400:])
    checks.check("...and its TUN device is gone", a.run(["ip", "link", "show", "ipip0"], check=False).returncode != 0)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--mipsec", required=True)
    args = ap.parse_args()
    require_root("the least-privilege test")
    checks = Checks()
    with Lab("privileges") as lab:
        vpn(args, checks, lab)
    with Lab("privileges-mip") as lab:
        mobile_ip(args, checks, lab)
    with Lab("privileges-ambient") as lab:
        ambient_and_fail_closed(args, checks, lab)
    return checks.finish()


if __name__ == "__main__":
    sys.exit(main())

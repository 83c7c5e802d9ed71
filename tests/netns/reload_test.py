# SPDX-License-Identifier: MIT
"""Reload (SIGHUP) with traffic running, nothing dropped.

Home agent: a `mipsec run` mobile node, away at a static care-of address, and a `mipsec run`
home agent; a correspondent on the home link pings the home address while the home agent's
file gains a second mobile node and a new max_lifetime_s and the home agent gets SIGHUP (no
echo lost), then the mobile node streams TCP to it across a second SIGHUP re-keying the other
mobile node (the stream intact); the binding untouched in status, the new mobile node
listed. Then a broken file and a file changing the TUN: both refused (status
says so, naming the JSON pointer), and the node keeps forwarding.

VPN gateway: the mipsec VPN client against the mipsec VPN gateway; while the LAN pings the
client's inner address the gateway's file gets a new PSK and a smaller pool that still holds
the client's lease, and SIGHUP (no echo lost); then the client streams TCP to the LAN across a
second SIGHUP adding an ESP proposal (intact); the CHILD_SA's SPIs and the client's inner
address unchanged in status.

Pings and the bulk stream cross separate reloads: a 200 Mbit/s stream fills the tunnel's
queues and costs pings of its own, which would say nothing about the reload.

    mn 198.18.0.2 (mip0 10.1.0.77/32) --- ha 198.18.0.1 | 10.1.0.1/24 home link --- cn 10.1.0.10
    cli 198.51.100.1 --- gw 198.51.100.2 | 10.99.1.1/24 --- lan 10.99.1.2
"""
import argparse
import json
import os
import signal
import socket
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "tools"))
from netns_lab import Checks, Lab, node_status, require_root, stage_states, tcp_stream  # noqa: E402

KEY = "00112233445566778899aabbccddeeff"
HOME_ADDRESS = "10.1.0.77"
FWMARK = 0x6d69
PSK = "lab-psk-0123456789"


def write(lab, name, cfg):
    path = f"{lab.dir}/{name}.json"
    with open(path, "w") as f:
        json.dump(cfg, f, indent=2)
    os.chmod(path, 0o600)
    return path


def full_status(host, mipsec, sock):
    r = host.run([mipsec, "status", "--socket", sock, "--json"], check=False)
    return json.loads(r.stdout) if r.returncode == 0 else None


def reload_and_wait(lab, host, proc, mipsec, sock, requested):
    """SIGHUP to the node (by the PID we started), then its status once the reload is counted."""
    os.kill(proc.pid, signal.SIGHUP)
    return lab.wait_for(lambda: (s := full_status(host, mipsec, sock)) and s["reload"]["requested"] >= requested and s,
                        timeout=10, what=f"reload #{requested} in status")


def ping_across(lab, pinger, target, during):
    """80 pings, 50 ms apart, with `during()` run after the first second; (ping output, its result)."""
    ping = pinger.spawn(["ping", "-c", "80", "-i", "0.05", "-W", "2", target], log_name=f"ping-{pinger.role}")
    time.sleep(1.0)
    value = during()
    ping.wait(30)
    return open(ping.log_path).read(), value


def stream_across(lab, server, client, address, during):
    """A 48 MiB TCP stream with `during()` run once it is under way; (ok, detail, its result)."""
    result = {}
    stream = threading.Thread(target=lambda: result.update(zip(("ok", "detail"), tcp_stream(server, client, address, 5001, 48 * 1024 * 1024, lab))))
    stream.start()
    time.sleep(0.8)  # the server is listening and the stream under way
    value = during()
    stream.join(120)
    return result.get("ok", False), result.get("detail", "stream did not finish"), value


def home_agent_case(checks, args):
    with Lab("reload-ha") as lab:
        mn, ha, cn = lab.host("mn"), lab.host("ha"), lab.host("cn")
        lab.link(mn, "198.18.0.2/24", ha, "198.18.0.1/24")
        home_if, _ = lab.link(ha, "10.1.0.1/24", cn, "10.1.0.10/24")
        ha.sysctl("net.ipv4.ip_forward", "1")
        ha_cfg = {
            "name": "ha", "control_socket": f"{lab.dir}/ha.sock", "log_level": "info",
            "tun": {"name": "ha0"},
            "transport": {"local": "198.18.0.1", "udp_ports": [434], "raw_protocols": [4]},
            "pipeline": [
                {"type": "mip.home_agent", "address": "198.18.0.1", "home_network": "10.1.0.0/24", "home_interface": home_if,
                 "mobile_nodes": [{"home_address": HOME_ADDRESS, "spi": 256, "key": KEY}]},
            ],
        }
        mn_cfg = {
            "name": "mn", "control_socket": f"{lab.dir}/mn.sock", "log_level": "info",
            "tun": {"name": "mip0", "address": f"{HOME_ADDRESS}/32", "routes": ["10.1.0.0/24"], "route_table": 100},
            "transport": {"local": "0.0.0.0", "udp_ports": [434], "raw_protocols": [4, 255], "fwmark": FWMARK},
            "pipeline": [
                {"type": "mip.mobile_node", "home_address": HOME_ADDRESS, "home_agent": "198.18.0.1", "spi": 256, "key": KEY,
                 "lifetime_s": 120, "care_of": "static", "care_of_address": "198.18.0.2", "max_retransmit_s": 4},
            ],
        }
        ha_path = write(lab, "ha", ha_cfg)
        write(lab, "mn", mn_cfg)
        # The systemd notify protocol, as systemd would listen with Type=notify.
        notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        notify.bind(f"{lab.dir}/notify.sock")
        env = dict(os.environ, NOTIFY_SOCKET=f"{lab.dir}/notify.sock")
        ha_proc = ha.spawn([args.mipsec, "run", ha_path], log_name="mipsec-ha", env=env)
        lab.wait_for(lambda: os.path.exists(f"{lab.dir}/ha.sock"), what="the home agent's control socket")
        mn.spawn([args.mipsec, "run", f"{lab.dir}/mn.json"], log_name="mipsec-mn")
        sock = f"{lab.dir}/ha.sock"
        try:
            lab.wait_for(lambda: (s := stage_states(node_status(ha, args.mipsec, sock), "mip.home_agent")) and s[0].get("binding_count") == 1,
                         timeout=20, what="the mobile node's binding")
            lab.wait_for(lambda: cn.run(["ping", "-c", "1", "-W", "1", HOME_ADDRESS], check=False).returncode == 0,
                         timeout=10, what="the home address answering")
        except TimeoutError as e:
            checks.check("HA: mobile node registered and reachable", False, str(e))
            lab.dump_logs()
            return
        before = stage_states(node_status(ha, args.mipsec, sock), "mip.home_agent")[0]

        ha_cfg["pipeline"][0]["mobile_nodes"].append({"home_address": "10.1.0.78", "spi": 300, "key": "ffeeddccbbaa99887766554433221100"})
        ha_cfg["pipeline"][0]["max_lifetime_s"] = 900
        write(lab, "ha", ha_cfg)
        ping_out, st = ping_across(lab, cn, HOME_ADDRESS, lambda: reload_and_wait(lab, ha, ha_proc, args.mipsec, sock, 1))
        checks.check("HA: the reload adding a mobile node applied", st["reload"]["applied"] == 1 and st["reload"]["last"]["result"] == "applied",
                     json.dumps(st["reload"]))
        checks.check("HA: the log says what changed", "added MN 10.1.0.78" in st["reload"]["last"]["message"], st["reload"]["last"]["message"])
        checks.check("HA: 80 pings across the reload, none lost", " 0% packet loss" in ping_out and "80 received" in ping_out, ping_out[-300:])
        ha_cfg["pipeline"][0]["mobile_nodes"][1]["key"] = "0f1e2d3c4b5a69788796a5b4c3d2e1f0"
        write(lab, "ha", ha_cfg)
        ok, detail, st = stream_across(lab, cn, mn, "10.1.0.10", lambda: reload_and_wait(lab, ha, ha_proc, args.mipsec, sock, 2))
        checks.check("HA: the reload re-keying the other mobile node applied", st["reload"]["applied"] == 2 and "re-keyed 10.1.0.78" in st["reload"]["last"]["message"],
                     json.dumps(st["reload"]))
        checks.check(f"HA: 48 MiB TCP stream across the reload intact ({detail})", ok, detail)
        after = stage_states(node_status(ha, args.mipsec, sock), "mip.home_agent")[0]
        b0, b1 = before["bindings"][0], after["bindings"][0]
        checks.check("HA: the binding is untouched (care-of, mode, lifetime granted)",
                     after["binding_count"] == 1 and all(b0[k] == b1[k] for k in ("home_address", "care_of_address", "mode", "lifetime_granted_s")),
                     json.dumps([b0, b1]))
        checks.check("HA: two mobile nodes configured now", after.get("mobile_nodes") == 2, json.dumps(after)[:300])

        with open(ha_path, "w") as f:
            f.write('{"name": "ha", "tun": ')  # broken JSON
        st = reload_and_wait(lab, ha, ha_proc, args.mipsec, sock, 3)
        checks.check("HA: a broken file is refused with the config error",
                     st["reload"]["refused"] == 1 and "JSON syntax error" in st["reload"]["last"]["message"], json.dumps(st["reload"]))
        ha_cfg["tun"]["mtu"] = 1400
        write(lab, "ha", ha_cfg)
        st = reload_and_wait(lab, ha, ha_proc, args.mipsec, sock, 4)
        checks.check("HA: a TUN change is refused, naming /tun/mtu and 'restart to apply'",
                     st["reload"]["refused"] == 2 and "/tun/mtu added: restart to apply" in st["reload"]["last"]["message"], json.dumps(st["reload"]))
        checks.check("HA: the node is still running", ha_proc.poll() is None)
        r = cn.run(["ping", "-c", "5", "-i", "0.2", "-W", "2", HOME_ADDRESS], check=False)
        checks.check("HA: still forwarding after the refusals", " 0% packet loss" in r.stdout, r.stdout[-300:])
        r = ha.run([args.mipsec, "status", "--socket", sock], check=False)
        checks.check("HA: `mipsec status` shows the reloads", "reloads: 4 requested, 2 applied, 0 unchanged, 2 refused" in r.stdout, r.stdout[:400])
        notify.setblocking(False)
        states = []
        while True:
            try:
                states.append(notify.recv(4096).decode().split("\n")[0])
            except BlockingIOError:
                break
        notify.close()
        checks.check("HA: systemd hears READY=1, then RELOADING=1 and READY=1 around each of the 4 reloads",
                     states == ["READY=1"] + ["RELOADING=1", "READY=1"] * 4, str(states))


def gateway_case(checks, args):
    with Lab("reload-gw") as lab:
        cli, gw, lan = lab.host("cli"), lab.host("gw"), lab.host("lan")
        lab.link(cli, "198.51.100.1/24", gw, "198.51.100.2/24")
        lab.link(gw, "10.99.1.1/24", lan, "10.99.1.2/24")
        lan.run(["ip", "route", "add", "default", "via", "10.99.1.1"])
        gw.sysctl("net.ipv4.ip_forward", "1")
        gw_cfg = {
            "name": "gw", "control_socket": f"{lab.dir}/gw.sock", "log_level": "info",
            "tun": {"name": "vpn0", "routes": ["10.99.100.0/24"]},
            "transport": {"local": "198.51.100.2", "udp_ports": [500, 4500], "raw_protocols": [50]},
            "pipeline": [
                {"type": "ipsec.vpn_gateway", "local": "198.51.100.2", "psk": PSK, "local_id": "gw.lab.example",
                 "pool": "10.99.100.0/24", "local_ts": ["10.99.1.0/24"], "esp_proposals": ["aes128gcm16"]},
            ],
        }
        cli_cfg = {
            "name": "cli", "control_socket": f"{lab.dir}/cli.sock", "log_level": "info",
            "tun": {"name": "vpn0", "routes": ["10.99.1.0/24"]},
            "transport": {"local": "198.51.100.1", "udp_ports": [500, 4500], "raw_protocols": [50]},
            "pipeline": [
                {"type": "ipsec.vpn_client", "local": "198.51.100.1", "gateway": "198.51.100.2", "psk": PSK,
                 "local_id": "cli.lab.example", "remote_id": "gw.lab.example", "remote_ts": "10.99.1.0/24",
                 "esp_proposals": ["aes128gcm16"]},
            ],
        }
        gw_path = write(lab, "gw", gw_cfg)
        write(lab, "cli", cli_cfg)
        gw_proc = gw.spawn([args.mipsec, "run", gw_path], log_name="mipsec-gw")
        lab.wait_for(lambda: os.path.exists(f"{lab.dir}/gw.sock"), what="the gateway's control socket")
        cli.spawn([args.mipsec, "run", f"{lab.dir}/cli.json"], log_name="mipsec-cli")
        sock = f"{lab.dir}/gw.sock"
        try:
            state = lab.wait_for(lambda: (s := stage_states(node_status(cli, args.mipsec, f"{lab.dir}/cli.sock"), "ipsec.vpn_client"))
                                 and s[0].get("sa_installs", 0) >= 1 and s[0], timeout=30, what="the client's ESP SA")
        except TimeoutError as e:
            checks.check("gateway: tunnel up", False, str(e))
            lab.dump_logs()
            return
        vip = state["inner_address"].split("/")[0]
        before = stage_states(node_status(gw, args.mipsec, sock), "ipsec.vpn_gateway")[0]["clients"][0]

        gw_cfg["pipeline"][0]["psk"] = "a-new-psk-for-new-clients"
        gw_cfg["pipeline"][0]["pool"] = "10.99.100.0/25"
        write(lab, "gw", gw_cfg)
        ping_out, st = ping_across(lab, lan, vip, lambda: reload_and_wait(lab, gw, gw_proc, args.mipsec, sock, 1))
        checks.check("gateway: the reload (PSK, pool) applied", st["reload"]["applied"] == 1, json.dumps(st["reload"]))
        checks.check("gateway: 80 pings LAN -> client across the reload, none lost",
                     " 0% packet loss" in ping_out and "80 received" in ping_out, ping_out[-300:])
        gw_cfg["pipeline"][0]["esp_proposals"] = ["aes128gcm16", "aes256gcm16"]
        write(lab, "gw", gw_cfg)
        ok, detail, st = stream_across(lab, lan, cli, "10.99.1.2", lambda: reload_and_wait(lab, gw, gw_proc, args.mipsec, sock, 2))
        checks.check("gateway: the reload (proposals) applied", st["reload"]["applied"] == 2, json.dumps(st["reload"]))
        checks.check(f"gateway: 48 MiB TCP stream client -> LAN across the reload intact ({detail})", ok, detail)
        gw_state = stage_states(node_status(gw, args.mipsec, sock), "ipsec.vpn_gateway")[0]
        after = gw_state["clients"][0]
        spis = lambda c: [(x.get("spi_in"), x.get("spi_out")) for x in c.get("child_sas", [])]  # noqa: E731
        checks.check("gateway: the client's IKE SA and CHILD_SA SPIs are unchanged",
                     gw_state["clients_total"] == 1 and after["session"] == before["session"] and spis(after) == spis(before) and spis(after),
                     json.dumps([before, after])[:800])
        checks.check("gateway: the client keeps its inner address, inside the new pool",
                     after["inner_address"] == before["inner_address"] and gw_state.get("pool") == "10.99.100.0/25"
                     and gw_state.get("pool_leased_outside") == 0, json.dumps(gw_state)[:500])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--mipsec", required=True)
    args = ap.parse_args()
    require_root("the reload test")
    checks = Checks()
    home_agent_case(checks, args)
    gateway_case(checks, args)
    return checks.finish()


if __name__ == "__main__":
    sys.exit(main())

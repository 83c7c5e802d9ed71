# SPDX-License-Identifier: MIT
"""A foreign agent killed with SIGKILL and restarted is noticed by its visitor at once.

    cn 10.1.0.10 --- home link --- ha (198.18.1.2) --- inet --- fa (198.18.4.2; visitor link 198.51.100.1/24) --- mn

The mobile node registers through the foreign agent (FA care-of address, no address of its
own on the visitor link) with a 120 s lifetime, and the correspondent pings its home address
every 20 ms. The foreign agent is killed with SIGKILL and started again: it comes back with
an empty visitor list, so the home agent's tunnel leads nowhere until the mobile node
registers again. Its advertisement sequence numbers restart at 0, below the previous value
and below 256, which is how a visitor knows the agent rebooted (RFC 5944 §2.3.2, §3.7.1): the
mobile node must re-register at once, not when its lifetime runs low. The outage and the
time from restart to the first echo reply are printed.
"""
import argparse
import json
import os
import signal
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "tools"))
from netns_lab import Checks, Lab, require_root  # noqa: E402
from roaming_lab import Roaming, first_after, node_status, ping_times, stage_states, write_json  # noqa: E402

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
        "tun": {"name": "mip0", "address": f"{HOME_ADDRESS}/32", "routes": ["10.1.0.0/24"], "route_table": 100},
        "transport": {"local": "0.0.0.0", "udp_ports": [434], "raw_protocols": [1, 4, 255], "fwmark": FWMARK},
        "pipeline": [
            {"type": "mip.mobile_node", "home_address": HOME_ADDRESS, "home_agent": HA_PUBLIC, "spi": 256, "key": KEY,
             "lifetime_s": 120, "care_of": "foreign_agent", "interface": "wlan0", "max_retransmit_s": 4},
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
            {"type": "mip.home_agent", "address": HA_PUBLIC, "home_network": "10.1.0.0/24", "home_interface": home_if,
             "mobile_nodes": [{"home_address": HOME_ADDRESS, "spi": 256, "key": KEY}]},
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
            {"type": "mip.foreign_agent", "link_address": "198.51.100.1", "advertisement_interval_s": 1,
             "advertisement_lifetime_s": 9, "registration_lifetime_s": 600},
        ],
    })


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--mipsec", required=True)
    args = ap.parse_args()
    require_root("the foreign agent restart test")
    checks = Checks()

    with Lab("fa-restart") as lab:
        mn = lab.host("mn")
        net = Roaming(lab, mn)
        ha, cn, fa = lab.host("ha"), lab.host("cn"), lab.host("fa")
        ha.sysctl("net.ipv4.ip_forward", "1")
        net.public(ha, 1, HA_PUBLIC)
        ha_home = net.attach(ha, "10.1.0.1/24", "home")
        net.attach(cn, f"{CN}/24", "home")
        cn.run(["ip", "route", "add", "default", "via", "10.1.0.1"])
        net.public(fa, 4, "198.18.4.2")
        fa_lan = net.attach(fa, "198.51.100.1/24", "fa")
        net.inet.run(["ip", "route", "add", "198.51.100.0/24", "via", "198.18.4.2"])
        net.move("fa", lambda: None)

        cfg_mn, cfg_ha, cfg_fa = mn_config(lab), ha_config(lab, ha_home), fa_config(lab, fa_lan)
        pha = ha.spawn([args.mipsec, "run", cfg_ha], log_name="mipsec-ha")
        pfa = fa.spawn([args.mipsec, "run", cfg_fa], log_name="mipsec-fa")
        pmn = mn.spawn([args.mipsec, "run", cfg_mn], log_name="mipsec-mn")

        def mn_report():
            return (stage_states(node_status(mn, args.mipsec, f"{lab.dir}/mn.sock"), "mip.mobile_node") or [{}])[0]

        def fa_report():
            return (stage_states(node_status(fa, args.mipsec, f"{lab.dir}/fa.sock"), "mip.foreign_agent") or [{}])[0]

        registered = lambda: mn_report().get("registered") and mn_report().get("mode") == "foreign_agent"  # noqa: E731
        checks.check("the mobile node registers through the foreign agent",
                     bool(lab.wait_for(registered, timeout=20, what="registration via FA")), json.dumps(mn_report()))
        pinger = cn.spawn(["ping", "-D", "-n", "-i", "0.02", "-W", "1", HOME_ADDRESS], log_name="ping")
        lab.wait_for(lambda: len(ping_times(pinger.log_path)) >= 25, timeout=10, what="echo replies through HA and FA")
        time.sleep(2.5)  # a few advertisements, so the visitor has seen sequence numbers above 0
        requests_before = mn_report().get("counters", {}).get("requests_sent", 0)

        killed_at = time.time()
        os.kill(pfa.pid, signal.SIGKILL)
        pfa.wait(5)
        restarted_at = time.time()
        pfa2 = fa.spawn([args.mipsec, "run", cfg_fa], log_name="mipsec-fa-restarted")
        try:
            lab.wait_for(lambda: first_after(ping_times(pinger.log_path), restarted_at) is not None, timeout=20,
                         what="first echo reply after the FA restart")
        except TimeoutError:
            pass
        time.sleep(0.5)
        resumed = first_after(ping_times(pinger.log_path), restarted_at)
        times = ping_times(pinger.log_path)
        gaps = [b - a for a, b in zip(times, times[1:]) if b > killed_at]
        outage = max(gaps) if gaps else None
        fmt = lambda v: "n/a" if v is None else f"{v * 1000:.0f} ms"  # noqa: E731
        print(f"timing FA kill -9 + restart: outage (longest gap between echo replies) {fmt(outage)}, "
              f"restart -> first echo reply {fmt(resumed)}", flush=True)
        requests_after = mn_report().get("counters", {}).get("requests_sent", 0)
        checks.check("the mobile node re-registered after the reboot (sequence number rule)", requests_after > requests_before,
                     f"requests_sent {requests_before} -> {requests_after}")
        checks.check("the restarted foreign agent lists the visitor again",
                     any(v.get("home_address") == HOME_ADDRESS for v in fa_report().get("visitors", [])), json.dumps(fa_report()))
        # Advertisements every 1 s: the reboot shows within about one interval, far from the
        # 120 s lifetime a visitor would otherwise wait for.
        checks.check("forwarding resumes within 3 s of the restart", resumed is not None and resumed < 3.0, fmt(resumed))

        lab.stop(pinger)
        for name, p in (("home agent", pha), ("foreign agent", pfa2), ("mobile node", pmn)):
            c = lab.stop(p)
            checks.check(f"{name} exits 0 on SIGTERM", c == 0, f"exit {c}")
        if checks.failed:
            lab.dump_logs()
    return checks.finish()


if __name__ == "__main__":
    sys.exit(main())

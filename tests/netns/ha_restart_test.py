# SPDX-License-Identifier: MIT
"""A home agent killed with SIGKILL and restarted resumes forwarding from its state file.

    cn 10.1.0.10 --- home link 10.1.0.0/24 --- ha (10.1.0.1; 192.0.2.1) --- 192.0.2.0/24 --- mn (CoA 192.0.2.100)

The mobile node (home address 10.1.0.77 on its TUN, static co-located care-of address)
registers once with a 300 s lifetime; the correspondent pings the home address every 20 ms
through the home agent's IP-in-IP tunnel. Then the home agent is killed with SIGKILL, which
leaves its SQLite WAL unmerged and takes its TUN device and the host route with it, and is
started again at once. The restored binding must bring back the host route and proxy ARP,
and pings must flow again within one second of the restart with no new registration from the
mobile node (its requests_sent counter does not move). The outage (the longest gap between
echo replies) and the time from restart to the first reply are printed.

Also: a state file readable by others is refused with a clear message, and a state file
replaced by garbage is moved aside at start, counted, and the agent serves from empty.
"""
import argparse
import json
import os
import signal
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "tools"))
from netns_lab import Checks, Lab, node_status, require_root, stage_states  # noqa: E402

HOME_ADDRESS = "10.1.0.77"
HA = "192.0.2.1"
COA = "192.0.2.100"
CN = "10.1.0.10"
KEY = "00112233445566778899aabbccddeeff"
FWMARK = 0x6d69


def write_json(lab, name, obj):
    path = os.path.join(lab.dir, f"{name}.json")
    with open(path, "w") as f:
        json.dump(obj, f, indent=1)
    return path


def mn_config(lab):
    return write_json(lab, "mn", {
        "name": "mn",
        "control_socket": f"{lab.dir}/mn.sock",
        "log_level": "info",
        "tun": {"name": "mip0", "address": f"{HOME_ADDRESS}/32", "routes": ["10.1.0.0/24"], "route_table": 100},
        "transport": {"local": "0.0.0.0", "udp_ports": [434], "raw_protocols": [4], "fwmark": FWMARK},
        "pipeline": [
            {"type": "mip.mobile_node", "home_address": HOME_ADDRESS, "home_agent": HA, "spi": 256, "key": KEY,
             "lifetime_s": 300, "care_of": "static", "care_of_address": COA, "udp_tunnelling": "off"},
        ],
    })


def ha_config(lab, home_if, state_file, name="ha"):
    return write_json(lab, name, {
        "name": "ha",
        "control_socket": f"{lab.dir}/ha.sock",
        "log_level": "info",
        "tun": {"name": "ha0"},
        "transport": {"local": HA, "udp_ports": [434], "raw_protocols": [4]},
        "pipeline": [
            {"type": "mip.home_agent", "address": HA, "home_network": "10.1.0.0/24", "home_interface": home_if,
             "state_file": state_file,
             "mobile_nodes": [{"home_address": HOME_ADDRESS, "spi": 256, "key": KEY}]},
        ],
    })


def reply_times(log_path):
    """Monotonic-ish arrival times (ping -D wall clock) of every echo reply so far."""
    out = []
    try:
        with open(log_path) as f:
            for line in f:
                if "bytes from" in line and line.startswith("["):
                    out.append(float(line[1:line.index("]")]))
    except FileNotFoundError:
        pass
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--mipsec", required=True)
    args = ap.parse_args()
    require_root("the home agent restart test")
    checks = Checks()

    with Lab("ha-restart") as lab:
        mn, ha, cn = lab.host("mn"), lab.host("ha"), lab.host("cn")
        ha.sysctl("net.ipv4.ip_forward", "1")
        ha_home, _ = lab.link(ha, "10.1.0.1/24", cn, f"{CN}/24")
        lab.link(ha, f"{HA}/24", mn, f"{COA}/24")
        cn.run(["ip", "route", "add", "default", "via", "10.1.0.1"])

        state_dir = os.path.join(lab.dir, "state")
        os.mkdir(state_dir, 0o700)
        state_file = os.path.join(state_dir, "ha.db")
        cfg_ha, cfg_mn = ha_config(lab, ha_home, state_file), mn_config(lab)
        ha_sock, mn_sock = f"{lab.dir}/ha.sock", f"{lab.dir}/mn.sock"

        def ha_report():
            return (stage_states(node_status(ha, args.mipsec, ha_sock), "mip.home_agent") or [{}])[0]

        def mn_report():
            return (stage_states(node_status(mn, args.mipsec, mn_sock), "mip.mobile_node") or [{}])[0]

        # Configuration errors come first, each pointing at the field.
        missing_dir = ha_config(lab, ha_home, os.path.join(lab.dir, "no-such-dir", "ha.db"), name="ha-missing-dir")
        r = ha.run([args.mipsec, "check", missing_dir], check=False)
        checks.check("a state file in a missing directory is refused, pointing at the field",
                     r.returncode != 0 and "/pipeline/0/state_file" in r.stderr + r.stdout and "does not exist" in r.stderr + r.stdout,
                     (r.stdout + r.stderr).strip())
        open_file = os.path.join(state_dir, "open.db")
        with open(open_file, "w"):
            pass
        os.chmod(open_file, 0o644)
        r = ha.run([args.mipsec, "check", ha_config(lab, ha_home, open_file, name="ha-open")], check=False)
        checks.check("a state file readable by others is refused (chmod 600 advice)",
                     r.returncode != 0 and "readable by others" in r.stderr + r.stdout and "chmod 600" in r.stderr + r.stdout,
                     (r.stdout + r.stderr).strip())

        pha = ha.spawn([args.mipsec, "run", cfg_ha], log_name="mipsec-ha")
        pmn = mn.spawn([args.mipsec, "run", cfg_mn], log_name="mipsec-mn")
        lab.wait_for(lambda: mn_report().get("registered"), timeout=15, what="registration")
        checks.check("the state file is created 0600", (os.stat(state_file).st_mode & 0o777) == 0o600,
                     oct(os.stat(state_file).st_mode))

        pinger = cn.spawn(["ping", "-D", "-n", "-i", "0.02", "-W", "1", HOME_ADDRESS], log_name="ping")
        lab.wait_for(lambda: len(reply_times(pinger.log_path)) >= 25, timeout=10, what="echo replies through the HA")
        requests_before = mn_report().get("counters", {}).get("requests_sent")
        checks.check("pings reach the mobile node through the home agent", requests_before is not None)

        # SIGKILL: no shutdown path runs, the WAL is not checkpointed, the TUN and its routes vanish.
        killed_at = time.time()
        os.kill(pha.pid, signal.SIGKILL)
        pha.wait(5)
        route = ha.run(["ip", "route", "show", f"{HOME_ADDRESS}/32"], check=False).stdout
        checks.check("the killed home agent's host route went with its TUN", route.strip() == "", route)
        time.sleep(0.2)  # a visible outage, as a supervisor's restart delay would make

        restarted_at = time.time()
        pha2 = ha.spawn([args.mipsec, "run", cfg_ha], log_name="mipsec-ha-restarted")
        try:
            lab.wait_for(lambda: any(t > restarted_at for t in reply_times(pinger.log_path)), timeout=5, what="first reply after restart")
        except TimeoutError:
            pass
        time.sleep(0.5)
        after = [t for t in reply_times(pinger.log_path) if t > restarted_at]
        resumed = (after[0] - restarted_at) if after else None
        times = reply_times(pinger.log_path)
        gaps = [b - a for a, b in zip(times, times[1:]) if b > killed_at - 1]
        outage = max(gaps) if gaps else None
        fmt = lambda v: "n/a" if v is None else f"{v * 1000:.0f} ms"  # noqa: E731
        print(f"timing HA kill -9 + restart: outage (longest gap between echo replies) {fmt(outage)}, "
              f"restart -> first echo reply {fmt(resumed)}", flush=True)
        checks.check("forwarding resumes within 1 s of the restart", resumed is not None and resumed < 1.0, fmt(resumed))

        rep = ha_report()
        counters = rep.get("counters", {})
        checks.check("the restarted home agent restored the binding from its state file",
                     counters.get("bindings_restored") == 1 and any(b.get("care_of_address") == COA for b in rep.get("bindings", [])),
                     json.dumps(rep))
        checks.check("the restarted home agent received no registration request", counters.get("requests") == 0, json.dumps(counters))
        left = next((b.get("lifetime_left_s") for b in rep.get("bindings", [])), None)
        checks.check("the restored binding keeps what was left of its lifetime, not a fresh one",
                     left is not None and 250 <= left < 300, f"lifetime_left_s {left}")
        checks.check("the mobile node sent no new registration", mn_report().get("counters", {}).get("requests_sent") == requests_before,
                     f"{requests_before} -> {mn_report().get('counters', {}).get('requests_sent')}")
        route = ha.run(["ip", "route", "show", f"{HOME_ADDRESS}/32"], check=False).stdout
        checks.check("the host route into the new TUN is back", "ha0" in route, route)

        # A state file replaced by garbage: moved aside, counted, started empty, never a crash.
        lab.stop(pha2)
        for suffix in ("", "-wal", "-shm"):
            if os.path.exists(state_file + suffix):
                os.unlink(state_file + suffix)
        fd = os.open(state_file, os.O_WRONLY | os.O_CREAT, 0o600)
        os.write(fd, b"this is not a SQLite database" * 100)
        os.close(fd)
        pha3 = ha.spawn([args.mipsec, "run", cfg_ha], log_name="mipsec-ha-corrupt")
        lab.wait_for(lambda: node_status(ha, args.mipsec, ha_sock), timeout=10, what="home agent up on a corrupt file")
        counters = ha_report().get("counters", {})
        aside = [n for n in os.listdir(state_dir) if n.startswith("ha.db.corrupt-")]
        checks.check("a corrupt state file is counted and moved aside, and the agent runs",
                     counters.get("state_file_corrupt") == 1 and counters.get("bindings_restored") == 0 and bool(aside) and pha3.poll() is None,
                     f"{json.dumps(counters)} {aside}")
        log = open(pha3.log_path).read()
        checks.check("the corrupt state file is logged", "unreadable" in log, log[-2000:])

        lab.stop(pinger)
        for name, p in (("home agent", pha3), ("mobile node", pmn)):
            c = lab.stop(p)
            checks.check(f"{name} exits 0 on SIGTERM", c == 0, f"exit {c}")
        if checks.failed:
            lab.dump_logs()
    return checks.finish()


if __name__ == "__main__":
    sys.exit(main())

# SPDX-License-Identifier: MIT
"""A VPN gateway killed with SIGKILL and started again: the client finds out by DPD (no
Delete ever comes), negotiates a new IKE SA with the new gateway process, asks for the inner
address it had and gets it back, and traffic flows again. Once with mipsec's gateway under the
whole RFC 5265 stack, once with an unmodified strongSwan gateway.

  mipsec gateway: tools/full_stack_lab.py (i-MIP in ESP in x-MIP, mipsec on every node). A
    paced ping from the intranet home address to an intranet correspondent runs throughout;
    after the restart the internal Mobile IP layer registers again with the internal home
    agent (its care-of address, the VPN inner address, went away with the dead IKE SA and came
    back with the new one).
  strongSwan gateway: cli (mipsec ipsec.vpn_client) --- gw (charon, kernel-libipsec) --- lan,
    a paced ping from the client's inner address to the LAN host.

The outage (the longest run of unanswered pings) is printed for each.
"""
import argparse
import json
import os
import re
import signal
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "tools"))
from full_stack_lab import CN, I_HOME, FullStack, first_event  # noqa: E402
from netns_lab import Checks, Lab, node_status, require_root, stage_states  # noqa: E402
from strongswan_lab import Charon, Child, Connection  # noqa: E402

PING_INTERVAL = 0.1
PSK = "lab-psk-0123456789"


def outage(ping_log: str) -> tuple[float, int, int]:
    """(longest run of unanswered pings in seconds, replies, highest sequence sent) from ping -D -O."""
    text = open(ping_log).read()
    answered = sorted({int(m) for m in re.findall(r"bytes from .*icmp_seq=(\d+)", text)})
    sent = max([int(m) for m in re.findall(r"icmp_seq=(\d+)", text)] or [0])
    longest, previous = 0, 0
    for seq in answered + [sent + 1]:
        longest = max(longest, seq - previous - 1)
        previous = seq
    return longest * PING_INTERVAL, len(answered), sent


def vpn_state(status) -> dict:
    return (stage_states(status, "ipsec.vpn_client") or [{}])[0]


def mipsec_gateway_case(checks: Checks, args) -> None:
    label = "mipsec gateway"
    with Lab("gwrestart") as lab:
        fs = FullStack(lab, args.mipsec, vpn={"dpd_delay_s": 2, "dpd_timeout_s": 10})
        fs.start_mobile_node()
        try:
            lab.wait_for(lambda: first_event(fs.events(), f"registered {I_HOME}"), timeout=60, what="i-MIP registered through the VPN")
        except TimeoutError as e:
            checks.check(f"{label}: the full stack comes up", False, str(e))
            lab.dump_logs()
            return
        before = vpn_state(fs.status("mn"))
        ping = fs.mn.spawn(["ping", "-D", "-O", "-n", "-I", I_HOME, "-i", str(PING_INTERVAL), "-W", "1", CN], log_name="ping-gw")
        time.sleep(2)
        t_kill = time.time()
        old = fs.procs["gw"]
        os.kill(old.pid, signal.SIGKILL)  # the PID we started (`ip netns exec` execs into mipsec)
        old.wait(5)
        os.remove(fs.socks["gw"])
        fs.procs["gw"] = fs.gw.spawn([args.mipsec, "run", "--log-format", "json", fs.cfg_paths["gw"]], log_name="mipsec-gw-restarted")
        t_up = time.time()
        try:
            t_reg = lab.wait_for(lambda: first_event(fs.events(), f"registered {I_HOME}", t_kill), timeout=90, interval=0.2,
                                 what="i-MIP registered again after the gateway restart")
        except TimeoutError:
            t_reg = None
        # A few seconds of traffic after the new tunnel, then the figures.
        time.sleep(3)
        lab.stop(ping)
        after = vpn_state(fs.status("mn"))
        longest, replies, sent = outage(ping.log_path)
        events = fs.events()
        t_failed = first_event(events, "failed (peer dead (DPD)", t_kill)
        t_ike = first_event(events, "IKE SA established", t_kill)
        checks.check(f"{label}: the client found the dead IKE SA by DPD "
                     f"({t_failed - t_kill:.1f} s after the kill)" if t_failed else f"{label}: the client found the dead IKE SA by DPD",
                     t_failed is not None, str(events[-15:]))
        checks.check(f"{label}: a new IKE SA with the restarted gateway", t_ike is not None and after.get("sessions_started", 0) == before.get("sessions_started", 0) + 1,
                     f"before {before.get('sessions_started')}, after {after.get('sessions_started')}")
        checks.check(f"{label}: the same inner address ({before.get('inner_address')}) from the new gateway",
                     after.get("inner_address") == before.get("inner_address") and before.get("inner_address") not in (None, "none"),
                     f"{before.get('inner_address')} -> {after.get('inner_address')}")
        checks.check(f"{label}: the internal Mobile IP layer registered again"
                     + (f" ({t_reg - t_up:.1f} s after the restart)" if t_reg else ""), t_reg is not None)
        checks.check(f"{label}: pings flow again (outage {longest:.1f} s, {replies} of {sent} answered)",
                     replies > 0 and sent - replies < sent and longest < 60 and outage_ended(ping.log_path), "")
        print(f"{label}: outage {longest:.1f} s (DPD: dpd_delay_s 2, dpd_timeout_s 10; then a new IKE SA and an i-MIP registration)", flush=True)
        if checks.failed:
            lab.dump_logs()


def outage_ended(ping_log: str) -> bool:
    """Whether the last few pings were answered (traffic flows at the end)."""
    text = open(ping_log).read()
    answered = {int(m) for m in re.findall(r"bytes from .*icmp_seq=(\d+)", text)}
    sent = max([int(m) for m in re.findall(r"icmp_seq=(\d+)", text)] or [0])
    return all(seq in answered for seq in range(max(1, sent - 15), sent - 5))


def strongswan_gateway_case(checks: Checks, args) -> None:
    label = "strongSwan gateway"
    with Lab("gwrestart-swan") as lab:
        cli, gw, lan = lab.host("cli"), lab.host("gw"), lab.host("lan")
        lab.link(cli, "198.51.100.2/24", gw, "198.51.100.1/24")
        lab.link(gw, "10.99.1.1/24", lan, "10.99.1.2/24")
        lan.run(["ip", "route", "add", "default", "via", "10.99.1.1"])
        gw.sysctl("net.ipv4.ip_forward", "1")
        conn = Connection("rw", "198.51.100.1", "%any", "gw.lab.example", "cli.lab.example", PSK, pools="vpn",
                          pool_addrs="10.99.100.0/24", children=[Child(local_ts="10.99.1.0/24", remote_ts="dynamic", esp_proposals="aes128gcm16")])
        charon = Charon(lab, gw, conn)
        sock = f"{lab.dir}/cli.sock"
        cfg = {
            "name": "cli", "control_socket": sock, "log_level": "info",
            "tun": {"name": "vpn0", "routes": ["10.99.1.0/24"]},
            "transport": {"local": "198.51.100.2", "udp_ports": [500, 4500]},
            "pipeline": [
                {"type": "ipsec.vpn_client", "local": "198.51.100.2", "gateway": "198.51.100.1", "psk": PSK,
                 "local_id": "cli.lab.example", "remote_id": "gw.lab.example", "remote_ts": "10.99.1.0/24",
                 "esp_proposals": ["aes128gcm16"], "dpd_delay_s": 2, "dpd_timeout_s": 10, "force_encapsulation": True},
                {"type": "nat.udp_encap", "keepalive_s": 20},
            ],
        }
        path = f"{lab.dir}/cli.json"
        with open(path, "w") as f:
            json.dump(cfg, f)
        cli.spawn([args.mipsec, "run", path], log_name="mipsec-cli")

        def state():
            return vpn_state(node_status(cli, args.mipsec, sock))

        try:
            lab.wait_for(lambda: state().get("sa_installs", 0) >= 1, timeout=30, what="the tunnel with strongSwan")
        except TimeoutError as e:
            checks.check(f"{label}: tunnel up", False, str(e))
            lab.dump_logs()
            return
        before = state()
        ping = cli.spawn(["ping", "-D", "-O", "-n", "-i", str(PING_INTERVAL), "-W", "1", "10.99.1.2"], log_name="ping-swan")
        time.sleep(2)
        os.kill(charon.proc.pid, signal.SIGKILL)  # charon itself: the launcher execs into it
        charon.proc.wait(5)
        for stale in ("charon.vici", "charon.pid"):
            try:
                os.remove(os.path.join(charon.run_dir, stale))
            except FileNotFoundError:
                pass
        charon = Charon(lab, gw, conn)
        try:
            lab.wait_for(lambda: state().get("sessions_started", 0) == before.get("sessions_started", 0) + 1
                         and state().get("inner_address", "none") != "none" and "INSTALLED" in charon.list_sas(),
                         timeout=90, interval=0.3, what="a new tunnel with the restarted strongSwan")
            reconnected = True
        except TimeoutError:
            reconnected = False
        time.sleep(3)
        lab.stop(ping)
        after = state()
        longest, replies, sent = outage(ping.log_path)
        checks.check(f"{label}: the client found the dead IKE SA by DPD and negotiated a new one with the restarted charon",
                     reconnected, f"{before} -> {after}\n{charon.list_sas()[-400:]}")
        checks.check(f"{label}: the same inner address ({before.get('inner_address')}) from strongSwan's fresh pool",
                     after.get("inner_address") == before.get("inner_address"), f"{before.get('inner_address')} -> {after.get('inner_address')}")
        checks.check(f"{label}: pings flow again (outage {longest:.1f} s, {replies} of {sent} answered)",
                     replies > 0 and outage_ended(ping.log_path), "")
        print(f"{label}: outage {longest:.1f} s", flush=True)
        if checks.failed:
            print(charon.log_text()[-3000:])
            lab.dump_logs()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--mipsec", required=True)
    args = ap.parse_args()
    require_root("the gateway restart test")
    checks = Checks()
    mipsec_gateway_case(checks, args)
    if os.path.exists("/usr/lib/ipsec/charon"):
        strongswan_gateway_case(checks, args)
    else:
        checks.check("strongSwan charon is installed (tools/install-deps.sh installs it)", False)
    return checks.finish()


if __name__ == "__main__":
    sys.exit(main())

# SPDX-License-Identifier: MIT
"""Interop (a), the part not yet on `mipsec lab` (the scenario strongswan-gateway has the rest):
a CHILD_SA rekey collision between the mipsec VPN client and an unmodified strongSwan 5.9
gateway (charon + kernel-libipsec, IKEv1), provoked by an nftables rule in the NAT that loses
strongSwan's first rekey QM1."""
import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "tools"))
from netns_lab import Checks, Lab, node_status, require_root  # noqa: E402
from strongswan_lab import Charon, Child, Connection  # noqa: E402

PSK = "lab-psk-0123456789"


def client_state(host, mipsec, sock):
    st = node_status(host, mipsec, sock)
    if not st:
        return None
    return next(s for s in st["pipeline"] if s["type"] == "ipsec.vpn_client").get("state")


# Drops the first Quick Mode message the gateway sends toward the client (UDP 4500: the 4-byte
# non-ESP marker — zero, never an ESP SPI — then the ISAKMP header with the exchange type at
# byte 18) until removed.
QM_DROP = """
table ip qmdrop {
  chain drop_qm1 {
    type filter hook forward priority -10;
    ip saddr 198.51.100.2 udp sport 4500 @th,64,32 0 @th,240,8 32 counter drop
  }
}
"""


def collision_case(checks, args, label):
    """Both sides rekey the CHILD_SA at once: strongSwan at 10 s, mipsec at 12 s, and the NAT
    loses strongSwan's first QM1, so its retransmission (4 s later) arrives just after mipsec's
    own rekey finished: a collision. mipsec keeps the SA with the higher lowest nonce and
    deletes the other; strongSwan (which never deletes rekeyed SAs itself) follows."""
    with Lab("swan-coll") as lab:
        cli, gw, lan = lab.host("cli"), lab.host("gw"), lab.host("lan")
        nat = lab.nat_box("nat", cli, ("10.0.0.1/24", "10.0.0.2/24"), gw, ("198.51.100.1/24", "198.51.100.2/24"))
        lab.link(gw, "10.99.1.1/24", lan, "10.99.1.2/24")
        lan.run(["ip", "route", "add", "default", "via", "10.99.1.1"])
        gw.sysctl("net.ipv4.ip_forward", "1")
        charon = Charon(lab, gw, Connection("rw", "198.51.100.2", "%any", "gw.lab.example", "cli.lab.example", PSK,
                                            pools="vpn", pool_addrs="10.99.100.0/24", dpd_delay="30s",
                                            children=[Child(local_ts="10.99.1.0/24", remote_ts="dynamic", esp_proposals="aes128gcm16",
                                                            rekey_time="10s", rand_time="0s", life_time="60s")]))
        sock = f"{lab.dir}/cli.sock"
        cfg = {
            "name": "cli", "control_socket": sock, "log_level": "info",
            "tun": {"name": "vpn0", "routes": ["10.99.1.0/24"]},
            "transport": {"local": "10.0.0.2", "udp_ports": [500, 4500]},
            "pipeline": [
                {"type": "ipsec.vpn_client", "local": "10.0.0.2", "gateway": "198.51.100.2", "psk": PSK,
                 "local_id": "cli.lab.example", "remote_id": "gw.lab.example", "remote_ts": "10.99.1.0/24",
                 "esp_proposals": ["aes128gcm16"], "child_rekey_s": 12},
                {"type": "nat.udp_encap", "keepalive_s": 20},
            ],
        }
        path = f"{lab.dir}/cli.json"
        with open(path, "w") as f:
            json.dump(cfg, f, indent=2)
        cli.spawn([args.mipsec, "run", path], log_name="mipsec-cli")
        try:
            lab.wait_for(lambda: (s := client_state(cli, args.mipsec, sock)) and s.get("sa_installs", 0) >= 1 and s,
                         timeout=30, what="the client's ESP SA")
        except TimeoutError as e:
            checks.check(f"{label}: tunnel up with strongSwan", False, str(e))
            lab.dump_logs()
            return
        nat.run(["nft", "-f", "-"], input=QM_DROP)
        ping = cli.spawn(["ping", "-D", "-O", "-c", "200", "-i", "0.2", "-W", "1", "10.99.1.2"], log_name="ping-collision")
        try:
            lab.wait_for(lambda: "packets 1 " in nat.run(["nft", "list", "table", "ip", "qmdrop"]).stdout, timeout=20,
                         interval=0.05, what="strongSwan's first rekey QM1 dropped")
            dropped = True
        except TimeoutError:
            dropped = False
        nat.run(["nft", "delete", "table", "ip", "qmdrop"])
        installed_samples, children_samples, total_samples = [], [], []
        while ping.poll() is None:
            installed_samples.append(charon.list_sas().count("INSTALLED"))
            st = client_state(cli, args.mipsec, sock) or {}
            children_samples.append(sum(c.get("state") == "installed" for c in st.get("child_sas", [])))
            total_samples.append(len(st.get("child_sas", [])))
            time.sleep(0.5)
        samples = (f"strongSwan INSTALLED {''.join(map(str, installed_samples))}, mipsec installed "
                   f"{''.join(map(str, children_samples))} (with rekeyed {''.join(map(str, total_samples))})")
        most_installed, most_children = max(installed_samples), max(children_samples)
        out = open(ping.log_path).read()
        st = client_state(cli, args.mipsec, sock) or {}
        collisions = st.get("ike_counters", {}).get("rekey_collisions", 0)
        checks.check(f"{label}: strongSwan's QM1 was lost once in the NAT", dropped)
        checks.check(f"{label}: mipsec detected the rekey collision", collisions >= 1, json.dumps(st)[:600])
        unanswered = "\n".join(line for line in out.splitlines() if "no answer" in line)
        checks.check(f"{label}: no ping lost across 40 s of rekeys both ways and the collision", " 0% packet loss" in out,
                     (unanswered or "") + "\n" + out[-300:])
        checks.check(f"{label}: SAs never pile up (at most {most_installed} INSTALLED at strongSwan, {most_children} at mipsec, "
                     f"{max(total_samples)} with rekeyed ones)", most_installed <= 2 and most_children <= 2 and max(total_samples) <= 3, samples)
        # Unresolved, both SAs would live on side by side, each rekeyed on its own. Resolved,
        # each side is back to one SA in use between rekeys (rekeyed ones linger a few seconds).
        checks.check(f"{label}: the duplicate is gone: one SA on each side between rekeys in the last 10 s",
                     min(installed_samples[-20:]) == 1 and min(children_samples[-20:]) == 1, samples)
        checks.check(f"{label}: the tunnel is still up with strongSwan", st.get("ike_state") == "established"
                     and "INSTALLED" in charon.list_sas(), charon.list_sas()[-600:])
        if checks.failed:
            print(charon.log_text()[-4000:])
            lab.dump_logs()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--mipsec", required=True)
    args = ap.parse_args()
    require_root("the strongSwan interop test")
    if not os.path.exists("/usr/lib/ipsec/charon"):
        print("FAIL strongSwan charon is not installed (tools/install-deps.sh installs it)")
        return 1
    checks = Checks()
    collision_case(checks, args, "rekey collision")
    return checks.finish()


if __name__ == "__main__":
    sys.exit(main())

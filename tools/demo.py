# SPDX-License-Identifier: MIT
"""The lab demo (README command 1): two hosts in network namespaces, each running `mipsec run`
with a TUN device; IP-in-IP (RFC 2003) between them carries ping and a TCP stream. Prints what
happened and each node's status. Everything it creates is removed when it ends."""
import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))
from netns_lab import Lab, require_root, tcp_stream  # noqa: E402


def write_config(lab, name, tun_addr, route, local, remote):
    cfg = {
        "name": name,
        "control_socket": f"{lab.dir}/{name}.sock",
        "tun": {"name": "mip0", "address": tun_addr, "routes": [route]},
        "transport": {"local": local, "raw_protocols": [4]},
        "pipeline": [
            {"type": "mip.ipip", "local": local, "remote": remote},
            {"type": "tap.pcap", "file": f"{lab.dir}/{name}-wire.pcap"},
        ],
    }
    path = f"{lab.dir}/{name}.json"
    with open(path, "w") as f:
        json.dump(cfg, f, indent=2)
    return path


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--mipsec", required=True)
    ap.add_argument("--keep", action="store_true", help="keep the lab directory (configs, logs, pcaps)")
    args = ap.parse_args()
    require_root("the lab demo")
    with Lab("demo", keep_dir=args.keep) as lab:
        print("== topology: host a (192.0.2.1) <-veth-> host b (192.0.2.2), one namespace each")
        a, b = lab.host("a"), lab.host("b")
        lab.link(a, "192.0.2.1/24", b, "192.0.2.2/24")
        cfg_a = write_config(lab, "a", "10.10.1.1/24", "10.10.2.0/24", "192.0.2.1", "192.0.2.2")
        cfg_b = write_config(lab, "b", "10.10.2.1/24", "10.10.1.0/24", "192.0.2.2", "192.0.2.1")
        print(f"== config of a ({cfg_a}):")
        print(open(cfg_a).read())
        print(a.run([args.mipsec, "check", cfg_a]).stdout, end="")
        a.spawn([args.mipsec, "run", cfg_a], log_name="mipsec-a")
        b.spawn([args.mipsec, "run", cfg_b], log_name="mipsec-b")
        lab.wait_for(lambda: a.run([args.mipsec, "status", "--socket", f"{lab.dir}/a.sock"], check=False).returncode == 0
                     and b.run([args.mipsec, "status", "--socket", f"{lab.dir}/b.sock"], check=False).returncode == 0,
                     what="both nodes")
        print("== ping 10.10.2.1 from a's TUN address 10.10.1.1 (through the IP-in-IP tunnel)")
        r = a.run(["ping", "-c", "4", "-i", "0.2", "-I", "10.10.1.1", "10.10.2.1"], check=False)
        print(r.stdout)
        print("== TCP: 8 MiB from a to b, checked with SHA-256 at the far end")
        ok, detail = tcp_stream(b, a, "10.10.2.1", 5001, 8 * 1024 * 1024, lab)
        print("  ", detail)
        print("== what the wire carried (tshark on a's outer tap):")
        os.system(f"tshark -r {lab.dir}/a-wire.pcap -c 4 2>/dev/null | sed 's/^/   /'")
        print("== mipsec status on a:")
        print(a.run([args.mipsec, "status", "--socket", f"{lab.dir}/a.sock"]).stdout)
        time.sleep(0.2)
        if args.keep:
            print(f"lab files kept in {lab.dir}")
        return 0 if ok and " 0% packet loss" in r.stdout else 1


if __name__ == "__main__":
    sys.exit(main())

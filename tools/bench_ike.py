# SPDX-License-Identifier: MIT
"""IKEv1 gateway benchmark: complete Main Mode + Quick Mode handshakes per second on one core,
mipsec's gateway (ipsec.vpn_gateway) beside strongSwan 5.9's charon, in the same run, with the
same proposal and the same load generator (`mipsec bench ike-load`, on the other core).

Each gateway runs pinned to CPU 1 in its own namespace; the figure is handshakes completed per
second of the gateway process's CPU time (user + system, from /proc), so it measures the
gateway's cost per handshake even when the load generator, not the gateway, sets the pace.
Usage: bench_ike.py --mipsec build/apps/mipsec/mipsec [--count N] [--proposal P] [--esp E]
"""
import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(__file__))
from lab.netns import Lab, require_root  # noqa: E402
from lab.strongswan import Charon, Child, Connection  # noqa: E402

PSK = "bench-psk-0123456789"
TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK  # utime + stime


def load(cli, args):
    r = cli.run(["taskset", "-c", "0", args.mipsec, "bench", "ike-load", "--local", "10.0.0.2", "--gateway", "10.0.0.1",
                 "--psk", PSK, "--remote-ts", "10.99.1.0/24", "--count", str(args.count), "--concurrency",
                 str(args.concurrency), "--timeout", "120"], check=False, timeout=180)
    return json.loads(r.stdout.strip().splitlines()[-1]) if r.stdout.strip() else {"completed": 0, "failed": -1, "seconds": 0}


def measure(lab, cli, pid, args):
    before = cpu_seconds(pid)
    result = load(cli, args)
    used = cpu_seconds(pid) - before
    result["gateway_cpu_s"] = used
    result["per_cpu_second"] = result["completed"] / used if used > 0 else 0.0
    return result


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mipsec", required=True)
    ap.add_argument("--count", type=int, default=300)
    ap.add_argument("--concurrency", type=int, default=32)
    ap.add_argument("--proposal", default="aes128-sha1-modp2048")
    ap.add_argument("--esp", default="aes128gcm16")
    args = ap.parse_args()
    require_root("the IKE benchmark")
    results = {}
    with Lab("bench-ike") as lab:
        cli, gw = lab.host("cli"), lab.host("gw")
        lab.link(cli, "10.0.0.2/24", gw, "10.0.0.1/24")
        # mipsec gateway
        cfg = {"name": "gw", "control_socket": f"{lab.dir}/gw.sock", "log_level": "warn",
               "tun": {"name": "vpn0"},
               "transport": {"local": "10.0.0.1", "udp_ports": [500, 4500]},
               "pipeline": [{"type": "ipsec.vpn_gateway", "local": "10.0.0.1", "psk": PSK, "local_id": "gw.lab.example",
                             "local_ts": ["10.99.1.0/24"], "ike_proposals": [args.proposal], "esp_proposals": [args.esp],
                             "max_half_open": 4096, "max_sessions": 1000000}],
               "pool": {"buffers": 8192}}
        with open(f"{lab.dir}/gw.json", "w") as f:
            json.dump(cfg, f)
        p = gw.spawn(["taskset", "-c", "1", args.mipsec, "run", f"{lab.dir}/gw.json"], log_name="mipsec-gw")
        lab.wait_for(lambda: gw.run([args.mipsec, "status", "--socket", f"{lab.dir}/gw.sock"], check=False).returncode == 0, what="gateway")
        results["mipsec"] = measure(lab, cli, p.pid, args)
        lab.stop(p)
        # strongSwan gateway, same proposal
        charon = Charon(lab, gw, Connection("rw", "10.0.0.1", "%any", "gw.lab.example", "bench.lab.example", PSK,
                                            proposals=args.proposal,
                                            children=[Child(local_ts="10.99.1.0/24", remote_ts="dynamic", esp_proposals=args.esp)]),
                        log_level=0, cpu=1)
        results["strongswan"] = measure(lab, cli, charon.proc.pid, args)
        charon.stop()
    m, s = results["mipsec"], results["strongswan"]
    print(f"IKEv1 Main Mode + Quick Mode, {args.proposal} / {args.esp}, PSK, NAT-T forced, {args.count} handshakes, {args.concurrency} in flight")
    print(f"{'gateway':<12} {'completed':>9} {'failed':>6} {'wall s':>7} {'gw cpu s':>8} {'handshakes/cpu-s':>17}")
    for name, r in (("mipsec", m), ("strongSwan", s)):
        print(f"{name:<12} {r['completed']:>9} {r['failed']:>6} {r['seconds']:>7.2f} {r['gateway_cpu_s']:>8.2f} {r['per_cpu_second']:>17.1f}")
    ratio = m["per_cpu_second"] / s["per_cpu_second"] if s["per_cpu_second"] else float("nan")
    print(f"ratio mipsec/strongSwan: {ratio:.2f}")
    return 0 if m["completed"] == args.count and s["completed"] == args.count else 1


if __name__ == "__main__":
    sys.exit(main())

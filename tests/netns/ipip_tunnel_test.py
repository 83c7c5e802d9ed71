# SPDX-License-Identifier: MIT
"""End to end: two `mipsec run` instances in two namespaces carry ping and a TCP stream
between their TUN devices over IP-in-IP (RFC 2003); pcap taps at both boundaries read cleanly
in tshark; status shows the counters; shutdown and refused starts leave nothing behind."""
import argparse
import json
import os
import subprocess
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "tools"))
from netns_lab import Checks, Lab, require_root, tcp_stream  # noqa: E402


def node_config(lab, name, tun_addr, route, local, remote):
    cfg = {
        "name": name,
        "control_socket": f"{lab.dir}/{name}.sock",
        "log_level": "info",
        "tun": {"name": "mip0", "address": tun_addr, "routes": [route]},
        "transport": {"local": local, "raw_protocols": [4]},
        "pipeline": [
            {"type": "tap.pcap", "file": f"{lab.dir}/{name}-inner.pcap"},
            {"type": "mip.ipip", "local": local, "remote": remote},
            {"type": "tap.pcap", "file": f"{lab.dir}/{name}-outer.pcap"},
        ],
    }
    path = f"{lab.dir}/{name}.json"
    with open(path, "w") as f:
        json.dump(cfg, f, indent=2)
    return path


def status(host, mipsec, sock):
    r = host.run([mipsec, "status", "--socket", sock, "--json"], check=False)
    return json.loads(r.stdout) if r.returncode == 0 else None


def tshark_problems(path):
    """Count malformed frames / error-level expert items tshark reports in a capture."""
    r = subprocess.run(["tshark", "-r", path, "-d", "tcp.port==5000-5100,data", "-Y", "_ws.malformed || _ws.expert.severity == error"],
                       capture_output=True, text=True)
    return r.returncode, r.stdout.strip(), r.stderr.strip()


def tshark_protocols(path):
    r = subprocess.run(["tshark", "-r", path, "-T", "fields", "-e", "frame.protocols"], capture_output=True, text=True)
    return set(r.stdout.split())


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--mipsec", required=True)
    args = ap.parse_args()
    require_root("the IP-in-IP namespace test")
    checks = Checks()
    with Lab("ipip") as lab:
        a, b = lab.host("a"), lab.host("b")
        lab.link(a, "192.0.2.1/24", b, "192.0.2.2/24")
        cfg_a = node_config(lab, "a", "10.10.1.1/24", "10.10.2.0/24", "192.0.2.1", "192.0.2.2")
        cfg_b = node_config(lab, "b", "10.10.2.1/24", "10.10.1.0/24", "192.0.2.2", "192.0.2.1")
        checks.check("mipsec check accepts the config", a.run([args.mipsec, "check", cfg_a], check=False).returncode == 0)
        pa = a.spawn([args.mipsec, "run", cfg_a], log_name="mipsec-a")
        pb = b.spawn([args.mipsec, "run", cfg_b], log_name="mipsec-b")
        lab.wait_for(lambda: status(a, args.mipsec, f"{lab.dir}/a.sock") and status(b, args.mipsec, f"{lab.dir}/b.sock"),
                     what="both instances to answer status")

        r = a.run(["ping", "-c", "5", "-i", "0.2", "-W", "2", "-I", "10.10.1.1", "10.10.2.1"], check=False)
        checks.check("ping a -> b through the tunnel: 5 of 5 replies", " 0% packet loss" in r.stdout, r.stdout[-300:])
        r = b.run(["ping", "-c", "3", "-i", "0.2", "-W", "2", "-s", "1300", "-M", "do", "-I", "10.10.2.1", "10.10.1.1"], check=False)
        checks.check("ping b -> a with 1300-byte payloads and DF: 3 of 3", " 0% packet loss" in r.stdout, r.stdout[-300:])

        ok, detail = tcp_stream(b, a, "10.10.2.1", 5001, 4 * 1024 * 1024, lab)
        print("    tcp a -> b:", detail)
        checks.check("a 4 MiB TCP stream a -> b arrives intact (SHA-256)", ok, detail)
        ok, detail = tcp_stream(a, b, "10.10.1.1", 5002, 1024 * 1024, lab)
        checks.check("a 1 MiB TCP stream b -> a arrives intact (SHA-256)", ok, detail)

        sa = status(a, args.mipsec, f"{lab.dir}/a.sock")
        ipip = sa["nodes"][0]["pipeline"][1]
        checks.check("status: the ipip stage encapsulated and decapsulated packets",
                     ipip["type"] == "mip.ipip" and ipip["encapsulated"] > 100 and ipip["decapsulated"] > 100, json.dumps(ipip))
        checks.check("status: no drops in the ipip stage", ipip["dropped"] == 0, json.dumps(ipip["drops"]))
        text = a.run([args.mipsec, "status", "--socket", f"{lab.dir}/a.sock"], check=False).stdout
        checks.check("status: human-readable output names the stages", "mip.ipip" in text and "tap.pcap" in text, text)

        # Stop a; the pcap files are complete (flushed per record).
        code = lab.stop(pa)
        checks.check("SIGTERM: mipsec exits 0", code == 0, f"exit {code}")
        gone = a.run(["ip", "link", "show", "mip0"], check=False).returncode != 0
        checks.check("after exit the TUN device is gone", gone)
        routes = a.run(["ip", "route", "show", "10.10.2.0/24"], check=False).stdout.strip()
        checks.check("after exit the route through it is gone", routes == "", routes)
        checks.check("after exit the control socket file is removed", not os.path.exists(f"{lab.dir}/a.sock"))

        for name in ("a-inner", "a-outer"):
            path = f"{lab.dir}/{name}.pcap"
            code, out, err = tshark_problems(path)
            checks.check(f"tshark reads {name}.pcap with no malformed packet", code == 0 and out == "", out + err)
        outer = tshark_protocols(f"{lab.dir}/a-outer.pcap")
        inner = tshark_protocols(f"{lab.dir}/a-inner.pcap")
        has = lambda caps, stack: any(p.endswith(stack) or (stack + ":") in p for p in caps)  # noqa: E731
        checks.check("outer capture is IP-in-IP carrying ICMP and TCP", has(outer, "raw:ip:ip:icmp") and has(outer, "raw:ip:ip:tcp"), str(outer))
        checks.check("inner capture is plain IPv4", has(inner, "raw:ip:icmp") and not any(":ip:ip" in p or "ipv6" in p for p in inner), str(inner))

        # Refused starts leave nothing half-configured.
        bad = json.load(open(cfg_a))
        bad["pipeline"][1]["type"] = "mip.nosuch"
        with open(f"{lab.dir}/bad.json", "w") as f:
            json.dump(bad, f)
        r = a.run([args.mipsec, "run", f"{lab.dir}/bad.json"], check=False)
        checks.check("unknown stage: exit 2 with the JSON pointer in the message",
                     r.returncode == 2 and "/pipeline/1/type" in r.stderr, r.stderr)
        bad = json.load(open(cfg_a))
        bad["transport"]["local"] = "198.51.100.99"  # not on any interface of this namespace
        with open(f"{lab.dir}/bad2.json", "w") as f:
            json.dump(bad, f)
        r = a.run([args.mipsec, "run", f"{lab.dir}/bad2.json"], check=False)
        checks.check("unbindable address: exit 1 with a hint", r.returncode == 1 and "198.51.100.99" in r.stderr, r.stderr)
        checks.check("... and no stray TUN device", a.run(["ip", "link", "show", "mip0"], check=False).returncode != 0)
        # The control socket is created after the TUN device is up: b's live socket makes a's
        # start fail late, which must still undo the TUN device and its route.
        bad = json.load(open(cfg_a))
        bad["control_socket"] = f"{lab.dir}/b.sock"
        with open(f"{lab.dir}/bad3.json", "w") as f:
            json.dump(bad, f)
        r = a.run([args.mipsec, "run", f"{lab.dir}/bad3.json"], check=False)
        checks.check("control socket in use by a live instance: exit 1", r.returncode == 1 and "in use" in r.stderr, r.stderr)
        checks.check("... and the TUN device it had opened is gone", a.run(["ip", "link", "show", "mip0"], check=False).returncode != 0)
        checks.check("... and b's socket still answers", status(b, args.mipsec, f"{lab.dir}/b.sock") is not None)
        lab.stop(pb)
        if checks.failed:
            lab.dump_logs()

    # The same tunnel from behind a NAT box (nftables masquerade): b sees the NAT's outside
    # address as the tunnel source, and replies reach a through the NAT's conntrack entry.
    with Lab("ipip-nat") as lab:
        a, b = lab.host("a"), lab.host("b")
        lab.nat_box("n", a, ("10.0.0.1/24", "10.0.0.2/24"), b, ("198.51.100.1/24", "198.51.100.2/24"))
        cfg_a = node_config(lab, "a", "10.10.1.1/24", "10.10.2.0/24", "10.0.0.2", "198.51.100.2")
        cfg_b = node_config(lab, "b", "10.10.2.1/24", "10.10.1.0/24", "198.51.100.2", "198.51.100.1")
        a.spawn([args.mipsec, "run", cfg_a], log_name="mipsec-a")
        b.spawn([args.mipsec, "run", cfg_b], log_name="mipsec-b")
        lab.wait_for(lambda: status(a, args.mipsec, f"{lab.dir}/a.sock") and status(b, args.mipsec, f"{lab.dir}/b.sock"),
                     what="both instances behind and beyond the NAT")
        r = a.run(["ping", "-c", "3", "-i", "0.2", "-W", "2", "-I", "10.10.1.1", "10.10.2.1"], check=False)
        checks.check("through a masquerading NAT: ping 3 of 3", " 0% packet loss" in r.stdout, r.stdout[-300:])
        ok, detail = tcp_stream(b, a, "10.10.2.1", 5003, 1024 * 1024, lab)
        checks.check("through a masquerading NAT: 1 MiB TCP intact", ok, detail)
        if checks.failed:
            lab.dump_logs()
    return checks.finish()


if __name__ == "__main__":
    sys.exit(main())

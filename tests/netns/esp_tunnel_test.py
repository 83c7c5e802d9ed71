# SPDX-License-Identifier: MIT
"""End to end: two `mipsec run` instances carry ping and TCP over ESP with manual SAs: raw ESP
(protocol 50) for several suites with and without ESN, UDP-encapsulated ESP (RFC 3948), and
UDP-encapsulated ESP through an nftables NAT box that rebinds the client's port; keepalives;
and a capture decrypted by tshark from mipsec's Wireshark key log."""
import argparse
import json
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "tools"))
from netns_lab import Checks, Lab, node_status, require_root, tcp_stream  # noqa: E402

KEY_LEN = {"aes128gcm16": 20, "aes256gcm16": 36, "chacha20poly1305": 36, "aes128-sha1": 36,
           "aes256-sha1": 52, "aes128-sha256": 48, "aes256-sha256": 64}


def sa_pair(suite, esn):
    k1, k2 = os.urandom(KEY_LEN[suite]).hex(), os.urandom(KEY_LEN[suite]).hex()
    a = {"suite": suite, "esn": esn, "inbound": {"spi": "0x1001", "key": k1}, "outbound": {"spi": "0x2002", "key": k2}}
    b = {"suite": suite, "esn": esn, "inbound": {"spi": "0x2002", "key": k2}, "outbound": {"spi": "0x1001", "key": k1}}
    return a, b


def write(lab, name, local, esp_local, esp_remote, tun_addr, route, sa, udp=None, extra_outer=(), key_log=None):
    pipeline = [{"type": "ipsec.esp_tunnel", "local": esp_local, "remote": esp_remote, "sa": sa,
                 "allowed_inner_source": route}]
    if key_log:
        pipeline[0]["key_log"] = key_log
    if udp is not None:
        # Manual SAs have no NAT detection: the ESP layer is told to ask for UDP.
        pipeline[0]["udp_encapsulation"] = True
        pipeline.append(dict({"type": "nat.udp_encap"}, **udp))
    pipeline += list(extra_outer)
    cfg = {"name": name, "control_socket": f"{lab.dir}/{name}.sock",
           "tun": {"name": "esp0", "address": tun_addr, "routes": [route]},
           "transport": {"local": local, "raw_protocols": [50]} if udp is None else {"local": local, "udp_ports": [4500]},
           "pipeline": pipeline}
    path = f"{lab.dir}/{name}.json"
    with open(path, "w") as f:
        json.dump(cfg, f, indent=2)
    return path


def stage(st, type_name):
    return next(s for s in st["pipeline"] if s["type"] == type_name)


def start_pair(lab, a, b, mipsec, cfg_a, cfg_b):
    a.spawn([mipsec, "run", cfg_a], log_name="mipsec-a")
    b.spawn([mipsec, "run", cfg_b], log_name="mipsec-b")
    lab.wait_for(lambda: node_status(a, mipsec, f"{lab.dir}/a.sock") and node_status(b, mipsec, f"{lab.dir}/b.sock"), what="both nodes")


def ping(host, src, dst, count=3, size=56):
    r = host.run(["ping", "-c", str(count), "-i", "0.2", "-W", "2", "-s", str(size), "-I", src, dst], check=False)
    return " 0% packet loss" in r.stdout, r.stdout[-200:]


def direct_case(checks, args, suite, esn, udp):
    label = f"{suite}{' esn' if esn else ''}{' udp' if udp else ' raw'}"
    with Lab("esp") as lab:
        a, b = lab.host("a"), lab.host("b")
        lab.link(a, "192.0.2.1/24", b, "192.0.2.2/24")
        sa_a, sa_b = sa_pair(suite, esn)
        cfg_a = write(lab, "a", "192.0.2.1", "192.0.2.1", "192.0.2.2", "10.20.1.1/24", "10.20.2.0/24", sa_a, udp)
        cfg_b = write(lab, "b", "192.0.2.2", "192.0.2.2", "192.0.2.1", "10.20.2.1/24", "10.20.1.0/24", sa_b, udp)
        start_pair(lab, a, b, args.mipsec, cfg_a, cfg_b)
        ok, out = ping(a, "10.20.1.1", "10.20.2.1", size=1200)
        checks.check(f"{label}: ping a -> b with 1200-byte payloads", ok, out)
        ok, detail = tcp_stream(b, a, "10.20.2.1", 5001, 2 * 1024 * 1024, lab)
        checks.check(f"{label}: 2 MiB TCP a -> b intact ({detail.split(' (')[-1].rstrip(')') if ok else detail})", ok, detail)
        ok, detail = tcp_stream(a, b, "10.20.1.1", 5002, 512 * 1024, lab)
        checks.check(f"{label}: 512 KiB TCP b -> a intact", ok, detail)
        st = node_status(a, args.mipsec, f"{lab.dir}/a.sock")
        esp = stage(st, "ipsec.esp_tunnel")
        checks.check(f"{label}: ESP stage dropped nothing", esp["dropped"] == 0 and esp["encapsulated"] > 100, json.dumps(esp)[:400])
        if checks.failed:
            lab.dump_logs()


def nat_case(checks, args):
    with Lab("esp-nat") as lab:
        a, b = lab.host("a"), lab.host("b")
        nat = lab.nat_box("n", a, ("10.0.0.1/24", "10.0.0.2/24"), b, ("198.51.100.1/24", "198.51.100.2/24"), random_ports=True)
        sa_a, sa_b = sa_pair("aes256gcm16", False)
        key_log = f"{lab.dir}/esp_sa"
        tap = [{"type": "tap.pcap", "file": f"{lab.dir}/b-wire.pcap"}]
        cfg_a = write(lab, "a", "10.0.0.2", "10.0.0.2", "198.51.100.2", "10.20.1.1/24", "10.20.2.0/24", sa_a,
                      {"keepalive_s": 1, "remote": "198.51.100.2"})
        # b learns the NAT's address and port from a's first authenticated packet.
        cfg_b = write(lab, "b", "198.51.100.2", "198.51.100.2", "198.51.100.1", "10.20.2.1/24", "10.20.1.0/24", sa_b,
                      {"keepalive_s": 0}, tap, key_log=key_log)
        start_pair(lab, a, b, args.mipsec, cfg_a, cfg_b)
        ok, out = ping(a, "10.20.1.1", "10.20.2.1")
        checks.check("through NAT: ping a -> b over UDP-encapsulated ESP", ok, out)
        ok, detail = tcp_stream(b, a, "10.20.2.1", 5003, 2 * 1024 * 1024, lab)
        checks.check("through NAT: 2 MiB TCP a -> b intact", ok, detail)
        before = stage(node_status(b, args.mipsec, f"{lab.dir}/b.sock"), "nat.udp_encap")["state"]
        lab.flush_nat(nat)  # the next packet from a gets a new random source port
        ok, out = ping(a, "10.20.1.1", "10.20.2.1", count=4)
        after = stage(node_status(b, args.mipsec, f"{lab.dir}/b.sock"), "nat.udp_encap")["state"]
        checks.check("NAT rebinding: traffic continues after the NAT forgot the mapping", ok, out)
        checks.check("NAT rebinding: b followed a's new port on an authenticated packet",
                     after["peer_floats"] > before["peer_floats"] and after["peer"] != before["peer"], f"{before} -> {after}")
        time.sleep(2.5)  # idle: a's 1-second keepalives must reach b through the NAT
        ka = stage(node_status(b, args.mipsec, f"{lab.dir}/b.sock"), "nat.udp_encap")["state"]["keepalives_received"]
        checks.check("keepalives: idle a sends 0xFF keepalives that reach b", ka >= 1, f"received {ka}")
        esp_b = stage(node_status(b, args.mipsec, f"{lab.dir}/b.sock"), "ipsec.esp_tunnel")
        checks.check("b's ESP stage dropped nothing", esp_b["dropped"] == 0, json.dumps(esp_b["drops"]))
        for p in list(lab._processes):
            lab.stop(p)

        # Decrypt b's wire capture with the keys mipsec logged (Wireshark esp_sa table).
        lines = open(key_log).read().splitlines()
        checks.check("key log holds both SAs", len(lines) == 2, "\n".join(lines))
        # Random TCP payloads shown as data: no heuristic dissector guesses at them.
        opts = ["-o", "esp.enable_encryption_decode:TRUE", "-o", "esp.enable_authentication_check:TRUE",
                "-d", "tcp.port==5000-5100,data"]
        for line in lines:
            opts += ["-o", f"uat:esp_sa:{line}"]
        pcap = f"{lab.dir}/b-wire.pcap"
        fields = ["-T", "fields", "-e", "frame.number"]
        total = len(subprocess.run(["tshark", "-r", pcap, "-Y", "esp", *fields], capture_output=True, text=True).stdout.split())
        inner = subprocess.run(["tshark", "-r", pcap, *opts, "-Y", "esp && (icmp || tcp)", *fields], capture_output=True, text=True)
        bad = subprocess.run(["tshark", "-r", pcap, *opts, "-Y", "_ws.malformed || _ws.expert.severity == error"],
                             capture_output=True, text=True)
        found = len(inner.stdout.split())
        checks.check(f"tshark decrypts every ESP packet of the capture to ICMP/TCP ({found} of {total})",
                     total > 100 and found == total, inner.stderr[-500:])
        checks.check("tshark finds no malformed packet with the keys applied", bad.stdout.strip() == "", bad.stdout[-500:])
        if checks.failed:
            lab.dump_logs()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--mipsec", required=True)
    args = ap.parse_args()
    require_root("the ESP namespace test")
    checks = Checks()
    for suite, esn, udp in (("aes128gcm16", False, None), ("aes256-sha256", True, None), ("chacha20poly1305", False, None),
                            ("aes128-sha1", False, {"keepalive_s": 0})):
        direct_case(checks, args, suite, esn, udp)
    nat_case(checks, args)
    return checks.finish()


if __name__ == "__main__":
    sys.exit(main())

# SPDX-License-Identifier: MIT
"""End to end, checked on the wire with tshark: outer header fields follow the inner packet on
the raw ESP path and on the UDP-encapsulated one (RFC 3948), where the kernel writes the
header. DSCP and ECN are copied outward (RFC 4301 §5.1.2.1, RFC 6040 §4.1) and so is DF;
ESP-in-UDP leaves with a zero UDP checksum (RFC 3948 §2.1); a CE mark the network puts on the
outer header reaches the inner packet (RFC 6040 §4.2), so inbound TOS is read, not made up; a
DF packet too big for the link is refused, counted as message_too_long, the path MTU it
taught shows in `mipsec status` and the TUN MTU shrinks to fit it, so the kernel tells inner
senders the MTU from then on (packets without DF are fragmented to fit)."""
import argparse
import json
import os
import re
import subprocess
import sys
import time
from collections import defaultdict

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "tools"))
from netns_lab import Checks, Lab, node_status, require_root  # noqa: E402

LINK_MTU = 1400  # the veth; the configs keep the default link_mtu 1500, so big DF packets are refused
# Inner ICMP payload sizes, far enough apart that ESP padding cannot make two outer lengths equal.
# (payload size, ping -Q TOS, ping -M, TOS expected on the outer header, DF expected)
FLOWS = [(100, 0xB9, "do", 0xB9, 1),    # EF + ECT(1), DF
         (300, 0x00, "dont", 0x00, 0),  # best effort, no DF
         (500, 0x48, "do", 0x48, 1),    # AF21, DF
         (700, 0x02, "dont", 0x02, 0)]  # ECT(0): b's prerouting marks the outer header CE
CE_FLOW_SIZE = 700
BIG = LINK_MTU - 20  # fits the TUN (MTU 1500 minus overhead) but not the link once wrapped


def config(lab, name, local, remote, tun_addr, route, sa, udp):
    pipeline = [{"type": "ipsec.esp_tunnel", "local": local, "remote": remote, "sa": sa, "allowed_inner_source": route}]
    if udp:
        pipeline[0]["udp_encapsulation"] = True  # manual SAs: no NAT detection decides it
        pipeline.append({"type": "nat.udp_encap", "keepalive_s": 0})
    cfg = {"name": name, "control_socket": f"{lab.dir}/{name}.sock",
           "tun": {"name": "esp0", "address": tun_addr, "routes": [route]},
           "transport": {"local": local, "udp_ports": [4500]} if udp else {"local": local, "raw_protocols": [50]},
           "pipeline": pipeline}
    path = f"{lab.dir}/{name}.json"
    with open(path, "w") as f:
        json.dump(cfg, f, indent=2)
    return path


def capture(lab, host, ifname, name):
    """Starts dumpcap on an interface; returns (process, pcap path) once it captures."""
    pcap = f"{lab.dir}/{name}.pcap"
    p = host.spawn(["dumpcap", "-q", "-i", ifname, "-w", pcap], log_name=f"dumpcap-{name}")
    lab.wait_for(lambda: os.path.exists(pcap) and os.path.getsize(pcap) > 0, what=f"capture on {ifname}")
    time.sleep(0.3)  # the file header is written just before the capture starts
    return p, pcap


def fields(pcap, display_filter, names):
    argv = ["tshark", "-r", pcap, "-Y", display_filter, "-T", "fields", "-E", "separator=,"]
    for n in names:
        argv += ["-e", n]
    out = subprocess.run(argv, capture_output=True, text=True).stdout
    return [line.split(",") for line in out.splitlines() if line]


def ping(host, size, tos, pmtu, count=3):
    r = host.run(["ping", "-c", str(count), "-i", "0.2", "-W", "2", "-s", str(size), "-Q", hex(tos), "-M", pmtu,
                  "-I", "10.20.1.1", "10.20.2.1"], check=False)
    return " 0% packet loss" in r.stdout, r.stdout[-200:]


def case(checks, args, udp):
    label = "udp" if udp else "raw"
    with Lab(f"wire-{label}") as lab:
        a, b = lab.host("a"), lab.host("b")
        _, b_if = lab.link(a, "192.0.2.1/24", b, "192.0.2.2/24", mtu=LINK_MTU)
        k1, k2 = os.urandom(20).hex(), os.urandom(20).hex()
        sa_a = {"suite": "aes128gcm16", "inbound": {"spi": "0x1001", "key": k1}, "outbound": {"spi": "0x2002", "key": k2}}
        sa_b = {"suite": "aes128gcm16", "inbound": {"spi": "0x2002", "key": k2}, "outbound": {"spi": "0x1001", "key": k1}}
        cfg_a = config(lab, "a", "192.0.2.1", "192.0.2.2", "10.20.1.1/24", "10.20.2.0/24", sa_a, udp)
        cfg_b = config(lab, "b", "192.0.2.2", "192.0.2.1", "10.20.2.1/24", "10.20.1.0/24", sa_b, udp)
        # The network marks congestion on ECN-capable outer packets before b receives them.
        b.run(["nft", "-f", "-"], input="table ip ce {\n chain pre {\n  type filter hook prerouting priority raw;\n"
                                        "  ip saddr 192.0.2.1 ip ecn ect0 ip ecn set ce\n }\n}\n")
        a.spawn([args.mipsec, "run", cfg_a], log_name="mipsec-a")
        b.spawn([args.mipsec, "run", cfg_b], log_name="mipsec-b")
        lab.wait_for(lambda: node_status(a, args.mipsec, f"{lab.dir}/a.sock") and node_status(b, args.mipsec, f"{lab.dir}/b.sock"),
                     what="both nodes")
        overhead = 1500 - node_status(a, args.mipsec, f"{lab.dir}/a.sock")["tun"]["mtu"]
        wire, wire_pcap = capture(lab, b, b_if, "wire")
        inner, inner_pcap = capture(lab, b, "esp0", "inner")

        for size, tos, pmtu, _, _ in FLOWS:
            ok, out = ping(a, size, tos, pmtu)
            checks.check(f"{label}: ping -s {size} -Q {hex(tos)} -M {pmtu} a -> b", ok, out)
        time.sleep(0.5)  # let dumpcap write the last packets before it stops
        lab.stop(wire)
        lab.stop(inner)
        # Bigger than the link with DF: refused by the kernel, counted, and the path MTU learned.
        ok, _ = ping(a, BIG, 0, "do", count=2)
        checks.check(f"{label}: a DF packet too big for the link does not get through", not ok)
        tun_mtu = node_status(a, args.mipsec, f"{lab.dir}/a.sock")["tun"]["mtu"]
        checks.check(f"{label}: a lowers its TUN MTU to the path MTU minus the stages' overhead", tun_mtu == LINK_MTU - overhead,
                     f"{tun_mtu}, want {LINK_MTU - overhead}")
        r = a.run(["ping", "-c", "1", "-W", "1", "-s", str(BIG), "-M", "do", "-I", "10.20.1.1", "10.20.2.1"], check=False)
        checks.check(f"{label}: the next big DF packet is refused by a's kernel at the TUN, which tells the sender the MTU",
                     f"mtu={LINK_MTU - overhead}" in r.stdout + r.stderr, (r.stdout + r.stderr)[-300:])
        # Without DF a's kernel fragments the inner packet to the lowered TUN MTU. b's first big
        # reply may teach b the path MTU the same way (a raw socket never fragments), so one
        # loss is allowed.
        _, out = ping(a, BIG, 0, "dont", count=3)
        received = re.search(r"(\d+) received", out)
        checks.check(f"{label}: a packet too big for the link without DF is fragmented and gets through",
                     received is not None and int(received.group(1)) >= 2, out)
        st = node_status(a, args.mipsec, f"{lab.dir}/a.sock")
        sock = st["transport"]["sockets"][0]
        too_long = sock.get("tx_failures", {}).get("message_too_long", 0)
        checks.check(f"{label}: a counts the refused sends as message_too_long", too_long >= 1 and sock["tx_errors"] == too_long,
                     json.dumps(sock))
        checks.check(f"{label}: a's status shows the path MTU to b", {"destination": "192.0.2.2", "mtu": LINK_MTU} in st["transport"].get("path_mtu", []),
                     json.dumps(st["transport"]))
        log = open(f"{lab.dir}/mipsec-a.log").read()
        checks.check(f"{label}: a logs the path MTU it learned (raised as PathMtuChanged)", f"path MTU to 192.0.2.2 is {LINK_MTU}" in log, log[-500:])
        text = a.run([args.mipsec, "status", "--socket", f"{lab.dir}/a.sock"], check=False).stdout
        checks.check(f"{label}: status text shows the reason and the path MTU",
                     "message_too_long=" in text and f"path MTU: 192.0.2.2 {LINK_MTU}" in text, text)

        # Outer packets a -> b, grouped by length: one group per ping flow, and each packet of a
        # group carries the inner packet's TOS and DF.
        outer_filter = "ip.src == 192.0.2.1 && esp && !(ip.flags.mf == 1 || ip.frag_offset > 0)"
        rows = fields(wire_pcap, outer_filter, ["ip.len", "ip.dsfield", "ip.flags.df"])
        by_len = defaultdict(set)
        for length, dsfield, df in rows:
            by_len[int(length)].add((int(dsfield, 0), int(df == "1" or df == "True")))
        lengths = sorted(by_len)
        checks.check(f"{label}: the capture holds one outer length per flow ({lengths})", len(lengths) == len(FLOWS), str(rows[:10]))
        for (size, _, _, want_tos, want_df), length in zip(FLOWS, lengths):
            checks.check(f"{label}: outer header of the -s {size} flow has TOS {hex(want_tos)} and DF {want_df}",
                         by_len[length] == {(want_tos, want_df)}, f"length {length}: {sorted(by_len[length])}")
        if udp:
            sums = fields(wire_pcap, "udp.port == 4500 && esp", ["udp.checksum"])
            checks.check(f"{label}: every ESP-in-UDP packet on the wire has a zero UDP checksum ({len(sums)} packets)",
                         len(sums) > 10 and all(int(s[0], 0) == 0 for s in sums), str(sums[:10]))
        # The CE mark added on the wire reaches the inner echo requests on b's TUN.
        ecn = fields(inner_pcap, f"icmp.type == 8 && ip.len == {CE_FLOW_SIZE + 28}", ["ip.dsfield.ecn"])
        checks.check(f"{label}: the outer CE mark reaches the inner packets (RFC 6040 §4.2)",
                     len(ecn) >= 2 and all(int(e[0], 0) == 3 for e in ecn), str(ecn))
        if checks.failed:
            lab.dump_logs()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--mipsec", required=True)
    args = ap.parse_args()
    require_root("the wire fields namespace test")
    checks = Checks()
    case(checks, args, udp=False)
    case(checks, args, udp=True)
    return checks.finish()


if __name__ == "__main__":
    sys.exit(main())

# SPDX-License-Identifier: MIT
"""NAT-T as negotiated: the mipsec VPN client (ipsec.vpn_client over nat.udp_encap) against the
mipsec VPN gateway (ipsec.vpn_gateway), once on a direct link and once through an nftables
masquerading NAT. The same client configuration, nat.udp_encap included, is used both times:
ESP goes in UDP 4500 exactly when IKE's NAT detection (RFC 3947) found the NAT, and as plain
ESP (IP protocol 50) otherwise — checked on both ends' status and on the client's wire capture
— and ping and a TCP stream cross the tunnel either way, with the default TUN offloads doing
their part (super-packets cut on the client, segments merged on the gateway)."""
import argparse
import json
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "tools"))
from netns_lab import Checks, Lab, node_status, pcap_packets, require_root, tcp_stream  # noqa: E402

PSK = "lab-psk-0123456789"


def stage_state(host, mipsec, sock, kind):
    st = node_status(host, mipsec, sock)
    if not st:
        return None
    return next(s for s in st["pipeline"] if s["type"] == kind).get("state")


def wire_kinds(pcap):
    """Counts the outer packets of a LINKTYPE_RAW capture: plain ESP, ESP in UDP 4500, IKE."""
    counts = {"esp": 0, "esp_in_udp": 0, "ike": 0, "other": 0}
    for pkt in pcap_packets(pcap):
        if len(pkt) < 20:
            continue
        ihl = (pkt[0] & 0x0F) * 4
        if pkt[9] == 50:
            counts["esp"] += 1
        elif pkt[9] == 17 and len(pkt) >= ihl + 8:
            ports = {int.from_bytes(pkt[ihl:ihl + 2], "big"), int.from_bytes(pkt[ihl + 2:ihl + 4], "big")}
            payload = pkt[ihl + 8:]
            if 500 in ports or (4500 in ports and payload[:4] == b"\0\0\0\0"):
                counts["ike"] += 1
            elif 4500 in ports and len(payload) > 1:
                counts["esp_in_udp"] += 1
            else:
                counts["other"] += 1
        else:
            counts["other"] += 1
    return counts


def run_case(checks, args, label, through_nat):
    with Lab("natt") as lab:
        cli, gw, lan = lab.host("cli"), lab.host("gw"), lab.host("lan")
        if through_nat:
            lab.nat_box("nat", cli, ("10.0.0.1/24", "10.0.0.2/24"), gw, ("198.51.100.1/24", "198.51.100.2/24"))
            cli_addr = "10.0.0.2"
        else:
            lab.link(cli, "198.51.100.1/24", gw, "198.51.100.2/24")
            cli_addr = "198.51.100.1"
        lab.link(gw, "10.99.1.1/24", lan, "10.99.1.2/24")
        lan.run(["ip", "route", "add", "default", "via", "10.99.1.1"])
        gw.sysctl("net.ipv4.ip_forward", "1")
        gw_cfg = {
            "name": "gw", "control_socket": f"{lab.dir}/gw.sock", "log_level": "info",
            "tun": {"name": "vpn0", "routes": ["10.99.100.0/24"]},
            "transport": {"local": "198.51.100.2", "udp_ports": [500, 4500], "raw_protocols": [50]},
            "pipeline": [
                {"type": "ipsec.vpn_gateway", "local": "198.51.100.2", "psk": PSK, "local_id": "gw.lab.example",
                 "pool": "10.99.100.0/24", "local_ts": ["10.99.1.0/24"], "ike_proposals": ["aes128-sha256-modp2048"],
                 "esp_proposals": ["aes128gcm16"]},
            ],
        }
        cli_cfg = {
            "name": "cli", "control_socket": f"{lab.dir}/cli.sock", "log_level": "info",
            "tun": {"name": "vpn0", "routes": ["10.99.1.0/24"]},
            "transport": {"local": cli_addr, "udp_ports": [500, 4500], "raw_protocols": [50]},
            "pipeline": [
                {"type": "ipsec.vpn_client", "local": cli_addr, "gateway": "198.51.100.2", "psk": PSK,
                 "local_id": "cli.lab.example", "remote_id": "gw.lab.example", "remote_ts": "10.99.1.0/24",
                 "ike_proposals": ["aes128-sha256-modp2048"], "esp_proposals": ["aes128gcm16"]},
                {"type": "nat.udp_encap", "keepalive_s": 20},
                {"type": "tap.pcap", "file": f"{lab.dir}/cli-wire.pcap"},
            ],
        }
        for name, cfg in (("gw", gw_cfg), ("cli", cli_cfg)):
            with open(f"{lab.dir}/{name}.json", "w") as f:
                json.dump(cfg, f, indent=2)
        gw.spawn([args.mipsec, "run", f"{lab.dir}/gw.json"], log_name="mipsec-gw")
        lab.wait_for(lambda: os.path.exists(f"{lab.dir}/gw.sock"), what="the gateway's control socket")
        cli.spawn([args.mipsec, "run", f"{lab.dir}/cli.json"], log_name="mipsec-cli")
        try:
            state = lab.wait_for(lambda: (s := stage_state(cli, args.mipsec, f"{lab.dir}/cli.sock", "ipsec.vpn_client"))
                                 and s.get("sa_installs", 0) >= 1 and s, timeout=30, what="the client's ESP SA")
        except TimeoutError as e:
            checks.check(f"{label}: tunnel up", False, str(e))
            lab.dump_logs()
            return
        child = (state.get("child_sas") or [{}])[0]
        checks.check(f"{label}: client's NAT detection says {'NAT' if through_nat else 'no NAT'}",
                     state.get("nat_detected") == through_nat, json.dumps(state)[:400])
        checks.check(f"{label}: the CHILD_SA is {'' if through_nat else 'not '}UDP-encapsulated",
                     child.get("udp_encapsulation") == through_nat, json.dumps(child)[:300])
        vip = state["inner_address"].split("/")[0]
        r = cli.run(["ping", "-c", "5", "-i", "0.2", "-W", "2", "10.99.1.2"], check=False)
        checks.check(f"{label}: ping client -> gateway LAN", " 0% packet loss" in r.stdout, r.stdout[-300:])
        r = lan.run(["ping", "-c", "5", "-i", "0.2", "-W", "2", vip], check=False)
        checks.check(f"{label}: ping gateway LAN -> client inner address", " 0% packet loss" in r.stdout, r.stdout[-300:])
        ok, detail = tcp_stream(lan, cli, "10.99.1.2", 5001, 1024 * 1024, lab)
        checks.check(f"{label}: 1 MiB TCP client -> LAN intact ({detail})", ok, detail)
        # TUN offloads are on by default: the client's kernel hands the stream over as TSO
        # super-packets, cut before ESP, and the gateway writes the decrypted segments merged.
        offload = {who: (node_status(host, args.mipsec, f"{lab.dir}/{who}.sock") or {}).get("tun", {}).get("offload", {})
                   for who, host in (("cli", cli), ("gw", gw))}
        for who in ("cli", "gw"):
            checks.check(f"{label}: {who}'s TUN has TSO and dropped nothing ({offload[who]})",
                         "tso4" in offload[who].get("granted", []) and not offload[who].get("drops"), json.dumps(offload[who]))
        checks.check(f"{label}: the client read super-packets and cut them ({offload['cli'].get('rx_super_packets')})",
                     offload["cli"].get("rx_super_packets", 0) > 0
                     and offload["cli"].get("rx_segments", 0) > offload["cli"].get("rx_super_packets", 0), json.dumps(offload["cli"]))
        checks.check(f"{label}: the gateway wrote merged segments ({offload['gw'].get('tx_super_packets')})",
                     offload["gw"].get("tx_super_packets", 0) > 0, json.dumps(offload["gw"]))
        gw_state = stage_state(gw, args.mipsec, f"{lab.dir}/gw.sock", "ipsec.vpn_gateway")
        gw_text = json.dumps(gw_state)
        checks.check(f"{label}: the gateway's CHILD_SA for the client is {'' if through_nat else 'not '}UDP-encapsulated",
                     f'"udp_encapsulation": {"true" if through_nat else "false"}' in gw_text, gw_text[:600])
        kinds = wire_kinds(f"{lab.dir}/cli-wire.pcap")
        if through_nat:
            checks.check(f"{label}: the client's wire carries ESP in UDP 4500 only ({kinds})",
                         kinds["esp_in_udp"] >= 10 and kinds["esp"] == 0, str(kinds))
        else:
            checks.check(f"{label}: the client's wire carries plain ESP only, nothing in UDP 4500 ({kinds})",
                         kinds["esp"] >= 10 and kinds["esp_in_udp"] == 0, str(kinds))
        st = node_status(cli, args.mipsec, f"{lab.dir}/cli.sock")
        udp_stage = next(s for s in st["pipeline"] if s["type"] == "nat.udp_encap")
        checks.check(f"{label}: nat.udp_encap {'wrapped' if through_nat else 'left alone'} the client's ESP",
                     (udp_stage["encapsulated"] > 0) == through_nat and udp_stage["dropped"] == 0, json.dumps(udp_stage)[:300])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--mipsec", required=True)
    args = ap.parse_args()
    require_root("the NAT-T negotiation test")
    checks = Checks()
    run_case(checks, args, "direct link", through_nat=False)
    run_case(checks, args, "through a NAT", through_nat=True)
    return checks.finish()


if __name__ == "__main__":
    sys.exit(main())

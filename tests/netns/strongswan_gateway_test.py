# SPDX-License-Identifier: MIT
"""Interop (b): unmodified strongSwan 5.9 clients (charon + kernel-libipsec, IKEv1, forced UDP
encapsulation, Mode Config) against the mipsec VPN gateway (ipsec.vpn_gateway). Two clients at
once — one behind an nftables NAT, one routed directly — each get their own inner address from
mipsec's pool, and ping and TCP flow both ways between them and a host on the gateway's LAN.
Run for an AEAD and a CBC+HMAC proposal set."""
import argparse
import json
import os
import re
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "tools"))
from netns_lab import Checks, Lab, node_status, pcap_packets, require_root, tcp_stream  # noqa: E402
from strongswan_lab import Charon, Child, Connection, wait_established  # noqa: E402

PSK = "lab-psk-0123456789"


def vip_of(charon):
    sas = charon.list_sas()
    m = re.search(r"local\s+(10\.99\.100\.\d+)/32", sas)
    return m.group(1) if m else None


FLOOD = r"""
import os, socket, struct, sys, time
mm1 = bytes.fromhex(sys.argv[1])
sources = sys.argv[2:]
socks = []
for a in sources:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind((a, 0))
    socks.append(s)
sent = 0
end = time.monotonic() + 2.0
while time.monotonic() < end:
    for s in socks:
        # A fresh initiator cookie each time: every datagram is a new Main Mode request.
        s.sendto(os.urandom(8) + mm1[8:], ("198.51.100.2", 500))
        sent += 1
print(sent)
"""


def first_mm1(pcap):
    # The first UDP datagram to port 500 in a LINKTYPE_RAW pcap: strongSwan's MM1.
    for pkt in pcap_packets(pcap):
        if len(pkt) > 28 and pkt[9] == 17 and int.from_bytes(pkt[22:24], "big") == 500:
            return pkt[28:]
    return None


def flood_check(checks, label, lab, gw, flood_host, victim, args):
    """Main Mode requests with fresh cookies from 40 addresses for 2 s, while an established
    client keeps pinging through the gateway: no loss, the half-open limit holds, the excess
    is counted, and the gateway keeps running."""
    mm1 = first_mm1(f"{lab.dir}/gw-wire.pcap")
    if mm1 is None:
        checks.check(f"{label}: found an MM1 to replay for the flood test", False)
        return
    sources = [f"10.0.0.{100 + i}" for i in range(40)]
    for a in sources:
        flood_host.run(["ip", "addr", "add", f"{a}/24", "dev", flood_host.run(["ip", "-o", "-4", "route", "get", "198.51.100.2"]).stdout.split(" dev ")[1].split()[0]])
    ping = victim.spawn(["ping", "-c", "25", "-i", "0.2", "-W", "1", "10.99.1.2"], log_name="ping-during-flood")
    r = flood_host.run(["/usr/bin/python3", "-c", FLOOD, mm1.hex(), *sources], check=False, timeout=30)
    ping.wait(30)
    out = open(ping.log_path).read()
    sent = int(r.stdout.strip() or 0)
    st = node_status(gw, args.mipsec, f"{lab.dir}/gw.sock")
    checks.check(f"{label}: the gateway survived a flood of {sent} Main Mode requests from 40 addresses", st is not None and sent > 1000, r.stderr[-300:])
    state = next(s for s in st["pipeline"] if s["type"] == "ipsec.vpn_gateway")["state"]
    checks.check(f"{label}: the half-open limit held and the excess was counted",
                 state["ike_half_open"] <= 32 and state["ike_dropped_half_open"] > 0, json.dumps(state)[:400])
    checks.check(f"{label}: an established client lost no ping during the flood", " 0% packet loss" in out, out[-300:])
    gw_log = open(f"{lab.dir}/mipsec-gw.log").read()
    logged = gw_log.count("dropping IKE from")
    checks.check(f"{label}: the flood is logged once per peer, not per packet ({logged} lines for 40 peers)",
                 1 <= logged <= 40, gw_log[-500:])


def rekey_check(checks, label, lab, gw, lan, charon, vip, args):
    """strongSwan's CHILD_SA rekeys and IKE re-authentications during a ping both ways."""
    host, c = charon
    sock = f"{lab.dir}/gw.sock"
    first = next(s for s in node_status(gw, args.mipsec, sock)["pipeline"] if s["type"] == "ipsec.vpn_gateway")["state"]
    first_session = first["clients"][0]["session"]
    up = host.spawn(["ping", "-c", "175", "-i", "0.2", "-W", "1", "10.99.1.2"], log_name="ping-up")
    down = lan.spawn(["ping", "-c", "175", "-i", "0.2", "-W", "1", vip], log_name="ping-down")
    up.wait(90)
    down.wait(90)
    for name, p in (("client -> LAN", up), ("LAN -> client", down)):
        out = open(p.log_path).read()
        checks.check(f"{label}: no ping {name} lost across strongSwan's rekeys and re-authentication", " 0% packet loss" in out, out[-300:])
    log = c.log_text()
    child_ups = len(re.findall(r"CHILD_SA \S+ established", log))
    checks.check(f"{label}: strongSwan rekeyed its CHILD_SA with mipsec ({child_ups} CHILD_SAs established)", child_ups >= 3, log[-1500:])
    vgw = next(s for s in node_status(gw, args.mipsec, sock)["pipeline"] if s["type"] == "ipsec.vpn_gateway")["state"]
    clients = vgw["clients"]
    checks.check(f"{label}: strongSwan re-authenticated: a new IKE SA at mipsec, the old one deleted, the same inner address",
                 vgw["ike_sessions"] == 1 and len(clients) == 1 and clients[0]["session"] != first_session
                 and clients[0]["inner_address"] == vip, json.dumps(vgw)[:600])


def run_case(checks, args, label, ike, esp_gw, esp_cli, two_clients, rekey=False):
    # The client behind the NAT leaves encapsulation to NAT detection (encap = no): both
    # sides must find the NAT themselves (RFC 3947). The routed client cannot: kernel-libipsec
    # only speaks ESP in UDP, so it forces encapsulation (encap = yes).
    with Lab("swan-gw") as lab:
        gw, lan, cli1 = lab.host("gw"), lab.host("lan"), lab.host("cli1")
        lab.nat_box("nat", cli1, ("10.0.0.1/24", "10.0.0.2/24"), gw, ("198.51.100.1/24", "198.51.100.2/24"))
        lab.link(gw, "10.99.1.1/24", lan, "10.99.1.2/24")
        lan.run(["ip", "route", "add", "default", "via", "10.99.1.1"])
        gw.sysctl("net.ipv4.ip_forward", "1")
        clients = [(cli1, "10.0.0.2", "cli1.lab.example")]
        if two_clients:
            cli2 = lab.host("cli2")
            lab.link(gw, "203.0.113.1/24", cli2, "203.0.113.2/24")
            cli2.run(["ip", "route", "add", "default", "via", "203.0.113.1"])
            clients.append((cli2, "203.0.113.2", "cli2.lab.example"))
        ike_names = ike.split("-")
        cfg = {
            "name": "gw", "control_socket": f"{lab.dir}/gw.sock",
            "tun": {"name": "vpn0", "routes": ["10.99.100.0/24"]},
            "transport": {"local": "198.51.100.2", "udp_ports": [500, 4500], "raw_protocols": [50]},
            "pipeline": [
                {"type": "ipsec.vpn_gateway", "local": "198.51.100.2", "psk": PSK, "local_id": "gw.lab.example",
                 "pool": "10.99.100.0/24", "local_ts": ["10.99.1.0/24"], "ike_proposals": [ike], "esp_proposals": [esp_gw]},
                {"type": "tap.pcap", "file": f"{lab.dir}/gw-wire.pcap"},
            ],
        }
        del ike_names
        path = f"{lab.dir}/gw.json"
        with open(path, "w") as f:
            json.dump(cfg, f, indent=2)
        gateway = gw.spawn([args.mipsec, "run", path], log_name="mipsec-gw")
        lab.wait_for(lambda: node_status(gw, args.mipsec, f"{lab.dir}/gw.sock"), what="the gateway")
        charons = []
        for host, addr, ident in clients:
            # With `rekey` the client rekeys its CHILD_SA every ~10 s and re-authenticates
            # (IKEv1 has no IKE SA rekey) every ~25 s.
            c = Charon(lab, host, Connection("gw", addr, "198.51.100.2", ident, "gw.lab.example", PSK, proposals=ike,
                                             vips="0.0.0.0", rekey_time="25s" if rekey else None, encap=host is not cli1,
                                             children=[Child(remote_ts="10.99.1.0/24", esp_proposals=esp_cli,
                                                             rekey_time="10s" if rekey else "1h")]))
            r = c.initiate()
            try:
                wait_established(c, timeout=15)
                ok = True
            except TimeoutError as e:
                ok = False
                print(e)
            checks.check(f"{label}: strongSwan client {ident} established an IKE SA and CHILD_SA with mipsec", ok, r.stdout[-800:])
            charons.append((host, c))
        if checks.failed:
            lab.dump_logs()
            return
        vips = []
        for host, c in charons:
            vip = vip_of(c)
            vips.append(vip)
            checks.check(f"{label}: {host.role} got an inner address from mipsec's pool", vip is not None, c.list_sas()[-500:])
        checks.check(f"{label}: each client has its own inner address", None not in vips and len(set(vips)) == len(vips), str(vips))
        if None in vips:
            lab.dump_logs()
            return
        for (host, c), vip in zip(charons, vips):
            r = host.run(["ping", "-c", "3", "-i", "0.2", "-W", "2", "10.99.1.2"], check=False)
            checks.check(f"{label}: ping {host.role} -> LAN host through mipsec", " 0% packet loss" in r.stdout, r.stdout[-300:])
            r = lan.run(["ping", "-c", "3", "-i", "0.2", "-W", "2", vip], check=False)
            checks.check(f"{label}: ping LAN host -> {host.role} ({vip})", " 0% packet loss" in r.stdout, r.stdout[-300:])
            ok, detail = tcp_stream(lan, host, "10.99.1.2", 5001 + len(vip), 2 * 1024 * 1024, lab)
            checks.check(f"{label}: 2 MiB TCP {host.role} -> LAN intact ({detail})", ok, detail)
        if two_clients:
            flood_check(checks, label, lab, gw, cli1, charons[0][0], args)
        if rekey:
            rekey_check(checks, label, lab, gw, lan, charons[0], vips[0], args)
        st = node_status(gw, args.mipsec, f"{lab.dir}/gw.sock")
        vgw = next(s for s in st["pipeline"] if s["type"] == "ipsec.vpn_gateway")
        checks.check(f"{label}: gateway status lists {len(clients)} client(s)", vgw["state"]["clients_total"] == len(clients), json.dumps(vgw["state"])[:500])
        text = gw.run([args.mipsec, "status", "--socket", f"{lab.dir}/gw.sock"], check=False).stdout
        checks.check(f"{label}: `mipsec status` prints each client's IKE SA and CHILD_SA",
                     text.count(" established " + ike) == len(clients) and text.count("ESP in 0x") >= len(clients), text[-1200:])
        for entry in vgw["state"]["clients"]:
            kids = entry.get("child_sas") or [{}]
            # With rekeys running, a rekeyed CHILD_SA may still be listed first for a few seconds.
            kids = sorted(kids, key=lambda k: k.get("state") != "installed")
            checks.check(f"{label}: {entry.get('inner_address')}'s CHILD_SA is UDP-encapsulated (NAT detected, or forced by the client)",
                         kids[0].get("udp_encapsulation") is True, json.dumps(entry)[:400])
            checks.check(f"{label}: status shows {entry.get('inner_address')}'s IKE SA and CHILD_SA (state, proposal, lifetime, algorithm, traffic)",
                         entry.get("ike_state") == "established" and entry.get("ike_proposal") == ike
                         and entry.get("ike_expires_in_s", 0) > 0 and kids[0].get("algorithm") == esp_gw
                         and kids[0].get("packets_in", 0) > 0 and kids[0].get("bytes_out", 0) > 0 and kids[0].get("expires_in_s", 0) > 0,
                         json.dumps(entry)[:800])
        checks.check(f"{label}: no drops at the gateway stage", vgw["dropped"] == 0, json.dumps(vgw["drops"]))
        # A stopping gateway deletes every client's SAs; the strongSwan clients drop them.
        code = lab.stop(gateway)
        try:
            lab.wait_for(lambda: all("ESTABLISHED" not in c.list_sas() for _, c in charons), timeout=3, what="the clients to drop the SAs")
            gone = True
        except TimeoutError:
            gone = False
        checks.check(f"{label}: a stopped gateway (exit {code}) deletes its clients' SAs at strongSwan", gone and code == 0,
                     charons[0][1].list_sas()[-500:])
        if checks.failed:
            for _, c in charons:
                print(c.log_text()[-2000:])
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
    run_case(checks, args, "AES-GCM, two clients", "aes128-sha1-modp2048", "aes128gcm16", "aes128gcm16", True)
    run_case(checks, args, "AES-CBC+SHA1", "aes256-sha256-modp2048", "aes128-sha1", "aes128-sha1", False, rekey=True)
    return checks.finish()


if __name__ == "__main__":
    sys.exit(main())

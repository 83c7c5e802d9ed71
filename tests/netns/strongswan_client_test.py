# SPDX-License-Identifier: MIT
"""Interop (a): the mipsec VPN client (ipsec.vpn_client over nat.udp_encap) against an
unmodified strongSwan 5.9 gateway (charon + kernel-libipsec, IKEv1, forced UDP encapsulation),
through an nftables masquerading NAT. The tunnel comes up, the client's inner address comes
from strongSwan's Mode Config pool, and ping and TCP streams flow both ways between the client
and a host on the gateway's LAN. Run for an AEAD and a CBC+HMAC proposal set."""
import argparse
import json
import os
import re
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "tools"))
from netns_lab import Checks, Lab, node_status, require_root, tcp_stream  # noqa: E402
from strongswan_lab import Charon, Child, Connection  # noqa: E402

PSK = "lab-psk-0123456789"


def client_state(host, mipsec, sock):
    st = node_status(host, mipsec, sock)
    if not st:
        return None
    return next(s for s in st["pipeline"] if s["type"] == "ipsec.vpn_client").get("state")


def peer_delete_check(checks, label, lab, cli, charon, args, sock):
    """strongSwan deletes the CHILD_SA mid-stream (`swanctl --terminate --child`) while the client
    pings through the tunnel: the client must drop both directions of that SA, stop sending on
    its SPI, negotiate a new CHILD_SA on the same IKE SA, and the ping resume."""
    before = client_state(cli, args.mipsec, sock)
    old_out = before["child_sas"][0]["spi_out"]
    ping = cli.spawn(["ping", "-c", "80", "-i", "0.1", "-W", "1", "10.99.1.2"], log_name="ping-peer-delete")
    time.sleep(2)
    deleted_at = time.time()
    r = charon.swan(["--terminate", "--child", "net", "--timeout", "5"], check=False)
    checks.check(f"{label}: strongSwan deleted the CHILD_SA (swanctl --terminate --child net)", r.returncode == 0, r.stdout[-300:] + r.stderr[-300:])
    ping.wait(30)
    out = open(ping.log_path).read()
    seqs = sorted(int(m) for m in re.findall(r"icmp_seq=(\d+) ", out))
    gaps = [b - a for a, b in zip(seqs, seqs[1:])]
    outage = (max(gaps) - 1) * 0.1 if gaps else float("inf")
    print(f"     {label}: outage after strongSwan deleted the CHILD_SA: {outage:.1f} s "
          f"({80 - len(seqs)} of 80 pings lost)", flush=True)
    after = client_state(cli, args.mipsec, sock) or {}
    kids = after.get("child_sas") or []
    installed = [k for k in kids if k.get("state") == "installed"]  # (a rekey may have run meanwhile)
    checks.check(f"{label}: the client negotiated a new CHILD_SA on the same IKE SA after strongSwan's Delete",
                 after.get("sa_installs", 0) > before["sa_installs"] and after.get("sessions_started") == before["sessions_started"]
                 and len(installed) == 1 and all(k.get("spi_out") != old_out for k in kids) and after.get("ike_state") == "established",
                 json.dumps(after)[:600])
    checks.check(f"{label}: traffic resumed after the CHILD_SA was deleted (outage {outage:.1f} s)",
                 bool(seqs) and seqs[-1] == 80 and outage < 2.0, out[-400:])
    sas = charon.list_sas()
    checks.check(f"{label}: strongSwan has a new CHILD_SA INSTALLED", "INSTALLED" in sas and f"{old_out:08x}" not in sas, sas[-600:])
    # The wire capture: once the Delete was in, nothing leaves on the dead SPI.
    r = subprocess.run(["tshark", "-r", f"{lab.dir}/cli-wire.pcap", "-Y", f"esp.spi == 0x{old_out:08x} && frame.time_epoch > {deleted_at + 0.5:.3f}",
                        "-T", "fields", "-e", "frame.number"], capture_output=True, text=True)
    late = len(r.stdout.split())
    checks.check(f"{label}: the client stopped sending on the deleted SA's SPI 0x{old_out:08x} ({late} packets after the Delete)",
                 r.returncode == 0 and late == 0, r.stderr[-300:])


def run_case(checks, args, label, ike, esp_gw, esp_cli, rekey_s=None, rebind=False, ike_lifetime_s=None, peer_delete=False,
             swan_encap=True):
    with Lab("swan-cli") as lab:
        cli, gw, lan = lab.host("cli"), lab.host("gw"), lab.host("lan")
        nat = lab.nat_box("nat", cli, ("10.0.0.1/24", "10.0.0.2/24"), gw, ("198.51.100.1/24", "198.51.100.2/24"),
                          random_ports=rebind)
        lab.link(gw, "10.99.1.1/24", lan, "10.99.1.2/24")
        lan.run(["ip", "route", "add", "default", "via", "10.99.1.1"])
        gw.sysctl("net.ipv4.ip_forward", "1")
        charon = Charon(lab, gw, Connection("rw", "198.51.100.2", "%any", "gw.lab.example", "cli.lab.example", PSK,
                                            proposals=ike, pools="vpn", pool_addrs="10.99.100.0/24", dpd_delay="30s",
                                            encap=swan_encap,
                                            children=[Child(local_ts="10.99.1.0/24", remote_ts="dynamic", esp_proposals=esp_gw)]))
        cfg = {
            "name": "cli", "control_socket": f"{lab.dir}/cli.sock", "log_level": "info",
            "tun": {"name": "vpn0", "routes": ["10.99.1.0/24"]},
            "transport": {"local": "10.0.0.2", "udp_ports": [500, 4500]},
            "pipeline": [
                {"type": "ipsec.vpn_client", "local": "10.0.0.2", "gateway": "198.51.100.2", "psk": PSK,
                 "local_id": "cli.lab.example", "remote_id": "gw.lab.example", "remote_ts": "10.99.1.0/24",
                 "ike_proposals": [ike], "esp_proposals": [esp_cli], "dpd_delay_s": 2 if rebind else 30,
                 "child_rekey_s": rekey_s or 3600, "key_log": f"{lab.dir}/keys",
                 **({"ike_lifetime_s": ike_lifetime_s} if ike_lifetime_s else {})},
                {"type": "nat.udp_encap", "keepalive_s": 20},
                {"type": "tap.pcap", "file": f"{lab.dir}/cli-wire.pcap"},
            ],
        }
        path = f"{lab.dir}/cli.json"
        with open(path, "w") as f:
            json.dump(cfg, f, indent=2)
        client = cli.spawn([args.mipsec, "run", path], log_name="mipsec-cli")
        sock = f"{lab.dir}/cli.sock"
        try:
            state = lab.wait_for(lambda: (s := client_state(cli, args.mipsec, sock)) and s.get("sa_installs", 0) >= 1 and s,
                                 timeout=30, what="the client's ESP SA")
        except TimeoutError as e:
            checks.check(f"{label}: tunnel up with strongSwan", False, str(e))
            print(charon.log_text()[-3000:])
            lab.dump_logs()
            return
        checks.check(f"{label}: IKE (Main Mode, Mode Config, Quick Mode) with strongSwan; ESP SA installed",
                     state["ike_state"] == "established", json.dumps(state)[:300])
        child = (state.get("child_sas") or [{}])[0]
        checks.check(f"{label}: status lists the IKE peer and the CHILD_SA with algorithm, SPIs and time to rekey",
                     state.get("ike_peer", "").startswith("198.51.100.2") and child.get("algorithm") == esp_cli
                     and child.get("spi_in", 0) > 0 and child.get("rekey_in_s", 0) > 0, json.dumps(state)[:600])
        text = cli.run([args.mipsec, "status", "--socket", sock], check=False).stdout
        if os.environ.get("MIPSEC_SHOW_STATUS"):
            print(text, flush=True)
        checks.check(f"{label}: `mipsec status` prints the IKE SA and CHILD_SA as a table",
                     re.search(r"IKE 198\.51\.100\.2:\d+ established " + re.escape(ike), text) is not None
                     and re.search(r"ESP in 0x[0-9a-f]{8} out 0x[0-9a-f]{8} " + re.escape(esp_cli) + " installed, rekey in", text) is not None,
                     text[-800:])
        if not swan_encap:
            checks.check(f"{label}: with encapsulation left to NAT detection, both ends found the NAT and the CHILD_SA is in UDP",
                         state.get("nat_detected") is True and child.get("udp_encapsulation") is True, json.dumps(state)[:400])
        vip = state["inner_address"].split("/")[0]
        checks.check(f"{label}: inner address {vip} from strongSwan's Mode Config pool 10.99.100.0/24", vip.startswith("10.99.100."), vip)
        sas = charon.list_sas()
        checks.check(f"{label}: strongSwan lists the CHILD_SA as INSTALLED, TUNNEL-in-UDP", "INSTALLED" in sas and "TUNNEL-in-UDP" in sas, sas[-600:])
        r = cli.run(["ping", "-c", "4", "-i", "0.2", "-W", "2", "10.99.1.2"], check=False)
        checks.check(f"{label}: ping client -> gateway LAN host", " 0% packet loss" in r.stdout, r.stdout[-300:])
        r = lan.run(["ping", "-c", "4", "-i", "0.2", "-W", "2", vip], check=False)
        checks.check(f"{label}: ping gateway LAN host -> client inner address", " 0% packet loss" in r.stdout, r.stdout[-300:])
        ok, detail = tcp_stream(lan, cli, "10.99.1.2", 5001, 2 * 1024 * 1024, lab)
        checks.check(f"{label}: 2 MiB TCP client -> LAN intact ({detail})", ok, detail)
        ok, detail = tcp_stream(cli, lan, vip, 5002, 2 * 1024 * 1024, lab)
        checks.check(f"{label}: 2 MiB TCP LAN -> client intact ({detail})", ok, detail)
        no_sa_before = (next(s for s in node_status(cli, args.mipsec, sock)["pipeline"] if s["type"] == "ipsec.vpn_client")["drops"]).get("no_sa", 0)
        if peer_delete:
            peer_delete_check(checks, label, lab, cli, charon, args, sock)
        no_sa_allowed = (next(s for s in node_status(cli, args.mipsec, sock)["pipeline"] if s["type"] == "ipsec.vpn_client")["drops"]).get("no_sa", 0) - no_sa_before
        if rebind:
            # The NAT forgets its mappings (reboot, timeout): the client's next packets leave
            # from a new random port. ESP replies to the old port are lost until the gateway
            # sees an authenticated IKE message (DPD) from the new one and follows it.
            lab.flush_nat(nat)
            r = cli.run(["ping", "-c", "50", "-i", "0.2", "-W", "1", "10.99.1.2"], check=False, timeout=60)
            tail_ok = r.stdout.count("bytes from") >= 20 and "icmp_seq=50 " in r.stdout
            checks.check(f"{label}: the tunnel recovers after the NAT rebinds the client's port (DPD from the new port)",
                         tail_ok, r.stdout[-400:])
        if rekey_s:
            # Traffic across the client's Quick Mode rekey: make-before-break must lose nothing.
            before = client_state(cli, args.mipsec, sock)["sa_installs"]
            r = cli.run(["ping", "-c", str(rekey_s * 10), "-i", "0.2", "-W", "1", "10.99.1.2"], check=False, timeout=rekey_s * 4 + 30)
            after = client_state(cli, args.mipsec, sock)["sa_installs"]
            checks.check(f"{label}: the client rekeyed the CHILD_SA during traffic ({before} -> {after} installs)", after > before, f"{before} -> {after}")
            checks.check(f"{label}: no ping lost across the rekey", " 0% packet loss" in r.stdout, r.stdout[-300:])
            sas = charon.list_sas()
            checks.check(f"{label}: strongSwan has the rekeyed CHILD_SA installed", "INSTALLED" in sas, sas[-600:])
        if ike_lifetime_s:
            # IKEv1 has no IKE SA rekey: before the lifetime ends the client re-authenticates
            # (a new Main Mode without INITIAL-CONTACT, Mode Config asking for the same address,
            # a new CHILD_SA, then the old ones deleted) while traffic flows.
            before = client_state(cli, args.mipsec, sock)
            ping = cli.spawn(["ping", "-c", str(ike_lifetime_s * 5 + 40), "-i", "0.2", "-W", "1", "10.99.1.2"], log_name="ping-reauth")
            try:
                after = lab.wait_for(lambda: (s := client_state(cli, args.mipsec, sock)) and s.get("ike_reauthentications", 0) >= 1 and s,
                                     timeout=ike_lifetime_s + 10, what="a re-authentication")
            except TimeoutError as e:
                after = client_state(cli, args.mipsec, sock) or {}
                print(e)
            ping.wait(ike_lifetime_s + 60)
            out = open(ping.log_path).read()
            checks.check(f"{label}: the client re-authenticated before the {ike_lifetime_s} s IKE lifetime ended, without a restart",
                         after.get("ike_reauthentications", 0) >= 1 and after.get("sessions_started") == before.get("sessions_started"),
                         json.dumps(after)[:400])
            checks.check(f"{label}: the same inner address after the re-authentication",
                         after.get("inner_address", "").split("/")[0] == vip, after.get("inner_address", ""))
            checks.check(f"{label}: no ping lost across the re-authentication", " 0% packet loss" in out, out[-300:])
            sas = charon.list_sas()
            checks.check(f"{label}: strongSwan holds one IKE SA (the old one deleted) with an INSTALLED CHILD_SA",
                         sas.count("ESTABLISHED") == 1 and "INSTALLED" in sas, sas[-800:])
        st = node_status(cli, args.mipsec, sock)
        vpn = next(s for s in st["pipeline"] if s["type"] == "ipsec.vpn_client")
        # Only the packets that found no SA while the new CHILD_SA was negotiated after strongSwan's Delete.
        checks.check(f"{label}: no ESP drops at the client" + (f" but {no_sa_allowed} for want of an SA after the Delete" if no_sa_allowed else ""),
                     vpn["dropped"] == no_sa_allowed and vpn["drops"].get("no_sa", 0) == no_sa_allowed, json.dumps(vpn["drops"]))
        key_log_check(checks, label, lab)
        # A stopping client says goodbye: strongSwan drops the IKE SA and CHILD_SA at once
        # instead of waiting for DPD.
        code = lab.stop(client)
        try:
            lab.wait_for(lambda: "ESTABLISHED" not in charon.list_sas(), timeout=3, what="strongSwan to drop the SAs")
            gone = True
        except TimeoutError:
            gone = False
        checks.check(f"{label}: a stopped client (exit {code}) deletes its SAs at strongSwan", gone and code == 0, charon.list_sas()[-500:])
        if checks.failed:
            print(charon.log_text()[-3000:])
            lab.dump_logs()


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


def wrong_psk_case(checks, args, label):
    """The client holds another PSK than strongSwan. strongSwan cannot decrypt MM5 and answers
    with PAYLOAD-MALFORMED protected with its own keys, unreadable for the client: that answer
    must end the attempt at once with a reason in `mipsec status`, not ~165 s of MM5
    retransmissions and "no answer to Main Mode"; and the retries keep the restart delay."""
    with Lab("swan-psk") as lab:
        cli, gw = lab.host("cli"), lab.host("gw")
        lab.link(cli, "10.0.0.2/24", gw, "10.0.0.1/24")
        Charon(lab, gw, Connection("rw", "10.0.0.1", "%any", "gw.lab.example", "cli.lab.example", PSK,
                                   pools="vpn", pool_addrs="10.99.100.0/24",
                                   children=[Child(local_ts="10.99.1.0/24", remote_ts="dynamic")]))
        sock = f"{lab.dir}/cli.sock"
        cfg = {
            "name": "cli", "control_socket": sock, "log_level": "info",
            "tun": {"name": "vpn0", "routes": ["10.99.1.0/24"]},
            "transport": {"local": "10.0.0.2", "udp_ports": [500, 4500]},
            "pipeline": [
                {"type": "ipsec.vpn_client", "local": "10.0.0.2", "gateway": "10.0.0.1", "psk": "not-" + PSK,
                 "local_id": "cli.lab.example", "remote_id": "gw.lab.example", "remote_ts": "10.99.1.0/24",
                 "esp_proposals": ["aes128gcm16"]},
                {"type": "nat.udp_encap", "keepalive_s": 20},
            ],
        }
        path = f"{lab.dir}/cli.json"
        with open(path, "w") as f:
            json.dump(cfg, f, indent=2)
        started = time.monotonic()
        cli.spawn([args.mipsec, "run", path], log_name="mipsec-cli")
        try:
            state = lab.wait_for(lambda: (s := client_state(cli, args.mipsec, sock)) and s.get("last_failure") and s,
                                 timeout=15, what="the client's first failure")
        except TimeoutError:
            state = client_state(cli, args.mipsec, sock) or {}
        took = time.monotonic() - started
        checks.check(f"{label}: a wrong PSK fails at strongSwan's first answer ({took:.1f} s) and says why",
                     "wrong PSK or identity?" in state.get("last_failure", "") and took < 10, json.dumps(state)[:500])
        time.sleep(6)
        state = client_state(cli, args.mipsec, sock) or {}
        checks.check(f"{label}: the client retries after its 5 s restart delay, not faster ({state.get('sessions_started')} attempts)",
                     state.get("sessions_started") in (2, 3), json.dumps(state)[:300])
        if checks.failed:
            lab.dump_logs()


def key_log_check(checks, label, lab):
    """tshark decrypts the client's wire capture with the keys mipsec logged: the encrypted
    IKE messages (ikev1_decryption_table) and every ESP packet (esp_sa)."""
    ike_lines = open(f"{lab.dir}/keys.ikev1_decryption_table").read().splitlines()
    esp_lines = open(f"{lab.dir}/keys.esp_sa").read().splitlines()
    # The TCP test streams carry random bytes: show them as data, or tshark's heuristic
    # dissectors (THRIFT, ...) guess at them and report "malformed" protocols we never sent.
    opts = ["-o", "esp.enable_encryption_decode:TRUE", "-d", "tcp.port==5000-5100,data"]
    for line in ike_lines:
        opts += ["-o", f"uat:ikev1_decryption_table:{line}"]
    for line in esp_lines:
        opts += ["-o", f"uat:esp_sa:{line}"]
    pcap = f"{lab.dir}/cli-wire.pcap"

    def count(filt, extra=()):
        r = subprocess.run(["tshark", "-r", pcap, *extra, "-Y", filt, "-T", "fields", "-e", "frame.number"], capture_output=True, text=True)
        return len(r.stdout.split()), r.stderr

    esp_total, _ = count("esp")
    esp_inner, err = count("esp && (icmp || tcp)", opts)
    checks.check(f"{label}: tshark decrypts every ESP packet with the key log ({esp_inner} of {esp_total})",
                 esp_total > 50 and esp_inner == esp_total, err[-300:])
    # Decrypted IKE shows its inner payloads: the Mode Config attribute payload (type 14).
    attr, err = count("isakmp.typepayload == 14", opts)
    checks.check(f"{label}: tshark decrypts the IKE exchanges (Mode Config payload visible)", attr >= 1, err[-300:])
    bad, _ = count("_ws.malformed || _ws.expert.severity == error", opts)
    checks.check(f"{label}: no malformed packet in the decrypted capture", bad == 0, f"{bad} problems")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--mipsec", required=True)
    args = ap.parse_args()
    require_root("the strongSwan interop test")
    if not os.path.exists("/usr/lib/ipsec/charon"):
        print("FAIL strongSwan charon is not installed (tools/install-deps.sh installs it)")
        return 1
    checks = Checks()
    run_case(checks, args, "AES-GCM", "aes128-sha1-modp2048", "aes128gcm16", "aes128gcm16", rekey_s=6, ike_lifetime_s=30, peer_delete=True)
    run_case(checks, args, "AES-CBC+SHA-256, MODP-1024", "aes256-sha256-modp1024", "aes128-sha256", "aes128-sha256", rebind=True,
             swan_encap=False)
    collision_case(checks, args, "rekey collision")
    wrong_psk_case(checks, args, "wrong PSK")
    return checks.finish()


if __name__ == "__main__":
    sys.exit(main())

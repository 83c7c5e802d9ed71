# SPDX-License-Identifier: MIT
"""`mipsec lab list` and `mipsec lab check` without root: the shipped scenarios are listed and
valid; broken scenarios are refused before anything is created, each problem named by the JSON
pointer of the value at fault (an unknown key, a link to a network that does not exist, an
address used twice on one network, a node config `mipsec check` refuses, a move to nowhere,
an unknown --set parameter); a missing lab directory is a clear error."""
import argparse
import copy
import json
import os
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "tools"))
from netns_lab import Checks  # noqa: E402

SCENARIOS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tools", "lab", "scenarios")


def lab(mipsec, *args, env=None):
    return subprocess.run([mipsec, "lab", *args], capture_output=True, text=True, timeout=60, env=env)


def broken(base, change):
    doc = copy.deepcopy(base)
    change(doc)
    return doc


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--mipsec", required=True)
    args = ap.parse_args()
    checks = Checks()

    r = lab(args.mipsec, "list")
    names = [line.split()[0] for line in r.stdout.splitlines() if line.strip()]
    checks.check("lab list exits 0", r.returncode == 0, r.stderr)
    for name in ("mip-roaming", "vpn-only-1a", "vpn-only-1b", "rfc5265-cvc"):
        checks.check(f"lab list names {name} with a summary", any(line.startswith(name + " ") and len(line.split()) > 3
                                                                  for line in r.stdout.splitlines()), r.stdout)
    for name in names:
        r = lab(args.mipsec, "check", name)
        checks.check(f"lab check {name} (by name): OK", r.returncode == 0 and "OK" in r.stdout, r.stdout + r.stderr)
    path = os.path.join(SCENARIOS, "mip-roaming.json")
    r = lab(args.mipsec, "check", path)
    checks.check("lab check accepts a file path", r.returncode == 0, r.stderr)

    base = json.load(open(path))
    cases = [
        ("an unknown top-level key", lambda d: d.update(networkz={}), ["/networkz"]),
        ("an unknown key in an interface", lambda d: d["hosts"]["cn"]["interfaces"]["eth0"].update(adress="10.1.0.11/24"),
         ["/hosts/cn/interfaces/eth0/adress"]),
        ("a link to a network that does not exist", lambda d: d["hosts"]["cn"]["interfaces"]["eth0"].update(network="nowhere"),
         ["/hosts/cn/interfaces/eth0/network"]),
        ("an address used twice on one network", lambda d: d["hosts"]["cn"]["interfaces"]["eth0"].update(address="10.1.0.1/24"),
         ["/hosts/cn/interfaces/eth0/address"]),
        ("an address outside its network", lambda d: d["hosts"]["cn"]["interfaces"]["eth0"].update(address="10.2.0.10/24"),
         ["/hosts/cn/interfaces/eth0/address"]),
        ("overlapping networks", lambda d: d["networks"].update(extra={"prefix": "10.1.0.0/16"}), ["/networks/extra/prefix"]),
        ("a node config mipsec check refuses",
         lambda d: d["nodes"]["mn"]["config"]["pipeline"][0].update(lifetime_s=-5), ["/nodes/mn/config/pipeline/0/lifetime_s"]),
        ("a node config with an unknown stage key",
         lambda d: d["nodes"]["fa"]["config"]["pipeline"][0].update(advert_s=1), ["/nodes/fa/config/pipeline/0/advert_s"]),
        ("a move to a network that does not exist", lambda d: d["timeline"][2]["move"].update(to="moon"), ["/timeline/2/move/to"]),
        ("a condition on an unknown node", lambda d: d["timeline"][0]["wait"].update(node="ghost"), ["/timeline/0/wait/node"]),
        ("a topology problem and a node config problem, both reported",
         lambda d: (d["hosts"]["cn"]["interfaces"]["eth0"].update(address="10.1.0.1/24"),
                    d["nodes"]["mn"]["config"]["pipeline"][0].update(lifetime_s=-5)),
         ["/hosts/cn/interfaces/eth0/address", "/nodes/mn/config/pipeline/0/lifetime_s"]),
        ("two problems at once", lambda d: (d.update(networkz={}), d["hosts"]["cn"]["interfaces"]["eth0"].update(network="x")),
         ["/networkz", "/hosts/cn/interfaces/eth0/network"]),
    ]
    with tempfile.TemporaryDirectory(prefix="mipsec-lab-check-test-") as tmp:
        for what, change, pointers in cases:
            f = os.path.join(tmp, "bad.json")
            with open(f, "w") as out:
                json.dump(broken(base, change), out)
            r = lab(args.mipsec, "check", f)
            found = [line.split(": ")[2] for line in r.stderr.splitlines() if line.startswith("mipsec lab: ")]
            checks.check(f"{what}: refused (exit 2) at {', '.join(pointers)}",
                         r.returncode == 2 and sorted(found) == sorted(pointers), f"exit {r.returncode}: {r.stderr.strip()}")
        swan_cases(checks, args, tmp)
        r = lab(args.mipsec, "check", "mip-roaming", "--set", "no_such=1")
        checks.check("--set of an unknown parameter is refused", r.returncode == 2 and "no_such" in r.stderr, r.stderr)
        r = lab(args.mipsec, "check", "mip-roaming", "--set", "key=short")
        checks.check("--set reaches the node configs (a too-short key is refused by mipsec check)",
                     r.returncode == 2 and "/nodes/" in r.stderr and "/key" in r.stderr, r.stderr)
        r = lab(args.mipsec, "check", "no-such-scenario")
        checks.check("an unknown scenario name is refused", r.returncode == 2 and "no-such-scenario" in r.stderr, r.stderr)
        r = lab(args.mipsec, "list", env={**os.environ, "MIPSEC_LAB_DIR": os.path.join(tmp, "nowhere")})
        checks.check("a MIPSEC_LAB_DIR without a lab is a clear error", r.returncode == 1 and "MIPSEC_LAB_DIR" in r.stderr, r.stderr)
    library_checks(checks)
    return checks.finish()


def swan_cases(checks, args, tmp):
    """The strongSwan gateway element and "if": vpn-only-1a in both variants is valid; a bad
    strongSwan element is refused at its pointer whichever gateway is chosen."""
    for sets in ([], ["--set", "gateway=strongswan"]):
        r = lab(args.mipsec, "check", "vpn-only-1a", *sets)
        swans = "1 strongSwan node(s)" in r.stdout
        checks.check(f"lab check vpn-only-1a {' '.join(sets)}: OK, {'with' if sets else 'without'} the strongSwan gateway",
                     r.returncode == 0 and swans == bool(sets), r.stdout + r.stderr)
    base = json.load(open(os.path.join(SCENARIOS, "vpn-only-1a.json")))
    swgw = lambda d: d["nodes"]["swgw"]["strongswan"]  # noqa: E731
    strongswan = ["--set", "gateway=strongswan"]
    cases = [
        ("an unknown key in a strongSwan element (not chosen)", lambda d: swgw(d).update(pol="x"), [], ["/nodes/swgw/strongswan/pol"]),
        ("an unknown key in a strongSwan element", lambda d: swgw(d).update(pol="x"), strongswan, ["/nodes/swgw/strongswan/pol"]),
        ("a strongSwan pool that is not a prefix", lambda d: swgw(d).update(pool="10.99.100.1/24"), strongswan,
         ["/nodes/swgw/strongswan/pool"]),
        ("a strongSwan element without a PSK, and a bad proposal",
         lambda d: (swgw(d).pop("psk"), swgw(d).update(ike_proposals="aes128 sha256")), strongswan,
         ["/nodes/swgw/strongswan", "/nodes/swgw/strongswan/ike_proposals"]),
        ("a strongSwan gateway address outside the lab", lambda d: swgw(d).update(local="8.8.8.8"), strongswan,
         ["/nodes/swgw/strongswan/local"]),
        ("a node both mipsec and strongSwan", lambda d: d["nodes"]["swgw"].update(config={}), strongswan, ["/nodes/swgw"]),
        ("an \"if\" on an unknown parameter", lambda d: d["timeline"][5].update({"if": {"gatway": "strongswan"}}), strongswan,
         ["/timeline/5/if/gatway"]),
        ("an \"if\" on a route naming an unknown parameter",
         lambda d: d["hosts"]["server"]["routes"][0].update({"if": {"gatway": "mipsec"}}), [], ["/hosts/server/routes/0/if/gatway"]),
        ("a condition of the run reading the gateway that is not in it",
         lambda d: d["timeline"][2]["move"]["until"][1].pop("if"), strongswan, ["/timeline/2/move/until/1/node"]),
        ("a gateway no \"if\" chooses", lambda d: None, ["--set", "gateway=racoon"], ["/parameters/gateway"]),
    ]
    for what, change, sets, pointers in cases:
        f = os.path.join(tmp, "bad-swan.json")
        with open(f, "w") as out:
            json.dump(broken(base, change), out)
        r = lab(args.mipsec, "check", f, *sets)
        found = [line.split(": ")[2] for line in r.stderr.splitlines() if line.startswith("mipsec lab: ")]
        checks.check(f"{what}: refused (exit 2) at {', '.join(pointers)}",
                     r.returncode == 2 and sorted(found) == sorted(pointers), f"exit {r.returncode}: {r.stderr.strip()}")


# `swanctl --list-sas` of a strongSwan gateway with one road warrior (the format of
# src/swanctl/commands/list_sas.c): an old IKE SA being deleted and the newest one.
LIST_SAS = """rw: #2, DELETING, IKEv1, 5b4c0f6c2c4d2e1a_i 8d5e2a8a1e3f9b7c_r*
  local  'gw.lab.example' @ 198.18.0.2[4500]
  remote 'cli.lab.example' @ 198.18.0.11[4500] [10.99.100.1]
rw: #3, ESTABLISHED, IKEv1, 6c4c0f6c2c4d2e1a_i 9d5e2a8a1e3f9b7c_r*
  local  'gw.lab.example' @ 198.18.0.2[4500]
  remote 'cli.lab.example' @ 198.18.0.12[4500] [10.99.100.2]
  AES_CBC-128/HMAC_SHA2_256_128/PRF_HMAC_SHA2_256/MODP_2048
  established 2s ago, reauth in 9945s
  net: #3, reqid 3, INSTALLED, TUNNEL-in-UDP, ESP:AES_GCM_16-128
    installed 2s ago, rekeying in 3366s, expires in 3958s
    in  c4a8b5b3,   1596 bytes,    19 packets,     0s ago
    out cc0e2e11,   1596 bytes,    19 packets,     0s ago
    local  10.99.1.0/24
    remote 10.99.100.2/32
"""


def library_checks(checks):
    """The runner's measuring pieces on recorded input."""
    sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "tools"))
    sys.dont_write_bytecode = True  # nothing written into the source tree
    from lab import runner, strongswan_node  # noqa: E402

    st = strongswan_node.parse_list_sas(LIST_SAS)
    newest = st["ike_sas"][1] if len(st["ike_sas"]) == 2 else {}
    checks.check("swanctl --list-sas parsed: two IKE SAs, one established, newest #3, one CHILD_SA installed in UDP, the virtual IP",
                 st["newest_ike_sa"] == 3 and st["ike_established"] == 1 and st["child_sas_installed"] == 1
                 and newest.get("remote") == "198.18.0.12" and newest.get("remote_port") == 4500
                 and newest.get("virtual_ip") == "10.99.100.2" and newest.get("children", [{}])[0].get("udp_encapsulation") is True
                 and st["ike_sas"][0]["state"] == "deleting" and st["ike_sas"][0]["children"] == [], json.dumps(st))
    checks.check("swanctl --list-sas with no SA", strongswan_node.parse_list_sas("") ==
                 {"ike_sas": [], "ike_established": 0, "child_sas_installed": 0, "newest_ike_sa": 0})

    doc = {"state": {"a/b": [{"mode": "x"}], "n": 3}}
    checks.check("JSON pointer: escapes and list indices", runner.resolve_pointer(doc, "/state/a~1b/0/mode") == "x"
                 and runner.resolve_pointer(doc, "/state/missing") is runner.MISSING and runner.resolve_pointer(doc, "") is doc)
    checks.check("counters summed wherever they sit", runner.counter_sum({"ike_sent": 4, "x": [{"ike_received": 5}], "y": {"ike_sent": 1}},
                                                                         ("ike_sent", "ike_received")) == 10)
    with tempfile.TemporaryDirectory(prefix="mipsec-lab-probe-") as tmp:
        log = os.path.join(tmp, "ping.log")
        lines = [f"[{100 + s * 0.1:.6f}] 64 bytes from 10.1.0.77: icmp_seq={s} ttl=64 time=0.1 ms" for s in (1, 2, 3, 4)]
        lines.append("no answer yet for icmp_seq=5")
        lines += [f"[{100 + s * 0.1:.6f}] 64 bytes from 10.1.0.77: icmp_seq={s} ttl=64 time=0.1 ms" for s in (9, 10)]
        open(log, "w").write("\n".join(lines) + "\n")
        probe = runner.Probe.__new__(runner.Probe)
        probe.proc = type("P", (), {"log_path": log})()
        first, lost = probe.gap(100.45)
        checks.check(f"probe: first reply 0.45 s after the link change, 4 requests lost ({first}, {lost})",
                     abs(first - 0.45) < 1e-6 and lost == 4)
        checks.check("probe: no reply after the change yet", probe.gap(101.5) == (None, None))
        leases = os.path.join(tmp, "leases")
        open(leases, "w").write("99.5 bound 10.0.0.1\n103.25 bound 192.0.2.100\n")
        checks.check("lease time: the first lease after the link change", runner.lease_time(leases, 100.0) == 103.25
                     and runner.lease_time(leases, 104.0) is None and runner.lease_time(os.path.join(tmp, "none"), 0) is None)


if __name__ == "__main__":
    sys.exit(main())

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
    for name in ("mip-roaming", "vpn-only-1a", "vpn-only-1b", "rfc5265-cvc", "rfc5265-walk"):
        checks.check(f"lab list names {name} with a summary", any(line.startswith(name + " ") and len(line.split()) > 3
                                                                  for line in r.stdout.splitlines()), r.stdout)
    for name in names:
        r = lab(args.mipsec, "check", name)
        checks.check(f"lab check {name} (by name): OK", r.returncode == 0 and "OK" in r.stdout, r.stdout + r.stderr)
    path = os.path.join(SCENARIOS, "mip-roaming.json")
    r = lab(args.mipsec, "check", path)
    checks.check("lab check accepts a file path", r.returncode == 0, r.stderr)

    base = json.load(open(path))
    first_move = next(i for i, step in enumerate(base["timeline"]) if "move" in step)
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
        ("a move to a network that does not exist", lambda d: d["timeline"][first_move]["move"].update(to="moon"),
         [f"/timeline/{first_move}/move/to"]),
        ("a condition on an unknown node", lambda d: d["timeline"][0]["wait"].update(node="ghost"), ["/timeline/0/wait/node"]),
        ("a host condition whose ip command would change state",
         lambda d: d["timeline"][0].update(wait={"host": "cn", "ip": ["route", "add", "10.9.0.0/24"], "pointer": "", "equals": []}),
         ["/timeline/0/wait/ip"]),
        ("a host condition on a host that does not exist",
         lambda d: d["timeline"][0].update(wait={"host": "moon", "ip": ["neigh", "show"], "pointer": "", "equals": []}),
         ["/timeline/0/wait/host"]),
        ("a refused start with an exit status out of range",
         lambda d: d["timeline"].insert(1, {"start": "fa", "refused": {"exit": 0, "message": "in use"}}), ["/timeline/1/refused/exit"]),
        ("refused on a stop", lambda d: d["timeline"].insert(1, {"stop": "fa", "refused": {"exit": 1, "message": "x"}}),
         ["/timeline/1/refused"]),
        ("a refused start's message list holding a number",
         lambda d: d["timeline"].insert(1, {"start": "fa", "refused": {"exit": 1, "message": ["in use", 5]}}), ["/timeline/1/refused/message"]),
        ("a node only started to be refused, its config refused for another reason than the one expected",
         lambda d: (d["nodes"]["fa"].update(start=False), d["nodes"]["fa"]["config"]["pipeline"][0].update(advertisement_interval_s=-1),
                    d["timeline"].insert(1, {"start": "fa", "refused": {"exit": 2, "message": ["/pipeline/0/link_address"]}})),
         ["/nodes/fa/config/pipeline/0/advertisement_interval_s"]),
        ("a write outside the run's directory", lambda d: d["timeline"].insert(1, {"write": {"file": "/etc/x", "text": "x"}}),
         ["/timeline/1/write/file"]),
        ("a write climbing out of the run's directory",
         lambda d: d["timeline"].insert(1, {"write": {"file": "${lab_dir}/../x", "text": "x"}}), ["/timeline/1/write/file"]),
        ("a write to a pattern", lambda d: d["timeline"].insert(1, {"write": {"file": "${lab_dir}/a*", "text": "x"}}),
         ["/timeline/1/write/file"]),
        ("a write with a mode that is not octal", lambda d: d["timeline"].insert(1, {"write": {"file": "${lab_dir}/a", "text": "x", "mode": "644"}}),
         ["/timeline/1/write/mode"]),
        ("a write without text", lambda d: d["timeline"].insert(1, {"write": {"file": "${lab_dir}/a"}}), ["/timeline/1/write"]),
        ("a file condition outside the run's directory",
         lambda d: d["timeline"].insert(1, {"assert": {"file": "/tmp/*", "pointer": "/count", "equals": 0}}), ["/timeline/1/assert/file"]),
        ("a file condition with a stage", lambda d: d["timeline"].insert(1, {"assert": {
            "file": "${lab_dir}/a", "stage": "mip.home_agent", "pointer": "/count", "equals": 0}}), ["/timeline/1/assert/stage"]),
        ("a probe size beyond a jumbo frame", lambda d: d["traffic"]["ping"].update(size=9000), ["/traffic/ping/size"]),
        ("a probe count of zero", lambda d: d["traffic"]["ping"].update(count=0), ["/traffic/ping/count"]),
        ("a stream paced below zero", lambda d: d["traffic"]["stream"].update(pace_ms=-1), ["/traffic/stream/pace_ms"]),
        ("a condition on a traffic generator that does not exist",
         lambda d: d["timeline"][0].update(wait={"traffic": "ghost", "pointer": "/replies", "at_least": 1}), ["/timeline/0/wait/traffic"]),
        ("a status format that does not exist", lambda d: d["timeline"][0]["wait"].update(format="xml"), ["/timeline/0/wait/format"]),
        ("a cable neither pulled nor plugged in", lambda d: d["timeline"].insert(1, {"link": {"host": "mn", "interface": "wlan0", "up": "no"}}),
         ["/timeline/1/link/up"]),
        ("a cable pulled from an interface the host does not have",
         lambda d: d["timeline"].insert(1, {"link": {"host": "mn", "interface": "eth9", "up": False}}), ["/timeline/1/link/interface"]),
        ("forgetting path MTUs on a host that does not exist", lambda d: d["timeline"].insert(1, {"forget_path_mtu": "moon"}),
         ["/timeline/1/forget_path_mtu"]),
        ("a stream paced by a string", lambda d: d["traffic"]["stream"].update(pace_ms="0.5"), ["/traffic/stream/pace_ms"]),
        ("same_as naming an unknown node", lambda d: d["timeline"][0]["wait"].pop("equals") and d["timeline"][0]["wait"].update(
            same_as={"node": "ghost", "pointer": "/x"}), ["/timeline/0/wait/same_as/node"]),
        ("a topology problem and a node config problem, both reported",
         lambda d: (d["hosts"]["cn"]["interfaces"]["eth0"].update(address="10.1.0.1/24"),
                    d["nodes"]["mn"]["config"]["pipeline"][0].update(lifetime_s=-5)),
         ["/hosts/cn/interfaces/eth0/address", "/nodes/mn/config/pipeline/0/lifetime_s"]),
        ("two problems at once", lambda d: (d.update(networkz={}), d["hosts"]["cn"]["interfaces"]["eth0"].update(network="x")),
         ["/networkz", "/hosts/cn/interfaces/eth0/network"]),
    ]
    with tempfile.TemporaryDirectory(prefix="mipsec-lab-check-test-") as tmp:
        refused = broken(base, lambda d: (d["nodes"]["fa"].update(start=False),
                                          d["nodes"]["fa"]["config"]["pipeline"][0].update(advertisement_interval_s=-1),
                                          d["timeline"].insert(1, {"start": "fa", "refused": {
                                              "exit": 2, "message": ["/pipeline/0/advertisement_interval_s", "config"]}})))
        f = os.path.join(tmp, "refused.json")
        with open(f, "w") as out:
            json.dump(refused, out)
        r = lab(args.mipsec, "check", f)
        checks.check("a node only started to be refused may fail mipsec check with the refusal's texts", r.returncode == 0, r.stderr)
        for what, change, pointers in cases:
            f = os.path.join(tmp, "bad.json")
            with open(f, "w") as out:
                json.dump(broken(base, change), out)
            r = lab(args.mipsec, "check", f)
            found = [line.split(": ")[2] for line in r.stderr.splitlines() if line.startswith("mipsec lab: ")]
            checks.check(f"{what}: refused (exit 2) at {', '.join(pointers)}",
                         r.returncode == 2 and sorted(found) == sorted(pointers), f"exit {r.returncode}: {r.stderr.strip()}")
        swan_cases(checks, args, tmp)
        capture_cases(checks, args, tmp)
        outage_cases(checks, args, tmp)
        restart_cases(checks, args, tmp)
        interop_cases(checks, args, tmp)
        r = lab(args.mipsec, "pictures", "mip-roaming", "vpn-only-1a", "--out", os.path.join(tmp, "pictures"))
        svg = os.path.join(tmp, "pictures", "mip-roaming.svg")
        text = open(svg).read() if os.path.exists(svg) else ""
        checks.check("lab pictures draws each named scenario's topology (mip-roaming: its moves and its outage on the cafe link)",
                     r.returncode == 0 and os.path.exists(os.path.join(tmp, "pictures", "vpn-only-1a.svg"))
                     and "<svg" in text and "move 5: wlan0" in text and "3: wlan0 down 2 s" in text, r.stderr + text[:300])
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
    capture_checks(checks)
    overhead_checks(checks)
    return checks.finish()


def outage_cases(checks, args, tmp):
    """The link-loss step: mip-roaming's is valid; a bad one is refused at its pointer."""
    base = json.load(open(os.path.join(SCENARIOS, "mip-roaming.json")))
    k = next((i for i, step in enumerate(base["timeline"]) if "outage" in step), None)
    checks.check("mip-roaming has a link outage step", k is not None)
    if k is None:
        return
    at = f"/timeline/{k}/outage"
    cases = [
        ("an unknown key in an outage", lambda d: d["timeline"][k]["outage"].update(for_s=2), [at + "/for_s"]),
        ("an outage of no time", lambda d: d["timeline"][k]["outage"].update(duration_s=0), [at + "/duration_s"]),
        ("an outage longer than a minute", lambda d: d["timeline"][k]["outage"].update(duration_s=61), [at + "/duration_s"]),
        ("an outage on an interface the host does not have", lambda d: d["timeline"][k]["outage"].update(interface="eth9"),
         [at + "/interface"]),
        ("an outage without a duration", lambda d: d["timeline"][k]["outage"].pop("duration_s"), [at]),
        ("an outage whose until names an unknown node", lambda d: d["timeline"][k]["outage"]["until"][0].update(node="ghost"),
         [at + "/until/0/node"]),
        ("an outage expecting an unknown figure", lambda d: d["timeline"][k]["outage"]["expect"].update(downtime={"at_most": 1}),
         [at + "/expect/downtime"]),
        ("a step with both an outage and a move", lambda d: d["timeline"][k].update(move=next(s["move"] for s in d["timeline"] if "move" in s)),
         [f"/timeline/{k}"]),
    ]
    for what, change, pointers in cases:
        f = os.path.join(tmp, "bad-outage.json")
        with open(f, "w") as out:
            json.dump(broken(base, change), out)
        r = lab(args.mipsec, "check", f)
        found = [line.split(": ")[2] for line in r.stderr.splitlines() if line.startswith("mipsec lab: ")]
        checks.check(f"{what}: refused (exit 2) at {', '.join(pointers)}",
                     r.returncode == 2 and sorted(found) == sorted(pointers), f"exit {r.returncode}: {r.stderr.strip()}")


def interop_cases(checks, args, tmp):
    """The ike_flood traffic kind, a stream's "bytes", "lines" counts, "differs_from" and a
    strongSwan node's rekey times (strongswan-clients), the "swanctl" step, "changed" and a
    strongSwan gateway's "encap" (strongswan-gateway): both valid in each variant; bad values
    are refused at their pointers."""
    for sets in ([], ["--set", "phase=rekey"]):
        r = lab(args.mipsec, "check", "strongswan-clients", *sets)
        checks.check(f"lab check strongswan-clients {' '.join(sets)}: OK", r.returncode == 0, r.stdout + r.stderr)
    base = json.load(open(os.path.join(SCENARIOS, "strongswan-clients.json")))
    flood = lambda d: d["traffic"]["flood"]  # noqa: E731
    flood_asserts = next(k for k, s in enumerate(base["timeline"]) if "assert" in s and "dropping IKE" in json.dumps(s["assert"]))
    logged = next(k for k, c in enumerate(base["timeline"][flood_asserts]["assert"]) if "lines" in c)
    line_at = f"/timeline/{flood_asserts}/assert/{logged}"
    line = lambda d: d["timeline"][flood_asserts]["assert"][logged]  # noqa: E731
    second = next(k for k, s in enumerate(base["timeline"]) if "wait" in s and "differs_from" in json.dumps(s["wait"]))
    differs = next(k for k, c in enumerate(base["timeline"][second]["wait"]) if "differs_from" in c)
    cases = [
        ("a flood from more than 254 addresses", lambda d: flood(d).update(sources=300), ["/traffic/flood/sources"]),
        ("a flood whose addresses run out of the lab's ranges", lambda d: flood(d).update(source="10.255.255.250"), ["/traffic/flood/sources"]),
        ("a flood from an address outside the lab", lambda d: flood(d).update(source="8.8.8.8"), ["/traffic/flood/source"]),
        ("a flood lasting no time, and an unknown key", lambda d: flood(d).update(duration_s=0, rate=5),
         ["/traffic/flood/duration_s", "/traffic/flood/rate"]),
        ("a flood proposal it cannot write", lambda d: flood(d).update(proposal="3des-md5-modp768"), ["/traffic/flood/proposal"]),
        ("a flood to a port that is none", lambda d: flood(d).update(port=70000), ["/traffic/flood/port"]),
        ("a stream ending after fewer bytes than one write", lambda d: d["traffic"]["tcp1"].update(bytes=10), ["/traffic/tcp1/bytes"]),
        ("a \"lines\" that is no regular expression", lambda d: line(d).update(lines="(dropping"), [line_at + "/lines"]),
        ("a \"lines\" count with a string test", lambda d: (line(d).pop("at_least", None), line(d).pop("at_most", None),
                                                            line(d).update(prefix="x")), [line_at + "/prefix"]),
        ("differs_from naming an unknown node", lambda d: d["timeline"][second]["wait"][differs]["differs_from"].update(node="ghost"),
         [f"/timeline/{second}/wait/{differs}/differs_from/node"]),
        ("strongSwan rekey times out of range", lambda d: d["nodes"]["swcli1"]["strongswan"].update(child_rekey_s=1, ike_rekey_s="25s"),
         ["/nodes/swcli1/strongswan/child_rekey_s", "/nodes/swcli1/strongswan/ike_rekey_s"]),
    ]
    for what, change, pointers in cases:
        f = os.path.join(tmp, "bad-interop.json")
        with open(f, "w") as out:
            json.dump(broken(base, change), out)
        r = lab(args.mipsec, "check", f)
        found = [line_.split(": ")[2] for line_ in r.stderr.splitlines() if line_.startswith("mipsec lab: ")]
        checks.check(f"{what}: refused (exit 2) at {', '.join(pointers)}",
                     r.returncode == 2 and sorted(found) == sorted(pointers), f"exit {r.returncode}: {r.stderr.strip()}")
    gw_base = json.load(open(os.path.join(SCENARIOS, "strongswan-gateway.json")))
    delete = next(k for k, s in enumerate(gw_base["timeline"]) if "swanctl" in s)
    sw = lambda d: d["timeline"][delete]["swanctl"]  # noqa: E731
    changed = next(k for k, c in enumerate(gw_base["timeline"][delete]["swanctl"]["until"]) if "changed" in c)
    drop = next(k for k, s in enumerate(gw_base["timeline"]) if "drop" in s)
    dr = lambda d: d["timeline"][drop]["drop"]  # noqa: E731
    hold = next(k for k, s in enumerate(gw_base["timeline"]) if "hold" in s)
    gw_cases = [
        ("a swanctl step on a mipsec node", lambda d: sw(d).update(node="cli"), [f"/timeline/{delete}/swanctl/node"]),
        ("a swanctl step doing what it cannot, on an SA that is none", lambda d: sw(d).update(do="reload", sa="esp"),
         [f"/timeline/{delete}/swanctl/do", f"/timeline/{delete}/swanctl/sa"]),
        ("a swanctl step with an unknown key", lambda d: sw(d).update(args=["--list-sas"]), [f"/timeline/{delete}/swanctl/args"]),
        ("\"changed\" that is not true", lambda d: sw(d)["until"][changed].update(changed=False),
         [f"/timeline/{delete}/swanctl/until/{changed}/changed"]),
        ("\"changed\" in an assert (no start to compare with)",
         lambda d: d["timeline"].append({"assert": dict(sw(d)["until"][changed])}), [f"/timeline/{len(gw_base['timeline'])}/assert/changed"]),
        ("a strongSwan gateway's encap that is no boolean", lambda d: d["nodes"]["swgw"]["strongswan"].update(encap="no"),
         ["/nodes/swgw/strongswan/encap"]),
        ("a CHILD_SA lifetime and rekey jitter out of range",
         lambda d: d["nodes"]["swgw"]["strongswan"].update(child_lifetime_s=0, child_rekey_jitter_s=-1),
         ["/nodes/swgw/strongswan/child_lifetime_s", "/nodes/swgw/strongswan/child_rekey_jitter_s"]),
        ("a drop on a host that does not forward", lambda d: dr(d).update(host="cli"), [f"/timeline/{drop}/drop/host"]),
        ("a drop with bad payload bytes, a port that is none and a count of 0",
         lambda d: dr(d).update(payload=[[0, "0000000000"], [-1, "20"]], udp_source_port=0, count=0),
         [f"/timeline/{drop}/drop/payload/0", f"/timeline/{drop}/drop/payload/1", f"/timeline/{drop}/drop/udp_source_port",
          f"/timeline/{drop}/drop/count"]),
        ("a drop from an address outside the lab", lambda d: dr(d).update(**{"from": "8.8.8.8"}), [f"/timeline/{drop}/drop/from"]),
        ("a hold without \"until\"", lambda d: d["timeline"][hold]["hold"].pop("until"), [f"/timeline/{hold}/hold"]),
        ("a hold on an unknown node", lambda d: d["timeline"][hold]["hold"]["conditions"][0].update(node="ghost"),
         [f"/timeline/{hold}/hold/conditions/0/node"]),
    ]
    for what, change, pointers in gw_cases:
        f = os.path.join(tmp, "bad-interop.json")
        with open(f, "w") as out:
            json.dump(broken(gw_base, change), out)
        r = lab(args.mipsec, "check", f)
        found = [line_.split(": ")[2] for line_ in r.stderr.splitlines() if line_.startswith("mipsec lab: ")]
        checks.check(f"{what}: refused (exit 2) at {', '.join(pointers)}",
                     r.returncode == 2 and sorted(found) == sorted(pointers), f"exit {r.returncode}: {r.stderr.strip()}")
    for sets in ([], ["--set", "phase=rebind"], ["--set", "psk_ok=false"], ["--set", "phase=collision"]):
        r = lab(args.mipsec, "check", "strongswan-gateway", *sets)
        checks.check(f"lab check strongswan-gateway {' '.join(sets)}: OK", r.returncode == 0, r.stdout + r.stderr)
    sys.dont_write_bytecode = True  # nothing written into the source tree
    from lab import ike_flood  # noqa: E402
    mm1 = ike_flood.main_mode_first("aes256-sha384-modp3072", b"\x11" * 8)
    # RFC 2408 §3.1: CKY-I, a zero CKY-R, next payload SA (1), version 1.0, Identity Protection (2), message ID 0, length.
    checks.check("an ike_flood MM1: ISAKMP header of Identity Protection with one SA payload, its length in the header",
                 mm1[:16] == b"\x11" * 8 + bytes(8) and mm1[16:20] == bytes([1, 0x10, 2, 0]) and mm1[20:24] == bytes(4)
                 and int.from_bytes(mm1[24:28], "big") == len(mm1) and int.from_bytes(mm1[30:32], "big") == len(mm1) - 28, mm1.hex())
    checks.check("an ike_flood MM1 asks for AES-256-CBC, SHA2-384, PSK, MODP-3072 (RFC 2409 appendix A)",
                 all(bytes.fromhex(a) in mm1 for a in ("80010007", "800e0100", "80020005", "80030001", "8004000f")), mm1.hex())


def restart_cases(checks, args, tmp):
    """A restart's options (a kill, a row of the move table): a good one is valid; bad ones
    are refused at their pointers."""
    base = json.load(open(os.path.join(SCENARIOS, "mip-roaming.json")))
    k = next(i for i, step in enumerate(base["timeline"]) if "move" in step) + 1
    base["timeline"].insert(k, {"restart": "fa", "kill": True, "host": "mn",
                                "while_down": {"host": "fa", "ip": ["link", "show", "lan0"], "pointer": "/0/ifname", "equals": "lan0"},
                                "until": {"node": "mn", "stage": "mip.mobile_node", "pointer": "/state/registered", "equals": True},
                                "after": {"node": "fa", "stage": "mip.foreign_agent", "pointer": "/state/visitor_count", "equals": 1},
                                "expect": {"link_to_first_packet_ms": {"at_most": 3000}}})
    good = os.path.join(tmp, "good-restart.json")
    with open(good, "w") as out:
        json.dump(base, out)
    r = lab(args.mipsec, "check", good)
    checks.check("a restart with kill, host, until, after and expect is valid", r.returncode == 0, r.stderr)
    at = f"/timeline/{k}"
    cases = [
        (base, "a kill that is not true or false", lambda d: d["timeline"][k].update(kill="yes"), [at + "/kill"]),
        (base, "a restart's until without a host", lambda d: d["timeline"][k].pop("host"),
         [at + "/until", at + "/after", at + "/expect"]),
        (base, "a restart row for a host that does not exist", lambda d: d["timeline"][k].update(host="moon"), [at + "/host"]),
        (base, "a restart's while_down naming an unknown node", lambda d: d["timeline"][k].update(
            while_down={"node": "ghost", "pointer": "/x", "equals": 1}), [at + "/while_down/node"]),
        (base, "a restart expecting an unknown figure", lambda d: d["timeline"][k]["expect"].update(downtime={"at_most": 1}),
         [at + "/expect/downtime"]),
        (base, "a kill on a stop", lambda d: d["timeline"].insert(k, {"stop": "fa", "kill": True}), [at + "/kill"]),
    ]
    for doc, what, change, pointers in cases:
        f = os.path.join(tmp, "bad-restart.json")
        with open(f, "w") as out:
            json.dump(broken(doc, change), out)
        r = lab(args.mipsec, "check", f)
        found = [line.split(": ")[2] for line in r.stderr.splitlines() if line.startswith("mipsec lab: ")]
        checks.check(f"{what}: refused (exit 2) at {', '.join(pointers)}",
                     r.returncode == 2 and sorted(found) == sorted(pointers), f"exit {r.returncode}: {r.stderr.strip()}")


def overhead_checks(checks):
    """Bytes of overhead per packet from a capture: the probe's packets only, outer minus
    inner IP length, inside ESP once tshark has the key table; the report's column says
    where the number came from; a run with captures has its IPsec stages log their keys."""
    import shutil
    import struct
    from lab import capture, report, runner

    def frame(layers, src, dst, icmp, ip_len):
        return capture.Frame("\t".join(["1", "100.0", "eth:ethertype:" + layers, src, dst, icmp, "", ip_len]))
    rows = [
        ("an echo in IP-in-IP", frame("ip:ip:icmp:data", "198.18.1.2,10.1.0.10", "192.0.2.100,10.1.0.77", "8", "104,84"), 20),
        ("an echo reply in RFC 3519 tunnel data", frame("ip:udp:mip:ip:icmp:data", "10.20.0.5,10.1.0.77", "198.18.1.2,10.1.0.10",
                                                         "0", "116,84"), 32),
        ("a decrypted echo in ESP in IP-in-IP", frame("ip:ip:esp:ip:icmp:data", "198.18.1.2,198.18.5.2,10.1.0.10",
                                                       "192.0.2.100,203.0.113.77,10.1.0.77", "8", "197,177,84"), 113),
        ("an echo at home, no tunnel", frame("ip:icmp:data", "10.1.0.10", "10.1.0.77", "8", "84"), 0),
        ("ESP tshark could not decrypt", frame("ip:esp", "198.18.5.2", "203.0.113.77", "", "177"), None),
        ("an echo to another address (the RFC 3519 keepalive)", frame("ip:udp:mip:ip:icmp", "10.20.0.5,10.1.0.77",
                                                                       "198.18.1.2,198.18.1.2", "8", "88,28"), None),
        ("an ICMP error quoting an echo", frame("ip:ip:icmp:ip:icmp", "198.18.1.2,10.1.0.1,10.1.0.10", "192.0.2.100,10.1.0.10,10.1.0.77",
                                                 "3,8", "124,104,84"), None),
        ("TCP in IP-in-IP", frame("ip:ip:tcp", "198.18.1.2,10.1.0.10", "192.0.2.100,10.1.0.77", "", "1500,1480"), None),
    ]
    for what, f, want in rows:
        got = capture.overhead(f, "10.1.0.77")
        checks.check(f"overhead: {what}: {want}", got == want, str(got))
    row = {"move": "m", "overhead_bytes": 36, "overhead_source": "capture cafe, 40 of 40 probe packets"}
    table = report.move_table([row, {"move": "n", "overhead_bytes": 32, "overhead_source": "status"}, {"move": "o"}])
    checks.check("the move table's overhead column names its source",
                 "36 (capture cafe, 40 of 40 probe packets)" in table and "| 32 (status) |" in table and "overhead per packet" in table,
                 table)
    # The key log each IPsec stage gets in a run with captures (an explicit one is kept).
    run = runner.Run.__new__(runner.Run)
    run.lab = type("L", (), {"dir": "/run/lab"})()
    cfg = {"pipeline": [{"type": "mip.mobile_node"}, {"type": "ipsec.vpn_client"}, {"type": "ipsec.vpn_gateway", "key_log": "/k"},
                        {"type": "ipsec.esp_tunnel"}]}
    run.log_keys("cli", cfg)
    p = cfg["pipeline"]
    checks.check("a run with captures: vpn_client logs to a prefix, esp_tunnel to an esp_sa file, a given key_log stays",
                 "key_log" not in p[0] and p[1]["key_log"] == "/run/lab/keys-cli-1" and p[2]["key_log"] == "/k"
                 and p[3]["key_log"] == "/run/lab/keys-cli-3.esp_sa", json.dumps(p))
    if shutil.which("tshark") is None:
        checks.check("tshark is installed (tools/install-deps.sh)", False)
        return

    # tshark itself: an echo in ESP (NULL encryption, no ICV, so the test needs no crypto) in
    # IP-in-IP; with the esp_sa line the overhead is measured inside, without it there is none.
    def ipv4(src, dst, proto, payload):
        h = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(payload), 1, 0, 64, proto, 0, bytes(map(int, src.split("."))),
                        bytes(map(int, dst.split("."))))
        return h + payload
    echo = struct.pack("!BBHHH", 8, 0, 0, 7, 1) + bytes(56)
    inner = ipv4("10.99.1.10", "10.99.1.77", 1, echo)
    pad = bytes(range(1, 3))  # RFC 4303 §2.4: 84 + 2 + 2 is a multiple of 4
    esp = struct.pack("!II", 0x1234, 1) + inner + pad + bytes([len(pad), 4])
    outer = ipv4("198.18.1.2", "192.0.2.100", 4, ipv4("198.18.5.2", "203.0.113.77", 50, esp))
    eth = b"\x02\0\0\0\0\1" + b"\x02\0\0\0\0\2" + b"\x08\x00" + outer
    with tempfile.TemporaryDirectory(prefix="mipsec-lab-overhead-") as tmp:
        path = os.path.join(tmp, "esp.pcap")
        with open(path, "wb") as f:
            f.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
            f.write(struct.pack("<IIII", 100, 0, len(eth), len(eth)) + eth)
        line = '"IPv4","198.18.5.2","203.0.113.77","0x00001234","NULL","","NULL",""'
        plain = capture.read(path)
        opened = capture.read(path, options=capture.decrypt_options([line], []))
        want = len(outer) - len(inner)
        got = capture.overhead(opened[0], "10.99.1.77") if opened else None
        checks.check(f"tshark with the esp_sa table: the echo inside ESP in IP-in-IP, {want} bytes of overhead ({got})",
                     got == want and capture.classify(opened[0]) == "mip-tunnelled esp", opened[0].describe() if opened else "no frame")
        checks.check("without the key table: ESP stays opaque, no overhead measured",
                     len(plain) == 1 and capture.overhead(plain[0], "10.99.1.77") is None, plain[0].describe() if plain else "no frame")
        # A port unreachable quoting the start of that ESP packet (a NAT that forgot the
        # mapping): tshark dissects the cut quote as far as it goes and finds an error-level
        # item in it; "clean" leaves ICMP errors aside.
        esp_ip = ipv4("198.18.5.2", "203.0.113.77", 50, esp)
        unreachable = ipv4("203.0.113.1", "198.18.5.2", 1, struct.pack("!BBHI", 3, 3, 0, 0) + esp_ip[:28 + 8])
        quoted = os.path.join(tmp, "quoted.pcap")
        with open(quoted, "wb") as f:
            f.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
            for k, frame in enumerate((esp_ip, unreachable)):
                frame = b"\x02\0\0\0\0\1" + b"\x02\0\0\0\0\2" + b"\x08\x00" + frame
                f.write(struct.pack("<IIII", 100 + k, 0, len(frame), len(frame)) + frame)
        options = capture.decrypt_options([line], [])
        raw = subprocess.run(["tshark", "-r", quoted, "-n", *options, "-Y", "_ws.malformed || _ws.expert.severity == error",
                              "-T", "fields", "-e", "frame.number"], capture_output=True, text=True, timeout=60).stdout.split()
        bad = capture.problems(quoted, options)
        checks.check(f"clean: an ICMP error quoting the start of an ESP packet is left aside (tshark flags frames {raw}; problems {bad})",
                     raw == ["2"] and bad == [], str(bad))


def capture_cases(checks, args, tmp):
    """Captures, quiet windows and the newer expects and tests: refused at their pointers."""
    base = json.load(open(os.path.join(SCENARIOS, "rfc5265-walk.json")))
    home_quiet, home_wait, first_move = 2, 3, 4
    assert "quiet" in base["timeline"][home_quiet] and "wait" in base["timeline"][home_wait] and "move" in base["timeline"][first_move]
    cases = [
        ("a capture on a network that does not exist", lambda d: d["captures"].update(moon={"outside": True}), ["/captures/moon"]),
        ("a capture whose outside is not a boolean", lambda d: d["captures"]["cafe"].update(outside="yes"), ["/captures/cafe/outside"]),
        ("a capture that carries a protocol sequence tshark cannot write",
         lambda d: d["captures"]["cafe"].update(carries=["ip::esp"]), ["/captures/cafe/carries/0"]),
        ("a capture whose clean is not a boolean", lambda d: d["captures"]["cafe"].update(clean=1), ["/captures/cafe/clean"]),
        ("a capture whose decrypted is not a boolean", lambda d: d["captures"]["cafe"].update(decrypted="all"),
         ["/captures/cafe/decrypted"]),
        ("a quiet window on a network not captured", lambda d: d["timeline"][home_quiet]["quiet"].update(captures=["lan"]),
         ["/timeline/2/quiet/captures/0"]),
        ("a quiet window with a protocol tshark cannot name", lambda d: d["timeline"][home_quiet]["quiet"].update(protocols=["ESP!"]),
         ["/timeline/2/quiet/protocols/0"]),
        ("a quiet window with a broken protocol chain", lambda d: d["timeline"][home_quiet]["quiet"].update(protocols=["ip::esp"]),
         ["/timeline/2/quiet/protocols/0"]),
        ("contains with an object (neither a list element nor a substring)",
         lambda d: d["timeline"][home_wait]["wait"].pop("increased_by") and d["timeline"][home_wait]["wait"].update(contains={"a": 1}),
         ["/timeline/3/wait/contains"]),
        ("exceeds that is not a JSON pointer",
         lambda d: d["timeline"][home_wait]["wait"].pop("increased_by") and d["timeline"][home_wait]["wait"].update(exceeds="requests"),
         ["/timeline/3/wait/exceeds"]),
        ("registrations_per_layer that is not a list of bounds",
         lambda d: d["timeline"][first_move]["move"]["expect"].update(registrations_per_layer={"at_least": 1}),
         ["/timeline/4/move/expect/registrations_per_layer"]),
        ("an access_mode bound with two tests",
         lambda d: d["timeline"][first_move]["move"]["expect"].update(access_mode={"equals": "c", "in": ["c"]}),
         ["/timeline/4/move/expect/access_mode"]),
        ("increased_by in an assert (no start to compare with)",
         lambda d: d["timeline"].__setitem__(home_wait, {"assert": d["timeline"][home_wait]["wait"]}), ["/timeline/3/assert/increased_by"]),
        ("increased_by that is not a positive number", lambda d: d["timeline"][home_wait]["wait"].update(increased_by=0),
         ["/timeline/3/wait/increased_by"]),
        ("a NAT flush on a host that is no NAT, and on one that does not exist",
         lambda d: (d["timeline"].insert(0, {"nat_flush": "moon"}), d["timeline"].insert(0, {"nat_flush": "cn"})),
         ["/timeline/0/nat_flush", "/timeline/1/nat_flush"]),
    ]
    for what, change, pointers in cases:
        f = os.path.join(tmp, "bad-walk.json")
        with open(f, "w") as out:
            json.dump(broken(base, change), out)
        r = lab(args.mipsec, "check", f)
        found = [line.split(": ")[2] for line in r.stderr.splitlines() if line.startswith("mipsec lab: ")]
        checks.check(f"{what}: refused (exit 2) at {', '.join(pointers)}",
                     r.returncode == 2 and sorted(found) == sorted(pointers), f"exit {r.returncode}: {r.stderr.strip()}")


def capture_checks(checks):
    """What an outside link may carry: the classes of frames as tshark dissects them."""
    import ipaddress
    import shutil
    import struct
    from lab import capture

    def frame(layers, src="", dst="", icmp="", mip=""):
        return capture.Frame("\t".join(["1", "100.0", "eth:ethertype:" + layers, src, dst, icmp, mip]))
    cafe = ipaddress.IPv4Network("192.0.2.0/24")
    rows = [
        ("TCP from the intranet home address", frame("ip:tcp", "10.99.1.77", "10.99.1.10"), "clear"),
        ("an ICMP echo between intranet hosts", frame("ip:icmp:data", "10.99.1.10", "10.99.1.77", "8"), "clear"),
        ("ESP", frame("ip:esp", "203.0.113.77", "198.18.5.2"), "esp"),
        ("ESP in UDP 4500", frame("ip:udp:udpencap:esp", "10.20.0.1", "198.18.5.2"), "esp"),
        ("a NAT-T keepalive", frame("ip:udp:udpencap", "10.20.0.1", "198.18.5.2"), "nat-t keepalive"),
        ("IKE", frame("ip:udp:isakmp", "203.0.113.77", "198.18.5.2"), "ike"),
        ("a registration request", frame("ip:udp:mip", "192.0.2.100", "10.99.1.5", "", "1"), "registration"),
        ("ESP in IP-in-IP", frame("ip:ip:esp", "198.18.1.2,198.18.5.2", "192.0.2.100,203.0.113.77"), "mip-tunnelled esp"),
        ("IKE in RFC 3519 tunnel data", frame("ip:udp:mip:ip:udp:isakmp", "198.18.3.2,203.0.113.77", "198.18.1.2,198.18.5.2", "", "4"),
         "mip-tunnelled ike"),
        ("TCP in IP-in-IP", frame("ip:ip:tcp", "198.18.1.2,10.99.1.10", "192.0.2.100,10.99.1.77"), "clear"),
        ("TCP in RFC 3519 tunnel data", frame("ip:udp:mip:ip:tcp", "198.18.1.2,10.99.1.10", "10.20.0.5,10.99.1.77", "", "4"), "clear"),
        ("the RFC 3519 keepalive (an echo to the tunnel's home agent)",
         frame("ip:udp:mip:ip:icmp", "10.20.0.5,203.0.113.77", "198.18.1.2,198.18.1.2", "8", "4"), "tunnel keepalive"),
        ("a user's echo through the tunnel", frame("ip:udp:mip:ip:icmp", "198.18.1.2,10.99.1.10", "10.20.0.5,10.99.1.77", "0", "4"),
         "clear"),
        ("an ICMP error about a registration", frame("ip:icmp:ip:udp:mip", "198.18.2.1,192.0.2.100", "192.0.2.100,10.99.1.5", "3", "1"),
         "icmp error"),
        ("an ICMP error quoting TCP", frame("ip:icmp:ip:tcp", "198.18.2.1,10.99.1.77", "192.0.2.100,10.99.1.10", "3"), "clear"),
        ("an agent advertisement", frame("ip:icmp:mip", "198.51.100.1", "255.255.255.255", "9"), "agent discovery"),
        ("MLD", frame("ipv6:ipv6.hopopts:icmpv6"), "link"),
        ("UDP data", frame("ip:udp:data", "192.0.2.100", "198.18.1.2"), "clear"),
    ]
    for what, f, want in rows:
        got = capture.classify(f, cafe)
        checks.check(f"capture class: {what} is {want}", got == want, got)
    probe = frame("ip:icmp:data", "192.0.2.1", "192.0.2.132", "8")
    checks.check("capture class: a DHCP server's address probe on its own link is link control, on another link it is not",
                 capture.classify(probe, cafe) == "link" and capture.classify(probe, ipaddress.IPv4Network("10.20.0.0/24")) == "clear")
    if shutil.which("tshark") is None:
        checks.check("tshark is installed (tools/install-deps.sh)", False)
        return
    # tshark itself: TCP from the intranet home address inside RFC 3519 tunnel data is dissected
    # down to the TCP header, so it is found in the clear.
    def ipv4(src, dst, proto, payload):
        h = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(payload), 1, 0, 64, proto, 0, bytes(map(int, src.split("."))),
                        bytes(map(int, dst.split("."))))
        return h + payload
    tcp = struct.pack("!HHIIBBHHH", 40000, 5001, 1, 0, 0x50, 0x18, 65535, 0, 0) + b"user data"
    inner = ipv4("10.99.1.10", "10.99.1.77", 6, tcp)
    mip = bytes([4, 4, 0, 0]) + inner
    outer = ipv4("198.18.1.2", "10.20.0.5", 17, struct.pack("!HHHH", 434, 434, 8 + len(mip), 0) + mip)
    eth = b"\x02\0\0\0\0\1" + b"\x02\0\0\0\0\2" + b"\x08\x00" + outer
    with tempfile.TemporaryDirectory(prefix="mipsec-lab-capture-") as tmp:
        path = os.path.join(tmp, "one.pcap")
        with open(path, "wb") as f:
            f.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
            f.write(struct.pack("<IIII", 100, 0, len(eth), len(eth)) + eth)
        frames = capture.read(path)
        checks.check("tshark dissects RFC 3519 tunnel data down to the TCP inside: in the clear",
                     len(frames) == 1 and "tcp" in frames[0].layers and capture.classify(frames[0]) == "clear",
                     frames[0].describe() if frames else "no frame")


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
    checks.check("quiet protocol chains: \"ip:esp\" is ESP straight in IP, not ESP in UDP 4500",
                 runner.has_layers(["eth", "ethertype", "ip", "esp"], "ip:esp")
                 and not runner.has_layers(["eth", "ethertype", "ip", "udp", "udpencap", "esp"], "ip:esp")
                 and runner.has_layers(["eth", "ethertype", "ip", "udp", "udpencap", "esp"], "udpencap:esp")
                 and runner.has_layers(["eth", "ethertype", "ip", "udp", "udpencap", "esp"], "esp"))
    checks.check("decrypted: ESP tshark read into has an IP packet right inside it, opaque ESP has not",
                 runner.has_layers(["eth", "ethertype", "ip", "udp", "udpencap", "esp", "ip", "tcp"], "esp:ip")
                 and not runner.has_layers(["eth", "ethertype", "ip", "udp", "udpencap", "esp"], "esp:ip"))
    # "contains" and "exceeds" on a recorded status, both fields read in one answer.
    run = runner.Run.__new__(runner.Run)
    run.doc, run.snapshot, queries = {"parameters": {}}, None, []
    status = {"tun": {"offload": {"granted": ["csum", "tso4"], "rx_super_packets": 3, "rx_segments": 40}}, "name": "cli-a"}
    run.query_status = lambda node: queries.append(node) or status

    def cond(test, value, pointer="/tun/offload/rx_segments"):
        return {"node": "cli", "pointer": pointer, test: value}
    checks.check("contains: an element of a list, a part of a string; not a missing one",
                 run.holds(cond("contains", "tso4", "/tun/offload/granted")) and run.holds(cond("contains", "li-", "/name"))
                 and not run.holds(cond("contains", "tso6", "/tun/offload/granted")) and not run.holds(cond("contains", 4, "/name")))
    queries.clear()
    checks.check("exceeds: greater than another field of the same answer (one status query)",
                 run.holds(cond("exceeds", "/tun/offload/rx_super_packets")) and queries == ["cli"]
                 and not run.holds(cond("exceeds", "/tun/offload/rx_segments")) and not run.holds(cond("exceeds", "/tun/missing")),
                 str(queries))
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
        checks.check(f"probe account: 6 replies, 4 lost between the first and the latest ({probe.account()})",
                     probe.account() == {"replies": 6, "lost": 4})
        run.probes, run.streams = {"ping": probe}, {}
        run.floods = {}
        checks.check("a traffic condition reads a probe's account; an unknown one is no value",
                     run.holds({"traffic": "ping", "pointer": "/lost", "equals": 4}) and run.holds({"traffic": "ping", "pointer": "/replies", "at_least": 6})
                     and not run.holds({"traffic": "gone", "pointer": "/lost", "equals": 0}))
        leases = os.path.join(tmp, "leases")
        open(leases, "w").write("99.5 bound 10.0.0.1\n103.25 bound 192.0.2.100\n")
        checks.check("lease time: the first lease after the link change", runner.lease_time(leases, 100.0) == 103.25
                     and runner.lease_time(leases, 104.0) is None and runner.lease_time(os.path.join(tmp, "none"), 0) is None)
    # "lines" counts the lines a regex finds something in; "differs_from" needs both values, unequal.
    run.query_status = lambda node: {"log": "a\nwarn dropping IKE from 1\nb\nwarn dropping IKE from 2", "vip": "10.99.100." + node[-1]}
    checks.check("lines: counts matching lines, then the numeric test; a missing field is no value",
                 run.holds({"node": "c1", "pointer": "/log", "lines": r"dropping IKE from \d", "equals": 2})
                 and not run.holds({"node": "c1", "pointer": "/log", "lines": "dropping", "at_most": 1})
                 and not run.holds({"node": "c1", "pointer": "/none", "lines": "x", "equals": 0}))
    checks.check("differs_from: two addresses that differ; not the same one, not a missing one",
                 run.holds({"node": "c1", "pointer": "/vip", "differs_from": {"node": "c2", "pointer": "/vip"}})
                 and not run.holds({"node": "c1", "pointer": "/vip", "differs_from": {"node": "d1", "pointer": "/vip"}})
                 and not run.holds({"node": "c1", "pointer": "/vip", "differs_from": {"node": "c2", "pointer": "/none"}}))


if __name__ == "__main__":
    sys.exit(main())

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
from lab.netns import Checks  # noqa: E402

SCENARIOS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tools", "lab", "scenarios")


def lab(mipsec, *args, env=None):
    return subprocess.run([mipsec, "lab", *args], capture_output=True, text=True, timeout=60, env=env)


def broken(base, change):
    doc = copy.deepcopy(base)
    change(doc)
    return doc


def check_refused(checks, args, path, base, cases):
    """Each (what, change, pointers): `base` changed so, written to `path`, is refused by `mipsec
    lab check` (exit 2) naming exactly those JSON pointers."""
    for what, change, pointers in cases:
        with open(path, "w") as out:
            json.dump(broken(base, change), out)
        r = lab(args.mipsec, "check", path)
        found = [line.split(": ")[2] for line in r.stderr.splitlines() if line.startswith("mipsec lab: ")]
        checks.check(f"{what}: refused (exit 2) at {', '.join(pointers)}",
                     r.returncode == 2 and sorted(found) == sorted(pointers), f"exit {r.returncode}: {r.stderr.strip()}")


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
        ("a forger with a key not in hex, a reserved SPI, from a host that does not exist",
         lambda d: d["traffic"].update(forger={"kind": "forged_replies", "from": "moon", "address": "10.1.0.1", "key": "wrong key", "spi": 255}),
         ["/traffic/forger/from", "/traffic/forger/key", "/traffic/forger/spi"]),
        ("a forger without an address, its TNC flag a string",
         lambda d: d["traffic"].update(forger={"kind": "forged_replies", "from": "cn", "key": "0f0f", "spi": 400, "trusted_networks": "yes"}),
         ["/traffic/forger", "/traffic/forger/trusted_networks"]),
        ("a forger answering for an address outside the lab's ranges",
         lambda d: d["traffic"].update(forger={"kind": "forged_replies", "from": "cn", "address": "8.8.8.8", "key": "0f0f", "spi": 400}),
         ["/traffic/forger/address"]),
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
        check_refused(checks, args, os.path.join(tmp, "bad.json"), base, cases)
        swan_cases(checks, args, tmp)
        capture_cases(checks, args, tmp)
        outage_cases(checks, args, tmp)
        restart_cases(checks, args, tmp)
        round_cases(checks, args, tmp)
        packets_cases(checks, args, tmp)
        process_cases(checks, args, tmp)
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
    remembered_checks(checks)
    capture_checks(checks)
    overhead_checks(checks)
    packet_checks(checks)
    forger_checks(checks)
    return checks.finish()


def forger_checks(checks):
    """The forged reply is what a home agent would send (RFC 5944 §3.4) but for its key: the
    request's home address and identification, the TNC extension (RFC 5265 §5) when asked, and
    an authenticator that verifies with the forger's key only."""
    import hashlib
    import hmac
    from lab import forger
    request = bytes([1, 0x1a, 0, 60]) + bytes([10, 99, 1, 77]) + bytes([10, 99, 1, 5]) + bytes([192, 0, 2, 100]) + bytes(range(8))
    key = bytes.fromhex("0f" * 16)
    r = forger.reply(request, "10.99.1.5", key, 400, True)
    body, auth = r[:-16], r[-16:]
    checks.check("forger: a success reply for the request's home address and identification, from the home agent's address",
                 r[0] == 3 and r[1] == 0 and r[4:8] == request[4:8] and r[8:12] == bytes([10, 99, 1, 5]) and r[12:20] == request[16:24])
    checks.check("forger: the TNC extension, then the MHAE under SPI 400 that verifies with the forger's key and not another",
                 r[20:24] == bytes([149, 2, 0, 0]) and r[24:30] == bytes([32, 20, 0, 0, 1, 144])
                 and auth == hmac.new(key, body, hashlib.md5).digest() and auth != hmac.new(bytes(16), body, hashlib.md5).digest())
    checks.check("forger: without trusted_networks, no TNC extension", forger.reply(request, "10.99.1.5", key, 400, False)[20] == 32)


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
    check_refused(checks, args, os.path.join(tmp, "bad-outage.json"), base, cases)


def round_cases(checks, args, tmp):
    """Rounds of steps ("repeat"), values remembered for a later "same_as", a process's
    figures, "length", "within"/"ignoring" and host sysctls: rfc5265-soak's are valid; bad
    ones are refused at their pointers."""
    base = json.load(open(os.path.join(SCENARIOS, "rfc5265-soak.json")))
    k = next(i for i, step in enumerate(base["timeline"]) if "repeat" in step)
    m = next(i for i, step in enumerate(base["timeline"]) if "remember" in step)
    a = next(i for i, step in enumerate(base["timeline"]) if i > m and "assert" in step)
    fds = {"process": "mn", "pointer": "/fds", "same_as": {"remembered": "mn-fds"}}
    cases = [
        ("a repeat of no rounds", lambda d: d["timeline"][k].update(repeat=0), [f"/timeline/{k}/repeat"]),
        ("a repeat without steps", lambda d: d["timeline"][k].pop("steps"), [f"/timeline/{k}"]),
        ("steps on a step that is not a repeat", lambda d: d["timeline"][0].update(steps=[]), ["/timeline/0/steps"]),
        ("a move to nowhere inside a repeat", lambda d: d["timeline"][k]["steps"][0]["move"].update(to="moon"),
         [f"/timeline/{k}/steps/0/move/to"]),
        ("same_as a value never remembered", lambda d: d["timeline"][a]["assert"][0]["same_as"].update(remembered="ghost"),
         [f"/timeline/{a}/assert/0/same_as/remembered"]),
        ("same_as a value remembered only later", lambda d: d["timeline"].insert(0, {"assert": dict(fds)}),
         ["/timeline/0/assert/same_as/remembered"]),
        ("a remembered value with a test", lambda d: d["timeline"][m]["remember"]["mn-fds"].update(equals=3),
         [f"/timeline/{m + 0}/remember/mn-fds/equals"]),
        ("a process pointer that is not a JSON pointer", lambda d: d["timeline"][a]["assert"][0].update(pointer="vmsize"),
         [f"/timeline/{a}/assert/0/pointer"]),
        ("the process of a node that does not exist", lambda d: d["timeline"][a]["assert"][0].update(process="ghost"),
         [f"/timeline/{a}/assert/0/process"]),
        ("within without same_as", lambda d: d["timeline"].insert(0, {"assert": {"node": "mn", "pointer": "/x", "equals": 1, "within": 2}}),
         ["/timeline/0/assert/within"]),
        ("a negative tolerance", lambda d: d["timeline"][a]["assert"][1].update(within=-1), [f"/timeline/{a}/assert/1/within"]),
        ("ignoring that is not a list of keys", lambda d: d["timeline"][a]["assert"][0].update(ignoring="no_route"),
         [f"/timeline/{a}/assert/0/ignoring"]),
        ("a length bound that is not a count", lambda d: d["timeline"].insert(0, {"assert": {"node": "mn", "pointer": "/x", "length": {"at_most": -1}}}),
         ["/timeline/0/assert/length"]),
        ("a sysctl outside the host's network stack", lambda d: d["hosts"]["mn"].update(sysctl={"kernel.panic": 1}),
         ["/hosts/mn/sysctl/kernel.panic"]),
    ]
    check_refused(checks, args, os.path.join(tmp, "bad-round.json"), base, cases)


def remembered_checks(checks):
    """same_as with a remembered value, a tolerance and keys left out; a process's figures."""
    sys.dont_write_bytecode = True
    from lab import runner  # noqa: E402
    sv = runner.same_value
    checks.check("same_as: numbers within the tolerance at any depth, not beyond it",
                 sv({"a": [1000, 5]}, {"a": [1900, 5]}, 1024) and not sv({"a": [1000, 5]}, {"a": [2100, 5]}, 1024)
                 and sv(3, 3) and not sv(3, 4) and not sv("3", 3, 5) and not sv(True, 1, 1))
    checks.check("same_as: ignored keys may grow or appear, any other may not",
                 sv({"no_route": 3}, {"no_route": 9, "not_registered": 2}, 0, ("no_route", "not_registered"))
                 and not sv({"no_route": 3}, {"no_route": 3, "no_sa": 1}, 0, ("no_route",))
                 and not sv({"no_sa": 1}, {"no_sa": 2}, 0, ("no_route",)))
    run = runner.Run.__new__(runner.Run)
    run.procs, run.charons = {"me": type("P", (), {"pid": os.getpid(), "poll": lambda self: None})()}, {}
    fig = run.process_status("me")
    checks.check(f"a process's VmRSS and descriptors from /proc ({ {k: fig[k] for k in ('pid', 'rss_kib', 'fd_count')} })",
                 fig is not runner.MISSING and fig["pid"] == os.getpid() and fig["rss_kib"] > 0
                 and fig["fd_count"] == len(fig["fds"]) >= 3 and fig["Pid"] == str(os.getpid()))
    run.doc, run.snapshot, run.remembered = {"parameters": {}}, None, {"fds": fig["fd_count"], "drops": {"no_route": 1}}
    status = {"pipeline": [{"type": "x", "drops": {"no_route": 4}, "state": {"sas": [1, 2, 3]}}]}
    run.query_status = lambda node: status
    checks.check("same_as a remembered value; length of a list",
                 run.holds({"node": "n", "pointer": "/pipeline/0/drops", "same_as": {"remembered": "drops"}, "ignoring": ["no_route"]})
                 and not run.holds({"node": "n", "pointer": "/pipeline/0/drops", "same_as": {"remembered": "drops"}})
                 and not run.holds({"node": "n", "pointer": "/pipeline/0/drops", "same_as": {"remembered": "gone"}})
                 and run.holds({"node": "n", "stage": "x", "pointer": "/state/sas", "length": {"at_least": 3, "at_most": 3}})
                 and not run.holds({"node": "n", "stage": "x", "pointer": "/state/sas", "length": {"at_most": 2}}))
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
    check_refused(checks, args, os.path.join(tmp, "bad-interop.json"), base, cases)
    gw_base = json.load(open(os.path.join(SCENARIOS, "strongswan-gateway.json")))
    delete = next(k for k, s in enumerate(gw_base["timeline"]) if "swanctl" in s)
    sw = lambda d: d["timeline"][delete]["swanctl"]  # noqa: E731
    changed = next(k for k, c in enumerate(gw_base["timeline"][delete]["swanctl"]["until"]) if "changed" in c)
    drop = next(k for k, s in enumerate(gw_base["timeline"]) if "drop" in s)
    dr = lambda d: d["timeline"][drop]["drop"]  # noqa: E731
    hold = next(k for k, s in enumerate(gw_base["timeline"]) if "throughout" in s)
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
        ("throughout on an unknown node", lambda d: d["timeline"][hold]["throughout"][0].update(node="ghost"),
         [f"/timeline/{hold}/throughout/0/node"]),
    ]
    check_refused(checks, args, os.path.join(tmp, "bad-interop.json"), gw_base, gw_cases)
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
        check_refused(checks, args, os.path.join(tmp, "bad-restart.json"), doc, [(what, change, pointers)])


def process_cases(checks, args, tmp):
    """Signals, config changes, node launch options and the process, notify, HTTP and TCP
    condition sources: the reload scenario's are valid; bad ones are refused at their pointers."""
    base = json.load(open(os.path.join(SCENARIOS, "reload.json")))
    sig = next(i for i, step in enumerate(base["timeline"]) if "signal" in step)
    cfg = next(i for i, step in enumerate(base["timeline"]) if "config" in step)
    end = len(base["timeline"])

    def add(step):
        return lambda d: d["timeline"].append(step)

    cases = [
        ("a signal that is not one of the list", lambda d: d["timeline"][sig]["signal"].update(name="SEGV"), [f"/timeline/{sig}/signal/name"]),
        ("a signal to an unknown node", lambda d: d["timeline"][sig]["signal"].update(node="ghost"), [f"/timeline/{sig}/signal/node"]),
        ("a signal's until naming an unknown node", lambda d: d["timeline"][sig]["signal"]["until"].update(node="ghost"),
         [f"/timeline/{sig}/signal/until/node"]),
        ("a config change under a key the config does not have",
         lambda d: d["timeline"][cfg]["config"]["set"].update({"/pipeline/0/nothing/x": 1}), [f"/timeline/{cfg}/config/set/~1pipeline~10~1nothing~1x"]),
        ("a config change at a list index past its end", add({"config": {"node": "ha", "set": {"/pipeline/5/key": "x"}}}),
         [f"/timeline/{end}/config/set/~1pipeline~15~1key"]),
        ("a config removal of a key that is not there", add({"config": {"node": "mn", "remove": ["/pipeline/0/max_lifetime_s"]}}),
         [f"/timeline/{end}/config/remove/0"]),
        ("a config step that changes nothing", add({"config": {"node": "ha"}}), [f"/timeline/{end}/config"]),
        ("a process condition on an unknown node", add({"assert": {"process": "ghost", "pointer": "/CapEff", "equals": "0"}}),
         [f"/timeline/{end}/assert/process"]),
        ("a notify condition on a node without a notify socket", add({"assert": {"notify": "gw", "pointer": "/states", "equals": []}}),
         [f"/timeline/{end}/assert/notify"]),
        ("an HTTP request outside the lab", add({"assert": {"http": {"host": "cn", "url": "http://8.8.8.8:80/"}, "pointer": "/code", "equals": 200}}),
         [f"/timeline/{end}/assert/http/url"]),
        ("an HTTP request that is not a URL", add({"assert": {"http": {"host": "cn", "url": "ftp://10.1.0.1/"}, "pointer": "/code", "equals": 200}}),
         [f"/timeline/{end}/assert/http/url"]),
        ("an HTTP method that does not exist",
         add({"assert": {"http": {"host": "cn", "url": "http://127.0.0.1:9101/metrics", "method": "FETCH"}, "pointer": "/code", "equals": 200}}),
         [f"/timeline/{end}/assert/http/method"]),
        ("an HTTP request from an unknown host", add({"assert": {"http": {"host": "moon", "url": "http://127.0.0.1:1/"}, "pointer": "/code", "equals": 1}}),
         [f"/timeline/{end}/assert/http/host"]),
        ("a TCP piece that is not one", add({"assert": {"tcp": {"host": "cn", "to": "127.0.0.1:9101", "send": ["GET", {"hex": "zz"}]},
                                                        "pointer": "/reply", "equals": ""}}), [f"/timeline/{end}/assert/tcp/send/1"]),
        ("a TCP pause out of range", add({"assert": {"tcp": {"host": "cn", "to": "127.0.0.1:9101", "send": ["x"], "pause_ms": 9000},
                                                     "pointer": "/reply", "equals": ""}}), [f"/timeline/{end}/assert/tcp/pause_ms"]),
        ("a TCP peer without a port", add({"assert": {"tcp": {"host": "cn", "to": "127.0.0.1", "send": ["x"]}, "pointer": "/reply", "equals": ""}}),
         [f"/timeline/{end}/assert/tcp/to"]),
        ("a document status with a stage", add({"assert": {"node": "ha", "format": "document", "stage": "mip.home_agent", "pointer": "/reload",
                                                           "equals": 1}}), [f"/timeline/{end}/assert/format"]),
        ("run options not starting with an option", lambda d: d["nodes"]["ha"].update(options=["nobody"]), ["/nodes/ha/options"]),
        ("ambient capabilities without a user", lambda d: d["nodes"]["ha"].update(launch={"ambient_caps": ["cap_net_admin"]}),
         ["/nodes/ha/launch/ambient_caps"]),
        ("a capability name that is not one", lambda d: d["nodes"]["ha"].update(launch={"bounding_drop": ["setuid"]}),
         ["/nodes/ha/launch/bounding_drop"]),
        ("a bounding set both kept and dropped",
         lambda d: d["nodes"]["ha"].update(launch={"bounding_set": ["cap_net_admin"], "bounding_drop": ["cap_setuid"]}), ["/nodes/ha/launch"]),
        ("a launch user that is not an account name", lambda d: d["nodes"]["ha"].update(launch={"user": "No Body"}), ["/nodes/ha/launch/user"]),
        ("a sysctl outside the namespace's net.*", lambda d: d["hosts"]["ha"].update(sysctl={"kernel.panic": "1"}),
         ["/hosts/ha/sysctl/kernel.panic"]),
        ("a sysctl value that is not a number or a short word", lambda d: d["hosts"]["ha"].update(sysctl={"net.ipv4.ip_forward": "1; reboot"}),
         ["/hosts/ha/sysctl/net.ipv4.ip_forward"]),
        ("an nft ruleset that is not text", lambda d: d["hosts"]["ha"].update(nft=["table ip x {}"]), ["/hosts/ha/nft"]),
        ("absent that is not true", add({"assert": {"host": "ha", "ip": ["link", "show", "dev", "x0"], "pointer": "", "absent": False}}),
         [f"/timeline/{end}/assert/absent"]),
        ("excludes holding a list", add({"assert": {"file": "${lab_dir}/x", "pointer": "/text", "excludes": ["cannot"]}}),
         [f"/timeline/{end}/assert/excludes"]),
        ("an ip command on an object it cannot read", add({"assert": {"host": "ha", "ip": ["netns", "show"], "pointer": "", "equals": []}}),
         [f"/timeline/{end}/assert/ip"]),
        ("a mipsec check condition with a stage", add({"assert": {"node": "ha", "format": "check", "stage": "mip.home_agent", "pointer": "",
                                                                  "contains": "OK"}}), [f"/timeline/{end}/assert/format"]),
        ("ignoring without same_as", add({"assert": {"node": "ha", "pointer": "/tun", "equals": {}, "ignoring": ["mtu"]}}),
         [f"/timeline/{end}/assert/ignoring"]),
        ("a probe TOS beyond a byte", lambda d: d["traffic"]["ha_pings"].update(tos=256), ["/traffic/ha_pings/tos"]),
        ("a probe DF that is not true or false", lambda d: d["traffic"]["ha_pings"].update(df="do"), ["/traffic/ha_pings/df"]),
        ("capture fields that are not a list", lambda d: d.update(captures={"home": {"fields": {"filter": "esp"}}}), ["/captures/home/fields"]),
        ("a capture field check with two tests",
         lambda d: d.update(captures={"home": {"fields": [{"filter": "esp", "field": "ip.dsfield", "equals": 1, "at_least": 0}]}}),
         ["/captures/home/fields/0"]),
        ("a capture field that is not a field name",
         lambda d: d.update(captures={"home": {"fields": [{"filter": "esp", "field": "ip dsfield", "equals": 1}]}}),
         ["/captures/home/fields/0/field"]),
        ("a capture field check on occurrence 0",
         lambda d: d.update(captures={"home": {"fields": [{"filter": "esp", "field": "ip.dsfield", "occurrence": 0, "equals": 1}]}}),
         ["/captures/home/fields/0/occurrence"]),
        ("a capture field check expecting a negative number of frames",
         lambda d: d.update(captures={"home": {"fields": [{"filter": "esp", "field": "ip.dsfield", "equals": 1, "frames": {"at_least": -1}}]}}),
         ["/captures/home/fields/0/frames/at_least"]),
        ("notify that is not true or false (and so no notify socket to read)", lambda d: d["nodes"]["ha"].update(notify="yes"),
         ["/nodes/ha/notify", "/timeline/" + str(next(i for i, st in enumerate(base["timeline"]) if "notify" in st.get("assert", {})))
          + "/assert/notify"]),
    ]
    check_refused(checks, args, os.path.join(tmp, "bad-process.json"), base, cases)


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
    isakmp_repeat_checks(checks)


def isakmp_repeat_checks(checks):
    """An IKEv1 Quick Mode message sent twice, byte for byte (its answer was lost): tshark
    reads the first copy with the key table but garbles the second (it chains the CBC IV from
    the copy, RFC 2409 Appendix B, as if it were the exchange's next message); "clean" leaves
    such repeats aside. The exchange: Main Mode with AES-128-CBC and SHA-1, MM5 and QM1 encrypted."""
    import hashlib
    import struct
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
    from lab import capture

    icookie, rcookie, key = bytes(range(1, 9)), bytes(range(17, 25)), bytes(range(16))

    def isakmp(next_payload, exchange, flags, message_id, body, rc=rcookie):
        return icookie + rc + struct.pack("!BBBBII", next_payload, 0x10, exchange, flags, message_id, 28 + len(body)) + body

    def payload(next_payload, data):
        return struct.pack("!BBH", next_payload, 0, 4 + len(data)) + data

    def encrypt(iv, plain):
        e = Cipher(algorithms.AES(key), modes.CBC(iv)).encryptor()
        return e.update(plain + bytes(-len(plain) % 16)) + e.finalize()
    # RFC 2409 appendix A: encryption AES-CBC (7), hash SHA (2), PSK (1), group 2, key length 128.
    attributes = struct.pack("!10H", 0x8001, 7, 0x8002, 2, 0x8003, 1, 0x8004, 2, 0x800E, 128)
    proposal = payload(0, struct.pack("!BBBB", 1, 1, 0, 1) + payload(0, struct.pack("!BBH", 1, 1, 0) + attributes))
    sa = payload(0, struct.pack("!II", 1, 1) + proposal)
    ke_i, ke_r = bytes([1]) * 128, bytes([2]) * 128
    mm5 = encrypt(hashlib.sha1(ke_i + ke_r).digest()[:16], payload(8, struct.pack("!BBH", 2, 17, 500) + bytes(4)) + payload(0, bytes(20)))
    qm1 = encrypt(hashlib.sha1(mm5[-16:] + struct.pack("!I", 0x01020304)).digest()[:16], payload(0, bytes(20)))
    messages = [(True, isakmp(1, 2, 0, 0, sa, bytes(8))), (False, isakmp(1, 2, 0, 0, sa)),
                (True, isakmp(4, 2, 0, 0, payload(10, ke_i) + payload(0, bytes(16)))),
                (False, isakmp(4, 2, 0, 0, payload(10, ke_r) + payload(0, bytes(16)))),
                (True, isakmp(5, 2, 1, 0, mm5)), (True, isakmp(8, 32, 1, 0x01020304, qm1)), (True, isakmp(8, 32, 1, 0x01020304, qm1))]

    def udp_frame(from_initiator, data):
        src, dst = (b"\x0a\0\0\x02", b"\x0a\0\0\x01") if from_initiator else (b"\x0a\0\0\x01", b"\x0a\0\0\x02")
        udp = struct.pack("!HHHH", 500, 500, 8 + len(data), 0) + data
        ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 1, 0, 64, 17, 0, src, dst)
        return b"\x02\0\0\0\0\1" + b"\x02\0\0\0\0\2" + b"\x08\x00" + ip + udp
    with tempfile.TemporaryDirectory(prefix="mipsec-lab-isakmp-") as tmp:
        path = os.path.join(tmp, "qm.pcap")
        with open(path, "wb") as f:
            f.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
            for k, (from_initiator, m) in enumerate(messages):
                frame = udp_frame(from_initiator, m)
                f.write(struct.pack("<IIII", 100 + k, 0, len(frame), len(frame)) + frame)
        options = capture.decrypt_options([], [f"{icookie.hex()},{key.hex()}"])
        read = subprocess.run(["tshark", "-r", path, "-n", *options, "-Y", "isakmp.hash", "-T", "fields", "-e", "frame.number"],
                              capture_output=True, text=True, timeout=60).stdout.split()
        raw = subprocess.run(["tshark", "-r", path, "-n", *options, "-Y", "_ws.malformed || _ws.expert.severity == error",
                              "-T", "fields", "-e", "frame.number"], capture_output=True, text=True, timeout=60).stdout.split()
        bad = capture.problems(path, options)
        checks.check(f"clean: a repeated IKEv1 Quick Mode message is left aside (tshark reads frames {read}, flags {raw}; problems {bad})",
                     "6" in read and raw == ["7"] and bad == [], str(bad))


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
        ("at_least that is neither a number nor a JSON pointer",
         lambda d: d["timeline"][home_wait]["wait"].pop("increased_by") and d["timeline"][home_wait]["wait"].update(at_least="requests"),
         ["/timeline/3/wait/at_least"]),
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
        ("a capture needing zero frames of what it carries, another a count without carries",
         lambda d: (d["captures"]["cafe"].update(carries=["ip:esp"], carries_at_least=0), d["captures"]["natlan"].update(carries_at_least=5)),
         ["/captures/cafe/carries_at_least", "/captures/natlan/carries_at_least"]),
        ("a capture with an if on a parameter the scenario does not have", lambda d: d["captures"]["cafe"].update({"if": {"moon": 1}}),
         ["/captures/cafe/if/moon"]),
        ("a quiet window (in the run) on a capture that is not (its if does not hold)",
         lambda d: (d["captures"]["cafe"].update({"if": {"gateway": "strongswan"}}),
                    d["timeline"].insert(0, {"quiet": {"captures": ["cafe"], "protocols": ["esp"]}})), ["/timeline/0/quiet/captures/0"]),
    ]
    check_refused(checks, args, os.path.join(tmp, "bad-walk.json"), base, cases)


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
    queries.clear()
    checks.check("at_least / at_most with a pointer: against another field of the same answer (one status query)",
                 run.holds(cond("at_least", "/tun/offload/rx_segments")) and run.holds(cond("at_least", "/tun/offload/rx_super_packets"))
                 and queries == ["cli", "cli"] and not run.holds(cond("at_most", "/tun/offload/rx_super_packets"))
                 and not run.holds(cond("at_least", "/tun/missing")) and run.holds(cond("at_least", 40)) and not run.holds(cond("at_most", 39)),
                 str(queries))
    checks.check("excludes: a list without the element, a string without the part; absent: nothing there",
                 run.holds(cond("excludes", "tso6", "/tun/offload/granted")) and run.holds(cond("excludes", "cannot", "/name"))
                 and not run.holds(cond("excludes", "li-", "/name")) and run.holds(cond("absent", True, "/tun/missing"))
                 and not run.holds(cond("absent", True, "/name")))
    other = {"name": "cli-a", "tun": {"offload": {"granted": ["csum", "tso4"], "rx_super_packets": 3, "rx_segments": 41}}}
    run.status_as = lambda node, fmt: other
    same = {"node": "cli", "pointer": "/tun/offload", "same_as": {"node": "x", "format": "text", "pointer": "/tun/offload"}}
    checks.check("same_as ignoring: equal once the keys holding those texts are left out, not before",
                 not run.holds(same) and run.holds(dict(same, ignoring=["segments"])) and not run.holds(dict(same, ignoring=["super"])))
    key = json.dumps(cond("unchanged", True, "/name"), sort_keys=True)
    checks.check("unchanged compares any value with the baseline, a string too (an SPI, an address)",
                 run.holds(cond("unchanged", True, "/name"), {key: "cli-a"}) and not run.holds(cond("unchanged", True, "/name"), {key: "cli-b"})
                 and not run.holds(cond("unchanged", True, "/name"), {}))
    from lab import scenario
    cfg = {"pipeline": [{"mobile_nodes": [{"spi": 1}]}]}
    step = {"spi": 2}
    problems = [scenario.edit_config(cfg, "/pipeline/0/mobile_nodes/-", step), scenario.edit_config(cfg, "/pipeline/0/x", 5),
                scenario.edit_config(cfg, "/pipeline/0/mobile_nodes/0", None, remove=True), scenario.edit_config(cfg, "/tun/mtu", 1)]
    step["spi"] = 3
    checks.check("config edits: append with -, set, remove, a missing parent refused; the step's value copied",
                 problems[:3] == ["", "", ""] and "tun" in problems[3] and cfg == {"pipeline": [{"mobile_nodes": [{"spi": 2}], "x": 5}]},
                 json.dumps([problems, cfg]))
    checks.check("tcp pieces: text, hex, repeat, random", len(scenario.tcp_bytes(["ab", {"hex": "0001"}, {"repeat": "x", "times": 3}, {"random": 5}])) == 12
                 and scenario.tcp_bytes(["a", {"hex": "ff"}])[:2] == b"a\xff")
    checks.check("counters summed wherever they sit", runner.counter_sum({"ike_sent": 4, "x": [{"ike_received": 5}], "y": {"ike_sent": 1}},
                                                                         ("ike_sent", "ike_received")) == 10)
    with tempfile.TemporaryDirectory(prefix="mipsec-lab-probe-") as tmp:
        log = os.path.join(tmp, "ping.log")
        lines = [f"[{100 + s * 0.1:.6f}] 64 bytes from 10.1.0.77: icmp_seq={s} ttl=64 time=0.1 ms" for s in (1, 2, 3, 4)]
        lines.append("no answer yet for icmp_seq=5")
        lines += [f"[{100 + s * 0.1:.6f}] 64 bytes from 10.1.0.77: icmp_seq={s} ttl=64 time=0.1 ms" for s in (9, 10)]
        open(log, "w").write("\n".join(lines) + "\n")
        probe = runner.Probe.__new__(runner.Probe)
        probe.proc = type("P", (), {"log_path": log, "poll": lambda self: None})()
        first, lost = probe.gap(100.45)
        checks.check(f"probe: first reply 0.45 s after the link change, 4 requests lost ({first}, {lost})",
                     abs(first - 0.45) < 1e-6 and lost == 4)
        checks.check("probe: no reply after the change yet", probe.gap(101.5) == (None, None))
        checks.check(f"probe account: 6 replies, 4 lost between the first and the latest ({probe.account()})",
                     probe.account() == {"replies": 6, "lost": 4, "done": False})
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


def packets_cases(checks, args, tmp):
    """"packets" traffic (crafted packets), "plus"/"minus", "lines" and "throughout", on the
    flood scenario: bad values refused at their pointers."""
    base = json.load(open(os.path.join(SCENARIOS, "flood.json")))
    k = next(i for i, step in enumerate(base["timeline"]) if "throughout" in step)
    f0 = next(i for i, step in enumerate(base["timeline"]) if "file" in (step.get("assert") or {}))
    req = lambda d: d["traffic"]["requests"]  # noqa: E731
    cases = [
        ("a packets generator that never stops (no count, no duration)", lambda d: req(d).pop("duration_s"), ["/traffic/requests"]),
        ("a packets generator from a host that does not exist", lambda d: req(d).update({"from": "moon"}), ["/traffic/requests/from"]),
        ("a negative rate", lambda d: req(d).update(rate=-1), ["/traffic/requests/rate"]),
        ("more variants than allowed", lambda d: req(d).update(variants=50000), ["/traffic/requests/variants"]),
        ("too many packets to build", lambda d: req(d).update(variants=2000, packets=req(d)["packets"] * 16), ["/traffic/requests/variants"]),
        ("a template with both udp and icmp", lambda d: req(d)["packets"][0].update(icmp={"type": 8}), ["/traffic/requests/packets/0"]),
        ("a template with neither udp, icmp nor protocol", lambda d: req(d)["packets"][0].pop("udp"), ["/traffic/requests/packets/0"]),
        ("a spoofed source outside the lab's ranges", lambda d: req(d)["packets"][0].update(source=["8.8.8.8", "8.8.8.9"]),
         ["/traffic/requests/packets/0/source/0", "/traffic/requests/packets/0/source/1"]),
        ("a source range backwards", lambda d: req(d)["packets"][0].update(source=["192.0.2.9", "192.0.2.1"]),
         ["/traffic/requests/packets/0/source"]),
        ("a UDP port range backwards", lambda d: req(d)["packets"][0]["udp"].update(source_port=[2000, 1000]),
         ["/traffic/requests/packets/0/udp/source_port"]),
        ("a UDP checksum kind that does not exist", lambda d: req(d)["packets"][0]["udp"].update(checksum="zero"),
         ["/traffic/requests/packets/0/udp/checksum"]),
        ("a TTL of 0", lambda d: req(d)["packets"][0].update(ttl=0), ["/traffic/requests/packets/0/ttl"]),
        ("hex bytes with an odd number of digits", lambda d: req(d)["packets"][0]["payload"].__setitem__(0, "012"),
         ["/traffic/requests/packets/0/payload/0"]),
        ("a segment of two kinds", lambda d: req(d)["packets"][0]["payload"].append({"random": 4, "uint": 1}),
         ["/traffic/requests/packets/0/payload/2"]),
        ("a uint too large for its bytes", lambda d: req(d)["packets"][0]["payload"].append({"uint": 256, "bytes": 1}),
         ["/traffic/requests/packets/0/payload/2/uint"]),
        ("an HMAC key that is not hex", lambda d: req(d)["packets"][3]["payload"][-1].update(hmac_md5="secret"),
         ["/traffic/requests/packets/3/payload/7/hmac_md5"]),
        ("an inner packet without a destination", lambda d: req(d)["packets"][0]["payload"].append({"packet": {"protocol": 1}}),
         ["/traffic/requests/packets/0/payload/2/packet"]),
        ("a listen for an ICMP type beyond 255", lambda d: d["traffic"]["visitor"]["listen"].update(icmp_type=256),
         ["/traffic/visitor/listen/icmp_type"]),
        ("minus that is not a list of pointers", lambda d: d["timeline"][0]["wait"][1].update(minus="/state/counters/replies_received"),
         ["/timeline/0/wait/1/minus"]),
        ("plus holding something not a pointer", lambda d: d["timeline"][0]["wait"][1].update(plus=["replies"]),
         ["/timeline/0/wait/1/plus/0"]),
        ("a file condition counting lines of a broken regular expression", lambda d: d["timeline"][f0]["assert"].update(lines="(warn"),
         [f"/timeline/{f0}/assert/lines"]),
        ("throughout on an assert", lambda d: d["timeline"][f0].update(throughout=d["timeline"][k]["throughout"]),
         [f"/timeline/{f0}/throughout"]),
        ("throughout naming an unknown node", lambda d: d["timeline"][k]["throughout"].update(node="ghost"),
         [f"/timeline/{k}/throughout/node"]),
        ("sending packets traffic that has no count", lambda d: d["timeline"].insert(1, {"send": "requests"}), ["/timeline/1/send"]),
    ]
    hostile = json.load(open(os.path.join(SCENARIOS, "hostile-sender.json")))
    s0 = next(i for i, step in enumerate(hostile["timeline"]) if "send" in step)
    icv = hostile["traffic"]["esp_icv"]["packets"][0]["payload"]
    u = next(i for i, seg in enumerate(icv) if isinstance(seg, dict) and isinstance(seg.get("uint"), dict))
    cases += [(what, change, pointers, hostile) for what, change, pointers in [
        ("sending a stream", lambda d: d["timeline"][s0].update(send="stream"), [f"/timeline/{s0}/send"]),
        ("sending traffic that does not exist", lambda d: d["timeline"][s0].update(send="ghost"), [f"/timeline/{s0}/send"]),
        ("then on a wait", lambda d: d["timeline"][0].update(then=d["timeline"][s0]["then"]), ["/timeline/0/then"]),
        ("increased_by_exactly 0", lambda d: d["timeline"][s0]["then"].update(increased_by_exactly=0),
         [f"/timeline/{s0}/then/increased_by_exactly"]),
        ("increased_by_exactly in an assert", lambda d: d["timeline"].insert(0, {"assert": d["timeline"][s0]["then"]}),
         ["/timeline/0/assert/increased_by_exactly"]),
        ("a default that is not a number", lambda d: d["timeline"][s0]["then"].update(default="zero"), [f"/timeline/{s0}/then/default"]),
        ("a hex segment that is not hex", lambda d: d["traffic"]["udp500_live"]["packets"][0]["payload"][0].update(hex="zz"),
         ["/traffic/udp500_live/packets/0/payload/0/hex"]),
        ("kernel counters with a pointer that names no counter",
         lambda d: d["timeline"][s0].update(then={"host": "xha", "kernel_counters": True, "pointer": "/Udp", "increased": True}),
         [f"/timeline/{s0}/then/pointer"]),
        ("kernel counters that are not true",
         lambda d: d["timeline"][s0].update(then={"host": "xha", "kernel_counters": 1, "pointer": "/Udp/InErrors", "increased": True}),
         [f"/timeline/{s0}/then/kernel_counters"]),
        ("kernel counters of a host that does not exist",
         lambda d: d["timeline"][s0].update(then={"host": "moon", "kernel_counters": True, "pointer": "/Udp/InErrors", "increased": True}),
         [f"/timeline/{s0}/then/host"]),
        ("a packet field read from the status of a node that does not exist",
         lambda d: d["traffic"]["esp_icv"]["packets"][0]["payload"][u]["uint"].update(node="ghost"),
         [f"/traffic/esp_icv/packets/0/payload/{u}/uint/node"]),
    ]]
    for case in cases:
        check_refused(checks, args, os.path.join(tmp, "bad-flood.json"), case[3] if len(case) > 3 else base, [case[:3]])


def packet_checks(checks):
    """lab/packets.py builds what its templates say: lengths, the UDP and ICMP checksums (valid
    verifies to zero, "bad" does not), the authenticator over the bytes before it, an inner packet."""
    import hashlib
    import hmac
    import random
    from lab import packets as pk
    rnd = random.Random(1)
    udp = pk.packet({"source": "192.0.2.7", "udp": {"port": 434, "source_port": 1000},
                     "payload": ["01ff", {"uint": 7, "bytes": 2}, {"hmac_md5": "00112233"}]}, "192.0.2.1", rnd, 0)
    body = udp[20:]
    pseudo = udp[12:20] + bytes([0, 17]) + len(body).to_bytes(2, "big")
    checks.check("packets: an IPv4 header with the total length, protocol 17, the source and destination",
                 udp[0] == 0x45 and int.from_bytes(udp[2:4], "big") == len(udp) == 20 + 8 + 4 + 16 and udp[9] == 17
                 and udp[12:16] == bytes([192, 0, 2, 7]) and udp[16:20] == bytes([192, 0, 2, 1]), udp.hex())
    checks.check("packets: a valid UDP checksum verifies", pk.checksum(pseudo + body) == 0, body.hex())
    checks.check("packets: the payload's segments in order, the HMAC-MD5 over the bytes before it",
                 body[8:12] == bytes.fromhex("01ff0007")
                 and body[12:] == hmac.new(bytes.fromhex("00112233"), bytes.fromhex("01ff0007"), hashlib.md5).digest(), body.hex())
    bad = pk.packet({"udp": {"port": 434, "checksum": "bad"}, "payload": ["01"]}, "192.0.2.1", rnd, 0)
    none = pk.packet({"udp": {"port": 434, "checksum": "none"}, "payload": ["01"]}, "192.0.2.1", rnd, 0)
    checks.check("packets: a bad UDP checksum does not verify, none is 0",
                 pk.checksum(bad[12:20] + bytes([0, 17, 0, 9]) + bad[20:]) != 0 and none[26:28] == b"\0\0", bad.hex() + " " + none.hex())
    icmp = pk.packet({"ttl": 1, "icmp": {"type": 10}, "payload": ["00000000"]}, "198.51.100.1", rnd, 0)
    checks.check("packets: an ICMP message with a valid checksum and the TTL asked", icmp[8] == 1 and icmp[9] == 1 and icmp[20] == 10
                 and pk.checksum(icmp[20:]) == 0, icmp.hex())
    inner = pk.packet({"protocol": 4, "payload": [{"packet": {"destination": "10.1.0.7", "icmp": {"type": 8}}}]}, "192.0.2.1", rnd, 0)
    checks.check("packets: IP-in-IP carries a whole inner packet", inner[9] == 4 and inner[20] == 0x45 and inner[36:40] == bytes([10, 1, 0, 7])
                 and len(inner) == 20 + 20 + 4, inner.hex())
    many = pk.build({"to": "192.0.2.1", "variants": 3, "packets": [{"source": ["192.0.2.100", "192.0.2.250"], "udp": {"port": 434},
                                                                 "payload": [{"random": [0, 8]}]}, {"protocol": 50}]})
    checks.check("packets: variants of each template interleaved", len(many) == 6 and [p[9] for p in many] == [17, 50] * 3, str(len(many)))
    from lab import runner
    with tempfile.TemporaryDirectory(prefix="mipsec-lab-packets-") as tmp:
        account = os.path.join(tmp, "a.account")
        json.dump({"sent": 12, "done": True, "heard": 2, "send_errors": 0}, open(account, "w"))
        run = runner.Run.__new__(runner.Run)
        run.doc, run.snapshot, run.probes, run.streams = {"parameters": {}}, None, {}, {}
        run.senders = {"flood": (None, account)}
        checks.check("a traffic condition reads a packets generator's account, with plus and minus",
                     run.holds({"traffic": "flood", "pointer": "/done", "equals": True})
                     and run.holds({"traffic": "flood", "pointer": "/sent", "minus": ["/heard"], "plus": ["/send_errors"], "equals": 10})
                     and not run.holds({"traffic": "flood", "pointer": "/sent", "minus": ["/nothing"], "at_least": 0}))


if __name__ == "__main__":
    sys.exit(main())

# SPDX-License-Identifier: MIT
"""`mipsec lab run SCENARIO` end to end: the scenario's own assertions hold (exit 0), the report
(report.json, report.md) has every move with its figures, and afterwards no namespace, process
or run directory of the lab is left."""
import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "tools"))
from lab.netns import Checks, require_root  # noqa: E402


def namespaces(pid=None):
    """Namespace names; with `pid`, only those the lab running as that process made
    (lab.netns names them ms<pid><n>-<role>), so other tests running at the same time do not count."""
    names = {line.split()[0] for line in subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout.splitlines()
             if line.strip()}
    return {n for n in names if pid is None or n.startswith(f"ms{pid}")}


def processes_mentioning(text, lab_pid=None):
    """PIDs whose command line contains `text` (the lab's run directory is in the command line
    of every node, DHCP server and client, and stream end it starts), and the lab's probes
    (`ping -D -n -O`, which name no file): a probe in a namespace another lab still has (named
    ms<its pid>..., another test running at the same time) is not ours."""
    out = []
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                argv = open(f"/proc/{pid}/cmdline", "rb").read().split(b"\0")
            except OSError:
                continue
            if text.encode() in b" ".join(argv):
                out.append(int(pid))
            elif argv[0] == b"ping" and argv[1:4] == [b"-D", b"-n", b"-O"]:
                ns = subprocess.run(["ip", "netns", "identify", pid], capture_output=True, text=True).stdout.strip()
                if not ns or lab_pid is None or ns.startswith(f"ms{lab_pid}"):
                    out.append(int(pid))
    return out


def describe_process(pid):
    """Its command line and parent, for the failure message (a probe of another lab running at
    the same time looks like ours)."""
    try:
        argv = open(f"/proc/{pid}/cmdline", "rb").read().replace(b"\0", b" ").decode(errors="replace").strip()
        ppid = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[1]
        return f"{argv} (parent {ppid})"
    except (OSError, IndexError):
        return "(gone)"


def decrypt_checks(checks, report, network, moves, md):
    """The kept capture of `network` with the kept key tables: tshark decrypts every ESP packet
    to the inner ICMP, and the encrypted IKE to its Mode Config payload; the tables are the
    owner's only; the move that went to that network measured its overhead on the capture."""
    pcap = os.path.join(report, f"capture-{network}.pcap")
    tables = {t: os.path.join(report, t) for t in ("esp_sa", "ikev1_decryption_table")}
    present = os.path.exists(pcap) and all(os.path.exists(p) for p in tables.values())
    checks.check(f"--keep: capture-{network}.pcap, esp_sa and ikev1_decryption_table in the report directory", present,
                 str(sorted(os.listdir(report))))
    if not present:
        return
    checks.check("the key tables are readable by their owner only",
                 all(os.stat(p).st_mode & 0o077 == 0 for p in tables.values()), str([oct(os.stat(p).st_mode) for p in tables.values()]))
    opts = ["-o", "esp.enable_encryption_decode:TRUE"]
    for table, path in tables.items():
        opts += [a for line in open(path).read().splitlines() if line.strip() for a in ("-o", f"uat:{table}:{line}")]

    def count(filt, extra=()):
        r = subprocess.run(["tshark", "-r", pcap, "-n", *extra, "-Y", filt, "-T", "fields", "-e", "frame.number"],
                           capture_output=True, text=True, timeout=120)
        return len(r.stdout.split()), r.stderr

    esp_total, _ = count("esp")
    esp_icmp, err = count("esp && (icmp.type == 0 || icmp.type == 8)", opts)
    checks.check(f"tshark with the kept key tables decrypts every ESP packet on {network} to ICMP ({esp_icmp} of {esp_total})",
                 esp_total >= 4 and esp_icmp == esp_total, err[-300:])
    without, _ = count("esp && icmp")
    checks.check(f"without them nothing inside ESP is readable ({without})", without == 0)
    attr, err = count("isakmp.typepayload == 14", opts)
    checks.check("tshark decrypts the IKE exchanges (the Mode Config attribute payload)", attr >= 1, err[-300:])
    to_net = [m for m in moves if m.get("to") == network]
    checks.check(f"the move to {network} measured its overhead on that capture",
                 bool(to_net) and all(isinstance(m.get("overhead_bytes"), int) and m["overhead_bytes"] > 0
                                      and str(m.get("overhead_source", "")).startswith(f"capture {network}") for m in to_net),
                 json.dumps(to_net)[:600])
    checks.check("report.md names the kept key tables", "esp_sa" in md and "ikev1_decryption_table" in md, md[-800:])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--mipsec", required=True)
    ap.add_argument("--scenario", required=True)
    ap.add_argument("--moves", type=int, required=True, help="moves the scenario makes")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="passed to lab run (e.g. gateway=strongswan)")
    ap.add_argument("--decrypt", metavar="NETWORK", help="run with --keep and check that tshark, given the key tables the "
                    "report directory holds, decrypts every ESP packet of that network's capture to the probe's ICMP")
    args = ap.parse_args()
    require_root("mipsec lab run")
    checks = Checks()
    with tempfile.TemporaryDirectory(prefix="mipsec-lab-run-test-") as report:
        # `mipsec lab` execs the lab: this PID is the lab's, and in its namespaces' names.
        sets = [a for kv in args.set for a in ("--set", kv)] + (["--keep"] if args.decrypt else [])
        p = subprocess.Popen([args.mipsec, "lab", "run", args.scenario, "--report", report, *sets], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
        out, err = p.communicate(timeout=280)
        r = subprocess.CompletedProcess(p.args, p.returncode, out, err)
        print(r.stdout[-6000:])
        checks.check(f"lab run {args.scenario} passes (exit 0)", r.returncode == 0, f"exit {r.returncode}\n{r.stderr[-3000:]}")
        m = re.search(r"building in (\S+)", r.stdout)
        run_dir = m.group(1) if m else ""
        checks.check("the run directory was named", bool(run_dir), r.stdout[:300])
        try:
            rep = json.load(open(os.path.join(report, "report.json")))
        except (OSError, ValueError) as e:
            checks.check("report.json is written", False, str(e))
            rep = {}
        checks.check("report.json: passed, with every assertion holding",
                     rep.get("passed") is True and rep.get("assertions") and all(a["ok"] for a in rep["assertions"]),
                     json.dumps([a for a in rep.get("assertions", []) if not a["ok"]])[:1000])
        moves = rep.get("moves", [])
        checks.check(f"report.json: {args.moves} moves", len(moves) == args.moves, json.dumps(moves)[:500])
        for kv in args.set:
            k, v = kv.split("=", 1)
            try:
                want = json.loads(v)  # as `lab run --set` reads it: JSON when it parses (true, 3), else a string
            except ValueError:
                want = v
            checks.check(f"report.json: parameter {k} is {v}", rep.get("parameters", {}).get(k) == want, json.dumps(rep.get("parameters")))
        for mv in moves:
            checks.check(f"move {mv['move']}: link change -> first probe reply measured ({mv.get('link_to_first_packet_ms')} ms), "
                         f"loss counted ({mv.get('probe_lost')})",
                         isinstance(mv.get("link_to_first_packet_ms"), int) and isinstance(mv.get("probe_lost"), int), json.dumps(mv))
        md = open(os.path.join(report, "report.md")).read() if os.path.exists(os.path.join(report, "report.md")) else ""
        checks.check("report.md has the per-move table with every move",
                     "| move |" in md and all(f"| {mv['move']} |" in md for mv in moves), md[:800])
        try:
            import matplotlib  # noqa: F401  (the timeline plot needs it; tools/install-deps.sh installs it)
            plotted = os.path.getsize(os.path.join(report, "timeline.svg")) > 1000 if os.path.exists(os.path.join(report, "timeline.svg")) else False
            checks.check("timeline.svg is drawn from the run's series (goodput / probe round trips, moves marked)",
                         plotted and "![timeline](timeline.svg)" in md
                         and (any(p["rtt_ms"] for p in rep.get("series", {}).get("probes", {}).values())
                              or any(rep.get("series", {}).get("streams", {}).values())),  # (a scenario may have only a stream)
                         json.dumps(rep.get("series", {}))[:300])
        except ImportError:
            print("skip timeline.svg check: python3-matplotlib is not installed")
        checks.check("the printed table and the report directory", "| move |" in r.stdout and report in r.stdout, r.stdout[-500:])
        if args.decrypt:
            decrypt_checks(checks, report, args.decrypt, moves, md)
            # --keep leaves the run directory (configs, logs, key logs) for the user: this test removes it.
            checks.check("--keep: the run directory is kept", run_dir != "" and os.path.isdir(run_dir), run_dir)
            if run_dir.startswith(tempfile.gettempdir() + "/mipsec-") and os.path.isdir(run_dir):
                shutil.rmtree(run_dir)
        left = namespaces(p.pid)
        checks.check("no namespace is left", not left, str(left))
        left_procs = processes_mentioning(run_dir, p.pid) if run_dir else []
        checks.check("no process of the run is left", run_dir != "" and not left_procs,
                     "; ".join(f"{pid}: {describe_process(pid)}" for pid in left_procs))
        checks.check("the run directory is removed", run_dir != "" and not os.path.exists(run_dir), run_dir)
    return checks.finish()


if __name__ == "__main__":
    sys.exit(main())

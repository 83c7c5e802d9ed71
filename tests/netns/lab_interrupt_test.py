# SPDX-License-Identifier: MIT
"""SIGINT in the middle of `mipsec lab run` (the nodes, DHCP servers and traffic running, a move
under way) ends the run with exit 130 and leaves no namespace, process or run directory behind;
so does a scenario step that fails (a wait that cannot be met)."""
import argparse
import glob
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "tools"))
from lab.netns import Checks, require_root  # noqa: E402
from lab_run_test import namespaces, processes_mentioning  # noqa: E402

SCENARIOS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tools", "lab", "scenarios")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--mipsec", required=True)
    args = ap.parse_args()
    require_root("the lab interrupt test")
    checks = Checks()

    reports_before = set(glob.glob(os.path.join(tempfile.gettempdir(), "mipsec-lab-mip-roaming-*")))
    p = subprocess.Popen([args.mipsec, "lab", "run", "mip-roaming"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    run_dir, seen = "", ""
    deadline = time.monotonic() + 120
    for line in p.stdout:
        seen += line
        m = re.search(r"building in (\S+)", line)
        if m:
            run_dir = m.group(1)
        if line.startswith("move "):  # the first move is done, the second starts now
            break
        if time.monotonic() > deadline:
            break
    mid_run = namespaces(p.pid)
    p.send_signal(signal.SIGINT)
    try:
        out, _ = p.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        p.kill()
        out, _ = p.communicate()
    checks.check("the run was under way (a move done, namespaces up) when interrupted", run_dir != "" and len(mid_run) >= 8,
                 seen[-800:])
    checks.check("SIGINT: exit 130", p.returncode == 130, f"exit {p.returncode}: {out[-800:]}")
    checks.check("SIGINT: no namespace left", not namespaces(p.pid), str(namespaces(p.pid)))
    checks.check("SIGINT: no process of the run left", run_dir != "" and not processes_mentioning(run_dir, p.pid),
                 str(processes_mentioning(run_dir, p.pid)))
    checks.check("SIGINT: the run directory is removed", run_dir != "" and not os.path.exists(run_dir), run_dir)
    made = set(glob.glob(os.path.join(tempfile.gettempdir(), "mipsec-lab-mip-roaming-*"))) - reports_before
    checks.check("SIGINT: no report directory was made", not made, str(made))

    # A failing step: the node never reaches a state that does not exist.
    doc = json.load(open(os.path.join(SCENARIOS, "mip-roaming.json")))
    doc["timeline"][0]["wait"]["equals"] = "no_such_state"
    doc["timeline"][0]["timeout_s"] = 2
    with tempfile.TemporaryDirectory(prefix="mipsec-lab-interrupt-test-") as tmp:
        f = os.path.join(tmp, "failing.json")
        json.dump(doc, open(f, "w"))
        p = subprocess.Popen([args.mipsec, "lab", "run", f, "--report", tmp], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        out, err = p.communicate(timeout=120)
        r = subprocess.CompletedProcess(p.args, p.returncode, out, err)
        m = re.search(r"building in (\S+)", r.stdout)
        run_dir = m.group(1) if m else ""
        checks.check("a failed step: exit 1", r.returncode == 1, f"exit {r.returncode}: {r.stderr[-500:]}")
        rep = json.load(open(os.path.join(tmp, "report.json"))) if os.path.exists(os.path.join(tmp, "report.json")) else {}
        checks.check("a failed step: the report says which", rep.get("passed") is False and "no_such_state" in (rep.get("error") or ""),
                     json.dumps(rep)[:500])
        checks.check("a failed step: no namespace left", not namespaces(p.pid), str(namespaces(p.pid)))
        checks.check("a failed step: no process or run directory left",
                     run_dir != "" and not processes_mentioning(run_dir, p.pid) and not os.path.exists(run_dir), run_dir)
    return checks.finish()


if __name__ == "__main__":
    sys.exit(main())

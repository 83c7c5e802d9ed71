# SPDX-License-Identifier: MIT
"""`mipsec lab matrix SCENARIO` for a scenario whose `order` parameter selects the stack: every
order runs and behaves as its scenario asserts (exit 0), and matrix.json says, per order, what
the command line expects: which orders carry traffic and which carry none (their runs assert
the failure they observe), which moves cost no IKE message and which a whole negotiation.
Afterwards no namespace of the lab is left."""
import argparse
import json
import os
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "tools"))
from lab_run_test import namespaces  # noqa: E402
from lab.netns import Checks, require_root  # noqa: E402


def names(text):
    return [o for o in (text or "").split(",") if o]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--mipsec", required=True)
    ap.add_argument("--scenario", required=True)
    ap.add_argument("--carries", default="", help="orders that must carry traffic across every move")
    ap.add_argument("--fails", default="", help="orders that must carry none (and pass: they assert their failure)")
    ap.add_argument("--no-ike", default="", help="orders whose moves must cost no IKE message")
    ap.add_argument("--ike", default="", help="orders whose moves must cost at least one IKE negotiation (9 messages)")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="passed to lab matrix (e.g. gateway=strongswan)")
    ap.add_argument("--reason", action="append", default=[], metavar="ORDER=TEXT", help="the order's row names TEXT in what was observed")
    ap.add_argument("--drop", action="append", default=[], metavar="ORDER=TEXT", help="one of the order's drop counters names TEXT")
    args = ap.parse_args()
    require_root("mipsec lab matrix")
    checks = Checks()
    carries, fails = names(args.carries), names(args.fails)
    with tempfile.TemporaryDirectory(prefix="mipsec-lab-matrix-test-") as report:
        sets = [a for kv in args.set for a in ("--set", kv)]
        p = subprocess.Popen([args.mipsec, "lab", "matrix", args.scenario, "--report", report, *sets],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        out, err = p.communicate(timeout=280)
        print(out[-5000:])
        checks.check(f"lab matrix {args.scenario} exits 0 (every order behaved as the scenario expects)", p.returncode == 0,
                     f"exit {p.returncode}\n{err[-3000:]}")
        try:
            rows = {r["order"]: r for r in json.load(open(os.path.join(report, "matrix.json")))["rows"]}
        except (OSError, ValueError, KeyError) as e:
            checks.check("matrix.json is written", False, str(e))
            rows = {}
        checks.check(f"one row per order: {', '.join(sorted(carries + fails))}", sorted(rows) == sorted(carries + fails), str(sorted(rows)))
        for order in carries:
            r = rows.get(order, {})
            checks.check(f"{order}: carries traffic after each of its {r.get('moves')} moves", r.get("carries_traffic") is True
                         and r.get("moves_with_reply") == r.get("moves"), json.dumps(r))
        for order in fails:
            r = rows.get(order, {})
            checks.check(f"{order}: carries nothing, and the row says what was observed", r.get("carries_traffic") is False
                         and r.get("passed") is True and bool(r.get("reason")), json.dumps(r))
        for order in names(args.no_ike):
            r = rows.get(order, {})
            checks.check(f"{order}: its moves cost no IKE message", (r.get("moves") or 0) >= 1 and r.get("ike_messages") == 0, json.dumps(r))
        for order in names(args.ike):
            r = rows.get(order, {})
            checks.check(f"{order}: its moves cost a new IKE negotiation each (>= 9 messages per move)",
                         (r.get("moves") or 0) >= 1 and (r.get("ike_messages") or 0) >= 9 * r["moves"], json.dumps(r))
        for kind, key, given in (("reason", "reason", args.reason), ("drop counter", "drops", args.drop)):
            for item in given:
                order, _, text = item.partition("=")
                r = rows.get(order, {})
                seen = r.get(key) or ""
                checks.check(f"{order}: its {kind} names \"{text}\"",
                             text in seen if isinstance(seen, str) else any(text in d for d in seen), json.dumps(r))
        md_path = os.path.join(report, "matrix.md")
        md = open(md_path).read() if os.path.exists(md_path) else ""
        checks.check("matrix.md has the table", "| order | carries traffic |" in md, md[:500])
        checks.check("the printed summary counts the orders that carry traffic",
                     f"{len(carries)} of {len(carries) + len(fails)} orders carry traffic" in out, out[-400:])
        checks.check("each order has its own report", all(os.path.exists(os.path.join(report, o, "report.json")) for o in rows))
        left = namespaces(p.pid)
        checks.check("no namespace is left", not left, str(left))
    return checks.finish()


if __name__ == "__main__":
    sys.exit(main())

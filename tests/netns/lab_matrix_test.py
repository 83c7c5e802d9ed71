# SPDX-License-Identifier: MIT
"""`mipsec lab matrix ha-inside-orders`: the problem statement's §2.1 topology (home agent
behind the VPN gateway) run once per stack order. Asserted from matrix.json, the figures each
run measured: RFC 5265's order carries traffic across the move with no IKE message; i-MIP over
IPsec without x-MIP carries traffic but pays a complete IKE negotiation for the move (§4.1);
IPsec over i-MIP carries nothing, because the registration never reaches the internal home
agent, and the row says what was observed. Afterwards no namespace of the lab is left."""
import argparse
import json
import os
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "tools"))
from lab_run_test import namespaces  # noqa: E402
from netns_lab import Checks, require_root  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--mipsec", required=True)
    args = ap.parse_args()
    require_root("mipsec lab matrix")
    checks = Checks()
    with tempfile.TemporaryDirectory(prefix="mipsec-lab-matrix-test-") as report:
        p = subprocess.Popen([args.mipsec, "lab", "matrix", "ha-inside-orders", "--report", report],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        out, err = p.communicate(timeout=280)
        print(out[-4000:])
        checks.check("lab matrix exits 0 (every order behaved as the scenario expects)", p.returncode == 0,
                     f"exit {p.returncode}\n{err[-3000:]}")
        try:
            rows = {r["order"]: r for r in json.load(open(os.path.join(report, "matrix.json")))["rows"]}
        except (OSError, ValueError, KeyError) as e:
            checks.check("matrix.json is written", False, str(e))
            rows = {}
        checks.check("one row per order the scenario names", sorted(rows) == ["imip-over-ipsec", "ipsec-over-imip", "rfc5265"],
                     str(sorted(rows)))
        r = rows.get("rfc5265", {})
        checks.check("rfc5265: carries traffic across the move with no IKE message",
                     r.get("carries_traffic") is True and r.get("moves") == 1 and r.get("ike_messages") == 0, json.dumps(r))
        r = rows.get("imip-over-ipsec", {})
        checks.check("imip-over-ipsec: carries traffic, but the move costs a whole IKE negotiation (>= 9 messages)",
                     r.get("carries_traffic") is True and (r.get("ike_messages") or 0) >= 9, json.dumps(r))
        r = rows.get("ipsec-over-imip", {})
        checks.check("ipsec-over-imip: carries nothing; the row says the registration went unanswered",
                     r.get("carries_traffic") is False and "no Mobile IP registration" in r.get("reason", "")
                     and any("mip.mobile_node: not_registered" in d for d in r.get("drops", [])), json.dumps(r))
        md = open(os.path.join(report, "matrix.md")).read() if os.path.exists(os.path.join(report, "matrix.md")) else ""
        checks.check("matrix.md has the table, and each order has its own report",
                     "| order | carries traffic |" in md
                     and all(os.path.exists(os.path.join(report, o, "report.json")) for o in rows), md[:500])
        checks.check("the printed summary", "2 of 3 orders carry traffic (rfc5265, imip-over-ipsec)" in out, out[-400:])
        left = namespaces(p.pid)
        checks.check("no namespace is left", not left, str(left))
    return checks.finish()


if __name__ == "__main__":
    sys.exit(main())

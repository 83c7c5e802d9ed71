# SPDX-License-Identifier: MIT
"""The full RFC 5265 stack on a bad outer network: 20 % loss each way plus 5 % duplicates and
10 % reordered packets (tap.impair at the bottom of the mobile node's pipeline, seeded).

Mobile IP registration, IKE Main Mode + Mode Config + Quick Mode, the CHILD_SA rekey, IKE
re-authentication and an outside -> outside handover must all complete, and a TCP stream from
the intranet home address (i-MIP in ESP in x-MIP) must arrive byte-exact. Each step's time is
printed. The scenario is tools/loss_table.py's; `tools/loss_table.py --matrix` runs it at
0-30 % loss with several seeds for README's table.
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "tools"))
from loss_table import COLUMNS, fmt, run_scenario  # noqa: E402
from netns_lab import Checks, require_root  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--mipsec", required=True)
    ap.add_argument("--loss", type=float, default=20, help="percent, each way")
    ap.add_argument("--seed", type=int, default=3, help="tap.impair seed (replays the same fault pattern)")
    args = ap.parse_args()
    require_root("the bad network test")
    checks = Checks()
    r = run_scenario(args.mipsec, args.loss / 100, args.seed, log=lambda line: None)
    for name, ok, detail in r["checks"]:
        checks.check(f"{args.loss:.0f} % loss, seed {args.seed}: {name}", ok, detail)
    print("timing (s): " + "  ".join(f"{c} {fmt(r['times'][c])}" for c in COLUMNS), flush=True)
    print(f"impairment counters: {r['impair']}", flush=True)
    if r.get("stream"):
        st = r["stream"]
        print(f"stream: {st['bytes']} bytes in {fmt(st['seconds'])} s ({st['bytes'] / st['seconds'] / 1000:.1f} kB/s)", flush=True)
    return checks.finish()


if __name__ == "__main__":
    sys.exit(main())

# SPDX-License-Identifier: MIT
"""python3 -m lab --mipsec BIN (list | check FILE | run SCENARIO [--report DIR] [--keep] [--set K=V]...
                                | matrix SCENARIO [--orders A,B] [--param order] [--report DIR]
                                | pictures [SCENARIO...] [--out DIR])

Exit codes: 0 success; 1 an assertion failed or a step could not be done; 2 a bad scenario or
usage; 130 interrupted (everything created is removed first)."""
from __future__ import annotations

import argparse
import glob
import json
import os
import sys
import tempfile
import time

if __package__ in (None, ""):  # run as a directory or a file: import the package by its name
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    __package__ = os.path.basename(os.path.dirname(os.path.abspath(__file__)))  # noqa: A001
    __import__(__package__)

from . import SCENARIO_DIR  # noqa: E402
from . import report, scenario  # noqa: E402


def shipped() -> dict[str, str]:
    return {os.path.basename(p)[:-5]: p for p in sorted(glob.glob(os.path.join(SCENARIO_DIR, "*.json")))}


def locate(name: str) -> str:
    if os.path.sep in name or name.endswith(".json") or os.path.exists(name):
        return name
    known = shipped()
    if name not in known:
        raise scenario.ScenarioError([("", f"\"{name}\" is neither a file nor a shipped scenario ({', '.join(known)})")])
    return known[name]


def print_problems(path: str, e: scenario.ScenarioError) -> None:
    for at, msg in e.problems:
        print(f"mipsec lab: {path}: {at or '/'}: {msg}", file=sys.stderr)


def cmd_list(_args) -> int:
    for name, path in shipped().items():
        try:
            with open(path) as f:
                summary = json.load(f).get("summary", "")
        except (OSError, ValueError) as e:
            summary = f"(unreadable: {e})"
        print(f"{name:<16} {summary}")
    return 0


def cmd_check(args) -> int:
    try:
        path = locate(args.file)
        doc = scenario.load(path, args.set, args.mipsec)
    except scenario.ScenarioError as e:
        print_problems(args.file, e)
        return 2
    params = doc.get("parameters", {})
    nodes = [spec for spec in doc.get("nodes", {}).values() if scenario.active(spec, params)]
    swans = sum(1 for spec in nodes if "strongswan" in spec)
    steps = sum(1 for step in doc["timeline"] if scenario.active(step, params))
    print(f"{path}: OK, scenario {doc['scenario']}: {len(doc['networks'])} network(s), {len(doc['hosts'])} host(s), "
          f"{len(nodes) - swans} mipsec node(s)" + (f", {swans} strongSwan node(s)" if swans else "") + f", {steps} step(s)")
    return 0


def cmd_run(args) -> int:
    try:
        path = locate(args.scenario)
        doc = scenario.load(path, args.set, args.mipsec)
    except scenario.ScenarioError as e:
        print_problems(args.scenario, e)
        return 2
    if os.geteuid() != 0:
        print("mipsec lab: run needs root (network namespaces, TUN devices, nftables)", file=sys.stderr)
        return 1
    try:
        result, report_dir, written = run_scenario(doc, path, args.mipsec, args.keep, args.report)
    except KeyboardInterrupt:
        print("mipsec lab: interrupted; everything the run created is removed", file=sys.stderr)
        return 130
    print()
    print(report.move_table(result["moves"]))
    print()
    print(f"mipsec lab: {doc['scenario']}: {'PASS' if result['passed'] else 'FAIL'} in {result['duration_s']:.1f} s; report: {report_dir}"
          f" ({', '.join(os.path.basename(w) for w in written)})")
    return 0 if result["passed"] else 1


def run_scenario(doc: dict, path: str, mipsec: str, keep: bool, report_arg, log=None) -> tuple[dict, str, list]:
    """Builds, runs and tears down one scenario; (result, report directory, files written).
    KeyboardInterrupt passes through after everything the run created is removed."""
    from .netns import Lab
    from .runner import Run, StepFailed

    log = log or (lambda s: print(s, flush=True))
    t0 = time.time()
    error = None
    with Lab(doc["scenario"], keep_dir=keep) as lab:
        log(f"mipsec lab: {doc['scenario']}: building in {lab.dir}")
        run = Run(doc, mipsec, lab, log=log)
        traffic = {}
        drops: dict = {}
        try:
            run.build()
            run.timeline()
            drops = run.drop_summary()
            traffic = run.finish()
        except StepFailed as e:
            error = str(e)
            run.assertion("every step completed", False, error)
            print(f"mipsec lab: {error}", file=sys.stderr)
            drops = run.drop_summary()
            lab.dump_logs()
        passed = error is None and all(a["ok"] for a in run.assertions)
        result = {
            "scenario": doc["scenario"], "file": os.path.abspath(path), "parameters": doc.get("parameters", {}),
            "passed": passed, "error": error, "duration_s": round(time.time() - t0, 3),
            "moves": run.moves, "traffic": traffic, "assertions": run.assertions, "events": run.events,
            "series": run.series(), "drops": drops,
        }
        # Made only now: an interrupted run leaves no file behind.
        report_dir = report_arg or tempfile.mkdtemp(prefix=f"mipsec-lab-{doc['scenario']}-")
        kept = []
        if keep:
            os.makedirs(report_dir, exist_ok=True)
            kept = run.keep_captures(report_dir)
            result["kept"] = [os.path.basename(k) for k in kept]
        written = report.write(report_dir, doc, result) + kept
        if keep:
            log(f"mipsec lab: run directory kept: {lab.dir}")
    return result, report_dir, written


def if_values(element, parameter: str) -> list:
    """Every value an "if" anywhere in the scenario gives `parameter`, in order of appearance."""
    found: list = []

    def walk(e) -> None:
        if isinstance(e, dict):
            cond = e.get("if")
            if isinstance(cond, dict) and parameter in cond and cond[parameter] not in found:
                found.append(cond[parameter])
            e = list(e.values())
        if isinstance(e, list):
            for v in e:
                walk(v)

    walk(element)
    return found


def cmd_matrix(args) -> int:
    """The same scenario once per layering order (a parameter the scenario's nodes select on
    with "if"): which orders work, their figures, and for those that fail, what was observed."""
    try:
        path = locate(args.scenario)
        base = scenario.load(path, args.set, args.mipsec)
    except scenario.ScenarioError as e:
        print_problems(args.scenario, e)
        return 2
    if args.param not in base.get("parameters", {}):
        print(f"mipsec lab: {path}: /parameters: no parameter \"{args.param}\" to vary; "
              f"name the one that selects the stack order with --param", file=sys.stderr)
        return 2
    orders = [o for o in args.orders.split(",") if o] if args.orders else [str(v) for v in if_values(base, args.param)]
    if not orders:
        print(f"mipsec lab: {path}: no value of \"{args.param}\" to run: give --orders A,B,…", file=sys.stderr)
        return 2
    docs = {}
    for order in orders:  # every order is validated before anything is built
        try:
            docs[order] = scenario.load(path, args.set + [f"{args.param}={order}"], args.mipsec)
        except scenario.ScenarioError as e:
            print_problems(f"{args.scenario} ({args.param}={order})", e)
            return 2
    if os.geteuid() != 0:
        print("mipsec lab: matrix needs root (network namespaces, TUN devices, nftables)", file=sys.stderr)
        return 1
    out_dir = args.report or tempfile.mkdtemp(prefix=f"mipsec-lab-matrix-{base['scenario']}-")
    rows = []
    for order, doc in docs.items():
        print(f"mipsec lab matrix: {base['scenario']}: {args.param}={order}", flush=True)
        try:
            result, _, _ = run_scenario(doc, path, args.mipsec, False, os.path.join(out_dir, order),
                                        log=(lambda s: print(s, flush=True)) if args.verbose else (lambda s: None))
        except KeyboardInterrupt:
            print("mipsec lab: interrupted; everything the run created is removed", file=sys.stderr)
            return 130
        rows.append(report.matrix_row(order, result))
    written = report.write_matrix(out_dir, base, args.param, rows)
    print()
    print(report.matrix_table(args.param, rows))
    print()
    works = [r["order"] for r in rows if r["carries_traffic"]]
    expected = sum(1 for r in rows if r["passed"])
    print(f"mipsec lab matrix: {base['scenario']}: {len(works)} of {len(rows)} orders carry traffic"
          f" ({', '.join(works) or 'none'}), {expected} of {len(rows)} as the scenario expects; "
          f"report: {out_dir} ({', '.join(os.path.basename(w) for w in written)})")
    # Success means every order behaved as the scenario says; an order expected to fail
    # asserts its own failure, so a matrix of expectations all met exits 0.
    return 0 if all(r["passed"] for r in rows) else 1


PICTURES_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "pictures")


def cmd_pictures(args) -> int:
    """The topology picture of each named (default: every shipped) scenario, as a run's report
    draws it, into DIR/<scenario>.svg: what the README shows (tools/lab/pictures)."""
    import shutil
    if not shutil.which("dot"):
        print("mipsec lab: pictures need graphviz (dot)", file=sys.stderr)
        return 1
    names = args.scenarios or list(shipped())
    os.makedirs(args.out, exist_ok=True)
    for name in names:
        try:
            path = locate(name)
            doc = scenario.load(path, args.set, args.mipsec)
        except scenario.ScenarioError as e:
            print_problems(name, e)
            return 2
        out = os.path.join(args.out, f"{doc['scenario']}.svg")
        if not report.topology_svg(doc, out):
            print(f"mipsec lab: dot could not draw {name}", file=sys.stderr)
            return 1
        print(out)
    return 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="mipsec lab", description="Declarative network-namespace scenarios for mipsec")
    ap.add_argument("--mipsec", default="mipsec", help="the mipsec binary the lab runs (mipsec lab passes its own path)")
    sub = ap.add_subparsers(dest="command", required=True)
    sub.add_parser("list", help="the shipped scenarios, one line each")
    c = sub.add_parser("check", help="validate a scenario file (and each node config with mipsec check)")
    c.add_argument("file")
    c.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    r = sub.add_parser("run", help="build a scenario, run its timeline, tear it down, write the report")
    r.add_argument("scenario", help="a shipped scenario's name or a file")
    r.add_argument("--report", metavar="DIR", help="where report.json and report.md go (default: a new temporary directory)")
    r.add_argument("--keep", action="store_true", help="keep the run directory (configs, logs, captures) and copy the captures into the report directory")
    r.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a scenario parameter")
    m = sub.add_parser("matrix", help="run a scenario once per layering order and compare")
    m.add_argument("scenario", help="a shipped scenario's name or a file")
    m.add_argument("--orders", metavar="A,B,…", help="the values to run (default: every value the scenario's \"if\"s name)")
    m.add_argument("--param", default="order", help="the parameter that selects the order (default: order)")
    m.add_argument("--report", metavar="DIR", help="where matrix.md/json and one report per order go")
    m.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override another parameter")
    m.add_argument("--verbose", action="store_true", help="print each run's steps")
    pc = sub.add_parser("pictures", help="draw the topology picture of scenarios (no root needed)")
    pc.add_argument("scenarios", nargs="*", help="shipped scenario names or files (default: every shipped scenario)")
    pc.add_argument("--out", default=PICTURES_DIR, metavar="DIR", help="where <scenario>.svg go (default: the lab's pictures directory)")
    pc.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a scenario parameter")
    args = ap.parse_args(argv)
    return {"list": cmd_list, "check": cmd_check, "run": cmd_run, "matrix": cmd_matrix, "pictures": cmd_pictures}[args.command](args)


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""How long the protocols of the full RFC 5265 stack take to complete on a bad outer network.

One run (`run_scenario`) is the lab scenario rfc5265-loss (tools/lab/scenarios/rfc5265-loss.json,
through the lab library, as `mipsec lab run rfc5265-loss --set loss=L --set seed=S` runs it): a
tap.impair stage at the bottom of the mobile node's pipeline (`loss` each way, plus 5 %
duplicates and 10 % reordered packets, from `seed`), then, while a TCP stream runs from the
intranet home address to an intranet correspondent through i-MIP in ESP in x-MIP, the
scenario's steps. Times come from the mobile node's own log (read back from the run
directory), to the millisecond; the handover's from the lab's move table (the link change to
the status showing the registration, within one status query, ~50 ms):

    registration  mobile node start (its first log line) -> x-MIP registered with the external home agent
    ike           x-MIP registered -> first ESP SA installed (Main Mode + Mode Config + Quick Mode)
    i-mip         first ESP SA installed -> i-MIP registered through the VPN
    rekey         CHILD_SA rekey due (rekey_s after the install) -> new ESP SA installed
    re-auth       re-authentication started -> new IKE SA, CHILD_SA in, old IKE SA retired
    handover      link change cafe -> hotel (outside -> outside) -> x-MIP registered there

and the scenario's assertions (the stream byte-exact among them) are the run's checks. The
stream's goodput (bytes the server received, in order, from the stream's start to its last
byte) is reported too: under heavy loss TCP's own retransmission back-off may keep a stream
from finishing in the time allowed, and then that is what it achieved.

    sudo tools/loss_table.py --mipsec build/apps/mipsec/mipsec            # 20 % loss, one seed
    sudo tools/loss_table.py --mipsec build/apps/mipsec/mipsec --matrix   # 0-30 %, 5 seeds each

MIPSEC_KEEP_LAB=1 keeps each run's directory (node configs and logs) and its report (report.json:
every assertion, move and event; the drop counters of a failed run) and prints where they are.
"""
import argparse
import glob
import os
import shutil
import statistics
import sys
import time
from concurrent.futures import ProcessPoolExecutor

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from lab import scenario as lab_scenario  # noqa: E402
from lab.__main__ import locate, run_scenario as run_lab  # noqa: E402
from lab.netns import require_root  # noqa: E402

SCENARIO = "rfc5265-loss"
COLUMNS = ("registration", "ike", "i-mip", "rekey", "re-auth", "handover")
I_HOME, X_HOME = "10.99.1.77", "203.0.113.77"  # the scenario's intranet and external home addresses


def log_events(path: str) -> list:
    """(seconds of the UTC day, message) of every line of a node's text log ("HH:MM:SS.mmm level
    component: message"); a run that passes midnight counts on past 86400."""
    out, day = [], 0.0
    try:
        with open(path) as f:
            for line in f:
                try:
                    h, m, sec = line[:12].split(":")
                    t = int(h) * 3600 + int(m) * 60 + float(sec) + day
                except ValueError:
                    continue
                if out and t < out[-1][0] - 43200:
                    day += 86400
                    t += 86400
                out.append((t, line[12:].strip()))
    except OSError:
        pass
    return out


def first_event(events: list, text: str, after: float = float("-inf")):
    """The time of the first logged message containing `text` at or after `after`, or None."""
    return next((t for t, m in events if t >= after and text in m), None)


def log_times(ev: list, rekey_s: float) -> dict:
    """The columns but the handover, from the mobile node's log."""
    times = {}
    t_start = ev[0][0] if ev else None
    t_reg = first_event(ev, f"registered {X_HOME}")
    t_ike_start = first_event(ev, "starting IKE with")
    t_sa = first_event(ev, "ESP SA installed")
    t_imip = first_event(ev, f"registered {I_HOME}")
    times["registration"] = t_reg - t_start if t_reg is not None and t_start is not None else None
    # IKE starts with the node; its packets can only get through once x-MIP is registered.
    times["ike"] = t_sa - max(t_reg, t_ike_start) if None not in (t_reg, t_sa, t_ike_start) else None
    times["i-mip"] = t_imip - t_sa if t_sa is not None and t_imip is not None else None
    # The CHILD_SA rekey: an install rekey_s or more after the one before it with no
    # re-authentication started in between, due rekey_s after that one.
    times["rekey"] = None
    if t_sa is not None:
        installs = [t for t, m in ev if "ESP SA installed" in m and t >= t_sa]
        starts = [t for t, m in ev if "re-authenticating with" in m]
        times["rekey"] = next((max(b - (a + rekey_s), 0.0) for a, b in zip(installs, installs[1:])
                               if b - a >= rekey_s - 0.5 and not any(a < t < b for t in starts)), None)
    # Re-authentication: the first to start after the first ESP SA.
    start = first_event(ev, "re-authenticating with", t_sa + 0.001) if t_sa is not None else None
    done = first_event(ev, "re-authenticated with", start) if start is not None else None
    times["re-auth"] = done - start if done is not None else None
    return times


def run_scenario(mipsec: str, loss: float, seed: int, log=print) -> dict:
    """Runs the scenario once. Returns {"times": {column: seconds or None}, "checks":
    [(name, ok, detail)], "stream": {"bytes", "seconds", "finished"} or None}."""
    sets = [f"loss={loss}", f"seed={seed}", f"lossy={'true' if loss > 0 else 'false'}"]
    path = locate(SCENARIO)
    doc = lab_scenario.load(path, sets, mipsec)
    keep = os.environ.get("MIPSEC_KEEP_LAB") == "1"
    tag = f"[{loss:.0%} seed {seed}]"
    run_dir = []

    def lab_log(line):
        if line.startswith("mipsec lab: ") and " building in " in line:
            run_dir.append(line.rsplit(" ", 1)[1])
        if line.startswith(("FAIL", "mipsec lab")) and (keep or "run directory kept" not in line):
            log(f"{tag} {line}")

    # The run directory is kept for the mobile node's log, and removed after unless asked for.
    result, report_dir, _ = run_lab(doc, path, mipsec, True, None, log=lab_log)
    logs = sorted(glob.glob(os.path.join(run_dir[0], "mipsec-mn-*.log"))) if run_dir else []
    times = {c: None for c in COLUMNS}
    times.update(log_times(log_events(logs[0]) if logs else [], doc["parameters"]["rekey_s"]))
    if run_dir and not keep:
        shutil.rmtree(run_dir[0], ignore_errors=True)
    if result["moves"] and result["moves"][0].get("link_to_registration_ms") is not None:
        times["handover"] = result["moves"][0]["link_to_registration_ms"] / 1000
    checks = [(a["name"], a["ok"], a.get("detail", "")) for a in result["assertions"]]
    stream = None
    st = result["traffic"].get("stream stream")
    points = result["series"]["streams"].get("stream", [])
    t_stream = next((e["t_ms"] / 1000 for e in result["events"] if e["event"] == "traffic" and e.get("name") == "stream"), None)
    if st is not None and t_stream is not None:
        last = points[-1][0] if points else t_stream
        stream = {"bytes": st["bytes"], "finished": bool(st["intact"]), "seconds": max(last - t_stream, 0.001)}
        log(f"     {tag} stream: {st['bytes']} bytes received in order in {fmt(stream['seconds'])} s, "
            f"{'finished' if st['intact'] else 'not finished'}")
    if result["passed"] and not keep:
        shutil.rmtree(report_dir, ignore_errors=True)
    log(f"{'ok  ' if result['passed'] else 'FAIL'} {tag} " + "  ".join(f"{c} {fmt(times[c])}" for c in COLUMNS)
        + ("" if result["passed"] else f"  (report: {report_dir})"))
    return {"times": times, "checks": checks, "stream": stream}


def _one_run(job):
    mipsec, loss, seed = job
    return loss, seed, run_scenario(mipsec, loss, seed, log=lambda line: print(line, flush=True))


def fmt(v):
    return "—" if v is None else f"{v:.2f}"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mipsec", required=True)
    ap.add_argument("--matrix", action="store_true", help="every loss rate of --losses, --seeds runs each")
    ap.add_argument("--losses", default="0,5,10,20,30", help="loss rates in percent for --matrix")
    ap.add_argument("--seeds", type=int, default=5, help="seeded runs per loss rate for --matrix")
    ap.add_argument("--loss", type=float, default=20, help="loss in percent for a single run")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--parallel", type=int, default=2, help="labs at once for --matrix")
    args = ap.parse_args()
    require_root("the loss table")
    if not args.matrix:
        r = run_scenario(args.mipsec, args.loss / 100, args.seed)
        print("  ".join(f"{c} {fmt(r['times'][c])} s" for c in COLUMNS))
        return 0 if all(ok for _, ok, _ in r["checks"]) else 1
    runs = [(float(p) / 100, s) for p in args.losses.split(",") for s in range(1, args.seeds + 1)]
    started = time.time()

    # Processes, not threads: each lab installs signal handlers for its clean-up.
    with ProcessPoolExecutor(max_workers=args.parallel) as pool:
        results = list(pool.map(_one_run, [(args.mipsec, loss, seed) for loss, seed in runs]))
    print(f"\n{len(runs)} runs in {time.time() - started:.0f} s; seconds to complete, median of {args.seeds} seeded runs "
          f"(failed runs count as missing: n/{args.seeds} completed when fewer)\n")
    print("| loss each way | " + " | ".join(COLUMNS) + " | stream intact | stream goodput kB/s |")
    print("|---" * (len(COLUMNS) + 3) + "|")
    failures = 0
    for p in args.losses.split(","):
        loss = float(p) / 100
        rows = [r for lo, _, r in results if lo == loss]
        cells = []
        for c in COLUMNS:
            vals = [r["times"][c] for r in rows if r["times"][c] is not None]
            cell = fmt(statistics.median(vals)) if vals else "—"
            if len(vals) < len(rows):
                cell += f" ({len(vals)}/{len(rows)})"
            cells.append(cell)
        intact = sum(1 for r in rows if r.get("stream") and r["stream"]["finished"])
        failures += sum(1 for r in rows for _, ok, _ in r["checks"] if not ok)
        rates = [st["bytes"] / st["seconds"] / 1000 for st in (r.get("stream") for r in rows) if st and st["seconds"]]
        print(f"| {p} % | " + " | ".join(cells) + f" | {intact}/{len(rows)} | " + (fmt(statistics.median(rates)) if rates else "—") + " |")
    print("\nper run:")
    for loss, seed, r in results:
        st = r.get("stream")
        print(f"  {loss:.0%} seed {seed}: " + "  ".join(f"{c} {fmt(r['times'][c])}" for c in COLUMNS) +
              (f"  stream {st['bytes']} bytes in {fmt(st['seconds'])} s{'' if st['finished'] else ' (not finished)'}" if st else ""))
    return 0 if failures == 0 else 1


if __name__ == "__main__":
    sys.exit(main())

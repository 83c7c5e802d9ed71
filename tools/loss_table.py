#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""How long the protocols of the full RFC 5265 stack take to complete on a bad outer network.

One run (`run_scenario`) builds tools/full_stack_lab.py's lab with a tap.impair stage at the
bottom of the mobile node's pipeline (`loss` each way, plus 5 % duplicates and 10 % reordered
packets, from `seed`), then, while a TCP stream runs from the intranet home address to an
intranet correspondent through i-MIP in ESP in x-MIP:

    registration  mobile node start -> x-MIP registered with the external home agent
    ike           x-MIP registered -> first ESP SA installed (Main Mode + Mode Config + Quick Mode)
    i-mip         first ESP SA installed -> i-MIP registered through the VPN
    rekey         CHILD_SA rekey due (child_rekey_s after the install) -> new ESP SA installed
    re-auth       re-authentication started -> new IKE SA, CHILD_SA in, old IKE SA retired
    handover      link change cafe -> hotel (outside -> outside) -> x-MIP registered there

and checks that the stream arrives byte-exact. Times come from the mobile node's own log.
The stream's goodput (bytes the server received, in order, over the time from the stream's
start to its last byte) is reported too: under heavy loss TCP's own retransmission back-off
may keep a stream from finishing in the time allowed, and then that is what it achieved.

    sudo tools/loss_table.py --mipsec build/apps/mipsec/mipsec            # 20 % loss, one seed
    sudo tools/loss_table.py --mipsec build/apps/mipsec/mipsec --matrix   # 0-30 %, 5 seeds each
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from concurrent.futures import ProcessPoolExecutor

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from full_stack_lab import CN, I_HOME, X_HOME, FullStack, first_event, impairment  # noqa: E402
from netns_lab import Lab, require_root  # noqa: E402
from roaming_lab import Stream  # noqa: E402

REKEY_S = 10          # the first CHILD_SA is rekeyed this long after its install
IKE_LIFETIME_S = 90   # re-authentication starts REAUTH_MARGIN_S before the IKE SA would end
REAUTH_MARGIN_S = 45  # (45 s leave room for three Main Mode retransmissions, 4 + 7.2 + 13 s)
# TCP's own exponential back-off is not what the scenario measures. At 20 % loss each way a
# retransmission and its ACK both get through 64 % of the time, so about one lost segment in
# 460 fails six times in a row; from an RTO of 1.8 s (seen under this loss) that is 1.8 s x 63,
# about 2 min of silence with Linux's 120 s ceiling, and the client's socket times out (a seed
# 10 run paused 55 s after five such failures, every one a loss the impairment stage's seeded
# draws account for). With a 10 s ceiling the stream's pauses are the stack's: a gap in the
# data path still shows, a run of coin flips no longer does. net.ipv4.tcp_rto_max_ms is
# Linux 6.15+; older kernels keep their ceiling.
TCP_RTO_MAX_MS = 10000
COLUMNS = ("registration", "ike", "i-mip", "rekey", "re-auth", "handover")


def run_scenario(mipsec: str, loss: float, seed: int, log=print, timeout_scale: float = 1.0) -> dict:
    """Runs the scenario once. Returns {"times": {column: seconds or None}, "checks":
    [(name, ok, detail)], "impair": the impairment stage's counters, "stream": {"bytes",
    "seconds", "finished"} or None}."""
    times = {c: None for c in COLUMNS}
    checks = []
    stream_figures = None

    def check(name, ok, detail=""):
        checks.append((name, bool(ok), detail))
        log(f"{'ok  ' if ok else 'FAIL'} [{loss:.0%} seed {seed}] {name}" + ("" if ok else f": {detail}"))
        return ok

    def wait(lab, what, predicate, timeout):
        try:
            return lab.wait_for(predicate, timeout=timeout * timeout_scale, interval=0.2, what=what)
        except TimeoutError:
            return None

    with Lab(f"loss{int(loss * 100)}") as lab:
        fs = FullStack(lab, mipsec, impair=impairment(loss, seed),
                       vpn={"child_rekey_s": REKEY_S, "ike_lifetime_s": IKE_LIFETIME_S, "reauth_margin_s": REAUTH_MARGIN_S})
        for host in (fs.mn, fs.cn):
            host.run(["sysctl", "-qw", f"net.ipv4.tcp_rto_max_ms={TCP_RTO_MAX_MS}"], check=False)
        if os.environ.get("MIPSEC_LOSS_PCAP"):
            # Every packet's headers on the mobile node, the x-HA, the gateway and the
            # correspondent (cap-<role>.pcapng, with MIPSEC_KEEP_LAB=1): where a stalled
            # stream's retransmissions and ACKs die, and under which ESP SPI.
            for h in (fs.mn, fs.cn, fs.gw, fs.xha):
                path = f"{lab.dir}/cap-{h.role}.pcapng"
                h.spawn(["dumpcap", "-q", "-i", "any", "-s", "160", "-w", path], log_name=f"dumpcap-{h.role}")
                lab.wait_for(lambda: os.path.exists(path), what=f"the capture on {h.role}")
        t_start = fs.start_mobile_node()
        ev = fs.events
        up = wait(lab, "x-MIP, IKE and i-MIP", lambda: first_event(ev(), f"registered {I_HOME}"), 150)
        e = ev()
        t_reg = first_event(e, f"registered {X_HOME}")
        t_ike_start = first_event(e, "starting IKE with")
        t_sa = first_event(e, "ESP SA installed")
        t_imip = first_event(e, f"registered {I_HOME}")
        if t_reg:
            times["registration"] = t_reg - t_start
        if t_reg and t_sa and t_ike_start:
            # IKE starts with the node; its packets can only get through once x-MIP is registered.
            times["ike"] = t_sa - max(t_reg, t_ike_start)
        if t_sa and t_imip:
            times["i-mip"] = t_imip - t_sa
        check("x-MIP registration completes", t_reg)
        check("IKE Main Mode + Mode Config + Quick Mode complete (ESP SA installed)", t_sa)
        if not check("i-MIP registers through the VPN", up):
            lab.dump_logs()
            return {"times": times, "checks": checks, "impair": fs.mn_stages()["impair"], "stream": None}

        t_stream = time.time()
        stream = Stream(lab, fs.cn, fs.mn, I_HOME, CN, connect_timeout=60)

        # The CHILD_SA rekey: an install REKEY_S or more after the one before it with no
        # re-authentication started in between is a rekey, due REKEY_S after that one (when a
        # re-authentication comes first, the rekey timed is that of its new CHILD_SA).
        def rekeyed():
            e = ev()
            installs = [t for t, m in e if "ESP SA installed" in m and t >= t_sa]
            starts = [t for t, m in e if "re-authenticating with" in m]
            for a, b in zip(installs, installs[1:]):
                if b - a >= REKEY_S - 0.5 and not any(a < t < b for t in starts):
                    return b - (a + REKEY_S)
            return None

        if wait(lab, "the CHILD_SA rekey", lambda: rekeyed() is not None, REKEY_S + 90):
            times["rekey"] = rekeyed()
        check("CHILD_SA rekey completes (make-before-break)", times["rekey"] is not None,
              str([(round(t - t_sa, 3), m) for t, m in ev() if t > t_sa and ("SA installed" in m or "authenticat" in m)][:6]))

        # Re-authentication: the first one to start after the first ESP SA (one may have run
        # before it when Mode Config or Quick Mode of the first IKE SA was still retrying).
        def reauthenticated():
            e = ev()
            start = first_event(e, "re-authenticating with", t_sa + 0.001)
            done = start and first_event(e, "re-authenticated with", start)
            return done and (start, done)

        r = wait(lab, "the re-authentication", reauthenticated, IKE_LIFETIME_S + 30)
        if r:
            times["re-auth"] = r[1] - r[0]
        check("IKE re-authentication completes before the IKE SA's lifetime ends", times["re-auth"] is not None,
              str([m for _, m in ev() if "authent" in m or "failed" in m][-5:]))

        streamed = stream.bytes()
        save_status(lab, fs, "before-move")
        t_move = fs.move("hotel")
        t_hand = wait(lab, "the handover registration",
                      lambda: first_event(ev(), f"registered {X_HOME} at care-of address 198.51.100.100", t_move - 0.01), 60)
        if t_hand:
            times["handover"] = t_hand - t_move
        check("outside -> outside handover (cafe -> hotel): x-MIP re-registered", t_hand)
        # Under heavy loss TCP may sit in exponential back-off for a while: give it time, then
        # require that bytes sent after the handover arrived, all of them, in order.
        stall_note = ""
        if not wait(lab, "the stream after the handover", lambda: stream.bytes() > streamed + 20000, 60):
            # Stalled: what every node counts, twice 5 s apart (which counters still move, which
            # drop reasons grow), and the sender's TCP state (RTO back-off, last ACK, path MTU).
            notes = []
            for when in ("stalled", "stalled+5s"):
                drops = save_status(lab, fs, when, roles=("mn", "gw", "xha", "iha"))
                notes.append(f"drops by stage {when}: {drops}")
                for host, name in ((fs.mn, "mn"), (fs.cn, "cn")):
                    r = host.run(["ss", "-tinm"], check=False)
                    r2 = host.run(["ip", "route", "show", "cache"], check=False)
                    with open(f"{lab.dir}/tcp-{name}-{when}.txt", "w") as f:
                        f.write(r.stdout + r.stderr + "\n" + r2.stdout + r2.stderr)
                    if name == "mn" and when == "stalled":
                        notes.append("sender: " + " ".join(w for w in r.stdout.split()
                                                           if w.split(":")[0] in ("rto", "backoff", "lastsnd", "lastack", "pmtu", "retrans", "unacked")))
                if when == "stalled":
                    time.sleep(5)
            stall_note = "\n" + "\n".join(notes)
        t_stop = time.time()
        try:
            ok, out = stream.finish(timeout=180)
        except subprocess.TimeoutExpired:
            ok, out = False, "the stream client did not exit within 180 s of being stopped"
        arrivals = stream.times()
        # Goodput over the time the stream was offered (about 100 kB/s), from its start to the
        # stop (or to its last byte if that came later); a stalled stream counts its stall.
        stream_figures = {"bytes": stream.bytes(), "finished": bool(ok),
                          "seconds": max(t_stop, arrivals[-1][0] if arrivals else 0) - t_stream,
                          "last_byte_s": (arrivals[-1][0] - t_stream) if arrivals else None}
        log(f"     [{loss:.0%} seed {seed}] stream: {stream_figures['bytes']} bytes received in order in "
            f"{fmt(stream_figures['seconds'])} s (the last {fmt(stream_figures['last_byte_s'])} s after the start), "
            f"{'finished' if ok else 'not finished'}")
        check(f"the TCP stream through i-MIP in ESP in x-MIP survived the handover, byte-exact "
              f"({streamed} bytes before it, {stream.bytes()} in all)", ok and stream.bytes() > streamed, out + stall_note)
        st = fs.mn_stages()
        vpn = st["vpn"]
        check("one IKE session all along (re-authentications, never a restart)", vpn.get("sessions_started") == 1,
              f"sessions_started={vpn.get('sessions_started')}")
        impair = st["impair"]
        if loss > 0:
            counters = {d: impair.get(d, {}) for d in ("outbound", "inbound")}
            check("the impairment stage lost, duplicated and reordered packets both ways",
                  all(c.get("lost", 0) > 0 and c.get("duplicated", 0) > 0 and c.get("reordered", 0) > 0 for c in counters.values()),
                  str(impair)[:400])
        if any(not c[1] for c in checks):
            save_status(lab, fs, "end")
            lab.dump_logs()
        return {"times": times, "checks": checks, "impair": impair, "stream": stream_figures}


def save_status(lab, fs, when: str, roles=("mn", "gw")) -> dict:
    """Each role's full status (counters, SAs, drops by reason) as status-<role>-<when>.json in
    the lab directory, for a failure to be looked into (MIPSEC_KEEP_LAB=1 keeps the
    directory). Returns {role: {"index:stage type": drops by reason}} for the non-empty ones."""
    drops = {}
    for role in roles:
        node = fs.status(role)
        with open(f"{lab.dir}/status-{role}-{when}.json", "w") as f:
            json.dump(node, f, indent=1)
        for i, stage in enumerate((node or {}).get("pipeline", [])):
            if stage.get("drops"):
                drops.setdefault(role, {})[f"{i}:{stage.get('type')}"] = stage["drops"]
    return drops


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
        intact = sum(1 for r in rows if any(ok and n.startswith("the TCP stream through") for n, ok, _ in r["checks"]))
        failures += sum(1 for r in rows for _, ok, _ in r["checks"] if not ok)
        rates = [st["bytes"] / st["seconds"] / 1000 for st in (r.get("stream") for r in rows) if st and st["seconds"]]
        print(f"| {p} % | " + " | ".join(cells) + f" | {intact}/{len(rows)} | " + (fmt(statistics.median(rates)) if rates else "—") + " |")
    print("\nper run:")
    for loss, seed, r in results:
        st = r.get("stream")
        print(f"  {loss:.0%} seed {seed}: " + "  ".join(f"{c} {fmt(r['times'][c])}" for c in COLUMNS) +
              (f"  stream {st['bytes']} bytes in {fmt(st['seconds'])} s{'' if st['finished'] else ' (not finished; last byte at ' + fmt(st['last_byte_s']) + ' s)'}" if st else ""))
    return 0 if failures == 0 else 1


if __name__ == "__main__":
    sys.exit(main())

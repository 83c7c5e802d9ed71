# SPDX-License-Identifier: MIT
"""Soak: the full RFC 5265 stack (i-MIP in ESP in x-MIP, tools/full_stack_lab.py, mipsec on
every node) moved --moves times round cafe -> NAT -> hotel -> cafe (outside -> NAT,
NAT -> outside, outside -> outside) while a TCP stream runs from the intranet home address to an
intranet correspondent, with the CHILD_SA rekeyed every 60 s and the IKE SA re-authenticated
every ~9 minutes.

Checked:
  * every move re-registers x-MIP at the new care-of address and the stream moves on after it;
    no IKE restart (one session, re-authentications only), the i-MIP care-of address (the VPN
    inner address) never changes, the stream ends byte-exact;
  * resident memory (VmRSS) and open descriptors of every mipsec process (mobile node, x-HA,
    i-HA, gateway) measured at start (after one round of moves), middle and end: descriptors
    equal, VmRSS within RSS_TOLERANCE_KIB;
  * state that must not grow with moves: one binding at each home agent, one client and a
    bounded number of CHILD_SAs at the gateway, no orphaned CHILD_SA, pool buffers in use
    back to where they were, and no drop counter growing but the ones a move explains.

CI runs 30 moves; `--moves 1000` is the full soak (README, "Soak").
"""
import argparse
import json
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "tools"))
from full_stack_lab import CN, I_HOME, NETWORKS, X_HOME, FullStack, proc_figures  # noqa: E402
from netns_lab import Checks, Lab, require_root  # noqa: E402
from roaming_lab import Stream  # noqa: E402

ROUND = ("natbox", "hotel", "cafe")  # from cafe: outside -> NAT -> outside -> outside
RSS_TOLERANCE_KIB = 1024  # VmRSS may vary by allocator noise; a leak of 1 KiB a move is caught by 1000 moves
POOL_TOLERANCE = 64       # buffers in use at an instant: packets in flight, not a leak
# Drops a move explains: packets sent while the old care-of address is gone and the new
# registration is not yet in (x-MIP: not registered; transport: no route), and a stray
# packet on the old path. Everything else must stay where it was after the first round.
EXPECTED_DROPS = {"not_registered", "no_route", "unroutable"}


class LogFollower:
    """Reads a growing JSON-lines log incrementally."""

    def __init__(self, path):
        self.path, self.offset, self.buf = path, 0, ""

    def new_messages(self):
        try:
            with open(self.path) as f:
                f.seek(self.offset)
                data = f.read()
                self.offset = f.tell()
        except OSError:
            return []
        self.buf += data
        lines = self.buf.split("\n")
        self.buf = lines.pop()
        out = []
        for line in lines:
            try:
                out.append(json.loads(line).get("message", ""))
            except ValueError:
                continue
        return out


def stream_bytes(stream) -> int:
    """The stream's byte count from the last line of its log (the file grows all run long)."""
    try:
        with open(stream.log, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - 200))
            lines = f.read().decode(errors="replace").strip().splitlines()
        return int(lines[-1].split()[1]) if lines else 0
    except (OSError, ValueError, IndexError):
        return 0


def snapshot(fs) -> dict:
    """Figures and counters of every node at one moment."""
    out = {"procs": {role: proc_figures(pid) for role, pid in fs.pids().items()}}
    for role in ("mn", "xha", "iha", "gw"):
        out[role] = fs.status(role) or {}
    return out


def drops(node) -> dict:
    """Every drop counter of a node: stage drops by reason, plus the transport's."""
    out = {}
    for s in node.get("pipeline", []):
        for reason, n in s.get("drops", {}).items():
            out[f"{s['type']}:{reason}"] = out.get(f"{s['type']}:{reason}", 0) + n
    t = node.get("transport", {})
    out["transport:unroutable"] = t.get("unroutable", 0)
    return out


def pool_in_use(node) -> int:
    p = node.get("pool", {})
    return p.get("buffers", 0) - p.get("available", 0)


def state_of(node, kind):
    return next((s.get("state", {}) for s in node.get("pipeline", []) if s.get("type") == kind), {})


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mipsec", required=True)
    ap.add_argument("--moves", type=int, default=30)
    ap.add_argument("--dwell", type=float, default=0.3, help="seconds on each network after the stream moved on")
    args = ap.parse_args()
    require_root("the soak test")
    checks = Checks()
    moves = max(args.moves, 2 * len(ROUND))
    started = time.time()

    with Lab("soak") as lab:
        fs = FullStack(lab, args.mipsec, vpn={"child_rekey_s": 60, "ike_lifetime_s": 600, "reauth_margin_s": 60})
        fs.start_mobile_node()
        log = LogFollower(f"{lab.dir}/mipsec-mn.log")
        try:
            lab.wait_for(lambda: any(f"registered {I_HOME}" in m for m in log.new_messages()), timeout=60, what="i-MIP through the VPN")
        except TimeoutError as e:
            checks.check("the full stack comes up", False, str(e))
            lab.dump_logs()
            return checks.finish()
        vpn0 = state_of(fs.status("mn"), "ipsec.vpn_client")
        vip = vpn0.get("inner_address", "").split("/")[0]
        stream = Stream(lab, fs.cn, fs.mn, I_HOME, CN)
        handovers, failures = [], []
        snaps = {}
        marks = {"start": len(ROUND), "middle": moves // 2, "end": moves}
        for i in range(1, moves + 1):
            network = ROUND[(i - 1) % len(ROUND)]
            care_of = NETWORKS[network][2].split("/")[0]
            log.new_messages()
            t0 = fs.move(network)
            want = f"registered {X_HOME} at care-of address {care_of}"
            try:
                lab.wait_for(lambda: any(want in m for m in log.new_messages()), timeout=20, interval=0.02, what=f"move {i} registration")
                handovers.append(time.time() - t0)
                before = stream_bytes(stream)
                lab.wait_for(lambda: stream_bytes(stream) > before + 4096, timeout=30, interval=0.05, what=f"move {i}: the stream")
            except TimeoutError as e:
                failures.append(f"move {i} to {network}: {e}")
                if len(failures) >= 3:
                    break
            time.sleep(args.dwell)
            for name, at in marks.items():
                if i == at:
                    time.sleep(1)  # let packets in flight settle before counting buffers
                    snaps[name] = snapshot(fs)
                    figs = snaps[name]["procs"]
                    print(f"{name} (move {i}, {time.time() - started:.0f} s): "
                          + "  ".join(f"{r} rss {f['rss_kib']} KiB fds {f['fds']}" for r, f in sorted(figs.items())), flush=True)
            if i % 100 == 0:
                print(f"move {i}/{moves}: {stream_bytes(stream)} bytes streamed, median handover "
                      f"{statistics.median(handovers) * 1000:.0f} ms", flush=True)

        checks.check(f"all {moves} moves re-registered x-MIP and the stream moved on after each", not failures, "; ".join(failures[:3]))
        if handovers:
            print(f"handover (link change -> x-MIP registered): median {statistics.median(handovers) * 1000:.0f} ms, "
                  f"max {max(handovers) * 1000:.0f} ms over {len(handovers)} moves", flush=True)
        ok, out = stream.finish(timeout=120)
        checks.check(f"the TCP stream through i-MIP in ESP in x-MIP survived {moves} moves byte-exact", ok, out)
        if len(snaps) < 3:
            lab.dump_logs()
            return checks.finish()

        s, m, e = snaps["start"], snaps["middle"], snaps["end"]
        for role in sorted(s["procs"]):
            a, b, c = s["procs"][role], m["procs"].get(role, {}), e["procs"].get(role, {})
            checks.check(f"{role}: open descriptors flat ({a['fds']} / {b.get('fds')} / {c.get('fds')} at start / middle / end)",
                         a["fds"] == b.get("fds") == c.get("fds"))
            grow = max(b.get("rss_kib", 1 << 30), c.get("rss_kib", 1 << 30)) - a["rss_kib"]
            checks.check(f"{role}: VmRSS flat within {RSS_TOLERANCE_KIB} KiB ({a['rss_kib']} / {b.get('rss_kib')} / "
                         f"{c.get('rss_kib')} KiB at start / middle / end)", grow <= RSS_TOLERANCE_KIB, f"grew {grow} KiB")

        vpn = state_of(e["mn"], "ipsec.vpn_client")
        checks.check("one IKE session all along: re-authentications only, never a restart",
                     vpn.get("sessions_started") == 1 and vpn.get("ike_state") == "established",
                     f"sessions_started={vpn.get('sessions_started')} reauths={vpn.get('ike_reauthentications')}")
        checks.check(f"the VPN inner address (the i-MIP care-of address) never changed ({vip})",
                     vpn.get("inner_address", "").split("/")[0] == vip, vpn.get("inner_address", ""))
        checks.check(f"the mobile node holds at most 2 CHILD_SAs and 3 inbound ESP SAs ({len(vpn.get('child_sas', []))}, "
                     f"{len(vpn.get('esp', {}).get('inbound', []))})",
                     len(vpn.get("child_sas", [])) <= 2 and len(vpn.get("esp", {}).get("inbound", [])) <= 3)
        imip = [st for st in (x.get("state", {}) for x in e["mn"].get("pipeline", []) if x.get("type") == "mip.mobile_node")][0]
        checks.check("i-MIP stayed registered at the VPN inner address", imip.get("registered") and imip.get("care_of_address") == vip,
                     json.dumps(imip)[:300])
        for role, ha_home in (("xha", X_HOME), ("iha", I_HOME)):
            ha = state_of(e[role], "mip.home_agent")
            checks.check(f"{role}: exactly one binding ({ha_home}) after {moves} moves", ha.get("binding_count") == 1,
                         json.dumps(ha)[:300])
        gw = state_of(e["gw"], "ipsec.vpn_gateway")
        clients = gw.get("clients", [])
        checks.check(f"gateway: one client, at most 2 IKE sessions, at most 2 CHILD_SAs each, no orphaned CHILD_SA "
                     f"({len(clients)} clients, {gw.get('ike_sessions')} sessions)",
                     len({c.get("inner_address") for c in clients}) == 1 and gw.get("ike_sessions", 9) <= 2
                     and all(len(c.get("child_sas", [])) <= 2 for c in clients) and gw.get("orphaned_child_sas") == 0
                     and gw.get("ike_half_open") == 0, json.dumps(gw)[:600])
        for role in ("mn", "xha", "iha", "gw"):
            a, c = pool_in_use(s[role]), pool_in_use(e[role])
            checks.check(f"{role}: pool buffers in use back to where they were ({a} -> {c})", c <= a + POOL_TOLERANCE)
            d0, d1 = drops(s[role]), drops(e[role])
            grown = {k: (d0.get(k, 0), v) for k, v in d1.items() if v > d0.get(k, 0) and k.split(":")[1] not in EXPECTED_DROPS}
            checks.check(f"{role}: no drop counter grew but those a move explains ({sorted(EXPECTED_DROPS)})", not grown,
                         json.dumps(grown))
            print(f"{role} drops at start {json.dumps(d0)} and at the end {json.dumps(d1)}", flush=True)
        print(f"soak: {moves} moves in {time.time() - started:.0f} s", flush=True)
        if checks.failed:
            lab.dump_logs()
    return checks.finish()


if __name__ == "__main__":
    sys.exit(main())

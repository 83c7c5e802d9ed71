#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Tunnel throughput beside the peers, in network namespaces, on one topology:

    cli 10.0.0.2 --- nat (nftables masquerade) 10.0.0.1 | 198.51.100.1 --- gw 198.51.100.2
    gw 10.99.1.1 --- lan 10.99.1.2 (iperf3 server)

Variants (--only picks some):
    plain       no tunnel: the same path routed, through the NAT
    mipsec      mipsec ipsec.vpn_client (over nat.udp_encap) <-> mipsec ipsec.vpn_gateway:
                IKEv1-keyed ESP AES-GCM-128 in UDP 4500 (the NAT is detected)
    mipsec2     the same with "pool": {"workers": 2} on both ends: two data-path workers per
                node, each with its own TUN queue and sockets, the ESP encryption outside the
                lock the stages share
    fullstack   the RFC 5265 stack of tools/lab/full_stack.py, all nodes mipsec (i-MIP in ESP
                in x-MIP, the mobile node behind that lab's NAT box), correspondent on the LAN;
                its own namespaces (it needs two home agents and an Internet core)
    fullstack-udp  the same with the VPN's ESP in UDP and i-MIP in UDP (RFC 3519), both forced
    wireguard   wireguard-go (userspace, configured with `wg`) on cli and gw
    strongswan  strongSwan charon + kernel-libipsec on cli and gw (IKEv1, AES-GCM-128,
                forced UDP encapsulation; tools/lab/strongswan.py)

Each repetition brings every variant's tunnel up, runs its tests and takes it down again, one
variant after the other (A rep 1, B rep 1, ..., A rep 2, ...), so background load does not
favour any side; the full stack stays up in its own namespaces. Tests, all with iperf3 -J:
one TCP stream client -> LAN and LAN -> client (-R), four streams (-P 4) each way, and a paced
UDP test (client -> LAN, 1200-byte datagrams) whose rate is searched for the highest one that
loses at most --max-loss percent. For each test: throughput, CPU seconds of each tunnel process
(utime + stime from /proc/PID/stat, all threads), CPU cores used by the busier one (its CPU
seconds over the test's wall time), Gbit/s per tunnel core (throughput over those cores), TCP
retransmissions (iperf3's sender) and socket buffer drops in every tunnel namespace, after minus
before (RcvbufErrors + SndbufErrors of /proc/net/snmp's Udp line, and /proc/net/raw's drops),
and what the kernel dropped routing packets into a full TUN queue there (TX dropped of the
namespaces' TUN interfaces, column "tun drops").
Figures are medians over --reps.

Run as root with /usr/bin/python3; needs iperf3, and for the peers wireguard-go + wireguard-tools
and strongswan-charon + strongswan-swanctl + libcharon-extra-plugins (Debian). A variant whose
software is missing is reported as skipped with the reason.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from typing import Callable, Optional

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from lab.netns import Host, Lab, node_status, require_root, stage_states  # noqa: E402

VARIANTS = ("plain", "mipsec", "mipsec2", "fullstack", "fullstack-udp", "wireguard", "strongswan")
LABELS = {"plain": "no tunnel", "mipsec": "mipsec VPN", "mipsec2": "mipsec VPN 2 workers", "fullstack": "mipsec RFC 5265", "fullstack-udp": "RFC 5265 UDP tunnels",
          "wireguard": "wireguard-go", "strongswan": "strongSwan libipsec"}
TESTS = ("tcp1_up", "tcp1_down", "tcp4_up", "tcp4_down", "udp_up")
TEST_LABELS = {"tcp1_up": "TCP x1 up", "tcp1_down": "TCP x1 down", "tcp4_up": "TCP x4 up",
               "tcp4_down": "TCP x4 down", "udp_up": "UDP loss-free up"}
PSK = "lab-psk-0123456789"
LAN = "10.99.1.2"
UDP_PAYLOAD = 1200
IPERF_PORT = 5201


# -- pure functions (tested by tests/netns/bench_tunnel_math_test.py, no root) -------------------

def median(values) -> Optional[float]:
    """The median of the values that are not None; None when there are none."""
    vals = [v for v in values if v is not None]
    return statistics.median(vals) if vals else None


def ratio(a: Optional[float], b: Optional[float]) -> Optional[float]:
    """a / b, or None when either is missing or b is zero."""
    if a is None or b is None or b == 0:
        return None
    return a / b


def cpu_cores(cpu_seconds: float, wall_seconds: float) -> Optional[float]:
    """How many cores a process kept busy: its CPU seconds over the wall time they took."""
    if wall_seconds <= 0:
        return None
    return cpu_seconds / wall_seconds


def per_core(gbps: Optional[float], cpu_seconds: dict, wall_seconds: float) -> Optional[float]:
    """Gbit/s per core of the busier tunnel process (the one that limits a single flow)."""
    if gbps is None or not cpu_seconds:
        return None
    cores = cpu_cores(max(cpu_seconds.values()), wall_seconds)
    return ratio(gbps, cores)


def highest_lossless_rate(probe: Callable[[float], tuple], start: float, steps: int,
                          max_loss: float) -> tuple[float, list]:
    """The highest rate a paced UDP sender gets through with at most `max_loss` percent lost.

    probe(rate) sends at `rate` and returns (loss in percent or None when the test failed,
    rate the sender really offered). From `start` the asked rate doubles while it is loss-free;
    after the first lossy (or failed) rate it bisects between the best loss-free rate and the
    lowest lossy one. A sender that could not offer 90 % of what it was asked is at its own
    limit: asking more is pointless, so that rate caps the search like a lossy one, but what it
    did offer still counts when it was loss-free. Uses exactly `steps` probes and returns
    (the highest loss-free offered rate, or 0.0 when there was none; [(asked, loss, offered)]).
    """
    lo, hi, best = 0.0, None, 0.0
    rate = start
    trace = []
    for _ in range(steps):
        loss, offered = probe(rate)
        trace.append((rate, loss, offered))
        lossless = loss is not None and loss <= max_loss
        if lossless:
            best = max(best, offered)
        if lossless and offered >= 0.9 * rate:
            lo = max(lo, rate)
        else:
            hi = rate if hi is None else min(hi, rate)
        rate = lo * 2 if hi is None else (lo + hi) / 2
    return best, trace


def iperf_figures(report: dict, udp: bool) -> dict:
    """Throughput (Gbit/s of what arrived), retransmissions and UDP loss from `iperf3 -J`."""
    if not report or report.get("error"):
        return {"error": (report or {}).get("error", "no report")}
    end = report.get("end", {})
    if udp:
        sent, recv = end.get("sum_sent", {}), end.get("sum_received", {})
        if "lost_percent" not in recv:
            return {"error": "no receiver figures in the report"}
        return {"gbps": recv.get("bits_per_second", 0) / 1e9, "offered_gbps": sent.get("bits_per_second", 0) / 1e9,
                "loss_percent": recv["lost_percent"]}
    recv, sent = end.get("sum_received", {}), end.get("sum_sent", {})
    return {"gbps": recv.get("bits_per_second", 0) / 1e9, "retransmits": sent.get("retransmits")}


def summarise(samples: dict) -> dict:
    """Medians per variant and test over repetitions: samples[variant][test] = [figures, ...]."""
    out = {}
    for variant, tests in samples.items():
        out[variant] = {}
        for test, reps in tests.items():
            ok = [r for r in reps if "gbps" in r]
            roles = sorted({role for r in ok for role in r.get("cpu_s", {})})
            out[variant][test] = {
                "gbps": median(r["gbps"] for r in ok),
                # A UDP search that found no loss-free rate has a rate (0) but no CPU figures.
                "cpu_s": {role: median(r.get("cpu_s", {}).get(role) for r in ok) for role in roles},
                "cores": median(r.get("cores") for r in ok),
                "gbps_per_core": median(r.get("gbps_per_core") for r in ok),
                "retransmits": median(r.get("retransmits") for r in ok),
                "drops": median(r.get("drops") for r in ok),
                "tun_drops": median(r.get("tun_drops") for r in ok),
                "reps": len(ok), "failed": len(reps) - len(ok),
            }
    return out


def ratios(summary: dict) -> list:
    """(what, test, throughput ratio, per-core ratio) for the comparisons the README quotes."""
    pairs = (("mipsec", "wireguard", "mipsec VPN / wireguard-go"), ("mipsec", "strongswan", "mipsec VPN / strongSwan"),
             ("fullstack", "mipsec", "RFC 5265 stack / mipsec VPN"),
             ("fullstack-udp", "mipsec", "RFC 5265 UDP tunnels / VPN"), ("mipsec2", "mipsec", "mipsec 2 workers / 1 worker"))
    out = []
    for a, b, what in pairs:
        if a not in summary or b not in summary:
            continue
        for test in TESTS:
            x, y = summary[a].get(test, {}), summary[b].get(test, {})
            out.append((what, test, ratio(x.get("gbps"), y.get("gbps")), ratio(x.get("gbps_per_core"), y.get("gbps_per_core"))))
    return out


def fmt(v, spec=".2f") -> str:
    return "-" if v is None else format(v, spec)


def table(summary: dict, skipped: dict) -> str:
    lines = [f"{'variant':<20} {'test':<16} {'Gbit/s':>7} {'busiest':>7} {'Gbit/s':>8} {'retr':>6} {'drops':>6} {'tun':>6}  CPU s per tunnel process",
             f"{'':<20} {'':<16} {'':>7} {'cores':>7} {'per core':>8} {'':>6} {'':>6} {'drops':>6}"]
    for variant in VARIANTS:
        if variant in skipped and variant not in summary:
            lines.append(f"{LABELS[variant]:<20} skipped: {skipped[variant]}")
            continue
        if variant in skipped:  # came up in earlier repetitions, not in a later one
            lines.append(f"{LABELS[variant]:<20} stopped: {skipped[variant]}")
        for test in TESTS:
            s = summary.get(variant, {}).get(test)
            if s is None:
                continue
            cpu = " ".join(f"{role} {fmt(v, '.1f')}" for role, v in s["cpu_s"].items()) or "-"
            failed = f"  ({s['failed']} of {s['reps'] + s['failed']} failed)" if s["failed"] else ""
            lines.append(f"{LABELS[variant]:<20} {TEST_LABELS[test]:<16} {fmt(s['gbps']):>7} {fmt(s['cores']):>7} "
                         f"{fmt(s['gbps_per_core']):>8} {fmt(s['retransmits'], '.0f'):>6} {fmt(s['drops'], '.0f'):>6} {fmt(s.get('tun_drops'), '.0f'):>6}  {cpu}{failed}")
    return "\n".join(line.rstrip() for line in lines)


# Issue #13's baseline: mipsec's single-stream TCP per tunnel-process core before the data-path
# work, client -> LAN and LAN -> client (Gbit/s); the target is four times that.
BASELINE_PER_CORE = {"tcp1_up": 0.36, "tcp1_down": 0.45}


def targets(summary: dict) -> list:
    """Issue #13's targets, from this run: (statement, met, or None when not measured)."""
    out = []
    m = summary.get("mipsec", {})
    for test, base in BASELINE_PER_CORE.items():
        pc = m.get(test, {}).get("gbps_per_core")
        out.append((f"mipsec {TEST_LABELS[test]}: {fmt(pc)} Gbit/s per core >= 4 x {base} = {4 * base:.2f}",
                    None if pc is None else pc >= 4 * base))
        peers = [summary.get(p, {}).get(test, {}).get("gbps_per_core") for p in ("wireguard", "strongswan")]
        peers = [p for p in peers if p is not None]
        if peers and pc is not None:
            best = max(peers)
            out.append((f"mipsec {TEST_LABELS[test]}: {pc / best:.2f} x the better peer's Gbit/s per core >= 5", pc >= 5 * best))
        for variant, what in (("fullstack", "RFC 5265 stack"), ("fullstack-udp", "RFC 5265 stack, UDP tunnels,")):
            f, v = summary.get(variant, {}).get(test, {}).get("gbps"), m.get(test, {}).get("gbps")
            if f is not None and v:
                out.append((f"{what} {TEST_LABELS[test]}: {f / v:.2f} x the VPN's throughput >= 0.5", f >= 0.5 * v))
    return out


# -- measuring ---------------------------------------------------------------------------------

def proc_ticks(pid: int) -> Optional[int]:
    """utime + stime of a process and all its threads, in clock ticks (proc(5) fields 14, 15)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return int(fields[11]) + int(fields[12])
    except (OSError, IndexError, ValueError):
        return None


def socket_drops(host: Host) -> int:
    """Datagrams the kernel dropped for full socket buffers in `host`'s namespace: RcvbufErrors
    + SndbufErrors of the Udp line of /proc/net/snmp, plus the drops column of /proc/net/raw
    (the raw sockets Mobile IP's IP-in-IP and plain ESP arrive on count only there)."""
    text = host.run(["cat", "/proc/net/snmp", "/proc/net/raw"]).stdout
    rows = [line.split()[1:] for line in text.splitlines() if line.startswith("Udp:")]
    total = 0
    if len(rows) >= 2:
        fields = dict(zip(rows[0], rows[1]))
        total += int(fields.get("RcvbufErrors", 0)) + int(fields.get("SndbufErrors", 0))
    for line in text.splitlines():
        cols = line.split()
        if len(cols) >= 13 and cols[0].endswith(":") and cols[0][:-1].isdigit() and cols[-1].isdigit():
            total += int(cols[-1])  # /proc/net/raw: "sl local rem st ... inode ref pointer drops"
    return total


def tun_queue_drops(ip_json: str) -> int:
    """Packets the kernel dropped routing them into a TUN interface because its queue (the
    interface's txqueuelen) was full: the TX dropped of `ip -j -s link show type tun`. No
    socket counts these; the tunnel process had not read them yet."""
    try:
        links = json.loads(ip_json or "[]")
    except ValueError:
        return 0
    return sum(int(link.get("stats64", {}).get("tx", {}).get("dropped", 0)) for link in links)


def tun_drops(host: Host) -> int:
    return tun_queue_drops(host.run(["ip", "-j", "-s", "link", "show", "type", "tun"], check=False).stdout)


class Variant:
    """A tunnel (or none) between a client host and a server host; up()/down() per repetition."""

    name = ""

    def __init__(self, bench: "Bench"):
        self.bench = bench
        self.lab = bench.lab
        self.client: Host = bench.cli
        self.server: Host = bench.lan
        self.target = LAN
        self.bind: Optional[str] = None
        self.procs: dict = {}               # role -> PID of each tunnel process
        self.namespaces: list = [bench.cli, bench.gw]

    def stage_drops(self) -> dict:
        return {}

    def missing(self) -> Optional[str]:
        return None

    def up(self) -> None:
        pass

    def close(self) -> None:
        """After the last repetition: what down() leaves up."""

    def down(self) -> None:
        for p in getattr(self, "_popen", []):
            self.lab.stop(p)
        self._popen = []
        self.procs = {}
        self.lab.flush_nat(self.bench.nat)

    def wait_path(self, timeout: float = 20) -> None:
        argv = ["ping", "-c", "1", "-W", "1"] + (["-I", self.bind] if self.bind else []) + [self.target]
        self.lab.wait_for(lambda: self.client.run(argv, check=False).returncode == 0, timeout=timeout, interval=0.3,
                          what=f"{self.name}: ping {self.target}")


class Plain(Variant):
    """The LAN routed to the client through the NAT, only while this variant runs (so a tunnel
    that is down can never be measured as this path)."""
    name = "plain"

    def up(self):
        self.bench.nat.run(["ip", "route", "add", "10.99.1.0/24", "via", "198.51.100.2"])
        self.wait_path()

    def down(self):
        self.bench.nat.run(["ip", "route", "del", "10.99.1.0/24", "via", "198.51.100.2"], check=False)
        super().down()


class Mipsec(Variant):
    name = "mipsec"
    workers = 1

    def missing(self):
        return None if os.access(self.bench.args.mipsec, os.X_OK) else f"no mipsec binary at {self.bench.args.mipsec}"

    def up(self):
        d = self.lab.dir
        for f in ("gw.sock", "cli.sock"):
            if os.path.exists(f"{d}/{f}"):
                os.unlink(f"{d}/{f}")
        gw_cfg = {
            "name": "gw", "control_socket": f"{d}/gw.sock", "log_level": "warn",
            "tun": {"name": "vpn0", "routes": ["10.99.100.0/24"]},
            "transport": {"local": "198.51.100.2", "udp_ports": [500, 4500], "raw_protocols": [50]},
            "pipeline": [{"type": "ipsec.vpn_gateway", "local": "198.51.100.2", "psk": PSK, "local_id": "gw.lab.example",
                          "pool": "10.99.100.0/24", "local_ts": ["10.99.1.0/24"], "ike_proposals": ["aes128-sha256-modp2048"],
                          "esp_proposals": ["aes128gcm16"]}],
        }
        cli_cfg = {
            "name": "cli", "control_socket": f"{d}/cli.sock", "log_level": "warn",
            "tun": {"name": "vpn0", "routes": ["10.99.1.0/24"]},
            "transport": {"local": "10.0.0.2", "udp_ports": [500, 4500], "raw_protocols": [50]},
            "pipeline": [{"type": "ipsec.vpn_client", "local": "10.0.0.2", "gateway": "198.51.100.2", "psk": PSK,
                          "local_id": "cli.lab.example", "remote_id": "gw.lab.example", "remote_ts": "10.99.1.0/24",
                          "ike_proposals": ["aes128-sha256-modp2048"], "esp_proposals": ["aes128gcm16"]},
                         {"type": "nat.udp_encap", "keepalive_s": 20}],
        }
        for cfg in (gw_cfg, cli_cfg):
            cfg["pool"] = {"workers": self.workers}
        mipsec = self.bench.args.mipsec
        self._popen = []
        for name, host, cfg in (("gw", self.bench.gw, gw_cfg), ("cli", self.bench.cli, cli_cfg)):
            with open(f"{d}/{name}.json", "w") as f:
                json.dump(cfg, f, indent=2)
            p = host.spawn([mipsec, "run", f"{d}/{name}.json"], log_name=f"mipsec-{name}")
            self._popen.append(p)
            self.procs[name] = p.pid  # `ip netns exec` execs into mipsec: the same PID
            self.lab.wait_for(lambda: node_status(host, mipsec, f"{d}/{name}.sock"), what=f"mipsec {name}")

        def installed():
            st = stage_states(node_status(self.bench.cli, mipsec, f"{d}/cli.sock"), "ipsec.vpn_client")
            return st and st[0].get("sa_installs", 0) >= 1
        self.lab.wait_for(installed, timeout=30, what="the mipsec client's ESP SA")
        self.wait_path()

    def stage_drops(self) -> dict:
        """Packets the nodes' stages dropped so far, by node, stage and reason (a replayed or
        unauthenticated ESP packet would show here), from `mipsec status`."""
        out = {}
        for name, host in (("gw", self.bench.gw), ("cli", self.bench.cli)):
            st = node_status(host, self.bench.args.mipsec, f"{self.lab.dir}/{name}.sock") or {}
            for stage in st.get("pipeline", []):
                for reason, n in stage.get("drops", {}).items():
                    out[f"{name} {stage.get('type')} {reason}"] = n
        return out


class Mipsec2(Mipsec):
    name = "mipsec2"
    workers = 2


class WireGuard(Variant):
    name = "wireguard"

    def missing(self):
        gone = [t for t in ("wireguard-go", "wg") if not shutil.which(t)]
        return f"{' and '.join(gone)} not installed (Debian: wireguard-go wireguard-tools)" if gone else None

    def up(self):
        # wireguard-go's control socket is /var/run/wireguard/<interface>.sock in the shared
        # file system: unique interface names keep two instances (and other labs) apart.
        tag = f"{os.getpid() % 100000}"
        keys = {}
        for side in ("c", "g"):
            priv = subprocess.run(["wg", "genkey"], capture_output=True, text=True, check=True).stdout.strip()
            pub = subprocess.run(["wg", "pubkey"], input=priv, capture_output=True, text=True, check=True).stdout.strip()
            path = f"{self.lab.dir}/wg-{side}.key"
            with open(path, "w") as f:
                f.write(priv + "\n")
            os.chmod(path, 0o600)
            keys[side] = (path, pub)
        self._popen = []
        ends = {"c": (self.bench.cli, "10.99.100.2/32", ["10.99.1.0/24"],
                      ["allowed-ips", "10.99.1.0/24", "endpoint", "198.51.100.2:51820", "persistent-keepalive", "25"]),
                "g": (self.bench.gw, "10.99.100.1/24", [], ["allowed-ips", "10.99.100.2/32"])}
        for side, (host, addr, routes, peer) in ends.items():
            ifname = f"wgb{tag}{side}"
            sock = f"/var/run/wireguard/{ifname}.sock"
            p = host.spawn(["env", "WG_PROCESS_FOREGROUND=1", "wireguard-go", "-f", ifname], log_name=f"wireguard-go-{side}")
            self._popen.append(p)
            self.procs["cli" if side == "c" else "gw"] = p.pid  # env execs: the same PID
            self.lab.wait_for(lambda: os.path.exists(sock), what=f"wireguard-go {ifname}")
            other = keys["g" if side == "c" else "c"][1]
            host.run(["wg", "set", ifname, "private-key", keys[side][0], "listen-port", "51820", "peer", other, *peer])
            host.run(["ip", "addr", "add", addr, "dev", ifname])
            host.run(["ip", "link", "set", ifname, "up"])
            for r in routes:
                host.run(["ip", "route", "add", r, "dev", ifname])
        self.wait_path()


class StrongSwan(Variant):
    name = "strongswan"

    def missing(self):
        from lab.strongswan import CHARON
        gone = [t for t in (CHARON, shutil.which("swanctl")) if not t or not os.access(t, os.X_OK)]
        return "strongSwan charon/swanctl not installed (Debian: strongswan-charon strongswan-swanctl)" if gone else None

    def up(self):
        from lab.strongswan import Charon, Child, Connection, wait_established
        for role in ("gw", "cli"):  # a stale vici socket or pid file from the last repetition
            shutil.rmtree(os.path.join(self.lab.dir, f"charon-{role}"), ignore_errors=True)
        gw = Charon(self.lab, self.bench.gw, Connection(
            "rw", "198.51.100.2", "%any", "gw.lab.example", "cli.lab.example", PSK, proposals="aes128-sha256-modp2048",
            pools="vpn", pool_addrs="10.99.100.0/24",
            children=[Child(local_ts="10.99.1.0/24", remote_ts="dynamic", esp_proposals="aes128gcm16")]), log_level=0)
        cli = Charon(self.lab, self.bench.cli, Connection(
            "gw", "10.0.0.2", "198.51.100.2", "cli.lab.example", "gw.lab.example", PSK, proposals="aes128-sha256-modp2048",
            vips="0.0.0.0", children=[Child(remote_ts="10.99.1.0/24", esp_proposals="aes128gcm16")]), log_level=0)
        self._popen = [gw.proc, cli.proc]
        self.procs = {"gw": gw.proc.pid, "cli": cli.proc.pid}  # unshare and sh exec: charon's PID
        cli.initiate()
        wait_established(cli)
        self.wait_path()


class FullStackVariant(Variant):
    name = "fullstack"
    udp_tunnels = False

    def missing(self):
        return None if os.access(self.bench.args.mipsec, os.X_OK) else f"no mipsec binary at {self.bench.args.mipsec}"

    def up(self):
        if getattr(self, "fs", None) is not None:
            return
        from lab.full_stack import CN, I_HOME, FullStack
        # A lab of its own: a full stack names its nodes' configs, control sockets and logs by
        # role, so two of them cannot share one directory.
        self.own_lab = Lab(f"bench-{self.name}").__enter__()
        fs = FullStack(self.own_lab, self.bench.args.mipsec, first="natbox", udp_tunnels=self.udp_tunnels)
        fs.start_mobile_node()
        self.lab.wait_for(lambda: any(f"registered {I_HOME}" in m for _, m in fs.events()), timeout=90,
                          what="the full stack (x-MIP, IKE, i-MIP)")
        self.fs = fs
        self.client, self.server, self.target, self.bind = fs.mn, fs.cn, CN, I_HOME
        self.namespaces = [fs.mn, fs.xha, fs.gw, fs.iha]
        self.procs = fs.pids()
        self.wait_path(timeout=30)
        self.bench.start_iperf_server(fs.cn)

    def down(self):
        pass  # its namespaces are its own: it stays up for every repetition

    def close(self):
        if getattr(self, "own_lab", None) is not None:
            self.own_lab.close()
            self.own_lab = None


class FullStackUdpVariant(FullStackVariant):
    """The same stack with both tunnels in UDP: ESP in UDP 4500 (forced) and i-MIP in UDP 434
    (RFC 3519, forced), so every hop can batch (UDP GSO/GRO, the TUN's USO)."""
    name = "fullstack-udp"
    udp_tunnels = True


class Bench:
    def __init__(self, lab: Lab, args):
        self.lab, self.args = lab, args
        self.cli, self.gw, self.lan = lab.host("cli"), lab.host("gw"), lab.host("lan")
        self.nat = lab.nat_box("nat", self.cli, ("10.0.0.1/24", "10.0.0.2/24"), self.gw, ("198.51.100.1/24", "198.51.100.2/24"))
        lab.link(self.gw, "10.99.1.1/24", self.lan, "10.99.1.2/24")
        self.lan.run(["ip", "route", "add", "default", "via", "10.99.1.1"])
        self.gw.sysctl("net.ipv4.ip_forward", "1")
        self.servers = {}
        self.start_iperf_server(self.lan)

    def start_iperf_server(self, host: Host) -> None:
        old = self.servers.get(host.ns)
        if old is not None:
            self.lab.stop(old)
        p = host.spawn(["iperf3", "-s", "-p", str(IPERF_PORT)], log_name=f"iperf3-server-{host.role}")
        self.servers[host.ns] = p
        port = f":{IPERF_PORT:04X} "  # listening on IPv4 or IPv6 (iperf3 takes ::)
        self.lab.wait_for(lambda: port in host.run(["cat", "/proc/net/tcp", "/proc/net/tcp6"]).stdout.upper(),
                          what=f"iperf3 server in {host.ns}")

    def iperf(self, v: Variant, extra: list, seconds: float, udp: bool) -> dict:
        """One iperf3 run through variant `v`, with the tunnel processes' CPU and socket drops."""
        argv = ["iperf3", "-c", v.target, "-p", str(IPERF_PORT), "-J", "-t", str(seconds), *extra]
        if v.bind:
            argv += ["-B", v.bind]
        ticks0 = {role: proc_ticks(pid) for role, pid in v.procs.items()}
        drops0 = sum(socket_drops(h) for h in v.namespaces)
        tun0 = sum(tun_drops(h) for h in v.namespaces)
        t0 = time.monotonic()
        try:
            r = v.client.run(argv, check=False, timeout=seconds + 30)
            out = r.stdout
        except subprocess.TimeoutExpired:
            out = ""
        wall = time.monotonic() - t0
        ticks1 = {role: proc_ticks(pid) for role, pid in v.procs.items()}
        drops1 = sum(socket_drops(h) for h in v.namespaces)
        tun1 = sum(tun_drops(h) for h in v.namespaces)
        try:
            report = json.loads(out)
        except ValueError:
            report = {"error": "iperf3 printed no JSON (timed out?)"}
        fig = iperf_figures(report, udp)
        if "error" in fig:
            # A failed run can leave the server waiting for the lost client: start it afresh.
            self.start_iperf_server(v.server)
            return fig
        hz = os.sysconf("SC_CLK_TCK")
        fig["cpu_s"] = {role: (ticks1[role] - ticks0[role]) / hz for role in v.procs
                        if ticks0.get(role) is not None and ticks1.get(role) is not None}
        fig["wall_s"] = wall
        fig["cores"] = cpu_cores(max(fig["cpu_s"].values()), wall) if fig["cpu_s"] else None
        fig["gbps_per_core"] = per_core(fig["gbps"], fig["cpu_s"], wall)
        fig["drops"] = drops1 - drops0
        fig["tun_drops"] = tun1 - tun0
        return fig

    def run_variant(self, v: Variant) -> dict:
        d = self.args.duration
        res = {}
        res["tcp1_up"] = self.iperf(v, [], d, False)
        res["tcp1_down"] = self.iperf(v, ["-R"], d, False)
        res["tcp4_up"] = self.iperf(v, ["-P", "4"], d, False)
        res["tcp4_down"] = self.iperf(v, ["-P", "4", "-R"], d, False)
        udp_runs = {}

        def probe(gbps):
            fig = self.iperf(v, ["-u", "-b", f"{gbps * 1e9:.0f}", "-l", str(UDP_PAYLOAD), "-w", "4M"], self.args.udp_duration, True)
            udp_runs[fig.get("offered_gbps")] = fig
            return fig.get("loss_percent"), fig.get("offered_gbps", 0.0)

        start = res["tcp1_up"].get("gbps") or 0.5
        best, trace = highest_lossless_rate(probe, max(start, 0.05), self.args.udp_steps, self.args.max_loss)
        fig = dict(udp_runs.get(best, {})) if best else {"gbps": 0.0}
        fig["gbps"] = best  # the offered rate that arrived loss-free
        fig["trace"] = [(round(r, 4), loss, round(o, 4)) for r, loss, o in trace]
        res["udp_up"] = fig
        return res


def run_repetitions(args, lab: Lab, variants: list, skipped: dict, samples: dict, stage_drops: dict) -> None:
    """Every variant once per repetition, one after the other (A 1, B 1, ..., A 2, ...)."""
    for rep in range(1, args.reps + 1):
        for v in variants:
            if v.name in skipped:
                continue
            t0 = time.monotonic()
            try:
                v.up()
            except (TimeoutError, RuntimeError, subprocess.SubprocessError) as e:
                skipped[v.name] = f"tunnel did not come up in repetition {rep}: {str(e).splitlines()[0][:200]}"
                print(f"{v.name}: skipped: {skipped[v.name]}", flush=True)
                lab.dump_logs()
                v.down()
                continue
            try:
                res = v.bench.run_variant(v)
                dropped = v.stage_drops()
            finally:
                v.down()
            for test, fig in res.items():
                samples.setdefault(v.name, {}).setdefault(test, []).append(fig)
            stage_drops.setdefault(v.name, []).append(dropped)
            brief = "  ".join(f"{t} {fmt(f.get('gbps'))}" for t, f in res.items())
            extra = f"  stage drops {dropped}" if dropped else ""
            print(f"rep {rep} {v.name:<10} {brief}  ({time.monotonic() - t0:.0f} s){extra}", flush=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    here = os.path.dirname(os.path.abspath(__file__))
    ap.add_argument("--mipsec", default=os.path.join(here, "..", "build", "apps", "mipsec", "mipsec"))
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--duration", type=float, default=5, help="seconds per TCP test")
    ap.add_argument("--udp-duration", type=float, default=3, help="seconds per UDP probe")
    ap.add_argument("--udp-steps", type=int, default=6, help="UDP probes per search")
    ap.add_argument("--max-loss", type=float, default=0.1, help="loss in percent a 'loss-free' UDP rate may have")
    ap.add_argument("--only", nargs="+", choices=VARIANTS, metavar="VARIANT", help=f"some of: {' '.join(VARIANTS)}")
    ap.add_argument("--json", metavar="OUT", help="write every repetition's figures and the medians here")
    args = ap.parse_args()
    args.mipsec = os.path.abspath(args.mipsec)
    require_root("the tunnel benchmark")
    if not shutil.which("iperf3"):
        print("iperf3 is not installed (Debian: apt-get install iperf3)", file=sys.stderr)
        return 1

    names = [n for n in VARIANTS if not args.only or n in args.only]
    load_before = os.getloadavg()
    skipped: dict = {}
    samples: dict = {}
    stage_drops: dict = {}  # per variant, per repetition: what its stages dropped (mipsec only)
    with Lab("bench") as lab:
        bench = Bench(lab, args)
        kinds = {"plain": Plain, "mipsec": Mipsec, "mipsec2": Mipsec2, "fullstack": FullStackVariant, "fullstack-udp": FullStackUdpVariant, "wireguard": WireGuard, "strongswan": StrongSwan}
        variants = []
        for n in names:
            v = kinds[n](bench)
            why = v.missing()
            if why:
                skipped[n] = why
                print(f"{n}: skipped: {why}", flush=True)
            else:
                variants.append(v)
        try:
            run_repetitions(args, lab, variants, skipped, samples, stage_drops)
        finally:
            for v in variants:
                v.close()

    summary = summarise(samples)
    print()
    print(f"Medians of {args.reps} interleaved repetitions; TCP {args.duration:g} s, UDP {UDP_PAYLOAD}-byte datagrams, "
          f"{args.udp_steps} probes of {args.udp_duration:g} s, loss-free = at most {args.max_loss:g} % lost")
    load_after = os.getloadavg()
    print(f"{os.cpu_count()} CPUs; 1-minute load average {load_before[0]:.1f} before, {load_after[0]:.1f} after "
          "(other processes of the machine included)")
    print(table(summary, skipped))
    rs = ratios(summary)
    if rs:
        print("\nRatios (throughput; Gbit/s per busiest tunnel core)")
        for what, test, r_tp, r_pc in rs:
            print(f"  {what:<30} {TEST_LABELS[test]:<16} {fmt(r_tp):>6}  {fmt(r_pc):>6}")
    ts = targets(summary)
    if ts:
        print("\nIssue #13 targets")
        for text, met in ts:
            print(f"  {'met    ' if met else 'not met' if met is False else 'n/a    '} {text}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"args": vars(args), "load_average": [load_before, load_after], "skipped": skipped, "samples": samples,
                       "stage_drops": stage_drops,
                       "summary": summary, "ratios": rs, "targets": ts}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())

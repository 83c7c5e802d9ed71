# SPDX-License-Identifier: MIT
"""Builds a validated scenario with lab.netns and runs its timeline.

Topology: one "sw" namespace holds a bridge per network; every host interface is a veth whose
far end is a port of its network's bridge, so a move re-plugs that port into another bridge
(the host sees carrier go down and up, as a laptop leaving one access point for another).
Everything the run creates belongs to a lab.netns.Lab, which removes it on every exit path.

Waiting is always for an event (a status field, a DHCP lease, a reply), polled every
POLL_S with a timeout, never a fixed sleep.
"""
from __future__ import annotations

import ipaddress
import json
import os
import re
import signal
import stat
import subprocess
import time
from typing import Any, Optional

from .netns import Host, Lab, node_status
from .roaming import Stream, first_after

from . import capture as cap
from . import ike_flood
from . import scenario as sc
from . import strongswan_node

POLL_S = 0.05
DEFAULT_TIMEOUT_S = 20.0
MISSING = object()


class StepFailed(Exception):
    pass


def grp_id(name: str) -> int:
    import grp
    return grp.getgrnam(name).gr_gid


# A "http" condition's request, run by the host's own python in its namespace: the status code,
# headers and body, or {"code": null, "error": ...} when nothing answers.
HTTP_FETCH = r"""
import json, sys, urllib.error, urllib.request
req = urllib.request.Request(sys.argv[1], method=sys.argv[2])
try:
    with urllib.request.urlopen(req, timeout=10) as r:
        out = {"code": r.status, "headers": dict(r.headers), "body": r.read().decode(errors="replace")}
except urllib.error.HTTPError as e:
    out = {"code": e.code, "headers": dict(e.headers), "body": e.read().decode(errors="replace")}
except OSError as e:
    out = {"code": None, "error": str(e)}
print(json.dumps(out))
"""

# A "tcp" condition's exchange: sends the bytes (one at a time, pausing, with a pause), then
# reads until the peer closes; what came back, how much was sent, and how long it took.
TCP_EXCHANGE = r"""
import json, socket, sys, time
host, port = sys.argv[1].rsplit(":", 1); data = bytes.fromhex(sys.stdin.read().strip()); pause = float(sys.argv[2])
out = {"reply": "", "sent": 0, "seconds": 0.0, "connected": False}
t = time.monotonic()
try:
    s = socket.create_connection((host, int(port)), timeout=30); out["connected"] = True
    try:
        if pause == 0:
            s.sendall(data); out["sent"] = len(data)
        else:
            for i in range(len(data)):
                s.sendall(data[i:i + 1]); out["sent"] += 1; time.sleep(pause)
    except OSError:
        pass
    reply = b""
    try:
        while True:
            b = s.recv(65536)
            if not b: break
            reply += b
    except OSError:
        pass
    out["reply"] = reply.decode("latin-1")
except OSError as e:
    out["error"] = str(e)
out["seconds"] = round(time.monotonic() - t, 3)
print(json.dumps(out))
"""


def resolve_pointer(doc: Any, pointer: str) -> Any:
    """RFC 6901; MISSING when the path does not exist."""
    if pointer == "":
        return doc
    for raw in pointer.split("/")[1:]:
        key = raw.replace("~1", "/").replace("~0", "~")
        if isinstance(doc, dict) and key in doc:
            doc = doc[key]
        elif isinstance(doc, list) and key.isdigit() and int(key) < len(doc):
            doc = doc[int(key)]
        else:
            return MISSING
    return doc


def has_layers(layers: list, protocol: str) -> bool:
    """Whether a frame's dissection (["eth", "ethertype", "ip", "esp"]) holds the protocol, or the
    chain "a:b" as consecutive layers (b directly inside a)."""
    chain = protocol.split(":")
    return any(layers[i:i + len(chain)] == chain for i in range(len(layers) - len(chain) + 1))


def counter_sum(doc: Any, keys: tuple) -> int:
    """The sum of every numeric field named in `keys`, anywhere in a status document."""
    total = 0
    if isinstance(doc, dict):
        for k, v in doc.items():
            if k in keys and isinstance(v, (int, float)) and not isinstance(v, bool):
                total += v
            else:
                total += counter_sum(v, keys)
    elif isinstance(doc, list):
        for v in doc:
            total += counter_sum(v, keys)
    return total


def same_value(a: Any, b: Any, tolerance: float = 0, ignoring: tuple = ()) -> bool:
    """"same_as" with its options: equal, but numbers (at any depth) may differ by up to
    `tolerance` and object keys holding any text of `ignoring` (at any depth) are left out: a
    drop reason by its name, or every Prometheus sample of a family ("mipsec_uptime")."""
    if isinstance(a, dict) and isinstance(b, dict):
        keys = {k for k in set(a) | set(b) if not any(t in k for t in ignoring)}
        return all(k in a and k in b and same_value(a[k], b[k], tolerance, ignoring) for k in keys)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(same_value(x, y, tolerance, ignoring) for x, y in zip(a, b))
    numbers = all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in (a, b))
    if numbers:
        return abs(a - b) <= tolerance
    return isinstance(a, bool) == isinstance(b, bool) and a == b  # (true is not 1)


def prometheus_samples(text: str) -> dict:
    """A Prometheus text exposition as {"name{labels}": value}, each sample keyed as written."""
    out: dict = {}
    for line in text.splitlines():
        if not line.strip() or line.startswith("#") or " " not in line:
            continue
        key, value = line.rsplit(" ", 1)
        try:
            v = float(value)
        except ValueError:
            continue
        out[key.strip()] = int(v) if v.is_integer() else v
    return out


def lease_time(path: str, t0: float) -> Optional[float]:
    """When the DHCP client script set an address, the first time after t0 (its own clock)."""
    try:
        with open(path) as f:
            times = [float(line.split()[0]) for line in f if line.strip()]
    except (OSError, ValueError):
        return None
    later = [t for t in times if t > t0]
    return min(later) if later else None


def within(v: Any, bound: Any) -> bool:
    """Whether a move's figure meets its expected bound (scenario.Validator.bound's shapes)."""
    if isinstance(bound, list):
        return isinstance(v, list) and len(v) >= len(bound) and all(within(x, b) for x, b in zip(v, bound))
    if "equals" in bound:
        return v == bound["equals"]
    if "in" in bound:
        return v in bound["in"]
    if not isinstance(v, (int, float)) or isinstance(v, bool):
        return False
    return bound.get("at_least", v) <= v <= bound.get("at_most", v)


class Probe:
    """`ping -D` from a host at a fixed pace; replies are read back with their sequence numbers."""

    LINE = re.compile(r"^\[(\d+\.\d+)\].*icmp_seq=(\d+)")

    def __init__(self, lab: Lab, host: Host, name: str, to: str, interval_ms: int, size: Optional[int] = None,
                 count: Optional[int] = None, tos: Optional[int] = None, df: Optional[bool] = None):
        self.interval_ms = interval_ms
        # A sized probe is sent with DF: a path (or a tunnel) that cannot carry it whole shows as loss.
        sized = ["-s", str(size), "-M", "do"] if size is not None else []
        if df is not None:  # (DF chosen: "dont" lets the kernel fragment)
            sized = (["-s", str(size)] if size is not None else []) + ["-M", "do" if df else "dont"]
        if tos is not None:
            sized += ["-Q", str(tos)]
        counted = ["-c", str(count)] if count is not None else []
        self.proc = host.spawn(["ping", "-D", "-n", "-O", "-i", f"{interval_ms / 1000:.3f}", "-W", "1", *sized, *counted, to],
                               log_name=f"probe-{name}")
        self.started = time.time()

    def replies(self) -> list[tuple[float, int]]:
        out = []
        try:
            with open(self.proc.log_path) as f:  # type: ignore[attr-defined]
                for line in f:
                    m = self.LINE.match(line)
                    if m and "bytes from" in line:
                        out.append((float(m.group(1)), int(m.group(2))))
        except OSError:
            pass
        return out

    MTU = re.compile(r"mtu ?= ?(\d+)")

    def account(self) -> dict:
        """For "traffic" conditions: requests answered, those lost between the first reply and
        the latest (a loss shows once a later request is answered), and the last MTU ping was
        told (an ICMP "fragmentation needed", "mtu = N", or its kernel refusing the size, "mtu=N")."""
        seqs = sorted({s for _, s in self.replies()})
        out: dict[str, Any] = {"replies": len(seqs), "lost": seqs[-1] - seqs[0] + 1 - len(seqs) if seqs else 0,
                               "done": self.proc.poll() is not None}
        try:
            with open(self.proc.log_path) as f:  # type: ignore[attr-defined]
                mtus = self.MTU.findall(f.read())
        except OSError:
            mtus = []
        if mtus:
            out["mtu"] = int(mtus[-1])
        return out

    RTT = re.compile(r"time=([\d.]+) ms")
    NO_ANSWER = re.compile(r"^\[(\d+\.\d+)\] no answer yet for icmp_seq=(\d+)")

    def samples(self) -> tuple[list[tuple[float, float]], list[float]]:
        """([(reply time, round-trip ms)], [times ping reported a request unanswered]) for the
        timeline plot; `-O` makes ping print the latter as they happen."""
        replies, unanswered = [], []
        try:
            with open(self.proc.log_path) as f:  # type: ignore[attr-defined]
                for line in f:
                    m = self.LINE.match(line)
                    rtt = self.RTT.search(line)
                    if m and rtt and "bytes from" in line:
                        replies.append((float(m.group(1)), float(rtt.group(1))))
                        continue
                    m = self.NO_ANSWER.match(line)
                    if m:
                        unanswered.append(float(m.group(1)))
        except OSError:
            pass
        return replies, unanswered

    def stop(self, lab: Lab) -> tuple[int, int]:
        """Ends ping with SIGINT, so it prints its totals; (sent, received)."""
        try:
            os.killpg(self.proc.pid, signal.SIGINT)
            self.proc.wait(3)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            pass
        lab.stop(self.proc)
        text = open(self.proc.log_path).read()  # type: ignore[attr-defined]
        m = re.search(r"(\d+) packets transmitted, (\d+) received", text)
        if m:
            return int(m.group(1)), int(m.group(2))
        return int((time.time() - self.started) * 1000 / self.interval_ms), len(self.replies())

    def gap(self, t0: float) -> tuple[Optional[float], Optional[int]]:
        """(first reply after t0 - t0, echo requests lost between the last reply before t0 and
        the first after it)."""
        r = self.replies()
        before = [s for t, s in r if t <= t0]
        after = [(t, s) for t, s in r if t > t0]
        if not after:
            return None, None
        t1, s1 = min(after)
        return t1 - t0, s1 - (max(before) if before else 0) - 1


class Run:
    def __init__(self, doc: dict, mipsec: str, lab: Lab, log=print):
        self.doc = doc
        self.mipsec = mipsec
        self.lab = lab
        self.log = log
        self.hosts: dict[str, Host] = {}
        self.ports: dict[tuple[str, str], str] = {}
        self.procs: dict[str, subprocess.Popen] = {}
        self.streams: dict[str, Stream] = {}
        self.probes: dict[str, Probe] = {}
        self.senders: dict[str, tuple[subprocess.Popen, str]] = {}  # "packets" traffic: (process, account file)
        self.forgers: dict[str, subprocess.Popen] = {}  # traffic kind "forged_replies" (forger.py)
        self.streams_ended: dict[str, tuple[bool, str]] = {}  # a stream with "bytes", ended: (intact, detail)
        self.moves: list[dict] = []
        self.assertions: list[dict] = []
        self.events: list[dict] = []
        self.t_begin = time.time()
        self.snapshot: Optional[dict] = None
        self.charons: dict = {}  # node -> lab.strongswan.Charon
        self.captures: dict[str, cap.Capture] = {}
        # Windows in which captures must not hold some protocols: {"label", "captures",
        # "protocols", "from", "to"}; "to" is set at the next link change (or the end).
        self.quiet_windows: list[dict] = []
        # After each move or outage, where the captures may measure the bytes of overhead
        # per packet: {"row", "network", "from", "to"}, "to" set at the next link change.
        self.overhead_windows: list[dict] = []
        self.pulled: dict[tuple[str, str], str] = {}  # (host, interface) -> the "link" step that pulled its cable
        self.remembered: dict[str, Any] = {}  # "remember" steps' values by name
        self.notified: dict[str, tuple] = {}  # node -> (its notify socket, the messages read so far)
        self.fetched: dict[str, Any] = {}  # an HTTP/TCP condition's last answer in this step (see fetch)

    def in_run(self, element) -> bool:
        return sc.active(element, self.doc.get("parameters", {}))

    def run_nodes(self) -> dict:
        """The nodes of this run (those whose "if" holds)."""
        return {n: spec for n, spec in self.doc.get("nodes", {}).items() if self.in_run(spec)}

    # -- recording ------------------------------------------------------------------------
    def note(self, what: str, **kw) -> None:
        self.events.append({"t_ms": round((time.time() - self.t_begin) * 1000), "event": what, **kw})

    def assertion(self, name: str, ok: bool, detail: str = "") -> bool:
        self.assertions.append({"name": name, "ok": bool(ok), "detail": detail})
        self.log(f"{'ok  ' if ok else 'FAIL'} {name}" + (f": {detail}" if detail and not ok else ""))
        return ok

    # -- building -------------------------------------------------------------------------
    def build(self) -> None:
        d = self.doc
        self.sw = self.lab.host("sw")
        for net in d["networks"]:
            self.lab.bridge(self.sw, f"b-{net}")
        for net in d.get("captures", {}):
            try:
                self.captures[net] = cap.Capture(self.lab, self.sw, net, f"b-{net}")
            except RuntimeError as e:
                raise StepFailed(f"capture on {net}: {e}")
        for name, spec in d["hosts"].items():
            h = self.hosts[name] = self.lab.host(name)
            if spec.get("forward"):
                h.sysctl("net.ipv4.ip_forward", "1")
            for ifname, ispec in spec.get("interfaces", {}).items():
                addr = ispec.get("address")
                static = addr if addr not in (None, "dhcp") else ""
                self.ports[(name, ifname)] = self.lab.port(h, ifname, self.sw, f"b-{ispec['network']}", static,
                                                           ispec.get("mtu", 1500))
            for a in spec.get("addresses", []):
                h.run(["ip", "addr", "add", a, "dev", "lo"])
            for key, value in spec.get("sysctl", {}).items():
                r = h.run(["sysctl", "-qw", f"{key}={value}"], check=False)  # (after the interfaces: net.*.conf.<ifname>.*)
                if r.returncode != 0:
                    raise StepFailed(f"host {name}: sysctl {key}={value}: {(r.stderr or r.stdout).strip()}")
        for name, spec in d["hosts"].items():
            self.add_routes(name, spec.get("routes", []))
            if "nat" in spec:
                self.lab.masquerade(self.hosts[name], spec["nat"]["out"], spec["nat"].get("random_ports", False))
            if "nft" in spec:
                self.hosts[name].run(["nft", "-f", "-"], input=spec["nft"])
            if "dhcp_server" in spec:
                ds = spec["dhcp_server"]
                self.lab.dhcp_server(self.hosts[name], ds["interface"], ds["range"][0], ds["range"][1], ds["router"])
        for name, spec in d["hosts"].items():
            for ifname, ispec in spec.get("interfaces", {}).items():
                if ispec.get("address") == "dhcp":
                    self.lease(name, ifname)
        for node, spec in self.run_nodes().items():
            if spec.get("start", True):
                self.start(node)
        self.note("built")

    def add_routes(self, host: str, routes: list) -> None:
        for r in routes:
            if not self.in_run(r):
                continue  # (a route chosen by a parameter, e.g. through a NAT box or not)
            argv = ["ip", "route", "replace", r["to"]]
            if "via" in r:
                argv += ["via", r["via"]]
            if "dev" in r:
                argv += ["dev", r["dev"]]
            self.hosts[host].run(argv)

    def lease(self, host: str, ifname: str) -> None:
        try:
            self.lab.dhcp_client(self.hosts[host], ifname)
        except (RuntimeError, subprocess.TimeoutExpired) as e:
            raise StepFailed(f"no DHCP lease on {host}/{ifname}: {e}")

    def address_of(self, host_if: tuple[str, str]) -> str:
        host, ifname = host_if
        r = self.hosts[host].run(["ip", "-j", "-4", "addr", "show", "dev", ifname], check=False)
        try:
            return json.loads(r.stdout)[0]["addr_info"][0]["local"]
        except (ValueError, IndexError, KeyError):
            raise StepFailed(f"{host}/{ifname} has no IPv4 address for ${{address:{host}/{ifname}}}")

    # -- nodes ----------------------------------------------------------------------------
    def socket_of(self, node: str) -> str:
        return sc.render_config(self.doc["nodes"][node]["config"], self.lab.dir, lambda _: "0.0.0.0", node,
                                home=self.node_home(node))["control_socket"]

    def node_home(self, node: str) -> Optional[str]:
        """A node launched as another user keeps its config and control socket in a directory
        of its own (that user's, 0700), inside the run's directory (then 0711)."""
        user = self.doc["nodes"][node].get("launch", {}).get("user")
        if user is None:
            return None
        import pwd
        home = os.path.join(self.lab.dir, f"{node}.home")
        if not os.path.isdir(home):
            pw = pwd.getpwnam(user)
            os.chmod(self.lab.dir, 0o711)
            os.mkdir(home, 0o700)
            os.chown(home, pw.pw_uid, pw.pw_gid)
        return home

    def write_config(self, node: str) -> str:
        """Writes the node's config as `mipsec run` reads it (and a reload re-reads it); its path."""
        spec = self.doc["nodes"][node]
        home = self.node_home(node)
        cfg = sc.render_config(spec["config"], self.lab.dir, self.address_of, node, home=home)
        if self.doc.get("captures"):
            self.log_keys(node, cfg)
        path = os.path.join(home or self.lab.dir, f"{node}.json")
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(cfg, f, indent=2)
        if home is not None:
            st = os.stat(home)
            os.chown(path, st.st_uid, st.st_gid)
        return path

    def run_argv(self, node: str, path: str) -> tuple[list, dict]:
        """`mipsec run` for the node, behind setpriv when it has a "launch", with its "options";
        and the environment (NOTIFY_SOCKET for a node with "notify")."""
        import pwd
        spec = self.doc["nodes"][node]
        argv, env = [], None
        la = spec.get("launch")
        if la:
            argv = ["setpriv"]
            if "user" in la:
                pw = pwd.getpwnam(la["user"])
                gid = grp_id(la["group"]) if "group" in la else pw.pw_gid
                argv += [f"--reuid={pw.pw_uid}", f"--regid={gid}", "--clear-groups"]
            if "ambient_caps" in la:
                caps = ",".join("+" + c.removeprefix("cap_") for c in la["ambient_caps"])
                argv += [f"--inh-caps={caps}", f"--ambient-caps={caps}"]
            if "bounding_set" in la:
                argv.append("--bounding-set=-all," + ",".join("+" + c.removeprefix("cap_") for c in la["bounding_set"]))
            if "bounding_drop" in la:
                argv.append("--bounding-set=" + ",".join("-" + c.removeprefix("cap_") for c in la["bounding_drop"]))
        if spec.get("notify"):
            env = dict(os.environ, NOTIFY_SOCKET=self.notify_socket(node))
        return argv + [self.mipsec, "run", *spec.get("options", []), path], env

    def notify_socket(self, node: str) -> str:
        """The node's systemd notify socket (sd_notify(3)), bound once for the whole run, so
        every message of every start is kept, in order."""
        import socket
        if node not in self.notified:
            path = os.path.join(self.lab.dir, f"notify-{node}.sock")
            s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            s.bind(path)
            os.chmod(path, 0o666)  # (a node launched as another user writes to it too)
            s.setblocking(False)
            self.notified[node] = (s, [])
        return os.path.join(self.lab.dir, f"notify-{node}.sock")

    def notify_messages(self, node: str) -> Any:
        """What a "notify" condition reads: {"messages": [texts], "states": [first lines]}."""
        if node not in self.notified:
            return MISSING
        s, got = self.notified[node]
        while True:
            try:
                got.append(s.recv(65536).decode(errors="replace"))
            except BlockingIOError:
                break
        return {"messages": list(got), "states": [m.split("\n")[0] for m in got]}

    def start(self, node: str, timeout: float = 15) -> None:
        spec = self.doc["nodes"][node]
        if "strongswan" in spec:
            self.start_charon(node, spec)
            return
        argv, env = self.run_argv(node, self.write_config(node))
        p = self.hosts[spec["host"]].spawn(argv, log_name=f"mipsec-{node}-{len(self.events)}", env=env)
        self.procs[node] = p
        deadline = time.monotonic() + timeout
        while self.status(node) is None:
            if p.poll() is not None:
                raise StepFailed(f"node {node} exited {p.returncode} at start:\n" + open(p.log_path).read()[-2000:])  # type: ignore
            if time.monotonic() > deadline:
                raise StepFailed(f"node {node}: no status within {timeout}s")
            time.sleep(POLL_S)
        self.note("start", node=node)

    def refused_start(self, node: str, refused: dict, label: str, timeout: float) -> None:
        """A start that must fail (a control socket in use, an address not on any interface):
        `mipsec run` exits with the expected status, saying why; it is never left running."""
        spec = self.doc["nodes"][node]
        argv, env = self.run_argv(node, self.write_config(node))
        p = self.hosts[spec["host"]].spawn(argv, log_name=f"mipsec-{node}-{len(self.events)}", env=env)
        try:
            code = p.wait(timeout)
        except subprocess.TimeoutExpired:
            code = None
            self.lab.stop(p)
        text = open(p.log_path).read()  # type: ignore[attr-defined]
        texts = sc.refusal_texts(refused["message"])
        self.assertion(f"{label}: node {node} is refused, exit {refused['exit']} naming " + ", ".join(f'"{t}"' for t in texts),
                       code == refused["exit"] and all(t in text for t in texts),
                       f"exit {code if code is not None else f'none within {timeout:.0f}s (it ran)'}: {text.strip()[-500:]}")
        self.note("refused start", node=node, exit=code)

    KEY_LOG_PREFIX = ("ipsec.vpn_client", "ipsec.vpn_gateway")  # "key_log": a prefix of two files

    def log_keys(self, node: str, cfg: dict) -> None:
        """A scenario with captures has every IPsec stage log its keys into the run directory
        (Wireshark's esp_sa and ikev1_decryption_table lines), so tshark can look inside ESP:
        the overhead per packet is measured on the probe's own packets, and `--keep` hands the
        tables over with the captures. A stage the scenario gives a key_log keeps it.
        strongSwan's keys are not logged (its save-keys plugin is not in Debian's build); every
        SA in these labs has a mipsec end, which logs both directions."""
        for k, stage in enumerate(cfg.get("pipeline", [])):
            if not isinstance(stage, dict) or "key_log" in stage:
                continue
            if stage.get("type") in self.KEY_LOG_PREFIX:
                stage["key_log"] = os.path.join(self.lab.dir, f"keys-{node}-{k}")
            elif stage.get("type") == "ipsec.esp_tunnel":
                stage["key_log"] = os.path.join(self.lab.dir, f"keys-{node}-{k}.esp_sa")

    def key_tables(self) -> dict[str, list[str]]:
        """Every line the nodes' key logs hold so far, per Wireshark table, each line once."""
        import glob
        out: dict[str, list[str]] = {"esp_sa": [], "ikev1_decryption_table": []}
        for table, lines in out.items():
            for path in sorted(glob.glob(os.path.join(self.lab.dir, f"keys-*.{table}"))):
                with open(path) as f:
                    lines += [line.strip() for line in f if line.strip() and line.strip() not in lines]
        return out

    def start_charon(self, node: str, spec: dict) -> None:
        """A strongSwan gateway: charon in its own state directory; its PID is the one stopped."""
        from .strongswan import Charon
        try:
            charon = Charon(self.lab, self.hosts[spec["host"]], strongswan_node.connection(spec["strongswan"]))
        except (TimeoutError, RuntimeError, subprocess.CalledProcessError) as e:
            raise StepFailed(f"strongSwan node {node} did not start: {e}")
        self.charons[node] = charon
        self.procs[node] = charon.proc
        self.note("start", node=node)

    def stop(self, node: str, kill: bool = False) -> None:
        p = self.procs.pop(node, None)
        if p is None:
            raise StepFailed(f"node {node} is not running")
        if kill:
            # A crash: no shutdown path runs (the TUN device and its routes go with the
            # process, a state file's WAL stays unmerged, the control socket is left behind).
            # The PID is mipsec's (or charon's) own: `ip netns exec` and the launcher exec into it.
            os.kill(p.pid, signal.SIGKILL)
            p.wait(5)
            self.charons.pop(node, None)  # (a new Charon clears the stale vici socket and pid file)
            self.note("kill", node=node)
            return
        code = self.lab.stop(p)
        # A mipsec node removes its control socket on the way out (a stale one would refuse the
        # next start as "in use" only if something answered on it; it must not be left at all).
        sock = None if node in self.charons or self.drops_privileges(node) else self.socket_of(node)
        left = sock is not None and os.path.exists(sock)
        self.charons.pop(node, None)
        self.assertion(f"node {node} exits 0 when stopped" + ("" if sock is None else ", its control socket removed"),
                       code == 0 and not left, f"exit {code}" + (f", {sock} left behind" if left else ""))
        self.note("stop", node=node)

    def drops_privileges(self, node: str) -> bool:
        """A node that switches to a "user" after setup cannot unlink its control socket (root's,
        in root's directory) at exit; the next start replaces the stale file."""
        spec = self.doc["nodes"][node]
        return "user" in spec.get("config", {}) or "--user" in spec.get("options", [])

    def status(self, node: str) -> Optional[dict]:
        """The node's `mipsec status --json`; within one poll (self.snapshot set) each node is
        asked once, so conditions over several fields see one moment."""
        if self.snapshot is not None and node in self.snapshot:
            return self.snapshot[node]
        st = self.query_status(node)
        if self.snapshot is not None:
            self.snapshot[node] = st
        return st

    def query_status(self, node: str) -> Optional[dict]:
        if node not in self.procs:
            return None
        if node in self.charons:
            if self.procs[node].poll() is not None:
                return None
            r = self.charons[node].swan(["--list-sas"], check=False, timeout=10)
            spec = self.doc["nodes"][node]["strongswan"]
            return strongswan_node.status(r.stdout, strongswan_node.stage(spec)) if r.returncode == 0 else None
        return node_status(self.hosts[self.doc["nodes"][node]["host"]], self.mipsec, self.socket_of(node))

    def status_as(self, node: str, fmt: str) -> Any:
        """The node's status as operators read it: the text view as one string, or the
        Prometheus exposition as {sample name with its labels: value}; None while it does not
        answer. Within one poll each is asked once, as the JSON status is."""
        key = f"{node} {fmt}"
        if self.snapshot is not None and key in self.snapshot:
            return self.snapshot[key]
        if fmt == "check":
            return self.check_text(node)
        out = None
        if node in self.procs and node not in self.charons:
            argv = [self.mipsec, "status", "--socket", self.socket_of(node)] + (["--format", "prometheus"] if fmt == "prometheus" else
                                                                                 ["--json"] if fmt == "document" else [])
            r = self.hosts[self.doc["nodes"][node]["host"]].run(argv, check=False)
            if r.returncode == 0:
                try:
                    out = r.stdout if fmt == "text" else json.loads(r.stdout) if fmt == "document" else prometheus_samples(r.stdout)
                except ValueError:
                    out = None
        if self.snapshot is not None:
            self.snapshot[key] = out
        return out

    def check_text(self, node: str) -> str:
        """`mipsec check` on the node's config as the lab renders it now (beside the file the node
        runs from, which a "write" step may have broken on purpose): its output and errors."""
        spec = self.doc["nodes"][node]
        cfg = sc.render_config(spec["config"], self.lab.dir, self.address_of, node, home=self.node_home(node))
        path = os.path.join(self.lab.dir, f"{node}.check.json")
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(cfg, f, indent=2)
        r = self.hosts[spec["host"]].run([self.mipsec, "check", path], check=False)
        return r.stdout + r.stderr

    def traffic_account(self, name: str) -> Any:
        """A started traffic generator's own account (scenario.py: a probe's replies and the
        last MTU ping was told, a stream's bytes received); MISSING before it starts."""
        if name in self.probes:
            return self.probes[name].account()
        if name in self.streams:
            return self.stream_account(name)
        if name in getattr(self, "senders", {}):
            return self.sender_account(name)
        forgers = getattr(self, "forgers", {})  # (a Run made without __init__, as the lab's own checks do, has none)
        if name in forgers:
            with open(forgers[name].log_path) as f:  # type: ignore[attr-defined]
                return {"replies": f.read().count("forged reply")}
        return MISSING

    def stream_account(self, name: str) -> dict:
        """A stream's bytes received; a stream with "bytes" ends once that many arrived and
        is checked byte for byte then ("intact")."""
        s = self.streams[name]
        out: dict[str, Any] = {"bytes": s.bytes()}
        want = self.doc["traffic"][name].get("bytes")
        if want and name not in self.streams_ended and out["bytes"] >= want:
            self.streams_ended[name] = s.finish()
            self.note("stream ended", name=name, bytes=s.bytes())
        if name in self.streams_ended:
            out["intact"] = self.streams_ended[name][0]
        return out

    # -- conditions -----------------------------------------------------------------------
    def observe(self, c: dict, pointer: Optional[str] = None) -> Any:
        """The value at the condition's pointer (or at `pointer`, in the same node and stage)."""
        if "lines" in c and pointer is None:
            return self.count_lines(c)
        if pointer is None and any(k in c for k in sc.COMBINE):
            return self.combined(c)
        if "default" in c:
            # (each pointer of a combination, too: a counter a status lists only once it counts)
            v = self.observe({k: x for k, x in c.items() if k != "default"}, pointer)
            return c["default"] if v is MISSING else v
        if "file" in c:
            return resolve_pointer(self.run_file(c["file"]), c["pointer"] if pointer is None else pointer)
        if "host" in c and "kernel_counters" in c:
            return resolve_pointer(self.kernel_counters(c["host"]), c["pointer"] if pointer is None else pointer)
        if any(k in c for k in ("process", "http", "tcp", "notify")):
            return resolve_pointer(self.fetch(c), c["pointer"] if pointer is None else pointer)
        if "host" in c:
            # The host's own network state, as iproute2 prints it (the validator let only
            # reading commands through).
            r = self.hosts[c["host"]].run(["ip", "-j", *c["ip"]], check=False)
            if r.returncode != 0:
                return MISSING
            try:
                return resolve_pointer(json.loads(r.stdout) if r.stdout.strip() else [], c["pointer"] if pointer is None else pointer)
            except ValueError:
                return MISSING
        if "traffic" in c:
            return resolve_pointer(self.traffic_account(c["traffic"]), c["pointer"] if pointer is None else pointer)
        if "remembered" in c:
            return self.remembered.get(c["remembered"], MISSING)
        if c.get("format", "json") != "json":
            st = self.status_as(c["node"], c["format"])
            return MISSING if st is None else resolve_pointer(st, c["pointer"] if pointer is None else pointer)
        st = self.status(c["node"])
        if st is None:
            return MISSING
        if "stage" in c:
            stages = [s for s in st.get("pipeline", []) if s.get("type") == c["stage"]]
            if len(stages) <= c.get("index", 0):
                return MISSING
            st = stages[c.get("index", 0)]
        return resolve_pointer(st, c["pointer"] if pointer is None else pointer)

    def count_lines(self, c: dict) -> Any:
        """A "lines" condition's value: the lines of the string it reads that its regex finds
        something in (a file's "/text": the whole newest file, not its first 64 KiB)."""
        text = self.observe({k: v for k, v in c.items() if k != "lines"})
        if "file" in c and c["pointer"] == "/text" and text is not MISSING:
            import glob
            paths = sorted(glob.glob(c["file"].replace("${lab_dir}", glob.escape(self.lab.dir))), key=os.path.getmtime)
            with open(paths[-1], "rb") as f:
                text = f.read().decode(errors="replace")
        if not isinstance(text, str):
            return MISSING
        rx = re.compile(c["lines"])
        return sum(1 for line in text.splitlines() if rx.search(line))

    def remember(self, values: dict, label: str) -> None:
        """Stores each value as it is now (one moment: one status query per node) for a later
        "same_as": {"remembered": name}; a value that is not there fails the step."""
        self.snapshot = {}
        try:
            got = {name: self.observe(src) for name, src in values.items() if self.in_run(src)}
        finally:
            self.snapshot = None
        missing = [name for name, v in got.items() if v is MISSING]
        if missing:
            self.assertion(f"{label}: remember {', '.join(missing)}", False,
                           "; ".join(self.observed(values[n]) for n in missing))
            raise StepFailed(f"{label}: nothing to remember for {', '.join(missing)}")
        self.remembered.update(got)
        self.note("remember", label=label, values=got)
        self.log(f"{label}: remembered " + ", ".join(f"{n} = {json.dumps(v)[:120]}" for n, v in got.items()))

    def kernel_counters(self, host: str) -> dict:
        """/proc/net/snmp and /proc/net/netstat of the host's namespace as {"Udp": {"InCsumErrors": n}, ...}
        (each group is a line of names and a line of values); within one poll, read once."""
        key = f"{host} kernel counters"
        if self.snapshot is not None and key in self.snapshot:
            return self.snapshot[key]
        out: dict = {}
        r = self.hosts[host].run(["cat", "/proc/net/snmp", "/proc/net/netstat"], check=False)
        lines = [line.split() for line in r.stdout.splitlines() if ":" in line]
        for names, values in zip(lines[::2], lines[1::2]):
            if names[0] == values[0] and names[0].endswith(":"):
                try:
                    out.setdefault(names[0][:-1], {}).update({n: int(v) for n, v in zip(names[1:], values[1:])})
                except ValueError:
                    continue
        if self.snapshot is not None:
            self.snapshot[key] = out
        return out

    def run_file(self, pattern: str) -> dict:
        """What a file condition reads: how many files of the run's directory match, and the
        newest one's name, mode, size and text."""
        import glob
        paths = sorted(glob.glob(pattern.replace("${lab_dir}", glob.escape(self.lab.dir))), key=os.path.getmtime)
        if not paths:
            return {"count": 0}
        st = os.stat(paths[-1])
        text = ""
        if stat.S_ISREG(st.st_mode):  # (a control socket has a mode and an owner, no text)
            with open(paths[-1], "rb") as f:
                text = f.read(65536).decode(errors="replace")
        out = {"count": len(paths), "name": os.path.basename(paths[-1]), "mode": f"0{st.st_mode & 0o777:03o}",
               "size": st.st_size, "text": text, "uid": st.st_uid, "gid": st.st_gid,
               "type": "file" if stat.S_ISREG(st.st_mode) else "socket" if stat.S_ISSOCK(st.st_mode) else "other"}
        return out

    def write_file(self, w: dict) -> None:
        path = w["file"].replace("${lab_dir}", self.lab.dir)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            os.fchmod(f.fileno(), int(w.get("mode", "0600"), 8))
            f.write(w["text"])
        self.note("write", file=os.path.basename(path))

    def holds(self, c, baseline: Optional[dict] = None) -> bool:
        if self.snapshot is None:
            # Conditions checked together see one moment (and "exceeds" compares two fields of one answer).
            self.snapshot = {}
            try:
                return self.holds(c, baseline)
            finally:
                self.snapshot = None
        if isinstance(c, list):
            return all(self.holds(x, baseline) for x in c)
        if not self.in_run(c):
            return True
        v = self.observe(c)
        if "absent" in c:
            return v is MISSING
        if v is MISSING:
            return False
        if "equals" in c:
            return v == c["equals"]
        if "in" in c:
            return v in c["in"]
        if "prefix" in c:
            return isinstance(v, str) and v.startswith(c["prefix"])
        if "contains" in c:
            return (isinstance(v, list) and c["contains"] in v) or (isinstance(v, str) and isinstance(c["contains"], str)
                                                                     and c["contains"] in v)
        if "excludes" in c:
            return (isinstance(v, list) and c["excludes"] not in v) or (isinstance(v, str) and isinstance(c["excludes"], str)
                                                                         and c["excludes"] not in v)
        if "same_as" in c:
            other = self.observe(c["same_as"])  # (MISSING equals nothing but itself, and v is not)
            return other is not MISSING and same_value(v, other, c.get("within", 0), tuple(c.get("ignoring", ())))
        if "length" in c:
            return isinstance(v, (list, dict, str)) and within(len(v), c["length"])
        if "unchanged" in c and not isinstance(v, (int, float)):
            return v == (baseline or {}).get(json.dumps(c, sort_keys=True), MISSING)
        if "differs_from" in c:
            other = self.observe(c["differs_from"])
            return other is not MISSING and v != other
        if "changed" in c:
            return v != (baseline or {}).get(json.dumps(c, sort_keys=True), MISSING)
        if not isinstance(v, (int, float)) or isinstance(v, bool):
            return False
        if "exceeds" in c:
            other = self.observe(c, c["exceeds"])  # the same snapshot: one status query per poll
            return isinstance(other, (int, float)) and not isinstance(other, bool) and v > other
        for test, holds in (("at_least", lambda a, b: a >= b), ("at_most", lambda a, b: a <= b)):
            if test in c:
                bound = self.observe(c, c[test]) if isinstance(c[test], str) else c[test]  # a pointer: the same snapshot
                return isinstance(bound, (int, float)) and not isinstance(bound, bool) and holds(v, bound)
        before = (baseline or {}).get(json.dumps(c, sort_keys=True), 0)
        if "increased" in c:
            return v > before
        if "increased_by" in c:
            return v >= before + c["increased_by"]
        if "increased_by_exactly" in c:
            return v == before + c["increased_by_exactly"]
        if "unchanged" in c:
            return v == before
        return False

    def baseline(self, c) -> dict:
        """The current values of a move's "increased" conditions."""
        out = {}
        for x in (c if isinstance(c, list) else [c]):
            if x and ("increased" in x or "increased_by" in x or "unchanged" in x or "increased_by_exactly" in x):
                v = self.observe(x)
                # ("unchanged" compares any value, e.g. an SPI or an address; the others count)
                out[json.dumps(x, sort_keys=True)] = v if isinstance(v, (int, float)) or ("unchanged" in x and v is not MISSING) else 0
            elif x and "changed" in x:
                out[json.dumps(x, sort_keys=True)] = self.observe(x)  # any value (MISSING: anything found later is a change)
        return out

    def describe(self, c) -> str:
        if isinstance(c, list):
            return " and ".join(self.describe(x) for x in c if self.in_run(x))
        test = next(t for t in sc.CONDITION_TESTS if t in c)
        what = (self.where(c[test]) + (" " + c[test]["pointer"] if "pointer" in c[test] else "") if test in ("same_as", "differs_from")
                else json.dumps(c[test]))
        if test == "same_as" and ("within" in c or "ignoring" in c):
            what += "".join(f" {k} {json.dumps(c[k])}" for k in ("within", "ignoring") if k in c)
        combined = "".join(f" + {p}" for p in c.get("plus", [])) + "".join(f" - {p}" for p in c.get("minus", []))
        lines = f" lines matching {json.dumps(c['lines'])}" if "lines" in c else ""
        return f"{self.where(c)} {c['pointer']}{combined}{lines} {test} {what}"

    @staticmethod
    def where(c: dict) -> str:
        if "file" in c:
            return f"file {c['file']}"
        if "host" in c and "kernel_counters" in c:
            return f"{c['host']} kernel counters"
        if "process" in c:
            return f"process of {c['process']}"
        if "notify" in c:
            return f"notify socket of {c['notify']}"
        if "http" in c:
            return f"{c['http']['host']} {c['http'].get('method', 'GET')} {c['http']['url']}"
        if "tcp" in c:
            return f"{c['tcp']['host']} TCP to {c['tcp']['to']}"
        if "host" in c:
            return f"{c['host']} `ip {' '.join(c['ip'])}`"
        if "traffic" in c:
            return f"traffic {c['traffic']}"
        if "remembered" in c:
            return f"remembered {c['remembered']}"
        if c.get("format", "json") != "json":
            return f"{c['node']} ({c['format']})"
        return f"{c['node']}" + (f" {c['stage']}" + (f"[{c['index']}]" if c.get("index") else "") if "stage" in c else "")

    def observed(self, c) -> str:
        if isinstance(c, list):
            return "; ".join(self.observed(x) for x in c if self.in_run(x))
        v = self.observe(c)
        who = (c.get('node') or c.get('host') or c.get('traffic') or c.get('file')
               or ('remembered ' + c['remembered'] if 'remembered' in c else self.where(c)))
        text = f"{who}{c.get('pointer', '')} = {'(missing)' if v is MISSING else json.dumps(v)[:200]}"
        for test in ("exceeds", "at_least", "at_most"):
            if isinstance(c.get(test), str):
                other = self.observe(c, c[test])
                text += f", {c[test]} = {'(missing)' if other is MISSING else json.dumps(other)[:200]}"
        other = c.get("same_as") or c.get("differs_from")
        return text + (f" vs {self.observed(other)}" if other else "")

    def wait(self, c, timeout: float, baseline=None) -> Optional[float]:
        """The time the condition was first seen to hold, or None after `timeout`."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.snapshot = {}
            try:
                if self.holds(c, baseline):
                    return time.time()
            finally:
                self.snapshot = None
            time.sleep(POLL_S)
        return None

    def fetch(self, c: dict) -> Any:
        """A process, notify, HTTP or TCP condition's document. An HTTP request or a TCP exchange
        is made once per poll (the snapshot), and the step's report shows the answer its test
        saw, not a second request's (a listener counts each)."""
        if "process" in c:
            return self.process_status(c["process"])
        if "notify" in c:
            return self.notify_messages(c["notify"])
        key = json.dumps({k: c[k] for k in ("http", "tcp") if k in c}, sort_keys=True)
        if self.snapshot is None and key in self.fetched:
            return self.fetched[key]
        if self.snapshot is not None and key in self.snapshot:
            return self.snapshot[key]
        if "http" in c:
            h = c["http"]
            r = self.hosts[h["host"]].run(["/usr/bin/python3", "-c", HTTP_FETCH, h["url"], h.get("method", "GET")], check=False, timeout=30)
            try:
                out = json.loads(r.stdout)
                if h.get("parse", "text") != "text" and isinstance(out.get("body"), str):
                    out["body"] = json.loads(out["body"]) if h["parse"] == "json" else prometheus_samples(out["body"])
            except ValueError:
                out = {"code": None, "error": (r.stdout + r.stderr)[-300:]}
        else:
            t = c["tcp"]
            r = self.hosts[t["host"]].run(["/usr/bin/python3", "-c", TCP_EXCHANGE, t["to"], str(t.get("pause_ms", 0) / 1000)],
                                          check=False, timeout=120, input=sc.tcp_bytes(t["send"]).hex())
            try:
                out = json.loads(r.stdout)
            except ValueError:
                out = {"reply": "", "error": (r.stdout + r.stderr)[-300:]}
        if self.snapshot is not None:
            self.snapshot[key] = out
        self.fetched[key] = out
        return out

    def process_status(self, node: str) -> Any:
        """What a "process" condition reads of a running mipsec node: its /proc/PID/status fields
        as the kernel writes them ("Uid": "65534\t65534\t65534\t65534" reads as "65534 65534
        65534 65534"; "CapEff": "0000000000001000"), "comm", and "fds": where its open file
        descriptors point ("/dev/net/tun", "socket:[...]"). The PID is the one the lab started
        (`ip netns exec` and setpriv exec into mipsec)."""
        p = self.procs.get(node)
        if p is None or node in self.charons or p.poll() is not None:
            return MISSING
        out: dict[str, Any] = {}
        try:
            with open(f"/proc/{p.pid}/status") as f:
                for line in f:
                    k, _, v = line.partition(":")
                    out[k] = " ".join(v.split())
            with open(f"/proc/{p.pid}/comm") as f:
                out["comm"] = f.read().strip()
            fds = []
            for fd in os.listdir(f"/proc/{p.pid}/fd"):
                try:
                    fds.append(os.readlink(f"/proc/{p.pid}/fd/{fd}"))
                except OSError:
                    pass
            out["fds"] = sorted(fds)
        except OSError:
            return MISSING
        out["pid"], out["fd_count"] = p.pid, len(out["fds"])
        try:
            out["rss_kib"] = int(out.get("VmRSS", "").split()[0])
        except (IndexError, ValueError):
            pass  # (a kernel thread or a zombie has none: no value)
        return out

    def signal(self, s: dict, label: str, timeout: float) -> None:
        """A signal to a mipsec node, by the PID the lab started (SIGHUP: reload its config
        file); "until" waited for and "after" checked then, both compared with before it."""
        node = s["node"]
        if node not in self.procs:
            raise StepFailed(f"{label}: node {node} is not running")
        base = self.baseline(s.get("until")) | self.baseline(s.get("after"))
        os.kill(self.procs[node].pid, getattr(signal, "SIG" + s["name"]))
        self.note("signal", node=node, signal=s["name"])
        if "until" in s:
            ok = self.wait(s["until"], timeout, base) is not None
            self.assertion(f"{label}: after SIG{s['name']} to {node}, {self.describe(s['until'])}", ok, self.observed(s["until"]))
            if not ok:
                raise StepFailed(f"{label}: timed out after {timeout:.0f}s waiting for {self.describe(s['until'])}")
        if "after" in s:
            self.assertion(f"{label}: afterwards {self.describe(s['after'])}", self.holds(s["after"], base), self.observed(s["after"]))

    def change_config(self, c: dict) -> None:
        """Changes the node's config (the scenario's copy, so a later start uses it too) and
        rewrites the file it runs from; a signal step makes a running node re-read it."""
        cfg = self.doc["nodes"][c["node"]]["config"]
        for p in c.get("remove", []):
            sc.edit_config(cfg, p, None, remove=True)
        for p, v in c.get("set", {}).items():
            sc.edit_config(cfg, p, v)
        self.write_config(c["node"])
        self.note("config", node=c["node"])

    # -- traffic --------------------------------------------------------------------------
    def timed_probe(self) -> Optional[str]:
        """The probe moves are timed by: the first listed that runs and has no count (a
        counted one ends by itself)."""
        return next((n for n, t in self.doc.get("traffic", {}).items() if n in self.probes and "count" not in t), None)

    def start_traffic(self, name: str, timeout: float = DEFAULT_TIMEOUT_S) -> None:
        t = self.doc["traffic"][name]
        if t["kind"] == "stream":
            try:
                self.streams[name] = Stream(self.lab, self.hosts[t["to"]], self.hosts[t["from"]], t["source"], t["address"],
                                            t.get("port", 5001), connect_timeout=timeout, pace_s=t.get("pace_ms", 20) / 1000)
            except TimeoutError as e:
                raise StepFailed(f"stream {name}: {e}")
        elif t["kind"] == "packets":
            self.start_packets(name, t)
        elif t["kind"] == "forged_replies":
            self.start_forger(name, t)
        elif t["kind"] == "ike_flood":
            self.start_packets(name, ike_flood.as_packets(t))  # (crafted packets: the same sender and account)
        else:
            self.probes[name] = Probe(self.lab, self.hosts[t["from"]], name, t["to"], t.get("interval_ms", 100), t.get("size"),
                                      t.get("count"), t.get("tos"), t.get("df"))
        self.note("traffic", name=name)

    def start_packets(self, name: str, t: dict) -> None:
        """A "packets" generator: lab/packets.py in the sending host's namespace, its spec and
        its account (sent, done, heard) in files of the run's directory."""
        spec_path = os.path.join(self.lab.dir, f"packets-{name}.json")
        account = os.path.join(self.lab.dir, f"packets-{name}.account")
        if os.path.exists(account):
            os.remove(account)  # (sent again: the new process's account, not the last one's)
        with open(spec_path, "w") as f:
            json.dump({"seed": sum(map(ord, name)), **self.status_values(t, f"packets {name}")}, f)
        script = os.path.join(os.path.dirname(os.path.abspath(__file__)), "packets.py")
        p = self.hosts[t["from"]].spawn(["/usr/bin/python3", script, spec_path, account], log_name=f"packets-{name}")
        self.senders[name] = (p, account)
        deadline = time.monotonic() + 30  # (building many variants takes a moment)
        while not os.path.exists(account):
            if p.poll() is not None or time.monotonic() > deadline:
                raise StepFailed(f"packets {name} did not start: " + open(p.log_path).read()[-1500:])  # type: ignore
            time.sleep(POLL_S)

    def status_values(self, v: Any, what: str) -> Any:
        """A packets spec with each value read from a status ({"node", "pointer"}) filled in."""
        if isinstance(v, list):
            return [self.status_values(x, what) for x in v]
        if not isinstance(v, dict):
            return v
        if "pointer" in v:
            got = self.observe(v)
            if got is MISSING:
                raise StepFailed(f"{what}: {self.where(v)} {v['pointer']} has no value")
            return got
        return {k: self.status_values(x, what) for k, x in v.items()}

    def send(self, step: dict, label: str, timeout: float) -> None:
        """A "send" step: its packets sent to the end, then its "then" conditions waited for,
        compared with values from before the first packet."""
        name = step["send"]
        base = self.baseline(step.get("then"))
        if name in self.senders:
            self.stop_packets(name)  # (a generator sent again starts from its first packet)
        self.start_packets(name, self.doc["traffic"][name])
        deadline = time.monotonic() + timeout
        while (self.sender_account(name) or {}).get("done") is not True:
            if time.monotonic() > deadline:
                self.assertion(f"{label}: the packets are sent", False, json.dumps(self.sender_account(name)))
                raise StepFailed(f"{label}: {name} not sent within {timeout:.0f}s")
            time.sleep(POLL_S)
        sent = self.sender_account(name).get("sent")
        if "then" in step:
            t = self.wait(step["then"], max(deadline - time.monotonic(), POLL_S), base)
            self.assertion(f"{label} ({sent} sent): {self.describe(step['then'])}", t is not None, self.observed(step["then"]))
        self.note("send", label=label, sent=sent)

    def sender_account(self, name: str) -> Any:
        p, path = self.senders[name]
        try:
            with open(path) as f:
                return json.load(f)
        except (OSError, ValueError):
            return MISSING

    def stop_packets(self, name: str) -> dict:
        p, _ = self.senders[name]
        if p.poll() is None:
            self.lab.stop(p)
        account = self.sender_account(name)
        return account if isinstance(account, dict) else {}

    def combined(self, c: dict) -> Any:
        """A condition's number with "plus" and "minus": the one at its pointer, plus and minus
        those at the others (of the same status read); MISSING unless all are numbers."""
        total = 0
        for sign, pointers in ((1, [c["pointer"]] + c.get("plus", [])), (-1, c.get("minus", []))):
            for p in pointers:
                v = self.observe(c, p)
                if not isinstance(v, (int, float)) or isinstance(v, bool):
                    return MISSING
                total += sign * v
        return total

    def wait_throughout(self, step: dict, label: str, timeout: float) -> None:
        """A wait with "throughout": those conditions must hold at every poll until the wait's
        own hold (e.g. a node stays registered for as long as a flood lasts)."""
        c, during = step["wait"], step["throughout"]
        baseline, during_base = self.baseline(c), self.baseline(during)
        deadline = time.monotonic() + timeout
        polls, lapses, done = 0, [], False
        while not done and time.monotonic() < deadline:
            self.snapshot = {}
            try:
                polls += 1
                if not self.holds(during, during_base):
                    lapses.append(f"{time.time() - self.t_begin:.2f} s: {self.observed(during)}")
                done = self.holds(c, baseline)
            finally:
                self.snapshot = None
            if not done:
                time.sleep(POLL_S)
        self.assertion(f"{label}: throughout, {self.describe(during)} ({polls} polls, {len(lapses)} without)", not lapses,
                       "; ".join(lapses[:5]))
        if not done:
            self.assertion(f"{label}: {self.describe(c)}", False, self.observed(c))
            raise StepFailed(f"{label}: timed out after {timeout:.0f}s waiting for {self.describe(c)}")
        self.note("wait", label=label)

    def start_forger(self, name: str, t: dict) -> None:
        """The host takes the address it is to answer for (on its loopback), then forger.py
        runs there until the end; started once it says it is bound."""
        host = self.hosts[t["from"]]
        host.run(["ip", "addr", "replace", f"{t['address']}/32", "dev", "lo"])
        forger = os.path.join(os.path.dirname(os.path.abspath(__file__)), "forger.py")
        p = host.spawn(["/usr/bin/python3", forger, t["address"], t["key"], str(t["spi"]), "1" if t.get("trusted_networks", True) else "0"],
                       log_name=f"forger-{name}")
        self.forgers[name] = p
        deadline = time.monotonic() + 10
        while "forging" not in open(p.log_path).read():  # type: ignore[attr-defined]
            if p.poll() is not None or time.monotonic() > deadline:
                raise StepFailed(f"forger {name} did not start: {open(p.log_path).read()[-300:]}")  # type: ignore[attr-defined]
            time.sleep(POLL_S)

    # -- moves ----------------------------------------------------------------------------
    def counters(self, host: str) -> dict:
        """IKE and registration counters of every node on `host`, per node."""
        out = {}
        for node, spec in self.run_nodes().items():
            if spec["host"] != host:
                continue
            st = self.status(node) or {}
            mns = [s for s in st.get("pipeline", []) if s.get("type") == "mip.mobile_node"]
            out[node] = {
                "ike_messages": counter_sum(st, ("ike_sent", "ike_received")),
                "ike_sessions": counter_sum(st, ("sessions_started",)),
                "registrations": [s.get("state", {}).get("counters", {}).get("replies_received", 0) for s in mns],
                "requests": [s.get("state", {}).get("counters", {}).get("requests_sent", 0) for s in mns],
            }
        return out

    def mode(self, host: str) -> str:
        """What the moving node says it is doing: the mobile node's mode (and the RFC 5265
        detection's when it has one), or the VPN client's state."""
        for node, spec in self.run_nodes().items():
            if spec["host"] != host:
                continue
            st = self.status(node) or {}
            layers = [s.get("state", {}) for s in st.get("pipeline", []) if s.get("type") == "mip.mobile_node"]
            if layers:
                det = next((x["detection"]["mode"] for x in layers if "mode" in x.get("detection", {})), None)
                modes = " / ".join(str(x.get("mode") or x.get("state", "?")) for x in layers)
                return f"{det}: {modes}" if det else modes
            for s in st.get("pipeline", []):
                if s.get("type") == "ipsec.vpn_client":
                    return "vpn " + str(s.get("state", {}).get("ike_state", "?"))
        return "-"

    def access_mode(self, host: str, where: bool = False) -> Optional[str]:
        """The RFC 5265 access mode the moving node's detection reports, if it has one; with
        `where`, "c (home)" when mode c is on the home link itself."""
        for node, spec in self.run_nodes().items():
            if spec["host"] != host:
                continue
            st = self.status(node) or {}
            for s in st.get("pipeline", []):
                det = s.get("state", {}).get("detection", {}) if s.get("type") == "mip.mobile_node" else {}
                if det.get("mode"):
                    return det["mode"] + (" (home)" if where and det.get("direct_state") == "at_home" else "")
        return None

    # -- captures -------------------------------------------------------------------------
    def quiet(self, q: dict, label: str, since: float) -> None:
        self.quiet_windows.append({"label": label, "captures": q["captures"], "protocols": q["protocols"], "from": since, "to": None})

    def link_changed(self, t: float) -> None:
        for w in self.quiet_windows + self.overhead_windows:
            if w["to"] is None:
                w["to"] = t

    def check_captures(self) -> dict:
        """Stops the captures, then asserts what the scenario asked of them: outside links hold
        no user packet in the clear; quiet windows hold none of their protocols."""
        self.link_changed(time.time())
        out = {}
        for c in self.captures.values():
            c.stop()
        keys = self.key_tables()
        options = cap.decrypt_options(keys["esp_sa"], keys["ikev1_decryption_table"])
        # The streams' bytes are random: shown as data, no heuristic dissector guesses at them
        # (and calls a segment a malformed Thrift call).
        for port in sorted({t.get("port", 5001) for t in self.doc.get("traffic", {}).values() if t.get("kind") == "stream"}):
            options += ["-d", f"tcp.port=={port},data"]
        for net, c in self.captures.items():
            try:
                frames = c.read(options)
            except (RuntimeError, subprocess.TimeoutExpired) as e:
                self.assertion(f"capture {net} is readable", False, str(e))
                continue
            classes: dict[str, int] = {}
            clear = []
            link = ipaddress.IPv4Network(self.doc["networks"][net]["prefix"])
            for f in frames:
                k = cap.classify(f, link)
                classes[k] = classes.get(k, 0) + 1
                if k == cap.CLEAR:
                    clear.append(f)
            out[f"capture {net}"] = {"frames": len(frames), "classes": dict(sorted(classes.items())), "file": os.path.basename(c.path)}
            spec = self.doc["captures"][net]
            for stack in spec.get("carries", []):
                n = sum(1 for f in frames if f":{stack}:" in ":" + ":".join(f.layers) + ":")
                self.assertion(f"capture {net} carries {stack} ({n} of {len(frames)} frames)", n >= spec.get("carries_at_least", 1),
                               f"protocols seen: {', '.join(sorted({':'.join(f.layers) for f in frames})[:12])}")
            if spec.get("decrypted"):
                # An ICMP error quotes only the start of the packet it is about: ESP inside one
                # cannot be decrypted, and is not what this asks about.
                esp = [f for f in frames if "esp" in f.layers and "icmp" not in f.layers[:f.layers.index("esp")]]
                opaque = [f for f in esp if not has_layers(f.layers, "esp:ip")]
                self.assertion(f"capture {net}: tshark decrypts every ESP frame with the nodes' key tables "
                               f"({len(esp) - len(opaque)} of {len(esp)})", bool(esp) and not opaque,
                               "; ".join(f.describe() for f in opaque[:5]) or "no ESP frame")
            for check in spec.get("fields", []):
                self.field_check(net, c.path, options, check)
            if spec.get("clean"):
                try:
                    bad = cap.problems(c.path, options)
                    self.assertion(f"capture {net}: tshark finds no malformed frame nor error", not bad, "; ".join(bad[:5]))
                except (RuntimeError, subprocess.TimeoutExpired) as e:
                    self.assertion(f"capture {net}: tshark finds no malformed frame nor error", False, str(e))
            if spec.get("outside"):
                self.assertion(f"outside link {net}: no user packet in the clear among {len(frames)} frames "
                               f"({', '.join(f'{k} {n}' for k, n in sorted(classes.items()))})",
                               not clear and len(frames) > 0,
                               f"{len(clear)} in the clear, e.g. " + "; ".join(f.describe() for f in clear[:5]))
        self.measure_overhead()
        for w in self.quiet_windows:
            hits = []
            for net in w["captures"]:
                c = self.captures[net]
                if c.frames is None:
                    continue
                hits += [f for f in c.frames if w["from"] <= f.time <= w["to"] and any(has_layers(f.layers, p) for p in w["protocols"])]
            self.assertion(f"{w['label']}: no {'/'.join(w['protocols'])} on {', '.join(w['captures'])} for "
                           f"{w['to'] - w['from']:.1f} s", not hits, f"{len(hits)} frames, e.g. " + "; ".join(f.describe() for f in hits[:5]))
        return out

    def field_check(self, net: str, path: str, options: list, f: dict) -> None:
        """A capture's "fields" check: every frame the display filter selects has the field
        (its k-th occurrence) passing the test, and there are as many frames as "frames" says."""
        test = next(t for t in sc.FIELD_TESTS if t in f)
        name = f.get("label") or f"capture {net}: {f['field']}#{f.get('occurrence', 1)} {test} {json.dumps(f[test])} where {f['filter']}"
        argv = ["tshark", "-r", path, "-n", *options, "-Y", f["filter"], "-T", "fields", "-E", "occurrence=a", "-E", "aggregator=,",
                "-e", f["field"]]
        try:
            r = subprocess.run(argv, capture_output=True, text=True, timeout=120)
        except subprocess.TimeoutExpired:
            self.assertion(name, False, "tshark took more than 120 s")
            return
        if r.returncode != 0:
            self.assertion(name, False, f"tshark exit {r.returncode}: {r.stderr.strip()[-300:]}")
            return

        def number(x: str) -> Any:
            if x in ("True", "False"):
                return int(x == "True")
            try:
                return int(x, 0)
            except ValueError:
                try:
                    return float(x)
                except ValueError:
                    return x
        k = f.get("occurrence", 1) - 1  # (every occurrence is printed, outermost first; a frame without the k-th reads "")
        values = [number((line.strip().split(",") + [""] * 8)[k]) for line in r.stdout.splitlines()]
        frames = f.get("frames", {"at_least": 1})
        bad = [v for v in values if not (v == f["equals"] if test == "equals" else v in f["in"] if test == "in"
                                          else isinstance(v, (int, float)) and (v >= f[test] if test == "at_least" else v <= f[test]))]
        self.assertion(f"{name} ({len(values)} frames)", not bad and within(len(values), frames),
                       f"{len(values)} frames (expected {json.dumps(frames)}); values: {sorted(set(map(str, values)))[:12]}")

    def measure_overhead(self) -> None:
        """Each move's bytes of overhead per packet, measured on the capture of the network the
        node went to (when there is one): the most frequent outer-minus-inner length of the
        probe's packets there between the move's link change and the next one. It
        replaces the node's own account (`tun.stack_overhead`) in the move's row."""
        if self.timed_probe() is None:
            return
        probe = self.doc["traffic"][self.timed_probe()]  # the one the moves time
        from collections import Counter
        for w in self.overhead_windows:
            c = self.captures.get(w["network"])
            if c is None or c.frames is None:
                continue
            end = w["to"] if w["to"] is not None else float("inf")
            seen = Counter(v for f in c.frames if w["from"] <= f.time <= end
                           for v in [cap.overhead(f, probe["to"], *([28 + probe["size"]] if "size" in probe else []))]
                           if v is not None)
            if seen:
                value, count = seen.most_common(1)[0]
                w["row"]["overhead_bytes"] = value
                w["row"]["overhead_source"] = f"capture {w['network']}, {count} of {sum(seen.values())} probe packets"

    def keep_captures(self, report_dir: str) -> list[str]:
        """Copies the capture files into the report directory, with the key tables that let
        Wireshark or tshark decrypt them (esp_sa and ikev1_decryption_table: copy both into a
        Wireshark profile directory, or pass each line with -o uat:<table>:<line>)."""
        import shutil
        kept = []
        for c in self.captures.values():
            if os.path.exists(c.path):
                kept.append(shutil.copy(c.path, os.path.join(report_dir, os.path.basename(c.path))))
        if kept:
            for table, lines in self.key_tables().items():
                if lines:
                    path = os.path.join(report_dir, table)
                    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)  # live keys: the owner only
                    with os.fdopen(fd, "w") as f:
                        f.write("\n".join(lines) + "\n")
                    kept.append(path)
        return kept

    def move(self, step: dict, label: str, timeout: float) -> None:
        m = step["move"]
        host, ifname = m["host"], m["interface"]
        h = self.hosts[host]
        before = self.before_change(host, m)
        # Leaving: the addresses and routes on the interface go (as on a DHCP release).
        h.run(["ip", "-4", "addr", "flush", "dev", ifname])
        h.run(["ip", "route", "flush", "dev", ifname], check=False)
        t0 = time.time()
        self.link_changed(t0)
        self.lab.replug(self.sw, self.ports[(host, ifname)], f"b-{m['to']}")
        self.note("link change", move=label, network=m["to"], host=host, interface=ifname)
        lease_times = os.path.join(self.lab.dir, f"lease-{host}-{ifname}.times")
        dhcp = self.lab.start_dhcp_client(h, ifname, lease_times) if m.get("address") == "dhcp" else None
        t_addr = None
        if m.get("address") not in (None, "dhcp"):
            h.run(["ip", "addr", "add", m["address"], "dev", ifname])
            t_addr = time.time()
            self.add_routes(host, m.get("routes", []))
        self.settle(m, label, t0, timeout, before, {"to": m["to"], "network": m["to"]},
                    dhcp=dhcp, lease_times=lease_times, t_addr=t_addr)

    def outage(self, step: dict, label: str, timeout: float) -> None:
        """Link loss: the interface's far end goes down for `duration_s` (the host sees carrier
        go, as when a laptop loses its access point) and comes back on the same network, with
        the same address; recovery is timed from the carrier coming back, like a move's."""
        o = step["outage"]
        host, ifname = o["host"], o["interface"]
        before = self.before_change(host, o)
        port = self.ports[(host, ifname)]
        network = self.network_of(host, ifname)
        t_down = time.time()
        self.link_changed(t_down)
        self.sw.run(["ip", "link", "set", port, "down"])
        self.note("link down", move=label, network=network)
        # The outage's length is the scenario's, not a wait for an event.
        time.sleep(o["duration_s"])
        self.sw.run(["ip", "link", "set", port, "up"])
        t0 = time.time()
        self.note("link up", move=label, network=network)
        self.settle(o, label, t0, timeout, before, {"to": f"{network} (link down {o['duration_s']} s)", "network": network,
                                                    "outage_ms": round((t0 - t_down) * 1000)})

    def link(self, step: dict, label: str, timeout: float) -> None:
        """A cable pulled or plugged back in: the interface's far end goes down or up and stays
        so until the timeline changes it (the host sees carrier go or come; its address and
        network stay); what follows is timed from the change, like a move."""
        c = step["link"]
        host, ifname = c["host"], c["interface"]
        before = self.before_change(host, c)
        network = self.network_of(host, ifname)
        t0 = time.time()
        self.link_changed(t0)
        self.sw.run(["ip", "link", "set", self.ports[(host, ifname)], "up" if c["up"] else "down"])
        if c["up"]:
            # The timeline plot shades from the pull to here.
            self.note("link up", move=self.pulled.pop((host, ifname), label), network=network)
        else:
            self.pulled[(host, ifname)] = label
            self.note("link down", move=label, network=network)
        self.settle(c, label, t0, timeout, before, {"to": f"{network} ({ifname} {'plugged in' if c['up'] else 'pulled'})",
                                                    "network": network})

    def restart(self, step: dict, label: str, timeout: float) -> None:
        """Stops (or kills) a node and starts it again; with "host", the restart is a row of the
        move table, timed from the new start as an outage is from the carrier coming back."""
        node = step["restart"]
        before = self.before_change(step["host"], step) if "host" in step else None
        if before is not None:
            self.link_changed(time.time())
        self.stop(node, kill=step.get("kill", False))
        if "while_down" in step:
            self.assertion(f"{label}: while {node} is down, {self.describe(step['while_down'])}", self.holds(step["while_down"]),
                           self.observed(step["while_down"]))
        if before is None:
            self.start(node)
            return
        t0 = time.time()
        self.start(node)
        self.settle({k: v for k, v in step.items() if k in ("host", "until", "after", "expect")}, label, t0, timeout,
                    before, {"to": f"{node} {'killed' if step.get('kill') else 'stopped'} and restarted", "network": None},
                    restarted=(node,))

    def network_of(self, host: str, ifname: str) -> str:
        """The network an interface is plugged into now (the last move that took it, else the
        scenario's)."""
        network = self.doc["hosts"][host]["interfaces"][ifname]["network"]
        for e in self.events:
            if e["event"] == "link change" and (e.get("host"), e.get("interface")) == (host, ifname):
                network = e["network"]
        return network

    def before_change(self, host: str, m: dict) -> dict:
        """What a move or an outage compares with afterwards: the mode, the counters, the
        baselines of its "increased"/"unchanged" conditions."""
        return {"mode": self.access_mode(host, where=True) or self.mode(host), "counters": self.counters(host),
                "base": self.baseline(m.get("until")) | self.baseline(m.get("acquired")) | self.baseline(m.get("after"))}

    def settle(self, m: dict, label: str, t0: float, timeout: float, before: dict, row_extra: dict,
               dhcp: Optional[subprocess.Popen] = None, lease_times: str = "", t_addr: Optional[float] = None,
               restarted: tuple = ()) -> None:
        """After a link change at t0: one polling loop watches every step of the handover at
        once, so each is timed from the link change on its own: the address (DHCP lease,
        static, or the node's own view for agent care-of addresses), the registration, the
        first probe reply, the stream. Then the row of the move table and its assertions."""
        host = m["host"]
        h = self.hosts[host]
        ifname = m.get("interface")
        restarted = set(m.get("restart", [])) | set(restarted)  # (their counters start again from 0)
        base = before["base"]
        t_reg = first = lost = stream_dt = None
        pending_restart = list(m.get("restart", []))
        probe = self.probes.get(self.timed_probe() or "")
        stream = next(iter(self.streams.values()), None)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if dhcp is not None and dhcp.poll() is not None:
                if dhcp.returncode != 0:
                    raise StepFailed(f"{label}: no DHCP lease on {host}/{ifname} (udhcpc exit {dhcp.returncode})")
                dhcp = None
                self.add_routes(host, m.get("routes", []))
            if t_addr is None and "acquired" not in m and m.get("address") == "dhcp":
                t_addr = lease_time(lease_times, t0)
            if pending_restart and dhcp is None:
                for node in pending_restart:
                    # A client without mobility support reconnects from its new address.
                    if node in self.procs:
                        self.lab.stop(self.procs.pop(node))
                    self.start(node)
                pending_restart = []
            self.snapshot = {}
            try:
                # A node's state is timed by its answer: it held by then (an upper bound,
                # within one status query of the event).
                if t_addr is None and "acquired" in m and self.holds(m["acquired"], base):
                    t_addr = time.time()
                if t_reg is None and "until" in m and self.holds(m["until"], base):
                    t_reg = time.time()
            finally:
                self.snapshot = None
            if probe is not None and first is None:
                first, lost = probe.gap(t0)
            if stream is not None and stream_dt is None:
                stream_dt = first_after([t for t, _ in stream.times()], t0)
            if ((t_addr is not None or m.get("address") is None and "acquired" not in m)
                    and (t_reg is not None or "until" not in m) and (first is not None or probe is None)
                    and (stream_dt is not None or stream is None) and dhcp is None and not pending_restart):
                break
            time.sleep(POLL_S)
        if dhcp is not None:
            self.lab.stop(dhcp)
            self.assertion(f"{label}: a DHCP lease on {host}/{ifname}", False, f"none within {timeout:.0f}s")
        if probe is not None and first is not None:
            first, lost = probe.gap(t0)  # the loss count as of now, after the first reply
        for what, t in (("care-of address", t_addr), ("registered", t_reg)):
            if t is not None:
                self.note(what, move=label, t_ms=round((t - self.t_begin) * 1000))
        after = self.counters(host)
        was_all = before["counters"]

        def delta(key):
            total = 0
            for node, now in after.items():
                was = was_all.get(node, {}) if node not in restarted else {}
                total += now[key] - was.get(key, 0)
            return total

        layers = []
        for node, now in after.items():
            was = was_all.get(node, {}) if node not in restarted else {}
            for i, v in enumerate(now["registrations"]):
                prev = (was.get("registrations") or [0] * (i + 1))
                layers.append(v - (prev[i] if i < len(prev) else 0))
        ms = lambda t: None if t is None else round((t - t0) * 1000)  # noqa: E731
        mode_after = self.access_mode(host)
        overhead = self.status_overhead(host)
        row = {
            "move": label, "to": row_extra["to"], "mode": self.mode(host), "access_mode": mode_after,
            "mode_change": f"{before['mode']} → {self.access_mode(host, where=True) or self.mode(host)}",
            "link_to_address_ms": ms(t_addr), "link_to_registration_ms": ms(t_reg),
            "link_to_first_packet_ms": None if first is None else round(first * 1000),
            "link_to_stream_ms": None if stream_dt is None else round(stream_dt * 1000),
            "probe_lost": lost, "ike_messages": delta("ike_messages"), "ike_sessions": delta("ike_sessions"),
            "registrations": sum(layers), "registrations_per_layer": layers,
            "overhead_bytes": overhead, "overhead_source": "status" if overhead is not None else None,
        }
        if "outage_ms" in row_extra:
            row["outage_ms"] = row_extra["outage_ms"]
        # Where the captures may measure the overhead instead: the access network, from the
        # link change (nothing of the old stack crosses the new network) to the next one; it
        # holds at least the probe's first request and reply through the new stack.
        self.overhead_windows.append({"row": row, "network": row_extra["network"], "from": t0, "to": None})
        self.moves.append(row)
        self.log(f"move {label}: {json.dumps({k: v for k, v in row.items() if k != 'move'})}")
        if "until" in m:
            self.assertion(f"{label}: {self.describe(m['until'])}", t_reg is not None, self.observed(m["until"]))
        if "acquired" in m:
            self.assertion(f"{label}: care-of address acquired ({self.describe(m['acquired'])})", t_addr is not None,
                           self.observed(m["acquired"]))
        if probe is not None:
            self.assertion(f"{label}: probe replies resume", first is not None)
        if self.streams:
            self.assertion(f"{label}: the stream goes on", stream_dt is not None)
        if "after" in m:
            self.assertion(f"{label}: afterwards {self.describe(m['after'])}", self.holds(m["after"], base), self.observed(m["after"]))
        for fig, bound in m.get("expect", {}).items():
            v = row.get(fig)
            self.assertion(f"{label}: {fig} {json.dumps(bound)}", within(v, bound), f"measured {json.dumps(v)}")
        if "quiet" in m:
            # From the moment the node said it was there (or the move's waits ended).
            self.quiet(m["quiet"], f"{label}: afterwards", t_reg if t_reg is not None else time.time())

    def status_overhead(self, host: str) -> Optional[int]:
        """The bytes the moving node's active stack adds to each packet, as the node itself
        reports it (`tun.stack_overhead`: the stack in its current mode and NAT traversal)."""
        for node, spec in self.run_nodes().items():
            if spec["host"] == host and node not in self.charons:
                v = ((self.status(node) or {}).get("tun") or {}).get("stack_overhead")
                if isinstance(v, int):
                    return v
        return None

    # -- the timeline ---------------------------------------------------------------------
    def timeline(self, steps: Optional[list] = None) -> None:
        for k, step in enumerate(self.doc["timeline"] if steps is None else steps):
            if not self.in_run(step):
                continue
            timeout = float(step.get("timeout_s", DEFAULT_TIMEOUT_S))
            self.fetched = {}  # (an HTTP or TCP answer is reported by the step that asked for it)
            action = next(a for a in sc.ACTIONS if a in step)
            label = step.get("label", f"step {k} {action}")
            if action == "start" and "refused" in step:
                self.refused_start(step["start"], step["refused"], label, timeout)
            elif action == "start":
                self.start(step["start"])
            elif action == "stop":
                self.stop(step["stop"])
            elif action == "restart":
                self.restart(step, step.get("label", f"restart {len(self.moves) + 1}: {step['restart']}"
                                                     + (" killed" if step.get("kill") else "")), timeout)
            elif action == "traffic":
                for name in step["traffic"]:
                    self.start_traffic(name, timeout)  # (a stream must connect within the step's timeout_s)
            elif action == "wait" and "throughout" in step:
                self.wait_throughout(step, label, timeout)
            elif action == "wait":
                t = self.wait(step["wait"], timeout, self.baseline(step["wait"]))
                if t is None:
                    self.assertion(f"{label}: {self.describe(step['wait'])}", False, self.observed(step["wait"]))
                    raise StepFailed(f"{label}: timed out after {timeout:.0f}s waiting for {self.describe(step['wait'])}")
                self.note("wait", label=label)
            elif action == "quiet":
                self.quiet(step["quiet"], label, time.time())
            elif action == "forget_path_mtu":
                self.hosts[step["forget_path_mtu"]].run(["ip", "route", "flush", "cache"])
                self.note("forget path MTU", host=step["forget_path_mtu"])
            elif action == "write":
                self.write_file(step["write"])
            elif action == "send":
                self.send(step, label, timeout)
            elif action == "signal":
                self.signal(step["signal"], label, timeout)
            elif action == "config":
                self.change_config(step["config"])
            elif action == "drop":
                self.drop(step["drop"], label, timeout)
            elif action == "swanctl":
                self.swanctl(step["swanctl"], label, timeout)
            elif action == "nat_flush":
                self.lab.flush_nat(self.hosts[step["nat_flush"]])
                self.note("nat flush", host=step["nat_flush"])
            elif action == "repeat":
                for n in range(1, step["repeat"] + 1):
                    self.note("round", label=label, round=n)
                    self.timeline(step["steps"])
            elif action == "remember":
                self.remember(step["remember"], label)
            elif action == "assert":
                self.assertion(f"{label}: {self.describe(step['assert'])}", self.holds(step["assert"]), self.observed(step["assert"]))
            elif action == "move":
                self.move(step, step.get("label", f"move {len(self.moves) + 1} to {step['move']['to']}"), timeout)
            elif action == "link":
                c = step["link"]
                self.link(step, step.get("label", f"{len(self.moves) + 1}: {c['host']}/{c['interface']} "
                                                  f"{'plugged in' if c['up'] else 'pulled'}"), timeout)
            elif action == "outage":
                self.outage(step, step.get("label", f"outage {len(self.moves) + 1}: {step['outage']['host']}/"
                                                    f"{step['outage']['interface']} down {step['outage']['duration_s']} s"), timeout)

    def drop(self, d: dict, label: str, timeout: float) -> None:
        """An nftables rule in the forwarding host drops the matching UDP packets until it has
        dropped `count`, then goes: one message lost on the way, for as long as it takes."""
        host = self.hosts[d["host"]]
        # @th,OFFSET,LENGTH: bits from the transport header; the UDP payload starts at bit 64.
        match = " ".join(f"@th,{64 + 8 * off},{4 * len(hx)} 0x{hx}" for off, hx in d.get("payload", []))
        table = f"labdrop{len(self.events)}"
        host.run(["nft", "-f", "-"], input=f"table ip {table} {{\n  chain forward {{\n    type filter hook forward priority -10;\n"
                                            f"    ip saddr {d['from']} udp sport {d['udp_source_port']} {match} counter drop\n  }}\n}}\n")
        want = d.get("count", 1)
        deadline, dropped = time.monotonic() + timeout, 0
        while time.monotonic() < deadline:
            m = re.search(r"packets (\d+)", host.run(["nft", "list", "table", "ip", table]).stdout)
            dropped = int(m.group(1)) if m else 0
            if dropped >= want:
                break
            time.sleep(POLL_S)
        host.run(["nft", "delete", "table", "ip", table])
        self.note("drop", host=d["host"], dropped=dropped)
        self.assertion(f"{label}: {d['host']} dropped {want} UDP packet(s) from {d['from']}:{d['udp_source_port']}", dropped >= want,
                       f"{dropped} within {timeout:.0f}s")

    def swanctl(self, sw: dict, label: str, timeout: float) -> None:
        """An operator's swanctl command on a strongSwan node's own SA (its one connection and
        CHILD_SA, as strongswan_node.connection names them), then its "until" conditions,
        compared with before the command."""
        charon = self.charons.get(sw["node"])
        if charon is None:
            raise StepFailed(f"{label}: strongSwan node {sw['node']} is not running")
        before = self.baseline(sw["until"]) if "until" in sw else {}
        name = charon.conn.children[0].name if sw["sa"] == "child" else charon.conn.name
        r = charon.swan([f"--{sw['do']}", f"--{sw['sa']}", name, "--timeout", "5"], check=False, timeout=15)
        self.assertion(f"{label}: swanctl --{sw['do']} --{sw['sa']} {name} on {sw['node']}", r.returncode == 0,
                       (r.stdout + r.stderr).strip()[-500:])
        self.note("swanctl", node=sw["node"], do=sw["do"], sa=sw["sa"])
        if "until" in sw:
            t0 = time.time()
            t = self.wait(sw["until"], timeout, before)
            self.assertion(f"{label}: then {self.describe(sw['until'])}" + (f" ({t - t0:.1f} s)" if t else ""), t is not None,
                           self.observed(sw["until"]))

    def drop_summary(self) -> dict:
        """Every non-zero drop and failed-send counter of the running mipsec nodes, keyed by
        where it was counted ("gw [0] ipsec.vpn_gateway: no_sa"): what a failed run observed
        that explains it (`lab matrix` shows the largest)."""
        out: dict[str, int] = {}

        def add(key: str, count) -> None:
            if isinstance(count, int) and not isinstance(count, bool) and count > 0:
                out[key] = count

        for node in list(self.procs):
            if node in self.charons:
                continue
            try:
                st = self.query_status(node) or {}
            except (OSError, subprocess.SubprocessError, ValueError) as e:
                self.log(f"drop summary: no status from {node}: {e}")
                continue
            for i, stage in enumerate(st.get("pipeline", [])):
                for reason, count in (stage.get("drops") or {}).items():
                    add(f"{node} [{i}] {stage.get('type')}: {reason}", count)
            transport = st.get("transport", {})
            for sock in transport.get("sockets", []):
                where = f"udp/{sock['udp_port']}" if "udp_port" in sock else f"raw/{sock.get('raw_protocol')}"
                for reason, count in (sock.get("tx_failures") or {}).items():
                    add(f"{node} socket {where}: send failed, {reason}", count)
            for key in ("unroutable", "inbound_unclaimed", "outbound_unclaimed"):
                add(f"{node} transport: {key}", transport.get(key))
            tun = st.get("tun", {})
            for reason, count in (tun.get("tx_failures") or {}).items():
                add(f"{node} tun: write failed, {reason}", count)
            add(f"{node} tun: too big for the active stack", (tun.get("too_big") or {}).get("dropped"))
        return out

    def series(self, bin_s: float = 0.5) -> dict:
        """Time series for the report's timeline plot, seconds from the start of the run:
        goodput of each stream (Mbit/s per `bin_s`, from the receiver's byte log) and each
        probe's round-trip times and unanswered requests."""
        rel = lambda t: round(t - self.t_begin, 3)  # noqa: E731
        out: dict[str, Any] = {"bin_s": bin_s, "streams": {}, "probes": {}}
        for name, s in self.streams.items():
            points = s.times()
            if not points:
                continue
            first, last = points[0][0], points[-1][0]
            bins = [0] * (int((last - first) / bin_s) + 1)
            previous = 0
            for t, total in points:
                bins[int((t - first) / bin_s)] += total - previous
                previous = total
            out["streams"][name] = [[rel(first + k * bin_s), round(b * 8 / bin_s / 1e6, 3)] for k, b in enumerate(bins)]
        for name, p in self.probes.items():
            replies, unanswered = p.samples()
            out["probes"][name] = {"rtt_ms": [[rel(t), r] for t, r in replies], "unanswered": [rel(t) for t in unanswered]}
        return out

    def finish(self) -> dict:
        """Ends traffic (checking every stream byte for byte) and stops the nodes; the figures."""
        totals: dict[str, Any] = {}
        for name in self.senders:
            totals[f"packets {name}"] = self.stop_packets(name)
        for name, s in self.streams.items():
            ok, out = self.streams_ended.get(name) or s.finish()
            self.assertion(f"stream {name} arrived complete and in order", ok, out)
            totals[f"stream {name}"] = {"bytes": s.bytes(), "intact": ok, "detail": out}
        for name, p in self.probes.items():
            sent, got = p.stop(self.lab)
            totals[f"probe {name}"] = {"sent": sent, "replies": got, "lost": max(sent - got, 0), "interval_ms": p.interval_ms}
        for name, p in self.forgers.items():
            totals[f"forger {name}"] = self.traffic_account(name)
            self.lab.stop(p)
        if self.captures:
            totals |= self.check_captures()
        for node in list(self.procs):
            self.stop(node)
        return totals

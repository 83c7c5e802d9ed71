# SPDX-License-Identifier: MIT
"""Network-namespace lab for mipsec end-to-end tests and demos.

A Lab creates uniquely named namespaces (ms<pid><n>-<role>), veth links between them, NAT
boxes (nftables masquerade) and processes inside them, and removes all of it on every exit
path: normal return, exception, SIGINT/SIGTERM, and interpreter exit. Processes are ended by
the PIDs the lab started, never by name. For labs built from data (tools/lab): bridges, ports
that can be re-plugged from one bridge to another (a moving laptop), masquerade on any
interface, and dnsmasq / udhcpc DHCP.

Only the standard library is used; run with /usr/bin/python3 as root. Tests that cannot run
without root call `require_root()`, which prints SKIPPED and exits 77 (CTest SKIP_RETURN_CODE).
"""
from __future__ import annotations

import atexit
import json
import itertools
import os
import signal
import subprocess
import sys
import tempfile
import time
from typing import Optional, Sequence

SKIP = 77
_counter = itertools.count()


def require_root(what: str) -> None:
    if os.geteuid() != 0:
        print(f"SKIPPED: {what} needs root (network namespaces, TUN devices)")
        sys.exit(SKIP)


def sh(argv: Sequence[str], check: bool = True, **kw) -> subprocess.CompletedProcess:
    r = subprocess.run(list(argv), capture_output=True, text=True, **kw)
    if check and r.returncode != 0:
        raise RuntimeError(f"command failed ({r.returncode}): {' '.join(argv)}\n{r.stdout}{r.stderr}")
    return r


class Host:
    """One network namespace."""

    def __init__(self, lab: "Lab", role: str):
        self.lab = lab
        self.role = role
        self.ns = f"ms{os.getpid()}{next(_counter)}-{role}"[:15]
        sh(["ip", "netns", "add", self.ns])
        lab._namespaces.append(self.ns)
        self.run(["ip", "link", "set", "lo", "up"])

    def run(self, argv: Sequence[str], check: bool = True, timeout: float = 60, **kw) -> subprocess.CompletedProcess:
        return sh(["ip", "netns", "exec", self.ns, *argv], check=check, timeout=timeout, **kw)

    def spawn(self, argv: Sequence[str], log_name: Optional[str] = None, **kw) -> subprocess.Popen:
        """Starts a long-running process in this namespace; its output goes to a log file."""
        name = log_name or f"{self.role}-{os.path.basename(argv[0])}"
        log_path = os.path.join(self.lab.dir, f"{name}.log")
        log = open(log_path, "w")
        p = subprocess.Popen(["ip", "netns", "exec", self.ns, *argv], stdout=log, stderr=subprocess.STDOUT,
                             start_new_session=True, **kw)
        p.log_path = log_path  # type: ignore[attr-defined]
        self.lab._processes.append(p)
        return p

    def sysctl(self, key: str, value: str) -> None:
        self.run(["sysctl", "-qw", f"{key}={value}"])

    def __repr__(self) -> str:
        return f"Host({self.ns})"


class Lab:
    def __init__(self, name: str, keep_dir: bool = False):
        self.name = name
        self._namespaces: list[str] = []
        self._processes: list[subprocess.Popen] = []
        self._links = itertools.count()
        self.dir = tempfile.mkdtemp(prefix=f"mipsec-{name}-")
        # MIPSEC_KEEP_LAB=1 keeps configs, logs and captures for a post-mortem.
        self.keep_dir = keep_dir or os.environ.get("MIPSEC_KEEP_LAB") == "1"
        self._closed = False
        self._old_handlers = {}

    # -- lifecycle -------------------------------------------------------------------------
    def __enter__(self) -> "Lab":
        atexit.register(self.close)
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            self._old_handlers[sig] = signal.signal(sig, self._on_signal)
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc is not None:
            self.dump_logs()
        self.close()

    def _on_signal(self, signo, _frame):
        # Turn the signal into an exception so every `with`/finally block still runs.
        raise KeyboardInterrupt(f"signal {signo}")

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        # A second Ctrl-C must not cut the clean-up short: the signals wait until it is done.
        for sig in self._old_handlers:
            signal.signal(sig, signal.SIG_IGN)
        for p in reversed(self._processes):
            self.stop(p)
        for ns in reversed(self._namespaces):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)
        for sig, h in self._old_handlers.items():
            signal.signal(sig, h)
        if not self.keep_dir:
            subprocess.run(["rm", "-rf", self.dir])

    def stop(self, p: subprocess.Popen, timeout: float = 5) -> Optional[int]:
        """SIGTERM the process (and its session, by the PID we started), then SIGKILL."""
        if p.poll() is not None:
            return p.returncode
        try:
            os.killpg(p.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            return p.wait(timeout)
        except subprocess.TimeoutExpired:
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            return p.wait(timeout)

    def dump_logs(self) -> None:
        for p in self._processes:
            path = getattr(p, "log_path", None)
            if path and os.path.exists(path):
                print(f"----- {path} -----")
                with open(path) as f:
                    print(f.read()[-4000:])

    # -- topology --------------------------------------------------------------------------
    def host(self, role: str) -> Host:
        return Host(self, role)

    def link(self, a: Host, a_addr: str, b: Host, b_addr: str, mtu: int = 1500) -> tuple[str, str]:
        """A veth pair between two hosts with the given address/prefix on each end."""
        n = next(self._links)
        a_if, b_if = f"v{n}{a.role}"[:15], f"v{n}{b.role}"[:15]
        tmp_a, tmp_b = f"mst{os.getpid()}a{n}"[:15], f"mst{os.getpid()}b{n}"[:15]
        sh(["ip", "link", "add", tmp_a, "mtu", str(mtu), "type", "veth", "peer", "name", tmp_b, "mtu", str(mtu)])
        sh(["ip", "link", "set", tmp_a, "netns", a.ns, "name", a_if])
        sh(["ip", "link", "set", tmp_b, "netns", b.ns, "name", b_if])
        for host, ifname, addr in ((a, a_if, a_addr), (b, b_if, b_addr)):
            if addr:
                host.run(["ip", "addr", "add", addr, "dev", ifname])
            host.run(["ip", "link", "set", ifname, "up"])
        return a_if, b_if

    def nat_box(self, role: str, inside: Host, inside_net: tuple[str, str], outside: Host,
                outside_net: tuple[str, str], random_ports: bool = False) -> Host:
        """A router that masquerades traffic from `inside` to `outside` with nftables.

        inside_net = (nat box address on the inside link, inside host address), both with prefix;
        outside_net likewise for the outside link. The inside host gets a default route via the box.
        random_ports: map source ports randomly, so a flushed mapping comes back on a new port
        (a NAT rebinding, as after a NAT reboot or timeout).
        """
        box = self.host(role)
        in_if, _ = self.link(box, inside_net[0], inside, inside_net[1])
        out_if, _ = self.link(box, outside_net[0], outside, outside_net[1])
        box.sysctl("net.ipv4.ip_forward", "1")
        inside.run(["ip", "route", "replace", "default", "via", inside_net[0].split("/")[0]])
        self.masquerade(box, out_if, random_ports)
        box.nat_outside_if = out_if  # type: ignore[attr-defined]
        box.nat_inside_if = in_if  # type: ignore[attr-defined]
        return box

    def masquerade(self, box: Host, out_if: str, random_ports: bool = False) -> None:
        """nftables source NAT of everything `box` sends out of `out_if` to that interface's address."""
        rules = f"""
table ip nat {{
  chain postrouting {{
    type nat hook postrouting priority srcnat; policy accept;
    oifname "{out_if}" masquerade{" random" if random_ports else ""}
  }}
}}
"""
        box.run(["nft", "-f", "-"], input=rules)

    def bridge(self, host: Host, name: str) -> str:
        """A Linux bridge `name` in `host` (created once)."""
        if host.run(["ip", "link", "show", name], check=False).returncode != 0:
            host.run(["ip", "link", "add", name, "type", "bridge"])
            host.run(["ip", "link", "set", name, "up"])
        return name

    def port(self, host: Host, ifname: str, switch: Host, bridge: Optional[str], address: str = "",
             mtu: int = 1500) -> str:
        """A veth pair: `ifname` (with `address`, if any) in `host`, its peer in `switch` as a port
        of `bridge` (none: left down, unattached). Returns the peer's name, which `replug` moves."""
        n = next(self._links)
        tmp_a, tmp_b = f"mst{os.getpid()}a{n}"[:15], f"mst{os.getpid()}b{n}"[:15]
        peer = f"p{n}{host.role}"[:15]
        sh(["ip", "link", "add", tmp_a, "mtu", str(mtu), "type", "veth", "peer", "name", tmp_b, "mtu", str(mtu)])
        sh(["ip", "link", "set", tmp_a, "netns", host.ns, "name", ifname])
        sh(["ip", "link", "set", tmp_b, "netns", switch.ns, "name", peer])
        # A veth hands GSO super-packets over whole, so a capture on the bridge would show one
        # frame of several datagrams, bigger than the MTU (and tshark could not read inside
        # its ESP). One segment at most: the host's kernel cuts them before its port, as a NIC
        # would before the wire, and the bridge carries the frames the wire would.
        host.run(["ip", "link", "set", ifname, "gso_max_segs", "1"])
        if address:
            host.run(["ip", "addr", "add", address, "dev", ifname])
        host.run(["ip", "link", "set", ifname, "up"])
        if bridge:
            self.replug(switch, peer, bridge)
        return peer

    def replug(self, switch: Host, peer: str, bridge: str) -> None:
        """Moves a port to another bridge, the far end seeing carrier go down and up, as when a
        laptop leaves one access point and associates with another."""
        switch.run(["ip", "link", "set", peer, "down"])
        switch.run(["ip", "link", "set", peer, "nomaster"])
        switch.run(["ip", "link", "set", peer, "master", self.bridge(switch, bridge)])
        switch.run(["ip", "link", "set", peer, "up"])

    def dhcp_server(self, host: Host, ifname: str, first: str, last: str, router: str, netmask: str = "255.255.255.0",
                    lease: str = "10m") -> subprocess.Popen:
        """dnsmasq handing out first..last on `ifname`, with `router` as the default gateway."""
        return host.spawn(["dnsmasq", "--no-daemon", "--conf-file=/dev/null", "--port=0", f"--interface={ifname}",
                           "--bind-interfaces", f"--dhcp-range={first},{last},{netmask},{lease}", f"--dhcp-option=3,{router}",
                           "--dhcp-authoritative", f"--dhcp-leasefile={self.dir}/{host.role}-{ifname}.leases", "--pid-file="],
                          log_name=f"dnsmasq-{host.role}-{ifname}")

    def dhcp_client(self, host: Host, ifname: str, timeout: float = 30) -> None:
        """One busybox udhcpc exchange on `ifname`: the lease's address and default route are set
        (replacing any), then udhcpc exits. Raises if no lease came."""
        p = self.start_dhcp_client(host, ifname)
        try:
            code = p.wait(timeout)
        except subprocess.TimeoutExpired:
            self.stop(p)
            raise RuntimeError(f"no DHCP lease on {host.ns}/{ifname} within {timeout}s")
        if code != 0:
            raise RuntimeError(f"no DHCP lease on {host.ns}/{ifname}: udhcpc exit {code}\n" + open(p.log_path).read()[-1000:])  # type: ignore

    def start_dhcp_client(self, host: Host, ifname: str, lease_times: str = "") -> subprocess.Popen:
        """dhcp_client without waiting: the udhcpc process (exit 0 once the lease is set).
        lease_times: a file that gets one line "<unix time> bound|renew <address>" per lease."""
        script = os.path.join(self.dir, "udhcpc.sh")
        if not os.path.exists(script):
            with open(script, "w") as f:
                f.write(UDHCPC_SCRIPT)
            os.chmod(script, 0o755)
        return host.spawn(["busybox", "udhcpc", "-i", ifname, "-f", "-q", "-n", "-B", "-t", "5", "-T", "1", "-s", script],
                          log_name=f"udhcpc-{host.role}-{ifname}-{next(self._links)}",
                          env={**os.environ, "LEASE_TIMES": lease_times})

    def flush_nat(self, box: Host) -> None:
        """Forget every NAT mapping (as a rebooting NAT would): the next packet gets a new port."""
        box.run(["conntrack", "-F"], check=False)

    def wait_for(self, predicate, timeout: float = 10, interval: float = 0.1, what: str = "condition"):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            r = predicate()
            if r:
                return r
            time.sleep(interval)
        raise TimeoutError(f"timed out after {timeout}s waiting for {what}")


UDHCPC_SCRIPT = """#!/bin/sh
# udhcpc calls this with $1 = deconfig|bound|renew and the lease in the environment.
case "$1" in
  deconfig) ip -4 addr flush dev "$interface" ;;
  bound|renew)
    # When the address is set (just before), for whoever times handovers.
    [ -n "$LEASE_TIMES" ] && echo "$(date +%s.%N) $1 $ip" >> "$LEASE_TIMES"
    ip addr replace "$ip/$mask" dev "$interface"
    [ -n "$router" ] && ip route replace default via "${router%% *}" dev "$interface" ;;
esac
exit 0
"""


class Checks:
    """Named assertions that keep going, then one closing line 'N passed, M failed'."""

    def __init__(self):
        self.passed = 0
        self.failed = 0

    def check(self, name: str, ok: bool, detail: str = "") -> bool:
        if ok:
            self.passed += 1
            print(f"ok   {name}")
        else:
            self.failed += 1
            print(f"FAIL {name}" + (f": {detail}" if detail else ""))
        sys.stdout.flush()
        return ok

    def finish(self) -> int:
        print(f"{self.passed} passed, {self.failed} failed")
        return 0 if self.failed == 0 and self.passed > 0 else 1


TCP_SERVER = r"""
import hashlib, socket, sys
srv = socket.socket(); srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind((sys.argv[1], int(sys.argv[2]))); srv.listen(1)
print("listening", flush=True)
c, _ = srv.accept(); h = hashlib.sha256(); n = 0
while True:
    b = c.recv(65536)
    if not b: break
    h.update(b); n += len(b)
c.sendall(f"{n} {h.hexdigest()}".encode()); c.close()
"""

TCP_CLIENT = r"""
import hashlib, os, socket, sys, time
data = os.urandom(int(sys.argv[3])); t = time.monotonic()
s = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=30)
s.sendall(data); s.shutdown(socket.SHUT_WR)
reply = b""
while True:
    b = s.recv(4096)
    if not b: break
    reply += b
dt = time.monotonic() - t
ok = reply.decode() == f"{len(data)} {hashlib.sha256(data).hexdigest()}"
print(f"{'match' if ok else 'MISMATCH'} {len(data)} bytes in {dt:.2f}s ({len(data)*8/dt/1e6:.1f} Mbit/s)")
sys.exit(0 if ok else 1)
"""


def tcp_stream(server: Host, client: Host, address: str, port: int, size: int, lab: Lab) -> tuple[bool, str]:
    """Sends `size` random bytes over TCP from client to server; true if the server's
    length and SHA-256 echo match what was sent."""
    srv = server.spawn(["/usr/bin/python3", "-c", TCP_SERVER, address, str(port)], log_name=f"tcp-server-{port}")
    lab.wait_for(lambda: "listening" in open(srv.log_path).read(), what="TCP server")  # type: ignore[attr-defined]
    r = client.run(["/usr/bin/python3", "-c", TCP_CLIENT, address, str(port), str(size)], check=False, timeout=90)
    srv.wait(10)
    return r.returncode == 0, (r.stdout + r.stderr).strip()


def node_status(host: Host, mipsec: str, sock: str):
    """The first node of `mipsec status --json`, or None while it is not answering."""
    r = host.run([mipsec, "status", "--socket", sock, "--json"], check=False)
    if r.returncode != 0:
        return None
    try:
        return json.loads(r.stdout)["nodes"][0]
    except (ValueError, KeyError, IndexError):
        return None


def stage_states(node, kind: str) -> list:
    """The reported state of every stage of type `kind` in a node's status, inner first."""
    if not node:
        return []
    return [s.get("state", {}) for s in node.get("pipeline", []) if s.get("type") == kind]


def pcap_packets(path: str):
    """The packets of a LINKTYPE_RAW capture (what tap.pcap writes), oldest first."""
    data = open(path, "rb").read()
    off = 24
    while off + 16 <= len(data):
        incl = int.from_bytes(data[off + 8:off + 12], "little")
        yield data[off + 16:off + 16 + incl]
        off += 16 + incl

# SPDX-License-Identifier: MIT
"""Pieces the roaming labs share (the lab runner and the older namespace tests): an
Internet core, access networks a mobile node's single interface moves
between (bridges in an "air" namespace, as a laptop moves between access points), real DHCP
(dnsmasq servers, busybox udhcpc on the mobile node), an nftables NAT, a TCP stream that
records when bytes arrive, and readers for `mipsec status`."""
import json
import os
import re
import time

from .netns import Host, Lab, node_status, stage_states  # noqa: F401  (re-exported for the roaming tests)

STREAM_SERVER = r"""
import hashlib, socket, sys, time
srv = socket.socket(); srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind((sys.argv[1], int(sys.argv[2]))); srv.listen(1)
print("listening", flush=True)
c, _ = srv.accept(); h = hashlib.sha256(); n = 0
log = open(sys.argv[3], "w")
while True:
    b = c.recv(65536)
    if not b: break
    h.update(b); n += len(b)
    print(f"{time.time():.6f} {n}", file=log, flush=True)
c.sendall(f"{n} {h.hexdigest()}".encode()); c.close()
"""

# Sends about 100 kB/s from a given source address until the stop file appears, then checks
# the server's byte count and hash.
STREAM_CLIENT = r"""
import hashlib, os, socket, sys, time
s = socket.socket(); s.bind((sys.argv[1], 0)); s.settimeout(120)
s.connect((sys.argv[2], int(sys.argv[3])))
print("connected", flush=True)
h = hashlib.sha256(); n = 0
pace = float(sys.argv[5]) if len(sys.argv) > 5 else 0.02  # seconds between 2 KiB writes; 0: as fast as TCP takes them
while not os.path.exists(sys.argv[4]):
    chunk = os.urandom(2048)
    s.sendall(chunk); h.update(chunk); n += len(chunk)
    if pace:
        time.sleep(pace)
s.shutdown(socket.SHUT_WR)
reply = b""
while True:
    b = s.recv(4096)
    if not b: break
    reply += b
ok = reply.decode() == f"{n} {h.hexdigest()}"
print(f"{'match' if ok else 'MISMATCH'} {n} bytes; server said {reply.decode()!r}", flush=True)
sys.exit(0 if ok else 1)
"""

UDHCPC_SCRIPT = """#!/bin/sh
# udhcpc calls this with $1 = deconfig|bound|renew and the lease in the environment.
case "$1" in
  deconfig) ip -4 addr flush dev "$interface" ;;
  bound|renew)
    ip addr replace "$ip/$mask" dev "$interface"
    [ -n "$router" ] && ip route replace default via "${router%% *}" dev "$interface" ;;
esac
exit 0
"""


def write_json(lab: Lab, name: str, cfg: dict) -> str:
    path = f"{lab.dir}/{name}.json"
    with open(path, "w") as f:
        json.dump(cfg, f, indent=2)
    return path


def ike_sa_ids(list_sas_text: str) -> list:
    """strongSwan's unique IKE SA ids and SPIs ("rw: #1, ESTABLISHED, IKEv1, 1a2b...i 3c4d...r")."""
    out = []
    for line in list_sas_text.splitlines():
        m = re.search(r"#(\d+), \w+, IKEv1, ([0-9a-f]+)_i\*? ([0-9a-f]+)_r", line)
        if m:
            out.append(m.groups())
    return out


def stream_times(path: str) -> list:
    """(arrival time, total bytes) for every chunk the stream server received."""
    out = []
    try:
        with open(path) as f:
            for line in f:
                parts = line.split()
                if len(parts) == 2:
                    out.append((float(parts[0]), int(parts[1])))
    except OSError:
        pass
    return out


def ping_times(path: str) -> list:
    """Arrival times of the replies in a `ping -D` log."""
    out = []
    try:
        with open(path) as f:
            for line in f:
                if line.startswith("[") and "bytes from" in line:
                    out.append(float(line[1:line.index("]")]))
    except OSError:
        pass
    return out


def first_after(times: list, t0: float):
    later = [t for t in times if t > t0]
    return min(later) - t0 if later else None


class Stream:
    """A TCP stream from `client` (bound to `source`) to `server` at `address`, running until
    finish()."""

    def __init__(self, lab: Lab, server: Host, client: Host, source: str, address: str, port: int = 5001,
                 connect_timeout: float = 20, pace_s: float = 0.02):
        self.lab = lab
        self.log = f"{lab.dir}/stream-{port}.times"
        self.stop_file = f"{lab.dir}/stream-{port}.stop"
        srv = server.spawn(["/usr/bin/python3", "-c", STREAM_SERVER, address, str(port), self.log], log_name=f"stream-server-{port}")
        lab.wait_for(lambda: "listening" in open(srv.log_path).read(), what="stream server")
        self.client = client.spawn(["/usr/bin/python3", "-c", STREAM_CLIENT, source, address, str(port), self.stop_file,
                                    str(pace_s)],
                                   log_name=f"stream-client-{port}")
        lab.wait_for(lambda: "connected" in open(self.client.log_path).read(), timeout=connect_timeout, what="stream connected")

    def times(self) -> list:
        return stream_times(self.log)

    def bytes(self) -> int:
        t = self.times()
        return t[-1][1] if t else 0

    def finish(self, timeout: float = 60) -> tuple[bool, str]:
        """Stops the client; true if the server received every byte, in order, once."""
        open(self.stop_file, "w").close()
        code = self.client.wait(timeout)
        out = open(self.client.log_path).read().strip()
        return code == 0 and "match" in out, out


class Roaming:
    """The Internet core ("inet", 198.18.0.0/15 links) and the radio: a mobile node whose one
    interface, wlan0, has its far end ("ap") in the "air" namespace, moved between bridges.

    public(host, n, address): links a host to inet on 198.18.n.0/24 and routes it by default.
    access(name, router, lan_cidr, dhcp_range): a router on inet with a LAN on bridge br_<name>,
        serving DHCP with dnsmasq when dhcp_range is given; nat=True masquerades the LAN.
    move(bridge, configure): the node leaves its network (its addresses and routes on wlan0
        go, as on a DHCP release), its port joins `bridge`, `configure` gives it an address;
        returns the time of the link change.
    """

    def __init__(self, lab: Lab, mn: Host):
        self.lab = lab
        self.mn = mn
        self.inet = lab.host("inet")
        self.air = lab.host("air")
        self.inet.sysctl("net.ipv4.ip_forward", "1")
        wlan, p = lab.link(mn, "", self.air, "")
        mn.run(["ip", "link", "set", wlan, "name", "wlan0"])
        mn.run(["ip", "link", "set", "wlan0", "up"])
        self.air.run(["ip", "link", "set", p, "down"])
        self.air.run(["ip", "link", "set", p, "name", "ap"])
        self.script = f"{lab.dir}/udhcpc.sh"
        with open(self.script, "w") as f:
            f.write(UDHCPC_SCRIPT)
        os.chmod(self.script, 0o755)

    def public(self, host: Host, n: int, address: str, default_route: bool = True) -> str:
        """Links `host` to inet as 198.18.n.2 (or `address`); returns host's interface."""
        ifname, _ = self.lab.link(host, f"{address}/24", self.inet, f"198.18.{n}.1/24")
        if default_route:
            host.run(["ip", "route", "add", "default", "via", f"198.18.{n}.1"])
        return ifname

    def bridge(self, name: str) -> str:
        br = f"br_{name}"
        if self.air.run(["ip", "link", "show", br], check=False).returncode != 0:
            self.air.run(["ip", "link", "add", br, "type", "bridge"])
            self.air.run(["ip", "link", "set", br, "up"])
        return br

    def attach(self, host: Host, address: str, name: str) -> str:
        """Puts `host` on the access network `name` with `address`; returns its interface."""
        ifname, p = self.lab.link(host, address, self.air, "")
        self.air.run(["ip", "link", "set", p, "master", self.bridge(name)])
        return ifname

    def access(self, name: str, n: int, lan_address: str, dhcp_range=None, nat: bool = False) -> Host:
        router = self.lab.host(name)
        router.sysctl("net.ipv4.ip_forward", "1")
        out_if = self.public(router, n, f"198.18.{n}.2")
        lan_if = self.attach(router, lan_address, name)
        gateway = lan_address.split("/")[0]
        if nat:
            router.run(["nft", "-f", "-"], input=f"""
table ip nat {{
  chain postrouting {{
    type nat hook postrouting priority srcnat; policy accept;
    oifname "{out_if}" masquerade
  }}
}}
""")
        else:
            network = lan_address.rsplit(".", 1)[0] + ".0/" + lan_address.split("/")[1]
            self.inet.run(["ip", "route", "add", network, "via", f"198.18.{n}.2"])
        if dhcp_range:
            lo, hi = dhcp_range
            router.spawn(["dnsmasq", "--no-daemon", "--conf-file=/dev/null", "--port=0", f"--interface={lan_if}",
                          "--bind-interfaces", f"--dhcp-range={lo},{hi},255.255.255.0,10m", f"--dhcp-option=3,{gateway}",
                          "--dhcp-authoritative", f"--dhcp-leasefile={self.lab.dir}/{name}.leases", "--pid-file="],
                         log_name=f"dnsmasq-{name}")
        return router

    def dhcp(self) -> None:
        self.mn.run(["busybox", "udhcpc", "-i", "wlan0", "-f", "-q", "-n", "-B", "-t", "5", "-T", "1", "-s", self.script],
                    timeout=30)

    def move(self, name: str, configure=None) -> float:
        self.mn.run(["ip", "-4", "addr", "flush", "dev", "wlan0"])
        self.mn.run(["ip", "route", "flush", "dev", "wlan0"], check=False)
        t0 = time.time()
        self.air.run(["ip", "link", "set", "ap", "down"])
        self.air.run(["ip", "link", "set", "ap", "nomaster"])
        self.air.run(["ip", "link", "set", "ap", "master", self.bridge(name)])
        self.air.run(["ip", "link", "set", "ap", "up"])
        (configure or self.dhcp)()
        return t0

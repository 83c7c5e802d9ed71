# SPDX-License-Identifier: MIT
"""The RFC 5265 full stack with mipsec on every node, for tools/bench_tunnel.py's fullstack
variants (the loss and soak runs are the lab scenarios rfc5265-loss and rfc5265-soak).

    mobile node pipeline, inner first: mip.mobile_node (i-MIP, care-of = the VPN inner address)
    -> ipsec.vpn_client -> nat.udp_encap -> mip.mobile_node (x-MIP, care-of from wlan0)
    -> tap.impair (the bad outer network: everything the node sends and receives)

    lan: cn 10.99.1.10, i-ha 10.99.1.5 --- gw (mipsec ipsec.vpn_gateway, 10.99.1.1 / 198.18.5.2) --- inet
    inet --- x-ha (198.18.1.2, home 203.0.113.0/24)
    inet --- cafe router 198.18.2.2 (192.0.2.1/24)        outside, no NAT
    inet --- hotel router 198.18.4.2 (198.51.100.1/24)    outside, no NAT
    inet --- nat box 198.18.3.2 (10.20.0.1/24, masquerade)
    mn (wlan0, moved between the access networks in the "air" namespace)

The mobile node gets its address on each network from a static plan (no DHCP), so a move's
time is the protocols' own. Every node logs JSON lines; `events()` reads the mobile node's
log back as (time, message) so timings come from the node's own clock, to the millisecond.
"""
import datetime
import json
import os
import time

from .netns import Lab, node_status, stage_states
from .roaming import Roaming, write_json

PSK = "lab-psk-0123456789"
I_HOME = "10.99.1.77"
I_HA = "10.99.1.5"
CN = "10.99.1.10"
I_KEY = "ffeeddccbbaa99887766554433221100"
X_HOME = "203.0.113.77"
X_HA = "198.18.1.2"
GW = "198.18.5.2"
MIP_KEY = "00112233445566778899aabbccddeeff"
FWMARK = 0x6d69

# name -> (router's inet link number, router LAN address, the mobile node's address, NAT)
NETWORKS = {
    "cafe": (2, "192.0.2.1/24", "192.0.2.100/24", False),
    "natbox": (3, "10.20.0.1/24", "10.20.0.100/24", True),
    "hotel": (4, "198.51.100.1/24", "198.51.100.100/24", False),
}


def impairment(loss: float, seed: int) -> dict:
    """The bad outer network of the fault tests: `loss` each way, plus 5 % duplicates and
    10 % reordered (a reordered packet leaves behind the next one, or 100 ms late)."""
    side = {"loss": loss, "duplicate": 0.05, "reorder": 0.10, "reorder_max_ms": 100}
    return {"type": "tap.impair", "seed": seed, "outbound": dict(side), "inbound": dict(side)}


class FullStack:
    """Builds the lab and starts the four mipsec nodes (x-HA, gateway, i-HA, mobile node).

    impair: a tap.impair stage config for the bottom of the mobile node's pipeline, or None.
    vpn: extra ipsec.vpn_client keys (child_rekey_s, ike_lifetime_s, reauth_margin_s, ...).
    udp_tunnels: the VPN's ESP in UDP (RFC 3948, forced: no NAT is between the x-home address
    and the gateway) and i-MIP in UDP (RFC 3519, forced) instead of plain ESP and IP-in-IP;
    the kernel and the TUN devices can batch UDP (GSO/GRO), not ESP or IP-in-IP.
    """

    def __init__(self, lab: Lab, mipsec: str, impair=None, vpn=None, first="cafe", x_lifetime_s=120, udp_tunnels=False):
        self.lab, self.mipsec = lab, mipsec
        self.mn = lab.host("mn")
        self.net = Roaming(lab, self.mn)
        self.xha, self.gw, self.iha, self.cn, sw = (lab.host(r) for r in ("xha", "gw", "iha", "cn", "sw"))
        for h in (self.xha, self.gw, self.iha):
            h.sysctl("net.ipv4.ip_forward", "1")
        self.net.public(self.xha, 1, X_HA)
        self.net.inet.run(["ip", "route", "add", "203.0.113.0/24", "via", X_HA])  # the external home network
        self.net.public(self.gw, 5, GW)
        sw.run(["ip", "link", "add", "br_lan", "type", "bridge"])
        sw.run(["ip", "link", "set", "br_lan", "up"])
        lan_ifs = {}
        for host, addr in ((self.gw, "10.99.1.1/24"), (self.iha, f"{I_HA}/24"), (self.cn, f"{CN}/24")):
            ifname, p = lab.link(host, addr, sw, "")
            sw.run(["ip", "link", "set", p, "master", "br_lan"])
            lan_ifs[host.role] = ifname
        for host in (self.iha, self.cn):
            host.run(["ip", "route", "add", "default", "via", "10.99.1.1"])
        for name, (n, lan, _, nat) in NETWORKS.items():
            self.net.access(name, n, lan, None, nat=nat)
        self.network = None
        self.move(first)

        self.socks = {r: f"{lab.dir}/{r}.sock" for r in ("xha", "gw", "iha", "mn")}
        cfgs = {
            "gw": {
                "name": "gw", "control_socket": self.socks["gw"], "log_level": "info",
                "tun": {"name": "vpn0", "routes": ["10.99.100.0/24"]},
                "transport": {"local": GW, "udp_ports": [500, 4500], "raw_protocols": [50]},
                "pipeline": [{"type": "ipsec.vpn_gateway", "local": GW, "psk": PSK, "local_id": "gw.lab.example",
                              "pool": "10.99.100.0/24", "local_ts": ["10.99.1.0/24"],
                              "ike_proposals": ["aes128-sha256-modp2048"], "esp_proposals": ["aes128gcm16"],
                              "dpd_delay_s": 30}],
            },
            "xha": {
                "name": "xha", "control_socket": self.socks["xha"], "log_level": "info",
                "tun": {"name": "xha0"},
                "transport": {"local": X_HA, "udp_ports": [434], "raw_protocols": [4]},
                "pipeline": [{"type": "mip.home_agent", "address": X_HA, "home_network": "203.0.113.0/24", "keepalive_s": 10,
                              "mobile_nodes": [{"home_address": X_HOME, "spi": 300, "key": MIP_KEY}]}],
            },
            "iha": {
                "name": "iha", "control_socket": self.socks["iha"], "log_level": "info",
                "tun": {"name": "iha0"},
                "transport": {"local": I_HA, "udp_ports": [434], "raw_protocols": [4]},
                "pipeline": [{"type": "mip.home_agent", "address": I_HA, "home_network": "10.99.1.0/24",
                              "home_interface": lan_ifs["iha"], "udp_tunnelling": udp_tunnels,
                              "mobile_nodes": [{"home_address": I_HOME, "spi": 400, "key": I_KEY}]}],
            },
            "mn": {
                "name": "mn", "control_socket": self.socks["mn"], "log_level": "info",
                "tun": {"name": "mip0", "address": f"{I_HOME}/32", "routes": ["10.99.1.0/24"], "route_table": 100},
                "transport": {"local": "0.0.0.0", "udp_ports": [434], "raw_protocols": [4, 255], "fwmark": FWMARK},
                "pipeline": [
                    {"type": "mip.mobile_node", "home_address": I_HOME, "home_agent": I_HA, "spi": 400, "key": I_KEY,
                     "lifetime_s": 300, "care_of": "inner_address", "udp_tunnelling": "forced" if udp_tunnels else "off",
                     "max_retransmit_s": 4},
                    {"type": "ipsec.vpn_client", "local": X_HOME, "gateway": GW, "psk": PSK, "local_id": "mn.lab.example",
                     "remote_id": "gw.lab.example", "remote_ts": "10.99.1.0/24", "ike_proposals": ["aes128-sha256-modp2048"],
                     "esp_proposals": ["aes128gcm16"], "dpd_delay_s": 30, **({"force_encapsulation": True} if udp_tunnels else {}),
                     **(vpn or {})},
                    {"type": "nat.udp_encap", "keepalive_s": 20},
                    {"type": "mip.mobile_node", "home_address": X_HOME, "home_agent": X_HA, "spi": 300, "key": MIP_KEY,
                     "lifetime_s": x_lifetime_s, "care_of": "interface", "interface": "wlan0", "max_retransmit_s": 4},
                    *([impair] if impair else []),
                ],
            },
        }
        self.cfg_paths = {role: write_json(lab, role, cfg) for role, cfg in cfgs.items()}
        self.procs = {}
        for role in ("gw", "xha", "iha"):
            self.procs[role] = self._host(role).spawn([mipsec, "run", "--log-format", "json", self.cfg_paths[role]],
                                                      log_name=f"mipsec-{role}")
        for role in ("gw", "xha", "iha"):
            lab.wait_for(lambda: os.path.exists(self.socks[role]), what=f"the {role} control socket")

    def _host(self, role):
        return {"gw": self.gw, "xha": self.xha, "iha": self.iha, "mn": self.mn}[role]

    def start_mobile_node(self) -> float:
        """Starts the mobile node; returns the wall-clock time just before."""
        t0 = time.time()
        self.procs["mn"] = self.mn.spawn([self.mipsec, "run", "--log-format", "json", self.cfg_paths["mn"]], log_name="mipsec-mn")
        return t0

    def move(self, name: str) -> float:
        """Moves the mobile node's wlan0 to access network `name` with its planned address;
        returns the time of the link change."""
        n, lan, addr, _ = NETWORKS[name]
        router = lan.split("/")[0]

        def configure():
            self.mn.run(["ip", "addr", "add", addr, "dev", "wlan0"])
            self.mn.run(["ip", "route", "add", "default", "via", router, "dev", "wlan0"])

        self.network = name
        return self.net.move(name, configure)

    # -- reading the nodes back ----------------------------------------------------------
    def status(self, role: str):
        return node_status(self._host(role), self.mipsec, self.socks[role])

    def stages(self, role: str, kind: str) -> list:
        return stage_states(self.status(role), kind)

    def mn_stages(self) -> dict:
        """The mobile node's stage states by layer: imip, vpn, xmip, impair (one status call)."""
        node = self.status("mn")
        mips = stage_states(node, "mip.mobile_node")
        return {"imip": mips[0] if len(mips) == 2 else {}, "xmip": mips[-1] if mips else {},
                "vpn": (stage_states(node, "ipsec.vpn_client") or [{}])[0],
                "impair": (stage_states(node, "tap.impair") or [{}])[0], "node": node or {}}

    def events(self, role: str = "mn") -> list:
        """(wall-clock time, message) of every JSON log line the node wrote so far."""
        out = []
        try:
            with open(f"{self.lab.dir}/mipsec-{role}.log") as f:
                for line in f:
                    try:
                        j = json.loads(line)
                        t = datetime.datetime.strptime(j["time"], "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=datetime.timezone.utc)
                        out.append((t.timestamp(), j.get("message", "")))
                    except (ValueError, KeyError):
                        continue
        except OSError:
            pass
        return out

    def pids(self) -> dict:
        """role -> PID of every running mipsec process (`ip netns exec` execs into it)."""
        return {role: p.pid for role, p in self.procs.items() if p.poll() is None}


def first_event(events: list, text: str, after: float = 0.0):
    """The time of the first logged message containing `text` at or after `after`, or None."""
    return next((t for t, m in events if t >= after and text in m), None)


def proc_figures(pid: int) -> dict:
    """Resident memory (VmRSS, KiB) and open descriptors of a process, from /proc."""
    rss = None
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1])
    return {"rss_kib": rss, "fds": len(os.listdir(f"/proc/{pid}/fd"))}

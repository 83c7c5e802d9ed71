# SPDX-License-Identifier: MIT
"""strongSwan 5.9 (charon + kernel-libipsec, IKEv1) as an interop peer inside a lab namespace.

Each Charon gets its own state directory (never under /run), its own strongswan.conf with an
explicit plugin list (kernel-libipsec before kernel-netlink so it wins the kernel-ipsec slot),
a private /run (charon's pid file and vici socket paths are fixed), and its own swanctl.conf.
Nothing in the host namespace or /etc/swanctl is used.
"""
from __future__ import annotations

import os
import subprocess
import time
from dataclasses import dataclass, field
from typing import Optional

from .netns import Host, Lab

CHARON = "/usr/lib/ipsec/charon"
PLUGINS = ("random nonce openssl aes sha1 sha2 md5 hmac gcm kdf gmp curve25519 pem pkcs1 x509 pubkey "
           "kernel-libipsec kernel-netlink socket-default vici attr")


@dataclass
class Child:
    name: str = "net"
    local_ts: str = "dynamic"
    remote_ts: str = "10.99.1.0/24"
    esp_proposals: str = "aes128gcm16"
    rekey_time: str = "1h"
    life_time: Optional[str] = None
    rand_time: Optional[str] = None     # "0s": rekey exactly at rekey_time
    start_action: Optional[str] = None  # client: "start" initiates as soon as the config is loaded


@dataclass
class Connection:
    name: str
    local_addrs: str
    remote_addrs: str
    local_id: str
    remote_id: str
    psk: str
    proposals: str = "aes128-sha1-modp2048"
    vips: Optional[str] = None          # client: "0.0.0.0" asks Mode Config for an address
    pools: Optional[str] = None         # gateway: name of a pool below
    pool_addrs: Optional[str] = None    # gateway: e.g. "10.99.100.0/24"
    dpd_delay: Optional[str] = None
    dpd_action: Optional[str] = None
    rekey_time: Optional[str] = None
    children: list[Child] = field(default_factory=lambda: [Child()])
    # kernel-libipsec only speaks ESP in UDP: without a NAT on the path strongSwan needs
    # encap = yes (it then fakes NAT-D); through a NAT, False leaves it to NAT detection.
    encap: bool = True


def swanctl_conf(c: Connection) -> str:
    lines = ["connections {", f"  {c.name} {{", "    version = 1", f"    encap = {'yes' if c.encap else 'no'}",
             f"    local_addrs = {c.local_addrs}", f"    remote_addrs = {c.remote_addrs}",
             f"    proposals = {c.proposals}", "    unique = no", "    keyingtries = 1"]
    if c.vips:
        lines.append(f"    vips = {c.vips}")
    if c.pools:
        lines.append(f"    pools = {c.pools}")
    if c.dpd_delay:
        lines.append(f"    dpd_delay = {c.dpd_delay}")
    if c.rekey_time:
        lines.append(f"    rekey_time = {c.rekey_time}")
    lines += ["    local {", "      auth = psk", f"      id = {c.local_id}", "    }",
              "    remote {", "      auth = psk", f"      id = {c.remote_id}", "    }", "    children {"]
    for ch in c.children:
        lines += [f"      {ch.name} {{", "        mode = tunnel", f"        local_ts = {ch.local_ts}",
                  f"        remote_ts = {ch.remote_ts}", f"        esp_proposals = {ch.esp_proposals}",
                  f"        rekey_time = {ch.rekey_time}"]
        if ch.life_time:
            lines.append(f"        life_time = {ch.life_time}")
        if ch.rand_time:
            lines.append(f"        rand_time = {ch.rand_time}")
        if ch.start_action:
            lines.append(f"        start_action = {ch.start_action}")
        if c.dpd_action:
            lines.append(f"        dpd_action = {c.dpd_action}")
        lines.append("      }")
    lines += ["    }", "  }", "}"]
    if c.pools and c.pool_addrs:
        lines += ["pools {", f"  {c.pools} {{", f"    addrs = {c.pool_addrs}", "  }", "}"]
    # One PSK shared by both identities: swanctl takes several ids as id-<suffix> keys.
    lines += ["secrets {", "  ike-lab {", f"    id-local = {c.local_id}", f"    id-remote = {c.remote_id}",
              f'    secret = "{c.psk}"', "  }", "}"]
    return "\n".join(lines) + "\n"


class Charon:
    """One charon daemon in `host`, configured with `conn`."""

    def __init__(self, lab: Lab, host: Host, conn: Connection, log_level: int = 2, cpu: Optional[int] = None):
        self.lab, self.host, self.conn = lab, host, conn
        self.state = os.path.join(lab.dir, f"charon-{host.role}")
        self.run_dir = os.path.join(self.state, "run")
        os.makedirs(os.path.join(self.state, "etc"), exist_ok=True)
        os.makedirs(self.run_dir, exist_ok=True)
        # A charon restarted in the same state directory (a roaming client reconnecting) must
        # not be taken for up by the socket and pid file its predecessor left behind.
        for stale in ("charon.vici", "charon.pid", "charon.ctl"):
            try:
                os.unlink(os.path.join(self.run_dir, stale))
            except FileNotFoundError:
                pass
        self.log = os.path.join(self.run_dir, "charon.log")
        self.conf = os.path.join(self.state, "etc", "strongswan.conf")
        self.swanctl = os.path.join(self.state, "etc", "swanctl.conf")
        with open(self.conf, "w") as f:
            f.write(f"""charon {{
  load_modular = no
  load = {PLUGINS}
  install_routes = yes
  keep_alive = 20s
  retransmit_tries = 3
  filelog {{
    log {{
      path = {self.run_dir}/charon.log
      time_format = %H:%M:%S
      default = 1
      ike = {log_level}
      cfg = {log_level}
      knl = 1
      net = {log_level}
      enc = 1
    }}
  }}
}}
""")
        with open(self.swanctl, "w") as f:
            f.write(swanctl_conf(conn))
        self.uri = f"unix://{self.run_dir}/charon.vici"
        # Private mount namespace: /run is replaced by our state dir, so the fixed pid file and
        # vici socket of each charon do not collide; exec keeps $! == charon's PID.
        pin = f"taskset -c {cpu} " if cpu is not None else ""
        self.proc = host.spawn(["unshare", "-m", "--propagation", "private", "sh", "-c",
                                f"mount --bind {self.run_dir} /run && exec {pin}env STRONGSWAN_CONF={self.conf} {CHARON}"],
                               log_name=f"charon-{host.role}-stdout")
        lab.wait_for(lambda: os.path.exists(os.path.join(self.run_dir, "charon.vici")), timeout=15,
                     what=f"charon in {host.ns} to open its vici socket")
        self.swan(["--load-all", "--file", self.swanctl])

    def swan(self, args: list[str], check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess:
        return self.host.run(["swanctl", *args, "--uri", self.uri], check=check, timeout=timeout)

    def initiate(self, child: str = "net", timeout: float = 30) -> subprocess.CompletedProcess:
        return self.swan(["--initiate", "--child", child, "--timeout", str(int(timeout))], check=False, timeout=timeout + 5)

    def list_sas(self) -> str:
        return self.swan(["--list-sas"], check=False).stdout

    def log_text(self) -> str:
        try:
            with open(self.log) as f:
                return f.read()
        except FileNotFoundError:
            return ""

    def stop(self) -> None:
        self.lab.stop(self.proc)


def wait_established(charon: Charon, timeout: float = 20) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        out = charon.list_sas()
        if "INSTALLED" in out:
            return out
        time.sleep(0.2)
    raise TimeoutError(f"no CHILD_SA installed in {charon.host.ns}:\n{charon.list_sas()}\n{charon.log_text()[-3000:]}")

# SPDX-License-Identifier: MIT
"""A scenario node that is strongSwan instead of `mipsec run`: charon with kernel-libipsec and a
pre-shared key, started by lab.strongswan.Charon, as an IKEv1 remote-access gateway
(forced UDP encapsulation, RFC 3948; a Mode Config pool, draft-dukes-ike-mode-cfg) or, with
"role": "client", as a remote-access client that asks Mode Config for an address and initiates
as soon as it starts.

Its status, for conditions, is `swanctl --list-sas` parsed into the shape of a mipsec status
document: {"pipeline": [{"type": "strongswan.gateway" | "strongswan.client", "state": {...}}]}."""
from __future__ import annotations

import re

from .strongswan import Child, Connection

STAGE = "strongswan.gateway"
CLIENT_STAGE = "strongswan.client"


def stage(spec: dict) -> str:
    return CLIENT_STAGE if spec.get("role") == "client" else STAGE


def rekey(spec: dict, which: str):
    """charon's rekey_time for "child_rekey_s" or "ike_rekey_s" (IKEv1: a re-authentication), or None."""
    n = spec.get(f"{which}_rekey_s")
    return f"{n}s" if n else None


def child_times(spec: dict) -> dict:
    """A CHILD_SA's hard lifetime and rekey jitter (charon's life_time and rand_time), where given."""
    out = {}
    if "child_lifetime_s" in spec:
        out["life_time"] = f"{spec['child_lifetime_s']}s"
    if "child_rekey_jitter_s" in spec:
        out["rand_time"] = f"{spec['child_rekey_jitter_s']}s"
    return out


def connection(spec: dict) -> Connection:
    """The swanctl connection of a strongswan element validated by scenario.Validator.strongswan (IKEv1; the
    kernel-libipsec backend only speaks ESP in UDP, so either role forces encapsulation unless told
    "encap": false, which leaves it to NAT detection, RFC 3947, for a peer behind a NAT)."""
    if spec.get("role") == "client":
        return Connection("lab", spec.get("local", "%any"), spec["remote"], spec["local_id"], spec["remote_id"], spec["psk"],
                          proposals=spec.get("ike_proposals", "aes128-sha256-modp2048"), vips="0.0.0.0",
                          dpd_delay=f"{spec.get('dpd_delay_s', 30)}s", encap=spec.get("encap", True), rekey_time=rekey(spec, "ike"),
                          children=[Child(local_ts="dynamic", remote_ts=spec["remote_ts"], rekey_time=rekey(spec, "child") or "1h", **child_times(spec),
                                          esp_proposals=spec.get("esp_proposals", "aes128gcm16"), start_action="start")])
    return Connection("rw", spec["local"], spec.get("remote", "%any"), spec["local_id"], spec["remote_id"], spec["psk"],
                      proposals=spec.get("ike_proposals", "aes128-sha256-modp2048"), pools="pool",
                      pool_addrs=spec["pool"], dpd_delay=f"{spec.get('dpd_delay_s', 30)}s", encap=spec.get("encap", True), rekey_time=rekey(spec, "ike"),
                      children=[Child(local_ts=spec["local_ts"], remote_ts="dynamic", rekey_time=rekey(spec, "child") or "1h", **child_times(spec),
                                      esp_proposals=spec.get("esp_proposals", "aes128gcm16"))])


IKE_LINE = re.compile(r"^(\S+): #(\d+), (\w+), IKEv(\d)")
REMOTE_LINE = re.compile(r"^\s+remote\s+'([^']*)' @ ([\d.]+)\[(\d+)\](?: \[([\d.]+)\])?")
LOCAL_LINE = re.compile(r"^\s+local\s+'([^']*)' @ ([\d.]+)\[(\d+)\](?: \[([\d.]+)\])?")
CHILD_LINE = re.compile(r"^\s+(\S+): #(\d+), reqid \d+, (\w+), (\S+?),")


def parse_list_sas(text: str) -> dict:
    """`swanctl --list-sas` as a status: every IKE SA (unique id, state, our and the peer's
    address and port, each side's virtual IP) with its CHILD_SAs (state, mode, whether ESP is in UDP), and the totals the
    scenarios compare: IKE SAs established, CHILD_SAs installed, the newest IKE SA's unique id
    (charon numbers IKE SAs 1, 2, ... for its lifetime, so it counts the negotiations)."""
    sas: list[dict] = []
    for line in text.splitlines():
        m = IKE_LINE.match(line)
        if m:
            sas.append({"name": m.group(1), "id": int(m.group(2)), "state": m.group(3).lower(), "ike_version": int(m.group(4)),
                        "children": []})
            continue
        if not sas:
            continue
        m = LOCAL_LINE.match(line)
        if m:
            # A client's own inner address (Mode Config) shows on its local line.
            sas[-1].update(local=m.group(2), local_port=int(m.group(3)), local_virtual_ip=m.group(4))
            continue
        m = REMOTE_LINE.match(line)
        if m:
            sas[-1].update(remote_id=m.group(1), remote=m.group(2), remote_port=int(m.group(3)), virtual_ip=m.group(4))
            continue
        m = CHILD_LINE.match(line)
        if m:
            sas[-1]["children"].append({"name": m.group(1), "id": int(m.group(2)), "state": m.group(3).lower(),
                                        "mode": m.group(4).lower(), "udp_encapsulation": m.group(4).endswith("-in-UDP")})
    return {
        "ike_sas": sas,
        "ike_established": sum(1 for s in sas if s["state"] == "established"),
        "child_sas_installed": sum(1 for s in sas for c in s["children"] if c["state"] == "installed"),
        "newest_ike_sa": max((s["id"] for s in sas), default=0),
    }


def status(text: str, kind: str = STAGE) -> dict:
    return {"pipeline": [{"type": kind, "state": parse_list_sas(text)}]}

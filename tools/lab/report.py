# SPDX-License-Identifier: MIT
"""The report of one run: report.json (every figure) and report.md (the per-move table), and,
when graphviz's `dot` is installed, topology.svg (networks, hosts, NATs, mipsec nodes)."""
from __future__ import annotations

import json
import os
import shutil
import subprocess

from .scenario import active

COLUMNS = (("move", "move"), ("mode_change", "mode before → after"), ("mode", "mode"), ("link_to_address_ms", "link → care-of address (ms)"),
           ("link_to_registration_ms", "→ registered / tunnel up (ms)"), ("link_to_first_packet_ms", "→ first probe reply (ms)"),
           ("link_to_stream_ms", "→ stream resumes (ms)"), ("probe_lost", "probes lost"), ("ike_messages", "IKE messages"),
           ("ike_sessions", "IKE sessions"), ("registrations_per_layer", "registrations per MIP layer"))


def cell(v) -> str:
    if v is None:
        return "–"
    if isinstance(v, list):
        return " / ".join(str(x) for x in v) if v else "–"
    return str(v)


def move_table(moves: list) -> str:
    lines = ["| " + " | ".join(title for _, title in COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    for m in moves:
        lines.append("| " + " | ".join(cell(m.get(k)) for k, _ in COLUMNS) + " |")
    return "\n".join(lines)


def topology_dot(doc: dict) -> str:
    out = ["graph lab {", "  rankdir=LR; node [fontname=\"sans-serif\" fontsize=10];"]
    for n, spec in doc["networks"].items():
        out.append(f'  "net_{n}" [shape=ellipse style=filled fillcolor="#dde8f5" label="{n}\\n{spec["prefix"]}"];')
    nodes_on = {}
    for node, spec in doc.get("nodes", {}).items():
        if not active(spec, doc.get("parameters", {})):
            continue
        if "strongswan" in spec:
            kinds = ["strongSwan IKEv1 gateway"]
        else:
            kinds = [s.get("type", "?") for s in spec["config"].get("pipeline", [])
                     if not str(s.get("type", "")).startswith("tap.")]
        nodes_on.setdefault(spec["host"], []).append(f"{node}: " + " → ".join(kinds))
    for h, spec in doc["hosts"].items():
        extra = []
        if "nat" in spec:
            extra.append("NAT")
        if "dhcp_server" in spec:
            extra.append("DHCP")
        if spec.get("forward"):
            extra.append("router")
        label = "\\n".join([h + (f" ({', '.join(extra)})" if extra else "")] + nodes_on.get(h, []))
        out.append(f'  "host_{h}" [shape=box style=rounded label="{label}"];')
        for ifname, ispec in spec.get("interfaces", {}).items():
            out.append(f'  "host_{h}" -- "net_{ispec["network"]}" [label="{ifname} {ispec.get("address") or ""}" fontsize=8];')
    # Where the timeline takes a moving interface: dashed, numbered in order.
    k = 0
    for step in doc["timeline"]:
        if "move" in step:
            k += 1
            m = step["move"]
            out.append(f'  "host_{m["host"]}" -- "net_{m["to"]}" [style=dashed color="#c05020" fontcolor="#c05020" '
                       f'label="move {k}: {m["interface"]}" fontsize=8];')
    out.append("}")
    return "\n".join(out) + "\n"


def write(report_dir: str, doc: dict, result: dict) -> list[str]:
    os.makedirs(report_dir, exist_ok=True)
    written = []
    path = os.path.join(report_dir, "report.json")
    with open(path, "w") as f:
        json.dump(result, f, indent=2)
    written.append(path)
    svg = None
    if shutil.which("dot"):
        dot_path = os.path.join(report_dir, "topology.dot")
        with open(dot_path, "w") as f:
            f.write(topology_dot(doc))
        r = subprocess.run(["dot", "-Tsvg", dot_path, "-o", os.path.join(report_dir, "topology.svg")], capture_output=True)
        if r.returncode == 0:
            svg = "topology.svg"
            written.append(os.path.join(report_dir, svg))
    failed = [a for a in result["assertions"] if not a["ok"]]
    md = [f"# mipsec lab: {result['scenario']}", ""]
    if doc.get("summary"):
        md += [doc["summary"], ""]
    md += [f"Result: **{'PASS' if result['passed'] else 'FAIL'}** "
           f"({len(result['assertions']) - len(failed)} of {len(result['assertions'])} assertions hold), "
           f"{result['duration_s']:.1f} s.", ""]
    if result.get("error"):
        md += [f"Stopped early: `{result['error']}`", ""]
    if svg:
        md += [f"![topology]({svg})", ""]
    md += ["## Moves", "", "Each time is measured from the link change. Polled every 50 ms.", "", move_table(result["moves"]), ""]
    if result.get("traffic"):
        md += ["## Traffic", ""]
        for name, t in result["traffic"].items():
            md.append(f"- {name}: " + ", ".join(f"{k} {v}" for k, v in t.items() if k != "detail"))
        md.append("")
    md += ["## Assertions", ""]
    for a in result["assertions"]:
        md.append(f"- {'✓' if a['ok'] else '✗'} {a['name']}" + ("" if a["ok"] or not a["detail"] else f" — {a['detail']}"))
    md.append("")
    path = os.path.join(report_dir, "report.md")
    with open(path, "w") as f:
        f.write("\n".join(md))
    written.append(path)
    return written

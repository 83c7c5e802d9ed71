# SPDX-License-Identifier: MIT
"""The report of one run: report.json (every figure) and report.md (the per-move table), and,
when graphviz's `dot` is installed, topology.svg (networks, hosts, NATs, mipsec nodes), and,
when matplotlib is, timeline.svg (goodput and probe round trips over time, moves and
registrations marked)."""
from __future__ import annotations

import json
import os
import shutil
import subprocess

from .scenario import active

COLUMNS = (("move", "move"), ("mode_change", "mode before → after"), ("mode", "mode"), ("link_to_address_ms", "link → care-of address (ms)"),
           ("link_to_registration_ms", "→ registered / tunnel up (ms)"), ("link_to_first_packet_ms", "→ first probe reply (ms)"),
           ("link_to_stream_ms", "→ stream resumes (ms)"), ("probe_lost", "probes lost"), ("ike_messages", "IKE messages"),
           ("ike_sessions", "IKE sessions"), ("registrations_per_layer", "registrations per MIP layer"),
           ("overhead", "overhead per packet (bytes, where measured)"))


def overhead_cell(m: dict):
    """The bytes of overhead per packet and where they come from: a capture (the probe's
    packets on the access link, outer minus inner length) or the node's status."""
    v = m.get("overhead_bytes")
    if v is None:
        return None
    source = m.get("overhead_source") or ""
    return f"{v} ({source})" if source else str(v)


def cell(v) -> str:
    if v is None:
        return "–"
    if isinstance(v, list):
        return " / ".join(str(x) for x in v) if v else "–"
    return str(v)


def markdown_table(titles: list, rows: list) -> str:
    """A Markdown table of already formatted rows ("|" inside a cell escaped)."""
    lines = ["| " + " | ".join(titles) + " |", "|" + "---|" * len(titles)]
    lines += ["| " + " | ".join(cell(v).replace("|", "\\|") for v in row) + " |" for row in rows]
    return "\n".join(lines)


def move_table(moves: list) -> str:
    return markdown_table([title for _, title in COLUMNS],
                          [[overhead_cell(m) if k == "overhead" else m.get(k) for k, _ in COLUMNS] for m in moves])


def topology_dot(doc: dict) -> str:
    out = ["graph lab {", "  rankdir=LR; node [fontname=\"sans-serif\" fontsize=10];"]
    for n, spec in doc["networks"].items():
        out.append(f'  "net_{n}" [shape=ellipse style=filled fillcolor="#dde8f5" label="{n}\\n{spec["prefix"]}"];')
    nodes_on = {}
    for node, spec in doc.get("nodes", {}).items():
        if not active(spec, doc.get("parameters", {})):
            continue
        if "strongswan" in spec:
            kinds = ["strongSwan IKEv1 " + ("client" if spec["strongswan"].get("role") == "client" else "gateway")]
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
    # A link outage: dotted, to the network the interface is on by then.
    k = 0
    on = {(h, i): spec["network"] for h, hs in doc["hosts"].items() for i, spec in hs.get("interfaces", {}).items()}
    for step in one_round(doc["timeline"]):
        if not active(step, doc.get("parameters", {})):
            continue
        if "move" in step:
            k += 1
            m = step["move"]
            on[(m["host"], m["interface"])] = m["to"]
            out.append(f'  "host_{m["host"]}" -- "net_{m["to"]}" [style=dashed color="#c05020" fontcolor="#c05020" '
                       f'label="move {k}: {m["interface"]}" fontsize=8];')
        elif "outage" in step:
            k += 1
            o = step["outage"]
            out.append(f'  "host_{o["host"]}" -- "net_{on[(o["host"], o["interface"])]}" [style=dotted penwidth=2 color="#a02020" '
                       f'fontcolor="#a02020" label="{k}: {o["interface"]} down {o["duration_s"]} s" fontsize=8];')
        elif "link" in step:
            k += 1
            c = step["link"]
            out.append(f'  "host_{c["host"]}" -- "net_{on[(c["host"], c["interface"])]}" [style=dotted penwidth=2 color="#a02020" '
                       f'fontcolor="#a02020" label="{k}: {c["interface"]} {"plugged in" if c["up"] else "pulled"}" fontsize=8];')
    out.append("}")
    return "\n".join(out) + "\n"


def topology_svg(doc: dict, path: str) -> bool:
    """The topology picture (topology_dot drawn by graphviz) at `path`; False without `dot`."""
    if not shutil.which("dot"):
        return False
    r = subprocess.run(["dot", "-Tsvg", "-o", path], input=topology_dot(doc), capture_output=True, text=True)
    return r.returncode == 0


def one_round(steps: list) -> list:
    """The timeline's steps with each "repeat" drawn once: its steps in place of it."""
    return [x for step in steps for x in (one_round(step.get("steps", [])) if "repeat" in step else [step])]


def timeline_svg(result: dict, path: str) -> bool:
    """Goodput (top) and probe round-trip time (bottom) against seconds since the start, with a
    vertical line at each link change and a tick at each registration, so a reader sees where
    an outage starts and which event ends it. False when matplotlib is missing or nothing was
    measured."""
    series = result.get("series") or {}
    if not series.get("streams") and not series.get("probes"):
        return False
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    fig, (top, bottom) = plt.subplots(2, 1, sharex=True, figsize=(10, 5.5), constrained_layout=True)
    for name, points in series.get("streams", {}).items():
        if points:
            top.step([p[0] for p in points], [p[1] for p in points], where="post", label=f"TCP {name} (byte-checked)")
    top.set_ylabel(f"goodput (Mbit/s per {series.get('bin_s', 0.5)} s)")
    for name, probe in series.get("probes", {}).items():
        rtt = probe.get("rtt_ms", [])
        if rtt:
            bottom.plot([p[0] for p in rtt], [p[1] for p in rtt], ".", markersize=3, label=f"probe {name} RTT")
        if probe.get("unanswered"):
            bottom.plot(probe["unanswered"], [0] * len(probe["unanswered"]), "x", color="#c03020", markersize=5,
                        label=f"probe {name}: no answer yet")
    bottom.set_ylabel("round trip (ms)")
    bottom.set_xlabel("seconds since the lab started")
    bottom.set_ylim(bottom=0)
    registered_labelled = False
    for e in result.get("events", []):
        t = e["t_ms"] / 1000
        if e["event"] == "link change":
            for ax in (top, bottom):
                ax.axvline(t, color="#c05020", linestyle="--", linewidth=0.8)
            top.annotate(e.get("move", ""), (t, 1), xycoords=("data", "axes fraction"), rotation=90, fontsize=7,
                         va="top", ha="right", color="#c05020")
        elif e["event"] == "link down":
            up = next((x["t_ms"] / 1000 for x in result["events"] if x["event"] == "link up" and x.get("move") == e.get("move")), t)
            for ax in (top, bottom):
                ax.axvspan(t, up, color="#c05020", alpha=0.15, linewidth=0)
            top.annotate(e.get("move", ""), (t, 1), xycoords=("data", "axes fraction"), rotation=90, fontsize=7,
                         va="top", ha="right", color="#a02020")
        elif e["event"] == "registered":
            for ax in (top, bottom):
                ax.axvline(t, color="#2a7a2a", linestyle=":", linewidth=0.8,
                           label=None if registered_labelled or ax is top else "registered / tunnel up")
            registered_labelled = True
    for ax in (top, bottom):
        ax.grid(True, alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(loc="upper left", fontsize=7)
    fig.suptitle(f"mipsec lab: {result.get('scenario', '')}", fontsize=10)
    fig.savefig(path, format="svg")
    plt.close(fig)
    return True


def write(report_dir: str, doc: dict, result: dict) -> list[str]:
    os.makedirs(report_dir, exist_ok=True)
    written = []
    path = os.path.join(report_dir, "report.json")
    with open(path, "w") as f:
        json.dump(result, f, indent=2)
    written.append(path)
    svg = None
    if shutil.which("dot"):
        with open(os.path.join(report_dir, "topology.dot"), "w") as f:
            f.write(topology_dot(doc))
        if topology_svg(doc, os.path.join(report_dir, "topology.svg")):
            svg = "topology.svg"
            written.append(os.path.join(report_dir, svg))
    timeline = None
    if timeline_svg(result, os.path.join(report_dir, "timeline.svg")):
        timeline = "timeline.svg"
        written.append(os.path.join(report_dir, timeline))
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
    md += ["## Moves", "", "Each time is measured from the link change (for a link outage, from the carrier coming back). "
           "Polled every 50 ms. The overhead per packet is measured on the probe's packets in the capture of the "
           "network the node went to when there is one (outer IP length minus the probe's own), else it is the "
           "node's own account of its active stack (`tun.stack_overhead` in `mipsec status`).", "",
           move_table(result["moves"]), ""]
    if timeline:
        md += ["## Timeline", "", "Goodput and probe round trips; dashed: link changes, shaded: link outages, "
               "dotted: registrations.", "", f"![timeline]({timeline})", ""]
    kept = result.get("kept") or []
    if kept:
        pcaps = [k for k in kept if k.endswith(".pcap")]
        md += ["## Captures", "", "Kept: " + ", ".join(f"`{k}`" for k in kept) + "."]
        if "esp_sa" in kept:
            md += ["", "`esp_sa` and `ikev1_decryption_table` are Wireshark's key tables for every SA the mipsec nodes "
                   "made (live keys of this run only): copy them into a Wireshark profile directory, or "
                   "decrypt with tshark:", "", "```",
                   "opts=(); while read -r l; do opts+=(-o \"uat:esp_sa:$l\"); done < esp_sa",
                   "while read -r l; do opts+=(-o \"uat:ikev1_decryption_table:$l\"); done < ikev1_decryption_table",
                   f"tshark -r {pcaps[0] if pcaps else 'capture.pcap'} -o esp.enable_encryption_decode:TRUE \"${{opts[@]}}\"",
                   "```"]
        md.append("")
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


# -- lab matrix: one row per layering order ----------------------------------------------------

def matrix_row(order: str, result: dict) -> dict:
    """What one order's run showed: pass/fail, its figures summed over the moves, and for a
    failure the first assertion that did not hold and the largest drop counters."""
    moves = result.get("moves", [])
    failed = [a for a in result.get("assertions", []) if not a["ok"]]
    firsts = [m["link_to_first_packet_ms"] for m in moves if m.get("link_to_first_packet_ms") is not None]
    drops = sorted(result.get("drops", {}).items(), key=lambda kv: -kv[1])[:3]
    # Carries traffic: some traffic ran, every probe got replies, every stream arrived intact,
    # and after every move a reply came back.
    traffic = result.get("traffic", {})
    carries = bool(traffic) and len(firsts) == len(moves) and all(
        (t.get("replies", 0) > 0) if "replies" in t else bool(t.get("intact")) for t in traffic.values())
    reason = ""
    if failed:
        a = failed[0]
        reason = a["name"] + (f" ({a['detail']})" if a.get("detail") else "")
    elif not carries:
        # An order the scenario expects to fail asserts what it observed instead.
        reason = "; ".join(a["name"] for a in result.get("assertions", []) if not a["name"].startswith("node "))
    return {
        "order": order, "passed": result.get("passed", False), "carries_traffic": carries, "moves": len(moves),
        "moves_with_reply": len(firsts), "worst_first_reply_ms": max(firsts) if firsts else None,
        "probe_lost": sum(m.get("probe_lost") or 0 for m in moves),
        "ike_messages": sum(m.get("ike_messages") or 0 for m in moves),
        "registrations": sum(m.get("registrations") or 0 for m in moves),
        "overhead_bytes": next((m.get("overhead_bytes") for m in reversed(moves) if m.get("overhead_bytes") is not None), None),
        "failed_assertions": len(failed), "reason": reason[:300],
        "drops": [f"{k} = {v}" for k, v in drops], "duration_s": result.get("duration_s"),
    }


MATRIX_COLUMNS = (("order", "order"), ("carries_traffic", "carries traffic"), ("passed", "as the scenario expects"), ("moves", "moves"), ("moves_with_reply", "moves with a reply"),
                  ("worst_first_reply_ms", "worst link → first reply (ms)"), ("probe_lost", "probes lost"),
                  ("ike_messages", "IKE messages"), ("registrations", "registrations"),
                  ("overhead_bytes", "overhead per packet, last move (bytes)"), ("reason", "what failed, or what was observed"),
                  ("drops", "largest drop counters"))


def matrix_table(param: str, rows: list) -> str:
    def shown(key, v):
        if key in ("passed", "carries_traffic"):
            return "yes" if v else "**no**"
        return (v or "–") if key == "reason" else v

    return markdown_table([title if key != "order" else param for key, title in MATRIX_COLUMNS],
                          [[shown(key, r.get(key)) for key, _ in MATRIX_COLUMNS] for r in rows])


def write_matrix(out_dir: str, doc: dict, param: str, rows: list) -> list[str]:
    os.makedirs(out_dir, exist_ok=True)
    path_json = os.path.join(out_dir, "matrix.json")
    with open(path_json, "w") as f:
        json.dump({"scenario": doc["scenario"], "parameter": param, "rows": rows}, f, indent=2)
    md = [f"# mipsec lab matrix: {doc['scenario']}", ""]
    if doc.get("summary"):
        md += [doc["summary"], ""]
    md += [f"One run per value of `{param}`; each run's own report is in the directory of that name.", "",
           matrix_table(param, rows), ""]
    path_md = os.path.join(out_dir, "matrix.md")
    with open(path_md, "w") as f:
        f.write("\n".join(md))
    return [path_json, path_md]

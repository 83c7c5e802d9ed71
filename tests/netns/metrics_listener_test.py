# SPDX-License-Identifier: MIT
"""End to end: a `mipsec run` IP-in-IP node with "metrics_listen" set is scraped over HTTP
(python urllib, inside the node's namespace) after a few pings; every figure of the scrape
matches `mipsec status --json` and the text equals `mipsec status --format prometheus` apart
from the uptime and the listener's own counters; malformed, slow and over-long requests are
answered or cut off and counted while the tunnel keeps working; a port in use and a bad
"metrics_listen" refuse to start."""
import argparse
import json
import os
import re
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "tools"))
from netns_lab import Checks, Lab, node_status, require_root  # noqa: E402

METRICS = "127.0.0.1:9101"

SCRAPE = r"""
import json, sys, urllib.error, urllib.request
req = urllib.request.Request(sys.argv[1], method=sys.argv[2])
try:
    with urllib.request.urlopen(req, timeout=10) as r:
        out = {"code": r.status, "headers": dict(r.headers), "body": r.read().decode()}
except urllib.error.HTTPError as e:
    out = {"code": e.code, "headers": dict(e.headers), "body": e.read().decode()}
print(json.dumps(out))
"""

# Sends raw bytes, optionally one at a time with a pause, and reports what came back and when.
RAW = r"""
import json, socket, sys, time
host, port = sys.argv[1].split(":"); data = bytes.fromhex(sys.argv[2]); pause = float(sys.argv[3])
s = socket.create_connection((host, int(port)), timeout=30); t = time.monotonic(); sent = 0
try:
    if pause == 0:
        s.sendall(data); sent = len(data)
    else:
        for i in range(len(data)):
            s.sendall(data[i:i + 1]); sent += 1; time.sleep(pause)
except OSError:
    pass
reply = b""
try:
    while True:
        b = s.recv(4096)
        if not b: break
        reply += b
except OSError:
    pass
print(json.dumps({"reply": reply.decode("latin-1"), "sent": sent, "seconds": time.monotonic() - t}))
"""

SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$')
LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def samples(text):
    """{(name, frozenset(labels)): value} of an exposition text."""
    out = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = SAMPLE.match(line)
        if not m:
            raise ValueError(f"not a sample line: {line!r}")
        labels = frozenset(LABEL.findall(m.group(2) or ""))
        out[(m.group(1), labels)] = float(m.group(3))
    return out


def value(table, name, **labels):
    return table.get((name, frozenset((k, str(v)) for k, v in labels.items())))


def node_config(lab, name, tun_addr, route, local, remote, metrics=None, tun="mip0"):
    cfg = {
        "name": name,
        "control_socket": f"{lab.dir}/{name}.sock",
        "log_level": "info",
        "tun": {"name": tun, "address": tun_addr, "routes": [route]},
        "transport": {"local": local, "raw_protocols": [4]},
        "pipeline": [{"type": "mip.ipip", "local": local, "remote": remote}],
    }
    if metrics is not None:
        cfg["metrics_listen"] = metrics
    path = f"{lab.dir}/{name}.json"
    with open(path, "w") as f:
        json.dump(cfg, f, indent=2)
    return path


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--mipsec", required=True)
    args = ap.parse_args()
    require_root("the metrics listener namespace test")
    checks = Checks()
    with Lab("metrics") as lab:
        a, b = lab.host("a"), lab.host("b")
        lab.link(a, "192.0.2.1/24", b, "192.0.2.2/24")
        # No IPv6 chatter (router solicitations, MLD) into the TUN device between the scrape
        # and the status call that the test compares it with.
        for host in (a, b):
            host.sysctl("net.ipv6.conf.all.disable_ipv6", "1")
            host.sysctl("net.ipv6.conf.default.disable_ipv6", "1")
        cfg_a = node_config(lab, "a", "10.10.1.1/24", "10.10.2.0/24", "192.0.2.1", "192.0.2.2", metrics=METRICS)
        cfg_b = node_config(lab, "b", "10.10.2.1/24", "10.10.1.0/24", "192.0.2.2", "192.0.2.1")
        sock_a = f"{lab.dir}/a.sock"

        def scrape(path="/metrics", method="GET"):
            r = a.run(["/usr/bin/python3", "-c", SCRAPE, f"http://{METRICS}{path}", method], check=False)
            return json.loads(r.stdout) if r.returncode == 0 else {"code": None, "error": r.stderr}

        def raw(data: bytes, pause=0.0):
            r = a.run(["/usr/bin/python3", "-c", RAW, METRICS, data.hex(), str(pause)], check=False, timeout=90)
            return json.loads(r.stdout) if r.returncode == 0 else {"reply": "", "error": r.stderr}

        def full_status():
            r = a.run([args.mipsec, "status", "--socket", sock_a, "--json"], check=False)
            return json.loads(r.stdout) if r.returncode == 0 else None

        r = a.run([args.mipsec, "check", cfg_a], check=False)
        checks.check("mipsec check accepts metrics_listen", r.returncode == 0, r.stderr)
        pa = a.spawn([args.mipsec, "run", cfg_a], log_name="mipsec-a")
        pb = b.spawn([args.mipsec, "run", cfg_b], log_name="mipsec-b")
        lab.wait_for(lambda: node_status(a, args.mipsec, sock_a) and node_status(b, args.mipsec, f"{lab.dir}/b.sock"),
                     what="both instances to answer status")

        r = a.run(["ping", "-c", "5", "-i", "0.2", "-W", "2", "-I", "10.10.1.1", "10.10.2.1"], check=False)
        checks.check("ping a -> b through the tunnel: 5 of 5 replies", " 0% packet loss" in r.stdout, r.stdout[-300:])
        time.sleep(0.3)  # let the last reply's counters settle; the tunnel is idle after this

        got = scrape()
        checks.check("GET /metrics: 200 with the exposition media type",
                     got["code"] == 200 and got["headers"].get("Content-Type", "").startswith("text/plain; version=0.0.4"),
                     json.dumps({k: got.get(k) for k in ("code", "headers", "error")}))
        body = got.get("body", "")
        status = full_status()
        prom = a.run([args.mipsec, "status", "--socket", sock_a, "--format", "prometheus"], check=False).stdout

        try:
            from prometheus_client.parser import text_string_to_metric_families  # type: ignore
            families = list(text_string_to_metric_families(body))
            checks.check("the Prometheus project's parser reads the scrape", len(families) > 10, str(len(families)))
        except ImportError:
            print("     (python3-prometheus-client not installed: format checked by this test's own parser only)")
        table = samples(body)
        node = status["nodes"][0]
        stage = node["pipeline"][0]
        labels = {"node": "a", "stage": 0, "type": "mip.ipip"}
        checks.check("the ipip stage carried the pings", stage["encapsulated"] >= 5 and stage["decapsulated"] >= 5, json.dumps(stage))
        for field, metric in (("encapsulated", "mipsec_stage_encapsulated_packets_total"),
                              ("decapsulated", "mipsec_stage_decapsulated_packets_total"),
                              ("dropped", "mipsec_stage_dropped_packets_total"),
                              ("consumed", "mipsec_stage_consumed_packets_total")):
            checks.check(f"scrape {metric} equals status {field}", value(table, metric, **labels) == stage[field],
                         f"{value(table, metric, **labels)} vs {stage[field]}")
        tun = node["tun"]
        for field in ("rx_packets", "tx_packets", "rx_errors", "tx_errors"):
            metric = f"mipsec_tun_{field}_total"
            checks.check(f"scrape {metric} equals status tun.{field}", value(table, metric, node="a", device="mip0") == tun[field],
                         f"{value(table, metric, node='a', device='mip0')} vs {tun[field]}")
        sock = node["transport"]["sockets"][0]
        for field in ("rx_packets", "tx_packets"):
            metric = f"mipsec_socket_{field}_total"
            checks.check(f"scrape {metric} equals status raw socket {field}", value(table, metric, node="a", socket="raw/4") == sock[field],
                         f"{value(table, metric, node='a', socket='raw/4')} vs {sock[field]}")
        checks.check("scrape pool buffers equals status", value(table, "mipsec_pool_buffers", node="a") == node["pool"]["buffers"])

        # Everything but the clock and the listener's own counters is the same text.
        def steady(text):
            return [line for line in text.splitlines() if "uptime" not in line and "mipsec_metrics_" not in line]
        checks.check("the scrape equals `mipsec status --format prometheus` (uptime and listener counters aside)",
                     steady(body) == steady(prom) and len(steady(body)) > 20, "\n".join(set(steady(body)) ^ set(steady(prom))))
        listener = status.get("metrics_listener", {})
        checks.check("status --json has the listener: one 200 so far", listener.get("requests", {}).get("200") == 1
                     and listener.get("listen") == METRICS, json.dumps(listener))
        checks.check("status --format prometheus counts that scrape",
                     value(samples(prom), "mipsec_metrics_requests_total", code=200) == 1, prom[-600:])

        head = scrape(method="HEAD")
        checks.check("HEAD /metrics: 200 and no body", head["code"] == 200 and head.get("body") == "", json.dumps(head)[:300])
        checks.check("GET / : 404", scrape("/")["code"] == 404)
        checks.check("POST /metrics: 405", scrape(method="POST")["code"] == 405)
        garbage = raw(b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03" + os.urandom(64) + b"\r\n\r\n")
        checks.check("garbage (a TLS hello): 400", garbage.get("reply", "").startswith("HTTP/1.1 400"), json.dumps(garbage)[:300])
        big = raw(b"GET /metrics HTTP/1.1\r\nX-Pad: " + b"a" * 20000 + b"\r\n\r\n")
        checks.check("a 20 kB header: 431", big.get("reply", "").startswith("HTTP/1.1 431"), json.dumps(big)[:300])
        slow = raw(b"GET /metrics HTTP/1.1\r\nHost: x\r\n" + b"X" * 40 + b"\r\n\r\n", pause=0.5)
        checks.check("a client sending a byte every 0.5 s is cut off within a few seconds, unanswered",
                     slow.get("reply") == "" and slow.get("seconds", 99) < 9 and slow.get("sent", 99) < 30, json.dumps(slow)[:300])

        r = a.run(["ping", "-c", "3", "-i", "0.2", "-W", "2", "-I", "10.10.1.1", "10.10.2.1"], check=False)
        checks.check("the tunnel still works after all that", " 0% packet loss" in r.stdout, r.stdout[-300:])
        listener = full_status().get("metrics_listener", {})
        req = listener.get("requests", {})
        checks.check("every bad request is counted by code",
                     req.get("200") == 2 and req.get("404") == 1 and req.get("405") == 1 and req.get("400") == 1 and req.get("431") == 1,
                     json.dumps(listener))
        checks.check("the slow client is counted as timed out", listener.get("connections_timed_out") == 1, json.dumps(listener))
        text = a.run([args.mipsec, "status", "--socket", sock_a]).stdout
        checks.check("text status shows the listener's counters",
                     f"metrics listener http://{METRICS}/metrics: requests 200=2 400=1 404=1 405=1 431=1 500=0;" in text
                     and "timed out 1" in text, text[-400:])

        # Refused starts: the port is in use (by a), and a bad value.
        cfg_c = node_config(lab, "c", "10.10.3.1/24", "10.10.4.0/24", "192.0.2.1", "192.0.2.9", metrics=METRICS, tun="mip9")
        r = a.run([args.mipsec, "run", cfg_c], check=False)
        checks.check("metrics port in use: exit 1 naming the address", r.returncode == 1 and f"metrics_listen {METRICS}" in r.stderr
                     and "in use" in r.stderr, r.stderr)
        checks.check("... and its TUN device is gone", a.run(["ip", "link", "show", "mip9"], check=False).returncode != 0)
        checks.check("... and a still answers scrapes", scrape()["code"] == 200)
        bad = json.load(open(cfg_c))
        bad["metrics_listen"] = "127.0.0.1:99999"
        with open(f"{lab.dir}/bad.json", "w") as f:
            json.dump(bad, f)
        r = a.run([args.mipsec, "check", f"{lab.dir}/bad.json"], check=False)
        checks.check("a bad port: exit 2 with the JSON pointer", r.returncode == 2 and "/metrics_listen" in r.stderr, r.stderr)

        code = lab.stop(pa)
        checks.check("SIGTERM: mipsec exits 0", code == 0, f"exit {code}")
        checks.check("after exit nothing listens on the metrics port", scrape()["code"] is None)
        lab.stop(pb)
        if checks.failed:
            lab.dump_logs()
    return checks.finish()


if __name__ == "__main__":
    sys.exit(main())

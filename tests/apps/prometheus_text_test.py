#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Parses `mipsec status --format prometheus` output with the Prometheus project's own Python
parser (prometheus_client.parser) and checks the figures against the status JSON it came from.
Usage: prometheus_text_test.py <prometheus_text_dump> <status.json>. Exit 77 (skipped) when
python3-prometheus-client is not installed (tools/install-deps.sh installs it)."""
import json
import subprocess
import sys

try:
    from prometheus_client.parser import text_string_to_metric_families
except ImportError:
    print("python3-prometheus-client is not installed: skipped")
    sys.exit(77)

dump, sample_path = sys.argv[1], sys.argv[2]
with open(sample_path) as f:
    status = json.load(f)
text = subprocess.run([dump], input=json.dumps(status), capture_output=True, text=True, check=True).stdout

failures = []


def check(what, ok, detail=""):
    print(("ok   " if ok else "FAIL ") + what + ("" if ok else f": {detail}"))
    if not ok:
        failures.append(what)


families = {f.name: f for f in text_string_to_metric_families(text)}
samples = {}
for fam in families.values():
    for s in fam.samples:
        samples.setdefault(s.name, []).append(s)


def value(name, **labels):
    found = [s.value for s in samples.get(name, []) if all(s.labels.get(k) == v for k, v in labels.items())]
    return found[0] if len(found) == 1 else None


node = status["nodes"][0]
check("every family has a type the parser accepts", all(f.type in ("counter", "gauge") for f in families.values()),
      [(f.name, f.type) for f in families.values()])
check("every name starts with mipsec_", all(n.startswith("mipsec_") for n in samples), list(samples))
check("counters end in _total", all(s.name.endswith("_total") for f in families.values() if f.type == "counter" for s in f.samples))
check("gauges do not end in _total", all(not s.name.endswith("_total") for f in families.values() if f.type == "gauge" for s in f.samples))
check("every family has help text", all(f.documentation for f in families.values()))
check("uptime", value("mipsec_node_uptime_seconds", node="gw") == node["uptime_s"])
check("tun rx", value("mipsec_tun_rx_packets_total", node="gw", device="vpn0") == node["tun"]["rx_packets"])
check("tun failures by reason", value("mipsec_tun_tx_failures_total", reason="no_buffer_space") == 2)
sock = node["transport"]["sockets"][1]
check("socket rx", value("mipsec_socket_rx_packets_total", socket="udp/4500") == sock["rx_packets"])
check("socket overflows", value("mipsec_socket_rx_overflows_total", socket="udp/4500") == sock["rx_overflows"])
check("socket receive buffer", value("mipsec_socket_receive_buffer_bytes", socket="udp/4500") == sock["receive_buffer"])
check("GSO in use is a gauge of 1", value("mipsec_socket_gso_enabled", socket="udp/4500") == 1)
check("GSO segments", value("mipsec_socket_gso_segments_total", socket="udp/4500") == sock["gso_segments"])
check("GSO fallbacks", value("mipsec_socket_gso_fallbacks_total", socket="udp/4500") == sock["gso_fallbacks"])
check("GRO off is a gauge of 0", value("mipsec_socket_gro_enabled", socket="udp/4500") == 0)
check("socket failures", value("mipsec_socket_tx_failures_total", socket="udp/4500", reason="message_too_long") == 3)
check("path MTU", value("mipsec_path_mtu_bytes", destination="198.51.100.7") == 1280)
gw = node["pipeline"][0]
check("stage counters", value("mipsec_stage_decapsulated_packets_total", stage="0", type="ipsec.vpn_gateway") == gw["decapsulated"])
for reason, count in gw["drops"].items():
    check(f"drop reason {reason}", value("mipsec_stage_drops_total", stage="0", reason=reason) == count)
child = gw["state"]["clients"][0]["child_sas"][0]
check("CHILD_SA bytes by SPI and peer",
      value("mipsec_ipsec_vpn_gateway_clients_child_sas_in_bytes_total", spi_in="0xcafebabe", remote="198.51.100.7:4500") == child["bytes_in"])
check("CHILD_SA expiry in seconds", value("mipsec_ipsec_vpn_gateway_clients_child_sas_expires_in_seconds", spi_out="0x12345678") == 3500)
check("clients is a gauge without _total", value("mipsec_ipsec_vpn_gateway_clients", stage="0") == 1)
check("IKE counters of a client", value("mipsec_ipsec_vpn_gateway_clients_dpd_sent_total", session="7") == 3)
check("home agent binding lifetime", value("mipsec_mip_home_agent_bindings_lifetime_left_seconds", home_address="10.1.0.5") == 1700)
check("home agent registration counters", value("mipsec_mip_home_agent_requests_total", stage="1") == 4)
failure = status["nodes"][0]["pipeline"][2]["state"]["last_failure"]
check("label values round-trip through escaping",
      value("mipsec_ipsec_vpn_client_info", last_failure=failure) == 1, [s.labels for s in samples.get("mipsec_ipsec_vpn_client_info", [])])

sys.exit(1 if failures else 0)

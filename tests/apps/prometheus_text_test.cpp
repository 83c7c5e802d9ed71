// SPDX-License-Identifier: MIT
#include <doctest/doctest.h>

#include <map>
#include <regex>
#include <set>
#include <sstream>
#include <string>

#include "apps/shell/prometheus_text.hpp"

using namespace mipsec;

namespace {

// The text format's grammar, line by line: HELP and TYPE before a family's samples, samples of
// one family together, names and label names well formed, label values escaped, values numbers.
// Returns "" or the first problem.
std::string validate_exposition(const std::string& text) {
    static const std::regex help(R"(# HELP ([a-zA-Z_:][a-zA-Z0-9_:]*) .*)");
    static const std::regex type(R"(# TYPE ([a-zA-Z_:][a-zA-Z0-9_:]*) (counter|gauge))");
    static const std::regex sample(R"(([a-zA-Z_:][a-zA-Z0-9_:]*)(\{([a-zA-Z_][a-zA-Z0-9_]*="([^"\\\n]|\\[\\"n])*",?)*\})? (-?[0-9]+(\.[0-9]+)?(e[+-]?[0-9]+)?))");
    std::set<std::string> finished;
    std::string current, current_type;
    std::istringstream in(text);
    std::string line;
    int n = 0;
    while (std::getline(in, line)) {
        ++n;
        std::smatch m;
        const auto where = "line " + std::to_string(n) + " \"" + line + "\": ";
        if (std::regex_match(line, m, help)) {
            if (finished.contains(m[1])) return where + "family repeated";
            if (!current.empty()) finished.insert(current);
            current = m[1];
            current_type.clear();
        } else if (std::regex_match(line, m, type)) {
            if (m[1] != current) return where + "TYPE without its HELP";
            current_type = m[2];
        } else if (std::regex_match(line, m, sample)) {
            if (m[1] != current || current_type.empty()) return where + "sample outside its family";
            if (current_type == "counter" && !current.ends_with("_total")) return where + "counter without _total";
            if (current_type == "gauge" && current.ends_with("_total")) return where + "gauge ending in _total";
        } else {
            return where + "not a HELP, TYPE or sample line";
        }
    }
    if (!text.empty() && text.back() != '\n') return "no final line feed";
    return "";
}

const nlohmann::json status = nlohmann::json::parse(R"({"nodes": [{
  "name": "a", "uptime_s": 12,
  "tun": {"name": "mip0", "mtu": 1400, "rx_packets": 5, "tx_packets": 6, "rx_errors": 0, "tx_errors": 1, "tx_failures": {"no_buffer_space": 1},
          "offload": {"granted": ["csum", "tso4"], "rx_super_packets": 3, "rx_segments": 40, "tx_super_packets": 2, "tx_coalesced": 9,
                      "drops": {"gso_size_invalid": 1}},
          "active_mtu": 1403, "stack_overhead": 97,
          "too_big": {"dropped": 4, "icmp_frag_needed_sent": 3, "icmp_rate_limited": 1, "not_answerable": 0, "sent_for_fragmentation": 2}},
  "transport": {"local": "10.0.0.2", "sockets": [{"raw_protocol": 50, "rx_packets": 7, "tx_packets": 8, "rx_errors": 0, "tx_errors": 0, "tx_failures": {}}],
                "unroutable": 0, "inbound_unclaimed": 1, "outbound_unclaimed": 2, "path_mtu": []},
  "pool": {"buffers": 64, "available": 60, "exhausted": 0, "backpressure_pauses": 0},
  "workers": [{"thread": "main", "runs": 10, "batches": 9, "packets": 40, "backpressure_pauses": 0, "pool": {"buffers": 64, "available": 60, "exhausted": 0}},
              {"thread": "inbound", "runs": 7, "batches": 6, "packets": 30, "backpressure_pauses": 1, "pool": {"buffers": 64, "available": 63, "exhausted": 2}}],
  "pipeline": [{"type": "ipsec.esp_tunnel", "encapsulated": 8, "decapsulated": 7, "not_mine": 0, "consumed": 0, "control_sent": 0,
                "dropped": 3, "drops": {"auth_failed": 3},
                "state": {"local": "10.0.0.2", "remote": "10.0.0.1", "dummies_sent": 0,
                          "outbound": {"spi": "0x00002002", "suite": "aes128gcm16", "esn": false, "sequence": 8, "state": "live",
                                       "packets": 8, "bytes": 960, "drops": 0, "auth_failures": 0, "replay_drops": 0},
                          "inbound": [{"spi": "0x00001001", "suite": "aes128gcm16", "esn": false, "sequence": 7, "state": "live",
                                       "packets": 7, "bytes": 840, "drops": 3, "auth_failures": 3, "replay_drops": 0}]}}]
}]})");

}  // namespace

TEST_CASE("node, device, socket, pool and stage figures get conventional names and labels") {
    const auto text = shell::prometheus_text(status);
    CAPTURE(text);
    CHECK(validate_exposition(text) == "");
    for (std::string line : {
             "mipsec_node_uptime_seconds{node=\"a\"} 12",
             "mipsec_tun_mtu_bytes{node=\"a\",device=\"mip0\"} 1400",
             "mipsec_tun_tx_failures_total{node=\"a\",device=\"mip0\",reason=\"no_buffer_space\"} 1",
             "mipsec_tun_offload_rx_super_packets_total{node=\"a\",device=\"mip0\"} 3",
             "mipsec_tun_offload_rx_segments_total{node=\"a\",device=\"mip0\"} 40",
             "mipsec_tun_offload_tx_super_packets_total{node=\"a\",device=\"mip0\"} 2",
             "mipsec_tun_offload_tx_coalesced_packets_total{node=\"a\",device=\"mip0\"} 9",
             "mipsec_tun_offload_drops_total{node=\"a\",device=\"mip0\",reason=\"gso_size_invalid\"} 1",
             "mipsec_tun_active_mtu_bytes{node=\"a\",device=\"mip0\"} 1403",
             "mipsec_tun_stack_overhead_bytes{node=\"a\",device=\"mip0\"} 97",
             "mipsec_tun_too_big_dropped_total{node=\"a\",device=\"mip0\"} 4",
             "mipsec_tun_too_big_icmp_sent_total{node=\"a\",device=\"mip0\"} 3",
             "mipsec_tun_too_big_icmp_rate_limited_total{node=\"a\",device=\"mip0\"} 1",
             "mipsec_tun_too_big_sent_for_fragmentation_total{node=\"a\",device=\"mip0\"} 2",
             "mipsec_socket_tx_packets_total{node=\"a\",socket=\"raw/50\"} 8",
             "mipsec_transport_outbound_unclaimed_packets_total{node=\"a\"} 2",
             "mipsec_pool_buffers_available{node=\"a\"} 60",
             "mipsec_worker_packets_total{node=\"a\",thread=\"inbound\"} 30",
             "mipsec_worker_backpressure_pauses_total{node=\"a\",thread=\"inbound\"} 1",
             "mipsec_worker_pool_exhausted_total{node=\"a\",thread=\"inbound\"} 2",
             "mipsec_worker_batches_total{node=\"a\",thread=\"main\"} 9",
             "mipsec_stage_dropped_packets_total{node=\"a\",stage=\"0\",type=\"ipsec.esp_tunnel\"} 3",
             "mipsec_stage_drops_total{node=\"a\",stage=\"0\",type=\"ipsec.esp_tunnel\",reason=\"auth_failed\"} 3",
             // A stage's state: element strings become labels (the SPI), counts become counters with units.
             "mipsec_ipsec_esp_tunnel_inbound_bytes_total{node=\"a\",stage=\"0\",type=\"ipsec.esp_tunnel\",spi=\"0x00001001\",state=\"live\",suite=\"aes128gcm16\"} 840",
             "mipsec_ipsec_esp_tunnel_inbound_auth_failures_total{node=\"a\",stage=\"0\",type=\"ipsec.esp_tunnel\",spi=\"0x00001001\",state=\"live\",suite=\"aes128gcm16\"} 3",
             "mipsec_ipsec_esp_tunnel_outbound_sequence{node=\"a\",stage=\"0\",type=\"ipsec.esp_tunnel\",spi=\"0x00002002\",state=\"live\",suite=\"aes128gcm16\"} 8",
             "mipsec_ipsec_esp_tunnel_info{node=\"a\",stage=\"0\",type=\"ipsec.esp_tunnel\",local=\"10.0.0.2\",remote=\"10.0.0.1\"} 1",
         }) {
        CAPTURE(line);
        CHECK(text.find(line + "\n") != std::string::npos);
    }
    CHECK(text.find("# TYPE mipsec_stage_drops_total counter\n") != std::string::npos);
    CHECK(text.find("# TYPE mipsec_pool_buffers_available gauge\n") != std::string::npos);
}

TEST_CASE("two nodes share one family block per metric") {
    auto two = status;
    two["nodes"].push_back(status["nodes"][0]);
    two["nodes"][1]["name"] = "b";
    const auto text = shell::prometheus_text(two);
    CHECK(validate_exposition(text) == "");
    CHECK(text.find("mipsec_node_uptime_seconds{node=\"b\"} 12\n") != std::string::npos);
}

TEST_CASE("label values are escaped and odd shapes are skipped, not thrown on") {
    CHECK(shell::prometheus_label_escape("a\\b\"c\nd") == "a\\\\b\\\"c\\nd");
    auto odd = status;
    odd["nodes"][0]["name"] = "we\"ird\nname";
    odd["nodes"][0]["pool"] = "not an object";
    odd["nodes"][0]["pipeline"][0]["drops"] = nlohmann::json::array({1, 2});
    odd["nodes"][0]["pipeline"][0]["state"]["outbound"]["packets"] = "many";
    std::string text;
    CHECK_NOTHROW(text = shell::prometheus_text(odd));
    CHECK(validate_exposition(text) == "");
    CHECK(text.find("mipsec_node_uptime_seconds{node=\"we\\\"ird\\nname\"} 12\n") != std::string::npos);
    CHECK(text.find("mipsec_pool_") == std::string::npos);
    CHECK(shell::prometheus_text(nlohmann::json::object()).empty());
    CHECK(shell::prometheus_text(nlohmann::json::array()).empty());
}

TEST_CASE("the validator rejects what a scraper would") {
    CHECK(validate_exposition("# HELP x_total h\n# TYPE x_total counter\nx_total 1\n") == "");
    CHECK(validate_exposition("# HELP x h\n# TYPE x counter\nx 1\n") != "");
    CHECK(validate_exposition("# HELP x h\n# TYPE x gauge\nx{a=\"b\"c\"} 1\n") != "");
    CHECK(validate_exposition("# HELP x h\n# TYPE x gauge\nx 1\n# HELP y h\n# TYPE y gauge\ny 1\nx 2\n") != "");
}

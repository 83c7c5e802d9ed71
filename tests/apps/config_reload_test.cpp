// SPDX-License-Identifier: MIT
// The reload diff: which differences between the running configuration and the file apply
// live (a stage type's live keys) and which are refused, each named by its JSON pointer.
#include <doctest/doctest.h>

#include <algorithm>
#include <string>
#include <vector>

#include "apps/shell/config_reload.hpp"
#include "apps/shell/node_config.hpp"

using namespace mipsec;

namespace {

const char* const key_hex = "00112233445566778899aabbccddeeff";

nlohmann::json ha_node() {
    return {{"name", "ha"},
            {"tun", {{"name", "ha0"}, {"mtu", 1400}}},
            {"transport", {{"local", "192.0.2.1"}, {"udp_ports", {434}}, {"raw_protocols", {4}}}},
            {"pipeline",
             {{{"type", "mip.home_agent"},
               {"address", "10.1.0.1"},
               {"home_network", "10.1.0.0/24"},
               {"mobile_nodes", {{{"home_address", "10.1.0.5"}, {"spi", 256}, {"key", key_hex}}}}}}}};
}

nlohmann::json gateway_node() {
    return {{"name", "gw"},
            {"tun", {{"name", "gw0"}}},
            {"transport", {{"local", "192.0.2.2"}, {"udp_ports", {500, 4500}}, {"raw_protocols", {50}}}},
            {"pipeline",
             {{{"type", "ipsec.vpn_gateway"},
               {"local", "192.0.2.2"},
               {"psk", "a-long-enough-psk"},
               {"pool", "10.99.100.0/24"},
               {"local_ts", {"10.99.1.0/24"}}}}}};
}

shell::NodeConfig parse(const nlohmann::json& node) { return shell::parse_run_config(node).nodes.at(0); }

bool has(const std::vector<std::string>& lines, const std::string& line) {
    return std::find(lines.begin(), lines.end(), line) != lines.end();
}

}  // namespace

TEST_CASE("reload diff: the same file, or defaults written out, is no change") {
    CHECK(shell::diff_node_config(parse(ha_node()), parse(ha_node())).none());
    auto explicit_defaults = ha_node();
    explicit_defaults["pool"] = {{"buffers", 4096}, {"batch", 32}};
    explicit_defaults["transport"]["link_mtu"] = 1500;
    CHECK(shell::diff_node_config(parse(ha_node()), parse(explicit_defaults)).none());
}

TEST_CASE("reload diff: live keys of an unchanged stage apply; each key named once") {
    auto next = ha_node();
    next["pipeline"][0]["mobile_nodes"].push_back({{"home_address", "10.1.0.7"}, {"spi", 257}, {"key", key_hex}});
    next["pipeline"][0]["mobile_nodes"][0]["spi"] = 300;
    next["pipeline"][0]["max_lifetime_s"] = 600;
    const auto changes = shell::diff_node_config(parse(ha_node()), parse(next));
    CHECK(changes.refused.empty());
    REQUIRE(changes.stages.size() == 1);
    CHECK(changes.stages[0].index == 0);
    CHECK(changes.stages[0].type == "mip.home_agent");
    std::string keys;
    for (const auto& k : changes.stages[0].keys) keys += k + " ";
    CHECK(keys == "max_lifetime_s mobile_nodes ");

    auto gw = gateway_node();
    gw["pipeline"][0]["psk"] = "another-long-psk";
    gw["pipeline"][0]["pool"] = "10.99.200.0/24";
    gw["pipeline"][0]["esp_proposals"] = {"aes256gcm16"};
    const auto gw_changes = shell::diff_node_config(parse(gateway_node()), parse(gw));
    CHECK(gw_changes.refused.empty());
    REQUIRE(gw_changes.stages.size() == 1);
    CHECK(gw_changes.stages[0].keys.size() == 3);
}

TEST_CASE("reload diff: what cannot change live is refused, each difference by its JSON pointer") {
    struct Row {
        const char* name;
        void (*edit)(nlohmann::json&);
        const char* reason;
    };
    const Row rows[] = {
        {"TUN MTU", [](nlohmann::json& n) { n["tun"]["mtu"] = 1300; }, "/tun/mtu changed: restart to apply"},
        {"TUN address added", [](nlohmann::json& n) { n["tun"]["address"] = "10.1.0.1/24"; }, "/tun/address added: restart to apply"},
        {"TUN offloads turned off", [](nlohmann::json& n) { n["tun"]["offload"] = false; }, "/tun/offload changed: restart to apply"},
        {"kill switch turned on", [](nlohmann::json& n) { n["tun"]["kill_switch"] = true; n["tun"]["routes"] = {"10.9.0.0/16"}; }, "/tun/kill_switch changed: restart to apply"},
        {"transport port", [](nlohmann::json& n) { n["transport"]["udp_ports"] = {435}; }, "/transport/udp_ports/0 changed: restart to apply"},
        {"transport port added", [](nlohmann::json& n) { n["transport"]["udp_ports"].push_back(435); },
         "/transport/udp_ports gained an entry: restart to apply"},
        {"buffers", [](nlohmann::json& n) { n["pool"] = {{"buffers", 8192}}; }, "/pool/buffers changed: restart to apply"},
        {"socket receive buffer", [](nlohmann::json& n) { n["transport"]["receive_buffer"] = 1 << 20; },
         "/transport/receive_buffer changed: restart to apply"},
        {"socket send buffer", [](nlohmann::json& n) { n["transport"]["send_buffer"] = 1 << 20; },
         "/transport/send_buffer changed: restart to apply"},
        {"UDP GSO off", [](nlohmann::json& n) { n["transport"]["udp_gso"] = false; }, "/transport/udp_gso changed: restart to apply"},
        {"node name", [](nlohmann::json& n) { n["name"] = "ha2"; }, "/name changed (node names cannot change): restart to apply"},
        {"HA address", [](nlohmann::json& n) { n["pipeline"][0]["address"] = "10.1.0.2"; }, "/pipeline/0/address changed: restart to apply"},
        {"HA UDP tunnelling (headroom)", [](nlohmann::json& n) { n["pipeline"][0]["udp_tunnelling"] = false; },
         "/pipeline/0/udp_tunnelling added: restart to apply"},
        {"stage added",
         [](nlohmann::json& n) { n["pipeline"].push_back({{"type", "mip.ipip"}, {"local", "192.0.2.1"}, {"remote", "192.0.2.9"}}); },
         "/pipeline: 1 stage(s) running, the file has 2: restart to apply"},
        {"stage type",
         [](nlohmann::json& n) { n["pipeline"][0] = {{"type", "mip.ipip"}, {"local", "192.0.2.1"}, {"remote", "192.0.2.9"}}; },
         "/pipeline/0/type changed (a different stage): restart to apply"},
    };
    for (const auto& row : rows) {
        const std::string name = row.name;
        CAPTURE(name);
        auto next = ha_node();
        row.edit(next);
        const auto changes = shell::diff_node_config(parse(ha_node()), parse(next));
        std::string refused;
        for (const auto& r : changes.refused) refused += r + "\n";
        CAPTURE(refused);
        CHECK(has(changes.refused, row.reason));
    }
    // A stage of another type is one difference, not one per setting.
    auto other_type = ha_node();
    other_type["pipeline"][0] = {{"type", "mip.ipip"}, {"local", "192.0.2.1"}, {"remote", "192.0.2.9"}};
    CHECK(shell::diff_node_config(parse(ha_node()), parse(other_type)).refused ==
          std::vector<std::string>{"/pipeline/0/type changed (a different stage): restart to apply"});
}

TEST_CASE("reload diff: pointers name the node inside \"nodes\"; refusals never quote a secret") {
    const nlohmann::json running = {{"nodes", {ha_node(), gateway_node()}}};
    auto next = running;
    next["nodes"][1]["pipeline"][0]["local"] = "192.0.2.3";
    next["nodes"][1]["transport"]["local"] = "192.0.2.3";
    const auto a = shell::parse_run_config(running);
    const auto b = shell::parse_run_config(next);
    CHECK(shell::diff_node_config(a.nodes[0], b.nodes[0]).none());
    const auto changes = shell::diff_node_config(a.nodes[1], b.nodes[1]);
    CHECK(has(changes.refused, "/nodes/1/pipeline/0/local changed: restart to apply"));
    CHECK(has(changes.refused, "/nodes/1/transport/local changed: restart to apply"));

    // A mobile node's key is not live (it is the node's own identity): refused, not quoted.
    const nlohmann::json mn = {{"name", "mn"},
                               {"tun", {{"name", "mn0"}}},
                               {"transport", {{"local", "0.0.0.0"}, {"udp_ports", {434}}}},
                               {"pipeline",
                                {{{"type", "mip.mobile_node"},
                                  {"home_address", "10.1.0.5"},
                                  {"home_agent", "10.1.0.1"},
                                  {"spi", 256},
                                  {"key", key_hex},
                                  {"care_of", "static"},
                                  {"care_of_address", "198.51.100.5"}}}}};
    auto rekeyed = mn;
    rekeyed["pipeline"][0]["key"] = "ffeeddccbbaa99887766554433221100";
    const auto mn_changes = shell::diff_node_config(parse(mn), parse(rekeyed));
    REQUIRE(mn_changes.refused.size() == 1);
    CHECK(mn_changes.refused[0] == "/pipeline/0/key changed: restart to apply");
    const shell::ReloadRefused refused(mn_changes.refused);
    CHECK(std::string(refused.what()).find("ffeedd") == std::string::npos);
    CHECK(std::string(refused.what()).find(key_hex) == std::string::npos);
}

TEST_CASE("reload diff: the node count, control socket, log level and metrics listener need a restart") {
    const auto one = shell::parse_run_config(ha_node());
    auto other = ha_node();
    other["control_socket"] = "/run/mipsec/other.sock";
    other["log_level"] = "debug";
    other["metrics_listen"] = "127.0.0.1:9101";
    const auto refused = shell::diff_run_config(one, shell::parse_run_config(other));
    CHECK(has(refused, "/control_socket changed: restart to apply"));
    CHECK(has(refused, "/metrics_listen changed: restart to apply"));
    CHECK(has(refused, "/log_level changed: restart to apply"));
    const nlohmann::json two_nodes = {{"nodes", {ha_node(), gateway_node()}}, {"control_socket", "/run/mipsec/ha.sock"}};
    const auto count = shell::diff_run_config(one, shell::parse_run_config(two_nodes));
    CHECK(has(count, "/nodes: 1 node(s) running, the file has 2: restart to apply"));
    CHECK(shell::diff_run_config(one, one).empty());
}

TEST_CASE("reload history: counts and the last outcome for status") {
    shell::ReloadHistory history;
    CHECK(history.status()["requested"] == 0);
    CHECK_FALSE(history.status().contains("last"));
    shell::ReloadOutcome applied{shell::ReloadOutcome::Result::Applied, {"ha: added MN 10.1.0.7"}};
    history.record(applied, std::chrono::system_clock::time_point{} + std::chrono::seconds(1700000000));
    shell::ReloadOutcome refused{shell::ReloadOutcome::Result::Refused, {"/tun/mtu changed: restart to apply"}};
    history.record(refused, std::chrono::system_clock::time_point{} + std::chrono::seconds(1700000100));
    const auto st = history.status();
    CHECK(st["requested"] == 2);
    CHECK(st["applied"] == 1);
    CHECK(st["refused"] == 1);
    CHECK(st["last"]["result"] == "refused");
    CHECK(st["last"]["message"] == "refused, running configuration kept: /tun/mtu changed: restart to apply");
    CHECK(st["last"]["unix_time"] == 1700000100);
}

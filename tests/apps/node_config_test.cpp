// SPDX-License-Identifier: MIT
// `mipsec check` / `run` refuse bad configs before touching the system; every message names
// the JSON pointer, what is wrong and what is expected.
#include <doctest/doctest.h>

#include <string>

#include "apps/shell/node_config.hpp"

using namespace mipsec;
using nlohmann::json;

namespace {
json good() {
    return json::parse(R"({
      "name": "a",
      "tun": {"name": "mip0", "address": "10.10.1.1/24", "routes": ["10.10.2.0/24"]},
      "transport": {"local": "192.0.2.1", "raw_protocols": [4], "udp_ports": [4500]},
      "pipeline": [
        {"type": "mip.ipip", "local": "192.0.2.1", "remote": "192.0.2.2"},
        {"type": "nat.udp_encap", "keepalive_s": 0}
      ]
    })");
}

std::string error_of(const json& j) {
    try {
        (void)shell::parse_run_config(j);
    } catch (const shell::ConfigError& e) {
        return e.what();
    }
    return "";
}
}  // namespace

TEST_CASE("a good config parses, with defaults filled in") {
    auto run = shell::parse_run_config(good());
    REQUIRE(run.nodes.size() == 1);
    CHECK(run.control_socket == "/run/mipsec/a.sock");
    CHECK(run.nodes[0].tun.routes.size() == 1);
    CHECK(run.nodes[0].transport.raw_protocols == std::vector<std::uint8_t>{4});
    CHECK(run.nodes[0].buffers == 4096);
}

TEST_CASE("bad configs are refused with pointer, problem and expectation") {
    struct Row {
        const char* name;
        void (*mutate)(json&);
        const char* expected_text;
    };
    const Row rows[] = {
        {"unknown stage", [](json& j) { j["pipeline"][1]["type"] = "ipsec.nosuch"; }, "/pipeline/1/type: unknown stage type \"ipsec.nosuch\"; expected one of"},
        {"missing stage field", [](json& j) { j["pipeline"][0].erase("remote"); }, "/pipeline/0/remote: is missing"},
        {"bad address", [](json& j) { j["pipeline"][0]["remote"] = "192.0.2.300"; }, "/pipeline/0/remote: \"192.0.2.300\" is not an IPv4 address"},
        {"misspelt key", [](json& j) { j["pipeline"][0]["remtoe"] = "192.0.2.2"; }, "/pipeline/0/remtoe: is not a known setting here"},
        {"ttl out of range", [](json& j) { j["pipeline"][0]["ttl"] = 0; }, "/pipeline/0/ttl: is 0, out of range; expected an integer from 1 to 255"},
        {"ttl wrong type", [](json& j) { j["pipeline"][0]["ttl"] = "64"; }, "/pipeline/0/ttl: is \"64\"; expected an integer"},
        {"empty pipeline", [](json& j) { j["pipeline"] = json::array(); }, "/pipeline: is empty"},
        {"pipeline not a list", [](json& j) { j["pipeline"] = json::object(); }, "/pipeline: is not an array"},
        {"tun name too long", [](json& j) { j["tun"]["name"] = "a-very-long-tun-name"; }, "/tun/name:"},
        {"bad route", [](json& j) { j["tun"]["routes"][0] = "10.10.2.0/40"; }, "/tun/routes/0:"},
        {"no sockets", [](json& j) { j["transport"].erase("raw_protocols"); j["transport"].erase("udp_ports"); }, "/transport: opens no socket"},
        {"unsupported raw protocol", [](json& j) { j["transport"]["raw_protocols"][0] = 6; }, "/transport/raw_protocols/0: is 6"},
        {"duplicate UDP port", [](json& j) { j["transport"]["udp_ports"] = {4500, 4500}; }, "/transport/udp_ports/1: port 4500 is listed twice"},
        {"impossible MTU", [](json& j) { j["tun"]["mtu"] = 1490; }, "/tun: MTU 1490 plus"},
        {"link MTU too small", [](json& j) { j["transport"]["link_mtu"] = 590; }, "/transport: link MTU 590"},
        {"equal tunnel endpoints", [](json& j) { j["pipeline"][0]["remote"] = "192.0.2.1"; }, "/pipeline/0/remote: equals local"},
        {"bad log level", [](json& j) { j["log_level"] = "loud"; }, "/log_level: \"loud\" is not known"},
        {"unknown top-level key", [](json& j) { j["piepline"] = 1; }, "/piepline: is not a known setting here"},
        {"stage entry not an object", [](json& j) { j["pipeline"][1] = "nat.udp_encap"; }, "/pipeline/1: is \"nat.udp_encap\"; expected an object"},
    };
    for (const auto& row : rows) {
        CAPTURE(row.name);
        auto j = good();
        row.mutate(j);
        auto message = error_of(j);
        CAPTURE(message);
        CHECK(message.find(row.expected_text) != std::string::npos);
    }
}

TEST_CASE("several nodes in one process need distinct names and TUN devices") {
    json multi;
    multi["nodes"] = json::array({good(), good()});
    multi["nodes"][1]["tun"]["name"] = "mip1";
    CHECK(error_of(multi).find("/nodes/1/name: node name \"a\" is used twice") != std::string::npos);
    multi["nodes"][1]["name"] = "b";
    CHECK(shell::parse_run_config(multi).nodes.size() == 2);
    multi["nodes"][1]["tun"]["name"] = "mip0";
    CHECK(error_of(multi).find("/nodes/1/tun/name: TUN device \"mip0\" is used by two nodes") != std::string::npos);
}

TEST_CASE("key hex is checked for length without echoing the key") {
    // Exercised through ConfigReader directly: stage keys use hex_bytes().
    json j = {{"key", "00112233445566778899aabbccddee"}};
    shell::ConfigReader r(j, "/sa");
    try {
        (void)r.hex_bytes("key", 16, 16);
        FAIL("accepted a 15-byte key");
    } catch (const shell::ConfigError& e) {
        std::string m = e.what();
        CHECK(m.find("/sa/key: holds 15 bytes; expected hex for exactly 16 bytes") != std::string::npos);
        CHECK(m.find("0011") == std::string::npos);
    }
}

TEST_CASE("a strongSwan-style ESP proposal with a DH group points at the pfs key") {
    auto vpn = good();
    vpn["transport"] = json::parse(R"({"local": "192.0.2.1", "udp_ports": [500, 4500]})");
    vpn["pipeline"] = json::array({json::parse(R"({"type": "ipsec.vpn_client", "local": "192.0.2.1",
        "gateway": "192.0.2.2", "psk": "correct horse battery", "esp_proposals": ["aes256gcm16"], "pfs": "modp2048"})")});
    CHECK(error_of(vpn).empty());

    vpn["pipeline"][0].erase("pfs");
    vpn["pipeline"][0]["esp_proposals"] = {"aes128-sha256", "aes256gcm16-modp2048"};
    auto message = error_of(vpn);
    CAPTURE(message);
    CHECK(message.find("/pipeline/0/esp_proposals/1: \"aes256gcm16-modp2048\" names a Diffie-Hellman group; "
                       "the PFS group goes in the \"pfs\" key; "
                       "expected \"esp_proposals\": [\"aes256gcm16\"], \"pfs\": \"modp2048\"") != std::string::npos);

    // A group we do not implement is named as such, and the fix offers one we do.
    vpn["pipeline"][0]["esp_proposals"] = {"aes128-sha1-modp3072"};
    message = error_of(vpn);
    CAPTURE(message);
    CHECK(message.find("\"aes128-sha1-modp3072\" names a Diffie-Hellman group; the PFS group goes in the \"pfs\" key "
                       "(modp3072 is not supported: modp1024 or modp2048); "
                       "expected \"esp_proposals\": [\"aes128-sha1\"], \"pfs\": \"modp2048\"") != std::string::npos);

    // Anything else unknown still lists what is supported, and where the group goes.
    vpn["pipeline"][0]["esp_proposals"] = {"3des-md5"};
    message = error_of(vpn);
    CAPTURE(message);
    CHECK(message.find("\"3des-md5\" is not a supported ESP proposal; expected aes128gcm16,") != std::string::npos);
    CHECK(message.find("the PFS group goes in the \"pfs\" key") != std::string::npos);
}

TEST_CASE("tap.impair settings are checked: probabilities in [0, 1], no unknown keys") {
    auto with_impair = [](json impair) {
        auto j = good();
        impair["type"] = "tap.impair";
        j["pipeline"].push_back(impair);
        return j;
    };
    CHECK(error_of(with_impair(json::parse(
              R"({"seed": 7, "outbound": {"loss": 0.2, "burst": {"p_good_bad": 0.05, "p_bad_good": 0.5, "loss_bad": 0.9},
                  "duplicate": 0.01, "reorder": 0.05, "delay_ms": 20, "jitter_ms": 10, "corrupt": 0.001, "queue": 256},
                  "inbound": {"loss": 1}})"))) == "");
    struct Row {
        const char* impair;
        const char* expected_text;
    };
    const Row rows[] = {
        {R"({"outbound": {"loss": 1.5}})", "/pipeline/2/outbound/loss: is 1.5, out of range; expected a probability from 0 to 1"},
        {R"({"inbound": {"duplicate": -0.1}})", "/pipeline/2/inbound/duplicate: is -0.1, out of range; expected a probability from 0 to 1"},
        {R"({"outbound": {"corrupt": "0.1"}})", "/pipeline/2/outbound/corrupt: is \"0.1\"; expected a probability from 0 to 1"},
        {R"({"outbound": {"lose": 0.1}})", "/pipeline/2/outbound/lose: is not a known setting here"},
        {R"({"outbund": {}})", "/pipeline/2/outbund: is not a known setting here"},
        {R"({"inbound": {"burst": {"p_good_bad": 0.1}}})", "/pipeline/2/inbound/burst/p_bad_good: is missing; expected a probability from 0 to 1"},
        {R"({"inbound": {"burst": {"p_good_bad": 0.1, "p_bad_good": 2}}})", "/pipeline/2/inbound/burst/p_bad_good: is 2, out of range"},
        {R"({"inbound": {"burst": {"p_good_bad": 0.1, "p_bad_good": 0.5, "loss_good": 0}}})", "/pipeline/2/inbound/burst/loss_good: is not a known setting here"},
        {R"({"outbound": {"queue": 0}})", "/pipeline/2/outbound/queue: is 0, out of range"},
        {R"({"outbound": {"delay_ms": -1}})", "/pipeline/2/outbound/delay_ms: is -1, out of range"},
        {R"({"seed": -3})", "/pipeline/2/seed: is -3, out of range"},
        {R"({"outbound": 0.2})", "/pipeline/2/outbound: is 0.2; expected an object"},
    };
    for (const auto& row : rows) {
        CAPTURE(row.impair);
        auto message = error_of(with_impair(json::parse(row.impair)));
        CAPTURE(message);
        CHECK(message.find(row.expected_text) != std::string::npos);
    }
}

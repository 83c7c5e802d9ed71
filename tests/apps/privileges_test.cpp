// SPDX-License-Identifier: MIT
// Least privilege: the "user"/"group" settings, the capabilities each role keeps, key material
// wiped once the stages hold it, and key logs that are private and only written on request.
// The privilege drop itself needs root and a process to spend: the lab scenario tools/lab/scenarios/privileges.json.
#include <doctest/doctest.h>

#include <linux/capability.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "apps/shell/key_log.hpp"
#include "apps/shell/node_config.hpp"
#include "apps/shell/privileges.hpp"
#include "apps/shell/stage_factory.hpp"
#include "crypto/random.hpp"
#include "crypto/secret_bytes.hpp"
#include "ipsec/ike/child_sa.hpp"
#include "ipsec/ike/session_config.hpp"
#include "mip/security_association.hpp"

using namespace mipsec;
using nlohmann::json;

namespace {

json node_with(json pipeline, json transport = json::parse(R"({"local": "192.0.2.1", "udp_ports": [434]})")) {
    json j = {{"name", "n"}, {"tun", {{"name", "t0"}}}, {"transport", std::move(transport)}, {"pipeline", std::move(pipeline)}};
    return j;
}

json home_agent(bool with_home_interface) {
    auto stage = json::parse(R"({"type": "mip.home_agent", "address": "192.0.2.1", "home_network": "10.1.0.0/24",
                                 "mobile_nodes": [{"home_address": "10.1.0.5", "spi": 256, "key": "000102030405060708090a0b0c0d0e0f"}]})");
    if (with_home_interface) stage["home_interface"] = "eth0";
    return node_with(json::array({stage}));
}

json vpn_gateway(const std::string& psk) {
    return node_with(json::array({{{"type", "ipsec.vpn_gateway"}, {"local", "192.0.2.1"}, {"psk", psk}, {"local_ts", {"10.99.1.0/24"}}}}),
                     json::parse(R"({"local": "192.0.2.1", "udp_ports": [500, 4500], "raw_protocols": [50]})"));
}

std::string error_of(const json& j) {
    try {
        (void)shell::parse_run_config(j);
    } catch (const shell::ConfigError& e) {
        return e.what();
    }
    return "";
}

std::vector<std::string> capability_names(const json& j) {
    std::vector<std::string> out;
    for (const auto& c : shell::runtime_capabilities(shell::parse_run_config(j))) out.push_back(c.name);
    return out;
}

}  // namespace

TEST_CASE("\"user\" and \"group\" are read at the top level, for one node or several") {
    auto single = home_agent(false);
    single["user"] = "mipsec";
    single["group"] = "mipsec-keys";
    auto run = shell::parse_run_config(single);
    CHECK(run.user == "mipsec");
    CHECK(run.group == "mipsec-keys");
    CHECK(run.user_pointer == "/user");

    json multi = {{"nodes", {home_agent(false)}}, {"user", "65534"}};
    run = shell::parse_run_config(multi);
    CHECK(run.user == "65534");
    CHECK(run.group.empty());

    CHECK(shell::parse_run_config(home_agent(false)).user.empty());  // absent: stays root
}

TEST_CASE("bad \"user\" and \"group\" values are refused with their pointer") {
    struct Row {
        const char* name;
        void (*mutate)(json&);
        const char* expected;
    };
    const Row rows[] = {
        {"root by name", [](json& j) { j["user"] = "root"; }, "/user: is root; expected an unprivileged account; leave it out to stay root"},
        {"root by number", [](json& j) { j["user"] = "0"; }, "/user: is root"},
        {"root group", [](json& j) { j["user"] = "nobody", j["group"] = "root"; }, "/group: is root"},
        {"empty", [](json& j) { j["user"] = ""; }, "/user: \"\" is not an account name"},
        {"colon", [](json& j) { j["user"] = "a:b"; }, "/user: \"a:b\" is not an account name"},
        {"leading dash", [](json& j) { j["user"] = "-x"; }, "/user: \"-x\" is not an account name"},
        {"not a string", [](json& j) { j["user"] = 65534; }, "/user: is 65534; expected a string"},
        {"group alone", [](json& j) { j["group"] = "nogroup"; }, "/group: is given without \"user\""},
        {"inside a node of several", [](json& j) { j = {{"nodes", {j}}}; j["nodes"][0]["user"] = "nobody"; }, "/nodes/0/user: is not a known setting here"},
    };
    for (const auto& row : rows) {
        CAPTURE(row.name);
        auto j = home_agent(false);
        row.mutate(j);
        CHECK(error_of(j).starts_with(row.expected));
    }
}

TEST_CASE("accounts are looked up by name or number; unknown ones and root are refused") {
    auto j = home_agent(false);
    CHECK_FALSE(shell::resolve_run_as(shell::parse_run_config(j)).has_value());

    j["user"] = "nobody";  // Debian's 65534, primary group nogroup
    auto as = shell::resolve_run_as(shell::parse_run_config(j));
    REQUIRE(as.has_value());
    CHECK(as->uid == 65534);
    CHECK(as->gid == 65534);
    CHECK(as->user == "nobody");
    CHECK(as->group == "nogroup");

    j["user"] = "4242";  // a number without a passwd entry is taken as it is
    as = shell::resolve_run_as(shell::parse_run_config(j));
    REQUIRE(as.has_value());
    CHECK(as->uid == 4242);
    CHECK(as->gid == 4242);

    j["user"] = "no-such-user-mipsec";
    std::string error;
    try {
        (void)shell::resolve_run_as(shell::parse_run_config(j));
    } catch (const shell::ConfigError& e) {
        error = e.what();
    }
    CHECK(error.starts_with("/user: no user \"no-such-user-mipsec\" on this host"));

    j["user"] = "nobody";
    j["group"] = "no-such-group-mipsec";
    error.clear();
    try {
        (void)shell::resolve_run_as(shell::parse_run_config(j));
    } catch (const shell::ConfigError& e) {
        error = e.what();
    }
    CHECK(error.starts_with("/group: no group \"no-such-group-mipsec\" on this host"));
}

TEST_CASE("capabilities kept per role: CAP_NET_ADMIN always, CAP_NET_RAW only for gratuitous ARP") {
    // Raw IP sockets need CAP_NET_RAW only to be created: a VPN gateway with ESP on a raw
    // socket keeps CAP_NET_ADMIN alone.
    CHECK(capability_names(vpn_gateway("correct horse battery")) == std::vector<std::string>{"cap_net_admin"});
    CHECK(capability_names(home_agent(false)) == std::vector<std::string>{"cap_net_admin"});
    // A home agent on its home link answers for away mobile nodes with a gratuitous ARP from a
    // fresh packet socket each time (RFC 5944 §4.6).
    CHECK(capability_names(home_agent(true)) == std::vector<std::string>{"cap_net_admin", "cap_net_raw"});
    auto mobile = node_with(json::array({json::parse(R"({"type": "mip.mobile_node", "home_address": "10.1.0.5", "home_agent": "192.0.2.1",
        "spi": 256, "key": "000102030405060708090a0b0c0d0e0f", "care_of": "interface", "interface": "eth0"})")}),
                            json::parse(R"({"local": "0.0.0.0", "udp_ports": [434]})"));
    const auto caps = shell::runtime_capabilities(shell::parse_run_config(mobile));
    REQUIRE(caps.size() == 2);
    CHECK(caps[0].number == CAP_NET_ADMIN);
    CHECK(caps[1].number == CAP_NET_RAW);
    CHECK(caps[1].why.find("mobile node") != std::string::npos);
    auto static_mobile = mobile;
    static_mobile["pipeline"][0]["care_of"] = "static";
    static_mobile["pipeline"][0].erase("interface");
    static_mobile["pipeline"][0]["care_of_address"] = "198.51.100.7";
    CHECK(capability_names(static_mobile) == std::vector<std::string>{"cap_net_admin"});
}

TEST_CASE("wipe_secrets replaces every secret the node's pipeline holds, inline or from a file, by a fingerprint, and nothing else") {
    char dir_name[] = "/tmp/mipsec-privileges-XXXXXX";
    REQUIRE(::mkdtemp(dir_name) != nullptr);
    const std::string dir = dir_name;
    {
        std::ofstream(dir + "/mn.key") << "000102030405060708090a0b0c0d0e0f\n";
    }
    REQUIRE(::chmod((dir + "/mn.key").c_str(), 0600) == 0);
    auto j = home_agent(false);
    j["pipeline"][0]["mobile_nodes"].push_back({{"home_address", "10.1.0.6"}, {"spi", 257}, {"key_file", "mn.key"}});
    auto run = shell::parse_run_config(j, {"", dir});
    std::filesystem::remove_all(dir);
    auto& node = run.nodes.at(0);
    CHECK(node.secret_pointers == std::vector<std::string>{"/0/mobile_nodes/0/key", "/0/mobile_nodes/1/key"});
    REQUIRE(node.pipeline[0]["mobile_nodes"][1]["key"] == "000102030405060708090a0b0c0d0e0f");
    auto same = run.nodes.at(0);
    auto rekeyed = run.nodes.at(0);
    rekeyed.pipeline[0]["mobile_nodes"][1]["key"] = "ffeeddccbbaa99887766554433221100";
    shell::wipe_secrets(node);
    const std::string fp0 = node.pipeline[0]["mobile_nodes"][0]["key"];
    const std::string fp1 = node.pipeline[0]["mobile_nodes"][1]["key"];
    CHECK(fp0.rfind("sha256:", 0) == 0);
    CHECK(fp0.size() == 7 + 64);
    CHECK(fp1.find("0a0b0c") == std::string::npos);
    shell::wipe_secrets(rekeyed);
    CHECK(rekeyed.pipeline[0]["mobile_nodes"][1]["key"] != fp1);  // another key, another fingerprint
    shell::wipe_secrets(same);
    CHECK(same.pipeline == node.pipeline);  // the same keys compare equal (a reload's diff)
    CHECK(node.pipeline[0]["mobile_nodes"][1]["spi"] == 257);  // only the secrets
    CHECK(node.pipeline[0]["address"] == "192.0.2.1");
    CHECK(node.secret_pointers.empty());

    auto gateway = shell::parse_run_config(vpn_gateway("correct horse battery"));
    CHECK(gateway.nodes[0].secret_pointers == std::vector<std::string>{"/0/psk"});
    shell::wipe_secrets(gateway.nodes[0]);
    CHECK(gateway.nodes[0].pipeline[0]["psk"].get<std::string>().find("horse") == std::string::npos);
}

// --- Keys wiped when the objects holding them end (crypto::WipingAllocator underneath).

namespace {
struct Release {
    const std::uint8_t* block;
    bool zeroed;
};
std::vector<Release> releases;
void record(const std::uint8_t* block, std::size_t len) {
    bool zero = true;
    for (std::size_t i = 0; i < len; ++i) zero = zero && block[i] == 0;
    releases.push_back({block, zero});
}
bool released_zeroed(const std::uint8_t* block) {
    for (const auto& r : releases)
        if (r.block == block) return r.zeroed;
    return false;
}
}  // namespace

TEST_CASE("a Mobile IP security association, a CHILD_SA and a PSK copy zero their keys when they end") {
    releases.clear();
    crypto::set_release_observer(record);
    const std::uint8_t *mip_key = nullptr, *enc_in = nullptr, *integ_out = nullptr, *salt = nullptr, *psk = nullptr;
    {
        mip::SecurityAssociation sa{256, crypto::SecretBytes(std::vector<std::uint8_t>(16, 0x5a)), mip::ReplayProtection::Timestamp};
        auto copy = sa.clone();  // a binding's copy goes the same way
        mip_key = copy.key.span().data();
    }
    {
        ipsec::ike::ChildSa child;
        child.encryption_key_in = crypto::SecretBytes(std::vector<std::uint8_t>(16, 0x11));
        child.integrity_key_out = crypto::SecretBytes(std::vector<std::uint8_t>(20, 0x22));
        child.salt_in = crypto::SecretBytes(std::vector<std::uint8_t>(4, 0x33));
        enc_in = child.encryption_key_in.span().data();
        integ_out = child.integrity_key_out.span().data();
        salt = child.salt_in.span().data();
    }
    {
        const std::string text = "correct horse battery";
        ipsec::ike::PskEntry entry(std::nullopt, crypto::SecretBytes(std::span(reinterpret_cast<const std::uint8_t*>(text.data()), text.size())));
        ipsec::ike::PskEntry copy(entry);  // a re-authentication's copy of the settings
        psk = copy.key.span().data();
    }
    crypto::set_release_observer(nullptr);
    CHECK(released_zeroed(mip_key));
    CHECK(released_zeroed(enc_in));
    CHECK(released_zeroed(integ_out));
    CHECK(released_zeroed(salt));
    CHECK(released_zeroed(psk));
}

// --- Key logs: only on request, and never readable by others.

TEST_CASE("a key log is opened private when the node starts, and an existing one others can read is refused") {
    char dir_name[] = "/tmp/mipsec-keylog-XXXXXX";
    REQUIRE(::mkdtemp(dir_name) != nullptr);
    const std::string dir = dir_name;
    {
        shell::FileKeyLog log(dir + "/keys");
        // Both files exist before any SA, so a node that later drops privileges can still write.
        struct stat st{};
        REQUIRE(::stat((dir + "/keys.esp_sa").c_str(), &st) == 0);
        CHECK((st.st_mode & 0777) == 0600);
        REQUIRE(::stat((dir + "/keys.ikev1_decryption_table").c_str(), &st) == 0);
        CHECK((st.st_mode & 0777) == 0600);
        const std::uint8_t key[16] = {1, 2, 3};
        log.esp_sa(core::Ipv4Address{0xC0000201}, core::Ipv4Address{0xC0000202}, 0x1001, ipsec::EspSuite::AesGcm128,
                   std::span<const std::uint8_t>(key, 16));
        CHECK_FALSE(log.failed());
    }
    std::ifstream in(dir + "/keys.esp_sa");
    std::string line;
    std::getline(in, line);
    CHECK(line.find("0x00001001") != std::string::npos);

    REQUIRE(::chmod((dir + "/keys.esp_sa").c_str(), 0644) == 0);
    std::string error;
    try {
        shell::FileKeyLog again(dir + "/keys");
    } catch (const std::runtime_error& e) {
        error = e.what();
    }
    CHECK(error == "key log \"" + dir + "/keys.esp_sa\" is open to others (mode 0644): chmod 600 it, or remove it and it is created so");
    REQUIRE(::chmod((dir + "/keys.esp_sa").c_str(), 0640) == 0);
    error.clear();
    try {
        (void)shell::open_key_log(dir + "/keys.esp_sa");
    } catch (const std::runtime_error& e) {
        error = e.what();
    }
    CHECK(error.find("is open to its group (mode 0640)") != std::string::npos);
    std::filesystem::create_symlink(dir + "/keys.ikev1_decryption_table", dir + "/link");
    CHECK_THROWS_AS(shell::open_key_log(dir + "/link"), std::runtime_error);  // O_NOFOLLOW
    std::filesystem::remove_all(dir);
}

TEST_CASE("key logs are made only for stages whose config asks for one") {
    crypto::SystemRandom random;
    std::vector<std::string> asked;
    shell::StageBuildContext ctx{"n", false, &random, core::Clock::now(), [&](const std::string& prefix) -> ipsec::KeyLog* {
                                     asked.push_back(prefix);
                                     return nullptr;
                                 }};
    auto gateway = json::parse(R"({"type": "ipsec.vpn_gateway", "local": "192.0.2.1", "psk": "correct horse battery", "local_ts": ["10.99.1.0/24"]})");
    auto client = json::parse(R"({"type": "ipsec.vpn_client", "local": "192.0.2.1", "gateway": "192.0.2.2", "psk": "correct horse battery"})");
    (void)shell::build_stage(shell::ConfigReader(gateway, "/pipeline/0"), ctx);
    (void)shell::build_stage(shell::ConfigReader(client, "/pipeline/1"), ctx);
    CHECK(asked.empty());
    gateway["key_log"] = "/run/mipsec/gw-keys";
    client["key_log"] = "/run/mipsec/client-keys";
    (void)shell::build_stage(shell::ConfigReader(gateway, "/pipeline/0"), ctx);
    (void)shell::build_stage(shell::ConfigReader(client, "/pipeline/1"), ctx);
    CHECK(asked == std::vector<std::string>{"/run/mipsec/gw-keys", "/run/mipsec/client-keys"});
}

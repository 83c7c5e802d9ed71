// SPDX-License-Identifier: MIT
// `mipsec check` / `run` refuse bad configs before touching the system; every message names
// the JSON pointer, what is wrong and what is expected.
#include <doctest/doctest.h>

#include <sys/stat.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <future>
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
    CHECK(run.nodes[0].tun.offload);
    auto off = good();
    off["tun"]["offload"] = false;
    CHECK_FALSE(shell::parse_run_config(off).nodes[0].tun.offload);
    CHECK_FALSE(run.nodes[0].tun.kill_switch);
    auto blocked = good();
    blocked["tun"]["kill_switch"] = true;
    CHECK(shell::parse_run_config(blocked).nodes[0].tun.kill_switch);
    // With a table of its own the default route can be blocked: nothing else is in that table.
    blocked["tun"]["routes"] = {"0.0.0.0/0"};
    blocked["tun"]["route_table"] = 100;
    blocked["transport"]["fwmark"] = 0x6d69;
    CHECK(shell::parse_run_config(blocked).nodes[0].tun.kill_switch);
    CHECK(run.nodes[0].transport.udp_gso);
    CHECK(run.nodes[0].transport.udp_gro);
    auto j = good();
    j["transport"]["udp_gso"] = false;
    j["transport"]["udp_gro"] = false;
    run = shell::parse_run_config(j);
    CHECK_FALSE(run.nodes[0].transport.udp_gso);
    CHECK_FALSE(run.nodes[0].transport.udp_gro);
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
        {"offload not a boolean", [](json& j) { j["tun"]["offload"] = "yes"; }, "/tun/offload: is \"yes\"; expected true or false"},
        {"kill switch without routes", [](json& j) { j["tun"]["kill_switch"] = true; j["tun"]["routes"] = json::array(); },
         "/tun/kill_switch: blocks the TUN's routes while the node is down, but \"routes\" lists none"},
        {"kill switch on a default route in the main table", [](json& j) { j["tun"]["kill_switch"] = true; j["tun"]["routes"] = {"10.9.0.0/16", "0.0.0.0/0"}; },
         "/tun/routes/1: a default route cannot be blocked in the main table"},
        {"impossible MTU", [](json& j) { j["tun"]["mtu"] = 1490; }, "/tun: MTU 1490 plus"},
        {"link MTU too small", [](json& j) { j["transport"]["link_mtu"] = 590; }, "/transport: link MTU 590"},
        {"receive buffer too small", [](json& j) { j["transport"]["receive_buffer"] = 4096; }, "/transport/receive_buffer: is 4096, out of range; expected an integer from 65536 to 1073741824"},
        {"send buffer not a number", [](json& j) { j["transport"]["send_buffer"] = "4M"; }, "/transport/send_buffer: is \"4M\"; expected an integer"},
        {"GSO switch not a boolean", [](json& j) { j["transport"]["udp_gso"] = "off"; }, "/transport/udp_gso: is \"off\"; expected true or false"},
        {"GRO switch not a boolean", [](json& j) { j["transport"]["udp_gro"] = 0; }, "/transport/udp_gro: is 0; expected true or false"},
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

// --- Secrets apart from the config: "psk_file" / "key_file", $CREDENTIALS_DIRECTORY, modes.

namespace {

// A private temporary directory with files at modes the test chooses; removed on exit.
class TempDir {
public:
    TempDir() {
        char name[] = "/tmp/mipsec-secrets-XXXXXX";
        REQUIRE(::mkdtemp(name) != nullptr);
        path_ = name;
    }
    ~TempDir() { std::filesystem::remove_all(path_); }
    const std::string& path() const { return path_; }
    std::string write(const std::string& name, const std::string& content, unsigned mode) const {
        const auto p = path_ + "/" + name;
        std::ofstream(p, std::ios::binary) << content;
        REQUIRE(::chmod(p.c_str(), mode) == 0);
        return p;
    }

private:
    std::string path_;
};

const char* const gateway_psk = "correct horse battery";
const std::string esp_in_key = "00112233445566778899aabbccddeeff01020304";  // aes128gcm16: 16 + 4 salt
const std::string esp_out_key = "ffeeddccbbaa99887766554433221100a1a2a3a4";

json secret_config() {
    return json::parse(R"({
      "name": "gw",
      "tun": {"name": "vpn0"},
      "transport": {"local": "192.0.2.1", "udp_ports": [500, 4500], "raw_protocols": [50]},
      "pipeline": [
        {"type": "ipsec.esp_tunnel", "local": "192.0.2.1", "remote": "192.0.2.9",
         "sa": {"suite": "aes128gcm16", "inbound": {"spi": 4097, "key_file": "esp-in.key"},
                "outbound": {"spi": 8194, "key": "ffeeddccbbaa99887766554433221100a1a2a3a4"}}},
        {"type": "ipsec.vpn_gateway", "local": "192.0.2.1", "psk_file": "gw.psk", "local_ts": ["10.99.1.0/24"]}
      ]
    })");
}

std::string parse_error(const json& j, const shell::SecretSources& sources) {
    try {
        (void)shell::parse_run_config(j, sources);
    } catch (const shell::ConfigError& e) {
        return e.what();
    }
    return "";
}

}  // namespace

TEST_CASE("secrets come from files relative to the config directory, one trailing newline trimmed") {
    TempDir dir;
    dir.write("gw.psk", std::string(gateway_psk) + "\n", 0600);
    dir.write("esp-in.key", "00:11:22:33:44:55:66:77:88:99:aa:bb:cc:dd:ee:ff:01:02:03:04\n", 0400);  // inline formats apply
    auto run = shell::parse_run_config(secret_config(), {"", dir.path()});
    REQUIRE(run.nodes.size() == 1);
    // The node builds from the resolved pipeline: contents inline, no file named any more.
    const auto& p = run.nodes[0].pipeline;
    CHECK(p[1]["psk"] == gateway_psk);
    CHECK_FALSE(p[1].contains("psk_file"));
    CHECK(p[0]["sa"]["inbound"]["key"] == "00:11:22:33:44:55:66:77:88:99:aa:bb:cc:dd:ee:ff:01:02:03:04");
    CHECK_FALSE(p[0]["sa"]["inbound"].contains("key_file"));
    // Only the outbound key was written in the config itself.
    CHECK(run.inline_secrets == std::vector<std::string>{"/pipeline/0/sa/outbound/key"});
}

TEST_CASE("$CREDENTIALS_DIRECTORY wins over the config directory; absolute paths are taken as they are") {
    TempDir config_dir, credentials;
    config_dir.write("gw.psk", "the config directory's psk", 0600);
    config_dir.write("esp-in.key", esp_in_key, 0600);
    credentials.write("gw.psk", "the systemd credential", 0400);
    credentials.write("esp-in.key", esp_in_key, 0400);
    auto run = shell::parse_run_config(secret_config(), {credentials.path(), config_dir.path()});
    CHECK(run.nodes[0].pipeline[1]["psk"] == "the systemd credential");

    auto absolute = secret_config();
    absolute["pipeline"][1]["psk_file"] = config_dir.path() + "/gw.psk";
    run = shell::parse_run_config(absolute, {credentials.path(), "/nonexistent"});
    CHECK(run.nodes[0].pipeline[1]["psk"] == "the config directory's psk");
}

TEST_CASE("secret files open to group or others are refused like ssh refuses keys") {
    TempDir dir;
    dir.write("esp-in.key", esp_in_key, 0600);
    struct Row {
        unsigned mode;
        const char* message;
    } rows[] = {
        {0644, "/pipeline/1/psk_file: key file \"DIR/gw.psk\" is readable by others (mode 0644): chmod 600 it"},
        {0640, "/pipeline/1/psk_file: key file \"DIR/gw.psk\" is readable by its group (mode 0640): chmod 600 it"},
        {0620, "/pipeline/1/psk_file: key file \"DIR/gw.psk\" can be written by group or others (mode 0620): chmod 600 it"},
    };
    for (const auto& row : rows) {
        CAPTURE(row.mode);
        dir.write("gw.psk", gateway_psk, row.mode);
        std::string expected = row.message;
        expected.replace(expected.find("DIR"), 3, dir.path());
        CHECK(parse_error(secret_config(), {"", dir.path()}).starts_with(expected));
    }
    dir.write("gw.psk", gateway_psk, 0600);
    CHECK(parse_error(secret_config(), {"", dir.path()}) == "");
}

TEST_CASE("a secret path naming a FIFO is refused at once, not waited on") {
    // Opening a FIFO for reading blocks until a writer appears: `mipsec check` would hang on
    // a config whose psk_file names one (found auditing the config reader for its fuzz target).
    TempDir dir;
    dir.write("esp-in.key", esp_in_key, 0600);
    const auto fifo = dir.path() + "/gw.psk";
    REQUIRE(::mkfifo(fifo.c_str(), 0600) == 0);
    auto result = std::async(std::launch::async, [&] { return parse_error(secret_config(), {"", dir.path()}); });
    const bool answered = result.wait_for(std::chrono::seconds(5)) == std::future_status::ready;
    if (!answered) {
        // Unblock the reader so the test ends (and fails) instead of hanging.
        std::ofstream(fifo) << gateway_psk;
    }
    CHECK(answered);
    CHECK(result.get() == "/pipeline/1/psk_file: \"" + fifo + "\" is not a regular file; expected a file only its owner can read (chmod 600); relative paths are taken from $CREDENTIALS_DIRECTORY if set, else the config file's directory");
}

TEST_CASE("secret fields: exactly one of x / x_file, and file contents checked like inline values") {
    TempDir dir;
    dir.write("gw.psk", gateway_psk, 0600);
    dir.write("esp-in.key", esp_in_key, 0600);
    dir.write("short.key", "0011\n", 0600);
    dir.write("short.psk", "short\n", 0600);
    dir.write("empty.psk", "\n", 0600);
    struct Row {
        const char* name;
        void (*mutate)(json&);
        const char* expected_text;
    };
    const Row rows[] = {
        {"both", [](json& j) { j["pipeline"][1]["psk"] = "inline and file"; }, "/pipeline/1/psk_file: is given together with \"psk\"; expected either \"psk\" (inline) or \"psk_file\" (a file), not both"},
        {"neither", [](json& j) { j["pipeline"][1].erase("psk_file"); }, "/pipeline/1/psk: is missing; expected \"psk\" (inline) or \"psk_file\" (a file holding it)"},
        {"missing file", [](json& j) { j["pipeline"][1]["psk_file"] = "nosuch.psk"; }, "/pipeline/1/psk_file: cannot open \""},
        {"empty path", [](json& j) { j["pipeline"][1]["psk_file"] = ""; }, "/pipeline/1/psk_file: is empty"},
        {"empty file", [](json& j) { j["pipeline"][1]["psk_file"] = "empty.psk"; }, "/pipeline/1/psk_file: \""},
        {"short psk from a file", [](json& j) { j["pipeline"][1]["psk_file"] = "short.psk"; }, "/pipeline/1/psk_file: is shorter than 8 characters"},
        {"short key from a file", [](json& j) { j["pipeline"][0]["sa"]["inbound"]["key_file"] = "short.key"; }, "/pipeline/0/sa/inbound/key_file: holds 2 bytes; expected hex for exactly 20 bytes"},
        {"directory", [](json& j) { j["pipeline"][1]["psk_file"] = "."; }, "/pipeline/1/psk_file: \""},
        {"not a string", [](json& j) { j["pipeline"][1]["psk_file"] = 7; }, "/pipeline/1/psk_file: is 7; expected a string"},
    };
    for (const auto& row : rows) {
        CAPTURE(row.name);
        auto j = secret_config();
        row.mutate(j);
        auto error = parse_error(j, {"", dir.path()});
        CAPTURE(error);
        CHECK(error.starts_with(row.expected_text));
        // A secret never appears in a message.
        CHECK(error.find(gateway_psk) == std::string::npos);
    }
}

TEST_CASE("mobile node and home agent keys come from key_file too") {
    TempDir dir;
    dir.write("mn.key", "000102030405060708090a0b0c0d0e0f\n", 0600);
    auto j = json::parse(R"({
      "nodes": [
        {"name": "mn", "tun": {"name": "mip0"}, "transport": {"local": "0.0.0.0", "udp_ports": [434]},
         "pipeline": [{"type": "mip.mobile_node", "home_address": "10.1.0.5", "home_agent": "192.0.2.1", "spi": 256,
                       "key_file": "mn.key", "care_of": "static", "care_of_address": "198.51.100.7"}]},
        {"name": "ha", "tun": {"name": "ha0"}, "transport": {"local": "192.0.2.1", "udp_ports": [434]},
         "pipeline": [{"type": "mip.home_agent", "address": "192.0.2.1", "home_network": "10.1.0.0/24",
                       "mobile_nodes": [{"home_address": "10.1.0.5", "spi": 256, "key_file": "mn.key"}]}]}
      ]})");
    auto run = shell::parse_run_config(j, {"", dir.path()});
    REQUIRE(run.nodes.size() == 2);
    CHECK(run.nodes[0].pipeline[0]["key"] == "000102030405060708090a0b0c0d0e0f");
    CHECK(run.nodes[1].pipeline[0]["mobile_nodes"][0]["key"] == "000102030405060708090a0b0c0d0e0f");
    CHECK(run.inline_secrets.empty());
}

TEST_CASE("a config file holding inline secrets is refused by run, warned by check, when others can read it") {
    TempDir dir;  // mkdtemp makes it 0700: nothing inside is reachable by others until we open it
    dir.write("esp-in.key", esp_in_key, 0600);
    dir.write("gw.psk", gateway_psk, 0600);
    auto inline_config = secret_config();  // the outbound ESP key is inline
    const auto path = dir.write("gw.json", inline_config.dump(), 0644);

    // 0644 inside a private directory: others cannot reach it.
    CHECK(shell::readable_by_others(path) == "");
    CHECK_NOTHROW((void)shell::load_run_config(path));

    REQUIRE(::chmod(dir.path().c_str(), 0755) == 0);
    CHECK(shell::readable_by_others(path) == "readable by others (mode 0644)");
    std::string error;
    try {
        (void)shell::load_run_config(path);
    } catch (const shell::ConfigError& e) {
        error = e.what();
    }
    CHECK(error == "/pipeline/0/sa/outbound/key: is a secret written in config file \"" + path +
                       "\", which is readable by others (mode 0644); expected the secret in \"key_file\" (a file only its owner can read), or `chmod 600 " + path + "`");
    auto warned = shell::load_run_config(path, shell::ExposedSecrets::Warn);
    REQUIRE(warned.warnings.size() == 1);
    CHECK(warned.warnings[0] == error);

    // Either fix works: chmod 600 the config...
    REQUIRE(::chmod(path.c_str(), 0600) == 0);
    CHECK(shell::load_run_config(path).warnings.empty());
    // ...or move the secret to a file, after which the config may be world-readable.
    dir.write("esp-out.key", esp_out_key, 0600);
    auto no_inline = inline_config;
    no_inline["pipeline"][0]["sa"]["outbound"].erase("key");
    no_inline["pipeline"][0]["sa"]["outbound"]["key_file"] = "esp-out.key";
    const auto clean = dir.write("gw-files.json", no_inline.dump(), 0644);
    auto run = shell::load_run_config(clean);
    CHECK(run.inline_secrets.empty());
    CHECK(run.nodes[0].pipeline[0]["sa"]["outbound"]["key"] == esp_out_key);
}

TEST_CASE("status finds the control socket without reading secrets") {
    auto j = secret_config();  // its key files do not exist here
    CHECK(shell::control_socket_path(j) == "/run/mipsec/gw.sock");
    j["control_socket"] = "/tmp/x.sock";
    CHECK(shell::control_socket_path(j) == "/tmp/x.sock");
    CHECK(shell::control_socket_path(json::parse(R"({"nodes": [{"name": "b"}]})")) == "/run/mipsec/b.sock");
    CHECK_THROWS_AS((void)shell::control_socket_path(json::array()), shell::ConfigError);
}

TEST_CASE("a home agent state_file in a missing directory, or open to others, is refused with a clear message") {
    TempDir dir;
    dir.write("open.db", "", 0644);
    dir.write("group.db", "", 0640);
    dir.write("private.db", "", 0600);
    REQUIRE(::mkdir((dir.path() + "/a-directory.db").c_str(), 0700) == 0);
    auto config = [&](const std::string& state_file, const char* sync = nullptr) {
        auto j = json::parse(R"({"name": "ha", "tun": {"name": "ha0"}, "transport": {"local": "192.0.2.1", "udp_ports": [434]},
          "pipeline": [{"type": "mip.home_agent", "address": "192.0.2.1", "home_network": "10.1.0.0/24",
                        "mobile_nodes": [{"home_address": "10.1.0.5", "spi": 256, "key": "000102030405060708090a0b0c0d0e0f"}]}]})");
        if (!state_file.empty()) j["pipeline"][0]["state_file"] = state_file;
        if (sync) j["pipeline"][0]["state_sync"] = sync;
        return j;
    };
    struct Row {
        const char* name;
        json j;
        const char* expected_text;
    };
    const Row rows[] = {
        {"missing directory", config(dir.path() + "/nowhere/ha.db"), "/pipeline/0/state_file: directory \""},
        {"readable by others", config(dir.path() + "/open.db"), "is readable by others (mode 0644); expected a file only its owner can use: chmod 600"},
        {"readable by its group", config(dir.path() + "/group.db"), "is readable by its group (mode 0640)"},
        {"not a regular file", config(dir.path() + "/a-directory.db"), "a-directory.db\" is not a regular file"},
        {"empty path", config("/"), "/pipeline/0/state_file: \"/\" is not a file path"},
        {"state_sync without a state_file", config("", "full"), "/pipeline/0/state_sync: is set without a state_file"},
        {"unknown state_sync", config(dir.path() + "/private.db", "sometimes"), "/pipeline/0/state_sync:"},
    };
    for (const auto& row : rows) {
        CAPTURE(row.name);
        auto message = error_of(row.j);
        CAPTURE(message);
        CHECK(message.find(row.expected_text) != std::string::npos);
    }
    // A private file, or one not created yet in an existing directory, is fine.
    CHECK(error_of(config(dir.path() + "/private.db", "full")).empty());
    CHECK(error_of(config(dir.path() + "/new.db")).empty());
}

TEST_CASE("foreign agent: home_agent_udp_tunnelling takes the mobile node's values; keepalive_s only with it") {
    auto fa = [](const json& extra) {
        auto j = good();
        j["pipeline"] = json::array({json{{"type", "mip.foreign_agent"}, {"link_address", "198.51.100.1"}}});
        for (const auto& [k, v] : extra.items()) j["pipeline"][0][k] = v;
        return error_of(j);
    };
    CHECK(fa(json::object()) == "");
    CHECK(fa(json{{"home_agent_udp_tunnelling", "wanted"}, {"keepalive_s", 20}}) == "");
    CHECK(fa(json{{"home_agent_udp_tunnelling", "forced"}}) == "");
    CHECK(fa(json{{"home_agent_udp_tunnelling", "auto"}}).find("/pipeline/0/home_agent_udp_tunnelling:") != std::string::npos);
    CHECK(fa(json{{"keepalive_s", 20}}).find("/pipeline/0/keepalive_s: is only used with home_agent_udp_tunnelling") != std::string::npos);
    CHECK(fa(json{{"home_agent_udp_tunnelling", "wanted"}, {"keepalive_s", 5}}).find("/pipeline/0/keepalive_s: is 5, out of range") !=
          std::string::npos);
}

// SPDX-License-Identifier: MIT
// The shell itself, in process: a whole node (stage factory, pipeline, the Asio loops over
// readiness, the timer, status) runs over tun::MemoryDevice, MemoryTransport and a recording
// HostNetwork, with no root and no kernel device.
#include <doctest/doctest.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <variant>
#include <vector>

#include <boost/asio/io_context.hpp>

#include "apps/shell/config_reload.hpp"
#include "apps/shell/memory_transport.hpp"
#include "apps/shell/node.hpp"
#include "apps/shell/node_config.hpp"
#include "core/buffer_pool.hpp"
#include "core/endian.hpp"
#include "core/ipv4.hpp"
#include "core/logger.hpp"
#include "mip/registration_wire.hpp"
#include "mip/security_association.hpp"
#include "mip/tunnel_encap.hpp"
#include "tests/support/hex.hpp"
#include "tun/memory_device.hpp"

using namespace mipsec;

namespace {

core::Ipv4Address addr(const char* s) { return *core::Ipv4Address::parse(s); }

class RecordingHost final : public shell::HostNetwork {
public:
    void configure_tun(std::uint32_t ifindex, std::size_t mtu) override { configured.push_back({ifindex, mtu}); }
    void attach_link(std::uint32_t ifindex) override { attached.push_back(ifindex); }
    bool set_tun_mtu(std::size_t mtu) override {
        mtus.push_back(mtu);
        return true;
    }
    std::vector<core::AddressChanged> present_addresses() override { return {}; }
    void on_event(const core::RaisedEvent& e) override { events.push_back(e); }

    std::vector<std::pair<std::uint32_t, std::size_t>> configured;
    std::vector<std::uint32_t> attached;
    std::vector<std::size_t> mtus;
    std::vector<core::RaisedEvent> events;
};

// An IPv4 packet `from` -> `to`, `len` bytes with a recognisable payload.
test::Bytes ip_packet(std::uint8_t protocol, const char* from, const char* to, std::size_t len) {
    test::Bytes p(len);
    core::Ipv4Header h;
    h.total_length = static_cast<std::uint16_t>(len);
    h.protocol = protocol;
    h.source = addr(from);
    h.destination = addr(to);
    h.emit(p);
    for (std::size_t i = 20; i < len; ++i) p[i] = static_cast<std::uint8_t>(i);
    return p;
}

test::Bytes inner_packet(const char* from, const char* to, std::size_t len = 64) {
    return ip_packet(core::ip_protocol::udp, from, to, len);
}

// One node, its parts kept at hand for the test.
struct InProcessNode {
    explicit InProcessNode(nlohmann::json pipeline, std::vector<std::uint16_t> udp = {}, std::vector<std::uint8_t> raw = {4}) {
        nlohmann::json root = {{"name", "t"}, {"tun", {{"name", "mem0"}}}, {"transport", {{"local", "192.0.2.1"}}}, {"pipeline", pipeline}};
        if (!udp.empty()) root["transport"]["udp_ports"] = udp;
        if (!raw.empty()) root["transport"]["raw_protocols"] = raw;
        config = shell::parse_run_config(root).nodes.at(0);
        auto dev = std::make_unique<tun::MemoryDevice>("mem0", 7);
        auto tr = std::make_unique<shell::MemoryTransport>(config.transport.udp_ports, config.transport.raw_protocols);
        auto h = std::make_unique<RecordingHost>();
        device = dev.get();
        transport = tr.get();
        host = h.get();
        node = shell::Node::start(io, config, core::null_logger(),
                                  shell::NodeParts{std::move(dev), std::move(tr), std::move(h), /*monitor_links=*/false});
    }
    ~InProcessNode() {
        node->stop();
        io.run_for(std::chrono::milliseconds(20));
    }
    // Runs the io_context until `done` or a second has passed.
    bool run_until(const std::function<bool()>& done) {
        for (int i = 0; i < 100 && !done(); ++i) io.run_for(std::chrono::milliseconds(10));
        return done();
    }

    boost::asio::io_context io;
    shell::NodeConfig config;
    tun::MemoryDevice* device = nullptr;
    shell::MemoryTransport* transport = nullptr;
    RecordingHost* host = nullptr;
    std::unique_ptr<shell::Node> node;
};

}  // namespace

TEST_CASE("a whole node in process: TUN -> IP-in-IP -> transport and back, host told its TUN MTU") {
    InProcessNode n(nlohmann::json::array({{{"type", "mip.ipip"}, {"local", "192.0.2.1"}, {"remote", "192.0.2.2"}}}));
    REQUIRE(n.host->configured.size() == 1);
    CHECK(n.host->configured[0] == std::pair<std::uint32_t, std::size_t>{7, 1480});  // link MTU 1500 minus 20

    const auto inner = inner_packet("10.1.0.1", "10.2.0.1");
    n.device->inject(inner);
    REQUIRE(n.run_until([&] { return !n.transport->sent().empty(); }));
    const auto outer = n.transport->take_sent().at(0);
    auto ip = core::Ipv4View::check(outer);
    REQUIRE(ip);
    CHECK(ip->protocol() == core::ip_protocol::ipip);
    CHECK(ip->source() == addr("192.0.2.1"));
    CHECK(ip->destination() == addr("192.0.2.2"));
    CHECK(test::to_hex(ip->payload()) == test::to_hex(inner));

    // The peer's answer: the same shape the other way, delivered to the TUN unwrapped.
    auto reply = inner_packet("10.2.0.1", "10.1.0.1");
    auto wrapped = ip_packet(core::ip_protocol::ipip, "192.0.2.2", "192.0.2.1", 20 + reply.size());
    std::copy(reply.begin(), reply.end(), wrapped.begin() + 20);
    n.transport->inject(0, wrapped);
    REQUIRE(n.run_until([&] { return !n.device->written().empty(); }));
    CHECK(test::to_hex(n.device->take_written().at(0)) == test::to_hex(reply));

    const auto st = n.node->status();
    CHECK(st["tun"]["rx_packets"] == 1);
    CHECK(st["tun"]["tx_packets"] == 1);
    CHECK(st["pipeline"][0]["encapsulated"] == 1);
    CHECK(st["pipeline"][0]["decapsulated"] == 1);
}

TEST_CASE("a whole node in process: what no layer claims is counted, and failed writes are counted by reason") {
    // nat.udp_encap alone: plain (non-ESP) traffic is no layer's business either way.
    InProcessNode n(nlohmann::json::array({{{"type", "nat.udp_encap"}}}), {4500}, {1});
    const auto from_tun = inner_packet("192.0.2.1", "198.51.100.9");
    n.device->inject(from_tun);
    REQUIRE(n.run_until([&] { return n.transport->unroutable() + n.transport->sent().size() > 0; }));
    // A TUN packet no layer claimed is sent as it is; no socket here is bound to its source
    // port, so the transport counts it as unroutable rather than dropping it silently.
    CHECK(n.node->status()["transport"]["outbound_unclaimed"] == 1);
    CHECK(n.transport->unroutable() == 1);

    // ICMP a raw socket copied: not ours, not handed to the TUN, counted.
    n.transport->inject(1, ip_packet(core::ip_protocol::icmp, "198.51.100.9", "192.0.2.1", 28));
    REQUIRE(n.run_until([&] { return n.node->status()["transport"]["inbound_unclaimed"] == 1; }));
    CHECK(n.device->written().empty());

    // A TUN write the kernel refuses is counted with its reason, never silent.
    n.device->fail_writes(1, ENOBUFS);
    auto esp_in_udp = ip_packet(core::ip_protocol::udp, "198.51.100.9", "192.0.2.1", 28 + 16);
    std::fill(esp_in_udp.begin() + 20, esp_in_udp.end(), std::uint8_t{0});
    // UDP 4500 -> 4500 carrying ESP (SPI 0x1234): unwrapped to plain ESP for the TUN.
    const std::uint8_t udp_header[8] = {0x11, 0x94, 0x11, 0x94, 0x00, 0x18, 0x00, 0x00};
    std::copy(std::begin(udp_header), std::end(udp_header), esp_in_udp.begin() + 20);
    esp_in_udp[30] = 0x12;  // SPI 0x00001234
    esp_in_udp[31] = 0x34;
    esp_in_udp[35] = 1;  // sequence 1
    n.transport->inject(0, esp_in_udp);
    REQUIRE(n.run_until([&] { return n.node->status()["tun"]["tx_errors"] == 1; }));
    CHECK(n.node->status()["tun"]["tx_failures"]["no_buffer_space"] == 1);
}

namespace {

nlohmann::json home_agent_entry(const std::vector<std::pair<const char*, const char*>>& nodes) {
    auto mns = nlohmann::json::array();
    std::uint32_t spi = 256;
    for (const auto& [home, key] : nodes) mns.push_back({{"home_address", home}, {"spi", spi++}, {"key", key}});
    return {{"type", "mip.home_agent"}, {"address", "192.0.2.1"}, {"home_network", "10.1.0.0/24"}, {"mobile_nodes", mns}};
}

// A registration request from `coa` for `home`, as the node's UDP socket would receive it.
test::Bytes registration(const char* home, const char* coa, std::uint32_t spi, const test::Bytes& key) {
    const auto ntp = mip::ntp_time(core::Clock::now(), mip::ntp_offset(std::chrono::system_clock::now(), core::Clock::now()));
    mip::RegistrationRequest fixed{0x22, 600, addr(home), addr("192.0.2.1"), addr(coa), ntp};
    auto m = mip::build_request(fixed, {}, {spi, key});
    REQUIRE(m);
    core::BufferPool pool(4, 2048);
    auto buf = pool.acquire(64);
    REQUIRE(mip::emit_udp_packet(buf, {addr(coa), 434}, {addr("192.0.2.1"), 434}, 64, m->bytes()));
    return {buf.bytes().begin(), buf.bytes().end()};
}

const char* const key_five = "00112233445566778899aabbccddeeff";
const char* const key_six = "ffeeddccbbaa99887766554433221100";
const char* const key_seven = "0f1e2d3c4b5a69788796a5b4c3d2e1f0";

nlohmann::json ha_root(nlohmann::json entry) {
    return {{"name", "t"}, {"tun", {{"name", "mem0"}}}, {"transport", {{"local", "192.0.2.1"}, {"udp_ports", {434}}, {"raw_protocols", {4}}}},
            {"pipeline", nlohmann::json::array({std::move(entry)})}};
}

}  // namespace

TEST_CASE("a whole node in process: reload adds, re-keys and removes mobile nodes without touching the others' bindings") {
    InProcessNode n(nlohmann::json::array({home_agent_entry({{"10.1.0.5", key_five}, {"10.1.0.6", key_six}})}), {434}, {4});
    n.transport->inject(0, registration("10.1.0.5", "198.51.100.5", 256, test::from_hex(key_five)));
    n.transport->inject(0, registration("10.1.0.6", "198.51.100.6", 257, test::from_hex(key_six)));
    REQUIRE(n.run_until([&] { return n.node->status()["pipeline"][0]["state"]["binding_count"] == 2; }));

    // .5 re-keyed (same SPI, new key), .6 removed, .7 added.
    auto next = shell::parse_run_config(ha_root(home_agent_entry({{"10.1.0.5", key_seven}, {"10.1.0.7", key_six}}))).nodes.at(0);
    auto lines = n.node->reload(next);
    REQUIRE(lines.size() == 1);
    CHECK(lines[0].find("/pipeline/0 mip.home_agent (mobile_nodes changed)") != std::string::npos);
    CHECK(lines[0].find("added MN 10.1.0.7") != std::string::npos);
    CHECK(lines[0].find("removed MN 10.1.0.6 (its binding to 198.51.100.6 is dropped)") != std::string::npos);
    CHECK(lines[0].find("re-keyed 10.1.0.5") != std::string::npos);
    CHECK(lines[0].find(key_seven) == std::string::npos);  // no key in the log

    auto st = n.node->status();
    CHECK(st["reloads_applied"] == 1);
    CHECK(st["pipeline"][0]["state"]["mobile_nodes"] == 2);
    REQUIRE(st["pipeline"][0]["state"]["binding_count"] == 1);
    CHECK(st["pipeline"][0]["state"]["bindings"][0]["home_address"] == "10.1.0.5");
    CHECK(st["pipeline"][0]["state"]["bindings"][0]["care_of_address"] == "198.51.100.5");
    CHECK(st["pipeline"][0]["state"]["counters"]["bindings_removed_by_reload"] == 1);
    // The shell heard that .6's binding went (its routes are withdrawn), and nothing about .5.
    std::size_t removals = 0;
    for (const auto& e : n.host->events)
        if (const auto* r = std::get_if<core::RegistrationChanged>(&e.event); r && !r->registered) {
            CHECK(r->home_address == addr("10.1.0.6"));
            ++removals;
        }
    CHECK(removals == 1);

    // .5 with its old key is refused now; with the new one it registers again; .7 registers.
    const auto replies_before = n.node->status()["pipeline"][0]["state"]["counters"]["replies_sent"].get<std::uint64_t>();
    n.transport->inject(0, registration("10.1.0.5", "198.51.100.55", 256, test::from_hex(key_five)));
    REQUIRE(n.run_until([&] { return n.node->status()["pipeline"][0]["state"]["counters"]["replies_sent"] == replies_before + 1; }));
    CHECK(n.node->status()["pipeline"][0]["state"]["counters"]["rejected"]["bad_authenticator"] == 1);
    CHECK(n.node->status()["pipeline"][0]["state"]["bindings"][0]["care_of_address"] == "198.51.100.5");
    n.transport->inject(0, registration("10.1.0.5", "198.51.100.55", 256, test::from_hex(key_seven)));
    n.transport->inject(0, registration("10.1.0.7", "198.51.100.7", 257, test::from_hex(key_six)));
    REQUIRE(n.run_until([&] { return n.node->status()["pipeline"][0]["state"]["binding_count"] == 2; }));
}

TEST_CASE("a whole node in process: a reload that cannot apply live is refused with its pointer, nothing changed") {
    InProcessNode n(nlohmann::json::array({home_agent_entry({{"10.1.0.5", key_five}})}), {434}, {4});
    const auto running = n.node->config().pipeline;

    // A new mobile node (live) together with a new HA address (not live): neither applies.
    auto entry = home_agent_entry({{"10.1.0.5", key_five}, {"10.1.0.7", key_six}});
    entry["address"] = "192.0.2.9";
    auto next = shell::parse_run_config(ha_root(entry)).nodes.at(0);
    try {
        (void)n.node->reload(next);
        FAIL("reload applied");
    } catch (const shell::ReloadRefused& e) {
        REQUIRE(e.reasons().size() == 1);
        CHECK(e.reasons()[0] == "/pipeline/0/address changed: restart to apply");
    }
    CHECK(n.node->config().pipeline == running);
    CHECK(n.node->status()["pipeline"][0]["state"]["mobile_nodes"] == 1);
    CHECK(n.node->status()["reloads_applied"] == 0);

    // The same file is no change at all.
    CHECK(n.node->reload(n.node->config()).empty());
}

namespace {

nlohmann::json gateway_root(const char* name, const char* tun, std::optional<const char*> pool, const char* psk) {
    nlohmann::json entry = {{"type", "ipsec.vpn_gateway"}, {"local", "192.0.2.1"}, {"psk", psk}, {"local_ts", {"10.99.1.0/24"}}};
    if (pool) entry["pool"] = *pool;
    return {{"name", name}, {"tun", {{"name", tun}}}, {"transport", {{"local", "192.0.2.1"}, {"udp_ports", {500, 4500}}, {"raw_protocols", {50}}}},
            {"pipeline", nlohmann::json::array({entry})}};
}

}  // namespace

TEST_CASE("a whole node in process: a gateway takes a new pool and PSK; a pool cannot appear or go") {
    InProcessNode n(gateway_root("t", "mem0", "10.99.100.0/24", "first-psk-123")["pipeline"], {500, 4500}, {50});
    auto lines = n.node->reload(shell::parse_run_config(gateway_root("t", "mem0", "10.99.200.0/24", "second-psk-456")).nodes.at(0));
    REQUIRE(lines.size() == 1);
    CHECK(lines[0].find("(pool, psk changed)") != std::string::npos);
    CHECK(lines[0].find("pool 10.99.100.0/24 -> 10.99.200.0/24") != std::string::npos);
    CHECK(lines[0].find("second-psk") == std::string::npos);
    CHECK(n.node->status()["pipeline"][0]["state"]["pool"] == "10.99.200.0/24");

    const auto running = n.node->config().pipeline;
    CHECK_THROWS_WITH_AS(n.node->reload(shell::parse_run_config(gateway_root("t", "mem0", std::nullopt, "second-psk-456")).nodes.at(0)),
                         doctest::Contains("/pipeline/0/pool: was removed"), shell::ConfigError);
    CHECK(n.node->config().pipeline == running);
    CHECK(n.node->status()["pipeline"][0]["state"]["pool"] == "10.99.200.0/24");
}

TEST_CASE("reload of several nodes: all or nothing") {
    InProcessNode a(nlohmann::json::array({home_agent_entry({{"10.1.0.5", key_five}})}), {434}, {4});
    InProcessNode b(gateway_root("t", "mem0", "10.99.100.0/24", "first-psk-123")["pipeline"], {500, 4500}, {50});
    // Two nodes as one file would list them ("t" twice is fine here: each diff is per node).
    shell::RunConfig running;
    running.nodes = {a.config, b.config};
    running.control_socket = "/run/mipsec/t.sock";
    shell::RunConfig next = running;
    next.nodes[0] = shell::parse_run_config(ha_root(home_agent_entry({{"10.1.0.5", key_five}, {"10.1.0.7", key_six}}))).nodes.at(0);
    next.nodes[1] = shell::parse_run_config(gateway_root("t", "mem0", "10.99.100.0/24", "second-psk-456")).nodes.at(0);
    next.nodes[1].transport.link_mtu = 1400;  // not live: refuses the whole reload

    std::vector<shell::Node*> nodes = {a.node.get(), b.node.get()};
    auto refused = shell::reload_nodes(running, next, nodes);
    CHECK(refused.result == shell::ReloadOutcome::Result::Refused);
    REQUIRE(refused.lines.size() == 1);
    CHECK(refused.lines[0] == "/transport/link_mtu changed: restart to apply");
    CHECK(a.node->status()["pipeline"][0]["state"]["mobile_nodes"] == 1);  // the live change waited too
    CHECK(running.nodes[0].pipeline == a.config.pipeline);

    next.nodes[1].transport.link_mtu = 1500;
    auto applied = shell::reload_nodes(running, next, nodes);
    CHECK(applied.result == shell::ReloadOutcome::Result::Applied);
    CHECK(applied.lines.size() == 2);
    CHECK(a.node->status()["pipeline"][0]["state"]["mobile_nodes"] == 2);
    auto fingerprinted = next.nodes[0];  // what is kept of the keys once applied
    shell::wipe_secrets(fingerprinted);
    CHECK(running.nodes[0].pipeline == fingerprinted.pipeline);
    CHECK(shell::reload_nodes(running, next, nodes).result == shell::ReloadOutcome::Result::Unchanged);
}

namespace {
// What a node with two workers runs over in process: a memory TUN queue and transport each, the
// fakes kept to inject into and read from (each worker's, as the kernel would steer flows).
struct TwoWorkerParts {
    explicit TwoWorkerParts(const shell::NodeConfig& config) {
        for (int k = 0; k < 2; ++k) {
            devs.push_back(std::make_unique<tun::MemoryDevice>("mem0", 7));
            trs.push_back(std::make_unique<shell::MemoryTransport>(config.transport.udp_ports, config.transport.raw_protocols));
            device.push_back(devs.back().get());
            transport.push_back(trs.back().get());
        }
    }
    shell::NodeParts parts() {
        shell::NodeParts p{std::move(devs[0]), std::move(trs[0]), std::make_unique<RecordingHost>(), /*monitor_links=*/false};
        p.queues.push_back(std::move(devs[1]));
        p.transports.push_back(std::move(trs[1]));
        return p;
    }
    std::vector<std::unique_ptr<tun::MemoryDevice>> devs;
    std::vector<std::unique_ptr<shell::MemoryTransport>> trs;
    std::vector<tun::MemoryDevice*> device;
    std::vector<shell::MemoryTransport*> transport;
};
}  // namespace

TEST_CASE("a whole node in process, two workers: each its own TUN queue and sockets, both directions at once, every packet through") {
    // As the kernel does with a multi-queue TUN and SO_REUSEPORT sockets, each flow arrives at
    // one worker: flow 0 at worker 0 (this thread), flow 1 at worker 1 (its own thread), both
    // ways. Everything is queued before the node starts, so the workers run at the same time
    // from the first batch, in small batches that make them take turns at the pipeline.
    nlohmann::json root = {{"name", "t"},
                           {"tun", {{"name", "mem0"}}},
                           {"transport", {{"local", "192.0.2.1"}, {"raw_protocols", {4}}}},
                           {"pool", {{"workers", 2}, {"batch", 4}, {"buffers", 64}}},
                           {"pipeline", nlohmann::json::array({{{"type", "mip.ipip"}, {"local", "192.0.2.1"}, {"remote", "192.0.2.2"}}})}};
    const auto config = shell::parse_run_config(root).nodes.at(0);
    REQUIRE(config.workers == 2);
    TwoWorkerParts two(config);
    auto& device = two.device;
    auto& transport = two.transport;
    constexpr std::size_t count = 300;  // per flow
    std::vector<test::Bytes> outbound[2], inbound[2];
    for (std::size_t k = 0; k < count; ++k) {
        for (int f = 0; f < 2; ++f) {
            const char* a = f == 0 ? "10.1.0.1" : "10.1.0.2";
            const char* b = f == 0 ? "10.2.0.1" : "10.2.0.2";
            auto out = inner_packet(a, b, 64 + (k + f) % 200);
            device[f]->inject(out);
            outbound[f].push_back(out);
            auto reply = inner_packet(b, a, 64 + (k * 7 + f) % 300);
            auto wrapped = ip_packet(core::ip_protocol::ipip, "192.0.2.2", "192.0.2.1", 20 + reply.size());
            std::copy(reply.begin(), reply.end(), wrapped.begin() + 20);
            transport[f]->inject(0, wrapped);
            inbound[f].push_back(reply);
        }
    }
    boost::asio::io_context io;
    auto node = shell::Node::start(io, config, core::null_logger(), two.parts());
    // status() is safe against the other worker; the fakes are read only once it has stopped.
    auto done = [&] {
        const auto st = node->status();
        return st["tun"]["tx_packets"] == 2 * count && st["transport"]["sockets"][0]["tx_packets"] == 2 * count;
    };
    for (int i = 0; i < 500 && !done(); ++i) io.run_for(std::chrono::milliseconds(10));
    const auto st = node->status();
    CHECK(done());  // the node's figures are the sums of its workers' queues and sockets
    REQUIRE(st["workers"].size() == 2);
    CHECK(st["workers"][0]["thread"] == "main");
    CHECK(st["workers"][1]["thread"] == "worker-1");
    for (int k = 0; k < 2; ++k) {
        CHECK(st["workers"][k]["packets"] == 2 * count);  // its TUN queue's and its sockets'
        CHECK(st["workers"][k]["batches"] >= 2 * count / 4);
    }
    CHECK(st["pipeline"][0]["encapsulated"] == 2 * count);
    CHECK(st["pipeline"][0]["decapsulated"] == 2 * count);
    node->stop();
    io.run_for(std::chrono::milliseconds(20));

    // Each flow left through the worker it came to, whole and in order.
    for (int f = 0; f < 2; ++f) {
        CAPTURE(f);
        const auto written = device[f]->take_written();
        REQUIRE(written.size() == count);
        for (std::size_t k = 0; k < count; ++k) CHECK(test::to_hex(written[k]) == test::to_hex(inbound[f][k]));
        const auto sent = transport[f]->take_sent();
        REQUIRE(sent.size() == count);
        for (std::size_t k = 0; k < count; ++k) {
            auto ip = core::Ipv4View::check(sent[k]);
            REQUIRE(ip);
            CHECK(test::to_hex(ip->payload()) == test::to_hex(outbound[f][k]));
        }
    }
    // Every buffer is back in its worker's pool but the batch each keeps for its next read.
    const auto after = node->status();
    CHECK(after["workers"][0]["pool"]["available"] == 64 - 4);
    CHECK(after["workers"][1]["pool"]["available"] == 64 - 4);
}

TEST_CASE("several workers: the queues and transports they need are checked before anything runs") {
    nlohmann::json root = {{"name", "t"},
                           {"tun", {{"name", "mem0"}}},
                           {"transport", {{"local", "192.0.2.1"}, {"raw_protocols", {4}}}},
                           {"pool", {{"workers", 3}}},
                           {"pipeline", nlohmann::json::array({{{"type", "mip.ipip"}, {"local", "192.0.2.1"}, {"remote", "192.0.2.2"}}})}};
    const auto config = shell::parse_run_config(root).nodes.at(0);
    boost::asio::io_context io;
    shell::NodeParts parts{std::make_unique<tun::MemoryDevice>("mem0", 7),
                           std::make_unique<shell::MemoryTransport>(config.transport.udp_ports, config.transport.raw_protocols),
                           std::make_unique<RecordingHost>(), false};
    parts.queues.push_back(std::make_unique<tun::MemoryDevice>("mem0", 7));  // one short
    parts.transports.push_back(std::make_unique<shell::MemoryTransport>(config.transport.udp_ports, config.transport.raw_protocols));
    CHECK_THROWS_WITH_AS(shell::Node::start(io, config, core::null_logger(), std::move(parts)), doctest::Contains("3 workers need as many TUN queues"),
                         std::runtime_error);
    root["pool"]["workers"] = 65;
    CHECK_THROWS_WITH_AS(shell::parse_run_config(root), doctest::Contains("/pool/workers"), shell::ConfigError);
}

namespace {

// An ESP tunnel node (manual SAs, AES-GCM-128) with `workers`; `mirror` swaps the SPIs and keys,
// making the peer.
shell::NodeConfig esp_node(std::size_t workers, bool mirror) {
    const char* a_key = "00112233445566778899aabbccddeeff01020304";
    const char* b_key = "ffeeddccbbaa99887766554433221100a1a2a3a4";
    nlohmann::json sa = {{"suite", "aes128gcm16"},
                         {"inbound", {{"spi", mirror ? "0x2002" : "0x1001"}, {"key", mirror ? b_key : a_key}}},
                         {"outbound", {{"spi", mirror ? "0x1001" : "0x2002"}, {"key", mirror ? a_key : b_key}}}};
    const char* local = mirror ? "192.0.2.2" : "192.0.2.1";
    const char* remote = mirror ? "192.0.2.1" : "192.0.2.2";
    nlohmann::json root = {{"name", mirror ? "b" : "a"},
                           {"tun", {{"name", "mem0"}}},
                           {"transport", {{"local", local}, {"raw_protocols", {50}}}},
                           {"pool", {{"workers", workers}, {"batch", 4}, {"buffers", 64}}},
                           {"pipeline", nlohmann::json::array({{{"type", "ipsec.esp_tunnel"}, {"local", local}, {"remote", remote}, {"sa", sa}}})}};
    return shell::parse_run_config(root).nodes.at(0);
}

// Runs a single-threaded node over `inbound` (ESP from the wire) and `outbound` (from its TUN)
// until it has handled them all; returns what it wrote to its TUN and what it sent.
struct Handled {
    std::vector<test::Bytes> written, sent;
    nlohmann::json status;
};
Handled run_single(const shell::NodeConfig& config, const std::vector<test::Bytes>& inbound, const std::vector<test::Bytes>& outbound) {
    auto dev = std::make_unique<tun::MemoryDevice>("mem0", 7);
    auto tr = std::make_unique<shell::MemoryTransport>(config.transport.udp_ports, config.transport.raw_protocols);
    auto* device = dev.get();
    auto* transport = tr.get();
    for (const auto& p : inbound) transport->inject(0, p);
    for (const auto& p : outbound) device->inject(p);
    boost::asio::io_context io;
    auto node = shell::Node::start(io, config, core::null_logger(),
                                   shell::NodeParts{std::move(dev), std::move(tr), std::make_unique<RecordingHost>(), false});
    for (int i = 0; i < 500 && (device->written().size() < inbound.size() || transport->sent().size() < outbound.size()); ++i)
        io.run_for(std::chrono::milliseconds(10));
    Handled h{device->take_written(), transport->take_sent(), node->status()};
    node->stop();
    io.run_for(std::chrono::milliseconds(20));
    return h;
}

}  // namespace

TEST_CASE("two workers over ESP: both seal from their TUN queues while one opens its peer's; sequence numbers and replay window stay exact") {
    constexpr std::size_t count = 200;
    std::vector<test::Bytes> from_tun, from_peer_tun;
    for (std::size_t k = 0; k < count; ++k) {
        from_tun.push_back(inner_packet(k % 2 == 0 ? "10.1.0.1" : "10.1.0.2", "10.2.0.1", 64 + k % 300));
        from_peer_tun.push_back(inner_packet("10.2.0.1", "10.1.0.1", 64 + (k * 7) % 300));
    }
    // The peer (one thread) seals what arrives at node a.
    const auto peer_sealed = run_single(esp_node(1, true), {}, from_peer_tun);
    REQUIRE(peer_sealed.sent.size() == count);

    const auto config = esp_node(2, false);
    TwoWorkerParts two(config);
    auto& device = two.device;
    auto& transport = two.transport;
    // Two inner flows, one per TUN queue, into the one outbound SA; the peer's ESP is one flow
    // to the kernel (one peer), so it all reaches one worker's socket.
    for (std::size_t k = 0; k < count; ++k) {
        device[k % 2]->inject(from_tun[k]);
        transport[0]->inject(0, peer_sealed.sent[k]);
    }
    boost::asio::io_context io;
    auto node = shell::Node::start(io, config, core::null_logger(), two.parts());
    auto done = [&] {
        const auto st = node->status();
        return st["tun"]["tx_packets"] == count && st["transport"]["sockets"][0]["tx_packets"] == count;
    };
    for (int i = 0; i < 500 && !done(); ++i) io.run_for(std::chrono::milliseconds(10));
    CHECK(done());
    const auto st = node->status();
    const auto& esp = st["pipeline"][0]["state"];
    CHECK(esp["outbound"]["sequence"] == count);  // 1..count, each once
    CHECK(esp["outbound"]["packets"] == count);
    CHECK(esp["inbound"][0]["sequence"] == count);  // the window's top
    CHECK(esp["inbound"][0]["packets"] == count);
    CHECK(esp["inbound"][0]["replay_drops"] == 0);
    CHECK(esp["inbound"][0]["auth_failures"] == 0);
    // The AEAD ran outside the core lock (core/aead_offload.hpp): each worker sealed what its
    // queue carried; worker 0 opened every packet but the first batch's, opened in the stage,
    // whose first authenticated packet published the SA's key.
    CHECK(st["workers"][0]["aead"]["seals"] == count / 2);
    CHECK(st["workers"][1]["aead"]["seals"] == count / 2);
    CHECK(st["workers"][0]["aead"]["seal_failures"] == 0);
    CHECK(st["workers"][1]["aead"]["seal_failures"] == 0);
    CHECK(st["workers"][0]["aead"]["opens"] >= count - 4);
    CHECK(st["workers"][0]["aead"]["keys"] >= 1);
    node->stop();
    io.run_for(std::chrono::milliseconds(20));

    const auto written = device[0]->take_written();
    REQUIRE(written.size() == count);
    for (std::size_t k = 0; k < count; ++k) CHECK(test::to_hex(written[k]) == test::to_hex(from_peer_tun[k]));
    CHECK(device[1]->take_written().empty());
    // What node a sealed: every sequence number once, each queue's packets in order (RFC 4303
    // §2.2), the two queues interleaved; the peer opens all of it, in any such interleaving.
    std::vector<test::Bytes> sent;
    std::vector<std::uint32_t> seqs;
    for (int q = 0; q < 2; ++q) {
        std::uint32_t last = 0;
        for (auto& p : transport[q]->take_sent()) {
            auto ip = core::Ipv4View::check(p);
            REQUIRE(ip);
            REQUIRE(ip->payload().size() >= 8);
            const auto seq = core::load_be32(ip->payload().data() + 4);
            CHECK(seq > last);
            last = seq;
            seqs.push_back(seq);
            sent.push_back(std::move(p));
        }
    }
    std::sort(seqs.begin(), seqs.end());
    REQUIRE(seqs.size() == count);
    for (std::size_t k = 0; k < count; ++k) CHECK(seqs[k] == k + 1);
    const auto peer_opened = run_single(esp_node(1, true), sent, {});
    REQUIRE(peer_opened.written.size() == count);
    CHECK(peer_opened.status["pipeline"][0]["state"]["inbound"][0]["replay_drops"] == 0);
    CHECK(peer_opened.status["pipeline"][0]["state"]["inbound"][0]["auth_failures"] == 0);
    // Each inner packet arrived once, each flow in its order.
    for (const auto& p : from_tun) CHECK(std::count(peer_opened.written.begin(), peer_opened.written.end(), p) == 1);
    // One worker: the stages do the AEAD themselves.
    CHECK(peer_opened.status["workers"][0]["aead"]["opens"] == 0);
    CHECK(peer_sealed.status["workers"][0]["aead"]["seals"] == 0);
}

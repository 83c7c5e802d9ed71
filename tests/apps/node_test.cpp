// SPDX-License-Identifier: MIT
// The shell itself, in process: a whole node (stage factory, pipeline, the Asio loops over
// readiness, the timer, status) runs over tun::MemoryDevice, MemoryTransport and a recording
// HostNetwork, with no root and no kernel device.
#include <doctest/doctest.h>

#include <cerrno>
#include <chrono>
#include <functional>
#include <memory>
#include <vector>

#include <boost/asio/io_context.hpp>

#include "apps/shell/memory_transport.hpp"
#include "apps/shell/node.hpp"
#include "apps/shell/node_config.hpp"
#include "core/ipv4.hpp"
#include "core/logger.hpp"
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

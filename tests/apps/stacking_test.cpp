// SPDX-License-Identifier: MIT
// The real stages compose in any order: for every permutation of IP-in-IP, ESP, UDP
// encapsulation and a second IP-in-IP, a packet encapsulated by one pipeline and
// decapsulated by the mirrored peer pipeline comes back byte for byte, in the same buffer,
// at the same address (no stage moved or reallocated the payload). Between the two the
// packet crosses a "wire" that keeps nothing but the bytes, as the transport does, so no
// metadata can carry what the headers do not. nat.udp_encap is meaningful directly below ESP
// (its SA then asks for UDP); anywhere else it must leave packets alone.
#include <doctest/doctest.h>

#include <algorithm>
#include <array>
#include <memory>
#include <string>
#include <vector>

#include "core/buffer_pool.hpp"
#include "core/ipv4.hpp"
#include "core/pipeline.hpp"
#include "core/udp.hpp"
#include "crypto/random.hpp"
#include "ipsec/esp_tunnel_stage.hpp"
#include "ipsec/sa.hpp"
#include "mip/ip_in_ip_stage.hpp"
#include "nat/udp_encap_stage.hpp"
#include "tests/support/hex.hpp"
#include "tests/support/packets.hpp"

using namespace mipsec;

namespace {

enum class Kind { Ipip, Esp, Udp, OuterIpip };

core::Ipv4Address addr(const char* s) { return *core::Ipv4Address::parse(s); }

std::unique_ptr<core::Stage> make(Kind k, bool left, crypto::Random& random, const crypto::SecretBytes& k1,
                                  const crypto::SecretBytes& k2, bool esp_in_udp = false) {
    auto a = left ? addr("192.0.2.1") : addr("192.0.2.2");
    auto b = left ? addr("192.0.2.2") : addr("192.0.2.1");
    switch (k) {
        case Kind::Ipip: return std::make_unique<mip::IpInIpStage>(mip::IpInIpStage::Config{a, b});
        case Kind::OuterIpip:
            return std::make_unique<mip::IpInIpStage>(
                mip::IpInIpStage::Config{left ? addr("198.51.100.1") : addr("198.51.100.2"), left ? addr("198.51.100.2") : addr("198.51.100.1")});
        case Kind::Udp: return std::make_unique<nat::UdpEncapStage>(nat::UdpEncapStage::Config{.keepalive = core::Duration::zero()});
        case Kind::Esp: {
            ipsec::EspTunnelStage::Config cfg{left ? addr("203.0.113.1") : addr("203.0.113.2"), left ? addr("203.0.113.2") : addr("203.0.113.1")};
            cfg.udp_encapsulation = esp_in_udp;
            auto esp = std::make_unique<ipsec::EspTunnelStage>(cfg);
            ipsec::Sa::Config in{.spi = left ? 0x1001u : 0x2002u, .suite = ipsec::EspSuite::AesGcm128};
            ipsec::Sa::Config out{.spi = left ? 0x2002u : 0x1001u, .suite = ipsec::EspSuite::AesGcm128};
            auto now = core::TimePoint{};
            REQUIRE(esp->install(std::move(*ipsec::Sa::create(ipsec::Sa::Direction::Inbound, in, left ? k1 : k2, random, now)),
                                 std::move(*ipsec::Sa::create(ipsec::Sa::Direction::Outbound, out, left ? k2 : k1, random, now))));
            return esp;
        }
    }
    return nullptr;
}

// A UDP packet 10.1.0.1 -> 10.2.0.1 with DF set, `len` bytes, a payload pattern from `seed`.
test::Bytes inner_packet(std::size_t len, std::uint8_t seed) {
    test::Bytes inner(len);
    core::Ipv4Header h;
    h.total_length = static_cast<std::uint16_t>(inner.size());
    h.protocol = core::ip_protocol::udp;
    h.flags_fragment = core::Ipv4View::flag_df;
    h.source = addr("10.1.0.1");
    h.destination = addr("10.2.0.1");
    h.emit(inner);
    for (std::size_t i = 20; i < inner.size(); ++i) inner[i] = static_cast<std::uint8_t>(i * 7 + seed);
    return inner;
}

const char* name(Kind k) {
    switch (k) {
        case Kind::Ipip: return "mip.ipip";
        case Kind::Esp: return "ipsec.esp_tunnel";
        case Kind::Udp: return "nat.udp_encap";
        case Kind::OuterIpip: return "mip.ipip(outer)";
    }
    return "?";
}

}  // namespace

TEST_CASE("every order of real stages round-trips through the mirrored peer, in place") {
    crypto::KeystreamRandom random;
    crypto::SecretBytes k1(20), k2(20);
    random.fill(k1.mutable_span());
    random.fill(k2.mutable_span());
    std::array<Kind, 4> order = {Kind::Ipip, Kind::Esp, Kind::Udp, Kind::OuterIpip};
    std::sort(order.begin(), order.end());
    int permutations = 0;
    int udp_wrapped = 0;
    do {
        std::string label;
        std::vector<std::unique_ptr<core::Stage>> tx_stages, rx_stages;
        const bool udp_below_esp = std::adjacent_find(order.begin(), order.end(), [](Kind a, Kind b) {
                                       return a == Kind::Esp && b == Kind::Udp;
                                   }) != order.end();
        for (auto k : order) {
            label += std::string(label.empty() ? "" : " > ") + name(k);
            tx_stages.push_back(make(k, true, random, k1, k2, udp_below_esp));
            rx_stages.push_back(make(k, false, random, k1, k2, udp_below_esp));
        }
        CAPTURE(label);
        core::BufferPool pool(4, 2048);
        core::Pipeline tx(std::move(tx_stages), pool, core::null_logger());
        core::Pipeline rx(std::move(rx_stages), pool, core::null_logger());
        for (int round = 0; round < 3; ++round) {
            const auto inner = inner_packet(200 + 37 * static_cast<std::size_t>(round), static_cast<std::uint8_t>(round));
            auto buf = test::load(pool, inner, tx.headroom());
            const auto* block = buf.block();
            const auto* payload = buf.data();
            auto out = tx.encapsulate(buf);
            CAPTURE(core::to_string(out.reason));
            REQUIRE(out.passed());
            CHECK(buf.size() > inner.size());
            // Every request one layer left for the next was taken by it.
            CHECK_FALSE(buf.meta().esp_wants_udp);
            if (udp_below_esp) {
                // Somewhere in the outer packet an ESP packet rides in UDP 4500.
                CHECK(tx.counters(static_cast<std::size_t>(std::find(order.begin(), order.end(), Kind::Udp) - order.begin())).encapsulated > 0);
            }
            // The wire: bytes only.
            buf.meta() = {};
            auto in = rx.decapsulate(buf);
            CAPTURE(core::to_string(in.reason));
            REQUIRE(in.passed());
            CHECK(buf.block() == block);
            CHECK(buf.data() == payload);
            CHECK(test::to_hex(buf.bytes()) == test::to_hex(inner));
        }
        if (udp_below_esp) ++udp_wrapped;
        ++permutations;
    } while (std::next_permutation(order.begin(), order.end()));
    CHECK(permutations == 24);
    CHECK(udp_wrapped == 6);  // ESP > UDP as one unit, in each of 3! orders of the rest
}

TEST_CASE("an ESP SA that wants UDP with no nat.udp_encap directly below is a counted drop, not plain ESP") {
    crypto::KeystreamRandom random;
    crypto::SecretBytes k1(20), k2(20);
    random.fill(k1.mutable_span());
    random.fill(k2.mutable_span());
    for (auto order : {std::vector{Kind::Esp}, std::vector{Kind::Esp, Kind::Ipip, Kind::Udp}}) {
        std::vector<std::unique_ptr<core::Stage>> stages;
        for (auto k : order) stages.push_back(make(k, true, random, k1, k2, true));
        core::BufferPool pool(2, 2048);
        core::Pipeline tx(std::move(stages), pool, core::null_logger());
        const auto inner = inner_packet(60, 0);
        auto buf = test::load(pool, inner, tx.headroom());
        auto v = tx.encapsulate(buf);
        CHECK(v.reason == core::DropReason::UdpEncapMissing);
        CHECK(tx.counters(tx.size() - 1).drops[static_cast<std::size_t>(core::DropReason::UdpEncapMissing)] == 1);
    }
}

TEST_CASE("two ESP-in-UDP layers: a NAT rebinding on the outer path moves only the outer layer's peer") {
    crypto::KeystreamRandom random;
    crypto::SecretBytes keys[4] = {crypto::SecretBytes(20), crypto::SecretBytes(20), crypto::SecretBytes(20), crypto::SecretBytes(20)};
    for (auto& k : keys) random.fill(k.mutable_span());
    auto esp = [&](bool left, const char* a, const char* b, std::uint32_t spi_a, std::uint32_t spi_b, int key) {
        ipsec::EspTunnelStage::Config cfg{addr(left ? a : b), addr(left ? b : a)};
        cfg.udp_encapsulation = true;
        auto stage = std::make_unique<ipsec::EspTunnelStage>(cfg);
        ipsec::Sa::Config in{.spi = left ? spi_a : spi_b, .suite = ipsec::EspSuite::AesGcm128};
        ipsec::Sa::Config out{.spi = left ? spi_b : spi_a, .suite = ipsec::EspSuite::AesGcm128};
        const auto& kin = keys[key + (left ? 0 : 1)];
        const auto& kout = keys[key + (left ? 1 : 0)];
        REQUIRE(stage->install(std::move(*ipsec::Sa::create(ipsec::Sa::Direction::Inbound, in, kin, random, {})),
                               std::move(*ipsec::Sa::create(ipsec::Sa::Direction::Outbound, out, kout, random, {}))));
        return stage;
    };
    auto udp = [] { return std::make_unique<nat::UdpEncapStage>(nat::UdpEncapStage::Config{.keepalive = core::Duration::zero()}); };
    auto build = [&](bool left) {
        std::vector<std::unique_ptr<core::Stage>> s;
        s.push_back(esp(left, "203.0.113.1", "203.0.113.2", 0x1001, 0x2002, 0));
        s.push_back(udp());
        s.push_back(esp(left, "198.51.100.1", "198.51.100.2", 0x3003, 0x4004, 2));
        s.push_back(udp());
        return s;
    };
    core::BufferPool pool(4, 2048);
    core::Pipeline tx(build(true), pool, core::null_logger());
    core::Pipeline rx(build(false), pool, core::null_logger());
    auto& rx_inner_udp = static_cast<nat::UdpEncapStage&>(rx.stage(1));
    auto& rx_outer_udp = static_cast<nat::UdpEncapStage&>(rx.stage(3));
    for (std::uint16_t nat_port : {4500, 40000}) {
        CAPTURE(nat_port);
        const auto inner = inner_packet(100, 0);
        auto buf = test::load(pool, inner, tx.headroom());
        REQUIRE(tx.encapsulate(buf).passed());
        // A NAT rebinds the outermost UDP source port; the inner layer's UDP is inside ESP.
        auto ip = core::Ipv4MutView::check(buf.bytes());
        REQUIRE(ip);
        auto u = core::UdpMutView::check(ip->payload());
        REQUIRE(u);
        CHECK(u->destination_port() == 4500);
        u->set_source_port(nat_port);
        buf.meta() = {};
        REQUIRE(rx.decapsulate(buf).passed());
        CHECK(test::to_hex(buf.bytes()) == test::to_hex(inner));
        CHECK(rx_outer_udp.peer() == core::Endpoint{addr("198.51.100.1"), nat_port});
        CHECK(rx_inner_udp.peer() == core::Endpoint{addr("203.0.113.1"), 4500});
    }
}

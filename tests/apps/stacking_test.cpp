// SPDX-License-Identifier: MIT
// The real stages compose in any order: for every permutation of IP-in-IP, ESP, UDP
// encapsulation and a second IP-in-IP, a packet encapsulated by one pipeline and
// decapsulated by the mirrored peer pipeline comes back byte for byte, in the same buffer,
// at the same address (no stage moved or reallocated the payload).
#include <doctest/doctest.h>

#include <algorithm>
#include <array>
#include <memory>
#include <string>
#include <vector>

#include "core/buffer_pool.hpp"
#include "core/ipv4.hpp"
#include "core/pipeline.hpp"
#include "crypto/random.hpp"
#include "ipsec/esp_tunnel_stage.hpp"
#include "ipsec/sa.hpp"
#include "mip/ip_in_ip_stage.hpp"
#include "nat/udp_encap_stage.hpp"
#include "tests/support/hex.hpp"

using namespace mipsec;

namespace {

enum class Kind { Ipip, Esp, Udp, OuterIpip };

core::Ipv4Address addr(const char* s) { return *core::Ipv4Address::parse(s); }

std::unique_ptr<core::Stage> make(Kind k, bool left, crypto::Random& random, const crypto::SecretBytes& k1,
                                  const crypto::SecretBytes& k2) {
    auto a = left ? addr("192.0.2.1") : addr("192.0.2.2");
    auto b = left ? addr("192.0.2.2") : addr("192.0.2.1");
    switch (k) {
        case Kind::Ipip: return std::make_unique<mip::IpInIpStage>(mip::IpInIpStage::Config{a, b});
        case Kind::OuterIpip:
            return std::make_unique<mip::IpInIpStage>(
                mip::IpInIpStage::Config{left ? addr("198.51.100.1") : addr("198.51.100.2"), left ? addr("198.51.100.2") : addr("198.51.100.1")});
        case Kind::Udp: return std::make_unique<nat::UdpEncapStage>(nat::UdpEncapStage::Config{.keepalive = core::Duration::zero()});
        case Kind::Esp: {
            auto esp = std::make_unique<ipsec::EspTunnelStage>(ipsec::EspTunnelStage::Config{left ? addr("203.0.113.1") : addr("203.0.113.2"),
                                                                                             left ? addr("203.0.113.2") : addr("203.0.113.1")});
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
    do {
        std::string label;
        std::vector<std::unique_ptr<core::Stage>> tx_stages, rx_stages;
        for (auto k : order) {
            label += std::string(label.empty() ? "" : " > ") + name(k);
            tx_stages.push_back(make(k, true, random, k1, k2));
            rx_stages.push_back(make(k, false, random, k1, k2));
        }
        CAPTURE(label);
        core::BufferPool pool(4, 2048);
        core::Pipeline tx(std::move(tx_stages), pool, core::null_logger());
        core::Pipeline rx(std::move(rx_stages), pool, core::null_logger());
        for (int round = 0; round < 3; ++round) {
            auto buf = pool.acquire(tx.headroom());
            test::Bytes inner(200 + 37 * round);
            core::Ipv4Header h;
            h.total_length = static_cast<std::uint16_t>(inner.size());
            h.protocol = core::ip_protocol::udp;
            h.flags_fragment = core::Ipv4View::flag_df;
            h.source = addr("10.1.0.1");
            h.destination = addr("10.2.0.1");
            h.emit(inner);
            for (std::size_t i = 20; i < inner.size(); ++i) inner[i] = static_cast<std::uint8_t>(i * 7 + round);
            REQUIRE(buf.resize(inner.size()));
            std::copy(inner.begin(), inner.end(), buf.data());
            const auto* block = buf.block();
            const auto* payload = buf.data();
            auto out = tx.encapsulate(buf);
            CAPTURE(core::to_string(out.reason));
            REQUIRE(out.passed());
            CHECK(buf.size() > inner.size());
            auto in = rx.decapsulate(buf);
            CAPTURE(core::to_string(in.reason));
            REQUIRE(in.passed());
            CHECK(buf.block() == block);
            CHECK(buf.data() == payload);
            CHECK(test::to_hex(buf.bytes()) == test::to_hex(inner));
        }
        ++permutations;
    } while (std::next_permutation(order.begin(), order.end()));
    CHECK(permutations == 24);
}

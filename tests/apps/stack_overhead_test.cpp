// SPDX-License-Identifier: MIT
// Each stage's overhead() and least_overhead() (RFC 5265 §5.2), checked against what the stage
// really adds to packets, not only against the table.
#include <doctest/doctest.h>

#include <algorithm>
#include <string>

#include "apps/shell/node_config.hpp"
#include "core/buffer_pool.hpp"
#include "core/ipv4.hpp"
#include "core/udp.hpp"
#include "crypto/random.hpp"
#include "ipsec/esp_tunnel_stage.hpp"
#include "mip/mobile_node_stage.hpp"
#include "mip/tunnel_encap.hpp"
#include "nat/udp_encap_stage.hpp"
#include "tests/mip/mobile_ip_world.hpp"
#include "tests/support/fake_stage_context.hpp"
#include "tests/support/packets.hpp"

using namespace mipsec;
using namespace std::chrono_literals;
using ipsec::EspSuite;
using ipsec::EspTunnelStage;
using ipsec::Sa;

namespace {

const auto gw_a = *core::Ipv4Address::parse("192.0.2.1");
const auto gw_b = *core::Ipv4Address::parse("198.51.100.2");

ipsec::Sa outbound_sa(EspSuite suite, crypto::Random& random, core::TimePoint now) {
    crypto::SecretBytes keymat(ipsec::keymat_len(suite));
    for (std::size_t i = 0; i < keymat.size(); ++i) keymat.mutable_span()[i] = static_cast<std::uint8_t>(i * 31 + 5);
    auto sa = Sa::create(Sa::Direction::Outbound, {.spi = 0x1001, .suite = suite}, keymat, random, now);
    REQUIRE(sa);
    return std::move(*sa);
}

}  // namespace

TEST_CASE("ESP overhead: the outbound SA's suite with padding at its worst, exactly what the longest packets grow by") {
    struct Row {
        const char* name;
        EspSuite suite;
        std::size_t overhead;  // 20 outer + 8 SPI/seq + IV + worst padding + 2 + ICV
    };
    const Row rows[] = {
        {"aes128gcm16", EspSuite::AesGcm128, 20 + 8 + 8 + 3 + 2 + 16},
        {"chacha20poly1305", EspSuite::ChaCha20Poly1305, 20 + 8 + 8 + 3 + 2 + 16},
        {"aes128-sha1", EspSuite::AesCbc128HmacSha1, 20 + 8 + 16 + 15 + 2 + 12},
        {"aes256-sha256", EspSuite::AesCbc256HmacSha256, 20 + 8 + 16 + 15 + 2 + 16},
    };
    for (const auto& row : rows) {
        CAPTURE(row.name);
        crypto::KeystreamRandom random;
        core::BufferPool pool(8, 2048);
        test::FakeStageContext ctx(pool);
        EspTunnelStage esp({gw_a, gw_b});
        // Before any SA: all any suite may add.
        CHECK(esp.overhead() == esp.headroom() + esp.tailroom());
        REQUIRE(esp.install_outbound(outbound_sa(row.suite, random, ctx.now())));
        CHECK(esp.overhead() == row.overhead);
        // Every length over one cipher block: no packet grows by more, one grows by exactly that.
        std::size_t most = 0;
        for (std::size_t len = 1000; len < 1000 + 16; ++len) {
            auto buf = test::load(pool, test::echo_packet(gw_a, gw_b, 1, len - 28), 128);
            REQUIRE(esp.encapsulate(buf, ctx).passed());
            most = std::max(most, buf.size() - len);
        }
        CHECK(most == row.overhead);
        // A UDP-encapsulated SA (RFC 3948): the nat.udp_encap below adds 8 bytes, counted here.
        esp.set_udp_encapsulation(true);
        CHECK(esp.overhead() == row.overhead + core::UdpHeader::len);
    }
}

TEST_CASE("nat.udp_encap counts nothing itself, even once encapsulating: the ESP layer above counts its header") {
    core::BufferPool pool(8, 2048);
    test::FakeStageContext ctx(pool);
    nat::UdpEncapStage encap({});
    auto buf = test::load(pool, test::echo_packet(gw_a, gw_b), 64);
    core::Ipv4MutView::check(buf.bytes())->set_protocol(core::ip_protocol::esp);
    buf.meta().esp_wants_udp = true;
    REQUIRE(encap.encapsulate(buf, ctx).passed());
    CHECK(encap.overhead() == 0);
    CHECK(encap.least_overhead() == encap.headroom());
}

TEST_CASE("mip.mobile_node overhead: what its registration tunnels with; least overhead as configured") {
    crypto::KeystreamRandom random;
    const test::Bytes key = test::from_hex("00112233445566778899aabbccddeeff");
    auto config = [&](mip::MobileNode::UdpTunnelling udp) {
        return test::mn_stage_config(test::ip("10.1.0.77"), test::ip("10.1.0.1"), key, test::ip("192.0.2.50"), udp);
    };
    SUBCASE("without detection: the tunnel it may use, and nothing idles below it") {
        mip::MobileNodeStage off(config(mip::MobileNode::UdpTunnelling::Off), random);
        CHECK(off.least_overhead() == mip::ip_in_ip_overhead);
        CHECK_FALSE(off.may_idle_layers_below());
        mip::MobileNodeStage wanted(config(mip::MobileNode::UdpTunnelling::Wanted), random);
        CHECK(wanted.least_overhead() == mip::ip_in_udp_overhead);
        CHECK(wanted.overhead() == mip::ip_in_udp_overhead);  // not registered: the most it may add
    }
    SUBCASE("with detection: mode c's IP-in-IP, and the layers below may idle") {
        auto c = config(mip::MobileNode::UdpTunnelling::Wanted);
        c.care_of_source = mip::MobileNodeStage::CareOfSource::InnerAddress;
        mip::MobileNodeStage::Config::Detection d;
        d.interfaces = {{2, "eth0"}};
        d.external_home_agent = test::ip("198.51.100.1");
        SUBCASE("foreign agents allowed (the default): mode f, nothing added") {
            c.detection = d;
            mip::MobileNodeStage imip(std::move(c), random);
            CHECK(imip.least_overhead() == 0);
            CHECK(imip.may_idle_layers_below());
        }
        SUBCASE("no foreign agents: mode c's IP-in-IP") {
            d.foreign_agents = false;
            c.detection = d;
            mip::MobileNodeStage imip(std::move(c), random);
            CHECK(imip.least_overhead() == mip::ip_in_ip_overhead);
            CHECK(imip.may_idle_layers_below());
        }
    }
}

TEST_CASE("a fixed tun.mtu is checked against the lightest stack: 1480 fits an RFC 5265 stack without foreign agents on a 1500-byte link, 1481 does not; with them (mode f) 1500 fits") {
    auto config = [](int mtu, bool foreign_agents = false) {
        auto j = nlohmann::json::parse(R"({
          "name": "mn", "tun": {"name": "mip0"}, "transport": {"local": "0.0.0.0", "udp_ports": [434, 500, 4500]},
          "pipeline": [
            {"type": "mip.mobile_node", "home_address": "10.1.0.77", "home_agent": "10.1.0.1", "spi": 400,
             "key": "00112233445566778899aabbccddeeff", "care_of": "inner_address", "udp_tunnelling": "off",
             "detection": {"interface": "lo", "external_home_agent": "198.51.100.1"}},
            {"type": "ipsec.vpn_client", "local": "198.51.100.77", "gateway": "203.0.113.1", "psk": "lab-psk-01",
             "wait_for_access_mode": true},
            {"type": "nat.udp_encap", "keepalive_s": 20},
            {"type": "mip.mobile_node", "home_address": "198.51.100.77", "home_agent": "198.51.100.1", "spi": 300,
             "key": "a0a1a2a3a4a5a6a7a8a9aaabacadaeaf", "care_of": "interface", "interface": "lo"}
          ]})");
        j["tun"]["mtu"] = mtu;
        j["pipeline"][0]["detection"]["foreign_agents"] = foreign_agents;
        return j;
    };
    auto error_of = [](const nlohmann::json& j) -> std::string {
        try {
            (void)shell::parse_run_config(j);
        } catch (const shell::ConfigError& e) {
            return e.what();
        }
        return "";
    };
    CHECK(error_of(config(1480)) == "");
    CHECK(error_of(config(1481)).find("/tun: MTU 1481 plus 20 bytes of overhead exceeds the link MTU 1500") != std::string::npos);
    CHECK(error_of(config(1500, true)) == "");
    CHECK(error_of(config(1501, true)).find("/tun: MTU 1501") != std::string::npos);
}

// SPDX-License-Identifier: MIT
// A home agent takes a new configuration while running (reload): mobile nodes added,
// removed and re-keyed, the bindings of the others untouched.
#include <doctest/doctest.h>

#include <tuple>
#include <variant>

#include "mip/home_agent.hpp"
#include "mip/home_agent_stage.hpp"
#include "mip/tunnel_encap.hpp"
#include "tests/mip/mip_test_support.hpp"
#include "tests/support/fake_stage_context.hpp"
#include "tests/support/hex.hpp"

using namespace mipsec;
using namespace mipsec::test::literals;
using namespace std::chrono_literals;
using test::ip;
using Discard = mip::HomeAgent::Discard;

namespace {

const auto key_a = "00112233445566778899aabbccddeeff"_hex;
const auto key_b = "ffeeddccbbaa99887766554433221100"_hex;
const auto key_new = "0f1e2d3c4b5a69788796a5b4c3d2e1f0"_hex;
const auto home_a = ip("10.1.0.77");
const auto home_b = ip("10.1.0.78");
const auto home_c = ip("10.1.0.79");
const auto ha_addr = ip("10.1.0.1");
const auto coa_a = ip("192.168.1.23");
const auto coa_b = ip("192.168.2.24");
const core::Duration ntp_off = std::chrono::seconds(3'900'000'000LL);

mip::HomeAgent::Config config_with(std::vector<mip::HomeAgent::MobileNodeConfig> nodes, std::uint16_t max_lifetime = 1000) {
    mip::HomeAgent::Config c;
    c.address = ha_addr;
    c.home_network = *core::Ipv4Prefix::parse("10.1.0.0/24");
    c.max_lifetime = max_lifetime;
    c.ntp_offset = ntp_off;
    c.mobile_nodes = std::move(nodes);
    return c;
}

mip::HomeAgent::Config initial() {
    std::vector<mip::HomeAgent::MobileNodeConfig> nodes;
    nodes.push_back({home_a, test::make_sa(256, key_a), ""});
    nodes.push_back({home_b, test::make_sa(257, key_b), ""});
    return config_with(std::move(nodes));
}

test::Bytes request(core::Ipv4Address home, core::Ipv4Address coa, std::uint32_t spi, const test::Bytes& key, std::uint64_t id,
                    std::uint16_t lifetime = 600) {
    mip::RegistrationRequest fixed{0x22, lifetime, home, ha_addr, coa, id};
    auto m = mip::build_request(fixed, {}, {spi, key});
    REQUIRE(m);
    return {m->bytes().begin(), m->bytes().end()};
}

mip::HomeAgent::Received from(core::Ipv4Address src) { return {src, ha_addr, 40000, 434}; }

bool authentic_reply(const mip::HomeAgent::Outcome& out, const test::Bytes& key) {
    if (!out.reply) return false;
    mip::ScannedExtensions ext;
    if (mip::scan_extensions(out.reply->bytes(), 20, mip::MessageKind::Reply, ext) || !ext.mobile_home_auth) return false;
    return mip::verify_authenticator(out.reply->bytes(), *ext.mobile_home_auth, key);
}

}  // namespace

TEST_CASE("HA reload: added, removed and re-keyed mobile nodes; the others' bindings untouched") {
    test::SeededRandom random;
    core::TimePoint now = core::TimePoint{} + 1h;
    mip::HomeAgent ha(initial(), random);
    auto ts = [&] { return mip::ntp_time(now, ntp_off); };

    REQUIRE(ha.process(request(home_a, coa_a, 256, key_a, ts()), from(coa_a), now).code == 0);
    REQUIRE(ha.process(request(home_b, coa_b, 257, key_b, ts()), from(coa_b), now).code == 0);
    const auto a_before = ha.binding(home_a);
    REQUIRE(a_before);
    REQUIRE(ha.binding(home_b));

    // A re-keyed (new SPI and key), B removed, C added.
    std::vector<mip::HomeAgent::MobileNodeConfig> nodes;
    nodes.push_back({home_a, test::make_sa(300, key_new), ""});
    nodes.push_back({home_c, test::make_sa(258, key_b), ""});
    now += 10s;
    auto changed = ha.reconfigure(config_with(std::move(nodes), 500));
    CHECK(changed.added == std::vector{home_c});
    CHECK(changed.removed == std::vector{home_b});
    CHECK(changed.rekeyed == std::vector{home_a});
    REQUIRE(changed.bindings_removed.size() == 1);
    CHECK(changed.bindings_removed[0].home_address == home_b);
    CHECK(changed.bindings_removed[0].care_of_address == coa_b);
    CHECK(ha.mobile_node_count() == 2);

    // A keeps its binding, unchanged, until it registers again.
    const auto a_after = ha.binding(home_a);
    REQUIRE(a_after);
    CHECK(a_after->care_of_address == a_before->care_of_address);
    CHECK(a_after->expires == a_before->expires);
    CHECK_FALSE(ha.binding(home_b));
    CHECK(ha.bindings().size() == 1);

    // B is no longer served at all.
    CHECK(ha.process(request(home_b, coa_b, 257, key_b, ts()), from(coa_b), now).discard == Discard::UnknownMobileNode);
    // A with its old SA: discarded (unknown SPI) without touching the binding.
    CHECK(ha.process(request(home_a, ip("192.168.9.9"), 256, key_a, ts()), from(coa_a), now).discard == Discard::UnknownSpi);
    // The new SPI with the old key fails authentication (131), answered with the new key.
    auto forged = ha.process(request(home_a, ip("192.168.9.9"), 300, key_a, ts()), from(coa_a), now);
    CHECK(forged.code == mip::reply_code::ha_mn_auth_failed);
    CHECK(authentic_reply(forged, key_new));
    CHECK(ha.binding(home_a)->care_of_address == coa_a);
    // With the new key: accepted, under the new max_lifetime.
    now += 1s;
    auto renewed = ha.process(request(home_a, coa_a, 300, key_new, ts()), from(coa_a), now);
    CHECK(renewed.code == 0);
    CHECK(authentic_reply(renewed, key_new));
    REQUIRE(renewed.reply);
    CHECK(ha.binding(home_a)->expires == now + 500s);
    // C registers from its first request.
    CHECK(ha.process(request(home_c, coa_b, 258, key_b, ts()), from(coa_b), now).code == 0);
    CHECK(ha.bindings().size() == 2);
}

TEST_CASE("HA reload with the same mobile nodes changes nothing, and replay protection survives a re-key") {
    test::SeededRandom random;
    core::TimePoint now = core::TimePoint{} + 1h;
    mip::HomeAgent ha(initial(), random);
    const auto id = mip::ntp_time(now, ntp_off);
    REQUIRE(ha.process(request(home_a, coa_a, 256, key_a, id), from(coa_a), now).code == 0);

    auto same = ha.reconfigure(initial());
    CHECK(same.added.empty());
    CHECK(same.removed.empty());
    CHECK(same.rekeyed.empty());
    CHECK(ha.binding(home_a));

    // A key change alone is a re-key; an identification not newer than the last accepted one
    // is still refused (133) under the new key (from another care-of address: the same one
    // would be a retransmission, answered again).
    std::vector<mip::HomeAgent::MobileNodeConfig> nodes;
    nodes.push_back({home_a, test::make_sa(256, key_new), ""});
    nodes.push_back({home_b, test::make_sa(257, key_b), ""});
    auto rekeyed = ha.reconfigure(config_with(std::move(nodes)));
    CHECK(rekeyed.rekeyed == std::vector{home_a});
    CHECK(ha.process(request(home_a, ip("192.168.7.7"), 256, key_new, id), from(coa_a), now).code == mip::reply_code::ha_identification_mismatch);
    CHECK(ha.binding(home_a)->care_of_address == coa_a);
}

TEST_CASE("HA stage reload: a removed mobile node's binding is announced gone at the next poll, counted") {
    test::SeededRandom random;
    core::BufferPool pool(16, 2048);
    test::FakeStageContext ctx(pool);
    mip::HomeAgentStage::Config cfg;
    cfg.agent = initial();
    mip::HomeAgentStage stage(std::move(cfg), random);
    for (auto [home, coa, spi, key] : {std::tuple{home_a, coa_a, 256u, key_a}, std::tuple{home_b, coa_b, 257u, key_b}}) {
        auto packet = pool.acquire(128);
        REQUIRE(mip::emit_udp_packet(packet, {coa, 40000}, {ha_addr, 434}, 64,
                                     request(home, coa, spi, key, mip::ntp_time(ctx.now(), ntp_off))));
        REQUIRE(stage.decapsulate(packet, ctx).action == core::Action::Consumed);
    }
    REQUIRE(stage.agent().bindings().size() == 2);
    ctx.events.clear();

    mip::HomeAgentStage::Config next;
    next.agent = initial();
    next.agent.mobile_nodes.pop_back();  // B goes
    next.tunnel_ttl = 33;
    auto changed = stage.reconfigure(std::move(next));
    CHECK(changed.removed == std::vector{home_b});
    CHECK(ctx.events.empty());  // nothing raised until poll
    CHECK(stage.agent().binding(home_a));
    stage.poll(ctx);
    REQUIRE(ctx.events.size() == 1);
    const auto* ev = std::get_if<core::RegistrationChanged>(&ctx.events[0]);
    REQUIRE(ev);
    CHECK(ev->home_address == home_b);
    CHECK_FALSE(ev->registered);
    CHECK(stage.counters().bindings_removed_by_reload == 1);
    stage.poll(ctx);
    CHECK(ctx.events.size() == 1);  // announced once
}

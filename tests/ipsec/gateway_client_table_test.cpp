// SPDX-License-Identifier: MIT
// The gateway's client table: its three indices (owner, inner address, inbound SPI) and its
// timer queue stay consistent through install, rekey, removal and re-authentication hand-over.
#include "ipsec/gateway_client_table.hpp"

#include <doctest/doctest.h>

#include <algorithm>
#include <vector>

using namespace mipsec;
using ipsec::GatewayClientTable;

namespace {

const auto gw = *core::Ipv4Address::parse("198.51.100.2");
const core::TimePoint t0 = core::TimePoint{} + std::chrono::hours(1);

core::Ipv4Address vip(std::uint32_t n) { return core::Ipv4Address{(*core::Ipv4Address::parse("10.99.100.0")).value + n}; }

// What VpnGatewayStage does on Mode Config and on the first ChildSaInstalled.
ipsec::GatewayClient& admit(GatewayClientTable& t, std::uint64_t owner, core::Ipv4Address inner, std::uint32_t spi) {
    auto& c = t.entry(owner);
    c.inner = inner;
    if (!c.esp) c.esp = std::make_unique<ipsec::EspTunnelStage>(ipsec::EspTunnelStage::Config{gw, core::Ipv4Address{0xCB007105}});
    t.add_spi(owner, spi);
    return c;
}

}  // namespace

TEST_CASE("client table: an installed SA indexes its SPI and routes the client's inner address") {
    GatewayClientTable t;
    t.entry(7).inner = vip(1);  // Mode Config done, no SA yet: no route
    CHECK(t.by_inner(vip(1)) == nullptr);
    CHECK(t.check());
    admit(t, 7, vip(1), 0x1000);
    CHECK(t.size() == 1);
    REQUIRE(t.by_inner(vip(1)) != nullptr);
    CHECK(t.by_inner(vip(1))->owner == 7);
    REQUIRE(t.by_spi(0x1000) != nullptr);
    CHECK(t.by_spi(0x1000)->owner == 7);
    CHECK(t.by_spi(0x2000) == nullptr);
    CHECK(t.by_inner(vip(2)) == nullptr);
    CHECK(t.check());
}

TEST_CASE("client table: a rekey adds the new SPI before the old one goes; the last SA gone ends the route") {
    GatewayClientTable t;
    admit(t, 7, vip(1), 0x1000);
    t.add_spi(7, 0x1001);  // make-before-break
    CHECK(t.find(7)->spis == std::vector<std::uint32_t>{0x1000, 0x1001});
    CHECK(t.remove_spi(0x1000) == std::optional<std::uint64_t>{7});
    CHECK(t.by_spi(0x1000) == nullptr);
    CHECK(t.by_inner(vip(1))->owner == 7);
    CHECK(t.check());
    CHECK_FALSE(t.remove_spi(0x1000));  // already gone
    CHECK(t.remove_spi(0x1001) == std::optional<std::uint64_t>{7});
    CHECK(t.by_inner(vip(1)) == nullptr);  // nothing to protect its traffic with
    CHECK(t.find(7) != nullptr);           // the entry itself stays with its session
    CHECK(t.check());
}

TEST_CASE("client table: erasing a client leaves no SPI, route or timer behind") {
    GatewayClientTable t;
    admit(t, 7, vip(1), 0x1000);
    t.add_spi(7, 0x1001);
    admit(t, 8, vip(2), 0x2000);
    t.schedule(7, t0 + std::chrono::seconds(10));
    t.schedule(8, t0 + std::chrono::seconds(20));
    t.erase(7);
    CHECK(t.size() == 1);
    CHECK(t.by_spi(0x1000) == nullptr);
    CHECK(t.by_spi(0x1001) == nullptr);
    CHECK(t.by_inner(vip(1)) == nullptr);
    CHECK(t.by_inner(vip(2))->owner == 8);
    CHECK(t.timer_count() == 1);
    CHECK(t.next_deadline() == t0 + std::chrono::seconds(20));
    CHECK(t.check());
    t.erase(99);  // unknown: nothing happens
    CHECK(t.check());
}

TEST_CASE("client table: hand-over to a re-authenticated session moves SAs, route and timer") {
    GatewayClientTable t;
    auto& old = admit(t, 7, vip(1), 0x1000);
    old.remote = {*core::Ipv4Address::parse("203.0.113.5"), 4500};
    old.installs = 2;
    t.schedule(7, t0 + std::chrono::seconds(30));
    t.entry(9).inner = vip(1);  // the new session got the same lease, no CHILD_SA yet
    CHECK(t.hand_over(7, 9) == GatewayClientTable::HandOver::Moved);
    const auto* heir = t.find(9);
    REQUIRE(heir != nullptr);
    CHECK(heir->esp != nullptr);
    CHECK(heir->spis == std::vector<std::uint32_t>{0x1000});
    CHECK(heir->remote.port == 4500);
    CHECK(heir->installs == 2);
    CHECK(t.by_spi(0x1000)->owner == 9);
    CHECK(t.by_inner(vip(1))->owner == 9);
    CHECK(t.find(7)->spis.empty());
    CHECK_FALSE(t.find(7)->orphaned);
    CHECK(t.next_deadline() == t0 + std::chrono::seconds(30));
    CHECK(t.pop_due(t0 + std::chrono::seconds(30)) == std::optional<std::uint64_t>{9});
    CHECK(t.check());
    // The old session's end then removes only its empty entry.
    t.erase(7);
    CHECK(t.by_inner(vip(1))->owner == 9);
    CHECK(t.by_spi(0x1000)->owner == 9);
    CHECK(t.check());
    CHECK(t.hand_over(7, 9) == GatewayClientTable::HandOver::None);
}

TEST_CASE("client table: a successor with SAs of its own leaves the old ones orphaned where they are") {
    GatewayClientTable t;
    admit(t, 7, vip(1), 0x1000);
    admit(t, 9, vip(1), 0x1100);  // the new session's CHILD_SA: the route moves to it
    CHECK(t.by_inner(vip(1))->owner == 9);
    CHECK(t.hand_over(7, 9) == GatewayClientTable::HandOver::Kept);
    CHECK(t.find(7)->orphaned);
    CHECK(t.by_spi(0x1000)->owner == 7);  // the client may still send on it
    CHECK(t.by_spi(0x1100)->owner == 9);
    CHECK(t.check());
    // Its last SA deleted, the orphan goes without taking the heir's route.
    CHECK(t.remove_spi(0x1000) == std::optional<std::uint64_t>{7});
    t.erase(7);
    CHECK(t.by_inner(vip(1))->owner == 9);
    CHECK(t.check());
}

TEST_CASE("client table: when the routing entry loses its SAs the route goes to the client's other session, not nowhere") {
    // Re-authentication: the new session (8) holds the address and an SA; a Quick Mode the old
    // session (7) finished late took the route back to 7.
    GatewayClientTable t;
    admit(t, 7, vip(1), 0x1000);
    admit(t, 8, vip(1), 0x2000);
    CHECK(t.by_inner(vip(1))->owner == 8);
    t.add_spi(7, 0x1001);
    CHECK(t.by_inner(vip(1))->owner == 7);
    CHECK(t.check());
    SUBCASE("the old session's SAs are deleted one by one") {
        CHECK(t.remove_spi(0x1000) == std::optional<std::uint64_t>{7});
        CHECK(t.by_inner(vip(1))->owner == 7);
        CHECK(t.remove_spi(0x1001) == std::optional<std::uint64_t>{7});
        REQUIRE(t.by_inner(vip(1)) != nullptr);
        CHECK(t.by_inner(vip(1))->owner == 8);
        CHECK(t.check());
    }
    SUBCASE("the old session's entry is erased") {
        t.erase(7);
        REQUIRE(t.by_inner(vip(1)) != nullptr);
        CHECK(t.by_inner(vip(1))->owner == 8);
        CHECK(t.check());
    }
    SUBCASE("another client's address is never taken") {
        admit(t, 9, vip(2), 0x3000);
        t.erase(8);
        t.erase(7);
        CHECK(t.by_inner(vip(1)) == nullptr);
        CHECK(t.by_inner(vip(2))->owner == 9);
        CHECK(t.check());
    }
}

TEST_CASE("client table: with many clients only the expired deadlines come due") {
    GatewayClientTable t;
    constexpr std::uint64_t n = 5000;
    for (std::uint64_t owner = 1; owner <= n; ++owner) {
        admit(t, owner, vip(static_cast<std::uint32_t>(owner)), static_cast<std::uint32_t>(0x10000 + owner));
        t.schedule(owner, t0 + std::chrono::seconds(owner));  // one second apart
    }
    CHECK(t.check());
    std::vector<std::uint64_t> due;
    while (auto owner = t.pop_due(t0 + std::chrono::milliseconds(10500))) due.push_back(*owner);
    CHECK(due == std::vector<std::uint64_t>{1, 2, 3, 4, 5, 6, 7, 8, 9, 10});
    CHECK(t.next_deadline() == t0 + std::chrono::seconds(11));
    // Removing and rescheduling clients keeps the rest in order.
    for (std::uint64_t owner = 11; owner <= 20; ++owner) t.erase(owner);
    t.schedule(4000, t0 + std::chrono::seconds(12));
    CHECK(t.pop_due(t0 + std::chrono::seconds(20)) == std::optional<std::uint64_t>{4000});
    CHECK_FALSE(t.pop_due(t0 + std::chrono::seconds(20)));
    CHECK(t.next_deadline() == t0 + std::chrono::seconds(21));
    CHECK(t.size() == n - 10);
}

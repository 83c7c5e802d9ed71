// SPDX-License-Identifier: MIT
// ChildSaSet without crypto: make-before-break after our rekey, the peer's rekey judged by
// selectors, rekey collisions decided by the lowest nonce, abandoned rekeys, lifetimes and
// graces, adoption of an ended IKE SA's CHILD_SAs.
#include <doctest/doctest.h>

#include "ipsec/ike/child_sa_set.hpp"

using namespace mipsec;
using namespace mipsec::ipsec::ike;
using std::chrono::seconds;

namespace {

const core::Ipv4Prefix ours = *core::Ipv4Prefix::parse("10.99.100.1/32");
const core::Ipv4Prefix theirs = *core::Ipv4Prefix::parse("10.99.1.0/24");
constexpr core::Duration window = seconds(8);  // two retransmission timeouts

ChildSa sa(std::uint32_t spi_in, bool initiator, std::uint8_t nonce, core::Duration soft = seconds(0),
           core::Duration hard = seconds(3960)) {
    ChildSa c;
    c.spi_in = spi_in;
    c.spi_out = spi_in + 0x10000;
    c.local_ts = ours;
    c.remote_ts = theirs;
    c.initiator = initiator;
    c.collision_nonce = {nonce};
    c.soft_lifetime = soft;
    c.hard_lifetime = hard;
    return c;
}

}  // namespace

TEST_CASE("ChildSaSet: our rekey is make-before-break; the old SA goes after the grace") {
    ChildSaSet set;
    const core::TimePoint t0{};
    auto first = set.install(sa(0x1000, true, 1, seconds(3600)), std::nullopt, t0, window);
    CHECK_FALSE(first.replaces);
    CHECK(set.has_live());
    auto due = set.due(t0 + seconds(3600));
    REQUIRE(due.to_rekey.size() == 1);
    CHECK(due.to_rekey[0] == 0x1000);
    set.rekey_started(0x1000);
    CHECK(set.rekeying(0x1000));
    CHECK(set.due(t0 + seconds(3600)).to_rekey.empty());  // once is enough

    const auto t1 = t0 + seconds(3601);
    auto second = set.install(sa(0x2000, true, 2, seconds(3600)), 0x1000, t1, window);
    CHECK(second.replaces == 0x1000u);
    CHECK_FALSE(second.inbound_only);
    CHECK_FALSE(second.collision);
    CHECK_FALSE(set.rekeying(0x1000));
    REQUIRE(set.find(0x1000));
    CHECK(set.find(0x1000)->superseded);
    CHECK(set.find(0x1000)->delete_at == t1 + ChildSaSet::rekeyed_grace);
    CHECK(set.find(0x2000)->installed_at == t1);
    // The old SA is neither rekeyed again nor kept past the grace.
    due = set.due(t1 + ChildSaSet::rekeyed_grace);
    REQUIRE(due.expired.size() == 1);
    CHECK(due.expired[0] == 0x1000);
    CHECK(due.to_rekey.empty());
    CHECK(set.remove(0x1000));
    CHECK_FALSE(set.remove(0x1000));
    CHECK(set.all().size() == 1);
}

TEST_CASE("ChildSaSet: a Quick Mode from the peer with a live SA's selectors rekeys that SA") {
    ChildSaSet set;
    const core::TimePoint t0{};
    set.install(sa(0x1000, true, 1, seconds(3600)), std::nullopt, t0, window);
    const auto t1 = t0 + seconds(1000);
    auto r = set.install(sa(0x2000, false, 2), std::nullopt, t1, window);
    CHECK(r.replaces == 0x1000u);
    CHECK_FALSE(r.collision);
    CHECK(set.find(0x1000)->superseded);
    // Longer than our own grace: the peer deletes first, both do not delete the same SA.
    CHECK(set.find(0x1000)->delete_at == t1 + ChildSaSet::peer_rekeyed_grace);
    CHECK(set.due(t0 + seconds(3600)).to_rekey.empty());  // superseded: never rekeyed by us
    // Other selectors are another tunnel, not a rekey.
    ChildSa other = sa(0x3000, false, 3);
    other.remote_ts = *core::Ipv4Prefix::parse("10.99.2.0/24");
    CHECK_FALSE(set.install(std::move(other), std::nullopt, t1, window).replaces);
}

TEST_CASE("ChildSaSet: a rekey collision keeps the SA with the higher lowest nonce on both sides") {
    for (const bool ours_wins : {true, false}) {
        CAPTURE(ours_wins);
        ChildSaSet set;
        const core::TimePoint t0{};
        set.install(sa(0x1000, true, 1, seconds(60)), std::nullopt, t0, window);
        set.rekey_started(0x1000);
        const auto t1 = t0 + seconds(61);
        // The peer's rekey of the same SA arrives while ours is under way: it names 0x1000 but
        // does not supersede it yet (ours may still win).
        auto theirs_r = set.install(sa(0x2000, false, ours_wins ? 5 : 9), std::nullopt, t1, window);
        CHECK(theirs_r.replaces == 0x1000u);
        CHECK_FALSE(set.find(0x1000)->superseded);
        auto ours_r = set.install(sa(0x3000, true, ours_wins ? 9 : 5), 0x1000, t1, window);
        CHECK(ours_r.collision);
        CHECK(ours_r.replaces == 0x1000u);
        CHECK(ours_r.inbound_only == !ours_wins);
        const ChildSa* loser = set.find(ours_wins ? 0x2000 : 0x3000);
        const ChildSa* winner = set.find(ours_wins ? 0x3000 : 0x2000);
        CHECK(loser->superseded);
        CHECK(loser->delete_at == t1 + ChildSaSet::superseded_grace);
        CHECK_FALSE(winner->superseded);
        CHECK(set.find(0x1000)->superseded);
    }
}

TEST_CASE("ChildSaSet: the peer's rekey just after ours finished collided with it; later it is a plain rekey") {
    for (const core::Duration after : {seconds(2), seconds(30)}) {
        CAPTURE(after.count());
        ChildSaSet set;
        const core::TimePoint t0{};
        set.install(sa(0x1000, true, 1, seconds(60)), std::nullopt, t0, window);
        set.rekey_started(0x1000);
        const auto t1 = t0 + seconds(61);
        set.install(sa(0x2000, true, 9, seconds(60)), 0x1000, t1, window);
        auto r = set.install(sa(0x3000, false, 5), std::nullopt, t1 + after, window);
        if (after < window) {
            // Both new SAs rekey 0x1000: ours has the higher nonce and stays.
            CHECK(r.collision);
            CHECK(r.replaces == 0x1000u);
            CHECK(r.inbound_only);
            CHECK_FALSE(set.find(0x2000)->superseded);
        } else {
            CHECK_FALSE(r.collision);
            CHECK(r.replaces == 0x2000u);
            CHECK(set.find(0x2000)->superseded);
        }
    }
}

TEST_CASE("ChildSaSet: an abandoned rekey gives way to the peer's, if there is one") {
    ChildSaSet set;
    const core::TimePoint t0{};
    set.install(sa(0x1000, true, 1, seconds(60)), std::nullopt, t0, window);
    set.rekey_started(0x1000);
    set.rekey_abandoned(0x1000, t0 + seconds(70));
    CHECK_FALSE(set.rekeying(0x1000));
    CHECK_FALSE(set.find(0x1000)->superseded);  // nothing replaced it: it stays, and is rekeyed again
    CHECK(set.due(t0 + seconds(70)).to_rekey.size() == 1);

    set.rekey_started(0x1000);
    set.install(sa(0x2000, false, 2), std::nullopt, t0 + seconds(71), window);  // the peer's rekey
    CHECK_FALSE(set.find(0x1000)->superseded);
    set.rekey_abandoned(0x1000, t0 + seconds(72));
    CHECK(set.find(0x1000)->superseded);
    CHECK(set.find(0x1000)->delete_at == t0 + seconds(72) + ChildSaSet::superseded_grace);
}

TEST_CASE("ChildSaSet: lifetimes, the next deadline, lookups and adoption") {
    ChildSaSet set;
    const core::TimePoint t0{};
    set.install(sa(0x1000, true, 1, seconds(50), seconds(100)), std::nullopt, t0, window);
    auto due = set.due(t0 + seconds(10));
    CHECK(due.expired.empty());
    CHECK(due.to_rekey.empty());
    CHECK(due.next == t0 + seconds(50));
    due = set.due(t0 + seconds(100));
    CHECK(due.expired == std::vector<std::uint32_t>{0x1000});
    CHECK(due.to_rekey.empty());

    // A peer's Delete names its inbound SPI, our spi_out; some name ours.
    CHECK(set.find_named_by_peer(0x11000)->spi_in == 0x1000);
    CHECK(set.find_named_by_peer(0x1000)->spi_in == 0x1000);
    CHECK(set.find_named_by_peer(0x4242) == nullptr);

    // An ended IKE SA's SAs: one we already cover goes after the grace, another stays.
    ChildSa other = sa(0x5000, false, 7);
    other.remote_ts = *core::Ipv4Prefix::parse("10.99.2.0/24");
    std::vector<ChildSa> handed;
    handed.push_back(sa(0x4000, false, 6));
    handed.push_back(std::move(other));
    set.adopt(std::move(handed), t0 + seconds(20));
    CHECK(set.find(0x4000)->superseded);
    CHECK(set.find(0x4000)->delete_at == t0 + seconds(20) + ChildSaSet::superseded_grace);
    CHECK_FALSE(set.find(0x5000)->superseded);

    set.rekey_started(0x1000);
    auto all = set.take_all();
    CHECK(all.size() == 3);
    CHECK(set.empty());
    CHECK_FALSE(set.has_live());
    CHECK_FALSE(set.rekeying(0x1000));
}

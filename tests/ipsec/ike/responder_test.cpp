// SPDX-License-Identifier: MIT
// Responder timers: poll() runs exactly the sessions whose deadline has passed, with many
// sessions at once, and reports the earliest deadline left.
#include "ipsec/ike/responder.hpp"

#include <doctest/doctest.h>

#include <algorithm>
#include <memory>
#include <vector>

#include "tests/ipsec/ike/ike_test_net.hpp"

using namespace mipsec;
using namespace std::chrono_literals;

namespace {

constexpr core::Endpoint gateway{core::Ipv4Address::from_octets(198, 51, 100, 1), 500};
const core::TimePoint t0 = core::TimePoint{} + 1h;

core::Endpoint client(std::size_t i) { return {core::Ipv4Address{core::Ipv4Address::from_octets(100, 64, 0, 1).value + static_cast<std::uint32_t>(i)}, 500}; }

std::vector<std::uint64_t> failed_owners(ipsec::ike::ResponderOutput& out) {
    std::vector<std::uint64_t> owners;
    for (const auto& e : out.events)
        if (auto* f = std::get_if<ipsec::ike::Failed>(&e.event); f && f->reason == ipsec::ike::FailReason::Timeout) owners.push_back(e.session);
    std::sort(owners.begin(), owners.end());
    return owners;
}

}  // namespace

TEST_CASE("responder: with many half-open sessions, each poll times out exactly the expired ones") {
    test::SplitMixRandom client_rng{11}, gw_rng{12};
    auto ccfg = std::make_shared<ipsec::ike::SessionConfig>();
    ccfg->psks.push_back({std::nullopt, test::secret("responder-timers")});
    auto gcfg = std::make_shared<ipsec::ike::SessionConfig>();
    gcfg->psks.push_back({std::nullopt, test::secret("responder-timers")});
    gcfg->half_open_timeout = 30s;
    ipsec::ike::ResponderConfig rc;
    rc.session = gcfg;
    rc.max_half_open = 1000;
    ipsec::ike::Responder gw(rc, gw_rng);

    // 300 initiators, one MM1 every 100 ms; nobody answers MM2.
    constexpr std::size_t n = 300;
    for (std::size_t i = 0; i < n; ++i) {
        const auto at = t0 + i * 100ms;
        auto s = ipsec::ike::Session::initiator(ccfg, client_rng, client(i), gateway);
        s->start(at);
        auto out = s->take_output();
        REQUIRE(out.datagrams.size() == 1);
        gw.on_datagram(out.datagrams[0].payload, gateway, client(i), at);
    }
    CHECK(gw.session_count() == n);
    CHECK(gw.half_open_count() == n);
    (void)gw.take_output();  // the MM2s
    CHECK(gw.next_deadline() == t0 + 30s);

    // Nothing is due before the first half-open timeout.
    CHECK(gw.poll(t0 + 30s - 1ns) == t0 + 30s);
    auto quiet = gw.take_output();
    CHECK(quiet.events.empty());
    CHECK(quiet.datagrams.empty());

    // Session i (owner i + 1) times out at t0 + 30 s + i x 100 ms: exactly those up to now go.
    std::size_t gone = 0;
    for (const auto& row : {std::pair{5050ms, 51}, std::pair{5050ms, 0}, std::pair{10000ms, 50}, std::pair{40000ms, 199}}) {
        // Plain copies: doctest's CAPTURE cannot capture a structured binding (clang).
        const auto until = row.first;
        const int expected = row.second;
        CAPTURE(until.count());
        const auto now = t0 + 30s + until;
        const auto next = gw.poll(now);
        auto out = gw.take_output();
        const auto owners = failed_owners(out);
        REQUIRE(owners.size() == static_cast<std::size_t>(expected));
        for (std::size_t k = 0; k < owners.size(); ++k) CHECK(owners[k] == gone + k + 1);
        gone += owners.size();
        CHECK(gw.session_count() == n - gone);
        CHECK(gw.half_open_count() == n - gone);
        if (gone < n) {
            CHECK(next == t0 + 30s + gone * 100ms);
        } else {
            CHECK_FALSE(next);
        }
    }
    CHECK(gw.counters().sessions_removed == n);
}

TEST_CASE("responder: an idle session's DPD fires at its deadline, and traffic from the peer moves it") {
    test::IkeNet net(false);
    net.gw_cfg->dpd_delay = 20s;
    net.start();
    REQUIRE(net.client->state() == ipsec::ike::SessionState::Established);
    REQUIRE(net.gw_session() != nullptr);
    const auto owner = net.gw_session()->owner();
    const auto sent = net.to_client.size();
    // ESP from the client at 15 s: the gateway's queued deadline (20 s) fires early, finds the
    // session not idle long enough and refiles it at 35 s.
    net.advance(15s);
    net.gw->note_traffic(owner, net.now);
    net.advance(6s);  // 21 s
    CHECK(net.to_client.size() == sent);
    REQUIRE(net.gw->next_deadline());
    CHECK(*net.gw->next_deadline() == net.now - 21s + 35s);
    net.advance(13s);  // 34 s
    CHECK(net.to_client.size() == sent);
    net.advance(2s);  // 36 s: R-U-THERE
    CHECK(net.to_client.size() == sent + 1);
}

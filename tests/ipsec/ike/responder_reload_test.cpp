// SPDX-License-Identifier: MIT
// A gateway takes new PSKs, proposals and a new Mode Config pool while running (reload): new
// negotiations use them, established IKE SAs and CHILD_SAs are untouched, and leases outside
// the new pool stay with their clients.
#include <doctest/doctest.h>

#include <memory>

#include "ipsec/ike/address_pool.hpp"
#include "ipsec/ike/responder.hpp"
#include "tests/ipsec/ike/ike_test_net.hpp"

using namespace mipsec;
using namespace std::chrono_literals;
using namespace mipsec::ipsec::ike;

namespace {
core::Ipv4Address a(const char* s) { return *core::Ipv4Address::parse(s); }
core::Ipv4Prefix p(const char* s) { return *core::Ipv4Prefix::parse(s); }
}  // namespace

TEST_CASE("address pool: a new range keeps every lease; those outside it are never handed out again") {
    AddressPool pool(p("10.99.100.0/24"));
    REQUIRE(pool.acquire(1) == a("10.99.100.1"));
    REQUIRE(pool.acquire(2) == a("10.99.100.2"));

    CHECK(pool.set_range(p("10.99.100.0/30")) == 0);  // .1 and .2 are still inside
    CHECK(pool.leased_outside_range() == 0);

    CHECK(pool.set_range(p("10.99.200.0/24")) == 2);
    CHECK(pool.range() == p("10.99.200.0/24"));
    CHECK(pool.lease_of(1) == a("10.99.100.1"));
    CHECK(pool.acquire(2) == a("10.99.100.2"));  // an owner's lease is its own, wherever it lies
    CHECK(pool.acquire(3) == a("10.99.200.1"));
    pool.release(1);
    CHECK(pool.leased_outside_range() == 1);
    // Asking for the old address back (a re-authentication) gives one of the new range.
    CHECK(pool.acquire(4, a("10.99.100.1")) == a("10.99.200.2"));
    CHECK(pool.leased() == 3);
}

TEST_CASE("responder reload: a new PSK and pool apply to new negotiations; the established SA stays") {
    test::IkeNet net(false);
    net.start();
    REQUIRE(net.gw_all<ChildSaInstalled>().size() == 1);
    Session* established = net.gw_session();
    REQUIRE(established);
    REQUIRE(established->state() == SessionState::Established);
    const auto spi_in = net.gw_all<ChildSaInstalled>()[0]->sa.spi_in;
    const auto spi_out = net.gw_all<ChildSaInstalled>()[0]->sa.spi_out;
    const auto owner = net.gw->last_owner();
    REQUIRE(net.gw->pool()->lease_of(owner) == a("10.99.100.1"));

    auto next = std::make_shared<SessionConfig>(*net.gw_cfg);
    next->psks.clear();
    next->psks.push_back({std::nullopt, test::secret("the-new-psk-after-reload")});
    ResponderConfig rc;
    rc.session = next;
    rc.pool = p("10.99.200.0/24");
    CHECK(net.gw->reconfigure(rc) == 1);  // the established client's lease is outside the new pool

    // Nothing about the established session changed.
    CHECK(net.gw_session() == established);
    CHECK(established->state() == SessionState::Established);
    CHECK(net.gw->pool()->lease_of(owner) == a("10.99.100.1"));
    CHECK(net.gw->pool()->range() == p("10.99.200.0/24"));
    net.run_for(60s);
    CHECK(net.gw_all<ChildSaDeleted>().empty());
    CHECK(net.gw_all<Failed>().empty());
    CHECK(net.gw_session() == established);

    // A second client with the old PSK no longer gets through Main Mode.
    auto first = std::move(net.client);
    auto old_psk = std::make_shared<SessionConfig>(*net.client_cfg);
    old_psk->local_id = IdPayload::fqdn("second.lab.example");
    old_psk->send_initial_contact = false;
    net.client = Session::initiator(old_psk, net.client_rng, {a("192.0.2.11"), 500}, test::IkeNet::gateway);
    net.client->start(net.now);
    net.pump();
    net.run_for(60s);
    CHECK(net.gw_all<ChildSaInstalled>().size() == 1);
    CHECK(net.client_all<ChildSaInstalled>().size() == 1);  // only the first client's

    // One with the new PSK does, and leases from the new pool.
    auto new_psk = std::make_shared<SessionConfig>(*old_psk);
    new_psk->local_id = IdPayload::fqdn("third.lab.example");
    new_psk->psks.clear();
    new_psk->psks.push_back({std::nullopt, test::secret("the-new-psk-after-reload")});
    net.client = Session::initiator(new_psk, net.client_rng, {a("192.0.2.12"), 500}, test::IkeNet::gateway);
    net.client->start(net.now);
    net.pump();
    const auto installed = net.gw_all<ChildSaInstalled>();
    REQUIRE(installed.size() == 2);
    CHECK(net.gw->pool()->lease_of(net.gw->last_owner()) == a("10.99.200.1"));
    // The first client's SA is still the one it negotiated.
    CHECK(installed[0]->sa.spi_in == spi_in);
    CHECK(installed[0]->sa.spi_out == spi_out);
    CHECK(net.gw->find(first->ike_sa().cky_i, first->ike_sa().cky_r) == established);
    CHECK(established->state() == SessionState::Established);
}

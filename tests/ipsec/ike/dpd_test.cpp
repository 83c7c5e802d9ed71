// SPDX-License-Identifier: MIT
// Dpd without crypto or network: when to probe, which ACK counts, the retransmission schedule
// and the verdict that the peer is dead (RFC 3706 §5).
#include <doctest/doctest.h>

#include "ipsec/ike/dpd.hpp"

using namespace mipsec;
using namespace mipsec::ipsec::ike;
using std::chrono::seconds;

TEST_CASE("Dpd: probe after the idle delay, an ACK for it ends the probe, traffic postpones the next") {
    Dpd dpd(seconds(30), RetransmitPolicy{});
    dpd.start(1000);
    const core::TimePoint t0{};
    CHECK(dpd.due(t0 + seconds(29), t0) == Dpd::Due::Nothing);
    CHECK(dpd.next(t0) == t0 + seconds(30));
    REQUIRE(dpd.due(t0 + seconds(30), t0) == Dpd::Due::Probe);
    const auto seq = dpd.probe(t0 + seconds(30), false);
    CHECK(seq == 1001);
    CHECK(dpd.outstanding());
    CHECK(dpd.next(t0) == t0 + seconds(34));  // the first retransmission timeout, 4 s
    CHECK_FALSE(dpd.acknowledge(999));         // never sent
    CHECK_FALSE(dpd.acknowledge(1002));        // not sent yet
    CHECK(dpd.acknowledge(seq));
    CHECK_FALSE(dpd.outstanding());
    CHECK_FALSE(dpd.acknowledge(seq));  // once
    // Authenticated traffic at 40 s: the next probe is due at 70 s.
    CHECK(dpd.due(t0 + seconds(60), t0 + seconds(40)) == Dpd::Due::Nothing);
    CHECK(dpd.due(t0 + seconds(70), t0 + seconds(40)) == Dpd::Due::Probe);
}

TEST_CASE("Dpd: unanswered probes are resent on the retransmission schedule, then the peer is dead") {
    RetransmitPolicy rp;  // 4 s x 1.8^n, 5 retransmits
    Dpd dpd(seconds(10), rp);
    dpd.start(7);
    core::TimePoint now{};
    now += seconds(10);
    REQUIRE(dpd.due(now, {}) == Dpd::Due::Probe);
    dpd.probe(now, false);
    for (unsigned n = 1; n <= rp.retransmits; ++n) {
        CAPTURE(n);
        const auto at = *dpd.next({});
        CHECK(at == now + rp.delay(n - 1));
        CHECK(dpd.due(at - std::chrono::milliseconds(1), {}) == Dpd::Due::Nothing);
        now = at;
        REQUIRE(dpd.due(now, {}) == Dpd::Due::Retry);
        dpd.probe(now, true);
    }
    now = *dpd.next({});
    CHECK(dpd.due(now, {}) == Dpd::Due::PeerDead);
    // An ACK for any of the probes sent (the first included) would have saved it.
    CHECK(dpd.acknowledge(8));
}

TEST_CASE("Dpd: sequence numbers wrap; without a delay there is no timer, probes on request still count") {
    Dpd wrap(seconds(5), RetransmitPolicy{});
    wrap.start(0xFFFFFFFFu);
    CHECK(wrap.probe({}, false) == 0u);
    CHECK(wrap.probe({}, false) == 1u);
    CHECK_FALSE(wrap.acknowledge(0xFFFFFFFFu));
    CHECK(wrap.acknowledge(1));

    Dpd manual(core::Duration::zero(), RetransmitPolicy{});
    manual.start(41);
    CHECK(manual.due(core::TimePoint{} + std::chrono::hours(1), {}) == Dpd::Due::Nothing);
    CHECK_FALSE(manual.next({}));
    CHECK(manual.probe({}, false) == 42u);
    CHECK(manual.acknowledge(42));
}

TEST_CASE("Dpd: a timeout declares the peer dead before the retransmission schedule would") {
    RetransmitPolicy rp;  // 4 s, 7.2 s, 13 s, ...: ~165 s to the end of the schedule
    Dpd dpd(seconds(2), rp, seconds(10));
    dpd.start(1);
    core::TimePoint now = core::TimePoint{} + seconds(2);
    REQUIRE(dpd.due(now, {}) == Dpd::Due::Probe);
    dpd.probe(now, false);
    now = *dpd.next({});
    CHECK(now == core::TimePoint{} + seconds(6));
    REQUIRE(dpd.due(now, {}) == Dpd::Due::Retry);
    dpd.probe(now, true);
    // The next retransmission would be at 6 + 7.2 s; the timeout ends it at 2 + 10 s.
    now = *dpd.next({});
    CHECK(now == core::TimePoint{} + seconds(12));
    CHECK(dpd.due(now - std::chrono::milliseconds(1), {}) == Dpd::Due::Nothing);
    CHECK(dpd.due(now, {}) == Dpd::Due::PeerDead);

    SUBCASE("an ACK in time starts the count afresh") {
        Dpd fresh(seconds(2), rp, seconds(10));
        fresh.start(1);
        auto t = core::TimePoint{} + seconds(2);
        const auto seq = fresh.probe(t, false);
        CHECK(fresh.acknowledge(seq));
        t += seconds(30);
        fresh.probe(t, false);
        CHECK(*fresh.next({}) == t + seconds(4));
        CHECK(fresh.due(t + seconds(9), {}) == Dpd::Due::Retry);  // not dead: 10 s from this probe, not the first
    }
}

TEST_CASE("Dpd: a probe that must be answered by a deadline is retried every second, then the peer is dead; an ACK ends it") {
    const core::TimePoint t0{};
    SUBCASE("no answer") {
        Dpd dpd(seconds(30), RetransmitPolicy{});  // the schedule alone would wait 4 s, then minutes
        dpd.start(50);
        dpd.probe(t0, false);
        dpd.expect_answer_by(t0, t0 + seconds(3), seconds(1));
        CHECK(dpd.next(t0) == t0 + seconds(1));
        CHECK(dpd.due(t0 + std::chrono::milliseconds(999), t0) == Dpd::Due::Nothing);
        REQUIRE(dpd.due(t0 + seconds(1), t0) == Dpd::Due::Retry);
        dpd.probe(t0 + seconds(1), true);
        REQUIRE(dpd.due(t0 + seconds(2), t0) == Dpd::Due::Retry);
        dpd.probe(t0 + seconds(2), true);
        CHECK(dpd.next(t0) == t0 + seconds(3));  // never past the deadline
        CHECK(dpd.due(t0 + seconds(3), t0) == Dpd::Due::PeerDead);
    }
    SUBCASE("answered: back to the idle timer, and the next probe has no deadline") {
        Dpd dpd(seconds(30), RetransmitPolicy{});
        dpd.start(50);
        const auto seq = dpd.probe(t0, false);
        dpd.expect_answer_by(t0, t0 + seconds(3), seconds(1));
        CHECK(dpd.acknowledge(seq));
        CHECK(dpd.due(t0 + seconds(10), t0) == Dpd::Due::Nothing);
        CHECK(dpd.next(t0) == t0 + seconds(30));
        dpd.probe(t0 + seconds(30), false);
        CHECK(dpd.next(t0) == t0 + seconds(34));
        CHECK(dpd.due(t0 + seconds(33), t0) == Dpd::Due::Nothing);
    }
    SUBCASE("without a probe outstanding it does nothing; without an idle delay the deadline still counts") {
        Dpd none(seconds(30), RetransmitPolicy{});
        none.expect_answer_by(t0, t0 + seconds(3), seconds(1));
        CHECK(none.due(t0 + seconds(5), t0) == Dpd::Due::Nothing);
        Dpd on_request(core::Duration::zero(), RetransmitPolicy{});
        on_request.probe(t0, false);
        on_request.expect_answer_by(t0, t0 + seconds(2), seconds(1));
        CHECK(on_request.due(t0 + seconds(2), t0) == Dpd::Due::PeerDead);
    }
}

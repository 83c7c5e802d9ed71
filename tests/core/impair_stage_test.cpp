// SPDX-License-Identifier: MIT
// tap.impair: every effect from a seed, replayable, with the rates and times it promises.
#include <doctest/doctest.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <map>
#include <set>

#include "core/buffer_pool.hpp"
#include "core/endian.hpp"
#include "core/impair_stage.hpp"
#include "core/ipv4.hpp"
#include "tests/support/fake_stage_context.hpp"
#include "tests/support/flat_status.hpp"
#include "tests/support/packets.hpp"

using namespace mipsec;
using namespace std::chrono_literals;
using core::ImpairStage;
using test::Bytes;

namespace {

/// An IPv4 packet (experimental protocol 253) whose identification is `id` and whose payload
/// is `body` bytes derived from it, so each packet is recognisable by its bytes.
Bytes numbered_packet(std::uint16_t id, std::size_t body = 32) {
    Bytes p(core::Ipv4Header::len + body);
    core::Ipv4Header h;
    h.total_length = static_cast<std::uint16_t>(p.size());
    h.identification = id;
    h.protocol = 253;
    h.source = core::Ipv4Address::from_octets(192, 0, 2, 1);
    h.destination = core::Ipv4Address::from_octets(198, 51, 100, 1);
    h.emit(p);
    for (std::size_t i = 0; i < body; ++i) p[20 + i] = static_cast<std::uint8_t>(id * 31 + i);
    return p;
}

std::uint16_t id_of(const core::PacketBuf& p) { return core::load_be16(p.data() + 4); }

ImpairStage::Config outbound_only(ImpairStage::Direction d, std::uint64_t seed = 1) {
    ImpairStage::Config c;
    c.seed = seed;
    c.outbound = d;
    return c;
}

struct Bench {
    core::BufferPool pool{512, 512};
    test::FakeStageContext ctx{pool};
};

/// Sends `count` numbered packets outward one millisecond apart, polling before each and
/// until nothing is held; returns the ids in the order they left the stage (at once or from
/// poll) with a marker per decision, so two runs can be compared event by event.
std::vector<std::string> run_trace(ImpairStage& stage, Bench& b, int count) {
    std::vector<std::string> trace;
    auto drain = [&] {
        (void)stage.poll(b.ctx);
        for (auto& p : b.ctx.sent) trace.push_back("released " + test::to_hex(test::bytes_of(p)));
        b.ctx.sent.clear();
    };
    for (int i = 0; i < count; ++i) {
        drain();
        auto p = test::load(b.pool, numbered_packet(static_cast<std::uint16_t>(i)));
        auto v = stage.encapsulate(p, b.ctx);
        trace.push_back(std::to_string(i) + " " + std::to_string(static_cast<int>(v.action)) + " " +
                        std::string(core::to_string(v.reason)) + (v.unclaimed() ? " " + test::to_hex(test::bytes_of(p)) : ""));
        b.ctx.advance(1ms);
    }
    for (int i = 0; i < 300 && stage.held(true) != 0; ++i) {
        b.ctx.advance(1ms);
        drain();
    }
    return trace;
}

ImpairStage::Direction everything() {
    ImpairStage::Direction d;
    d.loss = 0.1;
    d.burst = ImpairStage::Burst{0.05, 0.4, 0.8};
    d.duplicate = 0.05;
    d.reorder = 0.05;
    d.delay = 5ms;
    d.jitter = 3ms;
    d.corrupt = 0.05;
    d.queue = 64;
    return d;
}

}  // namespace

TEST_CASE("the same seed makes the same decisions; another seed other ones") {
    Bench b1, b2, b3;
    ImpairStage s1(outbound_only(everything(), 7)), s2(outbound_only(everything(), 7)), s3(outbound_only(everything(), 8));
    auto t1 = run_trace(s1, b1, 2000);
    auto t2 = run_trace(s2, b2, 2000);
    auto t3 = run_trace(s3, b3, 2000);
    CHECK(t1 == t2);
    CHECK(t1 != t3);
    // Every effect happened at least once, so the comparison covered all of them.
    const auto& c = s1.outbound_counters();
    CHECK(c.lost > 0);
    CHECK(c.lost_in_burst > 0);
    CHECK(c.duplicated > 0);
    CHECK(c.reordered > 0);
    CHECK(c.delayed > 0);
    CHECK(c.corrupted > 0);
    CHECK(s1.held(true) == 0);
}

TEST_CASE("inbound draws do not change outbound decisions") {
    // Replays must not depend on how the two directions interleave.
    ImpairStage::Config cfg = outbound_only(everything(), 11);
    cfg.inbound = everything();
    Bench b1, b2;
    ImpairStage quiet(cfg), busy(cfg);
    std::vector<int> a, c;
    for (int i = 0; i < 500; ++i) {
        auto p = test::load(b1.pool, numbered_packet(static_cast<std::uint16_t>(i)));
        a.push_back(static_cast<int>(quiet.encapsulate(p, b1.ctx).action));
        auto q = test::load(b2.pool, numbered_packet(static_cast<std::uint16_t>(i)));
        auto r = test::load(b2.pool, numbered_packet(static_cast<std::uint16_t>(i)));
        (void)busy.decapsulate(r, b2.ctx);
        c.push_back(static_cast<int>(busy.encapsulate(q, b2.ctx).action));
        b1.ctx.advance(1ms);
        b2.ctx.advance(1ms);
        (void)quiet.poll(b1.ctx);
        (void)busy.poll(b2.ctx);
        b1.ctx.sent.clear();
        b2.ctx.sent.clear();
        b2.ctx.delivered.clear();
    }
    CHECK(a == c);
}

TEST_CASE("independent loss stays within five standard deviations over 100k packets") {
    Bench b;
    ImpairStage::Direction d;
    d.loss = 0.2;
    ImpairStage stage(outbound_only(d, 42));
    auto p = test::load(b.pool, numbered_packet(1));
    const int n = 100000;
    int dropped = 0;
    for (int i = 0; i < n; ++i) {
        auto v = stage.encapsulate(p, b.ctx);
        if (v.action == core::Action::Drop) {
            CHECK(v.reason == core::DropReason::Impaired);
            ++dropped;
        } else {
            REQUIRE(v.unclaimed());
        }
    }
    const double sigma = std::sqrt(n * 0.2 * 0.8);
    CHECK(std::abs(dropped - n * 0.2) < 5 * sigma);
    CHECK(stage.outbound_counters().lost == static_cast<std::uint64_t>(dropped));
    CHECK(stage.outbound_counters().passed == static_cast<std::uint64_t>(n - dropped));
    CHECK(stage.outbound_counters().lost_in_burst == 0);
}

TEST_CASE("Gilbert-Elliott bursts last 1/p_bad_good packets and lose the stationary share") {
    Bench b;
    ImpairStage::Direction d;
    d.burst = ImpairStage::Burst{0.05, 0.5, 1.0};  // Good never loses, Bad always does
    ImpairStage stage(outbound_only(d, 3));
    auto p = test::load(b.pool, numbered_packet(1));
    const int n = 100000;
    int lost = 0, runs = 0, run = 0;
    for (int i = 0; i < n; ++i) {
        if (stage.encapsulate(p, b.ctx).action == core::Action::Drop) {
            ++lost;
            ++run;
        } else if (run > 0) {
            ++runs;
            run = 0;
        }
    }
    if (run > 0) ++runs;
    REQUIRE(runs > 1000);
    const double mean_burst = static_cast<double>(lost) / runs;
    CHECK(mean_burst == doctest::Approx(1 / 0.5).epsilon(0.08));
    CHECK(static_cast<double>(lost) / n == doctest::Approx(0.05 / (0.05 + 0.5)).epsilon(0.08));
    CHECK(stage.outbound_counters().lost_in_burst == static_cast<std::uint64_t>(lost));
    // A burst may begin after the last packet, with nothing left to lose.
    CHECK(stage.outbound_counters().bad_state_entries - static_cast<std::uint64_t>(runs) <= 1);
}

TEST_CASE("a duplicate is an exact copy in its own buffer with the original's room, both directions") {
    Bench b;
    ImpairStage::Direction d;
    d.duplicate = 1.0;
    ImpairStage::Config cfg = outbound_only(d);
    cfg.inbound = d;
    ImpairStage stage(cfg);
    const auto bytes = numbered_packet(9, 100);

    // 200 bytes of headroom: more than the context's allocate() gives, which the copy keeps.
    auto out = test::load(b.pool, bytes, 200);
    out.meta().egress_ifindex = 7;
    CHECK(stage.encapsulate(out, b.ctx).unclaimed());
    CHECK(test::bytes_of(out) == bytes);
    CHECK(b.ctx.sent.empty());
    CHECK(stage.poll(b.ctx) == std::nullopt);
    REQUIRE(b.ctx.sent.size() == 1);
    CHECK(test::bytes_of(b.ctx.sent[0]) == bytes);
    CHECK(b.ctx.sent[0].block() != out.block());
    CHECK(b.ctx.sent[0].headroom() == 200);
    CHECK(b.ctx.sent[0].tailroom() == out.tailroom());
    CHECK(b.ctx.sent[0].meta().egress_ifindex == 7);

    auto in = test::load(b.pool, bytes, 40);
    CHECK(stage.decapsulate(in, b.ctx).unclaimed());
    (void)stage.poll(b.ctx);
    REQUIRE(b.ctx.delivered.size() == 1);
    CHECK(test::bytes_of(b.ctx.delivered[0]) == bytes);
    CHECK(b.ctx.delivered[0].headroom() >= 40);
    CHECK(stage.outbound_counters().duplicated == 1);
    CHECK(stage.inbound_counters().duplicated == 1);
    CHECK(stage.inbound_counters().released == 1);
}

TEST_CASE("a duplicate the pool has no buffer for is counted, the original goes on") {
    core::BufferPool pool(1, 256);
    test::FakeStageContext ctx(pool);
    ImpairStage::Direction d;
    d.duplicate = 1.0;
    ImpairStage stage(outbound_only(d));
    auto p = test::load(pool, numbered_packet(1));
    CHECK(stage.encapsulate(p, ctx).unclaimed());
    CHECK(stage.outbound_counters().duplicate_no_buffer == 1);
    CHECK(stage.held(true) == 0);
}

TEST_CASE("delayed packets leave at their due time, and poll names it") {
    Bench b;
    ImpairStage::Direction d;
    d.delay = 20ms;
    ImpairStage stage(outbound_only(d));
    const auto t0 = b.ctx.now();
    for (int i = 0; i < 3; ++i) {
        auto p = test::load(b.pool, numbered_packet(static_cast<std::uint16_t>(i)));
        CHECK(stage.encapsulate(p, b.ctx).action == core::Action::Consumed);
        b.ctx.advance(5ms);
    }
    b.ctx.set_now(t0 + 19ms);
    CHECK(stage.poll(b.ctx) == t0 + 20ms);
    CHECK(b.ctx.sent.empty());
    b.ctx.set_now(t0 + 20ms);
    CHECK(stage.poll(b.ctx) == t0 + 25ms);
    REQUIRE(b.ctx.sent.size() == 1);
    CHECK(id_of(b.ctx.sent[0]) == 0);
    b.ctx.set_now(t0 + 30ms);
    CHECK(stage.poll(b.ctx) == std::nullopt);
    REQUIRE(b.ctx.sent.size() == 3);
    CHECK(id_of(b.ctx.sent[1]) == 1);
    CHECK(id_of(b.ctx.sent[2]) == 2);
    CHECK(stage.outbound_counters().delayed == 3);
    CHECK(stage.outbound_counters().released == 3);
}

TEST_CASE("jitter keeps every delay within delay +- jitter, inbound through deliver_inward") {
    Bench b;
    ImpairStage::Config cfg;
    cfg.seed = 5;
    cfg.inbound.delay = 20ms;
    cfg.inbound.jitter = 5ms;
    ImpairStage stage(cfg);
    std::map<std::uint16_t, core::TimePoint> entered;
    std::set<core::Duration> delays;
    for (int step = 0; step < 400; ++step) {
        if (step < 200) {
            auto p = test::load(b.pool, numbered_packet(static_cast<std::uint16_t>(step)));
            entered[static_cast<std::uint16_t>(step)] = b.ctx.now();
            CHECK(stage.decapsulate(p, b.ctx).action == core::Action::Consumed);
        }
        auto next = stage.poll(b.ctx);
        for (auto& p : b.ctx.delivered) {
            auto delay = b.ctx.now() - entered.at(id_of(p));
            CHECK(delay >= 15ms);
            CHECK(delay <= 25ms);
            delays.insert(delay);
        }
        b.ctx.delivered.clear();
        if (next) CHECK(*next > b.ctx.now());
        b.ctx.advance(1ms);
    }
    CHECK(stage.inbound_counters().released == 200);
    CHECK(delays.size() > 5);  // really jittered, not one fixed delay
    CHECK(b.ctx.sent.empty());
}

TEST_CASE("reordering makes a packet leave behind its successor; without one it leaves at its cap") {
    Bench b;
    ImpairStage::Direction d;
    d.reorder = 0.3;
    ImpairStage stage(outbound_only(d, 9));
    std::vector<std::uint16_t> order;
    // Expected: each run of held-back packets leaves right behind the packet after it.
    std::vector<std::uint16_t> expected, pending;
    for (int i = 0; i < 1000; ++i) {
        auto p = test::load(b.pool, numbered_packet(static_cast<std::uint16_t>(i)));
        auto v = stage.encapsulate(p, b.ctx);
        if (v.unclaimed()) {
            order.push_back(id_of(p));
            expected.push_back(static_cast<std::uint16_t>(i));
            expected.insert(expected.end(), pending.begin(), pending.end());
            pending.clear();
        } else {
            REQUIRE(v.action == core::Action::Consumed);
            pending.push_back(static_cast<std::uint16_t>(i));
        }
        (void)stage.poll(b.ctx);  // as the shell does after every batch
        for (auto& s : b.ctx.sent) order.push_back(id_of(s));
        b.ctx.sent.clear();
        b.ctx.advance(1ms);
    }
    b.ctx.advance(200ms);
    (void)stage.poll(b.ctx);
    for (auto& s : b.ctx.sent) order.push_back(id_of(s));
    REQUIRE(order.size() == 1000);
    expected.insert(expected.end(), pending.begin(), pending.end());  // these left at their cap
    CHECK(order == expected);
    std::vector<std::uint16_t> sorted = order;
    std::sort(sorted.begin(), sorted.end());
    for (std::size_t i = 0; i < sorted.size(); ++i) REQUIRE(sorted[i] == i);  // nothing lost or doubled
    std::size_t displaced = 0;
    for (std::size_t i = 1; i < order.size(); ++i)
        if (order[i] < order[i - 1]) ++displaced;
    const auto reordered = stage.outbound_counters().reordered;
    CHECK(reordered == doctest::Approx(300).epsilon(0.2));
    CHECK(displaced > reordered / 2);

    // A lone reordered packet: nothing comes after it, so it leaves reorder_max late.
    d.reorder = 1.0;
    d.reorder_max = 50ms;
    ImpairStage lone(outbound_only(d));
    auto p = test::load(b.pool, numbered_packet(1));
    b.ctx.sent.clear();
    const auto t0 = b.ctx.now();
    CHECK(lone.encapsulate(p, b.ctx).action == core::Action::Consumed);
    CHECK(lone.poll(b.ctx) == t0 + 50ms);
    b.ctx.set_now(t0 + 50ms);
    CHECK(lone.poll(b.ctx) == std::nullopt);
    CHECK(b.ctx.sent.size() == 1);
}

TEST_CASE("corruption flips exactly one bit after the IP header") {
    Bench b;
    ImpairStage::Direction d;
    d.corrupt = 1.0;
    ImpairStage stage(outbound_only(d, 13));
    std::set<std::size_t> positions;
    for (int i = 0; i < 1000; ++i) {
        const auto original = numbered_packet(static_cast<std::uint16_t>(i), 16);
        auto p = test::load(b.pool, original);
        CHECK(stage.encapsulate(p, b.ctx).unclaimed());
        const auto now = test::bytes_of(p);
        REQUIRE(now.size() == original.size());
        int flipped = 0;
        for (std::size_t k = 0; k < now.size(); ++k) {
            flipped += std::popcount(static_cast<unsigned>(now[k] ^ original[k]));
            if (now[k] != original[k]) {
                CHECK(k >= core::Ipv4Header::len);
                positions.insert(k);
            }
        }
        CHECK(flipped == 1);
    }
    CHECK(positions.size() == 16);  // every payload byte was hit at some point
    CHECK(stage.outbound_counters().corrupted == 1000);

    // Nothing after the header: left alone and counted.
    auto bare = test::load(b.pool, numbered_packet(1, 0));
    const auto before = test::bytes_of(bare);
    CHECK(stage.encapsulate(bare, b.ctx).unclaimed());
    CHECK(test::bytes_of(bare) == before);
    CHECK(stage.outbound_counters().corrupt_skipped == 1);
}

TEST_CASE("the hold queue is bounded: what overflows is dropped and counted") {
    Bench b;
    ImpairStage::Direction d;
    d.delay = 100ms;
    d.queue = 4;
    ImpairStage stage(outbound_only(d));
    int consumed = 0, dropped = 0;
    for (int i = 0; i < 10; ++i) {
        auto p = test::load(b.pool, numbered_packet(static_cast<std::uint16_t>(i)));
        auto v = stage.encapsulate(p, b.ctx);
        if (v.action == core::Action::Consumed) ++consumed;
        if (v.action == core::Action::Drop) {
            CHECK(v.reason == core::DropReason::Impaired);
            ++dropped;
        }
    }
    CHECK(consumed == 4);
    CHECK(dropped == 6);
    CHECK(stage.held(true) == 4);
    CHECK(stage.outbound_counters().queue_overflow == 6);
    CHECK(b.pool.available() == b.pool.block_count() - 4);  // the dropped ones went back
    b.ctx.advance(100ms);
    (void)stage.poll(b.ctx);
    CHECK(b.ctx.sent.size() == 4);
    CHECK(stage.held(true) == 0);
}

TEST_CASE("report shows counters per direction and effect") {
    Bench b;
    ImpairStage::Direction d;
    d.loss = 1.0;
    ImpairStage stage(outbound_only(d, 77));
    auto p = test::load(b.pool, numbered_packet(1));
    (void)stage.encapsulate(p, b.ctx);
    (void)stage.decapsulate(p, b.ctx);
    test::FlatStatus status;
    stage.report(status);
    CHECK(status.values.at("seed") == "77");
    CHECK(status.values.at("outbound.lost") == "1");
    CHECK(status.values.at("outbound.packets") == "1");
    CHECK(status.values.at("inbound.passed") == "1");
    CHECK(status.values.at("inbound.lost") == "0");
    CHECK(status.values.count("outbound.queue_overflow") == 1);
    CHECK(core::to_string(core::DropReason::Impaired) == "impaired");
}

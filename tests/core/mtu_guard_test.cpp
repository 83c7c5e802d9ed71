// SPDX-License-Identifier: MIT
// core::MtuGuard and make_fragmentation_needed (RFC 792, RFC 1191 §4, RFC 5265 §5.2), and the
// stack overheads the node feeds it.
#include <doctest/doctest.h>

#include <chrono>
#include <memory>
#include <vector>

#include "core/buffer_pool.hpp"
#include "core/checksum.hpp"
#include "core/icmp.hpp"
#include "core/ipv4.hpp"
#include "core/mtu_guard.hpp"
#include "core/pipeline.hpp"
#include "core/udp.hpp"
#include "tests/support/hex.hpp"
#include "tests/support/packets.hpp"

using namespace mipsec;
using namespace mipsec::test::literals;
using namespace std::chrono_literals;
using core::MtuGuard;
using Outcome = core::MtuGuard::Outcome;

namespace {

const auto sender = *core::Ipv4Address::parse("10.1.0.77");
const auto peer = *core::Ipv4Address::parse("10.1.0.9");

// A UDP datagram sender:40000 -> peer:7 of `total` bytes, identification 0x1234, payload bytes
// (i * 7 + 3), UDP checksum 0; `options` adds that many bytes of IP options (NOPs).
test::Bytes datagram(std::size_t total, bool df, std::size_t options = 0, std::uint8_t protocol = core::ip_protocol::udp) {
    test::Bytes p(total);
    core::Ipv4Header h;
    h.total_length = static_cast<std::uint16_t>(total);
    h.identification = 0x1234;
    h.flags_fragment = df ? core::Ipv4View::flag_df : 0;
    h.protocol = protocol;
    h.source = sender;
    h.destination = peer;
    h.emit(p);
    if (options != 0) {
        // Options go between the fixed header and the payload: shift the IHL and fill with NOP.
        p[0] = static_cast<std::uint8_t>(0x40 | ((20 + options) / 4));
        std::fill_n(p.begin() + 20, options, 0x01);
        core::Ipv4MutView::check(p)->update_checksum();
    }
    const std::size_t l4 = 20 + options;
    for (std::size_t i = 0; i + 8 < total - l4; ++i) p[l4 + 8 + i] = static_cast<std::uint8_t>(i * 7 + 3);
    if (protocol == core::ip_protocol::udp)
        core::UdpHeader{40000, 7, static_cast<std::uint16_t>(total - l4), 0}.emit(std::span(p).subspan(l4));
    return p;
}

struct Fixture {
    core::BufferPool pool{16, 2048};
    core::TimePoint now = core::TimePoint{} + 1h;
};

}  // namespace

TEST_CASE("make_fragmentation_needed: the published layout, byte for byte (RFC 792, RFC 1191 §4)") {
    Fixture f;
    auto buf = test::load(f.pool, datagram(1400, true));
    REQUIRE(core::make_fragmentation_needed(buf, 1403));
    // Computed independently (RFC 1071 sums by hand-written script): IPv4 TOS 0xC0, TTL 64,
    // protocol 1, peer -> sender; ICMP 3/4, unused 0, next-hop MTU 1403 (0x057b); quote = the
    // original IP header and its first 8 payload bytes.
    CHECK(test::bytes_of(buf) == "45c0003800000000400165ae0a0100090a01004d"
                                 "030455d50000057b"
                                 "450005781234400040110eea0a01004d0a0100099c40000705640000"_hex);
}

TEST_CASE("make_fragmentation_needed: checksums, addresses and the quote, with and without IP options") {
    struct Row {
        const char* name;
        std::size_t total;
        std::size_t options;
        std::uint16_t mtu;
    };
    const Row rows[] = {{"plain header", 1400, 0, 1403}, {"12 bytes of options", 1500, 12, 1420}, {"max options", 1200, 40, 576}};
    for (const auto& row : rows) {
        CAPTURE(row.name);
        Fixture f;
        const auto original = datagram(row.total, true, row.options);
        auto buf = test::load(f.pool, original);
        REQUIRE(core::make_fragmentation_needed(buf, row.mtu));
        const auto answer = test::bytes_of(buf);
        auto ip = core::Ipv4View::check(answer);
        REQUIRE(ip);
        CHECK(ip->checksum_valid());
        CHECK(ip->header_len() == 20);
        CHECK(ip->total_length() == answer.size());
        CHECK(ip->protocol() == core::ip_protocol::icmp);
        CHECK(ip->source() == peer);
        CHECK(ip->destination() == sender);
        CHECK_FALSE(ip->dont_fragment());
        auto icmp = core::IcmpView::check(ip->payload());
        REQUIRE(icmp);
        CHECK(icmp->checksum_valid());
        CHECK(icmp->type() == core::icmp_type::destination_unreachable);
        CHECK(icmp->code() == core::icmp_code::fragmentation_needed);
        CHECK(icmp->next_hop_mtu() == row.mtu);
        CHECK(core::load_be16(icmp->rest_of_header().data()) == 0);  // unused (RFC 1191 §4)
        const std::size_t quote_len = 20 + row.options + 8;
        REQUIRE(icmp->body().size() == quote_len);
        CHECK(test::Bytes(icmp->body().begin(), icmp->body().end()) == test::Bytes(original.begin(), original.begin() + quote_len));
    }
}

TEST_CASE("make_fragmentation_needed refuses what is not an IPv4 packet, leaving it alone") {
    Fixture f;
    const auto ipv6 = "60000000 0008 1140 00000000000000000000000000000001 00000000000000000000000000000002 0000000000080000"_hex;
    auto buf = test::load(f.pool, ipv6);
    CHECK_FALSE(core::make_fragmentation_needed(buf, 1400));
    CHECK(test::bytes_of(buf) == ipv6);
}

TEST_CASE("MtuGuard: the active MTU is the outer MTU minus the active overhead, never below 576") {
    MtuGuard g({.outer_mtu = 1500});
    CHECK(g.mtu() == 1500);
    g.set_overhead(20);  // RFC 5265 mode c: i-MIP IP-in-IP
    CHECK(g.mtu() == 1480);
    g.set_overhead(97);  // cvc: 20 + 57 (ESP AES-GCM, worst padding) + 20
    CHECK(g.mtu() == 1403);
    g.set_outer_mtu(1400);  // a path MTU learned
    CHECK(g.mtu() == 1303);
    g.set_outer_mtu(600);
    CHECK(g.mtu() == MtuGuard::min_mtu);
}

// What the stages made of a packet: `len` bytes, content irrelevant to the guard.
core::PacketBuf wrapped(core::BufferPool& pool, std::size_t len) { return test::load(pool, test::Bytes(len, 0xEE), 64); }

TEST_CASE("MtuGuard: a DF packet too big for the active stack is answered if its wrapped form does not fit; without DF it goes on") {
    Fixture f;
    MtuGuard g({.outer_mtu = 1500});
    g.set_overhead(20);
    auto fits = test::load(f.pool, datagram(1480, true));
    CHECK_FALSE(g.too_big(fits));

    // The same packet after a mode change (cvc): too big now; the stages make 1577 bytes of it.
    g.set_overhead(97);
    auto big = test::load(f.pool, datagram(1480, true));
    const auto quote = g.too_big(big);
    REQUIRE(quote);
    CHECK(quote->span().size() == 28);
    CHECK(quote->answerable);
    auto out = wrapped(f.pool, 1577);
    CHECK_FALSE(g.fits_outer(out));
    REQUIRE(g.answer(out, *quote, f.now) == Outcome::Answered);
    auto ip = core::Ipv4View::check(out.bytes());
    REQUIRE(ip);
    CHECK(ip->checksum_valid());
    CHECK(ip->destination() == sender);
    CHECK(ip->source() == peer);
    auto icmp = core::IcmpView::check(ip->payload());
    REQUIRE(icmp);
    CHECK(icmp->checksum_valid());
    CHECK(icmp->type() == core::icmp_type::destination_unreachable);
    CHECK(icmp->code() == core::icmp_code::fragmentation_needed);
    CHECK(icmp->next_hop_mtu() == 1403);
    const auto original = datagram(1480, true);
    CHECK(test::Bytes(icmp->body().begin(), icmp->body().end()) == test::Bytes(original.begin(), original.begin() + 28));

    auto loose = test::load(f.pool, datagram(1480, false));
    CHECK_FALSE(g.too_big(loose));
    CHECK(loose.size() == 1480);  // untouched: the outer layer fragments

    auto exact = test::load(f.pool, datagram(1403, true));
    CHECK_FALSE(g.too_big(exact));
    auto one_more = test::load(f.pool, datagram(1404, true));
    CHECK(g.too_big(one_more));
    CHECK(g.fits_outer(wrapped(f.pool, 1500)));  // padding was kind: it goes on

    const auto& c = g.counters();
    CHECK(c.icmp_frag_needed_sent == 1);
    CHECK(c.dropped_too_big == 1);
    CHECK(c.sent_for_fragmentation == 1);
    CHECK(c.icmp_rate_limited == 0);
    CHECK(c.not_answerable == 0);
}

TEST_CASE("MtuGuard: answers are rate-limited (burst, then refill); a limited packet is still dropped and counted") {
    Fixture f;
    MtuGuard g({.outer_mtu = 1500, .answers_per_second = 10, .answer_burst = 3});
    g.set_overhead(100);
    auto send = [&](core::TimePoint at) {
        auto buf = test::load(f.pool, datagram(1450, true));
        const auto quote = g.too_big(buf);
        REQUIRE(quote);
        auto out = wrapped(f.pool, 1550);
        return g.answer(out, *quote, at);
    };
    CHECK(send(f.now) == Outcome::Answered);
    CHECK(send(f.now) == Outcome::Answered);
    CHECK(send(f.now) == Outcome::Answered);
    CHECK(send(f.now) == Outcome::Dropped);
    CHECK(send(f.now + 50ms) == Outcome::Dropped);  // half a token
    CHECK(send(f.now + 100ms) == Outcome::Answered);  // one token (10 per second)
    CHECK(send(f.now + 100ms) == Outcome::Dropped);
    CHECK(send(f.now + 10s) == Outcome::Answered);  // refilled, but only up to the burst
    CHECK(send(f.now + 10s) == Outcome::Answered);
    CHECK(send(f.now + 10s) == Outcome::Answered);
    CHECK(send(f.now + 10s) == Outcome::Dropped);
    const auto& c = g.counters();
    CHECK(c.icmp_frag_needed_sent == 7);
    CHECK(c.icmp_rate_limited == 4);
    CHECK(c.dropped_too_big == 11);
}

TEST_CASE("MtuGuard: no ICMP error about an ICMP error or a non-first fragment (RFC 1122 §3.2.2), but echo is answered") {
    Fixture f;
    MtuGuard g({.outer_mtu = 1500});
    g.set_overhead(100);
    auto icmp_packet = [](std::uint8_t type) {
        auto p = datagram(1450, true, 0, core::ip_protocol::icmp);
        p[20] = type;
        p[21] = 0;
        return p;
    };
    auto fragment = datagram(1450, true);
    core::Ipv4MutView::check(fragment)->set_flags_fragment(core::Ipv4View::flag_df | 185);  // offset 1480
    core::Ipv4MutView::check(fragment)->update_checksum();
    struct Row {
        const char* name;
        test::Bytes packet;
        Outcome outcome;
    };
    const Row rows[] = {
        {"destination unreachable", icmp_packet(core::icmp_type::destination_unreachable), Outcome::Dropped},
        {"time exceeded", icmp_packet(core::icmp_type::time_exceeded), Outcome::Dropped},
        {"echo request", icmp_packet(core::icmp_type::echo_request), Outcome::Answered},
        {"non-first fragment", fragment, Outcome::Dropped},
    };
    for (const auto& row : rows) {
        CAPTURE(row.name);
        auto buf = test::load(f.pool, row.packet);
        const auto quote = g.too_big(buf);
        REQUIRE(quote);
        auto out = wrapped(f.pool, 1550);
        CHECK(g.answer(out, *quote, f.now) == row.outcome);
    }
    CHECK(g.counters().not_answerable == 3);
    CHECK(g.counters().icmp_frag_needed_sent == 1);
    CHECK(g.counters().dropped_too_big == 4);
}

namespace {

// A stage whose overheads the test sets, as a real stage's follow its state.
class SizedStage final : public core::Stage {
public:
    SizedStage(std::size_t most, std::size_t now, std::size_t least, bool idles_below)
        : now_(now), most_(most), least_(least), idles_below_(idles_below) {}
    std::string_view name() const noexcept override { return "test.sized"; }
    std::size_t headroom() const noexcept override { return most_; }
    std::size_t overhead() const noexcept override { return now_; }
    std::size_t least_overhead() const noexcept override { return least_; }
    bool may_idle_layers_below() const noexcept override { return idles_below_; }
    core::Verdict encapsulate(core::PacketBuf&, core::StageContext&) override { return core::Verdict::pass(); }
    core::Verdict decapsulate(core::PacketBuf&, core::StageContext&) override { return core::Verdict::pass(); }
    std::size_t now_;

private:
    std::size_t most_, least_;
    bool idles_below_;
};

}  // namespace

TEST_CASE("stack overheads: active sums every stage now; least stops below a stage that may idle the rest") {
    core::BufferPool pool{16, 2048};
    auto build = [&](bool detection) {
        std::vector<std::unique_ptr<core::Stage>> s;
        s.push_back(std::make_unique<SizedStage>(32, 20, 20, detection));  // i-MIP
        s.push_back(std::make_unique<SizedStage>(77, 57, 77, false));       // ESP
        s.push_back(std::make_unique<SizedStage>(8, 0, 8, false));          // UDP encapsulation
        s.push_back(std::make_unique<SizedStage>(32, 20, 32, false));       // x-MIP
        return std::make_unique<core::Pipeline>(std::move(s), pool, core::null_logger());
    };
    auto with = build(true);
    CHECK(core::active_overhead(*with) == 97);
    CHECK(core::least_stack_overhead(*with) == 20);
    static_cast<SizedStage&>(with->stage(1)).now_ = 0;  // dormant
    static_cast<SizedStage&>(with->stage(3)).now_ = 0;
    CHECK(core::active_overhead(*with) == 20);
    auto without = build(false);
    CHECK(core::least_stack_overhead(*without) == 20 + 77 + 8 + 32);
}

TEST_CASE("Stage defaults: overhead and least overhead are all a stage may add, and nothing idles below it") {
    class Plain final : public core::Stage {
    public:
        std::string_view name() const noexcept override { return "test.plain"; }
        std::size_t headroom() const noexcept override { return 44; }
        std::size_t tailroom() const noexcept override { return 33; }
        core::Verdict encapsulate(core::PacketBuf&, core::StageContext&) override { return core::Verdict::pass(); }
        core::Verdict decapsulate(core::PacketBuf&, core::StageContext&) override { return core::Verdict::pass(); }
    } plain;
    CHECK(plain.overhead() == 77);
    CHECK(plain.least_overhead() == 77);
    CHECK_FALSE(plain.may_idle_layers_below());
}

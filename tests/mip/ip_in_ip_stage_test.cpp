// SPDX-License-Identifier: MIT
#include <doctest/doctest.h>

#include "core/buffer_pool.hpp"
#include "core/ipv4.hpp"
#include "mip/ip_in_ip_stage.hpp"
#include "tests/support/fake_stage_context.hpp"
#include "tests/support/hex.hpp"
#include "tests/support/packets.hpp"

using namespace mipsec;
using namespace mipsec::test::literals;
using core::DropReason;

namespace {
const auto a = *core::Ipv4Address::parse("192.0.2.1");
const auto b = *core::Ipv4Address::parse("192.0.2.2");

// ICMP echo 10.0.0.1 -> 10.0.1.1, TOS 0x10, DF set, TTL 64 (checksum valid).
test::Bytes inner_packet() {
    auto p = "45 10 00 1c 12 34 40 00 40 01 00 00 0a 00 00 01 0a 00 01 01 08 00 f7 ff 00 00 00 00"_hex;
    core::Ipv4MutView::check(std::span(p))->update_checksum();
    return p;
}

core::PacketBuf load(core::BufferPool& pool, std::span<const std::uint8_t> bytes) { return test::load(pool, bytes, 64); }
}  // namespace

TEST_CASE("IP-in-IP encapsulation follows RFC 2003 §3.1 and round-trips in place") {
    core::BufferPool pool(4, 256);
    test::FakeStageContext ctx(pool);
    mip::IpInIpStage tx({.local = a, .remote = b, .ttl = 33});
    mip::IpInIpStage rx({.local = b, .remote = a});

    auto inner = inner_packet();
    auto buf = load(pool, inner);
    const auto* block = buf.block();
    const auto* payload = buf.data();
    REQUIRE(tx.encapsulate(buf, ctx).passed());
    auto outer = core::Ipv4View::check(buf.bytes());
    REQUIRE(outer);
    CHECK(outer->protocol() == core::ip_protocol::ipip);
    CHECK(outer->tos() == 0x10);            // copied
    CHECK(outer->dont_fragment());          // inner DF set => outer DF MUST be set
    CHECK(outer->ttl() == 33);              // from config, not copied
    CHECK(outer->source() == a);
    CHECK(outer->destination() == b);
    CHECK(outer->total_length() == inner.size() + 20);
    CHECK(outer->checksum_valid());
    CHECK(buf.data() + 20 == payload);      // the payload did not move

    REQUIRE(rx.decapsulate(buf, ctx).passed());
    CHECK(buf.block() == block);
    CHECK(buf.data() == payload);
    CHECK(test::to_hex(buf.bytes()) == test::to_hex(inner));
}

TEST_CASE("IP-in-IP outer DF is clear when the inner DF is clear") {
    core::BufferPool pool(2, 256);
    test::FakeStageContext ctx(pool);
    mip::IpInIpStage tx({.local = a, .remote = b});
    auto inner = inner_packet();
    auto v = core::Ipv4MutView::check(std::span(inner));
    v->set_flags_fragment(0);
    v->update_checksum();
    auto buf = load(pool, inner);
    REQUIRE(tx.encapsulate(buf, ctx).passed());
    CHECK_FALSE(core::Ipv4View::check(buf.bytes())->dont_fragment());
}

TEST_CASE("IP-in-IP refuses what RFC 2003 forbids, with a reason") {
    core::BufferPool pool(2, 256);
    test::FakeStageContext ctx(pool);
    mip::IpInIpStage tx({.local = a, .remote = b});
    mip::IpInIpStage rx({.local = b, .remote = a});

    struct Row {
        const char* name;
        bool outward;
        void (*mutate)(test::Bytes&);
        DropReason expected;
    };
    const Row rows[] = {
        {"TTL 0 is never encapsulated", true, [](test::Bytes& p) { p[8] = 0; }, DropReason::TtlExpired},
        {"inner source = tunnel exit loops", true, [](test::Bytes& p) { core::store_be32(p.data() + 12, b.value); }, DropReason::Loop},
        {"IPv6 from the TUN", true, [](test::Bytes& p) { p[0] = 0x60; }, DropReason::UnexpectedProtocol},
        {"IHL below 5", true, [](test::Bytes& p) { p[0] = 0x44; }, DropReason::Malformed},
        {"truncated", true, [](test::Bytes& p) { p.resize(10); }, DropReason::Truncated},
        {"total length past the buffer", true, [](test::Bytes& p) { p[3] = 0xff; }, DropReason::Malformed},
    };
    for (const auto& row : rows) {
        CAPTURE(row.name);
        auto p = inner_packet();
        row.mutate(p);
        auto buf = load(pool, p);
        auto v = row.outward ? tx.encapsulate(buf, ctx) : rx.decapsulate(buf, ctx);
        CHECK(v.action == core::Action::Drop);
        CHECK(v.reason == row.expected);
    }
}

TEST_CASE("IP-in-IP decapsulation checks protocol, endpoints and inner TTL") {
    core::BufferPool pool(2, 256);
    test::FakeStageContext ctx(pool);
    mip::IpInIpStage tx({.local = a, .remote = b});
    mip::IpInIpStage rx({.local = b, .remote = a});
    mip::IpInIpStage stranger({.local = b, .remote = *core::Ipv4Address::parse("198.51.100.9")});

    auto wrapped = [&](void (*mutate)(core::PacketBuf&)) {
        auto buf = load(pool, inner_packet());
        REQUIRE(tx.encapsulate(buf, ctx).passed());
        if (mutate) mutate(buf);
        return buf;
    };
    {
        auto buf = wrapped(nullptr);
        auto v = stranger.decapsulate(buf, ctx);
        CHECK(v.reason == DropReason::NotForUs);
    }
    {
        auto buf = wrapped([](core::PacketBuf& p) { p.data()[9] = core::ip_protocol::udp; });
        CHECK(rx.decapsulate(buf, ctx).reason == DropReason::UnexpectedProtocol);
    }
    {
        auto buf = wrapped([](core::PacketBuf& p) { p.data()[20 + 8] = 0; });
        CHECK(rx.decapsulate(buf, ctx).reason == DropReason::TtlExpired);
    }
    {
        auto buf = wrapped([](core::PacketBuf& p) { p.data()[20] = 0x41; });  // inner IHL 1
        CHECK(rx.decapsulate(buf, ctx).reason == DropReason::Malformed);
    }
    for (std::size_t len = 0; len < 48; ++len) {
        CAPTURE(len);
        auto buf = wrapped(nullptr);
        REQUIRE(buf.resize(len));
        CHECK(rx.decapsulate(buf, ctx).action == core::Action::Drop);
    }
}

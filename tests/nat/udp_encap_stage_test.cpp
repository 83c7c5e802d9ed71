// SPDX-License-Identifier: MIT
#include <doctest/doctest.h>

#include <algorithm>

#include "core/buffer_pool.hpp"
#include "core/ipv4.hpp"
#include "core/udp.hpp"
#include "nat/udp_encap_stage.hpp"
#include "tests/support/fake_stage_context.hpp"
#include "tests/support/hex.hpp"
#include "tests/support/packets.hpp"

using namespace mipsec;
using namespace mipsec::test::literals;
using core::DropReason;

namespace {
const auto client = *core::Ipv4Address::parse("10.0.0.2");
const auto gateway = *core::Ipv4Address::parse("203.0.113.1");

// IPv4 proto 50 10.0.0.2 -> 203.0.113.1 carrying SPI 0x1234, seq 1 and 8 bytes.
test::Bytes esp_packet() {
    auto p = "45 00 00 24 00 01 00 00 40 32 00 00 0a 00 00 02 cb 00 71 01"
             " 00 00 12 34 00 00 00 01 aa bb cc dd ee ff 00 11"_hex;
    core::Ipv4MutView::check(std::span(p))->update_checksum();
    return p;
}

core::PacketBuf load(core::BufferPool& pool, std::span<const std::uint8_t> bytes) { return test::load(pool, bytes, 64); }

// An ESP packet as an ESP layer with a UDP-encapsulated SA hands it down.
core::PacketBuf marked_esp(core::BufferPool& pool) {
    auto buf = load(pool, esp_packet());
    buf.meta().esp_wants_udp = true;
    return buf;
}

// A UDP/4500 datagram from `from` to the client carrying `payload`.
test::Bytes udp_to_client(core::Endpoint from, std::span<const std::uint8_t> payload, std::uint16_t dport = 4500) {
    test::Bytes p(28 + payload.size());
    core::Ipv4Header ip;
    ip.total_length = static_cast<std::uint16_t>(p.size());
    ip.protocol = core::ip_protocol::udp;
    ip.source = from.address;
    ip.destination = client;
    ip.emit(p);
    core::UdpHeader{from.port, dport, static_cast<std::uint16_t>(8 + payload.size()), 0}.emit(std::span(p).subspan(20));
    std::copy(payload.begin(), payload.end(), p.begin() + 28);
    return p;
}
}  // namespace

TEST_CASE("ESP is wrapped in UDP 4500 and unwrapped again without moving the payload (RFC 3948 §2.1)") {
    core::BufferPool pool(4, 512);
    test::FakeStageContext ctx(pool);
    nat::UdpEncapStage stage({});
    auto original = esp_packet();
    auto buf = load(pool, original);
    buf.meta().esp_wants_udp = true;
    const auto* esp_start = buf.data() + 20;
    REQUIRE(stage.encapsulate(buf, ctx).passed());
    auto ip = core::Ipv4View::check(buf.bytes());
    REQUIRE(ip);
    CHECK(ip->protocol() == core::ip_protocol::udp);
    CHECK(ip->total_length() == original.size() + 8);
    CHECK(ip->checksum_valid());
    auto udp = core::UdpView::check(ip->payload());
    REQUIRE(udp);
    CHECK(udp->source_port() == 4500);
    CHECK(udp->destination_port() == 4500);
    CHECK(udp->checksum() == 0);  // SHOULD be zero for IPv4
    CHECK(udp->payload().data() == esp_start);
    CHECK(test::to_hex(udp->payload()) == test::to_hex(std::span(original).subspan(20)));

    // The peer's view: the same bytes arrive addressed to it; unwrap.
    nat::UdpEncapStage peer({});
    REQUIRE(peer.decapsulate(buf, ctx).passed());
    CHECK(test::to_hex(buf.bytes()) == test::to_hex(original));
    CHECK(buf.data() + 20 == esp_start);
    CHECK_FALSE(buf.meta().esp_wants_udp);  // the request was ours to take
    REQUIRE(buf.meta().esp_in_udp);
    CHECK(buf.meta().esp_in_udp->from == core::Endpoint{client, 4500});
    CHECK(buf.meta().esp_in_udp->to == core::Endpoint{gateway, 4500});
}

TEST_CASE("ESP whose SA did not ask for UDP goes by untouched (encapsulation follows negotiation, RFC 3947)") {
    core::BufferPool pool(2, 512);
    test::FakeStageContext ctx(pool);
    nat::UdpEncapStage stage({.keepalive = std::chrono::seconds(20), .local = client, .remote = gateway});
    auto original = esp_packet();
    auto buf = load(pool, original);
    CHECK(stage.encapsulate(buf, ctx).action == core::Action::NotMine);
    CHECK(test::to_hex(buf.bytes()) == test::to_hex(original));
    // A peer reached with plain ESP needs no NAT keepalives, even with the peer configured.
    ctx.advance(std::chrono::seconds(60));
    CHECK_FALSE(stage.poll(ctx));
    CHECK(ctx.sent.empty());
}

TEST_CASE("configured ports are used both ways") {
    core::BufferPool pool(2, 512);
    test::FakeStageContext ctx(pool);
    nat::UdpEncapStage stage({.local_port = 14500, .remote_port = 24500});
    auto buf = marked_esp(pool);
    REQUIRE(stage.encapsulate(buf, ctx).passed());
    auto udp = core::UdpView::check(core::Ipv4View::check(buf.bytes())->payload());
    CHECK(udp->source_port() == 14500);
    CHECK(udp->destination_port() == 24500);
    auto ka = udp_to_client({gateway, 24500}, "ff"_hex, 4500);
    auto kbuf = load(pool, ka);
    CHECK(stage.decapsulate(kbuf, ctx).action == core::Action::NotMine);  // port 4500 is not this stage's
    CHECK(stage.counters().keepalives_received == 0);
}

TEST_CASE("port 4500 demultiplexing: keepalive, non-ESP marker, ESP, and garbage (RFC 3948 §2.2)") {
    core::BufferPool pool(4, 512);
    test::FakeStageContext ctx(pool);
    nat::UdpEncapStage stage({});
    core::Endpoint gw{gateway, 4500};
    struct Row {
        const char* name;
        test::Bytes payload;
        core::Action action;
        DropReason reason;
    };
    const Row rows[] = {
        {"keepalive 0xFF is consumed", "ff"_hex, core::Action::Consumed, DropReason::None},
        {"one byte that is not 0xFF", "fe"_hex, core::Action::Drop, DropReason::Malformed},
        {"IKE behind the marker passes up unchanged", "00 00 00 00 11 22 33 44 55 66 77 88"_hex, core::Action::Pass, DropReason::None},
        {"two bytes", "12 34"_hex, core::Action::Drop, DropReason::Truncated},
        {"SPI without a sequence number", "00 00 12 34 00 00"_hex, core::Action::Drop, DropReason::Truncated},
        {"empty datagram", ""_hex, core::Action::Drop, DropReason::Truncated},
    };
    for (const auto& row : rows) {
        CAPTURE(row.name);
        auto p = udp_to_client(gw, row.payload);
        auto buf = load(pool, p);
        auto v = stage.decapsulate(buf, ctx);
        CHECK(v.action == row.action);
        CHECK(v.reason == row.reason);
        if (v.action == core::Action::Pass) CHECK(test::to_hex(buf.bytes()) == test::to_hex(p));
    }
    CHECK(stage.counters().keepalives_received == 1);
    CHECK(stage.counters().ike_passed_up == 1);

    // Every truncation of a valid UDP-ESP packet is refused or passed, never mis-parsed.
    auto p = udp_to_client(gw, "00 00 12 34 00 00 00 01 aa bb"_hex);
    for (std::size_t len = 0; len < p.size(); ++len) {
        CAPTURE(len);
        auto buf = load(pool, std::span(p).first(len));
        CHECK(stage.decapsulate(buf, ctx).action == core::Action::Drop);
    }
}

TEST_CASE("keepalives are sent only after the idle interval, and traffic resets it") {
    core::BufferPool pool(8, 512);
    test::FakeStageContext ctx(pool);
    nat::UdpEncapStage stage({.keepalive = std::chrono::seconds(20)});
    CHECK_FALSE(stage.poll(ctx));  // no peer known yet: nothing to keep alive
    auto buf = marked_esp(pool);
    REQUIRE(stage.encapsulate(buf, ctx).passed());
    auto t0 = ctx.now();
    auto due = stage.poll(ctx);
    REQUIRE(due);
    CHECK(*due == t0 + std::chrono::seconds(20));
    ctx.advance(std::chrono::seconds(15));
    auto again = marked_esp(pool);
    REQUIRE(stage.encapsulate(again, ctx).passed());  // traffic: the idle clock restarts
    ctx.advance(std::chrono::seconds(10));
    CHECK(*stage.poll(ctx) == t0 + std::chrono::seconds(35));
    CHECK(ctx.sent.empty());
    ctx.advance(std::chrono::seconds(10));
    (void)stage.poll(ctx);
    REQUIRE(ctx.sent.size() == 1);
    auto ip = core::Ipv4View::check(ctx.sent[0].bytes());
    REQUIRE(ip);
    CHECK(ip->source() == client);
    CHECK(ip->destination() == gateway);
    auto udp = core::UdpView::check(ip->payload());
    CHECK(udp->length() == 9);
    CHECK(test::to_hex(udp->payload()) == "ff");
    CHECK(stage.counters().keepalives_sent == 1);

    nat::UdpEncapStage quiet({.keepalive = core::Duration::zero()});
    auto q = marked_esp(pool);
    REQUIRE(quiet.encapsulate(q, ctx).passed());
    CHECK_FALSE(quiet.poll(ctx));
}

TEST_CASE("the peer endpoint follows PeerFloated, never a bare source port") {
    core::BufferPool pool(4, 512);
    test::FakeStageContext ctx(pool);
    nat::UdpEncapStage stage({});
    auto buf = marked_esp(pool);
    REQUIRE(stage.encapsulate(buf, ctx).passed());
    // An unauthenticated packet from a new port changes nothing by itself.
    auto p = udp_to_client({gateway, 61000}, "00 00 12 34 00 00 00 01 aa bb"_hex);
    auto in = load(pool, p);
    REQUIRE(stage.decapsulate(in, ctx).passed());
    CHECK(stage.peer() == core::Endpoint{gateway, 4500});
    // ESP authenticated it and says so:
    // A float addressed to another UDP layer (another local port or address) is not ours.
    stage.on_event({1, core::PeerFloated{{gateway, 4500}, {gateway, 61000}, {client, 14500}}}, ctx);
    stage.on_event({1, core::PeerFloated{{gateway, 4500}, {gateway, 61000}, {gateway, 4500}}}, ctx);
    CHECK(stage.peer() == core::Endpoint{gateway, 4500});
    stage.on_event({1, core::PeerFloated{{gateway, 4500}, {gateway, 61000}, {client, 4500}}}, ctx);
    CHECK(stage.peer() == core::Endpoint{gateway, 61000});
    auto out = marked_esp(pool);
    REQUIRE(stage.encapsulate(out, ctx).passed());
    CHECK(core::UdpView::check(core::Ipv4View::check(out.bytes())->payload())->destination_port() == 61000);
}

TEST_CASE("non-ESP traffic passes through untouched in both directions") {
    core::BufferPool pool(4, 512);
    test::FakeStageContext ctx(pool);
    nat::UdpEncapStage stage({});
    auto p = esp_packet();
    p[9] = core::ip_protocol::ipip;
    core::Ipv4MutView::check(std::span(p))->update_checksum();
    auto buf = load(pool, p);
    buf.meta().esp_wants_udp = true;  // even a stale request does not make IP-in-IP ours
    REQUIRE(stage.encapsulate(buf, ctx).action == core::Action::NotMine);
    CHECK(test::to_hex(buf.bytes()) == test::to_hex(p));
    REQUIRE(stage.decapsulate(buf, ctx).action == core::Action::NotMine);
    CHECK(test::to_hex(buf.bytes()) == test::to_hex(p));
}

TEST_CASE("keepalives follow the local address when the layer below moves it, and only ours") {
    core::BufferPool pool(8, 512);
    test::FakeStageContext ctx(pool);
    nat::UdpEncapStage stage({.keepalive = std::chrono::seconds(20)});
    auto buf = marked_esp(pool);
    REQUIRE(stage.encapsulate(buf, ctx).passed());  // learns local 10.0.0.2 and the gateway
    const auto moved_to = *core::Ipv4Address::parse("10.0.0.77");
    stage.on_event({2, core::OuterAddressChanged{*core::Ipv4Address::parse("192.0.2.9"), moved_to, 3}}, ctx);  // not ours
    stage.on_event({2, core::OuterAddressChanged{client, moved_to, 3}}, ctx);
    ctx.advance(std::chrono::seconds(21));
    (void)stage.poll(ctx);
    REQUIRE(ctx.sent.size() == 1);
    CHECK(core::Ipv4View::check(ctx.sent[0].bytes())->source() == moved_to);
}

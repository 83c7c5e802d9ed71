// SPDX-License-Identifier: MIT
#include <doctest/doctest.h>

#include "core/buffer_pool.hpp"
#include "mip/tunnel_encap.hpp"
#include "tests/mip/mip_test_support.hpp"
#include "tests/mip/stage_network.hpp"
#include "tests/support/vectors.hpp"

using namespace mipsec;
using namespace mipsec::test::literals;
using core::DropReason;
using test::ip;

TEST_CASE("IP-in-UDP framing matches the RFC 3519 §3.3 worked example (keepalive)") {
    const auto v = test::load_vectors("mipv4_registration_worked_example.json")["tunnel_data_message_example"];
    const auto inner = test::from_hex(v["inner_ipv4_packet"].get<std::string>());
    core::BufferPool pool(2, 512);
    auto buf = test::load(pool, inner, 64);
    const auto* payload = buf.data();
    REQUIRE(mip::push_ip_in_udp(buf, {ip("192.168.1.23"), ip("10.1.0.1"), 64, false, 7}, 40000, 434).passed());
    CHECK(buf.data() + mip::ip_in_udp_overhead == payload);
    auto outer = core::Ipv4View::check(buf.bytes());
    REQUIRE(outer);
    CHECK(outer->protocol() == core::ip_protocol::udp);
    CHECK(outer->total_length() == inner.size() + 32);
    CHECK(outer->identification() == 7);
    CHECK(outer->checksum_valid());
    auto udp = mip::udp_of(*outer);
    REQUIRE(udp);
    CHECK(udp->source_port() == 40000);
    CHECK(udp->destination_port() == 434);
    CHECK(udp->length() == inner.size() + 12);
    CHECK(udp->checksum() != 0);
    CHECK(udp->checksum_valid(outer->source(), outer->destination()));
    CHECK(test::to_hex(udp->payload()) == v["udp_payload"].get<std::string>());

    auto t = mip::peek_tunnel(*outer);
    REQUIRE(t);
    CHECK(t->kind == mip::TunnelKind::Udp);
    CHECK(t->source == ip("192.168.1.23"));
    CHECK(t->source_port == 40000);
    CHECK(t->next_header == 4);
    CHECK(t->outer_len == 32);
    CHECK(t->udp_checksum_ok);
    REQUIRE(mip::strip_tunnel(buf, *t).passed());
    CHECK(buf.data() == payload);
    CHECK(test::to_hex(buf.bytes()) == test::to_hex(inner));
}

TEST_CASE("IP-in-IP outer header rules (RFC 2003 §3.1): TOS copied, DF follows inner, TTL ours") {
    core::BufferPool pool(2, 512);
    struct Row {
        const char* name;
        std::uint8_t tos;
        bool inner_df;
        bool df_when_clear;
        bool expect_df;
    };
    const Row rows[] = {
        {"DF copied", 0x10, true, false, true},
        {"DF clear stays clear", 0x00, false, false, false},
        {"DF forced by config", 0xb8, false, true, true},
    };
    for (const auto& row : rows) {
        CAPTURE(row.name);
        auto p = test::echo_packet(ip("10.0.0.1"), ip("10.0.1.1"));
        auto v = core::Ipv4MutView::check(std::span(p));
        v->set_tos(row.tos);
        v->set_flags_fragment(row.inner_df ? core::Ipv4View::flag_df : 0);
        v->update_checksum();
        p.push_back(0xEE);  // link padding after Total Length is dropped
        auto buf = test::load(pool, p, 64);
        REQUIRE(mip::push_ip_in_ip(buf, {ip("192.0.2.1"), ip("192.0.2.2"), 17, row.df_when_clear, 1}).passed());
        auto outer = core::Ipv4View::check(buf.bytes());
        CHECK(outer->tos() == row.tos);
        CHECK(outer->dont_fragment() == row.expect_df);
        CHECK(outer->ttl() == 17);
        CHECK(outer->total_length() == p.size() - 1 + 20);
        CHECK(buf.size() == p.size() - 1 + 20);
    }
}

TEST_CASE("tunnel helpers refuse bad inner packets and bad tunnels") {
    core::BufferPool pool(4, 512);
    {
        auto p = test::echo_packet(ip("10.0.0.1"), ip("10.0.1.1"), 1, 8, 0);
        auto buf = test::load(pool, p, 64);
        CHECK(mip::push_ip_in_udp(buf, {ip("192.0.2.1"), ip("192.0.2.2")}, 1, 434).reason == DropReason::TtlExpired);
    }
    {
        auto buf = test::load(pool, test::echo_packet(ip("10.0.0.1"), ip("10.0.1.1")), 10);
        CHECK(mip::push_ip_in_ip(buf, {ip("192.0.2.1"), ip("192.0.2.2")}).reason == DropReason::NoHeadroom);
    }
    {
        auto buf = test::load(pool, "60000000"_hex, 64);
        CHECK(mip::push_ip_in_ip(buf, {}).reason == DropReason::UnexpectedProtocol);
    }
    // Every truncation of a valid IP-in-UDP packet is either unrecognised or rejected on strip.
    auto full = test::load(pool, test::echo_packet(ip("10.0.0.1"), ip("10.0.1.1")), 64);
    REQUIRE(mip::push_ip_in_udp(full, {ip("192.0.2.1"), ip("192.0.2.2")}, 5000, 434).passed());
    const auto bytes = test::bytes_of(full);
    for (std::size_t len = 0; len < bytes.size(); ++len) {
        CAPTURE(len);
        test::Bytes cut(bytes.begin(), bytes.begin() + static_cast<std::ptrdiff_t>(len));
        if (len >= 4) core::store_be16(cut.data() + 2, static_cast<std::uint16_t>(len));  // a consistent outer header
        auto outer = core::Ipv4View::check(std::span<const std::uint8_t>(cut));
        if (!outer) continue;
        auto t = mip::peek_tunnel(*outer);
        if (!t) continue;
        auto buf = test::load(pool, cut, 64);
        CHECK(mip::strip_tunnel(buf, *t).action == core::Action::Drop);
    }
    // Decapsulated TTL 0 is dropped; non-tunnel packets are not recognised.
    auto zero = test::load(pool, test::echo_packet(ip("10.0.0.1"), ip("10.0.1.1")), 64);
    REQUIRE(mip::push_ip_in_ip(zero, {ip("192.0.2.1"), ip("192.0.2.2")}).passed());
    zero.data()[20 + 8] = 0;
    auto t = mip::peek_tunnel(*core::Ipv4View::check(zero.bytes()));
    REQUIRE(t);
    CHECK(t->kind == mip::TunnelKind::IpInIp);
    CHECK(mip::strip_tunnel(zero, *t).reason == DropReason::TtlExpired);
    const auto plain = test::echo_packet(ip("10.0.0.1"), ip("10.0.1.1"));
    CHECK_FALSE(mip::peek_tunnel(*core::Ipv4View::check(std::span(plain))));
    const auto registration = test::udp_packet({ip("10.0.0.1"), 40000}, {ip("10.0.1.1"), 434}, "01000000"_hex);
    CHECK_FALSE(mip::peek_tunnel(*core::Ipv4View::check(std::span(registration))));
    const auto other_port = test::udp_packet({ip("10.0.0.1"), 40000}, {ip("10.0.1.1"), 4500}, "04040000"_hex);
    CHECK_FALSE(mip::peek_tunnel(*core::Ipv4View::check(std::span(other_port))));
}

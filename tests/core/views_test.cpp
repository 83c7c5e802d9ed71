// SPDX-License-Identifier: MIT
// The smoltcp set for every core view: read fields from fixed bytes, write fields and compare
// bytes, reject each truncation, parse to a struct, emit from a struct, round-trip.
#include <doctest/doctest.h>

#include "core/icmp.hpp"
#include "core/ipv4.hpp"
#include "core/udp.hpp"
#include "tests/support/hex.hpp"

using namespace mipsec::core;
using namespace mipsec::test;
using namespace mipsec::test::literals;

namespace {
// UDP 192.0.2.1:1234 -> 198.51.100.2:434, payload "abcd", TOS 0x28, DF, TTL 63, ID 0x1c46.
const Bytes ipv4_udp = "45 28 00 20 1c 46 40 00 3f 11 00 00 c0 00 02 01 c6 33 64 02"
                       " 04 d2 01 b2 00 0c 00 00 61 62 63 64"_hex;

Bytes with_checksums() {
    Bytes b = ipv4_udp;
    auto ip = Ipv4MutView::check(std::span(b));
    ip->update_checksum();
    UdpMutView::check(ip->payload())->update_checksum(ip->source(), ip->destination());
    return b;
}
}  // namespace

TEST_CASE("IPv4 view reads every field") {
    auto b = with_checksums();
    auto ip = Ipv4View::check(std::span<const std::uint8_t>(b));
    REQUIRE(ip);
    CHECK(ip->version() == 4);
    CHECK(ip->header_len() == 20);
    CHECK(ip->tos() == 0x28);
    CHECK(ip->total_length() == 32);
    CHECK(ip->identification() == 0x1c46);
    CHECK(ip->dont_fragment());
    CHECK_FALSE(ip->more_fragments());
    CHECK(ip->fragment_offset() == 0);
    CHECK_FALSE(ip->is_fragment());
    CHECK(ip->ttl() == 63);
    CHECK(ip->protocol() == ip_protocol::udp);
    CHECK(ip->source().to_string() == "192.0.2.1");
    CHECK(ip->destination().to_string() == "198.51.100.2");
    CHECK(ip->payload().size() == 12);
    CHECK(ip->checksum_valid());
}

TEST_CASE("IPv4 view writes fields to the right bytes") {
    Bytes b(20, 0);
    b[0] = 0x45;
    b[3] = 20;
    auto ip = Ipv4MutView::check(std::span(b));
    REQUIRE(ip);
    ip->set_tos(0x28);
    ip->set_total_length(32);
    ip->set_identification(0x1c46);
    ip->set_flags_fragment(Ipv4View::flag_df);
    ip->set_ttl(63);
    ip->set_protocol(17);
    ip->set_source(*Ipv4Address::parse("192.0.2.1"));
    ip->set_destination(*Ipv4Address::parse("198.51.100.2"));
    CHECK(to_hex(b) == to_hex(Bytes(ipv4_udp.begin(), ipv4_udp.begin() + 20)));
}

TEST_CASE("IPv4 check rejects every truncation and impossible header") {
    auto b = with_checksums();
    for (std::size_t len = 0; len < b.size(); ++len) {
        CAPTURE(len);
        CHECK_FALSE(Ipv4View::check(std::span<const std::uint8_t>(b).first(len)));
    }
    struct Row {
        const char* name;
        std::size_t offset;
        std::uint8_t value;
    };
    const Row rows[] = {
        {"version 6", 0, 0x65}, {"IHL 4", 0, 0x44}, {"IHL beyond the buffer", 0, 0x4f},
        {"total length below header", 3, 19}, {"total length beyond the buffer", 3, 33},
    };
    for (const auto& row : rows) {
        CAPTURE(row.name);
        auto bad = b;
        bad[row.offset] = row.value;
        CHECK_FALSE(Ipv4View::check(std::span<const std::uint8_t>(bad)));
    }
    auto padded = b;
    padded.push_back(0);  // link-layer padding beyond Total Length is allowed and ignored
    auto ip = Ipv4View::check(std::span<const std::uint8_t>(padded));
    REQUIRE(ip);
    CHECK(ip->packet().size() == 32);
}

TEST_CASE("IPv4 header parse/emit round trip and TTL decrement keeps the checksum valid") {
    auto b = with_checksums();
    auto ip = Ipv4View::check(std::span<const std::uint8_t>(b));
    auto h = Ipv4Header::parse(*ip);
    Bytes out(20);
    h.emit(out);
    CHECK(to_hex(out) == to_hex(std::span(b).first(20)));
    auto mut = Ipv4MutView::check(std::span(b));
    mut->decrement_ttl();
    CHECK(mut->ttl() == 62);
    CHECK(mut->checksum_valid());
}

TEST_CASE("UDP view: fields, checksum, truncation, round trip") {
    auto b = with_checksums();
    auto ip = Ipv4View::check(std::span<const std::uint8_t>(b));
    auto udp = UdpView::check(ip->payload());
    REQUIRE(udp);
    CHECK(udp->source_port() == 1234);
    CHECK(udp->destination_port() == 434);
    CHECK(udp->length() == 12);
    CHECK(udp->checksum() != 0);
    CHECK(udp->checksum_valid(ip->source(), ip->destination()));
    CHECK(to_hex(udp->payload()) == "61626364");
    auto h = UdpHeader::parse(*udp);
    Bytes out(8);
    h.emit(out);
    CHECK(to_hex(out) == to_hex(ip->payload().first(8)));
    for (std::size_t len = 0; len < 12; ++len) {
        CAPTURE(len);
        CHECK_FALSE(UdpView::check(ip->payload().first(len)));
    }
    auto bad = b;
    bad[20 + 5] = 7;  // Length below the header
    CHECK_FALSE(UdpView::check(Ipv4View::check(std::span<const std::uint8_t>(bad))->payload()));
    auto corrupt = b;
    corrupt.back() ^= 1;
    auto cip = Ipv4View::check(std::span<const std::uint8_t>(corrupt));
    CHECK_FALSE(UdpView::check(cip->payload())->checksum_valid(cip->source(), cip->destination()));
    auto zero = b;
    zero[26] = zero[27] = 0;  // a zero UDP checksum means "not computed" and is accepted
    auto zip = Ipv4View::check(std::span<const std::uint8_t>(zero));
    CHECK(UdpView::check(zip->payload())->checksum_valid(zip->source(), zip->destination()));
}

TEST_CASE("ICMP view: echo request fields, checksum, truncation") {
    auto b = "08 00 00 00 12 34 00 07 de ad be ef"_hex;
    auto icmp = IcmpMutView::check(std::span(b));
    REQUIRE(icmp);
    icmp->update_checksum();
    CHECK(icmp->checksum_valid());
    CHECK(icmp->type() == icmp_type::echo_request);
    CHECK(icmp->code() == 0);
    CHECK(icmp->echo_identifier() == 0x1234);
    CHECK(icmp->echo_sequence() == 7);
    CHECK(to_hex(icmp->body()) == "deadbeef");
    icmp->set_type(icmp_type::echo_reply);
    icmp->update_checksum();
    CHECK(b[0] == 0);
    CHECK(IcmpView::check(std::span<const std::uint8_t>(b))->checksum_valid());
    for (std::size_t len = 0; len < 8; ++len) CHECK_FALSE(IcmpView::check(std::span<const std::uint8_t>(b).first(len)));
}

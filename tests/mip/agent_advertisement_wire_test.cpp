// SPDX-License-Identifier: MIT
#include <doctest/doctest.h>

#include "core/checksum.hpp"
#include "mip/agent_advertisement_wire.hpp"
#include "tests/mip/mip_test_support.hpp"
#include "tests/support/hex.hpp"

using namespace mipsec;
using namespace mipsec::test::literals;
using test::ip;
using test::to_hex;

namespace {
// ICMP type 9 code 16, one router 192.0.2.1 pref 5, lifetime 1800; MAAE seq 257, reg lifetime
// 600, flags R F T (0x91), U (0x80), CoA 192.0.2.1; Prefix-Lengths 24; one pad byte.
test::Bytes advert() {
    auto b = test::from_hex("09 10 00 00 01 02 07 08 c0 00 02 01 00 00 00 05"
              "10 0a 01 01 02 58 91 80 c0 00 02 01"
              "13 01 18 00");
    core::store_be16(b.data() + 2, core::internet_checksum(b));
    return b;
}
}  // namespace

TEST_CASE("agent advertisement view reads ICMP and MAAE fields (RFC 5944 §2.1)") {
    const auto b = advert();
    auto v = mip::AgentAdvertisementView::check(b);
    REQUIRE(v);
    CHECK(core::internet_checksum(v->message()) == 0);
    CHECK(v->code() == 16);
    CHECK(v->num_addrs() == 1);
    CHECK(v->addr_entry_size() == 2);
    CHECK(v->lifetime() == 1800);
    CHECK(v->router_address(0) == ip("192.0.2.1"));
    CHECK(v->preference(0) == 5);
    auto m = v->mobility_extension();
    REQUIRE(m);
    CHECK(m->sequence_number() == 257);
    CHECK(m->registration_lifetime() == 600);
    CHECK(m->registration_required());
    CHECK(m->foreign_agent());
    CHECK(m->reverse_tunnel());
    CHECK_FALSE(m->home_agent());
    CHECK_FALSE(m->busy());
    CHECK(m->udp_tunnelling());
    CHECK(m->care_of_count() == 1);
    CHECK(m->care_of_address(0) == ip("192.0.2.1"));
    REQUIRE(v->prefix_lengths().size() == 1);
    CHECK(v->prefix_lengths()[0] == 24);
}

TEST_CASE("agent advertisement: truncations and malformed forms are rejected") {
    const auto b = advert();
    for (std::size_t len = 0; len < 16; ++len) {
        CAPTURE(len);
        CHECK_FALSE(mip::AgentAdvertisementView::check(std::span(b).first(len)));
    }
    // From 16 bytes on the ICMP part is fine; the MAAE appears only once complete.
    for (std::size_t len = 16; len < 28; ++len) {
        CAPTURE(len);
        auto v = mip::AgentAdvertisementView::check(std::span(b).first(len));
        REQUIRE(v);
        CHECK_FALSE(v->mobility_extension());
    }
    auto bad_entry = b;
    bad_entry[5] = 1;
    CHECK_FALSE(mip::AgentAdvertisementView::check(bad_entry));
    auto bad_maae = b;
    bad_maae[17] = 7;  // not 6 + 4K
    CHECK_FALSE(mip::AgentAdvertisementView::check(bad_maae)->mobility_extension());
    auto solicitation = b;
    solicitation[0] = 10;
    CHECK_FALSE(mip::AgentAdvertisementView::check(solicitation));
}

TEST_CASE("agent advertisement struct: parse, emit, round-trip") {
    const auto b = advert();
    auto a = mip::AgentAdvertisement::parse(*mip::AgentAdvertisementView::check(b));
    REQUIRE(a);
    CHECK(a->sequence_number == 257);
    CHECK(a->registration_required());
    CHECK(a->foreign_agent());
    CHECK(a->udp_tunnelling());
    CHECK(a->care_of_count == 1);
    CHECK(a->care_of[0] == ip("192.0.2.1"));
    CHECK(a->prefix_length == 24);

    test::Bytes out(64);
    const std::size_t n = a->emit(out);
    REQUIRE(n == 20);
    out.resize(n);
    auto expected = "09 10 00 00 00 02 07 08 10 0a 01 01 02 58 91 80 c0 00 02 01"_hex;
    core::store_be16(expected.data() + 2, core::internet_checksum(expected));
    CHECK(to_hex(out) == to_hex(expected));
    auto again = mip::AgentAdvertisement::parse(*mip::AgentAdvertisementView::check(out));
    REQUIRE(again);
    CHECK(again->sequence_number == a->sequence_number);
    CHECK(again->flags == a->flags);
    CHECK(again->flags2 == a->flags2);
    CHECK(again->care_of[0] == a->care_of[0]);
    CHECK_FALSE(again->prefix_length);
    test::Bytes small(10);
    CHECK(a->emit(small) == 0);
}

TEST_CASE("agent solicitation: emit and view") {
    test::Bytes out(8, 0xAA);
    mip::emit_agent_solicitation(out);
    CHECK(to_hex(out) == "0a00f5ff00000000");
    auto v = mip::AgentSolicitationView::check(out);
    REQUIRE(v);
    CHECK(v->type() == 10);
    CHECK(v->code() == 0);
    CHECK(v->reserved() == 0);
    for (std::size_t len = 0; len < 8; ++len) CHECK_FALSE(mip::AgentSolicitationView::check(std::span(out).first(len)));
}

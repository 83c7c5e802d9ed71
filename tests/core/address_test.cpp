// SPDX-License-Identifier: MIT
#include <doctest/doctest.h>

#include "core/address.hpp"

using namespace mipsec::core;

TEST_CASE("IPv4 address text parsing accepts dotted quads only") {
    struct Row {
        const char* text;
        bool ok;
        std::uint32_t value;
    };
    const Row rows[] = {
        {"192.0.2.1", true, 0xC0000201}, {"0.0.0.0", true, 0}, {"255.255.255.255", true, 0xFFFFFFFF},
        {"10.1.0.77", true, 0x0A01004D}, {"256.0.0.1", false, 0}, {"1.2.3", false, 0}, {"1.2.3.4.5", false, 0},
        {"1..2.3", false, 0}, {"", false, 0}, {"a.b.c.d", false, 0}, {"1.2.3.4 ", false, 0}, {"-1.2.3.4", false, 0},
        {"0001.2.3.4", false, 0}, {"1.2.3.4/24", false, 0},
    };
    for (const auto& row : rows) {
        CAPTURE(row.text);
        auto a = Ipv4Address::parse(row.text);
        REQUIRE(a.has_value() == row.ok);
        if (row.ok) {
            CHECK(a->value == row.value);
            CHECK(a->to_string() == row.text);
        }
    }
}

TEST_CASE("prefixes and endpoints") {
    auto p = Ipv4Prefix::parse("10.1.2.3/16");
    REQUIRE(p);
    CHECK(p->length == 16);
    CHECK(p->network() == *Ipv4Address::parse("10.1.0.0"));
    CHECK(p->contains(*Ipv4Address::parse("10.1.255.1")));
    CHECK_FALSE(p->contains(*Ipv4Address::parse("10.2.0.1")));
    CHECK(Ipv4Prefix::parse("0.0.0.0/0")->contains(*Ipv4Address::parse("203.0.113.9")));
    CHECK(Ipv4Prefix::parse("10.0.0.1")->length == 32);
    CHECK_FALSE(Ipv4Prefix::parse("10.0.0.1/33"));
    CHECK_FALSE(Ipv4Prefix::parse("10.0.0.1/"));
    auto e = Endpoint::parse("198.51.100.7:4500");
    REQUIRE(e);
    CHECK(e->port == 4500);
    CHECK(e->to_string() == "198.51.100.7:4500");
    CHECK_FALSE(Endpoint::parse("198.51.100.7:65536"));
    CHECK_FALSE(Endpoint::parse("198.51.100.7"));
}

// SPDX-License-Identifier: MIT
#include <doctest/doctest.h>

#include <algorithm>
#include <ostream>  // doctest prints std::error_code through operator<<

#include "ipsec/ike/byte_writer.hpp"
#include "ipsec/ike/data_attribute.hpp"
#include "ipsec/ike/errc.hpp"
#include "tests/support/hex.hpp"

using namespace mipsec;
using namespace mipsec::ipsec::ike;
using namespace mipsec::test::literals;

namespace {
test::Bytes write(const AttributeList& l) {
    auto m = ByteWriter::measuring();
    l.write(m);
    REQUIRE(m.ok());
    test::Bytes out(m.pos());
    ByteWriter w(out);
    l.write(w);
    REQUIRE(w.ok());
    return out;
}
}  // namespace

TEST_CASE("data attribute view reads TV and TLV forms (RFC 2408 §3.3)") {
    auto tv = "80 0e 00 80"_hex;  // Key Length 128
    auto v = DataAttributeView::check(std::span<const std::uint8_t>(tv));
    REQUIRE(v);
    CHECK(v->is_tv());
    CHECK(v->type() == 14);
    CHECK(test::to_hex(v->value()) == "0080");
    CHECK(v->total_len() == 4);

    auto tlv = "00 0c 00 04 00 01 51 80"_hex;  // Life Duration 86400
    auto w = DataAttributeView::check(std::span<const std::uint8_t>(tlv));
    REQUIRE(w);
    CHECK_FALSE(w->is_tv());
    CHECK(w->type() == 12);
    CHECK(test::to_hex(w->value()) == "00015180");
    CHECK(w->total_len() == 8);
    for (std::size_t n = 0; n < tlv.size(); ++n) {
        CAPTURE(n);
        CHECK_FALSE(DataAttributeView::check(std::span<const std::uint8_t>(tlv).first(n)));
    }
    for (std::size_t n = 0; n < tv.size(); ++n) CHECK_FALSE(DataAttributeView::check(std::span<const std::uint8_t>(tv).first(n)));
}

TEST_CASE("attribute list parses, finds, emits and round-trips both forms") {
    // TV Encryption AES-CBC, TLV Life Duration 86400, zero-length TLV (Mode Config request).
    auto bytes = "80 01 00 07  00 0c 00 04 00 01 51 80  00 01 00 00"_hex;
    auto l = AttributeList::parse(bytes);
    REQUIRE(l);
    REQUIRE(l->size() == 3);
    CHECK(l->items[0] == DataAttribute::basic(1, 7));
    CHECK(l->items[1] == DataAttribute::variable(12, "00015180"_hex));
    CHECK(l->items[2] == DataAttribute::variable(1, {}));
    CHECK(l->integer(12) == 86400u);
    CHECK(l->integer(1) == 7u);
    CHECK_FALSE(l->find(99));
    CHECK_FALSE(l->items[2].as_integer());  // zero-length: no value
    CHECK(write(*l) == bytes);

    AttributeList built{DataAttribute::basic(1, 7), DataAttribute::integer(12, 86400), DataAttribute::variable(1, {})};
    CHECK(built == *l);
    CHECK(write(built) == bytes);

    for (std::size_t n = 1; n < bytes.size(); ++n) {
        if (n == 4 || n == 12) continue;  // whole-attribute boundaries are valid lists
        CAPTURE(n);
        CHECK(AttributeList::parse(std::span(bytes).first(n)).error() == Errc::Truncated);
    }
}

TEST_CASE("DataAttribute::integer picks TV, 4-byte or 8-byte TLV like strongSwan") {
    CHECK(DataAttribute::integer(12, 15840) == DataAttribute::basic(12, 15840));
    CHECK(DataAttribute::integer(12, 0xFFFF).tv);
    auto four = DataAttribute::integer(12, 0x10000);
    CHECK_FALSE(four.tv);
    CHECK(four.value == "00010000"_hex);
    auto eight = DataAttribute::integer(12, 0x100000000ull);
    CHECK(eight.value == "0000000100000000"_hex);
    CHECK(eight.as_integer() == 0x100000000ull);
    CHECK_FALSE(DataAttribute::variable(1, test::Bytes(9, 1)).as_integer());
}

TEST_CASE("attribute emit rejects values that do not fit the wire form") {
    const DataAttribute bad[] = {
        {0x8000, true, "0001"_hex},  // type has 15 bits
        {1, true, "01"_hex},         // TV carries exactly 2 bytes
        {1, true, "010203"_hex},
        {1, false, test::Bytes(0x10000, 0)},  // TLV length is 16 bits
    };
    for (const auto& a : bad) {
        auto w = ByteWriter::measuring();
        a.write(w);
        CHECK(w.error() == Errc::InvalidArgument);
    }
}

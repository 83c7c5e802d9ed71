// SPDX-License-Identifier: MIT
#include <doctest/doctest.h>

#include "ipsec/esp_wire.hpp"
#include "tests/support/hex.hpp"

using namespace mipsec;
using namespace mipsec::test::literals;
using ipsec::EspHeader;
using ipsec::EspTrailer;

// RFC 3602 §4 case 7 (tunnel mode): SPI 0x8765, seq 2, then the IV.
TEST_CASE("EspView reads SPI and sequence number from fixed bytes (RFC 4303 §2)") {
    const auto bytes = "00 00 87 65 00 00 00 02 f4 e7 65 24 4f 64 07 ad"_hex;
    auto v = ipsec::EspView::check(std::span(bytes));
    REQUIRE(v);
    CHECK(v->spi() == 0x8765);
    CHECK(v->seq() == 2);
    CHECK(v->payload().size() == 8);
    CHECK(v->payload()[0] == 0xf4);
    CHECK(v->header().size() == 8);
    CHECK(EspHeader::parse(*v) == EspHeader{0x8765, 2});
}

TEST_CASE("EspMutView writes fields big-endian") {
    test::Bytes bytes(12, 0xEE);
    auto v = ipsec::EspMutView::check(std::span(bytes));
    REQUIRE(v);
    v->set_spi(0x01020304);
    v->set_seq(0xA0B0C0D0);
    CHECK(test::to_hex(bytes) == test::to_hex("01 02 03 04 a0 b0 c0 d0 ee ee ee ee"_hex));
}

TEST_CASE("EspView rejects every truncation of the header") {
    const auto bytes = "00 00 87 65 00 00 00 02"_hex;
    for (std::size_t len = 0; len < bytes.size(); ++len) {
        CAPTURE(len);
        CHECK_FALSE(ipsec::EspView::check(std::span(bytes).first(len)));
    }
    CHECK(ipsec::EspView::check(std::span(bytes)));
}

TEST_CASE("EspHeader emit and parse round-trip") {
    const EspHeader rows[] = {{1, 1}, {0x12345678, 0}, {0xFFFFFFFF, 0xFFFFFFFF}, {0x4321, 0x87654321}};
    for (const auto& h : rows) {
        test::Bytes out(8);
        h.emit(out);
        auto v = ipsec::EspView::check(std::span<const std::uint8_t>(out));
        REQUIRE(v);
        CHECK(EspHeader::parse(*v) == h);
    }
    test::Bytes out(8);
    EspHeader{0x8765, 2}.emit(out);
    CHECK(test::to_hex(out) == "0000876500000002");
}

TEST_CASE("minimal padding: CBC to 16 bytes, AEAD to 4 (RFC 4303 §2.4, RFC 4106 §3)") {
    struct Row {
        std::size_t payload_len, align, pad;
    };
    const Row rows[] = {
        {84, 16, 10},  // RFC 3602 case 7: 84-byte ping, pad 01..0a
        {68, 16, 10}, {14, 16, 0}, {15, 16, 15}, {0, 16, 14}, {30, 16, 0}, {31, 16, 15},
        {84, 4, 2},  // RFC 7634 example: pad 01 02
        {62, 4, 0}, {73, 4, 1}, {0, 4, 2}, {1, 4, 1}, {2, 4, 0}, {3, 4, 3},
    };
    for (const auto& r : rows) {
        CAPTURE(r.payload_len);
        CAPTURE(r.align);
        CHECK(EspTrailer::pad_len_for(r.payload_len, r.align) == r.pad);
        CHECK((r.payload_len + r.pad + EspTrailer::len) % r.align == 0);
    }
}

TEST_CASE("EspTrailer parses, emits and checks the default padding") {
    // RFC 3602 case 7 plaintext tail: padding 01..0a, pad length 0a, next header 04.
    const auto tail = "aa bb 01 02 03 04 05 06 07 08 09 0a 0a 04"_hex;
    auto t = EspTrailer::parse(tail);
    REQUIRE(t);
    CHECK(t->pad_length == 10);
    CHECK(t->next_header == 4);
    CHECK(EspTrailer::padding_valid(std::span(tail).subspan(2, 10)));

    test::Bytes out(14, 0xaa);
    out[0] = 0xaa;
    out[1] = 0xbb;
    EspTrailer::fill_padding(std::span(out).subspan(2, 10));
    EspTrailer{10, 4}.emit(out);
    CHECK(test::to_hex(out) == test::to_hex(tail));

    struct Bad {
        const char* name;
        test::Bytes bytes;
    };
    const Bad bad[] = {
        {"empty", ""_hex},
        {"one byte", "04"_hex},
        {"pad length beyond the data", "01 02 03 04"_hex},
        {"pad length 255 in a short packet", "ff 04"_hex},
    };
    for (const auto& b : bad) {
        CAPTURE(b.name);
        CHECK_FALSE(EspTrailer::parse(b.bytes));
    }
    CHECK(EspTrailer::parse("00 3b"_hex)->next_header == 59);
    CHECK_FALSE(EspTrailer::padding_valid("01 02 04"_hex));
    CHECK_FALSE(EspTrailer::padding_valid("00"_hex));
    CHECK(EspTrailer::padding_valid(""_hex));
}

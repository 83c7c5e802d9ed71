// SPDX-License-Identifier: MIT
#include <doctest/doctest.h>

#include <algorithm>
#include <ostream>  // doctest prints std::error_code through operator<<

#include "ipsec/ike/errc.hpp"
#include "ipsec/ike/isakmp_header.hpp"
#include "ipsec/ike/message.hpp"
#include "tests/support/hex.hpp"

using namespace mipsec;
using namespace mipsec::ipsec::ike;
using namespace mipsec::test::literals;

namespace {
// Quick Mode message 1 header: E flag, M-ID 0xdeadbeef, Length 0x5c (92) with a 64-byte body.
test::Bytes qm_header() {
    return "0102030405060708 a1a2a3a4a5a6a7a8 08 10 20 01 deadbeef 0000005c"_hex;
}
}  // namespace

TEST_CASE("ISAKMP header view reads fields from fixed bytes (RFC 2408 §3.1)") {
    auto b = qm_header();
    b.resize(92, 0xEE);
    auto v = IsakmpHeaderView::check(std::span<const std::uint8_t>(b));
    REQUIRE(v);
    CHECK(test::to_hex(v->initiator_cookie()) == "0102030405060708");
    CHECK(test::to_hex(v->responder_cookie()) == "a1a2a3a4a5a6a7a8");
    CHECK(v->next_payload() == payload_type::hash);
    CHECK(v->version() == 0x10);
    CHECK(v->major_version() == 1);
    CHECK(v->minor_version() == 0);
    CHECK(v->exchange_type() == exchange_type::quick_mode);
    CHECK(v->encrypted());
    CHECK_FALSE(v->commit());
    CHECK_FALSE(v->authentication_only());
    CHECK(v->message_id() == 0xdeadbeef);
    CHECK(v->length() == 92);
    CHECK(v->body().size() == 64);
    CHECK(v->body()[0] == 0xEE);
    CHECK(v->message().size() == 92);
}

TEST_CASE("ISAKMP header mutable view writes fields") {
    test::Bytes b(28 + 4, 0);
    b[27] = 28;  // valid Length to pass check()
    auto v = IsakmpHeaderMutView::check(std::span<std::uint8_t>(b));
    REQUIRE(v);
    std::ranges::copy("0102030405060708"_hex, v->initiator_cookie().begin());
    std::ranges::copy("a1a2a3a4a5a6a7a8"_hex, v->responder_cookie().begin());
    v->set_next_payload(payload_type::hash);
    v->set_version(isakmp_version);
    v->set_exchange_type(exchange_type::quick_mode);
    v->set_flags(header_flag::encryption);
    v->set_message_id(0xdeadbeef);
    v->set_length(92);
    CHECK(test::to_hex(std::span(b).first(28)) == test::to_hex(qm_header()));
}

TEST_CASE("ISAKMP header check() rejects every truncation and bad Length") {
    auto b = qm_header();
    b.resize(92, 0);
    for (std::size_t n = 0; n < b.size(); ++n) {
        CAPTURE(n);
        CHECK_FALSE(IsakmpHeaderView::check(std::span<const std::uint8_t>(b).first(n)));
    }
    CHECK(IsakmpHeaderView::check(std::span<const std::uint8_t>(b)));
    b[27] = 27;  // Length below the header itself
    CHECK_FALSE(IsakmpHeaderView::check(std::span<const std::uint8_t>(b)));
}

TEST_CASE("IsakmpHeader parses from the view and emits the same bytes") {
    auto b = qm_header();
    b.resize(92, 0);
    auto h = IsakmpHeader::parse(*IsakmpHeaderView::check(std::span<const std::uint8_t>(b)));
    CHECK(h.initiator_cookie == Cookie{1, 2, 3, 4, 5, 6, 7, 8});
    CHECK(h.next_payload == payload_type::hash);
    CHECK(h.exchange_type == exchange_type::quick_mode);
    CHECK(h.encrypted());
    CHECK(h.message_id == 0xdeadbeef);
    CHECK(h.length == 92);
    CHECK(test::to_hex(h.cookies()) == "0102030405060708a1a2a3a4a5a6a7a8");

    test::Bytes out(28);
    auto n = h.emit(out);
    REQUIRE(n);
    CHECK(*n == 28);
    CHECK(out == qm_header());
    test::Bytes small(27);
    CHECK(h.emit(small).error() == Errc::BufferTooSmall);
}

TEST_CASE("message parse judges the header: version, Length, trailing bytes") {
    // Plaintext header-only Informational (no payloads): Length 28.
    const auto ok = "0102030405060708 0000000000000000 00 10 05 00 00000000 0000001c"_hex;
    REQUIRE(parse(ok));
    struct Row {
        const char* name;
        test::Bytes bytes;
        Errc want;
    };
    const Row rows[] = {
        {"major version 2", "0102030405060708 0000000000000000 00 20 05 00 00000000 0000001c"_hex,
         Errc::InvalidMajorVersion},
        {"major version 0", "0102030405060708 0000000000000000 00 00 05 00 00000000 0000001c"_hex,
         Errc::InvalidMajorVersion},
        {"Length below 28", "0102030405060708 0000000000000000 00 10 05 00 00000000 0000001b"_hex,
         Errc::InvalidLength},
        {"Length past datagram", "0102030405060708 0000000000000000 00 10 05 00 00000000 0000001d"_hex,
         Errc::Truncated},
        {"bytes after Length", "0102030405060708 0000000000000000 00 10 05 00 00000000 0000001c 00"_hex,
         Errc::TrailingData},
        {"E flag, nothing encrypted", "0102030405060708 0000000000000000 08 10 05 01 00000000 0000001c"_hex,
         Errc::InvalidLength},
        {"short header", "0102030405060708 0000000000000000 00 10 05 00 00000000 0000"_hex, Errc::Truncated},
    };
    for (const auto& row : rows) {
        CAPTURE(row.name);
        auto m = parse(row.bytes);
        REQUIRE_FALSE(m);
        CHECK(m.error() == make_error_code(row.want));
    }
    // A newer minor version is tolerated (RFC 2408 §5.2 only mandates the major check here).
    auto minor = "0102030405060708 0000000000000000 00 11 05 00 00000000 0000001c"_hex;
    auto m = parse(minor);
    REQUIRE(m);
    CHECK(m->header.version == 0x11);
}

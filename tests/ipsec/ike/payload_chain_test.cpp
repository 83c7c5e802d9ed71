// SPDX-License-Identifier: MIT
#include <doctest/doctest.h>

#include <algorithm>
#include <ostream>  // doctest prints std::error_code through operator<<

#include "ipsec/ike/constants.hpp"
#include "ipsec/ike/errc.hpp"
#include "ipsec/ike/payload_chain.hpp"
#include "tests/support/hex.hpp"

using namespace mipsec;
using namespace mipsec::ipsec::ike;
using namespace mipsec::test::literals;

TEST_CASE("generic payload header view reads, writes and checks (RFC 2408 §3.2)") {
    auto b = "0d 00 00 08 aa bb cc dd ff"_hex;
    auto v = GenericPayloadView::check(std::span<const std::uint8_t>(b));
    REQUIRE(v);
    CHECK(v->next_payload() == payload_type::vendor_id);
    CHECK(v->reserved() == 0);
    CHECK(v->payload_length() == 8);
    CHECK(test::to_hex(v->body()) == "aabbccdd");
    CHECK(v->payload().size() == 8);
    for (std::size_t n = 0; n < 8; ++n) {
        CAPTURE(n);
        CHECK_FALSE(GenericPayloadView::check(std::span<const std::uint8_t>(b).first(n)));
    }
    test::Bytes w(8, 0);
    w[3] = 4;
    auto mv = GenericPayloadMutView::check(std::span<std::uint8_t>(w));
    REQUIRE(mv);
    mv->set_next_payload(payload_type::vendor_id);
    mv->set_payload_length(8);
    std::ranges::copy("aabbccdd"_hex, w.begin() + 4);
    CHECK(test::to_hex(w) == "0d000008aabbccdd");
    auto short_len = "00 00 00 03"_hex;
    CHECK_FALSE(GenericPayloadView::check(std::span<const std::uint8_t>(short_len)));
}

TEST_CASE("payload iterator walks a chain and stops at Next Payload 0") {
    // NONCE(2 bytes) -> VID(0 bytes) -> HASH(1 byte), then 3 bytes of padding.
    auto b = "0d 00 00 06 11 22  08 00 00 04  00 00 00 05 33  00 00 00"_hex;
    PayloadIterator it(b, payload_type::nonce);
    auto a = it.next();
    REQUIRE(a);
    CHECK(a->type == payload_type::nonce);
    CHECK(a->offset == 0);
    CHECK(test::to_hex(a->view.body()) == "1122");
    auto c = it.next();
    REQUIRE(c);
    CHECK(c->type == payload_type::vendor_id);
    CHECK(c->offset == 6);
    CHECK(c->view.body().empty());
    auto d = it.next();
    REQUIRE(d);
    CHECK(d->type == payload_type::hash);
    CHECK(test::to_hex(d->view.body()) == "33");
    CHECK_FALSE(it.next());
    CHECK(it.finished());
    CHECK_FALSE(it.error());
    CHECK(it.count() == 3);
    CHECK(it.end_offset() == 15);  // padding is not part of the chain
}

TEST_CASE("payload iterator rejects truncation, short lengths, overruns and long chains") {
    struct Row {
        const char* name;
        test::Bytes bytes;
        Errc want;
    };
    const Row rows[] = {
        {"empty chain with a first type", {}, Errc::Truncated},
        {"header cut", "00 00 00"_hex, Errc::Truncated},
        {"second header cut", "0a 00 00 04 00 00"_hex, Errc::Truncated},
        {"length 0 (would loop)", "0a 00 00 00 00 00 00 04"_hex, Errc::InvalidLength},
        {"length 3", "00 00 00 03"_hex, Errc::InvalidLength},
        {"length past the end", "00 00 00 09 11 22 33 44"_hex, Errc::PayloadPastEnd},
        {"second length past the end", "0a 00 00 04 00 00 00 05"_hex, Errc::PayloadPastEnd},
    };
    for (const auto& row : rows) {
        CAPTURE(row.name);
        PayloadIterator it(row.bytes, payload_type::nonce);
        while (it.next()) {
        }
        CHECK(it.error() == make_error_code(row.want));
        CHECK_FALSE(it.finished());
        CHECK_FALSE(it.next());  // stays stopped
    }
    // Four chained empty payloads against a limit of three.
    auto four = "0a 00 00 04 0a 00 00 04 0a 00 00 04 00 00 00 04"_hex;
    PayloadIterator limited(four, payload_type::nonce, 3);
    while (limited.next()) {
    }
    CHECK(limited.error() == make_error_code(Errc::TooManyPayloads));
    PayloadIterator enough(four, payload_type::nonce, 4);
    while (enough.next()) {
    }
    CHECK(enough.finished());
    // First type 0: an empty chain, nothing read.
    PayloadIterator none(four, payload_type::none);
    CHECK_FALSE(none.next());
    CHECK(none.finished());
    CHECK(none.end_offset() == 0);
}

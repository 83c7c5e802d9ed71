// SPDX-License-Identifier: MIT
#include <doctest/doctest.h>

#include <random>
#include <vector>

#include "core/checksum.hpp"
#include "core/endian.hpp"
#include "tests/support/hex.hpp"

using namespace mipsec::core;
using namespace mipsec::test::literals;

TEST_CASE("RFC 1071 §3 example sums to 0xddf2") {
    auto bytes = "00 01 f2 03 f4 f5 f6 f7"_hex;
    CHECK(checksum_finish(checksum_partial(bytes)) == static_cast<std::uint16_t>(~0xddf2));
}

TEST_CASE("a known IPv4 header checksum (Wikipedia/RFC 791 example, 0xb861)") {
    auto header = "45 00 00 73 00 00 40 00 40 11 00 00 c0 a8 00 01 c0 a8 00 c7"_hex;
    CHECK(internet_checksum(header) == 0xb861);
    store_be16(header.data() + 10, 0xb861);
    CHECK(internet_checksum(header) == 0);
}

TEST_CASE("odd length pads with a zero byte") {
    CHECK(internet_checksum("01"_hex) == internet_checksum("01 00"_hex));
}

TEST_CASE("incremental update (RFC 1624) equals recomputation") {
    std::mt19937 rng(7);
    for (int round = 0; round < 2000; ++round) {
        std::vector<std::uint8_t> data(20 + rng() % 40 * 2);
        for (auto& b : data) b = static_cast<std::uint8_t>(rng());
        std::uint16_t before = internet_checksum(data);
        std::size_t off = (rng() % (data.size() / 2 - 1)) * 2;
        if (round % 2) {
            std::uint16_t old_v = load_be16(data.data() + off);
            std::uint16_t new_v = static_cast<std::uint16_t>(rng());
            store_be16(data.data() + off, new_v);
            CHECK(checksum_update16(before, old_v, new_v) == internet_checksum(data));
        } else {
            off = off / 4 * 4;
            std::uint32_t old_v = load_be32(data.data() + off);
            std::uint32_t new_v = static_cast<std::uint32_t>(rng());
            store_be32(data.data() + off, new_v);
            // RFC 1624 §3: +0 and -0 are both valid results; compare as one's complement values.
            auto a = checksum_update32(before, old_v, new_v);
            auto b = internet_checksum(data);
            CHECK((a == b || (a == 0xFFFF && b == 0) || (a == 0 && b == 0xFFFF)));
        }
    }
}

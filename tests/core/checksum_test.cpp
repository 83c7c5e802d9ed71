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

namespace {

// RFC 1071 §4.1 as written: 16-bit big-endian words, one at a time.
std::uint32_t reference_sum(std::span<const std::uint8_t> bytes, std::uint32_t initial) {
    std::uint64_t sum = initial;
    std::size_t i = 0;
    for (; i + 1 < bytes.size(); i += 2) sum += (std::uint32_t{bytes[i]} << 8) | bytes[i + 1];
    if (i < bytes.size()) sum += std::uint32_t{bytes[i]} << 8;
    while (sum >> 16) sum = (sum & 0xFFFF) + (sum >> 16);
    return static_cast<std::uint32_t>(sum);
}

std::uint32_t fold16(std::uint32_t s) {
    while (s >> 16) s = (s & 0xFFFF) + (s >> 16);
    return s;
}

}  // namespace

TEST_CASE("the word-at-a-time sum equals RFC 1071's 16-bit loop: every length, alignment and initial value") {
    std::mt19937 rng(11);
    std::vector<std::uint8_t> storage(400);
    for (std::size_t len = 0; len <= 300; ++len) {
        for (std::size_t align = 0; align < 8; ++align) {
            for (auto& b : storage) b = static_cast<std::uint8_t>(rng());
            const std::span<const std::uint8_t> bytes(storage.data() + align, len);
            const std::uint32_t initial = len % 3 == 0 ? 0 : static_cast<std::uint32_t>(rng());
            const std::uint32_t got = checksum_partial(bytes, initial);
            CHECK(got <= 0x1FFFE);  // room for further additions, as the header promises
            CHECK(fold16(got) == reference_sum(bytes, initial));
        }
    }
}

TEST_CASE("carries: 64 KiB of 0xff and a maximal initial value") {
    std::vector<std::uint8_t> ones(65535, 0xFF);
    CHECK(fold16(checksum_partial(ones, 0xFFFFFFFFu)) == reference_sum(ones, 0xFFFFFFFFu));
    CHECK(fold16(checksum_partial(ones)) == reference_sum(ones, 0));
}

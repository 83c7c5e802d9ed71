// SPDX-License-Identifier: MIT
#include <doctest/doctest.h>

#include <array>
#include <set>
#include <vector>

#include "crypto/random.hpp"
#include "tests/support/fixed_random.hpp"
#include "tests/support/hex.hpp"

using namespace mipsec;
using mipsec::test::Bytes;
using mipsec::test::to_hex;
using namespace mipsec::test::literals;

TEST_CASE("SystemRandom fills every byte and does not repeat itself") {
    crypto::SystemRandom random;
    std::set<Bytes> seen;
    for (int i = 0; i < 16; ++i) {
        Bytes b(32, 0);
        random.fill(b);
        seen.insert(b);
    }
    CHECK(seen.size() == 16);  // 2^-256 collision chance per pair
    // A single zero byte left behind somewhere would show up as a position that is always 0.
    std::array<int, 64> nonzero{};
    for (int i = 0; i < 64; ++i) {
        Bytes b(64, 0);
        random.fill(b);
        for (std::size_t j = 0; j < b.size(); ++j) nonzero[j] += b[j] != 0;
    }
    for (int count : nonzero) CHECK(count > 40);
    Bytes empty;
    random.fill(empty);
}

TEST_CASE("FixedRandom replays its bytes, cycling, across calls") {
    test::FixedRandom random("01 02 03"_hex);
    Bytes a(2), b(5);
    random.fill(a);
    random.fill(b);
    CHECK(to_hex(a) == "0102");
    CHECK(to_hex(b) == "0301020301");
    CHECK(random.consumed() == 7);
    CHECK(random.next_u32() == 0x02030102);
    test::FixedRandom zeros(Bytes{});
    Bytes z(3, 0xff);
    zeros.fill(z);
    CHECK(to_hex(z) == "000000");
}

TEST_CASE("CountingRandom counts and wraps") {
    test::CountingRandom random(0xfe);
    Bytes a(4);
    random.fill(a);
    CHECK(to_hex(a) == "feff0001");
    CHECK(random.next_u32() == 0x02030405);
    CHECK(random.consumed() == 8);
}

TEST_CASE("KeystreamRandom: output differs between instances and calls, and spans buffer edges") {
    mipsec::crypto::KeystreamRandom a, b;
    std::vector<std::uint8_t> x(1000), y(1000), z(1000);
    a.fill(x);
    b.fill(y);
    a.fill(z);
    CHECK(x != y);
    CHECK(x != z);
    // Byte frequencies of 64 KiB are roughly uniform (a broken stream of zeros or a repeating
    // 256-byte block would fail this).
    std::vector<std::uint8_t> big(65536);
    for (std::size_t off = 0; off < big.size(); off += 7) a.fill(std::span(big).subspan(off, std::min<std::size_t>(7, big.size() - off)));
    std::array<int, 256> counts{};
    for (auto v : big) ++counts[v];
    for (int c : counts) CHECK((c > 150 && c < 370));
    CHECK(std::vector<std::uint8_t>(big.begin(), big.begin() + 256) != std::vector<std::uint8_t>(big.begin() + 256, big.begin() + 512));
}

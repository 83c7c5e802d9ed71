// SPDX-License-Identifier: MIT
#include <doctest/doctest.h>

#include <string>

#include "crypto/secret_bytes.hpp"
#include "tests/support/hex.hpp"

using namespace mipsec::crypto;
using mipsec::test::Bytes;
using mipsec::test::to_hex;
using namespace mipsec::test::literals;

TEST_CASE("describe() shows only the length, never the content") {
    auto raw = "de ad be ef 41 42 43"_hex;
    SecretBytes s(raw);
    CHECK(s.describe() == "<secret, 7 bytes>");
    CHECK(s.describe().find("dead") == std::string::npos);
    CHECK(s.describe().find("ABC") == std::string::npos);
    CHECK(s.reveal_hex() == "deadbeef414243");
    CHECK(SecretBytes().describe() == "<secret, 0 bytes>");
}

TEST_CASE("wipe() zeroes the storage and empties the secret") {
    SecretBytes s("11 22 33 44"_hex);
    const std::uint8_t* storage = s.span().data();
    s.wipe();
    CHECK(s.empty());
    CHECK(s.size() == 0);
    // The vector keeps its (zeroed) block after clear(); look at it directly.
    for (int i = 0; i < 4; ++i) CHECK(storage[i] == 0);
    CHECK(s.reveal_hex().empty());
}

TEST_CASE("moves transfer the bytes and leave the source empty") {
    SecretBytes a("aa aa aa aa aa aa aa aa"_hex);
    SecretBytes b("bb bb"_hex);
    a = std::move(b);  // a's old bytes are wiped before its block is released
    CHECK(a.reveal_hex() == "bbbb");
    CHECK(b.empty());  // NOLINT(bugprone-use-after-move): documented state
    SecretBytes c(std::move(a));
    CHECK(c.reveal_hex() == "bbbb");
    CHECK(a.empty());  // NOLINT(bugprone-use-after-move)
}

TEST_CASE("clone, first, subspan and append") {
    SecretBytes s("00 01 02 03 04 05"_hex);
    auto c = s.clone();
    CHECK(c.reveal_hex() == s.reveal_hex());
    CHECK(c.span().data() != s.span().data());
    CHECK(s.first(2).reveal_hex() == "0001");
    CHECK(s.subspan(3, 2).reveal_hex() == "0304");
    s.append("06 07"_hex);
    CHECK(s.reveal_hex() == "0001020304050607");
    for (int i = 0; i < 100; ++i) s.append("ff"_hex);  // several reallocations
    CHECK(s.size() == 108);
    CHECK(s.span()[7] == 0x07);
    CHECK(s.span()[107] == 0xff);
    s.append({});
    CHECK(s.size() == 108);
    SecretBytes z(4);
    CHECK(z.reveal_hex() == "00000000");
    z.mutable_span()[0] = 0x99;
    CHECK(z.reveal_hex() == "99000000");
}

TEST_CASE("constant_time_equal and secure_wipe") {
    auto a = "01 02 03"_hex, b = "01 02 03"_hex, c = "01 02 04"_hex, d = "01 02"_hex;
    CHECK(constant_time_equal(a, b));
    CHECK_FALSE(constant_time_equal(a, c));
    CHECK_FALSE(constant_time_equal(a, d));
    CHECK(constant_time_equal(Bytes{}, Bytes{}));
    secure_wipe(a);
    CHECK(to_hex(a) == "000000");
    secure_wipe({});
}

// --- Freed blocks: every block a secret lets go of is zeroed first (WipingAllocator).

namespace {
struct Released {
    const std::uint8_t* block;
    std::size_t len;
    bool zeroed;
};
std::vector<Released>& released() {
    static std::vector<Released> r;
    return r;
}
void record_release(const std::uint8_t* block, std::size_t len) {
    bool zero = true;
    for (std::size_t i = 0; i < len; ++i) zero = zero && block[i] == 0;
    released().push_back({block, len, zero});
}
// Installs the observer for one test case and removes it again.
struct ObserveReleases {
    ObserveReleases() {
        released().clear();
        set_release_observer(record_release);
    }
    ~ObserveReleases() { set_release_observer(nullptr); }
    const Released* find(const std::uint8_t* block) const {
        for (const auto& r : released())
            if (r.block == block) return &r;
        return nullptr;
    }
};
}  // namespace

TEST_CASE("a destroyed secret's whole block is zeroed before it is freed") {
    ObserveReleases observe;
    const std::uint8_t* block = nullptr;
    {
        SecretBytes s("de ad be ef de ad be ef de ad be ef de ad be ef"_hex);
        block = s.span().data();
        CHECK(observe.find(block) == nullptr);  // still alive: nothing released yet
    }
    const auto* r = observe.find(block);
    REQUIRE(r != nullptr);
    CHECK(r->len >= 16);
    CHECK(r->zeroed);
}

TEST_CASE("growing a secret zeroes the block it leaves, including bytes past the size") {
    ObserveReleases observe;
    SecretBytes s("01 02 03 04 05 06 07 08"_hex);
    const std::uint8_t* first_block = s.span().data();
    for (int i = 0; i < 64; ++i) s.append("aa"_hex);  // forces reallocations
    CHECK(s.span().data() != first_block);
    const auto* r = observe.find(first_block);
    REQUIRE(r != nullptr);
    CHECK(r->zeroed);
    for (const auto& each : released()) CHECK(each.zeroed);
    CHECK(s.size() == 72);
    CHECK(s.span()[0] == 0x01);  // the live copy is intact
}

TEST_CASE("move-assigning over a secret zeroes and frees the old key, the moved key lives on") {
    ObserveReleases observe;
    SecretBytes a("11 11 11 11 11 11 11 11"_hex);
    SecretBytes b("22 22 22 22"_hex);
    const std::uint8_t* old_a = a.span().data();
    const std::uint8_t* moved = b.span().data();
    a = std::move(b);
    CHECK(a.span().data() == moved);
    const auto* r = observe.find(old_a);
    REQUIRE(r != nullptr);
    CHECK(r->zeroed);
    CHECK(observe.find(moved) == nullptr);
    CHECK(a.reveal_hex() == "22222222");
}

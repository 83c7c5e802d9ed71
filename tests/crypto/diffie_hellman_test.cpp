// SPDX-License-Identifier: MIT
#include <doctest/doctest.h>

#include <string>

#include "crypto/diffie_hellman.hpp"
#include "tests/support/fixed_random.hpp"
#include "tests/support/hex.hpp"
#include "tests/support/vectors.hpp"

using namespace mipsec;
using namespace mipsec::crypto;
using mipsec::test::Bytes;
using mipsec::test::CountingRandom;
using mipsec::test::FixedRandom;
using mipsec::test::from_hex;
using mipsec::test::to_hex;
using namespace mipsec::test::literals;

namespace {

struct Group {
    ModpGroup group;
    const char* vector_key;
    std::size_t len;
};
constexpr Group groups[] = {{ModpGroup::Modp1024, "modp1024_group2", 128},
                            {ModpGroup::Modp2048, "modp2048_group14", 256}};

Bytes prime(const Group& g) {
    auto v = test::load_vectors("modp_groups_rfc2409_rfc3526.json");
    const auto& j = v.at(g.vector_key);
    REQUIRE(j.at("generator").get<int>() == 2);
    REQUIRE(j.at("id").get<int>() == static_cast<int>(g.group));
    return from_hex(j.at("prime_hex").get<std::string>());
}

// Big-endian add of a small signed delta (no carry out of the top byte is needed here).
Bytes add(Bytes v, int delta) {
    int carry = delta;
    for (std::size_t i = v.size(); i-- > 0 && carry != 0;) {
        int sum = v[i] + carry;
        v[i] = static_cast<std::uint8_t>(sum & 0xff);
        carry = sum >> 8;  // arithmetic shift: -1 borrows
    }
    return v;
}

Bytes small(std::size_t len, std::uint8_t value) {
    Bytes v(len, 0);
    v.back() = value;
    return v;
}

std::unique_ptr<DiffieHellman> make_dh(ModpGroup g, crypto::Random& random) {
    auto dh = DiffieHellman::create(g, random);
    REQUIRE(dh);
    return std::move(*dh);
}

}  // namespace

TEST_CASE("modulus lengths") {
    CHECK(modulus_len(ModpGroup::Modp1024) == 128);
    CHECK(modulus_len(ModpGroup::Modp2048) == 256);
    for (const auto& g : groups) CHECK(prime(g).size() == g.len);
}

TEST_CASE("two parties agree; public values and secrets are modulus-length") {
    for (const auto& g : groups) {
        CAPTURE(g.vector_key);
        CountingRandom ra(0x00), rb(0x80);
        auto a = make_dh(g.group, ra);
        auto b = make_dh(g.group, rb);
        CHECK(a->group() == g.group);
        CHECK(a->public_value().size() == g.len);
        CHECK(b->public_value().size() == g.len);
        CHECK(a->public_value() != b->public_value());
        auto za = a->shared_secret(b->public_value());
        auto zb = b->shared_secret(a->public_value());
        REQUIRE(za);
        REQUIRE(zb);
        CHECK(za->size() == g.len);
        CHECK(za->reveal_hex() == zb->reveal_hex());
        // Public values are below p (unsigned big-endian comparison of equal lengths).
        CHECK(a->public_value() < prime(g));
        // The exponent came from the injected source only.
        CHECK(ra.consumed() > 0);
    }
}

TEST_CASE("known answer for group 2 with a fixed exponent source") {
    // x = 0x81 02 03 .. 20 (the source's 01 02 .. 20 with the top bit forced) and
    // y = 0xc0 41 .. 5f; expected values computed with Python pow(2, x, p) from the RFC 2409 prime.
    Bytes seed_a(32), seed_b(32);
    for (std::size_t i = 0; i < 32; ++i) {
        seed_a[i] = static_cast<std::uint8_t>(i + 1);
        seed_b[i] = static_cast<std::uint8_t>(0x40 + i);
    }
    FixedRandom ra(seed_a), rb(seed_b);
    auto a = make_dh(ModpGroup::Modp1024, ra);
    auto b = make_dh(ModpGroup::Modp1024, rb);
    CHECK(to_hex(a->public_value()) ==
          "76839f09c0905bcc31db54d185a29d7d0c3178a14ef77a56bf9bdeeb796b764ff336504c71b8f8482870e60c66d7e67d"
          "b87fc5d38be9502a355250a342bcc5a206d08ef3ac68111704b155767e5fdae11864378780ac427c58b1f62f35695972"
          "56bf23cb7482d1859677e4641aa2371676cbca1f33a9144d5efe82341f719944");
    CHECK(to_hex(b->public_value()) ==
          "703d452b323ea9dbbc21c0fc64223360ba3a23effdb5913ca6db4303ec46ec0657ed937fee15c4c726eba46212a15b98"
          "8cbc65e74533ff4615bc7a0143d11f4460d6caa70af07286482b05e4c11ca67a6d0606e93ff253c7aff43206049aa198"
          "51e4e8de122d136b49966eb1bc95baf32059bdf92f2cf462f8b0f6f17f1cd642");
    auto z = a->shared_secret(b->public_value());
    REQUIRE(z);
    CHECK(z->reveal_hex() ==
          "d737e74dd981867ee1d9b776b97c93485f305e4dc6c7af10b908578cf905a2d016440893aa9862ba7518d2de680a9e9a"
          "c3fe3c73d63831b6c34540a4eb5a6d41dfaef936872802f8e0e43cb5e90224c2c085b029dc0ae6b8f8804a881754d97b"
          "b0435f28e8846767f8fc8b0c3aee52e599c7c7d39f7e4cda9d767f3a0cfc042a");
}

TEST_CASE("values with leading zero bytes stay left-padded to the modulus length") {
    // About 1 in 256 values starts with 0x00; run enough deterministic key pairs to see some.
    int leading_zero = 0;
    for (int i = 0; i < 600 && leading_zero < 3; ++i) {
        CAPTURE(i);
        Bytes seed_a(32, static_cast<std::uint8_t>(i)), seed_b(32, static_cast<std::uint8_t>(i >> 8));
        seed_a[1] = static_cast<std::uint8_t>(i >> 8);
        seed_b[1] = static_cast<std::uint8_t>(i);
        seed_b[2] = 0xa5;
        FixedRandom ra(seed_a), rb(seed_b);
        auto a = make_dh(ModpGroup::Modp1024, ra);
        auto b = make_dh(ModpGroup::Modp1024, rb);
        auto za = a->shared_secret(b->public_value());
        auto zb = b->shared_secret(a->public_value());
        REQUIRE(za);
        REQUIRE(zb);
        REQUIRE(a->public_value().size() == 128);
        REQUIRE(za->size() == 128);
        REQUIRE(zb->size() == 128);
        REQUIRE(za->reveal_hex() == zb->reveal_hex());
        leading_zero += (a->public_value()[0] == 0) + (za->span()[0] == 0);
    }
    CHECK(leading_zero > 0);
}

TEST_CASE("invalid peer values are refused: 0, 1, p-1, p, above p, wrong length") {
    for (const auto& g : groups) {
        CAPTURE(g.vector_key);
        CountingRandom r;
        auto dh = make_dh(g.group, r);
        Bytes p = prime(g);
        struct Row {
            std::string name;
            Bytes value;
            bool ok;
        };
        const Row rows[] = {
            {"0", small(g.len, 0), false},
            {"1", small(g.len, 1), false},
            {"2", small(g.len, 2), true},
            {"p-2", add(p, -2), true},
            {"p-1", add(p, -1), false},
            {"p", p, false},
            {"p+1", add(p, 1), false},
            {"all ones", Bytes(g.len, 0xff), false},
            {"empty", {}, false},
            {"one byte short (2)", small(g.len - 1, 2), false},
            {"one byte long (2)", small(g.len + 1, 2), false},
            {"other group's length", small(g.len == 128 ? 256 : 128, 2), false},
        };
        for (const auto& row : rows) {
            CAPTURE(row.name);
            auto z = dh->shared_secret(row.value);
            CHECK(static_cast<bool>(z) == row.ok);
            if (z) {
                CHECK(z->size() == g.len);
            } else {
                CHECK(z.error() == core::Errc::InvalidArgument);
            }
        }
    }
}

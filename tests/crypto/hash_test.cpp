// SPDX-License-Identifier: MIT
#include <doctest/doctest.h>

#include <array>
#include <string>
#include <vector>

#include "crypto/hash.hpp"
#include "tests/support/hex.hpp"

using namespace mipsec::crypto;
using mipsec::test::Bytes;
using mipsec::test::to_hex;
using namespace mipsec::test::literals;

namespace {
std::string digest_hex(HashAlgorithm a, std::vector<std::span<const std::uint8_t>> parts) {
    Bytes out(digest_len(a));
    REQUIRE(hash(a, parts, out));
    return to_hex(out);
}
}  // namespace

TEST_CASE("\"abc\" digests: RFC 1321 §A.5 (MD5), FIPS 180 examples (SHA-1, SHA-2)") {
    struct Row {
        HashAlgorithm algorithm;
        std::size_t len;
        std::string_view expected;
    };
    const Row rows[] = {
        {HashAlgorithm::Md5, 16, "900150983cd24fb0d6963f7d28e17f72"},
        {HashAlgorithm::Sha1, 20, "a9993e364706816aba3e25717850c26c9cd0d89d"},
        {HashAlgorithm::Sha256, 32, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"},
        {HashAlgorithm::Sha384, 48,
         "cb00753f45a35e8bb5a03d699ac65007272c32ab0eded1631a8b605a43ff5bed8086072ba1e7cc2358baeca134c825a7"},
        {HashAlgorithm::Sha512, 64,
         "ddaf35a193617abacc417349ae20413112e6fa4e89a97ea20a9eeee64b55d39a2192992a274fc1a836ba3c23a3feebbd454d4423"
         "643ce80e2a9ac94fa54ca49f"},
    };
    auto abc = "61 62 63"_hex;
    for (const auto& row : rows) {
        CAPTURE(row.expected);
        CHECK(digest_len(row.algorithm) == row.len);
        CHECK(digest_hex(row.algorithm, {abc}) == row.expected);
        // The concatenation of the parts is hashed, however it is split.
        auto a = "61"_hex, bc = "62 63"_hex, none = Bytes{};
        CHECK(digest_hex(row.algorithm, {a, none, bc}) == row.expected);
        CHECK(digest_hex(row.algorithm, {none, abc, none}) == row.expected);
    }
}

TEST_CASE("no parts is the empty message; a short output buffer is refused") {
    CHECK(digest_hex(HashAlgorithm::Sha256, {}) == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    Bytes short_out(31);
    auto abc = "61 62 63"_hex;
    std::array<std::span<const std::uint8_t>, 1> parts{abc};
    CHECK_FALSE(hash(HashAlgorithm::Sha256, parts, short_out));
    Bytes long_out(40, 0xee);  // larger is fine; bytes past the digest are untouched
    REQUIRE(hash(HashAlgorithm::Sha256, parts, long_out));
    CHECK(long_out[32] == 0xee);
    CHECK(long_out[39] == 0xee);
}

// SPDX-License-Identifier: MIT
#include <doctest/doctest.h>

#include "crypto/raw_rate.hpp"
#include "tests/support/hex.hpp"

using namespace mipsec::crypto;
using mipsec::test::Bytes;
using namespace std::chrono_literals;

TEST_CASE("measure_seal_rate reports a positive rate for AEADs and CBC+HMAC") {
    for (auto a : {AeadAlgorithm::AesGcm128, AeadAlgorithm::AesGcm256, AeadAlgorithm::ChaCha20Poly1305}) {
        CAPTURE(to_string(a));
        auto aead = Aead::create(a, Bytes(key_len(a), 1));
        REQUIRE(aead);
        CHECK(measure_seal_rate(**aead, 1400, 5ms) > 0.0);
        CHECK(measure_seal_rate(**aead, 0, 1ms) > 0.0);
    }
    auto cipher = Cipher::create(CipherAlgorithm::AesCbc128, Bytes(16, 2));
    auto mac = Mac::create(MacAlgorithm::HmacSha1, Bytes(20, 3));
    REQUIRE(cipher);
    REQUIRE(mac);
    CHECK(measure_seal_rate(**cipher, **mac, 1400, 12, 5ms) > 0.0);
    CHECK(measure_seal_rate(**cipher, **mac, 1401, 12, 1ms) > 0.0);  // rounded up to the block
    CHECK(measure_seal_rate(**cipher, **mac, 1400, 21, 1ms) == 0.0);  // longer than HMAC-SHA1
    CHECK(measure_seal_rate(**cipher, **mac, 1400, 0, 1ms) == 0.0);
}

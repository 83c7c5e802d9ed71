// SPDX-License-Identifier: MIT
#include <doctest/doctest.h>

#include <string>

#include "crypto/cipher.hpp"
#include "tests/support/hex.hpp"
#include "tests/support/vectors.hpp"

using namespace mipsec;
using namespace mipsec::crypto;
using mipsec::test::Bytes;
using mipsec::test::from_hex;
using mipsec::test::to_hex;

namespace {

Bytes hex_field(const nlohmann::json& j, const char* name) { return from_hex(j.at(name).get<std::string>()); }

std::span<const std::uint8_t, Cipher::iv_len> as_iv(const Bytes& b) {
    REQUIRE(b.size() == Cipher::iv_len);
    return std::span<const std::uint8_t, Cipher::iv_len>(b.data(), Cipher::iv_len);
}

std::unique_ptr<Cipher> make_cipher(CipherAlgorithm a, std::span<const std::uint8_t> key) {
    auto c = Cipher::create(a, key);
    REQUIRE(c);
    return std::move(*c);
}

// Encrypts then decrypts `plaintext` in place and checks both directions against the vector.
void check_case(const Bytes& key, const Bytes& iv, const Bytes& plaintext, const Bytes& ciphertext) {
    REQUIRE(plaintext.size() == ciphertext.size());
    auto cipher = make_cipher(CipherAlgorithm::AesCbc128, key);
    CHECK(cipher->algorithm() == CipherAlgorithm::AesCbc128);
    Bytes buf = plaintext;
    REQUIRE(cipher->encrypt(as_iv(iv), buf));
    CHECK(to_hex(buf) == to_hex(ciphertext));
    REQUIRE(cipher->decrypt(as_iv(iv), buf));
    CHECK(to_hex(buf) == to_hex(plaintext));
    // A second object decrypting the published ciphertext (no shared state with encryption).
    Bytes other = ciphertext;
    REQUIRE(make_cipher(CipherAlgorithm::AesCbc128, key)->decrypt(as_iv(iv), other));
    CHECK(other == plaintext);
}

}  // namespace

TEST_CASE("key lengths and names") {
    struct Row {
        CipherAlgorithm algorithm;
        std::size_t key_len;
        std::string_view name;
    };
    const Row rows[] = {{CipherAlgorithm::AesCbc128, 16, "aes-cbc-128"},
                        {CipherAlgorithm::AesCbc192, 24, "aes-cbc-192"},
                        {CipherAlgorithm::AesCbc256, 32, "aes-cbc-256"}};
    for (const auto& row : rows) {
        CAPTURE(row.name);
        CHECK(key_len(row.algorithm) == row.key_len);
        CHECK(to_string(row.algorithm) == row.name);
        for (std::size_t len : {0, 1, 15, 16, 17, 20, 24, 31, 32, 33, 64}) {
            CAPTURE(len);
            Bytes key(len, 0x11);
            auto c = Cipher::create(row.algorithm, key);
            if (len == row.key_len) {
                REQUIRE(c);
                CHECK((*c)->algorithm() == row.algorithm);
            } else {
                REQUIRE_FALSE(c);
                CHECK(c.error() == core::Errc::InvalidArgument);
            }
        }
    }
}

TEST_CASE("RFC 3602 §4 raw AES-128-CBC cases 1-4, encrypt and decrypt") {
    auto v = test::load_vectors("esp_aes_cbc_rfc3602.json");
    REQUIRE(v.at("aes_cbc_raw").size() == 4);
    for (const auto& c : v.at("aes_cbc_raw")) {
        CAPTURE(c.at("case").get<int>());
        check_case(hex_field(c, "key"), hex_field(c, "iv"), hex_field(c, "plaintext"), hex_field(c, "ciphertext"));
    }
}

TEST_CASE("RFC 3602 §4 ESP cases 5-8: padded payload to ciphertext") {
    auto v = test::load_vectors("esp_aes_cbc_rfc3602.json");
    REQUIRE(v.at("esp_packets").size() == 4);
    for (const auto& c : v.at("esp_packets")) {
        CAPTURE(c.at("case").get<int>());
        check_case(hex_field(c, "key"), hex_field(c, "iv"), hex_field(c, "plaintext_to_encrypt"),
                   hex_field(c, "ciphertext"));
    }
}

TEST_CASE("AES-192 and AES-256 round-trip and differ from each other") {
    Bytes plaintext(64);
    for (std::size_t i = 0; i < plaintext.size(); ++i) plaintext[i] = static_cast<std::uint8_t>(i);
    Bytes iv(16, 0x42);
    Bytes seen_192, seen_256;
    for (auto a : {CipherAlgorithm::AesCbc192, CipherAlgorithm::AesCbc256}) {
        CAPTURE(to_string(a));
        Bytes key(key_len(a), 0x07);
        auto cipher = make_cipher(a, key);
        Bytes buf = plaintext;
        REQUIRE(cipher->encrypt(as_iv(iv), buf));
        CHECK(buf != plaintext);
        (a == CipherAlgorithm::AesCbc192 ? seen_192 : seen_256) = buf;
        REQUIRE(cipher->decrypt(as_iv(iv), buf));
        CHECK(buf == plaintext);
    }
    CHECK(seen_192 != seen_256);
}

TEST_CASE("lengths that are not a multiple of the block are refused; empty is a no-op") {
    auto cipher = make_cipher(CipherAlgorithm::AesCbc128, Bytes(16, 1));
    Bytes iv(16, 0);
    for (std::size_t len : {1, 15, 17, 31, 33}) {
        CAPTURE(len);
        Bytes buf(len, 0xab);
        CHECK_FALSE(cipher->encrypt(as_iv(iv), buf));
        CHECK_FALSE(cipher->decrypt(as_iv(iv), buf));
    }
    Bytes empty;
    CHECK(cipher->encrypt(as_iv(iv), empty));
    CHECK(cipher->decrypt(as_iv(iv), empty));
}

TEST_CASE("the IV is per call: same plaintext, different IVs, independent results") {
    auto cipher = make_cipher(CipherAlgorithm::AesCbc128, Bytes(16, 9));
    Bytes iv_a(16, 0), iv_b(16, 0);
    iv_b[15] = 1;
    Bytes a(32, 0x33), b(32, 0x33), a_again(32, 0x33);
    REQUIRE(cipher->encrypt(as_iv(iv_a), a));
    REQUIRE(cipher->encrypt(as_iv(iv_b), b));
    REQUIRE(cipher->encrypt(as_iv(iv_a), a_again));
    CHECK(a != b);
    CHECK(a == a_again);  // no chaining state leaks from one call into the next
}

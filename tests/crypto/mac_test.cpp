// SPDX-License-Identifier: MIT
#include <doctest/doctest.h>

#include <array>
#include <string>
#include <vector>

#include "crypto/mac.hpp"
#include "tests/support/hex.hpp"
#include "tests/support/vectors.hpp"

using namespace mipsec;
using namespace mipsec::crypto;
using mipsec::test::Bytes;
using mipsec::test::from_hex;
using mipsec::test::to_hex;
using namespace mipsec::test::literals;

namespace {

Bytes hex_field(const nlohmann::json& j, const char* name) { return from_hex(j.at(name).get<std::string>()); }

std::unique_ptr<Mac> make_mac(MacAlgorithm a, std::span<const std::uint8_t> key) {
    auto mac = Mac::create(a, key);
    REQUIRE(mac);
    return std::move(*mac);
}

// The first `expected.size()` bytes of the HMAC (the whole tag or a published truncation).
std::string mac_hex(MacAlgorithm a, std::span<const std::uint8_t> key, std::span<const std::uint8_t> data,
                    std::size_t len) {
    auto mac = make_mac(a, key);
    Bytes out(len);
    REQUIRE(mac->compute(data, out));
    return to_hex(out);
}

}  // namespace

TEST_CASE("output lengths and names") {
    struct Row {
        MacAlgorithm algorithm;
        std::size_t len;
        std::string_view name;
    };
    const Row rows[] = {
        {MacAlgorithm::HmacMd5, 16, "hmac-md5"},       {MacAlgorithm::HmacSha1, 20, "hmac-sha1"},
        {MacAlgorithm::HmacSha256, 32, "hmac-sha256"}, {MacAlgorithm::HmacSha384, 48, "hmac-sha384"},
        {MacAlgorithm::HmacSha512, 64, "hmac-sha512"},
    };
    for (const auto& row : rows) {
        CAPTURE(row.name);
        CHECK(output_len(row.algorithm) == row.len);
        CHECK(to_string(row.algorithm) == row.name);
        CHECK(make_mac(row.algorithm, "00"_hex)->output_len() == row.len);
        CHECK(row.len <= Mac::max_output_len);
    }
}

TEST_CASE("RFC 2202 §2 HMAC-MD5 and §3 HMAC-SHA1, full and 96-bit (RFC 2403/2404) tags") {
    auto v = test::load_vectors("hmac_md5_sha1_rfc2202.json");
    struct Table {
        const char* key;
        MacAlgorithm algorithm;
    };
    const Table tables[] = {{"hmac_md5", MacAlgorithm::HmacMd5}, {"hmac_sha1", MacAlgorithm::HmacSha1}};
    for (const auto& row : tables) {
        const char* table = row.key;  // clang 14 cannot capture structured bindings (CAPTURE)
        const auto algorithm = row.algorithm;
        REQUIRE(v.at(table).size() == 7);
        for (const auto& c : v.at(table)) {
            CAPTURE(table);
            CAPTURE(c.at("test_case").get<int>());
            auto key = hex_field(c, "key");
            auto data = hex_field(c, "data");
            auto digest = hex_field(c, "digest");
            auto icv = hex_field(c, "digest_96_for_ipsec");
            REQUIRE(key.size() == c.at("key_len").get<std::size_t>());
            REQUIRE(data.size() == c.at("data_len").get<std::size_t>());
            REQUIRE(digest.size() == output_len(algorithm));
            REQUIRE(icv.size() == 12);
            CHECK(mac_hex(algorithm, key, data, digest.size()) == to_hex(digest));
            CHECK(mac_hex(algorithm, key, data, 12) == to_hex(icv));
        }
    }
}

TEST_CASE("rekey: one context under alternating keys gives each key's RFC 2202 HMAC-MD5") {
    // What a home agent does: one context re-keyed per message for whichever mobile node sent it.
    auto v = test::load_vectors("hmac_md5_sha1_rfc2202.json");
    auto shared = make_mac(MacAlgorithm::HmacMd5, "ff"_hex);
    const auto& cases = v.at("hmac_md5");
    REQUIRE(cases.size() == 7);
    for (int round = 0; round < 2; ++round) {
        for (std::size_t i = 0; i < cases.size(); ++i) {
            const auto& c = cases[round == 0 ? i : cases.size() - 1 - i];
            CAPTURE(c.at("test_case").get<int>());
            const auto key = hex_field(c, "key");
            const auto data = hex_field(c, "data");
            REQUIRE(shared->rekey(key));
            Bytes out(16);
            REQUIRE(shared->compute(data, out));
            CHECK(to_hex(out) == c.at("digest").get<std::string>());
        }
    }
    // A message in progress is dropped by rekey(), not mixed into the next one.
    const auto& c1 = cases[0];
    shared->update(Bytes{1, 2, 3});
    REQUIRE(shared->rekey(hex_field(c1, "key")));
    Bytes out(16);
    REQUIRE(shared->compute(hex_field(c1, "data"), out));
    CHECK(to_hex(out) == c1.at("digest").get<std::string>());
}

TEST_CASE("RFC 4231 §4 HMAC-SHA-256/384/512 (case 5 published truncated to 128 bits)") {
    auto v = test::load_vectors("hmac_sha2_rfc4231_rfc4868.json");
    REQUIRE(v.at("rfc4231").size() == 7);
    struct Column {
        const char* field;
        MacAlgorithm algorithm;
    };
    const Column columns[] = {{"hmac_sha256", MacAlgorithm::HmacSha256},
                              {"hmac_sha384", MacAlgorithm::HmacSha384},
                              {"hmac_sha512", MacAlgorithm::HmacSha512}};
    for (const auto& c : v.at("rfc4231")) {
        auto key = hex_field(c, "key");
        auto data = hex_field(c, "data");
        int test_case = c.at("test_case").get<int>();
        CAPTURE(test_case);
        for (const auto& col : columns) {
            CAPTURE(col.field);
            auto expected = hex_field(c, col.field);
            // Only case 5 is published truncated (RFC 4231 §4.6); elsewhere the full tag.
            CHECK(expected.size() == (test_case == 5 ? 16 : output_len(col.algorithm)));
            CHECK(mac_hex(col.algorithm, key, data, expected.size()) == to_hex(expected));
        }
    }
}

TEST_CASE("RFC 4868 §2.7.2.1 AUTH256 cases: HMAC-SHA-256 and the 128-bit ESP ICV") {
    auto v = test::load_vectors("hmac_sha2_rfc4231_rfc4868.json");
    REQUIRE(v.at("rfc4868_auth256").size() == 4);
    for (const auto& c : v.at("rfc4868_auth256")) {
        CAPTURE(c.at("test_case").get<std::string>());
        auto key = hex_field(c, "key");
        auto data = hex_field(c, "data");
        REQUIRE(key.size() == 32);
        auto full = hex_field(c, "prf_hmac_sha256");
        auto icv = hex_field(c, "hmac_sha256_128");
        CHECK(mac_hex(MacAlgorithm::HmacSha256, key, data, 32) == to_hex(full));
        CHECK(mac_hex(MacAlgorithm::HmacSha256, key, data, 16) == to_hex(icv));
    }
}

TEST_CASE("incremental update equals one-shot, for every split point") {
    auto v = test::load_vectors("hmac_md5_sha1_rfc2202.json");
    const auto& c = v.at("hmac_sha1").at(6);  // 80-byte key (hashed first), 73-byte message
    auto key = hex_field(c, "key");
    auto data = hex_field(c, "data");
    auto expected = hex_field(c, "digest");
    auto mac = make_mac(MacAlgorithm::HmacSha1, key);
    for (std::size_t split = 0; split <= data.size(); ++split) {
        CAPTURE(split);
        mac->update(std::span(data).first(split));
        mac->update(std::span(data).subspan(split));
        Bytes out(20);
        REQUIRE(mac->finish(out));
        CHECK(out == expected);
    }
    // Byte at a time.
    for (auto b : data) mac->update(std::span(&b, 1));
    Bytes out(20);
    REQUIRE(mac->finish(out));
    CHECK(out == expected);
}

TEST_CASE("one object reused across messages matches fresh objects") {
    auto v = test::load_vectors("hmac_sha2_rfc4231_rfc4868.json");
    const MacAlgorithm algorithms[] = {MacAlgorithm::HmacMd5, MacAlgorithm::HmacSha1, MacAlgorithm::HmacSha256,
                                       MacAlgorithm::HmacSha384, MacAlgorithm::HmacSha512};
    auto key = "0102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f20"_hex;
    for (auto a : algorithms) {
        CAPTURE(to_string(a));
        auto reused = make_mac(a, key);
        for (const auto& c : v.at("rfc4231")) {
            auto data = hex_field(c, "data");
            Bytes a_out(output_len(a)), b_out(output_len(a));
            REQUIRE(reused->compute(data, a_out));
            REQUIRE(make_mac(a, key)->compute(data, b_out));
            CHECK(a_out == b_out);
        }
        // After a truncated finish the next full tag must still be right.
        Bytes short_out(4), full(output_len(a)), fresh(output_len(a));
        REQUIRE(reused->compute("aa"_hex, short_out));
        REQUIRE(reused->compute("aa"_hex, full));
        REQUIRE(make_mac(a, key)->compute("aa"_hex, fresh));
        CHECK(full == fresh);
        CHECK(std::equal(short_out.begin(), short_out.end(), fresh.begin()));
        // An empty message is a message too.
        REQUIRE(reused->compute({}, full));
        REQUIRE(make_mac(a, key)->compute({}, fresh));
        CHECK(full == fresh);
    }
}

TEST_CASE("an empty key is accepted; keys are zero-padded to the block (RFC 2104 §2)") {
    // Python: hmac.new(b"", b"", hashlib.md5).hexdigest() (also the Wikipedia HMAC example)
    auto mac = make_mac(MacAlgorithm::HmacMd5, {});
    Bytes out(16);
    REQUIRE(mac->compute({}, out));
    CHECK(to_hex(out) == "74e6f7298a9c2d168935f58c001bad88");
    // Keys are zero-padded to the block size (RFC 2104 §2), so "" and "00" give the same tag.
    Bytes zero_key(16);
    REQUIRE(make_mac(MacAlgorithm::HmacMd5, "00"_hex)->compute({}, zero_key));
    CHECK(zero_key == out);
}

TEST_CASE("finish refuses an empty or over-long output and stays usable") {
    auto mac = make_mac(MacAlgorithm::HmacSha1, "0b0b0b0b"_hex);
    Bytes too_long(21), none;
    CHECK_FALSE(mac->compute("00"_hex, too_long));
    CHECK_FALSE(mac->compute("00"_hex, none));
    Bytes a(20), b(20);
    REQUIRE(mac->compute("00"_hex, a));
    REQUIRE(make_mac(MacAlgorithm::HmacSha1, "0b0b0b0b"_hex)->compute("00"_hex, b));
    CHECK(a == b);
}

// SPDX-License-Identifier: MIT
#include <doctest/doctest.h>

#include <algorithm>
#include <string>

#include "core/buffer_pool.hpp"
#include "core/endian.hpp"
#include "crypto/aead.hpp"
#include "crypto/cipher.hpp"
#include "crypto/mac.hpp"
#include "ipsec/esp_wire.hpp"
#include "ipsec/sa.hpp"
#include "tests/support/esp_sa.hpp"
#include "tests/support/fixed_random.hpp"
#include "tests/support/hex.hpp"
#include "tests/support/packets.hpp"
#include "tests/support/vectors.hpp"

using namespace mipsec;
using namespace mipsec::test::literals;
using core::DropReason;
using ipsec::EspSuite;
using ipsec::Sa;

namespace {

const core::TimePoint t0 = test::esp_t0;
using test::inner_ping;
using test::keymat_for;
using test::make_sa;

core::PacketBuf load(core::BufferPool& pool, std::span<const std::uint8_t> bytes, std::size_t headroom = 64) {
    return test::load(pool, bytes, headroom);
}
using test::bytes_of;

// Builds an ESP packet straight from the crypto primitives and the RFC 4303/4106/7634
// framing, with any plaintext trailer the test wants (bad padding, odd next headers).
test::Bytes hand_seal(EspSuite suite, const crypto::SecretBytes& keymat, std::uint32_t spi, std::uint64_t seq,
                      bool esn, std::span<const std::uint8_t> iv, std::span<const std::uint8_t> plaintext) {
    test::Bytes out(8);
    core::store_be32(out.data(), spi);
    core::store_be32(out.data() + 4, static_cast<std::uint32_t>(seq));
    out.insert(out.end(), iv.begin(), iv.end());
    const std::size_t ct_at = out.size();
    out.insert(out.end(), plaintext.begin(), plaintext.end());
    auto key = keymat.span();
    const std::size_t enc = ipsec::encryption_keymat_len(suite);
    if (ipsec::is_aead(suite)) {
        auto alg = suite == EspSuite::AesGcm128   ? crypto::AeadAlgorithm::AesGcm128
                   : suite == EspSuite::AesGcm256 ? crypto::AeadAlgorithm::AesGcm256
                                                  : crypto::AeadAlgorithm::ChaCha20Poly1305;
        auto aead = crypto::Aead::create(alg, key.first(enc - 4));
        REQUIRE(aead);
        std::array<std::uint8_t, 12> nonce;
        std::copy_n(key.begin() + (enc - 4), 4, nonce.begin());
        std::copy_n(iv.begin(), 8, nonce.begin() + 4);
        test::Bytes aad(4);
        core::store_be32(aad.data(), spi);
        if (esn) {
            aad.resize(12);
            core::store_be64(aad.data() + 4, seq);
        } else {
            aad.resize(8);
            core::store_be32(aad.data() + 4, static_cast<std::uint32_t>(seq));
        }
        std::array<std::uint8_t, 16> tag;
        REQUIRE((*aead)->seal(nonce, aad, std::span(out).subspan(ct_at), tag));
        out.insert(out.end(), tag.begin(), tag.end());
    } else {
        auto calg = enc == 16 ? crypto::CipherAlgorithm::AesCbc128 : crypto::CipherAlgorithm::AesCbc256;
        auto cipher = crypto::Cipher::create(calg, key.first(enc));
        REQUIRE(cipher);
        REQUIRE((*cipher)->encrypt(std::span<const std::uint8_t, 16>(iv.data(), 16), std::span(out).subspan(ct_at)));
        const std::size_t integ = ipsec::integrity_keymat_len(suite);
        auto mac = crypto::Mac::create(integ == 20 ? crypto::MacAlgorithm::HmacSha1 : crypto::MacAlgorithm::HmacSha256,
                                       key.subspan(enc, integ));
        REQUIRE(mac);
        test::Bytes input = out;
        if (esn) {
            input.resize(input.size() + 4);
            core::store_be32(input.data() + input.size() - 4, static_cast<std::uint32_t>(seq >> 32));
        }
        test::Bytes icv(ipsec::icv_len(suite));
        REQUIRE((*mac)->compute(input, icv));
        out.insert(out.end(), icv.begin(), icv.end());
    }
    return out;
}

}  // namespace

TEST_CASE("suite table: names, KEYMAT split, IV and ICV lengths (RFC 3602, 2404, 4868, 4106, 7634)") {
    struct Row {
        EspSuite suite;
        const char* name;
        std::size_t enc, integ, iv, icv;
    };
    const Row rows[] = {
        {EspSuite::AesGcm128, "aes128gcm16", 20, 0, 8, 16},
        {EspSuite::AesGcm256, "aes256gcm16", 36, 0, 8, 16},
        {EspSuite::ChaCha20Poly1305, "chacha20poly1305", 36, 0, 8, 16},
        {EspSuite::AesCbc128HmacSha1, "aes128-sha1", 16, 20, 16, 12},
        {EspSuite::AesCbc256HmacSha1, "aes256-sha1", 32, 20, 16, 12},
        {EspSuite::AesCbc128HmacSha256, "aes128-sha256", 16, 32, 16, 16},
        {EspSuite::AesCbc256HmacSha256, "aes256-sha256", 32, 32, 16, 16},
    };
    for (const auto& r : rows) {
        CAPTURE(r.name);
        CHECK(ipsec::to_string(r.suite) == r.name);
        CHECK(ipsec::parse_esp_suite(r.name) == r.suite);
        CHECK(ipsec::encryption_keymat_len(r.suite) == r.enc);
        CHECK(ipsec::integrity_keymat_len(r.suite) == r.integ);
        CHECK(ipsec::keymat_len(r.suite) == r.enc + r.integ);
        CHECK(ipsec::iv_len(r.suite) == r.iv);
        CHECK(ipsec::icv_len(r.suite) == r.icv);
        CHECK(8 + r.iv <= Sa::max_header_len);
    }
    CHECK_FALSE(ipsec::parse_esp_suite("aes128-md5"));
}

TEST_CASE("Sa::create refuses SPI 0, a wrong KEYMAT length, a bad window, a 32-bit counter beyond 2^32") {
    test::FixedRandom rnd("00"_hex);
    auto key = keymat_for(EspSuite::AesGcm128);
    CHECK(Sa::create(Sa::Direction::Outbound, {.spi = 0}, key, rnd, t0).error() == core::Errc::InvalidArgument);
    CHECK(Sa::create(Sa::Direction::Outbound, {.spi = 1, .suite = EspSuite::AesGcm256}, key, rnd, t0).error() ==
          core::Errc::InvalidArgument);
    CHECK(Sa::create(Sa::Direction::Inbound, {.spi = 1, .replay_window = 16}, key, rnd, t0).error() ==
          core::Errc::InvalidArgument);
    CHECK(Sa::create(Sa::Direction::Outbound, {.spi = 1, .initial_seq = 0x100000000ull}, key, rnd, t0).error() ==
          core::Errc::InvalidArgument);
    CHECK(Sa::create(Sa::Direction::Outbound, {.spi = 1, .esn = true, .initial_seq = 0x100000000ull}, key, rnd, t0));
    for (auto s : ipsec::all_esp_suites) {
        CAPTURE(ipsec::to_string(s));
        CHECK(Sa::create(Sa::Direction::Inbound, {.spi = 0x100, .suite = s}, keymat_for(s), rnd, t0));
    }
}

TEST_CASE("known answer: RFC 3602 §4 ESP cases 5-8, AES-128-CBC ciphertext byte for byte") {
    // The RFC's packets carry no ICV (encryption-only illustrations). We seal them with
    // AES-128-CBC + HMAC-SHA1-96, the IV fixed to the RFC's, and compare everything before
    // the ICV; the ICV itself is checked by opening the packet again.
    auto v = test::load_vectors("esp_aes_cbc_rfc3602.json");
    int tested = 0;
    for (const auto& c : v["esp_packets"]) {
        CAPTURE(c["case"].get<int>());
        core::BufferPool pool(2, 2048);
        const auto enc_key = test::from_hex(c["key"].get<std::string>());
        auto keymat = crypto::SecretBytes(enc_key);
        keymat.append("0102030405060708090a0b0c0d0e0f1011121314"_hex);
        const auto spi = std::stoul(c["spi"].get<std::string>(), nullptr, 16);
        const auto seq = c["seq"].get<std::uint64_t>();
        const bool tunnel = c["mode"] == "tunnel";
        // Tunnel mode encrypts the whole inner packet; transport mode only its payload.
        auto payload = test::from_hex(c["original_payload"].get<std::string>());
        if (tunnel) {
            auto hdr = test::from_hex(c["original_ip_header"].get<std::string>());
            payload.insert(payload.begin(), hdr.begin(), hdr.end());
        }
        const auto next_header = static_cast<std::uint8_t>(std::stoul(c["next_header"].get<std::string>(), nullptr, 16));
        CHECK(next_header == (tunnel ? 4 : 1));
        test::FixedRandom iv(test::from_hex(c["iv"].get<std::string>()));
        Sa::Config cfg{.spi = static_cast<std::uint32_t>(spi), .suite = EspSuite::AesCbc128HmacSha1, .initial_seq = seq - 1};
        auto out = make_sa(Sa::Direction::Outbound, cfg, keymat, iv);
        auto buf = load(pool, payload);
        REQUIRE(out.seal(buf, next_header, t0).passed());
        CHECK(iv.consumed() == 16);
        auto expected = test::from_hex(c["esp_packet_with_ip"].get<std::string>());
        expected.erase(expected.begin(), expected.begin() + 20);  // outer IPv4 header
        REQUIRE(buf.size() == expected.size() + 12);
        CHECK(test::to_hex(buf.bytes().first(expected.size())) == test::to_hex(expected));

        auto in = make_sa(Sa::Direction::Inbound, cfg, keymat, iv);
        std::uint8_t nh = 0;
        REQUIRE(in.open(buf, t0, nh).passed());
        CHECK(nh == next_header);
        CHECK(test::to_hex(buf.bytes()) == test::to_hex(payload));
        ++tested;
    }
    CHECK(tested == 4);
}

TEST_CASE("known answer: draft-mcgrew-gcm-test-01 AES-GCM ESP packets byte for byte, sealed and opened") {
    auto v = test::load_vectors("esp_aes_gcm_draft_mcgrew_gcm_test_01.json");
    int tested = 0;
    for (const auto& c : v["cases"]) {
        CAPTURE(c["case"].get<int>());
        if (c["algorithm"] != "AES-GCM-ESP" || c["key_bits"] == 192) continue;  // GMAC, AES-192: not offered
        core::BufferPool pool(2, 2048);
        const auto keymat = crypto::SecretBytes(test::from_hex(c["keymat_from_ike"].get<std::string>()));
        const auto spi = static_cast<std::uint32_t>(std::stoul(c["spi"].get<std::string>(), nullptr, 16));
        const auto seq = std::stoull(c["seq"].get<std::string>(), nullptr, 16);
        const bool esn = c["esn"].get<bool>();
        const auto suite = c["key_bits"] == 128 ? EspSuite::AesGcm128 : EspSuite::AesGcm256;
        const auto plaintext = test::from_hex(c["plaintext"].get<std::string>());
        const std::uint8_t next_header = plaintext.back();
        const std::size_t pad_len = plaintext[plaintext.size() - 2];
        const test::Bytes payload(plaintext.begin(), plaintext.end() - 2 - static_cast<std::ptrdiff_t>(pad_len));
        test::FixedRandom iv(test::from_hex(c["esp_iv"].get<std::string>()));
        if (spi == 0) {
            // Case 4 uses SPI 0, which RFC 4303 §2.1 forbids on the wire.
            CHECK(Sa::create(Sa::Direction::Outbound, {.spi = spi, .suite = suite}, keymat, iv, t0).error() ==
                  core::Errc::InvalidArgument);
            continue;
        }
        Sa::Config cfg{.spi = spi, .suite = suite, .esn = esn, .initial_seq = seq - 1, .aead_iv = Sa::AeadIv::Random};
        auto out = make_sa(Sa::Direction::Outbound, cfg, keymat, iv);
        auto buf = load(pool, payload);
        REQUIRE(out.seal(buf, next_header, t0).passed());
        CHECK(out.sequence() == seq);
        CHECK(test::to_hex(buf.bytes()) == c["esp_packet"].get<std::string>());

        auto in = make_sa(Sa::Direction::Inbound, cfg, keymat, iv);
        auto wire = load(pool, test::from_hex(c["esp_packet"].get<std::string>()));
        std::uint8_t nh = 0;
        REQUIRE(in.open(wire, t0, nh).passed());
        CHECK(nh == next_header);
        CHECK(test::to_hex(wire.bytes()) == test::to_hex(payload));
        CHECK(in.sequence() == seq);
        ++tested;
    }
    CHECK(tested == 14);
}

TEST_CASE("known answer: RFC 7634 Appendix A ESP ChaCha20-Poly1305 packet byte for byte") {
    auto v = test::load_vectors("esp_chacha20poly1305_rfc7634.json");
    core::BufferPool pool(2, 2048);
    const auto keymat = crypto::SecretBytes(test::from_hex(v["keymat"].get<std::string>()));
    test::FixedRandom iv(test::from_hex(v["iv"].get<std::string>()));
    Sa::Config cfg{.spi = 0x01020304, .suite = EspSuite::ChaCha20Poly1305, .initial_seq = 4, .aead_iv = Sa::AeadIv::Random};
    auto out = make_sa(Sa::Direction::Outbound, cfg, keymat, iv);
    const auto inner = test::from_hex(v["inner_packet"].get<std::string>());
    auto buf = load(pool, inner);
    REQUIRE(out.seal(buf, 4, t0).passed());
    auto expected = test::from_hex(v["esp_packet_with_ip"].get<std::string>());
    expected.erase(expected.begin(), expected.begin() + 20);
    CHECK(test::to_hex(buf.bytes()) == test::to_hex(expected));

    auto in = make_sa(Sa::Direction::Inbound, cfg, keymat, iv);
    std::uint8_t nh = 0;
    REQUIRE(in.open(buf, t0, nh).passed());
    CHECK(nh == 4);
    CHECK(test::to_hex(buf.bytes()) == test::to_hex(inner));
}

TEST_CASE("AEAD IVs default to the sequence number and CBC IVs come from the injected Random") {
    core::BufferPool pool(2, 2048);
    test::CountingRandom rnd(0x40);
    auto gcm = make_sa(Sa::Direction::Outbound, {.spi = 0x1000, .suite = EspSuite::AesGcm128, .initial_seq = 41},
                       keymat_for(EspSuite::AesGcm128), rnd);
    auto buf = load(pool, inner_ping());
    REQUIRE(gcm.seal(buf, 4, t0).passed());
    CHECK(test::to_hex(buf.bytes().first(16)) == "00001000" "0000002a" "000000000000002a");
    CHECK(rnd.consumed() == 0);

    auto cbc = make_sa(Sa::Direction::Outbound, {.spi = 0x1000, .suite = EspSuite::AesCbc256HmacSha256},
                       keymat_for(EspSuite::AesCbc256HmacSha256), rnd);
    auto buf2 = load(pool, inner_ping());
    REQUIRE(cbc.seal(buf2, 4, t0).passed());
    CHECK(test::to_hex(buf2.bytes().first(24)) == "00001000" "00000001" "404142434445464748494a4b4c4d4e4f");
    CHECK(rnd.consumed() == 16);
}

TEST_CASE("ESN: the high half is in the HMAC input and the AEAD AAD but never on the wire") {
    for (auto suite : ipsec::all_esp_suites) {
        CAPTURE(ipsec::to_string(suite));
        core::BufferPool pool(2, 2048);
        test::CountingRandom rnd;
        const auto key = keymat_for(suite);
        const std::uint64_t seq = 0x0000000700000003ull;
        Sa::Config cfg{.spi = 0x2222, .suite = suite, .esn = true, .initial_seq = seq - 1};
        auto out = make_sa(Sa::Direction::Outbound, cfg, key, rnd);
        const auto payload = inner_ping();
        auto buf = load(pool, payload);
        REQUIRE(out.seal(buf, 4, t0).passed());
        CHECK(test::to_hex(buf.bytes().first(8)) == "0000222200000003");

        // An independent build of the same packet from the primitives must match exactly.
        const std::size_t ivl = ipsec::iv_len(suite);
        test::Bytes iv(buf.bytes().begin() + 8, buf.bytes().begin() + 8 + static_cast<std::ptrdiff_t>(ivl));
        test::Bytes plaintext = payload;
        const std::size_t pad = ipsec::EspTrailer::pad_len_for(payload.size(), ipsec::is_aead(suite) ? 4 : 16);
        for (std::size_t i = 1; i <= pad; ++i) plaintext.push_back(static_cast<std::uint8_t>(i));
        plaintext.push_back(static_cast<std::uint8_t>(pad));
        plaintext.push_back(4);
        CHECK(test::to_hex(buf.bytes()) == test::to_hex(hand_seal(suite, key, 0x2222, seq, true, iv, plaintext)));
        // Without the high half (ESN off on the receiver) the ICV cannot verify.
        auto wrong = make_sa(Sa::Direction::Inbound, {.spi = 0x2222, .suite = suite, .esn = false, .initial_seq = 2}, key, rnd);
        auto copy = load(pool, bytes_of(buf));
        std::uint8_t nh = 0;
        CHECK(wrong.open(copy, t0, nh).reason == DropReason::AuthFailed);
        auto right = make_sa(Sa::Direction::Inbound, {.spi = 0x2222, .suite = suite, .esn = true, .initial_seq = seq - 5}, key, rnd);
        REQUIRE(right.open(buf, t0, nh).passed());
        CHECK(right.sequence() == seq);
    }
}

TEST_CASE("hostile: any flipped bit is AuthFailed and leaves the window where it was") {
    for (auto suite : ipsec::all_esp_suites) {
        CAPTURE(ipsec::to_string(suite));
        for (bool esn : {false, true}) {
            CAPTURE(esn);
            core::BufferPool pool(4, 2048);
            test::CountingRandom rnd;
            const auto key = keymat_for(suite, 9);
            Sa::Config cfg{.spi = 0x3333, .suite = suite, .esn = esn};
            auto out = make_sa(Sa::Direction::Outbound, cfg, key, rnd);
            auto in = make_sa(Sa::Direction::Inbound, cfg, key, rnd);
            auto buf = load(pool, inner_ping());
            REQUIRE(out.seal(buf, 4, t0).passed());
            const auto good = bytes_of(buf);
            // Every byte after the ESP header (IV, ciphertext, ICV); a changed SPI belongs to
            // another SA, a changed sequence number is tried below.
            for (std::size_t i = 8; i < good.size(); ++i) {
                CAPTURE(i);
                auto bad = good;
                bad[i] ^= 0x01;
                auto b = load(pool, bad);
                std::uint8_t nh = 0;
                CHECK(in.open(b, t0, nh).reason == DropReason::AuthFailed);
            }
            for (std::size_t i = 0; i < 4; ++i) {
                auto bad = good;
                bad[i] ^= 0x80;
                auto b = load(pool, bad);
                std::uint8_t nh = 0;
                CHECK(in.open(b, t0, nh).reason == DropReason::UnknownSpi);
            }
            auto bad_seq = good;
            bad_seq[7] ^= 0x02;  // seq 1 -> 3: passes the pre-check, fails the ICV
            auto b = load(pool, bad_seq);
            std::uint8_t nh = 0;
            CHECK(in.open(b, t0, nh).reason == DropReason::AuthFailed);
            CHECK(in.sequence() == 0);
            CHECK(in.replay_window().check(3) == DropReason::None);
            CHECK(in.counters().auth_failures == good.size() - 8 + 1);
            CHECK(in.counters().packets == 0);
            // The genuine packet still gets through afterwards.
            auto g = load(pool, good);
            REQUIRE(in.open(g, t0, nh).passed());
            CHECK(in.sequence() == 1);
        }
    }
}

TEST_CASE("hostile: replayed and too-old packets are refused before any crypto") {
    core::BufferPool pool(8, 2048);
    test::CountingRandom rnd;
    const auto suite = EspSuite::AesCbc128HmacSha256;
    const auto key = keymat_for(suite);
    Sa::Config cfg{.spi = 0x4444, .suite = suite, .replay_window = 64};
    auto out = make_sa(Sa::Direction::Outbound, cfg, key, rnd);
    auto in = make_sa(Sa::Direction::Inbound, cfg, key, rnd);
    std::vector<test::Bytes> sent;
    for (int i = 0; i < 100; ++i) {
        auto buf = load(pool, inner_ping());
        REQUIRE(out.seal(buf, 4, t0).passed());
        sent.push_back(bytes_of(buf));
    }
    std::uint8_t nh = 0;
    auto p100 = load(pool, sent[99]);
    REQUIRE(in.open(p100, t0, nh).passed());
    auto again = load(pool, sent[99]);
    CHECK(in.open(again, t0, nh).reason == DropReason::ReplayedSequence);
    auto p37 = load(pool, sent[36]);  // seq 37 = T - 63: the oldest still inside
    CHECK(in.open(p37, t0, nh).passed());
    auto p36 = load(pool, sent[35]);  // seq 36 = T - 64
    CHECK(in.open(p36, t0, nh).reason == DropReason::SequenceTooOld);
    // A replay with a corrupted ICV is still reported as a replay: the pre-check comes first.
    auto forged = sent[99];
    forged.back() ^= 0xFF;
    auto f = load(pool, forged);
    CHECK(in.open(f, t0, nh).reason == DropReason::ReplayedSequence);
    CHECK(in.counters().replay_drops == 3);
    CHECK(in.counters().auth_failures == 0);
    CHECK(in.counters().packets == 2);
}

TEST_CASE("hostile: bad padding, impossible pad length (authenticated, so only the trailer is wrong)") {
    for (auto suite : ipsec::all_esp_suites) {
        CAPTURE(ipsec::to_string(suite));
        const auto key = keymat_for(suite, 3);
        const test::Bytes iv(ipsec::iv_len(suite), 0x5a);
        struct Row {
            const char* name;
            test::Bytes plaintext;  // multiple of 16, so valid for every suite
            DropReason expected;
        };
        const Row rows[] = {
            {"padding 01 03 instead of 01 02", "aaaaaaaaaaaaaaaaaaaaaaaa 01 03 02 04"_hex, DropReason::BadPadding},
            {"padding all zero", "aaaaaaaaaaaaaaaaaaaaaa 00 00 00 03 04"_hex, DropReason::BadPadding},
            {"pad length larger than the plaintext", "aaaaaaaaaaaaaaaaaaaaaaaaaaaa 20 04"_hex, DropReason::BadPadding},
            {"pad length 14 with only padding", "0102030405060708090a0b0c0d0e 0e 04"_hex, DropReason::None},
            {"correct padding 01 02", "aaaaaaaaaaaaaaaaaaaaaaaa 01 02 02 04"_hex, DropReason::None},
        };
        for (const auto& r : rows) {
            CAPTURE(r.name);
            core::BufferPool pool(2, 2048);
            test::CountingRandom rnd;
            auto in = make_sa(Sa::Direction::Inbound, {.spi = 0x5555, .suite = suite}, key, rnd);
            auto buf = load(pool, hand_seal(suite, key, 0x5555, 1, false, iv, r.plaintext));
            std::uint8_t nh = 0;
            auto v = in.open(buf, t0, nh);
            CHECK(v.reason == r.expected);
            if (r.expected != DropReason::None) {
                CHECK(in.sequence() == 0);  // authenticated but refused: the window stays put
                CHECK(in.counters().auth_failures == 0);
            } else {
                CHECK(nh == 4);
            }
        }
    }
}

TEST_CASE("hostile: truncated at every length never passes and never moves the window") {
    for (auto suite : ipsec::all_esp_suites) {
        CAPTURE(ipsec::to_string(suite));
        core::BufferPool pool(2, 2048);
        test::CountingRandom rnd;
        const auto key = keymat_for(suite);
        Sa::Config cfg{.spi = 0x6666, .suite = suite};
        auto out = make_sa(Sa::Direction::Outbound, cfg, key, rnd);
        auto in = make_sa(Sa::Direction::Inbound, cfg, key, rnd);
        auto buf = load(pool, "45000014000000004001000001020304 05060708"_hex);
        REQUIRE(out.seal(buf, 4, t0).passed());
        const auto good = bytes_of(buf);
        const std::size_t min_len = 8 + ipsec::iv_len(suite) + (ipsec::is_aead(suite) ? 2 : 16) + ipsec::icv_len(suite);
        for (std::size_t len = 0; len < good.size(); ++len) {
            CAPTURE(len);
            auto b = load(pool, std::span(good).first(len));
            std::uint8_t nh = 0;
            auto v = in.open(b, t0, nh);
            CHECK_FALSE(v.passed());
            if (len < min_len) {
                CHECK(v.reason == DropReason::Truncated);
            } else {
                CHECK((v.reason == DropReason::AuthFailed || v.reason == DropReason::Malformed));
            }
        }
        CHECK(in.sequence() == 0);
        auto g = load(pool, good);
        std::uint8_t nh = 0;
        CHECK(in.open(g, t0, nh).passed());
    }
}

TEST_CASE("the sequence counter never wraps: SequenceExhausted without ESN, at 2^64-1 with it (RFC 4303 §3.3.3)") {
    core::BufferPool pool(8, 2048);
    test::CountingRandom rnd;
    auto key = keymat_for(EspSuite::AesGcm128);
    auto sa = make_sa(Sa::Direction::Outbound, {.spi = 0x7777, .initial_seq = 0xFFFFFFFEull}, key, rnd);
    auto buf = load(pool, inner_ping());
    REQUIRE(sa.seal(buf, 4, t0).passed());
    CHECK(sa.sequence() == 0xFFFFFFFFull);
    auto buf2 = load(pool, inner_ping());
    CHECK(sa.seal(buf2, 4, t0).reason == DropReason::SequenceExhausted);
    CHECK(test::to_hex(buf2.bytes()) == test::to_hex(inner_ping()));  // untouched
    CHECK(sa.sequence() == 0xFFFFFFFFull);

    auto esn = make_sa(Sa::Direction::Outbound, {.spi = 0x7777, .esn = true, .initial_seq = 0xFFFFFFFFull}, key, rnd);
    auto buf3 = load(pool, inner_ping());
    REQUIRE(esn.seal(buf3, 4, t0).passed());
    CHECK(esn.sequence() == 0x100000000ull);
    CHECK(test::to_hex(buf3.bytes().first(8)) == "0000777700000000");  // low half 0 is fine with ESN
    auto last = make_sa(Sa::Direction::Outbound, {.spi = 0x7777, .esn = true, .initial_seq = ~std::uint64_t{0}}, key, rnd);
    auto buf4 = load(pool, inner_ping());
    CHECK(last.seal(buf4, 4, t0).reason == DropReason::SequenceExhausted);
}

TEST_CASE("seal refuses without headroom or tailroom and burns no sequence number") {
    core::BufferPool pool(2, 200);
    test::CountingRandom rnd;
    auto sa = make_sa(Sa::Direction::Outbound, {.spi = 0x8888, .suite = EspSuite::AesCbc128HmacSha1},
                      keymat_for(EspSuite::AesCbc128HmacSha1), rnd);
    auto no_head = load(pool, "4500001400000000400100000102030405060708"_hex, 10);
    CHECK(sa.seal(no_head, 4, t0).reason == DropReason::NoHeadroom);
    auto no_tail = pool.acquire(64);
    REQUIRE(no_tail.resize(no_tail.capacity() - 64 - 10));  // payload 126 + 2 needs no pad, but 2 + 12 > 10
    CHECK(sa.seal(no_tail, 4, t0).reason == DropReason::NoTailroom);
    CHECK(sa.sequence() == 0);
    CHECK(sa.counters().drops == 2);
    CHECK(rnd.consumed() == 0);
}

TEST_CASE("lifetimes: soft then hard by packets, bytes and time; hard refuses both directions") {
    test::CountingRandom rnd;
    auto key = keymat_for(EspSuite::ChaCha20Poly1305);
    core::BufferPool pool(2, 2048);
    SUBCASE("packets") {
        Sa::Config cfg{.spi = 0x9999, .suite = EspSuite::ChaCha20Poly1305,
                       .lifetime = {.soft = {.packets = 2}, .hard = {.packets = 3}}};
        auto sa = make_sa(Sa::Direction::Outbound, cfg, key, rnd);
        std::vector<ipsec::LifetimeState> states;
        for (int i = 0; i < 4; ++i) {
            auto b = load(pool, inner_ping());
            auto v = sa.seal(b, 4, t0);
            CHECK(v.passed() == (i < 3));
            if (!v.passed()) CHECK(v.reason == DropReason::SaExpired);
            states.push_back(sa.lifetime_state(t0));
        }
        using S = ipsec::LifetimeState;
        CHECK(states == std::vector<S>{S::Live, S::Soft, S::Hard, S::Hard});
    }
    SUBCASE("bytes") {
        Sa::Config cfg{.spi = 0x9999, .suite = EspSuite::ChaCha20Poly1305,
                       .lifetime = {.soft = {.bytes = 100}, .hard = {.bytes = 200}}};
        auto sa = make_sa(Sa::Direction::Inbound, cfg, key, rnd);
        auto out = make_sa(Sa::Direction::Outbound, {.spi = 0x9999, .suite = EspSuite::ChaCha20Poly1305}, key, rnd);
        std::vector<DropReason> results;
        for (int i = 0; i < 4; ++i) {
            auto b = load(pool, inner_ping());  // 84 bytes
            REQUIRE(out.seal(b, 4, t0).passed());
            std::uint8_t nh = 0;
            results.push_back(sa.open(b, t0, nh).reason);
        }
        CHECK(results == std::vector<DropReason>{DropReason::None, DropReason::None, DropReason::None, DropReason::SaExpired});
        CHECK(sa.counters().bytes == 252);
    }
    SUBCASE("time") {
        Sa::Config cfg{.spi = 0x9999, .suite = EspSuite::ChaCha20Poly1305,
                       .lifetime = {.soft = {.time = std::chrono::seconds(50)}, .hard = {.time = std::chrono::seconds(60)}}};
        auto sa = make_sa(Sa::Direction::Outbound, cfg, key, rnd);
        using namespace std::chrono_literals;
        CHECK(sa.lifetime_state(t0 + 49s) == ipsec::LifetimeState::Live);
        CHECK(sa.next_lifetime_deadline(t0) == t0 + 50s);
        CHECK(sa.lifetime_state(t0 + 50s) == ipsec::LifetimeState::Soft);
        CHECK(sa.next_lifetime_deadline(t0 + 50s) == t0 + 60s);
        CHECK(sa.lifetime_state(t0 + 60s) == ipsec::LifetimeState::Hard);
        CHECK_FALSE(sa.next_lifetime_deadline(t0 + 60s));
        auto b = load(pool, inner_ping());
        CHECK(sa.seal(b, 4, t0 + 59s).passed());
        CHECK(sa.seal(b, 4, t0 + 60s).reason == DropReason::SaExpired);
    }
}

TEST_CASE("TFC padding and any next header pass through the Sa untouched; the stage interprets them") {
    for (auto suite : ipsec::all_esp_suites) {
        CAPTURE(ipsec::to_string(suite));
        core::BufferPool pool(2, 2048);
        test::CountingRandom rnd;
        const auto key = keymat_for(suite);
        Sa::Config cfg{.spi = 0xABCD, .suite = suite};
        auto out = make_sa(Sa::Direction::Outbound, cfg, key, rnd);
        auto in = make_sa(Sa::Direction::Inbound, cfg, key, rnd);
        for (std::uint8_t next : {std::uint8_t{59}, std::uint8_t{6}, std::uint8_t{4}}) {
            CAPTURE(int{next});
            for (std::size_t len : {0u, 1u, 13u, 14u, 15u, 16u, 17u, 100u}) {
                CAPTURE(len);
                test::Bytes payload(len);
                for (std::size_t i = 0; i < len; ++i) payload[i] = static_cast<std::uint8_t>(i * 3);
                auto b = load(pool, payload);
                REQUIRE(out.seal(b, next, t0).passed());
                CHECK(b.size() == out.sealed_len(len));
                CHECK((b.size() - 8 - ipsec::iv_len(suite) - ipsec::icv_len(suite)) % (ipsec::is_aead(suite) ? 4 : 16) == 0);
                std::uint8_t nh = 0;
                REQUIRE(in.open(b, t0, nh).passed());
                CHECK(nh == next);
                CHECK(test::to_hex(b.bytes()) == test::to_hex(payload));
            }
        }
    }
}

// SPDX-License-Identifier: MIT
// Known answers for the IKEv1 key schedule against vectors/ikev1_psk_derivation_worked_example.json
// (RFC 2409 §5, §5.5, Appendix B; RFC 3947 §3.2), and the MessageCipher IV rules.
#include <doctest/doctest.h>

#include <ostream>
#include <string>

#include "ipsec/ike/message_cipher.hpp"
#include "ipsec/ike/phase1_keys.hpp"
#include "tests/support/hex.hpp"
#include "tests/support/vectors.hpp"

using namespace mipsec;
using namespace mipsec::ipsec::ike;
using test::from_hex;
using test::to_hex;

namespace {

Cookie cookie(const std::string& hex) {
    auto b = from_hex(hex);
    Cookie c{};
    std::copy_n(b.begin(), 8, c.begin());
    return c;
}

struct Example {
    nlohmann::json v = test::load_vectors("ikev1_psk_derivation_worked_example.json");
    const nlohmann::json& in = v["inputs"];
    const nlohmann::json& p1 = v["phase1"];
    const nlohmann::json& qm = v["quick_mode"];
    std::string psk_text = in["psk_ascii"];
    Bytes psk{psk_text.begin(), psk_text.end()};
    Bytes ni = from_hex(in["ni_b"].get<std::string>());
    Bytes nr = from_hex(in["nr_b"].get<std::string>());
    Bytes gxi = from_hex(in["g_xi"].get<std::string>());
    Bytes gxr = from_hex(in["g_xr"].get<std::string>());
    Bytes gxy = from_hex(in["g_xy"].get<std::string>());
    Cookie ci = cookie(in["cky_i"]);
    Cookie cr = cookie(in["cky_r"]);

    Phase1Keys derive(std::size_t key_len) const {
        Phase1Keys::Inputs i;
        i.psk = psk;
        i.ni_b = ni;
        i.nr_b = nr;
        i.g_xy = gxy;
        i.g_xi = gxi;
        i.g_xr = gxr;
        i.cky_i = ci;
        i.cky_r = cr;
        i.key_len = key_len;
        auto k = Phase1Keys::derive_psk(crypto::MacAlgorithm::HmacSha1, crypto::HashAlgorithm::Sha1, i);
        REQUIRE(k);
        return std::move(*k);
    }
};

}  // namespace

TEST_CASE("Phase1Keys: SKEYID chain, cipher keys and first IV match the worked example (RFC 2409 §5, App. B)") {
    Example ex;
    REQUIRE(ex.gxi.size() == 256);
    Phase1Keys k128 = ex.derive(16);
    CHECK(to_hex(k128.skeyid.span()) == ex.p1["skeyid"]);
    CHECK(to_hex(k128.skeyid_d.span()) == ex.p1["skeyid_d"]);
    CHECK(to_hex(k128.skeyid_a.span()) == ex.p1["skeyid_a"]);
    CHECK(to_hex(k128.skeyid_e.span()) == ex.p1["skeyid_e"]);
    CHECK(to_hex(k128.cipher_key.span()) == ex.p1["aes128_key"]);
    CHECK(to_hex(k128.iv) == ex.p1["iv_first_encrypted_message"]);

    // AES-256 needs 32 bytes from a 20-byte SKEYID_e: Appendix B expansion K1 | K2.
    Phase1Keys k256 = ex.derive(32);
    CHECK(to_hex(k256.cipher_key.span()) == ex.p1["aes256_key_expanded"]);
    auto k1k2 = expand_cipher_key(crypto::MacAlgorithm::HmacSha1, k256.skeyid_e.span(), 40);
    REQUIRE(k1k2);
    CHECK(to_hex(k1k2->span()) == ex.p1["expansion_K1"].get<std::string>() + ex.p1["expansion_K2"].get<std::string>());
}

TEST_CASE("Phase1Keys: HASH_I and HASH_R use SAi_b and the ID bodies (RFC 2409 §5)") {
    Example ex;
    Phase1Keys k = ex.derive(16);
    Bytes sai_b = from_hex(ex.in["sai_b"].get<std::string>());
    auto hi = k.auth_hash(true, ex.gxi, ex.gxr, ex.ci, ex.cr, sai_b, from_hex(ex.in["idii_b"].get<std::string>()));
    auto hr = k.auth_hash(false, ex.gxi, ex.gxr, ex.ci, ex.cr, sai_b, from_hex(ex.in["idir_b"].get<std::string>()));
    REQUIRE(hi);
    REQUIRE(hr);
    CHECK(to_hex(*hi) == ex.p1["hash_i"]);
    CHECK(to_hex(*hr) == ex.p1["hash_r"]);
    // Swapping the roles must not give the same value (a classic bug: wrong order of g^x / cookies).
    auto wrong = k.auth_hash(false, ex.gxi, ex.gxr, ex.ci, ex.cr, sai_b, from_hex(ex.in["idii_b"].get<std::string>()));
    CHECK(to_hex(*wrong) != ex.p1["hash_i"]);
}

TEST_CASE("NAT-D hashes use the plain hash of CKY-I | CKY-R | IP | port (RFC 3947 §3.2)") {
    Example ex;
    auto r = core::Endpoint::parse(ex.in["responder_ip"].get<std::string>() + ":500");
    auto i = core::Endpoint::parse(ex.in["initiator_ip"].get<std::string>() + ":500");
    REQUIRE(r);
    REQUIRE(i);
    CHECK(to_hex(nat_d_hash(crypto::HashAlgorithm::Sha1, ex.ci, ex.cr, *r)) == ex.p1["natd_hash_of_responder_500"]);
    CHECK(to_hex(nat_d_hash(crypto::HashAlgorithm::Sha1, ex.ci, ex.cr, *i)) == ex.p1["natd_hash_of_initiator_500"]);
    CHECK(to_hex(nat_d_hash(crypto::HashAlgorithm::Sha1, ex.ci, ex.cr, {i->address, 4500})) !=
          ex.p1["natd_hash_of_initiator_500"]);
}

TEST_CASE("Quick Mode: first IV, HASH(3) and KEYMAT per direction (RFC 2409 §5.5)") {
    Example ex;
    Phase1Keys k = ex.derive(16);
    std::uint32_t mid = 0x1a2b3c4d;
    Bytes16 last{};
    auto lb = from_hex(ex.qm["last_phase1_cbc_block_assumed"].get<std::string>());
    std::copy_n(lb.begin(), 16, last.begin());
    CHECK(to_hex(phase2_iv(crypto::HashAlgorithm::Sha1, last, mid)) == ex.qm["qm_first_iv"]);
    Bytes ni = from_hex(ex.qm["ni_b"].get<std::string>());
    Bytes nr = from_hex(ex.qm["nr_b"].get<std::string>());
    auto h3 = k.hash3(mid, ni, nr);
    REQUIRE(h3);
    CHECK(to_hex(*h3) == ex.qm["hash3"]);

    struct Row {
        std::string name;
        std::uint32_t spi;
        std::size_t len;
    };
    const Row rows[] = {
        {"esp_aescbc128_hmacsha1_initiator_to_responder", 0xc0ffee02, 36},
        {"esp_aescbc128_hmacsha1_responder_to_initiator", 0xc0ffee01, 36},
        {"esp_aesgcm16_128_initiator_to_responder", 0xc0ffee02, 20},
    };
    for (const auto& row : rows) {
        CAPTURE(row.name);
        auto km = k.keymat({}, protocol_id::ipsec_esp, row.spi, ni, nr, row.len);
        REQUIRE(km);
        CHECK(to_hex(km->span()) == ex.qm[row.name]["keymat"]);
    }
}

TEST_CASE("MessageCipher: encrypt/decrypt round trip, IV chaining and deferred commit (RFC 2409 Appendix B)") {
    Example ex;
    Phase1Keys k = ex.derive(16);
    auto a = MessageCipher::create(crypto::CipherAlgorithm::AesCbc128, k.cipher_key.span(), crypto::HashAlgorithm::Sha1, k.iv);
    auto b = MessageCipher::create(crypto::CipherAlgorithm::AesCbc128, k.cipher_key.span(), crypto::HashAlgorithm::Sha1, k.iv);
    REQUIRE(a);
    REQUIRE(b);

    Message m;
    m.header.initiator_cookie = ex.ci;
    m.header.responder_cookie = ex.cr;
    m.header.exchange_type = exchange_type::main_mode;
    m.payloads.emplace_back(IdPayload::fqdn("cli.lab.example"));
    m.payloads.emplace_back(HashPayload{Bytes(20, 0xAB)});
    auto wire = a->seal(m);
    REQUIRE(wire);
    CHECK((wire->size() - IsakmpHeader::len) % 16 == 0);
    CHECK(((*wire)[19] & header_flag::encryption) != 0);

    // The receiver's chain does not move until it commits.
    auto opened = b->open(*wire);
    REQUIRE(opened);
    CHECK(opened->message.payloads == m.payloads);
    CHECK(b->iv(0) == k.iv);
    b->commit(0, opened->last_block);
    CHECK(b->iv(0) == a->iv(0));  // both now hold the last ciphertext block
    Bytes16 tail{};
    std::copy(wire->end() - 16, wire->end(), tail.begin());
    CHECK(a->iv(0) == tail);

    // A tampered ciphertext fails to parse or yields different payloads; the chain stays put.
    Bytes bad = *wire;
    bad[IsakmpHeader::len + 3] ^= 0x40;
    auto t = b->open(bad);
    CHECK((!t || !(t->message.payloads == m.payloads)));
    CHECK(b->iv(0) == a->iv(0));

    // Truncations are rejected.
    for (std::size_t cut : {std::size_t{1}, std::size_t{15}, std::size_t{16}}) {
        CAPTURE(cut);
        Bytes tr(wire->begin(), wire->end() - static_cast<std::ptrdiff_t>(cut));
        CHECK_FALSE(b->open(tr));
    }

    // Phase 2 chains start from hash(last phase-1 block | M-ID) and are independent.
    CHECK(a->iv(7) == phase2_iv(crypto::HashAlgorithm::Sha1, a->iv(0), 7));
    CHECK(a->iv(7) != a->iv(8));
    m.header.message_id = 7;
    m.header.exchange_type = exchange_type::quick_mode;
    auto q = a->seal(m);
    REQUIRE(q);
    auto qo = b->open(*q);
    REQUIRE(qo);
    CHECK(qo->message.payloads == m.payloads);
    CHECK(a->iv(7) != b->iv(7));  // b has not committed yet
    b->commit(7, qo->last_block);
    CHECK(a->iv(7) == b->iv(7));
}

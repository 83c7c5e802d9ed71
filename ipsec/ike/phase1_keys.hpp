// SPDX-License-Identifier: MIT
#pragma once
// IKEv1 key math shared by every exchange (RFC 2409 §5, §5.4, §5.5, Appendix B):
//   SKEYID   = prf(PSK, Ni_b | Nr_b)                               (pre-shared key auth)
//   SKEYID_d = prf(SKEYID, g^xy | CKY-I | CKY-R | 0)
//   SKEYID_a = prf(SKEYID, SKEYID_d | g^xy | CKY-I | CKY-R | 1)
//   SKEYID_e = prf(SKEYID, SKEYID_a | g^xy | CKY-I | CKY-R | 2)
//   cipher key = SKEYID_e, or K1|K2|.. with K1 = prf(SKEYID_e, 0), Ki+1 = prf(SKEYID_e, Ki)
//                when SKEYID_e is shorter than the key (Appendix B)
//   phase-1 IV = hash(g^xi | g^xr) truncated to the block size
//   HASH_I = prf(SKEYID, g^xi | g^xr | CKY-I | CKY-R | SAi_b | IDii_b); HASH_R swaps the
//            DH values and cookies and uses IDir_b.
// plus the phase-2 helpers: per-M-ID IVs, the Quick Mode/Informational hashes and KEYMAT,
// and the NAT-D hash (RFC 3947 §3.2). `prf` is HMAC with the negotiated hash; g^xy and the KE
// values are modulus-length (as in strongSwan). Pure functions over byte spans; keys in SecretBytes.
#include <array>
#include <cstdint>
#include <initializer_list>
#include <optional>
#include <span>

#include "core/address.hpp"
#include "core/result.hpp"
#include "crypto/cipher.hpp"
#include "crypto/hash.hpp"
#include "crypto/mac.hpp"
#include "crypto/secret_bytes.hpp"
#include "ipsec/ike/data_attribute.hpp"
#include "ipsec/ike/isakmp_header.hpp"

namespace mipsec::ipsec::ike {

using Bytes16 = std::array<std::uint8_t, crypto::Cipher::block_len>;
using ByteSpans = std::initializer_list<std::span<const std::uint8_t>>;

/// prf(key, part1 | part2 | ...).
core::Result<Bytes> prf(crypto::MacAlgorithm alg, std::span<const std::uint8_t> key, ByteSpans parts);
/// hash(part1 | part2 | ...).
Bytes digest(crypto::HashAlgorithm alg, ByteSpans parts);

struct Phase1Keys {
    crypto::MacAlgorithm prf_algorithm = crypto::MacAlgorithm::HmacSha1;
    crypto::HashAlgorithm hash_algorithm = crypto::HashAlgorithm::Sha1;
    crypto::SecretBytes skeyid;
    crypto::SecretBytes skeyid_d;
    crypto::SecretBytes skeyid_a;
    crypto::SecretBytes skeyid_e;
    crypto::SecretBytes cipher_key;  // key_len bytes (Appendix B expansion when needed)
    Bytes16 iv{};                    // for the first encrypted phase-1 message (MM5)

    struct Inputs {
        std::span<const std::uint8_t> psk;
        std::span<const std::uint8_t> ni_b;
        std::span<const std::uint8_t> nr_b;
        std::span<const std::uint8_t> g_xy;
        std::span<const std::uint8_t> g_xi;
        std::span<const std::uint8_t> g_xr;
        Cookie cky_i{};
        Cookie cky_r{};
        std::size_t key_len = 16;
    };
    static core::Result<Phase1Keys> derive_psk(crypto::MacAlgorithm prf_alg, crypto::HashAlgorithm hash_alg,
                                               const Inputs& in);

    /// HASH_I (initiator = true) or HASH_R, RFC 2409 §5.
    core::Result<Bytes> auth_hash(bool initiator, std::span<const std::uint8_t> g_xi, std::span<const std::uint8_t> g_xr,
                                  const Cookie& cky_i, const Cookie& cky_r, std::span<const std::uint8_t> sai_b,
                                  std::span<const std::uint8_t> id_b) const;
    /// prf(SKEYID_a, M-ID | payloads): HASH(1) of Informational and Transaction exchanges and
    /// Quick Mode HASH(1) (RFC 2409 §5.5, §5.7).
    core::Result<Bytes> hash1(std::uint32_t message_id, std::span<const std::uint8_t> payloads) const;
    /// Quick Mode HASH(2) = prf(SKEYID_a, M-ID | Ni_b | payloads after HASH(2)).
    core::Result<Bytes> hash2(std::uint32_t message_id, std::span<const std::uint8_t> ni_b,
                              std::span<const std::uint8_t> payloads) const;
    /// Quick Mode HASH(3) = prf(SKEYID_a, 0 | M-ID | Ni_b | Nr_b).
    core::Result<Bytes> hash3(std::uint32_t message_id, std::span<const std::uint8_t> ni_b,
                              std::span<const std::uint8_t> nr_b) const;
    /// Quick Mode KEYMAT (RFC 2409 §5.5): K1|K2|.. with
    /// Ki+1 = prf(SKEYID_d, Ki | [g(qm)^xy |] protocol | SPI | Ni_b | Nr_b), first `len` bytes.
    core::Result<crypto::SecretBytes> keymat(std::span<const std::uint8_t> g_qm_xy, std::uint8_t protocol,
                                             std::uint32_t spi, std::span<const std::uint8_t> ni_b,
                                             std::span<const std::uint8_t> nr_b, std::size_t len) const;
};

/// Appendix B key expansion of `skeyid_e` to `len` bytes.
core::Result<crypto::SecretBytes> expand_cipher_key(crypto::MacAlgorithm prf_alg,
                                                    std::span<const std::uint8_t> skeyid_e, std::size_t len);
/// First IV of a post-phase-1 exchange: hash(last phase-1 CBC block | M-ID) (RFC 2409 App. B).
Bytes16 phase2_iv(crypto::HashAlgorithm alg, const Bytes16& phase1_last_block, std::uint32_t message_id);
/// NAT-D hash: HASH(CKY-I | CKY-R | IP | port), the negotiated hash, not the prf (RFC 3947 §3.2).
Bytes nat_d_hash(crypto::HashAlgorithm alg, const Cookie& cky_i, const Cookie& cky_r, const core::Endpoint& ep);

}  // namespace mipsec::ipsec::ike

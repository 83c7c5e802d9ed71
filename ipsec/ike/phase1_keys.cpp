// SPDX-License-Identifier: MIT
#include "ipsec/ike/phase1_keys.hpp"

#include <algorithm>
#include <vector>

#include "core/endian.hpp"

namespace mipsec::ipsec::ike {

core::Result<Bytes> prf(crypto::MacAlgorithm alg, std::span<const std::uint8_t> key, ByteSpans parts) {
    auto mac = crypto::Mac::create(alg, key);
    if (!mac) return mac.error();
    for (auto p : parts) (*mac)->update(p);
    Bytes out(crypto::output_len(alg));
    if (!(*mac)->finish(out)) return core::Errc::Unsupported;
    return out;
}

Bytes digest(crypto::HashAlgorithm alg, ByteSpans parts) {
    std::vector<std::span<const std::uint8_t>> v(parts.begin(), parts.end());
    Bytes out(crypto::digest_len(alg));
    if (!crypto::hash(alg, v, out)) std::fill(out.begin(), out.end(), 0);
    return out;
}

namespace {

const std::uint8_t zero_byte[1] = {0};
const std::uint8_t one_byte[1] = {1};
const std::uint8_t two_byte[1] = {2};

core::Result<crypto::SecretBytes> secret_prf(crypto::MacAlgorithm alg, std::span<const std::uint8_t> key,
                                             ByteSpans parts) {
    auto r = prf(alg, key, parts);
    if (!r) return r.error();
    crypto::SecretBytes s(*r);
    crypto::secure_wipe(*r);
    return s;
}

}  // namespace

core::Result<crypto::SecretBytes> expand_cipher_key(crypto::MacAlgorithm prf_alg,
                                                    std::span<const std::uint8_t> skeyid_e, std::size_t len) {
    if (skeyid_e.size() >= len) return crypto::SecretBytes(skeyid_e.first(len));
    // RFC 2409 Appendix B: Ka = K1 | K2 | ..., K1 = prf(SKEYID_e, 0), Ki+1 = prf(SKEYID_e, Ki).
    crypto::SecretBytes out;
    auto k = secret_prf(prf_alg, skeyid_e, {zero_byte});
    if (!k) return k.error();
    out.append(k->span());
    while (out.size() < len) {
        auto next = secret_prf(prf_alg, skeyid_e, {k->span()});
        if (!next) return next.error();
        out.append(next->span());
        k = std::move(next);
    }
    return out.first(len);
}

core::Result<Phase1Keys> Phase1Keys::derive_psk(crypto::MacAlgorithm prf_alg, crypto::HashAlgorithm hash_alg,
                                                const Inputs& in) {
    Phase1Keys k;
    k.prf_algorithm = prf_alg;
    k.hash_algorithm = hash_alg;
    auto skeyid = secret_prf(prf_alg, in.psk, {in.ni_b, in.nr_b});
    if (!skeyid) return skeyid.error();
    k.skeyid = std::move(*skeyid);
    auto d = secret_prf(prf_alg, k.skeyid.span(), {in.g_xy, in.cky_i, in.cky_r, zero_byte});
    if (!d) return d.error();
    k.skeyid_d = std::move(*d);
    auto a = secret_prf(prf_alg, k.skeyid.span(), {k.skeyid_d.span(), in.g_xy, in.cky_i, in.cky_r, one_byte});
    if (!a) return a.error();
    k.skeyid_a = std::move(*a);
    auto e = secret_prf(prf_alg, k.skeyid.span(), {k.skeyid_a.span(), in.g_xy, in.cky_i, in.cky_r, two_byte});
    if (!e) return e.error();
    k.skeyid_e = std::move(*e);
    auto key = expand_cipher_key(prf_alg, k.skeyid_e.span(), in.key_len);
    if (!key) return key.error();
    k.cipher_key = std::move(*key);
    Bytes iv = digest(hash_alg, {in.g_xi, in.g_xr});
    if (iv.size() < k.iv.size()) return core::Errc::Unsupported;
    std::copy_n(iv.begin(), k.iv.size(), k.iv.begin());
    return k;
}

core::Result<Bytes> Phase1Keys::auth_hash(bool initiator, std::span<const std::uint8_t> g_xi,
                                          std::span<const std::uint8_t> g_xr, const Cookie& cky_i,
                                          const Cookie& cky_r, std::span<const std::uint8_t> sai_b,
                                          std::span<const std::uint8_t> id_b) const {
    if (initiator) return prf(prf_algorithm, skeyid.span(), {g_xi, g_xr, cky_i, cky_r, sai_b, id_b});
    return prf(prf_algorithm, skeyid.span(), {g_xr, g_xi, cky_r, cky_i, sai_b, id_b});
}

core::Result<Bytes> Phase1Keys::hash1(std::uint32_t message_id, std::span<const std::uint8_t> payloads) const {
    std::uint8_t mid[4];
    core::store_be32(mid, message_id);
    return prf(prf_algorithm, skeyid_a.span(), {mid, payloads});
}

core::Result<Bytes> Phase1Keys::hash2(std::uint32_t message_id, std::span<const std::uint8_t> ni_b,
                                      std::span<const std::uint8_t> payloads) const {
    std::uint8_t mid[4];
    core::store_be32(mid, message_id);
    return prf(prf_algorithm, skeyid_a.span(), {mid, ni_b, payloads});
}

core::Result<Bytes> Phase1Keys::hash3(std::uint32_t message_id, std::span<const std::uint8_t> ni_b,
                                      std::span<const std::uint8_t> nr_b) const {
    std::uint8_t mid[4];
    core::store_be32(mid, message_id);
    return prf(prf_algorithm, skeyid_a.span(), {zero_byte, mid, ni_b, nr_b});
}

core::Result<crypto::SecretBytes> Phase1Keys::keymat(std::span<const std::uint8_t> g_qm_xy, std::uint8_t protocol,
                                                     std::uint32_t spi, std::span<const std::uint8_t> ni_b,
                                                     std::span<const std::uint8_t> nr_b, std::size_t len) const {
    std::uint8_t proto[1] = {protocol};
    std::uint8_t spi_b[4];
    core::store_be32(spi_b, spi);
    crypto::SecretBytes out;
    crypto::SecretBytes k;
    while (out.size() < len) {
        auto next = secret_prf(prf_algorithm, skeyid_d.span(), {k.span(), g_qm_xy, proto, spi_b, ni_b, nr_b});
        if (!next) return next.error();
        out.append(next->span());
        k = std::move(*next);
    }
    return out.first(len);
}

Bytes16 phase2_iv(crypto::HashAlgorithm alg, const Bytes16& phase1_last_block, std::uint32_t message_id) {
    std::uint8_t mid[4];
    core::store_be32(mid, message_id);
    Bytes h = digest(alg, {phase1_last_block, mid});
    Bytes16 iv{};
    std::copy_n(h.begin(), std::min(h.size(), iv.size()), iv.begin());
    return iv;
}

Bytes nat_d_hash(crypto::HashAlgorithm alg, const Cookie& cky_i, const Cookie& cky_r, const core::Endpoint& ep) {
    std::uint8_t ip_port[6];
    core::store_be32(ip_port, ep.address.value);
    core::store_be16(ip_port + 4, ep.port);
    return digest(alg, {cky_i, cky_r, ip_port});
}

}  // namespace mipsec::ipsec::ike

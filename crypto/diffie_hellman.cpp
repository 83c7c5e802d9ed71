// SPDX-License-Identifier: MIT
#include "crypto/diffie_hellman.hpp"

#include <openssl/bn.h>
#include <openssl/crypto.h>

#include <array>

namespace mipsec::crypto {

namespace {

// RFC 2409 §6.2 (Second Oakley Group) and RFC 3526 §3 (2048-bit MODP Group), generator 2,
// as published; identical to vectors/modp_groups_rfc2409_rfc3526.json.
constexpr const char* modp1024_hex =
    "FFFFFFFFFFFFFFFFC90FDAA22168C234C4C6628B80DC1CD129024E088A67CC74"
    "020BBEA63B139B22514A08798E3404DDEF9519B3CD3A431B302B0A6DF25F1437"
    "4FE1356D6D51C245E485B576625E7EC6F44C42E9A637ED6B0BFF5CB6F406B7ED"
    "EE386BFB5A899FA5AE9F24117C4B1FE649286651ECE65381FFFFFFFFFFFFFFFF";
constexpr const char* modp2048_hex =
    "FFFFFFFFFFFFFFFFC90FDAA22168C234C4C6628B80DC1CD129024E088A67CC74"
    "020BBEA63B139B22514A08798E3404DDEF9519B3CD3A431B302B0A6DF25F1437"
    "4FE1356D6D51C245E485B576625E7EC6F44C42E9A637ED6B0BFF5CB6F406B7ED"
    "EE386BFB5A899FA5AE9F24117C4B1FE649286651ECE45B3DC2007CB8A163BF05"
    "98DA48361C55D39A69163FA8FD24CF5F83655D23DCA3AD961C62F356208552BB"
    "9ED529077096966D670C354E4ABC9804F1746C08CA18217C32905E462E36CE3B"
    "E39E772C180E86039B2783A2EC07A28FB5C55DF06F4C52C9DE2BCBF695581718"
    "3995497CEA956AE515D2261898FA051015728E5A8AACAA68FFFFFFFFFFFFFFFF";

// 256-bit private exponents: RFC 3526 §8 estimates 2048-bit MODP at 110-160 bits of
// strength and asks for an exponent of at least twice that (220-320 bits); 1024-bit needs less.
constexpr std::size_t exponent_len = 32;

struct BnFree {
    void operator()(BIGNUM* b) const noexcept { BN_free(b); }
};
struct BnClearFree {
    void operator()(BIGNUM* b) const noexcept { BN_clear_free(b); }
};
struct BnCtxFree {
    void operator()(BN_CTX* c) const noexcept { BN_CTX_free(c); }
};
struct MontFree {
    void operator()(BN_MONT_CTX* m) const noexcept { BN_MONT_CTX_free(m); }
};
using BnPtr = std::unique_ptr<BIGNUM, BnFree>;
using SecretBnPtr = std::unique_ptr<BIGNUM, BnClearFree>;
using BnCtxPtr = std::unique_ptr<BN_CTX, BnCtxFree>;
using MontPtr = std::unique_ptr<BN_MONT_CTX, MontFree>;

const char* prime_hex(ModpGroup g) noexcept {
    switch (g) {
        case ModpGroup::Modp1024: return modp1024_hex;
        case ModpGroup::Modp2048: return modp2048_hex;
    }
    return nullptr;
}

class ModpDh final : public DiffieHellman {
public:
    ModpDh(ModpGroup group, BnPtr p, BnPtr p_minus_1, MontPtr mont, SecretBnPtr x, std::vector<std::uint8_t> pub)
        : group_(group),
          p_(std::move(p)),
          p_minus_1_(std::move(p_minus_1)),
          mont_(std::move(mont)),
          x_(std::move(x)),
          public_(std::move(pub)) {}

    ModpGroup group() const noexcept override { return group_; }
    const std::vector<std::uint8_t>& public_value() const noexcept override { return public_; }

    core::Result<SecretBytes> shared_secret(std::span<const std::uint8_t> peer_public) const override {
        std::size_t len = modulus_len(group_);
        // KE data is exactly the modulus length (RFC 7296 §3.4; strongSwan's IKEv1 too), else malformed.
        if (peer_public.size() != len) return core::Errc::InvalidArgument;
        BnPtr y(BN_bin2bn(peer_public.data(), static_cast<int>(peer_public.size()), nullptr));
        if (!y) return core::Errc::NoBuffer;
        // 1 < y < p-1 (NIST SP 800-56A §5.6.2.3.1): rejects 0, 1, p-1 (small subgroup) and values >= p.
        if (BN_cmp(y.get(), BN_value_one()) <= 0 || BN_cmp(y.get(), p_minus_1_.get()) >= 0)
            return core::Errc::InvalidArgument;
        BnCtxPtr ctx(BN_CTX_secure_new());
        SecretBnPtr z(BN_secure_new());
        if (!ctx || !z) return core::Errc::NoBuffer;
        if (BN_mod_exp_mont_consttime(z.get(), y.get(), x_.get(), p_.get(), ctx.get(), mont_.get()) != 1)
            return core::Errc::InvalidArgument;
        SecretBytes out(len);
        // Left-padded to the modulus length (g^xy enters SKEYID_d at full length, RFC 2409 §5).
        if (BN_bn2binpad(z.get(), out.mutable_span().data(), static_cast<int>(len)) != static_cast<int>(len))
            return core::Errc::InvalidArgument;
        return out;
    }

private:
    ModpGroup group_;
    BnPtr p_;
    BnPtr p_minus_1_;
    MontPtr mont_;  // Montgomery form of p, computed once per key pair
    SecretBnPtr x_;
    std::vector<std::uint8_t> public_;
};

}  // namespace

std::size_t modulus_len(ModpGroup g) noexcept {
    switch (g) {
        case ModpGroup::Modp1024: return 128;
        case ModpGroup::Modp2048: return 256;
    }
    return 0;
}

core::Result<std::unique_ptr<DiffieHellman>> DiffieHellman::create(ModpGroup group, Random& random) {
    const char* hex = prime_hex(group);
    if (hex == nullptr) return core::Errc::InvalidArgument;
    std::size_t len = modulus_len(group);

    BIGNUM* raw_p = nullptr;
    if (BN_hex2bn(&raw_p, hex) == 0) return core::Errc::NoBuffer;
    BnPtr p(raw_p);
    BnPtr p_minus_1(BN_dup(p.get()));
    BnPtr g(BN_new());
    BnCtxPtr ctx(BN_CTX_secure_new());
    MontPtr mont(BN_MONT_CTX_new());
    if (!p_minus_1 || !g || !ctx || !mont || BN_sub_word(p_minus_1.get(), 1) != 1 || BN_set_word(g.get(), 2) != 1 ||
        BN_MONT_CTX_set(mont.get(), p.get(), ctx.get()) != 1)
        return core::Errc::NoBuffer;

    std::array<std::uint8_t, exponent_len> x_bytes;
    random.fill(x_bytes);
    // Forcing the top bit gives every key the same exponent length (uniform timing) and keeps
    // x >= 2^255 even if a broken source returned zeros.
    x_bytes[0] |= 0x80;
    SecretBnPtr x(BN_secure_new());
    bool ok = x && BN_bin2bn(x_bytes.data(), static_cast<int>(x_bytes.size()), x.get()) != nullptr;
    OPENSSL_cleanse(x_bytes.data(), x_bytes.size());
    if (!ok) return core::Errc::NoBuffer;
    BN_set_flags(x.get(), BN_FLG_CONSTTIME);

    BnPtr y(BN_new());
    std::vector<std::uint8_t> pub(len);
    if (!y || BN_mod_exp_mont_consttime(y.get(), g.get(), x.get(), p.get(), ctx.get(), mont.get()) != 1 ||
        BN_bn2binpad(y.get(), pub.data(), static_cast<int>(len)) != static_cast<int>(len))
        return core::Errc::NoBuffer;
    return std::unique_ptr<DiffieHellman>(std::make_unique<ModpDh>(group, std::move(p), std::move(p_minus_1),
                                                                   std::move(mont), std::move(x), std::move(pub)));
}

}  // namespace mipsec::crypto

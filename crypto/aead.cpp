// SPDX-License-Identifier: MIT
#include "crypto/aead.hpp"
#include "crypto/openssl_ptr.hpp"

#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/params.h>
#include <sodium.h>

#include <array>
#include <climits>
#include <cstring>

namespace mipsec::crypto {

std::string_view to_string(AeadAlgorithm a) noexcept {
    switch (a) {
        case AeadAlgorithm::AesGcm128: return "aes-gcm-128";
        case AeadAlgorithm::AesGcm256: return "aes-gcm-256";
        case AeadAlgorithm::ChaCha20Poly1305: return "chacha20-poly1305";
    }
    return "unknown";
}

std::size_t key_len(AeadAlgorithm a) noexcept {
    switch (a) {
        case AeadAlgorithm::AesGcm128: return 16;
        case AeadAlgorithm::AesGcm256: return 32;
        case AeadAlgorithm::ChaCha20Poly1305: return 32;
    }
    return 0;
}

namespace {

using detail::CipherCtxPtr;
using detail::CipherPtr;

bool fits_int(std::size_t n) noexcept { return n <= static_cast<std::size_t>(INT_MAX); }

// One context per direction, each keyed once: a per-packet init with only the IV re-uses the
// expanded key and the GHASH table, and (checked against OpenSSL 3.0 with
// CRYPTO_set_mem_functions) allocates nothing.
//
// The tag goes through EVP_CIPHER_CTX_get_params/set_params, not EVP_CIPHER_CTX_ctrl: in
// OpenSSL 3.0 the ctrl is translated into the same OSSL_PARAM call after a table lookup, 13-15 ns
// per packet on the machine the README's `mipsec bench esp` figures come from (about 4 % of a
// 64-byte seal).
OSSL_PARAM tag_param(std::uint8_t* tag, std::size_t len) noexcept {
    return OSSL_PARAM_construct_octet_string(OSSL_CIPHER_PARAM_AEAD_TAG, tag, len);
}
class AesGcm final : public Aead {
public:
    AesGcm(AeadAlgorithm algorithm, CipherCtxPtr enc, CipherCtxPtr dec)
        : algorithm_(algorithm), enc_(std::move(enc)), dec_(std::move(dec)) {}

    AeadAlgorithm algorithm() const noexcept override { return algorithm_; }

    std::unique_ptr<Aead> clone() const override {
        CipherCtxPtr enc(EVP_CIPHER_CTX_new());
        CipherCtxPtr dec(EVP_CIPHER_CTX_new());
        if (!enc || !dec || EVP_CIPHER_CTX_copy(enc.get(), enc_.get()) != 1 || EVP_CIPHER_CTX_copy(dec.get(), dec_.get()) != 1)
            return nullptr;
        return std::make_unique<AesGcm>(algorithm_, std::move(enc), std::move(dec));
    }

    bool seal(std::span<const std::uint8_t, nonce_len> nonce, std::span<const std::uint8_t> aad,
              std::span<std::uint8_t> in_out, std::span<std::uint8_t, tag_len> tag) noexcept override {
        if (!fits_int(aad.size()) || !fits_int(in_out.size())) return false;
        EVP_CIPHER_CTX* c = enc_.get();
        int len = 0;
        if (EVP_EncryptInit_ex(c, nullptr, nullptr, nullptr, nonce.data()) != 1) return false;
        if (!aad.empty() && EVP_EncryptUpdate(c, nullptr, &len, aad.data(), static_cast<int>(aad.size())) != 1)
            return false;
        if (!in_out.empty() &&
            EVP_EncryptUpdate(c, in_out.data(), &len, in_out.data(), static_cast<int>(in_out.size())) != 1)
            return false;
        std::uint8_t unused[16];
        if (EVP_EncryptFinal_ex(c, unused, &len) != 1) return false;
        OSSL_PARAM params[] = {tag_param(tag.data(), tag_len), OSSL_PARAM_construct_end()};
        return EVP_CIPHER_CTX_get_params(c, params) == 1;
    }

    bool open(std::span<const std::uint8_t, nonce_len> nonce, std::span<const std::uint8_t> aad,
              std::span<std::uint8_t> in_out, std::span<const std::uint8_t, tag_len> tag) noexcept override {
        if (!fits_int(aad.size()) || !fits_int(in_out.size())) return false;
        EVP_CIPHER_CTX* c = dec_.get();
        int len = 0;
        if (EVP_DecryptInit_ex(c, nullptr, nullptr, nullptr, nonce.data()) != 1) return false;
        if (!aad.empty() && EVP_DecryptUpdate(c, nullptr, &len, aad.data(), static_cast<int>(aad.size())) != 1)
            return false;
        if (!in_out.empty() &&
            EVP_DecryptUpdate(c, in_out.data(), &len, in_out.data(), static_cast<int>(in_out.size())) != 1)
            return false;
        // OSSL_PARAM holds a non-const pointer; copy instead of casting constness away.
        std::array<std::uint8_t, tag_len> expected;
        std::memcpy(expected.data(), tag.data(), tag_len);
        OSSL_PARAM params[] = {tag_param(expected.data(), tag_len), OSSL_PARAM_construct_end()};
        if (EVP_CIPHER_CTX_set_params(c, params) != 1) return false;
        std::uint8_t unused[16];
        // Final compares the tag in constant time and fails on mismatch.
        return EVP_DecryptFinal_ex(c, unused, &len) == 1;
    }

private:
    AeadAlgorithm algorithm_;
    CipherCtxPtr enc_;
    CipherCtxPtr dec_;
};

class ChaCha20Poly1305 final : public Aead {
public:
    explicit ChaCha20Poly1305(std::span<const std::uint8_t> key) noexcept {
        std::memcpy(key_.data(), key.data(), key_.size());
    }
    ~ChaCha20Poly1305() override { sodium_memzero(key_.data(), key_.size()); }
    ChaCha20Poly1305(const ChaCha20Poly1305&) = delete;
    ChaCha20Poly1305& operator=(const ChaCha20Poly1305&) = delete;

    AeadAlgorithm algorithm() const noexcept override { return AeadAlgorithm::ChaCha20Poly1305; }
    std::unique_ptr<Aead> clone() const override { return std::make_unique<ChaCha20Poly1305>(key_); }

    // libsodium allows the message and ciphertext buffers to be the same (in-place).
    bool seal(std::span<const std::uint8_t, nonce_len> nonce, std::span<const std::uint8_t> aad,
              std::span<std::uint8_t> in_out, std::span<std::uint8_t, tag_len> tag) noexcept override {
        std::uint8_t empty = 0;
        std::uint8_t* data = non_null(in_out, empty);
        unsigned long long mac_len = 0;
        int rc = crypto_aead_chacha20poly1305_ietf_encrypt_detached(data, tag.data(), &mac_len, data, in_out.size(),
                                                                    aad.data(), aad.size(), nullptr, nonce.data(),
                                                                    key_.data());
        return rc == 0 && mac_len == tag_len;
    }

    // Verifies the tag before decrypting anything (RFC 7539 §2.8 construction, libsodium).
    bool open(std::span<const std::uint8_t, nonce_len> nonce, std::span<const std::uint8_t> aad,
              std::span<std::uint8_t> in_out, std::span<const std::uint8_t, tag_len> tag) noexcept override {
        std::uint8_t empty = 0;
        std::uint8_t* data = non_null(in_out, empty);
        return crypto_aead_chacha20poly1305_ietf_decrypt_detached(data, nullptr, data, in_out.size(), tag.data(),
                                                                  aad.data(), aad.size(), nonce.data(),
                                                                  key_.data()) == 0;
    }

private:
    // libsodium declares the ciphertext pointer nonnull even for zero-length messages.
    static std::uint8_t* non_null(std::span<std::uint8_t> s, std::uint8_t& fallback) noexcept {
        return s.empty() ? &fallback : s.data();
    }

    static_assert(crypto_aead_chacha20poly1305_IETF_KEYBYTES == 32);
    static_assert(crypto_aead_chacha20poly1305_IETF_NPUBBYTES == Aead::nonce_len);
    static_assert(crypto_aead_chacha20poly1305_IETF_ABYTES == Aead::tag_len);
    std::array<std::uint8_t, 32> key_{};
};

core::Result<std::unique_ptr<Aead>> create_gcm(AeadAlgorithm algorithm, std::span<const std::uint8_t> key) {
    const char* name = algorithm == AeadAlgorithm::AesGcm128 ? "AES-128-GCM" : "AES-256-GCM";
    CipherPtr cipher(EVP_CIPHER_fetch(nullptr, name, nullptr));
    CipherCtxPtr enc(EVP_CIPHER_CTX_new());
    CipherCtxPtr dec(EVP_CIPHER_CTX_new());
    if (!cipher || !enc || !dec) return core::Errc::Unsupported;
    // The default IV length of GCM in OpenSSL is 12 bytes, which is the RFC 4106 nonce.
    if (EVP_EncryptInit_ex(enc.get(), cipher.get(), nullptr, key.data(), nullptr) != 1 ||
        EVP_DecryptInit_ex(dec.get(), cipher.get(), nullptr, key.data(), nullptr) != 1 ||
        EVP_CIPHER_CTX_get_iv_length(enc.get()) != static_cast<int>(Aead::nonce_len))
        return core::Errc::Unsupported;
    return std::unique_ptr<Aead>(std::make_unique<AesGcm>(algorithm, std::move(enc), std::move(dec)));
}

}  // namespace

core::Result<std::unique_ptr<Aead>> Aead::create(AeadAlgorithm algorithm, std::span<const std::uint8_t> key) {
    std::size_t want = key_len(algorithm);
    if (want == 0 || key.size() != want) return core::Errc::InvalidArgument;
    switch (algorithm) {
        case AeadAlgorithm::AesGcm128:
        case AeadAlgorithm::AesGcm256: return create_gcm(algorithm, key);
        case AeadAlgorithm::ChaCha20Poly1305:
            // Selects the fastest ChaCha20/Poly1305 implementations; idempotent and thread-safe.
            if (sodium_init() < 0) return core::Errc::Unsupported;
            return std::unique_ptr<Aead>(std::make_unique<ChaCha20Poly1305>(key));
    }
    return core::Errc::InvalidArgument;
}

}  // namespace mipsec::crypto

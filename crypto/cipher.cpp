// SPDX-License-Identifier: MIT
#include "crypto/cipher.hpp"
#include "crypto/openssl_ptr.hpp"

#include <openssl/evp.h>

#include <climits>

namespace mipsec::crypto {

std::string_view to_string(CipherAlgorithm a) noexcept {
    switch (a) {
        case CipherAlgorithm::AesCbc128: return "aes-cbc-128";
        case CipherAlgorithm::AesCbc192: return "aes-cbc-192";
        case CipherAlgorithm::AesCbc256: return "aes-cbc-256";
    }
    return "unknown";
}

std::size_t key_len(CipherAlgorithm a) noexcept {
    switch (a) {
        case CipherAlgorithm::AesCbc128: return 16;
        case CipherAlgorithm::AesCbc192: return 24;
        case CipherAlgorithm::AesCbc256: return 32;
    }
    return 0;
}

namespace {

using detail::CipherCtxPtr;
using detail::CipherPtr;

// Encryption and decryption need different AES key schedules, so each direction has its own
// context keyed once; a call only installs the IV (no allocation, checked on OpenSSL 3.0).
class AesCbc final : public Cipher {
public:
    AesCbc(CipherAlgorithm algorithm, CipherCtxPtr enc, CipherCtxPtr dec)
        : algorithm_(algorithm), enc_(std::move(enc)), dec_(std::move(dec)) {}

    CipherAlgorithm algorithm() const noexcept override { return algorithm_; }

    bool encrypt(std::span<const std::uint8_t, iv_len> iv, std::span<std::uint8_t> in_out) noexcept override {
        return run(enc_.get(), iv, in_out);
    }
    bool decrypt(std::span<const std::uint8_t, iv_len> iv, std::span<std::uint8_t> in_out) noexcept override {
        return run(dec_.get(), iv, in_out);
    }

private:
    static bool run(EVP_CIPHER_CTX* c, std::span<const std::uint8_t, iv_len> iv,
                    std::span<std::uint8_t> in_out) noexcept {
        if (in_out.size() % block_len != 0 || in_out.size() > static_cast<std::size_t>(INT_MAX)) return false;
        if (in_out.empty()) return true;
        // enc = -1 keeps the direction the context was keyed for.
        if (EVP_CipherInit_ex(c, nullptr, nullptr, nullptr, iv.data(), -1) != 1) return false;
        int len = 0;
        if (EVP_CipherUpdate(c, in_out.data(), &len, in_out.data(), static_cast<int>(in_out.size())) != 1)
            return false;
        return static_cast<std::size_t>(len) == in_out.size();
    }

    CipherAlgorithm algorithm_;
    CipherCtxPtr enc_;
    CipherCtxPtr dec_;
};

const char* openssl_name(CipherAlgorithm a) noexcept {
    switch (a) {
        case CipherAlgorithm::AesCbc128: return "AES-128-CBC";
        case CipherAlgorithm::AesCbc192: return "AES-192-CBC";
        case CipherAlgorithm::AesCbc256: return "AES-256-CBC";
    }
    return nullptr;
}

}  // namespace

core::Result<std::unique_ptr<Cipher>> Cipher::create(CipherAlgorithm algorithm, std::span<const std::uint8_t> key) {
    std::size_t want = key_len(algorithm);
    if (want == 0 || key.size() != want) return core::Errc::InvalidArgument;
    CipherPtr cipher(EVP_CIPHER_fetch(nullptr, openssl_name(algorithm), nullptr));
    CipherCtxPtr enc(EVP_CIPHER_CTX_new());
    CipherCtxPtr dec(EVP_CIPHER_CTX_new());
    if (!cipher || !enc || !dec) return core::Errc::Unsupported;
    if (EVP_CipherInit_ex(enc.get(), cipher.get(), nullptr, key.data(), nullptr, 1) != 1 ||
        EVP_CipherInit_ex(dec.get(), cipher.get(), nullptr, key.data(), nullptr, 0) != 1)
        return core::Errc::Unsupported;
    // The caller pads (RFC 4303 §2.4 / IKEv1); PKCS#7 padding would add a block.
    EVP_CIPHER_CTX_set_padding(enc.get(), 0);
    EVP_CIPHER_CTX_set_padding(dec.get(), 0);
    return std::unique_ptr<Cipher>(std::make_unique<AesCbc>(algorithm, std::move(enc), std::move(dec)));
}

}  // namespace mipsec::crypto

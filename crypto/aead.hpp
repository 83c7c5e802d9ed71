// SPDX-License-Identifier: MIT
#pragma once
// Aead: authenticated encryption in place (AES-GCM per RFC 4106 use, ChaCha20-Poly1305 per
// RFC 7539/7634). The caller builds the 12-byte nonce (ESP: salt || IV) and the AAD. The key
// schedule is done once in create(); seal/open do no heap allocation. Not thread-safe: one
// instance per SA direction, or per thread through clone() (AeadContexts).
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string_view>

#include "core/result.hpp"

namespace mipsec::crypto {

enum class AeadAlgorithm : std::uint8_t { AesGcm128, AesGcm256, ChaCha20Poly1305 };
std::string_view to_string(AeadAlgorithm a) noexcept;
std::size_t key_len(AeadAlgorithm a) noexcept;

class Aead {
public:
    static constexpr std::size_t nonce_len = 12;
    static constexpr std::size_t tag_len = 16;

    virtual ~Aead() = default;
    /// key must be exactly key_len(algorithm) bytes (without ESP salt).
    static core::Result<std::unique_ptr<Aead>> create(AeadAlgorithm algorithm, std::span<const std::uint8_t> key);

    virtual AeadAlgorithm algorithm() const noexcept = 0;
    /// An independent instance with the same key (the key schedule copied, not redone), for
    /// another thread. Only reads this one: instances nobody seals or opens with may be cloned
    /// by several threads at once. Null only on a library failure.
    virtual std::unique_ptr<Aead> clone() const = 0;
    /// Encrypts in_out in place and writes the 16-byte tag. False only on a library failure.
    virtual bool seal(std::span<const std::uint8_t, nonce_len> nonce, std::span<const std::uint8_t> aad,
                      std::span<std::uint8_t> in_out, std::span<std::uint8_t, tag_len> tag) noexcept = 0;
    /// Verifies the tag and decrypts in place. False if authentication fails; then in_out is
    /// unspecified and must be discarded.
    virtual bool open(std::span<const std::uint8_t, nonce_len> nonce, std::span<const std::uint8_t> aad,
                      std::span<std::uint8_t> in_out, std::span<const std::uint8_t, tag_len> tag) noexcept = 0;
};

}  // namespace mipsec::crypto

// SPDX-License-Identifier: MIT
#pragma once
// Cipher: AES-CBC without padding (RFC 3602 for ESP; IKEv1 message encryption). Lengths must
// be a multiple of 16; the caller pads. The IV is passed per call. Not thread-safe.
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string_view>

#include "core/result.hpp"

namespace mipsec::crypto {

enum class CipherAlgorithm : std::uint8_t { AesCbc128, AesCbc192, AesCbc256 };
std::string_view to_string(CipherAlgorithm a) noexcept;
std::size_t key_len(CipherAlgorithm a) noexcept;

class Cipher {
public:
    static constexpr std::size_t block_len = 16;
    static constexpr std::size_t iv_len = 16;

    virtual ~Cipher() = default;
    static core::Result<std::unique_ptr<Cipher>> create(CipherAlgorithm algorithm, std::span<const std::uint8_t> key);

    virtual CipherAlgorithm algorithm() const noexcept = 0;
    /// False if the length is not a multiple of block_len or the library fails.
    virtual bool encrypt(std::span<const std::uint8_t, iv_len> iv, std::span<std::uint8_t> in_out) noexcept = 0;
    virtual bool decrypt(std::span<const std::uint8_t, iv_len> iv, std::span<std::uint8_t> in_out) noexcept = 0;
};

}  // namespace mipsec::crypto

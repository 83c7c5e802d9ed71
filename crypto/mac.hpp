// SPDX-License-Identifier: MIT
#pragma once
// Mac: HMAC (RFC 2104) with MD5 (Mobile IP, RFC 5944), SHA-1 (RFC 2404), SHA-256/384/512
// (RFC 4868). Incremental: update() any number of times, then finish() writes the first
// out.size() bytes of the tag (truncation, e.g. 12 for HMAC-SHA1-96) and readies the object
// for the next message with the same key. Not thread-safe.
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string_view>

#include "core/result.hpp"

namespace mipsec::crypto {

enum class MacAlgorithm : std::uint8_t { HmacMd5, HmacSha1, HmacSha256, HmacSha384, HmacSha512 };
std::string_view to_string(MacAlgorithm a) noexcept;
/// Full HMAC output length (16, 20, 32, 48, 64).
std::size_t output_len(MacAlgorithm a) noexcept;

class Mac {
public:
    static constexpr std::size_t max_output_len = 64;

    virtual ~Mac() = default;
    /// Any key length is accepted (HMAC hashes long keys); protocol layers enforce their own.
    static core::Result<std::unique_ptr<Mac>> create(MacAlgorithm algorithm, std::span<const std::uint8_t> key);

    virtual MacAlgorithm algorithm() const noexcept = 0;
    std::size_t output_len() const noexcept { return crypto::output_len(algorithm()); }
    virtual void update(std::span<const std::uint8_t> data) noexcept = 0;
    /// out.size() must be 1..output_len(); returns false on a library failure.
    virtual bool finish(std::span<std::uint8_t> out) noexcept = 0;

    /// Installs a new key in this context, dropping any message in progress. Cheaper than
    /// create() per message (no algorithm fetch, no context allocation): a home agent answering
    /// many mobile nodes re-keys one context per message. The context keeps the key's derived
    /// HMAC state until the next rekey() or its destruction. False on a library failure (the
    /// object then fails every finish() until a rekey() succeeds).
    virtual bool rekey(std::span<const std::uint8_t> key) noexcept = 0;

    /// One-shot: update(data) then finish(out).
    bool compute(std::span<const std::uint8_t> data, std::span<std::uint8_t> out) noexcept {
        update(data);
        return finish(out);
    }
};

}  // namespace mipsec::crypto

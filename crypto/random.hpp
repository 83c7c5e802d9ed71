// SPDX-License-Identifier: MIT
#pragma once
// Random: the source of nonces, IVs, SPIs, cookies and private keys. Always injected as a
// constructor argument so tests can fix it; never a global.
#include <cstdint>
#include <span>

namespace mipsec::crypto {

class Random {
public:
    virtual ~Random() = default;
    virtual void fill(std::span<std::uint8_t> out) noexcept = 0;
    std::uint32_t next_u32() noexcept {
        std::uint8_t b[4];
        fill(b);
        return (std::uint32_t{b[0]} << 24) | (std::uint32_t{b[1]} << 16) | (std::uint32_t{b[2]} << 8) | b[3];
    }
};

/// The operating system's CSPRNG (libsodium randombytes_buf, which uses getrandom()).
class SystemRandom final : public Random {
public:
    SystemRandom();
    void fill(std::span<std::uint8_t> out) noexcept override;
};

}  // namespace mipsec::crypto

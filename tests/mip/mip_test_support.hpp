// SPDX-License-Identifier: MIT
#pragma once
// Helpers shared by the mip tests: a deterministic Random and SA/key builders.
#include <cstdint>
#include <span>

#include "crypto/random.hpp"
#include "mip/security_association.hpp"
#include "tests/support/hex.hpp"

namespace mipsec::test {

/// A xorshift generator with a fixed seed: reproducible "random" nonces.
class SeededRandom final : public crypto::Random {
public:
    explicit SeededRandom(std::uint64_t seed = 0x9E3779B97F4A7C15u) : state_(seed | 1) {}
    void fill(std::span<std::uint8_t> out) noexcept override {
        for (auto& b : out) {
            state_ ^= state_ << 13;
            state_ ^= state_ >> 7;
            state_ ^= state_ << 17;
            b = static_cast<std::uint8_t>(state_ >> 24);
        }
    }

private:
    std::uint64_t state_;
};

inline mip::SecurityAssociation make_sa(std::uint32_t spi, const Bytes& key,
                                        mip::ReplayProtection replay = mip::ReplayProtection::Timestamp) {
    mip::SecurityAssociation sa;
    sa.spi = spi;
    sa.key = crypto::SecretBytes(std::span<const std::uint8_t>(key));
    sa.replay = replay;
    return sa;
}

inline core::Ipv4Address ip(const char* text) { return *core::Ipv4Address::parse(text); }

}  // namespace mipsec::test

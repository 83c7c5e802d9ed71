// SPDX-License-Identifier: MIT
#pragma once
// ESP SAs for tests: KEYMAT of the right length for a suite, an Sa made from it, and a sample
// inner packet to seal.
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <utility>

#include <doctest/doctest.h>

#include "crypto/random.hpp"
#include "crypto/secret_bytes.hpp"
#include "ipsec/sa.hpp"
#include "tests/support/hex.hpp"

namespace mipsec::test {

/// When the SAs of these tests are made.
inline const core::TimePoint esp_t0 = core::TimePoint{} + std::chrono::hours(1);

/// KEYMAT for `suite`, a different one per seed.
inline crypto::SecretBytes keymat_for(ipsec::EspSuite suite, std::uint8_t seed = 1) {
    crypto::SecretBytes k(ipsec::keymat_len(suite));
    for (std::size_t i = 0; i < k.size(); ++i) k.mutable_span()[i] = static_cast<std::uint8_t>(seed + 7 * i);
    return k;
}

inline ipsec::Sa make_sa(ipsec::Sa::Direction dir, const ipsec::Sa::Config& cfg, const crypto::SecretBytes& keymat, crypto::Random& random,
                         core::TimePoint now = esp_t0) {
    auto sa = ipsec::Sa::create(dir, cfg, keymat, random, now);
    REQUIRE(sa);
    return std::move(*sa);
}

/// A sample inner IPv4 packet (RFC 3602 case 7's ping).
inline Bytes inner_ping() {
    return from_hex("45000054090400004001f988c0a87b03c0a87bc8"
                    "08009f76a90a0100b49c083d02a2040008090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f"
                    "202122232425262728292a2b2c2d2e2f3031323334353637");
}

}  // namespace mipsec::test

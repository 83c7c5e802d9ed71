// SPDX-License-Identifier: MIT
#include "crypto/random.hpp"

#include <sodium.h>

#include <stdexcept>

namespace mipsec::crypto {

// sodium_init is idempotent and thread-safe; it only fails if the OS RNG is unusable, which
// is a startup error worth aborting for (never reached on the packet path).
SystemRandom::SystemRandom() {
    if (sodium_init() < 0) throw std::runtime_error("libsodium initialisation failed (no usable OS RNG)");
}

void SystemRandom::fill(std::span<std::uint8_t> out) noexcept {
    if (!out.empty()) randombytes_buf(out.data(), out.size());
}

}  // namespace mipsec::crypto
